//! The FastChat dialect (seed 003) at `/ws`, for a connection whose first frame is `HELLO` (see
//! [`super::root`]): `{"type", "data"}` frames; HELLO / HELLO_ACK, PRESENCE, OPEN_CHAT /
//! CHAT_OPENED, MSG / MSG_ACK, TYPING, PING / PONG and ERROR with the seed's codes.
//! `man/natter-protocol.7` (FASTCHAT DIALECT) is the reference.
//!
//! The rules are the core's: a chat is a one-to-one conversation (`core::conversations`: the
//! direct room of two accounts, or a live chat when a guest takes part), the roster is the hub's,
//! markup is stripped by `core::policy::strip_markup`, and the seed's limits are `[fastchat]`
//! config fields enforced through the core and the policy's rate limiters.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::core::chat::Chat;
use crate::core::conversations::Lookup;
use crate::core::policy::{self, RateLimiter};
use crate::error::Error;
use crate::events::{ConversationEvent, Event};
use crate::store::now_secs;
use crate::timefmt::rfc3339;
use crate::ws::close;
use crate::ws::session::Ctx;

/// The frame type that starts a FastChat connection.
pub const HELLO: &str = "HELLO";

/// FastChat's error codes (the seed's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Validation,
    MessageFailed,
    UserNotFound,
    ChatNotOpened,
    RateLimited,
    Unauthorized,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Validation => "VALIDATION",
            Code::MessageFailed => "MESSAGE_FAILED",
            Code::UserNotFound => "USER_NOT_FOUND",
            Code::ChatNotOpened => "CHAT_NOT_OPENED",
            Code::RateLimited => "RATE_LIMITED",
            Code::Unauthorized => "UNAUTHORIZED",
        }
    }

    /// The code of a core error, by its HTTP status (a new core error kind maps itself).
    pub fn of(error: &Error) -> Code {
        match error.http_status() {
            401 | 403 => Code::Unauthorized,
            404 => Code::UserNotFound,
            429 => Code::RateLimited,
            400..=499 => Code::Validation,
            _ => Code::MessageFailed,
        }
    }
}

/// Why a request failed, as an ERROR frame says it.
#[derive(Debug)]
pub struct Failure {
    code: Code,
    message: String,
    details: Value,
}

impl Failure {
    fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    fn with_details(mut self, details: Value) -> Failure {
        self.details = details;
        self
    }

    /// `{"type": "ERROR", "data": {"code", "message", "details"}}`.
    pub fn frame(&self) -> Message {
        frame(
            "ERROR",
            json!({"code": self.code.as_str(), "message": self.message, "details": self.details}),
        )
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::new(Code::of(&error), error.public_message())
    }
}

/// Whether a frame is a FastChat HELLO: a JSON object whose `type` is `HELLO`. This is how `/ws`
/// tells a FastChat client from a native one (whose frames have other types).
pub fn is_hello(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .ok()
        .is_some_and(|v| v.get("type").and_then(Value::as_str) == Some(HELLO))
}

/// What the first frame of a connection without a token leads to, when guests are admitted.
#[derive(Debug)]
pub enum Admission {
    /// Not a HELLO: refused like any connection without a token.
    NotHello,
    /// A HELLO that cannot be accepted as it is (its error frame); the client may send another.
    Retry(Message),
    /// A HELLO that claims an account's user id (its error frame): closed with 4401.
    Refused(Message),
    /// A guest, with the user id it gets and its display name (markup stripped).
    Admitted { user_id: Uuid, display_name: String },
}

/// Decides on the first frame of a connection without a token (`fastchat.guests` on).
pub fn admit_guest(chat: &Chat, text: &str) -> Admission {
    if !is_hello(text) {
        return Admission::NotHello;
    }
    let limits = &chat.config().fastchat;
    let hello = match Request::parse(text).and_then(|request| Hello::of(&request.data)) {
        Ok(hello) => hello,
        Err(failure) => return Admission::Retry(failure.frame()),
    };
    let display_name = match policy::display_name(
        &hello.display_name,
        limits.display_name_min_chars,
        limits.display_name_max_chars,
    ) {
        Ok(name) => name,
        Err(error) => return Admission::Retry(Failure::from(error).frame()),
    };
    match chat.guest_identity(&hello.user_id) {
        Ok(user_id) => Admission::Admitted {
            user_id,
            display_name,
        },
        Err(error) => {
            let failure = Failure::from(error);
            if failure.code == Code::Unauthorized {
                Admission::Refused(failure.frame())
            } else {
                Admission::Retry(failure.frame())
            }
        }
    }
}

