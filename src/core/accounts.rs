//! Account rules: username syntax, password policy, roles, enabling and disabling. The CLI, the
//! HTTP API and (later) the admin socket all manage users through these functions.

use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use crate::auth::password::MAX_PASSWORD_BYTES;
use crate::auth::{Auth, Hasher, Verified};
use crate::config::AccountsConfig;
use crate::error::Error;
use crate::events::KickReason;
use crate::hub::Broker;
use crate::principal::{Principal, Role, Scope};
use crate::store::{Invite, Store, User, now_secs};

/// What a connection is told when its user's role changed (it closes, see
/// [`Accounts::set_role`]).
pub const ROLE_CHANGED: &str = "role changed";

/// Username rules: 3 to 32 characters of `a-z 0-9 _ . -`.
pub fn validate_username(username: &str) -> Result<(), Error> {
    let len = username.chars().count();
    if !(3..=32).contains(&len) {
        return Err(Error::BadRequest(format!(
            "username must be 3 to 32 characters, got {len}"
        )));
    }
    if let Some(bad) = username
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'))
    {
        return Err(Error::BadRequest(format!(
            "username may contain only a-z, 0-9, '_', '.' and '-' (found {bad:?})"
        )));
    }
    Ok(())
}

pub fn validate_password(password: &str, min_len: usize) -> Result<(), Error> {
    let len = password.chars().count();
    if len < min_len {
        return Err(Error::BadRequest(format!(
            "password must be at least {min_len} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::BadRequest(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// A user as shown to operators and clients: everything but the password hash.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub id: Uuid,
    pub number: u64,
    /// The same number under the name clients of the integer-id protocols (and SimpleJWT's
    /// claim) use for it.
    pub user_id: u64,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub role: Role,
    pub disabled: bool,
    pub created_at: i64,
    pub last_seen: Option<i64>,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        UserView {
            id: user.id,
            number: user.number,
            user_id: user.number,
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            avatar_url: user.avatar_url.clone(),
            role: user.role,
            disabled: user.disabled,
            created_at: user.created_at,
            last_seen: user.last_seen,
        }
    }
}

/// What creating a user needs.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

/// Who asks for an account operation: the operator (the CLI on the data dir, later the admin
/// socket) or an authenticated user, who must be an admin.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    Operator,
    User(&'a Principal),
}

impl Actor<'_> {
    fn authorize(self) -> Result<(), Error> {
        match self {
            Actor::Operator => Ok(()),
            Actor::User(who) if who.is_admin() => Ok(()),
            Actor::User(_) => Err(Error::Forbidden("managing users needs an admin".to_owned())),
        }
    }
}

/// The account service.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    auth: Auth,
    hasher: Hasher,
    broker: Arc<dyn Broker>,
    min_password_length: usize,
    /// Invite links' bounds (`[accounts]`).
    invites: AccountsConfig,
    /// Where `user.created|disabled|removed` go (see `crate::webhooks`).
    webhooks: Arc<crate::webhooks::Webhooks>,
}

impl Accounts {
    pub fn new(
        store: Store,
        auth: Auth,
        broker: Arc<dyn Broker>,
        min_password_length: usize,
        invites: AccountsConfig,
        webhooks: Arc<crate::webhooks::Webhooks>,
    ) -> Accounts {
        Accounts {
            webhooks,
            store,
            hasher: auth.hasher().clone(),
            auth,
            broker,
            min_password_length,
            invites,
        }
    }

    /// Who an access token is: one of natter's own as it is, an external issuer's mapped to its
    /// user, created on first sight (a durable write). Every edge authenticates with this.
    pub async fn authenticate(&self, access: &str) -> Result<Principal, Error> {
        match self.auth.verify(access).await? {
            Verified::Own(principal) => Ok(principal),
            Verified::External(identity) => {
                let user = self
                    .provision_external(
                        &identity.issuer,
                        &identity.subject,
                        &identity.username_hint,
                        identity.default_role,
                    )
                    .await?;
                crate::auth::external_principal(user, &identity)
            }
        }
    }

    /// New credentials for a connection that has `current` (an in-band renewal): the token must
    /// be the same user's, and (as at connect) carry the `chat` scope.
    pub async fn renew(&self, current: &Principal, access: &str) -> Result<Principal, Error> {
        let principal = self.authenticate(access).await?;
        if principal.user_id != current.user_id {
            return Err(Error::Forbidden(
                "the new token belongs to another user".to_owned(),
            ));
        }
        principal.require_scope(Scope::Chat)?;
        Ok(principal)
    }

    /// Whether a connection's principal, authenticated a moment ago, still holds now that the
    /// connection is registered (and so reached by kicks): `Some(reason)` to close it when its
    /// account was removed or disabled, or its role changed, in between. Without this check a
    /// kick that ran between the two would miss the connection.
    pub async fn still_current(&self, who: &Principal) -> Result<Option<KickReason>, Error> {
        if who.guest {
            return Ok(None);
        }
        Ok(match self.store.user(who.user_id).await? {
            None => Some(KickReason::AccountClosed("account removed")),
            Some(user) if user.disabled => Some(KickReason::AccountClosed("account disabled")),
            Some(user) if user.role != who.role => Some(KickReason::SessionEnded(ROLE_CHANGED)),
            Some(_) => None,
        })
    }

    pub async fn create(&self, actor: Actor<'_>, new: NewUser) -> Result<User, Error> {
        actor.authorize()?;
        validate_username(&new.username)?;
        validate_password(&new.password, self.min_password_length)?;
        if let Some(url) = &new.avatar_url {
            validate_avatar_url(url)?;
        }
        if let Some(name) = new.display_name.as_deref().filter(|n| !n.trim().is_empty()) {
            validate_display_name(name)?;
        }
        if self.store.user_by_name(&new.username).await?.is_some() {
            return Err(Error::Conflict(format!(
                "user {} already exists",
                new.username
            )));
        }
        let password_hash = self.hasher.hash(new.password).await?;
        let display_name = new
            .display_name
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| new.username.clone());
        let user = self
            .store
            .insert_user(User {
                id: Uuid::new_v4(),
                number: 0,
                username: new.username,
                display_name,
                avatar_url: new.avatar_url,
                password_hash,
                role: new.role,
                disabled: false,
                created_at: now_secs(),
                last_seen: None,
            })
            .await?;
        self.user_event("user.created", &user);
        Ok(user)
    }

    /// A `user.*` webhook event about `user`.
    fn user_event(&self, kind: &'static str, user: &User) {
        self.webhooks.emit(
            kind,
            serde_json::json!({
                "user": user.username,
                "user_id": user.id,
                "display_name": user.display_name,
                "role": user.role,
            }),
        );
    }

    /// The user of an external identity (an `auth.external` issuer and its user id), created on
    /// first sight under `username_hint` made valid ([`external_username`]), with a numeric
    /// suffix when that name belongs to someone else. The user has no password: its hash is of
    /// 32 random bytes nobody ever sees, so password login never succeeds. Durable when it
    /// returns; an identity seen before (even concurrently) gets its existing user.
    pub async fn provision_external(
        &self,
        issuer: &str,
        subject: &str,
        username_hint: &str,
        role: Role,
    ) -> Result<User, Error> {
        if let Some(user) = self.store.external_user(issuer, subject).await? {
            return Ok(user);
        }
        let base = external_username(username_hint);
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
        let password_hash = self.hasher.hash(crate::auth::base64url(&random)).await?;
        let candidates = username_candidates(&base);
        let user = self
            .store
            .insert_external_user(
                issuer,
                subject,
                candidates,
                User {
                    id: Uuid::new_v4(),
                    number: 0,
                    username: base.clone(),
                    display_name: base,
                    avatar_url: None,
                    password_hash,
                    role,
                    disabled: false,
                    created_at: now_secs(),
                    last_seen: None,
                },
            )
            .await?;
        tracing::info!(user = %user.username, user_id = %user.id, issuer = %issuer, "user of an external issuer");
        Ok(user)
    }

    /// The caller's own account.
    pub async fn me(&self, who: &Principal) -> Result<UserView, Error> {
        self.store
            .user(who.user_id)
            .await?
            .map(|user| UserView::from(&user))
            .ok_or(Error::InvalidToken("user no longer exists"))
    }

    /// Every user with whether it has a live connection now (the admin Users page).
    pub async fn list_with_presence(&self, actor: Actor<'_>) -> Result<Vec<(User, bool)>, Error> {
        let users = self.list(actor).await?;
        Ok(users
            .into_iter()
            .map(|user| {
                let online = self.broker.is_online(user.id);
                (user, online)
            })
            .collect())
    }

    /// The caller changes their own password: `old` must be the current one (checked and
    /// throttled as a login on their name), `new` meets the policy. Every other session of the
    /// caller ends (tokens refused, connections closed); the calling session stays valid.
    pub async fn change_own_password(
        &self,
        who: &Principal,
        old: &str,
        new: String,
    ) -> Result<(), Error> {
        if who.guest {
            return Err(Error::Forbidden("a guest has no password".to_owned()));
        }
        let user = self
            .store
            .user(who.user_id)
            .await?
            .ok_or(Error::InvalidToken("user no longer exists"))?;
        validate_password(&new, self.min_password_length)?;
        self.auth.check_password(&user, old).await?;
        let hash = self.hasher.hash(new).await?;
        let username = user.username.clone();
        self.store
            .update_user(&username, move |u| {
                u.password_hash = hash;
                Ok(())
            })
            .await?;
        let (sessions, connections) = self
            .auth
            .end_other_sessions(user.id, who.session_id, "password changed")
            .await?;
        tracing::info!(user = %user.username, sessions, connections, "password changed; other sessions ended");
        Ok(())
    }

    /// The caller edits their own profile. `None` leaves a field as it is; `Some(None)` resets
    /// it (the display name to the username, the avatar to none).
    pub async fn update_profile(
        &self,
        who: &Principal,
        display_name: Option<Option<String>>,
        avatar_url: Option<Option<String>>,
    ) -> Result<UserView, Error> {
        if who.guest {
            return Err(Error::Forbidden("a guest has no profile".to_owned()));
        }
        let user = self
            .store
            .user(who.user_id)
            .await?
            .ok_or(Error::InvalidToken("user no longer exists"))?;
        let display_name = match display_name {
            None => user.display_name.clone(),
            Some(None) => user.username.clone(),
            Some(Some(name)) => {
                let name = name.trim().to_owned();
                validate_display_name(&name)?;
                name
            }
        };
        let avatar_url = match avatar_url {
            None => user.avatar_url.clone(),
            Some(None) => None,
            Some(Some(url)) if url.trim().is_empty() => None,
            Some(Some(url)) => {
                validate_avatar_url(&url)?;
                Some(url)
            }
        };
        let updated = self
            .store
            .set_profile(user.id, display_name, avatar_url)
            .await?;
        Ok(UserView::from(&updated))
    }

    /// A new invite link (admins): a random token (32 bytes, base64url) of which only the
    /// SHA-256 is stored; one-time, expiring after `expires_in_secs` (default and maximum in
    /// `[accounts]`), at most `accounts.max_pending_invites` pending. Returns the invite and
    /// its token, shown this once.
    pub async fn create_invite(
        &self,
        actor: Actor<'_>,
        role: Role,
        expires_in_secs: Option<u64>,
    ) -> Result<(Invite, String), Error> {
        actor.authorize()?;
        let ttl = expires_in_secs.unwrap_or(self.invites.invite_ttl_secs);
        if ttl == 0 || ttl > self.invites.max_invite_ttl_secs {
            return Err(Error::BadRequest(format!(
                "expires_in_secs must be 1 to {} (accounts.max_invite_ttl_secs)",
                self.invites.max_invite_ttl_secs
            )));
        }
        let created_by = match actor {
            Actor::User(who) => who.user_id,
            Actor::Operator => Uuid::nil(),
        };
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
        let token = crate::auth::base64url(&random);
        let now = now_secs();
        let invite = self
            .store
            .insert_invite(
                Invite {
                    id: 0,
                    token_hash: token_hash(&token),
                    role,
                    created_by,
                    created_at: now,
                    expires_at: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
                },
                self.invites.max_pending_invites,
            )
            .await?;
        tracing::info!(invite = invite.id, role = role.as_str(), "invite created");
        Ok((invite, token))
    }

    /// Pending invites (admins), without their tokens.
    pub async fn invites(&self, actor: Actor<'_>) -> Result<Vec<Invite>, Error> {
        actor.authorize()?;
        self.store.invites().await
    }

    /// Revokes a pending invite (admins); `NotFound` when there is none with that id.
    pub async fn revoke_invite(&self, actor: Actor<'_>, id: u64) -> Result<(), Error> {
        actor.authorize()?;
        if self.store.remove_invite(id).await? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("no pending invite {id}")))
        }
    }

    /// Signs up with an invite token (no login needed): creates the user with the invite's
    /// role and consumes the invite, in one write, so two accepts of one token give one user.
    /// Throttled as logins are on `client`'s address: an unknown token counts as a failure.
    pub async fn accept_invite(
        &self,
        token: &str,
        new: NewUser,
        client: Option<std::net::IpAddr>,
    ) -> Result<User, Error> {
        let ip_key = client.map(|ip| format!("ip:{ip}"));
        let keys: Vec<&str> = ip_key.as_deref().into_iter().collect();
        let attempt = self.auth.throttle_attempt(&keys)?;
        // Tokens are 43 characters; a longer one is no token, and hashing it is bounded.
        if token.len() > 128 {
            attempt.failed();
            return Err(Error::NotFound(
                "this invite link is unknown, was used already, or was revoked".to_owned(),
            ));
        }
        validate_username(&new.username)?;
        validate_password(&new.password, self.min_password_length)?;
        let display_name = match new.display_name.map(|n| n.trim().to_owned()) {
            Some(name) if !name.is_empty() => {
                validate_display_name(&name)?;
                name
            }
            _ => new.username.clone(),
        };
        // Cheap refusals before the hash: an unknown or used token, a taken name.
        let hash = token_hash(token);
        if !self
            .store
            .invites()
            .await?
            .iter()
            .any(|i| i.token_hash == hash)
        {
            attempt.failed();
            return Err(Error::NotFound(
                "this invite link is unknown, was used already, revoked or expired".to_owned(),
            ));
        }
        drop(attempt);
        let password_hash = self.hasher.hash(new.password).await?;
        let user = self
            .store
            .accept_invite(
                hash,
                User {
                    id: Uuid::new_v4(),
                    number: 0,
                    username: new.username,
                    display_name,
                    avatar_url: None,
                    password_hash,
                    role: Role::User,
                    disabled: false,
                    created_at: now_secs(),
                    last_seen: Some(now_secs()),
                },
            )
            .await?;
        tracing::info!(user = %user.username, user_id = %user.id, "user signed up with an invite");
        self.user_event("user.created", &user);
        Ok(user)
    }

    pub async fn list(&self, actor: Actor<'_>) -> Result<Vec<User>, Error> {
        actor.authorize()?;
        self.store.users().await
    }

    pub async fn get(&self, username: &str) -> Result<User, Error> {
        self.store
            .user_by_name(username)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user {username}")))
    }

    /// Sets a new password and ends every session of the user.
    pub async fn set_password(
        &self,
        actor: Actor<'_>,
        username: &str,
        password: String,
    ) -> Result<User, Error> {
        actor.authorize()?;
        validate_password(&password, self.min_password_length)?;
        self.get(username).await?;
        let hash = self.hasher.hash(password).await?;
        let user = self
            .store
            .update_user(username, move |u| {
                u.password_hash = hash;
                Ok(())
            })
            .await?;
        self.auth
            .end_sessions_of(user.id, KickReason::SessionEnded("password changed"))
            .await?;
        Ok(user)
    }

    /// Sets a user's role. A change closes the user's live connections (their sessions stay):
    /// each holds the role it connected with, so none may keep rights the user lost.
    pub async fn set_role(
        &self,
        actor: Actor<'_>,
        username: &str,
        role: Role,
    ) -> Result<User, Error> {
        actor.authorize()?;
        let user = self.get(username).await?;
        if user.role == Role::Admin && role != Role::Admin {
            self.ensure_other_admin(&user).await?;
        }
        let updated = self
            .store
            .update_user(username, move |u| {
                u.role = role;
                Ok(())
            })
            .await?;
        if user.role != role {
            // A connection holds the role it authenticated with (every rule it meets reads it
            // there, its service token's admin scope included): it closes, and reconnects
            // under the new role. Its session stays, so its tokens keep working.
            self.broker
                .kick_user(updated.id, KickReason::SessionEnded(ROLE_CHANGED));
        }
        Ok(updated)
    }

    /// Disables (true) or enables (false) a user. Disabling ends every session.
    pub async fn set_disabled(
        &self,
        actor: Actor<'_>,
        username: &str,
        disabled: bool,
    ) -> Result<User, Error> {
        actor.authorize()?;
        let user = self.get(username).await?;
        if disabled && user.role == Role::Admin && !user.disabled {
            self.ensure_other_admin(&user).await?;
        }
        let user = self
            .store
            .update_user(username, move |u| {
                u.disabled = disabled;
                Ok(())
            })
            .await?;
        if disabled {
            self.user_event("user.disabled", &user);
            self.auth
                .end_sessions_of(user.id, KickReason::AccountClosed("account disabled"))
                .await?;
        }
        Ok(user)
    }

    pub async fn remove(&self, actor: Actor<'_>, username: &str) -> Result<User, Error> {
        actor.authorize()?;
        let user = self.get(username).await?;
        if user.role == Role::Admin {
            self.ensure_other_admin(&user).await?;
        }
        let removed = self.store.remove_user(username).await?;
        self.user_event("user.removed", &removed);
        self.broker
            .kick_user(removed.id, KickReason::AccountClosed("account removed"));
        Ok(removed)
    }

    /// Refuses to leave the server without an enabled admin.
    async fn ensure_other_admin(&self, user: &User) -> Result<(), Error> {
        let others = self
            .store
            .users()
            .await?
            .iter()
            .filter(|u| u.id != user.id && u.role == Role::Admin && !u.disabled)
            .count();
        if others == 0 {
            return Err(Error::Conflict(format!(
                "{} is the last enabled admin; make another admin first",
                user.username
            )));
        }
        Ok(())
    }
}

