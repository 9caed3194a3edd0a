//! The FastChat dialect at `/ws`, for a connection whose first frame is `HELLO` (see
//! [`super::root`]): `{"type", "data"}` frames; HELLO / HELLO_ACK, PRESENCE, OPEN_CHAT /
//! CHAT_OPENED, MSG / MSG_ACK, TYPING, PING / PONG and ERROR with the document's codes.
//! `man/natter-protocol.7` (FASTCHAT DIALECT) is the reference.
//!
//! The rules are the core's: a chat is a one-to-one conversation (`core::conversations`: the
//! direct room of two accounts, or a live chat when a guest takes part), the roster is the
//! broker's, markup is stripped by the core, and the document's limits are `[fastchat]` config
//! fields. `events` encodes what the core emits.

mod events;

pub use events::encode;
use events::frame;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::json::{self, FieldError};
use super::{Bucket, Dialect, Encoder, Facts, Out, Rate, RateLimit, RateLimits, Request, slots};
use crate::config::{Config, FastChatConfig};
use crate::core::command::{Command, ContentPolicy, NamePolicy, Reply};
use crate::error::Error;
use crate::events::Event;
use crate::store::now_secs;
use crate::timefmt::rfc3339;
use crate::ws::Endpoint;
use crate::ws::close;

/// The frame type that starts a FastChat connection.
pub const HELLO: &str = "HELLO";

/// FastChat's error codes (the document's table).
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
        if let Error::ConversationNotOpen(_) = error {
            return Code::ChatNotOpened;
        }
        match error.http_status() {
            401 | 403 => Code::Unauthorized,
            404 => Code::UserNotFound,
            429 => Code::RateLimited,
            400..=499 => Code::Validation,
            _ => Code::MessageFailed,
        }
    }
}

/// `{"type": "ERROR", "data": {"code", "message", "details"}}`.
fn failure(error: &Error, details: Value) -> Message {
    frame(
        "ERROR",
        json!({"code": Code::of(error).as_str(), "message": error.public_message(), "details": details}),
    )
}

/// The ERROR frame of an error, without details.
pub fn error_frame(error: &Error) -> Message {
    failure(error, json!({}))
}

/// Whether a frame is a FastChat HELLO: a JSON object whose `type` is `HELLO`. This is how `/ws`
/// tells a FastChat client from a native one (whose frames have other types).
pub fn is_hello(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .ok()
        .is_some_and(|v| v.get("type").and_then(Value::as_str) == Some(HELLO))
}

/// The frame types of FastChat that come after a HELLO.
const AFTER_HELLO: &[&str] = &["OPEN_CHAT", "MSG", "TYPING", "MSG_ACK"];

/// Whether a frame is a JSON object whose `type` is `kind`.
fn is_type(text: &str, kind: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .ok()
        .is_some_and(|v| v.get("type").and_then(Value::as_str) == Some(kind))
}

/// Whether a frame is FastChat's `PING`, which is answered before a HELLO too (and does not
/// yet decide a `/ws` connection's protocol).
pub fn is_ping(text: &str) -> bool {
    is_type(text, "PING")
}

/// FastChat's `PONG`.
pub fn pong() -> Message {
    frame("PONG", json!({"timestamp": rfc3339(now_secs())}))
}

/// The first frames of a connection without a token, when guests are admitted.
#[derive(Debug)]
pub enum FirstFrame {
    /// Not FastChat: refused like any connection without a token.
    NotHello,
    /// A `PING`: answered, and the connection waits for its HELLO.
    Ping,
    /// Another FastChat request, before any HELLO: UNAUTHORIZED, and the connection waits.
    Early,
    /// A HELLO that cannot be read (its error); the client may send another.
    Invalid(Error),
    /// A HELLO's claim: the user id it asks for and its display name.
    Hello {
        user_id: String,
        display_name: String,
    },
}

/// Reads the first frame of a connection without a token.
pub fn first_frame(text: &str) -> FirstFrame {
    if is_ping(text) {
        return FirstFrame::Ping;
    }
    if AFTER_HELLO.iter().any(|kind| is_type(text, kind)) {
        return FirstFrame::Early;
    }
    if !is_hello(text) {
        return FirstFrame::NotHello;
    }
    match Envelope::parse(text).and_then(|envelope| Hello::of(&envelope.data).map_err(field)) {
        Ok(hello) => FirstFrame::Hello {
            user_id: hello.user_id,
            display_name: hello.display_name,
        },
        Err(error) => FirstFrame::Invalid(error),
    }
}

