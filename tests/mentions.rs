//! Mentions over real sockets and HTTP: recorded by the core for every way of sending (HTTP,
//! native Send, the rooms dialect), counted per room after the read cursor in GET
//! /api/v1/rooms and cleared by reading, listed by GET /api/v1/me/mentions; who counts (room
//! members, never the author, the peer of a direct room), edits, deletes, room deletion and
//! the per-user bound.

use serde_json::{Value, json};

use crate::common::Team;
use crate::wsclient::Ws;

/// boss (admin), alice, bob and carol.
const TEAM: &[(&str, &str)] = &[
    ("boss", "admin"),
    ("alice", "user"),
    ("bob", "user"),
    ("carol", "user"),
];

/// Posts `content` to `room` over HTTP as `user`; panics unless it is stored. The message.
async fn post(t: &Team, user: &str, room: &str, content: &str) -> Value {
    let path = format!("/api/v1/rooms/{}/messages", room.replace('/', "%2F"));
    let response = t.post(user, &path, json!({"content": content})).await;
    assert_eq!(response.status, 201, "{:?}", response.json);
    response.json
}

/// `(unread, mentions)` of `room` in `user`'s room list.
async fn counts(t: &Team, user: &str, room: &str) -> (u64, u64) {
    let rooms = t.get(user, "/api/v1/rooms").await;
    assert_eq!(rooms.status, 200, "{:?}", rooms.json);
    let entry = rooms.json["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|r| r["name"] == room)
        .unwrap_or_else(|| panic!("{room} not in {user}'s rooms: {}", rooms.json))
        .clone();
    (
        entry["unread"].as_u64().expect("unread"),
        entry["mentions"].as_u64().expect("mentions"),
    )
}

/// `user`'s GET /api/v1/me/mentions with `query`; panics unless it is a 200.
async fn mentions_of(t: &Team, user: &str, query: &str) -> Value {
    let response = t.get(user, &format!("/api/v1/me/mentions{query}")).await;
    assert_eq!(response.status, 200, "{:?}", response.json);
    response.json
}

/// The `seq`s of a mentions listing, in its order.
fn seqs(listing: &Value) -> Vec<u64> {
    listing["mentions"]
        .as_array()
        .expect("mentions")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

/// A public room `name` owned by alice, with bob as a member (carol is not one).
async fn alice_and_bob_in(t: &Team, name: &str, visibility: &str) {
    t.create_room("alice", name, visibility).await;
    t.add_member("alice", name, "bob").await;
}

#[tokio::test]
async fn every_way_of_sending_records_mentions_and_reading_clears_them() {
    let t = Team::start(TEAM).await;
    t.create_room("boss", "channel:7", "public").await;
    t.add_member("boss", "channel:7", "alice").await;
    t.add_member("boss", "channel:7", "bob").await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    bob.request("Join", json!({"room": "channel:7"}), "j").await;

    // HTTP: a mention is case-insensitive; the author and a non-member are not mentioned.
    let posted = post(&t, "alice", "channel:7", "hi @Bob, @alice and @carol").await;
    assert_eq!(posted["message"]["mentions"], json!(["bob"]), "{posted}");
    let event = bob.recv_type("Message").await;
    assert_eq!(event["data"]["mentions"], json!(["bob"]), "{event}");
    assert_eq!(counts(&t, "bob", "channel:7").await, (1, 1));
    assert_eq!(counts(&t, "alice", "channel:7").await, (0, 0));
    assert_eq!(counts(&t, "carol", "channel:7").await, (0, 0));
    assert_eq!(mentions_of(&t, "carol", "").await["total"], 0);
    assert_eq!(mentions_of(&t, "alice", "").await["total"], 0);

    // Native Send.
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let ack = alice
        .request(
            "Send",
            json!({"room": "channel:7", "content": "@bob: native"}),
            "s",
        )
        .await;
    assert_eq!(ack["data"]["seq"], 2, "{ack}");
    assert_eq!(counts(&t, "bob", "channel:7").await, (2, 2));

    // The rooms dialect.
    let mut rooms = Ws::open(
        t.addr(),
        &format!("/api/v1/ws/connect?token={}", t.token("alice")),
    )
    .await;
    assert_eq!(rooms.recv().await["type"], "connected");
    rooms
        .send(json!({"type": "join_room", "room": "channel:7"}))
        .await;
    rooms
        .send(json!({"type": "send_message", "room": "channel:7", "data": {"content": "and (@bob) here"}}))
        .await;
    let echoed = rooms
        .recv_where("the rooms dialect's message", |f| f["type"] == "message")
        .await;
    assert_eq!(echoed["data"]["seq"], 3, "{echoed}");
    assert_eq!(counts(&t, "bob", "channel:7").await, (3, 3));
    // A message without a mention counts as unread only.
    post(&t, "alice", "channel:7", "mail me at alice@bob.example").await;
    assert_eq!(counts(&t, "bob", "channel:7").await, (4, 3));

    let listing = mentions_of(&t, "bob", "").await;
    assert_eq!(seqs(&listing), vec![3, 2, 1], "{listing}");
    assert_eq!(listing["total"], 3);
    assert_eq!(listing["next_before"], Value::Null);
    let newest = &listing["mentions"][0];
    assert_eq!(newest["room"], "channel:7");
    assert_eq!(newest["author"], "alice");
    assert_eq!(newest["excerpt"], "and (@bob) here");
    assert_eq!(newest["unread"], true);

    // Reading up to seq 2 leaves one mention; reading all clears them (the listing keeps
    // them, read).
    let read = bob
        .request("Read", json!({"room": "channel:7", "seq": 2}), "r")
        .await;
    assert_eq!(read["data"]["seq"], 2, "{read}");
    assert_eq!(counts(&t, "bob", "channel:7").await, (2, 1));
    bob.request("Read", json!({"room": "channel:7", "seq": 4}), "r2")
        .await;
    assert_eq!(counts(&t, "bob", "channel:7").await, (0, 0));
    let listing = mentions_of(&t, "bob", "").await;
    assert_eq!(listing["mentions"][0]["unread"], false, "{listing}");

    // Pages.
    let page = mentions_of(&t, "bob", "?limit=2").await;
    assert_eq!(seqs(&page), vec![3, 2], "{page}");
    let before = page["next_before"].as_u64().expect("next_before");
    let rest = mentions_of(&t, "bob", &format!("?limit=2&before={before}")).await;
    assert_eq!(seqs(&rest), vec![1], "{rest}");
    for bad in ["?limit=0", "?limit=101", "?before=x"] {
        let response = t.get("bob", &format!("/api/v1/me/mentions{bad}")).await;
        assert_eq!(response.status, 400, "{bad}: {:?}", response.json);
        assert_eq!(response.json["code"], "bad_request", "{:?}", response.json);
    }
    t.server.stop().await;
}

#[tokio::test]
async fn only_members_are_mentioned() {
    let t = Team::start(TEAM).await;
    alice_and_bob_in(&t, "secret", "private").await;
    let posted = post(&t, "alice", "secret", "@carol @bob @nobody").await;
    assert_eq!(posted["message"]["mentions"], json!(["bob"]), "{posted}");
    assert_eq!(mentions_of(&t, "carol", "").await["total"], 0);
    assert_eq!(counts(&t, "bob", "secret").await, (1, 1));
    // A public room's non-member is not mentioned either (the room is not in their list as
    // theirs); once a member, they are.
    alice_and_bob_in(&t, "lobby", "public").await;
    let posted = post(&t, "alice", "lobby", "@carol look").await;
    assert_eq!(posted["message"]["mentions"], json!([]), "{posted}");
    assert_eq!(mentions_of(&t, "carol", "").await["total"], 0);
    t.add_member("alice", "lobby", "carol").await;
    let posted = post(&t, "alice", "lobby", "@carol now").await;
    assert_eq!(posted["message"]["mentions"], json!(["carol"]), "{posted}");
    assert_eq!(counts(&t, "carol", "lobby").await, (2, 1));
    t.server.stop().await;
}

#[tokio::test]
async fn a_direct_message_mentions_its_recipient() {
    let t = Team::start(TEAM).await;
    let posted = post(&t, "alice", "@bob", "lunch?").await;
    assert_eq!(posted["message"]["mentions"], json!(["bob"]), "{posted}");
    assert_eq!(counts(&t, "bob", "dm:alice:bob").await, (1, 1));
    assert_eq!(counts(&t, "alice", "dm:alice:bob").await, (0, 0));
    let listing = mentions_of(&t, "bob", "").await;
    assert_eq!(listing["mentions"][0]["room"], "dm:alice:bob", "{listing}");
    // Naming the recipient too counts once.
    let posted = post(&t, "alice", "@bob", "@bob lunch?").await;
    assert_eq!(posted["message"]["mentions"], json!(["bob"]), "{posted}");
    assert_eq!(counts(&t, "bob", "dm:alice:bob").await, (2, 2));
    t.server.stop().await;
}

#[tokio::test]
async fn edits_re_resolve_mentions_and_deletes_drop_them() {
    let t = Team::start(TEAM).await;
    alice_and_bob_in(&t, "general", "public").await;
    t.add_member("alice", "general", "carol").await;
    let mut carol = Ws::connect(t.addr(), t.token("carol")).await;
    carol.request("Join", json!({"room": "general"}), "j").await;
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    alice
        .request(
            "Send",
            json!({"room": "general", "content": "@bob hi"}),
            "s",
        )
        .await;
    assert_eq!(counts(&t, "bob", "general").await, (1, 1));

    let edited = alice
        .request(
            "Edit",
            json!({"room": "general", "seq": 1, "content": "@carol hi"}),
            "e",
        )
        .await;
    assert_eq!(edited["type"], "Ack", "{edited}");
    let event = carol.recv_type("MessageEdited").await;
    assert_eq!(event["data"]["mentions"], json!(["carol"]), "{event}");
    assert_eq!(counts(&t, "bob", "general").await, (1, 0));
    assert_eq!(mentions_of(&t, "bob", "").await["total"], 0);
    assert_eq!(counts(&t, "carol", "general").await, (1, 1));

    // An admin's edit resolves the text as its author wrote it: alice does not mention
    // herself.
    let mut boss = Ws::connect(t.addr(), t.token("boss")).await;
    let edited = boss
        .request(
            "Edit",
            json!({"room": "general", "seq": 1, "content": "@alice @carol @bob"}),
            "e",
        )
        .await;
    assert_eq!(edited["type"], "Ack", "{edited}");
    let history = t.get("carol", "/api/v1/rooms/general/messages").await;
    assert_eq!(
        history.json["messages"][0]["mentions"],
        json!(["carol", "bob"]),
        "{:?}",
        history.json
    );
    assert_eq!(mentions_of(&t, "alice", "").await["total"], 0);
    assert_eq!(counts(&t, "bob", "general").await, (1, 1));

    let deleted = alice
        .request("Delete", json!({"room": "general", "seq": 1}), "d")
        .await;
    assert_eq!(deleted["data"]["status"], "deleted", "{deleted}");
    assert_eq!(counts(&t, "carol", "general").await, (1, 0));
    assert_eq!(counts(&t, "bob", "general").await, (1, 0));
    assert_eq!(mentions_of(&t, "carol", "").await["total"], 0);
    t.server.stop().await;
}

#[tokio::test]
async fn a_deleted_room_takes_its_mentions() {
    let t = Team::start(TEAM).await;
    alice_and_bob_in(&t, "doomed", "public").await;
    post(&t, "alice", "doomed", "@bob one").await;
    post(&t, "alice", "doomed", "@bob two").await;
    assert_eq!(mentions_of(&t, "bob", "").await["total"], 2);
    let response = t.delete("alice", "/api/v1/rooms/doomed").await;
    assert!(response.status < 300, "{:?}", response.json);
    let listing = mentions_of(&t, "bob", "").await;
    assert_eq!(listing["total"], 0, "{listing}");
    assert_eq!(seqs(&listing), Vec::<u64>::new());
    t.server.stop().await;
}

#[tokio::test]
async fn mentions_are_bounded_per_user_the_oldest_go() {
    let t = Team::start_with(TEAM, |config| config.limits.max_mentions_per_user = 3).await;
    alice_and_bob_in(&t, "busy", "public").await;
    for i in 1..=5 {
        post(&t, "alice", "busy", &format!("@bob number {i}")).await;
    }
    let listing = mentions_of(&t, "bob", "").await;
    assert_eq!(listing["total"], 3, "{listing}");
    assert_eq!(seqs(&listing), vec![5, 4, 3]);
    assert_eq!(counts(&t, "bob", "busy").await, (5, 3));
    // The dropped ones are gone from the index, not only from the listing: deleting the
    // newest leaves two.
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    alice
        .request("Delete", json!({"room": "busy", "seq": 5}), "d")
        .await;
    assert_eq!(mentions_of(&t, "bob", "").await["total"], 2);
    assert_eq!(counts(&t, "bob", "busy").await, (5, 2));
    t.server.stop().await;
}
