//! CORS for the HTTP API: the browser apps the protocols' documents describe (a Vue or React
//! single-page app, a rooms client) live on an origin of their own, and log in and refresh
//! tokens from there. Origins in `ws.allowed_origins` get CORS answers; any other origin gets
//! none (its browser then refuses the response), and the same origin needs none.
//!
//! Credentials (the `natter_access` cookie) are allowed only where the cookie is used: the
//! token endpoints (which set and clear it) and file downloads (which accept it), and only for
//! an origin listed by name, never through `*`. Everything else authenticates with a bearer
//! token, which a page from another origin has to hold itself.

use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};

/// How long a browser may keep a preflight's answer.
const MAX_AGE_SECS: &str = "600";

/// Whether `origin` is allowed, and by name (not only through `*`).
fn allowance(origin: &str, allowed: &[String]) -> Option<bool> {
    if allowed.iter().any(|a| a == origin) {
        Some(true)
    } else if allowed.iter().any(|a| a == "*") {
        Some(false)
    } else {
        None
    }
}

/// Whether requests to `path` may carry the cookie from another origin.
fn uses_cookie(path: &str) -> bool {
    path.starts_with("/api/token") || path.starts_with("/api/v1/files/")
}

fn origin_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// The answer to a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) from an allowed origin; `None` for anything else, which
/// the routes answer as usual (405 for `OPTIONS`).
pub fn preflight(
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    allowed: &[String],
) -> Option<warp::reply::Response> {
    if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return None;
    }
    let origin = origin_of(headers)?;
    let by_name = allowance(origin, allowed)?;
    let mut response = warp::reply::Response::new(Default::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    allow(response.headers_mut(), origin, by_name && uses_cookie(path));
    let answers = response.headers_mut();
    answers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
    );
    answers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    answers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE_SECS),
    );
    Some(response)
}

/// Adds the CORS headers to the answer of a request from an allowed origin.
pub fn decorate(
    origin: Option<&str>,
    path: &str,
    allowed: &[String],
    response: &mut warp::reply::Response,
) {
    let Some(origin) = origin else {
        return;
    };
    let headers = response.headers_mut();
    // The answer depends on the Origin, whichever it is.
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(by_name) = allowance(origin, allowed) {
        allow(headers, origin, by_name && uses_cookie(path));
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after, www-authenticate"),
        );
    }
}

fn allow(headers: &mut HeaderMap, origin: &str, credentials: bool) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    if credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// The Origin of a request, to decorate its answer with.
pub fn request_origin(headers: &HeaderMap) -> Option<String> {
    origin_of(headers).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_str(origin).expect("origin"),
        );
        headers.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        headers
    }

    #[test]
    fn only_allowed_origins_are_answered_and_credentials_only_where_the_cookie_is() {
        let allowed = ["http://127.0.0.1:5173".to_owned()];
        let ok = preflight(
            &Method::OPTIONS,
            &headers("http://127.0.0.1:5173"),
            "/api/token",
            &allowed,
        )
        .expect("answered");
        assert_eq!(ok.status(), 204);
        assert_eq!(
            ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://127.0.0.1:5173"
        );
        assert_eq!(
            ok.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
            "true"
        );
        let rooms = preflight(
            &Method::OPTIONS,
            &headers("http://127.0.0.1:5173"),
            "/api/v1/rooms",
            &allowed,
        )
        .expect("answered");
        assert!(
            !rooms
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
        );
        assert!(
            preflight(
                &Method::OPTIONS,
                &headers("https://evil.example"),
                "/api/token",
                &allowed
            )
            .is_none()
        );
        let any = ["*".to_owned()];
        let star = preflight(
            &Method::OPTIONS,
            &headers("https://x.example"),
            "/api/token",
            &any,
        )
        .expect("answered");
        assert!(
            !star
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            "never credentials through *"
        );
    }
}
