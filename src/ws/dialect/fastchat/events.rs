//! The FastChat encoding of the core's events.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::core::policy::DM_PREFIX;
use crate::events::{ConversationEvent, Event};
use crate::timefmt::rfc3339;

/// The FastChat encoding of an event (the same for every FastChat connection).
pub fn encode(event: &Event) -> Option<Message> {
    match event {
        Event::Roster { users } => {
            let users: Vec<Value> = users
                .iter()
                .map(|u| json!({"user_id": u.user_id, "display_name": u.display_name, "online": true}))
                .collect();
            Some(frame("PRESENCE", json!({ "users": users })))
        }
        Event::Conversation(ConversationEvent::Opened {
            chat_id,
            participants,
            peer_id,
            peer_name,
        }) => Some(frame(
            "CHAT_OPENED",
            json!({
                "chat_id": chat_id,
                "participants": participants,
                "target_user_id": peer_id,
                "target_display_name": peer_name,
            }),
        )),
        Event::Conversation(ConversationEvent::Message {
            from,
            to,
            content,
            message_id,
            sent_at_ms,
            ..
        }) => Some(msg_frame(*from, *to, content, message_id, *sent_at_ms)),
        Event::Conversation(ConversationEvent::Typing {
            user_id, is_typing, ..
        }) => Some(typing_frame(*user_id, *is_typing)),
        Event::Message(m) if m.room.starts_with(DM_PREFIX) => {
            let message = &m.message;
            let to = m.direct_peer?;
            let message_id = message.client_msg_id.clone().unwrap_or_else(|| {
                super::super::message_uuid(message.room_id, message.seq).to_string()
            });
            Some(msg_frame(
                message.author,
                to,
                &message.content,
                &message_id,
                message.created_at_ms,
            ))
        }
        Event::Typing {
            room,
            user_id,
            is_typing,
            ..
        } if room.starts_with(DM_PREFIX) => Some(typing_frame(*user_id, *is_typing)),
        _ => None,
    }
}

/// The FastChat wording of a field error (the native protocol's).
pub(super) fn frame(kind: &str, data: Value) -> Message {
    super::super::json_text(&json!({"type": kind, "data": data}))
}

fn msg_frame(from: Uuid, to: Uuid, content: &str, message_id: &str, sent_at_ms: i64) -> Message {
    frame(
        "MSG",
        json!({
            "from": from,
            "to": to,
            "content": content,
            "message_id": message_id,
            "timestamp": rfc3339(sent_at_ms.div_euclid(1000)),
        }),
    )
}

fn typing_frame(user_id: Uuid, is_typing: bool) -> Message {
    frame(
        "TYPING",
        json!({"user_id": user_id, "is_typing": is_typing}),
    )
}
