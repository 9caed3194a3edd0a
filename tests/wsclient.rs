//! A WebSocket test client for the native protocol: JSON frames in and out. Every wait runs
//! under one [`Deadline`] however many frames it reads, so a missing frame fails the test (with
//! what was awaited and what came instead) instead of hanging it.

use std::net::SocketAddr;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};

use crate::common::Deadline;

pub struct Ws {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The welcome frame's data.details.
    pub welcome: Value,
}

impl Ws {
    /// Connects to /ws with `?token=` and reads the welcome frame.
    pub async fn connect(addr: SocketAddr, token: &str) -> Ws {
        let socket = raw_connect(addr, &format!("/ws?token={token}"), &[]).await;
        Self::welcomed(socket).await
    }

    /// Reads the welcome frame of a connected socket.
    pub async fn welcomed(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Ws {
        let mut ws = Ws {
            socket,
            welcome: Value::Null,
        };
        let welcome = ws.recv().await;
        assert_eq!(welcome["type"], "Status", "{welcome}");
        assert_eq!(welcome["data"]["status"], "connected", "{welcome}");
        ws.welcome = welcome["data"]["details"].clone();
        ws
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// Sends `{"type", "data", "id"}` and returns the first reply carrying that id.
    pub async fn request(&mut self, kind: &str, data: Value, id: &str) -> Value {
        self.send(json!({"type": kind, "data": data, "id": id}))
            .await;
        self.recv_where(&format!("the reply to {kind} {id:?}"), |f| f["id"] == id)
            .await
    }

    /// The next message of the socket before `deadline`, noted in it; a read error or the end
    /// of the connection fails the test.
    async fn next_before(&mut self, deadline: &mut Deadline) -> Message {
        match deadline.bound(self.socket.next()).await {
            Some(Ok(message)) => {
                deadline.saw(shown(&message));
                message
            }
            Some(Err(e)) => deadline.ended(format_args!("read error {e}")),
            None => deadline.ended("the connection ended"),
        }
    }

    /// Reads messages until `step` makes something of one, all before one deadline: for waits
    /// on binary frames or on the heartbeat. `what` names what it waits for.
    pub async fn messages_until<T>(
        &mut self,
        what: &str,
        mut step: impl FnMut(Message) -> Option<T>,
    ) -> T {
        let mut deadline = Deadline::new(what);
        loop {
            if let Some(found) = step(self.next_before(&mut deadline).await) {
                return found;
            }
        }
    }

    /// The next JSON frame before `deadline`, skipping server heartbeats. A heartbeat is
    /// answered, as a client does: a test that outlives `ws.ping_interval_secs` plus
    /// `ws.pong_timeout_secs` (a slow machine) would otherwise lose its connection (4000).
    async fn recv_before(&mut self, deadline: &mut Deadline) -> Value {
        loop {
            match self.next_before(deadline).await {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    if value["type"] == "Ping" {
                        self.send(json!({"type": "Pong", "data": value["data"]}))
                            .await;
                        continue;
                    }
                    return value;
                }
                Message::Close(frame) => deadline.ended(format_args!("closed: {frame:?}")),
                Message::Binary(b) => panic!("unexpected binary frame of {} bytes", b.len()),
                _ => {}
            }
        }
    }

    /// The next JSON frame, skipping (and answering) server heartbeats.
    pub async fn recv(&mut self) -> Value {
        self.recv_before(&mut Deadline::new("a JSON frame")).await
    }

    /// Reads JSON frames (heartbeats skipped) until `step` makes something of one, all before
    /// one deadline. `what` names what it waits for, for the message when it gives up.
    pub async fn recv_until<T>(
        &mut self,
        what: &str,
        mut step: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let mut deadline = Deadline::new(what);
        loop {
            let frame = self.recv_before(&mut deadline).await;
            if let Some(found) = step(&frame) {
                return found;
            }
        }
    }

    /// Skips frames until one satisfies `select` (`what` names it).
    pub async fn recv_where(&mut self, what: &str, select: impl Fn(&Value) -> bool) -> Value {
        self.recv_until(what, |frame| select(frame).then(|| frame.clone()))
            .await
    }

    /// Skips frames until one of `kind`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        self.recv_where(&format!("a {kind} frame"), |f| f["type"] == kind)
            .await
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        let mut deadline = Deadline::new("the server's close frame");
        loop {
            match self.next_before(&mut deadline).await {
                Message::Close(Some(frame)) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Message::Close(None) => return (1005, String::new()),
                _ => {}
            }
        }
    }

    /// Reads until the connection ends: `Some(code)` for a close frame, `None` when it was cut
    /// (reset or EOF) without one.
    pub async fn ends(&mut self) -> Option<u16> {
        let mut deadline = Deadline::new("the end of the connection");
        loop {
            match deadline.bound(self.socket.next()).await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(message)) => deadline.saw(shown(&message)),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Reads the frames the server sends before it closes, and the close code.
    pub async fn frames_until_close(&mut self) -> (Vec<Value>, u16) {
        let mut frames = Vec::new();
        let mut deadline = Deadline::new("the server's close frame");
        loop {
            match self.next_before(&mut deadline).await {
                Message::Text(text) => {
                    frames.push(serde_json::from_str(text.as_str()).expect("JSON frame"));
                }
                Message::Close(frame) => {
                    return (frames, frame.map_or(1005, |f| u16::from(f.code)));
                }
                _ => {}
            }
        }
    }

    /// Opens a WebSocket to `path` (token and all) without reading anything: for dialects whose
    /// first frame is not the native welcome, or that send none.
    pub async fn open(addr: SocketAddr, path: &str) -> Ws {
        Ws {
            socket: raw_connect(addr, path, &[]).await,
            welcome: Value::Null,
        }
    }
}

/// A message as a wait that gives up shows it.
fn shown(message: &Message) -> String {
    match message {
        Message::Text(text) => text.to_string(),
        Message::Binary(bytes) => format!("<binary, {} bytes>", bytes.len()),
        other => format!("{other:?}"),
    }
}

/// Opens a WebSocket to `path` with extra request headers (no welcome read).
pub async fn raw_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    try_connect(addr, path, headers)
        .await
        .unwrap_or_else(|e| panic!("connect {path}: {e}"))
}

/// Opens a WebSocket to `path`; the handshake too is bounded by a deadline.
pub async fn try_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, tungstenite::Error> {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    Deadline::new(format!("the upgrade of {path}"))
        .bound(tokio_tungstenite::connect_async(request))
        .await
        .map(|(socket, _)| socket)
}
