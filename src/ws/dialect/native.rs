//! The native protocol at `/ws`: the envelope `{"type","data","id"?,"timestamp"?}` of the
//! Real-time Communication Service's document, with its pub/sub, direct messages,
//! notifications, presence and binary frames, plus persistent chat rooms in the same style.
//! `man/natter-protocol.7` is the reference for every frame.
//!
//! Replies to a request carry the request's `id` (as a string) in the envelope.

use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::json::{self, FieldError};
use super::{Dialect, Encoder, Facts, Out, Rate, Request, slots};
use crate::config::Config;
use crate::core::chat::{DirectOutcome, SendOutcome};
use crate::core::command::{
    BinaryKind, Command, ContentPolicy, EditMessage, Reply, RoomRef, SendMessage,
};
use crate::error::Error;
use crate::events::Event;
use crate::sha256::Sha256;
use crate::store::{Message as StoredMessage, now_secs};
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

/// Binary frame types (first byte).
const BINARY_BROADCAST: u8 = 0x01;
const BINARY_DIRECT: u8 = 0x02;
const BINARY_FILE: u8 = 0x03;
const BINARY_STREAM: u8 = 0x04;
/// Binary header: 1 type byte + 4 length bytes.
const BINARY_HEADER: usize = 5;

/// Most topics one Subscribe or Unsubscribe may list.
const MAX_TOPICS_PER_REQUEST: usize = 100;

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
        Some(error_frame(error, None, None))
    }

    fn connect(&mut self, facts: &Facts) -> Vec<Request<Meta>> {
        vec![
            Request::core(
                Meta::new(None, Kind::Welcome(facts.clone())),
                Rate::Free,
                Command::Welcome,
            ),
            Request::core(
                Meta::new(None, Kind::Queued),
                Rate::Free,
                Command::TakeQueuedDirectMessages,
            ),
        ]
    }

    fn decode_text(&mut self, text: &str) -> Option<Request<Meta>> {
        match Envelope::parse(text) {
            Ok(envelope) => decode(envelope),
            Err((error, id)) => Some(Request::invalid(
                Meta::new(id, Kind::Envelope),
                Rate::Free,
                error,
            )),
        }
    }

    fn decode_binary(&mut self, data: Bytes) -> Option<Request<Meta>> {
        Some(decode_binary(&data))
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
            (Kind::Queued, Reply::Events(events)) => {
                for event in &events {
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
                Reply::Delivered { recipients },
            ) => out.send(status(
                "binary_received",
                json!({
                    "size": size,
                    "type": type_name,
                    "checksum": checksum,
                    "recipients": recipients,
                }),
                None,
            )),
            // Typing, and anything else, has nothing to say on success.
            _ => {}
        }
    }

    fn error(&mut self, meta: Option<Meta>, error: &Error, out: &mut Out) {
        let Some(meta) = meta else {
            out.send(error_frame(error, None, None));
            return;
        };
        let id = meta.id.as_deref();
        match meta.kind {
            Kind::Queued => {
                tracing::warn!(error = %error, "cannot read queued direct messages");
            }
            // Typing over its rate is dropped without a word.
            Kind::Typing if matches!(error, Error::Throttled { .. }) => {}
            Kind::Envelope => out.send(error_frame(error, id, None)),
            Kind::Binary { .. } => out.send(error_frame(error, None, None)),
            Kind::DirectMessage { message_id, .. } if matches!(error, Error::NotFound(_)) => {
                out.send(error_frame(
                    error,
                    id,
                    Some(json!({"message_id": message_id, "queued": false})),
                ));
            }
            _ => {
                let details = id.map(|id| json!({"message_id": id}));
                out.send(error_frame(error, id, details));
            }
        }
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

/// The native encoding of an event (the same for every native connection).
pub fn encode(event: &Event) -> Option<Message> {
    Some(match event {
        Event::Broadcast {
            topic,
            payload,
            sender,
            sent_at,
            message_id,
        } => frame(
            "Broadcast",
            json!({
                "topic": topic,
                "payload": payload,
                "metadata": {"sent_at": sent_at, "message_id": message_id, "sender": sender},
            }),
            None,
        ),
        Event::Custom {
            kind,
            topic,
            data,
            sender,
        } => super::json_text(&json!({
            "type": kind,
            "data": data,
            "metadata": {"topic": topic, "sender": sender},
        })),
        Event::DirectMessage {
            from_user,
            payload,
            sent_at,
            message_id,
            ..
        } => frame(
            "DirectMessage",
            json!({
                "from_user": from_user,
                "payload": payload,
                "metadata": {"sent_at": sent_at, "message_id": message_id},
            }),
            None,
        ),
        Event::Notification { notification, .. } => frame(
            "Notification",
            crate::wire::notification_json(notification),
            None,
        ),
        Event::Presence {
            user_id,
            username,
            status,
            last_seen,
            metadata,
            ..
        } => {
            let mut data = json!({
                "user_id": user_id,
                "username": username,
                "status": status,
                "last_seen": last_seen,
            });
            if let (Some(metadata), Some(map)) = (metadata, data.as_object_mut()) {
                map.insert("metadata".to_owned(), metadata.clone());
            }
            frame("Presence", data, None)
        }
        Event::Message(m) => message_frame(&m.room, &m.message),
        Event::MessageEdited(m) => frame(
            "MessageEdited",
            json!({
                "room": m.room,
                "room_id": m.message.room_id,
                "seq": m.message.seq,
                "content": m.message.content,
                "edited_at": m.message.edited_at_ms.map(|ms| ms / 1000),
            }),
            None,
        ),
        Event::MessageDeleted { room, room_id, seq } => frame(
            "MessageDeleted",
            json!({"room": room, "room_id": room_id, "seq": seq}),
            None,
        ),
        Event::Typing {
            room,
            room_id,
            user_id,
            username,
            is_typing,
            ..
        } => frame(
            "Typing",
            json!({"room": room, "room_id": room_id, "user": username, "user_id": user_id, "is_typing": is_typing}),
            None,
        ),
        Event::Read {
            room,
            room_id,
            user_id,
            username,
            seq,
            ..
        } => frame(
            "Read",
            json!({"room": room, "room_id": room_id, "user": username, "user_id": user_id, "seq": seq}),
            None,
        ),
        Event::Published {
            room,
            room_id,
            kind,
            data,
        } => frame(
            "Event",
            json!({"room": room, "room_id": room_id, "event": kind, "data": data}),
            None,
        ),
        Event::Membership {
            room,
            room_id,
            user_id,
            username,
            joined,
        } => frame(
            "Membership",
            json!({
                "room": room,
                "room_id": room_id,
                "user": username,
                "user_id": user_id,
                "action": if *joined { "joined" } else { "left" },
            }),
            None,
        ),
        Event::RoomClosed {
            room,
            room_id,
            reason,
        } => status(
            "removed",
            json!({"room": room, "room_id": room_id, "reason": reason}),
            None,
        ),
        Event::Binary {
            kind,
            address,
            sender,
            data,
        } => Message::Binary(relayed_binary(*kind, address, sender, data)),
        // FastChat's roster and live conversations have no native frame.
        Event::Roster { .. } | Event::Conversation(_) => return None,
    })
}

/// A room message's frame, live or replayed.
fn message_frame(room: &str, message: &StoredMessage) -> Message {
    frame("Message", crate::wire::message_json(room, message), None)
}

/// A relayed binary frame: `[type][length][address length][address][sender length][sender]
/// [data]`.
fn relayed_binary(kind: BinaryKind, address: &str, sender: &str, data: &Bytes) -> Bytes {
    let kind = match kind {
        BinaryKind::Broadcast => BINARY_BROADCAST,
        BinaryKind::DirectMessage => BINARY_DIRECT,
        BinaryKind::FileTransfer => BINARY_FILE,
        BinaryKind::StreamData => BINARY_STREAM,
    };
    let address = address.as_bytes();
    let sender = sender.as_bytes();
    let relayed_len = 1 + address.len() + 1 + sender.len() + data.len();
    let mut out = BytesMut::with_capacity(BINARY_HEADER + relayed_len);
    out.put_u8(kind);
    out.put_u32(u32::try_from(relayed_len).unwrap_or(u32::MAX));
    out.put_u8(u8::try_from(address.len()).unwrap_or(u8::MAX));
    out.put_slice(address);
    out.put_u8(u8::try_from(sender.len()).unwrap_or(u8::MAX));
    out.put_slice(sender);
    out.put_slice(data);
    out.freeze()
}

/// A parsed client frame.
pub(crate) struct Envelope {
    pub(crate) kind: String,
    pub(crate) data: Value,
    pub(crate) id: Option<String>,
}

impl Envelope {
    /// Parses the envelope. On failure returns the error and, when it could be read, the id.
    pub(crate) fn parse(text: &str) -> Result<Envelope, (Error, Option<String>)> {
        let mut map = json::object(text).map_err(|e| {
            let error = match e {
                Some(e) => Error::BadRequest(format!("malformed JSON: {e}")),
                None => {
                    Error::BadRequest("a message must be a JSON object with a \"type\"".to_owned())
                }
            };
            (error, None)
        })?;
        let id = match map.remove("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() <= 128 => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err((
                    Error::BadRequest("\"id\" must be a string of at most 128 bytes".to_owned()),
                    None,
                ));
            }
        };
        let kind = match map.remove("type") {
            Some(Value::String(kind)) if !kind.is_empty() && kind.len() <= 64 => kind,
            Some(Value::String(_)) => {
                return Err((
                    Error::BadRequest("\"type\" must be 1 to 64 bytes".to_owned()),
                    id,
                ));
            }
            Some(_) => {
                return Err((
                    Error::BadRequest("\"type\" must be a string".to_owned()),
                    id,
                ));
            }
            None => return Err((Error::BadRequest("missing field \"type\"".to_owned()), id)),
        };
        if let Some(timestamp) = map.get("timestamp")
            && !(timestamp.is_number() || timestamp.is_null())
        {
            return Err((
                Error::BadRequest("\"timestamp\" must be a number".to_owned()),
                id,
            ));
        }
        let data = map.remove("data").unwrap_or(Value::Null);
        Ok(Envelope { kind, data, id })
    }
}

