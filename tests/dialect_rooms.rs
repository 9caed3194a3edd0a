//! The rooms dialect at `/api/v1/ws/connect?token=`: every example frame of the rooms protocol's
//! documentation sent literally, the welcome and ping, room identifiers and their access rules,
//! server-side events (publish, notifications, membership), and a channel shared with native
//! clients.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Response, Team};
use crate::wsclient::Ws;

/// boss (admin, the "backend"), alice and bob.
const TEAM: &[(&str, &str)] = &[("boss", "admin"), ("alice", "user"), ("bob", "user")];

async fn publish(o: &Team, room: &str, kind: &str, data: Value) -> Response {
    o.post(
        "boss",
        "/api/v1/publish",
        json!({"room": room, "type": kind, "data": data}),
    )
    .await
}

/// Connects as the rooms protocol's client does and reads the welcome event.
async fn connect(o: &Team, token: &str) -> (Ws, Value) {
    let mut ws = Ws::open(o.addr(), &format!("/api/v1/ws/connect?token={token}")).await;
    let welcome = ws.recv().await;
    assert_eq!(welcome["type"], "connected", "{welcome}");
    (ws, welcome)
}

/// Sends the rooms protocol's ping and waits for the pong: every frame sent before it has been
/// handled.
async fn sync(ws: &mut Ws) {
    ws.send(json!({"type": "ping"})).await;
    let pong = ws.recv().await;
    assert_eq!(pong["type"], "pong", "{pong}");
}

/// `2025-11-13T12:00:00.000000Z`: RFC 3339 UTC with six fractional digits.
fn assert_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp {value}"));
    let bytes = text.as_bytes();
    assert_eq!(bytes.len(), 27, "{text}");
    assert_eq!(
        (
            bytes[4], bytes[7], bytes[10], bytes[13], bytes[16], bytes[19], bytes[26]
        ),
        (b'-', b'-', b'T', b':', b':', b'.', b'Z'),
        "{text}"
    );
    assert!(
        text.starts_with("20"),
        "{text} is not a current UTC timestamp"
    );
}

fn assert_envelope(event: &Value) {
    let mut keys: Vec<&str> = event
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {event}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["data", "room", "sender", "timestamp", "type"],
        "{event}"
    );
    assert_timestamp(&event["timestamp"]);
}

fn assert_error_event(event: &Value) {
    assert_eq!(event["type"], "error", "{event}");
    assert!(event["data"]["error"].is_string(), "{event}");
    assert_timestamp(&event["timestamp"]);
}

// ----- the documented examples -------------------------------------------------------------

