//! What a client written only from a protocol document meets: the frames are the documents'
//! own, literally, and every id a client compares is one it learned the way that client would,
//! from its login answer (the access token's claims) or `GET /api/v1/me`. One test per place
//! where such a client used to trip: ids, live `user_joined`/`user_left`, notification URLs,
//! the documented binary frames, CORS and the login cookie, token expiry, rate limits, and the
//! smaller differences the sentence-by-sentence review found.

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Response, Team, http, jwt_claims, login};
use crate::wsclient::{Ws, raw_connect};

const TEAM: &[(&str, &str)] = &[("boss", "admin"), ("alice", "user"), ("bob", "user")];

/// What a client knows of itself: its login answer's access token and `GET /api/v1/me`.
struct Own {
    token: String,
    /// The token's `sub` and `/me`'s `id` (a UUID string).
    id: String,
    /// The token's `user_id` claim and `/me`'s `user_id` (a number).
    user_id: u64,
}

/// Logs in as `name` and asks who it is, as a client does; the two answers must agree.
async fn own(t: &Team, name: &str) -> Own {
    let answer = login(t.addr(), name, &Team::password(name)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    let token = answer.json["access"].as_str().expect("access").to_owned();
    let claims = jwt_claims(&token);
    let me = t.server.api("GET", "/api/v1/me", Some(&token), None).await;
    assert_eq!(me.status, 200, "{:?}", me.json);
    assert_eq!(me.json["id"], claims["sub"], "{:?} vs {claims}", me.json);
    assert_eq!(
        me.json["user_id"], claims["user_id"],
        "{:?} vs {claims}",
        me.json
    );
    Own {
        token,
        id: me.json["id"].as_str().expect("id").to_owned(),
        user_id: me.json["user_id"].as_u64().expect("user_id is a number"),
    }
}

/// The rooms protocol's ping and its pong: every frame sent before has been handled, and
/// every event queued for the connection before has been written.
async fn rooms_sync(ws: &mut Ws) {
    ws.send(json!({ "type": "ping" })).await;
    let pong = ws.recv().await;
    assert_eq!(pong["type"], "pong", "{pong}");
}

/// A rooms connection, as the document's client opens it, and its welcome event.
async fn rooms_welcomed(t: &Team, token: &str) -> (Ws, Value) {
    let mut ws = Ws::open(t.addr(), &format!("/api/v1/ws/connect?token={token}")).await;
    let welcome = ws.recv().await;
    assert_eq!(welcome["type"], "connected", "{welcome}");
    (ws, welcome)
}

async fn rooms(t: &Team, token: &str) -> Ws {
    rooms_welcomed(t, token).await.0
}

async fn rooms_join(ws: &mut Ws, room: &str) {
    ws.send(json!({ "type": "join_room", "room": room })).await;
    rooms_sync(ws).await;
}

/// A Kibray connection, set up: Kibray has no welcome, so a frame of no known type is sent and
/// its error awaited (it comes after the set-up).
async fn kibray(t: &Team, path: &str, token: &str) -> Ws {
    let mut ws = Ws::open(t.addr(), &format!("{path}?token={token}")).await;
    kibray_sync(&mut ws).await;
    ws
}

async fn kibray_sync(ws: &mut Ws) {
    ws.send(json!({"type": "sync"})).await;
    let reply = ws.recv_type("error").await;
    assert_eq!(reply["code"], "INVALID_MESSAGE", "{reply}");
}

fn fc(kind: &str, data: Value) -> Value {
    json!({"type": kind, "data": data})
}

// ----- 1. one account, one id --------------------------------------------------------------

#[tokio::test]
async fn every_dialect_shows_the_ids_the_login_answer_and_me_give() {
    // alice keeps a connection of each protocol open at once.
    let t = Team::start_with(TEAM, |c| c.ws.max_connections_per_user = 10).await;
    let alice = own(&t, "alice").await;
    let bob = own(&t, "bob").await;
    t.create_room("boss", "channel:456", "public").await;
    t.create_room("boss", "general", "public").await;
    t.create_room("alice", "alice/math", "public").await;

    // Rooms (integers): the welcome's user_id, a message's author_id.
    let (mut ws, welcome) = rooms_welcomed(&t, &alice.token).await;
    assert_eq!(welcome["data"]["user_id"], alice.user_id, "{welcome}");
    rooms_join(&mut ws, "channel:456").await;
    ws.send(json!({ "type": "send_message", "room":"channel:456", "data": {"content":"Hello"} }))
        .await;
    let message = ws.recv_type("message").await;
    assert_eq!(message["data"]["author_id"], alice.user_id, "{message}");

    // Kibray (integers): author.id, and user_status.user_id on another tab's status socket.
    let mut chat = kibray(&t, "/ws/chat/general/", &alice.token).await;
    chat.send(json!({"type": "chat_message", "message": "Hello everyone!", "channel_id": 123}))
        .await;
    let own_message = chat.recv_type("chat_message").await;
    assert_eq!(
        own_message["message"]["author"]["id"], alice.user_id,
        "{own_message}"
    );
    let mut tab1 = kibray(&t, "/ws/status/", &alice.token).await;
    let mut tab2 = kibray(&t, "/ws/status/", &alice.token).await;
    tab1.send(json!({"type": "status_update", "status": "away"}))
        .await;
    let status = tab2
        .recv_where("alice's own user_status away", |f| {
            f["type"] == "user_status" && f["status"] == "away"
        })
        .await;
    assert_eq!(status["user_id"], alice.user_id, "{status}");

    // EduSphere (UUID strings): user_id of a new message.
    let mut edu = Ws::open(
        t.addr(),
        &format!("/ws/chat/alice/math/?token={}", alice.token),
    )
    .await;
    edu.send(json!({"type": "text", "message": "Hello", "timestamp": "2024-01-01T12:00:00.000Z"}))
        .await;
    let new = edu.recv().await;
    assert_eq!(new["action"], "new", "{new}");
    assert_eq!(new["user_id"], alice.id.as_str());

    // FastChat (UUID strings): HELLO_ACK, the PRESENCE list, and MSG's to.
    let mut fa = Ws::connect(t.addr(), &alice.token).await;
    fa.send(fc(
        "HELLO",
        json!({"user_id": alice.id, "display_name": "Alice"}),
    ))
    .await;
    let ack = fa.recv_type("HELLO_ACK").await;
    assert_eq!(ack["data"]["user_id"], alice.id.as_str());
    let presence = fa.recv_type("PRESENCE").await;
    let users = presence["data"]["users"].as_array().expect("users");
    assert!(
        users.iter().any(|u| u["user_id"] == alice.id.as_str()),
        "{presence}"
    );
    let mut fb = Ws::connect(t.addr(), &bob.token).await;
    fb.send(fc(
        "HELLO",
        json!({"user_id": bob.id, "display_name": "Bob"}),
    ))
    .await;
    fb.recv_type("HELLO_ACK").await;
    fb.send(fc(
        "OPEN_CHAT",
        json!({"target_user_id": alice.id, "target_display_name": "Alice"}),
    ))
    .await;
    fb.recv_type("CHAT_OPENED").await;
    fb.send(fc(
        "MSG",
        json!({"to": alice.id, "content": "Message content"}),
    ))
    .await;
    let msg = fa.recv_type("MSG").await;
    assert_eq!(msg["data"]["to"], alice.id.as_str());
    assert_eq!(msg["data"]["from"], bob.id.as_str());

    // Native (UUID strings): author_id, and Presence on a second connection.
    let mut n1 = Ws::connect(t.addr(), &alice.token).await;
    let mut n2 = Ws::connect(t.addr(), &alice.token).await;
    n1.request("Join", json!({"room": "general"}), "j").await;
    n2.request("Join", json!({"room": "general"}), "j").await;
    n1.request("Send", json!({"room": "general", "content": "hi"}), "s")
        .await;
    let message = n2.recv_type("Message").await;
    assert_eq!(message["data"]["author_id"], alice.id.as_str());
    n1.request("SetStatus", json!({"status": "busy"}), "st")
        .await;
    let presence = n2
        .recv_where("alice's own Presence busy", |f| {
            f["type"] == "Presence" && f["data"]["status"] == "busy"
        })
        .await;
    assert_eq!(presence["data"]["user_id"], alice.id.as_str());

    // The member listing carries both.
    let room = t
        .server
        .api("GET", "/api/v1/rooms/general", Some(&alice.token), None)
        .await;
    let members = room.json["member_users"].as_array().expect("member_users");
    let listed = members
        .iter()
        .find(|m| m["username"] == "alice")
        .expect("alice listed");
    assert_eq!(listed["id"], alice.id.as_str());
    assert_eq!(listed["user_id"], alice.user_id);
    t.server.stop().await;
}

// ----- 2. rooms: user_joined / user_left are live ------------------------------------------

fn assert_presence_event(event: &Value, kind: &str, room: &str, who: &str, user_id: u64) {
    let mut keys: Vec<&str> = event
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["data", "room", "sender", "timestamp", "type"],
        "{event}"
    );
    assert_eq!(event["type"], kind, "{event}");
    assert_eq!(event["room"], room, "{event}");
    assert_eq!(event["data"]["username"], who, "{event}");
    assert_eq!(event["data"]["user_id"], user_id, "{event}");
    assert!(event["sender"].is_string(), "{event}");
}

