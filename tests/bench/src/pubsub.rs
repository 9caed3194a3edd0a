//! The pub/sub scenarios, driven the same way against natter and the uWS peer: (a) fanout, one
//! publisher to many subscribers of one topic at fixed rates and at saturation, and (b) many
//! rooms, every member of every room publishing. Latency is measured on a sample of the
//! subscribers (send timestamp in the payload); the rest only count what they drain.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Template, Ws};
use crate::servers::Server;

/// Latency histogram in microseconds (1 µs to 60 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds hdrhistogram accepts")
}

pub type SharedHistogram = Arc<Mutex<Histogram<u64>>>;

pub fn record(histogram: &SharedHistogram, micros: u64) {
    if let Ok(mut h) = histogram.lock() {
        h.saturating_record(micros.max(1));
    }
}

/// Takes (and resets) the merged histogram of the samplers.
pub fn take_merged(samplers: &[SharedHistogram]) -> Histogram<u64> {
    let mut merged = histogram();
    for sampler in samplers {
        if let Ok(mut h) = sampler.lock() {
            let _ = merged.add(&*h);
            h.reset();
        }
    }
    merged
}

/// Counters shared by the receiving tasks.
#[derive(Default)]
pub struct Counters {
    /// Deliveries received by all subscribers.
    pub received: AtomicU64,
    /// Connections that ended (closed by the server, or an error).
    pub ended: AtomicU64,
    /// Frames sent by publishers.
    pub sent: AtomicU64,
    /// Error frames received.
    pub errors: AtomicU64,
    /// Woken when deliveries arrive (the saturation publisher waits on it).
    pub progress: Notify,
}

/// What one measured phase gives.
#[derive(Debug, Clone)]
pub struct Phase {
    pub deliveries_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Fraction of the expected deliveries that never arrived.
    pub loss: f64,
    /// Server CPU seconds per million deliveries: microseconds per delivery.
    pub cpu_s_per_million: f64,
    pub rss_mib: f64,
    /// Subscribers still connected when the phase began.
    pub subscribers: u64,
}

impl Phase {
    /// The figures of a phase: `received` of `expected` deliveries over `seconds`, with the
    /// sampled latencies and the server's CPU seconds spent meanwhile.
    pub fn measured(
        received: u64,
        expected: u64,
        seconds: f64,
        latencies: &Histogram<u64>,
        cpu: f64,
        server: &Server,
        subscribers: u64,
    ) -> Phase {
        let expected = expected as f64;
        Phase {
            deliveries_per_sec: received as f64 / seconds,
            p50_ms: ms(latencies, 0.5),
            p90_ms: ms(latencies, 0.9),
            p99_ms: ms(latencies, 0.99),
            max_ms: ms(latencies, 1.0),
            loss: if expected > 0.0 {
                (1.0 - received as f64 / expected).max(0.0)
            } else {
                0.0
            },
            cpu_s_per_million: cpu / (received as f64 / 1e6).max(1e-9),
            rss_mib: server.rss_bytes() / (1024.0 * 1024.0),
            subscribers,
        }
    }
}

pub fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() {
        return f64::NAN;
    }
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// Opens `count` connections with at most `concurrency` handshakes in flight; each is set up by
/// `setup(index, ws)` before being returned. Returns the connections and the seconds it took.
pub async fn open_many<F, Fut>(
    server: &Server,
    count: usize,
    concurrency: usize,
    setup: F,
) -> anyhow::Result<(Vec<(usize, Ws)>, f64)>
where
    F: Fn(usize, Ws) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Ws>> + Send,
{
    let paths = vec![server.ws_path(); count];
    open_many_paths(server, paths, concurrency, setup).await
}

