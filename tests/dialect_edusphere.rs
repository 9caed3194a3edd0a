//! The EduSphere dialect at `/ws/chat/{host}/{room}/`: every example frame of EduSphere's
//! documentation sent literally, its documented replies and error strings, the connection rules,
//! and the same room seen from a native client.

use serde_json::{Value, json};

use crate::common::{Team, TestServer};
use crate::wsclient::Ws;

/// The fields of each `chat_message` action, exactly as EduSphere documents them.
const NEW_FIELDS: &[&str] = &[
    "action",
    "body",
    "created",
    "edited",
    "id",
    "type",
    "updated",
    "user",
    "userAvatar",
    "user_id",
];
const UPDATE_FIELDS: &[&str] = &["action", "body", "edited", "id", "type", "updated"];
const DELETE_FIELDS: &[&str] = &["action", "id", "type"];

/// boss (admin), alice, bob and carol.
const TEAM: &[(&str, &str)] = &[
    ("boss", "admin"),
    ("alice", "user"),
    ("bob", "user"),
    ("carol", "user"),
];

/// `alice/math`, hosted by alice, with bob as a participant; returns its room id.
async fn math_class(s: &Team) -> u64 {
    let id = s.create_room("alice", "alice/math", "public").await;
    s.add_member("alice", "alice/math", "bob").await;
    id
}

/// Connects to the EduSphere endpoint as EduSphere's client does (trailing slash, token in the
/// query) and waits until the connection is in the room: EduSphere has no welcome frame, so it
/// sends a frame of no known type and waits for the error reply, which comes after the join.
async fn edu(s: &Team, token: &str, host: &str, room: &str) -> Ws {
    let mut ws = Ws::open(s.addr(), &format!("/ws/chat/{host}/{room}/?token={token}")).await;
    ws.send(json!({"type": "sync"})).await;
    let reply = ws.recv().await;
    assert_eq!(reply, json!({"error": "Unknown message type \"sync\"."}));
    ws
}

/// The frame's keys, sorted.
fn keys(frame: &Value) -> Vec<String> {
    let mut keys: Vec<String> = frame
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {frame}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// `2024-01-01T12:00:00.000000Z`: UTC with six fractional digits.
fn assert_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp {value}"));
    let bytes = text.as_bytes();
    assert_eq!(bytes.len(), 27, "{text}");
    for (i, b) in bytes.iter().enumerate() {
        let expected_digit = !matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 26);
        assert_eq!(b.is_ascii_digit(), expected_digit, "{text} at {i}");
    }
    assert_eq!(
        (
            bytes[4], bytes[7], bytes[10], bytes[13], bytes[16], bytes[19], bytes[26]
        ),
        (b'-', b'-', b'T', b':', b':', b'.', b'Z'),
        "{text}"
    );
}

async fn user_id(server: &TestServer, token: &str) -> String {
    let me = server.api("GET", "/api/v1/me", Some(token), None).await;
    me.json["id"].as_str().expect("id").to_owned()
}

fn message_id(room_id: u64, seq: u64) -> String {
    natter::ws::dialect::message_uuid(room_id, seq).to_string()
}

// ----- the documented examples -------------------------------------------------------------