#[tokio::test]
async fn rooms_user_joined_and_user_left_follow_connections_in_and_out() {
    let t = Team::start(TEAM).await;
    let alice = own(&t, "alice").await;
    let bob = own(&t, "bob").await;
    t.create_room("boss", "channel:456", "public").await;
    let mut a = rooms(&t, &alice.token).await;
    rooms_join(&mut a, "channel:456").await;

    // bob's first connection into the room: alice is told; bob is not told of himself.
    let mut b1 = rooms(&t, &bob.token).await;
    rooms_join(&mut b1, "channel:456").await;
    let event = a.recv().await;
    assert_presence_event(&event, "user_joined", "channel:456", "bob", bob.user_id);

    // His second connection joins, and his first leaves: he is still in the room.
    let mut b2 = rooms(&t, &bob.token).await;
    rooms_join(&mut b2, "channel:456").await;
    b1.send(json!({ "type": "leave_room", "room": "channel:456" }))
        .await;
    rooms_sync(&mut b1).await;
    rooms_sync(&mut a).await;

    // His last connection goes away without a word: user_left.
    drop(b2);
    let event = a.recv().await;
    assert_presence_event(&event, "user_left", "channel:456", "bob", bob.user_id);

    // Back in with leave_room as the way out.
    rooms_join(&mut b1, "channel:456").await;
    let event = a.recv().await;
    assert_presence_event(&event, "user_joined", "channel:456", "bob", bob.user_id);
    b1.send(json!({ "type": "leave_room", "room": "channel:456" }))
        .await;
    let event = a.recv().await;
    assert_presence_event(&event, "user_left", "channel:456", "bob", bob.user_id);

    // A private room: bob is removed from it while connected; alice sees him leave.
    t.create_room("boss", "project:123", "private").await;
    t.add_member("boss", "project:123", "alice").await;
    t.add_member("boss", "project:123", "bob").await;
    rooms_join(&mut a, "project:123").await;
    rooms_join(&mut b1, "project:123").await;
    let event = a.recv().await;
    assert_presence_event(&event, "user_joined", "project:123", "bob", bob.user_id);
    let removed = t
        .delete("boss", "/api/v1/rooms/project:123/members/bob")
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.json);
    let event = a.recv().await;
    assert_presence_event(&event, "user_left", "project:123", "bob", bob.user_id);
    t.server.stop().await;
}

