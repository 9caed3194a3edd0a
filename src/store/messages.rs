//! The per-room message log: each room numbers its messages 1, 2, 3, ... (see `store::rooms`
//! for how a room's last number is kept); a message's key is room id + sequence, so "everything
//! after seq N" is one range scan. That is what makes an ordered resume possible.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SledStore, Trees, decode, keys};
use crate::error::Error;

/// What appending a message did.
#[derive(Debug, Clone)]
pub struct Appended {
    pub message: Message,
    /// The same `client_msg_id` was stored before: `message` is that original, nothing new was
    /// written.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub room_id: u64,
    pub seq: u64,
    pub author: Uuid,
    /// The author's username at the time (usernames never change), so reads need no lookup.
    #[serde(default)]
    pub author_name: String,
    /// The author's avatar URL when the message was sent (like `author_name`, a snapshot, so
    /// that encoding a message needs no lookup; EduSphere shows it as `userAvatar`). Absent in
    /// records written before it existed and for authors without an avatar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_avatar: Option<String>,
    pub content: String,
    pub created_at_ms: i64,
    pub edited_at_ms: Option<i64>,
    pub deleted: bool,
    pub reply_to: Option<u64>,
    pub client_msg_id: Option<String>,
    /// Files attached to it (Kibray's uploads), as they were when attached, so that encoding a message
    /// needs no lookup. Absent in records without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<super::StoredFile>,
    /// Reactions: each emoji with the usernames who reacted with it, in the order they did.
    /// Absent in records without any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reactions: BTreeMap<String, Vec<String>>,
    /// The usernames this message mentions (and, in a direct room, the other participant),
    /// as the core resolved them; the store indexes them per user (`store::mentions`). Absent
    /// in records without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
}

/// Sequence number of the newest message of `room_id` in `messages`, 0 if it has none.
pub(crate) fn newest_message_seq(messages: &sled::Tree, room_id: u64) -> Result<u64, Error> {
    match messages.scan_prefix(keys::room(room_id)).next_back() {
        Some(entry) => {
            let (key, _) = entry?;
            Ok(keys::u64_at(&key, 8).unwrap_or(0))
        }
        None => Ok(0),
    }
}

impl Trees {
    pub fn message(&self, room_id: u64, seq: u64) -> Result<Option<Message>, Error> {
        self.messages
            .get(keys::message(room_id, seq))?
            .map(|raw| decode("messages", &raw))
            .transpose()
    }
}

impl SledStore {
    /// Appends a message to its room's log with the next sequence number and returns it as
    /// stored. A `client_msg_id` already used by the same author in the room returns the original
    /// instead (idempotent retries). Durable when it returns.
    ///
    /// Its `attachments` are stored with it, in the same write: new files (id 0, their content
    /// kept already) get a record, existing ones ([`super::StoredFile::reference`]) must be the
    /// author's and not attached in another room; each is referenced by the message.
    #[cfg(test)]
    pub async fn append_message(&self, message: Message) -> Result<Appended, Error> {
        self.append_message_mentioning(message, super::DEFAULT_MAX_MENTIONS_PER_USER)
            .await
    }

    /// [`SledStore::append_message`], recording the message's `mentions` per user in the same
    /// write (at most `max_mentions` kept per user; the oldest go).
    pub async fn append_message_mentioning(
        &self,
        mut message: Message,
        max_mentions: usize,
    ) -> Result<Appended, Error> {
        let routes = self.webhook_routes();
        let wake = routes.clone();
        let appended = self
            .write(move |t| {
                let room_id = message.room_id;
                let mut sequence = t.last_seq_for_append(room_id)?;
                let client_key = message
                    .client_msg_id
                    .as_deref()
                    .map(|id| keys::client_msg(room_id, message.author, id));
                if let Some(key) = &client_key
                && let Some(raw) = t.client_ids.get(key)?
                && let Some(seq) = keys::u64_at(&raw, 0)
                // After a crash the index can name a sequence number the room never
                // committed (the index entry reached sled's log, the message did not), or
                // one since taken by another message: such an entry is stale, and the
                // message is appended anew rather than answered with someone else's.
                && seq <= sequence.last
                && let Some(original) = t.message(room_id, seq)?
                && original.author == message.author
                && original.client_msg_id == message.client_msg_id
                {
                    return Ok(Appended {
                        message: original,
                        duplicate: true,
                    });
                }
                message.seq = sequence.last + 1;
                if !message.attachments.is_empty() {
                    let mut files = t.resolve_attachments(
                        room_id,
                        message.author,
                        std::mem::take(&mut message.attachments),
                    )?;
                    // Before the message, like the index entry below: a crash prefix may hold
                    // records no message lists (swept later), never a message whose files are
                    // missing.
                    t.store_attachments(&mut files, Some(message.seq))?;
                    message.attachments = files;
                }
                // The index entry goes first. sled recovers a prefix of its one log after a crash:
                // with this order that prefix holds the entry without the message (stale, see
                // above) or both, never the message without its entry, which would let the
                // client's retry of an unacknowledged send store it a second time.
                if let Some(key) = client_key {
                    t.client_ids.insert(key, &message.seq.to_be_bytes())?;
                }
                super::insert_record(&t.messages, keys::message(room_id, message.seq), &message)?;
                // Searchable in the same batch as it is stored.
                t.index_message(&message)?;
                // The author has read what they wrote: their own messages never count as unread
                // (in every dialect and over HTTP), in the same batch as the message.
                t.advance_read_cursor(room_id, message.author, message.seq)?;
                t.reindex_mentions(room_id, message.seq, &[], &message.mentions, max_mentions)?;
                // The webhook event goes in the same batch: durable no later than the message.
                if routes.any(super::webhooks::MESSAGE_CREATED) {
                    let event = super::webhooks::message_event(t, &message, None)?;
                    t.queue_webhook_events(&routes, vec![event])?;
                }
                // Only now that the message is in the tree: a failed insert takes no number.
                sequence.last = message.seq;
                t.sequences.set(room_id, sequence);
                Ok(Appended {
                    message,
                    duplicate: false,
                })
            })
            .await;
        if matches!(&appended, Ok(a) if !a.duplicate) && wake.any(super::webhooks::MESSAGE_CREATED)
        {
            wake.queued();
        }
        appended
    }

