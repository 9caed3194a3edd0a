//! A WebSocket client at the byte level, for hostile-input tests: it writes frames exactly as
//! given (reserved bits, reserved opcodes, unmasked, invalid UTF-8, lying lengths) where a real
//! client library refuses to, and reads the server's frames back. It can offer
//! permessage-deflate (RFC 7692), send compressed frames (flate2 on the client side, not
//! natter's code) and inflates the server's compressed frames, counting them.

use std::net::SocketAddr;
use std::time::Duration;

use std::io::{Read as _, Write as _};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::Deadline;

/// How long a raw client waits for the server before it counts as gone.
pub const RAW_WAIT: Duration = Duration::from_secs(10);

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;

/// One frame as it goes on the wire.
#[derive(Clone, Debug)]
pub struct RawFrame {
    pub fin: bool,
    /// The three reserved bits (RSV1..3) as the low bits of this value.
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// A final, masked, well-formed frame.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> RawFrame {
        RawFrame {
            fin: true,
            rsv: 0,
            opcode,
            masked: true,
            payload: payload.into(),
        }
    }

    pub fn text(text: &str) -> RawFrame {
        RawFrame::new(OP_TEXT, text.as_bytes())
    }

    /// A text message compressed for permessage-deflate: RSV1 set, raw deflate with a sync
    /// flush, the trailing 00 00 ff ff removed.
    pub fn deflated_text(text: &str) -> RawFrame {
        let mut frame = RawFrame::new(OP_TEXT, deflate(text.as_bytes()));
        frame.rsv = 0b100;
        frame
    }

    pub fn encode(&self, mask_key: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 14);
        out.push(u8::from(self.fin) << 7 | (self.rsv & 0x7) << 4 | (self.opcode & 0xf));
        let mask_bit = if self.masked { 0x80 } else { 0 };
        let len = self.payload.len();
        if len < 126 {
            out.push(mask_bit | u8::try_from(len).expect("small"));
        } else if let Ok(len) = u16::try_from(len) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&len.to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&u64::try_from(len).expect("fits").to_be_bytes());
        }
        if self.masked {
            out.extend_from_slice(&mask_key);
            out.extend(
                self.payload
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask_key[i % 4]),
            );
        } else {
            out.extend_from_slice(&self.payload);
        }
        out
    }
}

/// What the server sent.
#[derive(Debug)]
pub enum Incoming {
    Text(String),
    Binary,
    Ping(Vec<u8>),
    Pong,
    /// The close code (1005 when the close frame had none).
    Close(u16),
    /// The connection ended (EOF or reset) without a close frame.
    Gone,
}

/// `data` as raw deflate, sync-flushed, without the sync tail (RFC 7692 7.2.1).
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).expect("compress");
    encoder.flush().expect("sync flush");
    let mut out = encoder.get_ref().clone();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "a sync flush ends so");
    out.truncate(out.len() - 4);
    out
}

/// A compressed message's payload inflated: the sync tail put back, then an empty final block
/// so the decoder sees the end.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut stream = payload.to_vec();
    stream.extend_from_slice(&[0x00, 0x00, 0xff, 0xff, 0x03, 0x00]);
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(&stream[..])
        .read_to_end(&mut out)
        .expect("the server's compressed frame inflates");
    out
}

pub struct RawWs {
    /// The server's upgrade response head (status line and headers).
    pub head: String,
    /// Data frames that arrived compressed (RSV1 set).
    pub compressed: usize,
    stream: TcpStream,
    /// Bytes read but not yet parsed.
    buffer: Vec<u8>,
    mask_counter: u32,
}

impl RawWs {
    /// Opens a TCP connection and performs the upgrade to `path_and_query`; `Err` with the
    /// status line when the server does not switch protocols.
    pub async fn connect(addr: SocketAddr, path_and_query: &str) -> Result<RawWs, String> {
        Self::connect_with(addr, path_and_query, "").await
    }

