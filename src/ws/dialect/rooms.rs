//! The rooms dialect at `/api/v1/ws/connect?token=`: project, channel, task and personal rooms
//! (`channel:456`, `user:42`, ...) that map one to one onto core rooms of the same name; client
//! frames `join_room`, `leave_room`, `send_message` and `ping`; server events in the envelope
//! `{type, room, data, sender, timestamp}`. `man/natter-protocol.7` (ROOMS DIALECT) describes
//! the mapping.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Dialect, Encoder, Facts, Out, Rate, RateLimits, Request, slots};
use crate::config::Config;
use crate::core::chat::now_millis;
use crate::core::command::{Command, Reply, RoomRef, SendMessage};
use crate::core::policy::personal_room_name;
use crate::error::Error;
use crate::events::Event;
use crate::timefmt::rfc3339_micros;
use crate::ws::Endpoint;
use crate::ws::close;

/// Room prefixes that name rooms created by the backend (over HTTP); `user` names the personal
/// rooms, which the core creates on first use.
const SHARED_PREFIXES: &[&str] = &["channel", "project", "task"];
const PERSONAL: &str = "user";
/// Longest numeric id accepted (u64 has 20 digits).
const MAX_ID_DIGITS: usize = 20;

/// `sender` of events the server itself originates.
const SYSTEM: &str = "system";

pub struct Rooms;

/// A room identifier of the document, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `channel:N`, `project:N`, `task:N`: the core room of that name.
    Shared(String),
    /// `user:N`.
    Personal(u64),
}

/// What a rooms request needs for its answer.
pub enum Meta {
    /// The welcome at connect.
    Welcome,
    /// `join_room` of this room identifier.
    Join(String),
    /// `leave_room` or `send_message`, about this room identifier (when it had one).
    About(Option<String>),
    /// `ping`.
    Ping,
}

impl Dialect for Rooms {
    type Meta = Meta;

    fn new(_facts: &Facts, _endpoint: &Endpoint, _config: &Arc<Config>) -> Self {
        Rooms
    }

