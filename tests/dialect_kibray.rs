//! The Kibray dialect at `/ws/chat/{room}/`, `/ws/notifications/` and `/ws/status/`: every example
//! frame of Kibray's documentation sent literally to its endpoint with the documented replies, the
//! rate limit, the refusals, and one room shared with a native client.

use serde_json::{Value, json};

use crate::common::Team;
use crate::wsclient::{Ws, raw_connect};

/// boss (admin), alice, bob and carol.
const TEAM: &[(&str, &str)] = &[
    ("boss", "admin"),
    ("alice", "user"),
    ("bob", "user"),
    ("carol", "user"),
];

/// The fields of Kibray's message object.
const MESSAGE_FIELDS: &[&str] = &[
    "attachments",
    "author",
    "channel_id",
    "content",
    "id",
    "reply_to",
    "timestamp",
];

/// Waits until a connection is set up (joined, for the chat endpoint): Kibray has no welcome
/// frame, so it sends a frame of no known type and waits for the error, which comes after the
/// set-up. Costs one frame of the rate limit.
async fn ready(ws: &mut Ws) {
    ws.send(json!({"type": "sync"})).await;
    // Presence and status events of other connections (the test's earlier ones coming and
    // going) may come first: the set-up is done when the answer to this frame arrives.
    let reply = ws.recv_type("error").await;
    assert_eq!(reply["code"], "INVALID_MESSAGE", "{reply}");
}

/// Connects to `path` with `?token=` and waits until it is set up.
async fn kibray(t: &Team, path: &str, token: &str) -> Ws {
    let mut ws = Ws::open(t.addr(), &format!("{path}?token={token}")).await;
    ready(&mut ws).await;
    ws
}

fn keys(frame: &Value) -> Vec<String> {
    let mut keys: Vec<String> = frame
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort_unstable();
    keys
}

fn error(message: &str, code: &str) -> Value {
    json!({"type": "error", "error": message, "code": code})
}

// ----- ChatConsumer ---------------------------------------------------------------------------

