//! Login throttling: a sliding window of failures per key (username, client address). While a
//! key is over the limit every login on it is refused, the right password included, so a
//! brute-force attempt learns nothing from the lockout.
//!
//! A login reserves its attempt on every key before its password is hashed ([`LoginThrottle::
//! reserve`]), and the attempts still being hashed count against the limit like failures: a
//! burst of concurrent guesses gets at most `login_max_failures` of them evaluated per window,
//! the rest are refused at once. A reservation ends as a failure (it stays counted for the
//! window), a success (the username's failures are forgotten), or, dropped without a verdict
//! (the request went away, the store failed), as nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked at once. Beyond it the stalest key without an attempt in flight is
/// forgotten: memory stays bounded even under a spray of distinct usernames.
const MAX_KEYS: usize = 100_000;

/// What the throttle knows of one key.
#[derive(Debug, Default)]
struct Entry {
    /// Times of the failures still inside the window, oldest first (at most `max_failures`).
    failures: VecDeque<Instant>,
    /// Attempts reserved and not yet decided (their passwords are being hashed).
    in_flight: usize,
}

pub struct LoginThrottle {
    max_failures: usize,
    window: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

/// One reserved login attempt (see the module doc); it counts against its keys until it is
/// decided or dropped.
#[must_use = "an attempt counts until it is decided or dropped"]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    keys: Vec<String>,
    decided: bool,
}

