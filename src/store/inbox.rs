//! Per-user queues: direct messages waiting for an offline user, and the notification inbox.
//! Both are keyed user id + a store-wide increasing id, so a user's entries are one ordered
//! prefix scan.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SledStore, decode, encode, keys};
use crate::error::Error;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedDirectMessage {
    pub from_user_id: Uuid,
    pub from_user: String,
    pub payload: serde_json::Value,
    pub message_id: String,
    /// Unix seconds.
    pub sent_at: i64,
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

impl SledStore {
    /// Queues a direct message for `user_id`, dropping the oldest beyond `max` per user.
    pub async fn queue_direct_message(
        &self,
        user_id: Uuid,
        message: QueuedDirectMessage,
        max: usize,
    ) -> Result<(), Error> {
        let record = encode(&message)?;
        self.write(move |t| {
            let id = t.next_counter(b"next_dm_id")?;
            t.dm_queue.insert(keys::user_seq(user_id, id), record)?;
            let queued = t.dm_queue.scan_prefix(user_id.as_bytes()).count();
            if queued > max {
                for entry in t
                    .dm_queue
                    .scan_prefix(user_id.as_bytes())
                    .take(queued - max)
                {
                    let (key, _) = entry?;
                    t.dm_queue.remove(key)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Takes every queued direct message of `user_id`, oldest first. They are deleted only after
    /// the caller had them (the delete is durable when this returns).
    pub async fn take_direct_messages(
        &self,
        user_id: Uuid,
    ) -> Result<Vec<QueuedDirectMessage>, Error> {
        self.write(move |t| {
            let mut out = Vec::new();
            for entry in t.dm_queue.scan_prefix(user_id.as_bytes()) {
                let (key, raw) = entry?;
                out.push(decode("dm_queue", &raw)?);
                t.dm_queue.remove(key)?;
            }
            Ok(out)
        })
        .await
    }

    /// Stores a notification in its user's inbox, assigning its id.
    pub async fn insert_notification(
        &self,
        mut notification: Notification,
    ) -> Result<Notification, Error> {
        self.write(move |t| {
            notification.id = t.next_counter(b"next_notification_id")?;
            t.notifications.insert(
                keys::user_seq(notification.user_id, notification.id),
                encode(&notification)?,
            )?;
            Ok(notification)
        })
        .await
    }

    /// A user's notifications, newest first, at most `limit`, and the unread count.
    pub fn notifications(
        &self,
        user_id: Uuid,
        limit: usize,
    ) -> Result<(Vec<Notification>, usize), Error> {
        let mut out = Vec::new();
        let mut unread = 0;
        for entry in self
            .trees()?
            .notifications
            .scan_prefix(user_id.as_bytes())
            .rev()
        {
            let (_, raw) = entry?;
            let notification: Notification = decode("notifications", &raw)?;
            if !notification.read {
                unread += 1;
            }
            if out.len() < limit {
                out.push(notification);
            }
        }
        Ok((out, unread))
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
            notification.read = true;
            t.notifications.insert(key, encode(&notification)?)?;
            Ok(notification)
        })
        .await
    }
}
