//! Topics (the native protocol's pub/sub): subscriptions, Broadcasts, custom frames, binary
//! frames, and user-to-user direct messages (delivered live, or queued for an offline user).

use bytes::Bytes;
use serde_json::Value;
use uuid::Uuid;

use super::{Chat, DirectOutcome};
use crate::core::policy;
use crate::error::Error;
use crate::events::{BinaryKind, Event};
use crate::hub::ConnId;
use crate::hub::topic;
use crate::metrics::MessageKind;
use crate::principal::Principal;
use crate::store::{QueueReceipt, QueuedDirectMessage, StoredFile, now_secs};

impl Chat {
    /// Subscribes a connection to topics and patterns, all or nothing. Returns the active
    /// subscription count.
    pub fn subscribe(
        &self,
        who: &Principal,
        conn: ConnId,
        topics: &[String],
    ) -> Result<usize, Error> {
        let mut parsed = Vec::with_capacity(topics.len());
        for text in topics {
            let subscription = topic::parse_subscription(text)
                .map_err(|e| Error::BadRequest(format!("{text:?}: {e}")))?;
            policy::check_subscribe(who, &subscription)?;
            parsed.push(subscription);
        }
        let max = self.limits.max_subscriptions;
        self.broker
            .subscribe_all(conn, &parsed, max)
            .map_err(|_| Error::RateLimited(format!("at most {max} subscriptions per connection")))
    }

    pub fn unsubscribe(&self, conn: ConnId, topics: &[String]) -> usize {
        let mut active = self.broker.subscription_count(conn);
        for text in topics {
            active = self.broker.unsubscribe(conn, text);
        }
        active
    }

    /// Publishes a Broadcast; returns the number of connections it was delivered to.
    pub fn broadcast(
        &self,
        who: &Principal,
        origin: Option<ConnId>,
        topic_name: &str,
        payload: Value,
        message_id: String,
    ) -> Result<usize, Error> {
        policy::check_publish(who, topic_name)?;
        let event = Event::Broadcast {
            topic: topic_name.to_owned(),
            payload,
            sender: who.username.clone(),
            sent_at: now_secs(),
            message_id,
        };
        Ok(self.broker.publish_topic(topic_name, event, origin))
    }

    /// Relays a custom `X-` frame on a topic.
    pub fn relay_custom(
        &self,
        who: &Principal,
        origin: Option<ConnId>,
        kind: &str,
        topic_name: &str,
        data: Value,
    ) -> Result<usize, Error> {
        policy::check_publish(who, topic_name)?;
        let event = Event::Custom {
            kind: kind.to_owned(),
            topic: topic_name.to_owned(),
            data,
            sender: who.username.clone(),
        };
        Ok(self.broker.publish_topic(topic_name, event, origin))
    }

    /// A binary frame. With an address: a broadcast or stream frame to the subscribers of the
    /// topic `address`, a direct or file frame to the live connections of the user `address`
    /// (`NotFound` when they have none). Without one: only acknowledged, except that a file
    /// transfer is kept as a file of the sender's, not attached anywhere yet (fetched and
    /// attached later by its id). Returns how many connections it reached and the file's id.
    pub async fn binary(
        &self,
        who: &Principal,
        origin: ConnId,
        kind: BinaryKind,
        address: Option<String>,
        data: Bytes,
    ) -> Result<(usize, Option<u64>), Error> {
        let Some(address) = address else {
            if kind != BinaryKind::FileTransfer {
                return Ok((0, None));
            }
            policy::check_account(who)?;
            let file = self
                .store
                .put_file(
                    StoredFile {
                        id: 0,
                        room_id: 0,
                        uploader: who.user_id,
                        name: "binary-file".to_owned(),
                        content_type: "application/octet-stream".to_owned(),
                        size: 0,
                        sha256: String::new(),
                        created_at: now_secs(),
                    },
                    data.to_vec(),
                )
                .await?;
            return Ok((0, Some(file.id)));
        };
        let to_topic = matches!(kind, BinaryKind::Broadcast | BinaryKind::StreamData);
        if to_topic {
            policy::check_publish(who, &address)?;
        }
        let target = if to_topic {
            None
        } else {
            let not_found =
                || Error::NotFound(format!("User {address} not found or not connected"));
            let user = self
                .store
                .user_by_name(&address)
                .await?
                .filter(|u| !u.disabled)
                .ok_or_else(not_found)?;
            Some(user.id)
        };
        let event = Event::Binary {
            kind,
            address: address.clone(),
            sender: who.username.clone(),
            data,
        };
        match target {
            None => Ok((
                self.broker.publish_topic(&address, event, Some(origin)),
                None,
            )),
            Some(user_id) => {
                let delivered = self.broker.publish_user(user_id, event).len();
                if delivered == 0 {
                    return Err(Error::NotFound(format!(
                        "User {address} not found or not connected"
                    )));
                }
                Ok((delivered, None))
            }
        }
    }

