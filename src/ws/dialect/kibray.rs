//! The Kibray dialect (seed 002, Django Channels) at three endpoints: `/ws/chat/{room}/` (one
//! connection per core room `{room}`: `chat_message`, `edit_message`, `delete_message`,
//! `typing`, `mark_read` read receipts), `/ws/notifications/` (`notification`, `mark_read`,
//! `unread_count`) and `/ws/status/` (`status_update`, `user_status`, `typing`). Errors are
//! `{"type": "error", "error": ..., "code": ...}` with the seed's codes. `man/natter-protocol.7`
//! (KIBRAY DIALECT) describes the mapping.
//!
//! Message ids are the core's per-room sequence numbers (a chat connection is in one room);
//! `channel_id` is the core room id; user ids are the users' numbers
//! ([`crate::store::User::number`]). Content is stripped of markup by the core
//! ([`crate::core::chat::Chat::send_plain`]), not here.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

use super::Dialect;
use crate::core::policy::WindowLimiter;
use crate::error::Error;
use crate::events::{Event, RoomMessage};
use crate::store::{Notification, Store};
use crate::timefmt::rfc3339;
use crate::wire::attachment_json;
use crate::ws::close;
use crate::ws::session::Ctx;
use crate::ws::{Endpoint, KibrayEndpoint};

/// The seed's rate-limit error text, verbatim.
pub const RATE_LIMIT_TEXT: &str = "Rate limit exceeded. Please slow down.";

/// The seed's error codes.
pub mod codes {
    pub const AUTHENTICATION_FAILED: &str = "AUTHENTICATION_FAILED";
    pub const RATE_LIMIT_EXCEEDED: &str = "RATE_LIMIT_EXCEEDED";
    pub const INVALID_MESSAGE: &str = "INVALID_MESSAGE";
    pub const PERMISSION_DENIED: &str = "PERMISSION_DENIED";
    pub const CHANNEL_NOT_FOUND: &str = "CHANNEL_NOT_FOUND";
    pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
    /// Not in the seed: a failure of the server itself (store, internal).
    pub const INTERNAL_ERROR: &str = "INTERNAL_ERROR";
}

/// What a request's missing object was, for the code of a `NotFound`.
#[derive(Clone, Copy)]
enum Missing {
    /// A room (`channel_id`, the path's room): `CHANNEL_NOT_FOUND`.
    Channel,
    /// A message or notification id: `INVALID_MESSAGE`.
    Item,
}

pub struct Kibray {
    endpoint: KibrayEndpoint,
    /// The chat endpoint's core room (name, id), once joined.
    room: Option<(String, u64)>,
    /// For the user numbers of encoded frames (one read per encoding, shared by every Kibray
    /// connection that receives it).
    store: Store,
    /// `kibray.messages_per_minute` in any rolling minute, counting every frame.
    limiter: WindowLimiter,
    /// `kibray.max_message_chars`, enforced by the core.
    max_chars: usize,
    /// The upload in progress on this connection (one at a time; a new `upload_file` replaces
    /// it). Its bytes stay below `kibray.max_upload_bytes`.
    upload: Option<Upload>,
}

/// A file being uploaded in chunks.
struct Upload {
    id: String,
    name: String,
    content_type: String,
    size: u64,
    next_chunk: u64,
    data: Vec<u8>,
}

impl Dialect for Kibray {
    fn slot(&self) -> usize {
        super::slots::KIBRAY
    }

    fn encode(&self, event: &Event) -> Option<Message> {
        encode(&self.store, event)
    }

    fn refusal(error: &Error) -> Option<Message> {
        Some(error_frame(
            &error.public_message(),
            code_of(error, Missing::Channel),
        ))
    }

    fn new(ctx: &Ctx, endpoint: &Endpoint) -> Self {
        let endpoint = match endpoint {
            Endpoint::Kibray(kind) => kind.clone(),
            // Only Kibray endpoints run this dialect; an empty name is no room (4403).
            _ => KibrayEndpoint::Chat {
                room: String::new(),
            },
        };
        let config = &ctx.state.config.kibray;
        Kibray {
            endpoint,
            room: None,
            store: ctx.state.store.clone(),
            limiter: WindowLimiter::new(config.messages_per_minute, Duration::from_secs(60)),
            max_chars: config.max_message_chars,
            upload: None,
        }
    }

