//! The server side of WebSocket framing (RFC 6455), with permessage-deflate (RFC 7692,
//! [`super::deflate`]), over any async byte stream (plain TCP or TLS, after hyper's upgrade).
//!
//! Written for many mostly idle connections:
//! - An idle connection holds no buffers. Reads go into a buffer on the stack of the poll that
//!   reads, and only the bytes of an incomplete frame are kept; the write buffer is released
//!   once flushed.
//! - A frame is refused by its header (before its payload is read) when it would take the
//!   message over `max_message` bytes, and a compressed message is inflated no further than
//!   that.
//! - Framing violations end the connection with the standard codes (see
//!   [`super::session::close_for_read_error`]); invalid UTF-8 in a text message is refused as
//!   soon as a fragment shows it.
//!
//! Pings are answered with pongs, and a peer's close with a close, by [`WebSocket::next`]; the
//! caller sends these answers with its next flush (`next` flushes them before it waits).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Poll, ready};

use bytes::{Buf as _, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::deflate::{self, Deflate, InflateError};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Bytes one poll reads into its stack buffer when no frame is in progress.
const STACK_READ_BYTES: usize = 4096;
/// Most bytes reserved at once for the rest of a frame in progress.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What can end reading from a WebSocket.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The peer closed the connection without a closing handshake.
    #[error("connection closed without a closing handshake")]
    Reset,
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A violation of the framing rules.
    #[error("{0}")]
    Protocol(&'static str),
    /// A message (or a frame of one) over the limit, in bytes.
    #[error("message exceeds {0} bytes")]
    TooBig(usize),
    /// A text message (or a close reason) that is not valid UTF-8.
    #[error("text is not valid UTF-8")]
    Utf8,
}

/// A data message arriving in fragments.
struct Partial {
    opcode: u8,
    compressed: bool,
    data: BytesMut,
    /// How much of `data` (uncompressed text) is known to be valid UTF-8.
    utf8_checked: usize,
}

/// How a message's payload goes out when compression is negotiated.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// Not compressed yet: the socket does it.
    Fresh,
    /// Compressed ahead of time, once for every receiver ([`deflate::compress`] without a
    /// window limit).
    Deflated(Bytes),
}

/// One end of a WebSocket connection, the server's.
pub struct WebSocket<S> {
    io: S,
    /// Received bytes not yet parsed: the start of an incomplete frame, at most.
    read: BytesMut,
    /// Encoded frames not yet written.
    write: Vec<u8>,
    message: Option<Partial>,
    deflate: Option<Deflate>,
    max_message: usize,
    /// natter's close frame is queued or sent: nothing more goes out.
    close_sent: bool,
    /// The peer's close frame arrived, or reading failed: nothing more comes in.
    read_done: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// A server-side WebSocket over `io`, after the 101 response: messages of at most
    /// `max_message` bytes (compressed or not), permessage-deflate when negotiated.
    pub fn new(io: S, max_message: usize, deflate: Option<Deflate>) -> WebSocket<S> {
        WebSocket {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            message: None,
            deflate,
            max_message,
            close_sent: false,
            read_done: false,
        }
    }

    /// Whether permessage-deflate was negotiated, and up to which payload length natter
    /// compresses for this peer.
    pub fn deflate(&self) -> Option<Deflate> {
        self.deflate
    }

