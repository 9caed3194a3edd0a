//! Password hashing with argon2id. Hashing is deliberately slow, so it runs on the blocking pool
//! behind a semaphore sized to the CPU count: a login storm queues instead of starving the
//! runtime or exhausting memory (each hash holds `argon2_memory_kib`).

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::AuthConfig;
use crate::error::Error;

/// Longest password accepted: bounds the work an attacker can make one request cost.
pub const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Clone)]
pub struct Hasher {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the user does not exist, so an
    /// unknown username takes as long as a wrong password.
    dummy: Arc<OnceLock<String>>,
    /// Hashes waiting for a permit or running (the `natter_argon2_queue_depth` metric).
    queued: Arc<std::sync::atomic::AtomicU64>,
}

impl Hasher {
    pub fn new(config: &AuthConfig) -> Result<Hasher, Error> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Hasher {
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            permits: Arc::new(Semaphore::new(cpus)),
            dummy: Arc::new(OnceLock::new()),
            queued: Arc::default(),
        })
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, Error> {
        let argon = self.argon.clone();
        self.run(move || hash_with(&argon, &password)).await?
    }

    /// Checks `password` against `phc`, or against the dummy hash when `phc` is `None` (unknown
    /// user), taking the same time either way. Returns false for a malformed stored hash.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, Error> {
        let argon = self.argon.clone();
        let dummy = self.dummy.clone();
        self.run(move || {
            let target = match phc {
                Some(phc) => phc,
                None => dummy_hash(&dummy, &argon)?,
            };
            let Ok(parsed) = PasswordHash::new(&target) else {
                tracing::error!("stored password hash is malformed");
                return Ok(false);
            };
            Ok(argon.verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await?
    }

    /// Computes the dummy hash now, so the first unknown-user login is not slower than others.
    pub async fn warm_up(&self) -> Result<(), Error> {
        let argon = self.argon.clone();
        let dummy = self.dummy.clone();
        self.run(move || dummy_hash(&dummy, &argon).map(|_| ()))
            .await?
    }

    /// Password hashes waiting for a CPU permit or running now.
    pub fn queue_depth(&self) -> u64 {
        self.queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        /// Counts a hash in `queued` for as long as it lives (also when its future is dropped).
        struct Queued(Arc<std::sync::atomic::AtomicU64>);
        impl Drop for Queued {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _queued = Queued(self.queued.clone());
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Unavailable("server is shutting down".to_owned()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Error::Internal(format!("password hashing task failed: {e}")))
    }
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| Error::Internal(format!("salt encoding: {e}")))?;
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
}

fn dummy_hash(cell: &OnceLock<String>, argon: &Argon2<'_>) -> Result<String, Error> {
    if let Some(hash) = cell.get() {
        return Ok(hash.clone());
    }
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let hash = hash_with(argon, &crate::auth::base64url(&random))?;
    Ok(cell.get_or_init(|| hash).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = Hasher::new(&AuthConfig::default()).expect("hasher");
        let phc = hasher.hash("correct horse".into()).await.expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            hasher
                .verify("correct horse".into(), Some(phc.clone()))
                .await
                .expect("v")
        );
        assert!(!hasher.verify("wrong".into(), Some(phc)).await.expect("v"));
        assert!(!hasher.verify("x".into(), None).await.expect("v"));
        assert!(
            !hasher
                .verify("x".into(), Some("garbage".into()))
                .await
                .expect("v")
        );
    }
}
