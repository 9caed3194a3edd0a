//! Accounts a team runs itself, over HTTP: a user's own password and profile
//! (`/api/v1/me/...`), an admin's password resets and role changes, and invite links. The rules
//! are the account core's ([`crate::core::accounts::Accounts`]).

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{authenticated, client_ip, json_body, json_reply, with_state};
use crate::app::AppState;
use crate::core::accounts::{Actor, NewUser, UserView};
use crate::error::Error;
use crate::principal::{Principal, Role, Scope};
use crate::store::Invite;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePasswordRequest {
    old_password: String,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetPasswordRequest {
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleRequest {
    role: Role,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptRequest {
    username: String,
    password: String,
    #[serde(default)]
    display_name: Option<String>,
    /// As in a login.
    #[serde(default = "yes")]
    cookie: bool,
}

fn yes() -> bool {
    true
}

/// A field of a PATCH body: absent (unchanged), `null` (reset) or a string.
fn patch_field(
    body: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<Option<String>>, Error> {
    match body.get(name) {
        None => Ok(None),
        Some(serde_json::Value::Null) => Ok(Some(None)),
        Some(serde_json::Value::String(text)) => Ok(Some(Some(text.clone()))),
        Some(_) => Err(Error::BadRequest(format!(
            "{name} must be a string or null"
        ))),
    }
}

/// An invite as admins see it: no token, no hash.
fn invite_view(invite: &Invite) -> serde_json::Value {
    json!({
        "id": invite.id,
        "role": invite.role,
        "created_by": invite.created_by,
        "created_at": invite.created_at,
        "expires_at": invite.expires_at,
    })
}

/// POST /api/v1/me/password — change your own password (the old one required); your other
/// sessions end.
pub fn me_password(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "me" / "password")
        .and(warp::post())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(json_body::<ChangePasswordRequest>(
            state.config.server.max_body_bytes,
        ))
        .and(with_state(state))
        .and_then(
            |who: Principal, req: ChangePasswordRequest, state: AppState| async move {
                state
                    .core
                    .accounts
                    .change_own_password(&who, &req.old_password, req.new_password)
                    .await?;
                Ok::<_, Rejection>(json_reply(
                    &json!({"changed": true, "other_sessions_ended": true}),
                    StatusCode::OK,
                ))
            },
        )
}

/// PATCH /api/v1/me — set your display name and avatar URL (`null` resets).
pub fn me_patch(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "me")
        .and(warp::patch())
        .and(authenticated(state.clone(), Scope::Chat))
        .and(json_body::<serde_json::Map<String, serde_json::Value>>(
            state.config.server.max_body_bytes,
        ))
        .and(with_state(state))
        .and_then(
            |who: Principal,
             body: serde_json::Map<String, serde_json::Value>,
             state: AppState| async move {
                if let Some(other) = body
                    .keys()
                    .find(|k| !matches!(k.as_str(), "display_name" | "avatar_url"))
                {
                    return Err(Error::BadRequest(format!(
                        "unknown field {other:?}: only display_name and avatar_url may change"
                    ))
                    .into());
                }
                let display_name = patch_field(&body, "display_name")?;
                let avatar_url = patch_field(&body, "avatar_url")?;
                let user = state
                    .core
                    .accounts
                    .update_profile(&who, display_name, avatar_url)
                    .await?;
                Ok::<_, Rejection>(json_reply(&user, StatusCode::OK))
            },
        )
}

/// POST /api/v1/users/{username}/password — set a user's password (admins); every session of
/// that user ends.
pub fn users_password(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "users" / String / "password")
        .and(warp::post())
        .and(authenticated(state.clone(), Scope::Admin))
        .and(json_body::<ResetPasswordRequest>(
            state.config.server.max_body_bytes,
        ))
        .and(with_state(state))
        .and_then(
            |username: String, who: Principal, req: ResetPasswordRequest, state: AppState| async move {
                let username = crate::wire::percent_decode(&username);
                let user = state
                    .core
                    .accounts
                    .set_password(Actor::User(&who), &username, req.password)
                    .await?;
                Ok::<_, Rejection>(json_reply(&UserView::from(&user), StatusCode::OK))
            },
        )
}

/// PUT /api/v1/users/{username}/role — make a user `admin` or `user` (admins; the last enabled
/// admin stays one).
pub fn users_role(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "users" / String / "role")
        .and(warp::put())
        .and(authenticated(state.clone(), Scope::Admin))
        .and(json_body::<RoleRequest>(state.config.server.max_body_bytes))
        .and(with_state(state))
        .and_then(
            |username: String, who: Principal, req: RoleRequest, state: AppState| async move {
                let username = crate::wire::percent_decode(&username);
                let user = state
                    .core
                    .accounts
                    .set_role(Actor::User(&who), &username, req.role)
                    .await?;
                Ok::<_, Rejection>(json_reply(&UserView::from(&user), StatusCode::OK))
            },
        )
}

