//! Online backup, offline restore and integrity verification of the store.
//!
//! A backup is one file: a text header line, then length-prefixed records (every entry of every
//! sled tree, every uploaded file, the signing secret when it lives in the data dir), then a
//! trailer with the SHA-256 of everything before it. It is taken while the daemon serves: the
//! writer is paused (writes queue, reads go on) for as long as the dump takes, so the file is
//! one consistent point in time. Restore checks the whole file before it writes anything, and
//! bumps the store's epoch so resuming clients can tell the history was rewound.
//!
//! The content digest ([`ContentDigest`]) is computed the same way from a backup and from a
//! store, so "the restored store holds exactly what the backup held" is one comparison.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{META_SCHEMA, SCHEMA_VERSION, SledStore, StoreError, keys};
use crate::error::Error;
use crate::sha256::Sha256;

const MAGIC: &[u8] = b"NATTER-BACKUP 1\n";
const KIND_END: u8 = 0;
const KIND_ENTRY: u8 = 1;
const KIND_FILE: u8 = 2;
const KIND_SECRET: u8 = 3;
/// `meta` key of the store's epoch: bumped by every restore.
pub const META_EPOCH: &[u8] = b"epoch";
/// Longest tree name, key, or file name a backup may hold; values and files up to `MAX_VALUE`.
const MAX_NAME: u32 = 4096;
const MAX_VALUE: u32 = 256 * 1024 * 1024;
/// Files a backup carries: `<data_dir>/files/*` (uploads).
const FILES_DIR: &str = "files";

/// What a backup holds, as reported by `backup`, `restore` and `verify --backup`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackupSummary {
    /// Entries per sled tree.
    pub trees: BTreeMap<String, u64>,
    pub files: u64,
    pub bytes: u64,
    /// Digest of the content, comparable with a store's ([`VerifyReport::digest`]).
    pub digest: String,
    /// The store's epoch when the backup was taken.
    pub epoch: u64,
}

/// What `verify` found in a store.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub trees: BTreeMap<String, u64>,
    pub files: u64,
    pub digest: String,
    pub epoch: u64,
    /// Everything that is not as it should be; empty for a healthy store.
    pub problems: Vec<String>,
}

/// SHA-256 over every (tree, key, value) in tree-then-key order and every (file name, content),
/// leaving out the epoch (a restore changes it on purpose).
#[derive(Default)]
struct ContentDigest {
    hasher: Sha256,
}

impl ContentDigest {
    fn entry(&mut self, tree: &[u8], key: &[u8], value: &[u8]) {
        if tree == b"meta" && key == META_EPOCH {
            return;
        }
        for part in [tree, key, value] {
            self.hasher.update((part.len() as u64).to_be_bytes());
            self.hasher.update(part);
        }
    }

    fn file(&mut self, name: &[u8], content: &[u8]) {
        self.entry(b"\0file", name, content);
    }

    fn finish(self) -> String {
        hex(&self.hasher.finalize())
    }
}

/// Writes records and hashes everything written.
struct RecordWriter<W: Write> {
    out: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> RecordWriter<W> {
    fn raw(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        self.out.write_all(data)
    }

    fn record(&mut self, kind: u8, parts: &[&[u8]]) -> std::io::Result<()> {
        self.raw(&[kind])?;
        for part in parts {
            let len = u32::try_from(part.len()).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "record too large")
            })?;
            self.raw(&len.to_be_bytes())?;
            self.raw(part)?;
        }
        Ok(())
    }
}

fn epoch_of(meta: &sled::Tree) -> Result<u64, Error> {
    Ok(meta
        .get(META_EPOCH)?
        .and_then(|raw| keys::u64_at(&raw, 0))
        .unwrap_or(0))
}

impl SledStore {
    /// The store's epoch: 0 until the first restore, then one more with every restore.
    pub fn epoch(&self) -> u64 {
        self.trees()
            .and_then(|trees| epoch_of(&trees.meta))
            .unwrap_or(0)
    }