#[tokio::test]
async fn document_examples_new_update_delete() {
    let s = Team::start(TEAM).await;
    let room_id = math_class(&s).await;
    let mut alice = edu(&s, s.token("alice"), "alice", "math").await;
    let mut bob = edu(&s, s.token("bob"), "alice", "math").await;

    alice
        .send(json!({
          "type": "text",
          "message": "Hello world!",
          "timestamp": "2024-01-01T12:00:00.000Z"
        }))
        .await;
    let new = bob.recv().await;
    assert_eq!(keys(&new), NEW_FIELDS, "{new}");
    assert_eq!(new["type"], "chat_message");
    assert_eq!(new["action"], "new");
    assert_eq!(new["id"], message_id(room_id, 1));
    assert_eq!(new["user"], "alice");
    assert_eq!(new["user_id"], user_id(&s.server, s.token("alice")).await);
    assert_eq!(new["body"], "Hello world!");
    assert_timestamp(&new["created"]);
    assert_eq!(new["edited"], false);
    assert_eq!(new["updated"], new["created"]);
    assert_eq!(new["userAvatar"], Value::Null, "alice has no avatar");
    assert_eq!(alice.recv().await, new, "the sender gets the same event");

    // EduSphere's own update and delete examples name a message that does not exist here.
    for example in [
        r#"{
  "type": "delete", 
  "messageId": "123e4567-e89b-12d3-a456-426614174000",
  "timestamp": "2024-01-01T12:00:00.000Z"
}"#,
        r#"{
  "type": "update",
  "messageId": "123e4567-e89b-12d3-a456-426614174000", 
  "message": "Updated message content",
  "timestamp": "2024-01-01T12:00:00.000Z"
}"#,
    ] {
        alice
            .send_raw(tokio_tungstenite::tungstenite::Message::text(example))
            .await;
        assert_eq!(alice.recv().await, json!({"error": "Message not found."}));
    }

    let id = new["id"].as_str().expect("id");
    alice
        .send(json!({
          "type": "update",
          "messageId": id,
          "message": "Updated message content",
          "timestamp": "2024-01-01T12:00:00.000Z"
        }))
        .await;
    let update = bob.recv().await;
    assert_eq!(keys(&update), UPDATE_FIELDS, "{update}");
    assert_eq!(update["type"], "chat_message");
    assert_eq!(update["action"], "update");
    assert_eq!(update["id"], id);
    assert_eq!(update["body"], "Updated message content");
    assert_eq!(update["edited"], true);
    assert_timestamp(&update["updated"]);
    assert_eq!(alice.recv().await, update);

    alice
        .send(json!({
          "type": "delete",
          "messageId": id,
          "timestamp": "2024-01-01T12:00:00.000Z"
        }))
        .await;
    let delete = bob.recv().await;
    assert_eq!(keys(&delete), DELETE_FIELDS, "{delete}");
    assert_eq!(
        delete,
        json!({"type": "chat_message", "action": "delete", "id": id})
    );
    assert_eq!(alice.recv().await, delete);

    // The next message has the next id, and the deleted one stays gone.
    alice
        .send(json!({"type": "text", "message": "again"}))
        .await;
    assert_eq!(bob.recv().await["id"], message_id(room_id, 2));
    assert_eq!(alice.recv().await["body"], "again");
    alice
        .send(json!({"type": "update", "messageId": id, "message": "undead"}))
        .await;
    assert_eq!(alice.recv().await, json!({"error": "Message not found."}));
    s.server.stop().await;
}

