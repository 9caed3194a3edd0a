//! The authenticated HTTP API over real HTTP: rooms, history, posting, membership, direct rooms,
//! publishing and notifications, and that the core's rules (ACL, admin-only, idempotency) hold
//! through it.

use serde_json::{Value, json};

use crate::common::{Team, TestServer, assert_error, http};

/// root (admin), alice, bob and carol.
const TEAM: &[(&str, &str)] = &[
    ("root", "admin"),
    ("alice", "user"),
    ("bob", "user"),
    ("carol", "user"),
];

/// Posts a message as `user`; panics unless it is accepted. Returns the response body.
async fn send(f: &Team, user: &str, room_path: &str, body: Value) -> Value {
    let path = format!("/api/v1/rooms/{room_path}/messages");
    let response = f.post(user, &path, body).await;
    assert_eq!(response.status, 201, "{path}: {:?}", response.json);
    response.json
}

/// A page of history as `user`; panics unless it is a 200.
async fn history(f: &Team, user: &str, room_path: &str, query: &str) -> Value {
    let path = format!("/api/v1/rooms/{room_path}/messages{query}");
    let response = f.get(user, &path).await;
    assert_eq!(response.status, 200, "{path}: {:?}", response.json);
    response.json
}

fn room_names(body: &Value) -> Vec<&str> {
    body["rooms"]
        .as_array()
        .expect("rooms array")
        .iter()
        .map(|r| r["name"].as_str().expect("room name"))
        .collect()
}

fn seqs(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .expect("messages array")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test]
async fn the_api_needs_a_valid_bearer_token() {
    let f = Team::start(TEAM).await;
    let server = &f.server;
    for (method, path) in [
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/rooms"),
        ("GET", "/api/v1/rooms/general"),
        ("GET", "/api/v1/rooms/general/messages"),
        ("DELETE", "/api/v1/rooms/general/members/bob"),
        ("GET", "/api/v1/notifications"),
        ("POST", "/api/v1/notifications/1/read"),
    ] {
        let response = server.api(method, path, None, None).await;
        assert_error(&response, 401, "invalid_token");
    }
    // Bodies are not even looked at before the token.
    let body = json!({"content": "hi"});
    let response = server
        .api("POST", "/api/v1/rooms/general/messages", None, Some(&body))
        .await;
    assert_error(&response, 401, "invalid_token");
    let response = server
        .api("POST", "/api/v1/rooms", Some("not-a-jwt"), Some(&body))
        .await;
    assert_error(&response, 401, "invalid_token");
    // Another scheme, or the refresh token, is not an access token.
    let basic = server
        .get("/api/v1/me", &[("authorization", "Basic YWxpY2U6eA==")])
        .await;
    assert_error(&basic, 401, "invalid_token");
    let refresh = server.login("alice", &Team::password("alice")).await.json["refresh"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let response = server.api("GET", "/api/v1/me", Some(&refresh), None).await;
    assert_error(&response, 401, "invalid_token");
    // The scheme is case-insensitive.
    let lower = format!("bearer {}", f.token("alice"));
    let ok = server
        .get("/api/v1/me", &[("authorization", lower.as_str())])
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.json);
    // Unknown routes under the API stay 404, not 401.
    let unknown = server.api("GET", "/api/v1/nothing-here", None, None).await;
    assert_error(&unknown, 404, "not_found");
    f.server.stop().await;
}

