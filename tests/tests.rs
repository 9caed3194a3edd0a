//! natter's integration tests: one binary (link time on 2 cores), one module per area. Every test
//! starts the real server on 127.0.0.1:0 with a temporary data dir, or runs the built binary.

mod auth_attacks;
mod common;
mod daemon;
mod rawws;
mod wsclient;

mod accounts_http;
mod admin;
mod architecture;
mod cli;
mod deflate;
mod dialect_edusphere;
mod dialect_fastchat;
mod dialect_kibray;
mod dialect_rooms;
mod disk_full;
mod external_tokens;
mod hardening_a;
mod hardening_b;
mod hardening_c;
mod hardening_d;
mod hostile_input;
mod http_auth;
mod http_rooms;
mod lifecycle;
mod limits;
mod man_pages;
mod mentions;
mod native_pubsub;
mod native_rooms;
mod reliability_crash;
mod room_profile;
mod search;
mod seed_fidelity;
mod tls;
mod web;
mod webhooks;
mod ws_session;