// ----- 3. notification URLs ----------------------------------------------------------------

#[tokio::test]
async fn notifications_take_the_documents_relative_urls_and_refuse_other_schemes() {
    let t = Team::start(TEAM).await;
    let alice = own(&t, "alice").await;
    let mut inbox = kibray(&t, "/ws/notifications/", &alice.token).await;
    let notify = |url: &str| {
        json!({"username": "alice", "title": "New Message", "message": "You have a new message",
               "category": "chat", "url": url})
    };
    for url in [
        "/chat/123",
        "/tasks/123",
        "https://status.example.com/x?y=1",
    ] {
        let sent = t.post("boss", "/api/v1/notifications", notify(url)).await;
        assert_eq!(sent.status, 201, "{url}: {:?}", sent.json);
        let frame = inbox.recv_type("notification").await;
        assert_eq!(frame["notification"]["url"], url, "{frame}");
    }
    for url in [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<b>x</b>",
        "//evil.example/x",
        "/chat/\n123",
        "chat/123",
        "ftp://example.com/x",
    ] {
        let refused = t.post("boss", "/api/v1/notifications", notify(url)).await;
        assert_eq!(refused.status, 400, "{url:?}: {:?}", refused.json);
        assert!(refused.json["error"].is_string(), "{:?}", refused.json);
        assert_eq!(refused.json["code"], "bad_request", "{:?}", refused.json);
        // The same rule for an action's link.
        let mut with_action = notify("/chat/123");
        with_action["actions"] = json!([{"label": "Learn More", "url": url}]);
        let refused = t.post("boss", "/api/v1/notifications", with_action).await;
        assert_eq!(refused.status, 400, "action {url:?}: {:?}", refused.json);
    }
    let mut with_action = notify("/chat/123");
    with_action["actions"] = json!([{"label": "Learn More", "url": "https://status.example.com"}]);
    let sent = t.post("boss", "/api/v1/notifications", with_action).await;
    assert_eq!(sent.status, 201, "{:?}", sent.json);
    t.server.stop().await;
}