#[tokio::test]
async fn me_shows_the_account_and_its_rooms() {
    let f = Team::start(TEAM).await;
    f.create_room_from("alice", json!({"name": "general"}))
        .await;
    let me = f.get("alice", "/api/v1/me").await;
    assert_eq!(me.status, 200, "{:?}", me.json);
    assert_eq!(me.json["username"], "alice");
    assert_eq!(me.json["display_name"], "alice");
    assert_eq!(me.json["role"], "user");
    assert!(me.json["avatar_url"].is_null(), "{:?}", me.json);
    assert!(
        me.json["id"]
            .as_str()
            .is_some_and(|id| uuid_like(id) && me.json.get("password_hash").is_none()),
        "{:?}",
        me.json
    );
    assert_eq!(room_names(&me.json), ["general"]);
    assert_eq!(me.json["rooms"][0]["member"], true);
    let root = f.get("root", "/api/v1/me").await;
    assert_eq!(root.json["role"], "admin");
    assert_ne!(root.json["id"], me.json["id"]);
    f.server.stop().await;
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn rooms_are_created_listed_and_shown() {
    let f = Team::start(TEAM).await;
    let room = f
        .create_room_from("alice", json!({"name": "general"}))
        .await;
    assert!(room["id"].as_u64().is_some_and(|id| id > 0), "{room}");
    assert_eq!(room["name"], "general");
    assert_eq!(room["visibility"], "public");
    assert_eq!(room["owner"], "alice");
    assert_eq!(room["persistent"], true);
    assert_eq!(room["retention_secs"], 0);
    assert_eq!(room["last_seq"], 0);
    assert!(room["created_at"].as_i64().is_some_and(|t| t > 0), "{room}");

    let custom = f
        .create_room_from(
            "bob",
            json!({"name": "ephemeral", "persistent": false, "retention_secs": 3600}),
        )
        .await;
    assert_eq!(custom["persistent"], false);
    assert_eq!(custom["retention_secs"], 3600);
    assert_eq!(custom["owner"], "bob");

    // The core's rules: names are unique and well-formed, dm: is reserved.
    let duplicate = f
        .post("bob", "/api/v1/rooms", json!({"name": "general"}))
        .await;
    assert_error(&duplicate, 409, "conflict");
    for name in ["Has Spaces", "", "dm:alice:bob"] {
        let bad = f.post("bob", "/api/v1/rooms", json!({"name": name})).await;
        assert_error(&bad, 400, "bad_request");
    }
    let bad_visibility = f
        .post(
            "bob",
            "/api/v1/rooms",
            json!({"name": "x", "visibility": "secret"}),
        )
        .await;
    assert_error(&bad_visibility, 400, "bad_request");
    let authorization = format!("Bearer {}", f.token("bob"));
    let not_json = http(
        f.addr(),
        "POST",
        "/api/v1/rooms",
        &[
            ("authorization", authorization.as_str()),
            ("content-type", "text/plain"),
        ],
        b"name=x".to_vec(),
    )
    .await;
    assert_error(&not_json, 415, "unsupported_media_type");

    let list = f.get("bob", "/api/v1/rooms").await;
    assert_eq!(list.status, 200, "{:?}", list.json);
    assert_eq!(room_names(&list.json), ["general", "ephemeral"]);
    let general = &list.json["rooms"][0];
    assert_eq!(general["member"], false, "{general}");
    assert_eq!(general["owner"], "alice");

    let shown = f.get("bob", "/api/v1/rooms/general").await;
    assert_eq!(shown.status, 200, "{:?}", shown.json);
    assert_eq!(shown.json["name"], "general");
    assert_eq!(shown.json["id"], room["id"]);
    assert_eq!(shown.json["owner"], "alice");
    assert_eq!(shown.json["members"], json!(["alice"]));
    // Posting in a public room makes bob a member.
    send(&f, "bob", "general", json!({"content": "hello"})).await;
    let shown = f.get("carol", "/api/v1/rooms/general").await;
    assert_eq!(shown.json["members"], json!(["alice", "bob"]));
    assert_eq!(shown.json["last_seq"], 1);

    let missing = f.get("bob", "/api/v1/rooms/nowhere").await;
    assert_error(&missing, 404, "not_found");
    f.server.stop().await;
}

#[tokio::test]
async fn private_rooms_are_for_members() {
    let f = Team::start(TEAM).await;
    let room = f
        .create_room_from("alice", json!({"name": "secret", "visibility": "private"}))
        .await;
    assert_eq!(room["visibility"], "private");
    send(
        &f,
        "alice",
        "secret",
        json!({"content": "for members only"}),
    )
    .await;

    // Bob is not a member: nothing of the room is his to read or write.
    assert_error(
        &f.get("bob", "/api/v1/rooms/secret").await,
        403,
        "forbidden",
    );
    assert_error(
        &f.get("bob", "/api/v1/rooms/secret/messages").await,
        403,
        "forbidden",
    );
    let post = f
        .post(
            "bob",
            "/api/v1/rooms/secret/messages",
            json!({"content": "let me in"}),
        )
        .await;
    assert_error(&post, 403, "forbidden");
    assert!(!room_names(&f.get("bob", "/api/v1/rooms").await.json).contains(&"secret"));
    // Nor may he add himself.
    let self_add = f
        .post_empty("bob", "/api/v1/rooms/secret/members/bob")
        .await;
    assert_error(&self_add, 403, "forbidden");
    // An admin may read it.
    assert_eq!(f.get("root", "/api/v1/rooms/secret").await.status, 200);

    // The owner adds him.
    let added = f
        .post_empty("alice", "/api/v1/rooms/secret/members/bob")
        .await;
    assert_eq!(added.status, 200, "{:?}", added.json);
    assert_eq!(added.json["room"], "secret");
    assert_eq!(added.json["member"], "bob");
    assert_eq!(added.json["added"], true);
    let shown = f.get("bob", "/api/v1/rooms/secret").await;
    assert_eq!(shown.status, 200, "{:?}", shown.json);
    assert_eq!(shown.json["members"], json!(["alice", "bob"]));
    let list = f.get("bob", "/api/v1/rooms").await;
    assert!(
        room_names(&list.json).contains(&"secret"),
        "{:?}",
        list.json
    );
    let history = history(&f, "bob", "secret", "").await;
    assert_eq!(history["messages"][0]["content"], "for members only");
    send(&f, "bob", "secret", json!({"content": "thanks"})).await;
    // Bob, not the owner, cannot add carol.
    let by_member = f
        .post_empty("bob", "/api/v1/rooms/secret/members/carol")
        .await;
    assert_error(&by_member, 403, "forbidden");
    let unknown_user = f
        .post_empty("alice", "/api/v1/rooms/secret/members/nobody")
        .await;
    assert_error(&unknown_user, 404, "not_found");

    // Removed again, he is out.
    let removed = f.delete("alice", "/api/v1/rooms/secret/members/bob").await;
    assert_eq!(removed.status, 200, "{:?}", removed.json);
    assert_eq!(removed.json["member"], "bob");
    assert_eq!(removed.json["removed"], true);
    assert_error(
        &f.get("bob", "/api/v1/rooms/secret").await,
        403,
        "forbidden",
    );
    // Nor may he post, though he posted a moment ago (the server remembers members).
    let post = f
        .post(
            "bob",
            "/api/v1/rooms/secret/messages",
            json!({"content": "still here?"}),
        )
        .await;
    assert_error(&post, 403, "forbidden");
    let again = f.delete("alice", "/api/v1/rooms/secret/members/bob").await;
    assert_error(&again, 404, "not_found");
    f.server.stop().await;
}

#[tokio::test]
async fn messages_are_posted_and_paged() {
    let f = Team::start(TEAM).await;
    f.create_room_from("alice", json!({"name": "general"}))
        .await;
    for n in 1..=5u64 {
        let sent = send(
            &f,
            "alice",
            "general",
            json!({"content": format!("message {n}")}),
        )
        .await;
        assert_eq!(sent["seq"], n, "{sent}");
        assert_eq!(sent["room"], "general");
        assert_eq!(sent["duplicate"], false);
        assert_eq!(sent["status"], "stored");
        assert_eq!(sent["message"]["seq"], n);
        assert_eq!(sent["message"]["content"], format!("message {n}"));
    }
    let reply = send(
        &f,
        "bob",
        "general",
        json!({"content": "re: 2", "reply_to": 2}),
    )
    .await;
    assert_eq!(reply["seq"], 6);
    let message = &reply["message"];
    assert_eq!(message["room"], "general");
    assert_eq!(message["room_id"], reply["room_id"]);
    assert_eq!(message["author"], "bob");
    assert!(
        message["author_id"].as_str().is_some_and(uuid_like),
        "{message}"
    );
    assert_eq!(message["reply_to"], 2);
    assert_eq!(message["deleted"], false);
    assert!(message["edited_at"].is_null(), "{message}");
    assert!(message["client_msg_id"].is_null(), "{message}");
    let ms = message["created_at_ms"].as_i64().expect("created_at_ms");
    assert_eq!(message["created_at"].as_i64(), Some(ms / 1000));

    // Newest first page, then older pages with `before`.
    let page = history(&f, "carol", "general", "?limit=2").await;
    assert_eq!(page["room"], "general");
    assert_eq!(page["last_seq"], 6);
    assert_eq!(seqs(&page), [5, 6]);
    assert_eq!(page["has_more"], true);
    assert_eq!(
        page["messages"][1], *message,
        "history shows what the post returned"
    );
    let page = history(&f, "carol", "general", "?before=5&limit=2").await;
    assert_eq!(seqs(&page), [3, 4]);
    assert_eq!(page["has_more"], true);
    let page = history(&f, "carol", "general", "?before=3&limit=2").await;
    assert_eq!(seqs(&page), [1, 2]);
    assert_eq!(page["has_more"], false);
    // Forward from a sequence with `after`.
    let page = history(&f, "carol", "general", "?after=1&limit=3").await;
    assert_eq!(seqs(&page), [2, 3, 4]);
    assert_eq!(page["has_more"], true);
    let page = history(&f, "carol", "general", "?after=4").await;
    assert_eq!(seqs(&page), [5, 6]);
    assert_eq!(page["has_more"], false);
    let page = history(&f, "carol", "general", "?after=1&before=4").await;
    assert_eq!(seqs(&page), [2, 3]);
    let page = history(&f, "carol", "general", "").await;
    assert_eq!(seqs(&page), [1, 2, 3, 4, 5, 6]);
    assert_eq!(page["has_more"], false);

    for query in ["?before=abc", "?after=-1", "?limit=1.5", "?limit="] {
        let path = format!("/api/v1/rooms/general/messages{query}");
        assert_error(&f.get("carol", &path).await, 400, "bad_request");
    }
    // The core's message rules hold here too.
    for body in [
        json!({"content": "   "}),
        json!({"content": "x", "reply_to": 99}),
        json!({"content": "x", "client_msg_id": ""}),
        json!({"text": "wrong field"}),
    ] {
        let response = f
            .post("alice", "/api/v1/rooms/general/messages", body.clone())
            .await;
        assert_error(&response, 400, "bad_request");
    }
    let missing = f
        .post(
            "alice",
            "/api/v1/rooms/nowhere/messages",
            json!({"content": "x"}),
        )
        .await;
    assert_error(&missing, 404, "not_found");
    assert_eq!(history(&f, "carol", "general", "").await["last_seq"], 6);
    f.server.stop().await;
}

#[tokio::test]
async fn client_msg_id_makes_posting_idempotent() {
    let f = Team::start(TEAM).await;
    f.create_room_from("alice", json!({"name": "general"}))
        .await;
    let body = json!({"content": "only once", "client_msg_id": "retry-1"});
    let first = send(&f, "alice", "general", body.clone()).await;
    assert_eq!(first["seq"], 1);
    assert_eq!(first["duplicate"], false);
    assert_eq!(first["message"]["client_msg_id"], "retry-1");
    let second = send(&f, "alice", "general", body).await;
    assert_eq!(second["duplicate"], true, "{second}");
    assert_eq!(second["seq"], 1);
    assert_eq!(second["message"], first["message"]);
    let other = send(
        &f,
        "alice",
        "general",
        json!({"content": "another", "client_msg_id": "retry-2"}),
    )
    .await;
    assert_eq!(other["seq"], 2);
    assert_eq!(other["duplicate"], false);
    let page = history(&f, "alice", "general", "").await;
    assert_eq!(seqs(&page), [1, 2]);
    f.server.stop().await;
}

#[tokio::test]
async fn at_username_is_the_direct_room() {
    let f = Team::start(TEAM).await;
    let sent = send(&f, "alice", "@bob", json!({"content": "psst, bob"})).await;
    assert_eq!(sent["room"], "dm:alice:bob");
    assert_eq!(sent["seq"], 1);
    // Bob reaches the same room as @alice, percent-encoded or not, and by its name.
    for path in ["@alice", "%40alice", "dm:alice:bob"] {
        let page = history(&f, "bob", path, "").await;
        assert_eq!(page["room"], "dm:alice:bob", "{path}");
        assert_eq!(page["room_id"], sent["room_id"], "{path}");
        assert_eq!(page["messages"][0]["content"], "psst, bob", "{path}");
    }
    let room = f.get("bob", "/api/v1/rooms/@alice").await;
    assert_eq!(room.status, 200, "{:?}", room.json);
    assert_eq!(room.json["visibility"], "private");
    assert_eq!(room.json["members"], json!(["alice", "bob"]));
    // Nobody else reads it.
    assert_error(
        &f.get("carol", "/api/v1/rooms/dm:alice:bob/messages").await,
        403,
        "forbidden",
    );
    assert_error(
        &f.get("alice", "/api/v1/rooms/@nobody/messages").await,
        404,
        "not_found",
    );
    assert_error(
        &f.get("alice", "/api/v1/rooms/@alice/messages").await,
        400,
        "bad_request",
    );
    f.server.stop().await;
}

#[tokio::test]
async fn room_names_with_slashes_are_percent_encoded() {
    let f = Team::start(TEAM).await;
    let room = f
        .create_room_from("alice", json!({"name": "alice/math"}))
        .await;
    assert_eq!(room["name"], "alice/math");
    f.create_room_from("alice", json!({"name": "team:ops"}))
        .await;
    for path in ["alice%2Fmath", "alice%2fmath"] {
        let shown = f.get("bob", &format!("/api/v1/rooms/{path}")).await;
        assert_eq!(shown.status, 200, "{path}: {:?}", shown.json);
        assert_eq!(shown.json["name"], "alice/math");
        assert_eq!(shown.json["id"], room["id"]);
    }
    let sent = send(&f, "bob", "alice%2Fmath", json!({"content": "2+2=4"})).await;
    assert_eq!(sent["room"], "alice/math");
    let page = history(&f, "alice", "alice%2Fmath", "").await;
    assert_eq!(page["messages"][0]["room"], "alice/math");
    assert_eq!(page["messages"][0]["content"], "2+2=4");
    let added = f
        .post_empty("alice", "/api/v1/rooms/alice%2Fmath/members/carol")
        .await;
    assert_eq!(added.status, 200, "{:?}", added.json);
    assert_eq!(added.json["room"], "alice/math");
    // Unencoded, the slash splits the path: no such route.
    assert_error(
        &f.get("bob", "/api/v1/rooms/alice/math").await,
        404,
        "not_found",
    );
    // ':' needs no encoding.
    let ops = f.get("bob", "/api/v1/rooms/team:ops").await;
    assert_eq!(ops.status, 200, "{:?}", ops.json);
    assert_eq!(ops.json["name"], "team:ops");
    f.server.stop().await;
}

#[tokio::test]
async fn publishing_and_notifying_need_an_admin() {
    let f = Team::start(TEAM).await;
    f.create_room_from("alice", json!({"name": "general"}))
        .await;
    let event = json!({"room": "general", "type": "task.created", "data": {"id": 7}});
    assert_error(
        &f.post("alice", "/api/v1/publish", event.clone()).await,
        403,
        "forbidden",
    );
    let published = f.post("root", "/api/v1/publish", event).await;
    assert_eq!(published.status, 200, "{:?}", published.json);
    // Nobody is connected to the room over WebSocket.
    assert_eq!(published.json, json!({"delivered": 0}));
    let nowhere = f
        .post(
            "root",
            "/api/v1/publish",
            json!({"room": "nowhere", "type": "x", "data": null}),
        )
        .await;
    assert_error(&nowhere, 404, "not_found");
    let untyped = f
        .post(
            "root",
            "/api/v1/publish",
            json!({"room": "general", "type": ""}),
        )
        .await;
    assert_error(&untyped, 400, "bad_request");

    let notification = json!({"username": "bob", "title": "Hi", "message": "Welcome"});
    assert_error(
        &f.post("alice", "/api/v1/notifications", notification.clone())
            .await,
        403,
        "forbidden",
    );
    let created = f.post("root", "/api/v1/notifications", notification).await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    assert!(created.json["id"].as_u64().is_some(), "{:?}", created.json);
    assert_eq!(created.json["title"], "Hi");
    assert_eq!(created.json["message"], "Welcome");
    assert_eq!(created.json["level"], "info");
    assert_eq!(created.json["actions"], json!([]));
    assert!(created.json["category"].is_null());
    assert_eq!(created.json["read"], false);
    // Alice's refused attempt stored nothing.
    let inbox = f.get("bob", "/api/v1/notifications").await;
    assert_eq!(inbox.json["unread"], 1, "{:?}", inbox.json);
    for bad in [
        json!({"username": "bob", "title": "t", "message": "m", "level": "shouting"}),
        json!({"username": "bob", "title": "t", "message": "m", "actions": {"a": 1}}),
        json!({"username": "bob", "title": "t"}),
    ] {
        let response = f.post("root", "/api/v1/notifications", bad.clone()).await;
        assert_error(&response, 400, "bad_request");
    }
    let nobody = f
        .post(
            "root",
            "/api/v1/notifications",
            json!({"username": "nobody", "title": "t", "message": "m"}),
        )
        .await;
    assert_error(&nobody, 404, "not_found");
    f.server.stop().await;
}

#[tokio::test]
async fn notifications_are_listed_counted_and_marked_read() {
    let f = Team::start(TEAM).await;
    let mut ids = Vec::new();
    for (n, level) in ["info", "warning", "error"].iter().enumerate() {
        let created = f
            .post(
                "root",
                "/api/v1/notifications",
                json!({
                    "username": "bob",
                    "title": format!("n{n}"),
                    "message": "body",
                    "level": level,
                    "category": "build",
                    "url": "https://example.org/build/1",
                    "actions": [{"label": "Open"}],
                }),
            )
            .await;
        assert_eq!(created.status, 201, "{:?}", created.json);
        ids.push(created.json["id"].as_u64().expect("id"));
    }
    let inbox = f.get("bob", "/api/v1/notifications").await;
    assert_eq!(inbox.status, 200, "{:?}", inbox.json);
    assert_eq!(inbox.json["unread"], 3);
    let listed = inbox.json["notifications"].as_array().expect("array");
    let titles: Vec<&str> = listed.iter().filter_map(|n| n["title"].as_str()).collect();
    assert_eq!(titles, ["n2", "n1", "n0"], "newest first");
    assert_eq!(listed[0]["level"], "error");
    assert_eq!(listed[0]["category"], "build");
    assert_eq!(listed[0]["url"], "https://example.org/build/1");
    assert_eq!(listed[0]["actions"], json!([{"label": "Open"}]));

    let limited = f.get("bob", "/api/v1/notifications?limit=1").await;
    assert_eq!(
        limited.json["notifications"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        limited.json["unread"], 3,
        "the count is of all, not the page"
    );
    assert_error(
        &f.get("bob", "/api/v1/notifications?limit=many").await,
        400,
        "bad_request",
    );

    // Others neither see nor mark bob's notifications.
    let alice = f.get("alice", "/api/v1/notifications").await;
    assert_eq!(
        alice.json,
        json!({"notifications": [], "unread": 0, "has_more": false}),
        "{:?}",
        alice.json
    );
    let path = format!("/api/v1/notifications/{}/read", ids[0]);
    assert_error(&f.post_empty("alice", &path).await, 404, "not_found");

    let marked = f.post_empty("bob", &path).await;
    assert_eq!(marked.status, 200, "{:?}", marked.json);
    assert_eq!(marked.json["id"], ids[0]);
    assert_eq!(marked.json["read"], true);
    assert_eq!(marked.json["title"], "n0");
    let inbox = f.get("bob", "/api/v1/notifications").await;
    assert_eq!(inbox.json["unread"], 2);
    assert_eq!(inbox.json["notifications"][2]["read"], true);
    assert_eq!(inbox.json["notifications"][0]["read"], false);
    // Marking again is harmless.
    assert_eq!(f.post_empty("bob", &path).await.status, 200);
    assert_eq!(
        f.get("bob", "/api/v1/notifications").await.json["unread"],
        2
    );
    assert_error(
        &f.post_empty("bob", "/api/v1/notifications/999999/read")
            .await,
        404,
        "not_found",
    );
    f.server.stop().await;
}

/// Presence events only report changes, so the room view gives the state a client starts from.
#[tokio::test]
async fn the_room_view_reports_each_members_presence() {
    let server = TestServer::start_with_users(&[
        ("alice", "alice-pass-1", "user"),
        ("bob", "bob-pass-1", "user"),
    ])
    .await;
    let alice = server.access_token("alice", "alice-pass-1").await;
    let bob = server.access_token("bob", "bob-pass-1").await;
    let created = server
        .api(
            "POST",
            "/api/v1/rooms",
            Some(&alice),
            Some(&json!({"name": "general"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    let joined = server
        .api(
            "POST",
            "/api/v1/rooms/general/members/bob",
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(joined.status, 200, "{:?}", joined.json);

    let view = server
        .api("GET", "/api/v1/rooms/general", Some(&alice), None)
        .await;
    assert_eq!(view.json["members"], json!(["alice", "bob"]));
    assert_eq!(
        view.json["presence"],
        json!({"alice": "offline", "bob": "offline"})
    );

    let mut ws = crate::wsclient::Ws::connect(server.addr, &bob).await;
    let view = server
        .api("GET", "/api/v1/rooms/general", Some(&alice), None)
        .await;
    assert_eq!(view.json["presence"]["bob"], "online");
    let ack = ws
        .request("SetStatus", json!({"status": "busy"}), "st")
        .await;
    assert_eq!(ack["type"], "Ack", "{ack}");
    let view = server
        .api("GET", "/api/v1/rooms/general", Some(&alice), None)
        .await;
    assert_eq!(view.json["presence"]["bob"], "busy");

    drop(ws);
    // The server notices the closed socket on its own time: poll for the observable change.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let view = server
            .api("GET", "/api/v1/rooms/general", Some(&alice), None)
            .await;
        if view.json["presence"]["bob"] == "offline" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob still {}",
            view.json["presence"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.stop().await;
}

/// Files uploaded over HTTP become messages with the file in their attachments, shown as such
/// to native clients and in history, and downloadable by the room's readers.
#[tokio::test]
async fn uploaded_files_are_posted_as_attachments() {
    let server = TestServer::start_with_users(&[
        ("alice", "alice-pass-1", "user"),
        ("bob", "bob-pass-1", "user"),
        ("carol", "carol-pass-1", "user"),
    ])
    .await;
    let alice = server.access_token("alice", "alice-pass-1").await;
    let bob = server.access_token("bob", "bob-pass-1").await;
    let carol = server.access_token("carol", "carol-pass-1").await;
    let created = server
        .api(
            "POST",
            "/api/v1/rooms",
            Some(&alice),
            Some(&json!({"name": "team", "visibility": "private"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    let added = server
        .api("POST", "/api/v1/rooms/team/members/bob", Some(&alice), None)
        .await;
    assert_eq!(added.status, 200);
    let mut watcher = crate::wsclient::Ws::connect(server.addr, &bob).await;
    watcher.request("Join", json!({"room": "team"}), "j").await;

    let upload = |token: String, path: &'static str, body: &'static [u8], kind: &'static str| {
        let addr = server.addr;
        async move {
            let authorization = format!("Bearer {token}");
            http(
                addr,
                "POST",
                path,
                &[("authorization", &authorization), ("content-type", kind)],
                body.to_vec(),
            )
            .await
        }
    };
    let posted = upload(
        alice.clone(),
        "/api/v1/rooms/team/files?name=notes%20%3Cb%3E.txt",
        b"line one\nline two\n",
        "text/plain",
    )
    .await;
    assert_eq!(posted.status, 201, "{:?}", posted.json);
    let attachment = &posted.json["message"]["attachments"][0];
    assert_eq!(
        attachment["file_name"], "notes .txt",
        "markup is stripped from the name"
    );
    assert_eq!(attachment["file_size"], 18);
    assert_eq!(attachment["file_type"], "text/plain");
    let url = attachment["url"].as_str().expect("url").to_owned();

    let live = watcher.recv_type("Message").await;
    assert_eq!(
        live["data"]["attachments"],
        posted.json["message"]["attachments"]
    );
    assert_eq!(live["data"]["content"], "notes .txt");
    let history = server
        .api("GET", "/api/v1/rooms/team/messages", Some(&bob), None)
        .await;
    assert_eq!(history.json["messages"][0]["attachments"][0]["url"], url);
    let plain = server
        .api(
            "POST",
            "/api/v1/rooms/team/messages",
            Some(&bob),
            Some(&json!({"content": "thanks"})),
        )
        .await;
    assert_eq!(plain.json["message"]["attachments"], json!([]));

    let download = server
        .get(&url, &[("authorization", &format!("Bearer {bob}"))])
        .await;
    assert_eq!(download.status, 200);
    assert_eq!(download.json, json!("line one\nline two\n"));
    let outsider = server
        .get(&url, &[("authorization", &format!("Bearer {carol}"))])
        .await;
    // A file of a room one may not read is answered like a missing one.
    assert_eq!(outsider.status, 404);

    // Refusals: a non-member of a private room, no name, too large, no token.
    let refused = upload(
        carol,
        "/api/v1/rooms/team/files?name=x.txt",
        b"x",
        "text/plain",
    )
    .await;
    assert_eq!(refused.status, 403, "{:?}", refused.json);
    let nameless = upload(
        alice.clone(),
        "/api/v1/rooms/team/files",
        b"x",
        "text/plain",
    )
    .await;
    assert_eq!(nameless.status, 400, "{:?}", nameless.json);
    let anonymous = http(
        server.addr,
        "POST",
        "/api/v1/rooms/team/files?name=x",
        &[],
        b"x".to_vec(),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    server.stop().await;

    let small = TestServer::start_with(|config| config.server.max_upload_bytes = 8).await;
    let admin = small.admin_tokens().await;
    let admin = admin["access"].as_str().expect("access").to_owned();
    let room = small
        .api(
            "POST",
            "/api/v1/rooms",
            Some(&admin),
            Some(&json!({"name": "r"})),
        )
        .await;
    assert_eq!(room.status, 201);
    let big = http(
        small.addr,
        "POST",
        "/api/v1/rooms/r/files?name=big.bin",
        &[("authorization", &format!("Bearer {admin}"))],
        vec![7u8; 9],
    )
    .await;
    assert_eq!(big.status, 413, "{:?}", big.json);
    assert_eq!(big.json["code"], "payload_too_large");
    small.stop().await;
}

#[tokio::test]
async fn owners_and_admins_delete_rooms() {
    let f = Team::start(TEAM).await;
    f.create_room("alice", "plans", "public").await;
    f.create_room("alice", "secret", "private").await;
    send(&f, "alice", "plans", json!({"content": "draft"})).await;
    assert_eq!(
        f.post_empty("bob", "/api/v1/rooms/plans/members/bob")
            .await
            .status,
        200
    );
    let mut listener = crate::wsclient::Ws::connect(f.addr(), f.token("bob")).await;
    listener
        .request("Join", json!({"room": "plans"}), "j")
        .await;

    let by_member = f.delete("bob", "/api/v1/rooms/plans").await;
    assert_error(&by_member, 403, "forbidden");
    // Nor a private room one may not read.
    let hidden = f.delete("bob", "/api/v1/rooms/secret").await;
    assert!(matches!(hidden.status, 403 | 404), "{:?}", hidden.json);
    assert_eq!(f.get("alice", "/api/v1/rooms/secret").await.status, 200);

    let deleted = f.delete("alice", "/api/v1/rooms/plans").await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.json);
    assert_eq!(deleted.json["deleted"], true);
    assert_eq!(deleted.json["messages"], 1);
    let closed = listener.recv_type("Status").await;
    assert_eq!(closed["data"]["status"], "removed", "{closed}");
    assert_eq!(f.get("alice", "/api/v1/rooms/plans").await.status, 404);
    assert!(!room_names(&f.get("bob", "/api/v1/rooms").await.json).contains(&"plans"));
    // An admin deletes anyone's room.
    assert_eq!(f.delete("root", "/api/v1/rooms/secret").await.status, 200);
    f.server.stop().await;
}
