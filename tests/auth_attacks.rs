//! Attacks on authentication: forged and invalid tokens (`alg: none`, another algorithm, a bad
//! signature, another key, wrong `aud`/`iss`, expired, `nbf` ahead, no `sub`, a refresh token
//! as access token) and tokens of removed or disabled users are refused over HTTP and on the
//! WebSocket endpoints; logout closes the session's sockets within 1 s; password spraying from
//! one address is locked out; a foreign Origin is refused on every WebSocket endpoint; and no
//! token (nor password) appears in any log line, even at `trace`. (Expiry + grace and in-band
//! renewal are in `ws_session`, per-username lockout in `http_auth`.)

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{TestServer, add_user, http, jwt_claims, test_config};
use crate::daemon::Daemon;
use crate::wsclient::{Ws, raw_connect, try_connect};

const USERS: &[(&str, &str, &str)] = &[
    ("boss", "boss-password", "admin"),
    ("alice", "alice-password", "user"),
    ("carol", "carol-password", "user"),
    ("mallory", "mallory-password", "user"),
];

async fn start() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, password, role) in USERS {
        add_user(dir.path(), name, password, role);
    }
    let server = TestServer::start_config(test_config(dir.path()))
        .await
        .expect("start");
    (server, dir)
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("i64")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(algorithm: &str, secret: &[u8], claims: &Value) -> String {
    crate::common::sign_jwt(algorithm, secret, claims)
}

fn with(claims: &Value, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = claims.clone();
    change(claims.as_object_mut().expect("claims object"));
    claims
}

