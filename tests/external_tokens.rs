//! Tokens of external issuers (`[[auth.external]]`): an HS256 application, an EdDSA and an RS256
//! identity provider. Their users are created on first sight and mapped on every later use; bad
//! tokens (signature, issuer, audience, expiry, algorithm) are refused with 401, a disabled user
//! with 403. The EdDSA and RSA keypairs are test-only fixtures (tests/fixtures/external-*.pem,
//! made once with `openssl genpkey`).

use std::path::{Path, PathBuf};

use natter::config::{Config, ExternalAlgorithm, ExternalIssuerConfig};
use serde_json::{Value, json};

use crate::common::{TestServer, sign_jwt, test_config};
use crate::wsclient::{Ws, raw_connect};

const APP_ISSUER: &str = "https://app.example.com";
const APP_SECRET: &str = "the-app-and-natter-share-this-secret-0123456789";
const IDP_ISSUER: &str = "https://idp.example.com";
const RSA_ISSUER: &str = "rsa-app";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn now() -> i64 {
    natter::store::now_secs()
}

/// The three issuers; the HS256 secret is written into `dir`.
fn configure(config: &mut Config) {
    let secret_file = config.store.data_dir.join("app.secret");
    std::fs::write(&secret_file, format!("{APP_SECRET}\n")).expect("write secret");
    config.auth.external = vec![
        ExternalIssuerConfig {
            issuer: APP_ISSUER.to_owned(),
            audience: "natter".to_owned(),
            algorithm: ExternalAlgorithm::HS256,
            secret_file,
            ..ExternalIssuerConfig::default()
        },
        ExternalIssuerConfig {
            issuer: IDP_ISSUER.to_owned(),
            algorithm: ExternalAlgorithm::EdDSA,
            public_key_file: fixture("external-ed25519.pub.pem"),
            user_id_claim: "uid".to_owned(),
            username_claim: "preferred_username".to_owned(),
            ..ExternalIssuerConfig::default()
        },
        ExternalIssuerConfig {
            issuer: RSA_ISSUER.to_owned(),
            algorithm: ExternalAlgorithm::RS256,
            public_key_file: fixture("external-rsa.pub.pem"),
            ..ExternalIssuerConfig::default()
        },
    ];
}

async fn start() -> TestServer {
    TestServer::start_with(configure).await
}

