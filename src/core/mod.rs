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
pub mod profiles;
pub mod rates;
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
    /// `ws.max_replay_bytes`: bytes (of stored messages) a Join replays.
    pub max_replay_bytes: usize,
    /// `ws.max_history`: messages one History request returns.
    pub max_history: usize,
    /// What an offline user's direct-message queue holds (`ws.max_queued_direct_*`).
    pub direct_queue: crate::store::QueueBounds,
    /// `ws.messages_per_minute` with `ws.message_burst`: the message rate of the HTTP API
    /// (the same bucket as the native protocol's).
    pub messages: rates::Bucket,
    /// `limits.room_creations_per_minute` with `limits.room_creation_burst`.
    pub room_creations: rates::Bucket,
    /// `limits.searches_per_minute` with `limits.search_burst`.
    pub searches: rates::Bucket,
    /// `limits.max_rooms_per_user`: rooms a user may own (admins exempt).
    pub max_rooms_per_user: usize,
    /// `limits.max_notifications_per_user`: notifications kept per inbox.
    pub max_notifications_per_user: usize,
    /// `limits.max_mentions_per_user`: mentions kept per user (the oldest go).
    pub max_mentions_per_user: usize,
    /// `limits.max_rate_buckets`: the rate registry's capacity.
    pub max_rate_buckets: usize,
    /// Guests at once: `fastchat.max_guests`, at most half of `ws.max_connections`.
    pub max_guests: usize,
    /// `fastchat.max_guests_per_ip`.
    pub max_guests_per_ip: usize,
    /// `server.max_uploads_per_user`: uploads (HTTP and Kibray) one user has in progress.
    pub max_uploads_per_user: usize,
    /// `server.unattached_file_ttl_secs`: how long a file no stored message lists is kept.
    pub unattached_file_ttl_secs: u64,
}

impl Limits {
    pub fn of(config: &Config) -> Limits {
        let ws = &config.ws;
        Limits {
            max_message_chars: ws.max_message_chars,
            max_joined_rooms: ws.max_joined_rooms,
            max_subscriptions: ws.max_subscriptions,
            max_replay: ws.max_replay,
            max_replay_bytes: ws.max_replay_bytes,
            max_history: ws.max_history,
            direct_queue: crate::store::QueueBounds {
                messages: ws.max_queued_direct_messages,
                bytes: ws.max_queued_direct_bytes,
                messages_per_sender: ws.max_queued_direct_messages_per_sender,
                bytes_per_sender: ws.max_queued_direct_bytes_per_sender,
            },
            messages: rates::Bucket::Gcra {
                per_minute: ws.messages_per_minute,
                burst: ws.message_burst,
            },
            room_creations: rates::Bucket::Gcra {
                per_minute: config.limits.room_creations_per_minute,
                burst: config.limits.room_creation_burst,
            },
            searches: rates::Bucket::Gcra {
                per_minute: config.limits.searches_per_minute,
                burst: config.limits.search_burst,
            },
            max_rooms_per_user: config.limits.max_rooms_per_user,
            max_notifications_per_user: config.limits.max_notifications_per_user,
            max_mentions_per_user: config.limits.max_mentions_per_user,
            max_rate_buckets: config.limits.max_rate_buckets,
            max_guests: config.fastchat.max_guests.min(ws.max_connections / 2),
            max_guests_per_ip: config.fastchat.max_guests_per_ip,
            max_uploads_per_user: config.server.max_uploads_per_user,
            unattached_file_ttl_secs: config.server.unattached_file_ttl_secs,
        }
    }
}
