//! Signed, durable webhooks (issue 17): admin-configured endpoints receive core events as
//! Standard Webhooks JSON (`{"type", "timestamp", "data"}`), signed by [`sign`], from a
//! durable outbox in the store (`store::webhooks`).
//!
//! - Message events are queued by the store write that stores the change (same flush).
//! - Other events ([`Webhooks::emit`]) go through a bounded in-memory queue
//!   ([`EMIT_QUEUE`]) to one task that writes them to the outbox in batches.
//! - [`delivery`] runs one task per endpoint: oldest entry first, one at a time (so in order
//!   per endpoint, hence per room), removed only after a 2xx, retried with exponential backoff
//!   and jitter, the endpoint disabled after `webhooks.disable_after` consecutive failures.

pub mod delivery;
pub mod rules;
pub mod sign;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

pub use rules::{EVENTS, MAX_PENDING_LIMIT, TEST_EVENT, check_events, check_url, parse_events};

use crate::config::WebhooksConfig;
use crate::error::Error;
use crate::metrics::WebhookGauge;
use crate::store::{Store, WebhookEndpoint, WebhookEvent, WebhookRoutes};

/// Events waiting to be written to the outbox (besides message events, which the store
/// queues itself). Beyond it an event is dropped and counted (`natter_webhook_dropped_total`
/// with `endpoint="queue"`): only a store that cannot keep up gets there.
pub const EMIT_QUEUE: usize = 4096;

/// Most events written to the outbox in one write.
const EMIT_BATCH: usize = 256;

/// What the emitting task is asked.
enum Emit {
    Event(WebhookEvent),
    /// Write what came before, then end (and let go of the store).
    Close,
}

/// Figures of one endpoint since the start (Prometheus counters).
#[derive(Default)]
pub(crate) struct Stats {
    delivered: u64,
    failed: u64,
    dropped: u64,
    /// Set while its outbox overflows (one warning per episode); cleared by a delivery.
    overflowing: bool,
}

/// A user's presence as far as `user.online`/`user.offline` go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Online,
    /// The last connection went; `user.offline` follows unless another comes within the grace.
    Leaving(u64),
}