/// [`open_many`] with a path (and so a token) of its own for each connection.
pub async fn open_many_paths<F, Fut>(
    server: &Server,
    paths: Vec<String>,
    concurrency: usize,
    setup: F,
) -> anyhow::Result<(Vec<(usize, Ws)>, f64)>
where
    F: Fn(usize, Ws) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Ws>> + Send,
{
    let count = paths.len();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, path) in paths.into_iter().enumerate() {
        let permits = permits.clone();
        let setup = setup.clone();
        let addr = server.addr;
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let ws = client::connect_to(addr, &path).await?;
            let ws = setup(index, ws).await?;
            anyhow::Ok((index, ws))
        });
    }
    let mut opened = Vec::with_capacity(count);
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(pair)) => opened.push(pair),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(e.into());
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        anyhow::bail!(
            "{} of {count} connections failed; first: {e:#}",
            count - opened.len()
        );
    }
    opened.sort_by_key(|(index, _)| *index);
    Ok((opened, seconds))
}

/// A subscriber: drains its connection, counting deliveries; a sampled one also records the
/// latency of each.
async fn drain(
    mut ws: Ws,
    counters: Arc<Counters>,
    sampler: Option<SharedHistogram>,
    mut stop: watch::Receiver<bool>,
    notify_every: u64,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Some(sampler) = &sampler
                        && let Some(sent) = client::stamp_of(text.as_bytes())
                    {
                        record(sampler, client::now_micros().saturating_sub(sent));
                    }
                    let total = counters.received.fetch_add(1, Ordering::Relaxed) + 1;
                    if total.is_multiple_of(notify_every) {
                        counters.progress.notify_one();
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    counters.ended.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Waits until `expected` deliveries have arrived (or no more are coming), up to `limit`;
/// returns when the last one came.
pub async fn await_deliveries(counters: &Counters, expected: u64, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    let mut last_count = counters.received.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    loop {
        let now_count = counters.received.load(Ordering::Relaxed);
        if now_count != last_count {
            last_count = now_count;
            last_change = Instant::now();
        }
        if now_count >= expected || Instant::now() > deadline {
            return last_change;
        }
        // Nothing arrived for a second: the rest is lost.
        if last_change.elapsed() > Duration::from_secs(1) {
            return last_change;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Settings of the fanout scenario.
#[derive(Debug, Clone)]
pub struct FanoutSettings {
    pub subscribers: usize,
    /// Every n-th subscriber measures latency.
    pub sample_every: usize,
    /// Fixed publish rates, messages per second.
    pub rates: Vec<u32>,
    pub phase: Duration,
    /// Saturation: messages in flight (sent, not yet delivered to every subscriber).
    pub window: u64,
    /// Where saturation goes among the fixed-rate phases (index into `rates`).
    pub saturation_before: usize,
}

/// The fanout measurements: one phase per rate, then saturation (`None`).
pub async fn fanout(
    server: &Server,
    settings: &FanoutSettings,
) -> anyhow::Result<Vec<(Option<u32>, Phase)>> {
    const TOPIC: &str = "bench.fanout";
    let (subscribers, _) = open_many(server, settings.subscribers, 64, |_, mut ws| async move {
        client::subscribe(&mut ws, TOPIC).await?;
        Ok(ws)
    })
    .await?;
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let subscriber_count = u64::try_from(subscribers.len()).unwrap_or(u64::MAX);
    let mut samplers = Vec::new();
    let mut tasks = Vec::new();
    for (index, ws) in subscribers {
        let sampler =
            (index % settings.sample_every.max(1) == 0).then(|| Arc::new(Mutex::new(histogram())));
        if let Some(s) = &sampler {
            samplers.push(s.clone());
        }
        tasks.push(tokio::spawn(drain(
            ws,
            counters.clone(),
            sampler,
            stop_rx.clone(),
            subscriber_count,
        )));
    }

    let publisher = client::connect(server).await?;
    let (mut sink, mut acks) = publisher.split();
    let ack_counters = counters.clone();
    let ack_reader = tokio::spawn(async move {
        while let Some(Ok(frame)) = acks.next().await {
            if let Message::Text(text) = frame
                && client::frame_type(text.as_bytes()) == Some(b"Error")
            {
                ack_counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let template = Template::broadcast(TOPIC)?;
    let mut results = Vec::new();
    // Saturation runs before any fixed rate above what it reached would: an overloaded phase
    // disconnects slow subscribers (natter: close 4008; uWS: its backpressure limit), and the
    // phases after it would measure a smaller fanout.
    let mut phases: Vec<Option<u32>> = settings.rates.iter().copied().map(Some).collect();
    phases.insert(settings.saturation_before.min(phases.len()), None);
    for rate in phases {
        let received_before = counters.received.load(Ordering::Relaxed);
        let ended_before = counters.ended.load(Ordering::Relaxed);
        let alive = subscriber_count.saturating_sub(ended_before);
        let cpu_before = server.cpu_seconds();
        let started = Instant::now();
        let deadline = started + settings.phase;
        let mut sent: u64 = 0;
        match rate {
            Some(rate) => {
                let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let due = (now - started).as_secs_f64() * f64::from(rate);
                    while (sent as f64) < due {
                        sink.feed(template.stamped(client::now_micros())).await?;
                        sent += 1;
                    }
                    sink.flush().await?;
                    let next = started + interval.mul_f64(sent as f64);
                    tokio::time::sleep_until(next.max(Instant::now()).into()).await;
                }
            }
            None => {
                // Closed loop: keep `window` messages in flight to every live subscriber.
                let in_flight_limit = settings.window.saturating_mul(alive);
                while Instant::now() < deadline {
                    let progress = counters.progress.notified();
                    let delivered = counters
                        .received
                        .load(Ordering::Relaxed)
                        .saturating_sub(received_before);
                    let mut in_flight = (sent * alive).saturating_sub(delivered);
                    if in_flight < in_flight_limit {
                        while in_flight < in_flight_limit {
                            sink.feed(template.stamped(client::now_micros())).await?;
                            sent += 1;
                            in_flight += alive;
                        }
                        sink.flush().await?;
                    } else {
                        let _ = tokio::time::timeout(Duration::from_millis(2), progress).await;
                    }
                }
            }
        }
        counters.sent.fetch_add(sent, Ordering::Relaxed);
        let expected = received_before + sent * alive;
        let last = await_deliveries(&counters, expected, Duration::from_secs(10)).await;
        let received = counters
            .received
            .load(Ordering::Relaxed)
            .saturating_sub(received_before);
        let cpu = server.cpu_seconds() - cpu_before;
        let seconds = (last - started).as_secs_f64().max(1e-3);
        let latencies = take_merged(&samplers);
        results.push((
            rate,
            Phase::measured(
                received,
                sent * alive,
                seconds,
                &latencies,
                cpu,
                server,
                alive,
            ),
        ));
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    ack_reader.abort();
    Ok(results)
}

/// Settings of the many-rooms scenario.
#[derive(Debug, Clone)]
pub struct RoomsSettings {
    pub rooms: usize,
    pub members: usize,
    pub sample_every: usize,
    /// Publishes per second (all members together) of the first step.
    pub first_rate: f64,
    /// Each step multiplies the rate by this.
    pub step_factor: f64,
    pub max_steps: usize,
    pub phase: Duration,
    /// A step passes when its p99 is at most this and nothing was lost.
    pub p99_limit_ms: f64,
}

/// A phase of the many-rooms scenario, as the members see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Each member publishes every `interval`, from `start + offset` until `until`.
    pub interval: Duration,
    pub start: Instant,
    pub until: Instant,
}

/// One member: publishes on the schedule and drains its room.
async fn member(
    mut ws: Ws,
    index: usize,
    members_total: usize,
    template: Template,
    counters: Arc<Counters>,
    sampler: Option<SharedHistogram>,
    mut schedule: watch::Receiver<Option<Schedule>>,
) {
    let mut next_send: Option<Instant> = None;
    let mut current: Option<Schedule> = None;
    loop {
        let send_at = next_send;
        tokio::select! {
            biased;
            changed = schedule.changed() => {
                if changed.is_err() {
                    break;
                }
                current = *schedule.borrow_and_update();
                next_send = current.map(|s| {
                    // Spread the members evenly over one interval.
                    let offset = s.interval.mul_f64(index as f64 / members_total.max(1) as f64);
                    s.start + offset
                });
            }
            () = sleep_until_opt(send_at) => {
                let Some(s) = current else { next_send = None; continue };
                let now = Instant::now();
                if now >= s.until {
                    next_send = None;
                    continue;
                }
                if ws.send(template.stamped(client::now_micros())).await.is_err() {
                    counters.ended.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                counters.sent.fetch_add(1, Ordering::Relaxed);
                next_send = next_send.map(|t| t + s.interval);
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let bytes = text.as_bytes();
                    // natter writes `type` last, the peer first: neither the publisher's own
                    // Ack nor an Error is a delivery.
                    match client::frame_type(bytes) {
                        Some(b"Ack") => continue,
                        Some(b"Error") => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        _ => {}
                    }
                    if let Some(sampler) = &sampler
                        && let Some(sent) = client::stamp_of(bytes)
                    {
                        record(sampler, client::now_micros().saturating_sub(sent));
                    }
                    counters.received.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    counters.ended.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

pub async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// One step of the many-rooms scenario.
#[derive(Debug, Clone)]
pub struct RoomsStep {
    pub publishes_per_sec: f64,
    pub phase: Phase,
}

/// Many rooms: steps of rising publish rate until p99 passes the limit or loss appears.
pub async fn many_rooms(
    server: &Server,
    settings: &RoomsSettings,
) -> anyhow::Result<(Vec<RoomsStep>, f64)> {
    let total = settings.rooms * settings.members;
    let members = settings.members;
    let (connections, connect_secs) =
        open_many(server, total, 128, move |index, mut ws| async move {
            client::subscribe(&mut ws, &format!("bench.room{}", index / members)).await?;
            Ok(ws)
        })
        .await?;
    let counters = Arc::new(Counters::default());
    let (schedule_tx, schedule_rx) = watch::channel(None::<Schedule>);
    let mut samplers = Vec::new();
    let mut tasks = Vec::new();
    for (index, ws) in connections {
        let sampler =
            (index % settings.sample_every.max(1) == 0).then(|| Arc::new(Mutex::new(histogram())));
        if let Some(s) = &sampler {
            samplers.push(s.clone());
        }
        let template = Template::broadcast(&format!("bench.room{}", index / members))?;
        tasks.push(tokio::spawn(member(
            ws,
            index,
            total,
            template,
            counters.clone(),
            sampler,
            schedule_rx.clone(),
        )));
    }
    let recipients = u64::try_from(members.saturating_sub(1)).unwrap_or(0);
    let mut steps = Vec::new();
    let mut rate = settings.first_rate;
    for _ in 0..settings.max_steps {
        let sent_before = counters.sent.load(Ordering::Relaxed);
        let received_before = counters.received.load(Ordering::Relaxed);
        let cpu_before = server.cpu_seconds();
        let start = Instant::now() + Duration::from_millis(50);
        let interval = Duration::from_secs_f64(total as f64 / rate);
        let _ = schedule_tx.send(Some(Schedule {
            interval,
            start,
            until: start + settings.phase,
        }));
        tokio::time::sleep_until((start + settings.phase).into()).await;
        // Sends in progress at the deadline finish within a moment.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sent = counters.sent.load(Ordering::Relaxed) - sent_before;
        let expected = received_before + sent * recipients;
        let last = await_deliveries(&counters, expected, Duration::from_secs(10)).await;
        let received = counters.received.load(Ordering::Relaxed) - received_before;
        let cpu = server.cpu_seconds() - cpu_before;
        let latencies = take_merged(&samplers);
        let seconds = (last - start).as_secs_f64().max(1e-3);
        let phase = Phase::measured(
            received,
            sent * recipients,
            seconds,
            &latencies,
            cpu,
            server,
            u64::try_from(total)
                .unwrap_or(u64::MAX)
                .saturating_sub(counters.ended.load(Ordering::Relaxed)),
        );
        let passed = phase.p99_ms <= settings.p99_limit_ms && phase.loss == 0.0;
        steps.push(RoomsStep {
            publishes_per_sec: rate,
            phase,
        });
        if !passed || counters.ended.load(Ordering::Relaxed) > 0 {
            break;
        }
        rate *= settings.step_factor;
    }
    drop(schedule_tx);
    for task in tasks {
        task.abort();
    }
    Ok((steps, connect_secs))
}
