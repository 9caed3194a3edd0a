//! `natter room ...`: rooms, through the chat core with the operator's rights. Every verb is
//! idempotent where the CLI promises it (create, delete, members add and remove).

use std::fmt::Write as _;

use serde_json::json;

use super::{Reply, operator};
use crate::app::AppState;
use crate::core::chat::CreateRoom;
use crate::core::command::RoomRef;
use crate::error::Error;
use crate::principal::Principal;
use crate::store::Visibility;

/// `room create`: an existing room that is as asked (owner, visibility, persistence,
/// retention) is left as it is; one that differs is a conflict, changed nothing, so that an
/// operator never takes a room someone else made (a squatted name) for the one they meant.
pub(super) async fn create(
    state: &AppState,
    name: String,
    owner: String,
    private: bool,
    transient: bool,
    retention_secs: u64,
) -> Result<Reply, Error> {
    let chat = &state.core.chat;
    let owner = state.core.accounts.get(&owner).await?;
    let visibility = if private {
        Visibility::Private
    } else {
        Visibility::Public
    };
    if let Some(room) = chat.store().room_by_name(&name).await? {
        let view = chat.room_view(&room).await?;
        let mut differences = Vec::new();
        if room.owner != owner.id {
            differences.push(format!("owner {} (not {})", view.owner, owner.username));
        }
        if room.visibility != visibility {
            differences.push(format!(
                "{} (not {})",
                visibility_name(room.visibility),
                visibility_name(visibility)
            ));
        }
        if room.persistent == transient {
            differences.push(
                if room.persistent {
                    "persistent (not transient)"
                } else {
                    "transient (not persistent)"
                }
                .to_owned(),
            );
        }
        if room.retention_secs != retention_secs {
            differences.push(format!(
                "retention {} (not {})",
                retention_text(room.retention_secs),
                retention_text(retention_secs)
            ));
        }
        if !differences.is_empty() {
            return Err(Error::Conflict(format!(
                "room {name} exists already with {}; nothing was changed",
                differences.join(", ")
            )));
        }
        return Ok(Reply::new(
            format!("room {name} exists already (unchanged)"),
            json!({"created": false, "id": room.id}),
        ));
    }
    // The owner creates it, with the operator's rights.
    let who = Principal {
        user_id: owner.id,
        number: owner.number,
        username: owner.username.clone(),
        ..operator()
    };
    let room = chat
        .create_room(
            &who,
            CreateRoom {
                name,
                visibility,
                persistent: !transient,
                retention_secs,
            },
        )
        .await?;
    Ok(Reply::new(
        format!(
            "created room {} (id {}, {}, owner {})",
            room.name,
            room.id,
            visibility_name(room.visibility),
            owner.username
        ),
        json!({"created": true, "id": room.id}),
    ))
}

pub(super) async fn list(state: &AppState) -> Result<Reply, Error> {
    let rooms = state.core.chat.list_all_rooms(&operator()).await?;
    let mut text = format!(
        "{:<32} {:<8} {:<16} {:>8} {:>10}\n",
        "ROOM", "VISIBLE", "OWNER", "MESSAGES", "RETENTION"
    );
    for room in &rooms {
        let _ = writeln!(
            text,
            "{:<32} {:<8} {:<16} {:>8} {:>10}",
            room.name,
            visibility_name(room.visibility),
            room.owner,
            room.last_seq,
            retention_text(room.retention_secs),
        );
    }
    Ok(Reply::new(text.trim_end(), json!(rooms)))
}

pub(super) async fn show(state: &AppState, name: &str) -> Result<Reply, Error> {
    let who = operator();
    let chat = &state.core.chat;
    let room = chat.resolve_room(&who, &RoomRef::from(name)).await?;
    let members = chat.members(&who, &room).await?;
    let view = chat.room_view(&room).await?;
    let text = format!(
        "room {} (id {})\nvisibility: {}\nowner: {}\npersistent: {}\nretention: {}\nlast sequence: {}\nmembers: {}",
        view.name,
        view.id,
        visibility_name(view.visibility),
        view.owner,
        view.persistent,
        retention_text(view.retention_secs),
        view.last_seq,
        if members.is_empty() {
            "(none)".to_owned()
        } else {
            members.join(", ")
        },
    );
    Ok(Reply::new(
        text,
        json!({"id": view.id, "name": view.name, "visibility": view.visibility,
               "owner": view.owner, "persistent": view.persistent,
               "retention_secs": view.retention_secs, "last_seq": view.last_seq,
               "created_at": view.created_at, "members": members}),
    ))
}

/// `room delete`: a missing room is nothing to do.
pub(super) async fn delete(state: &AppState, name: &str) -> Result<Reply, Error> {
    match state.core.chat.delete_room(name).await? {
        None => Ok(Reply::new(
            format!("no room {name} (nothing to do)"),
            json!({"deleted": false}),
        )),
        Some(messages) => Ok(Reply::new(
            format!("room {name} was deleted with {messages} messages"),
            json!({"deleted": true, "messages": messages}),
        )),
    }
}

pub(super) async fn add_member(
    state: &AppState,
    name: &str,
    username: &str,
) -> Result<Reply, Error> {
    let who = operator();
    let chat = &state.core.chat;
    let room = chat.resolve_room(&who, &RoomRef::from(name)).await?;
    if chat.is_member_named(&room, username).await? {
        return Ok(Reply::new(
            format!("{username} is a member of {name} already"),
            json!({"added": false}),
        ));
    }
    chat.add_member(&who, name, username).await?;
    Ok(Reply::new(
        format!("{username} is now a member of {name}"),
        json!({"added": true}),
    ))
}

pub(super) async fn remove_member(
    state: &AppState,
    name: &str,
    username: &str,
) -> Result<Reply, Error> {
    let who = operator();
    let chat = &state.core.chat;
    let room = chat.resolve_room(&who, &RoomRef::from(name)).await?;
    if !chat.is_member_named(&room, username).await? {
        return Ok(Reply::new(
            format!("{username} is not a member of {name} (nothing to do)"),
            json!({"removed": false}),
        ));
    }
    chat.remove_member(&who, name, username).await?;
    Ok(Reply::new(
        format!("{username} is no longer a member of {name}"),
        json!({"removed": true}),
    ))
}

pub(super) async fn purge(state: &AppState, name: &str, before_ms: i64) -> Result<Reply, Error> {
    let total = state.core.chat.purge_room(name, before_ms).await?;
    Ok(Reply::new(
        format!(
            "purged {total} messages of {name} created before {}",
            crate::timefmt::rfc3339(before_ms.div_euclid(1000))
        ),
        json!({"purged": total}),
    ))
}

fn visibility_name(visibility: Visibility) -> &'static str {
    match visibility {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}

fn retention_text(secs: u64) -> String {
    if secs == 0 {
        "forever".to_owned()
    } else {
        format!("{secs}s")
    }
}