/// An HS256 token of the app issuer for `sub`, with `extra` claims merged over the defaults.
fn app_token(sub: &str, extra: Value) -> String {
    let mut claims = json!({
        "iss": APP_ISSUER,
        "aud": "natter",
        "sub": sub,
        "iat": now(),
        "exp": now() + 300,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    merge(&mut claims, extra);
    sign_jwt("HS256", APP_SECRET.as_bytes(), &claims)
}

/// The identity provider's private key (PKCS#8 PEM).
fn ed_key() -> Vec<u8> {
    std::fs::read(fixture("external-ed25519.pem")).expect("ed25519 fixture")
}

/// An EdDSA token of the identity provider, with `extra` claims merged over the defaults.
fn idp_token(extra: Value) -> String {
    let mut claims = json!({"iss": IDP_ISSUER, "exp": now() + 300});
    merge(&mut claims, extra);
    sign_jwt("EdDSA", &ed_key(), &claims)
}

fn merge(claims: &mut Value, extra: Value) {
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        for (key, value) in extra {
            if value.is_null() {
                claims.remove(&key);
            } else {
                claims.insert(key, value);
            }
        }
    }
}

async fn me(server: &TestServer, token: &str) -> crate::common::Response {
    server.api("GET", "/api/v1/me", Some(token), None).await
}

async fn usernames(server: &TestServer, admin: &str) -> Vec<String> {
    let response = server.api("GET", "/api/v1/users", Some(admin), None).await;
    assert_eq!(response.status, 200, "{:?}", response.json);
    response.json["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["username"].as_str().expect("username").to_owned())
        .collect()
}

#[tokio::test]
async fn first_use_creates_the_user_and_later_uses_map_to_it() {
    let server = start().await;
    let admin = server.admin_tokens().await["access"]
        .as_str()
        .expect("access")
        .to_owned();
    assert_eq!(usernames(&server, &admin).await, ["admin"]);

    let first = me(
        &server,
        &app_token("u-1001", json!({"username": "Alice Smith"})),
    )
    .await;
    assert_eq!(first.status, 200, "{:?}", first.json);
    assert_eq!(first.json["username"], "alice_smith");
    assert_eq!(first.json["role"], "user");
    assert_eq!(usernames(&server, &admin).await, ["admin", "alice_smith"]);

    // Another token (new jti, renamed in the app): the same natter user, nothing new created.
    let second = me(
        &server,
        &app_token("u-1001", json!({"username": "alice.renamed"})),
    )
    .await;
    assert_eq!(second.status, 200, "{:?}", second.json);
    assert_eq!(second.json["id"], first.json["id"]);
    assert_eq!(second.json["username"], "alice_smith");
    assert_eq!(usernames(&server, &admin).await, ["admin", "alice_smith"]);

    // Another user id of the same app is another user.
    let other = me(&server, &app_token("u-1002", json!({"username": "bob"}))).await;
    assert_eq!(other.status, 200, "{:?}", other.json);
    assert_ne!(other.json["id"], first.json["id"]);

    // No password works for a provisioned user.
    for password in ["", "u-1001", APP_SECRET] {
        assert_eq!(server.login("alice_smith", password).await.status, 401);
    }
    // natter's own tokens are unaffected.
    assert_eq!(me(&server, &admin).await.status, 200);

    // The mapping is durable: it survives a restart.
    let tmp = server.stop().await.expect("temp dir");
    let mut config = test_config(tmp.path());
    configure(&mut config);
    let server = TestServer::start_config(config).await.expect("restart");
    let again = me(&server, &app_token("u-1001", json!({}))).await;
    assert_eq!(again.status, 200, "{:?}", again.json);
    assert_eq!(again.json["id"], first.json["id"]);
    server.stop().await;
    drop(tmp);
}

#[tokio::test]
async fn eddsa_token_opens_a_websocket_as_its_user() {
    let server = start().await;
    // An integer user id and no username claim: the name comes from the id.
    let token = idp_token(json!({"uid": 42, "jti": "t-1"}));
    let mut ws = Ws::connect(server.addr, &token).await;
    assert_eq!(ws.welcome["user"]["username"], "user-42", "{}", ws.welcome);
    assert_eq!(ws.welcome["user"]["role"], "user", "{}", ws.welcome);
    let user_id = ws.welcome["user"]["id"].clone();

    // The socket works as that user.
    let ack = ws
        .request("SetStatus", json!({"status": "away"}), "st")
        .await;
    assert_eq!(ack["type"], "Ack", "{ack}");

    let again = me(
        &server,
        &idp_token(json!({"uid": 42, "preferred_username": "Someone"})),
    )
    .await;
    assert_eq!(again.status, 200, "{:?}", again.json);
    assert_eq!(again.json["id"], user_id);
    assert_eq!(again.json["username"], "user-42");

    // The same id as a string from the app issuer is a different identity.
    let app = me(&server, &app_token("42", json!({}))).await;
    assert_eq!(app.status, 200, "{:?}", app.json);
    assert_ne!(app.json["id"], user_id);
    assert_eq!(app.json["username"], "user-42-2");
    server.stop().await;
}

#[tokio::test]
async fn rs256_token_is_accepted() {
    let server = start().await;
    let key = std::fs::read(fixture("external-rsa.pem")).expect("rsa fixture");
    let token = sign_jwt(
        "RS256",
        &key,
        &json!({"iss": RSA_ISSUER, "sub": "carol", "exp": now() + 300}),
    );
    let response = me(&server, &token).await;
    assert_eq!(response.status, 200, "{:?}", response.json);
    assert_eq!(response.json["username"], "carol");
    // RS256 is pinned for this issuer: the same claims signed EdDSA are refused.
    let ed = sign_jwt(
        "EdDSA",
        &ed_key(),
        &json!({"iss": RSA_ISSUER, "sub": "carol", "exp": now() + 300}),
    );
    assert_eq!(me(&server, &ed).await.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_create_nobody() {
    let server = start().await;
    let admin = server.admin_tokens().await["access"]
        .as_str()
        .expect("access")
        .to_owned();
    let app_claims = json!({
        "iss": APP_ISSUER, "aud": "natter", "sub": "mallory", "exp": now() + 300,
    });
    let public_pem = std::fs::read(fixture("external-ed25519.pub.pem")).expect("public key");
    let cases = [
        (
            "wrong signature",
            sign_jwt(
                "HS256",
                b"another-secret-that-is-long-enough-123456",
                &app_claims,
            ),
        ),
        (
            "unknown issuer",
            app_token("mallory", json!({"iss": "https://evil.example.com"})),
        ),
        (
            "wrong audience",
            app_token("mallory", json!({"aud": "other"})),
        ),
        ("no audience", app_token("mallory", json!({"aud": null}))),
        (
            "expired",
            app_token("mallory", json!({"exp": now() - 3600, "iat": now() - 7200})),
        ),
        ("no expiry", app_token("mallory", json!({"exp": null}))),
        (
            "not yet valid",
            app_token("mallory", json!({"nbf": now() + 3600})),
        ),
        ("no user id", app_token("mallory", json!({"sub": null}))),
        (
            "HS256 issuer, EdDSA token",
            sign_jwt("EdDSA", &ed_key(), &app_claims),
        ),
        // The classic confusion: an HS256 token keyed with the EdDSA issuer's public key.
        (
            "EdDSA issuer, HS256 token",
            sign_jwt(
                "HS256",
                &public_pem,
                &json!({"iss": IDP_ISSUER, "uid": "mallory", "exp": now() + 300}),
            ),
        ),
        (
            "EdDSA issuer, wrong key",
            sign_jwt(
                "HS256",
                APP_SECRET.as_bytes(),
                &json!({"iss": IDP_ISSUER, "uid": "mallory", "exp": now() + 300}),
            ),
        ),
    ];
    for (case, token) in &cases {
        let response = me(&server, token).await;
        assert_eq!(response.status, 401, "{case}: {:?}", response.json);
        assert_eq!(response.json["code"], "invalid_token", "{case}");
    }
    // A WebSocket with a bad token is closed with 4401.
    let (_, expired) = &cases[4];
    let mut socket = Ws {
        socket: raw_connect(server.addr, &format!("/ws?token={expired}"), &[]).await,
        welcome: Value::Null,
    };
    assert_eq!(socket.closed().await.0, 4401);
    // The control: the same claims, rightly signed, are accepted (after checking nobody exists).
    assert_eq!(usernames(&server, &admin).await, ["admin"]);
    assert_eq!(
        me(&server, &app_token("mallory", json!({}))).await.status,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn username_collision_gets_a_numeric_suffix() {
    let server = start().await;
    let admin_me = me(
        &server,
        server.admin_tokens().await["access"]
            .as_str()
            .expect("access"),
    )
    .await;
    let first = me(&server, &app_token("x-1", json!({"username": "Admin"}))).await;
    assert_eq!(first.status, 200, "{:?}", first.json);
    assert_eq!(first.json["username"], "admin-2");
    assert_ne!(first.json["id"], admin_me.json["id"]);
    assert_eq!(first.json["role"], "user");
    let second = me(&server, &app_token("x-2", json!({"username": "admin"}))).await;
    assert_eq!(second.json["username"], "admin-3", "{:?}", second.json);
    // The first identity keeps its name.
    let first_again = me(&server, &app_token("x-1", json!({"username": "admin"}))).await;
    assert_eq!(first_again.json["username"], "admin-2");
    assert_eq!(first_again.json["id"], first.json["id"]);
    server.stop().await;
}

#[tokio::test]
async fn disabled_provisioned_user_gets_403() {
    let server = start().await;
    let admin = server.admin_tokens().await["access"]
        .as_str()
        .expect("access")
        .to_owned();
    let token = app_token("d-1", json!({"username": "dave"}));
    assert_eq!(me(&server, &token).await.status, 200);
    let mut live = Ws::connect(server.addr, &token).await;

    let disabled = server
        .api("POST", "/api/v1/users/dave/disable", Some(&admin), None)
        .await;
    assert_eq!(disabled.status, 200, "{:?}", disabled.json);
    // The live socket is closed, and new uses (a fresh token too) are refused with 403.
    assert_eq!(live.closed().await.0, 4403);
    let refused = me(&server, &token).await;
    assert_eq!(refused.status, 403, "{:?}", refused.json);
    assert_eq!(refused.json["code"], "account_disabled");
    assert_eq!(me(&server, &app_token("d-1", json!({}))).await.status, 403);
    let mut socket = Ws {
        socket: raw_connect(server.addr, &format!("/ws?token={token}"), &[]).await,
        welcome: Value::Null,
    };
    assert_eq!(socket.closed().await.0, 4403);

    let enabled = server
        .api("POST", "/api/v1/users/dave/enable", Some(&admin), None)
        .await;
    assert_eq!(enabled.status, 200, "{:?}", enabled.json);
    assert_eq!(me(&server, &token).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn startup_fails_naming_the_issuer_whose_key_is_unusable() {
    for (secret, expected) in [
        (None, "No such file"),
        (Some("too-short"), "shorter than 32 bytes"),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(tmp.path());
        let secret_file = tmp.path().join("app.secret");
        if let Some(secret) = secret {
            std::fs::write(&secret_file, secret).expect("write");
        }
        config.auth.external = vec![ExternalIssuerConfig {
            issuer: APP_ISSUER.to_owned(),
            secret_file,
            ..ExternalIssuerConfig::default()
        }];
        let error = match TestServer::start_config(config).await {
            Ok(server) => {
                server.stop().await;
                panic!("started with an unusable key");
            }
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(APP_ISSUER), "{error}");
        assert!(error.contains(expected), "{error}");
    }
    // A public key of the other kind, or no public key at all.
    for (algorithm, file, expected) in [
        (
            ExternalAlgorithm::EdDSA,
            "external-rsa.pub.pem",
            "not an Ed25519 public key in PEM: the PUBLIC KEY is not an Ed25519 key",
        ),
        (
            ExternalAlgorithm::RS256,
            "external-ed25519.pub.pem",
            "not an RSA public key in PEM: the PUBLIC KEY is not an RSA key",
        ),
        (
            ExternalAlgorithm::RS256,
            "external-rsa.pem",
            "not an RSA public key in PEM: no \"PUBLIC KEY\" or \"RSA PUBLIC KEY\" PEM block",
        ),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(tmp.path());
        config.auth.external = vec![ExternalIssuerConfig {
            issuer: IDP_ISSUER.to_owned(),
            algorithm,
            public_key_file: fixture(file),
            ..ExternalIssuerConfig::default()
        }];
        let error = TestServer::start_config(config)
            .await
            .err()
            .map(|e| format!("{e:#}"))
            .expect("refused");
        assert!(error.contains(IDP_ISSUER), "{error}");
        assert!(error.contains(file), "{error}");
        assert!(error.contains(expected), "{error}");
    }
}
