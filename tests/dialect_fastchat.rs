//! The FastChat dialect at `/ws`: every example frame of FastChat's documentation, its error codes
//! and limits, the switch from the native protocol on a first HELLO, guests, and chats shared with
//! native clients through the direct rooms.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Member, Team};
use crate::wsclient::{Ws, raw_connect};

/// alice, bob and carol.
const TEAM: &[(&str, &str)] = &[("alice", "user"), ("bob", "user"), ("carol", "user")];

/// A FastChat frame.
fn fc(kind: &str, data: Value) -> Value {
    json!({"type": kind, "data": data})
}

/// Connects with a token (the native welcome comes first), says HELLO, and reads HELLO_ACK and
/// the PRESENCE that follows it.
async fn fastchat(t: &Team, user: &Member, display_name: &str) -> Ws {
    let mut ws = Ws::connect(t.addr(), &user.token).await;
    ws.send(fc(
        "HELLO",
        json!({"user_id": user.id, "display_name": display_name}),
    ))
    .await;
    let ack = ws.recv().await;
    assert_eq!(
        ack,
        fc(
            "HELLO_ACK",
            json!({"user_id": user.id, "status": "connected"})
        )
    );
    let presence = ws.recv().await;
    assert_eq!(presence["type"], "PRESENCE", "{presence}");
    ws
}

/// Connects without a token (guests on) and says HELLO; returns the connection and the user id
/// it got.
async fn guest(t: &Team, user_id: &str, display_name: &str) -> (Ws, String) {
    let mut ws = no_token(t).await;
    ws.send(fc(
        "HELLO",
        json!({"user_id": user_id, "display_name": display_name}),
    ))
    .await;
    let ack = ws.recv().await;
    assert_eq!(ack["type"], "HELLO_ACK", "{ack}");
    assert_eq!(ack["data"]["status"], "connected", "{ack}");
    let presence = ws.recv().await;
    assert_eq!(presence["type"], "PRESENCE", "{presence}");
    let id = ack["data"]["user_id"].as_str().expect("user_id").to_owned();
    (ws, id)
}

async fn no_token(t: &Team) -> Ws {
    Ws::open(t.addr(), "/ws").await
}

/// The next frame, which must be an ERROR with `code`.
async fn error(ws: &mut Ws, code: &str) -> Value {
    let frame = ws.recv().await;
    assert_eq!(frame["type"], "ERROR", "{frame}");
    assert_eq!(frame["data"]["code"], code, "{frame}");
    assert!(frame["data"]["message"].as_str().is_some(), "{frame}");
    assert!(frame["data"]["details"].is_object(), "{frame}");
    frame
}

/// PING, and the next frame must be its PONG: nothing else was sent before it.
async fn nothing_pending(ws: &mut Ws) {
    ws.send(fc("PING", json!({}))).await;
    let pong = ws.recv().await;
    assert_eq!(
        pong["type"], "PONG",
        "expected nothing before the PONG: {pong}"
    );
}

/// Reads PRESENCE frames until one lists exactly `ids` (in any order); returns its users.
async fn presence_of(ws: &mut Ws, ids: &[&str]) -> Vec<Value> {
    let mut want: Vec<&str> = ids.to_vec();
    want.sort_unstable();
    ws.recv_until(&format!("a PRESENCE listing {want:?}"), |frame| {
        if frame["type"] != "PRESENCE" {
            return None;
        }
        let users = frame["data"]["users"].as_array().expect("users").clone();
        let mut listed: Vec<&str> = users
            .iter()
            .map(|u| u["user_id"].as_str().expect("user_id"))
            .collect();
        listed.sort_unstable();
        (listed == want).then_some(users)
    })
    .await
}

async fn open_chat(from: &mut Ws, to: &Member) -> Value {
    from.send(fc(
        "OPEN_CHAT",
        json!({"target_user_id": to.id, "target_display_name": "Target User Name"}),
    ))
    .await;
    from.recv_type("CHAT_OPENED").await
}

/// `2024-01-01T12:00:00Z`.
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && text
            .chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19) || c.is_ascii_digit())
}

// ----- connection and identity --------------------------------------------------------------