    /// A direct message: delivered to every live connection of the target (a username or a
    /// user id), or stored for their next connection. `NotFound` when there is no such user;
    /// `RateLimited` when the offline user's queue (or the sender's share of it) is full.
    pub async fn direct_message(
        &self,
        who: &Principal,
        target: &str,
        payload: Value,
        message_id: String,
    ) -> Result<DirectOutcome, Error> {
        let user = match Uuid::parse_str(target) {
            Ok(id) => self.store.user(id).await?,
            Err(_) => self.store.user_by_name(target).await?,
        }
        .filter(|u| !u.disabled)
        .ok_or_else(|| Error::NotFound(format!("User {target} not found or not connected")))?;
        // Kept as JSON text from here on: a `Value` costs many times its text in memory.
        let payload = serde_json::value::to_raw_value(&payload)
            .map_err(|e| Error::BadRequest(format!("payload cannot be encoded: {e}")))?;
        let sent_at = now_secs();
        let event = Event::DirectMessage {
            from_user: who.username.clone(),
            from_user_id: who.user_id,
            payload: payload.clone(),
            sent_at,
            message_id: message_id.clone(),
        };
        let delivered = self.broker.publish_user(user.id, event);
        if !delivered.is_empty() {
            self.metrics.message(MessageKind::Direct);
            return Ok(DirectOutcome::Delivered(delivered));
        }
        self.store
            .queue_direct_message(
                user.id,
                QueuedDirectMessage {
                    from_user_id: who.user_id,
                    from_user: who.username.clone(),
                    payload,
                    message_id,
                    sent_at,
                },
                self.limits.direct_queue,
            )
            .await
            .map_err(|e| match e {
                Error::RateLimited(why) => {
                    Error::RateLimited(format!("User {target} is not connected and {why}"))
                }
                other => other,
            })?;
        self.metrics.message(MessageKind::Direct);
        Ok(DirectOutcome::Queued)
    }

    /// The next page of the direct messages queued while `who` was offline, after queue id
    /// `after` (0: the first page), as events, oldest first: at most [`QUEUE_PAGE_BYTES`] of
    /// them (at least one). Nothing leaves the queue until the page is delivered
    /// ([`Chat::delivered_queued_direct_messages`]).
    pub async fn queued_direct_messages(
        &self,
        who: &Principal,
        after: u64,
    ) -> Result<QueuedDirect, Error> {
        let page = self
            .store
            .queued_direct_messages(who.user_id, after, QUEUE_PAGE_BYTES)
            .await?;
        Ok(QueuedDirect {
            events: page
                .messages
                .into_iter()
                .map(|m| Event::DirectMessage {
                    from_user: m.from_user,
                    from_user_id: m.from_user_id,
                    payload: m.payload,
                    sent_at: m.sent_at,
                    message_id: m.message_id,
                })
                .collect(),
            receipt: page.receipt,
            more: page.more,
        })
    }

    /// Removes a delivered page of queued direct messages from the queue.
    pub async fn delivered_queued_direct_messages(
        &self,
        receipt: QueueReceipt,
    ) -> Result<(), Error> {
        self.store.delete_direct_messages(receipt).await
    }
}

/// Most bytes (of stored entries) one page of queued direct messages holds: a connection gets
/// its queue a page at a time, each once the one before is written to its socket.
pub const QUEUE_PAGE_BYTES: usize = 256 * 1024;

/// A page of queued direct messages (the reply to `Command::QueuedDirectMessages`).
#[derive(Debug)]
pub struct QueuedDirect {
    pub events: Vec<Event>,
    /// What to remove once the events are delivered.
    pub receipt: QueueReceipt,
    /// More pages follow.
    pub more: bool,
}
