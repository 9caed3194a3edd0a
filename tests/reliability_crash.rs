//! Crash safety: SIGKILL during a write storm. After a restart on the same data dir every
//! acknowledged message is there exactly once with the sequence number its Ack named, each
//! client's acknowledged messages keep their send order, no message is stored twice (also
//! when unacknowledged ones are resent with their `client_msg_id` after the crash), and the
//! store always reopens. `cargo test` runs a few trials and cycles; `tests/reliability/run`
//! sets `RELIABILITY_CRASH_TRIALS=20` and `RELIABILITY_CRASH_CYCLES=100`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{access_token, add_user, http};
use crate::daemon::Daemon;
use crate::wsclient::try_connect;

const ROOMS: [&str; 2] = ["crash-a", "crash-b"];
/// Storm clients: two users with two connections each, two per room.
const CLIENTS: usize = 4;
/// Sends a client keeps in flight (unacknowledged) at once.
const WINDOW: usize = 16;
/// Bounds on one client's storm, whichever comes first (the kill normally ends it sooner).
const MAX_SENDS_PER_CYCLE: usize = 20_000;
const MAX_STORM: Duration = Duration::from_secs(20);

fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The daemon's settings for the storm: the message rate limit out of the way.
const STORM_ENV: &[(&str, &str)] = &[
    ("NATTER_WS_MESSAGES_PER_MINUTE", "10000000"),
    ("NATTER_WS_MESSAGE_BURST", "1000000"),
];

/// What one client learned in one cycle.
#[derive(Default)]
struct ClientLog {
    /// client_msg_ids in the order they were sent.
    sent: Vec<String>,
    /// client_msg_id -> the sequence number its Ack named.
    acked: HashMap<String, u64>,
}

/// One storm client: resends `resend` (unacknowledged ids of earlier cycles) first, then sends
/// new messages `c{client}-{cycle}-{n}` with a window of `WINDOW` in flight, until the
/// connection ends (the kill) or a bound is reached.
async fn storm_client(
    addr: SocketAddr,
    token: String,
    client: usize,
    cycle: usize,
    resend: Vec<String>,
    started: tokio::sync::mpsc::Sender<()>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let Ok(mut socket) = try_connect(addr, &format!("/ws?token={token}"), &[]).await else {
        return log;
    };
    let room = ROOMS[client % ROOMS.len()];
    let mut fresh = (0..MAX_SENDS_PER_CYCLE).map(|n| format!("c{client}-{cycle}-{n}"));
    let mut queue: std::collections::VecDeque<String> = resend.into();
    let mut in_flight = 0usize;
    let mut told_started = false;
    let deadline = Instant::now() + MAX_STORM;
    loop {
        while in_flight < WINDOW {
            let Some(id) = queue.pop_front().or_else(|| fresh.next()) else {
                break;
            };
            let frame = json!({
                "type": "Send",
                "data": {"room": room, "content": format!("message {id}"), "client_msg_id": id},
                "id": id,
            });
            log.sent.push(id);
            if socket.send(Message::text(frame.to_string())).await.is_err() {
                return log;
            }
            in_flight += 1;
        }
        if in_flight == 0 || Instant::now() > deadline {
            return log;
        }
        let message = match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(message))) => message,
            // The daemon was killed (reset or EOF), or went silent.
            _ => return log,
        };
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
        match frame["type"].as_str() {
            Some("Ack") => {
                let id = frame["id"].as_str().expect("ack id").to_owned();
                let seq = frame["data"]["seq"].as_u64().expect("ack seq");
                assert_eq!(frame["data"]["client_msg_id"], id.as_str(), "{frame}");
                log.acked.insert(id, seq);
                in_flight -= 1;
                if !told_started {
                    told_started = true;
                    let _ = started.send(()).await;
                }
            }
            Some("Error") => panic!("a storm Send was refused: {frame}"),
            _ => {}
        }
    }
}

