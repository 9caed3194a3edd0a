//! Process metrics in the Prometheus text format (`GET /metrics`).
//!
//! Counters and histograms are plain atomics bumped where things happen (store writer, hub,
//! auth, core, WebSocket sessions); gauges (connections, store size, memory) are read when the
//! page is rendered. One [`Metrics`] per server, so two servers in one process (tests) do not
//! mix their figures.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Kinds of chat messages counted in `natter_messages_total{type=...}`.
#[derive(Debug, Clone, Copy)]
pub enum MessageKind {
    Sent = 0,
    Edited,
    Deleted,
    Direct,
    Published,
    Notification,
}

const MESSAGE_KINDS: [&str; 6] = [
    "sent",
    "edited",
    "deleted",
    "direct",
    "published",
    "notification",
];

/// A histogram with fixed upper bounds (cumulative buckets are computed when rendered).
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, plus one for +Inf.
    counts: Vec<AtomicU64>,
    /// Sum of observations, in millionths of the unit (microseconds for seconds).
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        // Saturating float-to-int conversion is what `as` does here; values are small and >= 0.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let micros = (value * 1e6) as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts.last().map_or(0, |c| c.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const BATCH_BOUNDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The counters and histograms of one server.
pub struct Metrics {
    messages: [AtomicU64; 6],
    /// Frames written to WebSocket clients.
    pub frames_out: AtomicU64,
    /// Time from an event's creation to the socket write that carries it (sampled: the oldest
    /// frame of each write).
    pub delivery_latency: Histogram,
    pub slow_consumers: AtomicU64,
    /// Notifications dropped from full inboxes (`limits.max_notifications_per_user`).
    pub notifications_dropped: AtomicU64,
    pub connections_opened: AtomicU64,
    pub connections_refused: AtomicU64,
    pub store_flush: Histogram,
    pub store_batch: Histogram,
    pub store_flush_errors: AtomicU64,
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub http_requests: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            messages: Default::default(),
            frames_out: AtomicU64::new(0),
            delivery_latency: Histogram::new(LATENCY_BOUNDS),
            slow_consumers: AtomicU64::new(0),
            notifications_dropped: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            store_flush: Histogram::new(LATENCY_BOUNDS),
            store_batch: Histogram::new(BATCH_BOUNDS),
            store_flush_errors: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            login_failures: AtomicU64::new(0),
            http_requests: AtomicU64::new(0),
        }
    }
}

/// Values read at render time from the live server.
pub struct Gauges {
    /// Open WebSocket connections by dialect name.
    pub connections: Vec<(&'static str, usize)>,
    pub rooms: u64,
    pub store_bytes: u64,
    pub epoch: u64,
    /// Password hashes waiting for a CPU permit or hashing now.
    pub argon2_queue: u64,
    /// Per webhook endpoint (see `crate::webhooks`).
    pub webhooks: Vec<WebhookGauge>,
    /// Webhook events dropped before the outbox (its in-memory queue was full).
    pub webhook_queue_dropped: u64,
}

/// One webhook endpoint's figures.
#[derive(Debug, Clone, Default)]
pub struct WebhookGauge {
    pub endpoint: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    pub pending: u64,
    pub disabled: bool,
}

/// The webhook figures, one line per endpoint (`endpoint` label) and metric.
fn render_webhooks(out: &mut String, gauges: &Gauges) {
    type Pick = fn(&WebhookGauge) -> u64;
    let metrics: [(&str, &str, &str, Pick); 5] = [
        (
            "natter_webhook_delivered_total",
            "counter",
            "Webhook events delivered (answered 2xx).",
            |g| g.delivered,
        ),
        (
            "natter_webhook_failed_total",
            "counter",
            "Webhook delivery attempts that failed (non-2xx, error, timeout).",
            |g| g.failed,
        ),
        (
            "natter_webhook_dropped_total",
            "counter",
            "Webhook events dropped: the oldest beyond webhooks.max_pending (endpoint=\"queue\": before the outbox).",
            |g| g.dropped,
        ),
        (
            "natter_webhook_pending",
            "gauge",
            "Webhook events in the outbox, not yet delivered.",
            |g| g.pending,
        ),
        (
            "natter_webhook_disabled",
            "gauge",
            "1 while the endpoint is disabled (by the config or after webhooks.disable_after failures).",
            |g| u64::from(g.disabled),
        ),
    ];
    for (name, kind, help, pick) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for gauge in &gauges.webhooks {
            let _ = writeln!(
                out,
                "{name}{{endpoint=\"{}\"}} {}",
                gauge.endpoint,
                pick(gauge)
            );
        }
        if name == "natter_webhook_dropped_total" {
            let _ = writeln!(
                out,
                "{name}{{endpoint=\"queue\"}} {}",
                gauges.webhook_queue_dropped
            );
        }
    }
}

