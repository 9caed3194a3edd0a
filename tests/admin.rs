//! The admin CLI against a running daemon (through its control socket) and offline (on the data
//! dir), online backup while clients write, restore into a fresh data dir, verify, and /metrics.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::natter_on as natter;
use crate::wsclient::Ws;

/// Runs an admin command with --json; panics unless it exits 0.
async fn natter_json(dir: &Path, args: &[&str], stdin: Option<&str>) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let (code, out, err) = natter(dir, &with_json, stdin).await;
    assert_eq!(code, 0, "natter {args:?}: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("natter {args:?}: {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_reach_a_running_daemon_through_its_socket() {
    let server = TestServer::start_with_users(&[("root", "root-password-1", "admin")]).await;
    let dir = server.data_dir.clone();
    assert!(dir.join("natter.sock").exists(), "control socket is there");

    // user add while serving: the daemon's store (it holds the lock) gets the user.
    let added = natter_json(
        &dir,
        &["user", "add", "bob", "--password-stdin"],
        Some("bob-password-1\n"),
    )
    .await;
    assert_eq!(added["created"], true, "{added}");
    let again = natter_json(
        &dir,
        &["user", "add", "bob", "--password-stdin"],
        Some("other-password\n"),
    )
    .await;
    assert_eq!(again["created"], false, "idempotent: {again}");
    let bob = server.access_token("bob", "bob-password-1").await;

    // Rooms.
    let created = natter_json(&dir, &["room", "create", "ops", "--owner", "root"], None).await;
    assert_eq!(created["created"], true, "{created}");
    natter_json(&dir, &["room", "members", "add", "ops", "bob"], None).await;
    let shown = natter_json(&dir, &["room", "show", "ops"], None).await;
    assert_eq!(shown["members"], json!(["bob", "root"]), "{shown}");
    let rooms = natter_json(&dir, &["room", "list"], None).await;
    assert!(
        rooms
            .as_array()
            .is_some_and(|r| r.iter().any(|room| room["name"] == "ops")),
        "{rooms}"
    );

    // Live sessions: bob's socket is listed, stats count it, a kick closes it with 4401.
    let mut ws = Ws::connect(server.addr, &bob).await;
    let joined = ws.request("Join", json!({"room": "ops"}), "j1").await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");
    let sessions = natter_json(&dir, &["sessions", "list"], None).await;
    let listed = sessions.as_array().expect("list");
    assert_eq!(listed.len(), 1, "{sessions}");
    assert_eq!(listed[0]["username"], "bob");
    assert_eq!(listed[0]["dialect"], "native");
    assert_eq!(listed[0]["rooms"], 1);
    let stats = natter_json(&dir, &["stats"], None).await;
    assert_eq!(stats["online"], true, "{stats}");
    assert_eq!(stats["connections"], 1, "{stats}");
    assert_eq!(stats["connections_by_dialect"]["native"], 1, "{stats}");

    // Deleting the room tells its live member.
    let deleted = natter_json(&dir, &["room", "delete", "ops"], None).await;
    assert_eq!(deleted["deleted"], true, "{deleted}");
    let closed = ws
        .recv_where("the removed notice", |f| {
            f["type"] == "Status" && f["data"]["status"] == "removed"
        })
        .await;
    assert_eq!(closed["data"]["details"]["room"], "ops", "{closed}");

    let kicked = natter_json(&dir, &["sessions", "kick", "bob"], None).await;
    assert_eq!(kicked["closed"], 1, "{kicked}");
    assert_eq!(ws.closed().await.0, 4401);
    // Its session is over: the token no longer works.
    let me = server.api("GET", "/api/v1/me", Some(&bob), None).await;
    assert_eq!(me.status, 401, "{:?}", me.json);

    // Usage and failures: exit 2 and 1 with a message on stderr.
    let (code, _, err) = natter(&dir, &["room", "purge", "x", "--before", "soon"], None).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = natter(&dir, &["room", "show", "nope"], None).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no room nope"), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_tokens_are_scoped_and_revocable() {
    let server = TestServer::start_with_users(&[
        ("root", "root-password-1", "admin"),
        ("backend", "backend-password-1", "user"),
    ])
    .await;
    let dir = server.data_dir.clone();
    let root = server.access_token("root", "root-password-1").await;
    let room = server
        .api(
            "POST",
            "/api/v1/rooms",
            Some(&root),
            Some(&json!({"name": "feed"})),
        )
        .await;
    assert_eq!(room.status, 201, "{:?}", room.json);

    let issued = natter_json(
        &dir,
        &[
            "token", "issue", "backend", "--scope", "publish", "--ttl", "30d", "--label", "ci",
        ],
        None,
    )
    .await;
    let token = issued["token"].as_str().expect("token").to_owned();
    let id = issued["id"].as_str().expect("id").to_owned();
    // A plain user with the publish scope may publish ...
    let publish = json!({"room": "feed", "type": "build.done", "data": {"ok": true}});
    let published = server
        .api("POST", "/api/v1/publish", Some(&token), Some(&publish))
        .await;
    assert_eq!(published.status, 200, "{:?}", published.json);
    // ... but not chat: no chat scope.
    let chat = server
        .api("GET", "/api/v1/rooms/feed/messages", Some(&token), None)
        .await;
    assert_eq!(chat.status, 403, "{:?}", chat.json);
    // The admin scope is for admins only.
    let (code, _, err) = natter(
        &dir,
        &["token", "issue", "backend", "--scope", "admin"],
        None,
    )
    .await;
    assert_eq!(code, 2, "{err}");

    let listed = natter_json(&dir, &["token", "list"], None).await;
    assert_eq!(listed[0]["label"], "ci", "{listed}");
    assert_eq!(listed[0]["status"], "active", "{listed}");
    natter_json(&dir, &["token", "revoke", &id], None).await;
    let refused = server
        .api("POST", "/api/v1/publish", Some(&token), Some(&publish))
        .await;
    assert_eq!(refused.status, 401, "{:?}", refused.json);
    let again = natter_json(&dir, &["token", "revoke", &id], None).await;
    assert_eq!(again["revoked"], false, "idempotent: {again}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_commands_work_on_the_data_dir_and_refuse_what_needs_the_daemon() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let initialised = natter_json(dir, &["init"], None).await;
    assert_eq!(initialised["created"], true, "{initialised}");
    natter_json(
        dir,
        &[
            "user",
            "add",
            "carol",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("carol-password-1\n"),
    )
    .await;
    let created = natter_json(dir, &["room", "create", "lobby", "--owner", "carol"], None).await;
    assert_eq!(created["created"], true);
    let stats = natter_json(dir, &["stats"], None).await;
    assert_eq!(stats["online"], false, "{stats}");
    assert_eq!(stats["rooms"], 1, "{stats}");
    let sessions = natter_json(dir, &["sessions", "list"], None).await;
    assert_eq!(sessions, json!([]));
    let (code, _, err) = natter(dir, &["sessions", "kick", "carol"], None).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not running"), "{err}");
    let verified = natter_json(dir, &["verify"], None).await;
    assert_eq!(verified["problems"], json!([]), "{verified}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_backup_while_clients_write_restores_into_a_fresh_data_dir() {
    // Writers as fast as the store takes them: no per-user message rate in the way.
    let server = TestServer::start_with_users_and(&[("root", "root-password-1", "admin")], |c| {
        c.ws.message_burst = 100_000;
    })
    .await;
    let dir = server.data_dir.clone();
    let token = server.access_token("root", "root-password-1").await;
    for room in ["a", "b"] {
        let created = server
            .api(
                "POST",
                "/api/v1/rooms",
                Some(&token),
                Some(&json!({"name": room})),
            )
            .await;
        assert_eq!(created.status, 201);
    }
    // Writers keep sending (each message acknowledged after its flush) while the backup runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for room in ["a", "b"] {
        let (addr, token, stop) = (server.addr, token.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..2000u32 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let body = json!({"content": format!("{room}-{i}")}).to_string();
                let path = format!("/api/v1/rooms/{room}/messages");
                let auth = format!("Bearer {token}");
                let response = crate::common::http(
                    addr,
                    "POST",
                    &path,
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                    ],
                    body.into_bytes(),
                )
                .await;
                assert_eq!(response.status, 201, "{:?}", response.json);
                acked.push(response.json["seq"].as_u64().expect("seq"));
            }
            acked
        }));
    }
    // Let some writes land first (observable: the rooms' sequences move).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let page = server
            .api("GET", "/api/v1/rooms/b/messages", Some(&token), None)
            .await;
        if page.json["messages"]
            .as_array()
            .is_some_and(|m| m.len() >= 20)
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "writers are stuck");
        tokio::task::yield_now().await;
    }
    let backup_dir = tempfile::tempdir().expect("tempdir");
    let file = backup_dir.path().join("natter.backup");
    let file_str = file.to_str().expect("utf-8").to_owned();
    // Everything acknowledged before the backup starts must be in it.
    let before_a = last_seq(&server, &token, "a").await;
    let before_b = last_seq(&server, &token, "b").await;
    let backup = natter_json(&dir, &["backup", &file_str], None).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer");
    }
    assert!(file.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary backup left in the data dir"
    );

    // Verify the file, restore it into a fresh dir, verify that: the same digest.
    let checked = natter_json(&dir, &["verify", "--backup", &file_str], None).await;
    assert_eq!(checked["digest"], backup["digest"], "{checked}");
    let fresh = tempfile::tempdir().expect("tempdir");
    let restored_dir = fresh.path().join("restored");
    let restored = natter_json(&restored_dir, &["restore", &file_str], None).await;
    assert_eq!(restored["digest"], backup["digest"]);
    let verified = natter_json(&restored_dir, &["verify"], None).await;
    assert_eq!(verified["digest"], backup["digest"], "{verified}");
    assert_eq!(verified["problems"], json!([]), "{verified}");
    assert_eq!(verified["epoch"], 1, "restore bumps the epoch");
    // Restoring over an existing store is refused.
    let (code, _, err) = natter(&restored_dir, &["restore", &file_str], None).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already holds a store"), "{err}");
    server.stop().await;

    // The restored store serves, with the same secret (old tokens still valid) and every
    // message acknowledged before the backup began, each once and in order.
    let mut config = crate::common::test_config(&restored_dir);
    config.store.data_dir = restored_dir.clone();
    let restored_server = TestServer::start_config(config)
        .await
        .expect("restored serves");
    for (room, before) in [("a", before_a), ("b", before_b)] {
        let seqs = all_seqs(&restored_server, &token, room).await;
        assert!(
            seqs.len() as u64 >= before,
            "{room}: {} < {before}",
            seqs.len()
        );
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "{room}: gapless, ordered, no duplicates");
    }
    restored_server.stop().await;
}

