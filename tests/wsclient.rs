//! A WebSocket test client for the native protocol: JSON frames in and out, with a bound on
//! every wait so a missing frame fails the test instead of hanging it.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};

/// Longest a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);

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
        self.recv_where(|f| f["id"] == id).await
    }

    /// The next message, text parsed as JSON (binary as {"binary": [bytes]}).
    pub async fn next_message(&mut self) -> Message {
        match tokio::time::timeout(WAIT, self.socket.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => panic!("read error: {e}"),
            Ok(None) => panic!("connection ended"),
            Err(_) => panic!("no frame within {WAIT:?}"),
        }
    }

    /// The next JSON frame, skipping server heartbeats.
    pub async fn recv(&mut self) -> Value {
        loop {
            match self.next_message().await {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    if value["type"] == "Ping" {
                        continue;
                    }
                    return value;
                }
                Message::Close(frame) => panic!("closed: {frame:?}"),
                Message::Binary(b) => panic!("unexpected binary frame of {} bytes", b.len()),
                _ => {}
            }
        }
    }

    /// Skips frames until one satisfies `select`.
    pub async fn recv_where(&mut self, select: impl Fn(&Value) -> bool) -> Value {
        loop {
            let frame = self.recv().await;
            if select(&frame) {
                return frame;
            }
        }
    }

    /// Skips frames until one of `kind`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        self.recv_where(|f| f["type"] == kind).await
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Ok(Some(Ok(Message::Close(Some(frame))))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Ok(Some(Ok(Message::Close(None)))) => return (1005, String::new()),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => panic!("read error before close: {e}"),
                Ok(None) => panic!("connection ended without a close frame"),
                Err(_) => panic!("not closed within {WAIT:?}"),
            }
        }
    }
}

impl Ws {
    /// Reads until the connection ends: `Some(code)` for a close frame, `None` when it was cut
    /// (reset or EOF) without one.
    pub async fn ends(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => return None,
                Err(_) => panic!("connection did not end within {WAIT:?}"),
            }
        }
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
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

impl Ws {
    /// Opens a WebSocket to `path` (token and all) without reading anything: for dialects whose
    /// first frame is not the native welcome, or that send none.
    pub async fn open(addr: SocketAddr, path: &str) -> Ws {
        Ws {
            socket: raw_connect(addr, path, &[]).await,
            welcome: Value::Null,
        }
    }

    /// Reads the frames the server sends before it closes, and the close code.
    pub async fn frames_until_close(&mut self) -> (Vec<Value>, u16) {
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    frames.push(serde_json::from_str(text.as_str()).expect("JSON frame"));
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return (frames, frame.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => panic!("read error before close: {e}"),
                Ok(None) => panic!("connection ended without a close frame"),
                Err(_) => panic!("not closed within {WAIT:?}"),
            }
        }
    }
}
