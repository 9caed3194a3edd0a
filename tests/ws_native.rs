//! The native WebSocket protocol (seed 004 plus chat rooms) over real sockets: every example
//! frame of the seed, every rule of the connection, rooms, replay and revocation.

use serde_json::{Value, json};
use sha2::Digest as _;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Deadline, Team};
use crate::wsclient::{Ws, raw_connect, try_connect};

/// boss (admin), alice and bob.
const TEAM: &[(&str, &str)] = &[("boss", "admin"), ("alice", "user"), ("bob", "user")];

// ----- connection and authentication ------------------------------------------------------

#[tokio::test]
async fn welcome_frame_is_as_documented() {
    let t = Team::start(TEAM).await;
    let ws = Ws::connect(t.addr(), t.token("alice")).await;
    let details = &ws.welcome;
    assert!(uuid::Uuid::parse_str(details["connection_id"].as_str().expect("id")).is_ok());
    assert!(details["server_time"].as_i64().expect("server_time") > 1_700_000_000);
    assert_eq!(details["protocol_version"], "1.0");
    let features: Vec<&str> = details["features"]
        .as_array()
        .expect("features")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for feature in ["broadcast", "direct_message", "presence", "history"] {
        assert!(features.contains(&feature), "{features:?}");
    }
    assert_eq!(details["user"]["username"], "alice");
    t.server.stop().await;
}

#[tokio::test]
async fn token_by_header_subprotocol_and_cookie() {
    let t = Team::start(TEAM).await;
    let addr = t.addr();
    let bearer = format!("Bearer {}", t.token("alice"));
    Ws::welcomed(raw_connect(addr, "/ws", &[("authorization", &bearer)]).await).await;

    let protocol = format!("access_token.{}", t.token("alice"));
    let (socket, response) = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut request = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("req");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().expect("value"));
        Deadline::new("the upgrade with a subprotocol")
            .bound(tokio_tungstenite::connect_async(request))
            .await
            .expect("connect")
    };
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some(protocol.as_str()),
        "the subprotocol is echoed"
    );
    Ws::welcomed(socket).await;

    let login = t
        .server
        .post_json(
            "/api/token/",
            &json!({"username": "bob", "password": "bob-password", "cookie": true}),
        )
        .await;
    let set_cookie = login
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("Set-Cookie")
        .to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().expect("pair").to_owned();
    let ws = Ws::welcomed(raw_connect(addr, "/ws", &[("cookie", &cookie)]).await).await;
    assert_eq!(ws.welcome["user"]["username"], "bob");
    t.server.stop().await;
}

#[tokio::test]
async fn bad_or_missing_token_gets_error_401_and_close_4401() {
    let t = Team::start(TEAM).await;
    for path in ["/ws", "/ws?token=not-a-jwt"] {
        let mut ws = Ws::open(t.addr(), path).await;
        let error = ws.recv().await;
        assert_eq!(error["type"], "Error", "{error}");
        assert_eq!(error["data"]["code"], 401, "{error}");
        assert_eq!(ws.closed().await.0, 4401);
    }
    t.server.stop().await;
}

#[tokio::test]
async fn foreign_origin_is_refused_before_the_upgrade() {
    let t = Team::start(TEAM).await;
    let path = format!("/ws?token={}", t.token("alice"));
    let refused = try_connect(t.addr(), &path, &[("origin", "https://evil.example")]).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403);
        }
        other => panic!("expected HTTP 403, got {other:?}"),
    }
    let own = format!("http://{}", t.addr());
    Ws::welcomed(raw_connect(t.addr(), &path, &[("origin", &own)]).await).await;
    t.server.stop().await;
}

#[tokio::test]
async fn sixth_connection_of_a_user_is_refused_with_4429() {
    let t = Team::start(TEAM).await;
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(Ws::connect(t.addr(), t.token("alice")).await);
    }
    let mut sixth = Ws::open(t.addr(), &format!("/ws?token={}", t.token("alice"))).await;
    let error = sixth.recv().await;
    assert_eq!(error["data"]["code"], 429, "{error}");
    assert_eq!(sixth.closed().await.0, 4429);
    // The first five keep working.
    for ws in &mut open {
        let pong = ws.request("Ping", json!({"timestamp": 7}), "p").await;
        assert_eq!(pong["type"], "Pong");
    }
    t.server.stop().await;
}

// ----- the seed's example frames -----------------------------------------------------------

#[tokio::test]
async fn ping_pong_example() {
    let t = Team::start(TEAM).await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    ws.send(json!({"type": "Ping", "data": {"timestamp": 1234567890}}))
        .await;
    let pong = ws.recv().await;
    assert_eq!(
        pong,
        json!({"type": "Pong", "data": {"timestamp": 1234567890}})
    );
    t.server.stop().await;
}

#[tokio::test]
async fn subscribe_and_unsubscribe_examples() {
    let t = Team::start(TEAM).await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    ws.send(json!({"type": "Subscribe", "data": {"topics": ["notifications", "chat.general", "updates.*"]}}))
        .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "Status", "data": {"status": "subscribed", "details": {
            "topics": ["notifications", "chat.general", "updates.*"], "active_subscriptions": 3}}})
    );
    ws.send(json!({"type": "Unsubscribe", "data": {"topics": ["chat.general"]}}))
        .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "Status", "data": {"status": "unsubscribed", "details": {
            "topics": ["chat.general"], "active_subscriptions": 2}}})
    );
    t.server.stop().await;
}