/// Every message of `room`, by sequence number, read back over HTTP.
async fn history(addr: SocketAddr, token: &str, room: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0u64;
    let authorization = format!("Bearer {token}");
    loop {
        let response = http(
            addr,
            "GET",
            &format!("/api/v1/rooms/{room}/messages?after={after}&limit=200"),
            &[("authorization", authorization.as_str())],
            Vec::new(),
        )
        .await;
        assert_eq!(response.status, 200, "{:?}", response.json);
        let page = response.json["messages"]
            .as_array()
            .expect("messages")
            .clone();
        let Some(last) = page.last().and_then(|m| m["seq"].as_u64()) else {
            return all;
        };
        after = last;
        all.extend(page);
        if response.json["has_more"] != true {
            return all;
        }
    }
}

/// Everything acknowledged so far, over all cycles: client_msg_id -> (room, seq), and each
/// client's acknowledged ids in send order.
#[derive(Default)]
struct Ledger {
    acked: HashMap<String, (String, u64)>,
    order: Vec<Vec<String>>,
    /// Sent but never acknowledged (resent in the next cycle).
    unacked: Vec<Vec<String>>,
    total_sent: usize,
}

/// Checks the store against the ledger; returns how many messages the rooms hold.
async fn verify(addr: SocketAddr, token: &str, ledger: &Ledger) -> usize {
    let mut by_id: HashMap<String, (String, u64)> = HashMap::new();
    let mut stored = 0;
    for room in ROOMS {
        let messages = history(addr, token, room).await;
        stored += messages.len();
        for (expected_seq, message) in (1u64..).zip(messages.iter()) {
            let seq = message["seq"].as_u64().expect("seq");
            assert_eq!(
                seq, expected_seq,
                "room {room}: sequence numbers have a gap"
            );
            let id = message["client_msg_id"]
                .as_str()
                .expect("every storm message has a client_msg_id")
                .to_owned();
            let previous = by_id.insert(id.clone(), (room.to_owned(), seq));
            assert!(
                previous.is_none(),
                "{id} is stored twice: {previous:?} and {room}:{seq}"
            );
            assert_eq!(
                message["content"],
                format!("message {id}"),
                "{room}:{seq} has another message's content"
            );
        }
    }
    for (id, (room, seq)) in &ledger.acked {
        assert_eq!(
            by_id.get(id),
            Some(&(room.clone(), *seq)),
            "acknowledged message {id} ({room}:{seq}) is lost or moved"
        );
    }
    for ids in &ledger.order {
        let seqs: Vec<u64> = ids.iter().map(|id| ledger.acked[id].1).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "a client's acknowledged messages are out of order: {seqs:?}"
        );
    }
    stored
}

struct Figures {
    acked: usize,
    sent: usize,
    stored: usize,
}

/// Starts the daemon (the store must reopen), runs one storm, SIGKILLs it mid-storm, and
/// records what was acknowledged. `kill_after` is counted from the first Ack.
async fn crash_cycle(
    data_dir: &Path,
    tokens: &[String],
    ledger: &mut Ledger,
    cycle: usize,
    kill_after: Duration,
) {
    let daemon = Daemon::start(data_dir, STORM_ENV)
        .unwrap_or_else(|log| panic!("cycle {cycle}: the store did not reopen:\n{log}"));
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel(CLIENTS);
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let resend = std::mem::take(&mut ledger.unacked[client]);
        clients.push(tokio::spawn(storm_client(
            daemon.addr,
            tokens[client % tokens.len()].clone(),
            client,
            cycle,
            resend,
            started_tx.clone(),
        )));
    }
    drop(started_tx);
    // The storm is on once a first message is acknowledged; then the kill comes at a chosen
    // moment into it.
    let _ = tokio::time::timeout(Duration::from_secs(30), started_rx.recv()).await;
    tokio::time::sleep(kill_after).await;
    daemon.kill9();
    for (client, handle) in clients.into_iter().enumerate() {
        let log = handle.await.expect("storm client");
        ledger.total_sent += log.sent.len();
        for id in &log.sent {
            match log.acked.get(id) {
                Some(seq) => {
                    let room = ROOMS[client % ROOMS.len()].to_owned();
                    let previous = ledger.acked.insert(id.clone(), (room.clone(), *seq));
                    if let Some(previous) = previous {
                        // A resend of an earlier Ack is answered with the same message.
                        assert_eq!(
                            previous,
                            (room, *seq),
                            "{id} acknowledged twice, differently"
                        );
                    } else {
                        ledger.order[client].push(id.clone());
                    }
                }
                None if !ledger.acked.contains_key(id) => ledger.unacked[client].push(id.clone()),
                None => {}
            }
        }
    }
}