// ----- 4. binary frames as documented ------------------------------------------------------

/// `[1 byte: message type][4 bytes: payload length][N bytes: payload]`.
fn binary(kind: u8, payload: &[u8]) -> Message {
    let mut frame = vec![kind];
    frame.extend_from_slice(&u32::try_from(payload.len()).expect("short").to_be_bytes());
    frame.extend_from_slice(payload);
    Message::binary(frame)
}

#[tokio::test]
async fn documented_binary_frames_are_acknowledged_and_file_transfers_kept() {
    let t = Team::start(TEAM).await;
    let alice = own(&t, "alice").await;
    let bob = own(&t, "bob").await;
    let mut ws = Ws::connect(t.addr(), &alice.token).await;
    for (kind, name) in [
        (0x01, "broadcast"),
        (0x02, "direct_message"),
        (0x04, "stream_data"),
    ] {
        let payload = format!("{name} payload").into_bytes();
        ws.send_raw(binary(kind, &payload)).await;
        let status = ws.recv_type("Status").await;
        assert_eq!(status["data"]["status"], "binary_received", "{status}");
        let details = &status["data"]["details"];
        assert_eq!(details["size"], payload.len(), "{status}");
        assert_eq!(details["type"], name, "{status}");
        assert_eq!(
            details["checksum"],
            format!("sha256:{:x}", Sha256::digest(&payload)),
            "{status}"
        );
        assert!(details.get("file_id").is_none(), "{status}");
    }

    // A file transfer is kept; its id (beyond the document) fetches it.
    let content = b"hello, file transfer";
    ws.send_raw(binary(0x03, content)).await;
    let status = ws.recv_type("Status").await;
    let details = &status["data"]["details"];
    assert_eq!(details["type"], "file_transfer", "{status}");
    assert_eq!(details["size"], content.len());
    let file_id = details["file_id"].as_u64().expect("file_id");
    let url = format!("/api/v1/files/{file_id}");
    let fetched = t.server.api("GET", &url, Some(&alice.token), None).await;
    assert_eq!(fetched.status, 200, "{:?}", fetched.json);
    assert_eq!(fetched.json, json!("hello, file transfer"));
    // Nobody else's until it is attached.
    let hidden = t.server.api("GET", &url, Some(&bob.token), None).await;
    assert_eq!(hidden.status, 404, "{:?}", hidden.json);

    // Attached to a message in a room bob reads: then it is his to fetch too.
    t.create_room("alice", "general", "public").await;
    ws.request("Join", json!({"room": "general"}), "j").await;
    let ack = ws
        .request(
            "Send",
            json!({"room": "general", "content": "the file", "attachments": [file_id]}),
            "s",
        )
        .await;
    assert_eq!(ack["type"], "Ack", "{ack}");
    let history = t.get("bob", "/api/v1/rooms/general/messages").await;
    let messages = history.json["messages"].as_array().expect("messages");
    assert_eq!(messages[0]["attachments"][0]["id"], file_id, "{history:?}");
    assert_eq!(messages[0]["attachments"][0]["url"], url.as_str());
    let fetched = t.server.api("GET", &url, Some(&bob.token), None).await;
    assert_eq!(fetched.status, 200, "{:?}", fetched.json);

    // A length that does not match the payload is an error, and the connection stays.
    ws.send_raw(Message::binary(vec![0x01, 0, 0, 0, 9, b'a']))
        .await;
    let error = ws.recv_type("Error").await;
    assert_eq!(error["data"]["code"], 400, "{error}");
    assert!(error["data"]["details"].is_object(), "{error}");
    let pong = ws.request("Ping", json!({}), "p").await;
    assert_eq!(pong["type"], "Pong", "{pong}");
    t.server.stop().await;
}

