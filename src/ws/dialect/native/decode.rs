//! Reading native client frames: the envelope, then one request per type.

use serde_json::{Value, json};
use uuid::Uuid;

use super::super::json::{self, FieldError};
use super::super::{Rate, Request};
use super::{Kind, Meta};
use crate::core::command::{
    Command, ContentPolicy, EditMessage, React, RoomRef, SendMessage, UpdateRoom,
};
use crate::error::Error;
use crate::store::now_secs;

/// Most file ids one Send may list (the core allows as many).
const MAX_ATTACHMENTS: usize = 10;

/// Most topics one Subscribe or Unsubscribe may list.
const MAX_TOPICS_PER_REQUEST: usize = 100;

/// A parsed client frame.
pub(crate) struct Envelope {
    pub(crate) kind: String,
    pub(crate) data: Value,
    pub(crate) id: Option<String>,
}

impl Envelope {
    /// Parses the envelope. On failure returns the error and, when it could be read, the id.
    pub(crate) fn parse(text: &str) -> Result<Envelope, (Error, Option<String>)> {
        let mut map = json::object(text).map_err(|e| {
            let error = match e {
                Some(e) => Error::BadRequest(format!("malformed JSON: {e}")),
                None => {
                    Error::BadRequest("a message must be a JSON object with a \"type\"".to_owned())
                }
            };
            (error, None)
        })?;
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
        Ok(Envelope { kind, data, id })
    }
}

/// The native wording of a field error.
fn field(error: FieldError) -> Error {
    Error::BadRequest(match error {
        FieldError::Missing(name) => format!("missing field data.{name}"),
        FieldError::Wrong { name, expected } => format!("data.{name} must be {expected}"),
        FieldError::TooMany { name, max } => format!("data.{name} may list at most {max} topics"),
    })
}

/// The request of an envelope; `None` for a `Pong`, which needs nothing.
pub(super) fn decode(envelope: Envelope) -> Option<Request<Meta>> {
    let Envelope { kind, data, id } = envelope;
    let meta = |kind| Meta::new(id.clone(), kind);
    Some(match kind.as_str() {
        "Ping" => {
            let timestamp = match data.get("timestamp") {
                Some(t) if t.is_number() => t.clone(),
                _ => json!(now_secs()),
            };
            Request::local(meta(Kind::Ping(timestamp)), Rate::Free)
        }
        "Pong" => return None,
        "Subscribe" => match json::strings(&data, "topics", MAX_TOPICS_PER_REQUEST) {
            Ok(topics) => Request::core(
                meta(Kind::Subscribe(topics.clone())),
                Rate::Free,
                Command::Subscribe { topics },
            ),
            Err(e) => Request::invalid(meta(Kind::Other), Rate::Free, field(e)),
        },
        "Unsubscribe" => match json::strings(&data, "topics", MAX_TOPICS_PER_REQUEST) {
            Ok(topics) => Request::core(
                meta(Kind::Unsubscribe(topics.clone())),
                Rate::Free,
                Command::Unsubscribe { topics },
            ),
            Err(e) => Request::invalid(meta(Kind::Other), Rate::Free, field(e)),
        },
        "Broadcast" => {
            let delivery_id = format!("broadcast_{}", Uuid::new_v4().simple());
            let command = json::string(&data, "topic").map(|topic| Command::Broadcast {
                topic: topic.to_owned(),
                payload: data.get("payload").cloned().unwrap_or(Value::Null),
                message_id: delivery_id.clone(),
            });
            Request::of(
                meta(Kind::Broadcast { delivery_id }),
                Rate::Message,
                command.map_err(field),
            )
        }
        "DirectMessage" => {
            let message_id = id
                .clone()
                .unwrap_or_else(|| format!("dm_{}", Uuid::new_v4().simple()));
            match json::string(&data, "target_user") {
                Ok(target) => Request::core(
                    meta(Kind::DirectMessage {
                        target: target.to_owned(),
                        message_id: message_id.clone(),
                    }),
                    Rate::Message,
                    Command::DirectMessage {
                        target: target.to_owned(),
                        payload: data.get("payload").cloned().unwrap_or(Value::Null),
                        message_id,
                    },
                ),
                Err(e) => Request::invalid(meta(Kind::Other), Rate::Message, field(e)),
            }
        }
        "Authenticate" => Request::of(
            meta(Kind::Authenticate),
            Rate::Free,
            json::string(&data, "token")
                .map(|token| Command::Authenticate {
                    token: token.to_owned(),
                })
                .map_err(field),
        ),
        "Join" => Request::of(meta(Kind::Join), Rate::Join, join(&data).map_err(field)),
        "Leave" => Request::of(
            meta(Kind::Leave),
            Rate::Free,
            json::string(&data, "room")
                .map(|room| Command::Leave {
                    room: RoomRef::from(room),
                })
                .map_err(field),
        ),
        "Send" => Request::of(meta(Kind::Send), Rate::Message, send(&data).map_err(field)),
        "Edit" => Request::of(meta(Kind::Edit), Rate::Message, edit(&data).map_err(field)),
        "React" => Request::of(
            meta(Kind::React),
            Rate::Message,
            react(&data).map_err(field),
        ),
        "UpdateRoom" => Request::of(
            meta(Kind::UpdateRoom),
            Rate::Message,
            update_room(&data).map_err(field),
        ),
        "Delete" => Request::of(
            meta(Kind::Delete),
            Rate::Message,
            delete(&data).map_err(field),
        ),
        "History" => Request::of(
            meta(Kind::History),
            Rate::Message,
            history(&data).map_err(field),
        ),
        "Typing" => match typing(&data) {
            // A malformed Typing is told so whatever the rate.
            Ok(command) => Request::core(meta(Kind::Typing), Rate::Typing, command),
            Err(e) => Request::invalid(meta(Kind::Typing), Rate::Free, field(e)),
        },
        "Read" => Request::of(meta(Kind::Read), Rate::Message, read(&data).map_err(field)),
        "SetStatus" => match set_status(&data) {
            Ok((status, command)) => {
                Request::core(meta(Kind::SetStatus(status)), Rate::Message, command)
            }
            Err(e) => Request::invalid(meta(Kind::Other), Rate::Message, e),
        },
        custom if custom.starts_with("X-") => match data.get("topic") {
            Some(Value::String(topic)) => Request::core(
                meta(Kind::Custom),
                Rate::Message,
                Command::Relay {
                    kind: custom.to_owned(),
                    topic: topic.clone(),
                    data,
                },
            ),
            Some(_) => Request::invalid(
                meta(Kind::Other),
                Rate::Message,
                Error::BadRequest("data.topic of a custom message must be a string".to_owned()),
            ),
            None => Request::local(meta(Kind::Custom), Rate::Message),
        },
        unknown => Request::invalid(
            meta(Kind::Other),
            Rate::Free,
            Error::BadRequest(format!("unknown message type {unknown:?}")),
        ),
    })
}

