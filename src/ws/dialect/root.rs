//! The dialect at `/ws`: the native protocol (seed 004), or FastChat (seed 003) for a connection
//! whose first frame is a FastChat `HELLO`. The choice is made once, on that first frame, and
//! holds for the connection's lifetime; until then (and ever after, for a native connection) the
//! connection is native, so a client with a token gets the native welcome frame at connect
//! whichever protocol it then speaks. A guest (no token, `fastchat.guests`) is FastChat from the
//! start: its HELLO was read before it was registered (`session::run_ws`).
//!
//! The encoding slot follows the mode, so a connection that switched shares FastChat's
//! encodings, never the native ones.

use std::time::Duration;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use super::Dialect;
use super::fastchat::{self, FastChat};
use super::native::{self, Native};
use crate::error::Error;
use crate::events::Event;
use crate::ws::Endpoint;
use crate::ws::session::Ctx;

pub enum Root {
    /// The native protocol; `decided` once the client's first frame was not a HELLO.
    Native {
        decided: bool,
    },
    FastChat(Box<FastChat>),
}

impl Root {
    /// A guest admitted by its HELLO: FastChat from the start.
    pub fn guest(ctx: &Ctx, display_name: String) -> Root {
        Root::FastChat(Box::new(FastChat::new(ctx, Some(display_name))))
    }

    /// Settles the protocol on the first frame: a HELLO switches to FastChat.
    fn first_frame(&mut self, ctx: &Ctx, hello: bool) {
        if let Root::Native { decided } = self
            && !*decided
        {
            *decided = true;
            if hello {
                tracing::debug!(user = %ctx.principal.username, connection = %ctx.public_id, "FastChat HELLO: switching protocol");
                *self = Root::FastChat(Box::new(FastChat::new(ctx, None)));
            }
        }
    }
}

impl Dialect for Root {
    fn slot(&self) -> usize {
        match self {
            Root::Native { .. } => super::slots::NATIVE,
            Root::FastChat(_) => super::slots::FASTCHAT,
        }
    }

    fn encode(&self, event: &Event) -> Option<Message> {
        match self {
            Root::Native { .. } => native::encode(event),
            Root::FastChat(fastchat) => fastchat.encode(event),
        }
    }

    /// Refusals (before any frame) are the native protocol's, as they were before FastChat.
    fn refusal(error: &Error) -> Option<Message> {
        Native::refusal(error)
    }

    fn new(_ctx: &Ctx, _endpoint: &Endpoint) -> Self {
        Root::Native { decided: false }
    }

    async fn on_connect(&mut self, ctx: &mut Ctx) {
        match self {
            Root::Native { .. } => Native.on_connect(ctx).await,
            Root::FastChat(fastchat) => fastchat.on_connect(ctx).await,
        }
    }

    async fn on_text(&mut self, ctx: &mut Ctx, text: &str) {
        if matches!(self, Root::Native { decided: false }) {
            self.first_frame(ctx, fastchat::is_hello(text));
        }
        match self {
            Root::Native { .. } => Native.on_text(ctx, text).await,
            Root::FastChat(fastchat) => fastchat.on_text(ctx, text).await,
        }
    }

    async fn on_binary(&mut self, ctx: &mut Ctx, data: Bytes) {
        self.first_frame(ctx, false);
        match self {
            Root::Native { .. } => Native.on_binary(ctx, data).await,
            Root::FastChat(fastchat) => fastchat.on_binary(ctx),
        }
    }

    /// FastChat has no server heartbeat frame: WebSocket pings.
    fn ping(&self) -> Option<Message> {
        match self {
            Root::Native { .. } => Native.ping(),
            Root::FastChat(_) => None,
        }
    }

    /// FastChat has no expiry warning; the connection still closes (4401) when the token
    /// expires, and the client reconnects with a new one.
    fn token_expiring(&self, expires_at: i64) -> Option<Message> {
        match self {
            Root::Native { .. } => Native.token_expiring(expires_at),
            Root::FastChat(_) => None,
        }
    }

    fn heartbeat(&self) -> Option<(Duration, Duration)> {
        match self {
            Root::Native { .. } => None,
            Root::FastChat(fastchat) => Some(fastchat.heartbeat()),
        }
    }

    fn wants(&self, event: &Event) -> bool {
        match self {
            Root::Native { .. } => true,
            Root::FastChat(fastchat) => fastchat.wants(event),
        }
    }
}