#[tokio::test]
async fn welcome_and_ping_are_as_documented() {
    let o = Team::start(TEAM).await;
    let (mut ws, welcome) = connect(&o, o.token("alice")).await;
    assert_eq!(welcome["data"]["message"], "Connected successfully");
    assert_eq!(welcome["data"]["user_id"], o.number("boss", "alice").await);
    assert!(welcome["data"]["user_id"].is_u64(), "{welcome}");
    assert_eq!(welcome["data"]["username"], "alice");
    assert_timestamp(&welcome["timestamp"]);

    ws.send_raw(Message::text(r#"{ "type": "ping" }"#)).await;
    let pong = ws.recv().await;
    assert_eq!(pong["type"], "pong", "{pong}");
    assert_timestamp(&pong["timestamp"]);
    o.server.stop().await;
}

#[tokio::test]
async fn document_examples_join_send_and_leave() {
    let o = Team::start(TEAM).await;
    o.create_room("boss", "channel:456", "public").await;
    o.create_room("boss", "project:123", "public").await;
    let (mut ws, _) = connect(&o, o.token("alice")).await;

    ws.send_raw(Message::text(
        r#"{"type": "join_room", "room": "project:123", "data": {"extra":"value"}}"#,
    ))
    .await;
    // Alice is the first in the room: nobody else to tell.
    sync(&mut ws).await;

    ws.send_raw(Message::text(
        r#"{ "type": "join_room", "room": "channel:456" }"#,
    ))
    .await;
    sync(&mut ws).await;
    ws.send_raw(Message::text(
        r#"{ "type": "send_message", "room":"channel:456", "data": {"content":"Hello"} }"#,
    ))
    .await;
    let message = ws.recv().await;
    assert_envelope(&message);
    assert_eq!(message["type"], "message");
    assert_eq!(message["room"], "channel:456");
    assert_eq!(message["sender"], "alice");
    assert_eq!(message["data"]["content"], "Hello");
    assert_eq!(message["data"]["author"], "alice");
    assert_eq!(message["data"]["room"], "channel:456");
    assert_eq!(message["data"]["seq"], 1);

    ws.send_raw(Message::text(
        r#"{ "type": "leave_room", "room": "channel:456" }"#,
    ))
    .await;
    sync(&mut ws).await;
    // After the leave, channel:456's events no longer arrive; project:123's still do, so the
    // first event seen is project:123's.
    let left_behind = publish(&o, "channel:456", "task.created", json!({"id": 1})).await;
    assert_eq!(left_behind.status, 200, "{:?}", left_behind.json);
    assert_eq!(left_behind.json["delivered"], 0);
    publish(&o, "project:123", "project.updated", json!({"id": 123})).await;
    let event = ws.recv().await;
    assert_eq!(event["room"], "project:123", "{event}");
    assert_eq!(event["type"], "project.updated");
    o.server.stop().await;
}

#[tokio::test]
async fn published_task_and_project_events_pass_through() {
    let o = Team::start(TEAM).await;
    o.create_room("boss", "project:123", "public").await;
    o.create_room("boss", "task:789", "public").await;
    let (mut ws, _) = connect(&o, o.token("alice")).await;
    for room in ["project:123", "task:789"] {
        ws.send(json!({"type": "join_room", "room": room})).await;
        sync(&mut ws).await;
    }
    for (room, kind, data) in [
        (
            "task:789",
            "task.created",
            json!({"id": 789, "title": "Write docs"}),
        ),
        ("task:789", "task.updated", json!({"id": 789})),
        (
            "task:789",
            "task.status_changed",
            json!({"id": 789, "status": "done"}),
        ),
        (
            "task:789",
            "task.assigned",
            json!({"id": 789, "assignee": 2}),
        ),
        ("task:789", "task.deleted", json!({"id": 789})),
        ("project:123", "project.updated", json!({"id": 123})),
        ("project:123", "project.archived", json!({"id": 123})),
    ] {
        let response = publish(&o, room, kind, data.clone()).await;
        assert_eq!(response.json["delivered"], 1, "{:?}", response.json);
        let event = ws.recv().await;
        assert_envelope(&event);
        assert_eq!(event["type"], kind);
        assert_eq!(event["room"], room);
        assert_eq!(event["data"], data);
        assert_eq!(event["sender"], "system");
    }
    o.server.stop().await;
}

#[tokio::test]
async fn notifications_arrive_as_notification_new() {
    let o = Team::start(TEAM).await;
    let (mut ws, welcome) = connect(&o, o.token("alice")).await;
    let response = o
        .server
        .api(
            "POST",
            "/api/v1/notifications",
            Some(o.token("boss")),
            Some(&json!({"username": "alice", "title": "Task assigned", "message": "task:789 is yours"})),
        )
        .await;
    assert_eq!(response.status, 201, "{:?}", response.json);
    let event = ws.recv().await;
    assert_envelope(&event);
    assert_eq!(event["type"], "notification.new");
    assert_eq!(
        event["room"],
        format!("user:{}", welcome["data"]["user_id"])
    );
    assert_eq!(event["sender"], "system");
    assert_eq!(event["data"]["title"], "Task assigned");
    assert_eq!(event["data"]["message"], "task:789 is yours");
    assert_eq!(event["data"]["id"], response.json["id"]);
    o.server.stop().await;
}

// ----- room identifiers and access -----------------------------------------------------------

#[tokio::test]
async fn malformed_identifiers_get_an_error_event_and_the_connection_stays() {
    let o = Team::start(TEAM).await;
    let (mut ws, _) = connect(&o, o.token("alice")).await;
    for frame in [
        json!({"type": "join_room", "room": "channel:abc"}),
        json!({"type": "join_room", "room": "room:1"}),
        json!({"type": "join_room", "room": "channel"}),
        json!({"type": "join_room"}),
        json!({"type": "leave_room", "room": "general"}),
        json!({"type": "send_message", "room": "project:x", "data": {"content": "hi"}}),
    ] {
        ws.send(frame.clone()).await;
        let error = ws.recv().await;
        assert_error_event(&error);
        assert!(
            error["data"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("room")),
            "{frame}: {error}"
        );
    }
    for frame in [
        json!({"type": "shout"}),
        json!(["not", "an", "object"]),
        json!({"type": "send_message", "room": "channel:1"}),
    ] {
        ws.send(frame.clone()).await;
        assert_error_event(&ws.recv().await);
    }
    ws.send_raw(Message::text("{oops")).await;
    assert_error_event(&ws.recv().await);
    sync(&mut ws).await;
    o.server.stop().await;
}

#[tokio::test]
async fn forbidden_and_missing_rooms_close_with_4403() {
    let o = Team::start(TEAM).await;
    o.create_room("boss", "project:9", "private").await;
    for room in ["project:9", "channel:999"] {
        let (mut ws, _) = connect(&o, o.token("alice")).await;
        ws.send(json!({"type": "join_room", "room": room})).await;
        let (frames, code) = ws.frames_until_close().await;
        assert_eq!(code, 4403, "{room}: {frames:?}");
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_error_event(&frames[0]);
        assert_eq!(frames[0]["room"], room);
    }
    // A member may join the private room.
    o.add_member("boss", "project:9", "alice").await;
    let (mut ws, _) = connect(&o, o.token("alice")).await;
    ws.send(json!({"type": "join_room", "room": "project:9"}))
        .await;
    sync(&mut ws).await;
    publish(&o, "project:9", "project.updated", json!({})).await;
    assert_eq!(ws.recv().await["room"], "project:9");
    // Sending to a room one may not post in is an error event, not a close.
    o.create_room("boss", "channel:8", "private").await;
    ws.send(json!({"type": "send_message", "room": "channel:8", "data": {"content": "hi"}}))
        .await;
    assert_error_event(&ws.recv().await);
    sync(&mut ws).await;
    o.server.stop().await;
}

#[tokio::test]
async fn personal_rooms_are_their_users_own() {
    let o = Team::start(TEAM).await;
    let alice_number = o.number("boss", "alice").await;
    let bob_number = o.number("boss", "bob").await;
    let personal = format!("user:{alice_number}");
    let (mut ws, _) = connect(&o, o.token("alice")).await;
    ws.send(json!({"type": "join_room", "room": personal}))
        .await;
    sync(&mut ws).await;
    // Created on first use: the backend can now publish to it.
    let response = publish(&o, &personal, "task.assigned", json!({"task": 789})).await;
    assert_eq!(response.json["delivered"], 1, "{:?}", response.json);
    let event = ws.recv().await;
    assert_eq!(event["type"], "task.assigned");
    assert_eq!(event["room"], personal);
    ws.send(json!({"type": "send_message", "room": personal, "data": {"content": "note to self"}}))
        .await;
    let message = ws.recv().await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["room"], personal);
    assert_eq!(message["data"]["content"], "note to self");

    // Nobody can take the name first over HTTP.
    let taken = o
        .server
        .api(
            "POST",
            "/api/v1/rooms",
            Some(o.token("boss")),
            Some(&json!({"name": format!("user:{bob_number}")})),
        )
        .await;
    assert_eq!(taken.status, 400, "{:?}", taken.json);

    // Another user's personal room closes the connection.
    ws.send(json!({"type": "join_room", "room": format!("user:{bob_number}")}))
        .await;
    let (frames, code) = ws.frames_until_close().await;
    assert_eq!(code, 4403, "{frames:?}");
    assert_error_event(&frames[0]);
    o.server.stop().await;
}

#[tokio::test]
async fn refusals_before_the_welcome_are_error_events() {
    let o = Team::start(TEAM).await;
    let mut ws = Ws::open(o.addr(), "/api/v1/ws/connect?token=not-a-jwt").await;
    let (frames, code) = ws.frames_until_close().await;
    assert_eq!(code, 4401);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_error_event(&frames[0]);

    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(connect(&o, o.token("alice")).await.0);
    }
    let mut sixth = Ws::open(
        o.addr(),
        &format!("/api/v1/ws/connect?token={}", o.token("alice")),
    )
    .await;
    let (frames, code) = sixth.frames_until_close().await;
    assert_eq!(code, 4429);
    assert_error_event(&frames[0]);
    o.server.stop().await;
}