fn join(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::Join {
        room: RoomRef::from(json::string(data, "room")?),
        since: json::opt_u64(data, "since")?,
    })
}

fn send(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::Send(SendMessage {
        room: RoomRef::from(json::string(data, "room")?),
        content: json::string(data, "content")?.to_owned(),
        reply_to: json::opt_u64(data, "reply_to")?,
        client_msg_id: json::opt_string(data, "client_msg_id")?.map(str::to_owned),
        policy: ContentPolicy::default(),
        attachments: json::ids(data, "attachments", MAX_ATTACHMENTS)?,
    }))
}

fn edit(data: &Value) -> Result<Command, FieldError> {
    let room = RoomRef::from(json::string(data, "room")?);
    let seq = json::u64_field(data, "seq")?;
    Ok(Command::Edit(EditMessage {
        room,
        seq,
        content: json::string(data, "content")?.to_owned(),
        policy: ContentPolicy::default(),
    }))
}

fn react(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::React(React {
        room: RoomRef::from(json::string(data, "room")?),
        seq: json::u64_field(data, "seq")?,
        emoji: json::string(data, "emoji")?.to_owned(),
        add: !json::bool_or(data, "remove", false)?,
    }))
}

/// An UpdateRoom's `title` and `topic`: absent leaves it, null (or "") clears it.
fn update_room(data: &Value) -> Result<Command, FieldError> {
    let change = |name: &'static str| -> Result<Option<Option<String>>, FieldError> {
        if data.get(name).is_none() {
            return Ok(None);
        }
        Ok(Some(json::opt_string(data, name)?.map(str::to_owned)))
    };
    Ok(Command::UpdateRoom(UpdateRoom {
        room: RoomRef::from(json::string(data, "room")?),
        title: change("title")?,
        topic: change("topic")?,
    }))
}

fn delete(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::Delete {
        room: RoomRef::from(json::string(data, "room")?),
        seq: json::u64_field(data, "seq")?,
    })
}

fn history(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::History {
        room: RoomRef::from(json::string(data, "room")?),
        before: json::opt_u64(data, "before")?,
        after: json::opt_u64(data, "after")?,
        limit: json::opt_u64(data, "limit")?.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
    })
}

fn typing(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::Typing {
        room: RoomRef::from(json::string(data, "room")?),
        is_typing: json::bool_or(data, "is_typing", true)?,
    })
}

fn read(data: &Value) -> Result<Command, FieldError> {
    Ok(Command::Read {
        room: RoomRef::from(json::string(data, "room")?),
        seq: json::u64_field(data, "seq")?,
    })
}

fn set_status(data: &Value) -> Result<(String, Command), Error> {
    let status = json::string(data, "status").map_err(field)?.to_owned();
    let metadata = json::opt_object(data, "metadata").map_err(field)?.cloned();
    Ok((status.clone(), Command::SetStatus { status, metadata }))
}
