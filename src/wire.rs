//! What the edges share about the wire: the JSON shapes of messages, notifications and
//! attachments that the HTTP API and the native and rooms dialects show alike, the cookie
//! names, bearer tokens, and percent-decoding. A leaf: it knows records, not services.

use serde_json::{Value, json};

use crate::error::Error;
use crate::store::{Message, Notification, StoredFile};

/// Name of the cookie login and refresh set (unless the request says `"cookie": false`).
pub const ACCESS_COOKIE: &str = "natter_access";
/// Django's session cookie, which Kibray clients send "automatically": accepted
/// like [`ACCESS_COOKIE`] (it must hold a natter access token), when that one is absent.
pub const SESSION_COOKIE: &str = "sessionid";

/// A message as every edge shows it: the native WebSocket protocol's `Message` frame data and the
/// HTTP API's history and post responses.
pub fn message_json(room_name: &str, m: &Message) -> Value {
    json!({
        "room": room_name,
        "room_id": m.room_id,
        "seq": m.seq,
        "author": m.author_name,
        "author_id": m.author,
        "content": m.content,
        "reply_to": m.reply_to,
        "created_at": m.created_at_ms / 1000,
        "created_at_ms": m.created_at_ms,
        "edited_at": m.edited_at_ms.map(|ms| ms / 1000),
        "deleted": m.deleted,
        "client_msg_id": m.client_msg_id,
        "attachments": m.attachments.iter().map(attachment_json).collect::<Vec<_>>(),
        "reactions": reactions_json(m),
        "mentions": m.mentions,
    })
}

/// A message's reactions as the native protocol and the HTTP API show them: one entry per
/// emoji, `[{"emoji", "count", "users"}]`, in the emoji's order.
pub fn reactions_json(m: &Message) -> Value {
    Value::Array(
        m.reactions
            .iter()
            .map(|(emoji, users)| json!({"emoji": emoji, "count": users.len(), "users": users}))
            .collect(),
    )
}

/// A notification as every edge shows it: the native WebSocket protocol's `Notification` frame
/// data and the HTTP API's inbox.
pub fn notification_json(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "level": n.level,
        "title": n.title,
        "message": n.message,
        "actions": n.actions,
        "category": n.category,
        "url": n.url,
        "created_at": n.created_at,
        "read": n.read,
    })
}

/// A file as messages list it (`attachments`); `url` downloads it (authenticated).
pub fn attachment_json(file: &StoredFile) -> Value {
    json!({
        "id": file.id,
        "file_name": file.name,
        "file_size": file.size,
        "file_type": file.content_type,
        "sha256": file.sha256,
        "url": format!("/api/v1/files/{}", file.id),
    })
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
pub fn bearer_token(header: Option<&str>) -> Result<&str, Error> {
    let header = header.ok_or(Error::InvalidToken("missing bearer token"))?;
    let (scheme, token) = header.trim().split_once(' ').ok_or(Error::InvalidToken(
        "expected Authorization: Bearer <token>",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::InvalidToken(
            "expected Authorization: Bearer <token>",
        ));
    }
    match token.trim() {
        "" => Err(Error::InvalidToken("missing bearer token")),
        token => Ok(token),
    }
}

/// One query parameter, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(value))
}

/// Decodes `%XX` escapes and `+` (as space). Invalid escapes stay as they are.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_values() {
        assert_eq!(
            query_param("a=1&token=x%2Ey+z", "token").as_deref(),
            Some("x.y z")
        );
        assert_eq!(query_param("token", "token").as_deref(), Some(""));
        assert_eq!(query_param("a=1", "token"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
