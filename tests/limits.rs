//! Limits, measured from outside: the message rate limit admits exactly rate x time + burst;
//! peers that never authenticate (half-sent HTTP headers, a bare TCP connection, a WebSocket
//! without token or HELLO) are closed on time; a subscriber that stops reading is closed within
//! 2 s of overflowing its queue while the server's memory stays within twice that queue's bytes
//! and every other subscriber gets everything in order. (The per-user connection cap, 1009 for
//! oversized frames and the heartbeat are in `ws_session` and `hostile_input`.)

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{TestServer, access_token, add_user};
use crate::daemon::Daemon;
use crate::rawws::RawWs;
use crate::wsclient::{Ws, try_connect};

/// The one account the in-process servers here need.
const ALICE: &[(&str, &str, &str)] = &[("alice", "alice-password", "user")];

/// GCRA admits the burst at once, then one per interval: over a window of length w measured
/// by the server, exactly burst + floor(w / interval). The client brackets w between what it
/// can see (first reply to last send, first send to last reply).
#[tokio::test]
async fn rate_limit_admits_exactly_rate_times_time_plus_burst() {
    const PER_MINUTE: u32 = 120;
    const BURST: u32 = 4;
    let interval = Duration::from_secs(60) / PER_MINUTE;
    let server = TestServer::start_with_users_and(ALICE, |c| {
        c.ws.messages_per_minute = PER_MINUTE;
        c.ws.message_burst = BURST;
    })
    .await;
    let token = server.access_token("alice", "alice-password").await;
    let mut ws = Ws::connect(server.addr, &token).await;
    let mut accepted = 0u32;
    let mut refused = 0u32;
    let (mut first_sent, mut first_replied, mut last_sent) = (None, None, Instant::now());
    let run_until = Instant::now() + Duration::from_millis(3200);
    let mut n = 0u32;
    while Instant::now() < run_until {
        last_sent = Instant::now();
        first_sent.get_or_insert(last_sent);
        let reply = ws
            .request(
                "Broadcast",
                json!({"topic": "nobody", "payload": n}),
                &format!("b{n}"),
            )
            .await;
        first_replied.get_or_insert_with(Instant::now);
        match reply["type"].as_str() {
            Some("Ack") => accepted += 1,
            Some("Error") if reply["data"]["code"] == 429 => refused += 1,
            _ => panic!("unexpected reply {reply}"),
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_replied = Instant::now();
    let (first_sent, first_replied) = (first_sent.expect("sent"), first_replied.expect("replied"));
    let shortest = last_sent.saturating_duration_since(first_replied);
    let longest = last_replied.duration_since(first_sent);
    let refills =
        |window: Duration| u32::try_from(window.as_micros() / interval.as_micros()).expect("small");
    let (low, high) = (BURST + refills(shortest), BURST + refills(longest));
    assert!(
        (low..=high).contains(&accepted),
        "accepted {accepted} (refused {refused}); rate x time + burst is between {low} and {high}"
    );
    assert!(refused > 0, "the limit was never reached");
    // Well-behaved again: the connection is still open and served.
    let pong = ws.request("Ping", json!({}), "alive").await;
    assert_eq!(pong["type"], "Pong");
    server.stop().await;
}

/// Reads until EOF or reset; `true` if that happened within `within`.
async fn ends_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// Half-sent headers and a silent TCP connection are cut after `server.header_read_timeout_secs`;
/// a WebSocket without a token gets 4401 at once, or (guests admitted) when its HELLO does not
/// come within `fastchat.hello_timeout_secs`.
#[tokio::test]
async fn unauthenticated_peers_are_closed_on_time() {
    let server = TestServer::start_with_users_and(ALICE, |c| {
        c.server.header_read_timeout_secs = 1;
        c.fastchat.guests = true;
        c.fastchat.hello_timeout_secs = 1;
    })
    .await;
    // Bounds: the configured 1 s plus a generous allowance for a loaded machine.
    let bound = Duration::from_secs(6);

    let mut slowloris = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    slowloris
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();
    assert!(
        ends_within(&mut slowloris, bound).await,
        "half-sent headers kept the connection"
    );

    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    assert!(
        ends_within(&mut silent, bound).await,
        "a silent TCP connection was kept"
    );

    // A keep-alive connection that goes quiet after a request is cut the same way.
    let mut idle = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert!(
        ends_within(&mut idle, bound).await,
        "an idle keep-alive connection was kept"
    );

    // No token: refused at once with 4401 when guests are off (ws_session covers that); with
    // guests on, after the HELLO deadline.
    let mut quiet = RawWs::connect(server.addr, "/ws").await.expect("upgrade");
    let refusal = quiet.next_json().await.expect("an error frame");
    assert_eq!(refusal["data"]["code"], 401, "{refusal}");
    assert_eq!(quiet.closed().await, Some(4401));
    assert!(
        started.elapsed() < bound * 3,
        "took {:?}",
        started.elapsed()
    );

    // The server is fine meanwhile.
    let health = crate::common::http(server.addr, "GET", "/healthz", &[], Vec::new()).await;
    assert_eq!(health.status, 200);
    server.stop().await;
}

/// Publishes Broadcast `i` (with a `BLOB_BYTES` payload) and returns its Ack.
async fn publish(ws: &mut Ws, i: u64, last: bool) -> Value {
    let blob = "x".repeat(BLOB_BYTES);
    let frame = json!({"topic": "firehose", "payload": {"i": i, "blob": blob, "last": last}});
    ws.request("Broadcast", frame, &format!("p{i}")).await
}

/// Bytes of one Broadcast frame as a subscriber receives it (the payload dominates).
const BLOB_BYTES: usize = 16 * 1024;
const OUTBOUND_QUEUE: usize = 256;

/// A subscriber that stops reading: closed (its connection slot freed) within 2 s of the
/// Broadcast that overflowed its queue; meanwhile the daemon's RSS grows by at most twice
/// the queue's bytes, and the other subscriber receives every Broadcast in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_closed_within_2s_and_costs_at_most_twice_its_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["alice", "bob", "carol"] {
        add_user(dir.path(), name, &format!("{name}-password"), "user");
    }
    let queue = OUTBOUND_QUEUE.to_string();
    let daemon = Daemon::start(
        dir.path(),
        &[
            ("NATTER_WS_OUTBOUND_QUEUE", queue.as_str()),
            ("NATTER_WS_MAX_CONNECTIONS_PER_USER", "1"),
            ("NATTER_WS_MESSAGES_PER_MINUTE", "1000000"),
            ("NATTER_WS_MESSAGE_BURST", "100000"),
        ],
    )
    .expect("start");
    let addr = daemon.addr;
    let publisher_token = access_token(addr, "alice", "alice-password").await;
    let fast_token = access_token(addr, "bob", "bob-password").await;
    let slow_token = access_token(addr, "carol", "carol-password").await;

    let mut publisher = Ws::connect(addr, &publisher_token).await;
    let mut fast = Ws::connect(addr, &fast_token).await;
    fast.request("Subscribe", json!({"topics": ["firehose"]}), "s")
        .await;
    // The fast subscriber reads everything, checking the order, in its own task.
    let (received_tx, mut received_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let reader = tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            let frame = fast.recv_type("Broadcast").await;
            let i = frame["data"]["payload"]["i"].as_u64().expect("i");
            assert_eq!(
                i,
                next,
                "the fast subscriber got {i} after {}",
                next.wrapping_sub(1)
            );
            next += 1;
            let _ = received_tx.send(i);
            if frame["data"]["payload"]["last"] == true {
                return next;
            }
        }
    });

    let mut sent = 0u64;
    // Warm-up with the fast subscriber alone: the baseline includes a publishing server.
    for _ in 0..OUTBOUND_QUEUE {
        let ack = publish(&mut publisher, sent, false).await;
        assert_eq!(ack["data"]["recipients"], 1, "{ack}");
        sent += 1;
    }
    while received_rx.try_recv().is_ok() {}
    let (baseline, _) = daemon.memory_kib();

    // The slow subscriber: a socket with a small receive buffer that never reads again.
    let mut slow = RawWs::connect_small(addr, &format!("/ws?token={slow_token}"), 4096)
        .await
        .expect("slow subscriber connects");
    let subscribe = json!({"type": "Subscribe", "data": {"topics": ["firehose"]}, "id": "s"});
    slow.send(&crate::rawws::RawFrame::text(&subscribe.to_string()))
        .await;
    slow.json_until("the reply to Subscribe", |frame| {
        (frame["id"] == "s").then_some(())
    })
    .await
    .expect("subscribed");

    let mut peak = baseline;
    let overflowed_at = loop {
        let ack = publish(&mut publisher, sent, false).await;
        sent += 1;
        peak = peak.max(daemon.memory_kib().0);
        match ack["data"]["recipients"].as_u64() {
            Some(2) => {}
            // The hub found the slow queue full: from here it has 2 s.
            Some(1) => break Instant::now(),
            _ => panic!("unexpected ack {ack}"),
        }
        assert!(sent < 100_000, "the slow subscriber never overflowed");
    };
    let peak_at_overflow = peak;
    // Its connection slot (one per user) is free once it is closed: poll with a new connection.
    let closed_after = loop {
        match try_connect(addr, &format!("/ws?token={slow_token}"), &[]).await {
            Ok(mut socket) => {
                let first = tokio::time::timeout(Duration::from_secs(5), socket.next())
                    .await
                    .expect("a first frame")
                    .expect("open")
                    .expect("frame");
                let Message::Text(text) = first else {
                    panic!("text expected")
                };
                let frame: Value = serde_json::from_str(text.as_str()).expect("json");
                if frame["data"]["status"] == "connected" {
                    let _ = socket.close(None).await;
                    break overflowed_at.elapsed();
                }
                assert_eq!(frame["data"]["code"], 429, "{frame}");
            }
            Err(e) => panic!("connect: {e}"),
        }
        peak = peak.max(daemon.memory_kib().0);
        assert!(
            overflowed_at.elapsed() < Duration::from_secs(30),
            "never closed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    // The publisher and the fast subscriber carry on.
    for _ in 0..10 {
        let ack = publish(&mut publisher, sent, false).await;
        assert_eq!(ack["data"]["recipients"], 1, "{ack}");
        sent += 1;
    }
    publish(&mut publisher, sent, true).await;
    sent += 1;
    let received = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the fast subscriber finishes")
        .expect("in order");
    assert_eq!(received, sent, "the fast subscriber missed messages");
    drop(slow);

    let queue_kib = u64::try_from(OUTBOUND_QUEUE * BLOB_BYTES / 1024).expect("small");
    let grown = peak.saturating_sub(baseline);
    println!(
        "slow consumer (peak at overflow {peak_at_overflow} KiB): closed {:.2} s after overflowing its queue of {OUTBOUND_QUEUE} x {} KiB; \
         RSS baseline {baseline} KiB, peak {peak} KiB (+{grown} KiB, bound {} KiB); \
         fast subscriber got all {sent} in order",
        closed_after.as_secs_f64(),
        BLOB_BYTES / 1024,
        2 * queue_kib
    );
    assert!(
        closed_after < Duration::from_secs(2),
        "closed after {closed_after:?}"
    );
    assert!(
        grown <= 2 * queue_kib,
        "RSS grew by {grown} KiB, more than twice the queue ({queue_kib} KiB)"
    );
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0));
}
