//! natter's integration tests: one binary (link time on 2 cores), one module per area. Every test
//! starts the real server on 127.0.0.1:0 with a temporary data dir, or runs the built binary.

mod common;
mod wsclient;

mod cli;
mod dialect_edusphere;
mod dialect_fastchat;
mod dialect_kibray;
mod dialect_rooms;
mod external_tokens;
mod http_auth;
mod http_rooms;
mod lifecycle;
mod web;
mod ws_native;
