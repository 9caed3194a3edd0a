//! Accounts a team runs itself, over real HTTP and WebSockets: changing your own password (your
//! other sessions end, this one stays), your display name and avatar, an admin's password
//! resets and role changes, who is online in the users list, and invite links (one-time,
//! expiring, bounded, throttled; two accepts of one token make one user).

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Deadline, Team, TestServer, login};
use crate::wsclient::Ws;

async fn team() -> Team {
    Team::start(&[("boss", "admin"), ("bob", "user"), ("carol", "user")]).await
}

async fn patch(t: &Team, user: &str, path: &str, body: Value) -> crate::common::Response {
    t.server
        .api("PATCH", path, Some(t.token(user)), Some(&body))
        .await
}

async fn put(t: &Team, user: &str, path: &str, body: Value) -> crate::common::Response {
    t.server
        .api("PUT", path, Some(t.token(user)), Some(&body))
        .await
}

/// POST /api/v1/invites/{token}/accept without a login.
async fn accept(server: &TestServer, token: &str, body: Value) -> crate::common::Response {
    server
        .api(
            "POST",
            &format!("/api/v1/invites/{token}/accept"),
            None,
            Some(&body),
        )
        .await
}

async fn invite(t: &Team, body: Value) -> Value {
    let created = t.post("boss", "/api/v1/invites", body).await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    created.json
}

