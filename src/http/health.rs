//! Liveness and readiness probes.

use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{error_response, json_reply, with_state};
use crate::error::Error;
use crate::server::AppState;

/// GET /healthz — the process is alive and answering.
pub fn healthz() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("healthz")
        .and(warp::get())
        .map(|| json_reply(&serde_json::json!({"status": "ok"}), StatusCode::OK))
}

/// GET /readyz — the store is open and the server is not shutting down.
pub fn readyz(state: AppState) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("readyz")
        .and(warp::get())
        .and(with_state(state))
        .map(|state: AppState| {
            if state.is_shutting_down() {
                error_response(&Error::Unavailable("server is shutting down".to_owned()))
            } else if !state.store.is_healthy() {
                error_response(&Error::Internal("store is not available".to_owned()))
            } else {
                json_reply(&serde_json::json!({"status": "ready"}), StatusCode::OK)
            }
        })
}
