//! The servers under test as child processes on loopback: natter (release binary, temporary
//! data dir, bench limits from `NATTER_*` variables) and the uWebSockets peer (socketify); their
//! CPU time and RSS from /proc; and a minimal HTTP/1.1 client for natter's token and room API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The bench user's name and password (one user holds every connection; see `BENCH_ENV`).
pub const BENCH_USER: &str = "bench";
pub const BENCH_PASSWORD: &str = "bench-password-1";
/// An admin, created only for the scenarios that create users over the admin API.
pub const BENCH_ADMIN: &str = "bench-admin";

/// natter's limits for the bench, raised through the environment (defaults are not changed):
/// one user opens up to 10,000 connections, publishes and joins far above the per-user rate
/// limits (one bucket for all of that user's connections), and the server's JSON heartbeat (which drain-only clients would not answer) stays out of
/// the measured minutes.
pub const BENCH_ENV: &[(&str, &str)] = &[
    ("NATTER_WS_MAX_CONNECTIONS", "20000"),
    ("NATTER_WS_MAX_CONNECTIONS_PER_USER", "20000"),
    ("NATTER_WS_MESSAGES_PER_MINUTE", "1000000000"),
    ("NATTER_WS_MESSAGE_BURST", "1000000"),
    ("NATTER_WS_JOINS_PER_MINUTE", "1000000000"),
    ("NATTER_WS_PING_INTERVAL_SECS", "3600"),
    ("NATTER_AUTH_ACCESS_TOKEN_TTL_SECS", "7200"),
    // Successful logins are not throttled, but keep a stray failure from locking the bench out.
    ("NATTER_AUTH_LOGIN_MAX_FAILURES", "1000000"),
    // chat-rooms has 100 users create 1,000 rooms at once: past the per-user room creation
    // rate and quota (limits.room_creations_per_minute, room_creation_burst, max_rooms_per_user).
    ("NATTER_LIMITS_ROOM_CREATIONS_PER_MINUTE", "1000000"),
    ("NATTER_LIMITS_ROOM_CREATION_BURST", "1000000"),
    ("NATTER_LIMITS_MAX_ROOMS_PER_USER", "100000"),
];

/// Which server a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Natter,
    Uws,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Natter => "natter",
            Kind::Uws => "uWS",
        }
    }
}

/// The uWS peer: the venv's python, peer_uws.py and how it runs.
#[derive(Debug, Clone)]
pub struct Peer {
    pub python: PathBuf,
    pub script: PathBuf,
    /// uWS's max_backpressure, bytes per socket.
    pub max_backpressure: u64,
}

/// Where the programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    pub natter: PathBuf,
    /// `None`: no peer in this run.
    pub peer: Option<Peer>,
}

/// How a natter under test is set up beyond the defaults and `BENCH_ENV`.
#[derive(Debug, Clone, Default)]
pub struct NatterOptions {
    /// Also create `BENCH_ADMIN` and log it in (`Server::admin_token`).
    pub admin: bool,
    /// More `NATTER_*` variables, after `BENCH_ENV` (so they win).
    pub env: Vec<(String, String)>,
}

/// A running server; killed when dropped.
pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
    /// natter's data dir (kept alive while the server runs).
    pub data_dir: Option<tempfile::TempDir>,
    /// An access token of the bench user (natter), or empty (uWS takes none).
    pub token: String,
    /// An access token of `BENCH_ADMIN`, when [`NatterOptions::admin`] asked for one.
    pub admin_token: Option<String>,
    /// When the process was spawned.
    pub spawned: Instant,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Our own child, by its handle; reaped so it leaves no zombie.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The WebSocket path with credentials.
    pub fn ws_path(&self) -> String {
        match self.kind {
            Kind::Natter => format!("/ws?token={}", self.token),
            Kind::Uws => "/ws".to_owned(),
        }
    }

    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid).unwrap_or(f64::NAN)
    }

    pub fn rss_bytes(&self) -> f64 {
        rss_bytes(self.pid).unwrap_or(f64::NAN)
    }

    /// The WebSocket path with another user's access token.
    pub fn ws_path_with(&self, token: &str) -> String {
        format!("/ws?token={token}")
    }

    /// Whether the server process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the server and waits for it (SIGKILL: the data dir is thrown away).
    pub async fn stop(self) {
        // Drop kills and reaps; a killed process is reaped at once.
        drop(self);
    }
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Creates a natter data dir holding the bench user (`natter user add`), so the first start
/// creates no bootstrap admin.
pub async fn natter_data_dir(natter: &Path) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("natter-bench-").tempdir()?;
    add_user(natter, dir.path(), BENCH_USER, "user").await?;
    Ok(dir)
}

