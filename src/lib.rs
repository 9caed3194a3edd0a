//! natter: a self-contained chat daemon. One core holds every rule; thin edges translate
//! between it and the wire; the store and the broker sit behind it.
//!
//! ```text
//!   clients (browsers, apps of the five protocols, backends, the natter CLI)
//!        |  WebSocket dialects     |  HTTP API        |  control socket
//!       ws (session, dialect/*)   http              admin        <- edges; app = their state
//!        \_______________________ | ________________/
//!                                core                           <- Core::execute(Command)
//!         auth | core::policy | hub (Broker) | store (Store)    <- services behind it
//!   vocabulary everyone shares: events, principal, error, wire, config, metrics
//! ```
//!
//! The modules, what each owns, and what it may import (`tests/architecture.rs` checks the
//! arrows of the core, the store, the broker and the vocabulary):
//! - [`server`]: the composition root and the lifecycle: builds [`app::AppState`] from the
//!   services, serves a bound listener (connections in the HTTP stage capped to fit the
//!   open-file limit), drains, flushes. May import everything.
//! - [`cli`]: the `natter` command line (clap), `serve` and the admin commands, offline or
//!   through the daemon's control socket. May import everything.
//! - [`app`]: the state every edge works with. Imports the services, not the edges.
//! - [`ws`]: the WebSocket edge: the upgrade, framing ([`ws::socket`]) and permessage-deflate,
//!   one session per connection ([`ws::session`]: the rate limiter, running commands), the
//!   dialects as codecs ([`ws::dialect`]), the per-dialect encode cache ([`ws::fanout`]) and the
//!   close-code table ([`ws::close`]). Imports the core, the broker, the vocabulary (and
//!   `http`'s error response, for refused upgrades).
//! - [`http`]: the warp routes and their one JSON rejection handler, CORS for the origins in
//!   `ws.allowed_origins`, and the built-in web client. Imports the core, auth and the
//!   vocabulary.
//! - [`admin`]: the admin API (one request type, two transports), per verb group. Imports the
//!   core, auth and the vocabulary.
//! - [`core`]: the rules. [`core::Core`] runs the [`core::command::Command`]s of connections;
//!   [`core::chat`] (rooms, messages, topics, presence, inbox, search), [`core::conversations`],
//!   [`core::accounts`], [`core::policy`], [`core::profiles`] (what users see of each
//!   other). Imports auth, hub, store and the vocabulary; never an edge.
//! - [`auth`]: passwords (argon2id), tokens (JWT, rotating refresh families), sessions and
//!   their ends, login throttling, external issuers. Imports the store, the broker (to close a
//!   session's connections) and the vocabulary.
//! - [`hub`]: the broker ([`hub::Broker`], [`hub::Hub`] in memory): connections, rooms,
//!   topics, fan-out, the live roster, kicks, caps. Imports the vocabulary only.
//! - [`store`]: the storage facade ([`store::Store`]) over its engine (sled, one group-commit
//!   writer). Imports config, error, metrics and principal; never the core or the broker.
//! - vocabulary: [`events`] (what the core emits), [`principal`] (who asks), [`error`] (the one
//!   error type and its codes), [`wire`] (JSON shapes and wire helpers the edges share),
//!   [`config`], [`metrics`], [`logging`]. They import each other and the store's record types
//!   at most.
//! - [`webhooks`]: signed, durable webhooks (issue 17): endpoints, the outbox deliveries,
//!   Standard Webhooks signatures. The core emits into it; it imports the store, config,
//!   metrics and error, never the core, the broker or an edge.
//! - building blocks not yet used by the daemon (issue 17): [`push`] (Web Push message
//!   encryption and VAPID). Imports nothing of the crate.
//! - [`outbound`]: the HTTPS client for addresses natter is given (push endpoints, webhooks),
//!   with the address rule (no loopback, private or other non-public addresses). Imports
//!   nothing of the crate.
//! - plumbing: [`shutdown`] (signals), [`systemd`] (sd_notify), [`tls`], and the crate-private
//!   `sha256` and `timefmt`.

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod core;
pub mod error;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod logging;
pub mod metrics;
pub mod outbound;
pub mod principal;
pub mod push;
pub mod server;
mod sha256;
pub mod shutdown;
pub mod store;
pub mod systemd;
mod timefmt;
pub mod tls;
pub mod webhooks;
pub mod wire;
pub mod ws;
