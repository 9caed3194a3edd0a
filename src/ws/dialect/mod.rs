//! WebSocket dialects: codecs between one wire protocol and the core. A dialect decodes each
//! client frame into a [`Request`] (a core [`Command`], or protocol work of its own, or the
//! error of a malformed frame), encodes the core's [`Reply`] or [`Error`] into its frames, and
//! encodes events with a function of the event alone ([`Encoder`]), so that one encoding is
//! shared by every connection of the dialect. It holds no rule and calls neither the core nor
//! the store: the session (`ws::session`) runs the commands, counts the rates and writes the
//! frames.
//!
//! The protocols, by the documents they come from: native (the Real-time Communication
//! Service's API, at `/ws`), EduSphere (`/ws/chat/{host}/{room}/`), rooms (the project, channel
//! and task rooms of `/api/v1/ws/connect`), Kibray (`/ws/chat/{room}/`, `/ws/notifications/`,
//! `/ws/status/`) and FastChat (at `/ws`, after a first frame `HELLO`).

pub mod edusphere;
pub mod fastchat;
mod json;
pub mod kibray;
pub mod native;
pub mod rooms;
pub mod root;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::config::Config;
use crate::core::command::{Command, Reply};
use crate::error::Error;
use crate::events::Event;
use crate::principal::Role;
use crate::ws::Endpoint;

/// Cache slots of the dialects' encodings (see [`Encoder`]).
pub mod slots {
    pub const NATIVE: usize = 0;
    pub const EDUSPHERE: usize = 1;
    pub const ROOMS: usize = 2;
    pub const FASTCHAT: usize = 3;
    pub const KIBRAY: usize = 4;
    /// How many there are (the size of each delivery's encoding cache, `ws::fanout`).
    pub const COUNT: usize = 5;
}

/// How a dialect encodes events: a function of the event alone (the type leaves no room for
/// anything else), and the cache slot its encodings share. Every connection with the same slot
/// gets the same frames.
#[derive(Clone, Copy)]
pub struct Encoder {
    pub slot: usize,
    pub encode: fn(&Event) -> Option<Message>,
}

/// What a dialect says in one turn: frames to send, and possibly that the connection ends
/// after them.
#[derive(Default)]
pub struct Out {
    pub(crate) frames: Vec<Message>,
    pub(crate) close: Option<(u16, String)>,
}

impl Out {
    /// Queues a frame for this turn's write.
    pub fn send(&mut self, frame: Message) {
        self.frames.push(frame);
    }

    /// Ends the connection after this turn's frames, with a close frame; the first reason wins.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.close.is_none() {
            self.close = Some((code, reason.to_owned()));
        }
    }

    /// Whether the connection is to end after this turn.
    pub fn is_closing(&self) -> bool {
        self.close.is_some()
    }
}

/// Which rate a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// It does not count.
    Free,
    /// Messages and most requests.
    Message,
    /// Typing indicators.
    Typing,
    /// Joining a room (it replays history, and tells the room).
    Join,
}

/// What a decoded frame asks for.
#[derive(Debug)]
pub enum Step {
    /// A command for the core; its reply or error goes to [`Dialect::reply`] or
    /// [`Dialect::error`].
    Core(Command),
    /// Work of the protocol's own, done by [`Dialect::local`] once the rate allows it.
    Local,
    /// A frame that cannot be taken: the error goes to [`Dialect::error`].
    Invalid(Error),
}

/// A decoded client frame: what it asks, the rate it counts against, and what the dialect needs
/// to answer it (`meta`: its id, its kind, ...).
#[derive(Debug)]
pub struct Request<M> {
    pub meta: M,
    pub rate: Rate,
    pub step: Step,
}

impl<M> Request<M> {
    pub fn core(meta: M, rate: Rate, command: Command) -> Request<M> {
        Request {
            meta,
            rate,
            step: Step::Core(command),
        }
    }

    pub fn invalid(meta: M, rate: Rate, error: Error) -> Request<M> {
        Request {
            meta,
            rate,
            step: Step::Invalid(error),
        }
    }

