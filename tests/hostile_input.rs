//! Hostile input on every WebSocket endpoint: malformed JSON, wrong types, unknown types, huge
//! numbers, deep nesting and binary garbage get the dialect's error frame and the connection
//! stays open; reserved bits, reserved opcodes, unmasked frames, misplaced continuations and
//! fragmented control frames close it with 1002, invalid UTF-8 with 1007, oversized frames
//! with 1009. The storm sends many clients' worth of that while `/healthz` is polled: no
//! panic, always healthy, and memory back within +10% of the baseline afterwards.
//! `cargo test` runs 20 clients x 100 frames; `tests/reliability/run` sets
//! `RELIABILITY_HOSTILE_CLIENTS=200` and `RELIABILITY_HOSTILE_FRAMES=1000`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{access_token, add_user, http};
use crate::daemon::Daemon;
use crate::rawws::{OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT, RawFrame, RawWs};

/// The daemon's frame limit in these tests (small, so oversized frames are cheap to send).
const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Limits out of the way: every frame must reach a decoder rather than a rate limiter.
const HOSTILE_ENV: &[(&str, &str)] = &[
    ("NATTER_WS_MAX_FRAME_BYTES", "65536"),
    ("NATTER_WS_MESSAGES_PER_MINUTE", "10000000"),
    ("NATTER_WS_MESSAGE_BURST", "1000000"),
    ("NATTER_WS_MAX_CONNECTIONS_PER_USER", "10000"),
    ("NATTER_KIBRAY_MESSAGES_PER_MINUTE", "10000000"),
    ("NATTER_FASTCHAT_MESSAGES_PER_MINUTE", "10000000"),
];

/// The endpoints, each with how to tell that a connection is set up and still served.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Endpoint {
    Native,
    FastChat,
    EduSphere,
    Rooms,
    KibrayChat,
    KibrayNotifications,
    KibrayStatus,
}

const ENDPOINTS: [Endpoint; 7] = [
    Endpoint::Native,
    Endpoint::FastChat,
    Endpoint::EduSphere,
    Endpoint::Rooms,
    Endpoint::KibrayChat,
    Endpoint::KibrayNotifications,
    Endpoint::KibrayStatus,
];

impl Endpoint {
    fn path(self, token: &str) -> String {
        match self {
            Endpoint::Native | Endpoint::FastChat => format!("/ws?token={token}"),
            Endpoint::EduSphere => format!("/ws/chat/alice/hostile?token={token}"),
            Endpoint::Rooms => format!("/api/v1/ws/connect?token={token}"),
            Endpoint::KibrayChat => format!("/ws/chat/hostile/?token={token}"),
            Endpoint::KibrayNotifications => format!("/ws/notifications/?token={token}"),
            Endpoint::KibrayStatus => format!("/ws/status/?token={token}"),
        }
    }

    /// A harmless request and a test of its answer: proof the connection is served.
    fn probe(self) -> (Value, fn(&Value) -> bool) {
        match self {
            Endpoint::Native => (json!({"type": "Ping", "id": "alive"}), |f| {
                f["type"] == "Pong" && f["id"] == "alive"
            }),
            Endpoint::FastChat => (json!({"type": "PING", "data": {}}), |f| f["type"] == "PONG"),
            Endpoint::EduSphere => (json!({"type": "delete", "messageId": "alive"}), |f| {
                f["error"] == "Message not found."
            }),
            Endpoint::Rooms => (json!({"type": "ping"}), |f| f["type"] == "pong"),
            Endpoint::KibrayChat | Endpoint::KibrayNotifications | Endpoint::KibrayStatus => {
                (json!({"type": "alive"}), |f| {
                    f["type"] == "error" && f["error"].as_str().is_some_and(|e| e.contains("alive"))
                })
            }
        }
    }

    /// Whether a text frame is this dialect's documented error frame.
    fn is_error_frame(self, frame: &Value) -> bool {
        match self {
            Endpoint::Native => frame["type"] == "Error" && frame["data"]["code"] == 400,
            Endpoint::FastChat => frame["type"] == "ERROR" && frame["data"]["code"].is_string(),
            Endpoint::EduSphere => frame["error"].is_string(),
            Endpoint::Rooms => frame["type"] == "error",
            Endpoint::KibrayChat | Endpoint::KibrayNotifications | Endpoint::KibrayStatus => {
                frame["type"] == "error" && frame["code"].is_string()
            }
        }
    }
}

