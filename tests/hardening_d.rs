//! Files, hardened (security review 2026-12, helper D): a deleted, purged or room-deleted
//! message takes its files with it (records, and content no other record names); files no
//! message lists expire; a crash's temporary uploads are reported by `verify` and removed at
//! start; a full disk answers uploads with 507; uploads stream to disk (HTTP and Kibray), a
//! stalled one is dropped with its temporary file, and each user has a bounded number at once.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{Deadline, Response, Team, TestServer, add_user, http, test_config};
use crate::wsclient::Ws;

const TEAM: &[(&str, &str)] = &[("alice", "user"), ("bob", "user"), ("carol", "user")];

/// What `files/` holds: contents (hex SHA-256 names) and temporary uploads.
#[derive(Debug, Default, PartialEq, Eq)]
struct FilesDir {
    contents: Vec<String>,
    temporary: Vec<String>,
}

fn files_dir(data_dir: &Path) -> FilesDir {
    let mut listed = FilesDir::default();
    let Ok(entries) = std::fs::read_dir(data_dir.join("files")) else {
        return listed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".upload-") {
            listed.temporary.push(name);
        } else if name.len() == 64 {
            listed.contents.push(name);
        }
    }
    listed.contents.sort();
    listed.temporary.sort();
    listed
}

/// Polls `done` until it holds, within the usual deadline.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    Deadline::new(what)
        .bound(async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
}

async fn upload(t: &Team, user: &str, room: &str, name: &str, body: &[u8]) -> Response {
    let authorization = format!("Bearer {}", t.token(user));
    http(
        t.addr(),
        "POST",
        &format!("/api/v1/rooms/{room}/files?name={name}"),
        &[
            ("authorization", &authorization),
            ("content-type", "text/plain"),
        ],
        body.to_vec(),
    )
    .await
}

/// Uploads over HTTP; panics unless it is stored. Returns (file id, message seq, sha256).
async fn uploaded(t: &Team, user: &str, room: &str, name: &str, body: &[u8]) -> (u64, u64, String) {
    let posted = upload(t, user, room, name, body).await;
    assert_eq!(posted.status, 201, "{:?}", posted.json);
    let file = &posted.json["message"]["attachments"][0];
    (
        file["id"].as_u64().expect("file id"),
        posted.json["seq"].as_u64().expect("seq"),
        file["sha256"].as_str().expect("sha256").to_owned(),
    )
}

async fn download(t: &Team, user: &str, file_id: u64) -> Response {
    t.get(user, &format!("/api/v1/files/{file_id}")).await
}

/// A native Delete of message `seq` in `room`; panics unless it is deleted.
async fn delete_message(ws: &mut Ws, room: &str, seq: u64) {
    let reply = ws
        .request(
            "Delete",
            json!({"room": room, "seq": seq}),
            &format!("d{seq}"),
        )
        .await;
    assert_eq!(reply["type"], "Ack", "{reply}");
    assert_eq!(reply["data"]["status"], "deleted", "{reply}");
}

/// Runs the natter CLI on `dir` without blocking the runtime that serves it.
async fn natter(dir: &Path, args: &[&str]) -> (i32, String, String) {
    crate::common::natter_on(dir, args, None).await
}

async fn assert_verify_clean(dir: &Path) {
    let (code, out, err) = natter(dir, &["verify"]).await;
    assert_eq!(code, 0, "verify: {out}{err}");
    assert!(out.contains("no problems found"), "{out}");
}

// ----- BUG-8: a deleted message's files go with it ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_message_deletes_its_file() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "team", "private").await;
    t.add_member("alice", "team", "bob").await;
    let (file_id, seq, sha) = uploaded(&t, "alice", "team", "oops.txt", b"root:hunter2").await;
    assert_eq!(download(&t, "bob", file_id).await.status, 200);
    assert_eq!(files_dir(&t.server.data_dir).contents, vec![sha.clone()]);

    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    delete_message(&mut alice, "team", seq).await;

    let history = t.get("bob", "/api/v1/rooms/team/messages").await;
    let tombstone = &history.json["messages"][0];
    assert_eq!(tombstone["deleted"], true, "{tombstone}");
    assert_eq!(tombstone["content"], "", "{tombstone}");
    assert_eq!(
        tombstone["attachments"],
        json!([]),
        "the tombstone lists no file"
    );
    for user in ["bob", "alice"] {
        let gone = download(&t, user, file_id).await;
        assert_eq!(gone.status, 404, "{user}: {:?}", gone.json);
    }
    // The content no record names is gone from disk once the delete is answered.
    assert_eq!(files_dir(&t.server.data_dir), FilesDir::default());
    assert_verify_clean(&t.server.data_dir).await;
    t.server.stop().await;
}

