//! A minimal WebSocket client for holding very many idle connections: the upgrade, the welcome
//! frame, then nothing but a bare `TcpStream` (no read buffer, no task) until a `Ping` is sent
//! and its `Pong` read. tokio-tungstenite keeps an 8 KiB read buffer per connection, which for
//! 100,000 connections would cost the load generator more memory than the server it measures.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::client;

/// An open, authenticated, idle connection.
pub struct RawWs {
    stream: TcpStream,
}

/// Largest server frame we accept here (the welcome and a Pong are a few hundred bytes).
const MAX_FRAME: usize = 64 * 1024;

/// A parsed server frame: opcode and payload (server frames are not masked).
struct Frame {
    opcode: u8,
    payload: Vec<u8>,
}

/// Takes one complete frame off the front of `buf`, if it holds one.
fn take_frame(buf: &mut Vec<u8>) -> anyhow::Result<Option<Frame>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let opcode = buf[0] & 0x0f;
    if buf[1] & 0x80 != 0 {
        bail!("masked frame from the server");
    }
    let (len, header) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&buf[2..10]);
            (
                usize::try_from(u64::from_be_bytes(bytes)).unwrap_or(usize::MAX),
                10,
            )
        }
        n => (usize::from(n), 2),
    };
    if len > MAX_FRAME {
        bail!("server frame of {len} bytes");
    }
    if buf.len() < header + len {
        return Ok(None);
    }
    let payload = buf[header..header + len].to_vec();
    buf.drain(..header + len);
    Ok(Some(Frame { opcode, payload }))
}

/// Reads until a text frame for which `want` is true arrives (other frames skipped).
async fn read_text_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    want: impl Fn(&[u8]) -> bool,
) -> anyhow::Result<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(frame) = take_frame(buf)? {
            match frame.opcode {
                0x1 if want(&frame.payload) => return Ok(frame.payload),
                0x8 => bail!(
                    "closed by the server: {}",
                    String::from_utf8_lossy(frame.payload.get(2..).unwrap_or_default())
                ),
                _ => {}
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection ended");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A masked client text frame.
fn text_frame(payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x81);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | u8::try_from(n).unwrap_or(0)),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(n).unwrap_or(0).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

impl RawWs {
    /// Connects from `local` to `addr`, upgrades at `path` and waits for the welcome.
    pub async fn open(
        local: Option<IpAddr>,
        addr: SocketAddr,
        path: &str,
    ) -> anyhow::Result<RawWs> {
        let mut stream = client::tcp_connect(local, addr).await?;
        // Any fixed key will do: the server only echoes its hash.
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        let header_end = loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection ended during the upgrade");
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() > 16 * 1024 {
                bail!("no end of the upgrade response");
            }
        };
        if !buf.starts_with(b"HTTP/1.1 101") {
            bail!(
                "upgrade refused: {}",
                String::from_utf8_lossy(&buf[..header_end.min(80)])
            );
        }
        buf.drain(..header_end);
        let welcome = read_text_until(&mut stream, &mut buf, |_| true).await?;
        if client::frame_type(&welcome) != Some(b"Status")
            || !welcome.windows(11).any(|w| w == b"\"connected\"")
        {
            bail!(
                "expected the welcome, got {}",
                String::from_utf8_lossy(&welcome)
            );
        }
        Ok(RawWs { stream })
    }

    /// Sends a native `Ping` and waits (up to `limit`) for its `Pong`.
    pub async fn ping(&mut self, n: u64, limit: Duration) -> anyhow::Result<()> {
        let frame = format!(r#"{{"type":"Ping","data":{{"timestamp":{n}}},"id":"p{n}"}}"#);
        let key = u32::try_from(n & 0xffff_ffff).unwrap_or(0).to_be_bytes();
        tokio::time::timeout(limit, async {
            self.stream
                .write_all(&text_frame(frame.as_bytes(), key))
                .await?;
            let mut buf = Vec::new();
            read_text_until(&mut self.stream, &mut buf, |payload| {
                client::frame_type(payload) == Some(b"Pong")
            })
            .await?;
            anyhow::Ok(())
        })
        .await
        .context("no Pong in time")?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let masked = text_frame(b"hello", [1, 2, 3, 4]);
        assert_eq!(masked[0], 0x81);
        assert_eq!(masked[1], 0x80 | 5);
        let unmasked: Vec<u8> = masked[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4])
            .collect();
        assert_eq!(unmasked, b"hello");
        // A server frame of 300 bytes (16-bit length), then half of the next.
        let mut buf = vec![0x81, 126, 1, 44];
        buf.extend(std::iter::repeat_n(b'a', 300));
        buf.extend([0x81, 5, b'x']);
        let frame = take_frame(&mut buf).expect("valid").expect("complete");
        assert_eq!((frame.opcode, frame.payload.len()), (1, 300));
        assert!(take_frame(&mut buf).expect("valid").is_none());
        assert_eq!(buf, [0x81, 5, b'x']);
    }
}