/// Most users one external username may be given to (`name`, `name-2`, ... `name-1000`).
const MAX_USERNAME_SUFFIX: u32 = 1000;

/// A valid username from what an external issuer calls its user: lowercased, every character
/// outside `a-z 0-9 _ . -` replaced by `_`, cut to 32 characters, and prefixed with `user-`
/// when shorter than 3.
pub fn external_username(hint: &str) -> String {
    let mut name: String = hint
        .trim()
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '.' | '-' => c,
            _ => '_',
        })
        .take(32)
        .collect();
    if name.chars().count() < 3 {
        name = format!("user-{name}");
    }
    name
}

/// `base`, then `base-2`, `base-3`, ..., each cut so it stays within 32 characters.
fn username_candidates(base: &str) -> Vec<String> {
    let mut candidates = vec![base.to_owned()];
    for n in 2..=MAX_USERNAME_SUFFIX {
        let suffix = format!("-{n}");
        let stem: String = base.chars().take(32 - suffix.len()).collect();
        candidates.push(format!("{stem}{suffix}"));
    }
    candidates
}

/// The stored form of an invite token: its SHA-256 in lowercase hex.
fn token_hash(token: &str) -> String {
    use std::fmt::Write as _;
    crate::sha256::Sha256::digest(token.as_bytes()).iter().fold(
        String::with_capacity(64),
        |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        },
    )
}

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// Display names: 1 to 64 characters, no control characters, not blank. (Whether it is
/// another account's name is the store's check, folded as `store::name_key` folds.)
pub fn validate_display_name(name: &str) -> Result<(), Error> {
    let len = name.chars().count();
    if name.trim().is_empty() || len > MAX_DISPLAY_NAME_CHARS {
        return Err(Error::BadRequest(format!(
            "display name must be 1 to {MAX_DISPLAY_NAME_CHARS} characters, got {len}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::BadRequest(
            "display name may not contain control characters".to_owned(),
        ));
    }
    Ok(())
}

/// Avatar URLs: an http(s) URL, or a file of this server (`/api/v1/files/<id>`), at most 2048
/// bytes, without whitespace or control characters.
fn validate_avatar_url(url: &str) -> Result<(), Error> {
    let local_file = url.strip_prefix("/api/v1/files/").is_some_and(|id| {
        !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
    });
    let web = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "https://".len()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if url.len() > 2048 || !(web || local_file) {
        return Err(Error::BadRequest(
            "avatar URL must be an http(s) URL of at most 2048 bytes or a /api/v1/files/<id> path"
                .to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules() {
        for ok in ["bob", "a.b-c_d", "x23", "abcdefghijklmnopqrstuvwxyz012345"] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Bob",
            "bob!",
            "bo b",
            "ünï",
            "abcdefghijklmnopqrstuvwxyz0123456",
        ] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn avatar_and_display_name_rules() {
        for ok in [
            "https://example.com/a.png",
            "http://x.test/a?b=c",
            "/api/v1/files/12",
        ] {
            assert!(validate_avatar_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "https://",
            "https://a b",
            "/api/v1/files/",
            "/api/v1/files/1/../x",
            "/etc/passwd",
            "//evil.test/a.png",
        ] {
            assert!(validate_avatar_url(bad).is_err(), "{bad}");
        }
        assert!(validate_avatar_url(&format!("https://e.test/{}", "a".repeat(2048))).is_err());
        for ok in ["Bob", "Zoë Q.", &"x".repeat(MAX_DISPLAY_NAME_CHARS)] {
            assert!(validate_display_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "  ",
            "a\nb",
            "a\u{7}b",
            &"x".repeat(MAX_DISPLAY_NAME_CHARS + 1),
        ] {
            assert!(validate_display_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(token_hash("abc").len(), 64);
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn external_usernames_are_valid_usernames() {
        for (hint, expected) in [
            ("Alice", "alice"),
            ("Jane Doe@Example.COM", "jane_doe_example.com"),
            ("42", "user-42"),
            ("", "user-"),
            ("José", "jos_"),
            ("a".repeat(40).as_str(), "a".repeat(32).as_str()),
        ] {
            let name = external_username(hint);
            assert_eq!(name, expected, "{hint}");
            validate_username(&name).expect("valid");
        }
        let candidates = username_candidates(&"b".repeat(32));
        assert_eq!(candidates.len(), 1000);
        assert_eq!(candidates[1], format!("{}-2", "b".repeat(30)));
        assert_eq!(candidates[999], format!("{}-1000", "b".repeat(27)));
        for name in &candidates {
            validate_username(name).expect("valid");
        }
    }
}
