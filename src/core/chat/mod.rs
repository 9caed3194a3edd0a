//! The chat service: rooms, messages, topics, presence, the inbox, and (in
//! `core::conversations`) one-to-one conversations. One type, [`Chat`], its methods spread over
//! one file per topic. Every edge reaches these rules through [`crate::core::Core`] or these
//! methods; none has a copy of them.

mod inbox;
mod mentions;
pub use mentions::{MAX_MENTION_PAGE, MAX_MENTIONS_PER_MESSAGE, MentionView, mention_tokens};
mod messages;
pub use messages::MAX_CLIENT_MSG_ID_BYTES;
mod presence;
mod rooms;
pub use rooms::{DEFAULT_ROOM_PAGE, MAX_ROOM_PAGE};
mod search;
pub use search::{
    DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT, MAX_SEARCH_ROOMS, Search, SearchHit, SearchResults,
};
mod topics;
mod uploads;
pub use topics::{QUEUE_PAGE_BYTES, QueuedDirect};
pub use uploads::Upload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use uuid::Uuid;

use super::Limits;
use super::rates::{RateRegistry, Subject};
use crate::error::Error;
use crate::events::{Event, RoomMessage};
use crate::hub::Broker;
use crate::metrics::Metrics;
use crate::principal::Principal;
use crate::store::{Message, Room, Store, Visibility};

/// Presence statuses a client may set.
pub const STATUSES: &[&str] = &["online", "away", "busy", "offline"];

/// What a Join returns: the room, the replayed history, and whether it is complete.
#[derive(Debug)]
pub struct JoinOutcome {
    pub room: Room,
    pub replay: Vec<Message>,
    /// True when every message after `since` was replayed (none missing to the replay cap or
    /// to retention).
    pub complete: bool,
    /// The `since` the client gave.
    pub since: Option<u64>,
    /// The store's epoch (sequence numbers are comparable only within one epoch).
    pub epoch: u64,
}

/// What a Send returns.
#[derive(Debug)]
pub struct SendOutcome {
    pub room: Room,
    pub message: Message,
    /// The client_msg_id was seen before; `message` is the original, nothing new was stored.
    pub duplicate: bool,
}

impl SendOutcome {
    /// `stored` once durable; `delivered` for a room that keeps nothing (it only relays).
    pub fn status(&self) -> &'static str {
        if self.room.persistent {
            "stored"
        } else {
            "delivered"
        }
    }
}

/// What happened to a direct message.
#[derive(Debug)]
pub enum DirectOutcome {
    /// Queued for these live connections (public ids).
    Delivered(Vec<String>),
    /// The user exists but is offline: stored, delivered at their next connection.
    Queued,
}

/// A room as listed to a user.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomSummary {
    pub id: u64,
    pub name: String,
    pub visibility: Visibility,
    pub owner: String,
    pub persistent: bool,
    pub retention_secs: u64,
    pub last_seq: u64,
    pub member: bool,
    /// Messages after the member's read cursor (0 for non-members).
    pub unread: u64,
    /// What people call the room (shown instead of the name); null when it has none.
    pub title: Option<String>,
    /// The room's topic line; null when it has none.
    pub topic: Option<String>,
    /// Of those, the ones that mention the member (see `chat::mentions`).
    pub mentions: u64,
}

/// A room with its owner's username.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomView {
    pub id: u64,
    pub name: String,
    pub visibility: Visibility,
    /// The owner's username (their id when the owner was removed).
    pub owner: String,
    pub persistent: bool,
    pub retention_secs: u64,
    pub last_seq: u64,
    pub created_at: i64,
    /// What people call the room (shown instead of the name); null when it has none.
    pub title: Option<String>,
    /// The room's topic line; null when it has none.
    pub topic: Option<String>,
}

/// A member of a room, with both of the account's ids and its presence now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberView {
    pub id: Uuid,
    /// The account's number (what the integer-id protocols show).
    pub user_id: u64,
    pub username: String,
    pub presence: String,
}

/// What creating a room takes.
#[derive(Debug, Clone)]
pub struct CreateRoom {
    pub name: String,
    pub visibility: Visibility,
    pub persistent: bool,
    pub retention_secs: u64,
}