/// The native wording of a field error.
fn field(error: FieldError) -> Error {
    Error::BadRequest(match error {
        FieldError::Missing(name) => format!("missing field data.{name}"),
        FieldError::Wrong { name, expected } => format!("data.{name} must be {expected}"),
        FieldError::TooMany { name, max } => format!("data.{name} may list at most {max} topics"),
    })
}

/// The request of an envelope; `None` for a `Pong`, which needs nothing.
fn decode(envelope: Envelope) -> Option<Request<Meta>> {
    let Envelope { kind, data, id } = envelope;
    let meta = |kind| Meta::new(id.clone(), kind);
    Some(match kind.as_str() {
        "Ping" => {
            let timestamp = match data.get("timestamp") {
                Some(t) if t.is_number() => t.clone(),
                _ => json!(now_secs()),
            };
            Request::local(meta(Kind::Ping(timestamp)), Rate::Free)
        }
        "Pong" => return None,
        "Subscribe" => match json::strings(&data, "topics", MAX_TOPICS_PER_REQUEST) {
            Ok(topics) => Request::core(
                meta(Kind::Subscribe(topics.clone())),
                Rate::Free,
                Command::Subscribe { topics },
            ),
            Err(e) => Request::invalid(meta(Kind::Other), Rate::Free, field(e)),
        },
        "Unsubscribe" => match json::strings(&data, "topics", MAX_TOPICS_PER_REQUEST) {
            Ok(topics) => Request::core(
                meta(Kind::Unsubscribe(topics.clone())),
                Rate::Free,
                Command::Unsubscribe { topics },
            ),
            Err(e) => Request::invalid(meta(Kind::Other), Rate::Free, field(e)),
        },
        "Broadcast" => {
            let delivery_id = format!("broadcast_{}", Uuid::new_v4().simple());
            let command = json::string(&data, "topic").map(|topic| Command::Broadcast {
                topic: topic.to_owned(),
                payload: data.get("payload").cloned().unwrap_or(Value::Null),
                message_id: delivery_id.clone(),
            });
            Request::of(
                meta(Kind::Broadcast { delivery_id }),
                Rate::Message,
                command.map_err(field),
            )
        }
        "DirectMessage" => {
            let message_id = id
                .clone()
                .unwrap_or_else(|| format!("dm_{}", Uuid::new_v4().simple()));
            match json::string(&data, "target_user") {
                Ok(target) => Request::core(
                    meta(Kind::DirectMessage {
                        target: target.to_owned(),
                        message_id: message_id.clone(),
                    }),
                    Rate::Message,
                    Command::DirectMessage {
                        target: target.to_owned(),
                        payload: data.get("payload").cloned().unwrap_or(Value::Null),
                        message_id,
                    },
                ),
                Err(e) => Request::invalid(meta(Kind::Other), Rate::Message, field(e)),
            }
        }
        "Authenticate" => Request::of(
            meta(Kind::Authenticate),
            Rate::Free,
            json::string(&data, "token")
                .map(|token| Command::Authenticate {
                    token: token.to_owned(),
                })
                .map_err(field),
        ),
        "Join" => Request::of(meta(Kind::Join), Rate::Free, join(&data).map_err(field)),
        "Leave" => Request::of(
            meta(Kind::Leave),
            Rate::Free,
            json::string(&data, "room")
                .map(|room| Command::Leave {
                    room: RoomRef::from(room),
                })
                .map_err(field),
        ),
        "Send" => Request::of(meta(Kind::Send), Rate::Message, send(&data).map_err(field)),
        "Edit" => Request::of(meta(Kind::Edit), Rate::Message, edit(&data).map_err(field)),
        "Delete" => Request::of(
            meta(Kind::Delete),
            Rate::Message,
            delete(&data).map_err(field),
        ),
        "History" => Request::of(
            meta(Kind::History),
            Rate::Message,
            history(&data).map_err(field),
        ),
        "Typing" => match typing(&data) {
            // A malformed Typing is told so whatever the rate.
            Ok(command) => Request::core(meta(Kind::Typing), Rate::Typing, command),
            Err(e) => Request::invalid(meta(Kind::Typing), Rate::Free, field(e)),
        },
        "Read" => Request::of(meta(Kind::Read), Rate::Message, read(&data).map_err(field)),
        "SetStatus" => match set_status(&data) {
            Ok((status, command)) => {
                Request::core(meta(Kind::SetStatus(status)), Rate::Message, command)
            }
            Err(e) => Request::invalid(meta(Kind::Other), Rate::Message, e),
        },
        custom if custom.starts_with("X-") => match data.get("topic") {
            Some(Value::String(topic)) => Request::core(
                meta(Kind::Custom),
                Rate::Message,
                Command::Relay {
                    kind: custom.to_owned(),
                    topic: topic.clone(),
                    data,
                },
            ),
            Some(_) => Request::invalid(
                meta(Kind::Other),
                Rate::Message,
                Error::BadRequest("data.topic of a custom message must be a string".to_owned()),
            ),
            None => Request::local(meta(Kind::Custom), Rate::Message),
        },
        unknown => Request::invalid(
            meta(Kind::Other),
            Rate::Free,
            Error::BadRequest(format!("unknown message type {unknown:?}")),
        ),
    })
}

