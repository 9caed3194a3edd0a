//! Resource bounds (issue 19, findings BUG-3, 4, 10, 15, 16 and 22), measured from outside on a
//! real server: the offline direct-message queue bounded in bytes and per sender and delivered
//! whole and in order, a page at a time; room creation rate-limited and capped, room listing
//! paged; rate limits per user over connections and HTTP; the notification inbox bounded with
//! its unread count right; guests bounded apart from accounts and unable to pass for one; the
//! replay of a Join bounded in bytes and Joins rate-limited.
//!
//! Rates are set to one token a minute where a test counts what a burst admits, so that no
//! refill (and no clock) enters the count.

use serde_json::{Value, json};

use crate::common::{Team, http};
use crate::wsclient::Ws;

/// A FastChat frame.
fn fc(kind: &str, data: Value) -> Value {
    json!({"type": kind, "data": data})
}

/// A header of a response, or "".
fn header<'a>(response: &'a crate::common::Response, name: &str) -> &'a str {
    response
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

// ----- BUG-3: the offline direct-message queue ----------------------------------------------

/// A DirectMessage request and its first answer (Error or Ack).
async fn direct(ws: &mut Ws, to: &str, payload: &Value, id: &str) -> Value {
    ws.request(
        "DirectMessage",
        json!({"target_user": to, "payload": payload}),
        id,
    )
    .await
}

#[tokio::test]
async fn offline_direct_messages_are_bounded_in_bytes_and_per_sender_and_arrive_whole_in_order() {
    // Two senders' worth fill bob's queue: each may hold 1 MiB of it, the queue 2 MiB.
    let t = Team::start_with(
        &[
            ("mallory", "user"),
            ("carol", "user"),
            ("alice", "user"),
            ("bob", "user"),
        ],
        |c| {
            c.ws.max_queued_direct_bytes = 2 * 1024 * 1024;
            c.ws.max_queued_direct_bytes_per_sender = 1024 * 1024;
        },
    )
    .await;
    // About 100 kB each: ten of them are one sender's share.
    let payload = json!({"blob": "x".repeat(100_000)});
    let mut sent = Vec::new();
    for sender in ["mallory", "carol"] {
        let mut ws = Ws::connect(t.addr(), t.token(sender)).await;
        for i in 0..10 {
            let id = format!("{sender}-{i}");
            let reply = direct(&mut ws, "bob", &payload, &id).await;
            assert_eq!(reply["type"], "Error", "{reply}");
            assert_eq!(reply["data"]["code"], 404, "{reply}");
            assert_eq!(
                reply["data"]["details"],
                json!({"message_id": id, "queued": true})
            );
            sent.push(id);
        }
        // Over this sender's share: refused, and said so in the protocol's shape.
        let refused = direct(&mut ws, "bob", &payload, &format!("{sender}-over")).await;
        assert_eq!(refused["type"], "Error", "{refused}");
        assert_eq!(refused["data"]["code"], 429, "{refused}");
        assert_eq!(
            refused["data"]["details"],
            json!({"message_id": format!("{sender}-over"), "queued": false})
        );
        assert!(
            refused["data"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("bob") && m.contains("one sender")),
            "{refused}"
        );
    }
    // The queue's 2 MiB are (all but 94 kB) taken: a third sender's 100 kB is refused.
    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let refused = direct(&mut alice, "bob", &payload, "alice-1").await;
    assert_eq!(refused["data"]["code"], 429, "{refused}");
    assert!(
        refused["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("full")),
        "{refused}"
    );

    // bob connects and reads nothing yet: his queue waits on his socket, and nobody else does.
    t.create_room("alice", "lobby", "public").await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let ack = alice
        .request(
            "Send",
            json!({"room": "lobby", "content": "not held up"}),
            "s1",
        )
        .await;
    assert_eq!(ack["type"], "Ack", "{ack}");
    assert_eq!(ack["data"]["status"], "stored", "{ack}");

    // Everything queued arrives, once, oldest first, each payload whole.
    let mut received = Vec::new();
    while received.len() < sent.len() {
        let frame = bob.recv_type("DirectMessage").await;
        assert_eq!(frame["data"]["payload"], payload, "payload intact");
        received.push(
            frame["data"]["metadata"]["message_id"]
                .as_str()
                .expect("message_id")
                .to_owned(),
        );
    }
    assert_eq!(received, sent);
    let pong = bob.request("Ping", json!({"timestamp": 1}), "p1").await;
    assert_eq!(pong["type"], "Pong", "nothing more was queued: {pong}");
    drop(bob);
    // Delivered means gone from the queue: the next connection gets none of it again.
    let mut again = Ws::connect(t.addr(), t.token("bob")).await;
    let pong = again.request("Ping", json!({"timestamp": 2}), "p2").await;
    assert_eq!(pong["type"], "Pong", "the queue was emptied: {pong}");
    t.server.stop().await;
}

// ----- BUG-4: room creation, room listing --------------------------------------------------

#[tokio::test]
async fn room_creation_is_rate_limited_and_capped_per_user_and_admins_are_exempt() {
    let t = Team::start_with(
        &[("boss", "admin"), ("alice", "user"), ("bob", "user")],
        |c| {
            c.limits.room_creations_per_minute = 1;
            c.limits.room_creation_burst = 5;
            c.limits.max_rooms_per_user = 4;
        },
    )
    .await;
    for i in 0..4 {
        t.create_room("alice", &format!("alice-{i}"), "public")
            .await;
    }
    // The cap: 403, nothing created.
    let capped = t
        .post("alice", "/api/v1/rooms", json!({"name": "alice-4"}))
        .await;
    assert_eq!(capped.status, 403, "{:?}", capped.json);
    assert_eq!(capped.json["code"], "forbidden");
    assert!(
        capped.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("limits.max_rooms_per_user")),
        "{:?}",
        capped.json
    );
    assert_eq!(t.get("alice", "/api/v1/rooms/alice-4").await.status, 404);
    // The rate: five creations were tried; the sixth is refused with when to come back.
    let limited = t
        .post("alice", "/api/v1/rooms", json!({"name": "alice-5"}))
        .await;
    assert_eq!(limited.status, 429, "{:?}", limited.json);
    assert_eq!(limited.json["code"], "rate_limited");
    assert!(
        header(&limited, "retry-after")
            .parse::<u64>()
            .is_ok_and(|s| s >= 1),
        "{:?}",
        limited.headers
    );
    // Direct rooms are not created by name and do not count.
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    let joined = ws.request("Join", json!({"room": "@bob"}), "j1").await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");
    // Others have their own quota; admins have none.
    t.create_room("bob", "bob-0", "public").await;
    for i in 0..8 {
        t.create_room("boss", &format!("boss-{i}"), "private").await;
    }
    t.server.stop().await;
}

