//! The native protocol at `/ws`: seed 004's envelope `{"type","data","id"?,"timestamp"?}` with its
//! pub/sub, direct messages, notifications, presence and binary frames, plus persistent chat
//! rooms in the same style. `man/natter-protocol.7` is the reference for every frame.
//!
//! Replies to a request carry the request's `id` (as a string) in the envelope.

use bytes::{BufMut as _, Bytes, BytesMut};
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::Dialect;
use crate::core::chat::{DirectOutcome, SendOutcome};
use crate::error::Error;
use crate::events::{Event, RoomMessage};
use crate::sha256::Sha256;
use crate::store::now_secs;
use crate::ws::Endpoint;
use crate::ws::session::Ctx;

/// `protocol_version` in the welcome frame.
pub const PROTOCOL_VERSION: &str = "1.0";
/// `features` in the welcome frame.
pub const FEATURES: &[&str] = &[
    "broadcast",
    "direct_message",
    "presence",
    "history",
    "rooms",
    "notifications",
    "binary",
];

/// Binary frame types (first byte).
const BINARY_BROADCAST: u8 = 0x01;
const BINARY_DIRECT: u8 = 0x02;
const BINARY_FILE: u8 = 0x03;
const BINARY_STREAM: u8 = 0x04;
/// Binary header: 1 type byte + 4 length bytes.
const BINARY_HEADER: usize = 5;

pub struct Native;

impl Dialect for Native {
    fn slot(&self) -> usize {
        super::slots::NATIVE
    }

    fn encode(&self, event: &Event) -> Option<Message> {
        encode(event)
    }

    fn refusal(error: &Error) -> Option<Message> {
        Some(error_frame(error, None, None))
    }

    fn new(_ctx: &Ctx, _endpoint: &Endpoint) -> Self {
        Native
    }

    async fn on_connect(&mut self, ctx: &mut Ctx) {
        let welcome = status(
            "connected",
            json!({
                "connection_id": ctx.public_id,
                "server_time": now_secs(),
                "protocol_version": PROTOCOL_VERSION,
                "features": FEATURES,
                "epoch": ctx.state.store.epoch(),
                "user": {
                    "id": ctx.principal.user_id,
                    "username": ctx.principal.username,
                    "role": ctx.principal.role.as_str(),
                },
            }),
            None,
        );
        ctx.send(welcome);
        match ctx
            .state
            .chat
            .take_queued_direct_messages(&ctx.principal)
            .await
        {
            Ok(events) => {
                for event in &events {
                    if let Some(frame) = encode(event) {
                        ctx.send(frame);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read queued direct messages"),
        }
    }

    async fn on_text(&mut self, ctx: &mut Ctx, text: &str) {
        let request = match Request::parse(text) {
            Ok(request) => request,
            Err((error, id)) => {
                ctx.send(error_frame(&error, id.as_deref(), None));
                return;
            }
        };
        let id = request.id.clone();
        if let Err(error) = handle(ctx, request).await {
            let details = id.as_ref().map(|id| json!({"message_id": id}));
            ctx.send(error_frame(&error, id.as_deref(), details));
        }
    }

    async fn on_binary(&mut self, ctx: &mut Ctx, data: Bytes) {
        if let Err(error) = handle_binary(ctx, data) {
            ctx.send(error_frame(&error, None, None));
        }
    }

    fn ping(&self) -> Option<Message> {
        Some(frame("Ping", json!({"timestamp": now_secs()}), None))
    }

    fn token_expiring(&self, expires_at: i64) -> Option<Message> {
        Some(frame(
            "AuthStatus",
            json!({"status": "token_expiring", "expires_at": expires_at, "refresh_required": true}),
            None,
        ))
    }
}

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
        } => text(&json!({
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
        } => frame(
            "DirectMessage",
            json!({
                "from_user": from_user,
                "payload": payload,
                "metadata": {"sent_at": sent_at, "message_id": message_id},
            }),
            None,
        ),
        Event::Notification(n) => frame("Notification", crate::wire::notification_json(n), None),
        Event::Presence {
            user_id,
            username,
            status,
            last_seen,
            metadata,
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
        Event::Message(m) => frame("Message", message_json(m), None),
        Event::MessageEdited(m) => frame(
            "MessageEdited",
            json!({
                "room": m.room,
                "room_id": m.message.room_id,
                "seq": m.message.seq,
                "content": m.message.content,
                "edited_at": m.message.edited_at_ms.map(|ms| ms / 1000),
            }),
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
        Event::Binary { frame } => Message::Binary(frame.clone()),
        // FastChat's roster and live conversations have no native frame.
        Event::Roster { .. } | Event::Conversation(_) => return None,
    })
}

/// A parsed client frame.
pub(crate) struct Request {
    pub(crate) kind: String,
    pub(crate) data: Value,
    pub(crate) id: Option<String>,
}

impl Request {
    /// Parses the envelope. On failure returns the error and, when it could be read, the id.
    pub(crate) fn parse(text: &str) -> Result<Request, (Error, Option<String>)> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| (Error::BadRequest(format!("malformed JSON: {e}")), None))?;
        let Value::Object(mut map) = value else {
            return Err((
                Error::BadRequest("a message must be a JSON object with a \"type\"".to_owned()),
                None,
            ));
        };
        let id = match map.remove("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() <= 128 => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err((
                    Error::BadRequest("\"id\" must be a string of at most 128 bytes".to_owned()),
                    None,
                ));
            }
        };
        let kind = match map.remove("type") {
            Some(Value::String(kind)) if !kind.is_empty() && kind.len() <= 64 => kind,
            Some(Value::String(_)) => {
                return Err((
                    Error::BadRequest("\"type\" must be 1 to 64 bytes".to_owned()),
                    id,
                ));
            }
            Some(_) => {
                return Err((
                    Error::BadRequest("\"type\" must be a string".to_owned()),
                    id,
                ));
            }
            None => return Err((Error::BadRequest("missing field \"type\"".to_owned()), id)),
        };
        if let Some(timestamp) = map.get("timestamp")
            && !(timestamp.is_number() || timestamp.is_null())
        {
            return Err((
                Error::BadRequest("\"timestamp\" must be a number".to_owned()),
                id,
            ));
        }
        let data = map.remove("data").unwrap_or(Value::Null);
        Ok(Request { kind, data, id })
    }
}