    pub fn local(meta: M, rate: Rate) -> Request<M> {
        Request {
            meta,
            rate,
            step: Step::Local,
        }
    }

    /// The request of a decoding result: its command, or its error.
    pub fn of(meta: M, rate: Rate, decoded: Result<Command, Error>) -> Request<M> {
        Request {
            meta,
            rate,
            step: match decoded {
                Ok(command) => Step::Core(command),
                Err(error) => Step::Invalid(error),
            },
        }
    }
}

/// How one rate is limited (per user: see `core::rates`).
pub use crate::core::rates::Bucket;

/// The rates of a dialect: each with its bucket and what the client is told (the noun of
/// "N … per minute"; with the bucket, it names the user's bucket in the rate registry, so
/// dialects with the same numbers share it), and whether a client that keeps going a whole
/// minute's worth past the limit is closed (4429).
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub bucket: Bucket,
    pub noun: &'static str,
    pub closes: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub messages: RateLimit,
    pub typing: RateLimit,
    pub joins: RateLimit,
    /// The close reason when a client is closed for its rate.
    pub close_reason: &'static str,
}

impl RateLimits {
    /// The `[ws]` limits: `messages_per_minute` with `message_burst`, typing indicators
    /// (dropped over their limit, never a reason to close), and joins (`joins_per_minute`, a
    /// connection's `max_joined_rooms` at once; refused over it, never a reason to close).
    pub fn of_ws(config: &Config) -> RateLimits {
        let ws = &config.ws;
        RateLimits {
            messages: RateLimit {
                bucket: Bucket::Gcra {
                    per_minute: ws.messages_per_minute,
                    burst: ws.message_burst,
                },
                noun: "messages",
                closes: true,
            },
            typing: RateLimit {
                bucket: Bucket::Gcra {
                    per_minute: ws.typing_per_minute,
                    burst: ws.typing_per_minute.min(5),
                },
                noun: "typing indicators",
                closes: false,
            },
            joins: RateLimit {
                bucket: Bucket::Gcra {
                    per_minute: ws.joins_per_minute,
                    burst: u32::try_from(ws.max_joined_rooms).unwrap_or(u32::MAX),
                },
                noun: "joins",
                closes: false,
            },
            close_reason: "message rate limit exceeded",
        }
    }

    /// The `[ws]` limits with at least a whole minute's burst: for the protocols whose documents
    /// set no message rate (EduSphere, rooms), so that a client's offline queue flushed on open
    /// (the rooms document's own advice) gets through; the rate over a minute stays the same.
    pub fn of_ws_whole_minute(config: &Config) -> RateLimits {
        let mut limits = Self::of_ws(config);
        limits.messages.bucket = Bucket::Gcra {
            per_minute: config.ws.messages_per_minute,
            burst: config.ws.message_burst.max(config.ws.messages_per_minute),
        };
        limits
    }
}

/// What a connection is, as its dialect knows it.
#[derive(Debug, Clone)]
pub struct Facts {
    pub user_id: Uuid,
    pub username: String,
    pub role: Role,
    /// The connection id shown to clients.
    pub public_id: String,
}

