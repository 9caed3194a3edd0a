//! The scenarios of issues #6 and #16 and the figures each one reports. Issue #6: fanout, many
//! rooms (topics, beside uWS), idle memory, durable sends beside raw sled, binary size / cold
//! start / idle RSS, logins against cores / argon2 time, connect storm. Issue #16 (real use,
//! natter's own rooms): durable sends of many users with client_msg_id, a busy team room,
//! 1,000 chat rooms, a reconnect storm resuming with `since`, 100,000 idle connections. Each
//! starts its servers fresh, is bounded in count and time, and stops them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::SinkExt as _;
use tokio::sync::{mpsc, oneshot};

use crate::chat::{self, ChatRoomsSettings, ManySettings, ResumeSettings};
use crate::client::{self, Template, Ws};
use crate::provision;
use crate::pubsub::{self, FanoutSettings, RoomsSettings};
use crate::report::{Figure, Target};
use crate::servers::{self, Kind, NatterOptions, Programs, Server};

/// Every scenario, in the order the suite runs them.
pub const ALL: &[&str] = &[
    "fanout",
    "rooms",
    "chat-rooms",
    "idle",
    "idle-100k",
    "durable",
    "durable-users",
    "busy-room",
    "startup",
    "logins",
    "storm",
    "resume-storm",
];

/// Sizes of the team scenarios: `connections` connections of `users` users.
#[derive(Debug, Clone)]
pub struct TeamSettings {
    pub connections: usize,
    pub users: usize,
    pub phase: Duration,
}

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
    pub durable_users: TeamSettings,
    pub busy_room: TeamSettings,
    pub chat_rooms: ChatRoomsSettings,
    pub resume: ResumeSettings,
    pub many: ManySettings,
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
            durable_users: TeamSettings {
                connections: 64,
                users: 13,
                phase: Duration::from_secs(5),
            },
            busy_room: TeamSettings {
                connections: 64,
                users: 13,
                phase: Duration::from_secs(5),
            },
            chat_rooms: ChatRoomsSettings {
                rooms: 1000,
                members: 10,
                users: 100,
                sample_every: 10,
                first_rate: 1000.0,
                step_factor: 1.5,
                max_steps: 8,
                phase: Duration::from_secs(4),
                p99_limit_ms: 50.0,
            },
            resume: ResumeSettings {
                clients: 10_000,
                rooms: 100,
                senders: 10,
                rate: 200.0,
                before: Duration::from_secs(3),
                after: Duration::from_secs(2),
                resume_limit: Duration::from_secs(60),
            },
            many: ManySettings {
                connections: 100_000,
                // Below natter's listen backlog (128 today): more handshakes in flight than
                // that overflow it, and each overflow is a 1 s SYN retransmit.
                concurrency: 100,
                per_source: 20_000,
                open_limit: Duration::from_secs(300),
                ping_concurrency: 256,
                ping_limit: Duration::from_secs(120),
            },
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
            durable_users: TeamSettings {
                connections: 8,
                users: 3,
                phase: Duration::from_millis(500),
            },
            busy_room: TeamSettings {
                connections: 8,
                users: 3,
                phase: Duration::from_millis(500),
            },
            chat_rooms: ChatRoomsSettings {
                rooms: 10,
                members: 10,
                users: 10,
                sample_every: 5,
                first_rate: 100.0,
                step_factor: 2.0,
                max_steps: 1,
                phase: Duration::from_millis(500),
                p99_limit_ms: 50.0,
            },
            resume: ResumeSettings {
                clients: 200,
                rooms: 4,
                senders: 2,
                rate: 40.0,
                before: Duration::from_millis(500),
                after: Duration::from_millis(300),
                resume_limit: Duration::from_secs(20),
            },
            many: ManySettings {
                connections: 2000,
                concurrency: 64,
                // Two source addresses, as the full size uses several.
                per_source: 1000,
                open_limit: Duration::from_secs(30),
                ping_concurrency: 64,
                ping_limit: Duration::from_secs(20),
            },
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
        "durable-users" => durable_users(settings, programs).await,
        "busy-room" => busy_room(settings, programs).await,
        "chat-rooms" => chat_rooms(settings, programs).await,
        "resume-storm" => resume_storm(settings, programs).await,
        "idle-100k" => idle_many(settings, programs).await,
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
    /// Acks marked `duplicate: true` (with a new client_msg_id on every send: none expected).
    duplicates: u64,
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
        duplicates: 0,
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
    durable_loop(server, connections, &room, phase, false).await
}

