//! The load generator's WebSocket client side: connecting (TCP_NODELAY, small buffers, the
//! welcome frame, optionally from a chosen loopback source address), the per-target adapter
//! (natter's token vs the peer's none), pre-serialized frames with a send timestamp (and a
//! counter) patched in place, and reading frames back: their type, timestamp and sequence.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::servers::Server;

pub type Ws = WebSocketStream<TcpStream>;

/// How long one connection may take to open and be welcomed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Microseconds since the load generator started: the clock of every timestamp (publishers
/// and subscribers are in this one process, so no clock sync is needed).
pub fn now_micros() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Small buffers: the load generator holds up to 10,000 connections and must stay cheaper
/// than the server it measures.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
}

/// A TCP connection to `addr`, from `local` (port chosen by the kernel) when given: loopback
/// has one ephemeral port range per source address, so 100,000 connections need several
/// (127.0.0.2, 127.0.0.3, ...).
pub async fn tcp_connect(local: Option<IpAddr>, addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = match local {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let socket = if ip.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("binding a client socket to {ip}"))?;
            socket.connect(addr).await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a WebSocket to `path` and completes the handshake (no frame read).
pub async fn handshake(addr: SocketAddr, path: &str) -> anyhow::Result<Ws> {
    let stream = tcp_connect(None, addr).await?;
    let url = format!("ws://{addr}{path}");
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(client_config())).await?;
    Ok(ws)
}

/// Opens an authenticated connection and waits for the welcome (`Status connected`).
pub async fn connect(server: &Server) -> anyhow::Result<Ws> {
    connect_to(server.addr, &server.ws_path()).await
}

/// [`connect`] by address and path (with the credentials the target needs in it).
pub async fn connect_to(addr: SocketAddr, path: &str) -> anyhow::Result<Ws> {
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut ws = handshake(addr, path).await?;
        let welcome = next_text(&mut ws).await?;
        if !welcome.contains("\"connected\"") {
            bail!("expected the welcome frame, got {welcome}");
        }
        Ok(ws)
    })
    .await
    .context("connect timed out")?
}

/// The next text frame (control frames skipped).
pub async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

/// The top-level `type` of a server frame. natter writes object members sorted, so its `type`
/// comes last (`{"data":{...},"id":"1","type":"Ack"}`); the peer writes it first. Inside a JSON
/// string a quote is escaped, so `,"type":"` can only be a member name, and the last one in a
/// sorted frame is the top level's.
pub fn frame_type(frame: &[u8]) -> Option<&[u8]> {
    const FIRST: &[u8] = b"{\"type\":\"";
    const LAST: &[u8] = b",\"type\":\"";
    let rest = if let Some(rest) = frame.strip_prefix(FIRST) {
        rest
    } else {
        let at = frame.windows(LAST.len()).rposition(|w| w == LAST)?;
        &frame[at + LAST.len()..]
    };
    let end = rest.iter().position(|&b| b == b'"')?;
    Some(&rest[..end])
}

/// The unsigned integer after `"key":` (the first occurrence), if any.
pub fn number_after(frame: &[u8], key: &[u8]) -> Option<u64> {
    let at = frame.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = &frame[at..];
    let len = digits.iter().take_while(|d| d.is_ascii_digit()).count();
    if len == 0 || len > 19 {
        return None;
    }
    digits[..len]
        .iter()
        .try_fold(0u64, |acc, d| Some(acc * 10 + u64::from(d - b'0')))
}

/// The `seq` of a Message or Ack frame.
pub fn seq_of(frame: &[u8]) -> Option<u64> {
    number_after(frame, b"\"seq\":")
}

/// Reads text frames until one contains `needle`.
pub async fn read_until(ws: &mut Ws, needle: &str) -> anyhow::Result<String> {
    loop {
        let text = next_text(ws).await?;
        if text.contains(needle) {
            return Ok(text);
        }
        if text.contains("\"Error\"") {
            bail!("server error: {text}");
        }
    }
}

/// Subscribes to one topic and waits for the `Status subscribed` reply.
pub async fn subscribe(ws: &mut Ws, topic: &str) -> anyhow::Result<()> {
    let frame = serde_json::json!({"type": "Subscribe", "data": {"topics": [topic]}});
    ws.send(Message::text(frame.to_string())).await?;
    read_until(ws, "\"subscribed\"").await?;
    Ok(())
}

