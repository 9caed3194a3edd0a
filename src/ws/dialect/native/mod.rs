//! The native protocol at `/ws`: the envelope `{"type","data","id"?,"timestamp"?}` of the
//! Real-time Communication Service's document, with its pub/sub, direct messages,
//! notifications, presence and binary frames, plus persistent chat rooms in the same style.
//! `man/natter-protocol.7` is the reference for every frame.
//!
//! Replies to a request carry the request's `id` (as a string) in the envelope. This file is
//! the codec's answers (replies and errors); `decode` reads client frames, `binary` the binary
//! ones, `events` encodes what the core emits.

mod binary;
mod decode;
mod events;
mod frames;

pub(crate) use binary::{binary_address, binary_header};
pub(crate) use decode::Envelope;
pub use events::encode;
use events::message_frame;
pub(crate) use frames::error_frame;
use frames::{ack_data, acknowledge, frame, send_ack, status};

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Dialect, Encoder, Facts, Out, Rate, Request, slots};
use crate::config::Config;
use crate::core::chat::DirectOutcome;
use crate::core::command::{Command, Reply};
use crate::error::Error;
use crate::store::now_secs;
use crate::ws::Endpoint;

/// `protocol_version` in the welcome frame.
pub const PROTOCOL_VERSION: &str = "1.0";
/// `features` in the welcome frame.
pub const FEATURES: &[&str] = &[
    "broadcast",
    "direct_message",
    "presence",
    "history",
    "rooms",
    "notifications",
    "binary",
];

/// The type bit of natter's addressed binary frames (see `binary`).
const BINARY_ADDRESSED: u8 = 0x80;
/// Binary header: 1 type byte + 4 length bytes.
const BINARY_HEADER: usize = 5;

/// The native protocol keeps nothing per connection.
pub struct Native;

/// What a native request needs for its answer: its id, and what kind it was.
pub struct Meta {
    id: Option<String>,
    kind: Kind,
}

enum Kind {
    /// The welcome at connect, about this connection.
    Welcome(Facts),
    /// The direct messages queued while the user was offline, at connect.
    Queued,
    /// An envelope that could not be read: its error carries no details.
    Envelope,
    /// A `Ping`, answered with this timestamp.
    Ping(Value),
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    Broadcast {
        delivery_id: String,
    },
    DirectMessage {
        target: String,
        message_id: String,
    },
    Authenticate,
    Join,
    Leave,
    Send,
    Edit,
    React,
    UpdateRoom,
    Delete,
    History,
    Typing,
    Read,
    SetStatus(String),
    /// A custom (`X-`) frame (only acknowledged when it names no topic).
    Custom,
    /// A binary frame: what its `binary_received` status says.
    Binary {
        size: usize,
        type_name: &'static str,
        checksum: String,
    },
    /// Any other request: a plain Ack.
    Other,
}

impl Meta {
    fn new(id: Option<String>, kind: Kind) -> Meta {
        Meta { id, kind }
    }
}

impl Dialect for Native {
    type Meta = Meta;

    fn new(_facts: &Facts, _endpoint: &Endpoint, _config: &Arc<Config>) -> Self {
        Native
    }