/// A FastChat connection's state.
pub struct FastChat {
    user_id: Uuid,
    /// The name the connection is listed under, once a HELLO was accepted.
    display_name: Option<String>,
    /// A guest's name from the HELLO that admitted it, listed at `on_connect`.
    guest_name: Option<String>,
    /// `fastchat.messages_per_minute`.
    messages: RateLimiter,
    /// `fastchat.typing_per_minute`.
    typing: RateLimiter,
    /// For encoding: the recipient of a direct-room message is the room's other member.
    chat: Chat,
}

impl FastChat {
    /// A connection that switches to FastChat (`guest_name`: a guest, already admitted).
    pub fn new(ctx: &Ctx, guest_name: Option<String>) -> FastChat {
        let limits = &ctx.state.config.fastchat;
        FastChat {
            user_id: ctx.principal.user_id,
            display_name: None,
            guest_name,
            messages: RateLimiter::new(limits.messages_per_minute, limits.messages_per_minute),
            typing: RateLimiter::new(limits.typing_per_minute, limits.typing_per_minute),
            chat: ctx.state.chat.clone(),
        }
    }

    /// `fastchat.ping_interval_secs` and `fastchat.pong_timeout_secs`.
    pub fn heartbeat(&self) -> (Duration, Duration) {
        let limits = &self.chat.config().fastchat;
        (
            Duration::from_secs(limits.ping_interval_secs),
            Duration::from_secs(limits.pong_timeout_secs),
        )
    }

    /// A guest is listed (and welcomed) as soon as it is registered.
    pub async fn on_connect(&mut self, ctx: &mut Ctx) {
        if let Some(name) = self.guest_name.take()
            && let Err(failure) = self.accept(ctx, &name)
        {
            ctx.send(failure.frame());
            ctx.close(close::UNAUTHORIZED, "HELLO not accepted");
        }
    }

    pub async fn on_text(&mut self, ctx: &mut Ctx, text: &str) {
        let result = match Request::parse(text) {
            Ok(request) => self.handle(ctx, request).await,
            Err(failure) => Err(failure),
        };
        if let Err(failure) = result {
            ctx.send(failure.frame());
        }
    }

    pub fn on_binary(&mut self, ctx: &mut Ctx) {
        ctx.send(
            Failure::new(
                Code::Validation,
                "FastChat frames are JSON text; binary frames are not part of the protocol",
            )
            .frame(),
        );
    }

    /// Hides the connection's own room messages and typing: FastChat shows what others do
    /// (the sender of a MSG gets its MSG_ACK).
    pub fn wants(&self, event: &Event) -> bool {
        match event {
            Event::Message(m) => m.message.author != self.user_id,
            Event::Typing { user_id, .. } => *user_id != self.user_id,
            _ => true,
        }
    }

    /// The FastChat encoding of an event (the same for every FastChat connection).
    pub fn encode(&self, event: &Event) -> Option<Message> {
        match event {
            Event::Roster { users } => {
                let users: Vec<Value> = users
                    .iter()
                    .map(|u| json!({"user_id": u.user_id, "display_name": u.display_name, "online": true}))
                    .collect();
                Some(frame("PRESENCE", json!({ "users": users })))
            }
            Event::Conversation(ConversationEvent::Opened {
                chat_id,
                participants,
                peer_id,
                peer_name,
            }) => Some(frame(
                "CHAT_OPENED",
                json!({
                    "chat_id": chat_id,
                    "participants": participants,
                    "target_user_id": peer_id,
                    "target_display_name": peer_name,
                }),
            )),
            Event::Conversation(ConversationEvent::Message {
                from,
                to,
                content,
                message_id,
                sent_at_ms,
                ..
            }) => Some(msg_frame(*from, *to, content, message_id, *sent_at_ms)),
            Event::Conversation(ConversationEvent::Typing {
                user_id, is_typing, ..
            }) => Some(typing_frame(*user_id, *is_typing)),
            Event::Message(m) if m.room.starts_with(policy::DM_PREFIX) => {
                let message = &m.message;
                let to = self.chat.direct_peer(message.room_id, message.author)?;
                let message_id = message.client_msg_id.clone().unwrap_or_else(|| {
                    super::message_uuid(message.room_id, message.seq).to_string()
                });
                Some(msg_frame(
                    message.author,
                    to,
                    &message.content,
                    &message_id,
                    message.created_at_ms,
                ))
            }
            Event::Typing {
                room,
                user_id,
                is_typing,
                ..
            } if room.starts_with(policy::DM_PREFIX) => Some(typing_frame(*user_id, *is_typing)),
            _ => None,
        }
    }