#[tokio::test]
async fn hello_example_gets_hello_ack_then_presence_and_presence_follows_arrivals() {
    let t = Team::start(TEAM).await;
    // FastChat's documented HELLO, with a real user id.
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    assert_eq!(
        alice.welcome["user"]["username"], "alice",
        "FastChat clients with a token see the native welcome first"
    );
    alice
        .send(json!({
            "type": "HELLO",
            "data": {"user_id": t.id("alice"), "display_name": "User Display Name"}
        }))
        .await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "HELLO_ACK", "data": {"user_id": t.id("alice"), "status": "connected"}})
    );
    assert_eq!(
        alice.recv().await,
        json!({"type": "PRESENCE", "data": {"users": [
            {"user_id": t.id("alice"), "display_name": "User Display Name", "online": true}
        ]}})
    );

    let bob = fastchat(&t, t.member("bob"), "Bob Builder").await;
    let users = presence_of(&mut alice, &[t.id("alice"), t.id("bob")]).await;
    assert!(
        users.contains(
            &json!({"user_id": t.id("bob"), "display_name": "Bob Builder", "online": true})
        ),
        "{users:?}"
    );
    drop(bob);
    presence_of(&mut alice, &[t.id("alice")]).await;
    t.server.stop().await;
}

#[tokio::test]
async fn only_the_first_frame_switches_to_fastchat() {
    let t = Team::start(TEAM).await;
    let mut native = Ws::connect(t.addr(), t.token("alice")).await;
    let pong = native.request("Ping", json!({"timestamp": 1}), "p").await;
    assert_eq!(pong["type"], "Pong", "{pong}");
    native
        .send(fc(
            "HELLO",
            json!({"user_id": t.id("alice"), "display_name": "Alice"}),
        ))
        .await;
    let refused = native.recv().await;
    assert_eq!(refused["type"], "Error", "still native: {refused}");
    assert_eq!(refused["data"]["code"], 400, "{refused}");
    t.server.stop().await;
}

#[tokio::test]
async fn token_by_header_works_and_a_hello_for_another_user_is_unauthorized() {
    let t = Team::start(TEAM).await;
    let bearer = format!("Bearer {}", t.token("carol"));
    let mut carol =
        Ws::welcomed(raw_connect(t.addr(), "/ws", &[("authorization", &bearer)]).await).await;
    carol
        .send(fc(
            "HELLO",
            json!({"user_id": t.id("carol"), "display_name": "Carol"}),
        ))
        .await;
    assert_eq!(carol.recv().await["type"], "HELLO_ACK");

    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    alice
        .send(fc(
            "HELLO",
            json!({"user_id": t.id("bob"), "display_name": "Not Bob"}),
        ))
        .await;
    error(&mut alice, "UNAUTHORIZED").await;
    assert_eq!(alice.closed().await.0, 4401);
    t.server.stop().await;
}

#[tokio::test]
async fn requests_before_an_accepted_hello_are_unauthorized() {
    let t = Team::start(TEAM).await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    // A HELLO (so FastChat) whose display name is too short: VALIDATION, not yet accepted.
    alice
        .send(fc(
            "HELLO",
            json!({"user_id": t.id("alice"), "display_name": "Al"}),
        ))
        .await;
    error(&mut alice, "VALIDATION").await;
    alice
        .send(fc("OPEN_CHAT", json!({"target_user_id": t.id("bob")})))
        .await;
    error(&mut alice, "UNAUTHORIZED").await;
    alice
        .send(fc(
            "HELLO",
            json!({"user_id": t.id("alice"), "display_name": "Alice"}),
        ))
        .await;
    assert_eq!(alice.recv().await["type"], "HELLO_ACK");
    assert_eq!(alice.recv().await["type"], "PRESENCE");
    alice
        .send(fc(
            "HELLO",
            json!({"user_id": t.id("alice"), "display_name": "Alice"}),
        ))
        .await;
    error(&mut alice, "VALIDATION").await;
    t.server.stop().await;
}

// ----- chats ----------------------------------------------------------------------------------

