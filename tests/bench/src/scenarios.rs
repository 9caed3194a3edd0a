//! The scenarios of issue #6 and the figures each one reports: (a) fanout, (b) many rooms,
//! (c) idle memory, (d) durable sends beside raw sled, (e) binary size, cold start and idle
//! RSS, (f) logins against cores / argon2 time, (g) connect storm. Each starts its servers
//! fresh, is bounded in count and time, and stops them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::SinkExt as _;
use tokio::sync::{mpsc, oneshot};

use crate::client::{self, Template};
use crate::pubsub::{self, FanoutSettings, RoomsSettings};
use crate::report::{Figure, Target};
use crate::servers::{self, Kind, PeerLoop, Programs, Server};

/// Every scenario, in the order the suite runs them.
pub const ALL: &[&str] = &[
    "fanout", "rooms", "idle", "durable", "startup", "logins", "storm",
];

/// Sizes and durations of a run: the full suite, or the CI smoke.
#[derive(Debug, Clone)]
pub struct Settings {
    pub fanout: FanoutSettings,
    pub rooms: RoomsSettings,
    pub idle_connections: usize,
    pub storm_connections: usize,
    pub storm_concurrency: usize,
    pub durable_clients: Vec<usize>,
    pub durable_phase: Duration,
    pub login_clients: Vec<usize>,
    pub login_phase: Duration,
}

impl Settings {
    pub fn full() -> Settings {
        Settings {
            fanout: FanoutSettings {
                subscribers: 1000,
                sample_every: 10,
                rates: vec![50, 200, 800],
                phase: Duration::from_secs(5),
                window: 16,
                saturation_before: 2,
            },
            rooms: RoomsSettings {
                rooms: 1000,
                members: 10,
                sample_every: 10,
                first_rate: 2000.0,
                step_factor: 1.5,
                max_steps: 8,
                phase: Duration::from_secs(4),
                p99_limit_ms: 50.0,
            },
            idle_connections: 10_000,
            storm_connections: 10_000,
            storm_concurrency: 200,
            durable_clients: vec![1, 64, 1000],
            durable_phase: Duration::from_secs(5),
            login_clients: vec![1, 2, 8, 64],
            login_phase: Duration::from_secs(5),
        }
    }

    /// Seconds long: proves the harness works end to end, measures nothing worth quoting.
    pub fn smoke() -> Settings {
        Settings {
            fanout: FanoutSettings {
                subscribers: 20,
                sample_every: 5,
                rates: vec![200],
                phase: Duration::from_millis(500),
                window: 16,
                saturation_before: 1,
            },
            rooms: RoomsSettings {
                rooms: 10,
                members: 10,
                sample_every: 5,
                first_rate: 200.0,
                step_factor: 2.0,
                max_steps: 1,
                phase: Duration::from_millis(500),
                p99_limit_ms: 50.0,
            },
            idle_connections: 100,
            storm_connections: 100,
            storm_concurrency: 50,
            durable_clients: vec![1, 8],
            durable_phase: Duration::from_millis(500),
            login_clients: vec![1],
            login_phase: Duration::from_millis(500),
        }
    }
}

/// Runs one scenario against natter and (where it has one) its peer; returns the figures.
pub async fn run(
    name: &str,
    settings: &Settings,
    programs: &Programs,
) -> anyhow::Result<Vec<Figure>> {
    match name {
        "fanout" => fanout(settings, programs).await,
        "rooms" => rooms(settings, programs).await,
        "idle" => idle(settings, programs).await,
        "durable" => durable(settings, programs).await,
        "startup" => startup(programs).await,
        "logins" => logins(settings, programs).await,
        "storm" => storm(settings, programs).await,
        other => bail!("unknown scenario {other:?} (known: {})", ALL.join(", ")),
    }
}

/// The peer's result of a measurement, when the run has a peer.
async fn on_peer<T, F, Fut>(programs: &Programs, measure: F) -> anyhow::Result<Option<T>>
where
    F: FnOnce(Server) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    if programs.peer.is_none() {
        return Ok(None);
    }
    let server = servers::start(Kind::Uws, programs).await?;
    Ok(Some(measure(server).await?))
}

