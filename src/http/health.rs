//! Liveness and readiness probes.

use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{error_response, json_reply, with_state};
use crate::app::AppState;
use crate::error::{Error, StoreError};

/// GET /healthz — the process is alive and answering.
pub fn healthz() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("healthz")
        .and(warp::get())
        .map(|| json_reply(&serde_json::json!({"status": "ok"}), StatusCode::OK))
}

/// GET /readyz — the store is open and takes writes, and the server is not shutting down; else
/// 503 `unavailable` saying why (a full disk: until it has room again).
pub fn readyz(state: AppState) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("readyz")
        .and(warp::get())
        .and(with_state(state))
        .then(|state: AppState| async move {
            if state.is_shutting_down() {
                error_response(&Error::Unavailable("server is shutting down".to_owned()))
            } else if let Some(failure) = state.store.write_failure().await {
                // The details (paths, OS errors) are in the log.
                let why = match failure {
                    StoreError::Full(_) => {
                        "storage is full: writes are refused until the disk has room again"
                    }
                    _ => "storage error: writes are refused until the store can write again",
                };
                error_response(&Error::Unavailable(why.to_owned()))
            } else if !state.store.is_healthy().await {
                error_response(&Error::Unavailable("store is not available".to_owned()))
            } else {
                json_reply(&serde_json::json!({"status": "ready"}), StatusCode::OK)
            }
        })
}

/// GET /metrics — Prometheus text format (when `metrics.enabled` and no `metrics.listen`).
pub fn metrics(state: AppState) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let on_main = state.config.metrics.enabled && state.config.metrics.listen.is_empty();
    warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state))
        .and_then(move |state: AppState| async move {
            if !on_main {
                return Err(warp::reject::not_found());
            }
            Ok(metrics_reply(&state).await)
        })
}

/// The metrics page as an HTTP response.
pub async fn metrics_reply(state: &AppState) -> warp::reply::Response {
    let body = render_metrics(state).await;
    let mut response = warp::reply::Response::new(body.into());
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Renders the metrics, reading the gauges from the live server.
pub async fn render_metrics(state: &AppState) -> String {
    let by_dialect = state.broker.connections_by_dialect();
    let connections = ["native", "edusphere", "rooms", "fastchat", "kibray"]
        .into_iter()
        .map(|name| (name, by_dialect.get(name).copied().unwrap_or(0)))
        .collect();
    let (webhooks, webhook_queue_dropped) = state.webhooks.gauges().await;
    let gauges = crate::metrics::Gauges {
        webhooks,
        webhook_queue_dropped,
        connections,
        rooms: state.store.counts().await.map_or(0, |counts| counts.rooms),
        store_bytes: state.store.size_on_disk().await,
        epoch: state.store.epoch().await,
        argon2_queue: state.auth.hasher().queue_depth(),
    };
    state.metrics.render(&gauges)
}