#[tokio::test]
async fn open_chat_example_reaches_both_participants() {
    let t = Team::start(TEAM).await;
    let mut alice = fastchat(&t, t.member("alice"), "Alice Liddell").await;
    let mut bob = fastchat(&t, t.member("bob"), "Bob Builder").await;
    alice
        .send(json!({
            "type": "OPEN_CHAT",
            "data": {"target_user_id": t.id("bob"), "target_display_name": "Target User Name"}
        }))
        .await;
    let opened = alice.recv_type("CHAT_OPENED").await;
    assert_eq!(
        opened,
        fc(
            "CHAT_OPENED",
            json!({
                "chat_id": "dm:alice:bob",
                "participants": [t.id("alice"), t.id("bob")],
                "target_user_id": t.id("bob"),
                "target_display_name": "Bob Builder",
            })
        )
    );
    let told = bob.recv_type("CHAT_OPENED").await;
    assert_eq!(
        told,
        fc(
            "CHAT_OPENED",
            json!({
                "chat_id": "dm:alice:bob",
                "participants": [t.id("alice"), t.id("bob")],
                "target_user_id": t.id("alice"),
                "target_display_name": "Alice Liddell",
            })
        )
    );
    t.server.stop().await;
}

#[tokio::test]
async fn msg_example_is_stored_acked_and_delivered_both_ways() {
    let t = Team::start(TEAM).await;
    let mut alice = fastchat(&t, t.member("alice"), "Alice").await;
    let mut bob = fastchat(&t, t.member("bob"), "Bob Builder").await;
    open_chat(&mut alice, t.member("bob")).await;
    bob.recv_type("CHAT_OPENED").await;

    alice
        .send(json!({
            "type": "MSG",
            "data": {"to": t.id("bob"), "content": "Message content", "message_id": "optional-message-id"}
        }))
        .await;
    assert_eq!(
        alice.recv_type("MSG_ACK").await,
        fc(
            "MSG_ACK",
            json!({"message_id": "optional-message-id", "status": "delivered"})
        )
    );
    let incoming = bob.recv_type("MSG").await;
    assert_eq!(incoming["data"]["from"], t.id("alice"));
    assert_eq!(incoming["data"]["to"], t.id("bob"));
    assert_eq!(incoming["data"]["content"], "Message content");
    assert_eq!(incoming["data"]["message_id"], "optional-message-id");
    let timestamp = incoming["data"]["timestamp"].as_str().expect("timestamp");
    assert!(is_rfc3339(timestamp), "{timestamp}");
    // The sender gets its MSG_ACK, not its own message back.
    nothing_pending(&mut alice).await;

    // Bob was told of the chat, so he may answer without an OPEN_CHAT of his own; the
    // receipt his client sends (FastChat's documented flow shows one) is accepted quietly.
    bob.send(fc(
        "MSG_ACK",
        json!({"message_id": "optional-message-id", "status": "delivered"}),
    ))
    .await;
    bob.send(fc(
        "MSG",
        json!({"to": t.id("alice"), "content": "Hi Alice!"}),
    ))
    .await;
    let ack = bob.recv_type("MSG_ACK").await;
    let generated = ack["data"]["message_id"].as_str().expect("message_id");
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{ack}");
    let reply = alice.recv_type("MSG").await;
    assert_eq!(reply["data"]["content"], "Hi Alice!");
    assert_eq!(reply["data"]["message_id"], generated);
    assert_eq!(reply["data"]["from"], t.id("bob"));

    // A repeated message_id stores nothing new: it is the message's client_msg_id.
    alice
        .send(fc(
            "MSG",
            json!({"to": t.id("bob"), "content": "Message content", "message_id": "optional-message-id"}),
        ))
        .await;
    assert_eq!(
        alice.recv_type("MSG_ACK").await["data"]["message_id"],
        "optional-message-id"
    );
    let mut native = Ws::connect(t.addr(), t.token("alice")).await;
    let history = native
        .request("History", json!({"room": "@bob"}), "h")
        .await;
    let messages = history["data"]["messages"].as_array().expect("messages");
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().expect("content"))
        .collect();
    assert_eq!(contents, ["Message content", "Hi Alice!"], "{history}");
    assert_eq!(messages[0]["client_msg_id"], "optional-message-id");
    t.server.stop().await;
}

#[tokio::test]
async fn typing_example_reaches_the_peers_of_open_chats() {
    let t = Team::start(TEAM).await;
    let mut alice = fastchat(&t, t.member("alice"), "Alice").await;
    let mut bob = fastchat(&t, t.member("bob"), "Bob Builder").await;
    let mut carol = fastchat(&t, t.member("carol"), "Carol").await;
    open_chat(&mut alice, t.member("bob")).await;
    bob.recv_type("CHAT_OPENED").await;
    alice
        .send(json!({"type": "TYPING", "data": {"is_typing": true}}))
        .await;
    assert_eq!(
        bob.recv_type("TYPING").await,
        fc(
            "TYPING",
            json!({"user_id": t.id("alice"), "is_typing": true})
        )
    );
    alice.send(fc("TYPING", json!({"is_typing": false}))).await;
    assert_eq!(
        bob.recv_type("TYPING").await,
        fc(
            "TYPING",
            json!({"user_id": t.id("alice"), "is_typing": false})
        )
    );
    // Neither the typist nor a user without a chat with her hears it.
    nothing_pending(&mut alice).await;
    nothing_pending(&mut carol).await;
    t.server.stop().await;
}

