//! Server-side publishing and notifications over HTTP: events into rooms and notifications into
//! a user's inbox (admin or service tokens; the chat core enforces that), and the caller's own
//! inbox.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{authenticated, get_query, json_body, json_reply, query_number, with_state};
use crate::app::AppState;
use crate::core::chat::NewNotification;
use crate::principal::{Principal, Scope};
use crate::wire::notification_json;

/// Notifications listed when the request does not say.
const DEFAULT_NOTIFICATIONS: usize = 50;

#[derive(Deserialize)]
struct PublishRequest {
    room: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct NotifyRequest {
    username: String,
    title: String,
    message: String,
    #[serde(default = "default_level")]
    level: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    actions: Value,
}

fn default_level() -> String {
    "info".to_owned()
}

/// POST /api/v1/publish — delivers an event (`type`, `data`) to a room's live connections.
pub fn publish_create(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "publish")
        .and(warp::post())
        .and(authenticated(state.clone(), Scope::Publish))
        .and(json_body::<PublishRequest>(
            state.config.server.max_body_bytes,
        ))
        .and(with_state(state))
        .and_then(
            |who: Principal, req: PublishRequest, state: AppState| async move {
                let delivered = state
                    .core
                    .chat
                    .publish(&who, &req.room, &req.kind, req.data)
                    .await?;
                Ok::<_, Rejection>(json_reply(&json!({"delivered": delivered}), StatusCode::OK))
            },
        )
}

/// POST /api/v1/notifications — stores a notification for a user and delivers it live.
pub fn notifications_create(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "notifications")
        .and(warp::post())
        .and(authenticated(state.clone(), Scope::Publish))
        .and(json_body::<NotifyRequest>(
            state.config.server.max_body_bytes,
        ))
        .and(with_state(state))
        .and_then(
            |who: Principal, req: NotifyRequest, state: AppState| async move {
                let stored = state
                    .core
                    .chat
                    .notify(
                        &who,
                        NewNotification {
                            username: req.username,
                            title: req.title,
                            message: req.message,
                            level: req.level,
                            category: req.category,
                            url: req.url,
                            actions: req.actions,
                        },
                    )
                    .await?;
                Ok::<_, Rejection>(json_reply(&notification_json(&stored), StatusCode::CREATED))
            },
        )
}

/// GET /api/v1/notifications?limit=&before= — a page of the caller's notifications, newest
/// first (ids below `before`), their unread count, and whether older ones follow (`has_more`;
/// page on with `before` = the smallest id received).
pub fn notifications_list(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "notifications")
        .and(get_query(state, Scope::Chat))
        .and_then(
            |who: Principal, query: HashMap<String, String>, state: AppState| async move {
                let limit =
                    query_number::<usize>(&query, "limit")?.unwrap_or(DEFAULT_NOTIFICATIONS);
                let before = query_number::<u64>(&query, "before")?;
                let page = state.core.chat.notifications(&who, before, limit).await?;
                let notifications: Vec<Value> =
                    page.notifications.iter().map(notification_json).collect();
                Ok::<_, Rejection>(json_reply(
                    &json!({
                        "notifications": notifications,
                        "unread": page.unread,
                        "has_more": page.has_more,
                    }),
                    StatusCode::OK,
                ))
            },
        )
}

/// POST /api/v1/notifications/{id}/read — marks one of the caller's notifications read.
pub fn notifications_read(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "notifications" / u64 / "read")
        .and(warp::post())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(with_state(state))
        .and_then(|id: u64, who: Principal, state: AppState| async move {
            let notification = state.core.chat.mark_notification_read(&who, id).await?;
            Ok::<_, Rejection>(json_reply(
                &notification_json(&notification),
                StatusCode::OK,
            ))
        })
}