/// POST /api/v1/invites — a one-time, expiring invite link (admins).
pub fn invites_create(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "invites")
        .and(warp::post())
        .and(authenticated(state.clone(), Scope::Admin))
        .and(json_body::<InviteRequest>(
            state.config.server.max_body_bytes,
        ))
        .and(with_state(state))
        .and_then(
            |who: Principal, req: InviteRequest, state: AppState| async move {
                let (invite, token) = state
                    .core
                    .accounts
                    .create_invite(
                        Actor::User(&who),
                        req.role.unwrap_or(Role::User),
                        req.expires_in_secs,
                    )
                    .await?;
                let mut body = invite_view(&invite);
                body["token"] = json!(token);
                body["url"] = json!(format!("/#invite={token}"));
                Ok::<_, Rejection>(json_reply(&body, StatusCode::CREATED))
            },
        )
}

/// GET /api/v1/invites — pending invites, without their tokens (admins).
pub fn invites_list(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "invites")
        .and(warp::get())
        .and(authenticated(state.clone(), Scope::Admin))
        .and(with_state(state))
        .and_then(|who: Principal, state: AppState| async move {
            let invites: Vec<_> = state
                .core
                .accounts
                .invites(Actor::User(&who))
                .await?
                .iter()
                .map(invite_view)
                .collect();
            Ok::<_, Rejection>(json_reply(&json!({"invites": invites}), StatusCode::OK))
        })
}

/// DELETE /api/v1/invites/{id} — revoke a pending invite (admins).
pub fn invites_revoke(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "invites" / u64)
        .and(warp::delete())
        .and(authenticated(state.clone(), Scope::Admin))
        .and(with_state(state))
        .and_then(|id: u64, who: Principal, state: AppState| async move {
            state
                .core
                .accounts
                .revoke_invite(Actor::User(&who), id)
                .await?;
            Ok::<_, Rejection>(json_reply(&json!({"revoked": id}), StatusCode::OK))
        })
}

/// POST /api/v1/invites/{token}/accept — sign up with an invite (no login): the new account's
/// tokens, as `POST /api/token` answers.
pub fn invites_accept(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "invites" / String / "accept")
        .and(warp::post())
        .and(json_body::<AcceptRequest>(
            state.config.server.max_body_bytes,
        ))
        .and(client_ip(state.clone()))
        .and(with_state(state))
        .and_then(
            |token: String, req: AcceptRequest, client: Option<IpAddr>, state: AppState| async move {
                let user = state
                    .core
                    .accounts
                    .accept_invite(
                        &token,
                        NewUser {
                            username: req.username,
                            password: req.password,
                            role: Role::User,
                            display_name: req.display_name,
                            avatar_url: None,
                        },
                        client,
                    )
                    .await?;
                let pair = state.auth.start_session(&user).await?;
                Ok::<_, Rejection>(super::token::pair_reply(&state, &pair, req.cookie))
            },
        )
}