/// Each connection sends `Send` to `room` and waits for its `Ack` (sent only after the group
/// commit's flush), for `phase`; with `idempotent`, every Send has a new `client_msg_id`.
async fn durable_loop(
    server: &Server,
    connections: Vec<(usize, Ws)>,
    room: &str,
    phase: Duration,
    idempotent: bool,
) -> anyhow::Result<Durable> {
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
        let template = if idempotent {
            Template::send_idempotent(room, &format!("c{index}"))?
        } else {
            Template::send(room, &format!("c{index}"))?
        };
        tasks.spawn(async move {
            let mut latencies = pubsub::histogram();
            let mut acked: u64 = 0;
            let mut duplicates: u64 = 0;
            while Instant::now() < deadline {
                let sent_at = Instant::now();
                ws.send(template.stamped_counted(client::now_micros(), acked))
                    .await?;
                let ack = client::read_until(&mut ws, "\"status\":\"stored\"").await?;
                let micros = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                latencies.saturating_record(micros.max(1));
                acked += 1;
                duplicates += u64::from(ack.contains("\"duplicate\":true"));
            }
            let _ = ws.close(None).await;
            anyhow::Ok((acked, duplicates, latencies))
        });
    }
    let mut total = 0;
    let mut duplicates = 0;
    let mut merged = pubsub::histogram();
    while let Some(joined) = tasks.join_next().await {
        let (acked, dups, latencies) = joined??;
        total += acked;
        duplicates += dups;
        let _ = merged.add(&latencies);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds() - cpu_before;
    let disk = servers::disk_bytes(&data_dir).saturating_sub(disk_before) as f64;
    let mut durable = durable_of(total, seconds, cpu, &merged, disk);
    durable.duplicates = duplicates;
    Ok(durable)
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
        // One user owning the room, no client_msg_id, no member joined: issue #6's shape. The
        // targets are on durable-users, the shape a team has (issue #16).
        let label = format!("{clients} clients of 1 user");
        let per_sec = Figure::new("durable", format!("{label}: acked sends/s"), "1/s")
            .natter(natter.per_sec)
            .peer("raw sled", Some(raw.per_sec));
        let p99 = Figure::new("durable", format!("{label}: p99 ack latency"), "ms")
            .natter(natter.p99_ms)
            .peer("raw sled", Some(raw.p99_ms));
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
            servers::spawn_peer(peer)?
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

/// natter with the admin (to create users over its API) and limits of its own.
async fn natter_for_team(programs: &Programs) -> anyhow::Result<Server> {
    servers::start_natter(
        programs,
        &NatterOptions {
            admin: true,
            env: Vec::new(),
        },
    )
    .await
}

/// (issue #16) Durable sends as a team makes them: 64 connections of 13 users (created over the
/// admin API, each logged in), into one public persistent room owned by another user, every
/// Send with a new client_msg_id, the senders not joined (they become members by posting, as
/// natter does for a public room). Beside: the same with one user holding all 64 connections,
/// and the raw sled group commit with as many writers, measured in the same scenario.
async fn durable_users(settings: &Settings, programs: &Programs) -> anyhow::Result<Vec<Figure>> {
    let s = &settings.durable_users;
    let server = natter_for_team(programs).await?;
    let users = provision::users(&server, "team", s.users).await?;
    provision::room(server.addr, &server.token, "team", "public").await?;
    let paths = (0..s.connections)
        .map(|i| server.ws_path_with(&users[i % users.len()].token))
        .collect();
    let (connections, _) =
        pubsub::open_many_paths(&server, paths, 64, |_, ws| async move { Ok(ws) }).await?;
    let team = durable_loop(&server, connections, "team", s.phase, true).await?;

    provision::room(server.addr, &server.token, "team-one", "public").await?;
    let (connections, _) =
        pubsub::open_many(&server, s.connections, 64, |_, ws| async move { Ok(ws) }).await?;
    let one = durable_loop(&server, connections, "team-one", s.phase, true).await?;
    server.stop().await;
    let raw = durable_raw_sled(s.connections, s.phase).await?;

    let label = format!(
        "{} conns of {} users, client_msg_id",
        s.connections, s.users
    );
    let one_label = format!("{} conns of 1 user, client_msg_id", s.connections);
    let raw_fig = |name: String, unit: &'static str, natter: f64, raw: f64| {
        Figure::new("durable-users", name, unit)
            .natter(natter)
            .peer("raw sled", Some(raw))
    };
    Ok(vec![
        raw_fig(
            format!("{label}: acked sends/s"),
            "1/s",
            team.per_sec,
            raw.per_sec,
        )
        .target(Target::RatioAtLeast(1.0))
        .goal("durable-users"),
        Figure::new(
            "durable-users",
            format!("{label}: acked sends/s (absolute)"),
            "1/s",
        )
        .natter(team.per_sec)
        .target(Target::AtLeast(25_000.0))
        .goal("durable-users"),
        raw_fig(
            format!("{label}: p50 ack latency"),
            "ms",
            team.p50_ms,
            raw.p50_ms,
        )
        .goal("durable-users"),
        raw_fig(
            format!("{label}: p99 ack latency"),
            "ms",
            team.p99_ms,
            raw.p99_ms,
        )
        .target(Target::AtMost(5.0))
        .goal("durable-users"),
        // raw sled: this whole process (its writers included) per write, an upper bound.
        raw_fig(
            format!("{label}: server CPU per ack"),
            "µs",
            team.cpu_ms_per_send * 1000.0,
            raw.cpu_ms_per_send * 1000.0,
        )
        .goal("durable-users"),
        Figure::new(
            "durable-users",
            format!("{label}: Acks marked duplicate"),
            "",
        )
        .natter(team.duplicates as f64)
        .target(Target::AtMost(0.0)),
        raw_fig(
            format!("{label}: bytes on disk per message"),
            "B",
            team.disk_bytes_per_message,
            raw.disk_bytes_per_message,
        ),
        raw_fig(
            format!("{one_label}: acked sends/s"),
            "1/s",
            one.per_sec,
            raw.per_sec,
        ),
        raw_fig(
            format!("{one_label}: p99 ack latency"),
            "ms",
            one.p99_ms,
            raw.p99_ms,
        ),
        raw_fig(
            format!("{one_label}: server CPU per ack"),
            "µs",
            one.cpu_ms_per_send * 1000.0,
            raw.cpu_ms_per_send * 1000.0,
        ),
    ])
}

