//! Invite links: one-time, expiring sign-up tokens an admin hands out. Only the SHA-256 of a
//! token is stored, so a copy of the store does not hold usable invites. Accepting one consumes
//! it and creates the user in one write (one group commit), so two accepts of one token give
//! exactly one user.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SledStore, Trees, User, decode, encode, now_secs};
use crate::error::Error;
use crate::principal::Role;

/// A pending invite as stored (tree `invites`: id u64 BE -> this JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invite {
    pub id: u64,
    /// Lowercase hex SHA-256 of the token. Never shown to clients.
    #[serde(rename = "token_sha256")]
    pub token_hash: String,
    /// The role the new user gets.
    pub role: Role,
    /// The admin who created it.
    pub created_by: Uuid,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the invite is refused from then on (and swept on the next create).
    pub expires_at: i64,
}

/// Why an accept failed before anything was written.
fn not_usable() -> Error {
    Error::NotFound("this invite link is unknown, was used already, or was revoked".to_owned())
}

impl Trees {
    fn invites_list(&self) -> Result<Vec<Invite>, Error> {
        let mut out = Vec::new();
        for entry in self.invites.iter() {
            let (_, raw) = entry?;
            out.push(decode::<Invite>("invites", &raw)?);
        }
        Ok(out)
    }
}

impl SledStore {
    /// Every invite not yet used, revoked or expired, oldest first.
    pub fn invites(&self) -> Result<Vec<Invite>, Error> {
        let now = now_secs();
        Ok(self
            .trees()?
            .invites_list()?
            .into_iter()
            .filter(|i| i.expires_at > now)
            .collect())
    }

    /// Stores a new invite (its `id` is assigned here), first removing expired ones; `Conflict`
    /// when `max_pending` unexpired invites exist already. Durable when it returns.
    pub async fn insert_invite(
        &self,
        mut invite: Invite,
        max_pending: usize,
    ) -> Result<Invite, Error> {
        self.write(move |t| {
            let now = now_secs();
            let mut pending = 0usize;
            for old in t.invites_list()? {
                if old.expires_at <= now {
                    t.invites.remove(old.id.to_be_bytes())?;
                } else {
                    pending += 1;
                }
            }
            if pending >= max_pending {
                return Err(Error::Conflict(format!(
                    "there are {pending} pending invites already (accounts.max_pending_invites); revoke some first"
                )));
            }
            invite.id = t.next_counter(b"next_invite_id")?;
            t.invites.insert(invite.id.to_be_bytes(), encode(&invite)?)?;
            Ok(invite)
        })
        .await
    }

    /// Removes an invite (revoke). Returns whether it existed.
    pub async fn remove_invite(&self, id: u64) -> Result<bool, Error> {
        self.write(move |t| Ok(t.invites.remove(id.to_be_bytes())?.is_some()))
            .await
    }

    /// Consumes the invite whose token hashes to `token_hash` and creates `user` with its role,
    /// in one write. `NotFound` for an unknown, used or expired token (an expired one is
    /// removed); `Conflict` when the username or display name is taken (the invite stays).
    pub async fn accept_invite(&self, token_hash: String, mut user: User) -> Result<User, Error> {
        self.write(move |t| {
            let invite = t
                .invites_list()?
                .into_iter()
                .find(|i| constant_time_eq(i.token_hash.as_bytes(), token_hash.as_bytes()))
                .ok_or_else(not_usable)?;
            if invite.expires_at <= now_secs() {
                t.invites.remove(invite.id.to_be_bytes())?;
                return Err(Error::NotFound("this invite link has expired".to_owned()));
            }
            if t.usernames.contains_key(user.username.as_bytes())?
                || t.name_taken_by_other(&user.username, user.id)?
            {
                return Err(Error::Conflict(format!(
                    "the username {} is taken; pick another",
                    user.username
                )));
            }
            if t.name_taken_by_other(&user.display_name, user.id)? {
                return Err(Error::Conflict(
                    "that display name is another account's name; pick another".to_owned(),
                ));
            }
            user.role = invite.role;
            t.invites.remove(invite.id.to_be_bytes())?;
            t.insert_user_entries(&mut user)?;
            Ok(user)
        })
        .await
    }
}

/// Byte equality whose time does not depend on where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