    async fn on_connect(&mut self, ctx: &mut Ctx) {
        let chat = ctx.state.chat.clone();
        match &self.endpoint {
            KibrayEndpoint::Chat { room } => {
                match chat.join(&ctx.principal, ctx.conn, room, None).await {
                    Ok(joined) => self.room = Some((joined.room.name, joined.room.id)),
                    Err(error) => {
                        let code = match error {
                            Error::Store(_) | Error::Internal(_) => close::INTERNAL_ERROR,
                            _ => close::FORBIDDEN,
                        };
                        tracing::info!(
                            user = %ctx.principal.username,
                            room = %room,
                            error = %error,
                            "Kibray chat connection refused"
                        );
                        let message = error.public_message();
                        ctx.send(error_frame(&message, code_of(&error, Missing::Channel)));
                        ctx.close(code, &message);
                    }
                }
            }
            KibrayEndpoint::Notifications => match chat.unread_notifications(&ctx.principal) {
                Ok(count) => ctx.send(unread_count(count)),
                Err(error) => send_error(ctx, &error, Missing::Item),
            },
            KibrayEndpoint::Status => {
                if let Err(error) = chat.watch_member_rooms(&ctx.principal, ctx.conn) {
                    send_error(ctx, &error, Missing::Channel);
                }
            }
        }
    }

    async fn on_text(&mut self, ctx: &mut Ctx, text: &str) {
        if matches!(self.endpoint, KibrayEndpoint::Chat { .. }) && self.room.is_none() {
            return;
        }
        if !self.take_rate(ctx) {
            return;
        }
        let (kind, request) = match parse(text) {
            Ok(parsed) => parsed,
            Err(message) => {
                ctx.send(error_frame(&message, codes::INVALID_MESSAGE));
                return;
            }
        };
        let result = match (&self.endpoint, kind.as_str()) {
            (KibrayEndpoint::Chat { .. }, "chat_message") => self.chat_message(ctx, &request).await,
            (KibrayEndpoint::Chat { .. }, "edit_message") => self.edit_message(ctx, &request).await,
            (KibrayEndpoint::Chat { .. }, "delete_message") => {
                self.delete_message(ctx, &request).await
            }
            (KibrayEndpoint::Chat { .. }, "mark_read") => self.read_receipt(ctx, &request).await,
            (KibrayEndpoint::Chat { .. } | KibrayEndpoint::Status, "typing") => {
                self.typing(ctx, &request).await
            }
            (KibrayEndpoint::Chat { .. }, "upload_file") => self.upload_file(ctx, &request).await,
            (KibrayEndpoint::Chat { .. }, "upload_chunk") => self.upload_chunk(ctx, &request).await,
            (KibrayEndpoint::Notifications, "mark_read") => {
                self.mark_notification_read(ctx, &request).await
            }
            (KibrayEndpoint::Status, "status_update") => self.status_update(ctx, &request).await,
            (_, other) => Err((
                Error::BadRequest(format!("unknown message type {other:?} on this endpoint")),
                Missing::Item,
            )),
        };
        if let Err((error, missing)) = result {
            send_error(ctx, &error, missing);
        }
    }

    async fn on_binary(&mut self, ctx: &mut Ctx, _data: Bytes) {
        if !self.take_rate(ctx) {
            return;
        }
        ctx.send(error_frame(
            "binary frames are not supported",
            codes::INVALID_MESSAGE,
        ));
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
            KibrayEndpoint::Notifications => matches!(event, Event::Notification(_)),
            KibrayEndpoint::Status => {
                matches!(event, Event::Presence { .. } | Event::Typing { .. })
            }
        }
    }
}

type Outcome = Result<(), (Error, Missing)>;

impl Kibray {
    /// Counts a frame against `kibray.messages_per_minute`. Over it: the seed's error (and
    /// false); as many refusals in a row close the connection with 4429.
    fn take_rate(&mut self, ctx: &mut Ctx) -> bool {
        if self.limiter.try_take() {
            return true;
        }
        ctx.send(error_frame(RATE_LIMIT_TEXT, codes::RATE_LIMIT_EXCEEDED));
        if self.limiter.refused_in_a_row >= ctx.state.config.kibray.messages_per_minute {
            ctx.close(close::RATE_LIMITED, "message rate limit exceeded");
        }
        false
    }

