//! Delivering the outbox: one task per endpoint, the oldest entry first and one at a time (in
//! order per endpoint, so per room), removed only after a 2xx answer; a failure (non-2xx, an
//! error, the timeout) is retried after an exponential backoff with jitter, and after
//! `webhooks.disable_after` consecutive failures the endpoint is disabled until an admin
//! enables it again. While disabled its events still queue, up to `webhooks.max_pending`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Webhooks, lock, sign};
use crate::config::WebhooksConfig;
use crate::store::WebhookEndpoint;

/// Signs and POSTs one event: the only place that talks to an endpoint.
pub struct Client {
    outbound: crate::outbound::Outbound,
}

/// The start of an endpoint's answer that is read (the rest is not: only the status counts).
const MAX_RESPONSE_BYTES: usize = 4096;

impl Client {
    pub(super) fn new(config: &WebhooksConfig) -> Client {
        Client {
            outbound: crate::outbound::Outbound::new(crate::outbound::OutboundOptions {
                allow_private: config.allow_private_addresses,
                timeout: Duration::from_secs(config.timeout_secs.max(1)),
                max_response_bytes: MAX_RESPONSE_BYTES,
            }),
        }
    }

    /// POSTs `body` to the endpoint with the Standard Webhooks headers (`webhook-timestamp`
    /// is now: each attempt is signed anew). The HTTP status, or why there is none.
    pub async fn send(
        &self,
        endpoint: &WebhookEndpoint,
        webhook_id: &str,
        body: &[u8],
    ) -> Result<u16, String> {
        let secret = sign::Secret::parse(&endpoint.secret)
            .map_err(|e| format!("the stored secret is unusable: {e}"))?;
        let timestamp = crate::store::now_secs();
        let headers = vec![
            ("webhook-id".to_owned(), webhook_id.to_owned()),
            ("webhook-timestamp".to_owned(), timestamp.to_string()),
            (
                "webhook-signature".to_owned(),
                sign::sign(secret.bytes(), webhook_id, timestamp, body),
            ),
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                "user-agent".to_owned(),
                format!("natter/{}", env!("CARGO_PKG_VERSION")),
            ),
        ];
        self.post(&endpoint.url, headers, body.to_vec()).await
    }

    /// The one call to the shared outbound HTTPS client (`crate::outbound`: https only, and
    /// no private addresses unless `webhooks.allow_private_addresses`).
    async fn post(
        &self,
        url: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<u16, String> {
        self.outbound
            .post(url, headers, body)
            .await
            .map(|response| response.status)
            .map_err(|e| e.to_string())
    }
}

/// Delay before retry number `failures` (1 for the first): `base * 2^(failures-1)`, at most
/// `max`, then a random point in its upper half (jitter, so endpoints that failed together
/// do not retry together).
pub fn backoff(config: &WebhooksConfig, failures: u64) -> Duration {
    let max_ms = config.backoff_max_secs.saturating_mul(1000);
    let exponent = u32::try_from(failures.saturating_sub(1).min(40)).unwrap_or(40);
    let full = config
        .backoff_base_ms
        .saturating_mul(1u64 << exponent)
        .min(max_ms)
        .max(1);
    let random = u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or([0; 8]),
    );
    let half = full / 2;
    Duration::from_millis(half + random % (full - half + 1))
}

/// Runs the deliveries until `shutdown`: starts a task per endpoint, stops those of removed
/// endpoints.
pub async fn run(hooks: Arc<Webhooks>, shutdown: CancellationToken) {
    let mut changes = hooks.wake.subscribe();
    let mut tasks: HashMap<u64, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        changes.borrow_and_update();
        match hooks.store.webhook_endpoints().await {
            Ok(endpoints) => {
                tasks.retain(|id, task| {
                    let keep = endpoints.iter().any(|e| e.id == *id) && !task.is_finished();
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for endpoint in endpoints {
                    tasks.entry(endpoint.id).or_insert_with(|| {
                        tokio::spawn(deliver(hooks.clone(), endpoint.id, shutdown.clone()))
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the webhook endpoints"),
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            () = shutdown.cancelled() => break,
        }
    }
    for (_, task) in tasks {
        task.abort();
        let _ = task.await;
    }
}

/// Waits for a wake-up (entries queued, endpoints changed); false at shutdown.
async fn wait(wake: &mut tokio::sync::watch::Receiver<u64>, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        changed = wake.changed() => changed.is_ok(),
        () = shutdown.cancelled() => false,
    }
}

/// Delivers one endpoint's outbox, oldest first, one at a time.
async fn deliver(hooks: Arc<Webhooks>, id: u64, shutdown: CancellationToken) {
    let mut wake = hooks.wake.subscribe();
    let config = hooks.config.clone();
    loop {
        wake.borrow_and_update();
        let endpoint = match hooks.endpoint(id).await {
            Ok(endpoint) => endpoint,
            Err(crate::error::Error::NotFound(_)) => return,
            Err(e) => {
                tracing::warn!(endpoint = id, error = %e, "cannot read a webhook endpoint");
                if !wait(&mut wake, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        if !endpoint.enabled || endpoint.auto_disabled {
            if !wait(&mut wake, &shutdown).await {
                return;
            }
            continue;
        }
        let head = match hooks.store.webhook_head(id).await {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!(endpoint = id, error = %e, "cannot read a webhook outbox");
                None
            }
        };
        let Some((number, entry)) = head else {
            if !wait(&mut wake, &shutdown).await {
                return;
            }
            continue;
        };
        let outcome = tokio::select! {
            outcome = hooks.client.send(&endpoint, &entry.webhook_id, entry.body.as_bytes()) => outcome,
            () = shutdown.cancelled() => return,
        };
        match outcome {
            Ok(status) if (200..300).contains(&status) => {
                if let Err(e) = hooks.store.webhook_delivered(id, number).await {
                    tracing::warn!(endpoint = id, error = %e, "cannot remove a delivered webhook event");
                }
                {
                    let mut stats = lock(&hooks.stats);
                    let entry = stats.entry(id).or_default();
                    entry.delivered += 1;
                    entry.overflowing = false;
                }
                if endpoint.failures > 0 {
                    let _ = hooks
                        .store
                        .update_webhook_endpoint(id, |e| {
                            e.failures = 0;
                            Ok(())
                        })
                        .await;
                }
            }
            outcome => {
                let why = match outcome {
                    Ok(status) => format!("answered {status}"),
                    Err(e) => e,
                };
                lock(&hooks.stats).entry(id).or_default().failed += 1;
                let failures = endpoint.failures + 1;
                let disable = failures >= config.disable_after;
                let _ = hooks
                    .store
                    .update_webhook_endpoint(id, move |e| {
                        e.failures = failures;
                        e.auto_disabled = e.auto_disabled || disable;
                        Ok(())
                    })
                    .await;
                if disable {
                    tracing::error!(
                        endpoint = id,
                        failures,
                        reason = %why,
                        "webhook endpoint disabled after consecutive failures; `natter webhook enable {id}` resumes it"
                    );
                    continue;
                }
                let delay = backoff(&config, failures);
                tracing::warn!(
                    endpoint = id,
                    failures,
                    reason = %why,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "webhook delivery failed"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_bounds() {
        let config = WebhooksConfig::default();
        for failures in 1..60 {
            let full = (1000u64 << (failures - 1).min(40)).min(600_000);
            let delay = u64::try_from(backoff(&config, failures).as_millis()).unwrap_or(0);
            assert!(delay >= full / 2 && delay <= full, "{failures}: {delay}");
        }
    }
}
