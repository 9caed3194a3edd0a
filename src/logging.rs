//! Log setup: structured `tracing` events to stderr. Under systemd (`JOURNAL_STREAM` set) no
//! timestamps or colours, since journald adds its own. `NATTER_LOG` overrides `log.level`.
//!
//! The filter is a list of `target=level` directives and a bare default level
//! (`natter=debug,info`), tracing-subscriber's `Targets`: `EnvFilter`'s span and field
//! matching would link a regex engine, a fifth of a megabyte of the binary, for a syntax
//! natter's docs never offered.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// Parses a log filter (`log.level`, `NATTER_LOG`).
pub fn parse_filter(directives: &str) -> Result<Targets, String> {
    directives.parse().map_err(|e| format!("{e}"))
}

/// Installs the subscriber: `level` is `log.level` (a filter, see [`parse_filter`]), `format`
/// is `log.format` (`json`, or anything else for text).
pub fn init(level: &str, format: &str) {
    let filter = std::env::var("NATTER_LOG")
        .ok()
        .and_then(|v| parse_filter(&v).ok())
        .or_else(|| parse_filter(level).ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let filter = without_payload_traces(filter);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !journald && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    // try_init: a second init (tests) is harmless.
    let _ = match (format, journald) {
        ("json", _) => registry.with(layer.json()).try_init(),
        (_, true) => registry.with(layer.without_time()).try_init(),
        _ => registry.with(layer).try_init(),
    };
}

/// tungstenite logs every received message in full at `trace` ("Received message ..."): an
/// `Authenticate` frame's token, chat content. Whatever the filter asks for, the WebSocket
/// libraries log at `debug` at most (their debug lines carry close frames only).
fn without_payload_traces(filter: Targets) -> Targets {
    ["tungstenite", "tokio_tungstenite"]
        .into_iter()
        .fold(filter, |filter, target| {
            if filter.would_enable(target, &tracing::Level::TRACE) {
                filter.with_target(target, LevelFilter::DEBUG)
            } else {
                filter
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_as_documented() {
        let filter = parse_filter("natter=debug,info").expect("documented example");
        assert!(filter.would_enable("natter::ws", &tracing::Level::DEBUG));
        assert!(!filter.would_enable("hyper", &tracing::Level::DEBUG));
        assert!(filter.would_enable("hyper", &tracing::Level::INFO));
        assert!(parse_filter("natter=loud").is_err());
    }

    #[test]
    fn websocket_payloads_never_trace() {
        let filter = without_payload_traces(parse_filter("trace").expect("a level"));
        assert!(!filter.would_enable("tungstenite::protocol", &tracing::Level::TRACE));
        assert!(filter.would_enable("tungstenite::protocol", &tracing::Level::DEBUG));
        assert!(filter.would_enable("natter", &tracing::Level::TRACE));
        let quiet = without_payload_traces(parse_filter("warn").expect("a level"));
        assert!(!quiet.would_enable("tungstenite", &tracing::Level::DEBUG));
    }
}
