//! permessage-deflate (RFC 7692) over real sockets: the negotiation answer, compressed frames both
//! ways (whole and fragmented) on the native endpoint and on Kibray's (whose documentation promises
//! compression), a compressed and a plain client in one room, the inflate bound (1009), bad
//! compressed data and RSV1 where it does not belong (1002), and the config switch.

use serde_json::{Value, json};

use crate::common::Team;
use crate::rawws::{OP_CONTINUATION, OP_TEXT, RawFrame, RawWs, deflate};
use crate::wsclient::Ws;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const ANSWER: &str = "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; \
                      client_no_context_takeover";

/// alice (admin) and bob.
const TEAM: &[(&str, &str)] = &[("alice", "admin"), ("bob", "user")];

/// The team, and the public room "room" made by alice.
async fn team(adjust: impl FnOnce(&mut natter::config::Config)) -> Team {
    let t = Team::start_with(TEAM, adjust).await;
    t.create_room("alice", "room", "public").await;
    t
}

/// Connects to `path` offering permessage-deflate and checks the server's answer.
async fn negotiated(t: &Team, path: &str) -> RawWs {
    let raw = RawWs::connect_with(t.addr(), path, OFFER)
        .await
        .expect("upgrade");
    assert!(
        raw.head.to_ascii_lowercase().contains(ANSWER),
        "{}",
        raw.head
    );
    raw
}

/// The next frame that passes `select` (`what` names it).
async fn frame_where(raw: &mut RawWs, what: &str, select: impl Fn(&Value) -> bool) -> Value {
    raw.json_until(what, |frame| select(frame).then(|| frame.clone()))
        .await
        .expect("a frame")
}

/// A native request as a compressed frame, and its reply.
async fn deflated_request(raw: &mut RawWs, kind: &str, data: Value, id: &str) -> Value {
    let request = json!({"type": kind, "id": id, "data": data}).to_string();
    assert!(raw.send(&RawFrame::deflated_text(&request)).await);
    frame_where(raw, &format!("the reply to {kind} {id:?}"), |f| {
        f["id"] == id
    })
    .await
}

#[tokio::test]
async fn compressed_and_plain_clients_share_a_room() {
    let t = team(|_| {}).await;
    let mut alice = negotiated(&t, &format!("/ws?token={}", t.token("alice"))).await;
    // A short request, compressed anyway: the client decides, the server inflates.
    let joined = deflated_request(&mut alice, "Join", json!({"room": "room"}), "j").await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let joined = bob.request("Join", json!({"room": "room"}), "j").await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");

    // Compressed client -> plain client.
    let long = "natter compresses this sentence, and the next one too. ".repeat(20);
    let ack = deflated_request(
        &mut alice,
        "Send",
        json!({"room": "room", "content": long}),
        "s",
    )
    .await;
    assert!(ack["data"]["seq"].as_u64().is_some(), "{ack}");
    let message = bob.recv_type("Message").await;
    assert_eq!(message["data"]["content"], long.as_str());

    // Plain client -> compressed client: the event arrives compressed (it is long enough).
    let before = alice.compressed;
    let reply = format!("{long} Indeed.");
    bob.request("Send", json!({"room": "room", "content": reply}), "b")
        .await;
    let message = frame_where(&mut alice, "bob's Message", |f| {
        f["type"] == "Message" && f["data"]["author"] == "bob"
    })
    .await;
    assert_eq!(message["data"]["content"], reply.as_str());
    assert!(alice.compressed > before, "the long event came compressed");

    // A compressed message in two fragments: RSV1 on the first frame only.
    let request = json!({"type": "Send", "id": "f", "data": {"room": "room", "content": format!("{long} Fragmented.")}})
        .to_string();
    let compressed = deflate(request.as_bytes());
    let (head, tail) = compressed.split_at(compressed.len() / 2);
    let mut first = RawFrame::new(OP_TEXT, head);
    first.fin = false;
    first.rsv = 0b100;
    assert!(alice.send(&first).await);
    assert!(alice.send(&RawFrame::new(OP_CONTINUATION, tail)).await);
    let ack = frame_where(&mut alice, "the reply to the fragmented Send", |f| {
        f["id"] == "f"
    })
    .await;
    assert!(ack["data"]["seq"].as_u64().is_some(), "{ack}");
    let message = bob
        .recv_where("alice's Message", |f| {
            f["type"] == "Message" && f["data"]["author"] == "alice"
        })
        .await;
    assert_eq!(message["data"]["content"], format!("{long} Fragmented."));
    t.server.stop().await;
}

