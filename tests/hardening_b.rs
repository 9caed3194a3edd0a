//! Authorization hardening (issue 19, part B): a role change reaches live connections, the login
//! throttle counts guesses still being hashed, service token scopes hold on every edge, names the
//! dialects derive cannot be squatted, reserved user topics and dotted usernames, by-id lookups
//! that do not reveal private rooms, FastChat's OPEN_CHAT read check, and `sessions kick` of a
//! session without a connection.

use std::path::Path;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use serde_json::{Value, json};

use crate::common::{Team, http, jwt_claims, login};
use crate::wsclient::Ws;

/// Runs the natter binary on `dir` (through the daemon's control socket) without blocking the
/// runtime that serves it.
async fn natter(dir: &Path, args: &[&str]) -> (i32, String, String) {
    crate::common::natter_on(dir, args, None).await
}

/// An admin command with --json; panics unless it exits 0.
async fn natter_json(dir: &Path, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let (code, out, err) = natter(dir, &with_json).await;
    assert_eq!(code, 0, "natter {args:?}: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("natter {args:?}: {e}: {out}"))
}

/// `natter token issue USER --scope SCOPES`: the token and its id.
async fn service_token(team: &Team, user: &str, scopes: &str) -> (String, String) {
    let issued = natter_json(
        &team.server.data_dir,
        &["token", "issue", user, "--scope", scopes],
    )
    .await;
    (
        issued["token"].as_str().expect("token").to_owned(),
        issued["id"].as_str().expect("id").to_owned(),
    )
}

// ----- BUG-1: a role change reaches live connections -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demotion_closes_the_users_connections_and_ends_their_admin_powers() {
    let t = Team::start(&[("boss", "admin"), ("carol", "admin"), ("alice", "user")]).await;
    let dir = t.server.data_dir.clone();
    t.create_room("alice", "hr", "private").await;
    let posted = t
        .post(
            "alice",
            "/api/v1/rooms/hr/messages",
            json!({"content": "salary list"}),
        )
        .await;
    assert_eq!(posted.status, 201, "{:?}", posted.json);
    let (service, service_id) = service_token(&t, "carol", "chat,admin").await;

    // Before: carol's login socket and her admin-scoped service token's socket are admins.
    let mut login_ws = Ws::connect(t.addr(), t.token("carol")).await;
    let mut service_ws = Ws::connect(t.addr(), &service).await;
    for ws in [&mut login_ws, &mut service_ws] {
        let history = ws.request("History", json!({"room": "hr"}), "h0").await;
        assert_eq!(history["type"], "History", "{history}");
        let sub = ws
            .request("Subscribe", json!({"topics": ["admin.audit"]}), "s0")
            .await;
        assert_eq!(sub["data"]["status"], "subscribed", "{sub}");
    }

    let demoted = natter_json(&dir, &["user", "set-role", "carol", "user"]).await;
    assert_eq!(demoted["role"], "user", "{demoted}");
    // An admin's audit broadcast after the demotion reaches neither socket: both were told to
    // close before it was sent, with 4401 "role changed" (their sessions stay: reconnecting
    // takes the new role).
    let mut boss = Ws::connect(t.addr(), t.token("boss")).await;
    let audit = boss
        .request(
            "Broadcast",
            json!({"topic": "admin.audit", "payload": "after"}),
            "b",
        )
        .await;
    assert_eq!(audit["type"], "Ack", "{audit}");
    for ws in [&mut login_ws, &mut service_ws] {
        let (frames, code) = ws.frames_until_close().await;
        assert_eq!(code, 4401, "{frames:?}");
        assert!(
            frames.iter().all(|f| f["type"] != "Broadcast"),
            "{frames:?}"
        );
    }

    // Reconnected with the same tokens: a user now, on both.
    for token in [t.token("carol"), service.as_str()] {
        let mut ws = Ws::connect(t.addr(), token).await;
        let history = ws.request("History", json!({"room": "hr"}), "h1").await;
        assert_eq!(history["data"]["code"], 403, "{history}");
        let broadcast = ws
            .request(
                "Broadcast",
                json!({"topic": "user.alice", "payload": "phish"}),
                "b1",
            )
            .await;
        assert_eq!(broadcast["data"]["code"], 403, "{broadcast}");
        let sub = ws
            .request("Subscribe", json!({"topics": ["admin.audit"]}), "s1")
            .await;
        assert_eq!(sub["data"]["code"], 403, "{sub}");
    }
    // The service token's admin scope follows its owner's role over HTTP too.
    let users = t
        .server
        .api("GET", "/api/v1/users", Some(&service), None)
        .await;
    assert_eq!(users.status, 403, "{:?}", users.json);

    // A promotion closes them as well (they reconnect as admins), and revoking the service
    // token closes its connection.
    let mut ws = Ws::connect(t.addr(), &service).await;
    natter_json(&dir, &["user", "set-role", "carol", "admin"]).await;
    assert_eq!(ws.closed().await.0, 4401);
    let mut ws = Ws::connect(t.addr(), &service).await;
    let history = ws.request("History", json!({"room": "hr"}), "h2").await;
    assert_eq!(history["type"], "History", "{history}");
    let revoked = natter_json(&dir, &["token", "revoke", &service_id]).await;
    assert_eq!(revoked["revoked"], true, "{revoked}");
    assert_eq!(ws.closed().await.0, 4401);
    // Setting the role a user has already changes nothing and closes nothing.
    let mut ws = Ws::connect(t.addr(), t.token("carol")).await;
    natter_json(&dir, &["user", "set-role", "carol", "admin"]).await;
    let me = ws
        .request("Subscribe", json!({"topics": ["x"]}), "still")
        .await;
    assert_eq!(me["data"]["status"], "subscribed", "{me}");
    t.server.stop().await;
}

