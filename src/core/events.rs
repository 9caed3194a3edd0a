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
}

#[derive(Debug, Clone)]
pub enum Event {
    /// A Broadcast on a topic (004).
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
    /// A direct (user-to-user) payload (004 DirectMessage).
    DirectMessage {
        from_user: String,
        from_user_id: Uuid,
        payload: Value,
        sent_at: i64,
        message_id: String,
    },
    Notification(Notification),
    Presence {
        user_id: Uuid,
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
    Typing {
        room: String,
        room_id: u64,
        user_id: Uuid,
        username: String,
        is_typing: bool,
    },
    Read {
        room: String,
        room_id: u64,
        user_id: Uuid,
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
    /// Someone joined or left a room.
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
    /// A binary frame relayed verbatim (004 binary protocol).
    Binary {
        frame: bytes::Bytes,
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
