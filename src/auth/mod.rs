//! Authentication: who a request is. Login (argon2id), JWT access tokens, rotating refresh
//! tokens with reuse detection, revocation, and login throttling, and tokens of external issuers
//! (`[[auth.external]]`, see [`external`]). Every edge (HTTP, WebSocket dialects, admin)
//! authenticates through [`Auth`]; none has its own copy of these rules.

pub mod external;
mod jwt_crypto;
pub mod password;
pub mod throttle;
pub mod token;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use uuid::Uuid;

use crate::config::Config;
use crate::error::Error;
use crate::events::KickReason;
use crate::hub::Broker;
use crate::principal::{Principal, Role, Scopes};
use crate::store::{Family, Rotation, Store, now_secs};

pub use password::Hasher;
pub use throttle::LoginThrottle;
pub use token::TokenKeys;

/// Longest username looked at by a login; longer ones cannot exist.
const MAX_USERNAME_BYTES: usize = 64;

/// A service token as `natter token list` shows it.
#[derive(Debug, Clone)]
pub struct ServiceToken {
    pub family: Family,
    pub username: String,
    /// Its scopes, as the token carries them (`chat publish`).
    pub scopes: String,
}

/// What an access token is: one of natter's own, or an identity of an external issuer that the
/// core still has to map to a user (creating it on first sight).
#[derive(Debug)]
pub enum Verified {
    Own(Principal),
    External(external::ExternalIdentity),
}

