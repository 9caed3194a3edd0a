//! The native protocol's pub/sub at `/ws`, over real sockets: every documented example frame
//! (welcome, Ping, Subscribe and Unsubscribe, Broadcast with its metadata), topic wildcards and
//! private topics, the subscription limit, DirectMessage online and offline, notifications,
//! presence, bad frames, custom `X-` types, and binary frames.

use serde_json::{Value, json};
use sha2::Digest as _;
use tokio_tungstenite::tungstenite::Message;

use crate::common::Team;
use crate::wsclient::Ws;

/// boss (admin), alice and bob.
const TEAM: &[(&str, &str)] = &[("boss", "admin"), ("alice", "user"), ("bob", "user")];

// ----- the documented frames: welcome, Ping, Subscribe, Broadcast -------------------------------

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

// ----- direct messages, notifications and presence ----------------------------------------------

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

/// The native protocol's TypeScript example client sends Subscribe and DirectMessage with an id
/// and waits for an Ack carrying it; natter answers with the documented Status / Error and that
/// Ack.
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

// ----- bad frames, custom types and binary frames -----------------------------------------------

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

    // natter's routing extension: the type's high bit says the payload starts with an address.
    let data = b"\x00\x01binary payload\xff";
    let mut payload = vec![5u8];
    payload.extend_from_slice(b"media");
    payload.extend_from_slice(data);
    let mut frame = vec![0x81];
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
    let mut expected = vec![0x81];
    expected.extend_from_slice(
        &u32::try_from(expected_payload.len())
            .expect("len")
            .to_be_bytes(),
    );
    expected.extend_from_slice(&expected_payload);
    assert_eq!(relayed.as_ref(), expected.as_slice());

    // Direct binary to bob (0x02, addressed).
    let mut payload = vec![3u8];
    payload.extend_from_slice(b"bob");
    payload.extend_from_slice(b"hi");
    let mut frame = vec![0x82];
    frame.extend_from_slice(&u32::try_from(payload.len()).expect("len").to_be_bytes());
    frame.extend_from_slice(&payload);
    alice.send_raw(Message::binary(frame)).await;
    let status = alice.recv().await;
    assert_eq!(
        status["data"]["details"]["type"], "direct_message",
        "{status}"
    );

    // A length field that disagrees with the frame, an address that is not there, and an
    // unknown type.
    alice
        .send_raw(Message::binary(vec![0x01, 0, 0, 0, 9, 1, b'a']))
        .await;
    let error = alice.recv().await;
    assert_eq!(error["data"]["code"], 400, "{error}");
    alice
        .send_raw(Message::binary(vec![0x81, 0, 0, 0, 2, 9, b'a']))
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