async fn handle(ctx: &mut Ctx, request: Request) -> Result<(), Error> {
    let Request { kind, data, id } = request;
    let id = id.as_deref();
    let chat = ctx.state.chat.clone();
    match kind.as_str() {
        "Ping" => {
            let timestamp = match data.get("timestamp") {
                Some(t) if t.is_number() => t.clone(),
                _ => json!(now_secs()),
            };
            ctx.send(frame("Pong", json!({"timestamp": timestamp}), id));
        }
        "Pong" => {}
        "Subscribe" => {
            let topics = string_list(&data, "topics")?;
            let active = chat.subscribe(&ctx.principal, ctx.conn, &topics)?;
            ctx.send(status(
                "subscribed",
                json!({"topics": topics, "active_subscriptions": active}),
                id,
            ));
            acknowledge(ctx, id, "subscribed");
        }
        "Unsubscribe" => {
            let topics = string_list(&data, "topics")?;
            let active = chat.unsubscribe(ctx.conn, &topics);
            ctx.send(status(
                "unsubscribed",
                json!({"topics": topics, "active_subscriptions": active}),
                id,
            ));
            acknowledge(ctx, id, "unsubscribed");
        }
        "Broadcast" => {
            ctx.check_rate()?;
            let topic = str_field(&data, "topic")?;
            let payload = data.get("payload").cloned().unwrap_or(Value::Null);
            let delivery_id = format!("broadcast_{}", Uuid::new_v4().simple());
            let recipients = chat.broadcast(
                &ctx.principal,
                Some(ctx.conn),
                topic,
                payload,
                delivery_id.clone(),
            )?;
            ctx.send(frame(
                "Ack",
                json!({
                    "message_id": id.unwrap_or(&delivery_id),
                    "status": "delivered",
                    "recipients": recipients,
                }),
                id,
            ));
        }
        "DirectMessage" => {
            ctx.check_rate()?;
            let target = str_field(&data, "target_user")?;
            let payload = data.get("payload").cloned().unwrap_or(Value::Null);
            let message_id =
                id.map_or_else(|| format!("dm_{}", Uuid::new_v4().simple()), str::to_owned);
            match chat
                .direct_message(&ctx.principal, target, payload, message_id.clone())
                .await
            {
                Ok(DirectOutcome::Delivered(connections)) => ctx.send(frame(
                    "Ack",
                    json!({"message_id": message_id, "status": "delivered", "delivered_to": connections}),
                    id,
                )),
                Ok(DirectOutcome::Queued) => {
                    ctx.send(error_frame(
                        &Error::NotFound(format!("User {target} not found or not connected")),
                        id,
                        Some(json!({"message_id": message_id, "queued": true})),
                    ));
                    acknowledge(ctx, id, "queued");
                }
                Err(Error::NotFound(message)) => ctx.send(error_frame(
                    &Error::NotFound(message),
                    id,
                    Some(json!({"message_id": message_id, "queued": false})),
                )),
                Err(other) => return Err(other),
            }
        }
        "Authenticate" => {
            let token = str_field(&data, "token")?;
            let principal = ctx.state.auth.authenticate_async(token).await?;
            ctx.renew(principal)?;
            ctx.send(status(
                "authenticated",
                json!({"expires_at": ctx.principal.expires_at}),
                id,
            ));
        }
        "Join" => {
            let room = str_field(&data, "room")?;
            let since = opt_u64(&data, "since")?;
            let outcome = chat.join(&ctx.principal, ctx.conn, room, since).await?;
            let replayed = outcome.replay.len();
            for message in outcome.replay {
                let seq = message.seq;
                let event = Event::Message(RoomMessage {
                    room: outcome.room.name.clone(),
                    message,
                });
                if let Some(frame) = encode(&event) {
                    ctx.send(frame);
                }
                ctx.note_replayed(outcome.room.id, seq);
            }
            ctx.send(status(
                "joined",
                json!({
                    "room": outcome.room.name,
                    "room_id": outcome.room.id,
                    "last_seq": outcome.room.last_seq,
                    "since": since,
                    "replayed": replayed,
                    "complete": outcome.complete,
                    "epoch": ctx.state.store.epoch(),
                }),
                id,
            ));
        }
        "Leave" => {
            let room = str_field(&data, "room")?;
            let room = chat.leave(&ctx.principal, ctx.conn, room).await?;
            ctx.send(status(
                "left",
                json!({"room": room.name, "room_id": room.id}),
                id,
            ));
        }
        "Send" => {
            ctx.check_rate()?;
            let room = str_field(&data, "room")?;
            let content = str_field(&data, "content")?.to_owned();
            let reply_to = opt_u64(&data, "reply_to")?;
            let client_msg_id = opt_str(&data, "client_msg_id")?.map(str::to_owned);
            let outcome = chat
                .send(&ctx.principal, room, content, reply_to, client_msg_id)
                .await?;
            ctx.send(send_ack(&outcome, id));
        }
        "Edit" => {
            ctx.check_rate()?;
            let room = str_field(&data, "room")?;
            let seq = u64_field(&data, "seq")?;
            let content = str_field(&data, "content")?.to_owned();
            let (room, message) = chat.edit(&ctx.principal, room, seq, content).await?;
            ctx.send(frame(
                "Ack",
                ack_data(id, json!({"status": "edited", "room": room.name, "room_id": room.id, "seq": message.seq})),
                id,
            ));
        }
        "Delete" => {
            ctx.check_rate()?;
            let room = str_field(&data, "room")?;
            let seq = u64_field(&data, "seq")?;
            let room = chat.delete(&ctx.principal, room, seq).await?;
            ctx.send(frame(
                "Ack",
                ack_data(
                    id,
                    json!({"status": "deleted", "room": room.name, "room_id": room.id, "seq": seq}),
                ),
                id,
            ));
        }
        "History" => {
            ctx.check_rate()?;
            let room = str_field(&data, "room")?;
            let before = opt_u64(&data, "before")?;
            let after = opt_u64(&data, "after")?;
            let limit = opt_u64(&data, "limit")?.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
            let (room, messages, has_more) = chat
                .history(&ctx.principal, room, before, after, limit)
                .await?;
            let messages: Vec<Value> = messages
                .into_iter()
                .map(|message| {
                    message_json(&RoomMessage {
                        room: room.name.clone(),
                        message,
                    })
                })
                .collect();
            ctx.send(frame(
                "History",
                json!({"room": room.name, "room_id": room.id, "last_seq": room.last_seq, "messages": messages, "has_more": has_more}),
                id,
            ));
        }
        "Typing" => {
            let room = str_field(&data, "room")?;
            let is_typing = match data.get("is_typing") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(Error::BadRequest(
                        "data.is_typing must be a boolean".to_owned(),
                    ));
                }
            };
            if ctx.typing_allowed() {
                chat.typing(&ctx.principal, ctx.conn, room, is_typing)
                    .await?;
            }
        }
        "Read" => {
            ctx.check_rate()?;
            let room = str_field(&data, "room")?;
            let seq = u64_field(&data, "seq")?;
            let (room, cursor) = chat.read(&ctx.principal, room, seq).await?;
            ctx.send(frame(
                "Ack",
                ack_data(
                    id,
                    json!({"status": "read", "room": room.name, "room_id": room.id, "seq": cursor}),
                ),
                id,
            ));
        }
        "SetStatus" => {
            ctx.check_rate()?;
            let new_status = str_field(&data, "status")?;
            let metadata = match data.get("metadata") {
                None | Some(Value::Null) => None,
                Some(m @ Value::Object(_)) => Some(m.clone()),
                Some(_) => {
                    return Err(Error::BadRequest(
                        "data.metadata must be an object".to_owned(),
                    ));
                }
            };
            chat.set_status(&ctx.principal, new_status, metadata)
                .await?;
            ctx.send(frame(
                "Ack",
                ack_data(id, json!({"status": "ok", "presence": new_status})),
                id,
            ));
        }
        custom if custom.starts_with("X-") => {
            ctx.check_rate()?;
            match data.get("topic") {
                Some(Value::String(topic)) => {
                    let recipients = chat.relay_custom(
                        &ctx.principal,
                        Some(ctx.conn),
                        custom,
                        &topic.clone(),
                        data,
                    )?;
                    ctx.send(frame(
                        "Ack",
                        ack_data(id, json!({"status": "delivered", "recipients": recipients})),
                        id,
                    ));
                }
                Some(_) => {
                    return Err(Error::BadRequest(
                        "data.topic of a custom message must be a string".to_owned(),
                    ));
                }
                None => ctx.send(frame("Ack", ack_data(id, json!({"status": "ignored"})), id)),
            }
        }
        unknown => {
            return Err(Error::BadRequest(format!(
                "unknown message type {unknown:?}"
            )));
        }
    }
    Ok(())
}

