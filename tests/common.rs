//! Test support: the real server in-process on 127.0.0.1:0, a minimal HTTP/1.1 client, the
//! [`Team`] fixture (a server with accounts, their tokens, and rooms made through the API) and the
//! [`Deadline`] every wait for frames is bounded by.

use std::collections::VecDeque;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use natter::config::Config;
use natter::server::{INITIAL_ADMIN_PASSWORD_FILE, Server};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Keeps the temporary data dir alive (None when the caller owns the dir).
    _tmp: Option<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A config for tests: loopback, port 0, the given data dir, no environment influence.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".to_owned();
    config.store.data_dir = data_dir.to_path_buf();
    config.store.cache_capacity_mb = 8;
    config
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on a fresh temporary data dir after `adjust` tweaks its config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(tmp.path());
        adjust(&mut config);
        let mut server = Self::start_config(config).await.expect("server starts");
        server._tmp = Some(tmp);
        server
    }

    /// Starts a server with exactly `config` (its data dir is the caller's).
    pub async fn start_config(config: Config) -> anyhow::Result<TestServer> {
        let data_dir = config.store.data_dir.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = Server::new(config, listener).await?;
        let addr = server.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Ok(TestServer {
            addr,
            data_dir,
            _tmp: None,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Graceful shutdown; returns the temporary dir (if any) so the data can be reopened.
    pub async fn stop(mut self) -> Option<TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server shut down cleanly");
        }
        self._tmp.take()
    }

    pub fn admin_password(&self) -> String {
        std::fs::read_to_string(self.data_dir.join(INITIAL_ADMIN_PASSWORD_FILE))
            .expect("initial admin password file")
            .trim()
            .to_owned()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        http(
            self.addr,
            "POST",
            path,
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http(self.addr, "GET", path, headers, Vec::new()).await
    }

    /// Logs in and returns the token response.
    pub async fn login(&self, username: &str, password: &str) -> Response {
        login(self.addr, username, password).await
    }

    /// Logs in as the initial admin; panics unless it works.
    pub async fn admin_tokens(&self) -> Value {
        let response = self.login("admin", &self.admin_password()).await;
        assert_eq!(response.status, 200, "{:?}", response.json);
        response.json
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub json: Value,
}

/// An HTTP error answer in the API's documented shape: `status`, its `code`, and a non-empty
/// `error` text.
pub fn assert_error(response: &Response, status: u16, code: &str) {
    assert_eq!(response.status, status, "{:?}", response.json);
    assert_eq!(response.json["code"], code, "{:?}", response.json);
    assert!(
        response.json["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{:?}",
        response.json
    );
}

/// One HTTP/1.1 request on a fresh connection, answered within [`WAIT`].
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Response {
    Deadline::new(format!("the response to {method} {path}"))
        .bound(exchange(addr, method, path, headers, body))
        .await
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Response {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Response {
        status,
        headers,
        json,
    }
}

/// Logs in at `addr` (a server in-process or the daemon) and returns the token response.
pub async fn login(addr: SocketAddr, username: &str, password: &str) -> Response {
    http(
        addr,
        "POST",
        "/api/token/",
        &[("content-type", "application/json")],
        serde_json::json!({"username": username, "password": password})
            .to_string()
            .into_bytes(),
    )
    .await
}

/// Logs in at `addr` and returns the access token; panics unless it works.
pub async fn access_token(addr: SocketAddr, username: &str, password: &str) -> String {
    let response = login(addr, username, password).await;
    assert_eq!(
        response.status, 200,
        "login {username}: {:?}",
        response.json
    );
    response.json["access"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// Decodes the claims of a JWT without verifying it (to look at what the server put in).
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json claims")
}

/// A signed JWT (`typ` JWT) for `claims`, made with ring directly rather than through natter's
/// own signing code. `key` is the secret for HS256/HS384/HS512, the PKCS#8 private key in PEM
/// for EdDSA and RS256.
pub fn sign_jwt(alg: &str, key: &[u8], claims: &Value) -> String {
    use base64::Engine as _;
    use ring::signature::{Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = serde_json::json!({"alg": alg, "typ": "JWT"});
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let pkcs8 = || PrivatePkcs8KeyDer::from_pem_slice(key).expect("a PKCS#8 private key in PEM");
    let signature = match alg {
        "HS256" | "HS384" | "HS512" => {
            let hmac = match alg {
                "HS256" => ring::hmac::HMAC_SHA256,
                "HS384" => ring::hmac::HMAC_SHA384,
                _ => ring::hmac::HMAC_SHA512,
            };
            ring::hmac::sign(&ring::hmac::Key::new(hmac, key), message.as_bytes())
                .as_ref()
                .to_vec()
        }
        "EdDSA" => {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8().secret_pkcs8_der())
                .expect("an Ed25519 key");
            assert_eq!(pair.public_key().as_ref().len(), 32);
            pair.sign(message.as_bytes()).as_ref().to_vec()
        }
        "RS256" => {
            let pair = RsaKeyPair::from_pkcs8(pkcs8().secret_pkcs8_der()).expect("an RSA key");
            let mut signature = vec![0; pair.public().modulus_len()];
            pair.sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message.as_bytes(),
                &mut signature,
            )
            .expect("RSA signature");
            signature
        }
        other => panic!("sign_jwt: no {other}"),
    };
    format!("{message}.{}", b64(&signature))
}

/// The path of the built `natter` binary.
pub fn natter_bin() -> &'static str {
    env!("CARGO_BIN_EXE_natter")
}

/// Runs the natter binary on `dir` without blocking the runtime that serves it.
pub async fn natter_on(
    dir: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.push("--data-dir".to_owned());
    all.push(dir.to_str().expect("utf-8 path").to_owned());
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        run_natter(&args, stdin.as_deref())
    })
    .await
    .expect("natter ran")
}

/// Runs the natter binary with `args` (and `stdin`), returning (exit code, stdout, stderr).
pub fn run_natter(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    natter_at(None, args, &[], stdin)
}

/// Runs the natter binary in `cwd` (when given) with `args`, no config file, none of the
/// caller's `NATTER_*` variables but `env`, and `stdin`: (exit code, stdout, stderr).
pub fn natter_at(
    cwd: Option<&Path>,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let mut command = std::process::Command::new(natter_bin());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command
        .args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
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

/// `natter user add NAME --role ROLE --password-stdin` on a data dir (after `natter init` when
/// it holds no store yet: admin commands never create one); panics unless it works.
pub fn add_user(data_dir: &Path, username: &str, password: &str, role: &str) {
    let dir = data_dir.to_str().expect("utf-8 path");
    if !data_dir.join("db").exists() {
        let (code, out, err) = run_natter(&["init", "--data-dir", dir], None);
        assert_eq!(code, 0, "init failed: {out}{err}");
    }
    let (code, out, err) = run_natter(
        &[
            "user",
            "add",
            username,
            "--role",
            role,
            "--password-stdin",
            "--data-dir",
            dir,
        ],
        Some(&format!("{password}\n")),
    );
    assert_eq!(code, 0, "user add failed: {out}{err}");
}

/// Helpers for the authenticated HTTP API.
impl TestServer {
    /// Starts a server on a fresh temporary data dir that already holds `users` (name, password,
    /// role), added with `natter user add`; so no bootstrap admin is created.
    pub async fn start_with_users(users: &[(&str, &str, &str)]) -> TestServer {
        Self::start_with_users_and(users, |_| {}).await
    }

    /// [`TestServer::start_with_users`] after `adjust` tweaks the config.
    pub async fn start_with_users_and(
        users: &[(&str, &str, &str)],
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        for (name, password, role) in users {
            add_user(tmp.path(), name, password, role);
        }
        let mut config = test_config(tmp.path());
        adjust(&mut config);
        let mut server = Self::start_config(config).await.expect("server starts");
        server._tmp = Some(tmp);
        server
    }

    /// Logs in and returns the access token; panics unless it works.
    pub async fn access_token(&self, username: &str, password: &str) -> String {
        access_token(self.addr, username, password).await
    }

    /// A request with `Authorization: Bearer <token>` (when given) and a JSON body (when given).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(value) = &authorization {
            headers.push(("authorization", value.as_str()));
        }
        let bytes = match body {
            Some(body) => {
                headers.push(("content-type", "application/json"));
                body.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        http(self.addr, method, path, &headers, bytes).await
    }
}

/// One account of a [`Team`]: its name, an access token, and its user id (the token's `sub`).
pub struct Member {
    pub name: String,
    pub token: String,
    pub id: String,
}

/// A server on a fresh data dir that holds the team's accounts (added with `natter user add`
/// before it starts, so there is no bootstrap admin), logged in once each. Every account's
/// password is [`Team::password`] of its name. Rooms and memberships are made through the HTTP
/// API, as a client makes them.
pub struct Team {
    pub server: TestServer,
    members: Vec<Member>,
}

impl Team {
    /// `users` are (name, role) pairs, e.g. `&[("boss", "admin"), ("alice", "user")]`.
    pub async fn start(users: &[(&str, &str)]) -> Team {
        Self::start_with(users, |_| {}).await
    }

    /// [`Team::start`] after `adjust` tweaks the server's config.
    pub async fn start_with(users: &[(&str, &str)], adjust: impl FnOnce(&mut Config)) -> Team {
        let passwords: Vec<String> = users.iter().map(|(name, _)| Self::password(name)).collect();
        let accounts: Vec<(&str, &str, &str)> = users
            .iter()
            .zip(&passwords)
            .map(|((name, role), password)| (*name, password.as_str(), *role))
            .collect();
        let server = TestServer::start_with_users_and(&accounts, adjust).await;
        let names: Vec<&str> = users.iter().map(|(name, _)| *name).collect();
        Self::log_in(server, &names).await
    }

    async fn log_in(server: TestServer, names: &[&str]) -> Team {
        let mut members = Vec::new();
        for name in names {
            let token = server.access_token(name, &Self::password(name)).await;
            let id = jwt_claims(&token)["sub"].as_str().expect("sub").to_owned();
            members.push(Member {
                name: (*name).to_owned(),
                token,
                id,
            });
        }
        Team { server, members }
    }

    /// The password of a team account.
    pub fn password(name: &str) -> String {
        format!("{name}-password")
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name} in the team"))
    }

    /// The access token `name` got when the team started (or restarted).
    pub fn token(&self, name: &str) -> &str {
        &self.member(name).token
    }

    /// The user id of `name`.
    pub fn id(&self, name: &str) -> &str {
        &self.member(name).id
    }

    /// A GET as `user` (with their token).
    pub async fn get(&self, user: &str, path: &str) -> Response {
        self.server
            .api("GET", path, Some(self.token(user)), None)
            .await
    }

    /// A POST of a JSON body as `user`.
    pub async fn post(&self, user: &str, path: &str, body: Value) -> Response {
        self.server
            .api("POST", path, Some(self.token(user)), Some(&body))
            .await
    }

    /// A POST without a body as `user` (membership, mark-read).
    pub async fn post_empty(&self, user: &str, path: &str) -> Response {
        self.server
            .api("POST", path, Some(self.token(user)), None)
            .await
    }

    pub async fn delete(&self, user: &str, path: &str) -> Response {
        self.server
            .api("DELETE", path, Some(self.token(user)), None)
            .await
    }

    /// Creates a room as `owner` with `visibility` ("public" or "private"); panics unless it
    /// is created. Returns its id.
    pub async fn create_room(&self, owner: &str, name: &str, visibility: &str) -> u64 {
        let room = self
            .create_room_from(
                owner,
                serde_json::json!({"name": name, "visibility": visibility}),
            )
            .await;
        room["id"].as_u64().expect("room id")
    }

    /// Creates a room as `owner` from a request body of the API's own (persistent, retention,
    /// or nothing but a name); panics unless it is created. Returns the room as the API shows
    /// it.
    pub async fn create_room_from(&self, owner: &str, body: Value) -> Value {
        let response = self.post(owner, "/api/v1/rooms", body).await;
        assert_eq!(response.status, 201, "{:?}", response.json);
        response.json
    }

    /// `by` adds `username` to `room` (a `/` in its name is percent-encoded); panics unless it
    /// works.
    pub async fn add_member(&self, by: &str, room: &str, username: &str) {
        let path = format!(
            "/api/v1/rooms/{}/members/{username}",
            room.replace('/', "%2F")
        );
        let response = self.post_empty(by, &path).await;
        assert_eq!(response.status, 200, "{:?}", response.json);
    }

    /// A user's number (the integer user id some protocols show), from the user list as seen
    /// by `admin`.
    pub async fn number(&self, admin: &str, username: &str) -> u64 {
        let response = self.get(admin, "/api/v1/users").await;
        assert_eq!(response.status, 200, "{:?}", response.json);
        response.json["users"]
            .as_array()
            .and_then(|users| users.iter().find(|u| u["username"] == username))
            .and_then(|user| user["number"].as_u64())
            .expect("number")
    }

    /// Stops the server gracefully and starts a new one on the same data dir (with the default
    /// test config), every account logged in again.
    pub async fn restart(self) -> Team {
        let names: Vec<String> = self.members.iter().map(|m| m.name.clone()).collect();
        let tmp = self.server.stop().await.expect("the team's own data dir");
        let mut server = TestServer::start_config(test_config(tmp.path()))
            .await
            .expect("server restarts");
        server._tmp = Some(tmp);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Self::log_in(server, &names).await
    }
}

/// How long a test waits, in all, for what it expects: one frame, or the one a loop reading
/// many is after. Generous, so a slow (emulated, loaded) machine passes; bounded, so a frame
/// that never comes fails the test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(20);

/// How many of the frames a wait read it shows when it gives up.
const SHOWN: usize = 5;

/// An overall deadline for one wait, however many frames it reads on the way, and the last
/// frames it read: a wait that gives up says what it waited for and what came instead. Every
/// receive loop of the tests runs under one (through the clients in `wsclient` and `rawws`).
pub struct Deadline {
    what: String,
    wait: Duration,
    at: tokio::time::Instant,
    read: usize,
    last: VecDeque<String>,
}

impl Deadline {
    /// [`WAIT`] from now, for `what` (as the panic message should name it).
    pub fn new(what: impl Into<String>) -> Deadline {
        Self::within(WAIT, what)
    }

    pub fn within(wait: Duration, what: impl Into<String>) -> Deadline {
        Deadline {
            what: what.into(),
            wait,
            at: tokio::time::Instant::now() + wait,
            read: 0,
            last: VecDeque::with_capacity(SHOWN),
        }
    }

    /// `step`, unless the deadline passes first: then the test fails, saying so.
    pub async fn bound<F: Future>(&self, step: F) -> F::Output {
        match tokio::time::timeout_at(self.at, step).await {
            Ok(output) => output,
            Err(_) => self.give_up(),
        }
    }

    /// Notes a frame the wait read (shown when it gives up).
    pub fn saw(&mut self, frame: impl Display) {
        let mut shown = frame.to_string();
        if shown.len() > 300 {
            let end = (0..=300)
                .rev()
                .find(|&i| shown.is_char_boundary(i))
                .unwrap_or(0);
            shown.truncate(end);
            shown.push_str("...");
        }
        if self.last.len() == SHOWN {
            self.last.pop_front();
        }
        self.last.push_back(shown);
        self.read += 1;
    }

    /// Fails the test: nothing satisfied the wait in time.
    pub fn give_up(&self) -> ! {
        panic!(
            "gave up waiting for {} after {:?}: {}",
            self.what,
            self.wait,
            self.frames_read()
        );
    }

    /// Fails the test, for a connection that ended (or broke) while the wait read it.
    pub fn ended(&self, how: impl Display) -> ! {
        panic!(
            "{how} while waiting for {}: {}",
            self.what,
            self.frames_read()
        );
    }

    fn frames_read(&self) -> String {
        let mut text = format!("{} frame(s) read meanwhile", self.read);
        if !self.last.is_empty() {
            text.push_str(", the last ones:");
            for frame in &self.last {
                text.push_str("\n    ");
                text.push_str(frame);
            }
        }
        text
    }
}
