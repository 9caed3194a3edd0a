//! The Kibray dialect (Django Channels) at three endpoints: `/ws/chat/{room}/` (one connection
//! per core room `{room}`: `chat_message`, `edit_message`, `delete_message`, `typing`,
//! `mark_read` read receipts, uploads in chunks), `/ws/notifications/` (`notification`,
//! `mark_read`, `unread_count`) and `/ws/status/` (`status_update`, `user_status`, `typing`).
//! Errors are `{"type": "error", "error": ..., "code": ...}` with the document's codes.
//! `man/natter-protocol.7` (KIBRAY DIALECT) describes the mapping.
//!
//! Message ids are the core's per-room sequence numbers (a chat connection is in one room);
//! `channel_id` is the core room id; user ids are the users' numbers
//! ([`crate::store::User::number`]). Content is plain text: markup is stripped by the core
//! ([`crate::core::command::ContentPolicy::plain`]).
//!
//! This file is the codec's answers; `decode` reads client frames (and upload chunks),
//! `events` encodes what the core emits.

mod decode;
mod events;

use decode::Refused;
pub use events::encode;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::{Bucket, Dialect, Encoder, Facts, Out, Rate, RateLimit, RateLimits, Request, slots};
use crate::config::Config;
use crate::core::command::{Command, Reply, RoomRef};
use crate::error::Error;
use crate::events::Event;
use crate::wire::attachment_json;
use crate::ws::close;
use crate::ws::{Endpoint, KibrayEndpoint};

/// The document's rate-limit error text, verbatim.
pub const RATE_LIMIT_TEXT: &str = "Rate limit exceeded. Please slow down.";

/// The document's error codes.
pub mod codes {
    pub const AUTHENTICATION_FAILED: &str = "AUTHENTICATION_FAILED";
    pub const RATE_LIMIT_EXCEEDED: &str = "RATE_LIMIT_EXCEEDED";
    pub const INVALID_MESSAGE: &str = "INVALID_MESSAGE";
    pub const PERMISSION_DENIED: &str = "PERMISSION_DENIED";
    pub const CHANNEL_NOT_FOUND: &str = "CHANNEL_NOT_FOUND";
    pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
    /// Not in the document: a failure of the server itself (store, internal).
    pub const INTERNAL_ERROR: &str = "INTERNAL_ERROR";
}

/// What a request's missing object was, for the code of a `NotFound`.
#[derive(Clone, Copy)]
pub(super) enum Missing {
    /// A room (`channel_id`, the path's room): `CHANNEL_NOT_FOUND`.
    Channel,
    /// A message or notification id: `INVALID_MESSAGE`.
    Item,
}

pub struct Kibray {
    endpoint: KibrayEndpoint,
    /// The chat endpoint's core room (name, id), once joined.
    room: Option<(String, u64)>,
    /// `kibray.max_message_chars`, enforced by the core.
    max_chars: usize,
    /// `kibray.max_upload_bytes`.
    max_upload_bytes: u64,
    /// The upload in progress on this connection (one at a time; a new `upload_file` abandons
    /// it). Its bytes go to a temporary file on disk, at most `kibray.max_upload_bytes`.
    upload: Option<Upload>,
}

/// A file being uploaded in chunks.
pub(super) struct Upload {
    id: String,
    size: u64,
    next_chunk: u64,
    /// The core's upload: here between chunks, away with the command that writes one. Dropped
    /// (the upload abandoned, a chunk refused, the connection closed), its temporary file goes.
    file: Option<Box<crate::core::chat::Upload>>,
}

/// What a Kibray request needs for its answer.
pub struct Meta {
    action: Action,
    missing: Missing,
}