    fn name(&self) -> &'static str {
        "rooms"
    }

    fn encoder(&self) -> Encoder {
        Encoder {
            slot: slots::ROOMS,
            encode,
        }
    }

    fn refusal(error: &Error) -> Option<Message> {
        Some(error_event(&error.public_message(), None))
    }

    fn connect(&mut self, _facts: &Facts) -> Vec<Request<Meta>> {
        vec![Request::core(Meta::Welcome, Rate::Free, Command::Me)]
    }

    fn decode_text(&mut self, text: &str) -> Option<Request<Meta>> {
        let (kind, value) = match parse(text) {
            Ok(parsed) => parsed,
            Err(message) => {
                return Some(Request::invalid(
                    Meta::About(None),
                    Rate::Free,
                    Error::BadRequest(message),
                ));
            }
        };
        Some(match kind.as_str() {
            "ping" => Request::local(Meta::Ping, Rate::Free),
            "join_room" => match target_of(&value) {
                Ok((identifier, target)) => Request::core(
                    Meta::Join(identifier),
                    Rate::Join,
                    Command::Join {
                        room: room_ref(target),
                        since: None,
                    },
                ),
                Err((identifier, error)) => {
                    Request::invalid(Meta::About(identifier), Rate::Free, error)
                }
            },
            "leave_room" => match target_of(&value) {
                Ok((identifier, target)) => {
                    let name = match target {
                        Target::Shared(name) => name,
                        Target::Personal(number) => personal_room_name(number),
                    };
                    Request::core(
                        Meta::About(Some(identifier)),
                        Rate::Free,
                        Command::Leave {
                            room: RoomRef::Name(name),
                        },
                    )
                }
                Err((identifier, error)) => {
                    Request::invalid(Meta::About(identifier), Rate::Free, error)
                }
            },
            // Counted before anything about it is looked at.
            "send_message" => match target_of(&value) {
                Ok((identifier, target)) => {
                    let content = value
                        .get("data")
                        .and_then(|d| d.get("content"))
                        .and_then(Value::as_str);
                    match content {
                        Some(content) => Request::core(
                            Meta::About(Some(identifier)),
                            Rate::Message,
                            Command::Send(SendMessage::new(room_ref(target), content.to_owned())),
                        ),
                        None => Request::invalid(
                            Meta::About(Some(identifier)),
                            Rate::Message,
                            Error::BadRequest("data.content must be a string".to_owned()),
                        ),
                    }
                }
                Err((identifier, error)) => {
                    Request::invalid(Meta::About(identifier), Rate::Message, error)
                }
            },
            other => Request::invalid(
                Meta::About(None),
                Rate::Free,
                Error::BadRequest(format!("unknown message type {other:?}")),
            ),
        })
    }

    fn decode_binary(&mut self, _data: Bytes) -> Option<Request<Meta>> {
        Some(Request::invalid(
            Meta::About(None),
            Rate::Free,
            Error::BadRequest("binary frames are not supported".to_owned()),
        ))
    }

    fn local(&mut self, _meta: Meta, out: &mut Out) -> Option<Request<Meta>> {
        out.send(text(
            &json!({"type": "pong", "timestamp": rfc3339_micros(now_millis())}),
        ));
        None
    }

    /// A sent message comes back as a `message` event when the sender joined the room; a join
    /// and a leave say nothing.
    fn reply(&mut self, meta: Meta, reply: Reply, out: &mut Out) {
        if let (Meta::Welcome, Reply::Me(user)) = (meta, reply) {
            out.send(text(&json!({
                "type": "connected",
                "data": {
                    "message": "Connected successfully",
                    "user_id": user.number,
                    "username": user.username,
                },
                "timestamp": rfc3339_micros(now_millis()),
            })));
        }
    }

    /// A room the user may not read (or that does not exist) closes the connection with 4403,
    /// as the document says; an internal failure closes with 4500; anything else is an error
    /// event.
    fn error(&mut self, meta: Meta, error: &Error, out: &mut Out) {
        let message = error.public_message();
        if matches!(error, Error::Store(_) | Error::Internal(_)) {
            tracing::warn!(error = %error, "closing with 4500");
            out.send(error_event(&message, None));
            out.close(close::ROOMS_INTERNAL, &message);
            return;
        }
        match meta {
            // The rate is the connection's, not the room's.
            _ if matches!(error, Error::Throttled { .. }) => {
                out.send(error_event(&message, None));
            }
            Meta::Welcome => {
                out.send(error_event(&message, None));
                out.close(close::UNAUTHORIZED, &message);
            }
            Meta::Join(identifier)
                if matches!(
                    error,
                    Error::Forbidden(_) | Error::NotFound(_) | Error::AccountDisabled
                ) =>
            {
                tracing::info!(room = %identifier, error = %error, "join refused");
                out.send(error_event(&message, Some(&identifier)));
                out.close(close::FORBIDDEN, &message);
            }
            Meta::Join(identifier) | Meta::About(Some(identifier)) => {
                out.send(error_event(&message, Some(&identifier)));
            }
            _ => out.send(error_event(&message, None)),
        }
    }

    fn rate_limits(&self, config: &Config) -> RateLimits {
        RateLimits::of_ws_whole_minute(config)
    }

    fn ping(&self) -> Option<Message> {
        None
    }

    fn token_expiring(&self, _expires_at: i64) -> Option<Message> {
        None
    }
}

/// The core room of a room identifier.
fn room_ref(target: Target) -> RoomRef {
    match target {
        Target::Shared(name) => RoomRef::Name(name),
        Target::Personal(number) => RoomRef::Personal(number),
    }
}