#[tokio::test]
async fn rate_limit_is_an_error_event() {
    let o = Team::start_with(&[("boss", "admin"), ("alice", "user")], |c| {
        c.ws.messages_per_minute = 1;
        c.ws.message_burst = 1;
    })
    .await;
    o.create_room("boss", "channel:1", "public").await;
    let (mut ws, _) = connect(&o, o.token("alice")).await;
    ws.send(json!({"type": "join_room", "room": "channel:1"}))
        .await;
    let send = json!({"type": "send_message", "room": "channel:1", "data": {"content": "hi"}});
    ws.send(send.clone()).await;
    assert_eq!(ws.recv().await["type"], "message");
    ws.send(send).await;
    let limited = ws.recv().await;
    assert_error_event(&limited);
    assert!(
        limited["data"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("rate limit exceeded")),
        "{limited}"
    );
    o.server.stop().await;
}

// ----- one channel, two protocols ------------------------------------------------------------

#[tokio::test]
async fn rooms_and_native_clients_share_a_channel() {
    let o = Team::start(TEAM).await;
    o.create_room("boss", "channel:7", "public").await;
    let (mut alice, _) = connect(&o, o.token("alice")).await;
    alice
        .send(json!({"type": "join_room", "room": "channel:7"}))
        .await;
    sync(&mut alice).await;

    let mut bob = Ws::connect(o.addr(), o.token("bob")).await;
    let joined = bob.request("Join", json!({"room": "channel:7"}), "j").await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");
    // bob entered the room natively: the rooms client is told, with bob's number.
    let event = alice.recv().await;
    assert_envelope(&event);
    assert_eq!(event["type"], "user_joined");
    assert_eq!(event["room"], "channel:7");
    assert_eq!(event["data"]["username"], "bob");
    assert_eq!(event["data"]["user_id"], o.number("boss", "bob").await);

    // Rooms -> native.
    alice
        .send(json!({"type": "send_message", "room": "channel:7", "data": {"content": "hi bob"}}))
        .await;
    let message = bob.recv_type("Message").await;
    assert_eq!(message["data"]["room"], "channel:7");
    assert_eq!(message["data"]["author"], "alice");
    assert_eq!(message["data"]["content"], "hi bob");
    assert_eq!(alice.recv().await["data"]["content"], "hi bob");

    // Native -> rooms: message, edit, delete.
    let ack = bob
        .request(
            "Send",
            json!({"room": "channel:7", "content": "hi alice"}),
            "s",
        )
        .await;
    let seq = ack["data"]["seq"].as_u64().expect("seq");
    let event = alice.recv().await;
    assert_envelope(&event);
    assert_eq!(event["type"], "message");
    assert_eq!(event["sender"], "bob");
    assert_eq!(event["data"]["content"], "hi alice");
    assert_eq!(event["data"]["seq"], seq);
    bob.request(
        "Edit",
        json!({"room": "channel:7", "seq": seq, "content": "hello alice"}),
        "e",
    )
    .await;
    let event = alice.recv().await;
    assert_envelope(&event);
    assert_eq!(event["type"], "message.edited");
    assert_eq!(event["room"], "channel:7");
    assert_eq!(event["data"]["seq"], seq);
    assert_eq!(event["data"]["content"], "hello alice");
    bob.request("Delete", json!({"room": "channel:7", "seq": seq}), "d")
        .await;
    let event = alice.recv().await;
    assert_envelope(&event);
    assert_eq!(event["type"], "message.deleted");
    assert_eq!(event["data"]["seq"], seq);

    // bob leaves the channel (his only connection in it): user_left.
    let left = bob
        .request("Leave", json!({"room": "channel:7"}), "l")
        .await;
    assert_eq!(left["data"]["status"], "left", "{left}");
    let event = alice.recv().await;
    assert_envelope(&event);
    assert_eq!(event["type"], "user_left");
    assert_eq!(event["data"]["username"], "bob");
    o.server.stop().await;
}
