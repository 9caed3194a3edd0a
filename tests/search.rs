//! Search (issue 20, item 6): `GET /api/v1/search` finds what a user may read, as it is now
//! (edits by their new text, deleted and purged messages not at all), never a private room's
//! message for a non-member, newest first in bounded pages; bad queries get a clear 400.

use serde_json::{Value, json};

use crate::common::{Response, Team, natter_on};
use crate::wsclient::Ws;

const TEAM: &[(&str, &str)] = &[
    ("alice", "user"),
    ("bob", "user"),
    ("carol", "user"),
    ("root", "admin"),
];

/// A query string value, percent-encoded.
fn encoded(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `natter verify` through the daemon finds nothing wrong (it checks the index both ways).
async fn assert_verify_clean(t: &Team) {
    let (code, out, err) = natter_on(&t.server.data_dir, &["verify"], None).await;
    assert_eq!(code, 0, "verify: {out}{err}");
    assert!(out.contains("no problems found"), "{out}");
}

async fn search(t: &Team, user: &str, query: &str) -> Response {
    t.get(user, &format!("/api/v1/search?{query}")).await
}

/// The hits of a search that must succeed, as (room, content) pairs, in order.
async fn hits(t: &Team, user: &str, q: &str) -> Vec<(String, String)> {
    let response = search(t, user, &format!("q={}", encoded(q))).await;
    assert_eq!(response.status, 200, "{:?}", response.json);
    results(&response.json)
}

fn results(body: &Value) -> Vec<(String, String)> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|hit| {
            (
                hit["room"].as_str().expect("room").to_owned(),
                hit["content"].as_str().expect("content").to_owned(),
            )
        })
        .collect()
}

fn created_ms(body: &Value) -> Vec<i64> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|hit| hit["created_at_ms"].as_i64().expect("created_at_ms"))
        .collect()
}

/// Posts `content` to `room` as `user`; returns its seq.
async fn post(t: &Team, user: &str, room: &str, content: &str) -> u64 {
    let path = format!("/api/v1/rooms/{}/messages", encoded(room));
    let response = t.post(user, &path, json!({ "content": content })).await;
    assert_eq!(response.status, 201, "{:?}", response.json);
    response.json["seq"].as_u64().expect("seq")
}