#[tokio::test]
async fn ping_example_gets_pong_with_an_rfc3339_timestamp() {
    let t = Team::start(TEAM).await;
    let mut alice = fastchat(&t, t.member("alice"), "Alice").await;
    alice.send(json!({"type": "PING", "data": {}})).await;
    let pong = alice.recv().await;
    assert_eq!(pong["type"], "PONG", "{pong}");
    let timestamp = pong["data"]["timestamp"].as_str().expect("timestamp");
    assert!(is_rfc3339(timestamp), "{timestamp}");
    assert!(&timestamp[..4] >= "2024", "{timestamp}");
    t.server.stop().await;
}

#[tokio::test]
async fn fastchat_connections_get_websocket_pings_on_their_own_interval() {
    let t = Team::start_with(TEAM, |c| {
        c.ws.ping_interval_secs = 3600;
        c.fastchat.ping_interval_secs = 1;
    })
    .await;
    let mut alice = fastchat(&t, t.member("alice"), "Alice").await;
    alice
        .messages_until("a WebSocket Ping", |message| match message {
            Message::Ping(_) => Some(()),
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(text.as_str()).expect("json");
                assert_eq!(frame["type"], "PRESENCE", "no JSON heartbeat: {frame}");
                None
            }
            other => panic!("unexpected {other:?}"),
        })
        .await;
    t.server.stop().await;
}

// ----- errors and limits ------------------------------------------------------------------

#[tokio::test]
async fn error_codes_for_bad_frames_unknown_users_and_unopened_chats() {
    let t = Team::start(TEAM).await;
    let mut alice = fastchat(&t, t.member("alice"), "Alice").await;
    alice.send_raw(Message::text("{not json")).await;
    error(&mut alice, "VALIDATION").await;
    alice.send(fc("NO_SUCH_TYPE", json!({}))).await;
    error(&mut alice, "VALIDATION").await;
    alice.send(fc("MSG", json!({"to": t.id("bob")}))).await;
    error(&mut alice, "VALIDATION").await;
    alice.send(fc("TYPING", json!({"is_typing": "yes"}))).await;
    error(&mut alice, "VALIDATION").await;

    // FastChat's own example target, and a well-formed id of nobody.
    alice
        .send(json!({"type": "MSG", "data": {"to": "user-456", "content": "Hello!"}}))
        .await;
    error(&mut alice, "USER_NOT_FOUND").await;
    let nobody = uuid::Uuid::new_v4().to_string();
    alice
        .send(fc(
            "OPEN_CHAT",
            json!({"target_user_id": nobody, "target_display_name": "Nobody"}),
        ))
        .await;
    error(&mut alice, "USER_NOT_FOUND").await;

    // Carol exists, but no chat with her is open on this connection.
    alice
        .send(fc("MSG", json!({"to": t.id("carol"), "content": "psst"})))
        .await;
    let not_opened = error(&mut alice, "CHAT_NOT_OPENED").await;
    assert_eq!(not_opened["data"]["details"]["to"], t.id("carol"));
    alice
        .send(fc("OPEN_CHAT", json!({"target_user_id": t.id("alice")})))
        .await;
    error(&mut alice, "VALIDATION").await;
    // Errors cost nothing else: the connection is still there.
    nothing_pending(&mut alice).await;
    t.server.stop().await;
}

