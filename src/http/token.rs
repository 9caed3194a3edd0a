//! Token issuance: login, refresh, logout.

use std::net::IpAddr;

use serde::Deserialize;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{client_ip, json_body, json_reply, with_state};
use crate::app::AppState;

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
    /// Also set the access token as an HttpOnly cookie (for browsers' WebSockets).
    #[serde(default)]
    cookie: bool,
}

#[derive(Deserialize)]
struct RefreshRequest {
    refresh: String,
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
                let mut response = json_reply(&pair, StatusCode::OK);
                if req.cookie {
                    let cookie = format!(
                        "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                        crate::wire::ACCESS_COOKIE,
                        pair.access,
                        pair.expires_in
                    );
                    if let Ok(value) = warp::http::HeaderValue::from_str(&cookie) {
                        response
                            .headers_mut()
                            .insert(warp::http::header::SET_COOKIE, value);
                    }
                }
                Ok::<_, Rejection>(response)
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
            Ok::<_, Rejection>(json_reply(&pair, StatusCode::OK))
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
            Ok::<_, Rejection>(json_reply(
                &serde_json::json!({"revoked": true}),
                StatusCode::OK,
            ))
        })
}