fn peer_value<T>(peer: &Option<T>, f: impl Fn(&T) -> f64) -> Option<f64> {
    peer.as_ref().map(f)
}

async fn fanout(settings: &Settings, programs: &Programs) -> anyhow::Result<Vec<Figure>> {
    let s = &settings.fanout;
    let measure = |server: Server| async move {
        let phases = pubsub::fanout(&server, s).await;
        server.stop().await;
        phases
    };
    let natter = measure(servers::start(Kind::Natter, programs).await?).await?;
    let peer = on_peer(programs, measure).await?;
    // `--peer-loop both`: the peer once more, in the other loop mode, for the record.
    let other_loop = match &programs.peer {
        Some(p) if p.compare_loops => {
            let mode = match p.loop_mode {
                PeerLoop::Uv => PeerLoop::Asyncio,
                PeerLoop::Asyncio => PeerLoop::Uv,
            };
            Some((mode, measure(servers::start_peer(p, mode).await?).await?))
        }
        _ => None,
    };
    let mut figures = Vec::new();
    for (i, (rate, phase)) in natter.iter().enumerate() {
        let other = peer.as_ref().and_then(|p| p.get(i)).map(|(_, p)| p.clone());
        let label = match rate {
            Some(r) => format!("{r} msg/s"),
            None => "saturation".to_owned(),
        };
        let subs = s.subscribers;
        let fig = |name: &str, unit: &'static str, f: fn(&pubsub::Phase) -> f64| {
            Figure::new("fanout", format!("1->{subs} {label}: {name}"), unit)
                .natter(f(phase))
                .peer("uWS", other.as_ref().map(f))
        };
        let mut deliveries = fig("deliveries/s", "1/s", |p| p.deliveries_per_sec);
        let mut p99 = fig("p99 latency", "ms", |p| p.p99_ms);
        let mut loss = fig("loss", "%", |p| p.loss * 100.0);
        let mut cpu = fig("server CPU per delivery", "µs", |p| p.cpu_s_per_million);
        match rate {
            None => {
                deliveries = deliveries
                    .target(Target::RatioAtLeast(1.0))
                    .goal("fanout-saturation");
                cpu = cpu.target(Target::RatioAtMost(1.0)).goal("fanout-p99-cpu");
            }
            Some(200) => {
                p99 = p99.target(Target::RatioAtMost(1.0)).goal("fanout-p99-cpu");
                cpu = cpu.target(Target::RatioAtMost(1.0)).goal("fanout-p99-cpu");
                loss = loss.target(Target::AtMost(0.0));
            }
            Some(_) => {}
        }
        figures.push(deliveries);
        figures.push(fig("p50 latency", "ms", |p| p.p50_ms));
        figures.push(fig("p90 latency", "ms", |p| p.p90_ms));
        figures.push(p99);
        figures.push(fig("max latency", "ms", |p| p.max_ms));
        figures.push(loss);
        figures.push(cpu);
        figures.push(fig("server RSS", "MiB", |p| p.rss_mib));
        figures.push(fig("subscribers connected at start", "", |p| {
            p.subscribers as f64
        }));
    }
    if let Some((mode, phases)) = &other_loop {
        let name: &'static str = match mode {
            PeerLoop::Uv => "uWS uv loop",
            PeerLoop::Asyncio => "uWS asyncio loop",
        };
        for (rate, phase) in phases {
            let label = match rate {
                Some(r) => format!("{r} msg/s"),
                None => "saturation".to_owned(),
            };
            let subs = s.subscribers;
            let fig = |what: &str, unit: &'static str, value: f64| {
                Figure::new("fanout", format!("{name}: 1->{subs} {label}: {what}"), unit)
                    .peer(name, Some(value))
            };
            figures.push(fig("deliveries/s", "1/s", phase.deliveries_per_sec));
            figures.push(fig("p50 latency", "ms", phase.p50_ms));
            figures.push(fig("p99 latency", "ms", phase.p99_ms));
            figures.push(fig("loss", "%", phase.loss * 100.0));
            figures.push(fig(
                "server CPU per delivery",
                "µs",
                phase.cpu_s_per_million,
            ));
        }
    }
    Ok(figures)
}