/// HTTP says 401 `invalid_token` (or 403 `account_disabled`), and `/ws` and the rooms
/// endpoint answer with their refusal and close 4401 (4403).
async fn refused_everywhere(server: &TestServer, token: &str, what: &str, disabled: bool) {
    let me = server.api("GET", "/api/v1/me", Some(token), None).await;
    let (status, code, close) = if disabled {
        (403, "account_disabled", 4403)
    } else {
        (401, "invalid_token", 4401)
    };
    assert_eq!(me.status, status, "{what}: {:?}", me.json);
    assert_eq!(me.json["code"], code, "{what}: {:?}", me.json);
    let mut native = Ws {
        socket: raw_connect(server.addr, &format!("/ws?token={token}"), &[]).await,
        welcome: Value::Null,
    };
    let (frames, closed) = native.frames_until_close().await;
    assert_eq!(closed, close, "{what}: /ws closed with {closed}");
    assert_eq!(frames.len(), 1, "{what}: {frames:?}");
    assert_eq!(frames[0]["type"], "Error", "{what}");
    assert_eq!(frames[0]["data"]["code"], status, "{what}: {frames:?}");
    let mut rooms = Ws {
        socket: raw_connect(
            server.addr,
            &format!("/api/v1/ws/connect?token={token}"),
            &[],
        )
        .await,
        welcome: Value::Null,
    };
    let (_, closed) = rooms.frames_until_close().await;
    assert_eq!(
        closed, close,
        "{what}: /api/v1/ws/connect closed with {closed}"
    );
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_refused() {
    let (server, _dir) = start().await;
    let secret = std::fs::read_to_string(server.data_dir.join("jwt-secret")).expect("secret");
    let secret = secret.trim().as_bytes().to_vec();
    let login = server.login("alice", "alice-password").await;
    let access = login.json["access"].as_str().expect("access").to_owned();
    let refresh = login.json["refresh"].as_str().expect("refresh").to_owned();
    let claims = jwt_claims(&access);

    // The control: the same claims signed the right way are accepted, so every refusal below
    // is for the one thing changed.
    let resigned = sign("HS256", &secret, &claims);
    let me = server.api("GET", "/api/v1/me", Some(&resigned), None).await;
    assert_eq!(me.status, 200, "{:?}", me.json);
    Ws::connect(server.addr, &resigned).await;

    let header_none = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64(claims.to_string().as_bytes());
    let mut bad_signature = access.clone().into_bytes();
    let last = bad_signature.len() - 3;
    bad_signature[last] = if bad_signature[last] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let t = now();
    let forged: Vec<(&str, String)> = vec![
        ("alg none", format!("{header_none}.{body}.")),
        (
            "alg none with a signature",
            format!(
                "{header_none}.{body}.{}",
                access.rsplit('.').next().expect("sig")
            ),
        ),
        (
            "HS512 with the right secret",
            sign("HS512", &secret, &claims),
        ),
        (
            "HS384 with the right secret",
            sign("HS384", &secret, &claims),
        ),
        (
            "a bad signature",
            String::from_utf8(bad_signature).expect("ascii"),
        ),
        (
            "another key",
            sign(
                "HS256",
                b"not the server's secret, but long enough",
                &claims,
            ),
        ),
        (
            "wrong aud",
            sign(
                "HS256",
                &secret,
                &with(&claims, |c| {
                    c.insert("aud".into(), json!("elsewhere"));
                }),
            ),
        ),
        (
            "wrong iss",
            sign(
                "HS256",
                &secret,
                &with(&claims, |c| {
                    c.insert("iss".into(), json!("mallory"));
                }),
            ),
        ),
        (
            "expired",
            sign(
                "HS256",
                &secret,
                &with(&claims, |c| {
                    c.insert("iat".into(), json!(t - 7200));
                    c.insert("exp".into(), json!(t - 3600));
                }),
            ),
        ),
        (
            "nbf ahead",
            sign(
                "HS256",
                &secret,
                &with(&claims, |c| {
                    c.insert("nbf".into(), json!(t + 3600));
                }),
            ),
        ),
        (
            "no sub",
            sign(
                "HS256",
                &secret,
                &with(&claims, |c| {
                    c.remove("sub");
                }),
            ),
        ),
        (
            "no exp",
            sign(
                "HS256",
                &secret,
                &with(&claims, |c| {
                    c.remove("exp");
                }),
            ),
        ),
        ("a refresh token", refresh.clone()),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in &forged {
        refused_everywhere(&server, token, what, false).await;
    }

    // Users that are gone or disabled: their tokens stop working at once.
    let admin = server.access_token("boss", "boss-password").await;
    let mallory = server.access_token("mallory", "mallory-password").await;
    let removed = server
        .api("DELETE", "/api/v1/users/mallory", Some(&admin), None)
        .await;
    assert!(removed.status < 300, "{:?}", removed.json);
    refused_everywhere(&server, &mallory, "a removed user's token", false).await;
    let carol = server.access_token("carol", "carol-password").await;
    let disabled = server
        .api("POST", "/api/v1/users/carol/disable", Some(&admin), None)
        .await;
    assert!(disabled.status < 300, "{:?}", disabled.json);
    refused_everywhere(&server, &carol, "a disabled user's token", true).await;
    server.stop().await;
}

/// Logout (revoking the refresh token) closes that session's sockets, on every dialect it
/// used, within 1 s.
#[tokio::test]
async fn logout_closes_the_sessions_sockets_within_a_second() {
    let (server, _dir) = start().await;
    let login = server.login("alice", "alice-password").await;
    let access = login.json["access"].as_str().expect("access").to_owned();
    let mut native = Ws::connect(server.addr, &access).await;
    let mut status = Ws::open(server.addr, &format!("/ws/status/?token={access}")).await;
    let mut rooms = Ws::open(server.addr, &format!("/api/v1/ws/connect?token={access}")).await;
    // Each is set up once it answers.
    native.request("Ping", json!({}), "p").await;
    status.send(json!({"type": "sync"})).await;
    status.recv_type("error").await;
    rooms.send(json!({"type": "ping"})).await;
    rooms.recv_type("pong").await;

    let revoke = server
        .post_json(
            "/api/token/revoke",
            &json!({"refresh": login.json["refresh"]}),
        )
        .await;
    assert_eq!(revoke.status, 200);
    let revoked_at = Instant::now();
    for (name, ws) in [
        ("/ws", &mut native),
        ("/ws/status", &mut status),
        ("/api/v1/ws/connect", &mut rooms),
    ] {
        let code = ws.ends().await;
        let after = revoked_at.elapsed();
        assert_eq!(code, Some(4401), "{name}");
        assert!(
            after < Duration::from_secs(1),
            "{name} closed {after:?} after logout"
        );
    }
    server.stop().await;
}

/// Failed logins from one address, spread over usernames (spraying), lock that address out,
/// even for a right password of another account.
#[tokio::test]
async fn password_spraying_from_one_address_is_locked_out() {
    let (server, _dir) = start().await;
    for name in ["boss", "carol", "mallory", "nobody", "root"] {
        let response = server.login(name, "guess-123").await;
        assert_eq!(response.status, 401, "{name}: {:?}", response.json);
    }
    let locked = server.login("alice", "alice-password").await;
    assert_eq!(locked.status, 429, "{:?}", locked.json);
    assert_eq!(locked.json["code"], "too_many_attempts");
    assert!(locked.headers.contains_key("retry-after"));
    server.stop().await;
}

/// A browser page of another origin cannot open any WebSocket endpoint (403 before the
/// upgrade), whatever the token.
#[tokio::test]
async fn a_foreign_origin_is_refused_on_every_websocket_endpoint() {
    let (server, _dir) = start().await;
    let token = server.access_token("alice", "alice-password").await;
    for path in [
        "/ws",
        "/ws/chat/alice/math/",
        "/api/v1/ws/connect",
        "/ws/chat/general/",
        "/ws/notifications/",
        "/ws/status/",
    ] {
        let result = try_connect(
            server.addr,
            &format!("{path}?token={token}"),
            &[("origin", "https://evil.example")],
        )
        .await;
        match result {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{path}");
            }
            Err(e) => panic!("{path}: {e}"),
            Ok(_) => panic!("{path}: a foreign origin was upgraded"),
        }
    }
    server.stop().await;
}

/// Every way a token travels (login and refresh answers, the Set-Cookie header, Bearer
/// headers, `?token=` on every WebSocket endpoint, the subprotocol, the cookie, in-band
/// Authenticate, logout) and every way it fails, with the daemon logging at `trace`: no log
/// line holds a token, a token's signature, or a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_appears_in_any_log_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    add_user(dir.path(), "alice", "alice-password", "user");
    let daemon = Daemon::start(dir.path(), &[("NATTER_LOG", "trace")]).expect("start");
    let addr = daemon.addr;
    let mut secrets: Vec<String> = vec!["alice-password".to_owned()];
    let post = |path: &'static str, body: Value| async move {
        http(
            addr,
            "POST",
            path,
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await
    };
    let login = post(
        "/api/token/",
        json!({"username": "alice", "password": "alice-password", "cookie": true}),
    )
    .await;
    assert_eq!(login.status, 200, "{:?}", login.json);
    let access = login.json["access"].as_str().expect("access").to_owned();
    let refresh = login.json["refresh"].as_str().expect("refresh").to_owned();
    let bearer = format!("Bearer {access}");
    let me = http(
        addr,
        "GET",
        "/api/v1/me",
        &[("authorization", &bearer)],
        Vec::new(),
    )
    .await;
    assert_eq!(me.status, 200);
    let refreshed = post("/api/token/refresh/", json!({"refresh": refresh})).await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.json);
    let access2 = refreshed.json["access"]
        .as_str()
        .expect("access")
        .to_owned();
    let refresh2 = refreshed.json["refresh"]
        .as_str()
        .expect("refresh")
        .to_owned();

    // WebSockets: the query string on every endpoint, the subprotocol, the cookie, and an
    // in-band renewal.
    let mut ws = Ws::connect(addr, &access).await;
    ws.request("Authenticate", json!({"token": access2}), "renew")
        .await;
    for path in [
        "/api/v1/ws/connect",
        "/ws/status/",
        "/ws/notifications/",
        "/ws/chat/nowhere/",
        "/ws/chat/alice/nowhere/",
    ] {
        let mut socket = raw_connect(addr, &format!("{path}?token={access2}"), &[]).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), socket.next()).await;
        let _ = socket.close(None).await;
    }
    let protocol = format!("access_token.{access2}");
    let mut by_protocol = raw_connect(addr, "/ws", &[("sec-websocket-protocol", &protocol)]).await;
    let _ = by_protocol.next().await;
    let cookie = format!("natter_access={access2}");
    let mut by_cookie = raw_connect(addr, "/ws", &[("cookie", &cookie)]).await;
    let _ = by_cookie.next().await;
    ws.socket
        .send(Message::text(json!({"type": "Ping"}).to_string()))
        .await
        .expect("send");

    // Failures: a forged token on the query, a bad bearer, a reused refresh token, a bad one.
    let forged = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS256"}"#),
        b64(br#"{"sub":"x"}"#),
        "c2lnbmF0dXJlLW9mLWEtZm9yZ2VyeQ"
    );
    let mut refused = raw_connect(addr, &format!("/ws?token={forged}"), &[]).await;
    let _ = refused.next().await;
    let bad_bearer = format!("Bearer {forged}");
    http(
        addr,
        "GET",
        "/api/v1/me",
        &[("authorization", &bad_bearer)],
        Vec::new(),
    )
    .await;
    let reused = post("/api/token/refresh/", json!({"refresh": refresh})).await;
    assert_eq!(reused.status, 401, "{:?}", reused.json);
    post("/api/token/refresh/", json!({"refresh": forged})).await;
    let wrong = post(
        "/api/token/",
        json!({"username": "alice", "password": "wrong-password-1"}),
    )
    .await;
    assert_eq!(wrong.status, 401);
    post("/api/token/revoke/", json!({"refresh": refresh2})).await;

    drop((ws, by_protocol, by_cookie, refused));
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0));
    assert!(
        log.len() > 50,
        "trace logging produced only {} lines",
        log.len()
    );
    secrets.push("wrong-password-1".to_owned());
    for token in [&access, &refresh, &access2, &refresh2, &forged] {
        // The whole token, and its signature alone (a token cut at a dot is still a leak).
        secrets.push(token.clone());
        secrets.push(token.rsplit('.').next().expect("signature").to_owned());
    }
    for line in &log {
        for secret in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "a secret in the log: {line}"
            );
        }
    }
    println!(
        "auth: {} log lines at trace, none holds any of {} token parts or passwords",
        log.len(),
        secrets.len()
    );
}
