//! natter-only scenarios of real use (issue #16), on natter's own rooms rather than topics:
//! (b) a busy team room, every sender joined; (c) 1,000 rooms of 10 joined members chatting;
//! (d) a reconnect storm resuming with `Join` + `since`; (e) 100,000 idle authenticated
//! connections. Every Send carries a `client_msg_id`, as the web client's do. Each function is
//! bounded in count and time.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Template, Ws};
use crate::provision::{self, User};
use crate::pubsub::{self, Counters, Phase, Schedule, SharedHistogram};
use crate::rawws::RawWs;
use crate::servers::{self, Server};

/// Joins `room` (with `since` when given) and waits for `Status joined`; returns that frame.
pub async fn join(ws: &mut Ws, room: &str, since: Option<u64>) -> anyhow::Result<String> {
    let mut data = serde_json::json!({"room": room});
    if let Some(since) = since {
        data["since"] = since.into();
    }
    let frame = serde_json::json!({"type": "Join", "data": data, "id": "join"});
    ws.send(Message::text(frame.to_string())).await?;
    client::read_until(ws, "\"joined\"").await
}

fn micros_since(at: Instant) -> u64 {
    u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn record_local(histogram: &mut Histogram<u64>, micros: u64) {
    histogram.saturating_record(micros.max(1));
}

// ---------------------------------------------------------------------------------------------
// (b) Busy team room.

/// What the busy room gives.
#[derive(Debug, Clone)]
pub struct BusyRoom {
    pub joined: u64,
    pub sends_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub delivery_p50_ms: f64,
    pub delivery_p99_ms: f64,
    /// Fraction of the expected deliveries (sends x joined members) that never arrived.
    pub loss: f64,
    pub cpu_us_per_send: f64,
    pub cpu_us_per_delivery: f64,
    /// Acks marked `duplicate` (every client_msg_id is new: should be 0).
    pub duplicates: u64,
    /// Connections the server closed (e.g. 4008, slow consumer).
    pub ended: u64,
    pub errors: u64,
}

/// One joined member of the busy room: sends, waits for its Ack (closed loop, one Send in
/// flight, as a person typing waits for their message to show), and meanwhile drains the
/// room's Message events.
#[allow(clippy::too_many_arguments)]
async fn busy_member(
    mut ws: Ws,
    template: Template,
    deadline: Instant,
    counters: Arc<Counters>,
    duplicates: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> (Histogram<u64>, Histogram<u64>) {
    let mut acks = pubsub::histogram();
    let mut deliveries = pubsub::histogram();
    let mut count: u64 = 0;
    let mut in_flight = Some(Instant::now());
    counters.sent.fetch_add(1, Ordering::Relaxed);
    if ws
        .send(template.stamped_counted(client::now_micros(), count))
        .await
        .is_err()
    {
        counters.ended.fetch_add(1, Ordering::Relaxed);
        return (acks, deliveries);
    }
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let bytes = text.as_bytes();
                    match client::frame_type(bytes) {
                        Some(b"Message") => {
                            if let Some(sent) = client::content_stamp(bytes) {
                                record_local(
                                    &mut deliveries,
                                    client::now_micros().saturating_sub(sent),
                                );
                            }
                            let total = counters.received.fetch_add(1, Ordering::Relaxed) + 1;
                            if total.is_multiple_of(64) {
                                counters.progress.notify_one();
                            }
                        }
                        Some(kind @ (b"Ack" | b"Error")) => {
                            if kind == b"Error" {
                                counters.errors.fetch_add(1, Ordering::Relaxed);
                            } else if bytes.windows(16).any(|w| w == b"\"duplicate\":true") {
                                duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Some(at) = in_flight.take() {
                                record_local(&mut acks, micros_since(at));
                            }
                            if Instant::now() < deadline {
                                count += 1;
                                in_flight = Some(Instant::now());
                                counters.sent.fetch_add(1, Ordering::Relaxed);
                                let frame = template.stamped_counted(client::now_micros(), count);
                                if ws.send(frame).await.is_err() {
                                    counters.ended.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                        _ => {}
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
    (acks, deliveries)
}

/// A public persistent room, `connections` connections of `users` (round robin) all joined to
/// it, each sending for `phase`; every message reaches every joined connection (the sender's
/// own after its Ack).
pub async fn busy_room(
    server: &Server,
    users: &[User],
    connections: usize,
    phase: Duration,
) -> anyhow::Result<BusyRoom> {
    const ROOM: &str = "busy";
    provision::room(server.addr, &server.token, ROOM, "public").await?;
    let paths = (0..connections)
        .map(|i| server.ws_path_with(&users[i % users.len()].token))
        .collect();
    let (conns, _) = pubsub::open_many_paths(server, paths, 64, |_, mut ws| async move {
        join(&mut ws, ROOM, None).await?;
        Ok(ws)
    })
    .await?;
    // Membership events of the joins settle before the measurement.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let joined = u64::try_from(conns.len()).unwrap_or(u64::MAX);
    let counters = Arc::new(Counters::default());
    let duplicates = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();
    let deadline = started + phase;
    let mut tasks = Vec::new();
    for (index, ws) in conns {
        let template = Template::send_idempotent(ROOM, &format!("c{index}"))?;
        tasks.push(tokio::spawn(busy_member(
            ws,
            template,
            deadline,
            counters.clone(),
            duplicates.clone(),
            stop_rx.clone(),
        )));
    }
    tokio::time::sleep_until(deadline.into()).await;
    // The last Sends' Acks and Messages are on their way; then nothing more is sent.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sent = counters.sent.load(Ordering::Relaxed);
    let expected = sent * joined;
    let last = pubsub::await_deliveries(&counters, expected, Duration::from_secs(10)).await;
    let cpu = server.cpu_seconds() - cpu_before;
    let _ = stop_tx.send(true);
    let mut acks = pubsub::histogram();
    let mut deliveries = pubsub::histogram();
    for task in tasks {
        let (a, d) = task.await?;
        let _ = acks.add(&a);
        let _ = deliveries.add(&d);
    }
    let received = counters.received.load(Ordering::Relaxed);
    let acked = acks.len();
    let seconds = phase.as_secs_f64();
    Ok(BusyRoom {
        joined,
        sends_per_sec: acked as f64 / seconds,
        deliveries_per_sec: received as f64 / (last - started).as_secs_f64().max(1e-3),
        ack_p50_ms: pubsub::ms(&acks, 0.5),
        ack_p99_ms: pubsub::ms(&acks, 0.99),
        delivery_p50_ms: pubsub::ms(&deliveries, 0.5),
        delivery_p99_ms: pubsub::ms(&deliveries, 0.99),
        loss: if expected > 0 {
            (1.0 - received as f64 / expected as f64).max(0.0)
        } else {
            0.0
        },
        cpu_us_per_send: cpu * 1e6 / acked.max(1) as f64,
        cpu_us_per_delivery: cpu * 1e6 / received.max(1) as f64,
        duplicates: duplicates.load(Ordering::Relaxed),
        ended: counters.ended.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
    })
}

// ---------------------------------------------------------------------------------------------
// (c) Many real rooms.

/// Settings of the chat-rooms scenario.
#[derive(Debug, Clone)]
pub struct ChatRoomsSettings {
    pub rooms: usize,
    pub members: usize,
    /// Distinct users; member j of room r is user (r * members + j) % users.
    pub users: usize,
    pub sample_every: usize,
    /// Sends per second (all members together) of the first step.
    pub first_rate: f64,
    pub step_factor: f64,
    pub max_steps: usize,
    pub phase: Duration,
    /// A step passes when its delivery p99 is at most this and nothing was lost.
    pub p99_limit_ms: f64,
}

/// One step of the chat-rooms scenario.
#[derive(Debug, Clone)]
pub struct ChatStep {
    /// The offered rate (Sends per second, all members).
    pub sends_per_sec: f64,
    /// The rate the members managed to send at.
    pub sent_per_sec: f64,
    /// Deliveries as the members saw them (loss: of sends x members).
    pub phase: Phase,
    pub ack_p99_ms: f64,
    pub errors: u64,
}

/// One member of a real room: Sends on the schedule, each with a new client_msg_id; drains
/// the room; times its Acks (answered in order on one connection) and, if sampled, the room's
/// deliveries.
#[allow(clippy::too_many_arguments)]
async fn chat_member(
    mut ws: Ws,
    index: usize,
    members_total: usize,
    template: Template,
    counters: Arc<Counters>,
    sampler: Option<SharedHistogram>,
    ack_sampler: SharedHistogram,
    mut schedule: watch::Receiver<Option<Schedule>>,
) {
    let mut next_send: Option<Instant> = None;
    let mut current: Option<Schedule> = None;
    let mut in_flight: VecDeque<Instant> = VecDeque::new();
    let mut count: u64 = 0;
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
                    let offset = s.interval.mul_f64(index as f64 / members_total.max(1) as f64);
                    s.start + offset
                });
            }
            () = pubsub::sleep_until_opt(send_at) => {
                let Some(s) = current else { next_send = None; continue };
                if Instant::now() >= s.until {
                    next_send = None;
                    continue;
                }
                count += 1;
                if ws.send(template.stamped_counted(client::now_micros(), count)).await.is_err() {
                    counters.ended.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                in_flight.push_back(Instant::now());
                counters.sent.fetch_add(1, Ordering::Relaxed);
                next_send = next_send.map(|t| t + s.interval);
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let bytes = text.as_bytes();
                    match client::frame_type(bytes) {
                        Some(b"Message") => {
                            if let Some(sampler) = &sampler
                                && let Some(sent) = client::content_stamp(bytes)
                            {
                                pubsub::record(sampler, client::now_micros().saturating_sub(sent));
                            }
                            counters.received.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(b"Ack") => {
                            if let Some(at) = in_flight.pop_front() {
                                pubsub::record(&ack_sampler, micros_since(at));
                            }
                        }
                        Some(b"Error") => {
                            in_flight.pop_front();
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
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

/// `rooms` private persistent rooms, each created by its first member, who adds the others
/// over HTTP; every member's connection Joins its room; then steps of rising Send rate until
/// the delivery p99 passes the limit or anything is lost.
pub async fn chat_rooms(
    server: &Server,
    users: &[User],
    s: &ChatRoomsSettings,
) -> anyhow::Result<Vec<ChatStep>> {
    if users.len() < s.members {
        bail!(
            "{} members per room need at least as many users ({})",
            s.members,
            users.len()
        );
    }
    let user_of = |room: usize, member: usize| &users[(room * s.members + member) % users.len()];
    let addr = server.addr;
    let plans: Vec<(String, String, Vec<String>)> = (0..s.rooms)
        .map(|r| {
            let owner = user_of(r, 0).token.clone();
            let others = (1..s.members).map(|j| user_of(r, j).name.clone()).collect();
            (format!("chat{r}"), owner, others)
        })
        .collect();
    provision::concurrently(plans, 16, |(room, owner, others)| async move {
        provision::room(addr, &owner, &room, "private").await?;
        for member in others {
            provision::add_member(addr, &owner, &room, &member).await?;
        }
        anyhow::Ok(())
    })
    .await?;
    let total = s.rooms * s.members;
    let members = s.members;
    let paths = (0..total)
        .map(|i| server.ws_path_with(&user_of(i / members, i % members).token))
        .collect();
    let (connections, _) =
        pubsub::open_many_paths(server, paths, 128, move |index, mut ws| async move {
            join(&mut ws, &format!("chat{}", index / members), None).await?;
            Ok(ws)
        })
        .await?;
    // Presence events of the users coming online settle before the first step.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counters = Arc::new(Counters::default());
    let (schedule_tx, schedule_rx) = watch::channel(None::<Schedule>);
    let mut samplers = Vec::new();
    let mut ack_samplers = Vec::new();
    let mut tasks = Vec::new();
    for (index, ws) in connections {
        let sampler =
            (index % s.sample_every.max(1) == 0).then(|| Arc::new(Mutex::new(pubsub::histogram())));
        if let Some(h) = &sampler {
            samplers.push(h.clone());
        }
        let acks = Arc::new(Mutex::new(pubsub::histogram()));
        ack_samplers.push(acks.clone());
        let template =
            Template::send_idempotent(&format!("chat{}", index / members), &format!("c{index}"))?;
        tasks.push(tokio::spawn(chat_member(
            ws,
            index,
            total,
            template,
            counters.clone(),
            sampler,
            acks,
            schedule_rx.clone(),
        )));
    }
    let recipients = u64::try_from(members).unwrap_or(0);
    let mut steps = Vec::new();
    let mut rate = s.first_rate;
    for _ in 0..s.max_steps {
        let sent_before = counters.sent.load(Ordering::Relaxed);
        let received_before = counters.received.load(Ordering::Relaxed);
        let errors_before = counters.errors.load(Ordering::Relaxed);
        let cpu_before = server.cpu_seconds();
        let start = Instant::now() + Duration::from_millis(50);
        let interval = Duration::from_secs_f64(total as f64 / rate);
        let _ = schedule_tx.send(Some(Schedule {
            interval,
            start,
            until: start + s.phase,
        }));
        tokio::time::sleep_until((start + s.phase).into()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sent = counters.sent.load(Ordering::Relaxed) - sent_before;
        let expected = received_before + sent * recipients;
        let last = pubsub::await_deliveries(&counters, expected, Duration::from_secs(10)).await;
        // The last Acks, after the last deliveries at most a moment.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let received = counters.received.load(Ordering::Relaxed) - received_before;
        let cpu = server.cpu_seconds() - cpu_before;
        let latencies = pubsub::take_merged(&samplers);
        let acks = pubsub::take_merged(&ack_samplers);
        let seconds = (last - start).as_secs_f64().max(1e-3);
        let alive = u64::try_from(total)
            .unwrap_or(u64::MAX)
            .saturating_sub(counters.ended.load(Ordering::Relaxed));
        let phase = Phase::measured(
            received,
            sent * recipients,
            seconds,
            &latencies,
            cpu,
            server,
            alive,
        );
        let passed = phase.p99_ms <= s.p99_limit_ms && phase.loss == 0.0;
        steps.push(ChatStep {
            sends_per_sec: rate,
            sent_per_sec: sent as f64 / s.phase.as_secs_f64(),
            phase,
            ack_p99_ms: pubsub::ms(&acks, 0.99),
            errors: counters.errors.load(Ordering::Relaxed) - errors_before,
        });
        if !passed || counters.ended.load(Ordering::Relaxed) > 0 {
            break;
        }
        rate *= s.step_factor;
    }
    drop(schedule_tx);
    for task in tasks {
        task.abort();
    }
    Ok(steps)
}

// ---------------------------------------------------------------------------------------------
// (d) Reconnect storm with resume.

/// Settings of the resume storm.
#[derive(Debug, Clone)]
pub struct ResumeSettings {
    pub clients: usize,
    pub rooms: usize,
    /// Sending connections (not joined), each for its share of the rooms.
    pub senders: usize,
    /// Sends per second, all senders together, before, during and after the storm.
    pub rate: f64,
    /// Traffic before the drop, and after the last client resumed.
    pub before: Duration,
    pub after: Duration,
    /// How long the clients may take to be resumed, all of them.
    pub resume_limit: Duration,
}

/// What the storm gives.
#[derive(Debug, Clone)]
pub struct Resume {
    pub clients: u64,
    pub resumed: u64,
    /// From the drop to the last client's `Status joined`.
    pub all_resumed_secs: f64,
    pub resume_p50_ms: f64,
    pub resume_p99_ms: f64,
    /// Messages a client never got (gaps in its sequence, or short of the room's last).
    pub lost: u64,
    /// Messages a client got twice (a seq not above the last it had).
    pub duplicated: u64,
    /// Joins that answered `complete: false`.
    pub incomplete: u64,
    pub replayed: u64,
    /// Messages stored (acked) in the scenario, all rooms.
    pub stored: u64,
    /// Of those, stored between the drop and the last client's resume.
    pub stored_during_storm: u64,
    pub deliveries_checked: u64,
    pub reconnect_retries: u64,
    pub rss_before_mib: f64,
    pub peak_rss_mib: f64,
    /// Whether the peak is the kernel's (VmHWM reset before the drop) or sampled every 10 ms.
    pub peak_from_kernel: bool,
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Live,
    Drop,
    Finish,
}

/// One client's account of its room's sequence.
#[derive(Debug, Default)]
struct Sequence {
    last: u64,
    duplicates: u64,
    gaps: u64,
    seen: u64,
}

impl Sequence {
    /// Takes a frame; true if it was a Message.
    fn on_frame(&mut self, bytes: &[u8]) -> bool {
        if client::frame_type(bytes) != Some(b"Message") {
            return false;
        }
        let Some(seq) = client::seq_of(bytes) else {
            return false;
        };
        self.seen += 1;
        if seq <= self.last {
            self.duplicates += 1;
        } else {
            self.gaps += seq - self.last - 1;
            self.last = seq;
        }
        true
    }
}

/// What one storm client reports.
#[derive(Debug, Default)]
struct ClientReport {
    sequence: Sequence,
    resumed_after: Option<Duration>,
    replayed: u64,
    incomplete: bool,
    retries: u64,
    error: Option<String>,
}

/// Shared by the storm's clients and the scenario.
struct Storm {
    addr: std::net::SocketAddr,
    path: String,
    stage: watch::Receiver<Stage>,
    dropped_at: Arc<Mutex<Option<Instant>>>,
    resumed: Arc<AtomicU64>,
    /// The room's last stored seq, once the senders stopped.
    finals: Arc<Vec<AtomicU64>>,
    resume_limit: Duration,
}

async fn wait_stage(stage: &mut watch::Receiver<Stage>, want: Stage) {
    while *stage.borrow_and_update() != want {
        if stage.changed().await.is_err() {
            return;
        }
    }
}

/// One joined client: follows its room, drops its connection with all the others, reconnects
/// at once with `Join` + `since` (its last seq), and checks every seq arrives exactly once.
async fn storm_client(mut ws: Ws, room_index: usize, storm: Storm) -> ClientReport {
    let room = format!("storm{room_index}");
    let mut report = ClientReport::default();
    let mut stage = storm.stage.clone();
    // Live until the drop.
    loop {
        tokio::select! {
            biased;
            () = wait_stage(&mut stage, Stage::Drop) => break,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    report.sequence.on_frame(text.as_bytes());
                }
                Some(Ok(_)) => {}
                _ => {
                    report.error = Some("connection ended before the drop".to_owned());
                    return report;
                }
            }
        }
    }
    // Gone without a closing handshake, frames in flight and all: a network blip.
    drop(ws);
    let dropped_at = storm
        .dropped_at
        .lock()
        .ok()
        .and_then(|t| *t)
        .unwrap_or_else(Instant::now);
    let give_up = dropped_at + storm.resume_limit;
    let mut attempt: u64 = 0;
    let mut ws = loop {
        attempt += 1;
        let tried = async {
            let mut ws = client::connect_to(storm.addr, &storm.path).await?;
            let since = report.sequence.last;
            let frame = serde_json::json!({
                "type": "Join", "data": {"room": room, "since": since}, "id": "resume"
            });
            ws.send(Message::text(frame.to_string())).await?;
            loop {
                let text = client::next_text(&mut ws).await?;
                let bytes = text.as_bytes();
                if report.sequence.on_frame(bytes) {
                    report.replayed += 1;
                    continue;
                }
                match client::frame_type(bytes) {
                    Some(b"Status") if text.contains("\"joined\"") => {
                        report.incomplete = !text.contains("\"complete\":true");
                        return anyhow::Ok(ws);
                    }
                    Some(b"Error") => bail!("resume refused: {text}"),
                    _ => {}
                }
            }
        };
        match tokio::time::timeout_at(give_up.into(), tried).await {
            Ok(Ok(ws)) => break ws,
            Ok(Err(e)) if Instant::now() < give_up => {
                report.retries += 1;
                report.error = Some(format!("{e:#}"));
                // Back off a little, spread out (the index of the client decides the phase).
                let pause = 20 * attempt.min(10) + (room_index as u64 % 17) * 3;
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Ok(Err(e)) => {
                report.error = Some(format!("not resumed: {e:#}"));
                return report;
            }
            Err(_) => {
                report.error = Some("not resumed in time".to_owned());
                return report;
            }
        }
    };
    report.resumed_after = Some(dropped_at.elapsed());
    storm.resumed.fetch_add(1, Ordering::Relaxed);
    // Live again, until the room's last message arrived after the senders stopped.
    let target = || storm.finals[room_index].load(Ordering::Relaxed);
    let mut finish_by: Option<Instant> = None;
    loop {
        if finish_by.is_some() && report.sequence.last >= target() {
            break;
        }
        let until = finish_by.map(tokio::time::Instant::from_std);
        tokio::select! {
            biased;
            () = wait_stage(&mut stage, Stage::Finish), if finish_by.is_none() => {
                // Nothing new is sent now: each client has a few seconds to get the rest.
                finish_by = Some(Instant::now() + Duration::from_secs(10));
            }
            () = async { if let Some(u) = until { tokio::time::sleep_until(u).await } }, if until.is_some() => break,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    report.sequence.on_frame(text.as_bytes());
                }
                Some(Ok(_)) => {}
                _ => {
                    report.error = Some("connection ended after resuming".to_owned());
                    break;
                }
            }
        }
    }
    report
}

/// A sending connection (not joined): Sends with new client_msg_ids to its rooms in turn at
/// `rate`, waiting for each Ack, and records each room's highest stored seq.
async fn storm_sender(
    mut ws: Ws,
    rooms: Vec<usize>,
    rate: f64,
    tag: String,
    finals: Arc<Vec<AtomicU64>>,
    stored_total: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<u64> {
    let templates: Vec<Template> = rooms
        .iter()
        .map(|r| Template::send_idempotent(&format!("storm{r}"), &tag))
        .collect::<anyhow::Result<_>>()?;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let started = Instant::now();
    let mut stored: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let i = usize::try_from(stored).unwrap_or(0) % rooms.len().max(1);
        ws.send(templates[i].stamped_counted(client::now_micros(), stored))
            .await?;
        let ack = tokio::time::timeout(
            Duration::from_secs(10),
            client::read_until(&mut ws, "\"status\":\"stored\""),
        )
        .await
        .context("no Ack within 10 s")??;
        let seq = client::seq_of(ack.as_bytes()).context("Ack without seq")?;
        finals[rooms[i]].fetch_max(seq, Ordering::Relaxed);
        stored_total.fetch_add(1, Ordering::Relaxed);
        stored += 1;
        tokio::time::sleep_until((started + interval.mul_f64(stored as f64)).into()).await;
    }
    Ok(stored)
}

/// The storm: `clients` connections joined to `rooms` public persistent rooms from seq 0, with
/// messages flowing; all drop at once and reconnect at once, each resuming with `Join` +
/// `since`; the messages go on; then each client's sequence is checked against its room's
/// last stored seq.
pub async fn resume_storm(server: &Server, s: &ResumeSettings) -> anyhow::Result<Resume> {
    let addr = server.addr;
    let token = server.token.clone();
    let names: Vec<String> = (0..s.rooms).map(|r| format!("storm{r}")).collect();
    provision::concurrently(names, 16, |room| {
        let token = token.clone();
        async move { provision::room(addr, &token, &room, "public").await }
    })
    .await?;
    let rooms = s.rooms.max(1);
    let (connections, _) =
        pubsub::open_many(server, s.clients, 200, move |index, mut ws| async move {
            let joined = join(&mut ws, &format!("storm{}", index % rooms), Some(0)).await?;
            if !joined.contains("\"complete\":true") {
                bail!("first join incomplete: {joined}");
            }
            Ok(ws)
        })
        .await?;
    let (stage_tx, stage_rx) = watch::channel(Stage::Live);
    let dropped_at = Arc::new(Mutex::new(None));
    let resumed = Arc::new(AtomicU64::new(0));
    let finals: Arc<Vec<AtomicU64>> = Arc::new((0..rooms).map(|_| AtomicU64::new(0)).collect());
    let mut clients = Vec::with_capacity(connections.len());
    for (index, ws) in connections {
        let storm = Storm {
            addr,
            path: server.ws_path(),
            stage: stage_rx.clone(),
            dropped_at: dropped_at.clone(),
            resumed: resumed.clone(),
            finals: finals.clone(),
            resume_limit: s.resume_limit,
        };
        clients.push((
            index % rooms,
            tokio::spawn(storm_client(ws, index % rooms, storm)),
        ));
    }
    let senders = s.senders.clamp(1, rooms);
    let stop = Arc::new(AtomicBool::new(false));
    let stored_total = Arc::new(AtomicU64::new(0));
    let mut sender_tasks = Vec::new();
    for k in 0..senders {
        let ws = client::connect(server).await?;
        let mine: Vec<usize> = (0..rooms).filter(|r| r % senders == k).collect();
        sender_tasks.push(tokio::spawn(storm_sender(
            ws,
            mine,
            s.rate / senders as f64,
            format!("s{k}"),
            finals.clone(),
            stored_total.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(s.before).await;

    let rss_before = server.rss_bytes();
    let peak_from_kernel = servers::reset_peak_rss(server.pid);
    let sampled_peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pid, peak, sampling) = (server.pid, sampled_peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(rss) = servers::rss_bytes(pid) {
                    peak.fetch_max(rss as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let drop_instant = Instant::now();
    if let Ok(mut at) = dropped_at.lock() {
        *at = Some(drop_instant);
    }
    let stored_at_drop = stored_total.load(Ordering::Relaxed);
    let _ = stage_tx.send(Stage::Drop);
    let total = u64::try_from(s.clients).unwrap_or(u64::MAX);
    let resume_deadline = drop_instant + s.resume_limit;
    while resumed.load(Ordering::Relaxed) < total && Instant::now() < resume_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stored_during_storm = stored_total.load(Ordering::Relaxed) - stored_at_drop;
    tokio::time::sleep(s.after).await;
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let peak = if peak_from_kernel {
        servers::peak_rss_bytes(server.pid).unwrap_or(f64::NAN)
    } else {
        sampled_peak.load(Ordering::Relaxed) as f64
    };

    stop.store(true, Ordering::Relaxed);
    let mut stored = 0;
    for task in sender_tasks {
        stored += task.await??;
    }
    let _ = stage_tx.send(Stage::Finish);
    let mut resume_times = pubsub::histogram();
    let mut out = Resume {
        clients: total,
        resumed: 0,
        all_resumed_secs: 0.0,
        resume_p50_ms: f64::NAN,
        resume_p99_ms: f64::NAN,
        lost: 0,
        duplicated: 0,
        incomplete: 0,
        replayed: 0,
        stored,
        stored_during_storm,
        deliveries_checked: 0,
        reconnect_retries: 0,
        rss_before_mib: rss_before / (1024.0 * 1024.0),
        peak_rss_mib: peak / (1024.0 * 1024.0),
        peak_from_kernel,
        first_error: None,
    };
    for (room_index, task) in clients {
        let report = task.await?;
        if let Some(after) = report.resumed_after {
            out.resumed += 1;
            out.all_resumed_secs = out.all_resumed_secs.max(after.as_secs_f64());
            record_local(
                &mut resume_times,
                u64::try_from(after.as_micros()).unwrap_or(u64::MAX),
            );
        }
        out.duplicated += report.sequence.duplicates;
        // Gaps inside what it got, and whatever it never reached of its room.
        out.lost += report.sequence.gaps
            + finals[room_index]
                .load(Ordering::Relaxed)
                .saturating_sub(report.sequence.last);
        out.incomplete += u64::from(report.incomplete);
        out.replayed += report.replayed;
        out.deliveries_checked += report.sequence.seen;
        out.reconnect_retries += report.retries;
        if report.resumed_after.is_none() {
            out.first_error = out.first_error.or(report.error);
        }
    }
    out.resume_p50_ms = pubsub::ms(&resume_times, 0.5);
    out.resume_p99_ms = pubsub::ms(&resume_times, 0.99);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// (e) Very many idle connections.

/// Settings of the many-idle-connections scenario.
#[derive(Debug, Clone)]
pub struct ManySettings {
    pub connections: usize,
    pub concurrency: usize,
    /// Loopback source addresses 127.0.0.2, 127.0.0.3, ...: at most this many connections each.
    pub per_source: usize,
    pub open_limit: Duration,
    pub ping_concurrency: usize,
    pub ping_limit: Duration,
}

/// What holding them gives.
#[derive(Debug, Clone)]
pub struct Many {
    pub wanted: u64,
    /// Tried (the wanted count, or less when this process's file limit is lower).
    pub attempted: u64,
    pub held: u64,
    pub failed: u64,
    pub sources: usize,
    pub open_secs: f64,
    pub rss_before_mib: f64,
    pub rss_mib: f64,
    pub per_connection_kib: f64,
    pub answered: u64,
    pub ping_secs: f64,
    pub generator_rss_mib: f64,
    /// Why fewer than wanted were tried or held, if so.
    pub limit: Option<String>,
}

/// Opens up to `s.connections` authenticated connections to `server` from several loopback
/// source addresses (`s.per_source` each), holds them idle, measures the server's RSS, then
/// sends each a `Ping` and counts the `Pong`s. Stops opening at the file limit, after 100
/// failures, when the machine has less than 1 GiB available, or at `s.open_limit`.
pub async fn many_idle(server: &Server, s: &ManySettings) -> anyhow::Result<Many> {
    let wanted = s.connections;
    let mut limit = None;
    let fd_limit = servers::open_file_limit().unwrap_or(1024);
    // Each process (natter, this one) holds one descriptor per connection, plus its own.
    let room = usize::try_from(fd_limit.saturating_sub(1024)).unwrap_or(usize::MAX);
    let attempted = if wanted > room {
        limit = Some(format!(
            "open-file limit {fd_limit}: {room} connections tried (raise it: ulimit -n)"
        ));
        room
    } else {
        wanted
    };
    let per_source = s.per_source.max(1);
    let sources = attempted.div_ceil(per_source).max(2);
    let addresses: Vec<IpAddr> = (0..sources)
        .map(|i| {
            let host = u8::try_from(2 + i).unwrap_or(254);
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, host))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = server.rss_bytes();
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop_reason: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let held: Arc<Mutex<Vec<RawWs>>> = Arc::new(Mutex::new(Vec::with_capacity(attempted)));
    let started = Instant::now();
    let give_up = started + s.open_limit;
    let mut workers = Vec::new();
    for _ in 0..s.concurrency.max(1) {
        let (next, failed, stop_reason, held) = (
            next.clone(),
            failed.clone(),
            stop_reason.clone(),
            held.clone(),
        );
        let addresses = addresses.clone();
        let (addr, path) = (server.addr, server.ws_path());
        workers.push(tokio::spawn(async move {
            loop {
                let stopped = stop_reason.lock().map(|r| r.is_some()).unwrap_or(true);
                if stopped {
                    break;
                }
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= attempted {
                    break;
                }
                if Instant::now() > give_up {
                    if let Ok(mut r) = stop_reason.lock() {
                        r.get_or_insert_with(|| "time limit for opening".to_owned());
                    }
                    break;
                }
                if index % 1000 == 0
                    && servers::mem_available_bytes().is_some_and(|m| m < 1024.0 * 1024.0 * 1024.0)
                {
                    if let Ok(mut r) = stop_reason.lock() {
                        r.get_or_insert_with(|| "machine below 1 GiB available".to_owned());
                    }
                    break;
                }
                let local = addresses[index / per_source];
                let opened = tokio::time::timeout(
                    Duration::from_secs(30),
                    RawWs::open(Some(local), addr, &path),
                )
                .await;
                match opened {
                    Ok(Ok(ws)) => {
                        if let Ok(mut h) = held.lock() {
                            h.push(ws);
                        }
                    }
                    outcome => {
                        let n = failed.fetch_add(1, Ordering::Relaxed) + 1;
                        if n >= 100
                            && let Ok(mut r) = stop_reason.lock()
                        {
                            let error = match outcome {
                                Ok(Err(e)) => format!("{e:#}"),
                                _ => "handshake timed out".to_owned(),
                            };
                            r.get_or_insert_with(|| {
                                format!("100 connections failed; last: {error}")
                            });
                        }
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    let open_secs = started.elapsed().as_secs_f64();
    if let Some(reason) = stop_reason.lock().ok().and_then(|r| r.clone()) {
        limit = Some(match limit {
            Some(l) => format!("{l}; {reason}"),
            None => reason,
        });
    }
    let connections: Vec<RawWs> = held
        .lock()
        .map(|mut h| std::mem::take(&mut *h))
        .unwrap_or_default();
    let held_count = connections.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = server.rss_bytes();

    // Every connection answers a Ping, a share of them per worker, within the time limit.
    let answered = Arc::new(AtomicU64::new(0));
    let ping_started = Instant::now();
    let ping_deadline = ping_started + s.ping_limit;
    let workers_n = s.ping_concurrency.max(1);
    let mut shares: Vec<Vec<RawWs>> = (0..workers_n).map(|_| Vec::new()).collect();
    for (i, ws) in connections.into_iter().enumerate() {
        shares[i % workers_n].push(ws);
    }
    let mut pingers = Vec::new();
    for share in shares {
        let answered = answered.clone();
        pingers.push(tokio::spawn(async move {
            let mut share = share;
            for (n, ws) in share.iter_mut().enumerate() {
                if Instant::now() > ping_deadline {
                    break;
                }
                if ws.ping(n as u64, Duration::from_secs(10)).await.is_ok() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Kept open until every worker is done, so the server holds them all meanwhile.
            share
        }));
    }
    let mut kept = Vec::new();
    for pinger in pingers {
        kept.push(pinger.await?);
    }
    let ping_secs = ping_started.elapsed().as_secs_f64();
    let generator_rss = servers::rss_bytes(std::process::id()).unwrap_or(f64::NAN);
    drop(kept);
    let held_u64 = u64::try_from(held_count).unwrap_or(u64::MAX);
    Ok(Many {
        wanted: u64::try_from(wanted).unwrap_or(u64::MAX),
        attempted: u64::try_from(attempted).unwrap_or(u64::MAX),
        held: held_u64,
        failed: failed.load(Ordering::Relaxed),
        sources,
        open_secs,
        rss_before_mib: rss_before / (1024.0 * 1024.0),
        rss_mib: rss_after / (1024.0 * 1024.0),
        per_connection_kib: (rss_after - rss_before) / 1024.0 / held_count.max(1) as f64,
        answered: answered.load(Ordering::Relaxed),
        ping_secs,
        generator_rss_mib: generator_rss / (1024.0 * 1024.0),
        limit,
    })
}
