//! permessage-deflate (RFC 7692): the negotiation, and compressing and inflating one message.
//!
//! natter always answers with `server_no_context_takeover` and `client_no_context_takeover`
//! (RFC 7692 lets a server impose both). Every message is then compressed on its own, so:
//! - no connection keeps a deflate or inflate state (about 300 KiB and 40 KiB with a 32 KiB
//!   window each): one compressor and one decompressor per worker thread, reset per message,
//!   serve every connection, and the per-connection memory bound does not move;
//! - a compressed message is the same bytes for every receiver, so a room event is compressed
//!   once per dialect and shared, like its encoding.
//!
//! Every text and binary message natter sends on such a connection has RSV1 set: deflated when
//! that pays, otherwise as stored (uncompressed) deflate blocks, six bytes more than the
//! message. RFC 7692 lets a sender mix in uncompressed messages, but not every client copes
//! with them once compression is negotiated (the Autobahn client of kosoku 0.1 does not), and
//! the stored form costs a copy and six bytes.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use hyper::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_EXTENSIONS};

/// Payloads shorter than this are sent stored: deflating them costs more than it saves.
pub const MIN_DEFLATED_BYTES: usize = 128;
/// Largest stored block (its length field is 16 bits).
const MAX_STORED_BLOCK: usize = 0xffff;
/// The four bytes a sync flush ends with, which the sender strips (RFC 7692 7.2.1) and the
/// receiver appends before inflating (7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What a connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// Longest payload natter deflates for this peer. The client's `server_max_window_bits`
    /// (8 to 15) limits how far back a compressed message may refer; natter's compressor uses
    /// a 32 KiB window, so it deflates only messages no longer than the client's window (a
    /// reference cannot reach further back than the message is long) and sends longer ones as
    /// stored blocks, which refer to nothing.
    pub max_deflated_len: usize,
}

/// Picks the first acceptable `permessage-deflate` offer of an upgrade request and returns
/// what it negotiates and the `Sec-WebSocket-Extensions` value to answer with. `None`: nothing
/// offered, or no offer natter can accept (an unknown or repeated parameter, a bad value), and
/// the connection goes on without compression.
pub fn negotiate(headers: &HeaderMap) -> Option<(Deflate, HeaderValue)> {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(split_offers)
        .find_map(|offer| accept(&offer))
}

/// Splits an extensions header value into offers (comma-separated, commas inside quoted
/// strings kept), each a list of `;`-separated parts.
fn split_offers(value: &str) -> Vec<Vec<String>> {
    let mut offers = Vec::new();
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                part.push(c);
            }
            ';' if !quoted => parts.push(std::mem::take(&mut part)),
            ',' if !quoted => {
                parts.push(std::mem::take(&mut part));
                offers.push(std::mem::take(&mut parts));
            }
            _ => part.push(c),
        }
    }
    parts.push(part);
    offers.push(parts);
    offers
}

/// Accepts one offer, if it is `permessage-deflate` with valid parameters.
fn accept(offer: &[String]) -> Option<(Deflate, HeaderValue)> {
    let (name, params) = offer.split_first()?;
    if !name.trim().eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut server_window: Option<u8> = None;
    for param in params {
        let (key, value) = match param.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim().trim_matches('"'))),
            None => (param.trim(), None),
        };
        let key = key.to_ascii_lowercase();
        if seen.contains(&key) {
            return None;
        }
        match (key.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(bits)) => server_window = Some(window_bits(bits)?),
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(bits)) => {
                window_bits(bits)?;
            }
            _ => return None,
        }
        seen.push(key);
    }
    let mut answer =
        String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    if let Some(bits) = server_window {
        // Accepting an offer with this parameter means answering with it (RFC 7692 7.1.2.1).
        answer.push_str(&format!("; server_max_window_bits={bits}"));
    }
    let deflate = Deflate {
        max_deflated_len: server_window.map_or(usize::MAX, |bits| 1usize << bits),
    };
    Some((deflate, HeaderValue::from_str(&answer).ok()?))
}

/// A window size parameter: a decimal integer from 8 to 15, without leading zeros.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// A worker thread keeps its compression buffer up to this size between messages.
const RETAINED_SCRATCH_BYTES: usize = 256 * 1024;

