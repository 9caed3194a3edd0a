//! Webhook endpoints and their durable outbox (issue 17). Trees: `webhook_endpoints` (id u64
//! BE -> [`WebhookEndpoint`] JSON), `webhook_outbox` (endpoint id u64 BE ++ entry number u64
//! BE -> [`OutboxEntry`] JSON), `webhook_queues` (endpoint id -> head u64 BE ++ tail u64 BE:
//! the entries `head..tail` are pending, oldest first). Events of a stored write (a message
//! created, edited, deleted) are queued by that write, so they are durable in the same flush
//! that makes the message durable, before its sender is told it is stored.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{SledStore, Trees, decode, encode, insert_record, keys};
use crate::error::Error;

/// An endpoint as stored. `secret` is the `whsec_…` form: it never leaves the daemon but
/// to sign, and is shown once, when the endpoint is added.
#[derive(Clone, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: u64,
    pub url: String,
    /// Event types (`message.created`, …) or `*` for all.
    pub events: Vec<String>,
    pub secret: String,
    /// Defined in the config file (`[[webhooks.endpoints]]`): kept in step with it at start.
    pub from_config: bool,
    /// Set by the config file (`enabled = false`); admin-added endpoints are enabled.
    pub enabled: bool,
    /// Set after `webhooks.disable_after` consecutive failures; cleared by `natter webhook
    /// enable`.
    pub auto_disabled: bool,
    /// Consecutive failed deliveries.
    pub failures: u64,
    pub created_at: i64,
}

impl std::fmt::Debug for WebhookEndpoint {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("enabled", &self.enabled)
            .field("auto_disabled", &self.auto_disabled)
            .finish_non_exhaustive()
    }
}

impl WebhookEndpoint {
    /// Whether events of type `kind` go to this endpoint.
    pub fn wants(&self, kind: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == kind)
    }
}

/// One pending delivery: the event's id (the `webhook-id` header, the same on every retry)
/// and its JSON body, fixed when the event happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub webhook_id: String,
    pub body: String,
}

/// Which endpoints take which events, and the outbox's bound: set by the webhook service
/// whenever the endpoints change, read by every write that queues an event.
#[derive(Clone, Default)]
pub struct WebhookRoutes {
    /// Every endpoint (enabled or not: a disabled one still queues, up to the bound) and the
    /// events it takes.
    pub endpoints: Vec<(u64, Vec<String>)>,
    /// `webhooks.max_pending`: entries kept per endpoint; beyond it the oldest go.
    pub max_pending: u64,
    /// Told how many entries of an endpoint a write dropped (metrics, the log).
    pub on_drop: Option<Arc<dyn Fn(u64, u64) + Send + Sync>>,
    /// Called once a write that queued events is durable: wakes the deliveries.
    pub on_queued: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl WebhookRoutes {
    fn targets<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = u64> + 'a {
        self.endpoints
            .iter()
            .filter(move |(_, events)| events.iter().any(|e| e == "*" || e == kind))
            .map(|(id, _)| *id)
    }

    /// Tells the deliveries that entries were queued (after the write is durable).
    pub fn queued(&self) {
        if let Some(on_queued) = &self.on_queued {
            on_queued();
        }
    }

    /// Whether any endpoint takes events of type `kind`.
    pub fn any(&self, kind: &str) -> bool {
        self.targets(kind).next().is_some()
    }
}

/// An event to queue: its type and data; the body is built once for all its endpoints.
pub struct WebhookEvent {
    pub kind: &'static str,
    pub data: Value,
}

pub const MESSAGE_CREATED: &str = "message.created";
pub const MESSAGE_EDITED: &str = "message.edited";
pub const MESSAGE_DELETED: &str = "message.deleted";