#[tokio::test]
async fn broadcast_example_acks_and_delivers() {
    let t = Team::start(TEAM).await;
    let mut listener = Ws::connect(t.addr(), t.token("bob")).await;
    listener
        .request("Subscribe", json!({"topics": ["chat.general"]}), "s")
        .await;
    let mut sender = Ws::connect(t.addr(), t.token("alice")).await;
    sender
        .send(json!({
            "type": "Broadcast",
            "data": {"topic": "chat.general", "payload": {
                "message": "Hello everyone!", "sender": "user123", "metadata": {"mood": "happy"}}},
            "id": "msg_123456"
        }))
        .await;
    let ack = sender.recv().await;
    assert_eq!(ack["type"], "Ack");
    assert_eq!(ack["data"]["message_id"], "msg_123456");
    assert_eq!(ack["data"]["status"], "delivered");
    assert_eq!(ack["data"]["recipients"], 1);

    let delivered = listener.recv_type("Broadcast").await;
    assert_eq!(delivered["data"]["topic"], "chat.general");
    assert_eq!(
        delivered["data"]["payload"],
        json!({"message": "Hello everyone!", "sender": "user123", "metadata": {"mood": "happy"}})
    );
    assert!(delivered["data"]["metadata"]["sent_at"].as_i64().is_some());
    assert!(
        delivered["data"]["metadata"]["message_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("broadcast_"))
    );
    t.server.stop().await;
}

#[tokio::test]
async fn metadata_headers_are_accepted_on_any_message() {
    let t = Team::start(TEAM).await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    ws.send(json!({
        "type": "Broadcast",
        "data": {"topic": "chat.general", "payload": {}},
        "metadata": {"priority": "high", "ttl": 3600, "encryption": "aes256", "compression": "gzip"},
        "id": "m1"
    }))
    .await;
    let ack = ws.recv().await;
    assert_eq!(ack["type"], "Ack", "{ack}");
    assert_eq!(ack["data"]["status"], "delivered");
    t.server.stop().await;
}

#[tokio::test]
async fn wildcards_match_one_segment_and_never_reach_private_topics() {
    let t = Team::start(TEAM).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let sub = bob
        .request("Subscribe", json!({"topics": ["updates.*", ">"]}), "s")
        .await;
    assert_eq!(sub["data"]["status"], "subscribed", "{sub}");
    let refused = bob
        .request("Subscribe", json!({"topics": ["user.alice"]}), "s2")
        .await;
    assert_eq!(refused["data"]["code"], 403, "{refused}");
    let own = bob
        .request("Subscribe", json!({"topics": ["user.bob"]}), "s3")
        .await;
    assert_eq!(own["data"]["status"], "subscribed", "{own}");

    let mut boss = Ws::connect(t.addr(), t.token("boss")).await;
    // `>` matches every public topic, but not another user's private topic.
    let private = boss
        .request(
            "Broadcast",
            json!({"topic": "user.alice.inbox", "payload": 1}),
            "b1",
        )
        .await;
    assert_eq!(private["data"]["recipients"], 0, "{private}");
    let mine = boss
        .request(
            "Broadcast",
            json!({"topic": "user.bob", "payload": 2}),
            "b2",
        )
        .await;
    assert_eq!(mine["data"]["recipients"], 1, "{mine}");
    let one = boss
        .request(
            "Broadcast",
            json!({"topic": "updates.a", "payload": 3}),
            "b3",
        )
        .await;
    assert_eq!(
        one["data"]["recipients"], 1,
        "one connection, matched by two patterns"
    );
    let seen: Vec<Value> = vec![
        bob.recv_type("Broadcast").await["data"]["payload"].clone(),
        bob.recv_type("Broadcast").await["data"]["payload"].clone(),
    ];
    assert_eq!(seen, vec![json!(2), json!(3)]);
    // A plain user may not publish into reserved namespaces.
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let denied = alice
        .request(
            "Broadcast",
            json!({"topic": "user.bob", "payload": 4}),
            "b4",
        )
        .await;
    assert_eq!(denied["data"]["code"], 403, "{denied}");
    t.server.stop().await;
}

#[tokio::test]
async fn direct_message_online_offline_and_unknown() {
    let t = Team::start(TEAM).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let bob_conn = bob.welcome["connection_id"].clone();
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    alice
        .send(json!({
            "type": "DirectMessage",
            "data": {"target_user": "bob", "payload": {"message": "Private message", "attachments": []}},
            "id": "dm_789012"
        }))
        .await;
    let ack = alice.recv().await;
    assert_eq!(
        ack["data"],
        json!({"message_id": "dm_789012", "status": "delivered", "delivered_to": [bob_conn]})
    );
    let dm = bob.recv_type("DirectMessage").await;
    assert_eq!(dm["data"]["from_user"], "alice");
    assert_eq!(
        dm["data"]["payload"],
        json!({"message": "Private message", "attachments": []})
    );
    assert_eq!(dm["data"]["metadata"]["message_id"], "dm_789012");
    bob.socket.close(None).await.expect("close");
    drop(bob);

    // Offline: the documented 404 with queued: true...
    let mut queued = None;
    for attempt in 0..100 {
        let reply = alice
            .request(
                "DirectMessage",
                json!({"target_user": "bob", "payload": {"message": "while you were out"}}),
                &format!("dm_off_{attempt}"),
            )
            .await;
        if reply["type"] == "Error" {
            queued = Some(reply);
            break;
        }
        // bob's close may still be in flight: that message went to the closing socket's queue.
    }
    let queued = queued.expect("bob went offline");
    assert_eq!(queued["data"]["code"], 404);
    assert_eq!(
        queued["data"]["message"],
        "User bob not found or not connected"
    );
    assert_eq!(queued["data"]["details"]["queued"], true);
    let queued_id = queued["data"]["details"]["message_id"].clone();
    // ...and delivered when bob connects again.
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let dm = bob
        .recv_where("the queued DirectMessage", |f| {
            f["type"] == "DirectMessage" && f["data"]["metadata"]["message_id"] == queued_id
        })
        .await;
    assert_eq!(dm["data"]["payload"]["message"], "while you were out");

    let unknown = alice
        .request(
            "DirectMessage",
            json!({"target_user": "nobody", "payload": {}}),
            "x",
        )
        .await;
    assert_eq!(unknown["data"]["code"], 404);
    assert_eq!(unknown["data"]["details"]["queued"], false);
    t.server.stop().await;
}

#[tokio::test]
async fn notification_example_is_delivered_live_and_kept_in_the_inbox() {
    let t = Team::start(TEAM).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let response = t
        .post(
            "boss",
            "/api/v1/notifications",
            json!({
                "username": "bob",
                "level": "info",
                "title": "Maintenance Notice",
                "message": "System will undergo maintenance in 1 hour",
                "actions": [{"label": "Learn More", "url": "https://status.example.com"}]
            }),
        )
        .await;
    assert_eq!(response.status, 201, "{:?}", response.json);
    let notification = bob.recv_type("Notification").await;
    assert_eq!(notification["data"]["level"], "info");
    assert_eq!(notification["data"]["title"], "Maintenance Notice");
    assert_eq!(
        notification["data"]["message"],
        "System will undergo maintenance in 1 hour"
    );
    assert_eq!(
        notification["data"]["actions"],
        json!([{"label": "Learn More", "url": "https://status.example.com"}])
    );
    t.server.stop().await;
}

#[tokio::test]
async fn presence_example_reaches_room_members() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "general", "public").await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    alice.request("Join", json!({"room": "general"}), "j").await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    bob.request("Join", json!({"room": "general"}), "j").await;
    let ack = bob
        .request(
            "SetStatus",
            json!({"status": "away", "metadata": {"device": "web", "location": "New York"}}),
            "st",
        )
        .await;
    assert_eq!(ack["type"], "Ack", "{ack}");
    let presence = alice
        .recv_where("bob's Presence away", |f| {
            f["type"] == "Presence" && f["data"]["status"] == "away"
        })
        .await;
    assert_eq!(presence["data"]["username"], "bob");
    assert!(presence["data"]["user_id"].as_str().is_some());
    assert!(presence["data"]["last_seen"].as_i64().is_some());
    assert_eq!(
        presence["data"]["metadata"],
        json!({"device": "web", "location": "New York"})
    );
    let bad = bob
        .request("SetStatus", json!({"status": "sleeping"}), "st2")
        .await;
    assert_eq!(bad["data"]["code"], 400);
    // Bob leaves entirely: alice sees him go offline.
    bob.socket.close(None).await.expect("close");
    let offline = alice
        .recv_where("bob's Presence offline", |f| {
            f["type"] == "Presence" && f["data"]["status"] == "offline"
        })
        .await;
    assert_eq!(offline["data"]["username"], "bob");
    t.server.stop().await;
}