async fn rooms(settings: &Settings, programs: &Programs) -> anyhow::Result<Vec<Figure>> {
    let s = &settings.rooms;
    let measure = |server: Server| async move {
        let steps = pubsub::many_rooms(&server, s).await;
        server.stop().await;
        steps
    };
    let (natter, _) = measure(servers::start(Kind::Natter, programs).await?).await?;
    let peer = on_peer(programs, measure).await?.map(|(steps, _)| steps);
    let conns = s.rooms * s.members;
    // The best step that kept p99 within the limit without loss.
    let best = |steps: &[pubsub::RoomsStep]| {
        steps
            .iter()
            .filter(|st| st.phase.p99_ms <= s.p99_limit_ms && st.phase.loss == 0.0)
            .map(|st| st.phase.deliveries_per_sec)
            .fold(0.0, f64::max)
    };
    let mut figures = vec![
        Figure::new(
            "rooms",
            format!(
                "{conns} conns, {} rooms: deliveries/s at p99 <= {} ms",
                s.rooms, s.p99_limit_ms
            ),
            "1/s",
        )
        .natter(best(&natter))
        .peer("uWS", peer.as_deref().map(best))
        .target(Target::RatioAtLeast(0.75)),
    ];
    // Each step both servers ran, for the record.
    for (i, step) in natter.iter().enumerate() {
        let other = peer.as_ref().and_then(|p| p.get(i));
        let label = format!("{:.0} publishes/s", step.publishes_per_sec);
        figures.push(
            Figure::new("rooms", format!("{label}: p99 latency"), "ms")
                .natter(step.phase.p99_ms)
                .peer("uWS", other.map(|o| o.phase.p99_ms)),
        );
        figures.push(
            Figure::new("rooms", format!("{label}: loss"), "%")
                .natter(step.phase.loss * 100.0)
                .peer("uWS", other.map(|o| o.phase.loss * 100.0)),
        );
        figures.push(
            Figure::new("rooms", format!("{label}: server CPU per delivery"), "µs")
                .natter(step.phase.cpu_s_per_million)
                .peer("uWS", other.map(|o| o.phase.cpu_s_per_million)),
        );
    }
    Ok(figures)
}

/// Connections opened and kept; the server's RSS before and after.
struct Opened {
    per_connection_kib: f64,
    handshakes_per_sec: f64,
    rss_mib: f64,
}

async fn open_and_hold(server: Server, count: usize, concurrency: usize) -> anyhow::Result<Opened> {
    // Let the process settle after start-up (and login) before the baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_bytes();
    let (connections, seconds) =
        pubsub::open_many(&server, count, concurrency, |_, ws| async move { Ok(ws) }).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_bytes();
    let opened = Opened {
        per_connection_kib: (after - before) / 1024.0 / connections.len().max(1) as f64,
        handshakes_per_sec: connections.len() as f64 / seconds.max(1e-6),
        rss_mib: after / (1024.0 * 1024.0),
    };
    drop(connections);
    server.stop().await;
    Ok(opened)
}

async fn idle(settings: &Settings, programs: &Programs) -> anyhow::Result<Vec<Figure>> {
    let n = settings.idle_connections;
    // Paced (64 at a time) so the figure is memory at rest, not the storm's peak.
    let natter = open_and_hold(servers::start(Kind::Natter, programs).await?, n, 64).await?;
    let peer = on_peer(programs, |server| open_and_hold(server, n, 64)).await?;
    Ok(vec![
        Figure::new("idle", format!("RSS per idle connection ({n})"), "KiB")
            .natter(natter.per_connection_kib)
            .peer("uWS", peer_value(&peer, |p| p.per_connection_kib))
            .target(Target::AtMost(4.0))
            .goal("idle-memory"),
        Figure::new(
            "idle",
            format!("server RSS with {n} idle connections"),
            "MiB",
        )
        .natter(natter.rss_mib)
        .peer("uWS", peer_value(&peer, |p| p.rss_mib)),
    ])
}