#[tokio::test]
async fn chat_examples_as_documented() {
    let t = Team::start(TEAM).await;
    let room_id = t.create_room("boss", "room", "public").await;
    let alice_number = t.number("boss", "alice").await;
    let mut alice = kibray(&t, "/ws/chat/room/", t.token("alice")).await;
    // Kibray's "Session Authentication": the Django session cookie.
    let cookie = format!("sessionid={}", t.token("bob"));
    let mut bob = Ws {
        socket: raw_connect(t.addr(), "/ws/chat/room/", &[("cookie", &cookie)]).await,
        welcome: Value::Null,
    };
    ready(&mut bob).await;

    // "Send Message", literally: channel_id names nothing here (the path names the room).
    alice
        .send(json!({"type": "chat_message", "message": "Hello, world!", "channel_id": 123}))
        .await;
    for ws in [&mut alice, &mut bob] {
        let frame = ws.recv().await;
        assert_eq!(keys(&frame), ["message", "type"], "{frame}");
        assert_eq!(frame["type"], "chat_message");
        let message = &frame["message"];
        assert_eq!(keys(message), MESSAGE_FIELDS, "{message}");
        assert_eq!(message["id"], 1);
        assert_eq!(message["content"], "Hello, world!");
        assert_eq!(
            message["author"],
            json!({"id": alice_number, "username": "alice", "avatar": null})
        );
        assert_eq!(message["channel_id"], room_id);
        assert_eq!(message["reply_to"], Value::Null);
        assert_eq!(message["attachments"], json!([]));
        let timestamp = message["timestamp"].as_str().expect("timestamp");
        assert_eq!(timestamp.len(), "2024-01-01T12:00:00Z".len(), "{timestamp}");
        assert!(timestamp.ends_with('Z'), "{timestamp}");
    }

    // chat_message with reply_to, literally: there is no message 456 in this room.
    alice
        .send(json!({"type": "chat_message", "message": "Hello, world!", "channel_id": 123, "reply_to": 456}))
        .await;
    assert_eq!(
        alice.recv().await,
        error(
            "reply_to 456 is not a message of this room",
            "INVALID_MESSAGE"
        )
    );
    // A reply to a message that exists is listed with it.
    bob.send(json!({"type": "chat_message", "message": "Hi alice", "channel_id": room_id, "reply_to": 1}))
        .await;
    let reply = alice.recv().await;
    assert_eq!(reply["message"]["id"], 2, "{reply}");
    assert_eq!(reply["message"]["reply_to"], 1);
    assert_eq!(reply["message"]["author"]["username"], "bob");
    assert_eq!(bob.recv().await, reply, "the sender sees the same frame");

    // edit_message and delete_message, literally: there is no message 789.
    alice
        .send(json!({"type": "edit_message", "message_id": 789, "new_content": "Updated message"}))
        .await;
    let missing = alice.recv().await;
    assert_eq!(missing["code"], "INVALID_MESSAGE", "{missing}");
    alice
        .send(json!({"type": "delete_message", "message_id": 789}))
        .await;
    let missing = alice.recv().await;
    assert_eq!(missing["code"], "INVALID_MESSAGE", "{missing}");

    // The same on message 1.
    alice
        .send(json!({"type": "edit_message", "message_id": 1, "new_content": "Updated message"}))
        .await;
    let expected = json!({
        "type": "edit_message",
        "message_id": 1,
        "new_content": "Updated message",
        "channel_id": room_id,
    });
    assert_eq!(alice.recv().await, expected);
    assert_eq!(bob.recv().await, expected);
    // Only its author may edit or delete it.
    bob.send(json!({"type": "edit_message", "message_id": 1, "new_content": "mine now"}))
        .await;
    assert_eq!(bob.recv().await["code"], "PERMISSION_DENIED");
    bob.send(json!({"type": "delete_message", "message_id": 1}))
        .await;
    assert_eq!(bob.recv().await["code"], "PERMISSION_DENIED");
    alice
        .send(json!({"type": "delete_message", "message_id": 1}))
        .await;
    let expected = json!({"type": "delete_message", "message_id": 1, "channel_id": room_id});
    assert_eq!(alice.recv().await, expected);
    assert_eq!(bob.recv().await, expected);

    // typing_indicator, literally: the others see it, with who is typing.
    alice
        .send(json!({"type": "typing", "channel_id": 123, "is_typing": true}))
        .await;
    assert_eq!(
        bob.recv().await,
        json!({
            "type": "typing",
            "channel_id": room_id,
            "is_typing": true,
            "user_id": alice_number,
            "username": "alice",
        })
    );

    // Read receipts.
    bob.send(json!({"type": "mark_read", "message_id": 2}))
        .await;
    let receipt = alice.recv().await;
    assert_eq!(receipt["type"], "read_receipt", "{receipt}");
    assert_eq!(receipt["message_id"], 2);
    assert_eq!(receipt["channel_id"], room_id);
    assert_eq!(receipt["username"], "bob");
    t.server.stop().await;
}

#[tokio::test]
async fn markup_is_stripped_before_storage() {
    let t = Team::start(TEAM).await;
    t.create_room("boss", "room", "public").await;
    let mut alice = kibray(&t, "/ws/chat/room/", t.token("alice")).await;
    alice
        .send(json!({"type": "chat_message", "message": "<script>alert(1)</script>Hi <b>there</b><img src=x onerror=alert(1)><iframe src=\"javascript:alert(1)\"></iframe>"}))
        .await;
    let frame = alice.recv().await;
    assert_eq!(frame["message"]["content"], "Hi there", "{frame}");
    // Stored that way: the native history shows the same.
    let history = t
        .server
        .api(
            "GET",
            "/api/v1/rooms/room/messages",
            Some(t.token("alice")),
            None,
        )
        .await;
    assert!(
        history.json.to_string().contains("\"Hi there\""),
        "{:?}",
        history.json
    );
    assert!(!history.json.to_string().contains("script"));
    // Nothing left but markup: refused.
    alice
        .send(json!({"type": "chat_message", "message": "<script>alert(1)</script>"}))
        .await;
    assert_eq!(alice.recv().await["code"], "INVALID_MESSAGE");
    alice
        .send(json!({"type": "edit_message", "message_id": 1, "new_content": "<b>bold</b> edit"}))
        .await;
    assert_eq!(alice.recv().await["new_content"], "bold edit");
    t.server.stop().await;
}

