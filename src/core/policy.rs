//! Policy: who may read or publish what, name rules, and the rate limiter every connection
//! carries. Edges call these; none has its own copy.

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::hub::topic::{self, Subscription};
use crate::principal::{Principal, Scope};
use crate::store::{Room, Visibility};

/// Prefix of the two-member rooms that hold direct conversations.
pub const DM_PREFIX: &str = "dm:";

/// Prefix of the personal rooms (`user:<number>`, the rooms protocol's): each belongs to the user with that
/// [`crate::store::User::number`], is created on its first use and cannot be created by name.
pub const PERSONAL_PREFIX: &str = "user:";

/// The name of a user's personal room.
pub fn personal_room_name(number: u64) -> String {
    format!("{PERSONAL_PREFIX}{number}")
}

/// Longest room title, in characters.
pub const MAX_ROOM_TITLE_CHARS: usize = 80;
/// Longest room topic line, in characters.
pub const MAX_ROOM_TOPIC_CHARS: usize = 300;

/// A room's title or topic as it is stored: trimmed; empty (or `None`) clears it. At most
/// `max` characters, one line: no control characters (tabs and newlines included), and no
/// bidirectional overrides that would make it read differently from what it holds.
pub fn room_text(what: &str, value: Option<&str>, max: usize) -> Result<Option<String>, Error> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > max {
        return Err(Error::BadRequest(format!(
            "a room {what} is at most {max} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    {
        return Err(Error::BadRequest(format!(
            "a room {what} is one line without control characters"
        )));
    }
    Ok(Some(value.to_owned()))
}

/// Room names: 1 to 64 characters of `a-z 0-9 _ . - : /`; `dm:` is reserved for direct rooms.
/// Longest reaction, in bytes (an emoji with modifiers and joiners fits; so does a short
/// `:shortcode:`).
pub const MAX_REACTION_BYTES: usize = 32;

/// A reaction is a short token: an emoji (or a `:shortcode:`), no spaces, no control
/// characters, no markup.
pub fn validate_reaction(emoji: &str) -> Result<(), Error> {
    if emoji.is_empty() || emoji.len() > MAX_REACTION_BYTES {
        return Err(Error::BadRequest(format!(
            "a reaction is 1 to {MAX_REACTION_BYTES} bytes"
        )));
    }
    if emoji
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '&' | '"'))
    {
        return Err(Error::BadRequest(
            "a reaction has no spaces, control characters or markup".to_owned(),
        ));
    }
    Ok(())
}