// ----- BUG-5: concurrent guesses and the login throttle --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_guesses_gets_at_most_the_failure_limit_evaluated() {
    const GUESSES: usize = 50;
    let t = Team::start_with(&[("alice", "user")], |c| c.auth.login_max_failures = 5).await;
    let addr = t.addr();
    let mut burst: FuturesUnordered<_> = (0..GUESSES)
        .map(|i| {
            tokio::spawn(async move { login(addr, "alice", &format!("wrong-{i}")).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    // Once one guess is refused the budget is spent (every guess reserved so far is wrong):
    // the right password, sent now while the rest of the burst is still running, is refused.
    while let Some(status) = burst.next().await {
        let status = status.expect("login task");
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    let right = login(addr, "alice", &Team::password("alice")).await;
    assert_eq!(right.status, 429, "{:?}", right.json);
    while let Some(status) = burst.next().await {
        statuses.push(status.expect("login task"));
    }
    let evaluated = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        evaluated <= 5,
        "{evaluated} guesses evaluated: {statuses:?}"
    );
    assert_eq!(evaluated + refused, GUESSES, "{statuses:?}");
    t.server.stop().await;
}

// ----- BUG-6: scopes --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_only_token_cannot_chat_on_any_endpoint() {
    let t = Team::start(&[("boss", "admin"), ("alice", "user"), ("bob", "user")]).await;
    t.create_room("alice", "alice/math", "public").await;
    t.add_member("alice", "alice/math", "bob").await;
    t.create_room("boss", "room", "public").await;
    let (publish, _) = service_token(&t, "bob", "publish").await;

    // Every WebSocket endpoint refuses it at connect, in its dialect's refusal shape, with 4403.
    for (path, shape) in [
        ("/ws", "native"),
        ("/api/v1/ws/connect", "rooms"),
        ("/ws/chat/alice/math/", "edusphere"),
        ("/ws/chat/room/", "kibray"),
        ("/ws/notifications/", "kibray"),
        ("/ws/status/", "kibray"),
    ] {
        let mut ws = Ws::open(t.addr(), &format!("{path}?token={publish}")).await;
        let (frames, code) = ws.frames_until_close().await;
        assert_eq!(code, 4403, "{path}: {frames:?}");
        assert_eq!(frames.len(), 1, "{path}: {frames:?}");
        let frame = &frames[0];
        let message = match shape {
            "native" => {
                assert_eq!(frame["type"], "Error", "{frame}");
                assert_eq!(frame["data"]["code"], 403, "{frame}");
                &frame["data"]["message"]
            }
            "rooms" => {
                assert_eq!(frame["type"], "error", "{frame}");
                &frame["data"]["error"]
            }
            "edusphere" => &frame["error"],
            _ => {
                assert_eq!(frame["type"], "error", "{frame}");
                assert_eq!(frame["code"], "PERMISSION_DENIED", "{frame}");
                &frame["error"]
            }
        };
        assert!(
            message.as_str().is_some_and(|m| m.contains("chat")),
            "{path}: {frame}"
        );
    }

    // The chat API refuses it too ...
    for (method, path, body) in [
        ("POST", "/api/v1/rooms", Some(json!({"name": "bobs-room"}))),
        ("GET", "/api/v1/rooms", None),
        ("GET", "/api/v1/me", None),
        ("GET", "/api/v1/notifications", None),
        ("POST", "/api/v1/notifications/1/read", None),
        ("GET", "/api/v1/rooms/room/messages", None),
        ("GET", "/api/v1/files/1", None),
    ] {
        let response = t
            .server
            .api(method, path, Some(&publish), body.as_ref())
            .await;
        assert_eq!(response.status, 403, "{method} {path}: {:?}", response.json);
    }
    // ... while publishing works.
    let published = t
        .server
        .api(
            "POST",
            "/api/v1/publish",
            Some(&publish),
            Some(&json!({"room": "room", "type": "build.done", "data": {}})),
        )
        .await;
    assert_eq!(published.status, 200, "{:?}", published.json);

    // A chat connection cannot take a publish-only token in an in-band renewal.
    let (alice_publish, _) = service_token(&t, "alice", "publish").await;
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    let renewed = ws
        .request("Authenticate", json!({"token": alice_publish}), "a")
        .await;
    assert_eq!(renewed["data"]["code"], 403, "{renewed}");
    let still = ws.request("History", json!({"room": "room"}), "h").await;
    assert_eq!(still["type"], "History", "{still}");

    // A chat-scoped token chats.
    let (chat, _) = service_token(&t, "bob", "chat").await;
    let mut ws = Ws::connect(t.addr(), &chat).await;
    let joined = ws.request("Join", json!({"room": "room"}), "j").await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");
    let listed = t
        .server
        .api("GET", "/api/v1/rooms", Some(&chat), None)
        .await;
    assert_eq!(listed.status, 200, "{:?}", listed.json);
    t.server.stop().await;
}

// ----- BUG-9: names the dialects derive -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_and_other_users_room_names_cannot_be_squatted() {
    let t = Team::start(&[("boss", "admin"), ("alice", "user"), ("mallory", "user")]).await;
    let dir = t.server.data_dir.clone();
    let create = |name: &str| json!({"name": name, "visibility": "public"});
    for name in ["channel:456", "project:1", "task:2", "alice/math", "boss/x"] {
        let squat = t.post("mallory", "/api/v1/rooms", create(name)).await;
        assert_eq!(squat.status, 403, "{name}: {:?}", squat.json);
    }
    // The backend (an admin, or an admin's service token with chat and admin) creates them.
    t.create_room("boss", "channel:456", "private").await;
    let (backend, _) = service_token(&t, "boss", "chat,admin").await;
    let made = t
        .server
        .api(
            "POST",
            "/api/v1/rooms",
            Some(&backend),
            Some(&create("project:7")),
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.json);
    let (chat_only, _) = service_token(&t, "boss", "chat").await;
    let refused = t
        .server
        .api(
            "POST",
            "/api/v1/rooms",
            Some(&chat_only),
            Some(&create("project:8")),
        )
        .await;
    assert_eq!(refused.status, 403, "{:?}", refused.json);
    // A host creates its own EduSphere rooms; an admin may create anyone's.
    t.create_room("alice", "alice/math", "public").await;
    t.create_room("boss", "mallory/office", "public").await;

    // `room create` on an existing room: identical is unchanged, anything else a failure.
    let (code, out, err) = natter(
        &dir,
        &[
            "room",
            "create",
            "channel:456",
            "--private",
            "--owner",
            "boss",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("unchanged"), "{out}");
    let (code, out, err) =
        natter(&dir, &["room", "create", "channel:456", "--owner", "boss"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("public") && err.contains("private"), "{err}");
    let (code, out, err) = natter(
        &dir,
        &["room", "create", "alice/math", "--owner", "mallory"],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("owner alice"), "{err}");
    let shown = natter_json(&dir, &["room", "show", "alice/math"]).await;
    assert_eq!(shown["owner"], "alice", "nothing changed: {shown}");
    t.server.stop().await;
}

// ----- BUG-11: reserved user topics and dotted usernames --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotted_usernames_own_exactly_their_own_user_topics() {
    let t = Team::start(&[("boss", "admin"), ("bob", "user"), ("bob.x", "user")]).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let mut bob_x = Ws::connect(t.addr(), t.token("bob.x")).await;
    let subscribe = async |ws: &mut Ws, topic: &str| {
        ws.request("Subscribe", json!({"topics": [topic]}), topic)
            .await
    };
    // bob owns user.bob and everything below it, user.bob.x.inbox included.
    assert_eq!(
        subscribe(&mut bob, "user.bob.x.inbox").await["data"]["status"],
        "subscribed"
    );
    assert_eq!(
        subscribe(&mut bob_x, "user.bob.x.inbox").await["data"]["code"],
        403
    );
    // bob.x's segment is bob:x.
    assert_eq!(
        subscribe(&mut bob_x, "user.bob:x.inbox").await["data"]["status"],
        "subscribed"
    );
    assert_eq!(
        subscribe(&mut bob, "user.bob:x.inbox").await["data"]["code"],
        403
    );
    let mut boss = Ws::connect(t.addr(), t.token("boss")).await;
    for (topic, payload) in [
        ("user.bob:x.inbox", "for bob.x"),
        ("user.bob.x.inbox", "for bob"),
    ] {
        let sent = boss
            .request(
                "Broadcast",
                json!({"topic": topic, "payload": payload}),
                topic,
            )
            .await;
        assert_eq!(sent["data"]["recipients"], 1, "{topic}: {sent}");
    }
    assert_eq!(
        bob_x.recv_type("Broadcast").await["data"]["payload"],
        "for bob.x"
    );
    assert_eq!(
        bob.recv_type("Broadcast").await["data"]["payload"],
        "for bob"
    );
    t.server.stop().await;
}

// ----- BUG-13: by-id lookups of private rooms -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_rooms_found_by_id_answer_like_missing_ones() {
    let t = Team::start(&[("boss", "admin"), ("alice", "user"), ("mallory", "user")]).await;
    let secret = t.create_room("alice", "board-private", "private").await;
    let authorization = format!("Bearer {}", t.token("alice"));
    let uploaded = http(
        t.addr(),
        "POST",
        "/api/v1/rooms/board-private/files?name=plan.txt",
        &[
            ("authorization", authorization.as_str()),
            ("content-type", "text/plain"),
        ],
        b"the plan".to_vec(),
    )
    .await;
    assert_eq!(uploaded.status, 201, "{:?}", uploaded.json);
    let file = uploaded.json["message"]["attachments"][0]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("file id in {:?}", uploaded.json));
    let missing = secret + 1000;

    // Kibray's /ws/status/ takes rooms by id: the private one and a missing one read the same.
    let mut status = Ws::open(
        t.addr(),
        &format!("/ws/status/?token={}", t.token("mallory")),
    )
    .await;
    let mut answers = Vec::new();
    for id in [secret, missing] {
        status
            .send(json!({"type": "typing", "channel_id": id, "is_typing": true}))
            .await;
        let error = status.recv_type("error").await;
        answers.push(error.to_string().replace(&id.to_string(), "N"));
    }
    assert_eq!(answers[0], answers[1]);
    assert!(!answers[0].contains("board-private"), "{}", answers[0]);

    // Files by id: a private room's file and a missing file read the same.
    let mut bodies = Vec::new();
    for id in [file, file + 1000] {
        let response = t.get("mallory", &format!("/api/v1/files/{id}")).await;
        assert_eq!(response.status, 404, "{:?}", response.json);
        bodies.push(response.json.to_string().replace(&id.to_string(), "N"));
    }
    assert_eq!(bodies[0], bodies[1]);
    assert!(!bodies[0].contains("board-private"), "{}", bodies[0]);

    // Refusals by name do not repeat the name either.
    let mut native = Ws::connect(t.addr(), t.token("mallory")).await;
    let refused = native
        .request("Join", json!({"room": "board-private"}), "j")
        .await;
    assert_eq!(refused["data"]["code"], 403, "{refused}");
    assert!(!refused.to_string().contains("board-private"), "{refused}");
    t.server.stop().await;
}