/// `[type: u8][length: u32 BE][payload]`, payload `[address length: u8][address][data]`;
/// relayed as `[type][length][address length][address][sender length][sender][data]`.
fn handle_binary(ctx: &mut Ctx, frame: Bytes) -> Result<(), Error> {
    let (kind, kind_name, payload) = binary_header(&frame)?;
    // Counted once the frame is known to be one of ours, before its payload is looked at.
    ctx.check_rate()?;
    let (address, data) = binary_address(&payload)?;
    let address_len = address.len();
    let sender = ctx.principal.username.as_bytes();
    let relayed_len = 1 + address_len + 1 + sender.len() + data.len();
    let mut out = BytesMut::with_capacity(BINARY_HEADER + relayed_len);
    out.put_u8(kind);
    out.put_u32(
        u32::try_from(relayed_len)
            .map_err(|_| Error::BadRequest("binary frame too large".to_owned()))?,
    );
    out.put_u8(u8::try_from(address_len).unwrap_or(u8::MAX));
    out.put_slice(address.as_bytes());
    out.put_u8(u8::try_from(sender.len()).unwrap_or(u8::MAX));
    out.put_slice(sender);
    out.put_slice(&data);
    let out = out.freeze();
    let chat = ctx.state.chat.clone();
    let recipients = match kind {
        BINARY_BROADCAST | BINARY_STREAM => {
            chat.binary_to_topic(&ctx.principal, ctx.conn, &address, out)?
        }
        _ => chat.binary_to_user(&address, out)?.len(),
    };
    let checksum = Sha256::digest(&payload);
    let hex: String = checksum.iter().map(|b| format!("{b:02x}")).collect();
    ctx.send(status(
        "binary_received",
        json!({
            "size": payload.len(),
            "type": kind_name,
            "checksum": format!("sha256:{hex}"),
            "recipients": recipients,
        }),
        None,
    ));
    Ok(())
}