/// `natter init` (admin commands never create a store), then `natter user add NAME --role ROLE`
/// on a data dir no daemon serves.
async fn add_user(natter: &Path, data_dir: &Path, name: &str, role: &str) -> anyhow::Result<()> {
    let natter = natter.to_path_buf();
    let path = data_dir.to_path_buf();
    let (name, role) = (name.to_owned(), role.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let init = Command::new(&natter)
            .arg("--data-dir")
            .arg(&path)
            .arg("init")
            .env_remove("NATTER_CONFIG")
            .env("NATTER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("cannot run natter init")?;
        if !init.status.success() {
            bail!(
                "natter init failed: {}",
                String::from_utf8_lossy(&init.stderr)
            );
        }
        let mut child = Command::new(natter)
            .arg("--data-dir")
            .arg(path)
            .args(["user", "add", &name, "--role", &role, "--password-stdin"])
            .env_remove("NATTER_CONFIG")
            .env("NATTER_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run natter user add")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(format!("{BENCH_PASSWORD}\n").as_bytes())?;
        }
        anyhow::Ok(child.wait_with_output()?)
    })
    .await??;
    if !output.status.success() {
        bail!(
            "natter user add failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Spawns `natter serve` on a free loopback port over `data_dir` (without waiting).
pub fn spawn_natter(
    natter: &Path,
    data_dir: tempfile::TempDir,
) -> anyhow::Result<(Server, SocketAddr)> {
    spawn_natter_with(natter, data_dir, &[])
}

/// [`spawn_natter`] with more `NATTER_*` variables (after `BENCH_ENV`, so they win).
pub fn spawn_natter_with(
    natter: &Path,
    data_dir: tempfile::TempDir,
    env: &[(String, String)],
) -> anyhow::Result<(Server, SocketAddr)> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // natter's log, kept after the run in target/bench/logs/natter-PORT.log; its filter is
    // BENCH_NATTER_LOG (e.g. natter::store=trace shows each group commit), warn by default.
    std::fs::create_dir_all("target/bench/logs")?;
    let log = std::fs::File::create(format!("target/bench/logs/natter-{port}.log"))?;
    let filter = std::env::var("BENCH_NATTER_LOG").unwrap_or_else(|_| "warn".to_owned());
    let spawned = Instant::now();
    let child = Command::new(natter)
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["serve", "--listen", &addr.to_string()])
        .env_remove("NATTER_CONFIG")
        .env("NATTER_LOG", filter)
        .envs(BENCH_ENV.iter().copied())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot spawn natter serve")?;
    let pid = child.id();
    Ok((
        Server {
            kind: Kind::Natter,
            addr,
            pid,
            child,
            data_dir: Some(data_dir),
            token: String::new(),
            admin_token: None,
            spawned,
        },
        addr,
    ))
}

