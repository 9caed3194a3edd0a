//! Issue 19 (security hardening), part A: request bodies with a deadline and connections with a
//! cap (BUG-2), a full disk as a state that `/readyz` reports and that ends without a restart
//! (BUG-7), no stored values in the log (BUG-12), a private data dir (BUG-17), the `Secure`
//! cookie under TLS (BUG-20), and admin commands that never create a stray store.

use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::common::{TestServer, http, natter_bin};
use crate::daemon::Daemon;

/// Runs the natter binary with `args`, no config file, and `env` (exit code, stdout, stderr).
fn natter_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(natter_bin());
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("NATTER_") {
            command.env_remove(name);
        }
    }
    command.env("NATTER_CONFIG", "").env("NATTER_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn natter");
    if let Some(input) = stdin {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let output = child.wait_with_output().expect("natter output");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// How a byte string looks in a `{:?}` of a byte slice (sled's trace lines print values so).
fn as_debug_bytes(text: &str) -> String {
    text.bytes()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Asserts that no line of `log` holds a stored value: a password hash, `secret` in plain or
/// as sled prints bytes, or a sled line below info.
fn assert_no_stored_values(what: &str, log: &str, secret: &str) {
    for needle in [
        "argon2id".to_owned(),
        as_debug_bytes("$argon2id$"),
        secret.to_owned(),
        as_debug_bytes(secret),
    ] {
        assert!(
            !log.contains(&needle),
            "{what} holds {needle:?}:\n{}",
            log.lines()
                .filter(|l| l.contains(&needle))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let sled_below_info = log
        .lines()
        .find(|l| l.contains("sled") && (l.contains("TRACE") || l.contains("DEBUG")));
    assert!(sled_below_info.is_none(), "{what}: {sled_below_info:?}");
}

/// BUG-12: at `NATTER_LOG=trace`, neither the daemon's log nor the CLI's stderr holds a password
/// hash or a message: sled, which logs every value it writes at trace, is capped at info.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logging_holds_no_password_hash_and_no_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let daemon = Daemon::start(&data_dir, &[("NATTER_LOG", "trace")]).expect("daemon starts");
    let admin_password = std::fs::read_to_string(data_dir.join("initial-admin-password"))
        .expect("admin password")
        .trim()
        .to_owned();
    let admin = crate::common::access_token(daemon.addr, "admin", &admin_password).await;
    let created = http(
        daemon.addr,
        "POST",
        "/api/v1/users",
        &[
            ("authorization", &bearer(&admin)),
            ("content-type", "application/json"),
        ],
        json!({"username": "carol", "password": "carol-password-12345"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    let carol = crate::common::access_token(daemon.addr, "carol", "carol-password-12345").await;
    let room = http(
        daemon.addr,
        "POST",
        "/api/v1/rooms",
        &[
            ("authorization", &bearer(&carol)),
            ("content-type", "application/json"),
        ],
        json!({"name": "logged"}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(room.status, 201, "{:?}", room.json);
    let secret = "the-vault-code-is-xyzzy-4711";
    let posted = http(
        daemon.addr,
        "POST",
        "/api/v1/rooms/logged/messages",
        &[
            ("authorization", &bearer(&carol)),
            ("content-type", "application/json"),
        ],
        json!({"content": secret}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(posted.status, 201, "{:?}", posted.json);
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{}", log.join("\n"));
    let log = log.join("\n");
    // The trace level is really on (natter's own trace lines are there).
    assert!(log.contains("TRACE"), "no trace lines at all:\n{log}");
    assert_no_stored_values("the daemon's log", &log, secret);

    // The CLI on the stopped daemon's store: its stderr is the log.
    let dir = data_dir.to_str().expect("utf-8");
    let (code, out, err) = natter_with(
        &[
            "user",
            "passwd",
            "carol",
            "--password-stdin",
            "--data-dir",
            dir,
        ],
        &[("NATTER_LOG", "trace")],
        Some("carol-password-67890\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err2) = natter_with(
        &["room", "show", "logged", "--data-dir", dir],
        &[("NATTER_LOG", "trace")],
        None,
    );
    assert_eq!(code, 0, "{out}{err2}");
    assert_no_stored_values("the CLI's stderr", &format!("{err}\n{err2}"), secret);
}

/// A self-signed certificate for localhost in `dir` (cert.pem, key.pem); returns it.
fn write_certificate(dir: &std::path::Path) -> CertificateDer<'static> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).expect("cert file");
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).expect("key file");
    certified.cert.der().clone()
}

/// One HTTP/1.1 request over TLS to `server` (trusting exactly `cert`); the raw answer.
async fn https_request(
    server: &TestServer,
    cert: &CertificateDer<'static>,
    request: &str,
) -> String {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).expect("root");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(request.as_bytes()).await.expect("request");
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer).await;
    answer
}

/// The `Set-Cookie` header of a raw HTTP answer.
fn set_cookie(answer: &str) -> Option<&str> {
    answer.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("set-cookie")
            .then(|| value.trim())
    })
}

/// BUG-20: with `[tls]`, the `natter_access` cookie of a login, a refresh and a logout is
/// `Secure` (a browser never sends it over plain HTTP); without TLS it is not (it would never be
/// sent back over http://).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_cookie_is_secure_under_tls() {
    let certs = tempfile::tempdir().expect("tempdir");
    let cert = write_certificate(certs.path());
    let server = TestServer::start_with(|config| {
        config.tls.cert_file = certs.path().join("cert.pem");
        config.tls.key_file = certs.path().join("key.pem");
    })
    .await;
    let login = json!({"username": "admin", "password": server.admin_password()}).to_string();
    let answer = https_request(
        &server,
        &cert,
        &format!(
            "POST /api/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{login}",
            login.len()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let cookie = set_cookie(&answer).expect("a cookie");
    assert!(cookie.starts_with("natter_access="), "{cookie}");
    let flags: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(flags.contains(&"Secure"), "{cookie}");
    assert!(flags.contains(&"HttpOnly"), "{cookie}");
    let body = answer.split("\r\n\r\n").nth(1).expect("body");
    let pair: Value = serde_json::from_str(body.trim()).expect("token pair");
    let refresh = json!({"refresh": pair["refresh"]}).to_string();
    for path in ["/api/token/refresh", "/api/token/revoke"] {
        let answer = https_request(
            &server,
            &cert,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{refresh}",
                refresh.len()
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        let cookie = set_cookie(&answer).expect("a cookie");
        assert!(
            cookie.split(';').map(str::trim).any(|f| f == "Secure"),
            "{path}: {cookie}"
        );
    }
    server.stop().await;

    let plain = TestServer::start().await;
    let answer = plain.login("admin", &plain.admin_password()).await;
    assert_eq!(answer.status, 200);
    let cookie = answer
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a cookie");
    assert!(
        !cookie.split(';').map(str::trim).any(|f| f == "Secure"),
        "{cookie}"
    );
    plain.stop().await;
}