thread_local! {
    /// The compressor and its output buffer.
    static COMPRESSOR: RefCell<Option<(Compress, Vec<u8>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// The payload of one message as it goes out with RSV1 (sync-flushed, the tail stripped):
/// deflated when it is at least [`MIN_DEFLATED_BYTES`] and at most `max_deflated_len` long and
/// deflating shrinks it, stored otherwise.
pub fn compress(payload: &[u8], max_deflated_len: usize) -> Bytes {
    if (MIN_DEFLATED_BYTES..=max_deflated_len).contains(&payload.len())
        && let Some(deflated) = deflate(payload)
    {
        return deflated;
    }
    stored(payload)
}

/// `payload` as stored deflate blocks, then the start of the empty block a sync flush ends
/// with (its `00 00 ff ff` stripped, as for any compressed message).
pub fn stored(payload: &[u8]) -> Bytes {
    let blocks = payload.len().div_ceil(MAX_STORED_BLOCK);
    let mut out = Vec::with_capacity(payload.len() + 5 * blocks + 1);
    for block in payload.chunks(MAX_STORED_BLOCK) {
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        // BFINAL 0, BTYPE 00 (stored), padded to the byte; LEN and its complement, little-endian.
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.push(0x00);
    Bytes::from(out)
}

/// `payload` deflated, or `None` when that is no shorter than storing it.
///
/// The compressor gets room for the whole result at once: when a sync flush finds the output
/// full, miniz_oxide (flate2's backend) resumes it without the last block (the result inflates
/// short), so a result that does not fit the room of a stored copy is simply not used.
fn deflate(payload: &[u8]) -> Option<Bytes> {
    COMPRESSOR.with_borrow_mut(|cell| {
        let (compressor, scratch) =
            cell.get_or_insert_with(|| (Compress::new(Compression::fast(), false), Vec::new()));
        compressor.reset();
        scratch.clear();
        // Stored, it would be the payload plus 5 bytes per block and 1; room for one more
        // byte tells "did not fit" from "fit exactly".
        let room = payload.len() + 5 * payload.len().div_ceil(MAX_STORED_BLOCK) + 1;
        scratch.reserve_exact(room + 1);
        let done = compressor
            .compress_vec(payload, scratch, FlushCompress::Sync)
            .is_ok()
            && usize::try_from(compressor.total_in()).ok() == Some(payload.len())
            && scratch.len() < scratch.capacity()
            && scratch.ends_with(&SYNC_TAIL);
        let deflated = (done && scratch.len() - SYNC_TAIL.len() <= room)
            .then(|| Bytes::copy_from_slice(&scratch[..scratch.len() - SYNC_TAIL.len()]));
        if scratch.capacity() > RETAINED_SCRATCH_BYTES {
            *scratch = Vec::new();
        }
        deflated
    })
}

/// Why a compressed message could not be inflated.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the message limit.
    TooBig,
    /// It is not valid deflate data.
    Invalid,
}

/// Inflates one compressed message, refusing (as soon as it is known) one that would exceed
/// `max` bytes: a small frame that inflates to gigabytes costs at most `max` bytes.
pub fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    DECOMPRESSOR.with_borrow_mut(|decompressor| {
        let decompressor = decompressor.get_or_insert_with(|| Decompress::new(false));
        decompressor.reset(false);
        let limit = max.saturating_add(1);
        let mut out = Vec::with_capacity(compressed.len().saturating_mul(3).max(64).min(limit));
        for input in [compressed, &SYNC_TAIL[..]] {
            let mut at = 0;
            loop {
                if out.len() == out.capacity() {
                    if out.len() >= limit {
                        return Err(InflateError::TooBig);
                    }
                    out.reserve(out.capacity().min(limit - out.len()).max(64));
                }
                let (in_before, out_before) = (decompressor.total_in(), out.len());
                let status = decompressor
                    .decompress_vec(&input[at..], &mut out, FlushDecompress::None)
                    .map_err(|_| InflateError::Invalid)?;
                let taken = decompressor.total_in() - in_before;
                at += usize::try_from(taken).map_err(|_| InflateError::Invalid)?;
                if out.len() > max {
                    return Err(InflateError::TooBig);
                }
                if status == Status::StreamEnd {
                    // A final block: the message ends here (anything after it is ignored).
                    return Ok(out);
                }
                // The decompressor may hold output back (its window wraps) even when all
                // input is in: done only once a call neither takes input nor gives output.
                if taken == 0 && out.len() == out_before {
                    if at == input.len() {
                        break;
                    }
                    if out.len() < out.capacity() {
                        // Stuck with input left and room to spare: truncated or malformed.
                        return Err(InflateError::Invalid);
                    }
                }
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<(Deflate, String)> {
        let mut headers = HeaderMap::new();
        headers.insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_str(value).expect("header"),
        );
        negotiate(&headers).map(|(d, v)| (d, v.to_str().expect("ascii").to_owned()))
    }

    #[test]
    fn negotiates_the_first_acceptable_offer() {
        let (deflate, answer) =
            offer("permessage-deflate; client_max_window_bits").expect("accepted");
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(
            deflate.max_deflated_len,
            usize::MAX,
            "no window asked for: no limit"
        );
        let (deflate, answer) = offer(
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=9; foo, \
             permessage-deflate; server_max_window_bits=\"10\"",
        )
        .expect("the third offer");
        assert!(answer.ends_with("; server_max_window_bits=10"), "{answer}");
        assert_eq!(deflate.max_deflated_len, 1024);
        assert!(offer("permessage-deflate; server_max_window_bits=16").is_none());
        assert!(offer("permessage-deflate; server_max_window_bits=08").is_none());
        assert!(offer("permessage-deflate; server_max_window_bits").is_none());
        assert!(offer("permessage-deflate; client_no_context_takeover=1").is_none());
        assert!(
            offer("permessage-deflate; server_no_context_takeover; server_no_context_takeover")
                .is_none()
        );
        assert!(offer("x-webkit-deflate-frame").is_none());
        assert!(negotiate(&HeaderMap::new()).is_none());
    }

    #[test]
    fn round_trips_and_stores_what_does_not_shrink() {
        let text = "{\"type\":\"message\",\"room\":\"general\",\"body\":\"hello\"}".repeat(20);
        let compressed = compress(text.as_bytes(), usize::MAX);
        assert!(compressed.len() < text.len() / 4);
        assert!(!compressed.ends_with(&SYNC_TAIL));
        assert_eq!(
            inflate(&compressed, text.len()).expect("inflates"),
            text.as_bytes()
        );
        // The same bytes every time: the compressor keeps nothing between messages.
        assert_eq!(compress(text.as_bytes(), usize::MAX), compressed);
        // Short, or beyond the peer's window: stored.
        assert_eq!(compress(b"short", usize::MAX), stored(b"short"));
        assert_eq!(compress(text.as_bytes(), 256), stored(text.as_bytes()));
        for len in [0usize, 1, 127, 65535, 65536, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let block = stored(&data);
            assert_eq!(block.len(), len + 5 * len.div_ceil(65535) + 1);
            assert_eq!(inflate(&block, len).expect("stored inflates"), data);
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        assert_eq!(
            compress(&noise, usize::MAX),
            stored(&noise),
            "noise is stored"
        );
    }

    #[test]
    fn large_messages_round_trip_whole() {
        // Words of varied length: matches at every distance, output in many windows.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut text = String::new();
        while text.len() < 300_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let word = [
                "natter", "room", "message", "deflate", "a", "window", "sequence",
            ][(state % 7) as usize];
            text.push_str(word);
            text.push(if state.is_multiple_of(11) { '\n' } else { ' ' });
        }
        for len in [32_768, 65_536, 131_072, 300_000] {
            let data = &text.as_bytes()[..len];
            let compressed = compress(data, usize::MAX);
            assert!(compressed.len() < len / 2, "{len}: {}", compressed.len());
            let inflated = inflate(&compressed, len).expect("inflates");
            assert_eq!(inflated.len(), len);
            assert!(inflated == data, "{len}: same bytes");
        }
        // Barely compressible: the deflated result is most of the input (a sync flush that
        // once overflowed its output and came back a block short).
        let data: Vec<u8> = (0..65_536usize)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if (i / 64).is_multiple_of(16) {
                    (i % 7) as u8
                } else {
                    (state >> 32) as u8 & 0x3f
                }
            })
            .collect();
        let compressed = compress(&data, usize::MAX);
        assert!(compressed.len() < data.len(), "deflated, not stored");
        assert!(inflate(&compressed, data.len()).expect("inflates") == data);
    }

    #[test]
    fn inflating_is_bounded_and_rejects_garbage() {
        let zeros = vec![0u8; 1 << 20];
        let bomb = compress(&zeros, usize::MAX);
        assert!(bomb.len() < 8192, "{}", bomb.len());
        assert_eq!(inflate(&bomb, 65536), Err(InflateError::TooBig));
        assert_eq!(inflate(&bomb, 1 << 20).map(|v| v.len()), Ok(1 << 20));
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff, 0xff], 1024),
            Err(InflateError::Invalid)
        );
        assert_eq!(inflate(&[], 1024), Ok(Vec::new()));
    }
}
