//! Mentions: who a stored message mentions (its `mentions`, usernames), indexed per user so
//! that "mentions of me in this room after my read cursor" is one range scan and "my recent
//! mentions" one prefix scan. Kept by the writer in the same write as the message (append,
//! edit, delete, purge, room deletion), and bounded per user: a mention beyond the bound drops
//! that user's oldest.
//!
//! Trees (see `engine::Trees`): `mentions` user id + order (u64 BE, a store-wide counter) ->
//! room id + sequence; `mention_index` user id + room id + sequence -> order;
//! `mention_counts` user id -> how many the user has (u64 BE).

use uuid::Uuid;

use super::{SledStore, Trees, keys};
use crate::error::Error;

/// The `meta` counter that orders mentions (oldest first within a user's).
const ORDER_COUNTER: &[u8] = b"mention_order";

/// One recorded mention of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MentionEntry {
    /// Orders a user's mentions, oldest first; what a page continues before.
    pub id: u64,
    pub room_id: u64,
    pub seq: u64,
}

/// User id + room id + sequence: the mentions of a user in one room are contiguous, in
/// sequence order.
fn index_key(user_id: Uuid, room_id: u64, seq: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(user_id.as_bytes());
    key[16..24].copy_from_slice(&room_id.to_be_bytes());
    key[24..].copy_from_slice(&seq.to_be_bytes());
    key
}

impl Trees {
    fn mention_total(&self, user_id: Uuid) -> Result<u64, Error> {
        Ok(self
            .mention_counts
            .get(user_id.as_bytes())?
            .and_then(|raw| keys::u64_at(&raw, 0))
            .unwrap_or(0))
    }

    fn set_mention_total(&self, user_id: Uuid, total: u64) -> Result<(), Error> {
        if total == 0 {
            self.mention_counts.remove(user_id.as_bytes())?;
        } else {
            self.mention_counts
                .insert(user_id.as_bytes(), &total.to_be_bytes())?;
        }
        Ok(())
    }

    /// Records that message `room_id`/`seq` mentions `user_id` (nothing if it is recorded),
    /// dropping the user's oldest mentions beyond `max`. Writer task only.
    fn add_mention(&self, user_id: Uuid, room_id: u64, seq: u64, max: usize) -> Result<(), Error> {
        let index = index_key(user_id, room_id, seq);
        if self.mention_index.contains_key(index)? {
            return Ok(());
        }
        let order = self.next_counter(ORDER_COUNTER)?;
        self.mentions
            .insert(keys::user_seq(user_id, order), &keys::message(room_id, seq))?;
        self.mention_index.insert(index, &order.to_be_bytes())?;
        let mut total = self.mention_total(user_id)? + 1;
        let max = max.max(1) as u64;
        while total > max {
            let Some((key, value)) = self
                .mentions
                .scan_prefix(user_id.as_bytes())
                .next()
                .transpose()?
            else {
                break;
            };
            if let (Some(old_room), Some(old_seq)) =
                (keys::u64_at(&value, 0), keys::u64_at(&value, 8))
            {
                self.mention_index
                    .remove(index_key(user_id, old_room, old_seq))?;
            }
            self.mentions.remove(key)?;
            total -= 1;
        }
        self.set_mention_total(user_id, total)
    }

    /// Forgets that message `room_id`/`seq` mentions `user_id`. Writer task only.
    fn remove_mention(&self, user_id: Uuid, room_id: u64, seq: u64) -> Result<(), Error> {
        let Some(order) = self
            .mention_index
            .remove(index_key(user_id, room_id, seq))?
            .and_then(|raw| keys::u64_at(&raw, 0))
        else {
            return Ok(());
        };
        self.mentions.remove(keys::user_seq(user_id, order))?;
        let total = self.mention_total(user_id)?.saturating_sub(1);
        self.set_mention_total(user_id, total)
    }

    /// Brings the index in line with a message whose mentions (usernames) went from `old` to
    /// `new`: those no longer named are forgotten, new ones recorded (at most `max` kept per
    /// user). A username without an account is skipped. Writer task only.
    pub(crate) fn reindex_mentions(
        &self,
        room_id: u64,
        seq: u64,
        old: &[String],
        new: &[String],
        max: usize,
    ) -> Result<(), Error> {
        for name in old.iter().filter(|name| !new.contains(name)) {
            if let Some(user_id) = self.user_id_by_name(name)? {
                self.remove_mention(user_id, room_id, seq)?;
            }
        }
        for name in new.iter().filter(|name| !old.contains(name)) {
            if let Some(user_id) = self.user_id_by_name(name)? {
                self.add_mention(user_id, room_id, seq, max)?;
            }
        }
        Ok(())
    }

    /// Forgets every mention of a user (their account goes). Writer task only.
    pub(crate) fn remove_user_mentions(&self, user_id: Uuid) -> Result<(), Error> {
        for tree in [&self.mentions, &self.mention_index] {
            for key in tree.scan_prefix(user_id.as_bytes()).keys() {
                tree.remove(key?)?;
            }
        }
        self.mention_counts.remove(user_id.as_bytes())?;
        Ok(())
    }