/// (issue #16) A busy team room: the same 64 connections of 13 users, every one joined, each
/// sending (closed loop) while every message reaches all 64 members.
async fn busy_room(settings: &Settings, programs: &Programs) -> anyhow::Result<Vec<Figure>> {
    let s = &settings.busy_room;
    let server = natter_for_team(programs).await?;
    let users = provision::users(&server, "team", s.users).await?;
    let r = chat::busy_room(&server, &users, s.connections, s.phase).await?;
    server.stop().await;
    let label = format!("{} joined conns of {} users", r.joined, s.users);
    let fig = |name: &str, unit: &'static str, value: f64| {
        Figure::new("busy-room", format!("{label}: {name}"), unit).natter(value)
    };
    Ok(vec![
        fig("acked sends/s", "1/s", r.sends_per_sec)
            .target(Target::AtLeast(10_000.0))
            .goal("busy-room"),
        fig("deliveries/s", "1/s", r.deliveries_per_sec).goal("busy-room"),
        fig("ack p50", "ms", r.ack_p50_ms).goal("busy-room"),
        fig("ack p99", "ms", r.ack_p99_ms)
            .target(Target::AtMost(20.0))
            .goal("busy-room"),
        fig("delivery p50", "ms", r.delivery_p50_ms).goal("busy-room"),
        fig("delivery p99", "ms", r.delivery_p99_ms).goal("busy-room"),
        fig("loss", "%", r.loss * 100.0).target(Target::AtMost(0.0)),
        fig("server CPU per acked send", "µs", r.cpu_us_per_send),
        fig("server CPU per delivery", "µs", r.cpu_us_per_delivery),
        fig("Acks marked duplicate", "", r.duplicates as f64).target(Target::AtMost(0.0)),
        fig("connections closed by the server", "", r.ended as f64),
        fig("Error replies", "", r.errors as f64),
    ])
}

