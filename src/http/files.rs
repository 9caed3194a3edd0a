//! Files attached to messages (seed 002's uploads): downloads for who may read the room.

use warp::http::{HeaderValue, StatusCode, header};
use warp::{Filter, Rejection, Reply};

use super::{authenticated, with_state};
use crate::auth::Principal;
use crate::error::Error;
use crate::server::AppState;

/// GET /api/v1/files/{id} — a file's content, for who may read the room it was attached in.
pub fn files_get(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "files" / u64)
        .and(warp::get())
        .and(authenticated(state.clone()))
        .and(with_state(state))
        .and_then(|id: u64, who: Principal, state: AppState| async move {
            let (file, path) = state.chat.file(&who, id)?;
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
