//! The Kibray encoding of the core's events, and the document's message and notification
//! objects.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::text;
use crate::events::{Event, RoomMessage};
use crate::store::Notification;
use crate::timefmt::rfc3339;
use crate::wire::attachment_json;
use crate::ws::close;

/// The Kibray encoding of an event; `None` for events this protocol has no frame for.
pub fn encode(event: &Event) -> Option<Message> {
    let frame = match event {
        Event::Message(m) => json!({
            "type": "chat_message",
            "message": message_json(m),
        }),
        Event::MessageEdited(m) => json!({
            "type": "edit_message",
            "message_id": m.message.seq,
            "new_content": m.message.content,
            "channel_id": m.message.room_id,
        }),
        Event::MessageDeleted { room_id, seq, .. } => json!({
            "type": "delete_message",
            "message_id": seq,
            "channel_id": room_id,
        }),
        Event::Typing {
            room_id,
            user_number,
            username,
            is_typing,
            ..
        } => json!({
            "type": "typing",
            "channel_id": room_id,
            "is_typing": is_typing,
            "user_id": user_number,
            "username": username,
        }),
        Event::Read {
            room_id,
            user_number,
            username,
            seq,
            ..
        } => json!({
            "type": "read_receipt",
            "channel_id": room_id,
            "message_id": seq,
            "user_id": user_number,
            "username": username,
        }),
        Event::Notification { notification, .. } => json!({
            "type": "notification",
            "notification": notification_json(notification),
        }),
        Event::Presence {
            user_number,
            status,
            last_seen,
            ..
        } => json!({
            "type": "user_status",
            "user_id": user_number,
            "status": status,
            "last_seen": last_seen.map(rfc3339),
        }),
        Event::RoomClosed { reason, .. } => {
            return Some(Message::Close(Some(CloseFrame {
                code: CloseCode::from(close::FORBIDDEN),
                reason: reason.clone().into(),
            })));
        }
        _ => return None,
    };
    Some(text(&frame))
}

/// The document's message object.
fn message_json(m: &RoomMessage) -> Value {
    let message = &m.message;
    json!({
        "id": message.seq,
        "content": message.content,
        "author": {
            "id": m.author_number,
            "username": message.author_name,
            "avatar": message.author_avatar,
        },
        "timestamp": rfc3339(message.created_at_ms.div_euclid(1000)),
        "channel_id": message.room_id,
        "reply_to": message.reply_to,
        "attachments": message.attachments.iter().map(attachment_json).collect::<Vec<_>>(),
    })
}

/// The document's notification object.
fn notification_json(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "title": n.title,
        "message": n.message,
        "category": n.category,
        "url": n.url,
        "created_at": rfc3339(n.created_at),
    })
}