/// Connects and sets the connection up (FastChat: a HELLO as the token's user); then probes.
async fn open(addr: SocketAddr, endpoint: Endpoint, user: &User) -> RawWs {
    let mut ws = RawWs::connect(addr, &endpoint.path(&user.token))
        .await
        .unwrap_or_else(|e| panic!("{endpoint:?}: upgrade refused: {e}"));
    if endpoint == Endpoint::FastChat {
        let hello =
            json!({"type": "HELLO", "data": {"user_id": user.id, "display_name": "Hostile"}});
        ws.send(&RawFrame::text(&hello.to_string())).await;
        expect(&mut ws, endpoint, |f| f["type"] == "HELLO_ACK").await;
    }
    alive(&mut ws, endpoint).await;
    ws
}

/// Reads until a frame passes `wanted`; panics if the connection ends first. Returns the
/// number of this dialect's error frames skipped on the way.
async fn expect(ws: &mut RawWs, endpoint: Endpoint, wanted: fn(&Value) -> bool) -> u64 {
    let mut errors = 0;
    let found = ws
        .json_until(&format!("{endpoint:?}: the expected answer"), |frame| {
            if wanted(frame) {
                return Some(());
            }
            errors += u64::from(endpoint.is_error_frame(frame));
            None
        })
        .await;
    match found {
        Ok(()) => errors,
        Err(ended) => panic!("{endpoint:?}: the connection ended ({ended:?}) on bad content"),
    }
}

async fn alive(ws: &mut RawWs, endpoint: Endpoint) -> u64 {
    let (probe, answer) = endpoint.probe();
    assert!(ws.send(&RawFrame::text(&probe.to_string())).await);
    expect(ws, endpoint, answer).await
}