    /// The chat endpoint's room name (set once joined: requests come after).
    fn room_name(&self) -> Result<&str, (Error, Missing)> {
        self.room.as_ref().map(|(name, _)| name.as_str()).ok_or((
            Error::NotFound("not in a room".to_owned()),
            Missing::Channel,
        ))
    }

    /// `chat_message`: stored (durably) and delivered to the room, the sender included, as
    /// `chat_message`. `channel_id` is accepted and ignored: the path names the room.
    async fn chat_message(&self, ctx: &mut Ctx, request: &Map<String, Value>) -> Outcome {
        let content = string_field(request, "message")?;
        let reply_to = optional_id(request, "reply_to")?;
        let name = self.room_name()?;
        ctx.state
            .chat
            .send_plain(&ctx.principal, name, content, reply_to, self.max_chars)
            .await
            .map(|_| ())
            .map_err(|e| (e, Missing::Item))
    }

    /// `edit_message`: the room sees `edit_message` with the new content.
    async fn edit_message(&self, ctx: &mut Ctx, request: &Map<String, Value>) -> Outcome {
        let seq = id_field(request, "message_id")?;
        let content = string_field(request, "new_content")?;
        let name = self.room_name()?;
        ctx.state
            .chat
            .edit_plain(&ctx.principal, name, seq, content, self.max_chars)
            .await
            .map(|_| ())
            .map_err(|e| (e, Missing::Item))
    }

    /// `delete_message`: the room sees `delete_message`.
    async fn delete_message(&self, ctx: &mut Ctx, request: &Map<String, Value>) -> Outcome {
        let seq = id_field(request, "message_id")?;
        let name = self.room_name()?;
        ctx.state
            .chat
            .delete(&ctx.principal, name, seq)
            .await
            .map(|_| ())
            .map_err(|e| (e, Missing::Item))
    }

    /// `mark_read` with a `message_id` on the chat endpoint: moves the read cursor; the room
    /// sees `read_receipt`.
    async fn read_receipt(&self, ctx: &mut Ctx, request: &Map<String, Value>) -> Outcome {
        let seq = id_field(request, "message_id")?;
        let name = self.room_name()?;
        ctx.state
            .chat
            .read(&ctx.principal, name, seq)
            .await
            .map(|_| ())
            .map_err(|e| (e, Missing::Item))
    }