/// The data of a message event: the room, the sequence, the author, the text.
pub(super) fn message_event(
    t: &Trees,
    message: &super::Message,
    kind: Option<&'static str>,
) -> Result<WebhookEvent, Error> {
    let room = t
        .room(message.room_id)?
        .map(|room| room.name)
        .unwrap_or_default();
    let kind = kind.unwrap_or(MESSAGE_CREATED);
    let data = if kind == MESSAGE_DELETED {
        serde_json::json!({
            "room": room,
            "room_id": message.room_id,
            "seq": message.seq,
            "deleted_at": message.edited_at_ms.map(crate::timefmt::rfc3339_micros),
        })
    } else {
        serde_json::json!({
            "room": room,
            "room_id": message.room_id,
            "seq": message.seq,
            "author": message.author_name,
            "author_id": message.author,
            "text": message.content,
            "reply_to": message.reply_to,
            "created_at": crate::timefmt::rfc3339_micros(message.created_at_ms),
            "edited_at": message.edited_at_ms.map(crate::timefmt::rfc3339_micros),
            "attachments": message.attachments.len(),
        })
    };
    Ok(WebhookEvent { kind, data })
}

/// The event of a change to a stored message: an edit (new text) or a deletion; a reaction is
/// none. `None` too when no endpoint takes it.
pub(super) fn change_event(
    routes: &WebhookRoutes,
    t: &Trees,
    before: &super::Message,
    after: &super::Message,
) -> Result<Option<WebhookEvent>, Error> {
    let kind = if after.deleted && !before.deleted {
        MESSAGE_DELETED
    } else if !after.deleted && after.content != before.content {
        MESSAGE_EDITED
    } else {
        return Ok(None);
    };
    if !routes.any(kind) {
        return Ok(None);
    }
    message_event(t, after, Some(kind)).map(Some)
}

fn outbox_key(endpoint: u64, entry: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&endpoint.to_be_bytes());
    key.extend_from_slice(&entry.to_be_bytes());
    key
}

/// The Standard Webhooks body of an event: `{"type", "timestamp", "data"}`.
pub fn event_body(kind: &str, at_secs: i64, data: Value) -> String {
    serde_json::json!({
        "type": kind,
        "timestamp": crate::timefmt::rfc3339(at_secs),
        "data": data,
    })
    .to_string()
}

/// A fresh event id (`msg_` and 32 hex digits).
pub fn new_webhook_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

impl Trees {
    fn webhook_queue(&self, endpoint: u64) -> Result<(u64, u64), Error> {
        Ok(match self.webhook_queues.get(endpoint.to_be_bytes())? {
            Some(raw) => (
                keys::u64_at(&raw, 0).unwrap_or(0),
                keys::u64_at(&raw, 8).unwrap_or(0),
            ),
            None => (0, 0),
        })
    }

    fn set_webhook_queue(&self, endpoint: u64, head: u64, tail: u64) -> Result<(), Error> {
        let mut value = Vec::with_capacity(16);
        value.extend_from_slice(&head.to_be_bytes());
        value.extend_from_slice(&tail.to_be_bytes());
        self.webhook_queues.insert(endpoint.to_be_bytes(), value)?;
        Ok(())
    }

    /// Queues `events` for every endpoint that takes them, dropping the oldest entries beyond
    /// the bound. Part of the caller's write: durable with it.
    pub(crate) fn queue_webhook_events(
        &self,
        routes: &WebhookRoutes,
        events: Vec<WebhookEvent>,
    ) -> Result<(), Error> {
        let now = super::now_secs();
        for event in events {
            let targets: Vec<u64> = routes.targets(event.kind).collect();
            if targets.is_empty() {
                continue;
            }
            let entry = OutboxEntry {
                webhook_id: new_webhook_id(),
                body: event_body(event.kind, now, event.data),
            };
            let encoded = encode(&entry)?;
            for endpoint in targets {
                let (mut head, tail) = self.webhook_queue(endpoint)?;
                self.webhook_outbox
                    .insert(outbox_key(endpoint, tail), encoded.as_slice())?;
                let tail = tail + 1;
                let mut dropped = 0;
                while tail - head > routes.max_pending.max(1) {
                    self.webhook_outbox.remove(outbox_key(endpoint, head))?;
                    head += 1;
                    dropped += 1;
                }
                self.set_webhook_queue(endpoint, head, tail)?;
                if dropped > 0
                    && let Some(on_drop) = &routes.on_drop
                {
                    on_drop(endpoint, dropped);
                }
            }
        }
        Ok(())
    }
}

impl SledStore {
    pub(crate) fn webhook_routes(&self) -> Arc<WebhookRoutes> {
        self.inner
            .webhook_routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_webhook_routes(&self, routes: WebhookRoutes) {
        *self
            .inner
            .webhook_routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routes);
    }

