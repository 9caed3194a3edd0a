//! Profiles: what one user may see of others to show them in a conversation — username,
//! display name and avatar — and nothing else (no ids, roles, states or secrets).

use std::collections::BTreeSet;

use serde::Serialize;

use super::chat::Chat;
use super::policy;
use crate::error::Error;
use crate::principal::Principal;

/// Most usernames one profiles request names (`GET /api/v1/profiles?names=`).
pub const MAX_PROFILE_NAMES: usize = 100;

/// Longest username a profiles request may name, in bytes: anything longer names no one.
const MAX_NAME_BYTES: usize = 64;

/// A user as others see them next to their messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
}

impl Chat {
    /// The profiles of the users named in `names` (any signed-in account may ask), in
    /// username order, each once; a name that is no (longer a) user is simply absent. At most
    /// [`MAX_PROFILE_NAMES`] names.
    pub async fn profiles(&self, who: &Principal, names: &[String]) -> Result<Vec<Profile>, Error> {
        policy::check_account(who)?;
        if names.len() > MAX_PROFILE_NAMES {
            return Err(Error::BadRequest(format!(
                "ask for at most {MAX_PROFILE_NAMES} profiles at once"
            )));
        }
        let wanted: BTreeSet<&str> = names
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty() && n.len() <= MAX_NAME_BYTES)
            .collect();
        let mut out = Vec::with_capacity(wanted.len());
        for name in wanted {
            if let Some(user) = self.store().user_by_name(name).await? {
                out.push(Profile {
                    username: user.username,
                    display_name: user.display_name,
                    avatar_url: user.avatar_url,
                });
            }
        }
        Ok(out)
    }
}