#[tokio::test]
async fn kibray_chat_is_compressed_both_ways() {
    let t = team(|_| {}).await;
    let mut alice = negotiated(&t, &format!("/ws/chat/room/?token={}", t.token("alice"))).await;
    let long = "A Kibray message long enough to be worth compressing. ".repeat(10);
    let frame = json!({"type": "chat_message", "message": long}).to_string();
    assert!(alice.send(&RawFrame::deflated_text(&frame)).await);
    let echoed = frame_where(&mut alice, "a chat_message", |f| {
        f["type"] == "chat_message"
    })
    .await;
    assert_eq!(echoed["message"]["content"], long.as_str(), "{echoed}");
    assert!(
        alice.compressed >= 1,
        "the chat_message event came compressed"
    );
    t.server.stop().await;
}

#[tokio::test]
async fn compressed_input_is_bounded_and_checked() {
    let t = team(|c| c.ws.max_frame_bytes = 64 * 1024).await;
    let path = format!("/ws?token={}", t.token("alice"));
    let connect = || RawWs::connect_with(t.addr(), &path, OFFER);

    // 1 MiB of spaces in a frame of about a kilobyte: refused once past 64 KiB (1009).
    let mut bomb = connect().await.expect("upgrade");
    let spaces = vec![b' '; 1 << 20];
    let mut frame = RawFrame::new(OP_TEXT, deflate(&spaces));
    assert!(frame.payload.len() < 8192, "{}", frame.payload.len());
    frame.rsv = 0b100;
    assert!(bomb.send(&frame).await);
    assert_eq!(bomb.closed().await, Some(1009));

    // Not deflate data at all.
    let mut garbage = connect().await.expect("upgrade");
    let mut frame = RawFrame::new(OP_TEXT, vec![0xff; 16]);
    frame.rsv = 0b100;
    assert!(garbage.send(&frame).await);
    assert_eq!(garbage.closed().await, Some(1002));

    // RSV1 on a continuation frame.
    let mut misplaced = connect().await.expect("upgrade");
    let mut first = RawFrame::new(OP_TEXT, b"{\"type\":".to_vec());
    first.fin = false;
    let mut rest = RawFrame::new(OP_CONTINUATION, b"\"Ping\"}".to_vec());
    rest.rsv = 0b100;
    assert!(misplaced.send(&first).await);
    assert!(misplaced.send(&rest).await);
    assert_eq!(misplaced.closed().await, Some(1002));

    // Inflated text is still checked for UTF-8 (1007).
    let mut invalid = connect().await.expect("upgrade");
    let mut frame = RawFrame::new(OP_TEXT, deflate(&[b'a', 0xff, 0xfe, b'b']));
    frame.rsv = 0b100;
    assert!(invalid.send(&frame).await);
    assert_eq!(invalid.closed().await, Some(1007));

    // The server is still there.
    let mut ws = Ws::connect(t.addr(), t.token("bob")).await;
    let pong = ws.request("Ping", json!({}), "p").await;
    assert_eq!(pong["type"], "Pong", "{pong}");
    t.server.stop().await;
}

#[tokio::test]
async fn switched_off_it_is_not_negotiated() {
    let t = team(|c| c.ws.permessage_deflate = false).await;
    let mut alice =
        RawWs::connect_with(t.addr(), &format!("/ws?token={}", t.token("alice")), OFFER)
            .await
            .expect("upgrade");
    assert!(
        !alice
            .head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{}",
        alice.head
    );
    // Without the extension, RSV1 is a protocol error.
    assert!(
        alice
            .send(&RawFrame::deflated_text("{\"type\":\"Ping\",\"id\":\"p\"}"))
            .await
    );
    assert_eq!(alice.closed().await, Some(1002));
    t.server.stop().await;
}
