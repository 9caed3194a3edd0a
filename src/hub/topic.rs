//! Topic names and subscription patterns for Broadcast pub/sub.
//!
//! A topic is 1 to 8 segments joined by `.`, each 1 to 64 characters of `A-Z a-z 0-9 _ - : @`,
//! at most 200 bytes in all: `chat.general`, `updates.build:42`. A pattern may use `*` for exactly
//! one segment (`updates.*` matches `updates.a` but not `updates` or `updates.a.b`) and `>` as the
//! last segment for one or more segments (`updates.>` matches `updates.a` and `updates.a.b`).
//!
//! Reserved first segments: `user` (`user.<name>...` is readable only by the user whose name
//! it is, its dots written `:`, and admins: see `core::policy::user_topic_segment`) and `admin`
//! (admins only); only admins publish to them. Wildcards never match a topic in a reserved
//! namespace: `*.x` or `>` cannot reach `user.bob.x`. A reserved topic is reached only by
//! subscribing to it by name, which the policy checks.

const MAX_TOPIC_BYTES: usize = 200;
const MAX_SEGMENTS: usize = 8;
const MAX_SEGMENT_CHARS: usize = 64;

/// First segments wildcards never match (see the module doc).
pub const RESERVED: &[&str] = &["user", "admin"];

fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_SEGMENT_CHARS
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '@'))
}

/// Checks a concrete topic (as published to).
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return Err(format!("topic must be 1 to {MAX_TOPIC_BYTES} bytes"));
    }
    let segments: Vec<&str> = topic.split('.').collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(format!("topic has more than {MAX_SEGMENTS} segments"));
    }
    if let Some(bad) = segments.iter().find(|s| !valid_segment(s)) {
        return Err(format!(
            "invalid topic segment {bad:?}: use 1 to {MAX_SEGMENT_CHARS} of A-Z a-z 0-9 _ - : @"
        ));
    }
    Ok(())
}

/// A parsed subscription: an exact topic or a pattern with wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    Exact(String),
    Pattern(Pattern),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

/// Parses what a client subscribes to.
pub fn parse_subscription(text: &str) -> Result<Subscription, String> {
    if !text.contains(['*', '>']) {
        validate_topic(text)?;
        return Ok(Subscription::Exact(text.to_owned()));
    }
    if text.len() > MAX_TOPIC_BYTES {
        return Err(format!("pattern must be at most {MAX_TOPIC_BYTES} bytes"));
    }
    let raw: Vec<&str> = text.split('.').collect();
    if raw.len() > MAX_SEGMENTS {
        return Err(format!("pattern has more than {MAX_SEGMENTS} segments"));
    }
    let mut segments = Vec::with_capacity(raw.len());
    for (i, segment) in raw.iter().enumerate() {
        segments.push(match *segment {
            "*" => Segment::One,
            ">" if i + 1 == raw.len() => Segment::Rest,
            ">" => return Err("'>' may only be the last segment".to_owned()),
            literal if valid_segment(literal) => Segment::Literal(literal.to_owned()),
            bad => {
                return Err(format!(
                    "invalid pattern segment {bad:?}: use a name, '*' or a final '>'"
                ));
            }
        });
    }
    Ok(Subscription::Pattern(Pattern {
        text: text.to_owned(),
        segments,
    }))
}

/// The first segment of a topic or pattern.
pub fn namespace(topic: &str) -> &str {
    topic.split('.').next().unwrap_or("")
}

impl Pattern {
    /// Whether this pattern matches a concrete `topic`. Reserved namespaces never match.
    pub fn matches(&self, topic: &str) -> bool {
        if RESERVED.contains(&namespace(topic)) {
            return false;
        }
        let mut parts = topic.split('.');
        for segment in &self.segments {
            match segment {
                Segment::Rest => return parts.next().is_some(),
                Segment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(literal) => {
                    if parts.next() != Some(literal.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        match parse_subscription(text).expect("valid") {
            Subscription::Pattern(p) => p,
            Subscription::Exact(_) => panic!("{text} is not a pattern"),
        }
    }

    #[test]
    fn star_matches_exactly_one_segment() {
        let p = pattern("updates.*");
        assert!(p.matches("updates.a"));
        assert!(!p.matches("updates"));
        assert!(!p.matches("updates.a.b"));
        assert!(!p.matches("other.a"));
        assert!(pattern("*.x").matches("a.x"));
    }

    #[test]
    fn rest_matches_one_or_more() {
        let p = pattern("updates.>");
        assert!(p.matches("updates.a"));
        assert!(p.matches("updates.a.b"));
        assert!(!p.matches("updates"));
        assert!(pattern(">").matches("anything.at.all"));
    }

    #[test]
    fn wildcards_never_reach_reserved_namespaces() {
        assert!(!pattern(">").matches("user.bob.inbox"));
        assert!(!pattern("*.bob").matches("user.bob"));
        assert!(!pattern("admin.>").matches("admin.audit"));
    }

    #[test]
    fn bad_topics_and_patterns_are_refused() {
        for bad in ["", ".", "a..b", "a b", "a.>.b", "a.b*", &"x".repeat(201)] {
            assert!(parse_subscription(bad).is_err(), "{bad}");
        }
        assert!(validate_topic("updates.*").is_err());
        assert!(validate_topic("chat.general").is_ok());
    }
}