/// `fastchat.display_name_min_chars` to `display_name_max_chars`.
pub fn name_policy(config: &FastChatConfig) -> NamePolicy {
    NamePolicy {
        min: config.display_name_min_chars,
        max: config.display_name_max_chars,
    }
}

/// A FastChat connection's state.
pub struct FastChat {
    user_id: Uuid,
    /// The name the connection is listed under, once a HELLO was accepted.
    display_name: Option<String>,
    /// A guest's name from the HELLO that admitted it, listed at connect.
    guest_name: Option<String>,
    names: NamePolicy,
    max_chars: usize,
    heartbeat: (Duration, Duration),
}

/// What a FastChat request needs for its answer.
pub enum Meta {
    /// A HELLO with a token.
    Hello,
    /// A HELLO with a token whose user id is not the account's: taken (the token says who it
    /// is), unless it is another account's, which is refused and closes the connection.
    HelloMismatch,
    /// A guest's HELLO, listed at connect: a refusal closes the connection.
    GuestHello,
    Ping,
    OpenChat {
        target: String,
    },
    /// A MSG, with the details its errors carry.
    Msg {
        details: Value,
    },
    Typing,
    Other,
}

impl FastChat {
    /// A connection that switches to FastChat (`guest_name`: a guest, already admitted).
    pub fn new(facts: &Facts, config: &Config, guest_name: Option<String>) -> FastChat {
        FastChat::of_user(facts.user_id, config, guest_name)
    }

    /// [`FastChat::new`] for the user `user_id`.
    pub fn of_user(user_id: Uuid, config: &Config, guest_name: Option<String>) -> FastChat {
        let limits = &config.fastchat;
        FastChat {
            user_id,
            display_name: None,
            guest_name,
            names: name_policy(limits),
            max_chars: limits.max_message_chars,
            heartbeat: (
                Duration::from_secs(limits.ping_interval_secs),
                Duration::from_secs(limits.pong_timeout_secs),
            ),
        }
    }

    /// `fastchat.ping_interval_secs` and `fastchat.pong_timeout_secs`.
    pub fn heartbeat(&self) -> (Duration, Duration) {
        self.heartbeat
    }

    /// A guest is listed (and welcomed) as soon as it is registered.
    pub fn connect(&mut self) -> Vec<Request<Meta>> {
        self.guest_name
            .take()
            .map(|display_name| {
                Request::core(
                    Meta::GuestHello,
                    Rate::Free,
                    Command::EnterRoster {
                        display_name,
                        policy: self.names,
                        claimed: None,
                    },
                )
            })
            .into_iter()
            .collect()
    }

    pub fn decode_text(&mut self, text: &str) -> Option<Request<Meta>> {
        let envelope = match Envelope::parse(text) {
            Ok(envelope) => envelope,
            Err(error) => return Some(Request::invalid(Meta::Other, Rate::Free, error)),
        };
        let Envelope { kind, data } = envelope;
        Some(match kind.as_str() {
            HELLO => self.hello(&data),
            "PING" => Request::local(Meta::Ping, Rate::Free),
            // A client's receipt of a MSG (the document's flow shows one): nothing to do.
            "MSG_ACK" => return None,
            _ if self.display_name.is_none() => Request::invalid(
                Meta::Other,
                Rate::Free,
                Error::Forbidden("send HELLO first to establish your identity".to_owned()),
            ),
            "OPEN_CHAT" => {
                let target = match json::string(&data, "target_user_id") {
                    Ok(target) => target.to_owned(),
                    Err(e) => return Some(Request::invalid(Meta::Other, Rate::Free, field(e))),
                };
                // The client's idea of the name is not needed: the server knows it.
                if let Err(e) = json::opt_string(&data, "target_display_name") {
                    return Some(Request::invalid(Meta::Other, Rate::Free, field(e)));
                }
                Request::core(
                    Meta::OpenChat {
                        target: target.clone(),
                    },
                    Rate::Free,
                    Command::OpenConversation { target },
                )
            }
            "MSG" => self.message(&data),
            "TYPING" => match json::bool_or(&data, "is_typing", true) {
                Ok(is_typing) => Request::core(
                    Meta::Typing,
                    Rate::Typing,
                    Command::ConversationTyping { is_typing },
                ),
                Err(e) => Request::invalid(Meta::Typing, Rate::Typing, field(e)),
            },
            other => Request::invalid(
                Meta::Other,
                Rate::Free,
                Error::BadRequest(format!("unknown message type {other:?}")),
            ),
        })
    }