pub(super) enum Action {
    /// Entering the chat endpoint's room at connect.
    EnterRoom,
    /// The unread count (at connect, after a `mark_read`).
    Unread,
    /// Watching the member rooms at connect (status endpoint).
    Watch,
    /// A request whose success says nothing (the room sees its event).
    Quiet,
    /// A typing indicator (dropped over its rate).
    Typing,
    /// An `upload_file`: the upload it starts once the core allows it (with the client's own
    /// id, when it chose one).
    UploadFile {
        id: Option<String>,
        name: String,
        size: u64,
    },
    /// An `upload_chunk`.
    Chunk {
        upload_id: String,
        index: u64,
        chunk: String,
    },
    /// A chunk handed to the core: on disk (`upload_progress`), or the last one, the file
    /// stored and posted (`upload_complete`).
    ChunkStored { index: u64 },
}

impl Meta {
    fn new(action: Action, missing: Missing) -> Meta {
        Meta { action, missing }
    }
}

impl Dialect for Kibray {
    type Meta = Meta;

    fn new(_facts: &Facts, endpoint: &Endpoint, config: &Arc<Config>) -> Self {
        let endpoint = match endpoint {
            Endpoint::Kibray(kind) => kind.clone(),
            // Only Kibray endpoints run this dialect; an empty name is no room (4403).
            _ => KibrayEndpoint::Chat {
                room: String::new(),
            },
        };
        Kibray {
            endpoint,
            room: None,
            max_chars: config.kibray.max_message_chars,
            max_upload_bytes: config.kibray.max_upload_bytes,
            upload: None,
        }
    }

