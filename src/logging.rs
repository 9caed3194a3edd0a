//! Log setup: structured `tracing` events to stderr. Under systemd (`JOURNAL_STREAM` set) no
//! timestamps or colours, since journald adds its own. `NATTER_LOG` overrides `log.level`.

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

pub fn init(config: &LogConfig) {
    let filter = std::env::var("NATTER_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(&config.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let filter = without_payload_traces(filter);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !journald && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // try_init: a second init (tests) is harmless.
    let _ = match (config.format.as_str(), journald) {
        ("json", _) => builder.json().try_init(),
        (_, true) => builder.without_time().try_init(),
        _ => builder.try_init(),
    };
}

/// tungstenite logs every received message in full at `trace` ("Received message ..."): an
/// `Authenticate` frame's token, chat content. Whatever the filter asks for, the WebSocket
/// layer logs at `debug` at most (its debug lines carry close frames only).
fn without_payload_traces(filter: EnvFilter) -> EnvFilter {
    if filter.max_level_hint() != Some(tracing_subscriber::filter::LevelFilter::TRACE) {
        return filter;
    }
    ["tungstenite=debug", "tokio_tungstenite=debug"]
        .into_iter()
        .filter_map(|directive| directive.parse().ok())
        .fold(filter, EnvFilter::add_directive)
}