    pub fn decode_binary(&mut self) -> Option<Request<Meta>> {
        Some(Request::invalid(
            Meta::Other,
            Rate::Free,
            Error::BadRequest(
                "FastChat frames are JSON text; binary frames are not part of the protocol"
                    .to_owned(),
            ),
        ))
    }

    pub fn local(&mut self, meta: Meta, out: &mut Out) {
        if let Meta::Ping = meta {
            out.send(pong());
        }
    }

    pub fn reply(&mut self, meta: Meta, reply: Reply, out: &mut Out) {
        match (meta, reply) {
            // Listed: the HELLO_ACK; the roster (PRESENCE) follows, as the session writes a
            // turn's replies before it reads deliveries.
            (Meta::Hello | Meta::HelloMismatch | Meta::GuestHello, Reply::Listed(name)) => {
                out.send(frame(
                    "HELLO_ACK",
                    json!({"user_id": self.user_id, "status": "connected"}),
                ));
                self.display_name = Some(name);
            }
            (Meta::OpenChat { .. }, Reply::ConversationOpened(conversation)) => out.send(frame(
                "CHAT_OPENED",
                json!({
                    "chat_id": conversation.chat_id,
                    "participants": conversation.participants,
                    "target_user_id": conversation.peer_id,
                    "target_display_name": conversation.peer_name,
                }),
            )),
            (Meta::Msg { .. }, Reply::ConversationSent(message_id)) => out.send(frame(
                "MSG_ACK",
                json!({"message_id": message_id, "status": "delivered"}),
            )),
            _ => {}
        }
    }

    pub fn error(&mut self, meta: Meta, error: &Error, out: &mut Out) {
        match meta {
            Meta::HelloMismatch => {
                out.send(error_frame(error));
                out.close(
                    close::UNAUTHORIZED,
                    "HELLO user_id does not match the token",
                );
            }
            Meta::GuestHello => {
                out.send(error_frame(error));
                out.close(close::UNAUTHORIZED, "HELLO not accepted");
            }
            Meta::OpenChat { target } => {
                out.send(failure(error, json!({"target_user_id": target})));
            }
            // Over the rate, the MSG was not looked at: no details.
            Meta::Msg { details } if !matches!(error, Error::Throttled { .. }) => {
                out.send(failure(error, details));
            }
            _ => out.send(error_frame(error)),
        }
    }