    /// Writes a consistent backup of the whole store to `target` (mode 0600, written to a
    /// temporary name and renamed, so a failed backup leaves no partial file) while serving.
    /// `secret` is the signing secret's path, included when it lives in the data dir.
    pub async fn backup(&self, target: &Path, secret: &Path) -> Result<BackupSummary, Error> {
        let pause = self.pause_writes().await?;
        let db = self.db()?;
        let data_dir = self.data_dir().to_path_buf();
        let target = target.to_path_buf();
        let secret = secret.starts_with(&data_dir).then(|| secret.to_path_buf());
        let summary = tokio::task::spawn_blocking(move || {
            let summary = write_backup(&db, &data_dir, secret.as_deref(), &target);
            drop(pause);
            summary
        })
        .await
        .map_err(|e| Error::Internal(format!("backup task failed: {e}")))??;
        Ok(summary)
    }

    /// Checks every record of the store: that it decodes, that indexes agree with what they
    /// index, that each room's messages form a gapless run, that stored files match their hash.
    /// Also reports what `files/` holds that no record names, and temporary files of no upload
    /// in progress (left by a crash; both are removed when natter starts).
    pub async fn verify(&self) -> Result<VerifyReport, Error> {
        // Uploads put no content in place meanwhile (taken before the pause: an upload holding
        // its share waits for its record's write).
        let files = self.inner.files.exclusive().await;
        let pause = self.pause_writes().await?;
        let incoming = self.inner.files.incoming();
        let db = self.db()?;
        let data_dir = self.data_dir().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let report = verify_db(&db, &data_dir, &incoming);
            drop(pause);
            drop(files);
            report
        })
        .await
        .map_err(|e| Error::Internal(format!("verify task failed: {e}")))?
    }

    pub(super) async fn pause_writes(&self) -> Result<super::writer::Pause, Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .writer
            .send(super::writer::Command::Pause(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(rx.await.map_err(|_| StoreError::Closed)?)
    }
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{what} {}: {e}", path.display()))
}

