//! WebSocket endpoints: the upgrade (handled on hyper directly, with natter's own framing in
//! [`socket`]: no buffers held by an idle connection, bounded messages, permessage-deflate in
//! [`deflate`]), token extraction, the Origin check, and the hand-off to a [`session`] running
//! the endpoint's dialect.

pub mod close;
pub mod deflate;
pub mod dialect;
pub mod fanout;
pub mod session;
pub mod socket;

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper_util::rt::TokioIo;

use crate::app::AppState;
use crate::error::Error;
use crate::wire::{ACCESS_COOKIE, SESSION_COOKIE, percent_decode, query_param};

/// Subprotocol prefix that carries a token (`access_token.<JWT>`).
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "access_token.";

/// A WebSocket endpoint, with what its path names, and the dialect it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/ws`: the native protocol, or FastChat when the first frame is
    /// `HELLO`.
    Native,
    /// `/ws/chat/{host}/{slug}`: EduSphere, one connection per room `{host}/{slug}`.
    /// Both segments percent-decoded.
    EduSphere { host: String, slug: String },
    /// `/api/v1/ws/connect`: project, channel and task rooms (the rooms protocol).
    Rooms,
    /// `/ws/chat/{room}/`, `/ws/notifications/`, `/ws/status/`: Kibray.
    Kibray(KibrayEndpoint),
    /// `/ws/echo`: echoes messages back, unauthenticated; served only when
    /// `ws.conformance_echo` is on (a test-only switch for the WebSocket conformance suite).
    Echo,
}

/// The three Kibray endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KibrayEndpoint {
    /// `/ws/chat/{room}/`: the core room `{room}` (percent-decoded).
    Chat { room: String },
    /// `/ws/notifications/`.
    Notifications,
    /// `/ws/status/`.
    Status,
}

/// Which WebSocket endpoint (if any) serves `path` (already without a trailing slash).
pub fn endpoint(path: &str) -> Option<Endpoint> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["ws"] => Some(Endpoint::Native),
        ["ws", "chat", host, slug] if !host.is_empty() && !slug.is_empty() => {
            Some(Endpoint::EduSphere {
                host: path_segment(host),
                slug: path_segment(slug),
            })
        }
        ["api", "v1", "ws", "connect"] => Some(Endpoint::Rooms),
        ["ws", "chat", room] if !room.is_empty() => Some(Endpoint::Kibray(KibrayEndpoint::Chat {
            room: path_segment(room),
        })),
        ["ws", "notifications"] => Some(Endpoint::Kibray(KibrayEndpoint::Notifications)),
        ["ws", "status"] => Some(Endpoint::Kibray(KibrayEndpoint::Status)),
        ["ws", "echo"] => Some(Endpoint::Echo),
        _ => None,
    }
}

/// A percent-decoded path segment ('+' is a plus in a path; only query strings mean a space).
fn path_segment(segment: &str) -> String {
    percent_decode(&segment.replace('+', "%2B"))
}

/// Where the credentials of an upgrade request came from.
#[derive(Debug, Default)]
pub struct Credentials {
    pub token: Option<String>,
    /// The `access_token.<JWT>` subprotocol offered, to be echoed in the 101 response.
    pub subprotocol: Option<String>,
}

/// Finds the token: `Authorization: Bearer`, `?token=`, the `access_token.<JWT>` subprotocol,
/// or the `natter_access` cookie (else Django's `sessionid`), in that order.
pub fn credentials(headers: &HeaderMap, query: Option<&str>) -> Credentials {
    let mut found = Credentials::default();
    for offered in headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
    {
        if let Some(token) = offered
            .strip_prefix(TOKEN_SUBPROTOCOL_PREFIX)
            .filter(|t| !t.is_empty())
        {
            found.subprotocol = Some(offered.to_owned());
            found.token = Some(token.to_owned());
            break;
        }
    }
    let cookie_named = |wanted: &str| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == wanted)
            .map(|(_, value)| value.to_owned())
            .filter(|value| !value.is_empty())
    };
    let cookie = cookie_named(ACCESS_COOKIE).or_else(|| cookie_named(SESSION_COOKIE));
    let bearer = crate::wire::bearer_token(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
    .ok()
    .map(str::to_owned);
    let from_query = query
        .and_then(|q| query_param(q, "token"))
        .filter(|t| !t.is_empty());
    found.token = bearer.or(from_query).or(found.token).or(cookie);
    found
}

/// Whether a browser `Origin` may open a WebSocket here: no Origin (not a browser), the
/// server's own origin (same host as `Host`), or one listed in `ws.allowed_origins`.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed.iter().any(|a| a == origin || a == "*") {
        return true;
    }
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|host| host.eq_ignore_ascii_case(origin_host))
}

