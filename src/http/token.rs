//! Token issuance: login, refresh, logout.

use std::net::IpAddr;

use serde::Deserialize;
use warp::http::HeaderValue;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{client_ip, json_body, json_reply, with_state};
use crate::app::AppState;
use crate::auth::TokenPair;

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
    /// Set the access token as an HttpOnly cookie too (for browsers' WebSockets and file
    /// links), which a login and a refresh do unless this is `false`.
    #[serde(default = "yes")]
    cookie: bool,
}

#[derive(Deserialize)]
struct RefreshRequest {
    refresh: String,
    /// As in a login.
    #[serde(default = "yes")]
    cookie: bool,
}

fn yes() -> bool {
    true
}

/// The `natter_access` cookie of an access token (`max_age` 0 clears it): HttpOnly, SameSite
/// Strict, `Secure` when natter serves TLS itself.
fn access_cookie(state: &AppState, value: &str, max_age: i64) -> Option<HeaderValue> {
    let secure = if state.config.tls.enabled() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}",
        crate::wire::ACCESS_COOKIE,
    ))
    .ok()
}

/// A token pair as the answer, with its access token as the cookie when asked.
pub(super) fn pair_reply(
    state: &AppState,
    pair: &TokenPair,
    cookie: bool,
) -> warp::reply::Response {
    let mut response = json_reply(pair, StatusCode::OK);
    if cookie && let Some(value) = access_cookie(state, &pair.access, pair.expires_in) {
        response
            .headers_mut()
            .insert(warp::http::header::SET_COOKIE, value);
    }
    response
}

/// POST /api/token — username and password for an access and a refresh token.
pub fn token_create(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "token")
        .and(warp::post())
        .and(json_body::<LoginRequest>(
            state.config.server.max_body_bytes,
        ))
        .and(client_ip(state.clone()))
        .and(with_state(state))
        .and_then(
            |req: LoginRequest, client: Option<IpAddr>, state: AppState| async move {
                let pair = state
                    .auth
                    .login(&req.username, &req.password, client)
                    .await?;
                Ok::<_, Rejection>(pair_reply(&state, &pair, req.cookie))
            },
        )
}

/// POST /api/token/refresh — a refresh token for a new access token and a rotated refresh token.
pub fn token_refresh(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "token" / "refresh")
        .and(warp::post())
        .and(json_body::<RefreshRequest>(
            state.config.server.max_body_bytes,
        ))
        .and(with_state(state))
        .and_then(|req: RefreshRequest, state: AppState| async move {
            let pair = state.auth.refresh(&req.refresh).await?;
            Ok::<_, Rejection>(pair_reply(&state, &pair, req.cookie))
        })
}

/// POST /api/token/revoke — logout: ends the session of a refresh token.
pub fn token_revoke(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "token" / "revoke")
        .and(warp::post())
        .and(json_body::<RefreshRequest>(
            state.config.server.max_body_bytes,
        ))
        .and(with_state(state))
        .and_then(|req: RefreshRequest, state: AppState| async move {
            state.auth.revoke(&req.refresh).await?;
            let mut response = json_reply(&serde_json::json!({"revoked": true}), StatusCode::OK);
            // Logged out: the cookie goes too.
            if let Some(value) = access_cookie(&state, "", 0) {
                response
                    .headers_mut()
                    .insert(warp::http::header::SET_COOKIE, value);
            }
            Ok::<_, Rejection>(response)
        })
}
