//! sd_notify integration: READY=1 once the listener is bound and the store open, STOPPING=1 at
//! shutdown, WATCHDOG=1 pings at half of `WATCHDOG_USEC` when systemd asks for them. Without the
//! `systemd` cargo feature every function here is a no-op.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[cfg(feature = "systemd")]
mod imp {
    use std::time::Duration;

    use systemd::daemon;

    fn notify(state: &str) {
        if let Err(e) = daemon::notify(false, [(state, "1")].iter()) {
            tracing::warn!(error = %e, state, "sd_notify failed");
        }
    }

    pub fn ready() {
        notify(daemon::STATE_READY);
    }

    pub fn stopping() {
        notify(daemon::STATE_STOPPING);
    }

    pub fn watchdog_interval() -> Option<Duration> {
        match daemon::watchdog_enabled(false) {
            Ok(0) | Err(_) => None,
            Ok(usec) => Some(Duration::from_micros(usec) / 2),
        }
    }

    pub fn ping() {
        notify(daemon::STATE_WATCHDOG);
    }
}

#[cfg(not(feature = "systemd"))]
mod imp {
    use std::time::Duration;

    pub fn ready() {}
    pub fn stopping() {}
    pub fn watchdog_interval() -> Option<Duration> {
        None
    }
    pub fn ping() {}
}

pub fn notify_ready() {
    imp::ready();
}

pub fn notify_stopping() {
    imp::stopping();
}

/// Starts the watchdog pinger if systemd set `WATCHDOG_USEC`; it stops at `shutdown`.
pub fn spawn_watchdog(shutdown: CancellationToken) -> Option<JoinHandle<()>> {
    let interval = imp::watchdog_interval()?;
    tracing::info!(
        interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = ticker.tick() => imp::ping(),
                () = shutdown.cancelled() => return,
            }
        }
    }))
}
