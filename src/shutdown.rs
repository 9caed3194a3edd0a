//! Process signals: SIGTERM (systemd stop) and SIGINT (Ctrl-C) both mean "shut down gracefully".
//!
//! The handlers are installed by [`Signals::install`] before the daemon binds or says it is
//! ready: a SIGTERM that arrives any time after that is a graceful stop, never the default
//! action (which would kill the process with the store unflushed).

use tokio::signal::unix::{Signal, SignalKind, signal};

pub struct Signals {
    term: Signal,
    int: Signal,
    /// SIGHUP means "reload" (the TLS files; see `server`): holding a handler here keeps its
    /// default action (terminate) from ever applying.
    _hangup: Signal,
}

impl Signals {
    /// Installs the SIGTERM and SIGINT handlers now. Must be called inside the runtime.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            _hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves at the first SIGTERM or SIGINT received since [`Signals::install`].
    pub async fn received(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
            _ = self.int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
        }
    }
}
