//! WebSocket dialects: codecs between one wire protocol and the core. A dialect decodes frames
//! into calls on the core (through [`Ctx`]) and encodes core events into its frames. It holds no
//! rules of its own: ACL, limits, storage and fan-out are the core's.

pub mod edusphere;
pub mod fastchat;
pub mod kibray;
pub mod native;
pub mod rooms;
pub mod root;

/// Cache slots of the dialects (see [`Dialect::slot`]).
pub mod slots {
    pub const NATIVE: usize = 0;
    pub const EDUSPHERE: usize = 1;
    pub const ROOMS: usize = 2;
    pub const FASTCHAT: usize = 3;
    pub const KIBRAY: usize = 4;
    /// How many there are (the size of each delivery's encoding cache, `ws::fanout`).
    pub const COUNT: usize = 5;
}

/// The name of a dialect slot, for metrics and `natter sessions list`.
pub fn slot_name(slot: usize) -> &'static str {
    match slot {
        slots::EDUSPHERE => "edusphere",
        slots::ROOMS => "rooms",
        slots::FASTCHAT => "fastchat",
        slots::KIBRAY => "kibray",
        _ => "native",
    }
}

/// A JSON text frame. The text is trimmed to its length: an encoded frame is shared by every
/// subscriber's queue and may wait there a while (up to `ws.outbound_queue` of them for a slow
/// reader), and serializing leaves up to twice its length allocated.
pub fn json_text(value: &serde_json::Value) -> Message {
    let mut text = value.to_string();
    text.shrink_to_fit();
    Message::text(text)
}

/// A room message as a UUID (for protocols whose message ids are UUIDs): the room id and the
/// sequence number, big-endian, so it maps back without a lookup.
pub fn message_uuid(room_id: u64, seq: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(room_id, seq)
}

/// The room id and sequence number of a [`message_uuid`].
pub fn message_from_uuid(id: &uuid::Uuid) -> (u64, u64) {
    id.as_u64_pair()
}

use std::future::Future;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use crate::error::Error;
use crate::events::Event;
use crate::ws::Endpoint;
use crate::ws::session::Ctx;

pub trait Dialect: Sized + Send + 'static {
    /// The slot in `hub::Delivery`'s encoding cache this connection's encodings go to. Every
    /// connection that returns the same slot must encode every event identically, because the
    /// first encoding is shared with the others.
    fn slot(&self) -> usize;

    /// Encodes an event for this connection's client, or `None` if it does not see it. The
    /// result is shared with every connection of the same slot: it may depend on the event and
    /// the slot only.
    fn encode(&self, event: &Event) -> Option<Message>;

    /// The frame explaining why a connection is refused before the close (bad token, limits).
    fn refusal(error: &Error) -> Option<Message>;

    /// Per-connection protocol state, once the connection is authenticated and registered.
    fn new(ctx: &Ctx, endpoint: &Endpoint) -> Self;

    /// Runs once after registration (welcome frame, queued messages, ...).
    fn on_connect(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send;

    /// A text frame from the client.
    fn on_text(&mut self, ctx: &mut Ctx, text: &str) -> impl Future<Output = ()> + Send;

    /// A binary frame from the client.
    fn on_binary(&mut self, ctx: &mut Ctx, data: Bytes) -> impl Future<Output = ()> + Send;

    /// The heartbeat frame the server sends every `ws.ping_interval_secs`; `None` sends a
    /// WebSocket ping instead.
    fn ping(&self) -> Option<Message>;

    /// Told `ws.expiry_warning_secs` before the access token expires.
    fn token_expiring(&self, expires_at: i64) -> Option<Message>;

    /// The server ping interval and pong timeout when the protocol documents its own; `None`:
    /// `ws.ping_interval_secs` and `ws.pong_timeout_secs`. Asked again after every frame, so a
    /// connection that changes protocol (`/ws` to FastChat) gets the new heartbeat.
    fn heartbeat(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        None
    }

    /// Whether this connection's client is shown `event` at all, before it is encoded: for
    /// what depends on the connection rather than the event (the shared encoding may not).
    fn wants(&self, _event: &Event) -> bool {
        true
    }
}