#[tokio::test]
async fn content_is_1_to_1000_characters_without_markup() {
    let t = Team::start(TEAM).await;
    let mut alice = fastchat(&t, t.member("alice"), "Alice").await;
    let mut bob = fastchat(&t, t.member("bob"), "Bob Builder").await;
    open_chat(&mut alice, t.member("bob")).await;
    bob.recv_type("CHAT_OPENED").await;

    let longest = "é".repeat(1000);
    alice
        .send(fc("MSG", json!({"to": t.id("bob"), "content": longest})))
        .await;
    assert_eq!(alice.recv().await["type"], "MSG_ACK");
    assert_eq!(bob.recv_type("MSG").await["data"]["content"], longest);
    for content in ["x".repeat(1001), String::new(), "   ".to_owned()] {
        alice
            .send(fc("MSG", json!({"to": t.id("bob"), "content": content})))
            .await;
        error(&mut alice, "VALIDATION").await;
    }
    // Tags do not count (1000 characters of text in 1007 of markup), and a message of
    // nothing but a script is empty.
    alice
        .send(fc(
            "MSG",
            json!({"to": t.id("bob"), "content": format!("<b>{}</b>", "y".repeat(1000))}),
        ))
        .await;
    assert_eq!(alice.recv().await["type"], "MSG_ACK");
    assert_eq!(
        bob.recv_type("MSG").await["data"]["content"],
        "y".repeat(1000)
    );
    alice
        .send(fc(
            "MSG",
            json!({"to": t.id("bob"), "content": "<script>alert('x')</script>"}),
        ))
        .await;
    error(&mut alice, "VALIDATION").await;
    alice
        .send(fc(
            "MSG",
            json!({"to": t.id("bob"), "content": "<b>hi</b><script>alert('x')</script> Tom & Jerry <img src=x onerror=alert(1)>"}),
        ))
        .await;
    assert_eq!(alice.recv().await["type"], "MSG_ACK");
    assert_eq!(
        bob.recv_type("MSG").await["data"]["content"],
        "hi Tom & Jerry "
    );
    t.server.stop().await;
}

#[tokio::test]
async fn display_names_are_3_to_50_characters_without_markup() {
    let t = Team::start(TEAM).await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    for bad in ["ab", "<b>ab</b>", "n".repeat(51).as_str()] {
        alice
            .send(fc(
                "HELLO",
                json!({"user_id": t.id("alice"), "display_name": bad}),
            ))
            .await;
        error(&mut alice, "VALIDATION").await;
    }
    alice
        .send(fc(
            "HELLO",
            json!({"user_id": t.id("alice"), "display_name": "<i>Alice</i><script>x()</script>"}),
        ))
        .await;
    assert_eq!(alice.recv().await["type"], "HELLO_ACK");
    let users = presence_of(&mut alice, &[t.id("alice")]).await;
    assert_eq!(users[0]["display_name"], "Alice");
    let fifty = "n".repeat(50);
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    bob.send(fc(
        "HELLO",
        json!({"user_id": t.id("bob"), "display_name": fifty}),
    ))
    .await;
    assert_eq!(bob.recv().await["type"], "HELLO_ACK");
    t.server.stop().await;
}

#[tokio::test]
async fn rate_limits_allow_exactly_the_burst_then_rate_limited() {
    // Defaults: 60 MSG and 10 TYPING per minute, a minute's worth at once. The chat is a
    // guest's (relayed live), so 61 messages take far less than the second one token takes.
    let t = Team::start_with(TEAM, |c| c.fastchat.guests = true).await;
    let (mut sender, _) = guest(&t, &uuid::Uuid::new_v4().to_string(), "Speedy Sender").await;
    let (mut receiver, receiver_id) =
        guest(&t, &uuid::Uuid::new_v4().to_string(), "Patient Reader").await;
    sender
        .send(fc("OPEN_CHAT", json!({"target_user_id": receiver_id})))
        .await;
    sender.recv_type("CHAT_OPENED").await;
    receiver.recv_type("CHAT_OPENED").await;
    for i in 0..61 {
        sender
            .send(fc(
                "MSG",
                json!({"to": receiver_id, "content": format!("message {i}"), "message_id": format!("m{i}")}),
            ))
            .await;
    }
    for i in 0..60 {
        let ack = sender.recv().await;
        assert_eq!(ack["type"], "MSG_ACK", "message {i}: {ack}");
        assert_eq!(ack["data"]["message_id"], format!("m{i}"));
    }
    let limited = error(&mut sender, "RATE_LIMITED").await;
    assert_eq!(limited["data"]["details"], json!({}), "{limited}");
    for i in 0..60 {
        let incoming = receiver.recv_type("MSG").await;
        assert_eq!(incoming["data"]["content"], format!("message {i}"));
    }
    nothing_pending(&mut receiver).await;

    for _ in 0..11 {
        sender.send(fc("TYPING", json!({"is_typing": true}))).await;
    }
    error(&mut sender, "RATE_LIMITED").await;
    for _ in 0..10 {
        assert_eq!(receiver.recv().await["type"], "TYPING");
    }
    nothing_pending(&mut receiver).await;
    t.server.stop().await;
}

