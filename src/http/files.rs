//! Files attached to messages: uploads over HTTP (the web client's; Kibray's go through the
//! Kibray dialect), and downloads for who may read the room.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt as _;
use serde_json::json;
use warp::http::{HeaderValue, StatusCode, header};
use warp::{Filter, Rejection, Reply};

use super::{authenticated, authenticated_or_cookie, json_reply, with_state};
use crate::app::AppState;
use crate::config::ServerConfig;
use crate::core::chat::Upload;
use crate::core::command::RoomRef;
use crate::error::Error;
use crate::principal::{Principal, Scope};

/// POST /api/v1/rooms/{room}/files?name= — stores the body as a file and posts it to the room as
/// a message (its content the file's name, the file in its attachments); answered once both are
/// stored. The body's Content-Type is the file's type; at most `server.max_upload_bytes`. The
/// body streams to a temporary file as it comes (see [`receive_body`]).
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
                // An upload posts a message: it counts against the user's message rate, before
                // its body is read.
                state.core.chat.count_message(&who)?;
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
                let chat = &state.core.chat;
                let mut upload = chat
                    .start_upload(
                        &who,
                        &RoomRef::Name(super::rooms::path_name(&room)),
                        file_name,
                        &content_type,
                        None,
                        limit,
                    )
                    .await?;
                receive_body(body, &mut upload, &state.config.server).await?;
                let outcome = chat.finish_upload(&who, upload).await?;
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

/// Bytes gathered before one write to the upload's file.
const WRITE_CHUNK: usize = 64 * 1024;

/// Streams an upload's body to its file. A body that sends nothing for
/// `server.upload_idle_timeout_secs`, or that arrives slower than
/// `server.upload_min_bytes_per_sec` on average once it has run that long, is dropped with
/// `RequestTimeout` (its connection closes; the upload's temporary file goes with it), so a
/// stalled client holds neither memory nor disk.
async fn receive_body<S, B>(
    body: S,
    upload: &mut Upload,
    config: &ServerConfig,
) -> Result<(), Error>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    let idle = Duration::from_secs(config.upload_idle_timeout_secs);
    let min_rate = config.upload_min_bytes_per_sec;
    let started = tokio::time::Instant::now();
    let mut body = std::pin::pin!(body);
    let mut pending = BytesMut::new();
    loop {
        let next = tokio::time::timeout(idle, body.next()).await.map_err(|_| {
            Error::RequestTimeout(format!(
                "the upload sent nothing for {} s; dropped",
                idle.as_secs()
            ))
        })?;
        let Some(chunk) = next else { break };
        let mut chunk =
            chunk.map_err(|e| Error::BadRequest(format!("cannot read request body: {e}")))?;
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            pending.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
        let received = upload
            .received()
            .saturating_add(u64::try_from(pending.len()).unwrap_or(u64::MAX));
        if received > config.max_upload_bytes {
            discard_rest(body, idle, config.max_upload_bytes).await;
            return Err(Error::PayloadTooLarge {
                limit: config.max_upload_bytes,
            });
        }
        let elapsed = started.elapsed();
        if min_rate > 0
            && elapsed > idle
            && u128::from(received) * 1000 < u128::from(min_rate) * elapsed.as_millis()
        {
            return Err(Error::RequestTimeout(format!(
                "the upload arrived slower than {min_rate} bytes per second; dropped"
            )));
        }
        if pending.len() >= WRITE_CHUNK
            && let Err(e) = upload.write(pending.split().freeze()).await
        {
            discard_rest(body, idle, config.max_upload_bytes).await;
            return Err(e);
        }
    }
    upload.write(pending.freeze()).await
}

/// Reads and drops the rest of a body that is refused midway (a full disk, too large), at most
/// `budget` bytes and while it keeps coming, so the client reads the answer: a connection closed
/// with unread bytes is reset, and the reset can overtake the answer. Costs neither memory nor
/// disk.
async fn discard_rest<S, B>(mut body: std::pin::Pin<&mut S>, idle: Duration, budget: u64)
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    let mut left = budget;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(idle, body.next()).await {
        let n = u64::try_from(chunk.remaining()).unwrap_or(u64::MAX);
        if n >= left {
            return;
        }
        left -= n;
    }
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
            // Streamed from disk, not read whole into memory. Opened, it stays readable even
            // if the file is deleted meanwhile.
            let content = tokio::fs::File::open(&path)
                .await
                .map_err(|e| Error::Internal(format!("cannot read file {id}: {e}")))?;
            let mut response =
                warp::reply::stream(tokio_util::io::ReaderStream::new(content)).into_response();
            *response.status_mut() = StatusCode::OK;
            let headers = response.headers_mut();
            if let Ok(length) = HeaderValue::from_str(&file.size.to_string()) {
                headers.insert(header::CONTENT_LENGTH, length);
            }
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