/// One protocol, as a codec: see the module doc.
pub trait Dialect: Sized + Send + 'static {
    /// What the dialect keeps of a request to answer it.
    type Meta: Send + 'static;

    /// Per-connection protocol state, once the connection is authenticated and registered.
    fn new(facts: &Facts, endpoint: &Endpoint, config: &Arc<Config>) -> Self;

    /// The protocol's name, for metrics and `natter sessions list`.
    fn name(&self) -> &'static str;

    /// How this connection's events are encoded (asked again after every frame: a connection
    /// may change protocol once, `/ws` to FastChat).
    fn encoder(&self) -> Encoder;

    /// The frame explaining why a connection is refused before the close (bad token, limits).
    fn refusal(error: &Error) -> Option<Message>;

    /// What runs once the connection is registered (a welcome, entering its room, ...), in
    /// order; the first that closes the connection ends the list.
    fn connect(&mut self, facts: &Facts) -> Vec<Request<Self::Meta>>;

    /// A text frame from the client; `None`: nothing to do.
    fn decode_text(&mut self, text: &str) -> Option<Request<Self::Meta>>;

    /// A binary frame from the client.
    fn decode_binary(&mut self, data: Bytes) -> Option<Request<Self::Meta>>;

    /// The request for the next page of the direct messages queued while the user was
    /// offline, after queue id `after` (0: the first page), for a protocol that delivers them
    /// (native). The session asks for each page once the one before is written to the socket
    /// (and removed from the queue); `None`: the protocol has none.
    fn queued_page(&mut self, _after: u64) -> Option<Request<Self::Meta>> {
        None
    }

    /// Protocol work of a [`Step::Local`] request; may lead to a further request (counted
    /// against no rate).
    fn local(&mut self, _meta: Self::Meta, _out: &mut Out) -> Option<Request<Self::Meta>> {
        None
    }

    /// The frames of a command's reply.
    fn reply(&mut self, meta: Self::Meta, reply: Reply, out: &mut Out);

    /// The frames of a failed request.
    fn error(&mut self, meta: Self::Meta, error: &Error, out: &mut Out);

    /// The rates of this protocol.
    fn rate_limits(&self, config: &Config) -> RateLimits {
        RateLimits::of_ws(config)
    }

    /// The heartbeat frame the server sends every ping interval; `None` sends a WebSocket ping.
    fn ping(&self) -> Option<Message>;

    /// Told `ws.expiry_warning_secs` before the access token expires.
    fn token_expiring(&self, expires_at: i64) -> Option<Message>;

    /// Whether the connection ends when its access token expires (after
    /// [`Dialect::token_expiring`]): so in a protocol that can renew a token in-band. The
    /// others check the token at connect, as their documents' servers do; a revoked session or
    /// account still ends their connections at once.
    fn enforces_token_expiry(&self) -> bool {
        false
    }

    /// The server ping interval and pong timeout when the protocol documents its own; `None`:
    /// `ws.ping_interval_secs` and `ws.pong_timeout_secs`.
    fn heartbeat(&self) -> Option<(Duration, Duration)> {
        None
    }

    /// Whether this connection's client is shown `event` at all, before it is encoded: for
    /// what depends on the connection rather than the event (the shared encoding may not).
    fn wants(&self, _event: &Event) -> bool {
        true
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

/// Room ids below this fit a [`message_uuid`] (60 bits).
const UUID_ROOM_LIMIT: u64 = 1 << 60;
/// Sequence numbers below this fit a [`message_uuid`] (62 bits).
const UUID_SEQ_LIMIT: u64 = 1 << 62;

/// A room message as a UUID (for protocols whose message ids are UUIDs), so it maps back without
/// a lookup: an RFC 9562 version 8 UUID (version `8`, variant `10`, so UUID validators accept
/// it) with the room id in the 60 bits around the version and the sequence number in the low
/// 62. A room id of 2^60 or more, or a sequence number of 2^62 or more (neither is reached in
/// practice), is written as the two numbers, big-endian: the form natter used before, which
/// [`message_from_uuid`] still reads.
pub fn message_uuid(room_id: u64, seq: u64) -> uuid::Uuid {
    if room_id >= UUID_ROOM_LIMIT || seq >= UUID_SEQ_LIMIT {
        return uuid::Uuid::from_u64_pair(room_id, seq);
    }
    let high = ((room_id >> 12) << 16) | (0x8 << 12) | (room_id & 0xfff);
    let low = (0b10 << 62) | seq;
    uuid::Uuid::from_u64_pair(high, low)
}

/// The room id and sequence number of a [`message_uuid`], of either form (the old form's
/// sequence numbers never reach the 2^63 that the version 8 variant bits make the low half).
pub fn message_from_uuid(id: &uuid::Uuid) -> (u64, u64) {
    let (high, low) = id.as_u64_pair();
    if (high >> 12) & 0xf == 0x8 && low >> 62 == 0b10 {
        (
            ((high >> 16) << 12) | (high & 0xfff),
            low & (UUID_SEQ_LIMIT - 1),
        )
    } else {
        (high, low)
    }
}