#[tokio::test]
async fn bad_frames_get_error_400_and_the_connection_stays() {
    let t = Team::start(TEAM).await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    for (frame, needle) in [
        ("{not json", "malformed JSON"),
        ("[1,2]", "JSON object"),
        ("{\"data\":{}}", "missing field \"type\""),
        ("{\"type\":7}", "\"type\" must be a string"),
        ("{\"type\":\"Nope\",\"data\":{}}", "unknown message type"),
        (
            "{\"type\":\"Subscribe\",\"data\":{\"topics\":\"x\"}}",
            "data.topics",
        ),
        (
            "{\"type\":\"Broadcast\",\"data\":{\"topic\":5}}",
            "data.topic must be a string",
        ),
        (
            "{\"type\":\"Join\",\"data\":{\"room\":\"x\",\"since\":-1}}",
            "data.since",
        ),
        ("{\"type\":\"Ping\",\"data\":{},\"id\":{}}", "\"id\""),
    ] {
        ws.send_raw(Message::text(frame)).await;
        let error = ws.recv().await;
        assert_eq!(error["type"], "Error", "{frame}: {error}");
        assert_eq!(error["data"]["code"], 400, "{frame}: {error}");
        let message = error["data"]["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{frame}: {message}");
    }
    let pong = ws.request("Ping", json!({"timestamp": 1}), "alive").await;
    assert_eq!(pong["type"], "Pong");
    t.server.stop().await;
}

#[tokio::test]
async fn custom_x_types_are_relayed_on_a_topic_or_acked_as_ignored() {
    let t = Team::start(TEAM).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    bob.request("Subscribe", json!({"topics": ["ops"]}), "s")
        .await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let ignored = alice
        .request(
            "X-CustomAction",
            json!({"action": "special_operation", "parameters": {}}),
            "x1",
        )
        .await;
    assert_eq!(ignored["data"]["status"], "ignored", "{ignored}");
    let relayed = alice
        .request(
            "X-CustomAction",
            json!({"topic": "ops", "action": "special_operation", "parameters": {}}),
            "x2",
        )
        .await;
    assert_eq!(relayed["data"]["recipients"], 1, "{relayed}");
    let got = bob.recv_type("X-CustomAction").await;
    assert_eq!(got["data"]["action"], "special_operation");
    assert_eq!(got["metadata"], json!({"topic": "ops", "sender": "alice"}));
    t.server.stop().await;
}

#[tokio::test]
async fn binary_frames_are_relayed_and_acknowledged_with_a_checksum() {
    let t = Team::start(TEAM).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    bob.request("Subscribe", json!({"topics": ["media"]}), "s")
        .await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;

    let data = b"\x00\x01binary payload\xff";
    let mut payload = vec![5u8];
    payload.extend_from_slice(b"media");
    payload.extend_from_slice(data);
    let mut frame = vec![0x01];
    frame.extend_from_slice(&u32::try_from(payload.len()).expect("len").to_be_bytes());
    frame.extend_from_slice(&payload);
    alice.send_raw(Message::binary(frame)).await;
    let status = alice.recv().await;
    assert_eq!(status["data"]["status"], "binary_received", "{status}");
    assert_eq!(status["data"]["details"]["size"], payload.len());
    assert_eq!(status["data"]["details"]["type"], "broadcast");
    let digest: String = sha2::Sha256::digest(&payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        status["data"]["details"]["checksum"],
        format!("sha256:{digest}")
    );
    let relayed = bob
        .messages_until("the relayed binary frame", |message| match message {
            Message::Binary(bytes) => Some(bytes),
            _ => None,
        })
        .await;
    let mut expected_payload = vec![5u8];
    expected_payload.extend_from_slice(b"media");
    expected_payload.push(5);
    expected_payload.extend_from_slice(b"alice");
    expected_payload.extend_from_slice(data);
    let mut expected = vec![0x01];
    expected.extend_from_slice(
        &u32::try_from(expected_payload.len())
            .expect("len")
            .to_be_bytes(),
    );
    expected.extend_from_slice(&expected_payload);
    assert_eq!(relayed.as_ref(), expected.as_slice());

    // Direct binary to bob (0x02).
    let mut payload = vec![3u8];
    payload.extend_from_slice(b"bob");
    payload.extend_from_slice(b"hi");
    let mut frame = vec![0x02];
    frame.extend_from_slice(&u32::try_from(payload.len()).expect("len").to_be_bytes());
    frame.extend_from_slice(&payload);
    alice.send_raw(Message::binary(frame)).await;
    let status = alice.recv().await;
    assert_eq!(
        status["data"]["details"]["type"], "direct_message",
        "{status}"
    );

    // A length field that disagrees with the frame, and an unknown type.
    alice
        .send_raw(Message::binary(vec![0x01, 0, 0, 0, 9, 1, b'a']))
        .await;
    let error = alice.recv().await;
    assert_eq!(error["data"]["code"], 400, "{error}");
    alice
        .send_raw(Message::binary(vec![0x09, 0, 0, 0, 0]))
        .await;
    let error = alice.recv().await;
    assert_eq!(error["data"]["code"], 400, "{error}");
    t.server.stop().await;
}