/// Where a timestamp sits in a payload: `"t":"` then 20 digits.
const STAMP_KEY: &[u8] = b"\"t\":\"";
const STAMP_DIGITS: usize = 20;

/// A frame serialized once, with a fixed-width timestamp field (and optionally counter fields)
/// patched per send.
#[derive(Clone)]
pub struct Template {
    bytes: Vec<u8>,
    stamp_at: usize,
    /// Where each `COUNT` marker was: 20 digits each, all patched with the same counter.
    count_at: Vec<usize>,
}

/// Writes `value` as `slot.len()` decimal digits, zero-padded.
fn write_digits(slot: &mut [u8], mut value: u64) {
    for digit in slot.iter_mut().rev() {
        // value % 10 < 10: the cast cannot truncate.
        *digit = b'0' + u8::try_from(value % 10).unwrap_or(0);
        value /= 10;
    }
}

impl Template {
    /// `frame` is the frame's JSON with `STAMP` where the timestamp goes and `COUNT` where a
    /// counter goes (any number of times; all inside strings).
    fn new(frame: &str) -> anyhow::Result<Template> {
        let digits = "0".repeat(STAMP_DIGITS);
        let mut bytes = String::with_capacity(frame.len() + 64);
        let mut stamp_at = None;
        let mut count_at = Vec::new();
        let mut rest = frame;
        loop {
            let next = [("STAMP", true), ("COUNT", false)]
                .iter()
                .filter_map(|&(marker, stamp)| rest.find(marker).map(|at| (at, marker, stamp)))
                .min_by_key(|&(at, _, _)| at);
            let Some((at, marker, stamp)) = next else {
                bytes.push_str(rest);
                break;
            };
            bytes.push_str(&rest[..at]);
            if stamp {
                if stamp_at.is_some() {
                    bail!("template with two STAMPs");
                }
                stamp_at = Some(bytes.len());
            } else {
                count_at.push(bytes.len());
            }
            bytes.push_str(&digits);
            rest = &rest[at + marker.len()..];
        }
        Ok(Template {
            bytes: bytes.into_bytes(),
            stamp_at: stamp_at.context("template without STAMP")?,
            count_at,
        })
    }

    /// A Broadcast to `topic` whose payload (about 100 bytes of JSON) carries the send time.
    pub fn broadcast(topic: &str) -> anyhow::Result<Template> {
        // {"t":"<20 digits>","p":"<65 x>"} is 100 bytes.
        let pad = "x".repeat(65);
        Template::new(&format!(
            r#"{{"type":"Broadcast","data":{{"topic":"{topic}","payload":{{"t":"STAMP","p":"{pad}"}}}}}}"#
        ))
    }

    /// A durable Send to `room` (content about 100 bytes, the time first) with request id `id`.
    pub fn send(room: &str, id: &str) -> anyhow::Result<Template> {
        let pad = "x".repeat(79);
        Template::new(&format!(
            r#"{{"type":"Send","data":{{"room":"{room}","content":"STAMP {pad}"}},"id":"{id}"}}"#
        ))
    }

    /// A durable Send to `room` whose content (about 100 bytes) begins with `T` and the send
    /// time, with a `client_msg_id` unique per send (`TAG-` and the counter), as the web client
    /// sends every message. The request id is `TAG`.
    pub fn send_idempotent(room: &str, tag: &str) -> anyhow::Result<Template> {
        let pad = "x".repeat(78);
        Template::new(&format!(
            r#"{{"type":"Send","data":{{"room":"{room}","content":"TSTAMP {pad}","client_msg_id":"{tag}-COUNT"}},"id":"{tag}"}}"#
        ))
    }

    /// The frame stamped with `micros`.
    pub fn stamped(&self, micros: u64) -> Message {
        self.stamped_counted(micros, 0)
    }

    /// The frame stamped with `micros`, its counter fields set to `count`.
    pub fn stamped_counted(&self, micros: u64, count: u64) -> Message {
        let mut bytes = self.bytes.clone();
        write_digits(
            &mut bytes[self.stamp_at..self.stamp_at + STAMP_DIGITS],
            micros,
        );
        for &at in &self.count_at {
            write_digits(&mut bytes[at..at + STAMP_DIGITS], count);
        }
        // Only ASCII digits replaced ASCII digits: still UTF-8.
        match String::from_utf8(bytes) {
            Ok(text) => Message::text(text),
            Err(e) => Message::binary(e.into_bytes()),
        }
    }
}