fn join(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::Join {
        room: RoomRef::from(json::string(data, "room")?),
        since: json::opt_u64(data, "since")?,
    })
}

fn send(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::Send(SendMessage {
        room: RoomRef::from(json::string(data, "room")?),
        content: json::string(data, "content")?.to_owned(),
        reply_to: json::opt_u64(data, "reply_to")?,
        client_msg_id: json::opt_string(data, "client_msg_id")?.map(str::to_owned),
        policy: ContentPolicy::default(),
    }))
}

fn edit(data: &Value) -> Result<Command, FieldError> {
    let room = RoomRef::from(json::string(data, "room")?);
    let seq = json::u64_field(data, "seq")?;
    Ok(Command::Edit(EditMessage {
        room,
        seq,
        content: json::string(data, "content")?.to_owned(),
        policy: ContentPolicy::default(),
    }))
}

fn delete(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::Delete {
        room: RoomRef::from(json::string(data, "room")?),
        seq: json::u64_field(data, "seq")?,
    })
}

fn history(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::History {
        room: RoomRef::from(json::string(data, "room")?),
        before: json::opt_u64(data, "before")?,
        after: json::opt_u64(data, "after")?,
        limit: json::opt_u64(data, "limit")?.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
    })
}

fn typing(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::Typing {
        room: RoomRef::from(json::string(data, "room")?),
        is_typing: json::bool_or(data, "is_typing", true)?,
    })
}