    /// The next message: text, binary, ping, pong or close. `None` once the connection is
    /// closed (after both close frames, or after an error was returned). Cancel-safe: dropping
    /// the future loses nothing that was read.
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        loop {
            if self.read_done {
                return None;
            }
            match self.parse() {
                Ok(Some(message)) => return Some(Ok(message)),
                Ok(None) => {}
                Err(error) => {
                    self.read_done = true;
                    return Some(Err(error));
                }
            }
            if !self.write.is_empty()
                && let Err(error) = self.flush().await
            {
                self.read_done = true;
                return Some(Err(error.into()));
            }
            match self.fill().await {
                Ok(0) => {
                    self.read_done = true;
                    // After natter's close, the peer may just hang up.
                    return (!self.close_sent).then_some(Err(WsError::Reset));
                }
                Ok(_) => {}
                Err(error) => {
                    self.read_done = true;
                    return Some(Err(error.into()));
                }
            }
        }
    }

    /// Reads more bytes. With nothing buffered, into the stack and then only what arrived;
    /// within a frame, straight into the buffer.
    async fn fill(&mut self) -> io::Result<usize> {
        let WebSocket { io, read, .. } = self;
        poll_fn(|cx| {
            if read.is_empty() {
                let mut stack = [0u8; STACK_READ_BYTES];
                let mut buf = ReadBuf::new(&mut stack);
                ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
                read.extend_from_slice(buf.filled());
                Poll::Ready(Ok(buf.filled().len()))
            } else {
                read.reserve(READ_CHUNK_BYTES.min(read.capacity().max(STACK_READ_BYTES)));
                tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, read)
            }
        })
        .await
    }

    /// Parses what is buffered into the next message, if it is complete. Control frames are
    /// answered here.
    fn parse(&mut self) -> Result<Option<Message>, WsError> {
        loop {
            let Some(header) = Header::parse(&self.read)? else {
                return Ok(None);
            };
            self.check(&header)?;
            let total = header.header_len + header.payload_len;
            if self.read.len() < total {
                return Ok(None);
            }
            let mut payload = self.read.split_to(total);
            if self.read.is_empty() {
                // Nothing left over: let the allocation go with the payload.
                self.read = BytesMut::new();
            }
            payload.advance(header.header_len);
            unmask(&mut payload, header.mask);
            if let Some(message) = self.on_frame(&header, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// The rules a frame header must follow, checked before its payload is read.
    fn check(&self, header: &Header) -> Result<(), WsError> {
        if header.rsv2 || header.rsv3 {
            return Err(WsError::Protocol("reserved bits set"));
        }
        if header.mask.is_none() {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        match header.opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !header.fin {
                    return Err(WsError::Protocol("fragmented control frame"));
                }
                if header.payload_len > 125 {
                    return Err(WsError::Protocol("control frame longer than 125 bytes"));
                }
                if header.rsv1 {
                    return Err(WsError::Protocol("reserved bit set on a control frame"));
                }
            }
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                let continuing = header.opcode == OP_CONTINUATION;
                if continuing && self.message.is_none() {
                    return Err(WsError::Protocol("continuation frame without a message"));
                }
                if !continuing && self.message.is_some() {
                    return Err(WsError::Protocol(
                        "new message before the previous one ended",
                    ));
                }
                if header.rsv1 && (continuing || self.deflate.is_none()) {
                    return Err(WsError::Protocol("reserved bit set"));
                }
                let so_far = self.message.as_ref().map_or(0, |m| m.data.len());
                if header.payload_len > self.max_message.saturating_sub(so_far) {
                    return Err(WsError::TooBig(self.max_message));
                }
            }
            _ => return Err(WsError::Protocol("reserved opcode")),
        }
        Ok(())
    }

    /// One whole frame, unmasked: a message when it completes one.
    fn on_frame(&mut self, header: &Header, payload: BytesMut) -> Result<Option<Message>, WsError> {
        match header.opcode {
            OP_PING => {
                if !self.close_sent {
                    self.frame(OP_PONG, &payload, false);
                }
                Ok(Some(Message::Ping(payload.freeze())))
            }
            OP_PONG => Ok(Some(Message::Pong(payload.freeze()))),
            OP_CLOSE => {
                let close = close_frame(&payload)?;
                if !self.close_sent {
                    // Echo the status code (RFC 6455 5.5.1); an empty close gets an empty one.
                    let code = close.as_ref().map(|c| u16::from(c.code).to_be_bytes());
                    self.frame(OP_CLOSE, code.as_ref().map_or(&[][..], |c| &c[..]), false);
                    self.close_sent = true;
                }
                self.read_done = true;
                Ok(Some(Message::Close(close)))
            }
            _ if header.fin && header.opcode != OP_CONTINUATION && !header.rsv1 => {
                // The common case: a whole message in one uncompressed frame, no copy.
                data_message(header.opcode, payload.freeze()).map(Some)
            }
            _ => {
                let message = self.message.get_or_insert_with(|| Partial {
                    opcode: header.opcode,
                    compressed: header.rsv1,
                    data: BytesMut::new(),
                    utf8_checked: 0,
                });
                message.data.extend_from_slice(&payload);
                if message.opcode == OP_TEXT && !message.compressed {
                    message.utf8_checked = utf8_prefix(&message.data, message.utf8_checked)?;
                }
                if !header.fin {
                    return Ok(None);
                }
                let Some(message) = self.message.take() else {
                    return Ok(None);
                };
                let data = if message.compressed {
                    Bytes::from(deflate::inflate(&message.data, self.max_message).map_err(
                        |error| match error {
                            InflateError::TooBig => WsError::TooBig(self.max_message),
                            InflateError::Invalid => {
                                WsError::Protocol("invalid compressed message")
                            }
                        },
                    )?)
                } else {
                    message.data.freeze()
                };
                data_message(message.opcode, data).map(Some)
            }
        }
    }

    /// Queues one unfragmented frame (server frames are not masked).
    fn frame(&mut self, opcode: u8, payload: &[u8], compressed: bool) {
        let len = payload.len();
        self.write.reserve(len + 10);
        self.write
            .push(0x80 | if compressed { 0x40 } else { 0 } | opcode);
        if len < 126 {
            self.write.push(len as u8);
        } else if let Ok(short) = u16::try_from(len) {
            self.write.push(126);
            self.write.extend_from_slice(&short.to_be_bytes());
        } else {
            self.write.push(127);
            self.write.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.write.extend_from_slice(payload);
    }

    /// Queues a message for the next [`flush`](Self::flush), compressed when negotiated and
    /// worth it. A close frame starts the closing handshake; nothing is queued after it.
    pub fn feed(&mut self, message: &Message) {
        self.feed_prepared(message, Prepared::Fresh);
    }

    /// [`feed`](Self::feed) with the compression decided ahead of time (shared by every
    /// receiver of one event).
    pub fn feed_prepared(&mut self, message: &Message, prepared: Prepared) {
        if self.close_sent {
            return;
        }
        let (opcode, payload): (u8, &[u8]) = match message {
            Message::Text(text) => (OP_TEXT, text.as_bytes()),
            Message::Binary(data) => (OP_BINARY, data),
            Message::Ping(data) => return self.frame(OP_PING, &data[..data.len().min(125)], false),
            Message::Pong(data) => return self.frame(OP_PONG, &data[..data.len().min(125)], false),
            Message::Close(close) => {
                let mut payload = Vec::new();
                if let Some(close) = close {
                    payload.extend_from_slice(&u16::from(close.code).to_be_bytes());
                    let reason = close.reason.as_str();
                    let mut end = reason.len().min(123);
                    while !reason.is_char_boundary(end) {
                        end -= 1;
                    }
                    payload.extend_from_slice(&reason.as_bytes()[..end]);
                }
                self.frame(OP_CLOSE, &payload, false);
                self.close_sent = true;
                return;
            }
            Message::Frame(_) => return,
        };
        match (self.deflate, prepared) {
            (None, _) => self.frame(opcode, payload, false),
            (Some(deflate), Prepared::Deflated(shared))
                if payload.len() <= deflate.max_deflated_len =>
            {
                self.frame(opcode, &shared, true);
            }
            (Some(deflate), _) => {
                let compressed = deflate::compress(payload, deflate.max_deflated_len);
                self.frame(opcode, &compressed, true);
            }
        }
    }

    /// Writes what is queued and flushes the stream. Cancel-safe: what was written is taken
    /// off the queue write by write, the rest stays queued. The buffer is released once empty.
    pub async fn flush(&mut self) -> io::Result<()> {
        while !self.write.is_empty() {
            let n = self.io.write(&self.write).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.write.drain(..n);
        }
        self.write = Vec::new();
        self.io.flush().await
    }

    /// Queues a message and flushes.
    pub async fn send(&mut self, message: Message) -> io::Result<()> {
        self.feed(&message);
        self.flush().await
    }

    /// Starts the closing handshake: sends a close frame with `code` and `reason` (cut to 123
    /// bytes). The caller then reads until [`next`](Self::next) returns `None`.
    pub async fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        self.feed(&Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        })));
        self.flush().await
    }
}

