//! The daemon's lifecycle: first-run bootstrap, restart, the data-dir lock, SIGTERM, bind errors
//! and config checking, through the real binary where the process boundary matters.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

use crate::common::{TestServer, natter_bin, run_natter, test_config};

#[tokio::test]
async fn first_start_creates_admin_and_private_secrets() {
    let server = TestServer::start().await;
    for file in ["initial-admin-password", "jwt-secret"] {
        let mode = std::fs::metadata(server.data_dir.join(file))
            .expect(file)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} mode {mode:o}");
    }
    let password = server.admin_password();
    assert!(password.len() >= 20, "{password}");
    server.admin_tokens().await;
    server.stop().await;
}

#[tokio::test]
async fn restart_keeps_users_and_does_not_bootstrap_again() {
    let server = TestServer::start().await;
    let password = server.admin_password();
    let tokens = server.admin_tokens().await;
    let dir = server.stop().await.expect("tempdir");

    let server = TestServer::start_config(test_config(dir.path()))
        .await
        .expect("restart");
    assert_eq!(server.admin_password(), password, "password file untouched");
    let login = server.login("admin", &password).await;
    assert_eq!(login.status, 200, "{:?}", login.json);
    // The signing secret survived too: the refresh token from before the restart still works.
    let refreshed = server
        .post_json(
            "/api/token/refresh",
            &serde_json::json!({"refresh": tokens["refresh"]}),
        )
        .await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.json);
    server.stop().await;
    drop(dir);
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_is_refused_clearly() {
    let server = TestServer::start().await;
    let dir = server.data_dir.to_str().expect("utf-8").to_owned();
    let (code, _out, err) = run_natter(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", &dir],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("natter is already running with data dir {dir}")),
        "{err}"
    );
    // In-process too.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let error = natter::server::Server::new(test_config(&server.data_dir), listener)
        .await
        .err()
        .expect("must fail");
    assert!(error.to_string().contains("already running"), "{error}");
    server.stop().await;
}

/// Starts the binary and waits for its "natter is serving" line; returns the child and address.
fn spawn_daemon(data_dir: &str) -> (std::process::Child, String) {
    let mut child = Command::new(natter_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir])
        .env_remove("NATTER_CONFIG")
        .env("NATTER_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("daemon exited before serving")
            .expect("read stderr");
        if line.contains("natter is serving") {
            let start = line.find("listen=").expect("listen field") + "listen=".len();
            break line[start..]
                .split_whitespace()
                .next()
                .expect("address")
                .to_owned();
        }
    };
    // Keep draining stderr so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[tokio::test]
async fn sigterm_stops_the_daemon_with_exit_0_and_releases_the_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8").to_owned();
    let (mut child, addr) = spawn_daemon(&data_dir);
    let response = crate::common::http(
        addr.parse().expect("addr"),
        "GET",
        "/readyz",
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(response.status, 200);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    // The lock is released and the store is intact: an offline command works at once.
    let (code, out, err) = run_natter(&["user", "list", "--data-dir", &data_dir], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("admin"), "{out}");
}

#[test]
fn bind_failure_is_a_clear_error_with_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _out, err) = run_natter(
        &[
            "serve",
            "--listen",
            &addr,
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[test]
fn check_config_prints_the_effective_config_or_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[server]\nlisten = \"127.0.0.1:9999\"\n").expect("write");
    let (code, out, err) = run_natter(
        &["check-config", "--config", good.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("listen = \"127.0.0.1:9999\""), "{out}");
    assert!(
        out.contains("[auth]") && out.contains("argon2_memory_kib = 19456"),
        "{out}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"127.0.0.1:9999\"\nlisten_port = 3\n",
    )
    .expect("write");
    let (code, _out, err) = run_natter(
        &["check-config", "--config", bad.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml") && err.contains("line 3"), "{err}");
    assert!(err.contains("listen_port"), "{err}");

    let (code, _out, err) = run_natter(&["check-config", "--listen", "not-an-address"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("server.listen"), "{err}");
}

/// With the `systemd` feature: READY=1 once serving, WATCHDOG=1 pings when WATCHDOG_USEC is set,
/// STOPPING=1 on SIGTERM — read from a NOTIFY_SOCKET the test binds.
#[cfg(feature = "systemd")]
#[test]
fn sd_notify_ready_watchdog_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let data_dir = dir.path().join("data");
    let mut child = Command::new(natter_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .env("NATTER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    assert_eq!(next(), "WATCHDOG=1");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let mut seen = next();
    while seen == "WATCHDOG=1" {
        seen = next();
    }
    assert_eq!(seen, "STOPPING=1");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
}
