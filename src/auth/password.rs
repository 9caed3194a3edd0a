//! Password hashing with argon2id. Hashing is deliberately slow, so it runs on the blocking pool
//! behind a semaphore sized to the CPU count: a login storm queues instead of starving the
//! runtime or exhausting memory (each hash holds `argon2_memory_kib`).

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{Output, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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
            match verify_with(password.as_bytes(), &target) {
                Ok(matches) => Ok(matches),
                Err(e) => {
                    tracing::error!(error = %e, "stored password hash is malformed");
                    Ok(false)
                }
            }
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

/// argon2's working memory (`blocks` KiB), allocated so that freeing it gives it back to the
/// system. glibc raises its mmap threshold to the size of a freed mapping, up to 32 MiB: from the
/// second hash on, the 19 MiB came from the heap and stayed resident for good, per hashing
/// thread, so an idle daemon that had seen two logins held 20 to 40 MiB more. A
/// capacity above that ceiling is always mapped afresh and unmapped on free; the pages past
/// `blocks` are never touched and cost address space only.
fn workspace(blocks: usize) -> Vec<Block> {
    const ALWAYS_MAPPED_BLOCKS: usize = (32 << 20) / size_of::<Block>() + 1;
    let mut memory = Vec::with_capacity(blocks.max(ALWAYS_MAPPED_BLOCKS));
    memory.resize(blocks, Block::default());
    memory
}

/// Hashes `password` into a PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, Error> {
    let internal = |e: argon2::Error| Error::Internal(format!("argon2: {e}"));
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let params = argon.params();
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon
        .hash_password_into_with_memory(
            password.as_bytes(),
            &salt,
            &mut output,
            workspace(params.block_count()),
        )
        .map_err(internal)?;
    let phc_error = |e: argon2::password_hash::Error| Error::Internal(format!("argon2: {e}"));
    let salt = SaltString::encode_b64(&salt).map_err(phc_error)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: params.try_into().map_err(phc_error)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).map_err(phc_error)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc`, with the algorithm, version and parameters
/// the string names (as the `password-hash` verifier does, but in memory from [`workspace`]).
fn verify_with(password: &[u8], phc: &str) -> Result<bool, String> {
    let parsed = PasswordHash::new(phc).map_err(|e| e.to_string())?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| e.to_string())?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| e.to_string())?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err("no salt or no hash".to_owned());
    };
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| e.to_string())?;
    let mut output = vec![0u8; expected.len()];
    let blocks = params.block_count();
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut output, workspace(blocks))
        .map_err(|e| e.to_string())?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&output).map_err(|e| e.to_string())? == expected)
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

    /// Hashes made by the `password-hash` API (every store written before natter computed them
    /// itself) verify, and natter's own verify with that API.
    #[tokio::test]
    async fn compatible_with_the_password_hash_api() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let config = AuthConfig::default();
        let argon = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(
                config.argon2_memory_kib,
                config.argon2_iterations,
                config.argon2_parallelism,
                None,
            )
            .expect("params"),
        );
        let salt = SaltString::encode_b64(b"sixteen byte sal").expect("salt");
        let theirs = argon
            .hash_password(b"correct horse", &salt)
            .expect("hash")
            .to_string();
        assert_eq!(verify_with(b"correct horse", &theirs), Ok(true));
        assert_eq!(verify_with(b"wrong horse", &theirs), Ok(false));

        let ours = hash_with(&argon, "battery staple").expect("hash");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert!(argon.verify_password(b"battery staple", &parsed).is_ok());
        assert!(argon.verify_password(b"battery stapler", &parsed).is_err());
        // Other parameters than the configured ones are read from the string.
        let light = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).expect("params"),
        );
        let other = light
            .hash_password(b"correct horse", &salt)
            .expect("hash")
            .to_string();
        assert!(other.contains("m=1024,t=1,p=1"), "{other}");
        assert_eq!(verify_with(b"correct horse", &other), Ok(true));
        assert!(verify_with(b"x", "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA").is_err());
    }
}
