//! Per-user rate limits: one bucket per user (a guest: per client address) and rate, shared by
//! every connection and HTTP request of that user. A connection used to carry its own buckets,
//! so each reconnect, and HTTP, came with a fresh burst; now the user's requests all draw on
//! the same one, whatever the protocol, and a reconnect finds it as it was left.
//!
//! A rate is named by what it counts (`messages`, `typing indicators`, `joins`, `rooms`) and its
//! [`Bucket`]: protocols that document different numbers for the same thing (Kibray's rolling
//! window, FastChat's minute burst) keep them, each in a bucket of its own.
//!
//! The registry is bounded ([`RateRegistry::new`]'s capacity, `limits.max_rate_buckets`). A
//! bucket that has refilled completely behaves exactly like a new one, so dropping it gives
//! nobody anything: those go first when the registry is full. Only when every bucket is in use
//! are arbitrary ones dropped (their users get a fresh burst; it takes that many users at their
//! limits at once).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::policy::{RateLimiter, WindowLimiter};
use crate::error::Error;
use crate::principal::Principal;

/// How one rate is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// A token bucket: `per_minute` sustained, `burst` at once.
    Gcra { per_minute: u32, burst: u32 },
    /// At most `per_minute` in any rolling minute.
    Window { per_minute: u32 },
}

impl Bucket {
    /// The sustained rate, for messages ("N ... per minute").
    pub fn per_minute(self) -> u32 {
        match self {
            Bucket::Gcra { per_minute, .. } | Bucket::Window { per_minute } => per_minute,
        }
    }
}

/// Whose bucket: an account's, or (for a guest, who has no account and a new id with every
/// connection) its client address's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    User(Uuid),
    Address(IpAddr),
}

