//! Rooms and the people in them, over real HTTP and WebSocket: a room's title (its "rename":
//! the name stays its id) and topic set with PATCH /api/v1/rooms/{room}, who may, what is
//! refused, the RoomUpdated event a joined native client hears, title and topic in the
//! listings; and GET /api/v1/profiles: bounded, only what a profile holds, removed users absent.

use serde_json::{Value, json};

use crate::common::{Response, Team, assert_error};
use crate::wsclient::Ws;

/// root (admin), alice (owner of the rooms), bob (a member), carol.
const TEAM: &[(&str, &str)] = &[
    ("root", "admin"),
    ("alice", "user"),
    ("bob", "user"),
    ("carol", "user"),
];

async fn patch(f: &Team, user: &str, path: &str, body: Value) -> Response {
    f.server
        .api("PATCH", path, Some(f.token(user)), Some(&body))
        .await
}

/// The summary of `name` in `GET /api/v1/rooms` as `user` sees it.
async fn listed(f: &Team, user: &str, name: &str) -> Value {
    let rooms = f.get(user, "/api/v1/rooms").await;
    assert_eq!(rooms.status, 200, "{:?}", rooms.json);
    rooms.json["rooms"]
        .as_array()
        .and_then(|rooms| rooms.iter().find(|r| r["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} not listed: {:?}", rooms.json))
}

#[tokio::test]
async fn owners_and_admins_set_title_and_topic_and_joined_clients_hear_it() {
    let f = Team::start(TEAM).await;
    f.create_room("alice", "plans", "public").await;
    f.add_member("bob", "plans", "bob").await;
    let mut bob = Ws::connect(f.addr(), f.token("bob")).await;
    bob.request("Join", json!({"room": "plans"}), "j").await;

    let renamed = patch(
        &f,
        "alice",
        "/api/v1/rooms/plans",
        json!({"title": "  Q3 Plans ", "topic": "Roadmap for the quarter"}),
    )
    .await;
    assert_eq!(renamed.status, 200, "{:?}", renamed.json);
    assert_eq!(renamed.json["name"], "plans", "the name (the id) stays");
    assert_eq!(renamed.json["title"], "Q3 Plans", "trimmed");
    assert_eq!(renamed.json["topic"], "Roadmap for the quarter");

    let event = bob.recv_type("RoomUpdated").await;
    assert_eq!(event["data"]["room"], "plans", "{event}");
    assert_eq!(event["data"]["room_id"], renamed.json["id"], "{event}");
    assert_eq!(event["data"]["title"], "Q3 Plans", "{event}");
    assert_eq!(event["data"]["topic"], "Roadmap for the quarter", "{event}");
    assert_eq!(event["data"]["by"], "alice", "{event}");

    // In the listing, the room's own view and the caller's /me.
    let summary = listed(&f, "carol", "plans").await;
    assert_eq!(summary["title"], "Q3 Plans", "{summary}");
    assert_eq!(summary["topic"], "Roadmap for the quarter", "{summary}");
    let room = f.get("bob", "/api/v1/rooms/plans").await;
    assert_eq!(room.json["title"], "Q3 Plans", "{:?}", room.json);
    assert_eq!(room.json["topic"], "Roadmap for the quarter");
    let me = f.get("bob", "/api/v1/me").await;
    let mine = me.json["rooms"]
        .as_array()
        .and_then(|rooms| rooms.iter().find(|r| r["name"] == "plans"))
        .cloned()
        .expect("plans in /me");
    assert_eq!(mine["title"], "Q3 Plans");

    // An admin changes anyone's room; null clears, an absent field stays.
    let cleared = patch(&f, "root", "/api/v1/rooms/plans", json!({"topic": null})).await;
    assert_eq!(cleared.status, 200, "{:?}", cleared.json);
    assert_eq!(cleared.json["title"], "Q3 Plans");
    assert_eq!(cleared.json["topic"], Value::Null);
    let event = bob.recv_type("RoomUpdated").await;
    assert_eq!(event["data"]["topic"], Value::Null, "{event}");
    assert_eq!(event["data"]["by"], "root", "{event}");
    assert_eq!(listed(&f, "bob", "plans").await["topic"], Value::Null);

    // The same change again changes nothing and emits nothing: the next event bob hears is
    // the one after it.
    let same = patch(
        &f,
        "alice",
        "/api/v1/rooms/plans",
        json!({"title": "Q3 Plans"}),
    )
    .await;
    assert_eq!(same.status, 200, "{:?}", same.json);
    patch(&f, "alice", "/api/v1/rooms/plans", json!({"title": ""})).await;
    let event = bob.recv_type("RoomUpdated").await;
    assert_eq!(
        event["data"]["title"],
        Value::Null,
        "an empty title clears: {event}"
    );

    // Over the native protocol too (the owner's UpdateRoom is acknowledged).
    let mut alice = Ws::connect(f.addr(), f.token("alice")).await;
    let ack = alice
        .request(
            "UpdateRoom",
            json!({"room": "plans", "title": "Plans", "topic": "Weekly"}),
            "u1",
        )
        .await;
    assert_eq!(ack["type"], "Ack", "{ack}");
    assert_eq!(ack["data"]["status"], "updated", "{ack}");
    assert_eq!(ack["data"]["title"], "Plans", "{ack}");
    let event = bob.recv_type("RoomUpdated").await;
    assert_eq!(event["data"]["topic"], "Weekly", "{event}");
    f.server.stop().await;
}

#[tokio::test]
async fn members_and_bad_input_are_refused() {
    let f = Team::start(TEAM).await;
    f.create_room("alice", "plans", "public").await;
    f.create_room("alice", "secret", "private").await;
    f.add_member("bob", "plans", "bob").await;

    let by_member = patch(&f, "bob", "/api/v1/rooms/plans", json!({"title": "Mine"})).await;
    assert_error(&by_member, 403, "forbidden");
    let mut bob = Ws::connect(f.addr(), f.token("bob")).await;
    let refused = bob
        .request("UpdateRoom", json!({"room": "plans", "topic": "x"}), "u")
        .await;
    assert_eq!(refused["type"], "Error", "{refused}");
    assert_eq!(refused["data"]["code"], 403, "{refused}");
    // A private room one may not read is not found (or forbidden), never changed.
    let hidden = patch(&f, "carol", "/api/v1/rooms/secret", json!({"title": "x"})).await;
    assert!(matches!(hidden.status, 403 | 404), "{:?}", hidden.json);
    let missing = patch(&f, "alice", "/api/v1/rooms/nowhere", json!({"title": "x"})).await;
    assert_error(&missing, 404, "not_found");

    let too_long = patch(
        &f,
        "alice",
        "/api/v1/rooms/plans",
        json!({"title": "t".repeat(81)}),
    )
    .await;
    assert_error(&too_long, 400, "bad_request");
    let long_topic = patch(
        &f,
        "alice",
        "/api/v1/rooms/plans",
        json!({"topic": "t".repeat(301)}),
    )
    .await;
    assert_error(&long_topic, 400, "bad_request");
    for body in [
        json!({"title": "two\nlines"}),
        json!({"topic": "bell\u{7}"}),
        json!({"title": "\u{202e}desrever"}),
        json!({"title": 5}),
        json!({"name": "renamed"}),
        json!({}),
    ] {
        let refused = patch(&f, "alice", "/api/v1/rooms/plans", body.clone()).await;
        assert_error(&refused, 400, "bad_request");
    }
    let not_json = f
        .server
        .api("PATCH", "/api/v1/rooms/plans", Some(f.token("alice")), None)
        .await;
    assert_eq!(not_json.status, 415, "{:?}", not_json.json);
    let bad_frame = bob
        .request("UpdateRoom", json!({"room": "plans", "title": 7}), "b")
        .await;
    assert_eq!(bad_frame["type"], "Error", "{bad_frame}");
    assert_eq!(bad_frame["data"]["code"], 400, "{bad_frame}");

    // Nothing of it stuck; the longest allowed title does.
    let summary = listed(&f, "alice", "plans").await;
    assert_eq!(summary["title"], Value::Null, "{summary}");
    assert_eq!(summary["topic"], Value::Null, "{summary}");
    let longest = patch(
        &f,
        "alice",
        "/api/v1/rooms/plans",
        json!({"title": "é".repeat(80), "topic": "ü".repeat(300)}),
    )
    .await;
    assert_eq!(longest.status, 200, "{:?}", longest.json);
    f.server.stop().await;
}

#[tokio::test]
async fn titles_survive_a_restart() {
    let f = Team::start(TEAM).await;
    f.create_room("alice", "plans", "public").await;
    let set = patch(
        &f,
        "alice",
        "/api/v1/rooms/plans",
        json!({"title": "Plans", "topic": "Kept"}),
    )
    .await;
    assert_eq!(set.status, 200, "{:?}", set.json);
    let f = f.restart().await;
    let summary = listed(&f, "bob", "plans").await;
    assert_eq!(summary["title"], "Plans", "{summary}");
    assert_eq!(summary["topic"], "Kept", "{summary}");
    f.server.stop().await;
}

#[tokio::test]
async fn profiles_show_display_names_and_avatars_only() {
    let f = Team::start(TEAM).await;
    let created = f
        .post(
            "root",
            "/api/v1/users",
            json!({"username": "dora", "password": "dora-password-long",
                   "display_name": "Dora Explorer", "avatar_url": "https://a.example/dora.png"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    let created = f
        .post(
            "root",
            "/api/v1/users",
            json!({"username": "eddie", "password": "eddie-password-long"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json);

    let got = f
        .get(
            "carol",
            "/api/v1/profiles?names=dora,eddie,nobody,dora,%20alice",
        )
        .await;
    assert_eq!(got.status, 200, "{:?}", got.json);
    let profiles = got.json["profiles"].as_array().expect("profiles").clone();
    let names: Vec<&str> = profiles
        .iter()
        .map(|p| p["username"].as_str().expect("username"))
        .collect();
    assert_eq!(
        names,
        ["alice", "dora", "eddie"],
        "each once, unknown ones absent"
    );
    let dora = &profiles[1];
    assert_eq!(dora["display_name"], "Dora Explorer");
    assert_eq!(dora["avatar_url"], "https://a.example/dora.png");
    assert_eq!(profiles[2]["avatar_url"], Value::Null);
    for profile in &profiles {
        let keys: Vec<&String> = profile.as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            ["avatar_url", "display_name", "username"],
            "no ids, roles, states or hashes: {profile}"
        );
    }

    // Bounded: 100 names pass, 101 are refused.
    let hundred: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
    let ok = f
        .get(
            "bob",
            &format!("/api/v1/profiles?names={}", hundred.join(",")),
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.json);
    assert_eq!(ok.json["profiles"], json!([]));
    let too_many = f
        .get(
            "bob",
            &format!("/api/v1/profiles?names={},u100", hundred.join(",")),
        )
        .await;
    assert_error(&too_many, 400, "bad_request");
    assert_error(&f.get("bob", "/api/v1/profiles").await, 400, "bad_request");
    let anonymous = f
        .server
        .api("GET", "/api/v1/profiles?names=dora", None, None)
        .await;
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.json);

    // A removed user is absent.
    assert_eq!(f.delete("root", "/api/v1/users/dora").await.status, 200);
    let after = f.get("carol", "/api/v1/profiles?names=dora,eddie").await;
    assert_eq!(after.status, 200, "{:?}", after.json);
    assert_eq!(after.json["profiles"].as_array().map(Vec::len), Some(1));
    assert_eq!(after.json["profiles"][0]["username"], "eddie");
    f.server.stop().await;
}
