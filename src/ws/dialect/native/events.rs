//! The native encoding of the core's events: one frame per event, the same for every native
//! connection (shared through `ws::fanout`).

use bytes::{BufMut as _, Bytes, BytesMut};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::{BINARY_ADDRESSED, BINARY_HEADER, frame, status};
use crate::core::command::BinaryKind;
use crate::events::Event;
use crate::store::Message as StoredMessage;

/// The native encoding of an event (the same for every native connection).
pub fn encode(event: &Event) -> Option<Message> {
    Some(match event {
        Event::Broadcast {
            topic,
            payload,
            sender,
            sent_at,
            message_id,
        } => frame(
            "Broadcast",
            json!({
                "topic": topic,
                "payload": payload,
                "metadata": {"sent_at": sent_at, "message_id": message_id, "sender": sender},
            }),
            None,
        ),
        Event::Custom {
            kind,
            topic,
            data,
            sender,
        } => super::super::json_text(&json!({
            "type": kind,
            "data": data,
            "metadata": {"topic": topic, "sender": sender},
        })),
        Event::DirectMessage {
            from_user,
            payload,
            sent_at,
            message_id,
            ..
        } => direct_message_frame(from_user, payload, *sent_at, message_id),
        Event::Notification { notification, .. } => frame(
            "Notification",
            crate::wire::notification_json(notification),
            None,
        ),
        Event::Presence {
            user_id,
            username,
            status,
            last_seen,
            metadata,
            ..
        } => {
            let mut data = json!({
                "user_id": user_id,
                "username": username,
                "status": status,
                "last_seen": last_seen,
            });
            if let (Some(metadata), Some(map)) = (metadata, data.as_object_mut()) {
                map.insert("metadata".to_owned(), metadata.clone());
            }
            frame("Presence", data, None)
        }
        Event::Message(m) => message_frame(&m.room, &m.message),
        Event::MessageEdited(m) => frame(
            "MessageEdited",
            json!({
                "room": m.room,
                "room_id": m.message.room_id,
                "seq": m.message.seq,
                "content": m.message.content,
                "edited_at": m.message.edited_at_ms.map(|ms| ms / 1000),
                "mentions": m.message.mentions,
            }),
            None,
        ),
        Event::Reaction {
            room,
            room_id,
            seq,
            emoji,
            user,
            user_id,
            added,
            count,
        } => frame(
            "Reaction",
            json!({"room": room, "room_id": room_id, "seq": seq, "emoji": emoji, "user": user,
                   "user_id": user_id, "added": added, "count": count}),
            None,
        ),
        Event::RoomUpdated {
            room,
            room_id,
            title,
            topic,
            by,
        } => frame(
            "RoomUpdated",
            json!({"room": room, "room_id": room_id, "title": title, "topic": topic, "by": by}),
            None,
        ),
        Event::MessageDeleted { room, room_id, seq } => frame(
            "MessageDeleted",
            json!({"room": room, "room_id": room_id, "seq": seq}),
            None,
        ),
        Event::Typing {
            room,
            room_id,
            user_id,
            username,
            is_typing,
            ..
        } => frame(
            "Typing",
            json!({"room": room, "room_id": room_id, "user": username, "user_id": user_id, "is_typing": is_typing}),
            None,
        ),
        Event::Read {
            room,
            room_id,
            user_id,
            username,
            seq,
            ..
        } => frame(
            "Read",
            json!({"room": room, "room_id": room_id, "user": username, "user_id": user_id, "seq": seq}),
            None,
        ),
        Event::Published {
            room,
            room_id,
            kind,
            data,
        } => frame(
            "Event",
            json!({"room": room, "room_id": room_id, "event": kind, "data": data}),
            None,
        ),
        Event::Membership {
            room,
            room_id,
            user_id,
            username,
            joined,
        } => frame(
            "Membership",
            json!({
                "room": room,
                "room_id": room_id,
                "user": username,
                "user_id": user_id,
                "action": if *joined { "joined" } else { "left" },
            }),
            None,
        ),
        Event::RoomClosed {
            room,
            room_id,
            reason,
        } => status(
            "removed",
            json!({"room": room, "room_id": room_id, "reason": reason}),
            None,
        ),
        Event::Binary {
            kind,
            address,
            sender,
            data,
        } => Message::Binary(relayed_binary(*kind, address, sender, data)),
        // FastChat's roster and live conversations have no native frame; who is in a room
        // the native protocol tells with Membership (who belongs) and Presence (who is online).
        Event::Roster { .. } | Event::Conversation(_) | Event::RoomPresence { .. } => return None,
    })
}

/// A room message's frame, live or replayed.
pub(super) fn message_frame(room: &str, message: &StoredMessage) -> Message {
    frame("Message", crate::wire::message_json(room, message), None)
}

/// A relayed (addressed) binary frame: `[type | 0x80][length][address length][address]
/// [sender length][sender][data]`.
fn relayed_binary(kind: BinaryKind, address: &str, sender: &str, data: &Bytes) -> Bytes {
    let address = address.as_bytes();
    let sender = sender.as_bytes();
    let relayed_len = 1 + address.len() + 1 + sender.len() + data.len();
    let mut out = BytesMut::with_capacity(BINARY_HEADER + relayed_len);
    out.put_u8(super::binary::kind_byte(kind) | BINARY_ADDRESSED);
    out.put_u32(u32::try_from(relayed_len).unwrap_or(u32::MAX));
    out.put_u8(u8::try_from(address.len()).unwrap_or(u8::MAX));
    out.put_slice(address);
    out.put_u8(u8::try_from(sender.len()).unwrap_or(u8::MAX));
    out.put_slice(sender);
    out.put_slice(data);
    out.freeze()
}

/// A `DirectMessage` frame, its payload written as the JSON text it is kept as (never decoded
/// into a `Value`). Fields in sorted order, as every frame built from a `Value` has them.
fn direct_message_frame(
    from_user: &str,
    payload: &serde_json::value::RawValue,
    sent_at: i64,
    message_id: &str,
) -> Message {
    #[derive(serde::Serialize)]
    struct Metadata<'a> {
        message_id: &'a str,
        sent_at: i64,
    }
    #[derive(serde::Serialize)]
    struct Data<'a> {
        from_user: &'a str,
        metadata: Metadata<'a>,
        payload: &'a serde_json::value::RawValue,
    }
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        data: Data<'a>,
        #[serde(rename = "type")]
        kind: &'static str,
    }
    let envelope = Envelope {
        data: Data {
            from_user,
            metadata: Metadata {
                message_id,
                sent_at,
            },
            payload,
        },
        kind: "DirectMessage",
    };
    match serde_json::to_string(&envelope) {
        Ok(text) => Message::text(text),
        // Strings, a number and JSON text that was valid when stored: this cannot fail.
        Err(e) => Message::text(format!(
            "{{\"type\":\"Error\",\"data\":{{\"code\":500,\"message\":\"cannot encode a direct message: {e}\",\"details\":{{}}}}}}"
        )),
    }
}