async fn storm(settings: &Settings, programs: &Programs) -> anyhow::Result<Vec<Figure>> {
    let n = settings.storm_connections;
    let c = settings.storm_concurrency;
    let natter = open_and_hold(servers::start(Kind::Natter, programs).await?, n, c).await?;
    let peer = on_peer(programs, |server| open_and_hold(server, n, c)).await?;
    Ok(vec![
        Figure::new(
            "storm",
            format!("handshakes/s, {n} connections, {c} at a time (natter: with auth)"),
            "1/s",
        )
        .natter(natter.handshakes_per_sec)
        .peer("uWS", peer_value(&peer, |p| p.handshakes_per_sec)),
    ])
}

/// Durable-send measurements at one client count.
#[derive(Debug, Clone)]
struct Durable {
    per_sec: f64,
    /// CPU time of the writing process per acked send (natter: the server; raw: this process,
    /// clients included, so an upper bound for sled's).
    cpu_ms_per_send: f64,
    p50_ms: f64,
    p99_ms: f64,
    disk_bytes_per_message: f64,
}

fn durable_of(
    count: u64,
    seconds: f64,
    cpu_seconds: f64,
    latencies: &hdrhistogram::Histogram<u64>,
    disk: f64,
) -> Durable {
    let q = |quantile: f64| {
        if latencies.is_empty() {
            f64::NAN
        } else {
            latencies.value_at_quantile(quantile) as f64 / 1000.0
        }
    };
    Durable {
        per_sec: count as f64 / seconds.max(1e-6),
        cpu_ms_per_send: cpu_seconds * 1000.0 / count.max(1) as f64,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        disk_bytes_per_message: disk / count.max(1) as f64,
    }
}

/// natter: `clients` connections each sending `Send` to a persistent room and waiting for its
/// `Ack` (sent only after the group commit's flush), for `phase`.
async fn durable_natter(
    server: &Server,
    clients: usize,
    phase: Duration,
) -> anyhow::Result<Durable> {
    let room = format!("durable-{clients}");
    let (status, body) = servers::http(
        server.addr,
        "POST",
        "/api/v1/rooms",
        Some(&server.token),
        Some(&serde_json::json!({"name": room, "persistent": true}).to_string()),
    )
    .await?;
    if status != 201 && status != 200 {
        bail!("creating room {room}: {status} {body}");
    }
    let (connections, _) =
        pubsub::open_many(server, clients, 64, |_, ws| async move { Ok(ws) }).await?;
    let data_dir = server
        .data_dir
        .as_ref()
        .context("natter has a data dir")?
        .path()
        .to_path_buf();
    let disk_before = servers::disk_bytes(&data_dir);
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();
    let deadline = started + phase;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, mut ws) in connections {
        let template = Template::send(&room, &format!("c{index}"))?;
        tasks.spawn(async move {
            let mut latencies = pubsub::histogram();
            let mut acked: u64 = 0;
            while Instant::now() < deadline {
                let sent_at = Instant::now();
                ws.send(template.stamped(client::now_micros())).await?;
                client::read_until(&mut ws, "\"status\":\"stored\"").await?;
                let micros = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                latencies.saturating_record(micros.max(1));
                acked += 1;
            }
            let _ = ws.close(None).await;
            anyhow::Ok((acked, latencies))
        });
    }
    let mut total = 0;
    let mut merged = pubsub::histogram();
    while let Some(joined) = tasks.join_next().await {
        let (acked, latencies) = joined??;
        total += acked;
        let _ = merged.add(&latencies);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds() - cpu_before;
    let disk = servers::disk_bytes(&data_dir).saturating_sub(disk_before) as f64;
    Ok(durable_of(total, seconds, cpu, &merged, disk))
}

/// One write for the raw sled baseline's writer.
struct RawWrite {
    key: [u8; 16],
    value: Arc<[u8]>,
    done: oneshot::Sender<()>,
}