    /// How many mentions of `user_id` the room holds with sequence numbers above `after`.
    pub fn mentions_after(&self, user_id: Uuid, room_id: u64, after: u64) -> Result<u64, Error> {
        let Some(start) = after.checked_add(1) else {
            return Ok(0);
        };
        let range = index_key(user_id, room_id, start)..=index_key(user_id, room_id, u64::MAX);
        Ok(self.mention_index.range(range).count() as u64)
    }

    /// The newest `limit` mentions of `user_id` with ids below `before`, newest first.
    pub fn mention_page(
        &self,
        user_id: Uuid,
        before: u64,
        limit: usize,
    ) -> Result<Vec<MentionEntry>, Error> {
        let range = keys::user_seq(user_id, 0)..keys::user_seq(user_id, before);
        let mut out = Vec::new();
        for entry in self.mentions.range(range).rev().take(limit) {
            let (key, value) = entry?;
            if let (Some(id), Some(room_id), Some(seq)) = (
                keys::u64_at(&key, 16),
                keys::u64_at(&value, 0),
                keys::u64_at(&value, 8),
            ) {
                out.push(MentionEntry { id, room_id, seq });
            }
        }
        Ok(out)
    }
}

impl SledStore {
    /// See [`Trees::mentions_after`].
    pub fn mentions_after(&self, user_id: Uuid, room_id: u64, after: u64) -> Result<u64, Error> {
        self.trees()?.mentions_after(user_id, room_id, after)
    }

    /// See [`Trees::mention_page`].
    pub fn mention_page(
        &self,
        user_id: Uuid,
        before: u64,
        limit: usize,
    ) -> Result<Vec<MentionEntry>, Error> {
        self.trees()?.mention_page(user_id, before, limit)
    }

    /// How many mentions of `user_id` are recorded (a counter, not a scan).
    pub fn mention_total(&self, user_id: Uuid) -> Result<u64, Error> {
        self.trees()?.mention_total(user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Role;
    use crate::store::{Message, NewRoom, User, Visibility};

    fn user(username: &str) -> User {
        User {
            id: Uuid::new_v4(),
            number: 0,
            username: username.to_owned(),
            display_name: username.to_owned(),
            avatar_url: None,
            password_hash: String::new(),
            role: Role::User,
            disabled: false,
            created_at: 0,
            last_seen: None,
        }
    }

    fn mentioning(room_id: u64, author: Uuid, created_at_ms: i64, names: &[&str]) -> Message {
        Message {
            room_id,
            seq: 0,
            author,
            author_name: "ann".to_owned(),
            author_avatar: None,
            content: "hi".to_owned(),
            created_at_ms,
            edited_at_ms: None,
            deleted: false,
            reply_to: None,
            client_msg_id: None,
            attachments: Vec::new(),
            reactions: Default::default(),
            mentions: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    #[tokio::test]
    async fn mentions_are_counted_per_room_after_a_cursor_and_go_with_purged_messages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::open_for_tests(dir.path());
        let ann = store.insert_user(user("ann")).await.expect("ann");
        let ben = store.insert_user(user("ben")).await.expect("ben");
        let room = store
            .create_room(NewRoom {
                name: "r".to_owned(),
                owner: ann.id,
                members: vec![ben.id],
                visibility: Visibility::Public,
                persistent: true,
                retention_secs: 0,
                quota: None,
            })
            .await
            .expect("room");
        for (at, names) in [
            (10, &["ben"][..]),
            (20, &[][..]),
            (30, &["ben", "nobody"][..]),
        ] {
            store
                .append_message_mentioning(mentioning(room.id, ann.id, at, names), 10)
                .await
                .expect("append");
        }
        assert_eq!(store.mentions_after(ben.id, room.id, 0).expect("count"), 2);
        assert_eq!(store.mentions_after(ben.id, room.id, 1).expect("count"), 1);
        assert_eq!(store.mentions_after(ben.id, room.id, 3).expect("count"), 0);
        assert_eq!(
            store
                .mentions_after(ben.id, room.id, u64::MAX)
                .expect("count"),
            0
        );
        assert_eq!(store.mentions_after(ann.id, room.id, 0).expect("count"), 0);
        let page = store.mention_page(ben.id, u64::MAX, 10).expect("page");
        assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3, 1]);
        // Retention: the two oldest messages go, and with them the mention of seq 1.
        assert_eq!(
            store
                .purge_messages_before(room.id, 25, 100)
                .await
                .expect("purge"),
            2
        );
        assert_eq!(store.mention_total(ben.id).expect("total"), 1);
        assert_eq!(store.mentions_after(ben.id, room.id, 0).expect("count"), 1);
        // A removed account takes its mentions along.
        store.remove_user("ben").await.expect("remove");
        assert_eq!(store.mention_total(ben.id).expect("total"), 0);
        assert!(
            store
                .mention_page(ben.id, u64::MAX, 10)
                .expect("page")
                .is_empty()
        );
        assert_eq!(store.mentions_after(ben.id, room.id, 0).expect("count"), 0);
    }
}