    async fn handle(&mut self, ctx: &mut Ctx, request: Request) -> Result<(), Failure> {
        let Request { kind, data } = request;
        match kind.as_str() {
            HELLO => self.hello(ctx, &data),
            "PING" => {
                ctx.send(frame("PONG", json!({"timestamp": rfc3339(now_secs())})));
                Ok(())
            }
            // A client's receipt of a MSG (the seed's flow shows one): nothing to do.
            "MSG_ACK" => Ok(()),
            _ if self.display_name.is_none() => Err(Failure::new(
                Code::Unauthorized,
                "send HELLO first to establish your identity",
            )),
            "OPEN_CHAT" => self.open_chat(ctx, &data).await,
            "MSG" => self.message(ctx, &data).await,
            "TYPING" => self.typing(ctx, &data).await,
            other => Err(Failure::new(
                Code::Validation,
                format!("unknown message type {other:?}"),
            )),
        }
    }

    /// With a token, the HELLO must name the token's user (else UNAUTHORIZED and close 4401).
    fn hello(&mut self, ctx: &mut Ctx, data: &Value) -> Result<(), Failure> {
        if self.display_name.is_some() {
            return Err(Failure::new(
                Code::Validation,
                "HELLO was already accepted on this connection",
            ));
        }
        let hello = Hello::of(data)?;
        if Uuid::parse_str(&hello.user_id).ok() != Some(ctx.principal.user_id) {
            ctx.close(
                close::UNAUTHORIZED,
                "HELLO user_id does not match the token",
            );
            return Err(Failure::new(
                Code::Unauthorized,
                "user_id does not match the user of the access token",
            ));
        }
        self.accept(ctx, &hello.display_name)
    }

    /// Lists the connection in the roster, then HELLO_ACK; the roster (PRESENCE) follows, as
    /// the session writes a turn's replies before it reads deliveries.
    fn accept(&mut self, ctx: &mut Ctx, display_name: &str) -> Result<(), Failure> {
        let limits = &ctx.state.config.fastchat;
        let name = ctx.state.chat.roster_enter(
            ctx.conn,
            display_name,
            limits.display_name_min_chars,
            limits.display_name_max_chars,
        )?;
        ctx.send(frame(
            "HELLO_ACK",
            json!({"user_id": ctx.principal.user_id, "status": "connected"}),
        ));
        self.display_name = Some(name);
        Ok(())
    }

    async fn open_chat(&mut self, ctx: &mut Ctx, data: &Value) -> Result<(), Failure> {
        let target = str_field(data, "target_user_id")?;
        // The client's idea of the name is not needed: the server knows it.
        opt_str(data, "target_display_name")?;
        let chat = ctx.state.chat.clone();
        let conversation = chat
            .open_conversation(&ctx.principal, ctx.conn, target)
            .await
            .map_err(|e| Failure::from(e).with_details(json!({"target_user_id": target})))?;
        ctx.send(frame(
            "CHAT_OPENED",
            json!({
                "chat_id": conversation.chat_id,
                "participants": conversation.participants,
                "target_user_id": conversation.peer_id,
                "target_display_name": conversation.peer_name,
            }),
        ));
        Ok(())
    }

    async fn message(&mut self, ctx: &mut Ctx, data: &Value) -> Result<(), Failure> {
        let per_minute = ctx.state.config.fastchat.messages_per_minute;
        take(&mut self.messages, ctx, per_minute, "messages")?;
        let to = str_field(data, "to")?;
        let content = str_field(data, "content")?;
        let message_id = match data.get("message_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(Value::Number(id)) => Some(id.to_string()),
            Some(_) => {
                return Err(Failure::new(
                    Code::Validation,
                    "data.message_id must be a string",
                ));
            }
        };
        let details = json!({"to": to, "message_id": message_id});
        let chat = ctx.state.chat.clone();
        let (peer_id, peer_chat) = match chat.conversation(ctx.conn, to)? {
            Lookup::Open { peer_id, chat } => (peer_id, chat),
            Lookup::NotOpened => {
                return Err(Failure::new(
                    Code::ChatNotOpened,
                    format!("no chat with {to} is open on this connection: send OPEN_CHAT first"),
                )
                .with_details(details));
            }
            Lookup::NoSuchUser => {
                return Err(
                    Failure::new(Code::UserNotFound, format!("user {to} not found"))
                        .with_details(details),
                );
            }
        };
        let max_chars = ctx.state.config.fastchat.max_message_chars;
        // Delivery or storage trouble is MESSAGE_FAILED; a broken rule keeps its own code.
        let message_id = chat
            .conversation_send(
                &ctx.principal,
                peer_id,
                &peer_chat,
                content,
                message_id,
                max_chars,
            )
            .await
            .map_err(|e| Failure::from(e).with_details(details))?;
        ctx.send(frame(
            "MSG_ACK",
            json!({"message_id": message_id, "status": "delivered"}),
        ));
        Ok(())
    }