fn pair(room: &str, content: &str) -> (String, String) {
    (room.to_owned(), content.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_found_with_its_words_highlighted_in_characters() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "general", "public").await;
    post(&t, "alice", "general", "nothing to see").await;
    let seq = post(&t, "alice", "general", "Café: the Deploy is on Friday").await;
    let response = search(&t, "bob", "q=deploy+fri").await;
    assert_eq!(response.status, 200, "{:?}", response.json);
    let found = response.json["results"].as_array().expect("results");
    assert_eq!(found.len(), 1, "{found:?}");
    let hit = &found[0];
    assert_eq!(hit["room"], "general");
    assert_eq!(hit["seq"], seq);
    assert_eq!(hit["author"], "alice");
    assert!(hit["created_at"].as_i64().is_some(), "{hit}");
    assert_eq!(hit["content"], "Café: the Deploy is on Friday");
    // Character offsets: "é" is one character (two bytes), so Deploy starts at 10.
    assert_eq!(hit["highlights"], json!([[10, 16], [23, 29]]));
    assert_eq!(response.json["next_cursor"], Value::Null);
    assert_eq!(response.json["truncated"], false);
    // Case and accents as written, any room the user may read, and `room=` narrows.
    assert_eq!(
        hits(&t, "bob", "CAFÉ").await,
        vec![pair("general", "Café: the Deploy is on Friday")]
    );
    let narrowed = search(&t, "bob", "q=deploy&room=general").await;
    assert_eq!(results(&narrowed.json).len(), 1, "{:?}", narrowed.json);
    assert!(hits(&t, "bob", "deployment").await.is_empty());
    t.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_never_sees_a_private_rooms_hit_but_sees_public_ones() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "lobby", "public").await;
    t.create_room("alice", "secret-plans", "private").await;
    t.add_member("alice", "secret-plans", "carol").await;
    post(&t, "alice", "lobby", "zebra picnic on monday").await;
    post(&t, "alice", "secret-plans", "zebra launch is secret").await;
    // A direct room of alice and carol.
    post(&t, "alice", "@carol", "zebra between us").await;

    assert_eq!(
        hits(&t, "bob", "zebra").await,
        vec![pair("lobby", "zebra picnic on monday")],
        "bob reads the public room only"
    );
    let carol = hits(&t, "carol", "zebra").await;
    assert_eq!(carol.len(), 3, "{carol:?}");
    assert!(carol.contains(&pair("secret-plans", "zebra launch is secret")));
    assert!(carol.contains(&pair("dm:alice:carol", "zebra between us")));
    // An admin's search covers the rooms anyone's does, not everyone's direct rooms.
    assert_eq!(hits(&t, "root", "zebra").await.len(), 1);

    // Naming the private room answers exactly as naming a room that does not exist.
    let private = search(&t, "bob", "q=zebra&room=secret-plans").await;
    let missing = search(&t, "bob", "q=zebra&room=no-such-room").await;
    assert_eq!(private.status, 404, "{:?}", private.json);
    assert_eq!(missing.status, 404);
    assert_eq!(private.json["code"], missing.json["code"]);
    assert_eq!(
        private.json["error"]
            .as_str()
            .map(|e| e.replace("secret-plans", "X")),
        missing.json["error"]
            .as_str()
            .map(|e| e.replace("no-such-room", "X"))
    );
    let dm = search(&t, "bob", "q=zebra&room=dm%3Aalice%3Acarol").await;
    assert_eq!(dm.status, 404, "{:?}", dm.json);
    // A member asks for it by name and gets it.
    let own = search(&t, "carol", "q=zebra&room=secret-plans").await;
    assert_eq!(
        results(&own.json),
        vec![pair("secret-plans", "zebra launch is secret")]
    );
    // Removed from the room: its messages are no longer found.
    let removed = t
        .delete("alice", "/api/v1/rooms/secret-plans/members/carol")
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.json);
    assert_eq!(hits(&t, "carol", "zebra").await.len(), 2);
    t.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_message_is_found_by_its_new_text_only_and_a_deleted_one_not_at_all() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "general", "public").await;
    let edited = post(&t, "alice", "general", "meeting about pineapples").await;
    let deleted = post(&t, "alice", "general", "the password is walrus").await;
    assert_eq!(hits(&t, "bob", "pineapples").await.len(), 1);
    assert_eq!(hits(&t, "bob", "walrus").await.len(), 1);

    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let reply = alice
        .request(
            "Edit",
            json!({"room": "general", "seq": edited, "content": "meeting about mangoes"}),
            "e",
        )
        .await;
    assert_ne!(reply["type"], "Error", "{reply}");
    let reply = alice
        .request("Delete", json!({"room": "general", "seq": deleted}), "d")
        .await;
    assert_ne!(reply["type"], "Error", "{reply}");

    assert!(hits(&t, "bob", "pineapples").await.is_empty(), "old text");
    assert_eq!(
        hits(&t, "bob", "mangoes").await,
        vec![pair("general", "meeting about mangoes")]
    );
    assert_eq!(
        hits(&t, "bob", "meeting").await,
        vec![pair("general", "meeting about mangoes")],
        "a word the edit kept"
    );
    assert!(hits(&t, "bob", "walrus").await.is_empty(), "deleted");
    assert!(hits(&t, "bob", "password").await.is_empty(), "deleted");
    // No entry of the old text or of the deleted message is left behind.
    assert_verify_clean(&t).await;
    // Still so after a restart (the index is on disk, not rebuilt from memory).
    let t = t.restart().await;
    assert!(hits(&t, "bob", "pineapples").await.is_empty());
    assert_eq!(hits(&t, "bob", "mango").await.len(), 1);
    assert!(hits(&t, "bob", "walrus").await.is_empty());
    t.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_and_deleted_rooms_messages_leave_the_index() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "old", "public").await;
    t.create_room("alice", "gone", "public").await;
    t.create_room("alice", "kept", "public").await;
    post(&t, "alice", "old", "ancient otter lore").await;
    post(&t, "alice", "gone", "otter in a doomed room").await;
    post(&t, "alice", "kept", "otter that stays").await;
    assert_eq!(hits(&t, "bob", "otter").await.len(), 3);
    let dir = t.server.data_dir.clone();
    // The purge retention runs, through the daemon's control socket.
    let (code, out, err) = natter_on(
        &dir,
        &["room", "purge", "old", "--before", "2099-01-01"],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        hits(&t, "bob", "otter").await,
        vec![
            pair("kept", "otter that stays"),
            pair("gone", "otter in a doomed room")
        ]
    );
    let deleted = t.delete("alice", "/api/v1/rooms/gone").await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.json);
    assert_eq!(
        hits(&t, "bob", "otter").await,
        vec![pair("kept", "otter that stays")]
    );
    // A new room of the old name does not inherit the old postings.
    t.create_room("alice", "gone", "public").await;
    post(&t, "alice", "gone", "a fresh start").await;
    assert!(hits(&t, "bob", "doomed").await.is_empty());
    // The purged and deleted messages' entries went with them.
    assert_verify_clean(&t).await;
    t.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_bounded_newest_first_and_follow_their_cursor() {
    let t = Team::start_with(TEAM, |c| c.ws.message_burst = 100).await;
    t.create_room("alice", "a", "public").await;
    t.create_room("alice", "b", "public").await;
    let mut posted = Vec::new();
    for i in 0..25 {
        let room = if i % 2 == 0 { "a" } else { "b" };
        let content = format!("status report number {i}");
        post(&t, "alice", room, &content).await;
        posted.push(pair(room, &content));
    }
    posted.reverse();
    let first = search(&t, "bob", "q=report").await;
    assert_eq!(first.status, 200, "{:?}", first.json);
    let mut seen = results(&first.json);
    let mut times = created_ms(&first.json);
    assert_eq!(seen.len(), 20, "the default limit");
    let cursor = first.json["next_cursor"].as_str().expect("a next page");
    let second = search(&t, "bob", &format!("q=report&cursor={}", encoded(cursor))).await;
    assert_eq!(second.status, 200, "{:?}", second.json);
    assert_eq!(second.json["next_cursor"], Value::Null);
    seen.extend(results(&second.json));
    times.extend(created_ms(&second.json));
    // Newest first across rooms (two posts in one millisecond may come in either order).
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    for room in ["a", "b"] {
        let mine = |list: &[(String, String)]| -> Vec<(String, String)> {
            list.iter().filter(|(r, _)| r == room).cloned().collect()
        };
        assert_eq!(mine(&seen), mine(&posted), "room {room}: newest first");
    }
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    let mut sorted_posted = posted.clone();
    sorted_posted.sort();
    assert_eq!(sorted_seen, sorted_posted, "every hit once");

    let small = search(&t, "bob", "q=report&limit=3").await;
    assert_eq!(results(&small.json), seen[..3].to_vec());
    let most = search(&t, "bob", "q=report&limit=100").await;
    assert_eq!(results(&most.json), seen);
    for bad in ["limit=0", "limit=101", "limit=lots", "cursor=nonsense"] {
        let response = search(&t, "bob", &format!("q=report&{bad}")).await;
        assert_eq!(response.status, 400, "{bad}: {:?}", response.json);
        assert!(response.json["error"].is_string(), "{:?}", response.json);
    }
    t.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_get_a_clear_400_and_no_token_a_401() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "general", "public").await;
    post(&t, "alice", "general", "hello there").await;
    let long = "word ".repeat(60);
    for (query, says) in [
        ("", "empty"),
        ("q=", "empty"),
        ("q=%20%20", "empty"),
        ("q=a", "at least 2"),
        ("q=%21%3F", "at least 2"),
        (&*format!("q={}", encoded(&long)), "too long"),
        ("q=a1+a2+a3+a4+a5+a6+a7+a8+a9", "too many"),
    ] {
        let response = search(&t, "bob", query).await;
        assert_eq!(response.status, 400, "{query}: {:?}", response.json);
        let error = response.json["error"].as_str().expect("error");
        assert!(error.contains(says), "{query}: {error}");
        assert!(response.json["code"].is_string(), "{:?}", response.json);
    }
    let anonymous = t
        .server
        .api("GET", "/api/v1/search?q=hello", None, None)
        .await;
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.json);
    t.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_are_rate_limited_per_user() {
    let t = Team::start_with(TEAM, |c| {
        c.limits.search_burst = 2;
        c.limits.searches_per_minute = 1;
    })
    .await;
    for _ in 0..2 {
        assert_eq!(search(&t, "bob", "q=hello").await.status, 200);
    }
    let throttled = search(&t, "bob", "q=hello").await;
    assert_eq!(throttled.status, 429, "{:?}", throttled.json);
    assert!(throttled.headers.contains_key("retry-after"));
    assert_eq!(search(&t, "carol", "q=hello").await.status, 200, "per user");
    t.server.stop().await;
}
