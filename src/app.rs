//! The shared state every edge works with: one [`AppState`] handle over the services (config,
//! store, auth, the core, the broker, metrics) plus the shutdown token and the task tracker.
//! [`crate::server`] builds it (the composition root); the edges (HTTP, WebSocket, admin) only
//! use it, so none of them depends on the server.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::Config;
use crate::core::Core;
use crate::hub::Broker;
use crate::store::Store;

/// Everything a request handler needs: one shared allocation, so a clone is one reference count
/// and eight bytes. Every WebSocket session's task holds clones for its whole life, and the
/// services' own handles, copied one by one, made up a quarter of an idle connection's memory
///.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Shares `services` (see [`crate::server::build_state`]).
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    pub config: Arc<Config>,
    pub store: Store,
    pub auth: Auth,
    pub broker: Arc<dyn Broker>,
    /// The rules: chat and accounts, and the command entry point of connections.
    pub core: Core,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Webhook endpoints and their outbox.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    pub(crate) shutdown: CancellationToken,
    /// Connection and WebSocket session tasks: shutdown waits for them.
    pub(crate) tasks: TaskTracker,
}

impl Services {
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Cancelled when the server begins to shut down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Spawns a task that shutdown waits for.
    pub fn spawn_tracked<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }
}
