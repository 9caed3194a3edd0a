//! Rooms over HTTP: the caller's profile, listing, creating and reading rooms, message history,
//! posting and membership. Every rule (ACL, validation, storage, fan-out) is the chat core's
//! ([`crate::core::chat::Chat`]); these filters only translate between JSON and its calls.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{authenticated, get_query, json_body, json_reply, query_number, with_state};
use crate::app::AppState;
use crate::core::chat::{CreateRoom, DEFAULT_ROOM_PAGE, MAX_ROOM_PAGE, RoomSummary};
use crate::core::command::{ContentPolicy, React, RoomRef, SendMessage, UpdateRoom};
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

/// A page of the rooms `who` can see, as `?limit=&cursor=` ask: the rooms and the cursor of
/// the next page (`None` on the last).
async fn room_page(
    state: &AppState,
    who: &Principal,
    query: &HashMap<String, String>,
) -> Result<(Vec<RoomSummary>, Option<String>), Error> {
    let limit = query_number::<usize>(query, "limit")?.unwrap_or(DEFAULT_ROOM_PAGE);
    if limit == 0 || limit > MAX_ROOM_PAGE {
        return Err(Error::BadRequest(format!(
            "limit must be 1 to {MAX_ROOM_PAGE}"
        )));
    }
    let after = match query.get("cursor").map(String::as_str) {
        None | Some("") => 0,
        Some(cursor) => cursor.parse::<u64>().map_err(|_| {
            Error::BadRequest("cursor must be a next_cursor this API returned".to_owned())
        })?,
    };
    let (rooms, next) = state.core.chat.list_rooms(who, after, limit).await?;
    Ok((rooms, next.map(|id| id.to_string())))
}

/// GET /api/v1/me?limit=&cursor= — the caller's account and the first page of the rooms they
/// can see (`rooms_next_cursor` continues it with `GET /api/v1/rooms?cursor=`).
pub fn me_get(state: AppState) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "me")
        .and(get_query(state, Scope::Chat))
        .and_then(
            |who: Principal, query: HashMap<String, String>, state: AppState| async move {
                let user = state.core.accounts.me(&who).await?;
                let (rooms, next_cursor) = room_page(&state, &who, &query).await?;
                Ok::<_, Rejection>(json_reply(
                    &json!({
                        "id": user.id,
                        "user_id": user.user_id,
                        "username": user.username,
                        "display_name": user.display_name,
                        "role": user.role,
                        "avatar_url": user.avatar_url,
                        "rooms": rooms,
                        "rooms_next_cursor": next_cursor,
                    }),
                    StatusCode::OK,
                ))
            },
        )
}

/// GET /api/v1/rooms?limit=&cursor= — a page of the rooms the caller can see, in id order,
/// with membership and unread counts; `next_cursor` (null on the last page) asks for the next.
pub fn rooms_list(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms")
        .and(get_query(state, Scope::Chat))
        .and_then(
            |who: Principal, query: HashMap<String, String>, state: AppState| async move {
                let (rooms, next_cursor) = room_page(&state, &who, &query).await?;
                Ok::<_, Rejection>(json_reply(
                    &json!({"rooms": rooms, "next_cursor": next_cursor}),
                    StatusCode::OK,
                ))
            },
        )
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

/// A PATCH body's `title` or `topic`: absent leaves it, null (or "") clears it, a string
/// sets it.
fn room_change(
    body: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<Option<String>>, Error> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(text)) => Ok(Some(Some(text.clone()))),
        Some(_) => Err(Error::BadRequest(format!(
            "{name} must be a string or null"
        ))),
    }
}

/// PATCH /api/v1/rooms/{room} `{"title"?, "topic"?}` — sets (a string) or clears (null) the
/// room's title and topic (its owner or an admin); answers the room. The name stays.
pub fn rooms_update(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms" / String)
        .and(warp::patch())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(json_body::<serde_json::Map<String, Value>>(
            state.config.server.max_body_bytes,
        ))
        .and(with_state(state))
        .and_then(
            |room: String,
             who: Principal,
             body: serde_json::Map<String, Value>,
             state: AppState| async move {
                if let Some(other) = body.keys().find(|k| *k != "title" && *k != "topic") {
                    return Err(Rejection::from(Error::BadRequest(format!(
                        "unknown field {other}: a room update has title and topic"
                    ))));
                }
                // As other changes that reach a room's members: the user's message bucket.
                state.core.chat.count_message(&who)?;
                let room = state
                    .core
                    .chat
                    .update_room(
                        &who,
                        UpdateRoom {
                            room: RoomRef::Name(path_name(&room)),
                            title: room_change(&body, "title")?,
                            topic: room_change(&body, "topic")?,
                        },
                    )
                    .await?;
                Ok::<_, Rejection>(json_reply(&room_json(&state, &room).await?, StatusCode::OK))
            },
        )
}

/// DELETE /api/v1/rooms/{room} — deletes a room and its messages (its owner or an admin).
pub fn rooms_delete(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms" / String)
        .and(warp::delete())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(with_state(state))
        .and_then(|room: String, who: Principal, state: AppState| async move {
            let (room, messages) = state
                .core
                .chat
                .delete_room_as(&who, &RoomRef::Name(path_name(&room)))
                .await?;
            Ok::<_, Rejection>(json_reply(
                &json!({"room": room.name, "room_id": room.id, "deleted": true, "messages": messages}),
                StatusCode::OK,
            ))
        })
}

/// GET /api/v1/rooms/{room}/messages?before=&after=&limit= — a page of history, oldest first.
pub fn messages_list(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms" / String / "messages")
        .and(get_query(state, Scope::Chat))
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
                // The user's message rate, the same bucket as their WebSocket messages.
                state.core.chat.count_message(&who)?;
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

/// PUT (add) and DELETE (remove) /api/v1/rooms/{room}/messages/{seq}/reactions/{emoji} — the
/// caller's reaction to a message (the emoji percent-encoded); answers the message's reactions.
pub fn reactions_put_delete(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms" / String / "messages" / u64 / "reactions" / String)
        .and(warp::put().map(|| true).or(warp::delete().map(|| false)).unify())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(with_state(state))
        .and_then(
            |room: String, seq: u64, emoji: String, add: bool, who: Principal, state: AppState| async move {
                state.core.chat.count_message(&who)?;
                let (room, message) = state
                    .core
                    .chat
                    .react(
                        &who,
                        React {
                            room: RoomRef::Name(path_name(&room)),
                            seq,
                            emoji: crate::wire::percent_decode(&emoji),
                            add,
                        },
                    )
                    .await?;
                Ok::<_, Rejection>(json_reply(
                    &json!({
                        "room": room.name,
                        "room_id": room.id,
                        "seq": message.seq,
                        "reactions": crate::wire::reactions_json(&message),
                    }),
                    StatusCode::OK,
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
