//! User management over HTTP for admins: list, create, disable, enable, remove. The rules
//! (who may, username and password policy, the last admin, closing live sockets) are the
//! account core's ([`crate::core::accounts::Accounts`]).

use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{authenticated, json_body, json_reply, with_state};
use crate::app::AppState;
use crate::core::accounts::{Actor, NewUser, UserView};
use crate::principal::Role;
use crate::principal::{Principal, Scope};

#[derive(Deserialize)]
struct CreateUserRequest {
    username: String,
    password: String,
    #[serde(default = "default_role")]
    role: Role,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
}

fn default_role() -> Role {
    Role::User
}

/// GET /api/v1/users — every user, with whether it is online now (admins only).
pub fn users_list(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "users")
        .and(warp::get())
        .and(authenticated(state.clone(), Scope::Admin))
        .and(with_state(state))
        .and_then(|who: Principal, state: AppState| async move {
            let mut users = Vec::new();
            for (user, online) in state
                .core
                .accounts
                .list_with_presence(Actor::User(&who))
                .await?
            {
                let mut view = serde_json::to_value(UserView::from(&user))
                    .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
                view["online"] = json!(online);
                users.push(view);
            }
            Ok::<_, Rejection>(json_reply(&json!({"users": users}), StatusCode::OK))
        })
}

/// POST /api/v1/users — create a user (admins only).
pub fn users_create(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "users")
        .and(warp::post())
        .and(authenticated(state.clone(), Scope::Admin))
        .and(json_body::<CreateUserRequest>(
            state.config.server.max_body_bytes,
        ))
        .and(with_state(state))
        .and_then(
            |who: Principal, req: CreateUserRequest, state: AppState| async move {
                let user = state
                    .core
                    .accounts
                    .create(
                        Actor::User(&who),
                        NewUser {
                            username: req.username,
                            password: req.password,
                            role: req.role,
                            display_name: req.display_name,
                            avatar_url: req.avatar_url,
                        },
                    )
                    .await?;
                Ok::<_, Rejection>(json_reply(&UserView::from(&user), StatusCode::CREATED))
            },
        )
}

/// POST /api/v1/users/{username}/disable — no more logins; live sockets closed (admins only).
pub fn users_disable(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    set_disabled(state, "disable", true)
}

/// POST /api/v1/users/{username}/enable — lift a disable (admins only).
pub fn users_enable(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    set_disabled(state, "enable", false)
}

fn set_disabled(
    state: AppState,
    verb: &'static str,
    disabled: bool,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "users" / String / String)
        .and_then(move |username: String, action: String| async move {
            if action == verb {
                Ok(username)
            } else {
                Err(warp::reject::not_found())
            }
        })
        .and(warp::post())
        .and(authenticated(state.clone(), Scope::Admin))
        .and(with_state(state))
        .and_then(
            move |username: String, who: Principal, state: AppState| async move {
                let username = crate::wire::percent_decode(&username);
                let user = state
                    .core
                    .accounts
                    .set_disabled(Actor::User(&who), &username, disabled)
                    .await?;
                Ok::<_, Rejection>(json_reply(&UserView::from(&user), StatusCode::OK))
            },
        )
}

/// DELETE /api/v1/users/{username} — remove a user; live sockets closed (admins only).
pub fn users_remove(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "users" / String)
        .and(warp::delete())
        .and(authenticated(state.clone(), Scope::Admin))
        .and(with_state(state))
        .and_then(
            |username: String, who: Principal, state: AppState| async move {
                let username = crate::wire::percent_decode(&username);
                let user = state
                    .core
                    .accounts
                    .remove(Actor::User(&who), &username)
                    .await?;
                Ok::<_, Rejection>(json_reply(
                    &json!({"removed": user.username}),
                    StatusCode::OK,
                ))
            },
        )
}