pub fn validate_room_name(name: &str) -> Result<(), Error> {
    let len = name.chars().count();
    if !(1..=64).contains(&len) {
        return Err(Error::BadRequest(
            "room name must be 1 to 64 characters".to_owned(),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-' | ':' | '/'))
    {
        return Err(Error::BadRequest(format!(
            "room name may contain only a-z, 0-9, '_', '.', '-', ':' and '/' (found {bad:?})"
        )));
    }
    Ok(())
}

/// Prefixes of the rooms a backend creates over HTTP (the rooms protocol's `channel:N`,
/// `project:N`, `task:N`): only an admin (a login, or a service token with the `admin` scope)
/// may create them, so no user can take one before the backend does and own it.
pub const BACKEND_PREFIXES: &[&str] = &["channel:", "project:", "task:"];

/// Who may create a room named `name`, beyond the name's syntax:
/// - `dm:` and `user:` names are made by the server only (direct and personal rooms);
/// - [`BACKEND_PREFIXES`] names only by admins;
/// - a name with a `/` (EduSphere's `host/slug`) is in the namespace of the user named by what
///   precedes its first `/`: only that user or an admin may create it.
pub fn check_room_namespace(who: &Principal, name: &str) -> Result<(), Error> {
    if name.starts_with(DM_PREFIX) {
        return Err(Error::BadRequest(
            "room names starting with dm: are reserved for direct messages".to_owned(),
        ));
    }
    if name.starts_with(PERSONAL_PREFIX) {
        return Err(Error::BadRequest(
            "room names starting with user: are reserved for personal rooms".to_owned(),
        ));
    }
    if who.is_admin() {
        return Ok(());
    }
    if let Some(prefix) = BACKEND_PREFIXES.iter().find(|p| name.starts_with(**p)) {
        return Err(Error::Forbidden(format!(
            "room names starting with {prefix} are created by the backend (an admin)"
        )));
    }
    if let Some((host, _)) = name.split_once('/')
        && host != who.username
    {
        return Err(Error::Forbidden(format!(
            "room names starting with {host}/ belong to the user {host}"
        )));
    }
    Ok(())
}

/// The name of the direct room of two users (order-independent).
pub fn dm_room_name(a: &str, b: &str) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    format!("{DM_PREFIX}{first}:{second}")
}

pub fn can_read_room(who: &Principal, room: &Room, is_member: bool) -> bool {
    who.is_admin() || is_member || room.visibility == Visibility::Public
}

/// Whether a room is a two-member direct room (`dm:a:b`).
pub fn is_direct(room: &Room) -> bool {
    room.name.starts_with(DM_PREFIX)
}

/// Owner powers: the room's owner, except in direct rooms, which have no owner powers (whoever
/// opened one first is its nominal owner only).
pub fn is_owner(who: &Principal, room: &Room) -> bool {
    room.owner == who.user_id && !is_direct(room)
}

/// The message's author, the room's owner, or an admin may change a message.
pub fn can_modify_message(who: &Principal, room: &Room, author: uuid::Uuid) -> bool {
    who.is_admin() || is_owner(who, room) || author == who.user_id
}

/// The segment that names a user in the reserved `user.` topics: the username with each `.`
/// written `:`. A topic segment cannot hold a `.`, and a username cannot hold a `:`, so each
/// user has exactly one segment and no two users share one: user `bob.x` owns `user.bob:x`
/// and the topics below it (`user.bob:x.inbox`), user `bob` owns `user.bob` and `user.bob.x`.
/// Ownership is decided by the segment alone, so creating an account never changes who owns
/// a topic.
pub fn user_topic_segment(username: &str) -> String {
    username.replace('.', ":")
}

/// Whether `who` may subscribe to `subscription` (see `hub::topic` for the namespaces): a
/// `user.<segment>...` topic only by the user whose [`user_topic_segment`] it is, and admins.
pub fn check_subscribe(who: &Principal, subscription: &Subscription) -> Result<(), Error> {
    match subscription {
        Subscription::Exact(name) => match topic::namespace(name) {
            "user" => {
                let owner = name.split('.').nth(1).unwrap_or("");
                if owner == user_topic_segment(&who.username) || who.is_admin() {
                    Ok(())
                } else {
                    Err(Error::Forbidden(format!(
                        "topic {name} belongs to another user"
                    )))
                }
            }
            "admin" if !who.is_admin() => {
                Err(Error::Forbidden(format!("topic {name} is for admins")))
            }
            _ => Ok(()),
        },
        Subscription::Pattern(pattern) => {
            if topic::RESERVED.contains(&topic::namespace(&pattern.text)) {
                Err(Error::BadRequest(format!(
                    "wildcards do not reach reserved namespaces; subscribe to {} topics by name",
                    topic::namespace(&pattern.text)
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// Whether `who` may publish to `topic`: reserved namespaces are for admins (and the server).
pub fn check_publish(who: &Principal, topic_name: &str) -> Result<(), Error> {
    topic::validate_topic(topic_name).map_err(Error::BadRequest)?;
    if topic::RESERVED.contains(&topic::namespace(topic_name)) && !who.is_admin() {
        return Err(Error::Forbidden(format!(
            "only admins publish to {}",
            topic_name
        )));
    }
    Ok(())
}

/// Guests (FastChat clients without a token, see `fastchat.guests`) have no account, so nothing
/// stored (rooms, memberships, messages) can be theirs: every room operation refuses them.
pub fn check_account(who: &Principal) -> Result<(), Error> {
    if who.guest {
        return Err(Error::Forbidden(
            "guests have no rooms; connect with a token for stored conversations".to_owned(),
        ));
    }
    who.require_scope(Scope::Chat)
}

/// Longest link a notification may carry.
const MAX_LINK_BYTES: usize = 2048;

/// A link a client may follow: an absolute `http(s)` URL, or a path on the same origin
/// (`/tasks/123`, but not `//host`, which a browser reads as another host, nor `/\host`), at
/// most 2048 bytes, without control characters. Every other scheme (`javascript:`, `data:`,
/// ...) is refused.
pub fn is_safe_link(url: &str) -> bool {
    if url.len() > MAX_LINK_BYTES || url.chars().any(char::is_control) {
        return false;
    }
    let lower = url.to_ascii_lowercase();
    let absolute = lower.starts_with("https://") || lower.starts_with("http://");
    let path = url.starts_with('/') && !url.starts_with("//") && !url.starts_with("/\\");
    absolute || path
}

/// Rounds of [`strip_markup`]: each removes one level of escaped markup.
const STRIP_ROUNDS: usize = 4;

/// Reduces text that may hold HTML to plain text without any tag: the text is parsed as a browser
/// would (ammonia, on html5ever), every tag and comment is dropped (`script` and `style` elements
/// with their content), entities are decoded (`&amp;` becomes `&`), and the result is reduced
/// again until nothing changes, so that escaped markup (`&lt;b&gt;`) cannot come back as a tag.
/// Markup nested deeper than four levels of escaping loses its `<`, `>` and `&`. Plain
/// text comes back unchanged, apart from line ends (CR LF becomes LF) and NUL characters
/// (dropped), as HTML parsing treats them.
pub fn strip_markup(text: &str) -> String {
    let cleaner = ammonia::Builder::empty();
    let mut current = text.to_owned();
    for _ in 0..STRIP_ROUNDS {
        let next = unescape_text(&cleaner.clean(&current).to_string());
        if next == current {
            return current;
        }
        current = next;
    }
    current.retain(|c| !matches!(c, '<' | '>' | '&'));
    current
}

/// Decodes the entities html5ever's serializer writes in text: `&amp;`, `&lt;`, `&gt;`, `&nbsp;`.
fn unescape_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (decoded, len) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&nbsp;", '\u{a0}'),
        ]
        .iter()
        .find(|(entity, _)| rest.starts_with(entity))
        .map_or(('&', 1), |(entity, c)| (*c, entity.len()));
        out.push(decoded);
        rest = &rest[len..];
    }
    out.push_str(rest);
    out
}

/// A display name as others see it: markup stripped ([`strip_markup`]), surrounding whitespace
/// trimmed, then `min` to `max` characters without control characters.
pub fn display_name(raw: &str, min: usize, max: usize) -> Result<String, Error> {
    let name = strip_markup(raw).trim().to_owned();
    let chars = name.chars().count();
    if !(min..=max).contains(&chars) {
        return Err(Error::BadRequest(format!(
            "display name must be {min} to {max} characters (without markup)"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::BadRequest(
            "display name must not contain control characters".to_owned(),
        ));
    }
    Ok(name)
}

/// A token bucket (implemented as GCRA, in exact integer time): `per_minute` sustained,
/// `burst` at once. Over any window of T, it accepts at most `burst + T * rate` requests.
#[derive(Debug)]
pub struct RateLimiter {
    /// Time one token takes to refill.
    interval: Duration,
    /// How far ahead of now the theoretical arrival time may run: (burst - 1) intervals.
    tolerance: Duration,
    /// Theoretical arrival time of the next request.
    tat: Instant,
    /// Refusals in the current refusal streak (reset by an accepted request).
    pub refused_in_a_row: u32,
}

impl RateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        Self::new_at(per_minute, burst, Instant::now())
    }

    /// A full bucket as of `now`.
    pub fn new_at(per_minute: u32, burst: u32, now: Instant) -> RateLimiter {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        RateLimiter {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            tat: now,
            refused_in_a_row: 0,
        }
    }

    /// Takes a token if one is available.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    pub fn try_take_at(&mut self, now: Instant) -> bool {
        let tat = self.tat.max(now);
        if tat.saturating_duration_since(now) <= self.tolerance {
            self.tat = tat + self.interval;
            self.refused_in_a_row = 0;
            true
        } else {
            self.refused_in_a_row = self.refused_in_a_row.saturating_add(1);
            false
        }
    }

    /// How long until the next token.
    pub fn retry_after(&self) -> Duration {
        self.tat
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.tolerance)
    }

    /// Whether the bucket is full again at `now`: then it behaves exactly like a new one, so
    /// whoever keeps limiters may drop it without giving anyone a token more.
    pub fn is_full_at(&self, now: Instant) -> bool {
        self.tat <= now
    }
}

/// A rolling-window limit: at most `limit` requests in any `window` (Kibray's "60 messages
/// per minute, rolling 60-second window"). Unlike [`RateLimiter`] it never admits more than
/// `limit` in a window; it remembers the times of the last `limit` accepted requests, so its
/// memory is bounded by `limit`.
#[derive(Debug)]
pub struct WindowLimiter {
    limit: usize,
    window: Duration,
    /// Times of the accepted requests still inside the window, oldest first.
    accepted: std::collections::VecDeque<Instant>,
    /// Refusals in the current refusal streak (reset by an accepted request).
    pub refused_in_a_row: u32,
}

impl WindowLimiter {
    pub fn new(limit: u32, window: Duration) -> WindowLimiter {
        let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        WindowLimiter {
            limit,
            window,
            accepted: std::collections::VecDeque::with_capacity(limit.min(1024)),
            refused_in_a_row: 0,
        }
    }

    /// Counts a request now if the window has room for it.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    /// How long until the window has room again.
    pub fn retry_after(&self) -> Duration {
        if self.accepted.len() < self.limit {
            return Duration::ZERO;
        }
        self.accepted.front().map_or(Duration::ZERO, |oldest| {
            (*oldest + self.window).saturating_duration_since(Instant::now())
        })
    }

    /// Whether no accepted request is inside the window at `now`: then the limiter behaves
    /// exactly like a new one (see [`RateLimiter::is_full_at`]).
    pub fn is_full_at(&self, now: Instant) -> bool {
        self.accepted
            .back()
            .is_none_or(|at| now.saturating_duration_since(*at) >= self.window)
    }

    pub fn try_take_at(&mut self, now: Instant) -> bool {
        while self
            .accepted
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= self.window)
        {
            self.accepted.pop_front();
        }
        if self.accepted.len() < self.limit {
            self.accepted.push_back(now);
            self.refused_in_a_row = 0;
            true
        } else {
            self.refused_in_a_row = self.refused_in_a_row.saturating_add(1);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_titles_and_topics_are_one_bounded_line() {
        assert_eq!(
            room_text("title", Some("  Plans "), 80)
                .expect("ok")
                .as_deref(),
            Some("Plans")
        );
        assert_eq!(
            room_text("title", Some("   "), 80).expect("ok"),
            None,
            "blank clears"
        );
        assert_eq!(room_text("title", None, 80).expect("ok"), None);
        assert!(
            room_text("title", Some(&"é".repeat(80)), 80).is_ok(),
            "characters, not bytes"
        );
        assert!(room_text("title", Some(&"é".repeat(81)), 80).is_err());
        for bad in [
            "a\nb",
            "a\tb",
            "bell\u{7}",
            "\u{202e}rtl",
            "iso\u{2066}late",
        ] {
            assert!(room_text("topic", Some(bad), 300).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bucket_accepts_exactly_rate_times_time_plus_burst() {
        let start = Instant::now();
        let mut bucket = RateLimiter::new_at(60, 5, start);
        let mut accepted = 0;
        // 10 seconds at 10 attempts per second: 5 (burst) + 10 (1/s) accepted.
        for tenth in 0..=100 {
            if bucket.try_take_at(start + Duration::from_millis(tenth * 100)) {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 15);
    }

    #[test]
    fn window_admits_exactly_the_limit_in_any_window() {
        let start = Instant::now();
        let mut window = WindowLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(window.try_take_at(start));
        }
        assert!(!window.try_take_at(start + Duration::from_secs(59)));
        assert_eq!(window.refused_in_a_row, 1);
        assert!(window.try_take_at(start + Duration::from_secs(60)));
        assert_eq!(window.refused_in_a_row, 0);
    }

    #[test]
    fn links_are_http_urls_or_paths_on_this_server() {
        for ok in [
            "/tasks/123",
            "/a?b=c#d",
            "https://example.com/x",
            "HTTP://example.com",
        ] {
            assert!(is_safe_link(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "//evil.example",
            "/\\evil.example",
            "tasks/123",
            "/tab\there",
            "/new\nline",
            "",
            &format!("/{}", "x".repeat(2048)),
        ] {
            assert!(!is_safe_link(bad), "{bad}");
        }
    }

    fn user(name: &str, role: crate::principal::Role) -> Principal {
        Principal {
            username: name.to_owned(),
            role,
            guest: false,
            ..Principal::guest(uuid::Uuid::new_v4())
        }
    }

    #[test]
    fn derived_room_names_belong_to_their_namespace() {
        use crate::principal::{Role, Scopes};
        let alice = user("alice", Role::User);
        let admin = user("boss", Role::Admin);
        let mut backend = user("boss", Role::Admin);
        backend.scopes = Some(Scopes {
            chat: true,
            publish: false,
            admin: true,
        });
        let mut chat_only = backend.clone();
        chat_only.scopes = Some(Scopes {
            chat: true,
            ..Scopes::default()
        });
        for name in ["general", "alice/math", "alice/a/b", "channels", "tasks:1"] {
            assert!(check_room_namespace(&alice, name).is_ok(), "{name}");
        }
        for name in [
            "channel:456",
            "project:1",
            "task:x",
            "bob/math",
            "/x",
            "alice.b/x",
        ] {
            assert!(check_room_namespace(&alice, name).is_err(), "{name}");
            assert!(check_room_namespace(&admin, name).is_ok(), "{name}");
            assert!(check_room_namespace(&backend, name).is_ok(), "{name}");
        }
        assert!(check_room_namespace(&chat_only, "channel:1").is_err());
        for name in ["dm:a:b", "user:1"] {
            assert!(check_room_namespace(&admin, name).is_err(), "{name}");
        }
    }

    #[test]
    fn user_topics_are_owned_by_exactly_one_user() {
        use crate::principal::Role;
        let exact = |name: &str| Subscription::Exact(name.to_owned());
        let bob = user("bob", Role::User);
        let bob_x = user("bob.x", Role::User);
        assert_eq!(user_topic_segment("bob.x"), "bob:x");
        for (who, mine, theirs) in [
            (&bob, "user.bob.x.inbox", "user.bob:x.inbox"),
            (&bob_x, "user.bob:x.inbox", "user.bob.x.inbox"),
            (&bob, "user.bob", "user.bob:x"),
            (&bob_x, "user.bob:x", "user.bob"),
        ] {
            assert!(check_subscribe(who, &exact(mine)).is_ok(), "{mine}");
            assert!(check_subscribe(who, &exact(theirs)).is_err(), "{theirs}");
        }
    }

    #[test]
    fn room_names() {
        for ok in ["general", "channel:456", "alice/math", "a.b-c_d"] {
            assert!(validate_room_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "General", "a b", &"x".repeat(65)] {
            assert!(validate_room_name(bad).is_err(), "{bad}");
        }
        assert_eq!(dm_room_name("bob", "alice"), "dm:alice:bob");
    }
}

#[cfg(test)]
mod markup_tests {
    use super::*;

    #[test]
    fn strip_markup_leaves_plain_text_and_removes_every_tag() {
        for plain in [
            "hello",
            "Tom & Jerry",
            "a < b > c",
            "x <3 y",
            "\"quoted\" 'single'",
        ] {
            assert_eq!(strip_markup(plain), plain);
        }
        assert_eq!(strip_markup("<b>bold</b> move"), "bold move");
        assert_eq!(strip_markup("hi<script>alert(1)</script>!"), "hi!");
        assert_eq!(strip_markup("<img src=x onerror=alert(1)>"), "");
        assert_eq!(strip_markup("<!-- note -->text"), "text");
        assert_eq!(strip_markup("&lt;script&gt;alert(1)&lt;/script&gt;"), "");
        assert_eq!(strip_markup("<textarea><b>x</b></textarea>"), "x");
        assert_eq!(strip_markup("&amp;amp;"), "&");
        assert_eq!(strip_markup("line\r\nend\0"), "line\nend");
        // However deep the escaping, no tag survives.
        let deep = "&amp;amp;amp;amp;amp;lt;b&amp;amp;amp;amp;amp;gt;x";
        let stripped = strip_markup(deep);
        assert!(
            !stripped.contains('<') && !stripped.contains('>'),
            "{stripped}"
        );
        assert_eq!(strip_markup(&stripped), stripped);
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("  Ann  ", 3, 50).expect("ok"), "Ann");
        assert_eq!(display_name("<i>Bobby</i>", 3, 50).expect("ok"), "Bobby");
        assert!(display_name("<b>Al</b>", 3, 50).is_err());
        assert!(display_name(&"x".repeat(51), 3, 50).is_err());
        assert!(display_name(&"é".repeat(50), 3, 50).is_ok());
        assert!(display_name("tab\there", 3, 50).is_err());
    }
}
