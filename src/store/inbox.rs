//! Per-user queues: direct messages waiting for an offline user, and the notification inbox.
//! Both are keyed user id + a store-wide increasing id, so a user's entries are one ordered
//! prefix scan.
//!
//! Both are bounded, by totals the writer keeps with the entries (in the same write, so they
//! always agree): a direct-message queue in messages and bytes, per recipient and per sender
//! (`dm_queue_totals`); an inbox in notifications, with its unread count
//! (`notification_counts`), so that counting unread notifications reads one entry instead of
//! the whole inbox.
//!
//! A queue is read page by page outside the writer (a blocking thread's range scan: the
//! writer, which every durable write in the daemon waits for, never reads a queue's content)
//! and only the entries delivered are deleted, by the writer.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{SledStore, Trees, decode, encode, keys};
use crate::error::Error;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedDirectMessage {
    pub from_user_id: Uuid,
    pub from_user: String,
    /// The payload as the sender wrote it, JSON text: decoding it into a `Value` costs about
    /// 16 times its size in memory, and nothing here needs to look inside.
    pub payload: Box<RawValue>,
    pub message_id: String,
    /// Unix seconds.
    pub sent_at: i64,
}

/// What one user's direct-message queue may hold (`ws.max_queued_direct_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBounds {
    pub messages: usize,
    pub bytes: usize,
    pub messages_per_sender: usize,
    pub bytes_per_sender: usize,
}

/// One page of a user's queued direct messages, oldest first.
#[derive(Debug)]
pub struct QueuedPage {
    pub messages: Vec<QueuedDirectMessage>,
    /// What to delete once the page is delivered.
    pub receipt: QueueReceipt,
    /// More entries follow this page.
    pub more: bool,
}

/// The entries of a [`QueuedPage`], for deleting them once they are delivered.
#[derive(Debug, Clone, Default)]
pub struct QueueReceipt {
    user_id: Uuid,
    /// Queue id and sender of each entry.
    entries: Vec<(u64, Uuid)>,
}

impl QueueReceipt {
    /// The queue id of the page's last entry: where the next page starts after.
    pub fn last(&self) -> Option<u64> {
        self.entries.last().map(|(id, _)| *id)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    pub id: u64,
    pub user_id: Uuid,
    pub level: String,
    pub title: String,
    pub message: String,
    pub category: Option<String>,
    pub url: Option<String>,
    pub actions: serde_json::Value,
    /// Unix seconds.
    pub created_at: i64,
    pub read: bool,
}

/// A page of an inbox, newest first.
#[derive(Debug)]
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    /// Unread notifications in the whole inbox.
    pub unread: u64,
    /// Older notifications follow this page.
    pub has_more: bool,
}

/// Two counters stored as 16 bytes (u64 BE each): a queue's messages and bytes, or an inbox's
/// notifications and unread ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) first: u64,
    pub(super) second: u64,
}

impl Totals {
    pub(super) fn read(tree: &sled::Tree, key: &[u8]) -> Result<Totals, Error> {
        Ok(tree.get(key)?.map_or_else(Totals::default, |raw| Totals {
            first: keys::u64_at(&raw, 0).unwrap_or(0),
            second: keys::u64_at(&raw, 8).unwrap_or(0),
        }))
    }

    /// Stores the totals, or removes the entry when both are 0.
    pub(super) fn write(self, tree: &sled::Tree, key: &[u8]) -> Result<(), Error> {
        if self == Totals::default() {
            tree.remove(key)?;
        } else {
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&self.first.to_be_bytes());
            raw[8..].copy_from_slice(&self.second.to_be_bytes());
            tree.insert(key, raw.as_slice())?;
        }
        Ok(())
    }
}

