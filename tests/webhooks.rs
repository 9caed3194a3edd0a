//! Webhooks (issue 17): events reach a receiver on 127.0.0.1 that checks every signature with
//! PyPI's `standardwebhooks` (tests/push/webhook_receiver.py, run by the python of
//! `NATTER_TEST_PYTHON`: a venv with standardwebhooks==1.1.0); retries, the outbox surviving a
//! SIGKILL, its bound with a dead receiver, auto-disable and `natter webhook` itself.
//!
//! Without `NATTER_TEST_PYTHON` the receiver tests say SKIPPED on stderr and pass; the tests
//! that need no receiver (a dead one is a closed port) always run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use natter::config::{Config, WebhookEndpointConfig};
use serde_json::{Value, json};

use crate::common::{Team, WAIT, access_token, add_user, http, natter_on};
use crate::daemon::Daemon;
use crate::wsclient::Ws;

/// The secret the configured endpoints share with the receiver (32 bytes).
fn secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"natter webhook test secret 32 b.")
    )
}

/// The receiver process and the lines it printed so far.
struct Receiver {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

/// The python of `NATTER_TEST_PYTHON`, or `None` (said loudly) when it is not set.
fn python() -> Option<String> {
    match std::env::var("NATTER_TEST_PYTHON") {
        Ok(path) if !path.is_empty() => Some(path),
        _ => {
            eprintln!(
                "SKIPPED: NATTER_TEST_PYTHON not set (a python with standardwebhooks==1.1.0); \
                 the webhook receiver checks did not run"
            );
            None
        }
    }
}

impl Receiver {
    /// Starts the receiver with `secret` on `port` (0: any), answering `statuses` first.
    /// `None` when there is no python to run it; a python that cannot run it fails the test.
    fn start(secret: &str, port: u16, statuses: &str) -> Option<Receiver> {
        let python = python()?;
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/push/webhook_receiver.py"
        );
        let mut child = Command::new(&python)
            .arg(script)
            .arg(secret)
            .args(["--port", &port.to_string(), "--statuses", statuses])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("NATTER_TEST_PYTHON={python} cannot run: {e}"));
        let stdout = child.stdout.take().expect("receiver stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!("the receiver ({python}) printed no port: is standardwebhooks installed?")
        });
        let port = u16::try_from(first["port"].as_u64().expect("port")).expect("port");
        Some(Receiver {
            child,
            port,
            lines,
            seen: Vec::new(),
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Reads requests until `done` holds for all of them so far (or the deadline fails the
    /// test); returns them all.
    async fn until(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT * 3;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "gave up waiting for {what}; the receiver saw: {:#?}",
                self.seen
            );
            let next = tokio::task::block_in_place(|| {
                self.lines
                    .recv_timeout(left.min(Duration::from_millis(200)))
            });
            match next {
                Ok(value) => self.seen.push(value),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the receiver ended; it saw: {:#?}", self.seen)
                }
            }
        }
        for request in &self.seen {
            assert_eq!(
                request["verified"], true,
                "a signature did not verify: {request}"
            );
        }
        self.seen.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The types of the events received so far.
fn types(requests: &[Value]) -> HashSet<String> {
    requests
        .iter()
        .filter_map(|r| r["body"]["type"].as_str().map(str::to_owned))
        .collect()
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Webhooks to `url` for `events`, delivered fast (test backoff).
fn hooks_to(config: &mut Config, url: &str, events: &[&str]) {
    config.webhooks.allow_private_addresses = true;
    config.webhooks.backoff_base_ms = 20;
    config.webhooks.backoff_max_secs = 1;
    config.webhooks.endpoints = vec![WebhookEndpointConfig {
        url: url.to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: secret(),
        enabled: true,
    }];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_signed_and_verifies() {
    let Some(mut receiver) = Receiver::start(&secret(), 0, "") else {
        return;
    };
    let url = receiver.url();
    let team = Team::start_with(&[("boss", "admin"), ("bob", "user")], |config| {
        hooks_to(config, &url, &["*"]);
        config.webhooks.offline_grace_secs = 1;
    })
    .await;
    team.create_room("boss", "lobby", "public").await;
    team.add_member("boss", "lobby", "bob").await;
    let mut bob = Ws::connect(team.addr(), team.token("bob")).await;
    bob.request("Join", json!({"room": "lobby"}), "j").await;
    let sent = team
        .post(
            "boss",
            "/api/v1/rooms/lobby/messages",
            json!({"content": "hello hooks"}),
        )
        .await;
    assert_eq!(sent.status, 201, "{:?}", sent.json);
    let seq = sent.json["seq"].as_u64().expect("seq");
    let bob_send = team
        .post(
            "bob",
            "/api/v1/rooms/lobby/messages",
            json!({"content": "mine"}),
        )
        .await;
    assert_eq!(bob_send.status, 201, "{:?}", bob_send.json);
    let own = bob_send.json["seq"].as_u64().expect("seq");
    let edit = json!({"room": "lobby", "seq": own, "content": "hello again"});
    let edited = bob.request("Edit", edit, "e").await;
    assert_ne!(edited["type"], "Error", "{edited}");
    let deleted = bob
        .request("Delete", json!({"room": "lobby", "seq": own}), "d")
        .await;
    assert_ne!(deleted["type"], "Error", "{deleted}");
    bob.request("Leave", json!({"room": "lobby"}), "l").await;
    drop(bob);
    let removed = team.delete("boss", "/api/v1/rooms/lobby/members/bob").await;
    assert_eq!(removed.status, 200, "{:?}", removed.json);
    let created = team
        .post(
            "boss",
            "/api/v1/users",
            json!({"username": "carol", "password": "carol-password-1", "role": "user"}),
        )
        .await;
    assert!(created.status < 300, "{:?}", created.json);
    let disabled = team.post_empty("boss", "/api/v1/users/carol/disable").await;
    assert!(disabled.status < 300, "{:?}", disabled.json);

    let removed = team.delete("boss", "/api/v1/users/carol").await;
    assert!(removed.status < 300, "{:?}", removed.json);

    // Every event type there is.
    let wanted = natter::webhooks::EVENTS;
    let requests = receiver
        .until("every event type", |seen| {
            let got = types(seen);
            wanted.iter().all(|w| got.contains(*w))
        })
        .await;
    let created = requests
        .iter()
        .find(|r| r["body"]["type"] == "message.created" && r["body"]["data"]["seq"] == seq)
        .expect("the message's event");
    let data = &created["body"]["data"];
    assert_eq!(data["room"], "lobby", "{created}");
    assert_eq!(data["author"], "boss", "{created}");
    assert_eq!(data["text"], "hello hooks", "{created}");
    assert!(
        created["body"]["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(
        created["webhook_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_"))
    );
    assert_eq!(created["content_type"], "application/json");
    assert!(
        created["user_agent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("natter/"))
    );
    let edited = requests
        .iter()
        .find(|r| r["body"]["type"] == "message.edited")
        .expect("edit event");
    assert_eq!(edited["body"]["data"]["text"], "hello again", "{edited}");
    let joined = requests
        .iter()
        .find(|r| r["body"]["type"] == "room.joined")
        .expect("joined");
    assert_eq!(joined["body"]["data"]["user"], "bob", "{joined}");
    let ids: HashSet<&str> = requests
        .iter()
        .filter_map(|r| r["webhook_id"].as_str())
        .collect();
    assert_eq!(ids.len(), requests.len(), "every event has its own id");
    team.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_with_the_same_id_until_a_200() {
    let Some(mut receiver) = Receiver::start(&secret(), 0, "500,500") else {
        return;
    };
    let url = receiver.url();
    let team = Team::start_with(&[("boss", "admin")], |config| {
        hooks_to(config, &url, &["message.created"]);
    })
    .await;
    team.create_room("boss", "retries", "public").await;
    let sent = team
        .post(
            "boss",
            "/api/v1/rooms/retries/messages",
            json!({"content": "again"}),
        )
        .await;
    assert_eq!(sent.status, 201, "{:?}", sent.json);
    let requests = receiver
        .until("a 200 after two 500s", |seen| {
            seen.iter().any(|r| r["status"] == 200)
        })
        .await;
    assert_eq!(requests.len(), 3, "{requests:#?}");
    assert_eq!(requests[0]["status"], 500);
    assert_eq!(requests[1]["status"], 500);
    assert_eq!(requests[2]["status"], 200);
    assert!(
        requests
            .iter()
            .all(|r| r["webhook_id"] == requests[0]["webhook_id"]),
        "one id across retries: {requests:#?}"
    );
    assert_eq!(requests[2]["body"]["data"]["text"], "again");
    // Delivered: the outbox is empty.
    let (code, out, err) =
        natter_on(&team.server.data_dir, &["webhook", "list", "--json"], None).await;
    assert_eq!(code, 0, "{out}{err}");
    let listed: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(listed["endpoints"][0]["pending"], 0, "{listed}");
    assert_eq!(listed["endpoints"][0]["failures"], 0, "{listed}");
    team.server.stop().await;
}

/// POSTs a message as the bearer of `token`; its sequence number once acknowledged.
async fn post_message(addr: SocketAddr, token: &str, room: &str, text: &str) -> u64 {
    let authorization = format!("Bearer {token}");
    let response = http(
        addr,
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        &[
            ("authorization", authorization.as_str()),
            ("content-type", "application/json"),
        ],
        json!({ "content": text }).to_string().into_bytes(),
    )
    .await;
    assert_eq!(response.status, 201, "{:?}", response.json);
    response.json["seq"].as_u64().expect("seq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_events_survive_a_sigkill_and_arrive_once_each_in_room_order() {
    let Some(python) = python() else {
        return;
    };
    drop(python);
    let dir = tempfile::tempdir().expect("tempdir");
    add_user(dir.path(), "boss", "boss-password", "admin");
    // The receiver is down while the messages are sent: every event stays pending.
    let port = closed_port();
    let endpoints = format!(
        "[{{url = \"http://127.0.0.1:{port}/hook\", events = [\"message.created\"], secret = \"{}\"}}]",
        secret()
    );
    let env = [
        ("NATTER_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", "true"),
        ("NATTER_WEBHOOKS_BACKOFF_BASE_MS", "20"),
        ("NATTER_WEBHOOKS_BACKOFF_MAX_SECS", "1"),
        ("NATTER_WEBHOOKS_DISABLE_AFTER", "100000"),
        ("NATTER_WEBHOOKS_ENDPOINTS", endpoints.as_str()),
        ("NATTER_WS_MESSAGE_BURST", "100000"),
    ];
    let daemon = Daemon::start(dir.path(), &env).expect("natter starts");
    let token = access_token(daemon.addr, "boss", "boss-password").await;
    let mut acked: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for room in ["north", "south"] {
        let authorization = format!("Bearer {token}");
        let response = http(
            daemon.addr,
            "POST",
            "/api/v1/rooms",
            &[
                ("authorization", authorization.as_str()),
                ("content-type", "application/json"),
            ],
            json!({"name": room, "visibility": "public"})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_eq!(response.status, 201, "{:?}", response.json);
    }
    for n in 0..25 {
        for room in ["north", "south"] {
            let seq = post_message(daemon.addr, &token, room, &format!("{room} {n}")).await;
            acked.entry(room.to_owned()).or_default().push(seq);
        }
    }
    daemon.kill9();

    let mut receiver = Receiver::start(&secret(), port, "").expect("python is set");
    let daemon = Daemon::start(dir.path(), &env).expect("natter restarts");
    let total: usize = acked.values().map(Vec::len).sum();
    let requests = receiver
        .until("every acknowledged message's event", |seen| {
            let got: HashSet<(String, u64)> = seen
                .iter()
                .filter_map(|r| {
                    let data = &r["body"]["data"];
                    Some((data["room"].as_str()?.to_owned(), data["seq"].as_u64()?))
                })
                .collect();
            got.len() >= total
        })
        .await;
    // Deduplicated by webhook-id: one event per message, in sequence order per room.
    let mut by_id: HashMap<String, (String, u64)> = HashMap::new();
    let mut order: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for request in &requests {
        let id = request["webhook_id"].as_str().expect("id").to_owned();
        let data = &request["body"]["data"];
        let key = (
            data["room"].as_str().expect("room").to_owned(),
            data["seq"].as_u64().expect("seq"),
        );
        match by_id.get(&id) {
            Some(seen) => assert_eq!(seen, &key, "one id, one event"),
            None => {
                by_id.insert(id, key.clone());
                order.entry(key.0).or_default().push(key.1);
            }
        }
    }
    assert_eq!(by_id.len(), total, "exactly once after dedup by id");
    assert_eq!(order, acked, "every acked message, in seq order per room");
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_leaves_chat_alone_and_the_outbox_keeps_its_bound() {
    let port = closed_port();
    let team = Team::start_with(&[("boss", "admin")], |config| {
        hooks_to(
            config,
            &format!("http://127.0.0.1:{port}/hook"),
            &["message.created"],
        );
        config.webhooks.max_pending = 5;
        config.webhooks.disable_after = 100_000;
        config.ws.message_burst = 1000;
    })
    .await;
    team.create_room("boss", "busy", "public").await;
    for n in 0..12 {
        let sent = team
            .post(
                "boss",
                "/api/v1/rooms/busy/messages",
                json!({"content": format!("m{n}")}),
            )
            .await;
        assert_eq!(sent.status, 201, "chat goes on: {:?}", sent.json);
    }
    let text = metrics_text(team.addr()).await;
    assert!(
        text.contains("natter_webhook_pending{endpoint=\"1\"} 5\n"),
        "{text}"
    );
    assert!(
        text.contains("natter_webhook_dropped_total{endpoint=\"1\"} 7\n"),
        "the 7 oldest dropped and counted: {text}"
    );
    let (code, out, err) = natter_on(&team.server.data_dir, &["webhook", "list"], None).await;
    assert_eq!(code, 0, "{out}{err}");
    let row = out.lines().nth(1).expect("a row");
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[0], "1", "{out}");
    assert_eq!(columns[3], "5", "pending at the bound: {out}");
    team.server.stop().await;
}

/// The `/metrics` page as text.
async fn metrics_text(addr: SocketAddr) -> String {
    let response = http(addr, "GET", "/metrics", &[], Vec::new()).await;
    assert_eq!(response.status, 200);
    response.json.as_str().expect("metrics text").to_owned()
}

/// `natter webhook list --json`'s first endpoint.
async fn first_endpoint(data_dir: &std::path::Path) -> Value {
    let (code, out, err) = natter_on(data_dir, &["webhook", "list", "--json"], None).await;
    assert_eq!(code, 0, "{out}{err}");
    let listed: Value = serde_json::from_str(&out).expect("json");
    listed["endpoints"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_is_disabled_after_its_failures_until_enabled() {
    let port = closed_port();
    let team = Team::start_with(&[("boss", "admin")], |config| {
        hooks_to(
            config,
            &format!("http://127.0.0.1:{port}/hook"),
            &["message.created"],
        );
        config.webhooks.disable_after = 3;
    })
    .await;
    team.create_room("boss", "flaky", "public").await;
    let sent = team
        .post(
            "boss",
            "/api/v1/rooms/flaky/messages",
            json!({"content": "hold"}),
        )
        .await;
    assert_eq!(sent.status, 201, "{:?}", sent.json);
    // Polled with a deadline: the failures are the daemon's, outside this test's events.
    let deadline = tokio::time::Instant::now() + WAIT;
    let endpoint = loop {
        let endpoint = first_endpoint(&team.server.data_dir).await;
        if endpoint["auto_disabled"] == true {
            break endpoint;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not disabled: {endpoint}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(endpoint["failures"], 3, "{endpoint}");
    assert_eq!(endpoint["pending"], 1, "its event still waits: {endpoint}");
    let text = metrics_text(team.addr()).await;
    assert!(
        text.contains("natter_webhook_disabled{endpoint=\"1\"} 1\n"),
        "{text}"
    );
    let (_, out, _) = natter_on(&team.server.data_dir, &["webhook", "list"], None).await;
    assert!(out.contains("disabled"), "{out}");

    let receiver = Receiver::start(&secret(), port, "");
    let (code, out, err) =
        natter_on(&team.server.data_dir, &["webhook", "enable", "1"], None).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("enabled"), "{out}");
    if let Some(mut receiver) = receiver {
        // Up now: the held event arrives, and the endpoint's record is clean again.
        let requests = receiver
            .until("the held event", |seen| !seen.is_empty())
            .await;
        assert_eq!(requests[0]["body"]["data"]["text"], "hold");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let endpoint = first_endpoint(&team.server.data_dir).await;
            if endpoint["pending"] == 0 {
                assert_eq!(endpoint["failures"], 0, "{endpoint}");
                assert_eq!(endpoint["auto_disabled"], false, "{endpoint}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not delivered: {endpoint}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        // Still dead: enabled, it is tried again until it is disabled again.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let endpoint = first_endpoint(&team.server.data_dir).await;
            if endpoint["auto_disabled"] == true {
                assert_eq!(endpoint["failures"], 3, "counted anew: {endpoint}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not retried: {endpoint}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    team.server.stop().await;
}

/// `natter webhook add URL --events EVENTS` against the daemon of `dir`.
async fn webhook_add(dir: &std::path::Path, url: &str, events: &str) -> (i32, String, String) {
    natter_on(dir, &["webhook", "add", url, "--events", events], None).await
}

/// The `whsec_` secret `natter webhook add` printed.
fn printed_secret(out: &str) -> String {
    out.split_whitespace()
        .find(|word| word.starts_with("whsec_"))
        .expect("the secret is printed")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_add_shows_the_secret_once_and_list_never() {
    let team = Team::start(&[("boss", "admin")]).await;
    let dir = team.server.data_dir.clone();
    let (code, out, err) = webhook_add(
        &dir,
        "https://hooks.example.com/natter",
        "message.created,room.joined",
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let secret = printed_secret(&out);
    assert!(
        natter::webhooks::sign::Secret::parse(&secret).is_ok(),
        "{secret}"
    );
    for args in [&["webhook", "list"][..], &["webhook", "list", "--json"][..]] {
        let (code, out, err) = natter_on(&dir, args, None).await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("hooks.example.com"), "{out}");
        assert!(
            !out.contains("whsec_") && !out.contains(&secret[6..]),
            "{out}"
        );
    }
    // Bad input: a clear error, exit 2.
    for (args, says) in [
        (
            &["webhook", "add", "ftp://x.example/", "--events", "*"][..],
            "http",
        ),
        (
            &[
                "webhook",
                "add",
                "https://x.example/",
                "--events",
                "message.exploded",
            ][..],
            "unknown event",
        ),
        (&["webhook", "remove", "99"][..], "no webhook endpoint 99"),
    ] {
        let (code, out, err) = natter_on(&dir, args, None).await;
        assert_ne!(code, 0, "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (code, out, err) = natter_on(&dir, &["webhook", "remove", "1"], None).await;
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = natter_on(&dir, &["webhook", "list", "--json"], None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["endpoints"],
        json!([])
    );

    // `webhook test` sends a signed webhook.test now, with the secret `add` printed.
    let port = closed_port();
    let (code, out, err) = webhook_add(&dir, &format!("http://127.0.0.1:{port}/t"), "*").await;
    // Plain http to loopback is refused without the test-only switch.
    assert_ne!(code, 0, "{out}{err}");
    team.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_test_sends_a_signed_test_event() {
    let port = closed_port();
    let team = Team::start_with(&[("boss", "admin")], |config| {
        config.webhooks.allow_private_addresses = true;
    })
    .await;
    let dir = team.server.data_dir.clone();
    let (code, out, err) = webhook_add(&dir, &format!("http://127.0.0.1:{port}/t"), "*").await;
    assert_eq!(code, 0, "{out}{err}");
    let secret = printed_secret(&out);
    let Some(mut receiver) = Receiver::start(&secret, port, "") else {
        return;
    };
    let (code, out, err) = natter_on(&dir, &["webhook", "test", "1"], None).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("answered 200"), "{out}");
    let requests = receiver
        .until("the test event", |seen| !seen.is_empty())
        .await;
    assert_eq!(requests[0]["body"]["type"], "webhook.test");
    team.server.stop().await;
}
