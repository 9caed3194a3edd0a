//! Who is asking: an authenticated caller ([`Principal`]), what a service token may do
//! ([`Scopes`]), and account roles ([`Role`]). Shared vocabulary of every layer; imports nothing
//! of natter but the error type.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

/// An account's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            other => Err(format!("unknown role {other:?} (expected admin or user)")),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    /// The account's number ([`crate::store::User::number`]), for protocols whose user ids are
    /// integers; 0 for a guest and for the operator.
    pub number: u64,
    pub username: String,
    pub role: Role,
    pub session_id: Uuid,
    /// Unix seconds at which the access token expires.
    pub expires_at: i64,
    /// A guest: no account and no token (a FastChat client admitted by `fastchat.guests`).
    /// Nothing is stored for a guest, and it is gone when its connection ends.
    pub guest: bool,
    /// A service token's scopes (`natter token issue`); `None` for a login, which has every
    /// right of its user's role.
    pub scopes: Option<Scopes>,
}

/// What a service token may do. A login may do everything its role allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes {
    /// Chat as the user: WebSockets, rooms, messages, files, the notification inbox.
    pub chat: bool,
    /// Server-side publishing: `POST /api/v1/publish` and sending notifications.
    pub publish: bool,
    /// The admin API (only for a user who is an admin).
    pub admin: bool,
}

impl Scopes {
    pub const NAMES: [&'static str; 3] = ["chat", "publish", "admin"];

    /// Parses `chat,publish`-style lists (comma or space separated).
    pub fn parse(text: &str) -> Result<Scopes, Error> {
        let mut scopes = Scopes::default();
        for name in text.split([',', ' ']).filter(|s| !s.is_empty()) {
            match name {
                "chat" => scopes.chat = true,
                "publish" => scopes.publish = true,
                "admin" => scopes.admin = true,
                other => {
                    return Err(Error::BadRequest(format!(
                        "unknown scope {other:?}: expected chat, publish or admin"
                    )));
                }
            }
        }
        if scopes == Scopes::default() {
            return Err(Error::BadRequest(
                "a token needs at least one scope".to_owned(),
            ));
        }
        Ok(scopes)
    }

    /// `chat publish`: the form tokens and listings carry.
    pub fn to_text(self) -> String {
        let flags = [self.chat, self.publish, self.admin];
        Scopes::NAMES
            .iter()
            .zip(flags)
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One scope a service token may hold: what an operation needs of the caller's token. A login
/// holds every scope (its role still decides what it may do); a service token holds only those
/// it was issued with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Chat as the user: WebSockets, rooms, messages, files, the notification inbox.
    Chat,
    /// `POST /api/v1/publish` and sending notifications.
    Publish,
    /// The admin API.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Chat => "chat",
            Scope::Publish => "publish",
            Scope::Admin => "admin",
        }
    }
}

impl Principal {
    /// Whether the caller's token carries `scope` (every login and guest does; a service token
    /// only when issued with it). Roles are checked by the rules themselves, not here.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.is_none_or(|s| match scope {
            Scope::Chat => s.chat,
            Scope::Publish => s.publish,
            Scope::Admin => s.admin,
        })
    }

    /// [`Principal::has_scope`], else `Forbidden` naming the missing scope.
    pub fn require_scope(&self, scope: Scope) -> Result<(), Error> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this service token's scopes do not include {}",
                scope.as_str()
            )))
        }
    }

    /// An admin, and (for a service token) one whose scopes include `admin`.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin && self.has_scope(Scope::Admin)
    }

    /// May publish events and send notifications: an admin login, or a service token with the
    /// `publish` scope.
    pub fn may_publish(&self) -> bool {
        match self.scopes {
            None => self.role == Role::Admin,
            Some(scopes) => scopes.publish,
        }
    }

    /// May chat as its user (every login and guest; a service token only with `chat`).
    pub fn may_chat(&self) -> bool {
        self.has_scope(Scope::Chat)
    }

    /// A guest with this user id (chosen by the dialect that admits it, never an account's).
    /// Its username (`guest:<id>`) cannot be an account's, as usernames have no `:`.
    pub fn guest(user_id: Uuid) -> Principal {
        Principal {
            user_id,
            number: 0,
            username: format!("guest:{}", user_id.simple()),
            role: Role::User,
            session_id: Uuid::new_v4(),
            expires_at: i64::MAX,
            guest: true,
            scopes: None,
        }
    }
}