/// What a notification takes.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub username: String,
    pub title: String,
    pub message: String,
    pub level: String,
    pub category: Option<String>,
    pub url: Option<String>,
    pub actions: Value,
}

#[derive(Clone)]
pub struct Chat {
    store: Store,
    broker: Arc<dyn Broker>,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// Status set with SetStatus, by user; absent means "online" while connected.
    statuses: Arc<Mutex<HashMap<Uuid, String>>>,
    /// Uploads in progress per user (`server.max_uploads_per_user`).
    uploads: Arc<uploads::Uploads>,
    /// Every user's rate-limit buckets, shared by all their connections and HTTP requests.
    rates: Arc<RateRegistry>,
    /// Guests connected now, in all and by client address (`fastchat.max_guests*`).
    guests: Arc<Mutex<crate::core::conversations::GuestCounts>>,
    /// Where webhook events go (see `crate::webhooks`).
    webhooks: Arc<crate::webhooks::Webhooks>,
}

impl Chat {
    pub fn new(
        store: Store,
        broker: Arc<dyn Broker>,
        limits: Limits,
        metrics: Arc<Metrics>,
        webhooks: Arc<crate::webhooks::Webhooks>,
    ) -> Chat {
        Chat {
            webhooks,
            uploads: Arc::new(uploads::Uploads::new(limits.max_uploads_per_user)),
            store,
            broker,
            limits,
            metrics,
            statuses: Arc::default(),
            rates: Arc::new(RateRegistry::new(limits.max_rate_buckets)),
            guests: Arc::default(),
        }
    }

    /// The rate-limit buckets of every user (see `core::rates`).
    pub fn rates(&self) -> &RateRegistry {
        &self.rates
    }

    /// Counts one message-rated HTTP request of `who` (a post, an upload) against the user's
    /// message bucket: the same bucket as the native protocol's messages (`ws.messages_per_minute`
    /// with `ws.message_burst`). Over it: `Throttled`.
    pub fn count_message(&self, who: &Principal) -> Result<(), Error> {
        self.rates
            .check(Subject::of(who, None), "messages", self.limits.messages)
    }

    pub(crate) fn guest_counts(&self) -> &Mutex<crate::core::conversations::GuestCounts> {
        &self.guests
    }

    pub(crate) fn guests_handle(&self) -> Arc<Mutex<crate::core::conversations::GuestCounts>> {
        self.guests.clone()
    }

    pub fn broker(&self) -> &dyn Broker {
        &*self.broker
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Delivers an event to the connections that joined the room.
    fn emit_room(&self, room: &Room, event: Event) -> usize {
        self.broker.publish_room(room.id, event, None)
    }

    /// The room event of a message: with its author's number, and the other member of a
    /// direct room (for encodings that name a direct message's recipient), so that no encoding
    /// needs a lookup.
    async fn room_message(
        &self,
        room: &Room,
        message: Message,
        author_number: u64,
    ) -> Result<RoomMessage, Error> {
        let direct_peer = if super::policy::is_direct(room) {
            self.direct_peer(room.id, message.author).await?
        } else {
            None
        };
        Ok(RoomMessage {
            room: room.name.clone(),
            message,
            author_number,
            direct_peer,
        })
    }

    /// The other member of a direct room in which `author` wrote; `None` for an author who is
    /// not a member (an admin).
    async fn direct_peer(&self, room_id: u64, author: Uuid) -> Result<Option<Uuid>, Error> {
        let members = self.store.room_member_ids(room_id).await?;
        if members.len() != 2 || !members.contains(&author) {
            return Ok(None);
        }
        Ok(members.into_iter().find(|member| *member != author))
    }
}

/// Message content: not blank, at most `max` characters.
pub(crate) fn check_content(content: &str, max: usize) -> Result<(), Error> {
    if content.trim().is_empty() {
        return Err(Error::BadRequest("message content is empty".to_owned()));
    }
    if content.chars().count() > max {
        return Err(Error::ContentTooLong { max });
    }
    Ok(())
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