fn read(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::Read {
        room: RoomRef::from(json::string(data, "room")?),
        seq: json::u64_field(data, "seq")?,
    })
}

fn set_status(data: &Value) -> Result<(String, Command), Error> {
    let status = json::string(data, "status").map_err(field)?.to_owned();
    let metadata = json::opt_object(data, "metadata").map_err(field)?.cloned();
    Ok((status.clone(), Command::SetStatus { status, metadata }))
}

/// `[type: u8][length: u32 BE][payload]`, payload `[address length: u8][address][data]`.
fn decode_binary(frame: &Bytes) -> Request<Meta> {
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

/// `{"type": kind, "data": data, "id": id}` (id only when the request had one).
fn frame(kind: &str, data: Value, id: Option<&str>) -> Message {
    let mut map = Map::with_capacity(3);
    map.insert("type".to_owned(), Value::String(kind.to_owned()));
    map.insert("data".to_owned(), data);
    if let Some(id) = id {
        map.insert("id".to_owned(), Value::String(id.to_owned()));
    }
    super::json_text(&Value::Object(map))
}

/// The `Ack` of a Send. Serialized straight from its fields, not through a `Value`: it is the
/// reply to every durable Send. Fields in the order a `Value` object prints them (sorted), so the
/// frame is the same as every other frame's style.
fn send_ack(outcome: &SendOutcome, id: Option<&str>) -> Message {
    #[derive(serde::Serialize)]
    struct Ack<'a> {
        client_msg_id: Option<&'a str>,
        duplicate: bool,
        message_id: &'a str,
        room: &'a str,
        room_id: u64,
        seq: u64,
        status: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        data: Ack<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        #[serde(rename = "type")]
        kind: &'static str,
    }
    let stored_id;
    let message_id = match id {
        Some(id) => id,
        None => {
            stored_id = format!("{}:{}", outcome.room.id, outcome.message.seq);
            &stored_id
        }
    };
    let envelope = Envelope {
        data: Ack {
            client_msg_id: outcome.message.client_msg_id.as_deref(),
            duplicate: outcome.duplicate,
            message_id,
            room: &outcome.room.name,
            room_id: outcome.room.id,
            seq: outcome.message.seq,
            status: outcome.status(),
        },
        id,
        kind: "Ack",
    };
    // Sized for the whole frame up front (the fixed part with both numbers at their longest is
    // under 200 bytes; names may grow when escaped): one allocation, no reallocation while
    // serializing nor to trim it after.
    let mut text = Vec::with_capacity(
        200 + 2
            * (message_id.len()
                + outcome.room.name.len()
                + id.map_or(0, str::len)
                + outcome.message.client_msg_id.as_deref().map_or(0, str::len)),
    );
    let encoded = serde_json::to_writer(&mut text, &envelope)
        .map_err(|e| e.to_string())
        .and_then(|()| String::from_utf8(text).map_err(|e| e.to_string()));
    match encoded {
        Ok(text) => Message::text(text),
        // Strings and numbers only: serializing cannot fail, and serde_json writes UTF-8.
        Err(e) => error_frame(
            &Error::Internal(format!("cannot encode Ack: {e}")),
            id,
            None,
        ),
    }
}