    pub fn rate_limits(&self, config: &Config) -> RateLimits {
        let limits = &config.fastchat;
        let rate = |per_minute: u32, noun| RateLimit {
            bucket: Bucket::Gcra {
                per_minute,
                burst: per_minute,
            },
            noun,
            closes: true,
        };
        RateLimits {
            messages: rate(limits.messages_per_minute, "messages"),
            typing: rate(limits.typing_per_minute, "typing indicators"),
            joins: RateLimits::of_ws(config).joins,
            close_reason: "rate limit exceeded",
        }
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

    /// With a token, the token says who the connection is: a HELLO's `user_id` that is not the
    /// account's is answered with the account's (HELLO_ACK), unless it is another account's,
    /// which is UNAUTHORIZED and closes the connection (4401).
    fn hello(&mut self, data: &Value) -> Request<Meta> {
        if self.display_name.is_some() {
            return Request::invalid(
                Meta::Other,
                Rate::Free,
                Error::BadRequest("HELLO was already accepted on this connection".to_owned()),
            );
        }
        let hello = match Hello::of(data) {
            Ok(hello) => hello,
            Err(e) => return Request::invalid(Meta::Other, Rate::Free, field(e)),
        };
        let claimed = Uuid::parse_str(&hello.user_id).ok();
        let (meta, claimed) = match claimed {
            Some(id) if id == self.user_id => (Meta::Hello, None),
            other => (Meta::HelloMismatch, other),
        };
        Request::core(
            meta,
            Rate::Free,
            Command::EnterRoster {
                display_name: hello.display_name,
                policy: self.names,
                claimed,
            },
        )
    }

    /// A MSG: counted first, then read.
    fn message(&self, data: &Value) -> Request<Meta> {
        let fields = || -> Result<(String, String, Option<String>), FieldError> {
            let to = json::string(data, "to")?.to_owned();
            let content = json::string(data, "content")?.to_owned();
            let message_id = json::opt_id(data, "message_id")?;
            Ok((to, content, message_id))
        };
        match fields() {
            Ok((to, content, message_id)) => {
                let details = json!({"to": to, "message_id": message_id});
                Request::core(
                    Meta::Msg { details },
                    Rate::Message,
                    Command::ConversationSend {
                        to,
                        content,
                        message_id,
                        policy: ContentPolicy::plain(self.max_chars),
                    },
                )
            }
            Err(e) => Request::invalid(Meta::Other, Rate::Message, field(e)),
        }
    }
}

fn field(error: FieldError) -> Error {
    Error::BadRequest(match error {
        FieldError::Missing(name) => format!("missing field data.{name}"),
        FieldError::Wrong { name, expected } => format!("data.{name} must be {expected}"),
        FieldError::TooMany { name, max } => format!("data.{name} may list at most {max}"),
    })
}

/// A HELLO's claim.
struct Hello {
    user_id: String,
    display_name: String,
}

impl Hello {
    fn of(data: &Value) -> Result<Hello, FieldError> {
        Ok(Hello {
            user_id: json::string(data, "user_id")?.to_owned(),
            display_name: json::string(data, "display_name")?.to_owned(),
        })
    }
}

/// A client frame: `{"type": ..., "data": {...}}` (`data` may be left out when empty).
pub(crate) struct Envelope {
    pub(crate) kind: String,
    pub(crate) data: Value,
}

impl Envelope {
    pub(crate) fn parse(text: &str) -> Result<Envelope, Error> {
        let invalid = |message: String| Error::BadRequest(message);
        let mut map = json::object(text).map_err(|e| match e {
            Some(e) => invalid(format!("malformed JSON: {e}")),
            None => invalid("a frame must be a JSON object with \"type\" and \"data\"".to_owned()),
        })?;
        let kind = match map.remove("type") {
            Some(Value::String(kind)) => kind,
            _ => return Err(invalid("\"type\" must be a string".to_owned())),
        };
        let data = match map.remove("data") {
            None | Some(Value::Null) => json!({}),
            Some(data @ Value::Object(_)) => data,
            Some(_) => return Err(invalid("\"data\" must be an object".to_owned())),
        };
        Ok(Envelope { kind, data })
    }
}

/// FastChat as a connection's only dialect (a guest's); `/ws` runs it inside [`super::root`].
impl Dialect for FastChat {
    type Meta = Meta;

    fn new(facts: &Facts, _endpoint: &Endpoint, config: &Arc<Config>) -> Self {
        FastChat::new(facts, config, None)
    }

    fn name(&self) -> &'static str {
        "fastchat"
    }

    fn encoder(&self) -> Encoder {
        Encoder {
            slot: slots::FASTCHAT,
            encode,
        }
    }

    fn refusal(error: &Error) -> Option<Message> {
        Some(error_frame(error))
    }

    fn connect(&mut self, _facts: &Facts) -> Vec<Request<Meta>> {
        FastChat::connect(self)
    }

    fn decode_text(&mut self, text: &str) -> Option<Request<Meta>> {
        FastChat::decode_text(self, text)
    }

    fn decode_binary(&mut self, _data: Bytes) -> Option<Request<Meta>> {
        FastChat::decode_binary(self)
    }

    fn local(&mut self, meta: Meta, out: &mut Out) -> Option<Request<Meta>> {
        FastChat::local(self, meta, out);
        None
    }

    fn reply(&mut self, meta: Meta, reply: Reply, out: &mut Out) {
        FastChat::reply(self, meta, reply, out);
    }

    fn error(&mut self, meta: Meta, error: &Error, out: &mut Out) {
        FastChat::error(self, meta, error, out);
    }

    fn rate_limits(&self, config: &Config) -> RateLimits {
        FastChat::rate_limits(self, config)
    }

    /// FastChat has no server heartbeat frame: WebSocket pings.
    fn ping(&self) -> Option<Message> {
        None
    }

    /// FastChat has no expiry warning; the connection still closes (4401) when the token
    /// expires, and the client reconnects with a new one.
    fn token_expiring(&self, _expires_at: i64) -> Option<Message> {
        None
    }

    fn heartbeat(&self) -> Option<(Duration, Duration)> {
        Some(self.heartbeat)
    }

    fn wants(&self, event: &Event) -> bool {
        FastChat::wants(self, event)
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
    fn core_errors_map_to_the_document_codes() {
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
            Code::of(&Error::ConversationNotOpen(String::new())),
            Code::ChatNotOpened
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