/// The send timestamp in a received frame, if it carries one.
pub fn stamp_of(frame: &[u8]) -> Option<u64> {
    let at = frame
        .windows(STAMP_KEY.len())
        .position(|w| w == STAMP_KEY)?
        + STAMP_KEY.len();
    let digits = frame.get(at..at + STAMP_DIGITS)?;
    digits.iter().try_fold(0u64, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

/// The send timestamp in a relayed chat Message: its content begins `T` and 20 digits (see
/// [`Template::send_idempotent`]).
pub fn content_stamp(frame: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"content\":\"T";
    let at = frame.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = frame.get(at..at + STAMP_DIGITS)?;
    digits.iter().try_fold(0u64, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let template = Template::broadcast("bench.fanout").expect("template");
        let Message::Text(text) = template.stamped(1_234_567) else {
            panic!("text frame");
        };
        let value: serde_json::Value = serde_json::from_str(text.as_str()).expect("valid JSON");
        assert_eq!(value["data"]["payload"]["t"], "00000000000001234567");
        assert_eq!(
            value["data"]["payload"].to_string().len(),
            100,
            "payload size"
        );
        assert_eq!(stamp_of(text.as_bytes()), Some(1_234_567));
        // natter relays the payload re-serialized (sorted keys): the stamp survives.
        let relayed =
            serde_json::json!({"type":"Broadcast","data":{"payload":value["data"]["payload"]}});
        assert_eq!(stamp_of(relayed.to_string().as_bytes()), Some(1_234_567));
        assert_eq!(stamp_of(b"{\"t\":\"12\"}"), None);
    }

    #[test]
    fn frame_types_in_either_order() {
        assert_eq!(
            frame_type(br#"{"type":"Ack","data":{"status":"delivered"},"id":"1"}"#),
            Some(&b"Ack"[..])
        );
        // natter sorts members: the top-level type comes last, after nested ones.
        let sorted = br#"{"data":{"payload":{"type":"inner"},"x":1},"id":"1","type":"Ack"}"#;
        assert_eq!(frame_type(sorted), Some(&b"Ack"[..]));
        let message = br#"{"data":{"content":"a \",\"type\":\"x","seq":7},"type":"Message"}"#;
        assert_eq!(frame_type(message), Some(&b"Message"[..]));
        assert_eq!(seq_of(message), Some(7));
        assert_eq!(frame_type(b"{}"), None);
        assert_eq!(number_after(b"{\"seq\":}", b"\"seq\":"), None);
    }

    #[test]
    fn idempotent_send_template() {
        let template = Template::send_idempotent("team", "c3").expect("template");
        let Message::Text(text) = template.stamped_counted(987_654, 42) else {
            panic!("text frame");
        };
        let value: serde_json::Value = serde_json::from_str(text.as_str()).expect("valid JSON");
        assert_eq!(value["type"], "Send");
        assert_eq!(value["id"], "c3");
        assert_eq!(value["data"]["client_msg_id"], "c3-00000000000000000042");
        let content = value["data"]["content"].as_str().expect("content");
        assert!((95..=110).contains(&content.len()), "{}", content.len());
        // As natter relays it in a Message (members sorted).
        let relayed =
            serde_json::json!({"data": {"content": content, "seq": 3}, "type": "Message"});
        let relayed = relayed.to_string();
        assert_eq!(content_stamp(relayed.as_bytes()), Some(987_654));
        assert_eq!(frame_type(relayed.as_bytes()), Some(&b"Message"[..]));
        assert_eq!(seq_of(relayed.as_bytes()), Some(3));
    }

    #[test]
    fn send_template_is_valid_json() {
        let template = Template::send("bench", "c1").expect("template");
        let Message::Text(text) = template.stamped(42) else {
            panic!("text frame");
        };
        let value: serde_json::Value = serde_json::from_str(text.as_str()).expect("valid JSON");
        assert_eq!(value["type"], "Send");
        assert!(value["data"]["content"].as_str().expect("content").len() >= 90);
    }
}
