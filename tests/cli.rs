//! The offline user commands, through the real binary, and their effect on a running server.

use serde_json::Value;

use crate::common::{TestServer, add_user, run_natter, test_config};

fn natter_in(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--data-dir", dir.to_str().expect("utf-8")]);
    run_natter(&full, stdin)
}

fn users_json(dir: &std::path::Path) -> Vec<Value> {
    let (code, out, err) = natter_in(dir, &["user", "list", "--json"], None);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Vec<Value>>(&out).expect("json list")
}

#[tokio::test]
async fn every_user_command_works_offline_and_takes_effect() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();

    add_user(dir, "alice", "alice-password-1", "user");
    add_user(dir, "bob", "bob-password-1", "admin");
    let users = users_json(dir);
    let names: Vec<&str> = users
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, vec!["alice", "bob"]);
    assert!(
        users.iter().all(|u| u.get("password_hash").is_none()),
        "no hashes in output"
    );
    assert_eq!(users[1]["role"], "admin");

    // Adding an existing user is idempotent: it succeeds and changes nothing. Bad names fail
    // with exit 1 and a message.
    let (code, out, err) = natter_in(
        dir,
        &["user", "add", "alice", "--password-stdin"],
        Some("x-password\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("exists already (unchanged)"), "{out}");
    let (code, _, err) = natter_in(
        dir,
        &["user", "add", "Bad Name", "--password-stdin"],
        Some("x-password\n"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("username"), "{err}");
    // No password source and no terminal: a usage error, never a password on argv.
    let (code, _, err) = natter_in(dir, &["user", "add", "dave"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--password-stdin"), "{err}");

    let (code, _, err) = natter_in(
        dir,
        &["user", "passwd", "alice", "--password-stdin"],
        Some("alice-password-2\n"),
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = natter_in(dir, &["user", "set-role", "alice", "admin"], None);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = natter_in(dir, &["user", "show", "alice", "--json"], None);
    assert_eq!(code, 0, "{err}");
    let alice: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(alice["role"], "admin");

    let (code, _, err) = natter_in(dir, &["user", "disable", "bob"], None);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = natter_in(dir, &["user", "enable", "bob"], None);
    assert_eq!(code, 0, "{err}");
    add_user(dir, "eve", "eve-password-1", "user");
    let (code, _, err) = natter_in(dir, &["user", "remove", "eve"], None);
    assert_eq!(code, 0, "{err}");
    // Removing what is gone succeeds and says so (idempotent); showing it fails.
    let (code, out, err) = natter_in(dir, &["user", "remove", "eve"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing to do"), "{out}");
    let (code, _, err) = natter_in(dir, &["user", "show", "eve"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no user eve"), "{err}");

    // The effects, seen by a running server (without its control socket, see below).
    let mut config = test_config(dir);
    config.control.enabled = false;
    let server = TestServer::start_config(config).await.expect("start");
    assert_eq!(server.login("alice", "alice-password-1").await.status, 401);
    let alice = server.login("alice", "alice-password-2").await;
    assert_eq!(alice.status, 200);
    let claims = crate::common::jwt_claims(alice.json["access"].as_str().expect("access"));
    assert_eq!(claims["role"], "admin");
    assert_eq!(server.login("bob", "bob-password-1").await.status, 200);
    assert_eq!(server.login("eve", "eve-password-1").await.status, 401);
    // Users existed, so no bootstrap admin was made.
    assert!(!dir.join("initial-admin-password").exists());

    // A daemon that holds the data dir but serves no control socket: commands refuse clearly
    // instead of touching its store. (With the socket, they go through it: tests/admin.rs.)
    let (code, _, err) = natter_in(dir, &["user", "list"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("does not answer on its control socket"),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn last_admin_cannot_be_demoted_disabled_or_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    add_user(dir, "root", "root-password-1", "admin");
    for args in [
        vec!["user", "set-role", "root", "user"],
        vec!["user", "disable", "root"],
        vec!["user", "remove", "root"],
    ] {
        let (code, _, err) = natter_in(dir, &args, None);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains("last enabled admin"), "{err}");
    }
}

#[tokio::test]
async fn password_change_ends_existing_sessions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    add_user(dir, "frank", "frank-password-1", "user");
    let server = TestServer::start_config(test_config(dir))
        .await
        .expect("start");
    let tokens = server.login("frank", "frank-password-1").await.json;
    server.stop().await;
    let (code, _, err) = natter_in(
        dir,
        &["user", "passwd", "frank", "--password-stdin"],
        Some("frank-password-2\n"),
    );
    assert_eq!(code, 0, "{err}");
    let server = TestServer::start_config(test_config(dir))
        .await
        .expect("restart");
    let refresh = server
        .post_json(
            "/api/token/refresh",
            &serde_json::json!({"refresh": tokens["refresh"]}),
        )
        .await;
    assert_eq!(refresh.status, 401);
    server.stop().await;
}
