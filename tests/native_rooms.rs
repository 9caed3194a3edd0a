//! The native protocol's rooms at `/ws`, over real sockets: Join and Send in public, private
//! and direct rooms, idempotent resends, who may Edit and Delete, History pages, Typing and Read
//! receipts, replay of what a reconnecting client missed (across a restart too), and membership:
//! removal cuts the live room, added members hear of the room.

use serde_json::{Value, json};

use crate::common::Team;
use crate::wsclient::Ws;

/// boss (admin), alice and bob.
const TEAM: &[(&str, &str)] = &[("boss", "admin"), ("alice", "user"), ("bob", "user")];

/// alice and bob connected, in that order, and joined to the room "general", in that order.
async fn alice_and_bob_in_general(t: &Team) -> (Ws, Ws) {
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    alice.request("Join", json!({"room": "general"}), "j").await;
    bob.request("Join", json!({"room": "general"}), "j").await;
    (alice, bob)
}

// ----- Join, Send, Edit, Delete, History, Typing and Read ---------------------------------------

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
    let (mut alice, mut bob) = alice_and_bob_in_general(&t).await;
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
    let (mut alice, mut bob) = alice_and_bob_in_general(&t).await;
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

/// `unread` of `room` in `user`'s room list.
async fn unread_of(t: &Team, user: &str, room: &str) -> Value {
    let rooms = t.get(user, "/api/v1/rooms").await;
    rooms.json["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|r| r["name"] == room)
        .map(|r| r["unread"].clone())
        .unwrap_or_else(|| panic!("{room} not in {user}'s rooms: {}", rooms.json))
}

#[tokio::test]
async fn own_messages_never_count_as_unread() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "general", "public").await;
    let (mut alice, _bob) = alice_and_bob_in_general(&t).await;
    for text in ["one", "two"] {
        let posted = t
            .post(
                "bob",
                "/api/v1/rooms/general/messages",
                json!({"content": text}),
            )
            .await;
        assert_eq!(posted.status, 201, "{:?}", posted.json);
    }
    assert_eq!(unread_of(&t, "bob", "general").await, 0);
    assert_eq!(unread_of(&t, "alice", "general").await, 2);
    // Posting is reading: the author has seen the room up to their own message.
    let ack = alice
        .request("Send", json!({"room": "general", "content": "three"}), "s")
        .await;
    assert_eq!(ack["data"]["seq"], 3, "{ack}");
    assert_eq!(unread_of(&t, "alice", "general").await, 0);
    assert_eq!(unread_of(&t, "bob", "general").await, 1);
    // After a restart (the cursor is stored with the message, not kept in memory).
    drop(alice);
    let t = t.restart().await;
    assert_eq!(unread_of(&t, "alice", "general").await, 0);
    assert_eq!(unread_of(&t, "bob", "general").await, 1);
    t.server.stop().await;
}

#[tokio::test]
async fn a_resume_of_an_empty_room_is_complete() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "quiet", "public").await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let joined = alice
        .request("Join", json!({"room": "quiet", "since": 0}), "j")
        .await;
    assert_eq!(joined["data"]["details"]["replayed"], 0, "{joined}");
    assert_eq!(joined["data"]["details"]["complete"], true, "{joined}");
    t.server.stop().await;
}

