//! The built `natter` binary as a separate process, for the tests that need what an in-process
//! server cannot give: SIGKILL, its own memory (RSS from /proc), its log lines.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::natter_bin;

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every stderr line so far (the log), kept by a thread that drains the pipe.
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `natter serve` on 127.0.0.1:0 with `data_dir` and `NATTER_*` settings in `env`
    /// (nothing else from the environment's `NATTER_*`), and waits for its "natter is serving"
    /// line. `Err` with the log when it exits first (e.g. the store does not open).
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Result<Daemon, String> {
        let mut command = Command::new(natter_bin());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars() {
            if name.starts_with("NATTER_") {
                command.env_remove(name);
            }
        }
        command.env("NATTER_LOG", "info");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().map_err(|e| format!("spawn natter: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<String>();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(start) = line.find("natter is serving")
                    && let Some(at) = line[start..].find("listen=")
                {
                    let rest = &line[start + at + "listen=".len()..];
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = ready_tx.send(addr);
                }
                kept.lock().expect("log lock").push(line);
            }
        });
        // The channel closes without an address when the process exits before serving.
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Ok(Daemon {
                child,
                addr: addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?,
                log,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // Let the drain thread catch up with the last lines.
                std::thread::sleep(Duration::from_millis(100));
                Err(log.lock().expect("log lock").join("\n"))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Resident memory of the process, in KiB (VmRSS), and its peak (VmHWM).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Whether the process is still running (not exited, not a zombie).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no shutdown, no flush, exactly like a crash.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (at most 30 s) for the exit status; the log comes back too.
    pub fn terminate(mut self) -> (Option<i32>, Vec<String>) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        std::thread::sleep(Duration::from_millis(50));
        let lines = self.log_lines();
        (code, lines)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failing test must not leave the daemon running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