/// After a documented `Status` or `Error` reply to a request that carried an id, an `Ack` with
/// that id as well: the document's own example client waits for an `Ack` on every request it
/// sends with an id (Subscribe, DirectMessage), and would otherwise time out after 30 seconds.
fn acknowledge(out: &mut Out, id: Option<&str>, status: &str) {
    if let Some(id) = id {
        out.send(frame(
            "Ack",
            json!({"message_id": id, "status": status}),
            Some(id),
        ));
    }
}

/// Ack data: `message_id` is the request's id, left out when the request had none.
fn ack_data(id: Option<&str>, mut data: Value) -> Value {
    if let (Some(id), Some(map)) = (id, data.as_object_mut()) {
        map.insert("message_id".to_owned(), Value::String(id.to_owned()));
    }
    data
}

fn status(status: &str, details: Value, id: Option<&str>) -> Message {
    frame("Status", json!({"status": status, "details": details}), id)
}

pub(crate) fn error_frame(error: &Error, id: Option<&str>, details: Option<Value>) -> Message {
    let mut data = json!({"code": error.ws_code(), "message": error.public_message()});
    if let (Some(details), Some(map)) = (details, data.as_object_mut()) {
        map.insert("details".to_owned(), details);
    }
    frame("Error", data, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Room, Visibility};

    fn outcome(persistent: bool, client_msg_id: Option<&str>) -> SendOutcome {
        SendOutcome {
            room: Room {
                id: 7,
                name: "lobby \"quoted\"".to_owned(),
                owner: Uuid::nil(),
                visibility: Visibility::Public,
                persistent,
                retention_secs: 0,
                created_at: 0,
                last_seq: 42,
            },
            message: StoredMessage {
                room_id: 7,
                seq: 42,
                author: Uuid::nil(),
                author_name: "alice".to_owned(),
                author_avatar: None,
                content: "hi".to_owned(),
                created_at_ms: 0,
                edited_at_ms: None,
                deleted: false,
                reply_to: None,
                client_msg_id: client_msg_id.map(str::to_owned),
                attachments: Vec::new(),
            },
            duplicate: client_msg_id.is_some(),
        }
    }

    /// The typed Ack prints exactly what the same Ack built as a `Value` prints.
    #[test]
    fn send_ack_matches_the_value_encoding() {
        for (persistent, client_msg_id, id) in [
            (true, None, None),
            (true, Some("c-1"), Some("req-9")),
            (false, None, Some("r")),
        ] {
            let outcome = outcome(persistent, client_msg_id);
            let stored_id = format!("{}:{}", outcome.room.id, outcome.message.seq);
            let expected = frame(
                "Ack",
                json!({
                    "message_id": id.unwrap_or(&stored_id),
                    "status": if persistent { "stored" } else { "delivered" },
                    "room": outcome.room.name,
                    "room_id": outcome.room.id,
                    "seq": outcome.message.seq,
                    "client_msg_id": outcome.message.client_msg_id,
                    "duplicate": outcome.duplicate,
                }),
                id,
            );
            assert_eq!(send_ack(&outcome, id), expected);
        }
    }
}