// ----- token expiry and in-band renewal ---------------------------------------------------

fn short_tokens(config: &mut natter::config::Config) {
    config.auth.access_token_ttl_secs = 5;
    config.ws.expiry_warning_secs = 1;
    config.ws.expiry_grace_secs = 1;
}

#[tokio::test]
async fn token_expiring_then_closed_4401_without_renewal() {
    let t = Team::start_with(TEAM, short_tokens).await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    let warning = ws.recv().await;
    assert_eq!(warning["type"], "AuthStatus", "{warning}");
    assert_eq!(warning["data"]["status"], "token_expiring");
    assert_eq!(warning["data"]["refresh_required"], true);
    assert!(warning["data"]["expires_at"].as_i64().is_some());
    assert_eq!(ws.closed().await.0, 4401);
    t.server.stop().await;
}

#[tokio::test]
async fn authenticate_in_band_renews_a_live_connection() {
    let t = Team::start_with(TEAM, short_tokens).await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    let first = ws.recv_type("AuthStatus").await;
    let old_expiry = first["data"]["expires_at"].as_i64().expect("exp");
    let fresh = t
        .server
        .access_token("alice", &Team::password("alice"))
        .await;
    let renewed = ws
        .request("Authenticate", json!({"token": fresh}), "auth")
        .await;
    assert_eq!(renewed["data"]["status"], "authenticated", "{renewed}");
    let new_expiry = renewed["data"]["details"]["expires_at"]
        .as_i64()
        .expect("exp");
    assert!(new_expiry >= old_expiry);
    // The next warning is for the new token, after the old one's close time: still connected.
    let second = ws.recv_type("AuthStatus").await;
    assert_eq!(second["data"]["expires_at"].as_i64(), Some(new_expiry));
    // Someone else's token cannot take the connection over.
    let other = t.server.access_token("bob", &Team::password("bob")).await;
    let refused = ws
        .request("Authenticate", json!({"token": other}), "auth2")
        .await;
    assert_eq!(refused["data"]["code"], 403, "{refused}");
    t.server.stop().await;
}

// ----- rooms ---------------------------------------------------------------------------------

#[tokio::test]
async fn two_clients_chat_in_a_room() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "general", "public").await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let joined = alice
        .request("Join", json!({"room": "general"}), "j1")
        .await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    bob.request("Join", json!({"room": "general"}), "j2").await;

    let ack = alice
        .request(
            "Send",
            json!({"room": "general", "content": "hello bob", "client_msg_id": "c1"}),
            "s1",
        )
        .await;
    assert_eq!(ack["type"], "Ack", "{ack}");
    assert_eq!(ack["data"]["status"], "stored");
    assert_eq!(ack["data"]["seq"], 1);
    let message = bob.recv_type("Message").await;
    assert_eq!(message["data"]["room"], "general");
    assert_eq!(message["data"]["seq"], 1);
    assert_eq!(message["data"]["author"], "alice");
    assert_eq!(message["data"]["content"], "hello bob");

    let reply = bob
        .request(
            "Send",
            json!({"room": "general", "content": "hi alice", "reply_to": 1}),
            "s2",
        )
        .await;
    assert_eq!(reply["data"]["seq"], 2);
    let message = alice
        .recv_where("bob's reply, seq 2", |f| {
            f["type"] == "Message" && f["data"]["seq"] == 2
        })
        .await;
    assert_eq!(message["data"]["reply_to"], 1);
    assert_eq!(message["data"]["author"], "bob");
    t.server.stop().await;
}

#[tokio::test]
async fn two_clients_chat_in_a_direct_room() {
    let t = Team::start(TEAM).await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let joined = alice.request("Join", json!({"room": "@bob"}), "j").await;
    assert_eq!(
        joined["data"]["details"]["room"], "dm:alice:bob",
        "{joined}"
    );
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let joined = bob.request("Join", json!({"room": "@alice"}), "j").await;
    assert_eq!(joined["data"]["details"]["room"], "dm:alice:bob");
    alice
        .request("Send", json!({"room": "@bob", "content": "psst"}), "s")
        .await;
    let message = bob.recv_type("Message").await;
    assert_eq!(message["data"]["content"], "psst");
    assert_eq!(message["data"]["room"], "dm:alice:bob");
    // A third user cannot read it.
    let mut boss_less = Ws::connect(t.addr(), t.token("boss")).await;
    let admin_view = boss_less
        .request("History", json!({"room": "dm:alice:bob"}), "h")
        .await;
    assert_eq!(admin_view["type"], "History", "admins may read");
    t.server.stop().await;
}