impl Attempt<'_> {
    /// The password was wrong (or the user unknown): the attempt stays counted as a failure on
    /// every key for the window.
    pub fn failed(mut self) {
        self.decided = true;
        let now = Instant::now();
        let mut map = self.throttle.lock();
        for key in &self.keys {
            let entry = map.entry(key.clone()).or_default();
            entry.in_flight = entry.in_flight.saturating_sub(1);
            self.throttle.expire(&mut entry.failures, now);
            entry.failures.push_back(now);
            // Only the newest `max_failures` matter for the lockout.
            while entry.failures.len() > self.throttle.max_failures {
                entry.failures.pop_front();
            }
        }
    }

    /// The password was right: the attempt is released, and the failures of `forget` (the
    /// username's key) are forgotten.
    pub fn succeeded(mut self, forget: &str) {
        self.decided = true;
        let mut map = self.throttle.lock();
        self.throttle.release(&mut map, &self.keys);
        if let Some(entry) = map.get_mut(forget) {
            entry.failures.clear();
            if entry.in_flight == 0 {
                map.remove(forget);
            }
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.decided {
            let mut map = self.throttle.lock();
            self.throttle.release(&mut map, &self.keys);
        }
    }
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> LoginThrottle {
        LoginThrottle {
            max_failures: usize::try_from(max_failures).unwrap_or(usize::MAX).max(1),
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves one attempt on every one of `keys`, atomically: `Err(retry_after)`, reserving
    /// nothing, when any key's failures and attempts in flight reach the limit already.
    pub fn reserve(&self, keys: &[&str]) -> Result<Attempt<'_>, Duration> {
        let now = Instant::now();
        let mut map = self.lock();
        let mut retry_after: Option<Duration> = None;
        for key in keys {
            if let Some(entry) = map.get_mut(*key) {
                self.expire(&mut entry.failures, now);
                if let Some(wait) = self.wait(entry, now) {
                    retry_after = Some(retry_after.map_or(wait, |w| w.max(wait)));
                }
            }
        }
        if let Some(wait) = retry_after {
            return Err(wait.max(Duration::from_secs(1)));
        }
        if map.len() + keys.len() > MAX_KEYS {
            self.evict(&mut map, now, keys.len());
        }
        for key in keys {
            map.entry((*key).to_owned()).or_default().in_flight += 1;
        }
        Ok(Attempt {
            throttle: self,
            keys: keys.iter().map(|key| (*key).to_owned()).collect(),
            decided: false,
        })
    }

    /// How long until `entry` has room for one more attempt; `None` when it has room now.
    fn wait(&self, entry: &Entry, now: Instant) -> Option<Duration> {
        let used = entry.failures.len() + entry.in_flight;
        if used < self.max_failures {
            return None;
        }
        // Room comes when enough failures leave the window (attempts in flight end soon).
        let expiring = used + 1 - self.max_failures;
        Some(
            entry
                .failures
                .get(expiring - 1)
                .map_or(Duration::ZERO, |at| {
                    self.window.saturating_sub(now.duration_since(*at))
                }),
        )
    }

    /// Makes room for `needed` keys: drops expired keys, then the stalest ones without an
    /// attempt in flight.
    fn evict(&self, map: &mut HashMap<String, Entry>, now: Instant, needed: usize) {
        map.retain(|_, entry| {
            self.expire(&mut entry.failures, now);
            entry.in_flight > 0 || !entry.failures.is_empty()
        });
        while map.len() + needed > MAX_KEYS {
            let stalest = map
                .iter()
                .filter(|(_, entry)| entry.in_flight == 0)
                .min_by_key(|(_, entry)| entry.failures.back().copied())
                .map(|(key, _)| key.clone());
            match stalest {
                Some(key) => {
                    map.remove(&key);
                }
                // Every key has an attempt in flight: bounded by the logins running at once.
                None => break,
            }
        }
    }

    /// Ends one attempt in flight on each of `keys`, forgetting keys left with nothing.
    fn release(&self, map: &mut HashMap<String, Entry>, keys: &[String]) {
        for key in keys {
            if let Some(entry) = map.get_mut(key) {
                entry.in_flight = entry.in_flight.saturating_sub(1);
                if entry.in_flight == 0 && entry.failures.is_empty() {
                    map.remove(key);
                }
            }
        }
    }

    fn expire(&self, failures: &mut VecDeque<Instant>, now: Instant) {
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            failures.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent in a harmful way.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_per_key() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            throttle.reserve(&["u:a", "ip:1"]).expect("room").failed();
        }
        let wait = throttle.reserve(&["u:a"]).err().expect("locked");
        assert!(wait <= Duration::from_secs(60) && wait >= Duration::from_secs(59));
        assert!(
            throttle.reserve(&["u:b", "ip:1"]).is_err(),
            "address locked too"
        );
        throttle
            .reserve(&["u:b", "ip:2"])
            .expect("other address")
            .failed();
    }

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(60));
        // Three guesses at once take the whole budget before any is decided.
        let running: Vec<Attempt<'_>> = (0..3)
            .map(|_| throttle.reserve(&["u:a", "ip:1"]).expect("room"))
            .collect();
        assert!(throttle.reserve(&["u:a", "ip:2"]).is_err(), "user key full");
        assert!(throttle.reserve(&["u:b", "ip:1"]).is_err(), "address full");
        // A refusal reserves nothing: the other key of a refused attempt is untouched.
        throttle
            .reserve(&["u:b", "ip:2"])
            .expect("unrelated")
            .failed();
        for attempt in running {
            attempt.failed();
        }
        assert!(
            throttle.reserve(&["u:a", "ip:3"]).is_err(),
            "three failures"
        );
    }

    #[test]
    fn success_forgets_the_username_and_a_dropped_attempt_costs_nothing() {
        let throttle = LoginThrottle::new(2, Duration::from_secs(60));
        throttle.reserve(&["u:a", "ip:1"]).expect("room").failed();
        let undecided = throttle.reserve(&["u:a", "ip:1"]).expect("room");
        assert!(throttle.reserve(&["u:a", "ip:1"]).is_err());
        drop(undecided);
        let right = throttle.reserve(&["u:a", "ip:1"]).expect("room again");
        right.succeeded("u:a");
        // The username starts over; the address keeps its failure.
        throttle.reserve(&["u:a", "ip:2"]).expect("room").failed();
        throttle.reserve(&["u:a", "ip:2"]).expect("room").failed();
        assert!(throttle.reserve(&["u:a"]).is_err());
        throttle
            .reserve(&["u:c", "ip:1"])
            .expect("one failure on ip:1")
            .failed();
        assert!(throttle.reserve(&["u:d", "ip:1"]).is_err());
    }
}
