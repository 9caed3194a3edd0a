//! Rooms over HTTP: the caller's profile, listing, creating and reading rooms, message history,
//! posting and membership. Every rule (ACL, validation, storage, fan-out) is the chat core's
//! ([`crate::core::chat::Chat`]); these filters only translate between JSON and its calls.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{authenticated, json_body, json_reply, query_number, with_state};
use crate::app::AppState;
use crate::core::chat::CreateRoom;
use crate::core::command::{ContentPolicy, RoomRef, SendMessage};
use crate::error::Error;
use crate::principal::{Principal, Scope};
use crate::store::{Room, Visibility};
use crate::wire::message_json;

#[derive(Deserialize)]
struct CreateRoomRequest {
    name: String,
    #[serde(default = "default_visibility")]
    visibility: Visibility,
    #[serde(default = "default_persistent")]
    persistent: bool,
    /// 0 keeps messages forever.
    #[serde(default)]
    retention_secs: u64,
}

fn default_visibility() -> Visibility {
    Visibility::Public
}

fn default_persistent() -> bool {
    true
}

#[derive(Deserialize)]
struct SendRequest {
    content: String,
    #[serde(default)]
    reply_to: Option<u64>,
    /// Makes retries idempotent: a repeated id returns the original message.
    #[serde(default)]
    client_msg_id: Option<String>,
    /// Ids of files to attach (the sender's own, not attached anywhere yet).
    #[serde(default)]
    attachments: Vec<u64>,
}

/// A room with its owner's username.
async fn room_json(state: &AppState, room: &Room) -> Result<Value, Error> {
    let view = state.core.chat.room_view(room).await?;
    serde_json::to_value(view).map_err(|e| Error::Internal(format!("cannot encode room: {e}")))
}

/// A room name or username from a path segment. warp does not decode path parameters, and room
/// names may hold '/' and ':', so clients percent-encode them (`alice%2Fmath`). A '+' in a path
/// is a plus, not a space (that is only so in query strings): it is escaped before decoding.
pub(super) fn path_name(segment: &str) -> String {
    crate::wire::percent_decode(&segment.replace('+', "%2B"))
}

/// GET /api/v1/me — the caller's account and the rooms they can see.
pub fn me_get(state: AppState) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "me")
        .and(warp::get())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(with_state(state))
        .and_then(|who: Principal, state: AppState| async move {
            let user = state.core.accounts.me(&who).await?;
            let rooms = state.core.chat.list_rooms(&who).await?;
            Ok::<_, Rejection>(json_reply(
                &json!({
                    "id": user.id,
                    "user_id": user.user_id,
                    "username": user.username,
                    "display_name": user.display_name,
                    "role": user.role,
                    "avatar_url": user.avatar_url,
                    "rooms": rooms,
                }),
                StatusCode::OK,
            ))
        })
}

/// GET /api/v1/rooms — the rooms the caller can see, with membership and unread counts.
pub fn rooms_list(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms")
        .and(warp::get())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(with_state(state))
        .and_then(|who: Principal, state: AppState| async move {
            let rooms = state.core.chat.list_rooms(&who).await?;
            Ok::<_, Rejection>(json_reply(&json!({"rooms": rooms}), StatusCode::OK))
        })
}

/// POST /api/v1/rooms — creates a room owned by the caller.
pub fn rooms_create(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms")
        .and(warp::post())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(json_body::<CreateRoomRequest>(
            state.config.server.max_body_bytes,
        ))
        .and(with_state(state))
        .and_then(
            |who: Principal, req: CreateRoomRequest, state: AppState| async move {
                let room = state
                    .core
                    .chat
                    .create_room(
                        &who,
                        CreateRoom {
                            name: req.name,
                            visibility: req.visibility,
                            persistent: req.persistent,
                            retention_secs: req.retention_secs,
                        },
                    )
                    .await?;
                Ok::<_, Rejection>(json_reply(
                    &room_json(&state, &room).await?,
                    StatusCode::CREATED,
                ))
            },
        )
}