impl Metrics {
    pub fn message(&self, kind: MessageKind) {
        if let Some(counter) = self.messages.get(kind as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn messages_total(&self) -> u64 {
        self.messages
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The whole page.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {value}");
        };
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);

        let _ = writeln!(
            out,
            "# HELP natter_connections Open WebSocket connections by dialect."
        );
        let _ = writeln!(out, "# TYPE natter_connections gauge");
        for (dialect, count) in &gauges.connections {
            let _ = writeln!(out, "natter_connections{{dialect=\"{dialect}\"}} {count}");
        }
        counter(
            &mut out,
            "natter_connections_opened_total",
            "WebSocket connections accepted.",
            load(&self.connections_opened),
        );
        counter(
            &mut out,
            "natter_connections_refused_total",
            "WebSocket connections refused at their limits.",
            load(&self.connections_refused),
        );
        let _ = writeln!(
            out,
            "# HELP natter_messages_total Chat messages and notifications handled, by type."
        );
        let _ = writeln!(out, "# TYPE natter_messages_total counter");
        for (name, value) in MESSAGE_KINDS.iter().zip(&self.messages) {
            let _ = writeln!(
                out,
                "natter_messages_total{{type=\"{name}\"}} {}",
                load(value)
            );
        }
        counter(
            &mut out,
            "natter_frames_out_total",
            "WebSocket frames written to clients.",
            load(&self.frames_out),
        );
        self.delivery_latency.render(
            &mut out,
            "natter_delivery_latency_seconds",
            "From an event's creation to the socket write carrying it (oldest frame of each write).",
            "",
        );
        counter(
            &mut out,
            "natter_slow_consumers_total",
            "Connections closed because their outbound queue was full (4008).",
            load(&self.slow_consumers),
        );
        counter(
            &mut out,
            "natter_notifications_dropped_total",
            "Oldest notifications dropped from full inboxes (limits.max_notifications_per_user).",
            load(&self.notifications_dropped),
        );
        self.store_flush.render(
            &mut out,
            "natter_store_flush_seconds",
            "Duration of each group-commit flush.",
            "",
        );
        self.store_batch.render(
            &mut out,
            "natter_store_batch_size",
            "Writes made durable by each group-commit flush.",
            "",
        );
        counter(
            &mut out,
            "natter_store_flush_errors_total",
            "Group-commit flushes that failed (their writes were not acknowledged).",
            load(&self.store_flush_errors),
        );
        gauge(
            &mut out,
            "natter_store_size_bytes",
            "Bytes the store occupies on disk.",
            gauges.store_bytes,
        );
        gauge(
            &mut out,
            "natter_store_epoch",
            "The store's epoch (bumped by every restore).",
            gauges.epoch,
        );
        gauge(
            &mut out,
            "natter_rooms",
            "Rooms in the store.",
            gauges.rooms,
        );
        counter(
            &mut out,
            "natter_logins_total",
            "Successful password logins.",
            load(&self.logins),
        );
        counter(
            &mut out,
            "natter_login_failures_total",
            "Refused password logins (wrong credentials, disabled, throttled).",
            load(&self.login_failures),
        );
        gauge(
            &mut out,
            "natter_argon2_queue_depth",
            "Password hashes waiting for or holding a CPU permit.",
            gauges.argon2_queue,
        );
        counter(
            &mut out,
            "natter_http_requests_total",
            "HTTP requests served (WebSocket upgrades included).",
            load(&self.http_requests),
        );
        render_webhooks(&mut out, gauges);
        gauge(
            &mut out,
            "process_resident_memory_bytes",
            "Resident memory of the process.",
            resident_memory_bytes(),
        );
        out
    }
}

/// RSS from /proc/self/statm (0 where there is no /proc).
pub fn resident_memory_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    // The page size is 4 KiB on the platforms natter is packaged for (x86-64, arm64 Linux with
    // 4 KiB pages, the Raspberry Pi OS default).
    pages * 4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let mut out = String::new();
        h.render(&mut out, "x", "help", "");
        assert!(out.contains("x_bucket{le=\"0.1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        assert!(out.contains("x_sum 5.55\n"), "{out}");
    }
}