    async fn typing(&mut self, ctx: &mut Ctx, data: &Value) -> Result<(), Failure> {
        let per_minute = ctx.state.config.fastchat.typing_per_minute;
        take(&mut self.typing, ctx, per_minute, "typing indicators")?;
        let is_typing = match data.get("is_typing") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(Failure::new(
                    Code::Validation,
                    "data.is_typing must be a boolean",
                ));
            }
        };
        let chat = ctx.state.chat.clone();
        chat.conversation_typing(&ctx.principal, ctx.conn, is_typing)
            .await?;
        Ok(())
    }
}

/// Takes a token from a limiter; over the limit: RATE_LIMITED, and a client that keeps going a
/// whole minute's worth past it is closed with 4429.
fn take(
    limiter: &mut RateLimiter,
    ctx: &mut Ctx,
    per_minute: u32,
    what: &str,
) -> Result<(), Failure> {
    if limiter.try_take() {
        return Ok(());
    }
    if limiter.refused_in_a_row >= per_minute {
        ctx.close(close::RATE_LIMITED, "rate limit exceeded");
    }
    Err(Failure::new(
        Code::RateLimited,
        format!(
            "rate limit exceeded: {per_minute} {what} per minute; retry in {} ms",
            limiter.retry_after().as_millis()
        ),
    ))
}

/// A HELLO's claim.
struct Hello {
    user_id: String,
    display_name: String,
}

impl Hello {
    fn of(data: &Value) -> Result<Hello, Failure> {
        Ok(Hello {
            user_id: str_field(data, "user_id")?.to_owned(),
            display_name: str_field(data, "display_name")?.to_owned(),
        })
    }
}

/// A client frame: `{"type": ..., "data": {...}}` (`data` may be left out when empty).
pub(crate) struct Request {
    pub(crate) kind: String,
    pub(crate) data: Value,
}

impl Request {
    pub(crate) fn parse(text: &str) -> Result<Request, Failure> {
        let invalid = |message: String| Failure::new(Code::Validation, message);
        let value: Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("malformed JSON: {e}")))?;
        let Value::Object(mut map) = value else {
            return Err(invalid(
                "a frame must be a JSON object with \"type\" and \"data\"".to_owned(),
            ));
        };
        let kind = match map.remove("type") {
            Some(Value::String(kind)) => kind,
            _ => return Err(invalid("\"type\" must be a string".to_owned())),
        };
        let data = match map.remove("data") {
            None | Some(Value::Null) => json!({}),
            Some(data @ Value::Object(_)) => data,
            Some(_) => return Err(invalid("\"data\" must be an object".to_owned())),
        };
        Ok(Request { kind, data })
    }
}

fn frame(kind: &str, data: Value) -> Message {
    super::json_text(&json!({"type": kind, "data": data}))
}

fn msg_frame(from: Uuid, to: Uuid, content: &str, message_id: &str, sent_at_ms: i64) -> Message {
    frame(
        "MSG",
        json!({
            "from": from,
            "to": to,
            "content": content,
            "message_id": message_id,
            "timestamp": rfc3339(sent_at_ms.div_euclid(1000)),
        }),
    )
}

fn typing_frame(user_id: Uuid, is_typing: bool) -> Message {
    frame(
        "TYPING",
        json!({"user_id": user_id, "is_typing": is_typing}),
    )
}

fn str_field<'a>(data: &'a Value, name: &str) -> Result<&'a str, Failure> {
    match data.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Failure::new(
            Code::Validation,
            format!("data.{name} must be a string"),
        )),
        None => Err(Failure::new(
            Code::Validation,
            format!("missing field data.{name}"),
        )),
    }
}

fn opt_str<'a>(data: &'a Value, name: &str) -> Result<Option<&'a str>, Failure> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Failure::new(
            Code::Validation,
            format!("data.{name} must be a string"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_is_recognised_by_type_only() {
        assert!(is_hello(r#"{"type":"HELLO","data":{}}"#));
        assert!(is_hello(r#"{"type":"HELLO","data":"not an object"}"#));
        assert!(!is_hello(r#"{"type":"Ping","data":{}}"#));
        assert!(!is_hello("HELLO"));
    }

    #[test]
    fn core_errors_map_to_the_seed_codes() {
        assert_eq!(
            Code::of(&Error::BadRequest(String::new())),
            Code::Validation
        );
        assert_eq!(
            Code::of(&Error::NotFound(String::new())),
            Code::UserNotFound
        );
        assert_eq!(
            Code::of(&Error::RateLimited(String::new())),
            Code::RateLimited
        );
        assert_eq!(
            Code::of(&Error::Forbidden(String::new())),
            Code::Unauthorized
        );
        assert_eq!(
            Code::of(&Error::Unavailable(String::new())),
            Code::MessageFailed
        );
        assert_eq!(
            Code::of(&Error::Internal(String::new())),
            Code::MessageFailed
        );
    }
}