// ----- errors and refusals --------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_is_sixty_frames_a_minute_per_user() {
    let t = Team::start(TEAM).await;
    t.create_room("boss", "room", "public").await;
    // One frame spent by `ready`.
    let mut alice = kibray(&t, "/ws/chat/room/", t.token("alice")).await;
    for n in 2..=60 {
        alice.send(json!({"type": "nonsense", "n": n})).await;
        let reply = alice.recv().await;
        assert_eq!(reply["code"], "INVALID_MESSAGE", "frame {n}: {reply}");
    }
    for _ in 0..2 {
        alice
            .send(json!({"type": "chat_message", "message": "one too many"}))
            .await;
        assert_eq!(
            alice.recv().await,
            error(
                "Rate limit exceeded. Please slow down.",
                "RATE_LIMIT_EXCEEDED"
            )
        );
    }
    // Per user (the document says per connection: then a reconnect, or a second connection,
    // would bring a fresh minute): another connection of alice's is limited too...
    let mut again = Ws::open(
        t.addr(),
        &format!("/ws/chat/room/?token={}", t.token("alice")),
    )
    .await;
    again
        .send(json!({"type": "chat_message", "message": "still too many"}))
        .await;
    assert_eq!(
        again.recv_type("error").await["code"],
        "RATE_LIMIT_EXCEEDED"
    );
    // ...and another user is not.
    let mut bob = kibray(&t, "/ws/chat/room/", t.token("bob")).await;
    bob.send(json!({"type": "chat_message", "message": "fine"}))
        .await;
    assert_eq!(bob.recv().await["message"]["content"], "fine");
    t.server.stop().await;
}

#[tokio::test]
async fn sustained_flooding_closes_the_connection() {
    let t = Team::start_with(TEAM, |c| c.kibray.messages_per_minute = 3).await;
    t.create_room("boss", "room", "public").await;
    let mut alice = kibray(&t, "/ws/chat/room/", t.token("alice")).await;
    for _ in 0..8 {
        alice.send(json!({"type": "sync"})).await;
    }
    let (frames, code) = alice.frames_until_close().await;
    assert_eq!(code, 4429);
    let limited = frames
        .iter()
        .filter(|f| f["code"] == "RATE_LIMIT_EXCEEDED")
        .count();
    assert_eq!(limited, 3, "{frames:?}");
    t.server.stop().await;
}

#[tokio::test]
async fn refusals_and_error_codes() {
    let t = Team::start_with(TEAM, |c| c.kibray.max_message_chars = 10).await;
    t.create_room("boss", "room", "public").await;
    t.create_room("boss", "secret", "private").await;

    // No token, a bad token: AUTHENTICATION_FAILED, then 4401.
    for path in ["/ws/chat/room/", "/ws/notifications/?token=nope"] {
        let mut ws = Ws::open(t.addr(), path).await;
        let (frames, code) = ws.frames_until_close().await;
        assert_eq!(code, 4401, "{path}");
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["type"], "error");
        assert_eq!(frames[0]["code"], "AUTHENTICATION_FAILED");
    }
    // A private room of others, a room that does not exist: 4403.
    for (room, code) in [
        ("secret", "PERMISSION_DENIED"),
        ("nowhere", "CHANNEL_NOT_FOUND"),
    ] {
        let mut ws = Ws::open(
            t.addr(),
            &format!("/ws/chat/{room}/?token={}", t.token("carol")),
        )
        .await;
        let (frames, close) = ws.frames_until_close().await;
        assert_eq!(close, 4403, "{room}");
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["code"], code, "{frames:?}");
    }
    // The owner of the private room enters it.
    let mut boss = kibray(&t, "/ws/chat/secret/", t.token("boss")).await;

    // Bad input gets an error and the connection stays open.
    let mut carol = kibray(&t, "/ws/chat/room/", t.token("carol")).await;
    carol
        .send_raw(tokio_tungstenite::tungstenite::Message::text("{not json"))
        .await;
    assert_eq!(carol.recv().await["code"], "INVALID_MESSAGE");
    carol
        .send(json!({"type": "chat_message", "message": 5}))
        .await;
    assert_eq!(
        carol.recv().await,
        error("message must be a string", "INVALID_MESSAGE")
    );
    carol
        .send(json!({"type": "chat_message", "message": "far too long for ten"}))
        .await;
    assert_eq!(
        carol.recv().await,
        error("Message exceeds 10 characters.", "MESSAGE_TOO_LARGE")
    );
    carol
        .send(json!({"type": "status_update", "status": "online"}))
        .await;
    assert_eq!(carol.recv().await["code"], "INVALID_MESSAGE");
    carol
        .send(json!({"type": "chat_message", "message": "still here"}))
        .await;
    assert_eq!(carol.recv().await["message"]["content"], "still here");
    // Nothing of room crossed into secret.
    boss.send(json!({"type": "sync"})).await;
    assert_eq!(boss.recv().await["code"], "INVALID_MESSAGE");
    t.server.stop().await;
}