// ----- guests -------------------------------------------------------------------------------

#[tokio::test]
async fn without_guests_no_token_is_refused_as_before() {
    let t = Team::start(TEAM).await;
    let mut ws = no_token(&t).await;
    let refused = ws.recv().await;
    assert_eq!(refused["type"], "Error", "{refused}");
    assert_eq!(refused["data"]["code"], 401, "{refused}");
    assert_eq!(ws.closed().await.0, 4401);
    t.server.stop().await;
}

#[tokio::test]
async fn guests_say_hello_without_a_token_and_chat_live() {
    let t = Team::start_with(TEAM, |c| c.fastchat.guests = true).await;
    let mut alice = fastchat(&t, t.member("alice"), "Alice").await;
    // FastChat's wscat example: "test-123" is no UUID v4, so the guest gets one.
    let mut first = no_token(&t).await;
    first
        .send(
            json!({"type": "HELLO", "data": {"user_id": "test-123", "display_name": "Test User"}}),
        )
        .await;
    let ack = first.recv().await;
    assert_eq!(ack["type"], "HELLO_ACK", "{ack}");
    let assigned = ack["data"]["user_id"].as_str().expect("user_id").to_owned();
    let parsed = uuid::Uuid::parse_str(&assigned).expect("uuid");
    assert_eq!(parsed.get_version_num(), 4);
    presence_of(&mut alice, &[t.id("alice"), &assigned]).await;

    // A valid UUID v4 is kept.
    let chosen = uuid::Uuid::new_v4().to_string();
    let (mut guest_ws, guest_id) = guest(&t, &chosen, "Guest Gus").await;
    assert_eq!(guest_id, chosen);
    let users = presence_of(&mut alice, &[t.id("alice"), &assigned, &chosen]).await;
    assert!(
        users.contains(&json!({"user_id": chosen, "display_name": "Guest Gus", "online": true}))
    );

    // Guest and account chat live; nothing is stored.
    guest_ws
        .send(fc(
            "OPEN_CHAT",
            json!({"target_user_id": t.id("alice"), "target_display_name": "Alice"}),
        ))
        .await;
    let opened = guest_ws.recv_type("CHAT_OPENED").await;
    let chat_id = opened["data"]["chat_id"]
        .as_str()
        .expect("chat_id")
        .to_owned();
    assert!(chat_id.starts_with("live:"), "{opened}");
    assert_eq!(opened["data"]["target_display_name"], "Alice");
    let told = alice.recv_type("CHAT_OPENED").await;
    assert_eq!(told["data"]["chat_id"], chat_id.as_str());
    assert_eq!(told["data"]["target_user_id"], chosen.as_str());
    assert_eq!(told["data"]["target_display_name"], "Guest Gus");
    guest_ws
        .send(fc(
            "MSG",
            json!({"to": t.id("alice"), "content": "hello <b>there</b>"}),
        ))
        .await;
    assert_eq!(guest_ws.recv().await["data"]["status"], "delivered");
    let incoming = alice.recv_type("MSG").await;
    assert_eq!(incoming["data"]["content"], "hello there");
    assert_eq!(incoming["data"]["from"], chosen.as_str());
    alice
        .send(fc(
            "MSG",
            json!({"to": chosen, "content": "hi guest", "message_id": "a1"}),
        ))
        .await;
    assert_eq!(
        alice.recv_type("MSG_ACK").await,
        fc(
            "MSG_ACK",
            json!({"message_id": "a1", "status": "delivered"})
        )
    );
    assert_eq!(
        guest_ws.recv_type("MSG").await["data"]["content"],
        "hi guest"
    );
    let rooms = t
        .server
        .api("GET", "/api/v1/rooms", Some(t.token("alice")), None)
        .await;
    assert_eq!(rooms.status, 200, "{:?}", rooms.json);
    assert!(
        !rooms.json.to_string().contains("live:"),
        "no room keeps a guest chat: {:?}",
        rooms.json
    );

    // The guest leaves: gone from the roster, and the chat cannot deliver any more.
    drop(guest_ws);
    presence_of(&mut alice, &[t.id("alice"), &assigned]).await;
    alice
        .send(fc("MSG", json!({"to": chosen, "content": "still there?"})))
        .await;
    error(&mut alice, "MESSAGE_FAILED").await;
    drop(first);
    t.server.stop().await;
}