/// A frame header.
struct Header {
    fin: bool,
    rsv1: bool,
    rsv2: bool,
    rsv3: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

impl Header {
    /// The header at the start of `buf`, or `None` while it is incomplete.
    fn parse(buf: &[u8]) -> Result<Option<Header>, WsError> {
        let [first, second, ..] = *buf else {
            return Ok(None);
        };
        let masked = second & 0x80 != 0;
        let (length_len, payload_len) = match second & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        let header_len = 2 + length_len + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(None);
        }
        let payload_len = match payload_len {
            Some(n) => n,
            None if length_len == 2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
            None => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&buf[2..10]);
                let n = u64::from_be_bytes(bytes);
                if n >> 63 != 0 {
                    return Err(WsError::Protocol("payload length with the top bit set"));
                }
                n
            }
        };
        let mask = masked.then(|| {
            let at = 2 + length_len;
            [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
        });
        Ok(Some(Header {
            fin: first & 0x80 != 0,
            rsv1: first & 0x40 != 0,
            rsv2: first & 0x20 != 0,
            rsv3: first & 0x10 != 0,
            opcode: first & 0x0f,
            mask,
            header_len,
            // Beyond usize (32-bit targets) is beyond any message limit too.
            payload_len: usize::try_from(payload_len).unwrap_or(usize::MAX / 2),
        }))
    }
}