fn write_backup(
    db: &sled::Db,
    data_dir: &Path,
    secret: Option<&Path>,
    target: &Path,
) -> Result<BackupSummary, Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let partial = target.with_extension("partial");
    let file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| io_err("cannot create", &partial, e))?;
    let result = (|| {
        let mut out = RecordWriter {
            out: BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let mut digest = ContentDigest::default();
        let mut trees = BTreeMap::new();
        let werr = |e: std::io::Error| io_err("cannot write", &partial, e);
        out.raw(MAGIC).map_err(werr)?;
        let epoch = epoch_of(&db.open_tree("meta")?)?;
        for name in sorted_tree_names(db) {
            let tree = db.open_tree(&name)?;
            let mut count = 0u64;
            for entry in tree.iter() {
                let (key, value) = entry?;
                out.record(KIND_ENTRY, &[&name, &key, &value])
                    .map_err(werr)?;
                digest.entry(&name, &key, &value);
                count += 1;
            }
            trees.insert(String::from_utf8_lossy(&name).into_owned(), count);
        }
        let mut files = 0u64;
        for (name, path) in stored_files(data_dir)? {
            let content = std::fs::read(&path).map_err(|e| io_err("cannot read", &path, e))?;
            out.record(KIND_FILE, &[name.as_bytes(), &content])
                .map_err(werr)?;
            digest.file(name.as_bytes(), &content);
            files += 1;
        }
        if let Some(secret) = secret.filter(|s| s.exists()) {
            let content = std::fs::read(secret).map_err(|e| io_err("cannot read", secret, e))?;
            let name = secret
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.record(KIND_SECRET, &[name.as_bytes(), &content])
                .map_err(werr)?;
        }
        out.raw(&[KIND_END]).map_err(werr)?;
        let checksum = out.hasher.clone().finalize();
        out.out.write_all(&checksum).map_err(werr)?;
        let bytes = out.bytes + checksum.len() as u64;
        let file = out
            .out
            .into_inner()
            .map_err(|e| io_err("cannot write", &partial, e.error()))?;
        file.sync_all().map_err(werr)?;
        Ok(BackupSummary {
            trees,
            files,
            bytes,
            digest: digest.finish(),
            epoch,
        })
    })();
    match result {
        Ok(summary) => {
            std::fs::rename(&partial, target).map_err(|e| io_err("cannot rename to", target, e))?;
            if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Every tree but sled's internal default tree, in name order.
fn sorted_tree_names(db: &sled::Db) -> Vec<sled::IVec> {
    let mut names: Vec<sled::IVec> = db
        .tree_names()
        .into_iter()
        .filter(|name| name.as_ref() != b"__sled__default")
        .collect();
    names.sort();
    names
}

/// `(name relative to the data dir, path)` of every uploaded file, sorted.
fn stored_files(data_dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let dir = data_dir.join(FILES_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot list", &dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("cannot list", &dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Partial uploads being written have a temporary name; only finished files count.
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) && is_sha256_hex(&name) {
            files.push((format!("{FILES_DIR}/{name}"), entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

fn is_sha256_hex(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One record read back from a backup.
enum Record {
    Entry {
        tree: Vec<u8>,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    File {
        name: String,
        content: Vec<u8>,
    },
    Secret {
        content: Vec<u8>,
    },
}

/// Reads a backup, checking its framing; the checksum is checked by [`read_backup`] at the end.
struct RecordReader<R: Read> {
    input: R,
    hasher: Sha256,
}

impl<R: Read> RecordReader<R> {
    fn exact(&mut self, len: usize) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; len];
        self.input
            .read_exact(&mut buf)
            .map_err(|e| format!("truncated backup: {e}"))?;
        self.hasher.update(&buf);
        Ok(buf)
    }

    fn part(&mut self, max: u32) -> Result<Vec<u8>, String> {
        let len = self.exact(4)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        if len > max {
            return Err(format!("record of {len} bytes is larger than allowed"));
        }
        self.exact(len as usize)
    }

    fn next(&mut self) -> Result<Option<Record>, String> {
        let kind = self.exact(1)?[0];
        let record = match kind {
            KIND_END => return Ok(None),
            KIND_ENTRY => Record::Entry {
                tree: self.part(MAX_NAME)?,
                key: self.part(MAX_NAME)?,
                value: self.part(MAX_VALUE)?,
            },
            KIND_FILE | KIND_SECRET => {
                let name = String::from_utf8(self.part(MAX_NAME)?)
                    .map_err(|_| "file name is not UTF-8".to_owned())?;
                let content = self.part(MAX_VALUE)?;
                if kind == KIND_FILE {
                    Record::File { name, content }
                } else {
                    Record::Secret { content }
                }
            }
            other => return Err(format!("unknown record kind {other}")),
        };
        Ok(Some(record))
    }
}

/// Reads a whole backup, handing each record to `each`, and checks the trailer. Nothing handed
/// out may be trusted before this returns `Ok`: [`restore`] reads the file twice for that reason.
fn read_backup(
    path: &Path,
    mut each: impl FnMut(Record) -> Result<(), Error>,
) -> Result<BackupSummary, Error> {
    let bad = |detail: String| Error::BadRequest(format!("{}: {detail}", path.display()));
    let file = File::open(path).map_err(|e| io_err("cannot open", path, e))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = RecordReader {
        input: BufReader::with_capacity(256 * 1024, file),
        hasher: Sha256::new(),
    };
    let magic = reader
        .exact(MAGIC.len())
        .map_err(|_| bad("not a natter backup".to_owned()))?;
    if magic != MAGIC {
        return Err(bad("not a natter backup (or of a newer version)".to_owned()));
    }
    let mut trees = BTreeMap::new();
    let mut digest = ContentDigest::default();
    let mut files = 0u64;
    let mut epoch = 0;
    while let Some(record) = reader.next().map_err(bad)? {
        match &record {
            Record::Entry { tree, key, value } => {
                *trees
                    .entry(String::from_utf8_lossy(tree).into_owned())
                    .or_insert(0) += 1;
                digest.entry(tree, key, value);
                if tree == b"meta" && key == META_EPOCH {
                    epoch = keys::u64_at(value, 0).unwrap_or(0);
                }
            }
            Record::File { name, content } => {
                digest.file(name.as_bytes(), content);
                files += 1;
            }
            Record::Secret { .. } => {}
        }
        each(record)?;
    }
    let expected = reader.hasher.clone().finalize();
    let mut trailer = [0u8; 32];
    reader
        .input
        .read_exact(&mut trailer)
        .map_err(|_| bad("truncated backup: no checksum".to_owned()))?;
    if trailer[..] != expected[..] {
        return Err(bad("checksum mismatch: the backup is damaged".to_owned()));
    }
    let mut rest = [0u8; 1];
    if reader.input.read(&mut rest).unwrap_or(0) != 0 {
        return Err(bad("data after the checksum".to_owned()));
    }
    Ok(BackupSummary {
        trees,
        files,
        bytes,
        digest: digest.finish(),
        epoch,
    })
}

/// Checks a backup file end to end without writing anything.
pub fn verify_backup(path: &Path) -> Result<BackupSummary, Error> {
    read_backup(path, |_| Ok(()))
}

/// Restores a backup into `data_dir`, which must not hold a store yet. The file is verified in
/// full first; then every record is written, the epoch is bumped past the backup's, and the
/// store is flushed. `secret` is where the signing secret belongs (restored only if the backup
/// carries one and nothing is there yet).
pub fn restore(path: &Path, data_dir: &Path, secret: &Path) -> Result<BackupSummary, Error> {
    let summary = verify_backup(path)?;
    if data_dir.join("db").exists() {
        return Err(Error::Conflict(format!(
            "{} already holds a store: restore into a new data dir, or move it aside first",
            data_dir.display()
        )));
    }
    super::engine::create_private_dir(data_dir)
        .map_err(|e| io_err("cannot create", data_dir, e))?;
    let db = sled::Config::new()
        .path(data_dir.join("db"))
        .flush_every_ms(None)
        .open()?;
    let files_dir = data_dir.join(FILES_DIR);
    read_backup(path, |record| {
        match record {
            Record::Entry { tree, key, value } => {
                db.open_tree(tree)?.insert(key, value)?;
            }
            Record::File { name, content } => {
                let Some(file_name) = name.strip_prefix("files/").filter(|n| is_sha256_hex(n))
                else {
                    return Err(Error::BadRequest(format!(
                        "unexpected file {name} in backup"
                    )));
                };
                super::engine::create_private_dir(&files_dir)
                    .map_err(|e| io_err("cannot create", &files_dir, e))?;
                let target = files_dir.join(file_name);
                std::fs::write(&target, &content)
                    .map_err(|e| io_err("cannot write", &target, e))?;
            }
            Record::Secret { content, .. } => {
                if !secret.exists() {
                    write_private(secret, &content)?;
                }
            }
        }
        Ok(())
    })?;
    let meta = db.open_tree("meta")?;
    if meta.get(META_SCHEMA)?.is_none() {
        meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
    }
    meta.insert(META_EPOCH, &(summary.epoch + 1).to_be_bytes())?;
    db.flush()?;
    Ok(summary)
}

fn write_private(path: &Path, content: &[u8]) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err("cannot create", path, e))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err("cannot write", path, e))
}

fn verify_db(
    db: &sled::Db,
    data_dir: &Path,
    incoming: &std::collections::HashSet<String>,
) -> Result<VerifyReport, Error> {
    use super::{Family, Membership, Message, Room, StoredFile, User, decode};
    let mut problems = Vec::new();
    let mut trees = BTreeMap::new();
    let mut digest = ContentDigest::default();
    for name in sorted_tree_names(db) {
        let tree = db.open_tree(&name)?;
        let mut count = 0u64;
        for entry in tree.iter() {
            let (key, value) = entry?;
            digest.entry(&name, &key, &value);
            count += 1;
        }
        trees.insert(String::from_utf8_lossy(&name).into_owned(), count);
    }
    let mut files = 0u64;
    for (name, path) in stored_files(data_dir)? {
        let content = std::fs::read(&path).map_err(|e| io_err("cannot read", &path, e))?;
        digest.file(name.as_bytes(), &content);
        files += 1;
        let actual = hex(&Sha256::digest(&content));
        if !name.ends_with(&actual) {
            problems.push(format!("{name}: content does not match its SHA-256 name"));
        }
    }
    let mut note = |problem: String| {
        if problems.len() < 100 {
            problems.push(problem);
        }
    };

    let users = db.open_tree("users")?;
    let usernames = db.open_tree("usernames")?;
    let mut user_ids = std::collections::HashSet::new();
    for entry in users.iter() {
        let (key, raw) = entry?;
        match decode::<User>("users", &raw) {
            Ok(user) => {
                user_ids.insert(user.id);
                if key.as_ref() != user.id.as_bytes() {
                    note(format!(
                        "users: record of {} is under another key",
                        user.username
                    ));
                }
                if usernames.get(user.username.as_bytes())?.as_deref() != Some(user.id.as_bytes()) {
                    note(format!("usernames: no index entry for {}", user.username));
                }
            }
            Err(e) => note(e.to_string()),
        }
    }
    if usernames.len() != users.len() {
        note(format!(
            "usernames: {} index entries for {} users",
            usernames.len(),
            users.len()
        ));
    }

    let rooms = db.open_tree("rooms")?;
    let room_names = db.open_tree("room_names")?;
    let mut room_ids = std::collections::HashSet::new();
    for entry in rooms.iter() {
        let (_, raw) = entry?;
        match decode::<Room>("rooms", &raw) {
            Ok(room) => {
                room_ids.insert(room.id);
                if room_names.get(room.name.as_bytes())?.as_deref() != Some(&keys::room(room.id)) {
                    note(format!("room_names: no index entry for {}", room.name));
                }
            }
            Err(e) => note(e.to_string()),
        }
    }
    if room_names.len() != rooms.len() {
        note(format!(
            "room_names: {} index entries for {} rooms",
            room_names.len(),
            rooms.len()
        ));
    }

    // A room's last sequence number is its newest message's (or its record's floor, if larger:
    // see store::rooms), so it bounds nothing here; what must hold is that each room's messages
    // form one gapless run (sequences only grow; purges take the oldest first).
    let file_refs = db.open_tree("file_refs")?;
    let mut previous: Option<(u64, u64)> = None;
    for entry in db.open_tree("messages")?.iter() {
        let (key, raw) = entry?;
        match decode::<Message>("messages", &raw) {
            Ok(message) => {
                for file in &message.attachments {
                    if !file_refs.contains_key(keys::file_ref(
                        message.room_id,
                        file.id,
                        message.seq,
                    ))? {
                        note(format!(
                            "file_refs: no entry for file {} of message {}/{}",
                            file.id, message.room_id, message.seq
                        ));
                    }
                }
                if key.as_ref() != keys::message(message.room_id, message.seq) {
                    note(format!(
                        "messages: message {}/{} is under another key",
                        message.room_id, message.seq
                    ));
                }
                if !room_ids.contains(&message.room_id) {
                    note(format!(
                        "messages: message {} of room {} which does not exist",
                        message.seq, message.room_id
                    ));
                }
                match previous {
                    Some((room, seq))
                        if room == message.room_id && message.seq != seq.saturating_add(1) =>
                    {
                        note(format!(
                            "messages: room {room} jumps from sequence {seq} to {}",
                            message.seq
                        ));
                    }
                    _ if message.seq == 0 => note(format!(
                        "messages: message 0 of room {} (sequences start at 1)",
                        message.room_id
                    )),
                    _ => {}
                }
                previous = Some((message.room_id, message.seq));
            }
            Err(e) => note(e.to_string()),
        }
    }

    let user_rooms = db.open_tree("user_rooms")?;
    let memberships = db.open_tree("memberships")?;
    for entry in memberships.iter() {
        let (key, raw) = entry?;
        if let Err(e) = decode::<Membership>("memberships", &raw) {
            note(e.to_string());
        }
        match (keys::u64_at(&key, 0), keys::uuid_at(&key, 8)) {
            (Some(room), Some(user)) => {
                if !room_ids.contains(&room) {
                    note(format!("memberships: room {room} does not exist"));
                }
                if !user_ids.contains(&user) {
                    note(format!("memberships: user {user} does not exist"));
                }
                if !user_rooms.contains_key(keys::user_room(user, room))? {
                    note(format!(
                        "user_rooms: no index entry for {user} in room {room}"
                    ));
                }
            }
            _ => note("memberships: malformed key".to_owned()),
        }
    }
    if user_rooms.len() != memberships.len() {
        note(format!(
            "user_rooms: {} index entries for {} memberships",
            user_rooms.len(),
            memberships.len()
        ));
    }

    for entry in db.open_tree("families")?.iter() {
        let (_, raw) = entry?;
        if let Err(e) = decode::<Family>("families", &raw) {
            note(e.to_string());
        }
    }
    let files_tree = db.open_tree("files")?;
    let mut named = std::collections::HashSet::new();
    for entry in files_tree.iter() {
        let (_, raw) = entry?;
        match decode::<StoredFile>("files", &raw) {
            Ok(file) => {
                if !data_dir.join(FILES_DIR).join(&file.sha256).is_file() {
                    note(format!("files: content of file {} is missing", file.id));
                }
                named.insert(file.sha256);
            }
            Err(e) => note(e.to_string()),
        }
    }
    let messages = db.open_tree("messages")?;
    for key in file_refs.iter().keys() {
        let key = key?;
        let (Some(room), Some(file), Some(seq)) = (
            keys::u64_at(&key, 0),
            keys::u64_at(&key, 8),
            keys::u64_at(&key, 16),
        ) else {
            note("file_refs: malformed key".to_owned());
            continue;
        };
        let listed = messages
            .get(keys::message(room, seq))?
            .and_then(|raw| decode::<Message>("messages", &raw).ok())
            .is_some_and(|m| m.attachments.iter().any(|f| f.id == file));
        if !listed {
            note(format!(
                "file_refs: message {room}/{seq} does not list file {file}"
            ));
        }
        let recorded = files_tree
            .get(file.to_be_bytes())?
            .and_then(|raw| decode::<StoredFile>("files", &raw).ok())
            .is_some_and(|f| f.room_id == room);
        if !recorded {
            note(format!(
                "file_refs: file {file} listed in room {room} has no record there"
            ));
        }
    }
    super::search::verify_index(db, &mut note)?;
    let listed = super::files::list_files_dir(&data_dir.join(FILES_DIR))?;
    for name in &listed.temporary {
        if !incoming.contains(name) {
            note(format!(
                "{FILES_DIR}/{name}: temporary file of an interrupted upload (removed when natter starts)"
            ));
        }
    }
    for name in &listed.contents {
        if !named.contains(name) {
            note(format!(
                "{FILES_DIR}/{name}: content no file record names (removed when natter starts)"
            ));
        }
    }
    let epoch = epoch_of(&db.open_tree("meta")?)?;
    Ok(VerifyReport {
        trees,
        files,
        digest: digest.finish(),
        epoch,
        problems,
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