#[tokio::test]
async fn guests_cannot_claim_accounts_or_skip_hello() {
    let t = Team::start_with(TEAM, |c| {
        c.fastchat.guests = true;
        c.fastchat.hello_timeout_secs = 1;
    })
    .await;
    // An account's id needs the account's token.
    let mut impostor = no_token(&t).await;
    impostor
        .send(fc(
            "HELLO",
            json!({"user_id": t.id("alice"), "display_name": "Alice"}),
        ))
        .await;
    error(&mut impostor, "UNAUTHORIZED").await;
    assert_eq!(impostor.closed().await.0, 4401);

    // A first frame that is not a HELLO gets the native refusal.
    let mut native = no_token(&t).await;
    native
        .send(json!({"type": "Ping", "data": {}, "id": "1"}))
        .await;
    let refused = native.recv().await;
    assert_eq!(refused["type"], "Error", "{refused}");
    assert_eq!(refused["data"]["code"], 401);
    assert_eq!(native.closed().await.0, 4401);

    // A bad HELLO may be corrected; silence is closed after hello_timeout_secs.
    let mut shy = no_token(&t).await;
    shy.send(fc(
        "HELLO",
        json!({"user_id": uuid::Uuid::new_v4(), "display_name": "x"}),
    ))
    .await;
    error(&mut shy, "VALIDATION").await;
    assert_eq!(shy.closed().await.0, 4401);

    // Guests have no stored chats: an offline account is not there for them.
    let (mut guest_ws, _) = guest(&t, "not-a-uuid", "Visitor").await;
    guest_ws
        .send(fc("OPEN_CHAT", json!({"target_user_id": t.id("carol")})))
        .await;
    error(&mut guest_ws, "USER_NOT_FOUND").await;
    t.server.stop().await;
}

// ----- with the native protocol -------------------------------------------------------------

#[tokio::test]
async fn fastchat_and_native_clients_share_the_direct_room() {
    let t = Team::start(TEAM).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let joined = bob.request("Join", json!({"room": "@alice"}), "j").await;
    assert_eq!(
        joined["data"]["details"]["room"], "dm:alice:bob",
        "{joined}"
    );
    let mut alice = fastchat(&t, t.member("alice"), "Alice").await;
    let opened = open_chat(&mut alice, t.member("bob")).await;
    assert_eq!(opened["data"]["chat_id"], "dm:alice:bob");
    // Bob is not on FastChat: his name is his username.
    assert_eq!(opened["data"]["target_display_name"], "bob");

    alice
        .send(fc(
            "MSG",
            json!({"to": t.id("bob"), "content": "from FastChat", "message_id": "fc-1"}),
        ))
        .await;
    assert_eq!(
        alice.recv_type("MSG_ACK").await["data"]["status"],
        "delivered"
    );
    let message = bob.recv_type("Message").await;
    assert_eq!(message["data"]["room"], "dm:alice:bob");
    assert_eq!(message["data"]["author"], "alice");
    assert_eq!(message["data"]["content"], "from FastChat");
    assert_eq!(message["data"]["client_msg_id"], "fc-1");

    let ack = bob
        .request(
            "Send",
            json!({"room": "@alice", "content": "from native"}),
            "s",
        )
        .await;
    assert_eq!(ack["type"], "Ack", "{ack}");
    let incoming = alice.recv_type("MSG").await;
    assert_eq!(incoming["data"]["from"], t.id("bob"));
    assert_eq!(incoming["data"]["to"], t.id("alice"));
    assert_eq!(incoming["data"]["content"], "from native");
    assert!(
        uuid::Uuid::parse_str(incoming["data"]["message_id"].as_str().expect("id")).is_ok(),
        "{incoming}"
    );

    bob.send(json!({"type": "Typing", "data": {"room": "@alice", "is_typing": true}}))
        .await;
    assert_eq!(
        alice.recv_type("TYPING").await,
        fc("TYPING", json!({"user_id": t.id("bob"), "is_typing": true}))
    );
    alice.send(fc("TYPING", json!({"is_typing": true}))).await;
    let typing = bob.recv_type("Typing").await;
    assert_eq!(typing["data"]["user"], "alice");
    assert_eq!(typing["data"]["room"], "dm:alice:bob");
    t.server.stop().await;
}
