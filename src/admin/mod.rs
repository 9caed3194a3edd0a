//! The admin API: the operations behind `natter user|room|token|sessions|webhook|stats|backup|verify`.
//! A running daemon serves them on its control socket ([`socket`]); when none runs, the CLI
//! opens the data dir and calls [`execute`] itself. One function, two transports, same results.
//! Every operation goes through the core (accounts, chat, auth), like any other edge; the verbs
//! are grouped one file each (users, rooms, tokens and sessions, store maintenance).

mod maintenance;
mod rooms;
pub mod socket;
mod tokens;
mod users;
mod webhooks;

pub use maintenance::deliver_backup;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::Error;
use crate::principal::{Principal, Role};

/// One admin operation, as the CLI sends it over the control socket (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    UserAdd {
        username: String,
        role: Role,
        display_name: Option<String>,
        avatar_url: Option<String>,
        password: String,
    },
    UserList,
    UserShow {
        username: String,
    },
    UserPasswd {
        username: String,
        password: String,
    },
    UserSetRole {
        username: String,
        role: Role,
    },
    UserDisable {
        username: String,
    },
    UserEnable {
        username: String,
    },
    UserRemove {
        username: String,
    },
    RoomCreate {
        name: String,
        owner: String,
        private: bool,
        transient: bool,
        retention_secs: u64,
    },
    RoomList,
    RoomShow {
        name: String,
    },
    RoomDelete {
        name: String,
    },
    RoomMembersAdd {
        name: String,
        username: String,
    },
    RoomMembersRemove {
        name: String,
        username: String,
    },
    RoomPurge {
        name: String,
        /// Unix milliseconds: messages created before it are deleted.
        before_ms: i64,
    },
    TokenIssue {
        username: String,
        scopes: String,
        ttl_secs: u64,
        label: String,
    },
    InviteCreate {
        role: Role,
        expires_in_secs: Option<u64>,
    },
    TokenList,
    TokenRevoke {
        id: Uuid,
    },
    SessionsList,
    SessionsKick {
        /// A connection id, a session id, or a username.
        target: String,
    },
    WebhookAdd {
        url: String,
        events: Vec<String>,
    },
    WebhookList,
    WebhookRemove {
        id: u64,
    },
    WebhookTest {
        id: u64,
    },
    WebhookEnable {
        id: u64,
    },
    Stats,
    /// Writes a backup into the data dir; the CLI moves it where the operator asked (the
    /// daemon may not be allowed to write there).
    Backup,
    Verify,
}

impl Request {
    /// Operations that only make sense against a running daemon.
    pub fn needs_daemon(&self) -> bool {
        matches!(self, Request::SessionsKick { .. })
    }
}

/// What an operation returns: text for people, and the same as JSON for `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub text: String,
    pub data: Value,
}

impl Reply {
    pub(crate) fn new(text: impl Into<String>, data: Value) -> Reply {
        Reply {
            text: text.into(),
            data,
        }
    }
}

/// The operator, acting with an admin's rights (no account of its own).
pub(crate) fn operator() -> Principal {
    Principal {
        user_id: Uuid::nil(),
        number: 0,
        username: "operator".to_owned(),
        role: Role::Admin,
        session_id: Uuid::nil(),
        expires_at: i64::MAX,
        guest: false,
        scopes: None,
    }
}

/// Runs one admin operation. `online`: this is the running daemon (live sessions exist).
pub async fn execute(state: &AppState, request: Request, online: bool) -> Result<Reply, Error> {
    match request {
        Request::UserAdd {
            username,
            role,
            display_name,
            avatar_url,
            password,
        } => users::add(state, username, role, display_name, avatar_url, password).await,
        Request::UserList => users::list(state).await,
        Request::UserShow { username } => users::show(state, &username).await,
        Request::UserPasswd { username, password } => {
            users::passwd(state, &username, password).await
        }
        Request::UserSetRole { username, role } => users::set_role(state, &username, role).await,
        Request::UserDisable { username } => users::set_disabled(state, &username, true).await,
        Request::UserEnable { username } => users::set_disabled(state, &username, false).await,
        Request::UserRemove { username } => users::remove(state, &username).await,
        Request::RoomCreate {
            name,
            owner,
            private,
            transient,
            retention_secs,
        } => rooms::create(state, name, owner, private, transient, retention_secs).await,
        Request::RoomList => rooms::list(state).await,
        Request::RoomShow { name } => rooms::show(state, &name).await,
        Request::RoomDelete { name } => rooms::delete(state, &name).await,
        Request::RoomMembersAdd { name, username } => {
            rooms::add_member(state, &name, &username).await
        }
        Request::RoomMembersRemove { name, username } => {
            rooms::remove_member(state, &name, &username).await
        }
        Request::RoomPurge { name, before_ms } => rooms::purge(state, &name, before_ms).await,
        Request::TokenIssue {
            username,
            scopes,
            ttl_secs,
            label,
        } => tokens::issue(state, &username, &scopes, ttl_secs, &label).await,
        Request::InviteCreate {
            role,
            expires_in_secs,
        } => users::invite_create(state, role, expires_in_secs).await,
        Request::TokenList => tokens::list(state).await,
        Request::TokenRevoke { id } => tokens::revoke(state, id).await,
        Request::SessionsList => Ok(tokens::sessions_list(state, online)),
        Request::SessionsKick { target } => tokens::sessions_kick(state, &target).await,
        Request::WebhookAdd { url, events } => webhooks::add(state, url, events).await,
        Request::WebhookList => webhooks::list(state).await,
        Request::WebhookRemove { id } => webhooks::remove(state, id).await,
        Request::WebhookTest { id } => webhooks::test(state, id).await,
        Request::WebhookEnable { id } => webhooks::enable(state, id).await,
        Request::Stats => maintenance::stats(state, online).await,
        Request::Backup => maintenance::backup(state).await,
        Request::Verify => maintenance::verify(state).await,
    }
}
