//! Policy: who may read or publish what, name rules, and the rate limiter every connection
//! carries. Edges call these; none has its own copy.

use std::time::{Duration, Instant};

use crate::auth::Principal;
use crate::error::Error;
use crate::hub::topic::{self, Subscription};
use crate::store::{Room, Visibility};

/// Prefix of the two-member rooms that hold direct conversations.
pub const DM_PREFIX: &str = "dm:";

/// Room names: 1 to 64 characters of `a-z 0-9 _ . - : /`; `dm:` is reserved for direct rooms.
pub fn validate_room_name(name: &str) -> Result<(), Error> {
    let len = name.chars().count();
    if !(1..=64).contains(&len) {
        return Err(Error::BadRequest(
            "room name must be 1 to 64 characters".to_owned(),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-' | ':' | '/'))
    {
        return Err(Error::BadRequest(format!(
            "room name may contain only a-z, 0-9, '_', '.', '-', ':' and '/' (found {bad:?})"
        )));
    }
    Ok(())
}

/// The name of the direct room of two users (order-independent).
pub fn dm_room_name(a: &str, b: &str) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    format!("{DM_PREFIX}{first}:{second}")
}

pub fn can_read_room(who: &Principal, room: &Room, is_member: bool) -> bool {
    who.is_admin() || is_member || room.visibility == Visibility::Public
}

/// Whether a room is a two-member direct room (`dm:a:b`).
pub fn is_direct(room: &Room) -> bool {
    room.name.starts_with(DM_PREFIX)
}

/// Owner powers: the room's owner, except in direct rooms, which have no owner powers (whoever
/// opened one first is its nominal owner only).
pub fn is_owner(who: &Principal, room: &Room) -> bool {
    room.owner == who.user_id && !is_direct(room)
}

/// The message's author, the room's owner, or an admin may change a message.
pub fn can_modify_message(who: &Principal, room: &Room, author: uuid::Uuid) -> bool {
    who.is_admin() || is_owner(who, room) || author == who.user_id
}

/// Whether `who` may subscribe to `subscription` (see `hub::topic` for the namespaces).
pub fn check_subscribe(who: &Principal, subscription: &Subscription) -> Result<(), Error> {
    match subscription {
        Subscription::Exact(name) => match topic::namespace(name) {
            "user" => {
                let owner = name.split('.').nth(1).unwrap_or("");
                if owner == who.username || who.is_admin() {
                    Ok(())
                } else {
                    Err(Error::Forbidden(format!(
                        "topic {name} belongs to another user"
                    )))
                }
            }
            "admin" if !who.is_admin() => {
                Err(Error::Forbidden(format!("topic {name} is for admins")))
            }
            _ => Ok(()),
        },
        Subscription::Pattern(pattern) => {
            if topic::RESERVED.contains(&topic::namespace(&pattern.text)) {
                Err(Error::BadRequest(format!(
                    "wildcards do not reach reserved namespaces; subscribe to {} topics by name",
                    topic::namespace(&pattern.text)
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// Whether `who` may publish to `topic`: reserved namespaces are for admins (and the server).
pub fn check_publish(who: &Principal, topic_name: &str) -> Result<(), Error> {
    topic::validate_topic(topic_name).map_err(Error::BadRequest)?;
    if topic::RESERVED.contains(&topic::namespace(topic_name)) && !who.is_admin() {
        return Err(Error::Forbidden(format!(
            "only admins publish to {}",
            topic_name
        )));
    }
    Ok(())
}

/// A token bucket (implemented as GCRA, in exact integer time): `per_minute` sustained,
/// `burst` at once. Over any window of T, it accepts at most `burst + T * rate` requests.
#[derive(Debug)]
pub struct RateLimiter {
    /// Time one token takes to refill.
    interval: Duration,
    /// How far ahead of now the theoretical arrival time may run: (burst - 1) intervals.
    tolerance: Duration,
    /// Theoretical arrival time of the next request.
    tat: Instant,
    /// Refusals in the current refusal streak (reset by an accepted request).
    pub refused_in_a_row: u32,
}

impl RateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        Self::new_at(per_minute, burst, Instant::now())
    }

    /// A full bucket as of `now`.
    pub fn new_at(per_minute: u32, burst: u32, now: Instant) -> RateLimiter {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        RateLimiter {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            tat: now,
            refused_in_a_row: 0,
        }
    }

    /// Takes a token if one is available.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    pub fn try_take_at(&mut self, now: Instant) -> bool {
        let tat = self.tat.max(now);
        if tat.saturating_duration_since(now) <= self.tolerance {
            self.tat = tat + self.interval;
            self.refused_in_a_row = 0;
            true
        } else {
            self.refused_in_a_row = self.refused_in_a_row.saturating_add(1);
            false
        }
    }

    /// How long until the next token.
    pub fn retry_after(&self) -> Duration {
        self.tat
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.tolerance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_accepts_exactly_rate_times_time_plus_burst() {
        let start = Instant::now();
        let mut bucket = RateLimiter::new_at(60, 5, start);
        let mut accepted = 0;
        // 10 seconds at 10 attempts per second: 5 (burst) + 10 (1/s) accepted.
        for tenth in 0..=100 {
            if bucket.try_take_at(start + Duration::from_millis(tenth * 100)) {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 15);
    }

    #[test]
    fn room_names() {
        for ok in ["general", "channel:456", "alice/math", "a.b-c_d"] {
            assert!(validate_room_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "General", "a b", &"x".repeat(65)] {
            assert!(validate_room_name(bad).is_err(), "{bad}");
        }
        assert_eq!(dm_room_name("bob", "alice"), "dm:alice:bob");
    }
}