/// A binary frame's header: its type byte, that type's name, and the payload, whose length
/// must be the one the header declares.
pub(crate) fn binary_header(frame: &Bytes) -> Result<(u8, &'static str, Bytes), Error> {
    if frame.len() < BINARY_HEADER {
        return Err(Error::BadRequest(format!(
            "binary frame of {} bytes is shorter than its 5-byte header",
            frame.len()
        )));
    }
    let kind = frame[0];
    let declared = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
    let payload = frame.slice(BINARY_HEADER..);
    if usize::try_from(declared).ok() != Some(payload.len()) {
        return Err(Error::BadRequest(format!(
            "binary frame length field says {declared} bytes but the payload has {}",
            payload.len()
        )));
    }
    let kind_name = match kind {
        BINARY_BROADCAST => "broadcast",
        BINARY_DIRECT => "direct_message",
        BINARY_FILE => "file_transfer",
        BINARY_STREAM => "stream_data",
        other => {
            return Err(Error::BadRequest(format!(
                "unknown binary message type 0x{other:02x} (0x01 to 0x04 are defined)"
            )));
        }
    };
    Ok((kind, kind_name, payload))
}

/// A binary payload's address (1 to 255 bytes of UTF-8 after its length byte) and the data
/// after it.
pub(crate) fn binary_address(payload: &Bytes) -> Result<(String, Bytes), Error> {
    let address_len = usize::from(*payload.first().ok_or_else(|| {
        Error::BadRequest("binary payload must start with an address length byte".to_owned())
    })?);
    let address = payload
        .get(1..1 + address_len)
        .and_then(|a| std::str::from_utf8(a).ok())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            Error::BadRequest("binary payload address is missing or not UTF-8".to_owned())
        })?
        .to_owned();
    Ok((address, payload.slice(1 + address_len..)))
}