    fn name(&self) -> &'static str {
        "kibray"
    }

    fn encoder(&self) -> Encoder {
        Encoder {
            slot: slots::KIBRAY,
            encode,
        }
    }

    fn refusal(error: &Error) -> Option<Message> {
        Some(error_frame(
            &error.public_message(),
            code_of(error, Missing::Channel),
        ))
    }

    fn connect(&mut self, _facts: &Facts) -> Vec<Request<Meta>> {
        let (action, missing, command) = match &self.endpoint {
            // `/ws/chat/123/`: the room named `123`, else the room whose id (`channel_id`) is
            // 123, so that the path and the frames' `channel_id` agree.
            KibrayEndpoint::Chat { room } => (
                Action::EnterRoom,
                Missing::Channel,
                Command::Join {
                    room: RoomRef::NameOrId(room.clone()),
                    since: None,
                },
            ),
            KibrayEndpoint::Notifications => {
                (Action::Unread, Missing::Item, Command::UnreadNotifications)
            }
            KibrayEndpoint::Status => (Action::Watch, Missing::Channel, Command::WatchMemberRooms),
        };
        vec![Request::core(
            Meta::new(action, missing),
            Rate::Free,
            command,
        )]
    }

    fn decode_text(&mut self, text: &str) -> Option<Request<Meta>> {
        if matches!(self.endpoint, KibrayEndpoint::Chat { .. }) && self.room.is_none() {
            return None;
        }
        let (kind, request) = match parse(text) {
            Ok(parsed) => parsed,
            Err(message) => return Some(invalid(message)),
        };
        Some(
            self.decode(&kind, &request)
                .unwrap_or_else(|(error, missing)| {
                    Request::invalid(Meta::new(Action::Quiet, missing), Rate::Message, error)
                }),
        )
    }

    fn decode_binary(&mut self, _data: Bytes) -> Option<Request<Meta>> {
        Some(invalid("binary frames are not supported".to_owned()))
    }

    fn local(&mut self, meta: Meta, out: &mut Out) -> Option<Request<Meta>> {
        let Action::Chunk {
            upload_id,
            index,
            chunk,
        } = meta.action
        else {
            return None;
        };
        match self.chunk(&upload_id, index, &chunk) {
            Ok(next) => next,
            Err(error) => {
                send_error(out, &error, Missing::Item);
                None
            }
        }
    }

    fn reply(&mut self, meta: Meta, reply: Reply, out: &mut Out) {
        match (meta.action, reply) {
            (Action::EnterRoom, Reply::Joined(joined)) => {
                self.room = Some((joined.room.name, joined.room.id));
            }
            (Action::Unread, Reply::Unread(count)) => out.send(unread_count(count)),
            (Action::UploadFile { id, name, size }, Reply::UploadReady(file)) => {
                let id = id.unwrap_or_else(|| Uuid::new_v4().simple().to_string());
                out.send(text(&json!({
                    "type": "upload_started",
                    "upload_id": id,
                    "file_name": name,
                    "file_size": size,
                })));
                self.upload = Some(Upload {
                    id,
                    size,
                    next_chunk: 0,
                    file: Some(file),
                });
            }
            (Action::ChunkStored { index }, Reply::UploadProgress(file)) => {
                let Some(upload) = self.upload.as_mut() else {
                    return;
                };
                upload.next_chunk += 1;
                out.send(text(&json!({
                    "type": "upload_progress",
                    "upload_id": upload.id,
                    "chunk_index": index,
                    "received": file.received(),
                    "file_size": upload.size,
                })));
                upload.file = Some(file);
            }
            (Action::ChunkStored { .. }, Reply::Sent(sent)) => {
                let id = self.upload.take().map(|upload| upload.id);
                let file = sent
                    .message
                    .attachments
                    .first()
                    .map_or(Value::Null, attachment_json);
                out.send(text(&json!({
                    "type": "upload_complete",
                    "upload_id": id,
                    "message_id": sent.message.seq,
                    "file": file,
                })));
            }
            _ => {}
        }
    }

    fn error(&mut self, meta: Meta, error: &Error, out: &mut Out) {
        match (meta.action, error) {
            // Typing over its own rate is dropped without a word.
            (Action::Typing, Error::Throttled { .. }) => {}
            (_, Error::Throttled { .. }) => {
                out.send(error_frame(RATE_LIMIT_TEXT, codes::RATE_LIMIT_EXCEEDED));
            }
            (Action::ChunkStored { .. }, error) => {
                // The core dropped the upload with the refused chunk: it is abandoned.
                self.upload = None;
                send_error(out, error, meta.missing);
            }
            (action, _) => fail(action, meta.missing, error, out),
        }
    }

    fn rate_limits(&self, config: &Config) -> RateLimits {
        let ws = RateLimits::of_ws(config);
        RateLimits {
            messages: RateLimit {
                bucket: Bucket::Window {
                    per_minute: config.kibray.messages_per_minute,
                },
                noun: "messages",
                closes: true,
            },
            ..ws
        }
    }

    fn ping(&self) -> Option<Message> {
        None
    }

    fn token_expiring(&self, _expires_at: i64) -> Option<Message> {
        None
    }

    fn wants(&self, event: &Event) -> bool {
        match self.endpoint {
            KibrayEndpoint::Chat { .. } => matches!(
                event,
                Event::Message(_)
                    | Event::MessageEdited(_)
                    | Event::MessageDeleted { .. }
                    | Event::Typing { .. }
                    | Event::Read { .. }
                    | Event::RoomClosed { .. }
            ),
            KibrayEndpoint::Notifications => matches!(event, Event::Notification { .. }),
            KibrayEndpoint::Status => {
                matches!(event, Event::Presence { .. } | Event::Typing { .. })
            }
        }
    }
}

fn unread_count(count: usize) -> Message {
    text(&json!({"type": "unread_count", "count": count}))
}

/// The document's code for a core error.
fn code_of(error: &Error, missing: Missing) -> &'static str {
    match error {
        Error::InvalidToken(_) | Error::InvalidCredentials | Error::TokenReused => {
            codes::AUTHENTICATION_FAILED
        }
        Error::RateLimited(_) | Error::Throttled { .. } | Error::TooManyAttempts { .. } => {
            codes::RATE_LIMIT_EXCEEDED
        }
        Error::Forbidden(_) | Error::AccountDisabled => codes::PERMISSION_DENIED,
        Error::NotFound(_) => match missing {
            Missing::Channel => codes::CHANNEL_NOT_FOUND,
            Missing::Item => codes::INVALID_MESSAGE,
        },
        Error::ContentTooLong { .. } | Error::PayloadTooLarge { .. } => codes::MESSAGE_TOO_LARGE,
        Error::BadRequest(_)
        | Error::InvalidJson(_)
        | Error::Conflict(_)
        | Error::ConversationNotOpen(_) => codes::INVALID_MESSAGE,
        _ => codes::INTERNAL_ERROR,
    }
}

