//! The dialect at `/ws`: the native protocol, or FastChat for a connection whose first frame is
//! a FastChat `HELLO`. The choice is made once, on that first frame, and holds for the
//! connection's lifetime; until then (and ever after, for a native connection) the connection
//! is native, so a client with a token gets the native welcome frame at connect whichever
//! protocol it then speaks. A guest (no token, `fastchat.guests`) is FastChat from the start:
//! its HELLO was read before it was registered (`session::run_ws`).
//!
//! The encoding slot follows the mode, so a connection that switched shares FastChat's
//! encodings, never the native ones.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use super::fastchat::{self, FastChat};
use super::native::{self, Native};
use super::{Dialect, Encoder, Facts, Out, RateLimits, Request};
use crate::config::Config;
use crate::core::command::Reply;
use crate::error::Error;
use crate::events::Event;
use crate::ws::Endpoint;

pub struct Root {
    mode: Mode,
    /// Who the connection is: a FastChat connection hides its own messages.
    user_id: uuid::Uuid,
    /// For FastChat's limits, should the connection switch.
    config: Arc<Config>,
}

enum Mode {
    /// The native protocol; `decided` once the client's first frame was not a HELLO.
    Native {
        native: Native,
        decided: bool,
    },
    FastChat(Box<FastChat>),
}

/// A request of either protocol.
pub enum Meta {
    Native(native::Meta),
    FastChat(fastchat::Meta),
}

fn native_request(request: Request<native::Meta>) -> Request<Meta> {
    Request {
        meta: Meta::Native(request.meta),
        rate: request.rate,
        step: request.step,
    }
}

fn fastchat_request(request: Request<fastchat::Meta>) -> Request<Meta> {
    Request {
        meta: Meta::FastChat(request.meta),
        rate: request.rate,
        step: request.step,
    }
}

impl Root {
    /// A guest admitted by its HELLO: FastChat from the start.
    pub fn guest(facts: &Facts, config: &Arc<Config>, display_name: String) -> Root {
        Root {
            mode: Mode::FastChat(Box::new(FastChat::new(facts, config, Some(display_name)))),
            user_id: facts.user_id,
            config: config.clone(),
        }
    }

    /// Settles the protocol on the first frame: a HELLO switches to FastChat.
    fn first_frame(&mut self, hello: bool) {
        if let Mode::Native { decided, .. } = &mut self.mode
            && !*decided
        {
            *decided = true;
            if hello {
                tracing::debug!(user_id = %self.user_id, "FastChat HELLO: switching protocol");
                self.mode = Mode::FastChat(Box::new(FastChat::of_user(
                    self.user_id,
                    &self.config,
                    None,
                )));
            }
        }
    }
}

impl Dialect for Root {
    type Meta = Meta;

    /// A connection at `/ws`: native until its first frame says otherwise.
    fn new(facts: &Facts, _endpoint: &Endpoint, config: &Arc<Config>) -> Self {
        Root {
            mode: Mode::Native {
                native: Native,
                decided: false,
            },
            user_id: facts.user_id,
            config: config.clone(),
        }
    }