/// The envelope of an event: `{type, room, data, sender, timestamp}`.
pub fn encode(event: &Event) -> Option<Message> {
    let now = || rfc3339_micros(now_millis());
    let (kind, room, data, sender, timestamp): (&str, Value, Value, Value, String) = match event {
        Event::Message(m) => (
            "message",
            json!(m.room),
            message_json(m),
            json!(m.message.author_name),
            rfc3339_micros(m.message.created_at_ms),
        ),
        // The core's edit and delete events do not say who edited or deleted (the author, the
        // room's owner or an admin): an edit's `sender` is the message's author, a deletion's
        // the system (`sender` is always a string).
        Event::MessageEdited(m) => (
            "message.edited",
            json!(m.room),
            message_json(m),
            json!(m.message.author_name),
            m.message.edited_at_ms.map_or_else(now, rfc3339_micros),
        ),
        Event::MessageDeleted { room, room_id, seq } => (
            "message.deleted",
            json!(room),
            json!({"room": room, "room_id": room_id, "seq": seq}),
            json!(SYSTEM),
            now(),
        ),
        // Who is in the room, live: a user's first connection entered it, or their last left.
        // (Who belongs to it, `Membership`, has no event in this protocol.)
        Event::RoomPresence {
            room,
            user_number,
            username,
            entered,
            ..
        } => (
            if *entered { "user_joined" } else { "user_left" },
            json!(room),
            json!({"username": username, "user_id": user_number}),
            json!(username),
            now(),
        ),
        // Delivered to its user's own connections only: their personal room.
        Event::Notification {
            notification,
            user_number,
        } => (
            "notification.new",
            json!(personal_room_name(*user_number)),
            crate::wire::notification_json(notification),
            json!(SYSTEM),
            now(),
        ),
        Event::Published {
            room, kind, data, ..
        } => (kind, json!(room), data.clone(), json!(SYSTEM), now()),
        Event::RoomClosed { room, reason, .. } => (
            "error",
            json!(room),
            json!({"error": reason}),
            json!(SYSTEM),
            now(),
        ),
        _ => return None,
    };
    Some(text(&json!({
        "type": kind,
        "room": room,
        "data": data,
        "sender": sender,
        "timestamp": timestamp,
    })))
}

/// A message as this protocol shows it: the API's message, with `author_id` the author's
/// number, the id the welcome's `user_id` gives (this protocol's users are numbers).
fn message_json(m: &crate::events::RoomMessage) -> Value {
    let mut data = crate::wire::message_json(&m.room, &m.message);
    if let Some(map) = data.as_object_mut() {
        map.insert("author_id".to_owned(), json!(m.author_number));
    }
    data
}

/// A client frame: its `type` and the whole value.
pub(crate) fn parse(text: &str) -> Result<(String, Value), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    match value.get("type").and_then(Value::as_str) {
        Some(kind) => Ok((kind.to_owned(), value)),
        None => Err("a message must be a JSON object with a string \"type\"".to_owned()),
    }
}

/// The request's `room`, parsed; else the error (with the identifier, when it was a string).
fn target_of(request: &Value) -> Result<(String, Target), (Option<String>, Error)> {
    let Some(identifier) = request.get("room").and_then(Value::as_str) else {
        return Err((
            None,
            Error::BadRequest("\"room\" must be a string".to_owned()),
        ));
    };
    match parse_target(identifier) {
        Ok(target) => Ok((identifier.to_owned(), target)),
        Err(message) => Err((Some(identifier.to_owned()), Error::BadRequest(message))),
    }
}

/// `<prefix>:<digits>` with prefix `channel`, `project`, `task` or `user`.
pub(crate) fn parse_target(identifier: &str) -> Result<Target, String> {
    let malformed = || {
        format!(
            "invalid room {identifier:?}: expected channel:<id>, project:<id>, task:<id> or user:<id> with a numeric id"
        )
    };
    let (prefix, id) = identifier.split_once(':').ok_or_else(malformed)?;
    if id.is_empty() || id.len() > MAX_ID_DIGITS || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    if prefix == PERSONAL {
        return id.parse().map(Target::Personal).map_err(|_| malformed());
    }
    if SHARED_PREFIXES.contains(&prefix) {
        return Ok(Target::Shared(identifier.to_owned()));
    }
    Err(malformed())
}

/// `{"type": "error", "data": {"error": ...}, "timestamp": ...}`, with `room` when the error is
/// about one.
pub(crate) fn error_event(message: &str, room: Option<&str>) -> Message {
    let mut event = json!({
        "type": "error",
        "data": {"error": message},
        "timestamp": rfc3339_micros(now_millis()),
    });
    if let (Some(room), Some(map)) = (room, event.as_object_mut()) {
        map.insert("room".to_owned(), json!(room));
    }
    text(&event)
}

fn text(value: &Value) -> Message {
    super::json_text(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_identifiers() {
        assert_eq!(
            parse_target("channel:456"),
            Ok(Target::Shared("channel:456".to_owned()))
        );
        assert_eq!(
            parse_target("task:789"),
            Ok(Target::Shared("task:789".to_owned()))
        );
        assert_eq!(parse_target("user:42"), Ok(Target::Personal(42)));
        for bad in [
            "channel",
            "channel:",
            "channel:abc",
            "channel:-1",
            "room:1",
            "Channel:1",
            "user:99999999999999999999",
            "channel:1:2",
            "",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