/// The key of one sender's share of a user's queue totals.
pub(super) fn sender_totals_key(user_id: Uuid, sender: Uuid) -> [u8; 32] {
    keys::family(user_id, sender)
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Most notifications of an over-full inbox dropped by one insert, so that the writer is never
/// held long (an inbox over the bound from before it existed shrinks over a few inserts).
const MAX_DROPPED_PER_INSERT: usize = 64;

impl Trees {
    /// Deletes a removed user's queue and inbox with their totals. Writer task only.
    pub(super) fn remove_user_inbox(&self, user_id: Uuid) -> Result<(), Error> {
        for tree in [
            &self.dm_queue,
            &self.dm_queue_totals,
            &self.notifications,
            &self.notification_counts,
        ] {
            for key in tree.scan_prefix(user_id.as_bytes()).keys() {
                tree.remove(key?)?;
            }
        }
        Ok(())
    }
}

impl SledStore {
    /// Queues a direct message for `user_id` unless that goes beyond `bounds`: the recipient's
    /// queue in messages or bytes, or the sender's share of it. Refused: `RateLimited`, and
    /// nothing is stored (queued messages are never dropped for new ones).
    pub async fn queue_direct_message(
        &self,
        user_id: Uuid,
        message: QueuedDirectMessage,
        bounds: QueueBounds,
    ) -> Result<(), Error> {
        let sender = message.from_user_id;
        let record = encode(&message)?;
        drop(message);
        let size = as_u64(record.len());
        self.write(move |t| {
            let total_key = *user_id.as_bytes();
            let sender_key = sender_totals_key(user_id, sender);
            let mut total = Totals::read(&t.dm_queue_totals, &total_key)?;
            let mut share = Totals::read(&t.dm_queue_totals, &sender_key)?;
            if share.first >= as_u64(bounds.messages_per_sender)
                || share.second.saturating_add(size) > as_u64(bounds.bytes_per_sender)
            {
                return Err(Error::RateLimited(format!(
                    "you have as much queued for this user as one sender may (at most {} \
                     messages, {} bytes); it is delivered when they connect",
                    bounds.messages_per_sender, bounds.bytes_per_sender
                )));
            }
            if total.first >= as_u64(bounds.messages)
                || total.second.saturating_add(size) > as_u64(bounds.bytes)
            {
                return Err(Error::RateLimited(format!(
                    "the user's offline queue is full (at most {} messages, {} bytes); try \
                     again when they are online",
                    bounds.messages, bounds.bytes
                )));
            }
            let id = t.next_counter(b"next_dm_id")?;
            t.dm_queue.insert(keys::user_seq(user_id, id), record)?;
            total.first += 1;
            total.second = total.second.saturating_add(size);
            share.first += 1;
            share.second = share.second.saturating_add(size);
            total.write(&t.dm_queue_totals, &total_key)?;
            share.write(&t.dm_queue_totals, &sender_key)?;
            Ok(())
        })
        .await
    }

    /// The next page of `user_id`'s queued direct messages after queue id `after` (0: from the
    /// start), oldest first: at most `max_bytes` of stored entries, and at least one entry.
    /// Read on a blocking thread, outside the writer; nothing is deleted (see
    /// [`SledStore::delete_direct_messages`]).
    pub async fn queued_direct_messages(
        &self,
        user_id: Uuid,
        after: u64,
        max_bytes: usize,
    ) -> Result<QueuedPage, Error> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.queued_page_now(user_id, after, max_bytes))
            .await
            .map_err(|e| Error::Internal(format!("queue read failed: {e}")))?
    }

    fn queued_page_now(
        &self,
        user_id: Uuid,
        after: u64,
        max_bytes: usize,
    ) -> Result<QueuedPage, Error> {
        let mut page = QueuedPage {
            messages: Vec::new(),
            receipt: QueueReceipt {
                user_id,
                entries: Vec::new(),
            },
            more: false,
        };
        let Some(start) = after.checked_add(1) else {
            return Ok(page);
        };
        let range = keys::user_seq(user_id, start)..=keys::user_seq(user_id, u64::MAX);
        let mut bytes = 0usize;
        for entry in self.trees()?.dm_queue.range(range) {
            let (key, raw) = entry?;
            if !page.messages.is_empty() && bytes.saturating_add(raw.len()) > max_bytes {
                page.more = true;
                break;
            }
            bytes = bytes.saturating_add(raw.len());
            let message: QueuedDirectMessage = decode("dm_queue", &raw)?;
            let id = keys::u64_at(&key, 16).unwrap_or(0);
            page.receipt.entries.push((id, message.from_user_id));
            page.messages.push(message);
        }
        Ok(page)
    }

    /// Deletes the entries of a delivered page and takes them off the queue's totals. Entries
    /// already gone (a second delivery) are skipped. Durable when it returns.
    pub async fn delete_direct_messages(&self, receipt: QueueReceipt) -> Result<(), Error> {
        if receipt.entries.is_empty() {
            return Ok(());
        }
        self.write(move |t| {
            let user_id = receipt.user_id;
            let total_key = *user_id.as_bytes();
            let mut total = Totals::read(&t.dm_queue_totals, &total_key)?;
            for (id, sender) in &receipt.entries {
                let Some(old) = t.dm_queue.remove(keys::user_seq(user_id, *id))? else {
                    continue;
                };
                let size = as_u64(old.len());
                let sender_key = sender_totals_key(user_id, *sender);
                let mut share = Totals::read(&t.dm_queue_totals, &sender_key)?;
                share.first = share.first.saturating_sub(1);
                share.second = share.second.saturating_sub(size);
                share.write(&t.dm_queue_totals, &sender_key)?;
                total.first = total.first.saturating_sub(1);
                total.second = total.second.saturating_sub(size);
            }
            total.write(&t.dm_queue_totals, &total_key)
        })
        .await
    }

    /// Messages and bytes queued for `user_id`.
    pub fn queued_direct_totals(&self, user_id: Uuid) -> Result<(u64, u64), Error> {
        let totals = Totals::read(&self.trees()?.dm_queue_totals, user_id.as_bytes())?;
        Ok((totals.first, totals.second))
    }

    /// Stores a notification in its user's inbox, assigning its id; beyond `max` notifications
    /// the oldest are dropped. Returns the notification and how many were dropped.
    pub async fn insert_notification(
        &self,
        mut notification: Notification,
        max: usize,
    ) -> Result<(Notification, usize), Error> {
        self.write(move |t| {
            let user_id = notification.user_id;
            notification.id = t.next_counter(b"next_notification_id")?;
            t.notifications.insert(
                keys::user_seq(user_id, notification.id),
                encode(&notification)?,
            )?;
            let counts_key = *user_id.as_bytes();
            let mut counts = Totals::read(&t.notification_counts, &counts_key)?;
            counts.first += 1;
            if !notification.read {
                counts.second += 1;
            }
            let mut dropped = 0;
            while counts.first > as_u64(max) && dropped < MAX_DROPPED_PER_INSERT {
                let Some((key, raw)) = t
                    .notifications
                    .scan_prefix(user_id.as_bytes())
                    .next()
                    .transpose()?
                else {
                    break;
                };
                let oldest: Notification = decode("notifications", &raw)?;
                t.notifications.remove(key)?;
                counts.first -= 1;
                if !oldest.read {
                    counts.second = counts.second.saturating_sub(1);
                }
                dropped += 1;
            }
            counts.write(&t.notification_counts, &counts_key)?;
            Ok((notification, dropped))
        })
        .await
    }

    /// A page of a user's notifications, newest first: at most `limit` with ids below `before`
    /// (none: the newest), and the inbox's unread count (kept as a counter).
    pub fn notifications(
        &self,
        user_id: Uuid,
        before: Option<u64>,
        limit: usize,
    ) -> Result<NotificationPage, Error> {
        let start = keys::user_seq(user_id, 0);
        let end = keys::user_seq(user_id, before.unwrap_or(u64::MAX));
        let mut notifications = Vec::new();
        let mut has_more = false;
        for entry in self.trees()?.notifications.range(start..end).rev() {
            if notifications.len() >= limit {
                has_more = true;
                break;
            }
            let (_, raw) = entry?;
            notifications.push(decode("notifications", &raw)?);
        }
        Ok(NotificationPage {
            notifications,
            unread: self.unread_notifications(user_id)?,
            has_more,
        })
    }

    /// How many of a user's notifications are unread (one read: the inbox's counter).
    pub fn unread_notifications(&self, user_id: Uuid) -> Result<u64, Error> {
        Ok(Totals::read(&self.trees()?.notification_counts, user_id.as_bytes())?.second)
    }

    /// Marks one notification read. `NotFound` if it is not this user's.
    pub async fn mark_notification_read(
        &self,
        user_id: Uuid,
        id: u64,
    ) -> Result<Notification, Error> {
        self.write(move |t| {
            let key = keys::user_seq(user_id, id);
            let mut notification: Notification = match t.notifications.get(key)? {
                Some(raw) => decode("notifications", &raw)?,
                None => return Err(Error::NotFound(format!("no notification {id}"))),
            };
            if !notification.read {
                notification.read = true;
                t.notifications.insert(key, encode(&notification)?)?;
                let counts_key = *user_id.as_bytes();
                let mut counts = Totals::read(&t.notification_counts, &counts_key)?;
                counts.second = counts.second.saturating_sub(1);
                counts.write(&t.notification_counts, &counts_key)?;
            }
            Ok(notification)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> SledStore {
        crate::store::open_for_tests(dir)
    }

    fn direct(from: Uuid, text: &str) -> QueuedDirectMessage {
        QueuedDirectMessage {
            from_user_id: from,
            from_user: "sender".to_owned(),
            payload: serde_json::value::to_raw_value(&text).expect("raw"),
            message_id: text.to_owned(),
            sent_at: 0,
        }
    }

    const WIDE: QueueBounds = QueueBounds {
        messages: 100,
        bytes: 1 << 20,
        messages_per_sender: 100,
        bytes_per_sender: 1 << 20,
    };

    #[tokio::test]
    async fn a_queue_is_bounded_per_recipient_and_per_sender_and_refuses_beyond() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let (bob, mallory, alice) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let bounds = QueueBounds {
            messages: 5,
            messages_per_sender: 3,
            ..WIDE
        };
        for i in 0..3 {
            store
                .queue_direct_message(bob, direct(mallory, &format!("m{i}")), bounds)
                .await
                .expect("queued");
        }
        let refused = store
            .queue_direct_message(bob, direct(mallory, "m3"), bounds)
            .await
            .expect_err("the sender's share is full");
        assert!(matches!(refused, Error::RateLimited(_)), "{refused}");
        // Another sender still gets through, up to the recipient's bound.
        for i in 0..2 {
            store
                .queue_direct_message(bob, direct(alice, &format!("a{i}")), bounds)
                .await
                .expect("queued");
        }
        assert!(
            store
                .queue_direct_message(bob, direct(alice, "a2"), bounds)
                .await
                .is_err(),
            "the queue is full"
        );
        assert_eq!(store.queued_direct_totals(bob).expect("totals").0, 5);
        // In bytes too: one entry too big for what is left.
        let carol = Uuid::new_v4();
        let small = QueueBounds { bytes: 300, ..WIDE };
        store
            .queue_direct_message(carol, direct(alice, "x"), small)
            .await
            .expect("queued");
        let big = "y".repeat(200);
        assert!(
            store
                .queue_direct_message(carol, direct(alice, &big), small)
                .await
                .is_err()
        );
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn pages_are_bounded_in_bytes_in_order_and_only_delivered_entries_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let (bob, alice) = (Uuid::new_v4(), Uuid::new_v4());
        for i in 0..10 {
            store
                .queue_direct_message(
                    bob,
                    direct(alice, &format!("{i:03}{}", "z".repeat(100))),
                    WIDE,
                )
                .await
                .expect("queued");
        }
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = store
                .queued_direct_messages(bob, after, 700)
                .await
                .expect("page");
            assert_eq!(
                page.messages.len(),
                2,
                "two entries of about 310 bytes a page"
            );
            seen.extend(page.messages.iter().map(|m| m.message_id[..3].to_owned()));
            after = page.receipt.last().expect("entries");
            if seen.len() == 4 {
                // Not delivered (the connection went): nothing is deleted, the next reader
                // starts over.
                break;
            }
            store
                .delete_direct_messages(page.receipt)
                .await
                .expect("delete");
            if !page.more {
                break;
            }
        }
        let rest = store
            .queued_direct_messages(bob, 0, 1 << 20)
            .await
            .expect("page");
        assert!(!rest.more);
        let ids: Vec<String> = rest
            .messages
            .iter()
            .map(|m| m.message_id[..3].to_owned())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "oldest first");
        assert_eq!(ids.len(), 8, "the undelivered page stays: {ids:?}");
        assert_eq!((ids[0].as_str(), ids[7].as_str()), ("002", "009"));
        store
            .delete_direct_messages(rest.receipt.clone())
            .await
            .expect("delete");
        // Deleting twice is harmless and the totals reach zero.
        store
            .delete_direct_messages(rest.receipt)
            .await
            .expect("delete");
        assert_eq!(store.queued_direct_totals(bob).expect("totals"), (0, 0));
        assert!(
            store.trees().expect("trees").dm_queue_totals.is_empty(),
            "no stale totals"
        );
        store.close().await.expect("close");
    }

    fn notification(user_id: Uuid, title: &str) -> Notification {
        Notification {
            id: 0,
            user_id,
            level: "info".to_owned(),
            title: title.to_owned(),
            message: String::new(),
            category: None,
            url: None,
            actions: serde_json::Value::Array(Vec::new()),
            created_at: 0,
            read: false,
        }
    }

    #[tokio::test]
    async fn an_inbox_keeps_its_newest_and_counts_unread_without_a_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let bob = Uuid::new_v4();
        let mut ids = Vec::new();
        let mut dropped = 0;
        for i in 0..8 {
            let (stored, gone) = store
                .insert_notification(notification(bob, &format!("n{i}")), 5)
                .await
                .expect("insert");
            ids.push(stored.id);
            dropped += gone;
        }
        assert_eq!(dropped, 3);
        let page = store.notifications(bob, None, 3).expect("page");
        let titles: Vec<&str> = page
            .notifications
            .iter()
            .map(|n| n.title.as_str())
            .collect();
        assert_eq!(titles, ["n7", "n6", "n5"]);
        assert!(page.has_more);
        assert_eq!(page.unread, 5);
        let older = store
            .notifications(bob, page.notifications.last().map(|n| n.id), 10)
            .expect("page");
        let titles: Vec<&str> = older
            .notifications
            .iter()
            .map(|n| n.title.as_str())
            .collect();
        assert_eq!(titles, ["n4", "n3"], "the oldest were dropped");
        assert!(!older.has_more);
        store
            .mark_notification_read(bob, ids[7])
            .await
            .expect("read");
        store
            .mark_notification_read(bob, ids[7])
            .await
            .expect("read again");
        assert_eq!(store.unread_notifications(bob).expect("unread"), 4);
        assert!(
            store.mark_notification_read(bob, ids[0]).await.is_err(),
            "dropped"
        );
        store.close().await.expect("close");
    }
}
