//! Mentions: which accounts a message mentions (`@username` in its text, and in a direct room
//! the other participant), resolved once in the Send and Edit paths of every dialect and the
//! HTTP API, kept with the message (its `mentions`) and indexed per user by the store in the
//! same write; the counts per room (after the read cursor) and a user's recent mentions.
//!
//! Who counts: an existing account that is a member of the room (the rooms a user lists and
//! reads as theirs); a non-member, also of a public room, is not mentioned. The author never
//! mentions themselves.

use serde::Serialize;
use uuid::Uuid;

use super::Chat;
use crate::core::policy;
use crate::error::Error;
use crate::principal::Principal;
use crate::store::Room;

/// Most distinct `@username` tokens of one message that are looked up; later ones are not
/// mentions.
pub const MAX_MENTIONS_PER_MESSAGE: usize = 32;

/// Most mentions one page of [`Chat::mentions_page`] holds.
pub const MAX_MENTION_PAGE: usize = 100;

/// Characters of a message's content a listed mention shows.
const EXCERPT_CHARS: usize = 140;

/// A character a username may hold (see `core::accounts::validate_username`), any case.
fn username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// The `@username` tokens of `text`, lowercased (usernames are lowercase: a mention is
/// case-insensitive), distinct, in order of appearance, at most [`MAX_MENTIONS_PER_MESSAGE`].
/// A token starts at an `@` that does not follow a username character (so `a@b.example` is
/// no mention) and runs over username characters; it must be 3 to 32 of them, as a username
/// is. Trailing `.`, `-` (sentence punctuation) are kept: [`Chat::mentioned_users`] tries the
/// name with and without them.
pub fn mention_tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut previous: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let starts = c == '@' && !previous.is_some_and(|p| username_char(p) || p == '@');
        previous = Some(c);
        if !starts {
            continue;
        }
        let rest = &text[at + 1..];
        let len = rest.find(|c: char| !username_char(c)).unwrap_or(rest.len());
        let token = rest[..len].to_ascii_lowercase();
        if (3..=32).contains(&token.chars().count()) && !out.contains(&token) {
            out.push(token);
            if out.len() >= MAX_MENTIONS_PER_MESSAGE {
                break;
            }
        }
        // Skip the token itself: `@bob@carl` mentions bob only.
        while chars.next_if(|(_, c)| username_char(*c)).is_some() {}
        previous = rest[..len].chars().next_back().or(previous);
    }
    out
}

/// One mention of the caller, as `GET /api/v1/me/mentions` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct MentionView {
    /// Orders the caller's mentions; `before=` a page's last id continues with older ones.
    pub id: u64,
    pub room: String,
    pub room_id: u64,
    pub seq: u64,
    pub author: String,
    /// The first characters of the message as it is now.
    pub excerpt: String,
    pub created_at_ms: i64,
    /// The message is after the caller's read cursor in its room.
    pub unread: bool,
}

impl Chat {
    /// The accounts a message by `author` in `room` with `content` mentions, with their
    /// usernames: each `@username` of [`mention_tokens`] that names a member of the room, and
    /// in a direct room the other participant; never the author. Reusable wherever mentions
    /// matter (push).
    pub async fn mentioned_users(
        &self,
        room: &Room,
        author: Uuid,
        content: &str,
    ) -> Result<Vec<(Uuid, String)>, Error> {
        let mut out: Vec<(Uuid, String)> = Vec::new();
        if policy::is_direct(room)
            && let Some(peer) = self.direct_peer(room.id, author).await?
            && let Some(user) = self.store.user(peer).await?
        {
            out.push((peer, user.username));
        }
        for token in mention_tokens(content) {
            let trimmed = token.trim_end_matches(['.', '-']);
            let mut user = self.store.user_by_name(&token).await?;
            if user.is_none() && trimmed != token && trimmed.len() >= 3 {
                user = self.store.user_by_name(trimmed).await?;
            }
            let Some(user) = user else { continue };
            if user.id == author || out.iter().any(|(id, _)| *id == user.id) {
                continue;
            }
            if self.store.is_member(room.id, user.id).await? {
                out.push((user.id, user.username));
            }
        }
        Ok(out)
    }

    /// The usernames of [`Chat::mentioned_users`], what a message record keeps.
    pub(super) async fn mention_names(
        &self,
        room: &Room,
        author: Uuid,
        content: &str,
    ) -> Result<Vec<String>, Error> {
        Ok(self
            .mentioned_users(room, author, content)
            .await?
            .into_iter()
            .map(|(_, name)| name)
            .collect())
    }

    /// The caller's mentions in `room` after their read cursor `last_read_seq`.
    pub(super) async fn mention_count(
        &self,
        who: &Principal,
        room: &Room,
        last_read_seq: u64,
    ) -> Result<u64, Error> {
        if last_read_seq >= room.last_seq {
            return Ok(0);
        }
        self.store
            .mentions_after(who.user_id, room.id, last_read_seq)
            .await
    }

    /// The caller's newest mentions with ids below `before` (none: the newest), at most
    /// `limit` (1 to [`MAX_MENTION_PAGE`]), newest first; with the id to continue before when
    /// more may follow and how many the caller has in all. A mention in a room the caller is
    /// no longer a member of, or of a message since gone, is left out.
    pub async fn mentions_page(
        &self,
        who: &Principal,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<MentionView>, Option<u64>, u64), Error> {
        policy::check_account(who)?;
        let limit = limit.clamp(1, MAX_MENTION_PAGE);
        let entries = self
            .store
            .mention_page(who.user_id, before.unwrap_or(u64::MAX), limit)
            .await?;
        let next = (entries.len() == limit)
            .then(|| entries.last().map(|e| e.id))
            .flatten();
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(room) = self.store.room(entry.room_id).await? else {
                continue;
            };
            let Some(membership) = self.store.membership(room.id, who.user_id).await? else {
                continue;
            };
            let Some(message) = self.store.message(room.id, entry.seq).await? else {
                continue;
            };
            if message.deleted {
                continue;
            }
            out.push(MentionView {
                id: entry.id,
                room: room.name,
                room_id: room.id,
                seq: entry.seq,
                author: message.author_name,
                excerpt: message.content.chars().take(EXCERPT_CHARS).collect(),
                created_at_ms: message.created_at_ms,
                unread: entry.seq > membership.last_read_seq,
            });
        }
        let total = self.store.mention_total(who.user_id).await?;
        Ok((out, next, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_usernames_after_an_at_sign() {
        assert_eq!(mention_tokens("hi @Bob and @carl."), vec!["bob", "carl."]);
        assert_eq!(mention_tokens("mail a@bob.example"), Vec::<String>::new());
        assert_eq!(mention_tokens("@bob @bob @BOB"), vec!["bob"]);
        assert_eq!(mention_tokens("@ab @@bob"), Vec::<String>::new());
        assert_eq!(mention_tokens("@bob@carl"), vec!["bob"]);
        assert_eq!(mention_tokens("(@dave_1)"), vec!["dave_1"]);
        assert_eq!(
            mention_tokens(&format!("@{}", "a".repeat(33))),
            Vec::<String>::new()
        );
        assert_eq!(mention_tokens("@é @bö"), Vec::<String>::new());
    }

    #[test]
    fn tokens_are_bounded() {
        let text: String = (0..100).map(|i| format!("@user{i} ")).collect();
        assert_eq!(mention_tokens(&text).len(), MAX_MENTIONS_PER_MESSAGE);
    }
}