    /// [`RawWs::connect`] with extra request header lines (each ending in `\r\n`).
    pub async fn connect_with(
        addr: SocketAddr,
        path_and_query: &str,
        headers: &str,
    ) -> Result<RawWs, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        Self::upgrade(stream, addr, path_and_query, headers).await
    }

    /// [`RawWs::connect`] with a receive buffer of about `bytes` (a peer that reads slowly, or
    /// not at all, fills up quickly).
    pub async fn connect_small(
        addr: SocketAddr,
        path_and_query: &str,
        bytes: u32,
    ) -> Result<RawWs, String> {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .set_recv_buffer_size(bytes)
            .map_err(|e| e.to_string())?;
        let stream = socket
            .connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        Self::upgrade(stream, addr, path_and_query, "").await
    }

    async fn upgrade(
        mut stream: TcpStream,
        addr: SocketAddr,
        path_and_query: &str,
        headers: &str,
    ) -> Result<RawWs, String> {
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 1024];
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = tokio::time::timeout(RAW_WAIT, stream.read(&mut chunk))
                .await
                .map_err(|_| "no upgrade response".to_owned())?
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed before the upgrade response".to_owned());
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(head.lines().next().unwrap_or("").to_owned());
        }
        buffer.drain(..head_end);
        Ok(RawWs {
            head,
            compressed: 0,
            stream,
            buffer,
            mask_counter: 0,
        })
    }

    /// Writes one frame; `false` when the server has gone.
    pub async fn send(&mut self, frame: &RawFrame) -> bool {
        self.mask_counter = self.mask_counter.wrapping_add(0x9e37_79b9);
        let bytes = frame.encode(self.mask_counter.to_be_bytes());
        self.send_bytes(&bytes).await
    }

    /// Writes bytes as they are (a frame header that lies, half a frame, garbage).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> bool {
        matches!(
            tokio::time::timeout(RAW_WAIT, self.stream.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }

    async fn fill(&mut self, wanted: usize) -> bool {
        let mut chunk = [0u8; 8192];
        while self.buffer.len() < wanted {
            match tokio::time::timeout(RAW_WAIT, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buffer.extend_from_slice(&chunk[..n]),
                _ => return false,
            }
        }
        true
    }

    /// The next frame from the server (server frames are unmasked and, from natter, whole).
    pub async fn next(&mut self) -> Incoming {
        if !self.fill(2).await {
            return Incoming::Gone;
        }
        let opcode = self.buffer[0] & 0x0f;
        let rsv1 = self.buffer[0] & 0x40 != 0;
        let short = usize::from(self.buffer[1] & 0x7f);
        let (header, len) = match short {
            126 => {
                if !self.fill(4).await {
                    return Incoming::Gone;
                }
                (
                    4,
                    usize::from(u16::from_be_bytes([self.buffer[2], self.buffer[3]])),
                )
            }
            127 => {
                if !self.fill(10).await {
                    return Incoming::Gone;
                }
                let mut be = [0u8; 8];
                be.copy_from_slice(&self.buffer[2..10]);
                (10, usize::try_from(u64::from_be_bytes(be)).expect("fits"))
            }
            n => (2, n),
        };
        if !self.fill(header + len).await {
            return Incoming::Gone;
        }
        let mut payload: Vec<u8> = self.buffer.drain(..header + len).skip(header).collect();
        if rsv1 {
            assert!(
                matches!(opcode, OP_TEXT | OP_BINARY),
                "RSV1 on opcode {opcode:#x}"
            );
            payload = inflate(&payload);
            self.compressed += 1;
        }
        match opcode {
            OP_TEXT => Incoming::Text(String::from_utf8(payload).expect("server text is UTF-8")),
            OP_BINARY => Incoming::Binary,
            OP_PING => Incoming::Ping(payload),
            0xA => Incoming::Pong,
            OP_CLOSE => Incoming::Close(if payload.len() >= 2 {
                u16::from_be_bytes([payload[0], payload[1]])
            } else {
                1005
            }),
            other => panic!("server sent opcode {other:#x}"),
        }
    }

    /// The next text frame as JSON, skipping pings and heartbeats; `Err` with what ended the
    /// wait otherwise.
    pub async fn next_json(&mut self) -> Result<serde_json::Value, Incoming> {
        self.next_json_before(&mut Deadline::new("a JSON frame"))
            .await
    }

    /// [`RawWs::next_json`], every frame read before `deadline` and noted in it.
    async fn next_json_before(
        &mut self,
        deadline: &mut Deadline,
    ) -> Result<serde_json::Value, Incoming> {
        loop {
            let incoming = deadline.bound(self.next()).await;
            deadline.saw(format_args!("{incoming:?}"));
            match incoming {
                Incoming::Text(text) => {
                    let value: serde_json::Value =
                        serde_json::from_str(&text).expect("server frames are JSON");
                    if value["type"] == "Ping" {
                        continue;
                    }
                    return Ok(value);
                }
                Incoming::Ping(payload) => {
                    let _ = self.send(&RawFrame::new(0xA, payload)).await;
                }
                Incoming::Pong => {}
                other => return Err(other),
            }
        }
    }

    /// Reads JSON frames (pings and heartbeats skipped) until `step` makes something of one,
    /// all before one deadline (`what` names what it waits for); `Err` with what ended the
    /// connection first.
    pub async fn json_until<T>(
        &mut self,
        what: &str,
        mut step: impl FnMut(&serde_json::Value) -> Option<T>,
    ) -> Result<T, Incoming> {
        let mut deadline = Deadline::new(what);
        loop {
            let frame = self.next_json_before(&mut deadline).await?;
            if let Some(found) = step(&frame) {
                return Ok(found);
            }
        }
    }

    /// Reads until the server closes: the close code, or `None` when the connection just ended.
    pub async fn closed(&mut self) -> Option<u16> {
        let mut deadline = Deadline::new("the server's close frame");
        loop {
            let incoming = deadline.bound(self.next()).await;
            deadline.saw(format_args!("{incoming:?}"));
            match incoming {
                Incoming::Close(code) => {
                    // Complete the closing handshake, as a well-behaved peer does.
                    let _ = self
                        .send(&RawFrame::new(OP_CLOSE, code.to_be_bytes()))
                        .await;
                    return Some(code);
                }
                Incoming::Gone => return None,
                _ => {}
            }
        }
    }
}
