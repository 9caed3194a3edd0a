//! The control socket: a Unix socket (mode 0660) on which the daemon serves the admin API to
//! the CLI. One JSON request line in, one JSON reply line out. Only root and the daemon's own
//! user are served, checked with the peer's credentials (SO_PEERCRED), not with the file mode
//! alone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{Reply, Request};
use crate::app::AppState;
use crate::error::Error;

/// Largest request line (a password and a few names).
const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// Largest reply line the CLI reads (a long user or session list).
const MAX_REPLY_BYTES: u64 = 64 * 1024 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What travels back on the socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    Ok {
        ok: bool,
        reply: Reply,
    },
    Failed {
        ok: bool,
        error: String,
        code: String,
    },
}

/// The listening control socket; the file is removed when it is dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ControlSocket {
    /// Binds the socket at `path`, replacing a stale one (the data dir's lock file already
    /// guarantees no other daemon of this data dir runs), with mode 0660.
    pub fn bind(path: &Path) -> Result<ControlSocket, Error> {
        use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
        let fail =
            |e: std::io::Error| Error::Internal(format!("control socket {}: {e}", path.display()));
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(Error::Internal(format!(
                    "control socket {}: the path exists and is not a socket",
                    path.display()
                )));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::Internal(format!(
                    "control socket {}: another daemon is serving it",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(fail)?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let listener = UnixListener::bind(path).map_err(fail)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(fail)?;
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serves admin requests until the server shuts down.
    pub async fn serve(self, state: AppState) {
        let own_uid = effective_uid();
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = state.shutdown_token().cancelled() => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let uid = stream.peer_cred().map(|c| c.uid()).ok();
            let allowed = uid.is_some_and(|uid| uid == 0 || Some(uid) == own_uid);
            let state = state.clone();
            state.clone().spawn_tracked(async move {
                if allowed {
                    serve_one(&state, stream).await;
                } else {
                    tracing::warn!(uid = ?uid, "control socket: refused a peer that is neither root nor the daemon's user");
                    let response = Response::Failed {
                        ok: false,
                        error: "permission denied: run this as root or as the daemon's user"
                            .to_owned(),
                        code: "forbidden".to_owned(),
                    };
                    let _ = write_line(stream, &response).await;
                }
            });
        }
    }
}

async fn serve_one(state: &AppState, stream: UnixStream) {
    let (read, write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST_BYTES);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let response = match read {
        Ok(Ok(n)) if n > 0 && line.ends_with('\n') => {
            match serde_json::from_str::<Request>(&line) {
                Ok(request) => {
                    let op = request_name(&request);
                    tracing::info!(op, "admin request");
                    match super::execute(state, request, true).await {
                        Ok(reply) => Response::Ok { ok: true, reply },
                        Err(e) => failed(&e),
                    }
                }
                Err(e) => failed(&Error::BadRequest(format!("malformed admin request: {e}"))),
            }
        }
        _ => failed(&Error::BadRequest(
            "expected one admin request line".to_owned(),
        )),
    };
    let _ = write_line(write, &response).await;
}

/// The request's operation name, for the log (never its arguments: they may hold a password).
fn request_name(request: &Request) -> String {
    serde_json::to_value(request)
        .ok()
        .and_then(|v| v.get("op").and_then(|op| op.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

fn failed(e: &Error) -> Response {
    Response::Failed {
        ok: false,
        error: e.public_message(),
        code: e.code().to_owned(),
    }
}

async fn write_line<W: tokio::io::AsyncWrite + Unpin>(
    mut out: W,
    response: &Response,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    out.write_all(&bytes).await?;
    out.shutdown().await
}

/// How reaching the daemon went.
pub enum Contact {
    /// The daemon answered.
    Answered(Result<Reply, (String, String)>),
    /// No daemon listens there (no socket file, or nobody accepting): work offline.
    NoDaemon,
}

/// Sends one request to the daemon at `path`.
pub async fn request(path: &Path, request: &Request) -> Result<Contact, Error> {
    let stream = match UnixStream::connect(path).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(Contact::NoDaemon);
        }
        Err(e) => {
            return Err(Error::Unavailable(format!(
                "cannot reach the daemon's control socket {}: {e} (run as root or the daemon's user)",
                path.display()
            )));
        }
    };
    let (read, mut write) = stream.into_split();
    let mut bytes = serde_json::to_vec(request)
        .map_err(|e| Error::Internal(format!("cannot encode request: {e}")))?;
    bytes.push(b'\n');
    let io =
        |e: std::io::Error| Error::Unavailable(format!("control socket {}: {e}", path.display()));
    write.write_all(&bytes).await.map_err(io)?;
    let mut line = String::new();
    BufReader::new(read)
        .take(MAX_REPLY_BYTES)
        .read_line(&mut line)
        .await
        .map_err(io)?;
    match serde_json::from_str::<Response>(&line) {
        Ok(Response::Ok { reply, .. }) => Ok(Contact::Answered(Ok(reply))),
        Ok(Response::Failed { error, code, .. }) => Ok(Contact::Answered(Err((error, code)))),
        Err(e) => Err(Error::Unavailable(format!(
            "the daemon's answer on {} is not understood ({e}): is it another natter version?",
            path.display()
        ))),
    }
}

/// The process's effective uid, read from /proc (no unsafe `geteuid` call needed).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}
