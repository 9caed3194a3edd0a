//! Refresh-token families: one per login. Each refresh rotates the family to a new generation;
//! presenting an older generation again means the token was stolen or replayed, and the whole
//! family is revoked. Access tokens carry their family id, so revoking a family ends them too.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SledStore, Trees, decode, encode, keys, now_secs};
use crate::error::Error;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Family {
    pub id: Uuid,
    pub user_id: Uuid,
    /// Generation of the only refresh token that is currently valid.
    pub generation: u64,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<String>,
    /// A service token's name (`natter token issue --label`); `None` for a login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A service token's scopes (`chat publish admin`); `None` for a login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
}

impl Family {
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// What presenting a refresh token of generation `g` did.
#[derive(Debug)]
pub enum Rotation {
    /// It was current: the family moved to this new generation.
    Rotated(Family),
    /// It was an older generation: the family is now revoked.
    Reused,
    /// The family was already revoked, expired or gone.
    Dead,
}

impl Trees {
    pub fn family(&self, user_id: Uuid, family_id: Uuid) -> Result<Option<Family>, Error> {
        self.families
            .get(keys::family(user_id, family_id))?
            .map(|raw| decode("families", &raw))
            .transpose()
    }

    fn put_family(&self, family: &Family) -> Result<(), Error> {
        self.families
            .insert(keys::family(family.user_id, family.id), encode(family)?)?;
        Ok(())
    }
}

impl SledStore {
    pub fn family(&self, user_id: Uuid, family_id: Uuid) -> Result<Option<Family>, Error> {
        self.trees()?.family(user_id, family_id)
    }

    /// Starts a family for a login. Durable when it returns.
    pub async fn create_family(&self, user_id: Uuid, ttl_secs: u64) -> Result<Family, Error> {
        self.put_new_family(user_id, ttl_secs, None, None).await
    }

    /// Starts the session of a service token. Durable when it returns.
    pub async fn create_service_family(
        &self,
        user_id: Uuid,
        ttl_secs: u64,
        label: &str,
        scopes: &str,
    ) -> Result<Family, Error> {
        self.put_new_family(
            user_id,
            ttl_secs,
            Some(label.to_owned()),
            Some(scopes.to_owned()),
        )
        .await
    }

    async fn put_new_family(
        &self,
        user_id: Uuid,
        ttl_secs: u64,
        label: Option<String>,
        scopes: Option<String>,
    ) -> Result<Family, Error> {
        let now = now_secs();
        let family = Family {
            id: Uuid::new_v4(),
            user_id,
            generation: 0,
            created_at: now,
            expires_at: now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX)),
            revoked_at: None,
            revoke_reason: None,
            label,
            scopes,
        };
        self.write(move |t| {
            t.put_family(&family)?;
            Ok(family)
        })
        .await
    }

    /// Every session family (logins and service tokens), for `natter token list`.
    pub fn families(&self) -> Result<Vec<Family>, Error> {
        self.trees()?
            .families
            .iter()
            .map(|entry| {
                let (_, raw) = entry?;
                decode("families", &raw)
            })
            .collect()
    }

    /// Finds a family by id alone (service tokens are revoked by id).
    pub fn family_by_id(&self, family_id: Uuid) -> Result<Option<Family>, Error> {
        Ok(self.families()?.into_iter().find(|f| f.id == family_id))
    }

    /// Presents generation `generation` of a family. Runs on the writer, so two concurrent
    /// refreshes with the same token cannot both rotate: the second one is a reuse.
    pub async fn rotate_family(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        generation: u64,
    ) -> Result<Rotation, Error> {
        self.write(move |t| {
            let now = now_secs();
            let Some(mut family) = t.family(user_id, family_id)? else {
                return Ok(Rotation::Dead);
            };
            if !family.is_live(now) {
                return Ok(Rotation::Dead);
            }
            if generation == family.generation {
                family.generation += 1;
                t.put_family(&family)?;
                Ok(Rotation::Rotated(family))
            } else {
                family.revoked_at = Some(now);
                family.revoke_reason = Some("refresh token reused".to_owned());
                t.put_family(&family)?;
                Ok(Rotation::Reused)
            }
        })
        .await
    }

    /// Revokes one family (logout). Returns whether it was live.
    pub async fn revoke_family(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        reason: &str,
    ) -> Result<bool, Error> {
        let reason = reason.to_owned();
        self.write(move |t| {
            let now = now_secs();
            let Some(mut family) = t.family(user_id, family_id)? else {
                return Ok(false);
            };
            let was_live = family.is_live(now);
            if family.revoked_at.is_none() {
                family.revoked_at = Some(now);
                family.revoke_reason = Some(reason);
                t.put_family(&family)?;
            }
            Ok(was_live)
        })
        .await
    }

    /// Revokes every family of a user (password change, disable). Returns how many were live.
    pub async fn revoke_user_families(&self, user_id: Uuid, reason: &str) -> Result<usize, Error> {
        let reason = reason.to_owned();
        self.write(move |t| {
            let now = now_secs();
            let mut revoked = 0;
            for entry in t.families.scan_prefix(user_id.as_bytes()) {
                let (_, raw) = entry?;
                let mut family: Family = decode("families", &raw)?;
                if family.is_live(now) {
                    revoked += 1;
                }
                if family.revoked_at.is_none() {
                    family.revoked_at = Some(now);
                    family.revoke_reason = Some(reason.clone());
                    t.put_family(&family)?;
                }
            }
            Ok(revoked)
        })
        .await
    }

    /// Revokes every family of a user but `keep` (a password change from the session `keep`).
    /// Returns the ids of the families that were live.
    pub async fn revoke_other_families(
        &self,
        user_id: Uuid,
        keep: Uuid,
        reason: &str,
    ) -> Result<Vec<Uuid>, Error> {
        let reason = reason.to_owned();
        self.write(move |t| {
            let now = now_secs();
            let mut revoked = Vec::new();
            for entry in t.families.scan_prefix(user_id.as_bytes()) {
                let (_, raw) = entry?;
                let mut family: Family = decode("families", &raw)?;
                if family.id == keep {
                    continue;
                }
                if family.is_live(now) {
                    revoked.push(family.id);
                }
                if family.revoked_at.is_none() {
                    family.revoked_at = Some(now);
                    family.revoke_reason = Some(reason.clone());
                    t.put_family(&family)?;
                }
            }
            Ok(revoked)
        })
        .await
    }

    /// Deletes families that expired more than `keep_secs` ago, so the tree does not grow
    /// forever. Returns how many were deleted.
    pub async fn purge_families(&self, keep_secs: i64) -> Result<usize, Error> {
        self.write(move |t| {
            let cutoff = now_secs().saturating_sub(keep_secs);
            let mut purged = 0;
            for entry in t.families.iter() {
                let (key, raw) = entry?;
                let family: Family = decode("families", &raw)?;
                let ended = family
                    .revoked_at
                    .unwrap_or(family.expires_at)
                    .min(family.expires_at);
                if ended < cutoff {
                    t.families.remove(key)?;
                    purged += 1;
                }
            }
            Ok(purged)
        })
        .await
    }
}