/// GET /api/v1/rooms/{room} — one room, its members' usernames and their presence.
pub fn rooms_get(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms" / String)
        .and(warp::get())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(with_state(state))
        .and_then(|room: String, who: Principal, state: AppState| async move {
            let chat = &state.core.chat;
            let room = chat
                .resolve_room(&who, &RoomRef::Name(path_name(&room)))
                .await?;
            chat.check_read(&who, &room).await?;
            let members = chat.members_presence(&who, &room).await?;
            let names: Vec<&str> = members.iter().map(|m| m.username.as_str()).collect();
            let presence: serde_json::Map<String, Value> = members
                .iter()
                .map(|m| (m.username.clone(), json!(m.presence)))
                .collect();
            let mut body = room_json(&state, &room).await?;
            if let Some(map) = body.as_object_mut() {
                map.insert("members".to_owned(), json!(names));
                map.insert("presence".to_owned(), Value::Object(presence));
                map.insert("member_users".to_owned(), json!(members));
            }
            Ok::<_, Rejection>(json_reply(&body, StatusCode::OK))
        })
}

/// GET /api/v1/rooms/{room}/messages?before=&after=&limit= — a page of history, oldest first.
pub fn messages_list(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms" / String / "messages")
        .and(warp::get())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state))
        .and_then(
            |room: String,
             who: Principal,
             query: HashMap<String, String>,
             state: AppState| async move {
                let before = query_number::<u64>(&query, "before")?;
                let after = query_number::<u64>(&query, "after")?;
                let limit = query_number::<usize>(&query, "limit")?;
                let (room, messages, has_more) = state
                    .core
                    .chat
                    .history(&who, &RoomRef::Name(path_name(&room)), before, after, limit)
                    .await?;
                let messages: Vec<Value> = messages
                    .iter()
                    .map(|m| message_json(&room.name, m))
                    .collect();
                Ok::<_, Rejection>(json_reply(
                    &json!({
                        "room": room.name,
                        "room_id": room.id,
                        "last_seq": room.last_seq,
                        "messages": messages,
                        "has_more": has_more,
                    }),
                    StatusCode::OK,
                ))
            },
        )
}

/// POST /api/v1/rooms/{room}/messages — posts a message; answered once it is stored.
pub fn messages_create(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms" / String / "messages")
        .and(warp::post())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(json_body::<SendRequest>(state.config.server.max_body_bytes))
        .and(with_state(state))
        .and_then(
            |room: String, who: Principal, req: SendRequest, state: AppState| async move {
                let outcome = state
                    .core
                    .chat
                    .send(
                        &who,
                        SendMessage {
                            room: RoomRef::Name(path_name(&room)),
                            content: req.content,
                            reply_to: req.reply_to,
                            client_msg_id: req.client_msg_id,
                            policy: ContentPolicy::default(),
                            attachments: req.attachments,
                        },
                    )
                    .await?;
                let room = &outcome.room;
                Ok::<_, Rejection>(json_reply(
                    &json!({
                        "room": room.name,
                        "room_id": room.id,
                        "seq": outcome.message.seq,
                        // As the native Ack: a non-persistent room only relays.
                        "status": outcome.status(),
                        "duplicate": outcome.duplicate,
                        "message": message_json(&room.name, &outcome.message),
                    }),
                    StatusCode::CREATED,
                ))
            },
        )
}

/// POST /api/v1/rooms/{room}/members/{username} — adds a member.
pub fn members_add(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms" / String / "members" / String)
        .and(warp::post())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(with_state(state))
        .and_then(
            |room: String, username: String, who: Principal, state: AppState| async move {
                let username = path_name(&username);
                let room = state
                    .core
                    .chat
                    .add_member(&who, &path_name(&room), &username)
                    .await?;
                Ok::<_, Rejection>(json_reply(
                    &json!({"room": room.name, "room_id": room.id, "member": username, "added": true}),
                    StatusCode::OK,
                ))
            },
        )
}

/// DELETE /api/v1/rooms/{room}/members/{username} — removes a member (or leaves the room).
pub fn members_remove(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms" / String / "members" / String)
        .and(warp::delete())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(with_state(state))
        .and_then(
            |room: String, username: String, who: Principal, state: AppState| async move {
                let username = path_name(&username);
                let room = state
                    .core
                    .chat
                    .remove_member(&who, &path_name(&room), &username)
                    .await?;
                Ok::<_, Rejection>(json_reply(
                    &json!({"room": room.name, "room_id": room.id, "member": username, "removed": true}),
                    StatusCode::OK,
                ))
            },
        )
}