    /// Every endpoint, by id.
    pub fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, Error> {
        let mut out = Vec::new();
        for entry in self.trees()?.webhook_endpoints.iter() {
            let (_, raw) = entry?;
            out.push(decode("webhook_endpoints", &raw)?);
        }
        Ok(out)
    }

    /// Stores an endpoint; id 0 gets a new id. Durable when it returns.
    pub async fn put_webhook_endpoint(
        &self,
        mut endpoint: WebhookEndpoint,
    ) -> Result<WebhookEndpoint, Error> {
        self.write(move |t| {
            if endpoint.id == 0 {
                endpoint.id = t.next_counter(b"next_webhook_id")?;
            }
            insert_record(&t.webhook_endpoints, endpoint.id.to_be_bytes(), &endpoint)?;
            Ok(endpoint)
        })
        .await
    }

    /// Changes a stored endpoint; `NotFound` when there is none with this id.
    pub async fn update_webhook_endpoint<F>(
        &self,
        id: u64,
        change: F,
    ) -> Result<WebhookEndpoint, Error>
    where
        F: FnOnce(&mut WebhookEndpoint) -> Result<(), Error> + Send + 'static,
    {
        self.write(move |t| {
            let raw = t
                .webhook_endpoints
                .get(id.to_be_bytes())?
                .ok_or_else(|| Error::NotFound(format!("no webhook endpoint {id}")))?;
            let mut endpoint: WebhookEndpoint = decode("webhook_endpoints", &raw)?;
            change(&mut endpoint)?;
            insert_record(&t.webhook_endpoints, id.to_be_bytes(), &endpoint)?;
            Ok(endpoint)
        })
        .await
    }

    /// Removes an endpoint and everything queued for it.
    pub async fn remove_webhook_endpoint(&self, id: u64) -> Result<(), Error> {
        self.write(move |t| {
            if t.webhook_endpoints.remove(id.to_be_bytes())?.is_none() {
                return Err(Error::NotFound(format!("no webhook endpoint {id}")));
            }
            for entry in t.webhook_outbox.scan_prefix(id.to_be_bytes()) {
                let (key, _) = entry?;
                t.webhook_outbox.remove(key)?;
            }
            t.webhook_queues.remove(id.to_be_bytes())?;
            Ok(())
        })
        .await
    }

    /// Queues events on their own (not part of another write). Durable when it returns.
    pub async fn queue_webhook_events(&self, events: Vec<WebhookEvent>) -> Result<(), Error> {
        let routes = self.webhook_routes();
        let wake = routes.clone();
        self.write(move |t| t.queue_webhook_events(&routes, events))
            .await?;
        wake.queued();
        Ok(())
    }

    /// The oldest pending entry of an endpoint and its number.
    pub fn webhook_head(&self, endpoint: u64) -> Result<Option<(u64, OutboxEntry)>, Error> {
        let trees = self.trees()?;
        match trees
            .webhook_outbox
            .scan_prefix(endpoint.to_be_bytes())
            .next()
        {
            Some(entry) => {
                let (key, raw) = entry?;
                let number = keys::u64_at(&key, 8).unwrap_or(0);
                Ok(Some((number, decode("webhook_outbox", &raw)?)))
            }
            None => Ok(None),
        }
    }

    /// Removes a delivered entry (if the bound did not drop it meanwhile). Durable when it
    /// returns.
    pub async fn webhook_delivered(&self, endpoint: u64, number: u64) -> Result<(), Error> {
        self.write(move |t| {
            let (head, tail) = t.webhook_queue(endpoint)?;
            if number >= head && number < tail {
                t.webhook_outbox.remove(outbox_key(endpoint, number))?;
                if number == head {
                    t.set_webhook_queue(endpoint, head + 1, tail)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// How many entries are pending, per endpoint.
    pub fn webhook_pending(&self) -> Result<HashMap<u64, u64>, Error> {
        let mut out = HashMap::new();
        for entry in self.trees()?.webhook_queues.iter() {
            let (key, raw) = entry?;
            let (Some(id), Some(head), Some(tail)) = (
                keys::u64_at(&key, 0),
                keys::u64_at(&raw, 0),
                keys::u64_at(&raw, 8),
            ) else {
                continue;
            };
            out.insert(id, tail.saturating_sub(head));
        }
        Ok(out)
    }
}