#[tokio::test]
async fn private_rooms_refuse_non_members() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "secret", "private").await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    for (kind, data) in [
        ("Join", json!({"room": "secret"})),
        ("Send", json!({"room": "secret", "content": "let me in"})),
        ("History", json!({"room": "secret"})),
    ] {
        let refused = bob.request(kind, data, kind).await;
        assert_eq!(refused["data"]["code"], 403, "{kind}: {refused}");
    }
    let missing = bob.request("Join", json!({"room": "nowhere"}), "n").await;
    assert_eq!(missing["data"]["code"], 404);
    t.server.stop().await;
}

#[tokio::test]
async fn resend_with_the_same_client_msg_id_stores_once() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "general", "public").await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let send = json!({"room": "general", "content": "once", "client_msg_id": "abc"});
    let first = alice.request("Send", send.clone(), "1").await;
    let second = alice.request("Send", send, "2").await;
    assert_eq!(first["data"]["seq"], second["data"]["seq"]);
    assert_eq!(first["data"]["duplicate"], false);
    assert_eq!(second["data"]["duplicate"], true);
    let history = alice
        .request("History", json!({"room": "general"}), "h")
        .await;
    assert_eq!(
        history["data"]["messages"].as_array().map(Vec::len),
        Some(1)
    );
    t.server.stop().await;
}

#[tokio::test]
async fn edit_and_delete_are_for_author_owner_or_admin() {
    let t = Team::start(TEAM).await;
    t.create_room("boss", "general", "public").await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    alice.request("Join", json!({"room": "general"}), "j").await;
    bob.request("Join", json!({"room": "general"}), "j").await;
    alice
        .request("Send", json!({"room": "general", "content": "typo"}), "s")
        .await;
    let denied = bob
        .request(
            "Edit",
            json!({"room": "general", "seq": 1, "content": "hacked"}),
            "e",
        )
        .await;
    assert_eq!(denied["data"]["code"], 403, "{denied}");
    let denied = bob
        .request("Delete", json!({"room": "general", "seq": 1}), "d")
        .await;
    assert_eq!(denied["data"]["code"], 403, "{denied}");
    let edited = alice
        .request(
            "Edit",
            json!({"room": "general", "seq": 1, "content": "fixed"}),
            "e2",
        )
        .await;
    assert_eq!(edited["data"]["status"], "edited", "{edited}");
    let event = bob.recv_type("MessageEdited").await;
    assert_eq!(event["data"]["content"], "fixed");
    assert_eq!(event["data"]["seq"], 1);
    // The room owner (boss, also admin) deletes it.
    let mut boss = Ws::connect(t.addr(), t.token("boss")).await;
    let deleted = boss
        .request("Delete", json!({"room": "general", "seq": 1}), "d2")
        .await;
    assert_eq!(deleted["data"]["status"], "deleted", "{deleted}");
    let event = bob.recv_type("MessageDeleted").await;
    assert_eq!(event["data"]["seq"], 1);
    let again = alice
        .request(
            "Edit",
            json!({"room": "general", "seq": 1, "content": "x"}),
            "e3",
        )
        .await;
    assert_eq!(again["data"]["code"], 404);
    t.server.stop().await;
}

#[tokio::test]
async fn history_pages_typing_and_read_receipts() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "general", "public").await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    alice.request("Join", json!({"room": "general"}), "j").await;
    bob.request("Join", json!({"room": "general"}), "j").await;
    for i in 1..=5 {
        alice
            .request(
                "Send",
                json!({"room": "general", "content": format!("m{i}")}),
                &format!("s{i}"),
            )
            .await;
    }
    let newest = bob
        .request("History", json!({"room": "general", "limit": 2}), "h1")
        .await;
    let seqs: Vec<u64> = newest["data"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    assert_eq!(seqs, vec![4, 5]);
    assert_eq!(newest["data"]["has_more"], true);
    let older = bob
        .request(
            "History",
            json!({"room": "general", "before": 4, "limit": 10}),
            "h2",
        )
        .await;
    assert_eq!(older["data"]["messages"].as_array().map(Vec::len), Some(3));
    assert_eq!(older["data"]["has_more"], false);
    let after = bob
        .request("History", json!({"room": "general", "after": 3}), "h3")
        .await;
    assert_eq!(after["data"]["messages"][0]["seq"], 4);

    bob.send(json!({"type": "Typing", "data": {"room": "general", "is_typing": true}}))
        .await;
    let typing = alice.recv_type("Typing").await;
    assert_eq!(typing["data"]["user"], "bob");
    assert_eq!(typing["data"]["is_typing"], true);

    let read = bob
        .request("Read", json!({"room": "general", "seq": 3}), "r")
        .await;
    assert_eq!(read["data"]["seq"], 3, "{read}");
    let receipt = alice.recv_type("Read").await;
    assert_eq!(receipt["data"]["user"], "bob");
    assert_eq!(receipt["data"]["seq"], 3);
    let rooms = t.get("bob", "/api/v1/rooms").await;
    let general = rooms.json["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|r| r["name"] == "general")
        .cloned()
        .expect("general");
    assert_eq!(general["unread"], 2, "{general}");
    t.server.stop().await;
}

#[tokio::test]
async fn reconnect_with_last_seq_replays_exactly_what_was_missed() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "general", "public").await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    alice.request("Join", json!({"room": "general"}), "j").await;
    for i in 1..=5 {
        alice
            .request(
                "Send",
                json!({"room": "general", "content": format!("m{i}")}),
                &format!("s{i}"),
            )
            .await;
    }
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    bob.send(json!({"type": "Join", "data": {"room": "general", "since": 2}, "id": "j"}))
        .await;
    let mut replayed = Vec::new();
    let status = bob
        .recv_until("the replay and the reply to Join", |frame| {
            match frame["type"].as_str() {
                Some("Message") => replayed.push(frame["data"]["seq"].as_u64().expect("seq")),
                Some("Status") if frame["id"] == "j" => return Some(frame.clone()),
                _ => {}
            }
            None
        })
        .await;
    assert_eq!(replayed, vec![3, 4, 5]);
    assert_eq!(status["data"]["details"]["complete"], true);
    assert_eq!(status["data"]["details"]["replayed"], 3);
    assert_eq!(status["data"]["details"]["last_seq"], 5);
    // Live from here, no duplicates.
    alice
        .request("Send", json!({"room": "general", "content": "m6"}), "s6")
        .await;
    let next = bob.recv_type("Message").await;
    assert_eq!(next["data"]["seq"], 6);
    t.server.stop().await;
}