// ----- BUG-14: FastChat OPEN_CHAT and the direct room's members -------------------------------

/// A FastChat connection with a token: the native welcome, HELLO, HELLO_ACK and PRESENCE.
async fn fastchat(t: &Team, name: &str) -> Ws {
    let mut ws = Ws::connect(t.addr(), t.token(name)).await;
    ws.send(json!({"type": "HELLO", "data": {"user_id": t.id(name), "display_name": name}}))
        .await;
    assert_eq!(ws.recv().await["type"], "HELLO_ACK");
    assert_eq!(ws.recv().await["type"], "PRESENCE");
    ws
}

/// PING, and the PONG must be the next frame of `ws` other than a roster update.
async fn nothing_but_presence_pending(ws: &mut Ws) {
    ws.send(json!({"type": "PING", "data": {}})).await;
    loop {
        let frame = ws.recv().await;
        match frame["type"].as_str() {
            Some("PONG") => return,
            Some("PRESENCE") => {}
            _ => panic!("expected nothing before the PONG: {frame}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_chat_needs_the_direct_rooms_read_right() {
    let t = Team::start(&[("boss", "admin"), ("alice", "user"), ("bob", "user")]).await;
    // alice opens the direct room with bob, then an admin removes her from it.
    let mut native = Ws::connect(t.addr(), t.token("alice")).await;
    let joined = native.request("Join", json!({"room": "@bob"}), "j").await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");
    drop(native);
    let removed = t
        .delete("boss", "/api/v1/rooms/dm:alice:bob/members/alice")
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.json);

    let mut alice = fastchat(&t, "alice").await;
    let mut bob = fastchat(&t, "bob").await;
    alice
        .send(
            json!({"type": "OPEN_CHAT", "data": {"target_user_id": t.id("bob"),
                     "target_display_name": "bob"}}),
        )
        .await;
    let refused = alice
        .recv_where("OPEN_CHAT's answer", |f| f["type"] != "PRESENCE")
        .await;
    assert_eq!(refused["type"], "ERROR", "{refused}");
    assert_eq!(refused["data"]["code"], "UNAUTHORIZED", "{refused}");
    // bob, still a member, opens it on his side: alice's connection is not made part of it,
    // and his typing does not reach her.
    bob.send(
        json!({"type": "OPEN_CHAT", "data": {"target_user_id": t.id("alice"),
                    "target_display_name": "alice"}}),
    )
    .await;
    let opened = bob
        .recv_where("OPEN_CHAT's answer", |f| f["type"] != "PRESENCE")
        .await;
    assert_eq!(opened["type"], "CHAT_OPENED", "{opened}");
    bob.send(json!({"type": "TYPING", "data": {"is_typing": true}}))
        .await;
    nothing_but_presence_pending(&mut bob).await;
    nothing_but_presence_pending(&mut alice).await;
    t.server.stop().await;
}

// ----- BUG-21: kicking a session without a connection -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_kick_ends_a_session_that_has_no_connection() {
    let t = Team::start(&[("boss", "admin"), ("bob", "user")]).await;
    let dir = t.server.data_dir.clone();
    let tokens = t.server.login("bob", &Team::password("bob")).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.json);
    let access = tokens.json["access"].as_str().expect("access").to_owned();
    let refresh = tokens.json["refresh"].as_str().expect("refresh").to_owned();
    let session = jwt_claims(&access)["sid"].as_str().expect("sid").to_owned();

    let kicked = natter_json(&dir, &["sessions", "kick", &session]).await;
    assert_eq!(kicked["sessions"], 1, "{kicked}");
    let me = t.server.api("GET", "/api/v1/me", Some(&access), None).await;
    assert_eq!(me.status, 401, "{:?}", me.json);
    let refreshed = t
        .server
        .post_json("/api/token/refresh/", &json!({"refresh": refresh}))
        .await;
    assert_eq!(refreshed.status, 401, "{:?}", refreshed.json);
    // bob's other session (the team's login) is untouched; a second kick has nothing to do.
    let other = t.get("bob", "/api/v1/me").await;
    assert_eq!(other.status, 200, "{:?}", other.json);
    let again = natter_json(&dir, &["sessions", "kick", &session]).await;
    assert_eq!(again["sessions"], 0, "{again}");
    t.server.stop().await;
}