/// The raw storage baseline: the same group commit natter's writer does (one task inserts a
/// batch of concurrent writes, flushes once, then answers each), straight on sled, with
/// `clients` tasks each writing a message-sized value and waiting for its flush.
async fn durable_raw_sled(clients: usize, phase: Duration) -> anyhow::Result<Durable> {
    let dir = tempfile::Builder::new()
        .prefix("natter-bench-sled-")
        .tempdir()?;
    let store = natter::config::StoreConfig::default();
    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .cache_capacity(store.cache_capacity_mb.saturating_mul(1024 * 1024))
        .flush_every_ms(None)
        .open()?;
    let tree = db.open_tree("messages")?;
    let max_batch = store.max_batch.max(1);
    let (tx, mut rx) = mpsc::channel::<RawWrite>(4096);
    let writer_db = db.clone();
    let writer = tokio::spawn(async move {
        let mut pending = Vec::with_capacity(max_batch);
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some(write) = next.take() {
                tree.insert(write.key, &*write.value)?;
                pending.push(write.done);
                if pending.len() >= max_batch {
                    break;
                }
                next = rx.try_recv().ok();
            }
            writer_db.flush_async().await?;
            for done in pending.drain(..) {
                let _ = done.send(());
            }
        }
        anyhow::Ok(())
    });
    // About what natter keeps per message: the Message record's JSON (~100-byte content,
    // author, ids, times).
    let value: Arc<[u8]> = Arc::from(vec![b'x'; 260]);
    let disk_before = servers::disk_bytes(dir.path());
    let cpu_before = servers::cpu_seconds(std::process::id()).unwrap_or(f64::NAN);
    let started = Instant::now();
    let deadline = started + phase;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let tx = tx.clone();
        let value = value.clone();
        let client = u64::try_from(client).unwrap_or(u64::MAX);
        tasks.spawn(async move {
            let mut latencies = pubsub::histogram();
            let mut written: u64 = 0;
            while Instant::now() < deadline {
                let sent_at = Instant::now();
                let mut key = [0u8; 16];
                key[..8].copy_from_slice(&client.to_be_bytes());
                key[8..].copy_from_slice(&written.to_be_bytes());
                let (done, flushed) = oneshot::channel();
                tx.send(RawWrite {
                    key,
                    value: value.clone(),
                    done,
                })
                .await
                .map_err(|_| anyhow::anyhow!("raw writer stopped"))?;
                flushed.await?;
                let micros = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                latencies.saturating_record(micros.max(1));
                written += 1;
            }
            anyhow::Ok((written, latencies))
        });
    }
    drop(tx);
    let mut total = 0;
    let mut merged = pubsub::histogram();
    while let Some(joined) = tasks.join_next().await {
        let (written, latencies) = joined??;
        total += written;
        let _ = merged.add(&latencies);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = servers::cpu_seconds(std::process::id()).unwrap_or(f64::NAN) - cpu_before;
    writer.await??;
    db.flush_async().await?;
    let disk = servers::disk_bytes(dir.path()).saturating_sub(disk_before) as f64;
    Ok(durable_of(total, seconds, cpu, &merged, disk))
}

async fn durable(settings: &Settings, programs: &Programs) -> anyhow::Result<Vec<Figure>> {
    let server = servers::start(Kind::Natter, programs).await?;
    let mut figures = Vec::new();
    for &clients in &settings.durable_clients {
        let natter = durable_natter(&server, clients, settings.durable_phase).await?;
        let raw = durable_raw_sled(clients, settings.durable_phase).await?;
        let label = format!("{clients} clients");
        let mut per_sec = Figure::new("durable", format!("{label}: acked sends/s"), "1/s")
            .natter(natter.per_sec)
            .peer("raw sled", Some(raw.per_sec));
        let mut p99 = Figure::new("durable", format!("{label}: p99 ack latency"), "ms")
            .natter(natter.p99_ms)
            .peer("raw sled", Some(raw.p99_ms));
        if clients == 64 {
            per_sec = per_sec.target(Target::RatioAtLeast(1.0));
            p99 = p99.target(Target::AtMost(5.0));
            figures.push(
                Figure::new(
                    "durable",
                    format!("{label}: acked sends/s (absolute)"),
                    "1/s",
                )
                .natter(natter.per_sec)
                .target(Target::AtLeast(25_000.0)),
            );
        }
        figures.push(per_sec);
        figures.push(
            Figure::new("durable", format!("{label}: p50 ack latency"), "ms")
                .natter(natter.p50_ms)
                .peer("raw sled", Some(raw.p50_ms)),
        );
        figures.push(p99);
        figures.push(
            Figure::new("durable", format!("{label}: CPU per acked send"), "ms")
                .natter(natter.cpu_ms_per_send)
                .peer("raw sled", Some(raw.cpu_ms_per_send)),
        );
        figures.push(
            Figure::new(
                "durable",
                format!("{label}: bytes on disk per message"),
                "B",
            )
            .natter(natter.disk_bytes_per_message)
            .peer("raw sled", Some(raw.disk_bytes_per_message)),
        );
    }
    server.stop().await;
    Ok(figures)
}