#[tokio::test]
async fn replay_survives_a_daemon_restart() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "general", "public").await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    for i in 1..=3 {
        alice
            .request(
                "Send",
                json!({"room": "general", "content": format!("before {i}")}),
                &format!("b{i}"),
            )
            .await;
    }
    drop(alice);

    let t = t.restart().await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    for i in 4..=6 {
        let ack = alice
            .request(
                "Send",
                json!({"room": "general", "content": format!("after {i}")}),
                &format!("a{i}"),
            )
            .await;
        assert_eq!(ack["data"]["seq"], i, "sequence continues after restart");
    }
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    bob.send(json!({"type": "Join", "data": {"room": "general", "since": 2}, "id": "j"}))
        .await;
    let mut replayed = Vec::new();
    bob.recv_until("the replay and the reply to Join", |frame| {
        if frame["type"] == "Message" {
            replayed.push((
                frame["data"]["seq"].as_u64().expect("seq"),
                frame["data"]["content"]
                    .as_str()
                    .expect("content")
                    .to_owned(),
            ));
        } else if frame["id"] == "j" {
            assert_eq!(frame["data"]["details"]["complete"], true);
            return Some(());
        }
        None
    })
    .await;
    let expected: Vec<(u64, String)> = vec![
        (3, "before 3".into()),
        (4, "after 4".into()),
        (5, "after 5".into()),
        (6, "after 6".into()),
    ];
    assert_eq!(replayed, expected);
    t.server.stop().await;
}

// ----- limits, slow consumers and revocation ------------------------------------------------

#[tokio::test]
async fn message_rate_limit_then_close_on_sustained_abuse() {
    let t = Team::start_with(TEAM, |c| {
        c.ws.messages_per_minute = 60;
        c.ws.message_burst = 3;
    })
    .await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    for i in 0..3 {
        let ack = ws
            .request(
                "Broadcast",
                json!({"topic": "t", "payload": i}),
                &format!("ok{i}"),
            )
            .await;
        assert_eq!(ack["type"], "Ack", "{ack}");
    }
    let limited = ws
        .request("Broadcast", json!({"topic": "t", "payload": 4}), "limited")
        .await;
    assert_eq!(limited["data"]["code"], 429, "{limited}");
    for i in 0..100 {
        ws.send(json!({"type": "Broadcast", "data": {"topic": "t", "payload": i}}))
            .await;
    }
    assert_eq!(ws.closed().await.0, 4429);
    t.server.stop().await;
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let t = Team::start_with(TEAM, |c| c.ws.max_frame_bytes = 4096).await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    ws.send_raw(Message::text("x".repeat(5000))).await;
    assert_eq!(ws.closed().await.0, 1009);
    t.server.stop().await;
}

#[tokio::test]
async fn subscription_limit_is_enforced() {
    let t = Team::start_with(TEAM, |c| c.ws.max_subscriptions = 2).await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    let ok = ws
        .request("Subscribe", json!({"topics": ["a", "b"]}), "1")
        .await;
    assert_eq!(ok["data"]["details"]["active_subscriptions"], 2);
    let over = ws.request("Subscribe", json!({"topics": ["c"]}), "2").await;
    assert_eq!(over["data"]["code"], 429, "{over}");
    t.server.stop().await;
}

#[tokio::test]
async fn silent_peer_is_closed_after_the_pong_timeout() {
    let t = Team::start_with(TEAM, |c| {
        c.ws.ping_interval_secs = 1;
        c.ws.pong_timeout_secs = 1;
    })
    .await;
    let mut silent = Ws::connect(t.addr(), t.token("alice")).await;
    let mut polite = Ws::connect(t.addr(), t.token("bob")).await;
    // The polite one answers two pings and is still there; the silent one is closed.
    for _ in 0..2 {
        let ping = polite
            .messages_until("a heartbeat Ping", |message| {
                let Message::Text(text) = message else {
                    return None;
                };
                let frame: Value = serde_json::from_str(text.as_str()).expect("json");
                (frame["type"] == "Ping").then_some(frame)
            })
            .await;
        polite
            .send(json!({"type": "Pong", "data": ping["data"]}))
            .await;
    }
    assert_eq!(silent.closed().await.0, 4000);
    let pong = polite.request("Ping", json!({"timestamp": 1}), "x").await;
    assert_eq!(pong["type"], "Pong");
    t.server.stop().await;
}

#[tokio::test]
async fn slow_consumer_is_dropped_and_others_get_everything_in_order() {
    let t = Team::start_with(TEAM, |c| {
        c.ws.outbound_queue = 8;
        c.ws.messages_per_minute = 100_000;
        c.ws.message_burst = 10_000;
    })
    .await;
    let mut slow = Ws::connect(t.addr(), t.token("bob")).await;
    slow.request("Subscribe", json!({"topics": ["firehose"]}), "s")
        .await;
    let mut fast = Ws::connect(t.addr(), t.token("boss")).await;
    fast.request("Subscribe", json!({"topics": ["firehose"]}), "s")
        .await;
    let mut publisher = Ws::connect(t.addr(), t.token("alice")).await;
    let blob = "x".repeat(64 * 1024);
    // Publish until the hub stops counting the slow subscriber (its queue is full and it is
    // being dropped); the fast one must see every message, in order, all along.
    let mut sent = 0u64;
    loop {
        let ack = publisher
            .request(
                "Broadcast",
                json!({"topic": "firehose", "payload": {"i": sent, "blob": blob}}),
                &format!("b{sent}"),
            )
            .await;
        let frame = fast.recv_type("Broadcast").await;
        assert_eq!(frame["data"]["payload"]["i"], sent);
        sent += 1;
        if ack["data"]["recipients"] == 1 {
            break;
        }
        assert!(sent < 5000, "the slow subscriber was never dropped");
    }
    // The slow one's connection ends; if its close frame gets through, it says why.
    if let Some(code) = slow.ends().await {
        assert_eq!(code, 4008);
    }
    // And the publisher and the fast subscriber carry on.
    publisher
        .request(
            "Broadcast",
            json!({"topic": "firehose", "payload": {"i": sent}}),
            "last",
        )
        .await;
    assert_eq!(
        fast.recv_type("Broadcast").await["data"]["payload"]["i"],
        sent
    );
    t.server.stop().await;
}

