//! Native binary frames: `[type: u8][length: u32 BE][payload]`, the payload an address and
//! data.

use bytes::Bytes;

use super::super::{Rate, Request};
use super::{
    BINARY_BROADCAST, BINARY_DIRECT, BINARY_FILE, BINARY_HEADER, BINARY_STREAM, Kind, Meta,
};
use crate::core::command::{BinaryKind, Command};
use crate::error::Error;
use crate::sha256::Sha256;

/// `[type: u8][length: u32 BE][payload]`, payload `[address length: u8][address][data]`.
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
    let (kind, type_name, payload) = match binary_header(frame) {
        Ok(header) => header,
        // Not one of ours: refused before it counts.
        Err(error) => return Request::invalid(binary(0, "", String::new()), Rate::Free, error),
    };
    let hex: String = Sha256::digest(&payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let meta = binary(payload.len(), type_name, format!("sha256:{hex}"));
    match binary_address(&payload) {
        Ok((address, data)) => Request::core(
            meta,
            Rate::Message,
            Command::Binary {
                kind,
                address,
                data,
            },
        ),
        Err(error) => Request::invalid(meta, Rate::Message, error),
    }
}

/// A binary frame's header: its kind, that kind's name, and the payload, whose length must be
/// the one the header declares.
pub(crate) fn binary_header(frame: &Bytes) -> Result<(BinaryKind, &'static str, Bytes), Error> {
    if frame.len() < BINARY_HEADER {
        return Err(Error::BadRequest(format!(
            "binary frame of {} bytes is shorter than its 5-byte header",
            frame.len()
        )));
    }
    let kind = frame[0];
    let declared = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
    let payload = frame.slice(BINARY_HEADER..);
    if usize::try_from(declared).ok() != Some(payload.len()) {
        return Err(Error::BadRequest(format!(
            "binary frame length field says {declared} bytes but the payload has {}",
            payload.len()
        )));
    }
    let (kind, name) = match kind {
        BINARY_BROADCAST => (BinaryKind::Broadcast, "broadcast"),
        BINARY_DIRECT => (BinaryKind::DirectMessage, "direct_message"),
        BINARY_FILE => (BinaryKind::FileTransfer, "file_transfer"),
        BINARY_STREAM => (BinaryKind::StreamData, "stream_data"),
        other => {
            return Err(Error::BadRequest(format!(
                "unknown binary message type 0x{other:02x} (0x01 to 0x04 are defined)"
            )));
        }
    };
    Ok((kind, name, payload))
}

/// A binary payload's address (1 to 255 bytes of UTF-8 after its length byte) and the data
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