/// Every room of `GET /api/v1/rooms` for `user`, following `next_cursor` `limit` at a time;
/// also returns how many pages it took.
async fn all_rooms(t: &Team, user: &str, limit: usize) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 1..=100 {
        let path = match &cursor {
            None => format!("/api/v1/rooms?limit={limit}"),
            Some(cursor) => format!("/api/v1/rooms?limit={limit}&cursor={cursor}"),
        };
        let response = t.get(user, &path).await;
        assert_eq!(response.status, 200, "{:?}", response.json);
        let rooms = response.json["rooms"].as_array().expect("rooms");
        assert!(rooms.len() <= limit, "{:?}", response.json);
        names.extend(
            rooms
                .iter()
                .map(|r| r["name"].as_str().expect("name").to_owned()),
        );
        match response.json["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(response.json["next_cursor"].is_null());
                return (names, page);
            }
        }
    }
    panic!("more than 100 pages");
}

#[tokio::test]
async fn room_listing_is_paged_and_shows_each_visible_room_once() {
    let t = Team::start(&[
        ("boss", "admin"),
        ("alice", "user"),
        ("bob", "user"),
        ("mallory", "user"),
    ])
    .await;
    let mut public = Vec::new();
    for i in 0..7 {
        let name = format!("spam-{i}");
        t.create_room("mallory", &name, "public").await;
        public.push(name);
    }
    t.create_room("mallory", "mallory-secret", "private").await;
    t.create_room("alice", "alice-secret", "private").await;
    t.add_member("alice", "alice-secret", "bob").await;
    t.create_room("bob", "bob-room", "public").await;

    // bob: the public rooms and the private one he is in, in id (creation) order, each once.
    let mut expected = public.clone();
    expected.push("alice-secret".to_owned());
    expected.push("bob-room".to_owned());
    let (listed, pages) = all_rooms(&t, "bob", 3).await;
    assert_eq!(listed, expected);
    assert_eq!(pages, 3);
    // The same in one page, and every room for an admin.
    assert_eq!(all_rooms(&t, "bob", 500).await, (expected.clone(), 1));
    let (everything, _) = all_rooms(&t, "boss", 4).await;
    assert_eq!(everything.len(), 10, "{everything:?}");
    assert!(everything.contains(&"mallory-secret".to_owned()));
    // A listed room says what the caller is to it.
    let first = t.get("bob", "/api/v1/rooms?limit=500").await;
    let secret = first.json["rooms"]
        .as_array()
        .and_then(|rooms| rooms.iter().find(|r| r["name"] == "alice-secret"))
        .expect("listed");
    assert_eq!(secret["member"], true);
    assert_eq!(secret["owner"], "alice");
    // /me carries the first page and the cursor of the next.
    let me = t.get("bob", "/api/v1/me?limit=2").await;
    assert_eq!(me.status, 200, "{:?}", me.json);
    assert_eq!(me.json["rooms"].as_array().map(Vec::len), Some(2));
    let next = me.json["rooms_next_cursor"].as_str().expect("a cursor");
    let rest = t
        .get("bob", &format!("/api/v1/rooms?limit=500&cursor={next}"))
        .await;
    assert_eq!(rest.json["rooms"].as_array().map(Vec::len), Some(7));
    // Bad paging parameters are 400s.
    for bad in ["limit=0", "limit=501", "cursor=abc", "limit=-1"] {
        let response = t.get("bob", &format!("/api/v1/rooms?{bad}")).await;
        assert_eq!(response.status, 400, "{bad}: {:?}", response.json);
        assert_eq!(response.json["code"], "bad_request");
    }
    t.server.stop().await;
}

