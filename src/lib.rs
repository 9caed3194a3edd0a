//! natter: a self-contained chat daemon.
//!
//! A tour of the crate:
//! - [`config`]: the TOML file, `NATTER_*` environment overrides and flags, validated.
//! - [`store`]: the storage facade over sled, with one group-commit writer.
//! - [`auth`]: argon2id passwords, JWT access tokens, rotating refresh tokens, login throttling.
//! - [`core`]: the rules (accounts today) that every edge calls.
//! - [`http`]: the warp routes, the one JSON rejection handler, and the built-in web client
//!   (`src/web/`, served at `/`).
//! - [`server`]: the lifecycle: serve on a bound listener, drain, flush.
//! - [`cli`]: the `natter` command line, including the offline admin commands.

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
pub mod principal;
pub mod server;
mod sha256;
pub mod shutdown;
pub mod store;
pub mod systemd;
mod timefmt;
pub mod tls;
pub mod wire;
pub mod ws;