// ----- 5. browser apps on their own origin: CORS and the login cookie ----------------------

const APP: &str = "http://127.0.0.1:5173";

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn cors_answers_the_allowed_origins_only() {
    let t = Team::start_with(TEAM, |c| c.ws.allowed_origins = vec![APP.to_owned()]).await;
    let preflight = |origin: &'static str, path: &'static str| {
        let addr = t.addr();
        async move {
            http(
                addr,
                "OPTIONS",
                path,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "content-type"),
                ],
                Vec::new(),
            )
            .await
        }
    };
    let answer = preflight(APP, "/api/token/").await;
    assert_eq!(answer.status, 204);
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(APP));
    assert_eq!(
        header(&answer, "access-control-allow-credentials"),
        Some("true")
    );
    assert!(
        header(&answer, "access-control-allow-headers").is_some_and(|h| h.contains("content-type"))
    );
    assert!(header(&answer, "access-control-allow-methods").is_some_and(|h| h.contains("POST")));
    // Bearer-token routes: allowed, without credentials.
    let answer = preflight(APP, "/api/v1/rooms").await;
    assert_eq!(answer.status, 204);
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&answer, "access-control-allow-credentials"), None);
    // Another origin gets no CORS answer at all.
    let refused = preflight("http://evil.example", "/api/token/").await;
    assert_ne!(refused.status, 204);
    assert_eq!(header(&refused, "access-control-allow-origin"), None);

    // The login itself, from the app's origin: the answer is readable there and sets the
    // cookie (the document's login body, nothing more).
    let body = json!({"username": "alice", "password": Team::password("alice")});
    let answer = http(
        t.addr(),
        "POST",
        "/api/token/",
        &[("origin", APP), ("content-type", "application/json")],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(APP));
    assert_eq!(
        header(&answer, "access-control-allow-credentials"),
        Some("true")
    );
    assert!(
        answer
            .headers
            .get_all("vary")
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("Origin")))
    );
    let answer = http(
        t.addr(),
        "POST",
        "/api/token/",
        &[
            ("origin", "http://evil.example"),
            ("content-type", "application/json"),
        ],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
    t.server.stop().await;
}

fn cookie_value(response: &Response) -> Option<String> {
    let set = header(response, "set-cookie")?;
    let pair = set.split(';').next()?;
    pair.strip_prefix("natter_access=").map(str::to_owned)
}