#[tokio::test]
async fn changing_your_password_ends_your_other_sessions_and_keeps_this_one() {
    let t = team().await;
    let here = t.token("bob").to_owned();
    let other = login(t.addr(), "bob", &Team::password("bob")).await;
    assert_eq!(other.status, 200, "{:?}", other.json);
    let other_access = other.json["access"].as_str().expect("access").to_owned();
    let other_refresh = other.json["refresh"].as_str().expect("refresh").to_owned();
    let mut here_ws = Ws::connect(t.addr(), &here).await;
    let mut other_ws = Ws::connect(t.addr(), &other_access).await;

    // Refusals change nothing.
    let wrong = t
        .post(
            "bob",
            "/api/v1/me/password",
            json!({"old_password": "not-it", "new_password": "a-new-password"}),
        )
        .await;
    assert_eq!(wrong.status, 403, "{:?}", wrong.json);
    assert!(
        wrong.json["error"]
            .as_str()
            .expect("the expected JSON shape")
            .contains("current password"),
        "{:?}",
        wrong.json
    );
    let weak = t
        .post(
            "bob",
            "/api/v1/me/password",
            json!({"old_password": Team::password("bob"), "new_password": "short"}),
        )
        .await;
    assert_eq!(weak.status, 400, "{:?}", weak.json);
    let missing = t
        .post("bob", "/api/v1/me/password", json!({"new_password": "x"}))
        .await;
    assert_eq!(missing.status, 400, "{:?}", missing.json);
    assert_eq!(
        t.server
            .api("GET", "/api/v1/me", Some(&other_access), None)
            .await
            .status,
        200
    );

    let changed = t
        .post(
            "bob",
            "/api/v1/me/password",
            json!({"old_password": Team::password("bob"), "new_password": "a-new-password"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.json);
    assert_eq!(changed.json["changed"], true);

    // The other session: its socket closes, its access and refresh tokens are refused.
    let (frames, code) = other_ws.frames_until_close().await;
    assert_eq!(code, 4401, "{frames:?}");
    let refused = t
        .server
        .api("GET", "/api/v1/me", Some(&other_access), None)
        .await;
    assert_eq!(refused.status, 401, "{:?}", refused.json);
    let refresh = t
        .server
        .api(
            "POST",
            "/api/token/refresh",
            None,
            Some(&json!({"refresh": other_refresh})),
        )
        .await;
    assert_eq!(refresh.status, 401, "{:?}", refresh.json);

    // This session: its token and its socket still work.
    assert_eq!(t.get("bob", "/api/v1/me").await.status, 200);
    let pong = here_ws.request("Ping", json!({}), "p1").await;
    assert_ne!(pong["type"], "Error", "{pong}");

    // The new password logs in, the old one no more.
    assert_eq!(login(t.addr(), "bob", "a-new-password").await.status, 200);
    assert_eq!(
        login(t.addr(), "bob", &Team::password("bob")).await.status,
        401
    );
}

#[tokio::test]
async fn wrong_current_passwords_are_throttled_like_logins() {
    let t = Team::start_with(&[("bob", "user")], |c| {
        c.auth.login_max_failures = 2;
    })
    .await;
    for _ in 0..2 {
        let wrong = t
            .post(
                "bob",
                "/api/v1/me/password",
                json!({"old_password": "guess", "new_password": "a-new-password"}),
            )
            .await;
        assert_eq!(wrong.status, 403, "{:?}", wrong.json);
    }
    // Locked out now, the right one included, and logins on the name too.
    let locked = t
        .post(
            "bob",
            "/api/v1/me/password",
            json!({"old_password": Team::password("bob"), "new_password": "a-new-password"}),
        )
        .await;
    assert_eq!(locked.status, 429, "{:?}", locked.json);
    assert!(locked.headers.contains_key("retry-after"));
    assert_eq!(
        login(t.addr(), "bob", &Team::password("bob")).await.status,
        429
    );
}

#[tokio::test]
async fn profile_edits_are_validated_and_names_stay_unique() {
    let t = team().await;
    let set = patch(
        &t,
        "bob",
        "/api/v1/me",
        json!({"display_name": "  Bob Builder ", "avatar_url": "https://example.com/b.png"}),
    )
    .await;
    assert_eq!(set.status, 200, "{:?}", set.json);
    assert_eq!(set.json["display_name"], "Bob Builder");
    assert_eq!(set.json["avatar_url"], "https://example.com/b.png");
    let me = t.get("bob", "/api/v1/me").await;
    assert_eq!(me.json["display_name"], "Bob Builder");

    // A file of this server is an avatar too; an absent field stays.
    let file = patch(
        &t,
        "bob",
        "/api/v1/me",
        json!({"avatar_url": "/api/v1/files/7"}),
    )
    .await;
    assert_eq!(file.status, 200, "{:?}", file.json);
    assert_eq!(file.json["display_name"], "Bob Builder");

    for bad in [
        json!({"avatar_url": "javascript:alert(1)"}),
        json!({"avatar_url": "/api/v1/files/7/../../x"}),
        json!({"avatar_url": "https://x/a b"}),
        json!({"avatar_url": format!("https://example.com/{}", "a".repeat(2100))}),
        json!({"display_name": "x".repeat(65)}),
        json!({"display_name": "   "}),
        json!({"display_name": "a\u{7}b"}),
        json!({"display_name": 5}),
        json!({"role": "admin"}),
    ] {
        let refused = patch(&t, "bob", "/api/v1/me", bad.clone()).await;
        assert_eq!(refused.status, 400, "{bad}: {:?}", refused.json);
        assert!(refused.json["error"].is_string(), "{:?}", refused.json);
    }
    // Another account's name, folded (case, spaces, fullwidth), is not free.
    for taken in ["carol", "CAROL", "Ca rol", "ＣＡＲＯＬ", "boss"] {
        let refused = patch(&t, "bob", "/api/v1/me", json!({"display_name": taken})).await;
        assert_eq!(refused.status, 409, "{taken}: {:?}", refused.json);
    }
    // Nor is carol's new display name; bob's own names are his.
    let carol = patch(&t, "carol", "/api/v1/me", json!({"display_name": "Caz"})).await;
    assert_eq!(carol.status, 200, "{:?}", carol.json);
    assert_eq!(
        patch(&t, "bob", "/api/v1/me", json!({"display_name": "caz"}))
            .await
            .status,
        409
    );
    assert_eq!(
        patch(&t, "bob", "/api/v1/me", json!({"display_name": "BOB"}))
            .await
            .status,
        200
    );
    // null resets: the display name to the username, the avatar to none.
    let reset = patch(
        &t,
        "bob",
        "/api/v1/me",
        json!({"display_name": null, "avatar_url": null}),
    )
    .await;
    assert_eq!(reset.status, 200, "{:?}", reset.json);
    assert_eq!(reset.json["display_name"], "bob");
    assert_eq!(reset.json["avatar_url"], Value::Null);
}

#[tokio::test]
async fn admins_reset_passwords_change_roles_and_see_who_is_online() {
    let t = team().await;
    // Non-admins may do none of it.
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/users/carol/password",
            json!({"password": "another-password"}),
        ),
        ("PUT", "/api/v1/users/carol/role", json!({"role": "admin"})),
        ("GET", "/api/v1/users", Value::Null),
    ] {
        let body = (!body.is_null()).then_some(body);
        let refused = t
            .server
            .api(method, path, Some(t.token("bob")), body.as_ref())
            .await;
        assert_eq!(refused.status, 403, "{method} {path}: {:?}", refused.json);
    }

    // Online: bob has a socket, carol none.
    let mut bob_ws = Ws::connect(t.addr(), t.token("bob")).await;
    let deadline = Deadline::within(Duration::from_secs(10), "bob online in the users list");
    loop {
        let users = t.get("boss", "/api/v1/users").await;
        assert_eq!(users.status, 200, "{:?}", users.json);
        let online = |name: &str| {
            users.json["users"]
                .as_array()
                .expect("the expected JSON shape")
                .iter()
                .find(|u| u["username"] == name)
                .map(|u| u["online"].clone())
        };
        assert_eq!(online("carol"), Some(json!(false)), "{:?}", users.json);
        if online("bob") == Some(json!(true)) {
            break;
        }
        deadline.bound(tokio::task::yield_now()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Reset: weak refused, unknown 404; then all of carol's sessions end.
    let weak = t
        .post(
            "boss",
            "/api/v1/users/carol/password",
            json!({"password": "x"}),
        )
        .await;
    assert_eq!(weak.status, 400, "{:?}", weak.json);
    let nobody = t
        .post(
            "boss",
            "/api/v1/users/nobody/password",
            json!({"password": "another-password"}),
        )
        .await;
    assert_eq!(nobody.status, 404, "{:?}", nobody.json);
    let reset = t
        .post(
            "boss",
            "/api/v1/users/carol/password",
            json!({"password": "another-password"}),
        )
        .await;
    assert_eq!(reset.status, 200, "{:?}", reset.json);
    assert_eq!(t.get("carol", "/api/v1/me").await.status, 401);
    assert_eq!(
        login(t.addr(), "carol", "another-password").await.status,
        200
    );

    // Role: bob becomes an admin; his socket closes (it held the old role).
    let bad = put(
        &t,
        "boss",
        "/api/v1/users/bob/role",
        json!({"role": "owner"}),
    )
    .await;
    assert_eq!(bad.status, 400, "{:?}", bad.json);
    let promoted = put(
        &t,
        "boss",
        "/api/v1/users/bob/role",
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(promoted.status, 200, "{:?}", promoted.json);
    assert_eq!(promoted.json["role"], "admin");
    let (frames, code) = bob_ws.frames_until_close().await;
    assert_eq!(code, 4401, "{frames:?}");
    // His token now carries admin rights.
    assert_eq!(t.get("bob", "/api/v1/users").await.status, 200);
    // The last enabled admin stays one.
    assert_eq!(
        put(
            &t,
            "boss",
            "/api/v1/users/bob/role",
            json!({"role": "user"})
        )
        .await
        .status,
        200
    );
    let last = put(
        &t,
        "boss",
        "/api/v1/users/boss/role",
        json!({"role": "user"}),
    )
    .await;
    assert_eq!(last.status, 409, "{:?}", last.json);
}

#[tokio::test]
async fn an_invite_signs_up_one_user_once() {
    let t = team().await;
    assert_eq!(
        t.post("bob", "/api/v1/invites", json!({})).await.status,
        403
    );
    assert_eq!(t.get("bob", "/api/v1/invites").await.status, 403);
    let too_long = t
        .post(
            "boss",
            "/api/v1/invites",
            json!({"expires_in_secs": 365 * 24 * 3600}),
        )
        .await;
    assert_eq!(too_long.status, 400, "{:?}", too_long.json);

    let created = invite(&t, json!({})).await;
    let token = created["token"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 43, "{created}");
    assert_eq!(created["url"], format!("/#invite={token}"));
    assert_eq!(created["role"], "user");
    assert!(
        created["expires_at"]
            .as_i64()
            .expect("the expected JSON shape")
            > 0
    );
    let listed = t.get("boss", "/api/v1/invites").await;
    assert_eq!(
        listed.json["invites"]
            .as_array()
            .expect("the expected JSON shape")
            .len(),
        1
    );
    assert!(
        !listed.json.to_string().contains(&token),
        "the list shows no token: {:?}",
        listed.json
    );

    // Refusals keep the invite: bad name, weak password, a taken username.
    for (body, status) in [
        (
            json!({"username": "No Way", "password": "dana-password"}),
            400,
        ),
        (json!({"username": "dana", "password": "short"}), 400),
        (
            json!({"username": "carol", "password": "dana-password"}),
            409,
        ),
        (
            json!({"username": "dana", "password": "dana-password", "display_name": "Bob"}),
            409,
        ),
    ] {
        let refused = accept(&t.server, &token, body.clone()).await;
        assert_eq!(refused.status, status, "{body}: {:?}", refused.json);
    }

    let accepted = accept(
        &t.server,
        &token,
        json!({"username": "dana", "password": "dana-password", "display_name": "Dana"}),
    )
    .await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.json);
    let access = accepted.json["access"].as_str().expect("access");
    assert!(accepted.json["refresh"].is_string());
    assert!(accepted.headers.get("set-cookie").is_some_and(|c| {
        c.to_str()
            .expect("the expected JSON shape")
            .starts_with("natter_access=")
    }));
    let me = t.server.api("GET", "/api/v1/me", Some(access), None).await;
    assert_eq!(me.json["username"], "dana", "{:?}", me.json);
    assert_eq!(me.json["display_name"], "Dana");
    assert_eq!(me.json["role"], "user");
    assert_eq!(login(t.addr(), "dana", "dana-password").await.status, 200);

    // Used: gone from the list, a second accept refused.
    let again = accept(
        &t.server,
        &token,
        json!({"username": "erin", "password": "erin-password"}),
    )
    .await;
    assert_eq!(again.status, 404, "{:?}", again.json);
    assert!(
        again.json["error"]
            .as_str()
            .expect("the expected JSON shape")
            .contains("invite")
    );
    assert!(
        t.get("boss", "/api/v1/invites").await.json["invites"]
            .as_array()
            .expect("the expected JSON shape")
            .is_empty()
    );

    // An admin invite makes an admin; a revoked one is refused.
    let admin_invite = invite(&t, json!({"role": "admin"})).await;
    let made = accept(
        &t.server,
        admin_invite["token"]
            .as_str()
            .expect("the expected JSON shape"),
        json!({"username": "erin", "password": "erin-password"}),
    )
    .await;
    assert_eq!(made.status, 200, "{:?}", made.json);
    let erin = t
        .server
        .api("GET", "/api/v1/me", made.json["access"].as_str(), None)
        .await;
    assert_eq!(erin.json["role"], "admin");
    let revoked = invite(&t, json!({})).await;
    let path = format!("/api/v1/invites/{}", revoked["id"]);
    assert_eq!(t.delete("bob", &path).await.status, 403);
    assert_eq!(t.delete("boss", &path).await.status, 200);
    assert_eq!(t.delete("boss", &path).await.status, 404);
    let refused = accept(
        &t.server,
        revoked["token"].as_str().expect("the expected JSON shape"),
        json!({"username": "fred", "password": "fred-password"}),
    )
    .await;
    assert_eq!(refused.status, 404, "{:?}", refused.json);
}

#[tokio::test]
async fn an_expired_invite_is_refused() {
    let t = team().await;
    let created = invite(&t, json!({"expires_in_secs": 1})).await;
    // Expired once it leaves the list (the list shows unexpired invites only).
    let deadline = Deadline::within(Duration::from_secs(15), "the invite to expire");
    loop {
        let listed = t.get("boss", "/api/v1/invites").await;
        if listed.json["invites"]
            .as_array()
            .expect("the expected JSON shape")
            .is_empty()
        {
            break;
        }
        deadline
            .bound(tokio::time::sleep(Duration::from_millis(100)))
            .await;
    }
    let refused = accept(
        &t.server,
        created["token"].as_str().expect("the expected JSON shape"),
        json!({"username": "dana", "password": "dana-password"}),
    )
    .await;
    assert_eq!(refused.status, 404, "{:?}", refused.json);
    assert!(
        refused.json["error"]
            .as_str()
            .expect("the expected JSON shape")
            .contains("invite"),
        "{:?}",
        refused.json
    );
    assert_eq!(login(t.addr(), "dana", "dana-password").await.status, 401);
}

#[tokio::test]
async fn concurrent_accepts_of_one_invite_make_exactly_one_user() {
    let t = Team::start_with(&[("boss", "admin")], |c| {
        c.auth.login_max_failures = 100;
    })
    .await;
    let created = invite(&t, json!({})).await;
    let token = created["token"]
        .as_str()
        .expect("the expected JSON shape")
        .to_owned();
    let attempts = (0..8).map(|i| {
        let server = &t.server;
        let token = token.clone();
        async move {
            accept(
                server,
                &token,
                json!({"username": format!("racer{i}"), "password": "racer-password"}),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let won: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert!(
        answers.iter().all(|a| matches!(a.status, 200 | 404)),
        "{answers:?}"
    );
    let users = t.get("boss", "/api/v1/users").await;
    let racers = users.json["users"]
        .as_array()
        .expect("the expected JSON shape")
        .iter()
        .filter(|u| {
            u["username"]
                .as_str()
                .expect("the expected JSON shape")
                .starts_with("racer")
        })
        .count();
    assert_eq!(racers, 1, "{:?}", users.json);
}

#[tokio::test]
async fn pending_invites_are_bounded() {
    let t = Team::start_with(&[("boss", "admin")], |c| {
        c.accounts.max_pending_invites = 2;
    })
    .await;
    let first = invite(&t, json!({})).await;
    invite(&t, json!({})).await;
    let third = t.post("boss", "/api/v1/invites", json!({})).await;
    assert_eq!(third.status, 409, "{:?}", third.json);
    assert!(
        third.json["error"]
            .as_str()
            .expect("the expected JSON shape")
            .contains("max_pending_invites")
    );
    // A revoked one makes room again.
    let path = format!("/api/v1/invites/{}", first["id"]);
    assert_eq!(t.delete("boss", &path).await.status, 200);
    invite(&t, json!({})).await;
}

#[tokio::test]
async fn guessing_invite_tokens_is_throttled_by_address() {
    let t = Team::start_with(&[("boss", "admin")], |c| {
        c.auth.login_max_failures = 3;
    })
    .await;
    let created = invite(&t, json!({})).await;
    for guess in ["AAAA", "BBBB", &"C".repeat(500)] {
        let refused = accept(
            &t.server,
            guess,
            json!({"username": "dana", "password": "dana-password"}),
        )
        .await;
        assert_eq!(refused.status, 404, "{:?}", refused.json);
    }
    // Locked out: the real token too, until the window passes.
    let locked = accept(
        &t.server,
        created["token"].as_str().expect("the expected JSON shape"),
        json!({"username": "dana", "password": "dana-password"}),
    )
    .await;
    assert_eq!(locked.status, 429, "{:?}", locked.json);
    assert!(locked.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn the_cli_creates_invites_for_the_running_daemon() {
    let t = team().await;
    let (code, out, err) = crate::common::natter_on(
        &t.server.data_dir,
        &["invite", "create", "--expires-in", "2d", "--json"],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let created: Value = serde_json::from_str(&out).expect("JSON");
    let token = created["token"].as_str().expect("token");
    assert_eq!(created["url"], format!("/#invite={token}"));
    assert_eq!(created["role"], "user");
    let (code, _, err) = crate::common::natter_on(
        &t.server.data_dir,
        &["invite", "create", "--expires-in", "soon"],
        None,
    )
    .await;
    assert_eq!(code, 2, "{err}");
    let accepted = accept(
        &t.server,
        token,
        json!({"username": "dana", "password": "dana-password"}),
    )
    .await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_never_shows_an_invite_token() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let daemon = crate::daemon::Daemon::start(&data_dir, &[]).expect("daemon starts");
    let admin_password = std::fs::read_to_string(data_dir.join("initial-admin-password"))
        .expect("admin password")
        .trim()
        .to_owned();
    let admin = crate::common::access_token(daemon.addr, "admin", &admin_password).await;
    let bearer = format!("Bearer {admin}");
    let created = crate::common::http(
        daemon.addr,
        "POST",
        "/api/v1/invites",
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    let token = created.json["token"].as_str().expect("token").to_owned();
    let accepted = crate::common::http(
        daemon.addr,
        "POST",
        &format!("/api/v1/invites/{token}/accept"),
        &[("content-type", "application/json")],
        json!({"username": "dana", "password": "dana-password"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.json);
    let deadline = Deadline::within(Duration::from_secs(10), "the accept in the access log");
    let log = loop {
        let log = daemon.log_lines().join("\n");
        if log.contains("/api/v1/invites/-/accept") {
            break log;
        }
        deadline
            .bound(tokio::time::sleep(Duration::from_millis(50)))
            .await;
    };
    assert!(!log.contains(&token), "{log}");
}
