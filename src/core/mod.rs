//! The core: every rule about users, rooms and messages lives here. [`Core`] is its front door:
//! [`Core::execute`] runs the typed [`command::Command`]s a connection sends, and the HTTP API
//! and the admin API call the same functions of [`chat::Chat`] and [`accounts::Accounts`]
//! directly. It knows nothing of JSON frames, HTTP or WebSocket close codes: it emits typed
//! events (`crate::events`) through the broker (`crate::hub`) and keeps its data in the store.
//!
//! May import: auth, hub, store, events, principal, error, config, metrics. Never an edge.

pub mod accounts;
pub mod chat;
pub mod command;
pub mod conversations;
pub mod policy;
#[cfg(test)]
mod tests;

use crate::config::Config;

/// The core's services, behind one handle.
#[derive(Clone)]
pub struct Core {
    pub chat: chat::Chat,
    pub accounts: accounts::Accounts,
}

/// The limits the core enforces, from the configuration (their names there are older than
/// this slice: most sit in `[ws]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `ws.max_message_chars`: message content, unless a protocol documents its own.
    pub max_message_chars: usize,
    /// `ws.max_joined_rooms`: rooms (and one-to-one conversations) per connection.
    pub max_joined_rooms: usize,
    /// `ws.max_subscriptions`: topics and patterns per connection.
    pub max_subscriptions: usize,
    /// `ws.max_replay`: messages a Join replays.
    pub max_replay: usize,
    /// `ws.max_history`: messages one History request returns.
    pub max_history: usize,
    /// `ws.max_queued_direct_messages`: direct messages kept for an offline user.
    pub max_queued_direct_messages: usize,
    /// `server.max_uploads_per_user`: uploads (HTTP and Kibray) one user has in progress.
    pub max_uploads_per_user: usize,
    /// `server.unattached_file_ttl_secs`: how long a file no stored message lists is kept.
    pub unattached_file_ttl_secs: u64,
}

impl Limits {
    pub fn of(config: &Config) -> Limits {
        Limits {
            max_message_chars: config.ws.max_message_chars,
            max_joined_rooms: config.ws.max_joined_rooms,
            max_subscriptions: config.ws.max_subscriptions,
            max_replay: config.ws.max_replay,
            max_history: config.ws.max_history,
            max_queued_direct_messages: config.ws.max_queued_direct_messages,
            max_uploads_per_user: config.server.max_uploads_per_user,
            unattached_file_ttl_secs: config.server.unattached_file_ttl_secs,
        }
    }
}
