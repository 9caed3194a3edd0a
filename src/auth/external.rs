//! External token issuers (`[[auth.external]]`): applications that sign their own JWTs for
//! natter. Each issuer's key and algorithm are loaded once at startup; a token is routed to an
//! issuer by its (unverified) `iss`, then verified with that issuer's key only, its algorithm
//! pinned. What comes out is an [`ExternalIdentity`]; mapping it to a natter user is
//! [`crate::core::accounts::Accounts::provision_external`]'s job.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::jwt_crypto;
use super::token::{LEEWAY_SECS, MIN_SECRET_BYTES, decode_error};
use crate::config::{ExternalAlgorithm, ExternalIssuerConfig};
use crate::error::Error;
use crate::principal::Role;

/// Longest external user id accepted (it is part of a store key).
const MAX_SUBJECT_BYTES: usize = 256;

/// A verified token of an external issuer.
#[derive(Debug, Clone)]
pub struct ExternalIdentity {
    /// The issuer (its configured `iss`).
    pub issuer: String,
    /// The issuer's user id (the `user_id_claim`), as a string.
    pub subject: String,
    /// What the user should be called when created: the `username_claim`, else the user id.
    pub username_hint: String,
    /// Role of a user created for this identity.
    pub default_role: Role,
    /// `exp` of the token.
    pub expires_at: i64,
    /// Stands in for a natter session: derived from the issuer and the token's `jti` (or the
    /// whole token when it has none), so natter's session revocation never matches it.
    pub session_id: Uuid,
}

/// One configured issuer, ready to verify.
struct ExternalIssuer {
    issuer: String,
    decoding: DecodingKey,
    validation: Validation,
    user_id_claim: String,
    username_claim: String,
    default_role: Role,
}

/// Every configured issuer.
#[derive(Default)]
pub struct ExternalIssuers {
    issuers: Vec<ExternalIssuer>,
}

/// What routing looks at before verification.
#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

impl ExternalIssuers {
    /// Reads every issuer's key; an error names the issuer and the file.
    pub fn load(configs: &[ExternalIssuerConfig]) -> Result<ExternalIssuers, Error> {
        jwt_crypto::install();
        let issuers = configs
            .iter()
            .map(ExternalIssuer::load)
            .collect::<Result<_, _>>()?;
        Ok(ExternalIssuers { issuers })
    }

    /// `None` when `token` does not claim (by its unverified `iss`) to come from a configured
    /// external issuer: it is natter's own, or nobody's. Otherwise the token verified with that
    /// issuer's key and pinned algorithm: `exp` (required), `nbf`, `iss`, `aud` (when
    /// configured), and the user id claim. Without issuers nothing is parsed.
    pub fn verify(&self, token: &str) -> Option<Result<ExternalIdentity, Error>> {
        self.issuer_of(token).map(|issuer| issuer.verify(token))
    }

    fn issuer_of(&self, token: &str) -> Option<&ExternalIssuer> {
        if self.issuers.is_empty() {
            return None;
        }
        let iss = jsonwebtoken::dangerous::insecure_decode::<Unverified>(token)
            .ok()?
            .claims
            .iss?;
        self.issuers.iter().find(|issuer| issuer.issuer == iss)
    }
}

impl ExternalIssuer {
    fn load(config: &ExternalIssuerConfig) -> Result<ExternalIssuer, Error> {
        let fail = |path: &Path, detail: String| {
            Error::Internal(format!(
                "auth.external issuer {:?}: {}: {detail}",
                config.issuer,
                path.display()
            ))
        };
        let read = |path: &Path| std::fs::read(path).map_err(|e| fail(path, e.to_string()));
        let (algorithm, decoding) = match config.algorithm {
            ExternalAlgorithm::HS256 => {
                let path = &config.secret_file;
                let raw = read(path)?;
                let secret = raw.trim_ascii();
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(fail(
                        path,
                        format!("the secret is shorter than {MIN_SECRET_BYTES} bytes"),
                    ));
                }
                warn_if_readable_by_others(path);
                (Algorithm::HS256, DecodingKey::from_secret(secret))
            }
            ExternalAlgorithm::RS256 => {
                let path = &config.public_key_file;
                let key = jwt_crypto::rsa_public_key_from_pem(&read(path)?)
                    .map_err(|e| fail(path, format!("not an RSA public key in PEM: {e}")))?;
                (Algorithm::RS256, key)
            }
            ExternalAlgorithm::EdDSA => {
                let path = &config.public_key_file;
                let key = jwt_crypto::ed25519_public_key_from_pem(&read(path)?)
                    .map_err(|e| fail(path, format!("not an Ed25519 public key in PEM: {e}")))?;
                (Algorithm::EdDSA, key)
            }
        };
        // `Validation::new` accepts exactly this one algorithm: the header's `alg` only has to
        // agree with it, it never chooses the key or the check.
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&config.issuer]);
        if config.audience.is_empty() {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "iss"]);
        } else {
            validation.set_audience(&[&config.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        }
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Ok(ExternalIssuer {
            issuer: config.issuer.clone(),
            decoding,
            validation,
            user_id_claim: config.user_id_claim.clone(),
            username_claim: config.username_claim.clone(),
            default_role: config.default_role,
        })
    }

    fn verify(&self, token: &str) -> Result<ExternalIdentity, Error> {
        let claims =
            jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &self.validation)
                .map_err(decode_error)?
                .claims;
        let subject = match claims.get(&self.user_id_claim) {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) if id.is_i64() || id.is_u64() => id.to_string(),
            _ => return Err(Error::InvalidToken("token lacks the user id claim")),
        };
        if subject.len() > MAX_SUBJECT_BYTES {
            return Err(Error::InvalidToken("token's user id is too long"));
        }
        let username_hint = match claims.get(&self.username_claim) {
            Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
            _ => subject.clone(),
        };
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(Error::InvalidToken("token lacks a required claim"))?;
        let session_seed = match claims.get("jti") {
            Some(Value::String(jti)) if !jti.is_empty() => jti.as_str(),
            _ => token,
        };
        Ok(ExternalIdentity {
            issuer: self.issuer.clone(),
            subject,
            username_hint,
            default_role: self.default_role,
            expires_at,
            session_id: derived_session_id(&self.issuer, session_seed),
        })
    }
}

/// A UUID (version 8, custom) from SHA-256 of issuer, NUL, seed: stable for one token, never
/// equal to a natter session id (those are random, version 4).
fn derived_session_id(issuer: &str, seed: &str) -> Uuid {
    let mut hasher = crate::sha256::Sha256::new();
    hasher.update(issuer.as_bytes());
    hasher.update([0]);
    hasher.update(seed.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "external issuer secret file is readable by group or others; chmod 600 it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_stable_per_token_and_distinct() {
        let a = derived_session_id("app", "jti-1");
        assert_eq!(a, derived_session_id("app", "jti-1"));
        assert_ne!(a, derived_session_id("app", "jti-2"));
        assert_ne!(a, derived_session_id("other", "jti-1"));
        assert_eq!(a.get_version_num(), 8);
    }

    #[test]
    fn no_issuers_claim_nothing() {
        let issuers = ExternalIssuers::default();
        assert!(issuers.verify("a.b.c").is_none());
    }
}
