//! WebSocket dialects: codecs between one wire protocol and the core. A dialect decodes frames
//! into calls on the core (through [`Ctx`]) and encodes core events into its frames. It holds no
//! rules of its own: ACL, limits, storage and fan-out are the core's.

pub mod native;

use std::future::Future;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use crate::core::events::Event;
use crate::error::Error;
use crate::ws::session::Ctx;

pub trait Dialect: Sized + Send + 'static {
    /// This dialect's slot in `hub::Delivery`'s encoding cache (unique per dialect).
    const SLOT: usize;

    /// Encodes an event for this dialect's clients, or `None` if they do not see it. The result
    /// is shared by every connection of the dialect, so it may depend on the event only.
    fn encode(event: &Event) -> Option<Message>;

    /// The frame explaining why a connection is refused before the close (bad token, limits).
    fn refusal(error: &Error) -> Option<Message>;

    /// Per-connection protocol state, once the connection is authenticated and registered.
    fn new(ctx: &Ctx) -> Self;

    /// Runs once after registration (welcome frame, queued messages, ...).
    fn on_connect(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send;

    /// A text frame from the client.
    fn on_text(&mut self, ctx: &mut Ctx, text: &str) -> impl Future<Output = ()> + Send;

    /// A binary frame from the client.
    fn on_binary(&mut self, ctx: &mut Ctx, data: Bytes) -> impl Future<Output = ()> + Send;

    /// The heartbeat frame the server sends every `ws.ping_interval_secs`; `None` sends a
    /// WebSocket ping instead.
    fn ping(&self) -> Option<Message>;

    /// Told `ws.expiry_warning_secs` before the access token expires.
    fn token_expiring(&self, expires_at: i64) -> Option<Message>;
}