/// Bad content: the frame and whether every dialect answers it with an error frame (binary
/// garbage on `/ws` can happen to be a well-formed binary frame, for instance).
fn bad_content(n: u64) -> RawFrame {
    let depth = 64 + usize::try_from(n % 400).unwrap_or(0);
    match n % 10 {
        0 => RawFrame::text(r#"{"type": "Send", "data": {"room": "x", "content": "#),
        1 => RawFrame::text(&format!("}}{{][{n}:,\u{0}\"")),
        2 => RawFrame::text(r#"{"type": ["Send"], "data": "x", "id": {"a": 1}}"#),
        3 => RawFrame::text(&format!(r#"{{"type": "no-such-type-{n}", "data": {{}}}}"#)),
        4 => RawFrame::text(
            r#"{"type": 1e400, "id": 18446744073709551616, "timestamp": -1e308, "messageId": 99999999999999999999999}"#,
        ),
        5 => RawFrame::text(&format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
        6 => RawFrame::text(&format!(
            "{}\"x\"{}",
            r#"{"type":"#.repeat(depth),
            "}".repeat(depth)
        )),
        7 => RawFrame::text(
            r#"{"type": "Join", "data": {"room": 5, "since": "yesterday"}, "timestamp": "now"}"#,
        ),
        8 => RawFrame::text("null"),
        _ => RawFrame::new(
            OP_BINARY,
            (0..64u64)
                .map(|i| u8::try_from((n * 31 + i * 7) % 251).unwrap_or(0))
                .collect::<Vec<u8>>(),
        ),
    }
}

/// Protocol violations, each with the close code it must get.
fn violation(n: u64) -> (Vec<u8>, u16) {
    let mut text = RawFrame::text(r#"{"type": "Ping"}"#);
    match n % 7 {
        0 => {
            text.rsv = u8::try_from(1 + n % 7).unwrap_or(1);
            (text.encode([1, 2, 3, 4]), 1002)
        }
        1 => {
            text.opcode = [0x3, 0x7, 0xB, 0xF][usize::try_from(n % 4).unwrap_or(0)];
            (text.encode([1, 2, 3, 4]), 1002)
        }
        2 => (
            RawFrame::new(OP_TEXT, vec![b'{', 0xff, 0xfe, b'}']).encode([9, 9, 9, 9]),
            1007,
        ),
        3 => {
            text.masked = false;
            (text.encode([0; 4]), 1002)
        }
        4 => (
            RawFrame::new(OP_TEXT, vec![b'x'; MAX_FRAME_BYTES + 1]).encode([5, 6, 7, 8]),
            1009,
        ),
        5 => (
            RawFrame::new(OP_CONTINUATION, b"orphan".to_vec()).encode([1, 1, 1, 1]),
            1002,
        ),
        _ => {
            let mut ping = RawFrame::new(OP_PING, b"split".to_vec());
            ping.fin = false;
            (ping.encode([2, 2, 2, 2]), 1002)
        }
    }
}

#[derive(Clone)]
struct User {
    token: String,
    id: String,
}

#[derive(Default)]
struct Counters {
    frames: AtomicU64,
    error_frames: AtomicU64,
    violations: AtomicU64,
    reconnects: AtomicU64,
}

/// One hostile client: `frames` bad frames on `endpoint`; every tenth frame checks the
/// connection is still served, every 50th is a protocol violation that must close it with
/// its code (then the client reconnects).
async fn hostile_client(
    addr: SocketAddr,
    endpoint: Endpoint,
    user: User,
    client: u64,
    frames: u64,
    counters: Arc<Counters>,
) {
    let mut ws = open(addr, endpoint, &user).await;
    for n in 0..frames {
        let seed = client * 1_000_003 + n;
        if n % 50 == 49 {
            let (bytes, code) = violation(seed);
            if ws.send_bytes(&bytes).await {
                // The server may close before the whole frame is written; either way its
                // close code is what counts.
            }
            let closed = ws.closed().await;
            assert_eq!(
                closed,
                Some(code),
                "{endpoint:?}: violation {} closed with {closed:?}",
                seed % 7
            );
            counters.violations.fetch_add(1, Ordering::Relaxed);
            counters.frames.fetch_add(1, Ordering::Relaxed);
            ws = open(addr, endpoint, &user).await;
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        assert!(
            ws.send(&bad_content(seed)).await,
            "{endpoint:?}: write failed"
        );
        counters.frames.fetch_add(1, Ordering::Relaxed);
        if n % 10 == 9 {
            let errors = alive(&mut ws, endpoint).await;
            counters.error_frames.fetch_add(errors, Ordering::Relaxed);
        }
    }
    let errors = alive(&mut ws, endpoint).await;
    counters.error_frames.fetch_add(errors, Ordering::Relaxed);
    ws.send(&RawFrame::new(OP_CLOSE, 1000u16.to_be_bytes()))
        .await;
}

/// Users, rooms and tokens for the endpoints.
async fn setup(daemon: &Daemon) -> Vec<User> {
    let mut users = Vec::new();
    for (name, password) in [("alice", "alice-password"), ("bob", "bob-password")] {
        let token = access_token(daemon.addr, name, password).await;
        let me = http(
            daemon.addr,
            "GET",
            "/api/v1/me",
            &[("authorization", &format!("Bearer {token}"))],
            Vec::new(),
        )
        .await;
        let id = me.json["user"]["id"]
            .as_str()
            .or_else(|| me.json["id"].as_str())
            .unwrap_or_else(|| panic!("user id in {:?}", me.json))
            .to_owned();
        users.push(User { token, id });
    }
    for room in ["alice/hostile", "hostile"] {
        let response = http(
            daemon.addr,
            "POST",
            "/api/v1/rooms",
            &[
                ("authorization", &format!("Bearer {}", users[0].token)),
                ("content-type", "application/json"),
            ],
            json!({"name": room, "visibility": "public"})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_eq!(response.status, 201, "{:?}", response.json);
        // EduSphere serves participants only: bob joins (anyone may join a public room).
        let path = format!("/api/v1/rooms/{}/members/bob", room.replace('/', "%2F"));
        let joined = http(
            daemon.addr,
            "POST",
            &path,
            &[("authorization", &format!("Bearer {}", users[1].token))],
            Vec::new(),
        )
        .await;
        assert!(joined.status < 300, "{path}: {:?}", joined.json);
    }
    users
}

fn count_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every protocol violation on every endpoint gets its close code, and every kind of bad
/// content gets the dialect's error frame with the connection left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_bad_frames_as_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    add_user(dir.path(), "alice", "alice-password", "user");
    add_user(dir.path(), "bob", "bob-password", "user");
    let daemon = Daemon::start(dir.path(), HOSTILE_ENV).expect("start");
    let users = setup(&daemon).await;
    for endpoint in ENDPOINTS {
        let mut ws = open(daemon.addr, endpoint, &users[1]).await;
        for n in 0..10 {
            let frame = bad_content(n);
            assert!(ws.send(&frame).await);
            let errors = alive(&mut ws, endpoint).await;
            // Binary garbage on /ws may form a valid binary frame header by chance; every
            // text case is an error on every dialect.
            if frame.opcode == OP_TEXT {
                assert_eq!(
                    errors, 1,
                    "{endpoint:?}: bad content {n} got {errors} error frames"
                );
            }
        }
        for n in 0..7 {
            let (bytes, code) = violation(n);
            ws.send_bytes(&bytes).await;
            assert_eq!(ws.closed().await, Some(code), "{endpoint:?}: violation {n}");
            ws = open(daemon.addr, endpoint, &users[1]).await;
        }
    }
    // A frame header that claims 2^63 bytes is refused from the header alone.
    let mut ws = open(daemon.addr, Endpoint::Native, &users[0]).await;
    let mut huge = vec![0x81, 0xff];
    huge.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    huge.extend_from_slice(&[0, 0, 0, 0]);
    ws.send_bytes(&huge).await;
    assert_eq!(ws.closed().await, Some(1009));
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0));
    assert!(
        !log.iter().any(|l| l.contains("panicked")),
        "{}",
        log.join("\n")
    );
}

/// Many clients of bad frames on all endpoints at once, `/healthz` polled throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_storm_leaves_the_server_healthy_and_its_memory_where_it_was() {
    let clients = count_from_env("RELIABILITY_HOSTILE_CLIENTS", 20);
    let frames = count_from_env("RELIABILITY_HOSTILE_FRAMES", 100);
    let dir = tempfile::tempdir().expect("tempdir");
    add_user(dir.path(), "alice", "alice-password", "user");
    add_user(dir.path(), "bob", "bob-password", "user");
    let mut daemon = Daemon::start(dir.path(), HOSTILE_ENV).expect("start");
    let users = setup(&daemon).await;
    let addr = daemon.addr;

    // Warm-up: one round of every endpoint, so the baseline includes the one-time
    // allocations (dialect statics, the store's caches) and not just an idle process.
    let warm = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    for (i, endpoint) in ENDPOINTS.iter().enumerate() {
        let i = u64::try_from(i).expect("small");
        tasks.push(tokio::spawn(hostile_client(
            addr,
            *endpoint,
            users[0].clone(),
            i,
            50,
            warm.clone(),
        )));
    }
    for task in tasks {
        task.await.expect("warm-up client");
    }
    let (baseline, _) = daemon.memory_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let health = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut polls, mut failures) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let ok = tokio::time::timeout(
                    Duration::from_secs(5),
                    http(addr, "GET", "/healthz", &[], Vec::new()),
                )
                .await
                .is_ok_and(|r| r.status == 200);
                polls += 1;
                failures += u64::from(!ok);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (polls, failures)
        })
    };
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let endpoint = ENDPOINTS[usize::try_from(client).expect("small") % ENDPOINTS.len()];
        let user = users[usize::try_from(client % 2).expect("small")].clone();
        tasks.push(tokio::spawn(hostile_client(
            addr,
            endpoint,
            user,
            client,
            frames,
            counters.clone(),
        )));
    }
    let mut peak_rss = baseline;
    // Sample memory while the storm runs (bounded by the clients' own bounds).
    while !tasks.iter().all(|t| t.is_finished()) {
        peak_rss = peak_rss.max(daemon.memory_kib().0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for task in tasks {
        task.await.expect("hostile client");
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (polls, failures) = health.await.expect("health poller");
    assert!(daemon.running(), "the daemon died");
    assert_eq!(failures, 0, "/healthz failed {failures} of {polls} times");

    // Memory goes back: poll (bounded) until RSS is within +10% of the baseline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let (rss, _) = daemon.memory_kib();
        if rss * 10 <= baseline * 11 || Instant::now() > deadline {
            break rss;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let sent = counters.frames.load(Ordering::Relaxed);
    assert_eq!(sent, clients * frames);
    println!(
        "hostile: {clients} clients x {frames} frames = {sent} bad frames ({} protocol violations, \
         {} reconnects, {} error frames) in {:.1} s; /healthz {polls} polls, {failures} failed; \
         RSS baseline {baseline} KiB, peak {peak_rss} KiB, after {after} KiB",
        counters.violations.load(Ordering::Relaxed),
        counters.reconnects.load(Ordering::Relaxed),
        counters.error_frames.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
    );
    assert!(
        after * 10 <= baseline * 11,
        "memory did not come back: baseline {baseline} KiB, after {after} KiB (peak {peak_rss} KiB)"
    );
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0));
    assert!(
        !log.iter().any(|l| l.contains("panicked")),
        "a panic in the log"
    );
}
