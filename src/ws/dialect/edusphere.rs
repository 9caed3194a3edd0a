//! The EduSphere dialect at `/ws/chat/{host}/{room}/`: one connection per room, the core room
//! `{host}/{room}`, entered by its participants only. Client frames `text`, `update` and
//! `delete`; server frames `chat_message` (`action` new, update or delete) and
//! `{"error": ...}`. `man/natter-protocol.7` (EDUSPHERE DIALECT) describes the mapping.
//!
//! Message ids are UUIDs made of the room id and the message's sequence number
//! ([`super::message_uuid`]), so they map back to a core message without a lookup.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{
    Dialect, Encoder, Facts, Out, Rate, RateLimits, Request, message_from_uuid, message_uuid, slots,
};
use crate::config::Config;
use crate::core::command::{Command, ContentPolicy, EditMessage, Reply, RoomRef, SendMessage};
use crate::error::Error;
use crate::events::{Event, RoomMessage};
use crate::timefmt::rfc3339_micros;
use crate::ws::Endpoint;
use crate::ws::close;

/// The error texts the document gives, verbatim.
const MESSAGE_NOT_FOUND: &str = "Message not found.";
const NOT_YOUR_DELETE: &str = "You can only delete your own messages.";
const NOT_YOUR_EDIT: &str = "You can only edit your own messages.";

pub struct EduSphere {
    /// The username in the path: the room's host (its owner in the core).
    host: String,
    /// The core room: `{host}/{slug}`.
    room_name: String,
    /// The core room's id, once entered.
    room_id: Option<u64>,
    /// `dialects.edusphere_max_message_chars`, enforced by the core.
    max_chars: usize,
}

/// Which request an answer is for (the document words some errors per request).
#[derive(Clone, Copy)]
pub enum Action {
    /// Entering the room at connect.
    Enter,
    Text,
    Update,
    Delete,
    /// A frame that is none of these.
    Other,
}

impl Dialect for EduSphere {
    type Meta = Action;

    fn new(_facts: &Facts, endpoint: &Endpoint, config: &Arc<Config>) -> Self {
        let (host, slug) = match endpoint {
            Endpoint::EduSphere { host, slug } => (host.clone(), slug.clone()),
            // Only EduSphere endpoints run this dialect; an empty name is no room (4403).
            _ => (String::new(), String::new()),
        };
        EduSphere {
            room_name: format!("{host}/{slug}"),
            host,
            room_id: None,
            max_chars: config.dialects.edusphere_max_message_chars,
        }
    }

