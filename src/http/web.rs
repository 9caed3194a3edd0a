//! The built-in web client: the static files under `src/web/`, compiled into the binary and
//! served at `/` (the page), `/sw.js` (its service worker, for Web Push notifications) and
//! `/assets/{name}` (its stylesheet, JavaScript modules and icon).
//!
//! Nothing here knows about users: the page talks to the HTTP API and the native protocol at
//! `/ws` like any other client. Every response carries the security headers below; the page's
//! Content-Security-Policy allows no inline script or style, so user content that ever slipped
//! into the DOM as markup still could not run.

use std::sync::LazyLock;

use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::{Filter, Rejection, Reply};

use crate::sha256::Sha256;

/// One embedded file.
struct Asset {
    /// The request path that serves it.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file of the web client. The page loads the others by these paths; the JavaScript
/// modules import each other relatively (`./api.js` is `/assets/api.js`). The service worker
/// is at the root, `/sw.js`, because a worker controls only the paths under its own: from
/// there its scope is the whole page without a `Service-Worker-Allowed` header.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../web/index.html"),
    },
    Asset {
        path: "/assets/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../web/style.css"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/app.js"),
    },
    Asset {
        path: "/assets/api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/api.js"),
    },
    Asset {
        path: "/assets/connection.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/connection.js"),
    },
    Asset {
        path: "/assets/chat.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/chat.js"),
    },
    Asset {
        path: "/assets/dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/dom.js"),
    },
    Asset {
        path: "/assets/markup.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/markup.js"),
    },
    Asset {
        path: "/assets/accounts.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/accounts.js"),
    },
    Asset {
        path: "/assets/push.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/push.js"),
    },
    Asset {
        path: "/sw.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/sw.js"),
    },
    Asset {
        path: "/assets/icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../web/icon.svg"),
    },
];

/// The page's policy: scripts, styles and images only from this server (no inline code, no
/// `eval`), network access only to this server over HTTP and WebSocket, not framable, no
/// plugins. `blob:` images are attachment previews the page fetched itself; `https:` images
/// are users' avatars (`avatar_url`), which the client loads with `referrerpolicy=no-referrer`
/// (no page address, no cookies of this server: another origin). `worker-src 'self'` is the
/// service worker `/sw.js` (Web Push notifications), and no other worker.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: https:; connect-src 'self' ws: wss:; font-src 'self'; \
     worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Strong validators, one per asset (a prefix of the SHA-256 of its content), computed once.
/// The files change only with the binary, and `Cache-Control: no-cache` makes the browser ask
/// every time: an upgrade is seen at the next load, and an unchanged file costs a 304.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.body);
            let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
        .collect()
});

/// The paths of the embedded files (for tests and the documentation).
pub fn asset_paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|asset| asset.path)
}

/// GET /, GET /sw.js, GET /assets/{name} — the web client's files (HEAD too). Other paths are left to the
/// other routes (and end as the JSON 404); another method on these paths is a 405.
pub fn web_get() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    // The path is matched before the method: a POST to an unknown path must stay a 404.
    warp::path::full()
        .and_then(|path: warp::path::FullPath| async move {
            ASSETS
                .iter()
                .position(|asset| asset.path == path.as_str())
                .ok_or_else(warp::reject::not_found)
        })
        .and(warp::method())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(
            |index: usize, method: Method, if_none_match: Option<String>| async move {
                if method != Method::GET && method != Method::HEAD {
                    return Err(warp::reject::custom(super::ApiError(
                        crate::error::Error::MethodNotAllowed,
                    )));
                }
                Ok::<_, Rejection>(asset_response(index, if_none_match.as_deref()))
            },
        )
}

fn asset_response(index: usize, if_none_match: Option<&str>) -> warp::reply::Response {
    let (Some(asset), Some(etag)) = (ASSETS.get(index), ETAGS.get(index)) else {
        return super::error_response(&crate::error::Error::NotFound("no such file".to_owned()));
    };
    let unchanged = if_none_match.is_some_and(|value| {
        value
            .split(',')
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == etag || tag == "*")
    });
    let mut response = if unchanged {
        let mut response = warp::reply::Response::new(Vec::new().into());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = warp::reply::Response::new(asset.body.into());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}