/// The same content uploaded twice is stored once and stays while a record names it; a file
/// attached to two messages (its uploader's) stays while one lists it; nobody else may attach
/// it to keep it alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_content_and_shared_files_outlive_one_of_their_messages() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "team", "public").await;
    t.add_member("alice", "team", "bob").await;
    let (first, first_seq, sha) = uploaded(&t, "alice", "team", "a.txt", b"same bytes").await;
    let (second, second_seq, same) = uploaded(&t, "bob", "team", "b.txt", b"same bytes").await;
    assert_eq!(sha, same);
    assert_ne!(first, second);
    assert_eq!(files_dir(&t.server.data_dir).contents, vec![sha.clone()]);

    let mut alice = Ws::connect(t.addr(), t.token("alice")).await;
    let mut bob = Ws::connect(t.addr(), t.token("bob")).await;
    delete_message(&mut alice, "team", first_seq).await;
    assert_eq!(download(&t, "bob", first).await.status, 404);
    let kept = download(&t, "alice", second).await;
    assert_eq!(kept.status, 200, "{:?}", kept.json);
    assert_eq!(kept.json, json!("same bytes"));
    assert_eq!(files_dir(&t.server.data_dir).contents, vec![sha.clone()]);
    delete_message(&mut bob, "team", second_seq).await;
    assert_eq!(download(&t, "alice", second).await.status, 404);
    assert_eq!(files_dir(&t.server.data_dir).contents, Vec::<String>::new());

    // One file in two of alice's messages.
    let (file, seq, _) = uploaded(&t, "alice", "team", "c.txt", b"listed twice").await;
    let again = alice
        .request(
            "Send",
            json!({"room": "team", "content": "again", "attachments": [file]}),
            "s1",
        )
        .await;
    assert_eq!(again["type"], "Ack", "{again}");
    let again_seq = again["data"]["seq"].as_u64().expect("seq");
    // bob may read it but not attach it: he could keep it alive after alice deletes hers.
    let refused = bob
        .request(
            "Send",
            json!({"room": "team", "content": "mine now", "attachments": [file]}),
            "s2",
        )
        .await;
    assert_eq!(refused["type"], "Error", "{refused}");
    assert_eq!(refused["data"]["code"], 403, "{refused}");
    delete_message(&mut alice, "team", seq).await;
    assert_eq!(download(&t, "bob", file).await.status, 200, "still listed");
    delete_message(&mut alice, "team", again_seq).await;
    assert_eq!(download(&t, "bob", file).await.status, 404);
    assert_eq!(files_dir(&t.server.data_dir), FilesDir::default());
    assert_verify_clean(&t.server.data_dir).await;
    t.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_and_deleting_a_room_delete_its_files() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "old", "public").await;
    t.create_room("alice", "gone", "public").await;
    let (purged, _, purged_sha) = uploaded(&t, "alice", "old", "p.txt", b"purge me").await;
    let (deleted, _, _) = uploaded(&t, "alice", "gone", "d.txt", b"delete me").await;
    let (other, _, other_sha) = uploaded(&t, "alice", "old", "o.txt", b"other").await;
    assert_eq!(files_dir(&t.server.data_dir).contents.len(), 3);
    let dir = t.server.data_dir.clone();

    // `room purge` through the daemon's control socket: the same purge retention runs.
    let (code, out, err) = natter(&dir, &["room", "purge", "old", "--before", "2099-01-01"]).await;
    assert_eq!(code, 0, "{out}{err}");
    for file in [purged, other] {
        let gone = download(&t, "alice", file).await;
        assert_eq!(gone.status, 404, "file {file}: {:?}", gone.json);
    }
    let left = files_dir(&dir).contents;
    assert!(
        !left.contains(&purged_sha) && !left.contains(&other_sha),
        "{left:?}"
    );

    let (code, out, err) = natter(&dir, &["room", "delete", "gone"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(download(&t, "alice", deleted).await.status, 404);
    assert_eq!(files_dir(&dir), FilesDir::default());
    assert_verify_clean(&dir).await;
    t.server.stop().await;
}

/// A binary file transfer never attached expires after `server.unattached_file_ttl_secs`
/// (swept at start and hourly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unattached_uploads_expire() {
    use tokio_tungstenite::tungstenite::Message;
    let tmp = tempfile::tempdir().expect("tempdir");
    add_user(tmp.path(), "alice", "alice-password", "user");
    let config = |ttl: u64| {
        let mut config = test_config(tmp.path());
        config.server.unattached_file_ttl_secs = ttl;
        config
    };
    let server = TestServer::start_config(config(1)).await.expect("starts");
    let token = server.access_token("alice", "alice-password").await;
    let mut ws = Ws::connect(server.addr, &token).await;
    let content = b"never attached";
    let mut frame = vec![0x03];
    frame.extend_from_slice(&u32::try_from(content.len()).expect("short").to_be_bytes());
    frame.extend_from_slice(content);
    ws.send_raw(Message::binary(frame)).await;
    let status = ws.recv_type("Status").await;
    let file_id = status["data"]["details"]["file_id"]
        .as_u64()
        .expect("file_id");
    let url = format!("/api/v1/files/{file_id}");
    assert_eq!(
        server.api("GET", &url, Some(&token), None).await.status,
        200
    );
    drop(ws);
    server.stop().await;

    // Older than its ttl (1 s): its record's created_at is in whole seconds.
    let stored = std::time::SystemTime::now();
    until("the file to be older than its ttl", || {
        stored
            .elapsed()
            .is_ok_and(|age| age > Duration::from_secs(2))
    })
    .await;
    let server = TestServer::start_config(config(1)).await.expect("restarts");
    let token = server.access_token("alice", "alice-password").await;
    let gone = server.api("GET", &url, Some(&token), None).await;
    assert_eq!(gone.status, 404, "{:?}", gone.json);
    assert_eq!(files_dir(tmp.path()), FilesDir::default());
    server.stop().await;
}