/// The frames of a failed request: entering the room at connect closes the connection.
fn fail(action: Action, missing: Missing, error: &Error, out: &mut Out) {
    match action {
        Action::EnterRoom => {
            let code = match error {
                Error::Store(_) | Error::Internal(_) => close::INTERNAL_ERROR,
                _ => close::FORBIDDEN,
            };
            tracing::info!(error = %error, "Kibray chat connection refused");
            let message = error.public_message();
            out.send(error_frame(&message, code_of(error, Missing::Channel)));
            out.close(code, &message);
        }
        _ => send_error(out, error, missing),
    }
}

fn send_error(out: &mut Out, error: &Error, missing: Missing) {
    let message = match error {
        Error::ContentTooLong { max } => format!("Message exceeds {max} characters."),
        other => other.public_message(),
    };
    out.send(error_frame(&message, code_of(error, missing)));
}

/// A client frame: its `type` and the whole object.
pub(crate) fn parse(text: &str) -> Result<(String, Map<String, Value>), String> {
    let map = super::json::object(text).map_err(|e| match e {
        Some(e) => format!("malformed JSON: {e}"),
        None => "a message must be a JSON object with a string \"type\"".to_owned(),
    })?;
    match map.get("type") {
        Some(Value::String(kind)) => Ok((kind.clone(), map)),
        _ => Err("a message must be a JSON object with a string \"type\"".to_owned()),
    }
}

/// A malformed request: `INVALID_MESSAGE` with `message`.
pub(super) fn invalid(message: String) -> Request<Meta> {
    let (error, missing) = bad(message);
    Request::invalid(Meta::new(Action::Quiet, missing), Rate::Message, error)
}

pub(super) fn bad(message: String) -> Refused {
    (Error::BadRequest(message), Missing::Item)
}

pub(super) fn string_field<'a>(
    map: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, Refused> {
    map.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{name} must be a string")))
}

pub(super) fn id_field(map: &Map<String, Value>, name: &str) -> Result<u64, Refused> {
    map.get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(format!("{name} must be a non-negative integer")))
}

pub(super) fn optional_id(map: &Map<String, Value>, name: &str) -> Result<Option<u64>, Refused> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(format!("{name} must be a message id or null"))),
    }
}

/// `{"type": "error", "error": ..., "code": ...}`.
fn error_frame(message: &str, code: &str) -> Message {
    text(&json!({"type": "error", "error": message, "code": code}))
}

pub(super) fn text(value: &Value) -> Message {
    super::json_text(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_document_table() {
        assert_eq!(
            code_of(&Error::InvalidToken("x"), Missing::Item),
            codes::AUTHENTICATION_FAILED
        );
        assert_eq!(
            code_of(&Error::NotFound("x".to_owned()), Missing::Channel),
            codes::CHANNEL_NOT_FOUND
        );
        assert_eq!(
            code_of(&Error::NotFound("x".to_owned()), Missing::Item),
            codes::INVALID_MESSAGE
        );
        assert_eq!(
            code_of(&Error::ContentTooLong { max: 3 }, Missing::Item),
            codes::MESSAGE_TOO_LARGE
        );
        assert_eq!(
            code_of(&Error::Forbidden("x".to_owned()), Missing::Channel),
            codes::PERMISSION_DENIED
        );
    }

    #[test]
    fn optional_ids() {
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"a": null, "b": 4, "c": "x"}"#).expect("json");
        assert_eq!(optional_id(&map, "a").ok(), Some(None));
        assert_eq!(optional_id(&map, "b").ok(), Some(Some(4)));
        assert!(optional_id(&map, "c").is_err());
        assert_eq!(optional_id(&map, "d").ok(), Some(None));
    }
}