#[tokio::test]
async fn logout_closes_the_sessions_sockets() {
    let t = Team::start(TEAM).await;
    let login = t.server.login("alice", "alice-password").await;
    let access = login.json["access"].as_str().expect("access").to_owned();
    let mut ws = Ws::connect(t.addr(), &access).await;
    let mut other_session = Ws::connect(t.addr(), t.token("alice")).await;
    let revoke = t
        .server
        .post_json(
            "/api/token/revoke",
            &json!({"refresh": login.json["refresh"]}),
        )
        .await;
    assert_eq!(revoke.status, 200);
    assert_eq!(ws.closed().await.0, 4401);
    // Only that session: the other login's socket stays.
    let pong = other_session.request("Ping", json!({}), "p").await;
    assert_eq!(pong["type"], "Pong");
    // And the revoked token no longer connects.
    let mut again = Ws::open(t.addr(), &format!("/ws?token={access}")).await;
    assert_eq!(again.recv().await["data"]["code"], 401);
    t.server.stop().await;
}

#[tokio::test]
async fn removal_from_a_private_room_cuts_the_live_subscription() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "secret", "private").await;
    t.add_member("alice", "secret", "bob").await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let joined = bob.request("Join", json!({"room": "secret"}), "j").await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");
    let removed = t.delete("alice", "/api/v1/rooms/secret/members/bob").await;
    assert_eq!(removed.status, 200, "{:?}", removed.json);
    let notice = bob
        .recv_where("the removed notice", |f| {
            f["type"] == "Status" && f["data"]["status"] == "removed"
        })
        .await;
    assert_eq!(notice["data"]["details"]["room"], "secret");
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    alice
        .request(
            "Send",
            json!({"room": "secret", "content": "bob is gone"}),
            "s",
        )
        .await;
    // Had bob still been in the room, the message would be queued before this reply.
    bob.send(json!({"type": "Ping", "data": {}, "id": "p"}))
        .await;
    bob.recv_until("the reply to Ping", |frame| {
        assert_ne!(frame["type"], "Message", "removed member got {frame}");
        (frame["id"] == "p").then_some(())
    })
    .await;
    let refused = bob.request("History", json!({"room": "secret"}), "h").await;
    assert_eq!(refused["data"]["code"], 403);
    t.server.stop().await;
}

#[tokio::test]
async fn plain_http_to_the_websocket_endpoint_gets_426() {
    let t = Team::start(TEAM).await;
    let response = t.server.get("/ws", &[]).await;
    assert_eq!(response.status, 426);
    assert_eq!(response.json["code"], "bad_request");
    t.server.stop().await;
}

#[tokio::test]
async fn direct_rooms_have_no_owner_powers() {
    let t = Team::start(TEAM).await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    // alice opens the direct room first, so she is its nominal owner...
    alice
        .request("Send", json!({"room": "@bob", "content": "hi"}), "s")
        .await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let ack = bob
        .request(
            "Send",
            json!({"room": "@alice", "content": "bob's words"}),
            "s",
        )
        .await;
    assert_eq!(ack["data"]["seq"], 2, "{ack}");
    // ...but may not change bob's messages, nor bring in a third person.
    let edit = alice
        .request(
            "Edit",
            json!({"room": "@bob", "seq": 2, "content": "alice's words"}),
            "e",
        )
        .await;
    assert_eq!(edit["data"]["code"], 403, "{edit}");
    let add = t
        .post("alice", "/api/v1/rooms/@bob/members/boss", json!({}))
        .await;
    assert_eq!(add.status, 403, "{:?}", add.json);
    // Reading a direct room that does not exist yet does not create it.
    let none = alice
        .request("History", json!({"room": "@boss"}), "h")
        .await;
    assert_eq!(none["data"]["code"], 404, "{none}");
    t.server.stop().await;
}

#[tokio::test]
async fn subscribe_is_all_or_nothing_at_the_limit() {
    let t = Team::start_with(TEAM, |c| c.ws.max_subscriptions = 2).await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    ws.request("Subscribe", json!({"topics": ["a"]}), "1").await;
    let over = ws
        .request("Subscribe", json!({"topics": ["b", "c"]}), "2")
        .await;
    assert_eq!(over["data"]["code"], 429, "{over}");
    // Re-subscribing what is already there costs nothing; the refused batch left no trace.
    let same = ws
        .request("Subscribe", json!({"topics": ["a", "b"]}), "3")
        .await;
    assert_eq!(same["data"]["details"]["active_subscriptions"], 2, "{same}");
    t.server.stop().await;
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    use futures_util::SinkExt as _;
    let t = Team::start(TEAM).await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    ws.socket
        .send(Message::Close(Some(
            tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: 1000.into(),
                reason: "bye".into(),
            },
        )))
        .await
        .expect("close");
    assert_eq!(
        ws.ends().await,
        Some(1000),
        "the server completes the closing handshake"
    );
    t.server.stop().await;
}

