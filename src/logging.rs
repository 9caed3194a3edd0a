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

/// Dependencies that write what passes through them into their `debug` or `trace` lines, and
/// the most they may log whatever the filter asks for:
/// - tungstenite logs every received message in full at `trace` ("Received message ..."): an
///   `Authenticate` frame's token, chat content. Its debug lines carry close frames only.
/// - sled logs every write at `trace` ("linking pid N with Set(key, [bytes])"): user records
///   with their password hashes, messages, direct messages, notifications, sessions. Its info
///   lines and above are about the engine (recovery, errors), never a value.
const PAYLOAD_CAPS: &[(&str, LevelFilter)] = &[
    ("tungstenite", LevelFilter::DEBUG),
    ("tokio_tungstenite", LevelFilter::DEBUG),
    ("sled", LevelFilter::INFO),
];

/// Caps the targets of [`PAYLOAD_CAPS`] and every target below them (stored values and frames
/// never reach the log, at any level, for the daemon and the CLI alike): a directive for
/// `sled::pagecache=trace` is capped as `sled=trace` is. A filter that asks for less keeps its
/// own level.
fn without_payload_traces(filter: Targets) -> Targets {
    let cap_of = |target: &str| {
        PAYLOAD_CAPS.iter().find_map(|&(capped, cap)| {
            let below = target
                .strip_prefix(capped)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
            below.then_some(cap)
        })
    };
    let mut capped = Targets::new();
    if let Some(default) = filter.default_level() {
        capped = capped.with_default(default);
    }
    for (target, level) in filter.iter() {
        let level = cap_of(target).map_or(level, |cap| level.min(cap));
        capped = capped.with_target(target, level);
    }
    for &(target, cap) in PAYLOAD_CAPS {
        // What the filter gives the target itself (its own directive, a parent's, or the
        // default), capped.
        let current = [
            LevelFilter::TRACE,
            LevelFilter::DEBUG,
            LevelFilter::INFO,
            LevelFilter::WARN,
            LevelFilter::ERROR,
        ]
        .into_iter()
        .find(|level| {
            level
                .into_level()
                .is_some_and(|level| filter.would_enable(target, &level))
        })
        .unwrap_or(LevelFilter::OFF);
        if current > cap {
            capped = capped.with_target(target, cap);
        }
    }
    capped
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

    #[test]
    fn stored_values_never_reach_the_log() {
        for directives in ["trace", "debug", "sled=trace,info", "sled::pagecache=trace"] {
            let filter = without_payload_traces(parse_filter(directives).expect("a filter"));
            for target in ["sled", "sled::pagecache::logger", "sled::tree"] {
                assert!(
                    !filter.would_enable(target, &tracing::Level::DEBUG),
                    "{directives}: {target}"
                );
            }
            // What the filter asked for at the levels that carry no values stays.
            let asked = parse_filter(directives).expect("a filter");
            assert_eq!(
                filter.would_enable("sled::tree", &tracing::Level::INFO),
                asked.would_enable("sled::tree", &tracing::Level::INFO),
                "{directives}"
            );
        }
        assert!(
            without_payload_traces(parse_filter("trace").expect("a level"))
                .would_enable("natter::store", &tracing::Level::TRACE)
        );
        let quiet = without_payload_traces(parse_filter("error").expect("a level"));
        assert!(!quiet.would_enable("sled", &tracing::Level::WARN));
    }
}