    fn name(&self) -> &'static str {
        "native"
    }

    fn encoder(&self) -> Encoder {
        Encoder {
            slot: slots::NATIVE,
            encode,
        }
    }

    fn refusal(error: &Error) -> Option<Message> {
        Some(error_frame(error, None, Some(json!({}))))
    }

    fn connect(&mut self, facts: &Facts) -> Vec<Request<Meta>> {
        let mut requests = vec![Request::core(
            Meta::new(None, Kind::Welcome(facts.clone())),
            Rate::Free,
            Command::Welcome,
        )];
        requests.extend(self.queued_page(0));
        requests
    }

    /// Queued direct messages follow the welcome a page at a time (see `Dialect::queued_page`).
    fn queued_page(&mut self, after: u64) -> Option<Request<Meta>> {
        Some(Request::core(
            Meta::new(None, Kind::Queued),
            Rate::Free,
            Command::QueuedDirectMessages { after },
        ))
    }

    fn decode_text(&mut self, text: &str) -> Option<Request<Meta>> {
        match Envelope::parse(text) {
            Ok(envelope) => decode::decode(envelope),
            Err((error, id)) => Some(Request::invalid(
                Meta::new(id, Kind::Envelope),
                Rate::Free,
                error,
            )),
        }
    }

    fn decode_binary(&mut self, data: Bytes) -> Option<Request<Meta>> {
        Some(binary::decode_binary(&data))
    }

    fn local(&mut self, meta: Meta, out: &mut Out) -> Option<Request<Meta>> {
        let id = meta.id.as_deref();
        match meta.kind {
            Kind::Ping(timestamp) => out.send(frame("Pong", json!({"timestamp": timestamp}), id)),
            Kind::Custom => {
                out.send(frame("Ack", ack_data(id, json!({"status": "ignored"})), id));
            }
            _ => {}
        }
        None
    }

    fn reply(&mut self, meta: Meta, reply: Reply, out: &mut Out) {
        let id = meta.id.as_deref();
        match (meta.kind, reply) {
            (Kind::Welcome(facts), Reply::Welcome { epoch }) => out.send(status(
                "connected",
                json!({
                    "connection_id": facts.public_id,
                    "server_time": now_secs(),
                    "protocol_version": PROTOCOL_VERSION,
                    "features": FEATURES,
                    "epoch": epoch,
                    "user": {
                        "id": facts.user_id,
                        "username": facts.username,
                        "role": facts.role.as_str(),
                    },
                }),
                None,
            )),
            (Kind::Queued, Reply::QueuedDirect(page)) => {
                for event in &page.events {
                    if let Some(frame) = encode(event) {
                        out.send(frame);
                    }
                }
            }
            (Kind::Subscribe(topics), Reply::Subscriptions { active }) => {
                out.send(status(
                    "subscribed",
                    json!({"topics": topics, "active_subscriptions": active}),
                    id,
                ));
                acknowledge(out, id, "subscribed");
            }
            (Kind::Unsubscribe(topics), Reply::Subscriptions { active }) => {
                out.send(status(
                    "unsubscribed",
                    json!({"topics": topics, "active_subscriptions": active}),
                    id,
                ));
                acknowledge(out, id, "unsubscribed");
            }
            (Kind::Broadcast { delivery_id }, Reply::Delivered { recipients }) => {
                out.send(frame(
                    "Ack",
                    json!({
                        "message_id": id.unwrap_or(&delivery_id),
                        "status": "delivered",
                        "recipients": recipients,
                    }),
                    id,
                ));
            }
            (Kind::DirectMessage { target, message_id }, Reply::Direct(outcome)) => match outcome {
                DirectOutcome::Delivered(connections) => out.send(frame(
                    "Ack",
                    json!({"message_id": message_id, "status": "delivered", "delivered_to": connections}),
                    id,
                )),
                DirectOutcome::Queued => {
                    out.send(error_frame(
                        &Error::NotFound(format!("User {target} not found or not connected")),
                        id,
                        Some(json!({"message_id": message_id, "queued": true})),
                    ));
                    acknowledge(out, id, "queued");
                }
            },
            (Kind::Authenticate, Reply::Authenticated(principal)) => out.send(status(
                "authenticated",
                json!({"expires_at": principal.expires_at}),
                id,
            )),
            (Kind::Join, Reply::Joined(outcome)) => {
                let replayed = outcome.replay.len();
                for message in &outcome.replay {
                    out.send(message_frame(&outcome.room.name, message));
                }
                out.send(status(
                    "joined",
                    json!({
                        "room": outcome.room.name,
                        "room_id": outcome.room.id,
                        "last_seq": outcome.room.last_seq,
                        "since": outcome.since,
                        "replayed": replayed,
                        "complete": outcome.complete,
                        "epoch": outcome.epoch,
                    }),
                    id,
                ));
            }
            (Kind::Leave, Reply::Left(room)) => out.send(status(
                "left",
                json!({"room": room.name, "room_id": room.id}),
                id,
            )),
            (Kind::Send, Reply::Sent(outcome)) => out.send(send_ack(&outcome, id)),
            (Kind::Edit, Reply::Edited { room, message }) => out.send(frame(
                "Ack",
                ack_data(
                    id,
                    json!({"status": "edited", "room": room.name, "room_id": room.id, "seq": message.seq}),
                ),
                id,
            )),
            (Kind::React, Reply::Reacted { room, message }) => out.send(frame(
                "Ack",
                ack_data(
                    id,
                    json!({"status": "reacted", "room": room.name, "room_id": room.id, "seq": message.seq,
                           "reactions": crate::wire::reactions_json(&message)}),
                ),
                id,
            )),
            (Kind::UpdateRoom, Reply::RoomUpdated(room)) => out.send(frame(
                "Ack",
                ack_data(
                    id,
                    json!({"status": "updated", "room": room.name, "room_id": room.id,
                           "title": room.title, "topic": room.topic}),
                ),
                id,
            )),
            (Kind::Delete, Reply::Deleted { room, seq }) => out.send(frame(
                "Ack",
                ack_data(
                    id,
                    json!({"status": "deleted", "room": room.name, "room_id": room.id, "seq": seq}),
                ),
                id,
            )),
            (
                Kind::History,
                Reply::History {
                    room,
                    messages,
                    has_more,
                },
            ) => {
                let messages: Vec<Value> = messages
                    .iter()
                    .map(|message| crate::wire::message_json(&room.name, message))
                    .collect();
                out.send(frame(
                    "History",
                    json!({"room": room.name, "room_id": room.id, "last_seq": room.last_seq, "messages": messages, "has_more": has_more}),
                    id,
                ));
            }
            (Kind::Read, Reply::ReadUpTo { room, seq }) => out.send(frame(
                "Ack",
                ack_data(
                    id,
                    json!({"status": "read", "room": room.name, "room_id": room.id, "seq": seq}),
                ),
                id,
            )),
            (Kind::SetStatus(presence), Reply::Done) => out.send(frame(
                "Ack",
                ack_data(id, json!({"status": "ok", "presence": presence})),
                id,
            )),
            (Kind::Custom, Reply::Delivered { recipients }) => out.send(frame(
                "Ack",
                ack_data(id, json!({"status": "delivered", "recipients": recipients})),
                id,
            )),
            (
                Kind::Binary {
                    size,
                    type_name,
                    checksum,
                },
                Reply::Binary {
                    recipients,
                    file_id,
                },
            ) => {
                let mut details = json!({
                    "size": size,
                    "type": type_name,
                    "checksum": checksum,
                    "recipients": recipients,
                });
                if let (Some(id), Some(map)) = (file_id, details.as_object_mut()) {
                    map.insert("file_id".to_owned(), json!(id));
                }
                out.send(status("binary_received", details, None));
            }
            // Typing, and anything else, has nothing to say on success.
            _ => {}
        }
    }

    fn error(&mut self, meta: Meta, error: &Error, out: &mut Out) {
        let id = meta.id.as_deref();
        match meta.kind {
            Kind::Queued => {
                tracing::warn!(error = %error, "cannot read queued direct messages");
            }
            // Typing over its rate is dropped without a word.
            Kind::Typing if matches!(error, Error::Throttled { .. }) => {}
            Kind::Binary { .. } => out.send(error_frame(error, None, Some(json!({})))),
            // Unknown or disabled (404), or the offline user's queue full (429): nothing queued.
            Kind::DirectMessage { message_id, .. }
                if matches!(error, Error::NotFound(_) | Error::RateLimited(_)) =>
            {
                out.send(error_frame(
                    error,
                    id,
                    Some(json!({"message_id": message_id, "queued": false})),
                ));
            }
            // The document's errors always carry `details`: the request's id, when it had one.
            _ => {
                let details = id.map_or_else(|| json!({}), |id| json!({"message_id": id}));
                out.send(error_frame(error, id, Some(details)));
            }
        }
    }

    /// Expiring tokens are renewed in-band (`Authenticate`), so expiry is enforced.
    fn enforces_token_expiry(&self) -> bool {
        true
    }

    fn ping(&self) -> Option<Message> {
        Some(frame("Ping", json!({"timestamp": now_secs()}), None))
    }

    fn token_expiring(&self, expires_at: i64) -> Option<Message> {
        Some(frame(
            "AuthStatus",
            json!({"status": "token_expiring", "expires_at": expires_at, "refresh_required": true}),
            None,
        ))
    }
}