/// Spawns the uWS peer on a free loopback port (without waiting); it drives libuv's own loop
/// (see tests/bench/peer_uws.py).
pub fn spawn_peer(peer: &Peer) -> anyhow::Result<Server> {
    let port = free_port()?;
    let spawned = Instant::now();
    // The venv's python is a symlink to the interpreter: the child's pid is the peer's own, so
    // /proc/PID/stat counts the peer's CPU.
    let child = Command::new(&peer.python)
        .arg(&peer.script)
        .arg(port.to_string())
        .arg("--max-backpressure")
        .arg(peer.max_backpressure.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot spawn the uWS peer")?;
    let pid = child.id();
    Ok(Server {
        kind: Kind::Uws,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        pid,
        child,
        data_dir: None,
        token: String::new(),
        admin_token: None,
        spawned,
    })
}

/// Starts a server of `kind` and waits until it serves (natter: logged in as the bench user;
/// the peer: in the run's loop mode).
pub async fn start(kind: Kind, programs: &Programs) -> anyhow::Result<Server> {
    match kind {
        Kind::Natter => start_natter(programs, &NatterOptions::default()).await,
        Kind::Uws => {
            let peer = programs.peer.as_ref().context("no peer configured")?;
            start_peer(peer).await
        }
    }
}

/// Starts the peer and waits until it listens.
pub async fn start_peer(peer: &Peer) -> anyhow::Result<Server> {
    let mut server = spawn_peer(peer)?;
    wait_listening(&mut server, Duration::from_secs(30)).await?;
    Ok(server)
}

/// Starts natter with `options` and waits until it serves, logged in as the bench user (and
/// the admin, if asked).
pub async fn start_natter(programs: &Programs, options: &NatterOptions) -> anyhow::Result<Server> {
    let dir = natter_data_dir(&programs.natter).await?;
    if options.admin {
        add_user(&programs.natter, dir.path(), BENCH_ADMIN, "admin").await?;
    }
    let mut server = spawn_natter_with(&programs.natter, dir, &options.env)?.0;
    wait_listening(&mut server, Duration::from_secs(30)).await?;
    server.token = login(server.addr).await?;
    if options.admin {
        server.admin_token = Some(login_as(server.addr, BENCH_ADMIN, BENCH_PASSWORD).await?);
    }
    Ok(server)
}

/// Polls until the server accepts TCP connections, or fails if it exits or the time is up.
pub async fn wait_listening(server: &mut Server, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if TcpStream::connect(server.addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = server.child.try_wait()? {
            bail!("{} exited before listening: {status}", server.kind.label());
        }
        if Instant::now() > deadline {
            bail!("{} did not listen within {limit:?}", server.kind.label());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Logs the bench user in and returns the access token.
pub async fn login(addr: SocketAddr) -> anyhow::Result<String> {
    login_as(addr, BENCH_USER, BENCH_PASSWORD).await
}

/// Logs `username` in and returns the access token.
pub async fn login_as(addr: SocketAddr, username: &str, password: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({"username": username, "password": password});
    let (status, text) = http(addr, "POST", "/api/token/", None, Some(&body.to_string())).await?;
    if status != 200 {
        bail!("login of {username} answered {status}: {text}");
    }
    let value: serde_json::Value = serde_json::from_str(&text)?;
    value["access"]
        .as_str()
        .map(str::to_owned)
        .context("no access token in the login answer")
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); returns status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let body = json.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if json.is_some() {
        request.push_str("content-type: application/json\r\n");
    }
    if let Some(token) = token {
        request.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .context("no HTTP status line")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// User + system CPU time of a process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture natter targets.
    Some((utime + stime) / 100.0)
}

/// Resident set size of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<f64> {
    status_kib(pid, "VmRSS:").map(|kib| kib * 1024.0)
}

/// Peak resident set size of a process (VmHWM), in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<f64> {
    status_kib(pid, "VmHWM:").map(|kib| kib * 1024.0)
}

/// Resets a process's peak RSS to its current RSS (`5` to /proc/PID/clear_refs, which our own
/// child allows); false when the kernel refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn status_kib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This process's open-file limit (soft), from /proc/self/limits.
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// MemAvailable of the machine, in bytes.
pub fn mem_available_bytes() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Disk space allocated to the files under `dir`, in bytes (blocks, not lengths: what the disk
/// really holds).
pub fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => total += disk_bytes(&entry.path()),
            Ok(meta) => total += meta.blocks() * 512,
            Err(_) => {}
        }
    }
    total
}
