//! The built-in web client's HTTP side: the page and its assets with their types and security
//! headers, revalidation, and that the API's 404 and the WebSocket endpoint are untouched by
//! it. The client itself is tested in a real browser by tests/browser (see .ci/run).

use serde_json::{Value, json};

use crate::common::{Response, TestServer, http};
use crate::wsclient::Ws;

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn body_text(response: &Response) -> String {
    match &response.json {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn assert_security_headers(response: &Response, path: &str) {
    let csp = header(response, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self' ws: wss:",
        "worker-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{path}: CSP {csp:?} lacks {directive}"
        );
    }
    assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
    assert_eq!(
        header(response, "x-content-type-options"),
        "nosniff",
        "{path}"
    );
    assert_eq!(header(response, "referrer-policy"), "no-referrer", "{path}");
    assert_eq!(header(response, "x-frame-options"), "DENY", "{path}");
    assert_eq!(header(response, "cache-control"), "no-cache", "{path}");
    assert!(header(response, "etag").starts_with('"'), "{path}: etag");
}

#[tokio::test]
async fn the_page_is_html_with_a_strict_policy() {
    let server = TestServer::start().await;
    let page = server.get("/", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_security_headers(&page, "/");
    let html = body_text(&page);
    assert!(html.starts_with("<!doctype html>"), "{html:.80}");
    assert!(
        html.contains(r#"<script type="module" src="/assets/app.js"></script>"#),
        "the page loads the client as a module"
    );
    // No inline script or style that the policy would block anyway.
    assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains(" style="));
    server.stop().await;
}

#[tokio::test]
async fn every_asset_is_served_with_its_type() {
    let server = TestServer::start().await;
    let paths: Vec<&str> = natter::http::asset_paths().collect();
    assert!(paths.len() >= 5, "{paths:?}");
    for path in &paths {
        let response = server.get(path, &[]).await;
        assert_eq!(response.status, 200, "{path}");
        let expected = match path.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            _ => "text/html; charset=utf-8",
        };
        assert_eq!(header(&response, "content-type"), expected, "{path}");
        assert_security_headers(&response, path);
        assert!(!body_text(&response).is_empty(), "{path} is empty");
    }
    // Every module a module imports, and every file the page links, is one of them.
    let page = body_text(&server.get("/", &[]).await);
    let mut wanted: Vec<String> = Vec::new();
    for piece in page.split(['"', '\'']) {
        if piece.starts_with("/assets/") {
            wanted.push(piece.to_owned());
        }
    }
    for path in paths.iter().filter(|p| p.ends_with(".js")) {
        let source = body_text(&server.get(path, &[]).await);
        for line in source.lines() {
            if let Some(rest) = line.trim().strip_prefix("import ")
                && let Some((_, from)) = rest.rsplit_once(" from ")
            {
                let module = from.trim_matches(|c| c == '\'' || c == '"' || c == ';');
                let module = module.strip_prefix("./").expect("relative import");
                wanted.push(format!("/assets/{module}"));
            }
        }
    }
    assert!(wanted.iter().any(|w| w == "/assets/chat.js"), "{wanted:?}");
    for path in &wanted {
        assert!(
            paths.contains(&path.as_str()),
            "{path} is referenced but not served"
        );
    }
    server.stop().await;
}

/// The service worker is served at the root (so that its scope is the whole client without a
/// `Service-Worker-Allowed` header) as JavaScript, and handles push and notification clicks.
#[tokio::test]
async fn the_service_worker_is_served_at_the_root() {
    let server = TestServer::start().await;
    assert!(natter::http::asset_paths().any(|path| path == "/sw.js"));
    let worker = server.get("/sw.js", &[]).await;
    assert_eq!(worker.status, 200);
    assert_eq!(
        header(&worker, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_security_headers(&worker, "/sw.js");
    let source = body_text(&worker);
    for handler in ["'push'", "'notificationclick'", "showNotification"] {
        assert!(source.contains(handler), "sw.js lacks {handler}");
    }
    let app = body_text(&server.get("/assets/push.js", &[]).await);
    assert!(
        app.contains("register('/sw.js', { scope: '/' })"),
        "the page registers it"
    );
    server.stop().await;
}

#[tokio::test]
async fn unchanged_assets_revalidate_with_304() {
    let server = TestServer::start().await;
    let first = server.get("/assets/app.js", &[]).await;
    let etag = header(&first, "etag").to_owned();
    let again = server
        .get("/assets/app.js", &[("if-none-match", &etag)])
        .await;
    assert_eq!(again.status, 304);
    assert_eq!(header(&again, "etag"), etag);
    assert_eq!(again.json, Value::Null, "a 304 has no body");
    let other = server
        .get("/assets/style.css", &[("if-none-match", &etag)])
        .await;
    assert_eq!(other.status, 200, "another file's tag does not match");
    let head = http(server.addr, "HEAD", "/", &[], Vec::new()).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.json, Value::Null, "HEAD has no body");
    server.stop().await;
}

#[tokio::test]
async fn the_api_and_websocket_routes_are_untouched() {
    let server = TestServer::start().await;
    for path in ["/nope", "/assets/nope.js", "/assets", "/index.html"] {
        let response = server.get(path, &[]).await;
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(
            response.json["code"], "not_found",
            "{path}: {:?}",
            response.json
        );
    }
    let posted = server.post_json("/", &json!({})).await;
    assert_eq!(posted.status, 405, "{:?}", posted.json);
    assert_eq!(posted.json["code"], "method_not_allowed");
    let posted = server.post_json("/nope", &json!({})).await;
    assert_eq!(
        posted.status, 404,
        "an unknown path stays a 404 for any method"
    );
    // /ws is still the WebSocket endpoint (a plain GET is told to upgrade), and works.
    let plain = server.get("/ws", &[]).await;
    assert_eq!(plain.status, 426, "{:?}", plain.json);
    let tokens = server.admin_tokens().await;
    let ws = Ws::connect(server.addr, tokens["access"].as_str().expect("access")).await;
    assert_eq!(ws.welcome["user"]["username"], "admin");
    drop(ws);
    server.stop().await;
}