    fn name(&self) -> &'static str {
        "edusphere"
    }

    fn encoder(&self) -> Encoder {
        Encoder {
            slot: slots::EDUSPHERE,
            encode,
        }
    }

    fn refusal(error: &Error) -> Option<Message> {
        Some(error_frame(&error.public_message()))
    }

    fn connect(&mut self, _facts: &Facts) -> Vec<Request<Action>> {
        vec![Request::core(
            Action::Enter,
            Rate::Free,
            Command::JoinAsParticipant {
                room: self.room_name.clone(),
                host: self.host.clone(),
            },
        )]
    }

    fn decode_text(&mut self, text: &str) -> Option<Request<Action>> {
        let room_id = self.room_id?;
        let (kind, map) = match parse(text) {
            Ok(request) => request,
            Err(message) => {
                return Some(Request::invalid(
                    Action::Other,
                    Rate::Free,
                    Error::BadRequest(message),
                ));
            }
        };
        let room = || RoomRef::Name(self.room_name.clone());
        let policy = ContentPolicy::limited(self.max_chars);
        let (action, command) = match kind.as_str() {
            "text" => (
                Action::Text,
                string_field(&map, "message").map(|content| {
                    Command::Send(SendMessage {
                        policy,
                        ..SendMessage::new(room(), content)
                    })
                }),
            ),
            "update" => (
                Action::Update,
                message_seq(&map, room_id).and_then(|seq| {
                    Ok(Command::Edit(EditMessage {
                        room: room(),
                        seq,
                        content: string_field(&map, "message")?,
                        policy,
                    }))
                }),
            ),
            "delete" => (
                Action::Delete,
                message_seq(&map, room_id).map(|seq| Command::Delete { room: room(), seq }),
            ),
            other => {
                return Some(Request::invalid(
                    Action::Other,
                    Rate::Free,
                    Error::BadRequest(format!("Unknown message type {other:?}.")),
                ));
            }
        };
        Some(Request::of(
            action,
            Rate::Message,
            command.map_err(Error::BadRequest),
        ))
    }

    fn decode_binary(&mut self, _data: Bytes) -> Option<Request<Action>> {
        Some(Request::invalid(
            Action::Other,
            Rate::Free,
            Error::BadRequest("Binary frames are not supported.".to_owned()),
        ))
    }

    /// A message reaches everyone in the room, the sender included, as `chat_message`: nothing
    /// else is sent back.
    fn reply(&mut self, action: Action, reply: Reply, _out: &mut Out) {
        if let (Action::Enter, Reply::Entered(room)) = (action, reply) {
            self.room_id = Some(room.id);
        }
    }

    fn error(&mut self, action: Action, error: &Error, out: &mut Out) {
        if let Action::Enter = action {
            let code = match error {
                Error::Store(_) | Error::Internal(_) => close::INTERNAL_ERROR,
                _ => close::FORBIDDEN,
            };
            tracing::info!(room = %self.room_name, error = %error, "EduSphere connection refused");
            let message = error.public_message();
            out.send(error_frame(&message));
            out.close(code, &message);
            return;
        }
        out.send(error_frame(&error_text(error, action)));
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

/// The EduSphere encoding of an event: room messages as `chat_message`, removal from a private
/// room as a close (4403, as at connect); nothing else has a frame in this protocol.
pub fn encode(event: &Event) -> Option<Message> {
    match event {
        Event::Message(m) => Some(text(&new_message_json(m))),
        Event::MessageEdited(m) => Some(text(&json!({
            "type": "chat_message",
            "action": "update",
            "id": message_uuid(m.message.room_id, m.message.seq).to_string(),
            "body": m.message.content,
            "edited": true,
            "updated": rfc3339_micros(m.message.edited_at_ms.unwrap_or(m.message.created_at_ms)),
        }))),
        Event::MessageDeleted { room_id, seq, .. } => Some(text(&json!({
            "type": "chat_message",
            "action": "delete",
            "id": message_uuid(*room_id, *seq).to_string(),
        }))),
        Event::RoomClosed { reason, .. } => Some(Message::Close(Some(CloseFrame {
            code: CloseCode::from(close::FORBIDDEN),
            reason: reason.clone().into(),
        }))),
        _ => None,
    }
}

/// `chat_message` `new`: the fields of the document's serialized message.
fn new_message_json(m: &RoomMessage) -> Value {
    let message = &m.message;
    json!({
        "type": "chat_message",
        "action": "new",
        "id": message_uuid(message.room_id, message.seq).to_string(),
        "user": message.author_name,
        "user_id": message.author.to_string(),
        "body": message.content,
        "created": rfc3339_micros(message.created_at_ms),
        "edited": message.edited_at_ms.is_some(),
        "updated": rfc3339_micros(message.edited_at_ms.unwrap_or(message.created_at_ms)),
        "userAvatar": message.author_avatar,
    })
}

/// The document's words for the core's errors: its four documented texts where they apply,
/// the core's own message otherwise.
fn error_text(error: &Error, action: Action) -> String {
    match (error, action) {
        (Error::ContentTooLong { max }, _) => format!("Message exceeds {max} characters."),
        (Error::NotFound(_), Action::Update | Action::Delete) => MESSAGE_NOT_FOUND.to_owned(),
        (Error::Forbidden(_), Action::Update) => NOT_YOUR_EDIT.to_owned(),
        (Error::Forbidden(_), Action::Delete) => NOT_YOUR_DELETE.to_owned(),
        (other, _) => other.public_message(),
    }
}

/// A client frame: its `type` and the whole object. `timestamp` (the client's clock) is
/// accepted and ignored: the server's time is the message's.
pub(crate) fn parse(text: &str) -> Result<(String, Map<String, Value>), String> {
    let map = super::json::object(text).map_err(|e| match e {
        Some(_) => "Invalid JSON.".to_owned(),
        None => "A message must be a JSON object with a \"type\".".to_owned(),
    })?;
    match map.get("type") {
        Some(Value::String(kind)) => Ok((kind.clone(), map)),
        _ => Err("A message must be a JSON object with a \"type\".".to_owned()),
    }
}

fn string_field(map: &Map<String, Value>, name: &'static str) -> Result<String, String> {
    map.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("Field {name:?} must be a string."))
}