    /// `typing`: the room of the chat endpoint (its `channel_id` is ignored), or on the status
    /// endpoint the room whose id `channel_id` is. Typing beyond `ws.typing_per_minute` is
    /// dropped silently.
    async fn typing(&self, ctx: &mut Ctx, request: &Map<String, Value>) -> Outcome {
        let is_typing = match request.get("is_typing") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err((
                    Error::BadRequest("is_typing must be a boolean".to_owned()),
                    Missing::Item,
                ));
            }
        };
        let name = match &self.room {
            Some((name, _)) => name.clone(),
            None => {
                let id = id_field(request, "channel_id")?;
                ctx.state
                    .chat
                    .readable_room(&ctx.principal, id)
                    .map_err(|e| (e, Missing::Channel))?
                    .name
            }
        };
        if !ctx.typing_allowed() {
            return Ok(());
        }
        let chat = ctx.state.chat.clone();
        chat.typing(&ctx.principal, ctx.conn, &name, is_typing)
            .await
            .map_err(|e| (e, Missing::Channel))
    }

    /// `upload_file`: checked by the core (room, size), answered with `upload_started` and the
    /// `upload_id` the chunks name.
    async fn upload_file(&mut self, ctx: &mut Ctx, request: &Map<String, Value>) -> Outcome {
        let name = string_field(request, "file_name")?.to_owned();
        let size = id_field(request, "file_size")?;
        let content_type = string_field(request, "file_type")?.to_owned();
        let room = self.room_name()?.to_owned();
        let max = ctx.state.config.kibray.max_upload_bytes;
        ctx.state
            .chat
            .check_upload(&ctx.principal, &room, size, max)
            .await
            .map_err(|e| (e, Missing::Item))?;
        let id = Uuid::new_v4().simple().to_string();
        ctx.send(text(&json!({
            "type": "upload_started",
            "upload_id": id,
            "file_name": name,
            "file_size": size,
        })));
        self.upload = Some(Upload {
            id,
            name,
            content_type,
            size,
            next_chunk: 0,
            data: Vec::new(),
        });
        Ok(())
    }

    /// `upload_chunk`: chunks in order from 0, base64. Each is answered with `upload_progress`;
    /// the last one, once the file is stored and posted to the room (a `chat_message` listing
    /// it), with `upload_complete`.
    async fn upload_chunk(&mut self, ctx: &mut Ctx, request: &Map<String, Value>) -> Outcome {
        use base64::Engine as _;
        let upload_id = string_field(request, "upload_id")?;
        let index = id_field(request, "chunk_index")?;
        let chunk = string_field(request, "chunk_data")?;
        let Some(upload) = self.upload.as_mut().filter(|u| u.id == upload_id) else {
            return Err(invalid(format!("no upload {upload_id:?} in progress")));
        };
        if index != upload.next_chunk {
            return Err(invalid(format!(
                "chunk_index {index} out of order: expected {}",
                upload.next_chunk
            )));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(chunk)
            .map_err(|e| invalid(format!("chunk_data is not base64: {e}")))?;
        let received =
            u64::try_from(upload.data.len().saturating_add(bytes.len())).unwrap_or(u64::MAX);
        if received > upload.size {
            self.upload = None;
            return Err((
                Error::BadRequest("the chunks exceed file_size; upload abandoned".to_owned()),
                Missing::Item,
            ));
        }
        upload.data.extend_from_slice(&bytes);
        upload.next_chunk += 1;
        if received < upload.size {
            ctx.send(text(&json!({
                "type": "upload_progress",
                "upload_id": upload.id,
                "chunk_index": index,
                "received": received,
                "file_size": upload.size,
            })));
            return Ok(());
        }
        let Some(done) = self.upload.take() else {
            return Ok(());
        };
        let room = self.room_name()?.to_owned();
        let max = ctx.state.config.kibray.max_upload_bytes;
        let sent = ctx
            .state
            .chat
            .attach_file(
                &ctx.principal,
                &room,
                &done.name,
                &done.content_type,
                done.data,
                max,
            )
            .await
            .map_err(|e| (e, Missing::Item))?;
        let files: Vec<Value> = sent
            .message
            .attachments
            .iter()
            .map(attachment_json)
            .collect();
        ctx.send(text(&json!({
            "type": "upload_complete",
            "upload_id": done.id,
            "message_id": sent.message.seq,
            "file": files.into_iter().next().unwrap_or(Value::Null),
        })));
        Ok(())
    }

    /// `mark_read` with a `notification_id`: answered with the new `unread_count`.
    async fn mark_notification_read(&self, ctx: &mut Ctx, request: &Map<String, Value>) -> Outcome {
        let id = id_field(request, "notification_id")?;
        let chat = ctx.state.chat.clone();
        chat.mark_notification_read(&ctx.principal, id)
            .await
            .map_err(|e| (e, Missing::Item))?;
        let count = chat
            .unread_notifications(&ctx.principal)
            .map_err(|e| (e, Missing::Item))?;
        ctx.send(unread_count(count));
        Ok(())
    }

    /// `status_update`: the people who share a room with the user see `user_status`.
    async fn status_update(&self, ctx: &mut Ctx, request: &Map<String, Value>) -> Outcome {
        let status = string_field(request, "status")?;
        let chat = ctx.state.chat.clone();
        chat.set_status(&ctx.principal, status, None)
            .await
            .map_err(|e| (e, Missing::Item))
    }
}

/// The Kibray encoding of an event; `None` for events this protocol has no frame for.
pub fn encode(store: &Store, event: &Event) -> Option<Message> {
    let frame = match event {
        Event::Message(m) => json!({
            "type": "chat_message",
            "message": message_json(store, m),
        }),
        Event::MessageEdited(m) => json!({
            "type": "edit_message",
            "message_id": m.message.seq,
            "new_content": m.message.content,
            "channel_id": m.message.room_id,
        }),
        Event::MessageDeleted { room_id, seq, .. } => json!({
            "type": "delete_message",
            "message_id": seq,
            "channel_id": room_id,
        }),
        Event::Typing {
            room_id,
            user_id,
            username,
            is_typing,
            ..
        } => json!({
            "type": "typing",
            "channel_id": room_id,
            "is_typing": is_typing,
            "user_id": user_number(store, *user_id),
            "username": username,
        }),
        Event::Read {
            room_id,
            user_id,
            username,
            seq,
            ..
        } => json!({
            "type": "read_receipt",
            "channel_id": room_id,
            "message_id": seq,
            "user_id": user_number(store, *user_id),
            "username": username,
        }),
        Event::Notification(n) => json!({
            "type": "notification",
            "notification": notification_json(n),
        }),
        Event::Presence {
            user_id,
            status,
            last_seen,
            ..
        } => json!({
            "type": "user_status",
            "user_id": user_number(store, *user_id),
            "status": status,
            "last_seen": last_seen.map(rfc3339),
        }),
        Event::RoomClosed { reason, .. } => {
            return Some(Message::Close(Some(CloseFrame {
                code: CloseCode::from(close::FORBIDDEN),
                reason: reason.clone().into(),
            })));
        }
        _ => return None,
    };
    Some(text(&frame))
}