/// Spawns a server and times the first WebSocket handshake it completes; then its idle RSS.
async fn cold_start(kind: Kind, programs: &Programs) -> anyhow::Result<(f64, f64)> {
    let mut server = match kind {
        Kind::Natter => {
            // A data dir that already holds its user: a restart, not a first install (whose
            // bootstrap admin costs an argon2 hash).
            let dir = servers::natter_data_dir(&programs.natter).await?;
            servers::spawn_natter(&programs.natter, dir)?.0
        }
        Kind::Uws => {
            let peer = programs.peer.as_ref().context("no peer")?;
            servers::spawn_peer(peer, peer.loop_mode)?
        }
    };
    let deadline = server.spawned + Duration::from_secs(30);
    let first = loop {
        if client::handshake(server.addr, "/ws").await.is_ok() {
            break server.spawned.elapsed();
        }
        if Instant::now() > deadline {
            bail!("{} never completed a handshake", kind.label());
        }
        // Polling at 1 ms resolution is the granularity of the figure.
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    servers::wait_listening(&mut server, Duration::from_secs(1)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = server.rss_bytes() / (1024.0 * 1024.0);
    server.stop().await;
    Ok((first.as_secs_f64() * 1000.0, rss))
}

fn file_mib(path: &Path) -> Option<f64> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
}

async fn startup(programs: &Programs) -> anyhow::Result<Vec<Figure>> {
    let (natter_ms, natter_rss) = cold_start(Kind::Natter, programs).await?;
    let peer = match programs.peer {
        Some(_) => Some(cold_start(Kind::Uws, programs).await?),
        None => None,
    };
    // The peer's native code: socketify's bundled uWS library (the interpreter not counted).
    let peer_lib = programs.peer.as_ref().and_then(|peer| {
        let venv = peer.python.parent()?.parent()?;
        let lib = std::fs::read_dir(venv.join("lib"))
            .ok()?
            .flatten()
            .next()?
            .path();
        file_mib(&lib.join("site-packages/socketify/libsocketify_linux_amd64.so"))
    });
    Ok(vec![
        Figure::new("startup", "stripped binary size", "MiB")
            .natter(file_mib(&programs.natter).unwrap_or(f64::NAN))
            .peer("uWS lib", peer_lib)
            .target(Target::AtMost(8.0)),
        Figure::new("startup", "cold start to first WebSocket handshake", "ms")
            .natter(natter_ms)
            .peer("uWS", peer.map(|p| p.0))
            .target(Target::AtMost(50.0)),
        Figure::new("startup", "idle RSS", "MiB")
            .natter(natter_rss)
            .peer("uWS", peer.map(|p| p.1))
            .target(Target::AtMost(10.0)),
    ])
}

/// argon2 with natter's parameters, measured in this process between the login phases: one
/// verification's time, and the verifications per second `parallel` tasks reach together (on a
/// busy machine that is less than `parallel` / time). Sampled before every phase and after the
/// last, so the reference sees the same machine as natter does (one measurement up front made
/// natter look faster than argon2 itself when the load changed during the scenario).
struct Argon2Reference {
    hasher: natter::auth::Hasher,
    phc: String,
    times: Vec<f64>,
    rates: Vec<f64>,
}

impl Argon2Reference {
    const PASSWORD: &str = "bench-password-1";

    async fn new() -> anyhow::Result<Argon2Reference> {
        let hasher = natter::auth::Hasher::new(&natter::config::AuthConfig::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let phc = hasher
            .hash(Self::PASSWORD.to_owned())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Argon2Reference {
            hasher,
            phc,
            times: Vec::new(),
            rates: Vec::new(),
        })
    }

    async fn verify(hasher: natter::auth::Hasher, phc: String) -> anyhow::Result<()> {
        let ok = hasher
            .verify(Self::PASSWORD.to_owned(), Some(phc))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !ok {
            bail!("argon2 verification failed");
        }
        Ok(())
    }

    /// Three verifications one after the other, then `parallel` tasks of two each.
    async fn sample(&mut self, parallel: usize) -> anyhow::Result<()> {
        const EACH: usize = 2;
        for _ in 0..3 {
            let started = Instant::now();
            Self::verify(self.hasher.clone(), self.phc.clone()).await?;
            self.times.push(started.elapsed().as_secs_f64());
        }
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..parallel.max(1) {
            let (hasher, phc) = (self.hasher.clone(), self.phc.clone());
            tasks.spawn(async move {
                for _ in 0..EACH {
                    Self::verify(hasher.clone(), phc.clone()).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
        self.rates
            .push((parallel.max(1) * EACH) as f64 / started.elapsed().as_secs_f64());
        Ok(())
    }

    /// One verification's time (median of every sample) and the parallel rate (median).
    fn figures(&self) -> anyhow::Result<(f64, f64)> {
        let time = crate::report::median(&self.times).context("no argon2 timing")?;
        let rate = crate::report::median(&self.rates).context("no argon2 rate")?;
        Ok((time, rate))
    }
}

async fn logins(settings: &Settings, programs: &Programs) -> anyhow::Result<Vec<Figure>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut reference = Argon2Reference::new().await?;
    let server = servers::start(Kind::Natter, programs).await?;
    let mut phases = Vec::new();
    for &clients in &settings.login_clients {
        reference.sample(cores).await?;
        let started = Instant::now();
        let deadline = started + settings.login_phase;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let addr = server.addr;
            tasks.spawn(async move {
                let mut count: u64 = 0;
                while Instant::now() < deadline {
                    servers::login(addr).await?;
                    count += 1;
                }
                anyhow::Ok(count)
            });
        }
        let mut total = 0;
        while let Some(joined) = tasks.join_next().await {
            total += joined??;
        }
        phases.push((clients, total as f64 / started.elapsed().as_secs_f64()));
    }
    reference.sample(cores).await?;
    // Every login took argon2's working memory (19 MiB); what an idle server keeps of it after
    // hundreds of them is its resident size now.
    let rss_after = server.rss_bytes() / (1024.0 * 1024.0);
    server.stop().await;

    let (hash, parallel_rate) = reference.figures()?;
    let mut figures = vec![
        Figure::new("logins", "argon2 verify time (natter's parameters)", "ms")
            .natter(hash * 1000.0),
        Figure::new(
            "logins",
            format!("argon2 verifies/s on {cores} tasks, measured"),
            "1/s",
        )
        .natter(parallel_rate)
        .peer("cores/argon2", Some(cores as f64 / hash)),
    ];
    figures.push(
        Figure::new("logins", "server RSS after the login phases, idle", "MiB").natter(rss_after),
    );
    for (clients, per_sec) in phases {
        let ideal = clients.min(cores) as f64 / hash;
        let mut figure = Figure::new("logins", format!("{clients} clients: logins/s"), "1/s")
            .natter(per_sec)
            .peer("min(clients,cores)/argon2", Some(ideal));
        if clients >= cores {
            figures.push(
                Figure::new(
                    "logins",
                    format!("{clients} clients: logins/s vs measured parallel argon2"),
                    "1/s",
                )
                .natter(per_sec)
                .peer("argon2 on cores", Some(parallel_rate)),
            );
            figure = figure.target(Target::RatioAtLeast(0.9));
        }
        figures.push(figure);
    }
    Ok(figures)
}