    fn name(&self) -> &'static str {
        match &self.mode {
            Mode::Native { native, .. } => native.name(),
            Mode::FastChat(fastchat) => Dialect::name(&**fastchat),
        }
    }

    fn encoder(&self) -> Encoder {
        match &self.mode {
            Mode::Native { native, .. } => native.encoder(),
            Mode::FastChat(fastchat) => Dialect::encoder(&**fastchat),
        }
    }

    /// Refusals (before any frame) are the native protocol's, as they were before FastChat.
    fn refusal(error: &Error) -> Option<Message> {
        Native::refusal(error)
    }

    fn connect(&mut self, facts: &Facts) -> Vec<Request<Meta>> {
        match &mut self.mode {
            Mode::Native { native, .. } => native
                .connect(facts)
                .into_iter()
                .map(native_request)
                .collect(),
            Mode::FastChat(fastchat) => fastchat
                .connect()
                .into_iter()
                .map(fastchat_request)
                .collect(),
        }
    }

    /// A FastChat connection gets no queued direct messages (what is left stays queued).
    fn queued_page(&mut self, after: u64) -> Option<Request<Meta>> {
        match &mut self.mode {
            Mode::Native { native, .. } => native.queued_page(after).map(native_request),
            Mode::FastChat(_) => None,
        }
    }

    fn decode_text(&mut self, text: &str) -> Option<Request<Meta>> {
        if matches!(self.mode, Mode::Native { decided: false, .. }) {
            // FastChat's PING is answered, and the protocol is still to be decided.
            if fastchat::is_ping(text) {
                return Some(Request::local(
                    Meta::FastChat(fastchat::Meta::Ping),
                    super::Rate::Free,
                ));
            }
            self.first_frame(fastchat::is_hello(text));
        }
        match &mut self.mode {
            Mode::Native { native, .. } => native.decode_text(text).map(native_request),
            Mode::FastChat(fastchat) => fastchat.decode_text(text).map(fastchat_request),
        }
    }

    fn decode_binary(&mut self, data: Bytes) -> Option<Request<Meta>> {
        self.first_frame(false);
        match &mut self.mode {
            Mode::Native { native, .. } => native.decode_binary(data).map(native_request),
            Mode::FastChat(fastchat) => fastchat.decode_binary().map(fastchat_request),
        }
    }

    fn local(&mut self, meta: Meta, out: &mut Out) -> Option<Request<Meta>> {
        match (&mut self.mode, meta) {
            (Mode::Native { native, .. }, Meta::Native(meta)) => {
                native.local(meta, out).map(native_request)
            }
            (Mode::FastChat(fastchat), Meta::FastChat(meta)) => {
                fastchat.local(meta, out);
                None
            }
            (Mode::Native { .. }, Meta::FastChat(fastchat::Meta::Ping)) => {
                out.send(fastchat::pong());
                None
            }
            _ => None,
        }
    }

    fn reply(&mut self, meta: Meta, reply: Reply, out: &mut Out) {
        match (&mut self.mode, meta) {
            (Mode::Native { native, .. }, Meta::Native(meta)) => native.reply(meta, reply, out),
            (Mode::FastChat(fastchat), Meta::FastChat(meta)) => fastchat.reply(meta, reply, out),
            // Requests are answered in the turn that made them, before the next frame can
            // switch the protocol: these do not happen.
            (Mode::FastChat(_), Meta::Native(_)) | (Mode::Native { .. }, Meta::FastChat(_)) => {}
        }
    }

    fn error(&mut self, meta: Meta, error: &Error, out: &mut Out) {
        match (&mut self.mode, meta) {
            (Mode::Native { native, .. }, Meta::Native(meta)) => native.error(meta, error, out),
            (Mode::FastChat(fastchat), Meta::FastChat(meta)) => fastchat.error(meta, error, out),
            // As for replies: requests are answered in the turn that made them.
            (Mode::FastChat(_), Meta::Native(_)) | (Mode::Native { .. }, Meta::FastChat(_)) => {}
        }
    }

    fn rate_limits(&self, config: &Config) -> RateLimits {
        match &self.mode {
            Mode::Native { native, .. } => native.rate_limits(config),
            Mode::FastChat(fastchat) => fastchat.rate_limits(config),
        }
    }

    /// FastChat has no server heartbeat frame: WebSocket pings.
    fn ping(&self) -> Option<Message> {
        match &self.mode {
            Mode::Native { native, .. } => native.ping(),
            Mode::FastChat(_) => None,
        }
    }

    /// FastChat has no expiry warning; the connection still closes (4401) when the token
    /// expires, and the client reconnects with a new one.
    fn token_expiring(&self, expires_at: i64) -> Option<Message> {
        match &self.mode {
            Mode::Native { native, .. } => native.token_expiring(expires_at),
            Mode::FastChat(_) => None,
        }
    }

    fn enforces_token_expiry(&self) -> bool {
        matches!(self.mode, Mode::Native { .. })
    }

    fn heartbeat(&self) -> Option<(Duration, Duration)> {
        match &self.mode {
            Mode::Native { .. } => None,
            Mode::FastChat(fastchat) => Some(fastchat.heartbeat()),
        }
    }

    fn wants(&self, event: &Event) -> bool {
        match &self.mode {
            Mode::Native { .. } => true,
            Mode::FastChat(fastchat) => fastchat.wants(event),
        }
    }
}