#[tokio::test]
async fn login_and_refresh_set_the_cookie_a_page_then_connects_and_downloads_with() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "alice/math", "public").await;

    // The document's login body: the cookie comes with it, HttpOnly and SameSite=Strict.
    let answer = login(t.addr(), "alice", &Team::password("alice")).await;
    let set = header(&answer, "set-cookie")
        .expect("Set-Cookie")
        .to_owned();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    let cookie = cookie_value(&answer).expect("natter_access");
    assert_eq!(cookie, answer.json["access"].as_str().expect("access"));

    // Refresh renews it.
    let refresh = answer.json["refresh"].as_str().expect("refresh");
    let renewed = http(
        t.addr(),
        "POST",
        "/api/token/refresh/",
        &[("content-type", "application/json")],
        json!({"refresh": refresh}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(renewed.status, 200, "{:?}", renewed.json);
    let cookie = cookie_value(&renewed).expect("a renewed cookie");
    assert_eq!(cookie, renewed.json["access"].as_str().expect("access"));

    // "cookie": false opts out.
    let quiet = http(
        t.addr(),
        "POST",
        "/api/token/",
        &[("content-type", "application/json")],
        json!({"username": "alice", "password": Team::password("alice"), "cookie": false})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(quiet.status, 200);
    assert_eq!(header(&quiet, "set-cookie"), None);

    // EduSphere's page: `ws://…/ws/chat/${userSlug}/${roomSlug}`, no token, the cookie only.
    let cookie_header = format!("natter_access={cookie}");
    let socket = raw_connect(
        t.addr(),
        "/ws/chat/alice/math",
        &[("cookie", cookie_header.as_str())],
    )
    .await;
    let mut edu = Ws {
        socket,
        welcome: Value::Null,
    };
    edu.send(json!({"type": "text", "message": "Hello", "timestamp": "2024-01-01T12:00:00.000Z"}))
        .await;
    let new = edu.recv().await;
    assert_eq!(new["action"], "new", "{new}");
    assert_eq!(new["user"], "alice");

    // A Kibray attachment's url, as an <img> or link fetches it: the cookie, no header.
    t.create_room("alice", "files", "public").await;
    let mut chat = kibray(&t, "/ws/chat/files/", &cookie).await;
    chat.send(json!({"type": "upload_file", "file_name": "a.txt", "file_size": 2, "file_type": "text/plain"}))
        .await;
    let started = chat.recv_type("upload_started").await;
    use base64::Engine as _;
    chat.send(
        json!({"type": "upload_chunk", "upload_id": started["upload_id"], "chunk_index": 0,
                     "chunk_data": base64::engine::general_purpose::STANDARD.encode(b"ok")}),
    )
    .await;
    let message = chat.recv_type("chat_message").await;
    let url = message["message"]["attachments"][0]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let fetched = http(
        t.addr(),
        "GET",
        &url,
        &[("cookie", cookie_header.as_str())],
        Vec::new(),
    )
    .await;
    assert_eq!(fetched.status, 200, "{:?}", fetched.json);
    assert_eq!(fetched.json, json!("ok"));
    let anonymous = http(t.addr(), "GET", &url, &[], Vec::new()).await;
    assert_eq!(anonymous.status, 401);
    t.server.stop().await;
}

// ----- the sentence-by-sentence review ------------------------------------------------------

/// Only the native protocol, which has `AuthStatus` and `Authenticate`, closes a connection at
/// token expiry; the other documents check the token at connect and keep the connection.
#[tokio::test]
async fn only_the_native_protocol_closes_at_token_expiry() {
    let t = Team::start_with(TEAM, |c| {
        c.auth.access_token_ttl_secs = 2;
        c.ws.expiry_warning_secs = 1;
        c.ws.expiry_grace_secs = 0;
    })
    .await;
    t.create_room("boss", "channel:456", "public").await;
    t.create_room("boss", "general", "public").await;
    let alice = own(&t, "alice").await;
    let mut room = rooms(&t, &alice.token).await;
    rooms_join(&mut room, "channel:456").await;
    let mut chat = kibray(&t, "/ws/chat/general/", &alice.token).await;
    let mut native = Ws::connect(t.addr(), &alice.token).await;
    let (frames, code) = native.frames_until_close().await;
    assert_eq!(code, 4401, "{frames:?}");
    // The native connection opened after the others and has closed at expiry: theirs have
    // expired too, and they still answer.
    rooms_sync(&mut room).await;
    room.send(
        json!({ "type": "send_message", "room":"channel:456", "data": {"content":"still here"} }),
    )
    .await;
    assert_eq!(
        room.recv_type("message").await["data"]["content"],
        "still here"
    );
    chat.send(json!({"type": "chat_message", "message": "still here", "channel_id": 1}))
        .await;
    assert_eq!(
        chat.recv_type("chat_message").await["message"]["content"],
        "still here"
    );
    t.server.stop().await;
}

/// Kibray's own client sends `typing` up to once a second: that does not use up the 60
/// messages a minute.
#[tokio::test]
async fn kibray_typing_does_not_use_up_the_message_rate() {
    let t = Team::start(TEAM).await;
    t.create_room("boss", "general", "public").await;
    let alice = own(&t, "alice").await;
    let mut chat = kibray(&t, "/ws/chat/general/", &alice.token).await;
    for _ in 0..61 {
        chat.send(json!({"type": "typing", "channel_id": 1, "is_typing": true}))
            .await;
    }
    chat.send(json!({"type": "chat_message", "message": "typed for a minute", "channel_id": 1}))
        .await;
    let message = chat
        .recv_until("the chat_message (or an error)", |f| {
            (f["type"] == "chat_message" || f["type"] == "error").then(|| f.clone())
        })
        .await;
    assert_eq!(message["type"], "chat_message", "{message}");
    t.server.stop().await;
}

/// Kibray's chat path takes a room name or, when no room has that name, a room number: then
/// the path's number and every frame's channel_id agree.
#[tokio::test]
async fn kibray_chat_path_by_number_matches_channel_id() {
    let t = Team::start(TEAM).await;
    t.create_room("boss", "general", "public").await;
    let room_id = t.create_room("boss", "random", "public").await;
    let alice = own(&t, "alice").await;
    let mut chat = kibray(&t, &format!("/ws/chat/{room_id}/"), &alice.token).await;
    chat.send(json!({"type": "chat_message", "message": "Hello everyone!", "channel_id": room_id}))
        .await;
    let message = chat.recv_type("chat_message").await;
    assert_eq!(message["message"]["channel_id"], room_id, "{message}");
    let history = t.get("alice", "/api/v1/rooms/random/messages").await;
    assert_eq!(
        history.json["messages"][0]["content"], "Hello everyone!",
        "{history:?}"
    );
    t.server.stop().await;
}

/// The document's upload_chunk carries `"upload_id": "abc123"`, and upload_file shows no
/// reply: a client that picks its own upload_id works.
#[tokio::test]
async fn kibray_upload_with_the_clients_own_upload_id() {
    use base64::Engine as _;
    let t = Team::start(TEAM).await;
    t.create_room("boss", "general", "public").await;
    let alice = own(&t, "alice").await;
    let mut chat = kibray(&t, "/ws/chat/general/", &alice.token).await;
    chat.send(
        json!({"type": "upload_file", "upload_id": "abc123", "file_name": "document.txt",
                     "file_size": 5, "file_type": "text/plain", "channel_id": 1}),
    )
    .await;
    let started = chat.recv_type("upload_started").await;
    assert_eq!(started["upload_id"], "abc123", "{started}");
    chat.send(
        json!({"type": "upload_chunk", "upload_id": "abc123", "chunk_index": 0,
                     "chunk_data": base64::engine::general_purpose::STANDARD.encode(b"hello")}),
    )
    .await;
    let message = chat.recv_type("chat_message").await;
    assert_eq!(
        message["message"]["attachments"][0]["file_name"],
        "document.txt"
    );
    // An id outside the documented alphabet is refused.
    chat.send(
        json!({"type": "upload_file", "upload_id": "a b", "file_name": "x.txt",
                     "file_size": 1, "file_type": "text/plain"}),
    )
    .await;
    assert_eq!(chat.recv_type("error").await["code"], "INVALID_MESSAGE");
    t.server.stop().await;
}

/// FastChat's PING is answered before HELLO; a token's HELLO with a made-up UUID (FastChat's
/// client makes one up) is acknowledged with the account's id.
#[tokio::test]
async fn fastchat_ping_before_hello_and_a_made_up_user_id() {
    let t = Team::start_with(TEAM, |c| c.fastchat.guests = true).await;
    let alice = own(&t, "alice").await;

    // With a token: PING first, then HELLO with the client's own UUID v4.
    let mut ws = Ws::connect(t.addr(), &alice.token).await;
    ws.send(fc("PING", json!({}))).await;
    let pong = ws.recv().await;
    assert_eq!(pong["type"], "PONG", "{pong}");
    assert!(pong["data"]["timestamp"].is_string(), "{pong}");
    let made_up = "0b6f3c2e-5d4a-4e8f-9a71-3c2d1e0f4b5a";
    ws.send(fc(
        "HELLO",
        json!({"user_id": made_up, "display_name": "Alice"}),
    ))
    .await;
    let ack = ws.recv().await;
    assert_eq!(
        ack,
        fc(
            "HELLO_ACK",
            json!({"user_id": alice.id, "status": "connected"})
        )
    );

    // A guest: PING and a frame before HELLO, then HELLO.
    let mut guest = Ws::open(t.addr(), "/ws").await;
    guest.send(fc("PING", json!({}))).await;
    assert_eq!(guest.recv().await["type"], "PONG");
    guest
        .send(fc(
            "MSG",
            json!({"to": alice.id, "content": "Message content"}),
        ))
        .await;
    let refused = guest.recv().await;
    assert_eq!(refused["type"], "ERROR", "{refused}");
    assert_eq!(refused["data"]["code"], "UNAUTHORIZED", "{refused}");
    guest
        .send(fc(
            "HELLO",
            json!({"user_id": made_up, "display_name": "Guest User"}),
        ))
        .await;
    let ack = guest.recv().await;
    assert_eq!(ack["type"], "HELLO_ACK", "{ack}");
    assert_eq!(ack["data"]["user_id"], made_up);
    t.server.stop().await;
}

/// The native document's error shape always has `details`; the rooms document's envelope
/// always has a string `sender`.
#[tokio::test]
async fn native_errors_carry_details_and_rooms_senders_are_strings() {
    let t = Team::start(TEAM).await;
    t.create_room("boss", "channel:456", "public").await;
    let alice = own(&t, "alice").await;
    let mut native = Ws::connect(t.addr(), &alice.token).await;
    for frame in [
        json!({"type": "Nope", "data": {}, "id": "x1"}),
        json!({"type": "Send", "data": {"room": "nowhere", "content": "x"}, "id": "x2"}),
        json!({"type": "Subscribe", "data": {}, "id": "x3"}),
    ] {
        native.send(frame.clone()).await;
        let error = native.recv_type("Error").await;
        assert!(error["data"]["details"].is_object(), "{frame} -> {error}");
        assert!(error["data"]["message"].is_string(), "{error}");
    }

    let mut room = rooms(&t, &alice.token).await;
    rooms_join(&mut room, "channel:456").await;
    native
        .request("Join", json!({"room": "channel:456"}), "j")
        .await;
    let ack = native
        .request("Send", json!({"room": "channel:456", "content": "hi"}), "s")
        .await;
    let seq = ack["data"]["seq"].as_u64().expect("seq");
    native
        .request(
            "Edit",
            json!({"room": "channel:456", "seq": seq, "content": "hello"}),
            "e",
        )
        .await;
    native
        .request("Delete", json!({"room": "channel:456", "seq": seq}), "d")
        .await;
    for kind in ["message", "message.edited", "message.deleted"] {
        let event = room.recv_type(kind).await;
        assert!(event["sender"].is_string(), "{event}");
    }
    t.server.stop().await;
}

/// The rooms document's client queues messages while offline and flushes them on open; neither
/// it nor EduSphere's documents a rate limit: a minute's worth at once gets through.
#[tokio::test]
async fn a_flushed_offline_queue_gets_through_where_no_rate_is_documented() {
    let t = Team::start(TEAM).await;
    t.create_room("boss", "channel:456", "public").await;
    t.create_room("alice", "alice/math", "public").await;
    let alice = own(&t, "alice").await;
    let mut room = rooms(&t, &alice.token).await;
    rooms_join(&mut room, "channel:456").await;
    for i in 0..30 {
        room.send(json!({ "type": "send_message", "room":"channel:456", "data": {"content": format!("queued {i}")} }))
            .await;
    }
    for i in 0..30 {
        let event = room.recv().await;
        assert_eq!(event["type"], "message", "{event}");
        assert_eq!(event["data"]["content"], format!("queued {i}"));
    }
    let mut edu = Ws::open(
        t.addr(),
        &format!("/ws/chat/alice/math/?token={}", alice.token),
    )
    .await;
    for i in 0..30 {
        edu.send(json!({"type": "text", "message": format!("queued {i}"), "timestamp": "2024-01-01T12:00:00.000Z"}))
            .await;
    }
    for i in 0..30 {
        let new = edu.recv().await;
        assert_eq!(new["action"], "new", "{new}");
        assert_eq!(new["body"], format!("queued {i}"));
    }
    t.server.stop().await;
}

/// EduSphere's message ids are "UUID strings": they pass the usual validators (version and
/// variant bits), and name the message in update and delete.
#[tokio::test]
async fn edusphere_message_ids_are_valid_uuids() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "alice/math", "public").await;
    let alice = own(&t, "alice").await;
    let mut edu = Ws::open(
        t.addr(),
        &format!("/ws/chat/alice/math/?token={}", alice.token),
    )
    .await;
    edu.send(
        json!({"type": "text", "message": "Hello world!", "timestamp": "2024-01-01T12:00:00.000Z"}),
    )
    .await;
    let new = edu.recv().await;
    let id = new["id"].as_str().expect("id").to_owned();
    let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
    assert!(matches!(parsed.get_version_num(), 1..=8), "version of {id}");
    assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
    edu.send(json!({"type": "update", "messageId": id, "message": "Updated message content"}))
        .await;
    let update = edu.recv().await;
    assert_eq!(update["action"], "update", "{update}");
    assert_eq!(update["id"], id.as_str());
    edu.send(json!({"type": "delete", "messageId": id})).await;
    let delete = edu.recv().await;
    assert_eq!(delete["action"], "delete", "{delete}");
    t.server.stop().await;
}