/// The JSON of a room message (the same as the HTTP API's).
fn message_json(m: &RoomMessage) -> Value {
    crate::wire::message_json(&m.room, &m.message)
}

fn text(value: &Value) -> Message {
    super::json_text(value)
}

/// `{"type": kind, "data": data, "id": id}` (id only when the request had one).
fn frame(kind: &str, data: Value, id: Option<&str>) -> Message {
    let mut map = Map::with_capacity(3);
    map.insert("type".to_owned(), Value::String(kind.to_owned()));
    map.insert("data".to_owned(), data);
    if let Some(id) = id {
        map.insert("id".to_owned(), Value::String(id.to_owned()));
    }
    text(&Value::Object(map))
}

/// The `Ack` of a Send. Serialized straight from its fields, not through a `Value`: it is the
/// reply to every durable Send. Fields in the order a `Value` object prints them (sorted), so the
/// frame is the same as every other frame's style.
fn send_ack(outcome: &SendOutcome, id: Option<&str>) -> Message {
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
            status: if outcome.room.persistent {
                "stored"
            } else {
                "delivered"
            },
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
/// that id as well: seed 004's own example client waits for an `Ack` on every request it sends
/// with an id (Subscribe, DirectMessage), and would otherwise time out after 30 seconds.
fn acknowledge(ctx: &mut Ctx, id: Option<&str>, status: &str) {
    if let Some(id) = id {
        ctx.send(frame(
            "Ack",
            json!({"message_id": id, "status": status}),
            Some(id),
        ));
    }
}

/// Ack data: `message_id` is the request's id, left out when the request had none.
fn ack_data(id: Option<&str>, mut data: Value) -> Value {
    if let (Some(id), Some(map)) = (id, data.as_object_mut()) {
        map.insert("message_id".to_owned(), Value::String(id.to_owned()));
    }
    data
}

fn status(status: &str, details: Value, id: Option<&str>) -> Message {
    frame("Status", json!({"status": status, "details": details}), id)
}

pub(crate) fn error_frame(error: &Error, id: Option<&str>, details: Option<Value>) -> Message {
    let mut data = json!({"code": error.ws_code(), "message": error.public_message()});
    if let (Some(details), Some(map)) = (details, data.as_object_mut()) {
        map.insert("details".to_owned(), details);
    }
    frame("Error", data, id)
}

fn str_field<'a>(data: &'a Value, name: &str) -> Result<&'a str, Error> {
    match data.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Error::BadRequest(format!("data.{name} must be a string"))),
        None => Err(Error::BadRequest(format!("missing field data.{name}"))),
    }
}

fn opt_str<'a>(data: &'a Value, name: &str) -> Result<Option<&'a str>, Error> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::BadRequest(format!("data.{name} must be a string"))),
    }
}

fn u64_field(data: &Value, name: &str) -> Result<u64, Error> {
    opt_u64(data, name)?.ok_or_else(|| Error::BadRequest(format!("missing field data.{name}")))
}

fn opt_u64(data: &Value, name: &str) -> Result<Option<u64>, Error> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            Error::BadRequest(format!("data.{name} must be a non-negative integer"))
        }),
        Some(_) => Err(Error::BadRequest(format!(
            "data.{name} must be a non-negative integer"
        ))),
    }
}

fn string_list(data: &Value, name: &str) -> Result<Vec<String>, Error> {
    let Some(Value::Array(items)) = data.get(name) else {
        return Err(Error::BadRequest(format!(
            "data.{name} must be an array of strings"
        )));
    };
    if items.len() > 100 {
        return Err(Error::BadRequest(format!(
            "data.{name} may list at most 100 topics"
        )));
    }
    items
        .iter()
        .map(|item| {
            item.as_str().map(str::to_owned).ok_or_else(|| {
                Error::BadRequest(format!("data.{name} must be an array of strings"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
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