// ----- BUG-10: per-user rate limits -------------------------------------------------------

#[tokio::test]
async fn http_posts_and_uploads_share_the_users_message_bucket_and_get_429_with_retry_after() {
    const BURST: usize = 5;
    let t = Team::start_with(&[("alice", "user"), ("bob", "user")], |c| {
        c.ws.messages_per_minute = 1;
        c.ws.message_burst = u32::try_from(BURST).expect("small");
    })
    .await;
    t.create_room("alice", "r", "public").await;
    let mut statuses = Vec::new();
    for i in 0..BURST + 3 {
        let response = t
            .post(
                "alice",
                "/api/v1/rooms/r/messages",
                json!({"content": format!("flood {i}")}),
            )
            .await;
        statuses.push(response.status);
        if response.status == 429 {
            assert_eq!(response.json["code"], "rate_limited", "{:?}", response.json);
            assert!(
                response.json["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("rate limit exceeded: 1 messages per minute")),
                "{:?}",
                response.json
            );
            assert!(
                header(&response, "retry-after")
                    .parse::<u64>()
                    .is_ok_and(|s| (1..=60).contains(&s)),
                "{:?}",
                response.headers
            );
        }
    }
    let mut expected = vec![201; BURST];
    expected.extend([429; 3]);
    assert_eq!(statuses, expected);
    // The same bucket as alice's WebSocket messages.
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    let refused = ws
        .request("Send", json!({"room": "r", "content": "ws too"}), "s1")
        .await;
    assert_eq!(refused["type"], "Error", "{refused}");
    assert_eq!(refused["data"]["code"], 429, "{refused}");
    // An upload counts as a message too; bob's bucket is his own.
    for i in 0..BURST {
        let response = t
            .post(
                "bob",
                "/api/v1/rooms/r/messages",
                json!({"content": format!("bob {i}")}),
            )
            .await;
        assert_eq!(response.status, 201, "{:?}", response.json);
    }
    let authorization = format!("Bearer {}", t.token("bob"));
    let upload = http(
        t.addr(),
        "POST",
        "/api/v1/rooms/r/files?name=a.txt",
        &[
            ("authorization", &authorization),
            ("content-type", "text/plain"),
        ],
        b"hello".to_vec(),
    )
    .await;
    assert_eq!(upload.status, 429, "{:?}", upload.json);
    t.server.stop().await;
}

#[tokio::test]
async fn reconnecting_does_not_refill_the_message_burst() {
    const BURST: usize = 3;
    let t = Team::start_with(&[("alice", "user"), ("bob", "user")], |c| {
        c.ws.messages_per_minute = 1;
        c.ws.message_burst = u32::try_from(BURST).expect("small");
    })
    .await;
    // A reconnect loop: each connection used to bring a fresh burst.
    let mut acked = 0;
    for round in 0..5 {
        let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
        for i in 0..BURST {
            let reply = ws
                .request(
                    "Broadcast",
                    json!({"topic": "nobody", "payload": i}),
                    &format!("b{round}-{i}"),
                )
                .await;
            match (reply["type"].as_str(), reply["data"]["code"].as_u64()) {
                (Some("Ack"), _) => acked += 1,
                // A minute's worth (one) of refusals in a row closes the connection: the
                // loop reconnects.
                (Some("Error"), Some(429)) => break,
                _ => panic!("unexpected reply {reply}"),
            }
        }
    }
    // The documented rate over the whole loop: the burst, and at most one refill (a minute).
    assert!(
        (BURST..=BURST + 1).contains(&acked),
        "{acked} acked over 5 connections"
    );
    // Another user is not affected.
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let reply = bob
        .request("Broadcast", json!({"topic": "nobody", "payload": 0}), "b")
        .await;
    assert_eq!(reply["type"], "Ack", "{reply}");
    t.server.stop().await;
}

// ----- BUG-15: the notification inbox ------------------------------------------------------

#[tokio::test]
async fn an_inbox_keeps_its_newest_notifications_and_counts_unread_after_mark_read() {
    let t = Team::start_with(&[("boss", "admin"), ("bob", "user")], |c| {
        c.limits.max_notifications_per_user = 5;
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let created = t
            .post(
                "boss",
                "/api/v1/notifications",
                json!({"username": "bob", "title": format!("n{i}"), "message": "m"}),
            )
            .await;
        assert_eq!(created.status, 201, "{:?}", created.json);
        ids.push(created.json["id"].as_u64().expect("id"));
    }
    let titles = |page: &Value| -> Vec<String> {
        page["notifications"]
            .as_array()
            .expect("notifications")
            .iter()
            .map(|n| n["title"].as_str().expect("title").to_owned())
            .collect()
    };
    let inbox = t.get("bob", "/api/v1/notifications").await;
    assert_eq!(titles(&inbox.json), ["n7", "n6", "n5", "n4", "n3"]);
    assert_eq!(inbox.json["unread"], 5);
    assert_eq!(inbox.json["has_more"], false);
    // Paged, newest first.
    let first = t.get("bob", "/api/v1/notifications?limit=2").await;
    assert_eq!(titles(&first.json), ["n7", "n6"]);
    assert_eq!(first.json["has_more"], true);
    let before = t
        .get(
            "bob",
            &format!("/api/v1/notifications?limit=10&before={}", ids[6]),
        )
        .await;
    assert_eq!(titles(&before.json), ["n5", "n4", "n3"]);
    assert_eq!(before.json["has_more"], false);
    // Marking read moves the count, once; a dropped one is gone.
    for _ in 0..2 {
        let read = t
            .post_empty("bob", &format!("/api/v1/notifications/{}/read", ids[7]))
            .await;
        assert_eq!(read.status, 200, "{:?}", read.json);
    }
    let dropped = t
        .post_empty("bob", &format!("/api/v1/notifications/{}/read", ids[0]))
        .await;
    assert_eq!(dropped.status, 404);
    assert_eq!(
        t.get("bob", "/api/v1/notifications").await.json["unread"],
        4
    );
    // Kibray's count and mark_read agree.
    let mut kibray = Ws::open(
        t.addr(),
        &format!("/ws/notifications/?token={}", t.token("bob")),
    )
    .await;
    assert_eq!(
        kibray.recv().await,
        json!({"type": "unread_count", "count": 4})
    );
    kibray
        .send(json!({"type": "mark_read", "notification_id": ids[6]}))
        .await;
    assert_eq!(
        kibray.recv().await,
        json!({"type": "unread_count", "count": 3})
    );
    // The dropped ones are counted.
    let metrics = t.server.get("/metrics", &[]).await;
    let text = metrics.json.as_str().expect("metrics text").to_owned();
    assert!(
        text.lines()
            .any(|line| line == "natter_notifications_dropped_total 3"),
        "{text}"
    );
    t.server.stop().await;
}

// ----- BUG-16: guests ----------------------------------------------------------------------

/// Opens a tokenless connection and says HELLO with `display_name`; returns the connection and
/// the first frame of the answer.
async fn hello(t: &Team, display_name: &str) -> (Ws, Value) {
    let mut ws = Ws::open(t.addr(), "/ws").await;
    ws.send(fc(
        "HELLO",
        json!({"user_id": uuid::Uuid::new_v4(), "display_name": display_name}),
    ))
    .await;
    let answer = ws.recv().await;
    (ws, answer)
}

#[tokio::test]
async fn guests_cannot_take_an_accounts_name_nor_more_than_their_share_of_connections() {
    let t = Team::start_with(&[("alice", "user"), ("bob", "user")], |c| {
        c.fastchat.guests = true;
        c.fastchat.max_guests_per_ip = 3;
    })
    .await;
    // An account's name, folded (case, spaces, fullwidth, invisible characters), is refused
    // with FastChat's error; the guest may try again on the same connection.
    let (mut ws, answer) = hello(&t, "ALICE").await;
    assert_eq!(answer["type"], "ERROR", "{answer}");
    assert_eq!(answer["data"]["code"], "VALIDATION", "{answer}");
    for look_alike in ["A lice", "Ａｌｉｃｅ", "Bo\u{200b}b"] {
        ws.send(fc(
            "HELLO",
            json!({"user_id": uuid::Uuid::new_v4(), "display_name": look_alike}),
        ))
        .await;
        let answer = ws.recv().await;
        assert_eq!(
            answer["data"]["code"], "VALIDATION",
            "{look_alike}: {answer}"
        );
    }
    ws.send(fc(
        "HELLO",
        json!({"user_id": uuid::Uuid::new_v4(), "display_name": "Visitor 0"}),
    ))
    .await;
    assert_eq!(ws.recv().await["type"], "HELLO_ACK");
    // Three guests from one address, not four.
    let mut guests = vec![ws];
    for i in 1..3 {
        let (ws, answer) = hello(&t, &format!("Visitor {i}")).await;
        assert_eq!(answer["type"], "HELLO_ACK", "{answer}");
        guests.push(ws);
    }
    let (mut extra, answer) = hello(&t, "Visitor 3").await;
    assert_eq!(answer["type"], "ERROR", "{answer}");
    assert_eq!(answer["data"]["code"], "RATE_LIMITED", "{answer}");
    assert_eq!(extra.closed().await.0, 4429);
    // A guest that leaves gives its place back.
    guests.pop();
    let mut admitted = None;
    for attempt in 0..50 {
        let (ws, answer) = hello(&t, &format!("Returning {attempt}")).await;
        if answer["type"] == "HELLO_ACK" {
            admitted = Some(ws);
            break;
        }
        assert_eq!(answer["data"]["code"], "RATE_LIMITED", "{answer}");
        let mut ws = ws;
        ws.closed().await;
    }
    assert!(admitted.is_some(), "the place was never given back");
    t.server.stop().await;

    // In all: at most half of ws.max_connections are guests; accounts still get in.
    let t = Team::start_with(&[("alice", "user"), ("bob", "user")], |c| {
        c.fastchat.guests = true;
        c.ws.max_connections = 8;
    })
    .await;
    let mut guests = Vec::new();
    for i in 0..4 {
        let (ws, answer) = hello(&t, &format!("Guest {i}")).await;
        assert_eq!(answer["type"], "HELLO_ACK", "{answer}");
        guests.push(ws);
    }
    let (mut extra, answer) = hello(&t, "Guest 4").await;
    assert_eq!(answer["type"], "ERROR", "{answer}");
    assert_eq!(answer["data"]["code"], "MESSAGE_FAILED", "{answer}");
    assert_eq!(extra.closed().await.0, 1013);
    for user in ["alice", "bob"] {
        let ws = Ws::connect(t.addr(), t.token(user)).await;
        assert_eq!(ws.welcome["user"]["username"], user);
    }
    t.server.stop().await;
}

// ----- BUG-22: Join's replay ---------------------------------------------------------------

#[tokio::test]
async fn a_joins_replay_is_bounded_in_bytes_and_joins_are_rate_limited_per_user() {
    let t = Team::start_with(&[("alice", "user"), ("bob", "user")], |c| {
        c.ws.max_replay_bytes = 8 * 1024;
        c.ws.joins_per_minute = 1;
        c.ws.max_joined_rooms = 3;
        c.ws.message_burst = 100;
    })
    .await;
    t.create_room("alice", "big", "public").await;
    for i in 1..=20 {
        let content = format!("{i:02} {}", "y".repeat(1000));
        let posted = t
            .post(
                "alice",
                "/api/v1/rooms/big/messages",
                json!({"content": content}),
            )
            .await;
        assert_eq!(posted.status, 201, "{:?}", posted.json);
    }
    let mut ws = Ws::connect(t.addr(), t.token("alice")).await;
    ws.send(json!({"type": "Join", "data": {"room": "big", "since": 0}, "id": "j1"}))
        .await;
    let mut replayed = Vec::new();
    let joined = ws
        .recv_until("the Join's reply", |frame| {
            if frame["type"] == "Message" {
                replayed.push(frame["data"]["seq"].as_u64().expect("seq"));
                None
            } else {
                Some(frame.clone())
            }
        })
        .await;
    assert_eq!(joined["data"]["status"], "joined", "{joined}");
    let details = &joined["data"]["details"];
    // About 1 kB a message: 8 kB replay a few, in order from 1, and say there is more.
    assert!(
        (1..20).contains(&replayed.len()),
        "{} replayed",
        replayed.len()
    );
    assert_eq!(replayed, (1..=replayed.len() as u64).collect::<Vec<_>>());
    assert_eq!(details["replayed"], replayed.len());
    assert_eq!(details["complete"], false, "{joined}");
    assert_eq!(details["last_seq"], 20);
    // The rest, with History after the last replayed one (the documented way on).
    let last = *replayed.last().expect("one");
    let history = ws
        .request(
            "History",
            json!({"room": "big", "after": last, "limit": 50}),
            "h1",
        )
        .await;
    let seqs: Vec<u64> = history["data"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, ((last + 1)..=20).collect::<Vec<_>>());

    // Joins: a connection's worth (3) at once, then refused; a new connection does not help.
    for room in ["j-a", "j-b"] {
        t.create_room("bob", room, "public").await;
    }
    for (i, room) in ["j-a", "j-b"].iter().enumerate() {
        let reply = ws
            .request("Join", json!({"room": room}), &format!("j{}", i + 2))
            .await;
        assert_eq!(reply["data"]["status"], "joined", "{reply}");
    }
    let refused = ws.request("Join", json!({"room": "big"}), "j4").await;
    assert_eq!(refused["type"], "Error", "{refused}");
    assert_eq!(refused["data"]["code"], 429, "{refused}");
    assert!(
        refused["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("joins per minute")),
        "{refused}"
    );
    drop(ws);
    let mut again = Ws::connect(t.addr(), t.token("alice")).await;
    let refused = again
        .request("Join", json!({"room": "big", "since": 0}), "j5")
        .await;
    assert_eq!(refused["data"]["code"], 429, "{refused}");
    // bob's joins are his own.
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    let reply = bob.request("Join", json!({"room": "big"}), "b1").await;
    assert_eq!(reply["data"]["status"], "joined", "{reply}");
    t.server.stop().await;
}
