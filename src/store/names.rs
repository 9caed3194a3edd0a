//! The index of the names accounts are known by (username and display name), folded so that
//! look-alikes meet: a guest of a dialect that admits guests may not take one of them.

use uuid::Uuid;

use super::{SledStore, Trees, User};
use crate::error::Error;

/// `name` folded for comparison: letters lowercased, whitespace, control and invisible
/// formatting characters (zero-width spaces and joiners, soft hyphens, byte-order marks) left
/// out, and fullwidth forms of ASCII read as ASCII. So `Alice`, `A lice`, `ＡＬＩＣＥ` and
/// `Al\u{200b}ice` are one name. (No full Unicode confusables table: names that differ in
/// script still differ.)
pub fn name_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_whitespace() || c.is_control() || is_invisible(c) {
            continue;
        }
        let c = match u32::from(c) {
            // FULLWIDTH EXCLAMATION MARK .. FULLWIDTH TILDE are ASCII 0x21 .. 0x7e.
            code @ 0xFF01..=0xFF5E => char::from_u32(code - 0xFEE0).unwrap_or(c),
            _ => c,
        };
        out.extend(c.to_lowercase());
    }
    out
}

/// Characters that show as nothing.
pub(super) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
    )
}

/// The index key of one of a user's names.
fn entry(name: &str, user_id: Uuid) -> Vec<u8> {
    let folded = name_key(name);
    let mut key = Vec::with_capacity(folded.len() + 17);
    key.extend_from_slice(folded.as_bytes());
    key.push(0);
    key.extend_from_slice(user_id.as_bytes());
    key
}

impl Trees {
    /// Keeps the name index in step with a user record changing from `old` to `new` (either
    /// absent for a new or removed user). Writer task only.
    pub(super) fn reindex_names(
        &self,
        old: Option<&User>,
        new: Option<&User>,
    ) -> Result<(), Error> {
        let names = |user: Option<&User>| -> Vec<Vec<u8>> {
            user.map_or_else(Vec::new, |u| {
                vec![entry(&u.username, u.id), entry(&u.display_name, u.id)]
            })
        };
        let keep = names(new);
        for stale in names(old) {
            if !keep.contains(&stale) {
                self.account_names.remove(stale)?;
            }
        }
        for key in keep {
            self.account_names.insert(key, b"".as_slice())?;
        }
        Ok(())
    }
}

impl Trees {
    /// Whether `name`, folded as [`name_key`] folds it, is the username or display name of an
    /// account other than `user_id`.
    pub(super) fn name_taken_by_other(&self, name: &str, user_id: Uuid) -> Result<bool, Error> {
        let mut prefix = name_key(name).into_bytes();
        if prefix.is_empty() {
            return Ok(false);
        }
        prefix.push(0);
        let len = prefix.len();
        for entry in self.account_names.scan_prefix(prefix) {
            let (key, _) = entry?;
            if key.get(len..) != Some(user_id.as_bytes().as_slice()) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl SledStore {
    /// Whether `name`, folded as [`name_key`] folds it, is an account's username or display
    /// name.
    pub fn is_account_name(&self, name: &str) -> Result<bool, Error> {
        let mut prefix = name_key(name).into_bytes();
        if prefix.is_empty() {
            return Ok(false);
        }
        prefix.push(0);
        Ok(self
            .trees()?
            .account_names
            .scan_prefix(prefix)
            .next()
            .transpose()?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_fold_to_one_key() {
        for name in [
            "Alice",
            "alice",
            " A lice ",
            "ＡＬＩＣＥ",
            "Al\u{200b}ice",
            "ali\u{00ad}ce",
        ] {
            assert_eq!(name_key(name), "alice", "{name:?}");
        }
        assert_ne!(name_key("Alicia"), "alice");
        assert_eq!(name_key("Ünal"), "ünal");
    }
}