#[tokio::test]
async fn user_avatar_is_the_authors_avatar_url() {
    let s = Team::start(TEAM).await;
    math_class(&s).await;
    let created = s
        .server
        .api(
            "POST",
            "/api/v1/users",
            Some(s.token("boss")),
            Some(&json!({
                "username": "dora",
                "password": "dora-password",
                "avatar_url": "https://cdn.example/avatars/dora.jpg",
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    s.add_member("alice", "alice/math", "dora").await;
    let dora_token = s.server.access_token("dora", "dora-password").await;
    let mut bob = edu(&s, s.token("bob"), "alice", "math").await;
    let mut dora = edu(&s, &dora_token, "alice", "math").await;
    dora.send(json!({"type": "text", "message": "hi"})).await;
    let new = bob.recv().await;
    assert_eq!(new["user"], "dora");
    assert_eq!(new["userAvatar"], "https://cdn.example/avatars/dora.jpg");
    s.server.stop().await;
}

// ----- errors -------------------------------------------------------------------------------

#[tokio::test]
async fn documented_error_strings() {
    let s = Team::start(TEAM).await;
    math_class(&s).await;
    let other_room = s.create_room("alice", "alice/physics", "public").await;
    let mut alice = edu(&s, s.token("alice"), "alice", "math").await;
    let mut bob = edu(&s, s.token("bob"), "alice", "math").await;

    alice
        .send(json!({"type": "text", "message": "x".repeat(501)}))
        .await;
    assert_eq!(
        alice.recv().await,
        json!({"error": "Message exceeds 500 characters."})
    );
    alice
        .send(json!({"type": "text", "message": "é".repeat(500)}))
        .await;
    let new = alice.recv().await;
    assert_eq!(new["action"], "new", "500 characters are allowed: {new}");
    bob.recv().await;
    let id = new["id"].as_str().expect("id").to_owned();

    alice
        .send(json!({"type": "update", "messageId": id, "message": "y".repeat(501)}))
        .await;
    assert_eq!(
        alice.recv().await,
        json!({"error": "Message exceeds 500 characters."})
    );
    bob.send(json!({"type": "update", "messageId": id, "message": "mine now"}))
        .await;
    assert_eq!(
        bob.recv().await,
        json!({"error": "You can only edit your own messages."})
    );
    bob.send(json!({"type": "delete", "messageId": id})).await;
    assert_eq!(
        bob.recv().await,
        json!({"error": "You can only delete your own messages."})
    );
    for missing in [
        message_id(other_room, 1),
        message_id(u64::MAX, 1),
        "not-a-uuid".to_owned(),
    ] {
        alice
            .send(json!({"type": "delete", "messageId": missing}))
            .await;
        assert_eq!(
            alice.recv().await,
            json!({"error": "Message not found."}),
            "{missing}"
        );
    }
    // Malformed frames get an error and the connection stays.
    alice
        .send_raw(tokio_tungstenite::tungstenite::Message::text("{not json"))
        .await;
    assert_eq!(alice.recv().await, json!({"error": "Invalid JSON."}));
    alice.send(json!({"type": "text"})).await;
    assert_eq!(
        alice.recv().await,
        json!({"error": "Field \"message\" must be a string."})
    );
    alice
        .send(json!({"type": "text", "message": "still here"}))
        .await;
    assert_eq!(alice.recv().await["body"], "still here");
    s.server.stop().await;
}

/// The core's one rule set: the room's host (its owner) may edit and delete participants'
/// messages, on every dialect (EduSphere says only authors may; natter rooms are shared).
#[tokio::test]
async fn the_host_may_moderate_as_the_core_allows() {
    let s = Team::start(TEAM).await;
    math_class(&s).await;
    let mut alice = edu(&s, s.token("alice"), "alice", "math").await;
    let mut bob = edu(&s, s.token("bob"), "alice", "math").await;
    bob.send(json!({"type": "text", "message": "spam"})).await;
    let id = alice.recv().await["id"].clone();
    bob.recv().await;
    alice.send(json!({"type": "delete", "messageId": id})).await;
    assert_eq!(
        bob.recv().await,
        json!({"type": "chat_message", "action": "delete", "id": id})
    );
    s.server.stop().await;
}

#[tokio::test]
async fn the_limit_is_the_dialects_config_field_and_native_keeps_its_own() {
    let s = Team::start_with(TEAM, |c| c.dialects.edusphere_max_message_chars = 10).await;
    math_class(&s).await;
    let mut alice = edu(&s, s.token("alice"), "alice", "math").await;
    alice
        .send(json!({"type": "text", "message": "eleven char"}))
        .await;
    assert_eq!(
        alice.recv().await,
        json!({"error": "Message exceeds 10 characters."})
    );
    let mut native = Ws::connect(s.addr(), s.token("bob")).await;
    let ack = native
        .request(
            "Send",
            json!({"room": "alice/math", "content": "eleven char"}),
            "s",
        )
        .await;
    assert_eq!(ack["type"], "Ack", "{ack}");
    assert_eq!(alice.recv().await["body"], "eleven char");
    s.server.stop().await;
}

#[tokio::test]
async fn rate_limit_is_reported_as_an_error() {
    let s = Team::start_with(TEAM, |c| {
        c.ws.messages_per_minute = 1;
        c.ws.message_burst = 2;
    })
    .await;
    math_class(&s).await;
    let mut alice = edu(&s, s.token("alice"), "alice", "math").await;
    for i in 0..2 {
        alice
            .send(json!({"type": "text", "message": format!("m{i}")}))
            .await;
        assert_eq!(alice.recv().await["action"], "new");
    }
    alice.send(json!({"type": "text", "message": "m2"})).await;
    let limited = alice.recv().await;
    let error = limited["error"].as_str().expect("error");
    assert!(error.starts_with("rate limit exceeded"), "{limited}");
    assert_eq!(keys(&limited), ["error"]);
    s.server.stop().await;
}

// ----- the connection -----------------------------------------------------------------------

#[tokio::test]
async fn refusals_close_with_4403_or_4401() {
    let s = Team::start(TEAM).await;
    math_class(&s).await;
    // A room named like bob's but owned by another (an admin may create it).
    s.create_room("boss", "bob/physics", "public").await;
    for (who, token, path) in [
        (
            "not a participant",
            s.token("carol"),
            "/ws/chat/alice/math/",
        ),
        (
            "an admin is no participant",
            s.token("boss"),
            "/ws/chat/alice/math/",
        ),
        ("wrong host", s.token("bob"), "/ws/chat/bob/math/"),
        (
            "host is not the owner",
            s.token("alice"),
            "/ws/chat/bob/physics/",
        ),
        ("missing room", s.token("alice"), "/ws/chat/alice/history/"),
        ("missing host", s.token("alice"), "/ws/chat/nobody/math/"),
    ] {
        let mut ws = Ws::open(s.addr(), &format!("{path}?token={token}")).await;
        let (frames, code) = ws.frames_until_close().await;
        assert_eq!(code, 4403, "{who}");
        assert_eq!(frames.len(), 1, "{who}: {frames:?}");
        assert_eq!(keys(&frames[0]), ["error"], "{who}");
    }
    // Joining a public room over another protocol makes carol a participant.
    let mut native = Ws::connect(s.addr(), s.token("carol")).await;
    native
        .request("Join", json!({"room": "alice/math"}), "j")
        .await;
    edu(&s, s.token("carol"), "alice", "math").await;

    let mut ws = Ws::open(s.addr(), "/ws/chat/alice/math/?token=not-a-jwt").await;
    let (frames, code) = ws.frames_until_close().await;
    assert_eq!(code, 4401);
    assert_eq!(keys(&frames[0]), ["error"], "{frames:?}");
    s.server.stop().await;
}

#[tokio::test]
async fn percent_encoded_path_and_no_trailing_slash() {
    let s = Team::start(TEAM).await;
    math_class(&s).await;
    let mut ws = Ws::open(
        s.addr(),
        &format!("/ws/chat/%61lice/math?token={}", s.token("bob")),
    )
    .await;
    ws.send(json!({"type": "text", "message": "hi"})).await;
    assert_eq!(ws.recv().await["body"], "hi");
    s.server.stop().await;
}

#[tokio::test]
async fn removal_from_a_private_room_closes_with_4403() {
    let s = Team::start(TEAM).await;
    s.create_room("alice", "alice/secret", "private").await;
    s.add_member("alice", "alice/secret", "bob").await;
    let mut bob = edu(&s, s.token("bob"), "alice", "secret").await;
    let removed = s
        .server
        .api(
            "DELETE",
            "/api/v1/rooms/alice%2Fsecret/members/bob",
            Some(s.token("alice")),
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.json);
    let (frames, code) = bob.frames_until_close().await;
    assert_eq!(code, 4403, "{frames:?}");
    s.server.stop().await;
}

// ----- one room, two protocols --------------------------------------------------------------

#[tokio::test]
async fn edusphere_and_native_clients_share_a_room() {
    let s = Team::start(TEAM).await;
    let room_id = math_class(&s).await;
    let mut alice = edu(&s, s.token("alice"), "alice", "math").await;
    let mut bob = Ws::connect(s.addr(), s.token("bob")).await;
    let joined = bob
        .request("Join", json!({"room": "alice/math"}), "j")
        .await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");

    // EduSphere -> native.
    alice
        .send(json!({"type": "text", "message": "from edusphere"}))
        .await;
    let new = alice.recv().await;
    let message = bob.recv_type("Message").await;
    assert_eq!(message["data"]["room"], "alice/math");
    assert_eq!(message["data"]["author"], "alice");
    assert_eq!(message["data"]["content"], "from edusphere");
    let seq = message["data"]["seq"].as_u64().expect("seq");
    assert_eq!(new["id"], message_id(room_id, seq));
    alice
        .send(json!({"type": "update", "messageId": new["id"], "message": "edited in edusphere"}))
        .await;
    let edited = bob.recv_type("MessageEdited").await;
    assert_eq!(edited["data"]["seq"], seq);
    assert_eq!(edited["data"]["content"], "edited in edusphere");
    alice
        .send(json!({"type": "delete", "messageId": new["id"]}))
        .await;
    let deleted = bob.recv_type("MessageDeleted").await;
    assert_eq!(deleted["data"]["seq"], seq);

    // Native -> EduSphere.
    let ack = bob
        .request(
            "Send",
            json!({"room": "alice/math", "content": "from native"}),
            "s",
        )
        .await;
    let seq = ack["data"]["seq"].as_u64().expect("seq");
    let new = alice
        .recv_where("a new message", |f| f["action"] == "new")
        .await;
    assert_eq!(new["id"], message_id(room_id, seq));
    assert_eq!(new["user"], "bob");
    assert_eq!(new["body"], "from native");
    bob.request(
        "Edit",
        json!({"room": "alice/math", "seq": seq, "content": "edited natively"}),
        "e",
    )
    .await;
    let update = alice.recv().await;
    assert_eq!(update["action"], "update", "{update}");
    assert_eq!(update["id"], new["id"]);
    assert_eq!(update["body"], "edited natively");
    bob.request("Delete", json!({"room": "alice/math", "seq": seq}), "d")
        .await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "chat_message", "action": "delete", "id": new["id"]})
    );
    s.server.stop().await;
}