// ----- BUG-18: a crash's temporary uploads ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_uploads_left_by_a_crash_are_reported_and_removed_at_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    add_user(tmp.path(), "alice", "alice-password", "user");
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    let temporary = ".upload-0123456789abcdef0123456789abcdef";
    std::fs::write(files.join(temporary), vec![0u8; 4096]).expect("plant");
    let orphan = "ab".repeat(32);
    std::fs::write(files.join(&orphan), b"no record names me").expect("plant");

    // A stopped store: verify reports both (and leaves them).
    let (code, out, err) = natter(tmp.path(), &["verify"]).await;
    assert_ne!(code, 0, "verify must fail: {out}{err}");
    let report = format!("{out}{err}");
    assert!(report.contains(temporary), "{report}");
    assert!(report.contains(&orphan), "{report}");
    assert!(files.join(temporary).exists() && files.join(&orphan).exists());

    // The daemon, holding the data dir, removes them at start.
    let server = TestServer::start_config(test_config(tmp.path()))
        .await
        .expect("starts");
    assert_eq!(files_dir(tmp.path()), FilesDir::default());
    assert_verify_clean(tmp.path()).await;
    server.stop().await;
}

// ----- BUG-19: a full disk ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_on_a_full_disk_answers_507() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "full", "public").await;
    // Only the files live on the small filesystem: the store keeps working.
    let tmpfs = match crate::disk_full::Tmpfs::mount_at(&t.server.data_dir.join("files"), "256k") {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            println!(
                "SKIPPED an_upload_on_a_full_disk_answers_507: cannot mount a tmpfs ({reason})"
            );
            return;
        }
    };
    let full = upload(&t, "alice", "full", "big.bin", &vec![7u8; 1024 * 1024]).await;
    assert_eq!(full.status, 507, "{:?}", full.json);
    assert_eq!(full.json["code"], "storage_full", "{:?}", full.json);
    assert_eq!(
        files_dir(&t.server.data_dir),
        FilesDir::default(),
        "nothing left"
    );
    // A file that fits is stored.
    let (file, _, _) = uploaded(&t, "alice", "full", "small.txt", b"fits").await;
    assert_eq!(download(&t, "alice", file).await.status, 200);
    drop(tmpfs);
    t.server.stop().await;
}