/// What `POST /api/token/` and `/api/token/refresh/` return.
#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    pub access: String,
    pub refresh: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    store: Store,
    broker: Arc<dyn Broker>,
    hasher: Hasher,
    keys: TokenKeys,
    throttle: LoginThrottle,
    refresh_ttl_secs: u64,
    /// `[[auth.external]]` issuers, keys loaded.
    external: external::ExternalIssuers,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Auth {
    /// Loads (or creates) the signing secret, loads the external issuers' keys, and builds the
    /// service.
    pub fn new(
        config: &Config,
        store: Store,
        hasher: Hasher,
        broker: Arc<dyn Broker>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Auth, Error> {
        let secret = token::load_or_create_secret(&config.jwt_secret_path())?;
        let external = external::ExternalIssuers::load(&config.auth.external)?;
        Ok(Auth {
            inner: Arc::new(AuthInner {
                external,
                store,
                metrics,
                broker,
                hasher,
                keys: TokenKeys::new(&config.auth, &secret),
                throttle: LoginThrottle::new(
                    config.auth.login_max_failures,
                    Duration::from_secs(config.auth.login_window_secs),
                ),
                refresh_ttl_secs: config.auth.refresh_token_ttl_secs,
            }),
        })
    }

    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    pub fn keys(&self) -> &TokenKeys {
        &self.inner.keys
    }

    /// Username + password -> a new session. Unknown user and wrong password take the same time
    /// and give the same answer; a disabled account is told so only with the right password.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<TokenPair, Error> {
        let result = self.login_checked(username, password, client).await;
        let metrics = &self.inner.metrics;
        crate::metrics::Metrics::incr(if result.is_ok() {
            &metrics.logins
        } else {
            &metrics.login_failures
        });
        result
    }

    async fn login_checked(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<TokenPair, Error> {
        let inner = &*self.inner;
        let username = username.trim().to_ascii_lowercase();
        // Bounded, so a huge username cannot make a huge throttle key.
        let user_key: String = format!(
            "u:{}",
            username
                .chars()
                .take(MAX_USERNAME_BYTES)
                .collect::<String>()
        );
        let ip_key = client.map(|ip| format!("ip:{ip}"));
        let mut keys = vec![user_key.as_str()];
        keys.extend(ip_key.as_deref());
        // Reserved before the hash and counted while it runs: concurrent guesses cannot all
        // pass a check that only later ones would fail.
        let attempt = inner
            .throttle
            .reserve(&keys)
            .map_err(|retry_after| Error::TooManyAttempts { retry_after })?;

        let user = if username.len() <= MAX_USERNAME_BYTES {
            inner.store.user_by_name(&username).await?
        } else {
            None
        };
        // No stored password is longer (accounts refuse it); the cap bounds the work per attempt.
        let password: String = password
            .chars()
            .take(password::MAX_PASSWORD_BYTES)
            .collect();
        let ok = inner
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        let user = match user {
            Some(user) if ok => user,
            _ => {
                attempt.failed();
                tracing::info!(username = %&user_key[2..], client = ?client, "login failed");
                return Err(Error::InvalidCredentials);
            }
        };
        attempt.succeeded(&user_key);
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        // Both writes go to the store writer at once, so they share one group commit (one
        // flush) instead of waiting for two in turn.
        let (family, updated) = tokio::join!(
            inner.store.create_family(user.id, inner.refresh_ttl_secs),
            inner.store.update_user(&user.username, |u| {
                u.last_seen = Some(now_secs());
                Ok(())
            }),
        );
        let family = family?;
        let user_id = user.id;
        let user = updated.unwrap_or(user);
        tracing::info!(user = %user.username, user_id = %user_id, session = %family.id, "login");
        self.pair(&user, family.id, family.generation, family.expires_at)
    }

    /// Rotates a refresh token. Presenting a token that was already rotated revokes its session.
    pub async fn refresh(&self, refresh: &str) -> Result<TokenPair, Error> {
        let inner = &*self.inner;
        let claims = inner.keys.decode_refresh(refresh)?;
        let (user_id, session) = parse_ids(&claims.sub, &claims.sid)?;
        let user = inner
            .store
            .user(user_id)
            .await?
            .ok_or(Error::InvalidToken("user no longer exists"))?;
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        match inner
            .store
            .rotate_family(user_id, session, claims.generation)
            .await?
        {
            Rotation::Rotated(family) => {
                self.pair(&user, family.id, family.generation, family.expires_at)
            }
            Rotation::Reused => {
                inner
                    .broker
                    .kick_session(session, KickReason::SessionEnded("session revoked"));
                tracing::warn!(
                    user = %user.username,
                    user_id = %user_id,
                    session = %session,
                    "refresh token reuse detected; session revoked"
                );
                Err(Error::TokenReused)
            }
            Rotation::Dead => Err(Error::InvalidToken("session revoked or expired")),
        }
    }

    /// Ends one session: revokes its refresh-token family (`reason` is recorded) and closes the
    /// connections authenticated with it. Returns whether the session was live and how many
    /// connections closed. Idempotent; a session natter does not store (a guest's, an external
    /// token's) only has its connections closed.
    pub async fn end_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        reason: &'static str,
    ) -> Result<(bool, usize), Error> {
        let inner = &*self.inner;
        let revoked = inner
            .store
            .revoke_family(user_id, session_id, reason)
            .await?;
        let closed = inner
            .broker
            .kick_session(session_id, KickReason::SessionEnded(reason));
        Ok((revoked, closed))
    }

    /// Ends every session of a user and closes their connections with `kick` (the session
    /// ended, or the account closed). Returns how many sessions were live and how many
    /// connections closed.
    pub async fn end_sessions_of(
        &self,
        user_id: Uuid,
        kick: KickReason,
    ) -> Result<(usize, usize), Error> {
        let inner = &*self.inner;
        let revoked = inner
            .store
            .revoke_user_families(user_id, kick.text())
            .await?;
        let closed = inner.broker.kick_user(user_id, kick);
        Ok((revoked, closed))
    }

    /// Ends every session of a user but `keep` (the one that changed the password): revokes
    /// their families and closes their connections. Returns how many sessions were live and
    /// how many connections closed.
    pub async fn end_other_sessions(
        &self,
        user_id: Uuid,
        keep: Uuid,
        reason: &'static str,
    ) -> Result<(usize, usize), Error> {
        let inner = &*self.inner;
        let revoked = inner
            .store
            .revoke_other_families(user_id, keep, reason)
            .await?;
        let closed = revoked
            .iter()
            .map(|session| {
                inner
                    .broker
                    .kick_session(*session, KickReason::SessionEnded(reason))
            })
            .sum();
        Ok((revoked.len(), closed))
    }

    /// Checks `password` against `user`'s, throttled as a login on the user's name: a wrong
    /// one counts as a failed login (`InvalidCredentials` is not what it answers: the caller
    /// is logged in; `Forbidden`), and while the name is locked out every check is refused.
    pub async fn check_password(
        &self,
        user: &crate::store::User,
        password: &str,
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        let user_key = format!("u:{}", user.username);
        let attempt = inner
            .throttle
            .reserve(&[user_key.as_str()])
            .map_err(|retry_after| Error::TooManyAttempts { retry_after })?;
        let password: String = password
            .chars()
            .take(password::MAX_PASSWORD_BYTES)
            .collect();
        let ok = inner
            .hasher
            .verify(password, Some(user.password_hash.clone()))
            .await?;
        if !ok {
            attempt.failed();
            tracing::info!(user = %user.username, "password check failed");
            return Err(Error::Forbidden("the current password is wrong".to_owned()));
        }
        attempt.succeeded(&user_key);
        Ok(())
    }

    /// Reserves an attempt on the login throttle for `keys` (e.g. `ip:<addr>` of an invite
    /// accept): `TooManyAttempts` while any key is locked out.
    pub fn throttle_attempt(&self, keys: &[&str]) -> Result<throttle::Attempt<'_>, Error> {
        self.inner
            .throttle
            .reserve(keys)
            .map_err(|retry_after| Error::TooManyAttempts { retry_after })
    }

    /// A new session for `user` (just created, e.g. from an invite): what a login returns.
    pub async fn start_session(&self, user: &crate::store::User) -> Result<TokenPair, Error> {
        let inner = &*self.inner;
        let family = inner
            .store
            .create_family(user.id, inner.refresh_ttl_secs)
            .await?;
        tracing::info!(user = %user.username, user_id = %user.id, session = %family.id, "login");
        self.pair(user, family.id, family.generation, family.expires_at)
    }

    /// Logout: revokes the session of a refresh token. Idempotent.
    pub async fn revoke(&self, refresh: &str) -> Result<(), Error> {
        let inner = &*self.inner;
        let claims = inner.keys.decode_refresh(refresh)?;
        let (user_id, session) = parse_ids(&claims.sub, &claims.sid)?;
        if self.end_session(user_id, session, "logged out").await?.0 {
            tracing::info!(user_id = %user_id, session = %session, "logout");
        }
        Ok(())
    }

    /// Checks an access token. natter's own: signature and claims, then that its user still
    /// exists and is enabled and its session is not revoked (the session-liveness check lives
    /// here, so it applies to every token natter issued). An external issuer's: its signature
    /// and claims only; the core maps the identity to a user ([`Verified::External`]).
    pub async fn verify(&self, access: &str) -> Result<Verified, Error> {
        if let Some(identity) = self.inner.external.verify(access) {
            return identity.map(Verified::External);
        }
        let inner = &*self.inner;
        let claims = inner.keys.decode_access(access)?;
        let (user_id, session) = parse_ids(&claims.sub, &claims.sid)?;
        let user = inner
            .store
            .user(user_id)
            .await?
            .ok_or(Error::InvalidToken("user no longer exists"))?;
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        let family = inner
            .store
            .family(user_id, session)
            .await?
            .filter(|f| f.revoked_at.is_none())
            .ok_or(Error::InvalidToken("session revoked"))?;
        // A service token's scopes are the family's, whatever the token says.
        let scopes = match &family.scopes {
            Some(text) => Some(Scopes::parse(text)?),
            None => None,
        };
        Ok(Verified::Own(Principal {
            user_id,
            number: user.number,
            username: user.username,
            role: user.role,
            session_id: session,
            expires_at: claims.exp,
            guest: false,
            scopes,
        }))
    }

    /// The stored session (refresh-token family or service token) with id `id`, revoked or not.
    pub async fn session(&self, id: Uuid) -> Result<Option<Family>, Error> {
        self.inner.store.family_by_id(id).await
    }

    /// Every service token (`natter token list`), with its user's name and scopes.
    pub async fn service_tokens(&self) -> Result<Vec<ServiceToken>, Error> {
        let store = &self.inner.store;
        let mut tokens = Vec::new();
        for family in store.families().await? {
            let Some(scopes) = family.scopes.clone() else {
                continue;
            };
            let username = store
                .user(family.user_id)
                .await?
                .map_or_else(|| family.user_id.to_string(), |u| u.username);
            tokens.push(ServiceToken {
                family,
                username,
                scopes,
            });
        }
        Ok(tokens)
    }

    /// Revokes the service token whose session is `id` and closes its connections: `None` when
    /// it was revoked already, else how many connections closed. `NotFound` when there is no
    /// such service token.
    pub async fn revoke_service_token(&self, id: Uuid) -> Result<Option<usize>, Error> {
        let family = self
            .inner
            .store
            .family_by_id(id)
            .await?
            .filter(|f| f.scopes.is_some())
            .ok_or_else(|| Error::NotFound(format!("no service token {id}")))?;
        if family.revoked_at.is_some() {
            return Ok(None);
        }
        let (_, closed) = self
            .end_session(family.user_id, family.id, "token revoked")
            .await?;
        Ok(Some(closed))
    }

    /// Issues a long-lived service token for `username` (`natter token issue`): a session of its
    /// own, revocable with `natter token revoke`, limited to `scopes`, without a refresh token.
    pub async fn issue_service_token(
        &self,
        username: &str,
        scopes: Scopes,
        ttl_secs: u64,
        label: &str,
    ) -> Result<(Family, String), Error> {
        let inner = &*self.inner;
        let user = inner
            .store
            .user_by_name(username)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user {username}")))?;
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        if scopes.admin && user.role != Role::Admin {
            return Err(Error::BadRequest(format!(
                "{username} is not an admin: the admin scope needs an admin user"
            )));
        }
        let family = inner
            .store
            .create_service_family(user.id, ttl_secs, label, &scopes.to_text())
            .await?;
        let token = inner
            .keys
            .issue_service(&user, family.id, family.expires_at)?;
        Ok((family, token))
    }

    fn pair(
        &self,
        user: &crate::store::User,
        session: Uuid,
        generation: u64,
        session_expires_at: i64,
    ) -> Result<TokenPair, Error> {
        let keys = &self.inner.keys;
        Ok(TokenPair {
            access: keys.issue_access(user, session)?,
            refresh: keys.issue_refresh(user.id, session, generation, session_expires_at)?,
            token_type: "Bearer",
            expires_in: keys.access_ttl_secs(),
        })
    }
}

/// The principal of an external issuer's token: the mapped user, unless disabled; its session id
/// is derived from the token (see [`external::ExternalIdentity::session_id`]).
pub fn external_principal(
    user: crate::store::User,
    identity: &external::ExternalIdentity,
) -> Result<Principal, Error> {
    if user.disabled {
        return Err(Error::AccountDisabled);
    }
    Ok(Principal {
        user_id: user.id,
        number: user.number,
        username: user.username,
        role: user.role,
        session_id: identity.session_id,
        expires_at: identity.expires_at,
        guest: false,
        scopes: None,
    })
}

fn parse_ids(sub: &str, sid: &str) -> Result<(Uuid, Uuid), Error> {
    match (Uuid::parse_str(sub), Uuid::parse_str(sid)) {
        (Ok(user), Ok(session)) => Ok((user, session)),
        _ => Err(Error::InvalidToken("token is malformed")),
    }
}

/// Unpadded base64url, for secrets and generated passwords.
pub fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