fn unmask(payload: &mut [u8], mask: Option<[u8; 4]>) {
    let Some(mask) = mask else { return };
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

/// A complete text or binary message.
fn data_message(opcode: u8, data: Bytes) -> Result<Message, WsError> {
    if opcode == OP_TEXT {
        Ok(Message::Text(
            Utf8Bytes::try_from(data).map_err(|_| WsError::Utf8)?,
        ))
    } else {
        Ok(Message::Binary(data))
    }
}

/// How much of `data` is valid UTF-8, given that `data[..checked]` is: fails as soon as a
/// byte sequence is invalid, not when it is only cut off at the end.
fn utf8_prefix(data: &[u8], checked: usize) -> Result<usize, WsError> {
    match std::str::from_utf8(&data[checked..]) {
        Ok(_) => Ok(data.len()),
        Err(error) if error.error_len().is_none() => Ok(checked + error.valid_up_to()),
        Err(_) => Err(WsError::Utf8),
    }
}

/// The peer's close frame: a status code a peer may send, and a UTF-8 reason.
fn close_frame(payload: &[u8]) -> Result<Option<CloseFrame>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::Protocol("close frame with a one-byte payload")),
        [high, low, reason @ ..] => {
            let code = CloseCode::from(u16::from_be_bytes([*high, *low]));
            if !code.is_allowed() {
                return Err(WsError::Protocol("close frame with an invalid status code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::Utf8)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.into(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A client frame: masked with a fixed key.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Feeds `chunks` to a server socket (deflate negotiated, 4 KiB limit) and collects what
    /// `next` returns until it ends.
    fn read_all(chunks: Vec<Vec<u8>>) -> Vec<Result<Message, String>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let deflate = Deflate {
                max_deflated_len: usize::MAX,
            };
            let mut socket = WebSocket::new(server, 4096, Some(deflate));
            let writer = tokio::spawn(async move {
                for chunk in chunks {
                    if client.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                // End of input (the server sees EOF), then read what the server sends until
                // it is done.
                let _ = client.shutdown().await;
                let mut sink = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut client, &mut sink).await;
            });
            let mut seen = Vec::new();
            while let Some(next) = socket.next().await {
                let failed = next.is_err();
                seen.push(next.map_err(|e| e.to_string()));
                if failed {
                    break;
                }
            }
            drop(socket);
            let _ = writer.await;
            seen
        })
    }

    fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for point in points.into_iter().chain([bytes.len()]) {
            chunks.push(bytes[from..point.max(from)].to_vec());
            from = point.max(from);
        }
        chunks
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever arrives, reading ends (with messages, an error or the end) and never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = read_all(vec![bytes]);
        }

        /// A valid sequence of frames (whole, fragmented, compressed, with a ping between
        /// fragments) gives the same messages however the bytes are cut.
        #[test]
        fn frames_parse_the_same_however_cut(
            text in "[a-z ]{0,300}",
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let compressed = deflate::compress(text.as_bytes(), usize::MAX);
            let (head, tail) = text.as_bytes().split_at(text.len() / 2);
            let mut wire = client_frame(0x81, text.as_bytes());
            wire.extend(client_frame(0xc1, &compressed));
            wire.extend(client_frame(0x01, head));
            wire.extend(client_frame(0x89, b"ping"));
            wire.extend(client_frame(0x80, tail));
            wire.extend(client_frame(0x82, &[0, 1, 2]));
            wire.extend(client_frame(0x88, &1000u16.to_be_bytes()));
            let seen = read_all(split(&wire, &cuts));
            let expected = vec![
                Ok(Message::Text(text.as_str().into())),
                Ok(Message::Text(text.as_str().into())),
                Ok(Message::Ping(Bytes::from_static(b"ping"))),
                Ok(Message::Text(text.as_str().into())),
                Ok(Message::Binary(Bytes::from_static(&[0, 1, 2]))),
                Ok(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))),
            ];
            prop_assert_eq!(seen, expected);
        }
    }

    #[test]
    fn unmasks_any_length() {
        let mask = [1, 2, 3, 4];
        for len in 0..20 {
            let plain: Vec<u8> = (0..len).map(|i| i as u8 * 7).collect();
            let mut masked: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            unmask(&mut masked, Some(mask));
            assert_eq!(masked, plain);
        }
    }

    #[test]
    fn headers_parse_lengths_and_wait_for_more() {
        assert!(Header::parse(&[0x81]).expect("ok").is_none());
        assert!(Header::parse(&[0x81, 0xfe, 0x01]).expect("ok").is_none());
        let header = Header::parse(&[0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4])
            .expect("ok")
            .expect("complete");
        assert_eq!(
            (header.payload_len, header.header_len, header.mask),
            (256, 8, Some([1, 2, 3, 4]))
        );
        let mut huge = vec![0x82, 0xff, 0x80];
        huge.extend_from_slice(&[0; 11]);
        assert!(Header::parse(&huge).is_err());
    }

    #[test]
    fn utf8_fails_fast_but_waits_for_a_cut_character() {
        let euro = "€".as_bytes();
        assert_eq!(utf8_prefix(&euro[..2], 0).expect("incomplete is fine"), 0);
        assert_eq!(utf8_prefix(euro, 0).expect("complete"), 3);
        assert!(utf8_prefix(&[b'a', 0xff, b'b'], 0).is_err());
    }

    #[test]
    fn close_payloads() {
        assert!(close_frame(&[]).expect("empty is fine").is_none());
        assert!(close_frame(&[3]).is_err());
        assert!(
            close_frame(&[0x03, 0xe8, b'o', b'k'])
                .expect("1000")
                .is_some()
        );
        assert!(close_frame(&[0x03, 0xed]).is_err(), "1005 may not be sent");
        assert!(close_frame(&[0x03, 0xe8, 0xff]).is_err());
    }
}
