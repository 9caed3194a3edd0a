//! What a webhook endpoint may be: its URL and the event types it takes. Pure checks, shared
//! by the config file and `natter webhook add`.

/// Every event type an endpoint can take (`*` takes them all). `webhook.test` is sent by
/// `natter webhook test` only, to the endpoint named, whatever its list.
pub const EVENTS: &[&str] = &[
    "message.created",
    "message.edited",
    "message.deleted",
    "room.member_added",
    "room.member_removed",
    "room.joined",
    "room.left",
    "user.online",
    "user.offline",
    "user.created",
    "user.disabled",
    "user.removed",
];

/// The test event's type.
pub const TEST_EVENT: &str = "webhook.test";

/// Longest endpoint URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// Most event types one endpoint lists.
pub const MAX_EVENTS: usize = 32;

/// The largest `webhooks.max_pending` (entries on disk per endpoint).
pub const MAX_PENDING_LIMIT: u64 = 1_000_000;

/// Checks an endpoint URL: `https://host…` (or `http://` when `allow_http`), at most
/// [`MAX_URL_BYTES`], no spaces or control characters, a host, no user info.
pub fn check_url(url: &str, allow_http: bool) -> Result<(), String> {
    if url.is_empty() {
        return Err("a webhook URL is required".to_owned());
    }
    if url.len() > MAX_URL_BYTES {
        return Err(format!(
            "a webhook URL is at most {MAX_URL_BYTES} bytes, not {}",
            url.len()
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a webhook URL has no spaces or control characters".to_owned());
    }
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        if !allow_http {
            return Err(format!(
                "{url:?}: webhooks are delivered over https (http only with webhooks.allow_private_addresses, for tests)"
            ));
        }
        rest
    } else {
        return Err(format!("{url:?} is not an http(s) URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "{url:?}: a webhook URL carries no user name or password"
        ));
    }
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok(())
}

/// Checks a list of event types: known ones (or `*`), at least one, at most [`MAX_EVENTS`].
pub fn check_events(events: &[String]) -> Result<(), String> {
    if events.is_empty() {
        return Err(format!(
            "name at least one event type (`*` for all): {}",
            EVENTS.join(", ")
        ));
    }
    if events.len() > MAX_EVENTS {
        return Err(format!("at most {MAX_EVENTS} event types"));
    }
    for event in events {
        if event != "*" && !EVENTS.contains(&event.as_str()) {
            return Err(format!(
                "unknown event type {event:?}; known: *, {}",
                EVENTS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Splits `--events a,b,c` into a checked list.
pub fn parse_events(list: &str) -> Result<Vec<String>, String> {
    let events: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    check_events(&events)?;
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert!(check_url("https://[::1]:8443/x", false).is_ok());
        assert!(check_url("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_url("http://example.com/", false).is_err());
        assert!(check_url("ftp://example.com/", true).is_err());
        assert!(check_url("https:///nohost", false).is_err());
        assert!(check_url("https://user:pw@example.com/", false).is_err());
        assert!(check_url("https://example.com/a b", false).is_err());
        assert!(check_url(&format!("https://e.com/{}", "a".repeat(3000)), false).is_err());
    }

    #[test]
    fn events_are_checked() {
        assert_eq!(
            parse_events("message.created, room.joined").ok(),
            Some(vec!["message.created".to_owned(), "room.joined".to_owned()])
        );
        assert!(parse_events("*").is_ok());
        assert!(parse_events("").is_err());
        assert!(parse_events("message.exploded").is_err());
    }
}
