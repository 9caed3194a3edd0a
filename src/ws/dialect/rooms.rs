//! The rooms dialect (seed 001) at `/api/v1/ws/connect?token=`: project, channel, task and
//! personal rooms (`channel:456`, `user:42`, ...) that map one to one onto core rooms of the same
//! name; client frames `join_room`, `leave_room`, `send_message` and `ping`; server events in
//! the envelope `{type, room, data, sender, timestamp}`. `man/natter-protocol.7` (ROOMS DIALECT)
//! describes the mapping.

use bytes::Bytes;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::Dialect;
use crate::core::chat::now_millis;
use crate::error::Error;
use crate::events::Event;
use crate::timefmt::rfc3339_micros;
use crate::ws::Endpoint;
use crate::ws::close;
use crate::ws::session::Ctx;

/// Room prefixes that name rooms created by the backend (over HTTP); `user` names the personal
/// rooms, which the core creates on first use.
const SHARED_PREFIXES: &[&str] = &["channel", "project", "task"];
const PERSONAL: &str = "user";
/// Longest numeric id accepted (u64 has 20 digits).
const MAX_ID_DIGITS: usize = 20;

/// `sender` of events the server itself originates.
const SYSTEM: &str = "system";

pub struct Rooms {
    user_id: Uuid,
    /// The user's [`crate::store::User::number`], read at connect: the welcome's `user_id` and
    /// the `N` of their personal room `user:N`.
    number: u64,
}

/// A room identifier of the seed, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `channel:N`, `project:N`, `task:N`: the core room of that name.
    Shared(String),
    /// `user:N`.
    Personal(u64),
}

impl Dialect for Rooms {
    fn slot(&self) -> usize {
        super::slots::ROOMS
    }

    fn encode(&self, event: &Event) -> Option<Message> {
        self.encode_event(event)
    }

    fn refusal(error: &Error) -> Option<Message> {
        Some(error_event(&error.public_message(), None))
    }

    fn new(ctx: &Ctx, _endpoint: &Endpoint) -> Self {
        Rooms {
            user_id: ctx.principal.user_id,
            number: 0,
        }
    }

    async fn on_connect(&mut self, ctx: &mut Ctx) {
        let user = match ctx.state.store.user(ctx.principal.user_id) {
            Ok(Some(user)) => user,
            Ok(None) => {
                let error = Error::InvalidToken("user no longer exists");
                ctx.send(error_event(&error.public_message(), None));
                ctx.close(close::UNAUTHORIZED, &error.public_message());
                return;
            }
            Err(error) => {
                fail_internal(ctx, &error);
                return;
            }
        };
        self.number = user.number;
        ctx.send(text(&json!({
            "type": "connected",
            "data": {
                "message": "Connected successfully",
                "user_id": user.number,
                "username": user.username,
            },
            "timestamp": rfc3339_micros(now_millis()),
        })));
    }

    async fn on_text(&mut self, ctx: &mut Ctx, text: &str) {
        let (kind, value) = match parse(text) {
            Ok(parsed) => parsed,
            Err(message) => {
                ctx.send(error_event(&message, None));
                return;
            }
        };
        match kind.as_str() {
            "ping" => ctx.send(self::text(
                &json!({"type": "pong", "timestamp": rfc3339_micros(now_millis())}),
            )),
            "join_room" => self.join_room(ctx, &value).await,
            "leave_room" => self.leave_room(ctx, &value).await,
            "send_message" => self.send_message(ctx, &value).await,
            other => ctx.send(error_event(
                &format!("unknown message type {other:?}"),
                None,
            )),
        }
    }

    async fn on_binary(&mut self, ctx: &mut Ctx, _data: Bytes) {
        ctx.send(error_event("binary frames are not supported", None));
    }

    fn ping(&self) -> Option<Message> {
        None
    }

    fn token_expiring(&self, _expires_at: i64) -> Option<Message> {
        None
    }
}

impl Rooms {
    /// `join_room`: a room the user may not read (or that does not exist) closes the connection
    /// with 4403, as the seed says; a malformed identifier is an error event.
    async fn join_room(&mut self, ctx: &mut Ctx, request: &Value) {
        let Some((identifier, target)) = target_of(ctx, request) else {
            return;
        };
        let chat = ctx.state.chat.clone();
        let name = match target {
            Target::Shared(name) => Ok(name),
            Target::Personal(number) => chat
                .personal_room(&ctx.principal, number)
                .await
                .map(|room| room.name),
        };
        let joined = match name {
            Ok(name) => chat.join(&ctx.principal, ctx.conn, &name, None).await,
            Err(e) => Err(e),
        };
        match joined {
            Ok(_) => {}
            Err(error @ (Error::Forbidden(_) | Error::NotFound(_) | Error::AccountDisabled)) => {
                tracing::info!(user = %ctx.principal.username, room = %identifier, error = %error, "join refused");
                let message = error.public_message();
                ctx.send(error_event(&message, Some(&identifier)));
                ctx.close(close::FORBIDDEN, &message);
            }
            Err(error) => fail(ctx, &error, Some(&identifier)),
        }
    }

