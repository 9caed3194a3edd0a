//! The native frames every answer is made of: the envelope, Status, Ack (a Send's typed),
//! and Error.

use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::super::Out;
use crate::core::chat::SendOutcome;
use crate::error::Error;

/// `{"type": kind, "data": data, "id": id}` (id only when the request had one).
pub(super) fn frame(kind: &str, data: Value, id: Option<&str>) -> Message {
    let mut map = Map::with_capacity(3);
    map.insert("type".to_owned(), Value::String(kind.to_owned()));
    map.insert("data".to_owned(), data);
    if let Some(id) = id {
        map.insert("id".to_owned(), Value::String(id.to_owned()));
    }
    super::super::json_text(&Value::Object(map))
}

/// The `Ack` of a Send. Serialized straight from its fields, not through a `Value`: it is the
/// reply to every durable Send. Fields in the order a `Value` object prints them (sorted), so the
/// frame is the same as every other frame's style.
pub(super) fn send_ack(outcome: &SendOutcome, id: Option<&str>) -> Message {
    #[derive(serde::Serialize)]
    struct Ack<'a> {
        client_msg_id: Option<&'a str>,
        duplicate: bool,
        message_id: &'a str,
        room: &'a str,
        room_id: u64,
        seq: u64,
        status: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        data: Ack<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        #[serde(rename = "type")]
        kind: &'static str,
    }
    let stored_id;
    let message_id = match id {
        Some(id) => id,
        None => {
            stored_id = format!("{}:{}", outcome.room.id, outcome.message.seq);
            &stored_id
        }
    };
    let envelope = Envelope {
        data: Ack {
            client_msg_id: outcome.message.client_msg_id.as_deref(),
            duplicate: outcome.duplicate,
            message_id,
            room: &outcome.room.name,
            room_id: outcome.room.id,
            seq: outcome.message.seq,
            status: outcome.status(),
        },
        id,
        kind: "Ack",
    };
    // Sized for the whole frame up front (the fixed part with both numbers at their longest is
    // under 200 bytes; names may grow when escaped): one allocation, no reallocation while
    // serializing nor to trim it after.
    let mut text = Vec::with_capacity(
        200 + 2
            * (message_id.len()
                + outcome.room.name.len()
                + id.map_or(0, str::len)
                + outcome.message.client_msg_id.as_deref().map_or(0, str::len)),
    );
    let encoded = serde_json::to_writer(&mut text, &envelope)
        .map_err(|e| e.to_string())
        .and_then(|()| String::from_utf8(text).map_err(|e| e.to_string()));
    match encoded {
        Ok(text) => Message::text(text),
        // Strings and numbers only: serializing cannot fail, and serde_json writes UTF-8.
        Err(e) => error_frame(
            &Error::Internal(format!("cannot encode Ack: {e}")),
            id,
            None,
        ),
    }
}

/// After a documented `Status` or `Error` reply to a request that carried an id, an `Ack` with
/// that id as well: the document's own example client waits for an `Ack` on every request it
/// sends with an id (Subscribe, DirectMessage), and would otherwise time out after 30 seconds.
pub(super) fn acknowledge(out: &mut Out, id: Option<&str>, status: &str) {
    if let Some(id) = id {
        out.send(frame(
            "Ack",
            json!({"message_id": id, "status": status}),
            Some(id),
        ));
    }
}

/// Ack data: `message_id` is the request's id, left out when the request had none.
pub(super) fn ack_data(id: Option<&str>, mut data: Value) -> Value {
    if let (Some(id), Some(map)) = (id, data.as_object_mut()) {
        map.insert("message_id".to_owned(), Value::String(id.to_owned()));
    }
    data
}

pub(super) fn status(status: &str, details: Value, id: Option<&str>) -> Message {
    frame("Status", json!({"status": status, "details": details}), id)
}

pub(crate) fn error_frame(error: &Error, id: Option<&str>, details: Option<Value>) -> Message {
    let mut data = json!({"code": error.ws_code(), "message": error.public_message()});
    if let (Some(details), Some(map)) = (details, data.as_object_mut()) {
        map.insert("details".to_owned(), details);
    }
    frame("Error", data, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    use crate::store::{Message as StoredMessage, Room, Visibility};

    fn outcome(persistent: bool, client_msg_id: Option<&str>) -> SendOutcome {
        SendOutcome {
            room: Room {
                id: 7,
                name: "lobby \"quoted\"".to_owned(),
                owner: Uuid::nil(),
                visibility: Visibility::Public,
                persistent,
                retention_secs: 0,
                created_at: 0,
                last_seq: 42,
                title: None,
                topic: None,
            },
            message: StoredMessage {
                room_id: 7,
                seq: 42,
                author: Uuid::nil(),
                author_name: "alice".to_owned(),
                author_avatar: None,
                content: "hi".to_owned(),
                created_at_ms: 0,
                edited_at_ms: None,
                deleted: false,
                reply_to: None,
                client_msg_id: client_msg_id.map(str::to_owned),
                attachments: Vec::new(),
                reactions: Default::default(),
                mentions: Vec::new(),
            },
            duplicate: client_msg_id.is_some(),
        }
    }

    /// The typed Ack prints exactly what the same Ack built as a `Value` prints.
    #[test]
    fn send_ack_matches_the_value_encoding() {
        for (persistent, client_msg_id, id) in [
            (true, None, None),
            (true, Some("c-1"), Some("req-9")),
            (false, None, Some("r")),
        ] {
            let outcome = outcome(persistent, client_msg_id);
            let stored_id = format!("{}:{}", outcome.room.id, outcome.message.seq);
            let expected = frame(
                "Ack",
                json!({
                    "message_id": id.unwrap_or(&stored_id),
                    "status": if persistent { "stored" } else { "delivered" },
                    "room": outcome.room.name,
                    "room_id": outcome.room.id,
                    "seq": outcome.message.seq,
                    "client_msg_id": outcome.message.client_msg_id,
                    "duplicate": outcome.duplicate,
                }),
                id,
            );
            assert_eq!(send_ack(&outcome, id), expected);
        }
    }
}
