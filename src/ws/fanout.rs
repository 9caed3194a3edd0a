//! The WebSocket edge's part of fan-out: each delivery's encodings, one per dialect, made by the
//! first receiver of that dialect and shared by the rest (a cheap refcount clone), and the same
//! for their permessage-deflate compression. The broker keeps them with the delivery as its
//! [`Attachment`]; [`prepare`] makes them when the event is published.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::dialect::{self, slots};
use crate::events::Event;
use crate::hub::{Attachment, Delivery, Prepare};

/// One delivery's encodings, by dialect slot.
#[derive(Default)]
pub struct Encodings {
    frames: [OnceLock<Option<Message>>; slots::COUNT],
    /// Each encoding compressed for permessage-deflate, made by the first receiver that
    /// negotiated it.
    deflated: [OnceLock<Bytes>; slots::COUNT],
}

/// The broker's [`Prepare`] for WebSocket receivers. Broadcasts and binary frames are shown by
/// the native dialect only: they are encoded here and kept without their payload, so that a
/// queued one costs its frame once, not the frame and the payload again (a slow subscriber's
/// full queue is what bounds the memory it can hold).
pub fn prepare() -> Prepare {
    Arc::new(|event: &mut Event| -> Attachment {
        let encodings = Encodings::default();
        if matches!(event, Event::Broadcast { .. } | Event::Binary { .. }) {
            let frame = dialect::native::encode(event);
            if let Some(cell) = encodings.frames.get(slots::NATIVE) {
                let _ = cell.set(frame);
            }
            match event {
                Event::Broadcast { payload, .. } => *payload = Value::Null,
                Event::Binary { data, .. } => *data = Bytes::new(),
                _ => {}
            }
        }
        Box::new(encodings)
    })
}

fn encodings(delivery: &Delivery) -> Option<&Encodings> {
    delivery.attachment.downcast_ref::<Encodings>()
}

/// The delivery's event as dialect `slot` encodes it, computed by the first receiver of that
/// dialect and shared by the rest. `None`: the dialect does not show it.
pub fn encoded(
    delivery: &Delivery,
    slot: usize,
    encode: impl FnOnce(&Event) -> Option<Message>,
) -> Option<Message> {
    match encodings(delivery).and_then(|e| e.frames.get(slot)) {
        Some(cell) => cell.get_or_init(|| encode(&delivery.event)).clone(),
        None => encode(&delivery.event),
    }
}

/// The payload of `frame` (the delivery's encoding for `slot`) compressed for
/// permessage-deflate, computed once and shared like the encoding.
pub fn deflated(delivery: &Delivery, slot: usize, frame: &Message) -> Bytes {
    let compress = || super::deflate::compress(&frame.clone().into_data(), usize::MAX);
    match encodings(delivery).and_then(|e| e.deflated.get(slot)) {
        Some(cell) => cell.get_or_init(compress).clone(),
        None => compress(),
    }
}