/// Handles an HTTP request to a WebSocket endpoint: refuses a non-upgrade or foreign-origin
/// request with a JSON error, otherwise answers 101 and runs the session once the connection is
/// upgraded. A bad token still gets the upgrade: the session then says why (401) and closes
/// with 4401, because browsers cannot read the status of a refused upgrade.
pub fn upgrade(
    state: AppState,
    endpoint: Endpoint,
    mut request: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> warp::reply::Response {
    if endpoint == Endpoint::Echo && !state.config.ws.conformance_echo {
        // Switched off (the default): the route does not exist, as for any unknown path.
        return crate::http::error_response(&Error::NotFound("no such route".to_owned()));
    }
    let headers = request.headers();
    let is_upgrade = request.method() == hyper::Method::GET
        && header_has_token(headers, header::CONNECTION, "upgrade")
        && header_has_token(headers, header::UPGRADE, "websocket");
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .filter(|_| is_upgrade)
    else {
        let mut response = crate::http::error_response(&Error::BadRequest(
            "this is a WebSocket endpoint: send a WebSocket upgrade request".to_owned(),
        ));
        *response.status_mut() = hyper::StatusCode::UPGRADE_REQUIRED;
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut response = crate::http::error_response(&Error::BadRequest(
            "unsupported WebSocket version (13 is required)".to_owned(),
        ));
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    if !origin_allowed(headers, &state.config.ws.allowed_origins) {
        let named = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        tracing::warn!(
            peer = %peer,
            origin = %named(header::ORIGIN),
            host = %named(header::HOST),
            "WebSocket refused: its Origin is neither this server's (the Host) nor listed in \
             ws.allowed_origins; add it there to allow it (a page on 127.0.0.1 opening \
             ws://localhost, or the other way round, is another origin)"
        );
        return crate::http::error_response(&Error::Forbidden("origin not allowed".to_owned()));
    }
    let credentials = credentials(headers, request.uri().query());
    let mut response: warp::reply::Response = hyper::Response::new(Default::default());
    *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    if let Ok(value) = HeaderValue::from_str(&accept) {
        response_headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    if let Some(protocol) = &credentials.subprotocol
        && let Ok(value) = HeaderValue::from_str(protocol)
    {
        response_headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    let deflate = if state.config.ws.permessage_deflate {
        deflate::negotiate(headers)
    } else {
        None
    };
    let deflate = deflate.map(|(deflate, answer)| {
        response_headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, answer);
        deflate
    });
    let on_upgrade = hyper::upgrade::on(&mut request);
    let tracked = state.clone();
    tracked.spawn_tracked(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let socket = Box::new(socket::WebSocket::new(
            TokioIo::new(upgraded),
            state.config.ws.max_frame_bytes,
            deflate,
        ));
        match endpoint {
            Endpoint::Native => {
                // Native, or FastChat when the first frame is HELLO (dialect::root).
                session::run_ws(state, socket, credentials, peer, endpoint).await;
            }
            Endpoint::EduSphere { .. } => {
                session::run::<dialect::edusphere::EduSphere>(
                    state,
                    socket,
                    credentials,
                    peer,
                    endpoint,
                )
                .await;
            }
            Endpoint::Rooms => {
                session::run::<dialect::rooms::Rooms>(state, socket, credentials, peer, endpoint)
                    .await;
            }
            Endpoint::Kibray(_) => {
                session::run::<dialect::kibray::Kibray>(state, socket, credentials, peer, endpoint)
                    .await;
            }
            Endpoint::Echo => session::run_echo(state, socket).await,
        }
    });
    response
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_by_path() {
        assert_eq!(endpoint("/ws"), Some(Endpoint::Native));
        assert_eq!(
            endpoint("/ws/chat/alice/math"),
            Some(Endpoint::EduSphere {
                host: "alice".to_owned(),
                slug: "math".to_owned()
            })
        );
        assert_eq!(
            endpoint("/ws/chat/al%69ce/a+b"),
            Some(Endpoint::EduSphere {
                host: "alice".to_owned(),
                slug: "a+b".to_owned()
            })
        );
        assert_eq!(
            endpoint("/ws/chat/alice"),
            Some(Endpoint::Kibray(KibrayEndpoint::Chat {
                room: "alice".to_owned()
            }))
        );
        assert_eq!(
            endpoint("/ws/notifications"),
            Some(Endpoint::Kibray(KibrayEndpoint::Notifications))
        );
        assert_eq!(
            endpoint("/ws/status"),
            Some(Endpoint::Kibray(KibrayEndpoint::Status))
        );
        assert_eq!(endpoint("/ws/chat"), None);
        assert_eq!(endpoint("/ws/chat/alice/math/extra"), None);
        assert_eq!(endpoint("/api/v1/ws/connect"), Some(Endpoint::Rooms));
        assert_eq!(endpoint("/api/v1/ws"), None);
        assert_eq!(endpoint("/ws/echo"), Some(Endpoint::Echo));
    }

    #[test]
    fn origin_rules() {
        let mut headers = HeaderMap::new();
        assert!(origin_allowed(&headers, &[]), "no Origin: not a browser");
        headers.insert(
            header::HOST,
            HeaderValue::from_static("chat.example.com:8000"),
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://chat.example.com:8000"),
        );
        assert!(origin_allowed(&headers, &[]), "same origin");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!origin_allowed(&headers, &[]));
        assert!(origin_allowed(
            &headers,
            &["https://evil.example".to_owned()]
        ));
    }
}