    /// `leave_room`: stops the room's events on this connection.
    async fn leave_room(&mut self, ctx: &mut Ctx, request: &Value) {
        let Some((identifier, target)) = target_of(ctx, request) else {
            return;
        };
        let name = match target {
            Target::Shared(name) => name,
            Target::Personal(number) => crate::core::policy::personal_room_name(number),
        };
        let chat = ctx.state.chat.clone();
        if let Err(error) = chat.leave(&ctx.principal, ctx.conn, &name).await {
            fail(ctx, &error, Some(&identifier));
        }
    }

    /// `send_message`: stored and delivered by the core; the sender sees it as a `message` event
    /// when it has joined the room.
    async fn send_message(&mut self, ctx: &mut Ctx, request: &Value) {
        if let Err(error) = ctx.check_rate() {
            ctx.send(error_event(&error.public_message(), None));
            return;
        }
        let Some((identifier, target)) = target_of(ctx, request) else {
            return;
        };
        let Some(content) = request
            .get("data")
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str)
        else {
            ctx.send(error_event(
                "data.content must be a string",
                Some(&identifier),
            ));
            return;
        };
        let chat = ctx.state.chat.clone();
        let name = match target {
            Target::Shared(name) => Ok(name),
            Target::Personal(number) => chat
                .personal_room(&ctx.principal, number)
                .await
                .map(|room| room.name),
        };
        let sent = match name {
            Ok(name) => {
                chat.send(&ctx.principal, &name, content.to_owned(), None, None)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(error) = sent {
            fail(ctx, &error, Some(&identifier));
        }
    }

    /// The envelope of an event: `{type, room, data, sender, timestamp}`.
    fn encode_event(&self, event: &Event) -> Option<Message> {
        let now = || rfc3339_micros(now_millis());
        let (kind, room, data, sender, timestamp): (&str, Value, Value, Value, String) = match event
        {
            Event::Message(m) => (
                "message",
                json!(m.room),
                crate::wire::message_json(&m.room, &m.message),
                json!(m.message.author_name),
                rfc3339_micros(m.message.created_at_ms),
            ),
            // The core's edit and delete events do not say who edited or deleted (the author,
            // the room's owner or an admin), so `sender` is null.
            Event::MessageEdited(m) => (
                "message.edited",
                json!(m.room),
                crate::wire::message_json(&m.room, &m.message),
                Value::Null,
                m.message.edited_at_ms.map_or_else(now, rfc3339_micros),
            ),
            Event::MessageDeleted { room, room_id, seq } => (
                "message.deleted",
                json!(room),
                json!({"room": room, "room_id": room_id, "seq": seq}),
                Value::Null,
                now(),
            ),
            Event::Membership {
                room,
                username,
                joined,
                ..
            } => (
                if *joined { "user_joined" } else { "user_left" },
                json!(room),
                json!({"username": username}),
                json!(username),
                now(),
            ),
            // Delivered to the user's own connections only, so every connection that shares
            // this encoding (see `Dialect::slot`) has the same number.
            Event::Notification(n) => (
                "notification.new",
                if n.user_id == self.user_id {
                    json!(crate::core::policy::personal_room_name(self.number))
                } else {
                    Value::Null
                },
                crate::wire::notification_json(n),
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
}

/// A client frame: its `type` and the whole value.
pub(crate) fn parse(text: &str) -> Result<(String, Value), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    match value.get("type").and_then(Value::as_str) {
        Some(kind) => Ok((kind.to_owned(), value)),
        None => Err("a message must be a JSON object with a string \"type\"".to_owned()),
    }
}

/// The request's `room`, parsed; `None` (and an error event sent) when missing or malformed.
fn target_of(ctx: &mut Ctx, request: &Value) -> Option<(String, Target)> {
    let Some(identifier) = request.get("room").and_then(Value::as_str) else {
        ctx.send(error_event("\"room\" must be a string", None));
        return None;
    };
    match parse_target(identifier) {
        Ok(target) => Some((identifier.to_owned(), target)),
        Err(message) => {
            ctx.send(error_event(&message, Some(identifier)));
            None
        }
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

/// A failed core call: an internal failure closes with 4500, anything else is an error event.
fn fail(ctx: &mut Ctx, error: &Error, room: Option<&str>) {
    match error {
        Error::Store(_) | Error::Internal(_) => fail_internal(ctx, error),
        other => ctx.send(error_event(&other.public_message(), room)),
    }
}

fn fail_internal(ctx: &mut Ctx, error: &Error) {
    tracing::warn!(user = %ctx.principal.username, error = %error, "closing with 4500");
    let message = error.public_message();
    ctx.send(error_event(&message, None));
    ctx.close(close::ROOMS_INTERNAL, &message);
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
