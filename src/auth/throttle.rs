//! Login throttling: a sliding window of failures per key (username, client address). While a
//! key is over the limit every login on it is refused, the right password included, so a
//! brute-force attempt learns nothing from the lockout.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked at once. Beyond it the stalest key is forgotten: memory stays bounded
/// even under a spray of distinct usernames.
const MAX_KEYS: usize = 100_000;

pub struct LoginThrottle {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> LoginThrottle {
        LoginThrottle {
            max_failures: usize::try_from(max_failures).unwrap_or(usize::MAX).max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` if any of `keys` is locked out.
    pub fn check(&self, keys: &[&str]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.lock();
        let mut retry_after = None;
        for key in keys {
            if let Some(times) = map.get_mut(*key) {
                Self::expire(times, now, self.window);
                if times.len() >= self.max_failures
                    && let Some(oldest) = times.front()
                {
                    let wait = self.window.saturating_sub(now.duration_since(*oldest));
                    retry_after = Some(retry_after.map_or(wait, |w: Duration| w.max(wait)));
                }
            }
        }
        match retry_after {
            Some(wait) => Err(wait.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, keys: &[&str]) {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_KEYS {
            map.retain(|_, times| {
                Self::expire(times, now, self.window);
                !times.is_empty()
            });
            if map.len() >= MAX_KEYS {
                let stalest = map
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(key, _)| key.clone());
                if let Some(key) = stalest {
                    map.remove(&key);
                }
            }
        }
        for key in keys {
            let times = map.entry((*key).to_owned()).or_default();
            Self::expire(times, now, self.window);
            times.push_back(now);
            // Only the newest `max_failures` matter for the lockout.
            while times.len() > self.max_failures {
                times.pop_front();
            }
        }
    }

    /// Forgets the failures of `key` (after a successful login for a username).
    pub fn clear(&self, key: &str) {
        self.lock().remove(key);
    }

    fn expire(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            times.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        // A panic while holding this lock cannot leave the map inconsistent in a harmful way.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_per_key() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(throttle.check(&["u:a", "ip:1"]).is_ok());
            throttle.record_failure(&["u:a", "ip:1"]);
        }
        let wait = throttle.check(&["u:a"]).expect_err("locked");
        assert!(wait <= Duration::from_secs(60) && wait >= Duration::from_secs(59));
        assert!(
            throttle.check(&["u:b", "ip:1"]).is_err(),
            "address locked too"
        );
        assert!(throttle.check(&["u:b", "ip:2"]).is_ok());
        throttle.clear("u:a");
        assert!(throttle.check(&["u:a"]).is_ok());
    }
}