#[tokio::test]
async fn reactions_are_stored_counted_and_announced() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "general", "public").await;
    let (mut alice, mut bob) = alice_and_bob_in_general(&t).await;
    let sent = alice
        .request("Send", json!({"room": "general", "content": "lunch?"}), "s")
        .await;
    let seq = sent["data"]["seq"].as_u64().expect("seq");
    let ack = bob
        .request(
            "React",
            json!({"room": "general", "seq": seq, "emoji": "👍"}),
            "r1",
        )
        .await;
    assert_eq!(ack["type"], "Ack", "{ack}");
    assert_eq!(ack["data"]["status"], "reacted", "{ack}");
    assert_eq!(
        ack["data"]["reactions"],
        json!([{"emoji": "👍", "count": 1, "users": ["bob"]}])
    );
    let event = alice.recv_type("Reaction").await;
    assert_eq!(
        event["data"],
        json!({"room": "general", "room_id": event["data"]["room_id"], "seq": seq, "emoji": "👍",
               "user": "bob", "user_id": t.id("bob"), "added": true, "count": 1})
    );
    // The same reaction again changes nothing and announces nothing: the next event alice
    // hears is the HTTP one.
    bob.request(
        "React",
        json!({"room": "general", "seq": seq, "emoji": "👍"}),
        "r2",
    )
    .await;
    let path = format!("/api/v1/rooms/general/messages/{seq}/reactions/%F0%9F%91%8D");
    let put = t
        .server
        .api("PUT", &path, Some(t.token("alice")), None)
        .await;
    assert_eq!(put.status, 200, "{:?}", put.json);
    assert_eq!(put.json["reactions"][0]["count"], 2, "{:?}", put.json);
    let event = alice.recv_type("Reaction").await;
    assert_eq!(
        (
            event["data"]["user"].clone(),
            event["data"]["count"].clone()
        ),
        (json!("alice"), json!(2))
    );
    // History and the HTTP API show the counts; removing one lowers it.
    let removed = bob
        .request(
            "React",
            json!({"room": "general", "seq": seq, "emoji": "👍", "remove": true}),
            "r3",
        )
        .await;
    assert_eq!(removed["data"]["reactions"][0]["users"], json!(["alice"]));
    let event = alice.recv_type("Reaction").await;
    assert_eq!(
        (
            event["data"]["added"].clone(),
            event["data"]["count"].clone()
        ),
        (json!(false), json!(1))
    );
    let history = bob
        .request("History", json!({"room": "general"}), "h")
        .await;
    assert_eq!(
        history["data"]["messages"][0]["reactions"],
        json!([{"emoji": "👍", "count": 1, "users": ["alice"]}])
    );
    let listed = t.get("bob", "/api/v1/rooms/general/messages").await;
    assert_eq!(
        listed.json["messages"][0]["reactions"][0]["count"], 1,
        "{:?}",
        listed.json
    );
    // Bad reactions and missing messages get the protocol's errors.
    let bad = bob
        .request(
            "React",
            json!({"room": "general", "seq": seq, "emoji": "a b"}),
            "bad",
        )
        .await;
    assert_eq!(
        (bad["type"].clone(), bad["data"]["code"].clone()),
        (json!("Error"), json!(400)),
        "{bad}"
    );
    let missing = bob
        .request(
            "React",
            json!({"room": "general", "seq": 99, "emoji": "🎉"}),
            "missing",
        )
        .await;
    assert_eq!(missing["data"]["code"], 404, "{missing}");
    let delete = t.delete("bob", &path).await;
    assert_eq!(delete.status, 200, "{:?}", delete.json);
    // Stored: after a restart the count is there.
    drop((alice, bob));
    let t = t.restart().await;
    let listed = t.get("bob", "/api/v1/rooms/general/messages").await;
    assert_eq!(
        listed.json["messages"][0]["reactions"],
        json!([{"emoji": "👍", "count": 1, "users": ["alice"]}])
    );
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
    let (mut alice, mut bob) = alice_and_bob_in_general(&t).await;
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

// ----- replay on Join ---------------------------------------------------------------------------

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

// ----- membership -------------------------------------------------------------------------------

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
    // boss's connection joined the room: it hears the room's own event, and only that one. The
    // Ping that closes the count goes out once that event is in: a session may answer its own
    // client's frame before deliveries already queued for it (its select is biased towards the
    // socket), so an earlier Ping could overtake the event on a multi-threaded runtime.
    let about = |frame: &serde_json::Value| {
        frame["type"] == "Membership" && frame["data"]["user"] == "boss"
    };
    let mut about_boss = 0;
    boss.recv_until("the Membership of boss in secret", |frame| {
        about(frame).then(|| about_boss += 1)
    })
    .await;
    boss.send(json!({"type": "Ping", "data": {}, "id": "sync"}))
        .await;
    boss.recv_until("the reply to Ping", |frame| {
        if frame["id"] == "sync" {
            return Some(());
        }
        if about(frame) {
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
