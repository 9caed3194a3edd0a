//! Native binary frames, as the document gives them: `[type: u8][length: u32 BE][payload]`,
//! types 0x01 broadcast, 0x02 direct message, 0x03 file transfer, 0x04 stream data. natter's
//! routing extension sets the type's high bit (0x81 to 0x84): its payload starts with an
//! address, `[address length: u8][address][data]`, a topic (broadcast, stream) or a username
//! (direct, file). A document frame is never read for an address, so the two cannot be
//! mistaken for each other.

use bytes::Bytes;

use super::super::{Rate, Request};
use super::{BINARY_ADDRESSED, BINARY_HEADER, Kind, Meta};
use crate::core::command::{BinaryKind, Command};
use crate::error::Error;
use crate::sha256::Sha256;

/// A binary frame's request: its payload (after the address, for an addressed one), relayed or
/// stored by the core, and what its `binary_received` status will say.
pub(super) fn decode_binary(frame: &Bytes) -> Request<Meta> {
    let binary = |size, type_name, checksum| {
        Meta::new(
            None,
            Kind::Binary {
                size,
                type_name,
                checksum,
            },
        )
    };
    let header = match binary_header(frame) {
        Ok(header) => header,
        // Not a frame of the protocol: refused before it counts.
        Err(error) => return Request::invalid(binary(0, "", String::new()), Rate::Free, error),
    };
    let hex: String = Sha256::digest(&header.payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let meta = binary(
        header.payload.len(),
        kind_name(header.kind),
        format!("sha256:{hex}"),
    );
    if !header.addressed {
        return Request::core(
            meta,
            Rate::Message,
            Command::Binary {
                kind: header.kind,
                address: None,
                data: header.payload,
            },
        );
    }
    match binary_address(&header.payload) {
        Ok((address, data)) => Request::core(
            meta,
            Rate::Message,
            Command::Binary {
                kind: header.kind,
                address: Some(address),
                data,
            },
        ),
        Err(error) => Request::invalid(meta, Rate::Message, error),
    }
}

/// A binary frame's header, read.
pub(crate) struct Header {
    pub(crate) kind: BinaryKind,
    /// natter's routing extension: the payload starts with an address.
    pub(crate) addressed: bool,
    /// Everything after the 5-byte header; its length is the one the header declares.
    pub(crate) payload: Bytes,
}

/// The name of a kind in `binary_received`.
pub(crate) fn kind_name(kind: BinaryKind) -> &'static str {
    match kind {
        BinaryKind::Broadcast => "broadcast",
        BinaryKind::DirectMessage => "direct_message",
        BinaryKind::FileTransfer => "file_transfer",
        BinaryKind::StreamData => "stream_data",
    }
}

/// The type byte of a kind (the document's; `| BINARY_ADDRESSED` for the extension).
pub(super) fn kind_byte(kind: BinaryKind) -> u8 {
    match kind {
        BinaryKind::Broadcast => 0x01,
        BinaryKind::DirectMessage => 0x02,
        BinaryKind::FileTransfer => 0x03,
        BinaryKind::StreamData => 0x04,
    }
}

/// Reads a binary frame's header: its type (one of the document's, with or without the
/// extension's bit) and a length that is the payload's.
pub(crate) fn binary_header(frame: &Bytes) -> Result<Header, Error> {
    if frame.len() < BINARY_HEADER {
        return Err(Error::BadRequest(format!(
            "binary frame of {} bytes is shorter than its 5-byte header",
            frame.len()
        )));
    }
    let byte = frame[0];
    let declared = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
    let payload = frame.slice(BINARY_HEADER..);
    if usize::try_from(declared).ok() != Some(payload.len()) {
        return Err(Error::BadRequest(format!(
            "binary frame length field says {declared} bytes but the payload has {}",
            payload.len()
        )));
    }
    let kind = match byte & !BINARY_ADDRESSED {
        0x01 => BinaryKind::Broadcast,
        0x02 => BinaryKind::DirectMessage,
        0x03 => BinaryKind::FileTransfer,
        0x04 => BinaryKind::StreamData,
        _ => {
            return Err(Error::BadRequest(format!(
                "unknown binary message type 0x{byte:02x} (0x01 to 0x04 are defined, and 0x81 \
                 to 0x84 with an address)"
            )));
        }
    };
    Ok(Header {
        kind,
        addressed: byte & BINARY_ADDRESSED != 0,
        payload,
    })
}

/// An addressed payload's address (1 to 255 bytes of UTF-8 after its length byte) and the data
/// after it.
pub(crate) fn binary_address(payload: &Bytes) -> Result<(String, Bytes), Error> {
    let address_len = usize::from(*payload.first().ok_or_else(|| {
        Error::BadRequest("binary payload must start with an address length byte".to_owned())
    })?);
    let address = payload
        .get(1..1 + address_len)
        .and_then(|a| std::str::from_utf8(a).ok())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            Error::BadRequest("binary payload address is missing or not UTF-8".to_owned())
        })?
        .to_owned();
    Ok((address, payload.slice(1 + address_len..)))
}