/// The sequence number of the message `messageId` names in this room. An id that is not a
/// UUID, or names a message of another room, is a message that is not found.
pub(crate) fn message_seq(map: &Map<String, Value>, room_id: u64) -> Result<u64, String> {
    let id = string_field(map, "messageId")?;
    let uuid = uuid::Uuid::parse_str(&id).map_err(|_| MESSAGE_NOT_FOUND.to_owned())?;
    match message_from_uuid(&uuid) {
        (room, seq) if room == room_id => Ok(seq),
        _ => Err(MESSAGE_NOT_FOUND.to_owned()),
    }
}

fn error_frame(message: &str) -> Message {
    text(&json!({ "error": message }))
}

fn text(value: &Value) -> Message {
    super::json_text(value)
}

#[cfg(test)]
mod tests {

    #[test]
    fn message_uuids_are_version_8_and_map_back() {
        for (room_id, seq) in [
            (1, 1),
            (3, 7),
            (0xfff, 0),
            (0x1000, 1 << 40),
            ((1 << 60) - 1, (1 << 62) - 1),
        ] {
            let id = message_uuid(room_id, seq);
            assert_eq!(id.get_version_num(), 8, "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(message_from_uuid(&id), (room_id, seq), "{id}");
        }
        assert_eq!(
            message_uuid(3, 7).to_string(),
            "00000000-0000-8003-8000-000000000007"
        );
        // The earlier form still names its message; numbers too large for version 8 use it.
        let old = uuid::Uuid::from_u64_pair(3, 7);
        assert_eq!(message_from_uuid(&old), (3, 7));
        for (room_id, seq) in [(1 << 60, 1), (1, 1 << 62), (u64::MAX, 5)] {
            assert_eq!(
                message_from_uuid(&message_uuid(room_id, seq)),
                (room_id, seq)
            );
        }
    }

    use super::*;
    use crate::store::Message as Stored;

    fn stored(edited: Option<i64>) -> RoomMessage {
        RoomMessage {
            room: "alice/math".to_owned(),
            message: Stored {
                room_id: 3,
                seq: 7,
                author: uuid::Uuid::nil(),
                author_name: "alice".to_owned(),
                author_avatar: None,
                content: "hi".to_owned(),
                created_at_ms: 1_704_110_400_000,
                edited_at_ms: edited,
                deleted: false,
                reply_to: None,
                client_msg_id: None,
                attachments: Vec::new(),
                reactions: Default::default(),
                mentions: Vec::new(),
            },
            author_number: 1,
            direct_peer: None,
        }
    }

    fn decoded(message: Option<Message>) -> Value {
        match message {
            Some(Message::Text(text)) => serde_json::from_str(text.as_str()).expect("json"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    #[test]
    fn new_message_has_exactly_the_documented_fields() {
        let frame = decoded(encode(&Event::Message(stored(None))));
        let mut keys: Vec<&str> = frame
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "action",
                "body",
                "created",
                "edited",
                "id",
                "type",
                "updated",
                "user",
                "userAvatar",
                "user_id"
            ]
        );
        assert_eq!(frame["id"], message_uuid(3, 7).to_string());
        assert_eq!(frame["created"], "2024-01-01T12:00:00.000000Z");
        assert_eq!(frame["userAvatar"], Value::Null);
        assert_eq!(frame["edited"], false);
    }

    #[test]
    fn errors_use_the_documented_words() {
        assert_eq!(
            error_text(&Error::ContentTooLong { max: 500 }, Action::Text),
            "Message exceeds 500 characters."
        );
        let forbidden = Error::Forbidden("x".to_owned());
        assert_eq!(error_text(&forbidden, Action::Update), NOT_YOUR_EDIT);
        assert_eq!(error_text(&forbidden, Action::Delete), NOT_YOUR_DELETE);
        let missing = Error::NotFound("x".to_owned());
        assert_eq!(error_text(&missing, Action::Delete), MESSAGE_NOT_FOUND);
    }

    #[test]
    fn message_ids_of_other_rooms_are_not_found() {
        let mut map = Map::new();
        map.insert(
            "messageId".to_owned(),
            Value::String(message_uuid(4, 1).to_string()),
        );
        assert_eq!(message_seq(&map, 4), Ok(1));
        assert_eq!(message_seq(&map, 5), Err(MESSAGE_NOT_FOUND.to_owned()));
        map.insert("messageId".to_owned(), Value::String("nope".to_owned()));
        assert_eq!(message_seq(&map, 4), Err(MESSAGE_NOT_FOUND.to_owned()));
    }
}