/// The webhook service: cheap to share (`Arc`).
pub struct Webhooks {
    store: Store,
    config: WebhooksConfig,
    routes: std::sync::RwLock<WebhookRoutes>,
    emit: mpsc::Sender<Emit>,
    /// Bumped whenever entries are queued or endpoints change: wakes the deliveries.
    wake: watch::Sender<u64>,
    stats: Arc<Mutex<HashMap<u64, Stats>>>,
    /// Events dropped because [`EMIT_QUEUE`] was full.
    queue_dropped: AtomicU64,
    presence: Mutex<HashMap<Uuid, Seen>>,
    presence_generation: AtomicU64,
    client: delivery::Client,
    /// The task that writes emitted events (awaited by [`Webhooks::close`]).
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// An endpoint as `natter webhook list` shows it (never the secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndpointView {
    pub id: u64,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    /// Disabled after too many failures (until `natter webhook enable`).
    pub auto_disabled: bool,
    pub from_config: bool,
    pub failures: u64,
    pub pending: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Webhooks {
    /// The service over `store` (its emitting task starts here: call inside a runtime).
    /// Deliveries start with [`delivery::run`].
    pub fn new(store: Store, config: WebhooksConfig) -> Arc<Webhooks> {
        let (emit, queue) = mpsc::channel(EMIT_QUEUE);
        let (wake, _) = watch::channel(0);
        let client = delivery::Client::new(&config);
        let hooks = Arc::new(Webhooks {
            store,
            config,
            routes: std::sync::RwLock::default(),
            emit,
            wake,
            stats: Arc::default(),
            queue_dropped: AtomicU64::new(0),
            presence: Mutex::default(),
            presence_generation: AtomicU64::new(0),
            client,
            writer: Mutex::default(),
        });
        let writer = tokio::spawn(write_emitted(hooks.store.clone(), queue));
        *lock(&hooks.writer) = Some(writer);
        hooks
    }

    pub fn config(&self) -> &WebhooksConfig {
        &self.config
    }

    fn routes(&self) -> std::sync::RwLockReadGuard<'_, WebhookRoutes> {
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the endpoints and tells the store (and this service) which events go where.
    pub async fn reload(self: &Arc<Self>) -> Result<(), Error> {
        let endpoints = self.store.webhook_endpoints().await?;
        let weak = Arc::downgrade(self);
        let on_drop: Arc<dyn Fn(u64, u64) + Send + Sync> = Arc::new(move |id, dropped| {
            if let Some(hooks) = weak.upgrade() {
                hooks.dropped(id, dropped);
            }
        });
        let waker = self.wake.clone();
        let on_queued: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            waker.send_modify(|n| *n = n.wrapping_add(1));
        });
        let routes = WebhookRoutes {
            endpoints: endpoints.iter().map(|e| (e.id, e.events.clone())).collect(),
            max_pending: self.config.max_pending,
            on_drop: Some(on_drop),
            on_queued: Some(on_queued),
        };
        self.store.set_webhook_routes(routes.clone());
        *self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = routes;
        self.wake_deliveries();
        Ok(())
    }

    fn wake_deliveries(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Counts entries the bound dropped; warns once per overflow episode.
    fn dropped(&self, id: u64, dropped: u64) {
        let mut stats = lock(&self.stats);
        let entry = stats.entry(id).or_default();
        entry.dropped += dropped;
        if !entry.overflowing {
            entry.overflowing = true;
            tracing::warn!(
                endpoint = id,
                max_pending = self.config.max_pending,
                "webhook outbox full: the oldest events are dropped until deliveries catch up"
            );
        }
    }

    /// Queues an event of type `kind` for the endpoints that take it (none: nothing is done).
    /// Never waits: when [`EMIT_QUEUE`] is full the event is dropped and counted.
    pub fn emit(&self, kind: &'static str, data: Value) {
        if !self.routes().any(kind) {
            return;
        }
        if self
            .emit
            .try_send(Emit::Event(WebhookEvent { kind, data }))
            .is_err()
            && self.queue_dropped.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::warn!(
                bound = EMIT_QUEUE,
                "webhook event queue full: events are dropped (the store cannot keep up)"
            );
        }
    }

    /// Writes what was emitted and stops the writing task, so that it no longer holds the
    /// store (shutdown: the store's lock goes with its last handle). Later events are dropped.
    pub async fn close(&self) {
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            if self.emit.send(Emit::Close).await.is_ok() {
                let _ = writer.await;
            } else {
                writer.abort();
            }
        }
    }

    /// A user's first connection came up: `user.online`, unless they were still within the
    /// grace of their last disconnect.
    pub fn user_connected(&self, user_id: Uuid, username: &str) {
        let wanted = {
            let routes = self.routes();
            routes.any("user.online") || routes.any("user.offline")
        };
        if !wanted {
            return;
        }
        let before = lock(&self.presence).insert(user_id, Seen::Online);
        if before.is_none() {
            self.emit(
                "user.online",
                json!({ "user": username, "user_id": user_id }),
            );
        }
    }

    /// A user's last connection went: `user.offline` once `webhooks.offline_grace_secs` pass
    /// with no new connection. One timer per disconnect (bounded by the connections).
    pub fn user_disconnected(self: &Arc<Self>, user_id: Uuid, username: &str) {
        let wanted = {
            let routes = self.routes();
            routes.any("user.online") || routes.any("user.offline")
        };
        if !wanted {
            return;
        }
        let generation = self.presence_generation.fetch_add(1, Ordering::Relaxed);
        lock(&self.presence).insert(user_id, Seen::Leaving(generation));
        let hooks = Arc::downgrade(self);
        let username = username.to_owned();
        let grace = Duration::from_secs(self.config.offline_grace_secs);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let Some(hooks) = hooks.upgrade() else { return };
            let gone = {
                let mut presence = lock(&hooks.presence);
                let gone = presence.get(&user_id) == Some(&Seen::Leaving(generation));
                if gone {
                    presence.remove(&user_id);
                }
                gone
            };
            if gone {
                hooks.emit(
                    "user.offline",
                    json!({ "user": username, "user_id": user_id }),
                );
            }
        });
    }

    /// Adds an endpoint (`natter webhook add`); returns it with its secret (shown once).
    pub async fn add(
        self: &Arc<Self>,
        url: String,
        events: Vec<String>,
    ) -> Result<WebhookEndpoint, Error> {
        check_url(&url, self.config.allow_private_addresses).map_err(Error::BadRequest)?;
        check_events(&events).map_err(Error::BadRequest)?;
        let secret = sign::Secret::generate()
            .map_err(|e| Error::Internal(format!("cannot make a webhook secret: {e}")))?;
        let endpoint = self
            .store
            .put_webhook_endpoint(WebhookEndpoint {
                id: 0,
                url,
                events,
                secret: secret.encoded(),
                from_config: false,
                enabled: true,
                auto_disabled: false,
                failures: 0,
                created_at: crate::store::now_secs(),
            })
            .await?;
        tracing::info!(endpoint = endpoint.id, url = %endpoint.url, "webhook endpoint added");
        self.reload().await?;
        Ok(endpoint)
    }

    /// Every endpoint, as listed (no secrets).
    pub async fn list(&self) -> Result<Vec<EndpointView>, Error> {
        let pending = self.store.webhook_pending().await?;
        Ok(self
            .store
            .webhook_endpoints()
            .await?
            .into_iter()
            .map(|e| EndpointView {
                pending: pending.get(&e.id).copied().unwrap_or(0),
                id: e.id,
                url: e.url,
                events: e.events,
                enabled: e.enabled,
                auto_disabled: e.auto_disabled,
                from_config: e.from_config,
                failures: e.failures,
            })
            .collect())
    }

    /// Removes an admin-added endpoint and its outbox.
    pub async fn remove(self: &Arc<Self>, id: u64) -> Result<(), Error> {
        let endpoint = self.endpoint(id).await?;
        if endpoint.from_config {
            return Err(Error::Conflict(format!(
                "webhook endpoint {id} is defined in the config file; remove it there"
            )));
        }
        self.store.remove_webhook_endpoint(id).await?;
        lock(&self.stats).remove(&id);
        tracing::info!(endpoint = id, "webhook endpoint removed");
        self.reload().await
    }

    /// Re-enables an endpoint disabled after failures (and clears its failure count).
    pub async fn enable(self: &Arc<Self>, id: u64) -> Result<EndpointView, Error> {
        let endpoint = self.endpoint(id).await?;
        if !endpoint.enabled {
            return Err(Error::Conflict(format!(
                "webhook endpoint {id} is disabled in the config file (enabled = false)"
            )));
        }
        self.store
            .update_webhook_endpoint(id, |e| {
                e.auto_disabled = false;
                e.failures = 0;
                Ok(())
            })
            .await?;
        tracing::info!(endpoint = id, "webhook endpoint enabled");
        self.reload().await?;
        self.list()
            .await?
            .into_iter()
            .find(|e| e.id == id)
            .ok_or_else(|| Error::NotFound(format!("no webhook endpoint {id}")))
    }

    /// Sends a `webhook.test` event to endpoint `id` now (outside the outbox); returns the
    /// HTTP status it answered.
    pub async fn test(&self, id: u64) -> Result<u16, Error> {
        let endpoint = self.endpoint(id).await?;
        let body = crate::store::event_body(
            TEST_EVENT,
            crate::store::now_secs(),
            json!({ "endpoint": id }),
        );
        let webhook_id = crate::store::new_webhook_id();
        self.client
            .send(&endpoint, &webhook_id, body.as_bytes())
            .await
            .map_err(|e| Error::Unavailable(format!("webhook endpoint {id}: {e}")))
    }

    async fn endpoint(&self, id: u64) -> Result<WebhookEndpoint, Error> {
        self.store
            .webhook_endpoints()
            .await?
            .into_iter()
            .find(|e| e.id == id)
            .ok_or_else(|| Error::NotFound(format!("no webhook endpoint {id}")))
    }

    /// Makes the stored endpoints that came from the config file match it (by URL): new ones
    /// added, changed ones updated, ones no longer listed removed. Then [`Webhooks::reload`].
    pub async fn sync_config(self: &Arc<Self>) -> Result<(), Error> {
        let stored = self.store.webhook_endpoints().await?;
        for configured in &self.config.endpoints {
            let existing = stored
                .iter()
                .find(|e| e.from_config && e.url == configured.url);
            let mut endpoint = match existing {
                Some(existing) => existing.clone(),
                None => WebhookEndpoint {
                    id: 0,
                    url: configured.url.clone(),
                    events: Vec::new(),
                    secret: String::new(),
                    from_config: true,
                    enabled: true,
                    auto_disabled: false,
                    failures: 0,
                    created_at: crate::store::now_secs(),
                },
            };
            endpoint.events = configured.events.clone();
            endpoint.secret = configured.secret.trim().to_owned();
            endpoint.enabled = configured.enabled;
            self.store.put_webhook_endpoint(endpoint).await?;
        }
        for gone in stored
            .iter()
            .filter(|e| e.from_config && !self.config.endpoints.iter().any(|c| c.url == e.url))
        {
            self.store.remove_webhook_endpoint(gone.id).await?;
        }
        self.reload().await
    }

    /// The figures `/metrics` shows, per endpoint.
    pub async fn gauges(&self) -> (Vec<WebhookGauge>, u64) {
        let endpoints = self.list().await.unwrap_or_default();
        let stats = lock(&self.stats);
        let gauges = endpoints
            .iter()
            .map(|e| {
                let s = stats.get(&e.id);
                WebhookGauge {
                    endpoint: e.id,
                    delivered: s.map_or(0, |s| s.delivered),
                    failed: s.map_or(0, |s| s.failed),
                    dropped: s.map_or(0, |s| s.dropped),
                    pending: e.pending,
                    disabled: !e.enabled || e.auto_disabled,
                }
            })
            .collect();
        (gauges, self.queue_dropped.load(Ordering::Relaxed))
    }
}

/// Writes emitted events to the outbox, in batches, in the order they came.
async fn write_emitted(store: Store, mut queue: mpsc::Receiver<Emit>) {
    let mut batch = Vec::with_capacity(EMIT_BATCH);
    let mut closing = false;
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Emit::Event(event) => batch.push(event),
                Emit::Close => {
                    closing = true;
                    break;
                }
            }
            if batch.len() >= EMIT_BATCH {
                break;
            }
            next = queue.try_recv().ok();
        }
        if !batch.is_empty()
            && let Err(e) = store.queue_webhook_events(std::mem::take(&mut batch)).await
        {
            tracing::warn!(error = %e, "cannot queue webhook events; they are lost");
        }
        if closing {
            return;
        }
    }
}