/// The seed's message object.
fn message_json(store: &Store, m: &RoomMessage) -> Value {
    let message = &m.message;
    json!({
        "id": message.seq,
        "content": message.content,
        "author": {
            "id": user_number(store, message.author),
            "username": message.author_name,
            "avatar": message.author_avatar,
        },
        "timestamp": rfc3339(message.created_at_ms.div_euclid(1000)),
        "channel_id": message.room_id,
        "reply_to": message.reply_to,
        "attachments": message.attachments.iter().map(attachment_json).collect::<Vec<_>>(),
    })
}

/// The seed's notification object.
fn notification_json(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "title": n.title,
        "message": n.message,
        "category": n.category,
        "url": n.url,
        "created_at": rfc3339(n.created_at),
    })
}

/// A user's number, `null` when the user is gone.
fn user_number(store: &Store, user_id: Uuid) -> Value {
    match store.user(user_id) {
        Ok(Some(user)) => json!(user.number),
        _ => Value::Null,
    }
}

fn unread_count(count: usize) -> Message {
    text(&json!({"type": "unread_count", "count": count}))
}

/// The seed's code for a core error.
fn code_of(error: &Error, missing: Missing) -> &'static str {
    match error {
        Error::InvalidToken(_) | Error::InvalidCredentials | Error::TokenReused => {
            codes::AUTHENTICATION_FAILED
        }
        Error::RateLimited(_) | Error::TooManyAttempts { .. } => codes::RATE_LIMIT_EXCEEDED,
        Error::Forbidden(_) | Error::AccountDisabled => codes::PERMISSION_DENIED,
        Error::NotFound(_) => match missing {
            Missing::Channel => codes::CHANNEL_NOT_FOUND,
            Missing::Item => codes::INVALID_MESSAGE,
        },
        Error::ContentTooLong { .. } | Error::PayloadTooLarge { .. } => codes::MESSAGE_TOO_LARGE,
        Error::BadRequest(_) | Error::InvalidJson(_) | Error::Conflict(_) => codes::INVALID_MESSAGE,
        _ => codes::INTERNAL_ERROR,
    }
}

fn send_error(ctx: &mut Ctx, error: &Error, missing: Missing) {
    let message = match error {
        Error::ContentTooLong { max } => format!("Message exceeds {max} characters."),
        other => other.public_message(),
    };
    ctx.send(error_frame(&message, code_of(error, missing)));
}

/// A client frame: its `type` and the whole object.
pub(crate) fn parse(text: &str) -> Result<(String, Map<String, Value>), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("a message must be a JSON object with a string \"type\"".to_owned());
    };
    match map.get("type") {
        Some(Value::String(kind)) => Ok((kind.clone(), map)),
        _ => Err("a message must be a JSON object with a string \"type\"".to_owned()),
    }
}

fn invalid(message: String) -> (Error, Missing) {
    (Error::BadRequest(message), Missing::Item)
}

fn string_field<'a>(map: &'a Map<String, Value>, name: &str) -> Result<&'a str, (Error, Missing)> {
    map.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{name} must be a string")))
}

fn id_field(map: &Map<String, Value>, name: &str) -> Result<u64, (Error, Missing)> {
    map.get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(format!("{name} must be a non-negative integer")))
}

fn optional_id(map: &Map<String, Value>, name: &str) -> Result<Option<u64>, (Error, Missing)> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{name} must be a message id or null"))),
    }
}

/// `{"type": "error", "error": ..., "code": ...}`.
fn error_frame(message: &str, code: &str) -> Message {
    text(&json!({"type": "error", "error": message, "code": code}))
}

fn text(value: &Value) -> Message {
    super::json_text(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_seed_table() {
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