    /// Applies `change` to a stored message and returns the result. Durable when it returns.
    /// Files the change takes out of its `attachments` go (see `store::files`) unless another
    /// message lists them.
    pub async fn update_message<F>(
        &self,
        room_id: u64,
        seq: u64,
        max_mentions: usize,
        change: F,
    ) -> Result<Message, Error>
    where
        F: FnOnce(&mut Message) -> Result<(), Error> + Send + 'static,
    {
        let routes = self.webhook_routes();
        let wake = routes.clone();
        let (message, freed) = self
            .write(move |t| {
                let mut message = t
                    .message(room_id, seq)?
                    .ok_or_else(|| Error::NotFound(format!("no message {seq} in this room")))?;
                let listed: Vec<u64> = message.attachments.iter().map(|file| file.id).collect();
                let before = message.clone();
                change(&mut message)?;
                if message.deleted {
                    message.mentions.clear();
                }
                let mut freed = Vec::new();
                // The files go first: a crash prefix may keep a message that was not deleted
                // without its files, never an acknowledged deletion with them.
                t.detach_removed(&listed, &message, &mut freed)?;
                super::insert_record(&t.messages, keys::message(room_id, seq), &message)?;
                t.reindex_mentions(
                    room_id,
                    seq,
                    &before.mentions,
                    &message.mentions,
                    max_mentions,
                )?;
                // An edit is found by its new text only, a deleted message not at all.
                t.reindex_message(&before, &message)?;
                // An edit or a deletion (not a reaction) is a webhook event, in the same batch.
                if let Some(event) = super::webhooks::change_event(&routes, t, &before, &message)? {
                    t.queue_webhook_events(&routes, vec![event])?;
                }
                Ok((message, freed))
            })
            .await?;
        // Cheap when nothing was queued: the deliveries find their queues as they were.
        if !wake.endpoints.is_empty() {
            wake.queued();
        }
        self.remove_unreferenced(freed).await;
        Ok(message)
    }

    pub fn message(&self, room_id: u64, seq: u64) -> Result<Option<Message>, Error> {
        self.trees()?.message(room_id, seq)
    }

    /// Deletes a room's messages created before `cutoff_ms` (retention), oldest first, at most
    /// `max` in one call so the writer is never held long, with the files only they list.
    /// Returns how many were deleted.
    pub async fn purge_messages_before(
        &self,
        room_id: u64,
        cutoff_ms: i64,
        max: usize,
    ) -> Result<usize, Error> {
        let (purged, freed) = self
            .write(move |t| {
                let mut purged = 0;
                let mut freed = Vec::new();
                for entry in t.messages.scan_prefix(keys::room(room_id)) {
                    let (key, raw) = entry?;
                    let message: Message = decode("messages", &raw)?;
                    if message.created_at_ms >= cutoff_ms || purged >= max {
                        break;
                    }
                    if purged == 0
                        && let Some(room) = t.room(room_id)?
                    {
                        // The room's number must outlive its messages: once none is left, only the
                        // record's floor keeps the next Send from reusing a purged number. Written
                        // before the removals, in the same batch.
                        t.record_last_seq(room_id, room.last_seq)?;
                    }
                    for file in &message.attachments {
                        t.detach_file(room_id, file.id, message.seq, &mut freed)?;
                    }
                    t.reindex_mentions(room_id, message.seq, &message.mentions, &[], 0)?;
                    t.unindex_message(&message)?;
                    t.messages.remove(key)?;
                    purged += 1;
                }
                Ok((purged, freed))
            })
            .await?;
        self.remove_unreferenced(freed).await;
        Ok(purged)
    }

    /// The newest `limit` messages of a room with `seq < before`, oldest first.
    pub fn messages_before(
        &self,
        room_id: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Message>, Error> {
        let start = keys::message(room_id, 0);
        let end = keys::message(room_id, before);
        let mut out = Vec::new();
        for entry in self.trees()?.messages.range(start..end).rev().take(limit) {
            let (_, raw) = entry?;
            out.push(decode("messages", &raw)?);
        }
        out.reverse();
        Ok(out)
    }

    /// Messages of a room with `after < seq < before`, oldest first, at most `limit`.
    pub fn messages(
        &self,
        room_id: u64,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Message>, Error> {
        self.messages_within(room_id, after, before, limit, usize::MAX)
    }

    /// [`SledStore::messages`], stopping before the stored records pass `max_bytes` in all
    /// (at least one message is returned, whatever its size): what a Join replays.
    pub fn messages_within(
        &self,
        room_id: u64,
        after: u64,
        before: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, Error> {
        let start = keys::message(room_id, after.saturating_add(1));
        let end = keys::message(room_id, before);
        let mut out = Vec::new();
        if after.saturating_add(1) >= before {
            return Ok(out);
        }
        let mut bytes = 0usize;
        for entry in self.trees()?.messages.range(start..end).take(limit) {
            let (_, raw) = entry?;
            bytes = bytes.saturating_add(raw.len());
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(decode("messages", &raw)?);
        }
        Ok(out)
    }
}