/// Runs `trials` fresh data dirs with one kill each, then `cycles` kill/restart cycles on one
/// data dir, verifying after every restart. Returns the figures for the report.
async fn crash_suite(trials: usize, cycles: usize) -> (Figures, usize) {
    let mut figures = Figures {
        acked: 0,
        sent: 0,
        stored: 0,
    };
    let mut survived = 0;
    let mut runs: Vec<usize> = vec![1; trials];
    if cycles > 0 {
        runs.push(cycles);
    }
    for (run, kills) in runs.into_iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        add_user(dir.path(), "alice", "alice-password", "user");
        add_user(dir.path(), "bob", "bob-password", "user");
        let setup = Daemon::start(dir.path(), STORM_ENV).expect("first start");
        let tokens = vec![
            access_token(setup.addr, "alice", "alice-password").await,
            access_token(setup.addr, "bob", "bob-password").await,
        ];
        for room in ROOMS {
            let response = http(
                setup.addr,
                "POST",
                "/api/v1/rooms",
                &[
                    ("authorization", &format!("Bearer {}", tokens[0])),
                    ("content-type", "application/json"),
                ],
                json!({"name": room, "visibility": "public"})
                    .to_string()
                    .into_bytes(),
            )
            .await;
            assert_eq!(response.status, 201, "{:?}", response.json);
        }
        let (code, _) = setup.terminate();
        assert_eq!(code, Some(0));
        let mut ledger = Ledger {
            order: vec![Vec::new(); CLIENTS],
            unacked: vec![Vec::new(); CLIENTS],
            ..Ledger::default()
        };
        for cycle in 0..kills {
            // Kill moments spread over the storm's first 1.5 seconds, varied per cycle.
            let kill_after = Duration::from_millis(
                100 + u64::try_from((run * 37 + cycle * 53) % 1400).unwrap_or(0),
            );
            crash_cycle(dir.path(), &tokens, &mut ledger, cycle, kill_after).await;
            let check = Daemon::start(dir.path(), STORM_ENV)
                .unwrap_or_else(|log| panic!("run {run} cycle {cycle}: no reopen:\n{log}"));
            let stored = verify(check.addr, &tokens[0], &ledger).await;
            let (code, log) = check.terminate();
            assert_eq!(code, Some(0), "{}", log.join("\n"));
            survived += 1;
            if cycle + 1 == kills {
                figures.stored += stored;
            }
        }
        figures.acked += ledger.acked.len();
        figures.sent += ledger.total_sent;
    }
    (figures, survived)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_storm_loses_and_duplicates_no_acknowledged_message() {
    let trials = count_from_env("RELIABILITY_CRASH_TRIALS", 2);
    let cycles = count_from_env("RELIABILITY_CRASH_CYCLES", 3);
    let (figures, survived) = crash_suite(trials, cycles).await;
    assert_eq!(survived, trials + cycles);
    assert!(
        figures.acked > 0,
        "nothing was acknowledged: the storm never ran"
    );
    // Printed for tests/reliability/run (visible with --nocapture).
    println!(
        "crash: {trials} trials + {cycles} kill/restart cycles survived ({survived} kills); \
         {} messages sent, {} acknowledged, 0 acknowledged lost, 0 duplicated, {} stored",
        figures.sent, figures.acked, figures.stored
    );
}