// ----- streamed uploads ---------------------------------------------------------------------

/// An HTTP upload whose body stops (or trickles): headers and the first `sent` bytes of a
/// `length`-byte body, on a raw connection.
async fn start_raw_upload(
    t: &Team,
    user: &str,
    name: &str,
    length: usize,
) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(t.addr())
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/rooms/up/files?name={name} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n",
        t.token(user)
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
}

/// Reads what the server sends until it closes the connection.
async fn answer_then_close(stream: &mut tokio::net::TcpStream, what: &str) -> String {
    let mut answer = Vec::new();
    Deadline::new(what)
        .bound(async {
            let mut buffer = [0u8; 4096];
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buffer[..n]),
                }
            }
        })
        .await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_trickling_upload_is_dropped_with_its_temporary_file() {
    let t = Team::start_with(TEAM, |c| {
        c.server.upload_idle_timeout_secs = 1;
        c.server.upload_min_bytes_per_sec = 8192;
    })
    .await;
    t.create_room("alice", "up", "public").await;
    let dir = t.server.data_dir.clone();

    // Stalled: 64 KiB of a 1 MiB body, then nothing.
    let mut stalled = start_raw_upload(&t, "alice", "stalled.bin", 1024 * 1024).await;
    stalled
        .write_all(&vec![1u8; 64 * 1024])
        .await
        .expect("body");
    // The body streams to disk, not into memory.
    until("the upload's temporary file", || {
        files_dir(&dir).temporary.len() == 1
    })
    .await;
    let answer = answer_then_close(&mut stalled, "the stalled upload's end").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    until("the temporary file's removal", || {
        files_dir(&dir) == FilesDir::default()
    })
    .await;

    // Trickling: a few bytes at a time, never idle for a second, far below 8192 bytes/s.
    let mut trickle = start_raw_upload(&t, "alice", "slow.bin", 1024 * 1024).await;
    let mut answer = String::new();
    for _ in 0..200 {
        if trickle.write_all(b"0123456789").await.is_err() {
            break;
        }
        let mut buffer = [0u8; 4096];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), trickle.read(&mut buffer)).await
        {
            answer.push_str(&String::from_utf8_lossy(&buffer[..n]));
            break;
        }
    }
    if answer.is_empty() {
        answer = answer_then_close(&mut trickle, "the trickling upload's end").await;
    }
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("slower than 8192"), "{answer}");
    until("the temporary file's removal", || {
        files_dir(&dir) == FilesDir::default()
    })
    .await;
    t.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_per_user_are_capped() {
    let t = Team::start_with(TEAM, |c| {
        c.server.max_uploads_per_user = 2;
        c.server.upload_idle_timeout_secs = 120;
        c.server.upload_min_bytes_per_sec = 0;
    })
    .await;
    t.create_room("alice", "up", "public").await;
    let dir = t.server.data_dir.clone();
    let mut held = Vec::new();
    for i in 0..2 {
        let mut stream = start_raw_upload(&t, "alice", &format!("h{i}.bin"), 1024 * 1024).await;
        stream.write_all(&[1u8; 1000]).await.expect("body");
        held.push(stream);
    }
    until("two uploads in progress", || {
        files_dir(&dir).temporary.len() == 2
    })
    .await;

    let over = upload(&t, "alice", "up", "third.txt", b"third").await;
    assert_eq!(over.status, 429, "{:?}", over.json);
    assert_eq!(over.json["code"], "rate_limited", "{:?}", over.json);
    // Kibray counts against the same slots.
    let mut chat = kibray_chat(&t, "alice", "up").await;
    chat.send(json!({"type": "upload_file", "file_name": "k.txt", "file_size": 3, "file_type": "text/plain"}))
        .await;
    let refused = chat.recv_type("error").await;
    assert_eq!(refused["code"], "RATE_LIMIT_EXCEEDED", "{refused}");
    // Other users have their own.
    uploaded(&t, "bob", "up", "bob.txt", b"bob's").await;

    // A client that goes away frees its slot and its temporary file.
    drop(held.pop());
    until("the abandoned upload's removal", || {
        files_dir(&dir).temporary.len() == 1
    })
    .await;
    uploaded(&t, "alice", "up", "now.txt", b"now it fits").await;
    drop(held);
    until("every temporary file's removal", || {
        files_dir(&dir).temporary.is_empty()
    })
    .await;
    t.server.stop().await;
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A Kibray chat connection to `room` as `user`, once it has joined (Kibray sends no welcome:
/// a frame of no known type is answered after the set-up).
async fn kibray_chat(t: &Team, user: &str, room: &str) -> Ws {
    let mut ws = Ws::open(
        t.addr(),
        &format!("/ws/chat/{room}/?token={}", t.token(user)),
    )
    .await;
    ws.send(json!({"type": "sync"})).await;
    let reply = ws.recv_type("error").await;
    assert_eq!(reply["code"], "INVALID_MESSAGE", "{reply}");
    ws
}

/// Waits for a Kibray frame of `kind` (others, like the room's chat_message, may come first).
async fn kibray_frame(ws: &mut Ws, kind: &str) -> Value {
    ws.recv_where(&format!("a Kibray {kind}"), |f| {
        f["type"] == kind || f["type"] == "error"
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kibray_uploads_stream_to_disk_and_download_identical() {
    let t = Team::start_with(TEAM, |c| c.kibray.max_upload_bytes = 4 * 1024 * 1024).await;
    t.create_room("alice", "up", "public").await;
    let dir = t.server.data_dir.clone();
    let content: Vec<u8> = (0u32..300 * 1024)
        .map(|i| u8::try_from(i * 7 % 251).expect("below 251"))
        .collect();
    let mut chat = kibray_chat(&t, "alice", "up").await;
    chat.send(json!({"type": "upload_file", "file_name": "data.bin", "file_size": content.len(), "file_type": "application/octet-stream"}))
        .await;
    let started = kibray_frame(&mut chat, "upload_started").await;
    assert_eq!(started["type"], "upload_started", "{started}");
    let id = started["upload_id"].clone();
    let chunks: Vec<&[u8]> = content.chunks(64 * 1024).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        chat.send(json!({"type": "upload_chunk", "upload_id": id, "chunk_index": index, "chunk_data": b64(chunk)}))
            .await;
        if index + 1 == chunks.len() {
            break;
        }
        let progress = kibray_frame(&mut chat, "upload_progress").await;
        assert_eq!(progress["type"], "upload_progress", "{progress}");
        assert_eq!(progress["chunk_index"], index, "{progress}");
        // On disk as it comes, not in memory.
        assert_eq!(files_dir(&dir).temporary.len(), 1, "chunk {index}");
    }
    let complete = kibray_frame(&mut chat, "upload_complete").await;
    assert_eq!(complete["type"], "upload_complete", "{complete}");
    assert_eq!(complete["upload_id"], id);
    let url = complete["file"]["url"].as_str().expect("url").to_owned();
    let bob = format!("Bearer {}", t.token("bob"));
    let response = Deadline::new("the download")
        .bound(raw_get(t.addr(), &url, &bob))
        .await;
    assert_eq!(response, content, "downloaded identical");
    assert_eq!(files_dir(&dir).temporary, Vec::<String>::new());
    assert_eq!(files_dir(&dir).contents.len(), 1);
    t.server.stop().await;
}

/// The body of a GET, as bytes (the common client reads JSON or text).
async fn raw_get(addr: std::net::SocketAddr, path: &str, authorization: &str) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("response");
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head");
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    response[end + 4..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_kibray_upload_leaves_no_temporary_file() {
    let t = Team::start(TEAM).await;
    t.create_room("alice", "up", "public").await;
    let dir = t.server.data_dir.clone();
    let mut chat = kibray_chat(&t, "alice", "up").await;
    chat.send(json!({"type": "upload_file", "file_name": "big.bin", "file_size": 1024 * 1024, "file_type": "application/octet-stream"}))
        .await;
    let id = kibray_frame(&mut chat, "upload_started").await["upload_id"].clone();
    chat.send(json!({"type": "upload_chunk", "upload_id": id, "chunk_index": 0, "chunk_data": b64(&[9u8; 4096])}))
        .await;
    assert_eq!(
        kibray_frame(&mut chat, "upload_progress").await["received"],
        4096
    );
    assert_eq!(files_dir(&dir).temporary.len(), 1);

    // A new upload_file abandons the one in progress: one temporary file, the new one's.
    let first = files_dir(&dir).temporary;
    chat.send(json!({"type": "upload_file", "file_name": "small.bin", "file_size": 5000, "file_type": "application/octet-stream"}))
        .await;
    let id = kibray_frame(&mut chat, "upload_started").await["upload_id"].clone();
    chat.send(json!({"type": "upload_chunk", "upload_id": id, "chunk_index": 0, "chunk_data": b64(&[9u8; 4096])}))
        .await;
    kibray_frame(&mut chat, "upload_progress").await;
    let second = files_dir(&dir).temporary;
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(first, second);

    // A chunk beyond the announced size abandons it too.
    chat.send(json!({"type": "upload_chunk", "upload_id": id, "chunk_index": 1, "chunk_data": b64(&[9u8; 2000])}))
        .await;
    let refused = kibray_frame(&mut chat, "error").await;
    assert_eq!(refused["code"], "INVALID_MESSAGE", "{refused}");
    assert_eq!(files_dir(&dir).temporary, Vec::<String>::new());

    // The socket closing abandons one in progress.
    let mut other = kibray_chat(&t, "alice", "up").await;
    other
        .send(json!({"type": "upload_file", "file_name": "x.bin", "file_size": 100_000, "file_type": "application/octet-stream"}))
        .await;
    let id = kibray_frame(&mut other, "upload_started").await["upload_id"].clone();
    other
        .send(json!({"type": "upload_chunk", "upload_id": id, "chunk_index": 0, "chunk_data": b64(&[1u8; 1000])}))
        .await;
    kibray_frame(&mut other, "upload_progress").await;
    assert_eq!(files_dir(&dir).temporary.len(), 1);
    drop(other);
    drop(chat);
    until("the abandoned upload's removal", || {
        files_dir(&dir) == FilesDir::default()
    })
    .await;
    t.server.stop().await;
}

/// An upload whose message cannot be posted once its file is complete (the uploader was
/// removed from the room meanwhile) leaves nothing behind: no record, no content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_refused_at_the_end_leaves_no_content() {
    let t = Team::start(TEAM).await;
    t.create_room("bob", "up", "private").await;
    t.add_member("bob", "up", "alice").await;
    let dir = t.server.data_dir.clone();
    let body = vec![5u8; 100_000];
    let mut stream = start_raw_upload(&t, "alice", "late.bin", body.len()).await;
    stream.write_all(&body[..50_000]).await.expect("body");
    until("the upload's temporary file", || {
        files_dir(&dir).temporary.len() == 1
    })
    .await;
    let removed = t.delete("bob", "/api/v1/rooms/up/members/alice").await;
    assert_eq!(removed.status, 200, "{:?}", removed.json);
    stream.write_all(&body[50_000..]).await.expect("body");
    let answer = answer_then_close_or_keep(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(files_dir(&dir), FilesDir::default());
    assert_verify_clean(&dir).await;
    t.server.stop().await;
}

/// The head and body of one answer on a connection that may stay open.
async fn answer_then_close_or_keep(stream: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    Deadline::new("the upload's answer")
        .bound(async {
            let mut buffer = [0u8; 4096];
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buffer[..n]),
                }
                let text = String::from_utf8_lossy(&answer);
                if let Some((head, body)) = text.split_once("\r\n\r\n")
                    && let Some(length) = head.lines().find_map(|line| {
                        line.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .and_then(|n| n.trim().parse::<usize>().ok())
                    })
                    && body.len() >= length
                {
                    break;
                }
            }
        })
        .await;
    String::from_utf8_lossy(&answer).into_owned()
}
