//! Files attached to messages: uploads over HTTP (the web client's; Kibray's go through the
//! Kibray dialect), and downloads for who may read the room.

use std::collections::HashMap;

use serde_json::json;
use warp::http::{HeaderValue, StatusCode, header};
use warp::{Filter, Rejection, Reply};

use super::{authenticated, authenticated_or_cookie, collect_limited, json_reply, with_state};
use crate::app::AppState;
use crate::core::command::RoomRef;
use crate::error::Error;
use crate::principal::{Principal, Scope};

/// POST /api/v1/rooms/{room}/files?name= — stores the body as a file and posts it to the room as
/// a message (its content the file's name, the file in its attachments); answered once both are
/// stored. The body's Content-Type is the file's type; at most `server.max_upload_bytes`.
pub fn files_upload(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "rooms" / String / "files")
        .and(warp::post())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(with_state(state))
        .and_then(
            |room: String,
             who: Principal,
             query: HashMap<String, String>,
             content_type: Option<String>,
             length: Option<u64>,
             body,
             state: AppState| async move {
                let limit = state.config.server.max_upload_bytes;
                if length.is_some_and(|n| n > limit) {
                    return Err(Rejection::from(Error::PayloadTooLarge { limit }));
                }
                let file_name = query
                    .get("name")
                    .ok_or_else(|| Error::BadRequest("missing query parameter name".to_owned()))?;
                let content_type = content_type
                    .as_deref()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                let content = collect_limited(body, limit).await?;
                let outcome = state
                    .core
                    .chat
                    .attach_file(
                        &who,
                        &RoomRef::Name(super::rooms::path_name(&room)),
                        file_name,
                        &content_type,
                        content.to_vec(),
                        limit,
                    )
                    .await?;
                let room = &outcome.room;
                Ok::<_, Rejection>(json_reply(
                    &json!({
                        "room": room.name,
                        "room_id": room.id,
                        "seq": outcome.message.seq,
                        "message": crate::wire::message_json(&room.name, &outcome.message),
                    }),
                    StatusCode::CREATED,
                ))
            },
        )
}

/// GET /api/v1/files/{id} — a file's content, for who may read the room it was attached in (a
/// bearer token, or the access cookie, as a browser link or image carries it).
pub fn files_get(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "files" / u64)
        .and(warp::get())
        .and(authenticated_or_cookie(state.clone(), Scope::Chat))
        .and(with_state(state))
        .and_then(|id: u64, who: Principal, state: AppState| async move {
            let (file, path) = state.core.chat.file(&who, id).await?;
            let content = tokio::fs::read(&path)
                .await
                .map_err(|e| Error::Internal(format!("cannot read file {id}: {e}")))?;
            let mut response = warp::reply::Response::new(content.into());
            *response.status_mut() = StatusCode::OK;
            let headers = response.headers_mut();
            let content_type = HeaderValue::from_str(&file.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            headers.insert(header::CONTENT_TYPE, content_type);
            // The name is the uploader's: sent percent-encoded, never as raw header text.
            let encoded: String = file
                .name
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            if let Ok(value) =
                HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}"))
            {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            Ok::<_, Rejection>(response)
        })
}