#[tokio::test]
async fn a_full_server_says_so_and_closes_1013() {
    let t = Team::start_with(TEAM, |c| c.ws.max_connections = 1).await;
    let _first = Ws::connect(t.addr(), t.token("alice")).await;
    let mut second = Ws::open(t.addr(), &format!("/ws?token={}", t.token("bob"))).await;
    let error = second.recv().await;
    assert_eq!(error["data"]["code"], 503, "{error}");
    assert!(
        error["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("connection limit")),
        "{error}"
    );
    assert_eq!(second.closed().await.0, 1013);
    t.server.stop().await;
}

#[tokio::test]
async fn disabling_or_removing_a_user_closes_their_sockets() {
    let t = Team::start(TEAM).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let denied = t
        .post("alice", "/api/v1/users/bob/disable", json!({}))
        .await;
    assert_eq!(denied.status, 403, "{:?}", denied.json);

    let disabled = t.post("boss", "/api/v1/users/bob/disable", json!({})).await;
    assert_eq!(disabled.status, 200, "{:?}", disabled.json);
    assert_eq!(disabled.json["disabled"], true);
    assert_eq!(bob.closed().await.0, 4403);
    let mut again = Ws::open(t.addr(), &format!("/ws?token={}", t.token("bob"))).await;
    assert_eq!(again.recv().await["data"]["code"], 403);
    assert_eq!(again.closed().await.0, 4403);
    assert_eq!(t.server.login("bob", "bob-password").await.status, 403);
    let enabled = t.post("boss", "/api/v1/users/bob/enable", json!({})).await;
    assert_eq!(enabled.status, 200, "{:?}", enabled.json);
    assert_eq!(t.server.login("bob", "bob-password").await.status, 200);

    let removed = t.delete("boss", "/api/v1/users/alice").await;
    assert_eq!(removed.status, 200, "{:?}", removed.json);
    assert_eq!(alice.closed().await.0, 4403);
    assert_eq!(t.server.login("alice", "alice-password").await.status, 401);
    t.server.stop().await;
}

/// Seed 004's TypeScript client sends Subscribe and DirectMessage with an id and waits for an
/// Ack carrying it; natter answers with the documented Status / Error and that Ack.
#[tokio::test]
async fn the_seed_example_client_gets_its_acks() {
    let t = Team::start(TEAM).await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    ws.send(
        json!({"type": "Subscribe", "data": {"topics": ["chat.general", "notifications"]},
                   "id": "msg_1", "timestamp": 1_700_000_000_000_i64}),
    )
    .await;
    let status = ws.recv().await;
    assert_eq!(status["data"]["status"], "subscribed", "{status}");
    let ack = ws.recv().await;
    assert_eq!(ack["type"], "Ack", "{ack}");
    assert_eq!(ack["data"]["message_id"], "msg_1");
    ws.send(json!({"type": "DirectMessage", "data": {"target_user": "bob", "payload": {"message": "hi"}},
                   "id": "msg_2", "timestamp": 1_700_000_000_001_i64}))
        .await;
    let error = ws.recv().await;
    assert_eq!(error["data"]["details"]["queued"], true, "{error}");
    let ack = ws.recv().await;
    assert_eq!(ack["type"], "Ack", "{ack}");
    assert_eq!(ack["data"]["message_id"], "msg_2");
    t.server.stop().await;
}

#[tokio::test]
async fn typing_is_rate_limited_and_long_messages_are_refused() {
    let t = Team::start_with(TEAM, |c| {
        c.ws.typing_per_minute = 2;
        c.ws.max_message_chars = 10;
    })
    .await;
    t.create_room("alice", "general", "public").await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    alice.request("Join", json!({"room": "general"}), "j").await;
    bob.request("Join", json!({"room": "general"}), "j").await;
    for _ in 0..5 {
        bob.send(json!({"type": "Typing", "data": {"room": "general", "is_typing": true}}))
            .await;
    }
    let too_long = bob
        .request(
            "Send",
            json!({"room": "general", "content": "x".repeat(11)}),
            "long",
        )
        .await;
    assert_eq!(too_long["data"]["code"], 400, "{too_long}");
    assert!(
        too_long["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("10 characters"))
    );
    // Frames from bob are handled in order: every Typing that got through reaches alice
    // before this message does.
    bob.request("Send", json!({"room": "general", "content": "done"}), "s")
        .await;
    let mut typing = 0;
    alice
        .recv_until("bob's Message after his Typing", |frame| {
            match frame["type"].as_str() {
                Some("Typing") => typing += 1,
                Some("Message") => return Some(()),
                _ => {}
            }
            None
        })
        .await;
    assert_eq!(
        typing, 2,
        "the burst is the per-minute allowance (at most 5)"
    );
    t.server.stop().await;
}

/// Room events reach joined connections only; the one exception tells a user of a room they
/// were added to (or a direct room the other side opened), once per connection.
#[tokio::test]
async fn added_members_hear_of_the_room_without_joining_it() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "secret", "private").await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let mut boss = Ws::connect(t.addr(), t.token("boss")).await;
    // An admin may join a private room without being a member.
    let joined = boss.request("Join", json!({"room": "secret"}), "j").await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");
    for user in ["bob", "boss"] {
        t.add_member("alice", "secret", user).await;
    }
    let told = bob.recv_type("Membership").await;
    assert_eq!(told["data"]["room"], "secret", "{told}");
    assert_eq!(told["data"]["user"], "bob");
    assert_eq!(told["data"]["action"], "joined");
    // boss's connection joined the room: it hears the room's own event, and only that one.
    boss.send(json!({"type": "Ping", "data": {}, "id": "sync"}))
        .await;
    let mut about_boss = 0;
    boss.recv_until("the reply to Ping", |frame| {
        if frame["id"] == "sync" {
            return Some(());
        }
        if frame["type"] == "Membership" && frame["data"]["user"] == "boss" {
            about_boss += 1;
        }
        None
    })
    .await;
    assert_eq!(about_boss, 1);
    // A direct room bob opens reaches boss, who has not joined it.
    let opened = bob.request("Join", json!({"room": "@boss"}), "d").await;
    assert_eq!(opened["data"]["details"]["room"], "dm:bob:boss", "{opened}");
    let told = boss
        .recv_where("the Membership of dm:bob:boss", |f| {
            f["type"] == "Membership" && f["data"]["room"] == "dm:bob:boss"
        })
        .await;
    assert_eq!(told["data"]["user"], "boss", "{told}");
    t.server.stop().await;
}