async fn last_seq(server: &TestServer, token: &str, room: &str) -> u64 {
    let response = server
        .api("GET", &format!("/api/v1/rooms/{room}"), Some(token), None)
        .await;
    response.json["last_seq"].as_u64().expect("last_seq")
}

/// Every sequence number of a room's history, paging forward.
async fn all_seqs(server: &TestServer, token: &str, room: &str) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let after = seqs.last().copied().unwrap_or(0);
        let path = format!("/api/v1/rooms/{room}/messages?after={after}&limit=200");
        let page = server.api("GET", &path, Some(token), None).await;
        assert_eq!(page.status, 200, "{:?}", page.json);
        let messages = page.json["messages"].as_array().expect("messages").clone();
        if messages.is_empty() {
            return seqs;
        }
        seqs.extend(messages.iter().map(|m| m["seq"].as_u64().expect("seq")));
    }
}

/// Parses Prometheus text: `name{labels} value` lines; panics on a malformed line.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        samples.push((series.to_owned(), value));
    }
    samples
}

fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {series}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_when_messages_flow() {
    let server = TestServer::start_with_users(&[("root", "root-password-1", "admin")]).await;
    let token = server.access_token("root", "root-password-1").await;
    let scrape = || async {
        let response = crate::common::http(server.addr, "GET", "/metrics", &[], Vec::new()).await;
        assert_eq!(response.status, 200);
        let content_type = response.headers["content-type"].to_str().expect("ascii");
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        parse_prometheus(response.json.as_str().expect("a text body"))
    };
    let before = scrape().await;
    assert_eq!(sample(&before, "natter_logins_total"), 1.0);
    let mut ws = Ws::connect(server.addr, &token).await;
    let created = server
        .api(
            "POST",
            "/api/v1/rooms",
            Some(&token),
            Some(&json!({"name": "m"})),
        )
        .await;
    assert_eq!(created.status, 201);
    ws.request("Join", json!({"room": "m"}), "j2").await;
    // A second connection receives the messages through the hub.
    let mut listener = Ws::connect(server.addr, &token).await;
    listener.request("Join", json!({"room": "m"}), "j3").await;
    for i in 0..5 {
        let ack = ws
            .request(
                "Send",
                json!({"room": "m", "content": format!("hi {i}")}),
                &format!("s{i}"),
            )
            .await;
        assert_eq!(ack["type"], "Ack", "{ack}");
    }
    // Received (hence written by the server) before the scrape below.
    for _ in 0..5 {
        listener.recv_type("Message").await;
    }
    let bad = server.login("root", "wrong-password").await;
    assert_eq!(bad.status, 401);
    let after = scrape().await;
    assert_eq!(
        sample(&after, "natter_connections{dialect=\"native\"}"),
        2.0
    );
    assert_eq!(
        sample(&after, "natter_messages_total{type=\"sent\"}")
            - sample(&before, "natter_messages_total{type=\"sent\"}"),
        5.0
    );
    assert_eq!(sample(&after, "natter_login_failures_total"), 1.0);
    assert!(
        sample(&after, "natter_store_flush_seconds_count")
            > sample(&before, "natter_store_flush_seconds_count")
    );
    assert!(sample(&after, "natter_delivery_latency_seconds_count") >= 1.0);
    assert!(sample(&after, "natter_frames_out_total") >= 5.0);
    assert!(sample(&after, "process_resident_memory_bytes") > 0.0);
    drop((ws, listener));
    server.stop().await;
}
