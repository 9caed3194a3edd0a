//! WebSocket transport and session behaviour at `/ws` that is not particular to the native
//! protocol's messages: where the token may come from, the Origin check, the per-user (4429) and
//! server (1013) connection caps, token expiry and in-band renewal, revocation by logout,
//! disabling or removal (4401/4403), the message rate limit (4429), oversized frames (1009), the
//! heartbeat (4000), slow consumers (4008), the closing handshake, and plain HTTP (426).

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Deadline, Team};
use crate::wsclient::{Ws, raw_connect, try_connect};

/// boss (admin), alice and bob.
const TEAM: &[(&str, &str)] = &[("boss", "admin"), ("alice", "user"), ("bob", "user")];

// ----- tokens and admission ---------------------------------------------------------------------

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
async fn plain_http_to_the_websocket_endpoint_gets_426() {
    let t = Team::start(TEAM).await;
    let response = t.server.get("/ws", &[]).await;
    assert_eq!(response.status, 426);
    assert_eq!(response.json["code"], "bad_request");
    t.server.stop().await;
}

// ----- token expiry, renewal and revocation -----------------------------------------------------

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

// ----- limits, heartbeat, slow consumers and the closing handshake ------------------------------

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
