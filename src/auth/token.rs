//! JWTs: HS256 access tokens (short-lived, carry the session id) and refresh tokens (carry the
//! session id and generation; see `store::sessions`). The algorithm is pinned: a token whose header
//! names another algorithm, `none` included, is refused before its signature is looked at.

use std::io::Write as _;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::AuthConfig;
use crate::error::Error;
use crate::principal::Role;
use crate::store::{User, now_secs};

/// Seconds of clock skew tolerated on `exp`/`nbf`.
pub(crate) const LEEWAY_SECS: u64 = 5;
/// Shortest signing secret accepted from a configured file.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// User id.
    pub sub: String,
    /// The account's number ([`User::number`]): the `user_id` claim Django REST Framework
    /// SimpleJWT clients read, and the id the protocols with integer user ids show.
    #[serde(default)]
    pub user_id: u64,
    pub username: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    /// Always "access".
    pub typ: String,
    /// Session (refresh-token family) id: revoking the session ends this token too.
    pub sid: String,
    /// A service token's scopes (informational: the session's own scopes are what counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshClaims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    /// Always "refresh".
    pub typ: String,
    pub sid: String,
    /// Generation within the family; only the family's current generation is accepted.
    pub generation: u64,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl_secs: i64,
}

impl TokenKeys {
    pub fn new(config: &AuthConfig, secret: &[u8]) -> TokenKeys {
        super::jwt_crypto::install();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            access_ttl_secs: i64::try_from(config.access_token_ttl_secs).unwrap_or(i64::MAX),
        }
    }

    pub fn access_ttl_secs(&self) -> i64 {
        self.access_ttl_secs
    }

    pub fn issue_access(&self, user: &User, session: Uuid) -> Result<String, Error> {
        let now = now_secs();
        let claims = AccessClaims {
            sub: user.id.to_string(),
            user_id: user.number,
            username: user.username.clone(),
            role: user.role,
            iat: now,
            exp: now.saturating_add(self.access_ttl_secs),
            jti: Uuid::new_v4().to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            typ: "access".to_owned(),
            sid: session.to_string(),
            scope: None,
        };
        self.sign(&claims)
    }

    /// A service token: an access token that lives as long as its session.
    pub fn issue_service(
        &self,
        user: &User,
        session: Uuid,
        expires_at: i64,
    ) -> Result<String, Error> {
        let claims = AccessClaims {
            sub: user.id.to_string(),
            user_id: user.number,
            username: user.username.clone(),
            role: user.role,
            iat: now_secs(),
            exp: expires_at,
            jti: Uuid::new_v4().to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            typ: "access".to_owned(),
            sid: session.to_string(),
            scope: Some("service".to_owned()),
        };
        self.sign(&claims)
    }

    pub fn issue_refresh(
        &self,
        user_id: Uuid,
        session: Uuid,
        generation: u64,
        expires_at: i64,
    ) -> Result<String, Error> {
        let claims = RefreshClaims {
            sub: user_id.to_string(),
            iat: now_secs(),
            exp: expires_at,
            jti: Uuid::new_v4().to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            typ: "refresh".to_owned(),
            sid: session.to_string(),
            generation,
        };
        self.sign(&claims)
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("cannot sign token: {e}")))
    }

    /// Verifies signature, algorithm, `exp`, `nbf`, `iss`, `aud` and the token type.
    pub fn decode_access(&self, token: &str) -> Result<AccessClaims, Error> {
        let claims: AccessClaims = self.decode(token)?;
        if claims.typ != "access" {
            return Err(Error::InvalidToken("not an access token"));
        }
        Ok(claims)
    }

    pub fn decode_refresh(&self, token: &str) -> Result<RefreshClaims, Error> {
        let claims: RefreshClaims = self.decode(token)?;
        if claims.typ != "refresh" {
            return Err(Error::InvalidToken("not a refresh token"));
        }
        Ok(claims)
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, Error> {
        jsonwebtoken::decode::<T>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(decode_error)
    }
}

/// What a client is told about a token that did not verify (never the token itself).
pub(crate) fn decode_error(e: jsonwebtoken::errors::Error) -> Error {
    use jsonwebtoken::errors::ErrorKind;
    Error::InvalidToken(match e.kind() {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidAudience => "token has the wrong audience",
        ErrorKind::InvalidIssuer => "token has the wrong issuer",
        ErrorKind::InvalidSignature => "token signature is invalid",
        ErrorKind::InvalidAlgorithm => "token algorithm is not accepted",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
        _ => "token is malformed",
    })
}

/// Reads the signing secret from `path`, creating it (64 random bytes, base64url, mode 0600)
/// when it does not exist yet.
pub fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, Error> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::read(path) {
        Ok(raw) => {
            let secret = raw.trim_ascii().to_vec();
            if secret.len() < MIN_SECRET_BYTES {
                return Err(Error::Internal(format!(
                    "JWT secret in {} is shorter than {MIN_SECRET_BYTES} bytes",
                    path.display()
                )));
            }
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(path = %path.display(), "JWT secret file is readable by group or others; chmod 600 it");
            }
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut random = [0u8; 64];
            getrandom::fill(&mut random)
                .map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
            let secret = crate::auth::base64url(&random);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| {
                    Error::Internal(format!("cannot create JWT secret {}: {e}", path.display()))
                })?;
            file.write_all(secret.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| {
                    Error::Internal(format!("cannot write JWT secret {}: {e}", path.display()))
                })?;
            tracing::info!(path = %path.display(), "generated JWT signing secret");
            Ok(secret.into_bytes())
        }
        Err(e) => Err(Error::Internal(format!(
            "cannot read JWT secret {}: {e}",
            path.display()
        ))),
    }
}