/// (issue #16) 1,000 private persistent rooms of 10 members (100 users; each room created by
/// its first member, who adds the others over HTTP), every member's connection joined, every
/// member sending with client_msg_id; steps of rising rate. natter only: the topic-based
/// `rooms` scenario is the one beside uWS.
async fn chat_rooms(settings: &Settings, programs: &Programs) -> anyhow::Result<Vec<Figure>> {
    let s = &settings.chat_rooms;
    let server = natter_for_team(programs).await?;
    let users = provision::users(&server, "member", s.users).await?;
    let steps = chat::chat_rooms(&server, &users, s).await?;
    server.stop().await;
    let conns = s.rooms * s.members;
    let passing = |st: &&chat::ChatStep| st.phase.p99_ms <= s.p99_limit_ms && st.phase.loss == 0.0;
    let best = steps
        .iter()
        .filter(passing)
        .map(|st| st.phase.deliveries_per_sec)
        .fold(0.0, f64::max);
    let best_sends = steps
        .iter()
        .filter(passing)
        .map(|st| st.sends_per_sec)
        .fold(0.0, f64::max);
    let head = format!("{} rooms of {} joined members", s.rooms, s.members);
    let mut figures = vec![
        Figure::new(
            "chat-rooms",
            format!(
                "{head} ({conns} conns, {} users): deliveries/s at delivery p99 <= {} ms",
                s.users, s.p99_limit_ms
            ),
            "1/s",
        )
        .natter(best),
        Figure::new(
            "chat-rooms",
            format!("{head}: sends/s offered at that step"),
            "1/s",
        )
        .natter(best_sends),
    ];
    for step in &steps {
        let label = format!("{:.0} sends/s", step.sends_per_sec);
        let fig = |name: &str, unit: &'static str, value: f64| {
            Figure::new("chat-rooms", format!("{label}: {name}"), unit).natter(value)
        };
        figures.push(fig("sends/s made", "1/s", step.sent_per_sec));
        figures.push(fig("deliveries/s", "1/s", step.phase.deliveries_per_sec));
        figures.push(fig("delivery p50", "ms", step.phase.p50_ms));
        figures.push(fig("delivery p99", "ms", step.phase.p99_ms));
        figures.push(fig("ack p99", "ms", step.ack_p99_ms));
        figures.push(fig("loss", "%", step.phase.loss * 100.0));
        figures.push(fig(
            "server CPU per delivery",
            "µs",
            step.phase.cpu_s_per_million,
        ));
        figures.push(fig("Error replies", "", step.errors as f64));
    }
    Ok(figures)
}