impl Subject {
    /// The subject of `who`: its account, or for a guest its address when known.
    pub fn of(who: &Principal, address: Option<IpAddr>) -> Subject {
        match address {
            Some(address) if who.guest => Subject::Address(address),
            _ => Subject::User(who.user_id),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    subject: Subject,
    what: &'static str,
    bucket: Bucket,
}

#[derive(Debug)]
enum Limiter {
    Gcra(RateLimiter),
    Window(WindowLimiter),
}

impl Limiter {
    fn new(bucket: Bucket, now: Instant) -> Limiter {
        match bucket {
            Bucket::Gcra { per_minute, burst } => {
                Limiter::Gcra(RateLimiter::new_at(per_minute, burst, now))
            }
            Bucket::Window { per_minute } => {
                Limiter::Window(WindowLimiter::new(per_minute, Duration::from_secs(60)))
            }
        }
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        match self {
            Limiter::Gcra(limiter) => limiter.try_take_at(now),
            Limiter::Window(limiter) => limiter.try_take_at(now),
        }
    }

    fn retry_after(&self) -> Duration {
        match self {
            Limiter::Gcra(limiter) => limiter.retry_after(),
            Limiter::Window(limiter) => limiter.retry_after(),
        }
    }

    fn is_full_at(&self, now: Instant) -> bool {
        match self {
            Limiter::Gcra(limiter) => limiter.is_full_at(now),
            Limiter::Window(limiter) => limiter.is_full_at(now),
        }
    }
}

/// The buckets of every user (see the module doc). Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RateRegistry {
    buckets: Mutex<HashMap<Key, Limiter>>,
    capacity: usize,
}

impl RateRegistry {
    /// A registry of at most `capacity` buckets.
    pub fn new(capacity: usize) -> RateRegistry {
        RateRegistry {
            buckets: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Counts one request of `subject` against its `what` rate limited by `bucket`. Over the
    /// limit: `Throttled`, naming `what` and when to retry.
    pub fn check(&self, subject: Subject, what: &'static str, bucket: Bucket) -> Result<(), Error> {
        self.try_take_at(subject, what, bucket, Instant::now())
            .map_err(|retry| Error::Throttled {
                what,
                per_minute: bucket.per_minute(),
                retry_ms: retry.as_millis(),
            })
    }

    /// [`RateRegistry::check`] at `now`; `Err` holds how long until the next request may pass.
    pub fn try_take_at(
        &self,
        subject: Subject,
        what: &'static str,
        bucket: Bucket,
        now: Instant,
    ) -> Result<(), Duration> {
        let key = Key {
            subject,
            what,
            bucket,
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !buckets.contains_key(&key) && buckets.len() >= self.capacity {
            make_room(&mut buckets, self.capacity, now);
        }
        let limiter = buckets
            .entry(key)
            .or_insert_with(|| Limiter::new(bucket, now));
        if limiter.try_take_at(now) {
            Ok(())
        } else {
            Err(limiter.retry_after())
        }
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frees room in a full registry: every bucket that is full again (dropping those changes
/// nothing), and if that is not enough an eighth of the capacity, arbitrary ones, so that the
/// next inserts do not each scan the whole map again.
fn make_room(buckets: &mut HashMap<Key, Limiter>, capacity: usize, now: Instant) {
    buckets.retain(|_, limiter| !limiter.is_full_at(now));
    if buckets.len() >= capacity {
        let excess = buckets.len() + 1 - capacity;
        let drop = excess.max(capacity / 8).max(1);
        let victims: Vec<Key> = buckets.keys().take(drop).copied().collect();
        for key in victims {
            buckets.remove(&key);
        }
        tracing::warn!(
            capacity,
            dropped = drop,
            "rate-limit buckets full of active users: some were reset (limits.max_rate_buckets)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUCKET: Bucket = Bucket::Gcra {
        per_minute: 60,
        burst: 3,
    };

    #[test]
    fn a_subject_shares_one_bucket_however_often_it_comes_back() {
        let registry = RateRegistry::new(10);
        let user = Subject::User(Uuid::new_v4());
        let now = Instant::now();
        for _ in 0..3 {
            assert!(registry.try_take_at(user, "messages", BUCKET, now).is_ok());
        }
        // What a reconnect used to do: a fresh limiter. The registry keeps the old one.
        assert!(registry.try_take_at(user, "messages", BUCKET, now).is_err());
        // Another rate, another bucket; another user, another bucket.
        assert!(registry.try_take_at(user, "joins", BUCKET, now).is_ok());
        let other = Subject::User(Uuid::new_v4());
        assert!(registry.try_take_at(other, "messages", BUCKET, now).is_ok());
        // A second later, one token more.
        let later = now + Duration::from_secs(1);
        assert!(
            registry
                .try_take_at(user, "messages", BUCKET, later)
                .is_ok()
        );
        assert!(
            registry
                .try_take_at(user, "messages", BUCKET, later)
                .is_err()
        );
    }

    #[test]
    fn a_full_registry_drops_refilled_buckets_first_and_stays_bounded() {
        // One token a minute, three at once.
        let slow = Bucket::Gcra {
            per_minute: 1,
            burst: 3,
        };
        let registry = RateRegistry::new(4);
        let now = Instant::now();
        let busy = Subject::User(Uuid::new_v4());
        for _ in 0..3 {
            assert!(registry.try_take_at(busy, "messages", slow, now).is_ok());
        }
        for _ in 0..3 {
            let idle = Subject::User(Uuid::new_v4());
            assert!(registry.try_take_at(idle, "messages", slow, now).is_ok());
        }
        assert_eq!(registry.len(), 4);
        // A minute on, the buckets used once are full again and make room; the busy one has
        // one token back and no more: it was kept.
        let later = now + Duration::from_secs(60);
        let newcomer = Subject::User(Uuid::new_v4());
        assert!(
            registry
                .try_take_at(newcomer, "messages", slow, later)
                .is_ok()
        );
        assert_eq!(registry.len(), 2);
        assert!(registry.try_take_at(busy, "messages", slow, later).is_ok());
        assert!(registry.try_take_at(busy, "messages", slow, later).is_err());
        // Full of buckets in use: still bounded.
        for _ in 0..20 {
            let user = Subject::User(Uuid::new_v4());
            for _ in 0..3 {
                let _ = registry.try_take_at(user, "messages", slow, later);
            }
            assert!(registry.len() <= 4);
        }
    }
}
