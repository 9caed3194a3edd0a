//! `natter user ...`: accounts, through the account core with the operator's rights.

use std::fmt::Write as _;

use serde_json::json;

use super::Reply;
use crate::app::AppState;
use crate::core::accounts::{Actor, NewUser, UserView};
use crate::error::Error;
use crate::principal::Role;

/// `user add`: idempotent, an existing user is left as it is.
pub(super) async fn add(
    state: &AppState,
    username: String,
    role: Role,
    display_name: Option<String>,
    avatar_url: Option<String>,
    password: String,
) -> Result<Reply, Error> {
    crate::core::accounts::validate_username(&username)?;
    let accounts = &state.core.accounts;
    if let Ok(existing) = accounts.get(&username).await {
        return Ok(Reply::new(
            format!("user {username} exists already (unchanged)"),
            json!({"created": false, "user": UserView::from(&existing)}),
        ));
    }
    let user = accounts
        .create(
            Actor::Operator,
            NewUser {
                username,
                password,
                role,
                display_name,
                avatar_url,
            },
        )
        .await?;
    Ok(Reply::new(
        format!("created user {} ({})", user.username, user.role.as_str()),
        json!({"created": true, "user": UserView::from(&user)}),
    ))
}

pub(super) async fn list(state: &AppState) -> Result<Reply, Error> {
    let users: Vec<UserView> = state
        .core
        .accounts
        .list(Actor::Operator)
        .await?
        .iter()
        .map(UserView::from)
        .collect();
    Ok(Reply::new(user_table(&users), json!(users)))
}

pub(super) async fn show(state: &AppState, username: &str) -> Result<Reply, Error> {
    let user = UserView::from(&state.core.accounts.get(username).await?);
    Ok(Reply::new(
        user_table(std::slice::from_ref(&user)),
        json!(user),
    ))
}

pub(super) async fn passwd(
    state: &AppState,
    username: &str,
    password: String,
) -> Result<Reply, Error> {
    let accounts = &state.core.accounts;
    // A missing user is told before a password that would not do.
    accounts.get(username).await?;
    accounts
        .set_password(Actor::Operator, username, password)
        .await?;
    Ok(Reply::new(
        format!("password of {username} changed; its sessions were ended"),
        json!({"username": username}),
    ))
}

pub(super) async fn set_role(state: &AppState, username: &str, role: Role) -> Result<Reply, Error> {
    state
        .core
        .accounts
        .set_role(Actor::Operator, username, role)
        .await?;
    Ok(Reply::new(
        format!("{username} is now {}", role.as_str()),
        json!({"username": username, "role": role}),
    ))
}

pub(super) async fn set_disabled(
    state: &AppState,
    username: &str,
    disabled: bool,
) -> Result<Reply, Error> {
    state
        .core
        .accounts
        .set_disabled(Actor::Operator, username, disabled)
        .await?;
    let word = if disabled { "disabled" } else { "enabled" };
    Ok(Reply::new(
        format!("{username} is {word}"),
        json!({"username": username, "disabled": disabled}),
    ))
}

/// `user remove`: idempotent, a missing user is nothing to do.
pub(super) async fn remove(state: &AppState, username: &str) -> Result<Reply, Error> {
    let accounts = &state.core.accounts;
    if accounts.get(username).await.is_err() {
        return Ok(Reply::new(
            format!("no user {username} (nothing to do)"),
            json!({"removed": false}),
        ));
    }
    accounts.remove(Actor::Operator, username).await?;
    Ok(Reply::new(
        format!("{username} was removed"),
        json!({"removed": true}),
    ))
}

fn user_table(users: &[UserView]) -> String {
    let mut text = format!(
        "{:<32} {:<6} {:<9} {:<21} LAST SEEN\n",
        "USERNAME", "ROLE", "STATUS", "CREATED"
    );
    for user in users {
        let _ = writeln!(
            text,
            "{:<32} {:<6} {:<9} {:<21} {}",
            user.username,
            user.role.as_str(),
            if user.disabled { "disabled" } else { "active" },
            crate::timefmt::rfc3339(user.created_at),
            user.last_seen
                .map_or_else(|| "never".to_owned(), crate::timefmt::rfc3339),
        );
    }
    text.trim_end().to_owned()
}

/// `invite create`: a one-time invite link, shown once.
pub(super) async fn invite_create(
    state: &AppState,
    role: Role,
    expires_in_secs: Option<u64>,
) -> Result<Reply, Error> {
    let (invite, token) = state
        .core
        .accounts
        .create_invite(Actor::Operator, role, expires_in_secs)
        .await?;
    let path = format!("/#invite={token}");
    Ok(Reply::new(
        format!(
            "{path}\n# invite {} ({}), one use, expires {}; open it on the server's address",
            invite.id,
            role.as_str(),
            crate::timefmt::rfc3339(invite.expires_at),
        ),
        json!({"id": invite.id, "token": token, "url": path, "role": role,
               "expires_at": invite.expires_at}),
    ))
}