/// (issue #16) Reconnect storm: clients joined to rooms all drop at once and reconnect at once,
/// resuming with `Join` + `since` while messages go on; none may be lost or duplicated.
async fn resume_storm(settings: &Settings, programs: &Programs) -> anyhow::Result<Vec<Figure>> {
    let s = &settings.resume;
    let server = servers::start(Kind::Natter, programs).await?;
    let r = chat::resume_storm(&server, s).await?;
    server.stop().await;
    if let Some(e) = &r.first_error {
        eprintln!("natter-bench: resume-storm: a client not resumed: {e}");
    }
    let label = format!("{} clients in {} rooms", s.clients, s.rooms);
    let fig = |name: &str, unit: &'static str, value: f64| {
        Figure::new("resume-storm", format!("{label}: {name}"), unit).natter(value)
    };
    Ok(vec![
        fig("clients resumed", "", r.resumed as f64)
            .target(Target::AtLeast(r.clients as f64))
            .goal("resume-storm"),
        fig(
            "time from the drop until all resumed",
            "s",
            r.all_resumed_secs,
        )
        .goal("resume-storm"),
        fig("resume time p50", "ms", r.resume_p50_ms),
        fig("resume time p99", "ms", r.resume_p99_ms),
        fig("messages lost", "", r.lost as f64)
            .target(Target::AtMost(0.0))
            .goal("resume-storm"),
        fig("messages duplicated", "", r.duplicated as f64)
            .target(Target::AtMost(0.0))
            .goal("resume-storm"),
        fig("replays incomplete", "", r.incomplete as f64).target(Target::AtMost(0.0)),
        fig(
            if r.peak_from_kernel {
                "server peak RSS during the storm (VmHWM)"
            } else {
                "server peak RSS during the storm (sampled every 10 ms)"
            },
            "MiB",
            r.peak_rss_mib,
        )
        .goal("resume-storm"),
        fig("server RSS before the drop", "MiB", r.rss_before_mib),
        fig(
            &format!("messages stored ({:.0}/s offered)", s.rate),
            "",
            r.stored as f64,
        ),
        fig(
            "messages stored between the drop and the last resume",
            "",
            r.stored_during_storm as f64,
        ),
        fig("messages replayed on resume", "", r.replayed as f64),
        fig("deliveries checked", "", r.deliveries_checked as f64),
        fig("reconnect attempts retried", "", r.reconnect_retries as f64),
    ])
}

/// (issue #16) 100,000 idle authenticated connections (one user), from several loopback source
/// addresses; natter's connection limits raised for this server only.
async fn idle_many(settings: &Settings, programs: &Programs) -> anyhow::Result<Vec<Figure>> {
    let s = &settings.many;
    let limit = (s.connections + 1000).to_string();
    let server = servers::start_natter(
        programs,
        &NatterOptions {
            admin: false,
            env: vec![
                ("NATTER_WS_MAX_CONNECTIONS".to_owned(), limit.clone()),
                ("NATTER_WS_MAX_CONNECTIONS_PER_USER".to_owned(), limit),
            ],
        },
    )
    .await?;
    let r = chat::many_idle(&server, s).await;
    let mut server = server;
    let alive = server.alive();
    server.stop().await;
    let r = r?;
    if let Some(why) = &r.limit {
        eprintln!(
            "natter-bench: idle-100k: held {} of {} wanted: {why}",
            r.held, r.wanted
        );
    }
    if !alive {
        eprintln!("natter-bench: idle-100k: natter was no longer running at the end");
    }
    let label = format!("{} wanted", r.wanted);
    let fig = |name: &str, unit: &'static str, value: f64| {
        Figure::new("idle-100k", format!("{label}: {name}"), unit).natter(value)
    };
    let held = r.held as f64;
    Ok(vec![
        fig("connections held", "", held)
            .target(Target::AtLeast(r.wanted as f64))
            .goal("idle-100k"),
        fig("server RSS", "MiB", r.rss_mib)
            .target(Target::AtMost(600.0))
            .goal("idle-100k"),
        fig("RSS per connection", "KiB", r.per_connection_kib).goal("idle-100k"),
        fig(
            "RSS per 1,000 connections",
            "MiB",
            r.per_connection_kib * 1000.0 / 1024.0,
        ),
        fig(
            "connections not answering a Ping",
            "",
            (r.held - r.answered.min(r.held)) as f64,
        )
        .target(Target::AtMost(0.0))
        .goal("idle-100k"),
        fig(
            "handshakes/s while opening",
            "1/s",
            held / r.open_secs.max(1e-3),
        ),
        fig("seconds to Ping every connection", "s", r.ping_secs),
        fig("connections tried", "", r.attempted as f64),
        fig("connections failed", "", r.failed as f64),
        fig("source addresses", "", r.sources as f64),
        fig("server RSS before", "MiB", r.rss_before_mib),
        fig("load generator RSS", "MiB", r.generator_rss_mib),
        fig(
            "natter still running at the end",
            "",
            if alive { 1.0 } else { 0.0 },
        ),
    ])
}
