//! Token issuance over real HTTP: login, refresh rotation and reuse detection, logout,
//! throttling, and the error contract (JSON bodies, stable codes, status codes).

use serde_json::json;

use crate::common::{TestServer, add_user, http, jwt_claims, test_config};

#[tokio::test]
async fn login_issues_access_and_refresh_tokens() {
    let server = TestServer::start().await;
    let tokens = server.admin_tokens().await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let claims = jwt_claims(tokens["access"].as_str().expect("access"));
    for claim in ["sub", "username", "role", "iat", "exp", "jti", "iss", "aud"] {
        assert!(
            claims.get(claim).is_some(),
            "missing claim {claim}: {claims}"
        );
    }
    assert_eq!(claims["username"], "admin");
    assert_eq!(claims["role"], "admin");
    assert_eq!(claims["iss"], "natter");
    assert_eq!(claims["aud"], "natter");
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        900
    );
    assert!(tokens["refresh"].as_str().is_some_and(|r| !r.is_empty()));
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let server = TestServer::start().await;
    let wrong = server.login("admin", "not-the-password").await;
    let unknown = server.login("nobody", "not-the-password").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.json, unknown.json);
    assert_eq!(
        wrong.json,
        json!({"error": "invalid username or password", "code": "invalid_credentials"})
    );
    server.stop().await;
}

#[tokio::test]
async fn five_failures_lock_the_account_even_for_the_right_password() {
    let server = TestServer::start().await;
    for _ in 0..5 {
        assert_eq!(server.login("admin", "wrong-password").await.status, 401);
    }
    let locked = server.login("admin", &server.admin_password()).await;
    assert_eq!(locked.status, 429, "{:?}", locked.json);
    assert_eq!(locked.json["code"], "too_many_attempts");
    let retry_after: u64 = locked
        .headers
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    // The client address is locked too: another username from it is refused without a check.
    assert_eq!(server.login("someone", "whatever-pw").await.status, 429);
    server.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let server = TestServer::start().await;
    let first = server.admin_tokens().await;
    let refresh0 = first["refresh"].as_str().expect("refresh").to_owned();

    let rotated = server
        .post_json("/api/token/refresh/", &json!({"refresh": refresh0}))
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.json);
    let refresh1 = rotated.json["refresh"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_ne!(refresh0, refresh1);
    assert!(rotated.json["access"].as_str().is_some());
    assert_eq!(rotated.json["token_type"], "Bearer");

    // Presenting the already-rotated token again: reuse. The family is revoked...
    let reused = server
        .post_json("/api/token/refresh", &json!({"refresh": refresh0}))
        .await;
    assert_eq!(reused.status, 401);
    assert_eq!(reused.json["code"], "token_reused");
    // ...so the legitimate newest token is dead too.
    let after = server
        .post_json("/api/token/refresh", &json!({"refresh": refresh1}))
        .await;
    assert_eq!(after.status, 401);
    assert_eq!(after.json["code"], "invalid_token");

    // A fresh login starts a new, unaffected family.
    let again = server.admin_tokens().await;
    let ok = server
        .post_json("/api/token/refresh", &json!({"refresh": again["refresh"]}))
        .await;
    assert_eq!(ok.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn revoke_ends_the_session() {
    let server = TestServer::start().await;
    let tokens = server.admin_tokens().await;
    let revoked = server
        .post_json("/api/token/revoke/", &json!({"refresh": tokens["refresh"]}))
        .await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.json);
    let refresh = server
        .post_json(
            "/api/token/refresh/",
            &json!({"refresh": tokens["refresh"]}),
        )
        .await;
    assert_eq!(refresh.status, 401);
    // Revoking twice is fine (idempotent logout).
    let again = server
        .post_json("/api/token/revoke", &json!({"refresh": tokens["refresh"]}))
        .await;
    assert_eq!(again.status, 200);
    // An access token is not a refresh token.
    let wrong_kind = server
        .post_json("/api/token/revoke", &json!({"refresh": tokens["access"]}))
        .await;
    assert_eq!(wrong_kind.status, 401);
    assert_eq!(wrong_kind.json["code"], "invalid_token");
    server.stop().await;
}

#[tokio::test]
async fn forged_and_garbage_refresh_tokens_are_refused() {
    let server = TestServer::start().await;
    let tokens = server.admin_tokens().await;
    let refresh = tokens["refresh"].as_str().expect("refresh");
    let mut forged = refresh.to_owned();
    let last = forged.pop().expect("char");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for token in [forged.as_str(), "garbage", "a.b.c", ""] {
        let response = server
            .post_json("/api/token/refresh", &json!({"refresh": token}))
            .await;
        assert_eq!(response.status, 401, "{token}: {:?}", response.json);
        assert_eq!(response.json["code"], "invalid_token");
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_json_errors_with_stable_codes() {
    let server = TestServer::start().await;
    let post = |content_type: &'static str, body: Vec<u8>| {
        let addr = server.addr;
        async move {
            http(
                addr,
                "POST",
                "/api/token",
                &[("content-type", content_type)],
                body,
            )
            .await
        }
    };
    let malformed = post("application/json", b"{\"username\":".to_vec()).await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json["code"], "invalid_json");
    assert!(malformed.json["error"].is_string());

    let wrong_shape = post("application/json", b"{\"username\":1}".to_vec()).await;
    assert_eq!(wrong_shape.status, 400);
    assert_eq!(wrong_shape.json["code"], "bad_request");

    let wrong_type = post("text/plain", b"{}".to_vec()).await;
    assert_eq!(wrong_type.status, 415);
    assert_eq!(wrong_type.json["code"], "unsupported_media_type");

    let oversized = post("application/json", vec![b' '; 64 * 1024 + 1]).await;
    assert_eq!(oversized.status, 413);
    assert_eq!(oversized.json["code"], "payload_too_large");

    let not_found = server.get("/api/nothing-here", &[]).await;
    assert_eq!(not_found.status, 404);
    assert_eq!(not_found.json["code"], "not_found");

    let wrong_method = server.get("/api/token/", &[]).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.json["code"], "method_not_allowed");

    // The server is unharmed.
    assert_eq!(server.get("/healthz", &[]).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn oversized_chunked_body_is_refused_while_reading() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = "POST /api/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b' '; 8192];
    // 9 x 8 KiB > 64 KiB; the server may answer before we finish, so ignore write errors.
    for _ in 0..9 {
        let frame = [
            format!("{:x}\r\n", chunk.len()).as_bytes(),
            &chunk,
            b"\r\n".as_slice(),
        ]
        .concat();
        if stream.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn disabled_user_gets_403_only_with_the_right_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    add_user(dir.path(), "carol", "carol-password", "user");
    let (code, out, err) = crate::common::run_natter(
        &[
            "user",
            "disable",
            "carol",
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let server = TestServer::start_config(test_config(dir.path()))
        .await
        .expect("start");
    let right = server.login("carol", "carol-password").await;
    assert_eq!(right.status, 403);
    assert_eq!(right.json["code"], "account_disabled");
    let wrong = server.login("carol", "wrong-password").await;
    assert_eq!(wrong.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    let health = server.get("/healthz", &[]).await;
    assert_eq!(
        (health.status, health.json.clone()),
        (200, json!({"status": "ok"}))
    );
    let ready = server.get("/readyz/", &[]).await;
    assert_eq!(
        (ready.status, ready.json.clone()),
        (200, json!({"status": "ready"}))
    );
    server.stop().await;
}