// ----- NotificationConsumer -----------------------------------------------------------------

#[tokio::test]
async fn notifications_as_documented() {
    let t = Team::start(TEAM).await;
    let mut alice = Ws::open(
        t.addr(),
        &format!("/ws/notifications/?token={}", t.token("alice")),
    )
    .await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "unread_count", "count": 0})
    );
    let created = t
        .server
        .api(
            "POST",
            "/api/v1/notifications",
            Some(t.token("boss")),
            Some(&json!({
                "username": "alice",
                "title": "New Task Assigned",
                "message": "You've been assigned a new task",
                "category": "task",
                "url": "https://kibray.example/tasks/123",
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    let id = created.json["id"].as_u64().expect("id");
    let frame = alice.recv().await;
    assert_eq!(keys(&frame), ["notification", "type"]);
    assert_eq!(frame["type"], "notification");
    let notification = &frame["notification"];
    assert_eq!(
        keys(notification),
        ["category", "created_at", "id", "message", "title", "url"]
    );
    assert_eq!(notification["id"], id);
    assert_eq!(notification["title"], "New Task Assigned");
    assert_eq!(notification["message"], "You've been assigned a new task");
    assert_eq!(notification["category"], "task");
    assert_eq!(notification["url"], "https://kibray.example/tasks/123");
    assert!(
        notification["created_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );

    // mark_read, literally: 789 is not alice's.
    alice
        .send(json!({"type": "mark_read", "notification_id": 789}))
        .await;
    assert_eq!(alice.recv().await["code"], "INVALID_MESSAGE");
    alice
        .send(json!({"type": "mark_read", "notification_id": id}))
        .await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "unread_count", "count": 0})
    );
    // Read for good: a new connection starts at 0 too.
    let mut again = Ws::open(
        t.addr(),
        &format!("/ws/notifications/?token={}", t.token("alice")),
    )
    .await;
    assert_eq!(
        again.recv().await,
        json!({"type": "unread_count", "count": 0})
    );
    // Chat frames have no meaning here.
    alice
        .send(json!({"type": "chat_message", "message": "Hello, world!", "channel_id": 123}))
        .await;
    assert_eq!(alice.recv().await["code"], "INVALID_MESSAGE");
    t.server.stop().await;
}

// ----- StatusConsumer -----------------------------------------------------------------------

#[tokio::test]
async fn status_as_documented() {
    let t = Team::start(TEAM).await;
    let room_id = t.create_room("boss", "room", "public").await;
    let alice_number = t.number("boss", "alice").await;
    // Both become members of `room` by entering it.
    drop(kibray(&t, "/ws/chat/room/", t.token("alice")).await);
    drop(kibray(&t, "/ws/chat/room/", t.token("bob")).await);
    let mut bob = kibray(&t, "/ws/status/", t.token("bob")).await;
    let mut alice = kibray(&t, "/ws/status/", t.token("alice")).await;

    // status_update, literally ("away" too, so it cannot be the connect's "online").
    alice
        .send(json!({"type": "status_update", "status": "online"}))
        .await;
    let status = bob
        .recv_where("alice's user_status", |f| {
            f["type"] == "user_status" && f["user_id"] == alice_number
        })
        .await;
    assert_eq!(keys(&status), ["last_seen", "status", "type", "user_id"]);
    assert_eq!(status["status"], "online");
    assert!(
        status["last_seen"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    alice
        .send(json!({"type": "status_update", "status": "away"}))
        .await;
    let status = bob
        .recv_where("a user_status other than online", |f| {
            f["type"] == "user_status" && f["status"] != "online"
        })
        .await;
    assert_eq!(status["user_id"], alice_number);
    assert_eq!(status["status"], "away");
    alice
        .send(json!({"type": "status_update", "status": "asleep"}))
        .await;
    assert_eq!(alice.recv_type("error").await["code"], "INVALID_MESSAGE");

    // Typing indicator, literally: there is no channel 123.
    alice
        .send(json!({"type": "typing", "channel_id": 123, "is_typing": true}))
        .await;
    assert_eq!(
        alice.recv_type("error").await,
        error("no room with id 123", "CHANNEL_NOT_FOUND")
    );
    alice
        .send(json!({"type": "typing", "channel_id": room_id, "is_typing": true}))
        .await;
    let typing = bob.recv_type("typing").await;
    assert_eq!(typing["channel_id"], room_id);
    assert_eq!(typing["user_id"], alice_number);
    assert_eq!(typing["is_typing"], true);

    // Leaving: offline, with when.
    drop(alice);
    let status = bob
        .recv_where("a user_status offline", |f| {
            f["type"] == "user_status" && f["status"] == "offline"
        })
        .await;
    assert_eq!(status["user_id"], alice_number);
    assert!(status["last_seen"].is_string());
    t.server.stop().await;
}

// ----- one room, two protocols --------------------------------------------------------------

#[tokio::test]
async fn kibray_and_native_clients_share_a_room() {
    let t = Team::start(TEAM).await;
    let room_id = t.create_room("boss", "room", "public").await;
    let mut alice = kibray(&t, "/ws/chat/room/", t.token("alice")).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let joined = bob.request("Join", json!({"room": "room"}), "j").await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");

    // Kibray -> native.
    alice
        .send(json!({"type": "chat_message", "message": "from kibray"}))
        .await;
    let own = alice.recv().await;
    let message = bob.recv_type("Message").await;
    assert_eq!(message["data"]["room"], "room");
    assert_eq!(message["data"]["author"], "alice");
    assert_eq!(message["data"]["content"], "from kibray");
    assert_eq!(message["data"]["seq"], own["message"]["id"]);
    let seq = own["message"]["id"].as_u64().expect("id");
    alice
        .send(json!({"type": "edit_message", "message_id": seq, "new_content": "edited in kibray"}))
        .await;
    let edited = bob.recv_type("MessageEdited").await;
    assert_eq!(edited["data"]["seq"], seq);
    assert_eq!(edited["data"]["content"], "edited in kibray");
    alice
        .send(json!({"type": "delete_message", "message_id": seq}))
        .await;
    let deleted = bob.recv_type("MessageDeleted").await;
    assert_eq!(deleted["data"]["seq"], seq);

    // Native -> Kibray.
    let ack = bob
        .request(
            "Send",
            json!({"room": "room", "content": "from native"}),
            "s",
        )
        .await;
    let seq = ack["data"]["seq"].as_u64().expect("seq");
    let new = alice.recv_type("chat_message").await;
    assert_eq!(new["message"]["id"], seq);
    assert_eq!(new["message"]["author"]["username"], "bob");
    assert_eq!(new["message"]["content"], "from native");
    assert_eq!(new["message"]["channel_id"], room_id);
    bob.request(
        "Edit",
        json!({"room": "room", "seq": seq, "content": "edited natively"}),
        "e",
    )
    .await;
    assert_eq!(
        alice.recv_type("edit_message").await,
        json!({"type": "edit_message", "message_id": seq, "new_content": "edited natively", "channel_id": room_id})
    );
    bob.request("Delete", json!({"room": "room", "seq": seq}), "d")
        .await;
    assert_eq!(
        alice.recv_type("delete_message").await,
        json!({"type": "delete_message", "message_id": seq, "channel_id": room_id})
    );
    t.server.stop().await;
}

// ----- file attachments ---------------------------------------------------------------------

#[tokio::test]
async fn files_are_uploaded_in_chunks_listed_and_downloadable_by_readers() {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let t = Team::start_with(TEAM, |c| c.kibray.max_upload_bytes = 2_000_000).await;
    let room_id = t.create_room("boss", "secret", "private").await;
    let added = t
        .server
        .api(
            "POST",
            "/api/v1/rooms/secret/members/alice",
            Some(t.token("boss")),
            None,
        )
        .await;
    assert_eq!(added.status, 200, "{:?}", added.json);
    let mut alice = kibray(&t, "/ws/chat/secret/", t.token("alice")).await;
    let mut boss = kibray(&t, "/ws/chat/secret/", t.token("boss")).await;

    // Kibray's examples, literally: the chunk names no upload in progress; the file is
    // accepted (1024000 bytes is within the limit) and gets an upload id.
    alice
        .send(json!({"type": "upload_chunk", "upload_id": "abc123", "chunk_index": 0, "chunk_data": "base64_encoded_data"}))
        .await;
    assert_eq!(alice.recv().await["code"], "INVALID_MESSAGE");
    alice
        .send(json!({"type": "upload_file", "file_name": "document.pdf", "file_size": 1024000, "file_type": "application/pdf", "channel_id": 123}))
        .await;
    let started = alice.recv().await;
    assert_eq!(started["type"], "upload_started", "{started}");
    assert_eq!(started["file_size"], 1024000);
    assert!(
        started["upload_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );

    // Above the limit.
    alice
        .send(json!({"type": "upload_file", "file_name": "big.bin", "file_size": 2_000_001, "file_type": "application/octet-stream"}))
        .await;
    assert_eq!(alice.recv().await["code"], "MESSAGE_TOO_LARGE");

    // A small file in two chunks (a new upload_file replaces the one in progress).
    alice
        .send(json!({"type": "upload_file", "file_name": "hello.txt", "file_size": 11, "file_type": "text/plain"}))
        .await;
    let started = alice.recv().await;
    let upload_id = started["upload_id"].clone();
    alice
        .send(json!({"type": "upload_chunk", "upload_id": upload_id, "chunk_index": 1, "chunk_data": b64(b"world")}))
        .await;
    assert_eq!(
        alice.recv().await["code"],
        "INVALID_MESSAGE",
        "out of order"
    );
    alice
        .send(json!({"type": "upload_chunk", "upload_id": upload_id, "chunk_index": 0, "chunk_data": b64(b"hello ")}))
        .await;
    let progress = alice.recv().await;
    assert_eq!(progress["type"], "upload_progress", "{progress}");
    assert_eq!(progress["received"], 6);
    alice
        .send(json!({"type": "upload_chunk", "upload_id": upload_id, "chunk_index": 1, "chunk_data": b64(b"world")}))
        .await;
    let sha = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
    // The message listing it reaches the room; the uploader is told once it is stored.
    let message = boss.recv().await;
    assert_eq!(message["type"], "chat_message", "{message}");
    assert_eq!(message["message"]["content"], "hello.txt");
    assert_eq!(message["message"]["channel_id"], room_id);
    let attachments = message["message"]["attachments"].as_array().expect("list");
    assert_eq!(attachments.len(), 1);
    let file = &attachments[0];
    assert_eq!(file["file_name"], "hello.txt");
    assert_eq!(file["file_size"], 11);
    assert_eq!(file["file_type"], "text/plain");
    assert_eq!(file["sha256"], sha);
    let frames = [alice.recv().await, alice.recv().await];
    let complete = frames
        .iter()
        .find(|f| f["type"] == "upload_complete")
        .expect("upload_complete");
    assert_eq!(complete["upload_id"], upload_id);
    assert_eq!(&complete["file"], file);
    assert!(t.server.data_dir.join("files").join(sha).is_file());

    // Download: readers of the room only.
    let url = file["url"].as_str().expect("url");
    let download = t.server.api("GET", url, Some(t.token("alice")), None).await;
    assert_eq!(download.status, 200);
    assert_eq!(download.json, json!("hello world"));
    assert_eq!(download.headers["content-type"], "text/plain");
    // A file of a room one may not read is answered like a missing one.
    let denied = t.server.api("GET", url, Some(t.token("carol")), None).await;
    assert_eq!(denied.status, 404, "{:?}", denied.json);
    let anonymous = t.server.api("GET", url, None, None).await;
    assert_eq!(anonymous.status, 401);
    let missing = t
        .server
        .api("GET", "/api/v1/files/999", Some(t.token("alice")), None)
        .await;
    assert_eq!(missing.status, 404);

    // Chunks beyond the announced size abandon the upload.
    alice
        .send(json!({"type": "upload_file", "file_name": "x.txt", "file_size": 2, "file_type": "text/plain"}))
        .await;
    let upload_id = alice.recv().await["upload_id"].clone();
    alice
        .send(json!({"type": "upload_chunk", "upload_id": upload_id, "chunk_index": 0, "chunk_data": b64(b"abc")}))
        .await;
    assert_eq!(alice.recv().await["code"], "INVALID_MESSAGE");
    alice
        .send(json!({"type": "upload_chunk", "upload_id": upload_id, "chunk_index": 0, "chunk_data": b64(b"ab")}))
        .await;
    assert_eq!(alice.recv().await["code"], "INVALID_MESSAGE", "abandoned");
    t.server.stop().await;
}
