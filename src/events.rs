//! Typed events the core emits. Dialects encode them (once per dialect per event, shared by all
//! of that dialect's subscribers); the core never builds wire frames.

use serde_json::Value;
use uuid::Uuid;

use crate::store::{Message, Notification};

/// A room message as the core presents it.
#[derive(Debug, Clone)]
pub struct RoomMessage {
    pub room: String,
    pub message: Message,
    /// The author's number ([`crate::store::User::number`]), for protocols whose user ids are
    /// integers.
    pub author_number: u64,
    /// In a direct room, the other member (the recipient of a message the author wrote).
    pub direct_peer: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// A Broadcast on a topic (the native protocol's pub/sub).
    Broadcast {
        topic: String,
        payload: Value,
        sender: String,
        sent_at: i64,
        message_id: String,
    },
    /// A custom `X-` frame relayed on a topic, its type and data passed through.
    Custom {
        kind: String,
        topic: String,
        data: Value,
        sender: String,
    },
    /// A direct (user-to-user) payload (the native protocol's DirectMessage).
    DirectMessage {
        from_user: String,
        from_user_id: Uuid,
        /// JSON text, as the sender wrote it (see `store::QueuedDirectMessage::payload`).
        payload: Box<serde_json::value::RawValue>,
        sent_at: i64,
        message_id: String,
    },
    /// A notification for the user whose number is `user_number`.
    Notification {
        notification: Notification,
        user_number: u64,
    },
    Presence {
        user_id: Uuid,
        user_number: u64,
        username: String,
        status: String,
        last_seen: Option<i64>,
        metadata: Option<Value>,
    },
    /// A new room message.
    Message(RoomMessage),
    MessageEdited(RoomMessage),
    MessageDeleted {
        room: String,
        room_id: u64,
        seq: u64,
    },
    /// `user` added (or removed) the reaction `emoji` to message `seq`; `count` is how many
    /// have that reaction now.
    Reaction {
        room: String,
        room_id: u64,
        seq: u64,
        emoji: String,
        user: String,
        user_id: Uuid,
        added: bool,
        count: usize,
    },
    Typing {
        room: String,
        room_id: u64,
        user_id: Uuid,
        user_number: u64,
        username: String,
        is_typing: bool,
    },
    Read {
        room: String,
        room_id: u64,
        user_id: Uuid,
        user_number: u64,
        username: String,
        seq: u64,
    },
    /// A server-side publish into a room (POST /api/v1/publish): `kind` and `data` verbatim.
    Published {
        room: String,
        room_id: u64,
        kind: String,
        data: Value,
    },
    /// A user's first connection entered a room, or their last one left it (live presence in
    /// the room; see `Membership` for who belongs to it).
    RoomPresence {
        room: String,
        room_id: u64,
        user_id: Uuid,
        user_number: u64,
        username: String,
        entered: bool,
    },
    /// Someone became, or stopped being, a member of a room.
    Membership {
        room: String,
        room_id: u64,
        user_id: Uuid,
        username: String,
        joined: bool,
    },
    /// This connection was removed from a room (membership revoked).
    RoomClosed {
        room: String,
        room_id: u64,
        reason: String,
    },
    /// The room's title or topic changed (by `by`, its owner or an admin); both as they are
    /// now (`None`: none). The name (the room's id in every protocol) stays.
    RoomUpdated {
        room: String,
        room_id: u64,
        title: Option<String>,
        topic: Option<String>,
        by: String,
    },
    /// A binary frame of the native protocol, relayed: its kind, address (topic or user),
    /// sender and data.
    Binary {
        kind: BinaryKind,
        address: String,
        sender: String,
        data: bytes::Bytes,
    },
    /// Everyone in the live roster (one entry per user), sent when it changed and to a newcomer.
    Roster {
        users: Vec<RosterEntry>,
    },
    /// A one-to-one conversation event, for the connections that have the conversation open.
    Conversation(ConversationEvent),
}

/// The four kinds of binary frames of the native protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    Broadcast,
    DirectMessage,
    FileTransfer,
    StreamData,
}

/// A user (or guest) in the live roster: online in a dialect that lists who is online (FastChat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    pub user_id: Uuid,
    pub display_name: String,
}

/// What happens in a one-to-one conversation (see `core::conversations`) beyond its direct
/// room's own events: opening, and the live messages and typing of conversations no room keeps.
#[derive(Debug, Clone)]
pub enum ConversationEvent {
    /// `peer_id` opened the conversation with the receiving user.
    Opened {
        chat_id: String,
        /// The opener first.
        participants: [Uuid; 2],
        peer_id: Uuid,
        peer_name: String,
    },
    /// A message relayed live (not stored: a guest takes part).
    Message {
        chat_id: String,
        from: Uuid,
        to: Uuid,
        content: String,
        message_id: String,
        sent_at_ms: i64,
    },
    /// Typing in a conversation no room keeps.
    Typing {
        chat_id: String,
        user_id: Uuid,
        is_typing: bool,
    },
}

impl Event {
    /// The room sequence of a message event, used to drop live duplicates of replayed history.
    pub fn room_seq(&self) -> Option<(u64, u64)> {
        match self {
            Event::Message(m) => Some((m.message.room_id, m.message.seq)),
            _ => None,
        }
    }
}

/// Why a connection is asked to end. The core and auth say why; the WebSocket edge says it to
/// the client with the close code of its table (`ws::close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// Its session ended (logout, revocation, refresh-token reuse, a new password, an
    /// administrator's kick).
    SessionEnded(&'static str),
    /// Its account may no longer be here (disabled, removed).
    AccountClosed(&'static str),
    /// It fell a whole outbound queue behind.
    SlowConsumer,
    /// The server is stopping.
    ShuttingDown,
}

impl KickReason {
    /// What the client is told.
    pub fn text(self) -> &'static str {
        match self {
            KickReason::SessionEnded(text) | KickReason::AccountClosed(text) => text,
            KickReason::SlowConsumer => "slow consumer: outbound queue full",
            KickReason::ShuttingDown => "server shutting down",
        }
    }
}
