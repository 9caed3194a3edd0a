//! The storage facade: everything natter keeps on disk goes through [`Store`], so the engine
//! (sled 0.34 today) can be swapped without touching the core.
//!
//! Reads go straight to sled. Writes go through one writer task (`writer`) that applies them in
//! order and flushes each batch once (group commit): a write's future resolves only after the
//! flush of its batch, so whatever natter acknowledges has reached the disk. What sled's flush
//! promises: the data survives a crash of the process; after a power cut, data written since the
//! last completed flush may be lost (natter acknowledges nothing before that flush).

mod backup;
mod files;
mod inbox;
pub mod keys;
mod lookups;
mod rooms;
mod sessions;
mod users;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use crate::config::StoreConfig;
use crate::error::Error;
pub use crate::error::StoreError;

pub use backup::{BackupSummary, META_EPOCH, VerifyReport, restore, verify_backup};
pub use files::StoredFile;
pub use inbox::{Notification, QueuedDirectMessage};
pub use rooms::{Appended, Membership, Message, NewRoom, Room, Visibility};
pub use sessions::{Family, Rotation};
pub use users::User;

/// The on-disk layout version this build writes. Opening a store with a higher version fails.
///
/// 2: a room record's `last_seq` is a floor, refreshed lazily; the room's last sequence number
/// is the larger of it and its newest message's (see `store::rooms`). A version-1 build would trust
/// the stale floor and reuse sequence numbers, so it must refuse such a store. Version-1 stores
/// (whose records are exact) are upgraded in place on open.
pub const SCHEMA_VERSION: u32 = 2;

const META_SCHEMA: &[u8] = b"schema_version";

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match &e {
            sled::Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                StoreError::Full(e.to_string())
            }
            _ => StoreError::Engine(e.to_string()),
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Store(e.into())
    }
}

/// The sled trees. Key layouts are in [`keys`].
pub struct Trees {
    /// Store-wide values: schema version, id counters.
    pub meta: sled::Tree,
    /// user id (16 bytes) -> [`User`] JSON.
    pub users: sled::Tree,
    /// username -> user id.
    pub usernames: sled::Tree,
    /// room id (u64 BE) -> [`Room`] JSON.
    pub rooms: sled::Tree,
    /// room name -> room id.
    pub room_names: sled::Tree,
    /// room id + user id -> membership JSON.
    pub memberships: sled::Tree,
    /// user id + room id -> empty (reverse index of `memberships`).
    pub user_rooms: sled::Tree,
    /// room id + per-room sequence (both u64 BE) -> [`Message`] JSON.
    pub messages: sled::Tree,
    /// user id + family id -> [`Family`] JSON (refresh-token families and their revocation).
    pub families: sled::Tree,
    /// room id + author id + client_msg_id -> sequence (idempotent Send).
    pub client_ids: sled::Tree,
    /// user id + u64 -> queued direct message JSON, for users who were offline.
    pub dm_queue: sled::Tree,
    /// user id + u64 -> [`Notification`] JSON (the inbox).
    pub notifications: sled::Tree,
    /// external issuer + NUL + its user id -> natter user id (users of `auth.external` issuers).
    pub external_ids: sled::Tree,
    /// Each room's last sequence number, kept by the writer so that a Send writes one entry
    /// (the message) instead of the message plus a rewritten room record.
    pub(crate) sequences: rooms::Sequences,
    /// In-memory copies of the rooms, memberships and avatars a Send reads, dropped by every
    /// write that changes them.
    pub(crate) lookups: lookups::Lookups,
}

impl Trees {
    /// Next value of a named counter in `meta`, starting at 1. Only called on the writer task,
    /// which serializes writes, so read-increment-write is race-free.
    pub fn next_counter(&self, name: &[u8]) -> Result<u64, Error> {
        let current = match self.meta.get(name)? {
            Some(raw) => keys::u64_at(&raw, 0).unwrap_or(1),
            None => 1,
        };
        self.meta.insert(name, &(current + 1).to_be_bytes())?;
        Ok(current)
    }
}

struct Inner {
    db: sled::Db,
    trees: Arc<Trees>,
    writer: mpsc::Sender<writer::Command>,
    data_dir: PathBuf,
    metrics: Arc<crate::metrics::Metrics>,
    /// Held for the life of the store: a second natter on the same data dir fails fast with a
    /// clear message instead of sled's lock error.
    _lock: File,
}

/// A cheap, cloneable handle to the open store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens (creating if needed) the store in `config.data_dir` and starts its writer task.
    /// Must be called inside a tokio runtime.
    pub fn open(
        config: &StoreConfig,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Store, StoreError> {
        let data_dir = config.data_dir.clone();
        let open_err = |detail: String| StoreError::Open {
            path: data_dir.clone(),
            detail,
        };
        create_private_dir(&data_dir).map_err(|e| open_err(e.to_string()))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join("natter.lock"))
            .map_err(|e| open_err(format!("cannot create lock file: {e}")))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(data_dir.clone()));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(open_err(format!("cannot lock: {e}")));
            }
        }
        let flush_every = (config.flush_every_ms > 0).then_some(config.flush_every_ms);
        let db = sled::Config::new()
            .path(data_dir.join("db"))
            .cache_capacity(config.cache_capacity_mb.saturating_mul(1024 * 1024))
            .flush_every_ms(flush_every)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked(data_dir.clone())
                }
                other => open_err(other.to_string()),
            })?;
        let trees = Arc::new(Trees {
            meta: db.open_tree("meta")?,
            users: db.open_tree("users")?,
            usernames: db.open_tree("usernames")?,
            rooms: db.open_tree("rooms")?,
            room_names: db.open_tree("room_names")?,
            memberships: db.open_tree("memberships")?,
            user_rooms: db.open_tree("user_rooms")?,
            messages: db.open_tree("messages")?,
            families: db.open_tree("families")?,
            client_ids: db.open_tree("client_ids")?,
            dm_queue: db.open_tree("dm_queue")?,
            notifications: db.open_tree("notifications")?,
            external_ids: db.open_tree("external_ids")?,
            sequences: rooms::Sequences::default(),
            lookups: lookups::Lookups::default(),
        });
        check_schema(&trees.meta, &data_dir)?;
        let writer = writer::spawn(db.clone(), trees.clone(), config.max_batch, metrics.clone());
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                trees,
                writer,
                data_dir,
                metrics,
                _lock: lock,
            }),
        })
    }

    /// The server's metrics, as handed to [`Store::open`].
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Read access to the trees. Writes must go through [`Store::write`].
    pub fn trees(&self) -> &Trees {
        &self.inner.trees
    }

    /// Runs `op` on the writer task and resolves once the batch it landed in is flushed to disk.
    /// `op` runs alone (writes are serialized), so read-check-write inside it is race-free.
    pub async fn write<R, F>(&self, op: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&Trees) -> Result<R, Error> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: writer::Job = Box::new(move |trees: &Trees| {
            let outcome = op(trees);
            Box::new(move |flushed: Result<(), StoreError>| {
                let result = match (outcome, flushed) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(Error::Store(e)),
                };
                // The caller may have gone away; the write is durable either way.
                let _ = reply_tx.send(result);
            })
        });
        self.inner
            .writer
            .send(writer::Command::Write(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Lets queued writes finish, flushes, and stops the writer. Later writes fail with `Closed`.
    pub async fn close(&self) -> Result<(), StoreError> {
        // Room records get their exact last_seq back, so that a cleanly closed store reads the
        // same to anyone (a floor is all correctness needs; this is for people and tools).
        match self.write(|t| t.persist_last_seqs()).await {
            Ok(()) | Err(Error::Store(StoreError::Closed)) => {}
            Err(e) => tracing::warn!(error = %e, "cannot refresh the rooms' last_seq on close"),
        }
        let (tx, rx) = oneshot::channel();
        if self
            .inner
            .writer
            .send(writer::Command::Close(tx))
            .await
            .is_err()
        {
            return Ok(()); // already closed
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// A cheap liveness probe of the engine, for `/readyz`.
    pub fn is_healthy(&self) -> bool {
        !self.inner.writer.is_closed() && self.inner.trees.meta.get(META_SCHEMA).is_ok()
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }
}

/// Creates the data dir with mode 0700 if it does not exist: it holds secrets.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

fn check_schema(meta: &sled::Tree, path: &Path) -> Result<(), StoreError> {
    match meta.get(META_SCHEMA)? {
        None => {
            meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
            meta.flush()?;
            Ok(())
        }
        Some(raw) => {
            let found = <[u8; 4]>::try_from(raw.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    tree: "meta",
                    detail: "schema_version is not 4 bytes".to_owned(),
                })?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    path: path.to_path_buf(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            if found < SCHEMA_VERSION {
                // Version 1 -> 2 needs no rewrite (exact last_seq records are valid floors);
                // recording 2 before anything is written keeps older builds out.
                meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                meta.flush()?;
            }
            Ok(())
        }
    }
}

/// Decodes a JSON record, naming the tree when it is corrupt.
pub(crate) fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Store(StoreError::Corrupt {
            tree,
            detail: e.to_string(),
        })
    })
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Internal(format!("cannot encode record: {e}")))
}

/// Largest scratch buffer [`insert_record`] keeps between records: a rare big record (many
/// attachments) does not pin its buffer for the life of the thread.
const SCRATCH_KEEP: usize = 64 * 1024;

/// Encodes `value` as JSON and inserts it under `key`. The JSON goes to a buffer kept per thread,
/// so a record costs sled's one copy, not a growing `Vec`'s reallocations and then sled's copy
/// (the message log's every Send).
pub(crate) fn insert_record<K: AsRef<[u8]>, T: Serialize>(
    tree: &sled::Tree,
    key: K,
    value: &T,
) -> Result<(), Error> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|buffer| {
        buffer.clear();
        let inserted = serde_json::to_writer(&mut *buffer, value)
            .map_err(|e| Error::Internal(format!("cannot encode record: {e}")))
            .and_then(|()| {
                tree.insert(key, buffer.as_slice())?;
                Ok(())
            });
        if buffer.capacity() > SCRATCH_KEEP {
            *buffer = Vec::new();
        }
        inserted
    })
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> StoreConfig {
        StoreConfig {
            data_dir: dir.to_path_buf(),
            ..StoreConfig::default()
        }
    }

    #[tokio::test]
    async fn second_open_reports_lock_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&config(dir.path()), Default::default()).expect("first open");
        let err = Store::open(&config(dir.path()), Default::default())
            .err()
            .expect("second open must fail");
        assert!(matches!(err, StoreError::Locked(_)), "{err}");
        assert!(err.to_string().contains("already running"), "{err}");
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(&config(dir.path()), Default::default()).expect("open");
            store
                .trees()
                .meta
                .insert(META_SCHEMA, &99u32.to_be_bytes())
                .expect("insert");
            store.close().await.expect("close");
        }
        let err = Store::open(&config(dir.path()), Default::default())
            .err()
            .expect("must refuse");
        assert!(err.to_string().contains("newer natter"), "{err}");
    }

    #[tokio::test]
    async fn writes_wait_out_a_pause_and_every_acked_write_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            &StoreConfig {
                max_batch: 4,
                ..config(dir.path())
            },
            Default::default(),
        )
        .expect("open");
        // Many small batches, so that batches are applied while earlier ones flush.
        let mut first = Vec::new();
        for i in 0u32..100 {
            let store = store.clone();
            first.push(tokio::spawn(async move {
                store
                    .write(move |t| {
                        t.meta.insert(format!("a{i}"), &i.to_be_bytes())?;
                        Ok(())
                    })
                    .await
            }));
        }
        for task in first {
            task.await.expect("join").expect("write");
        }
        let pause = store.pause_writes().await.expect("pause");
        let queued = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(|t| {
                        t.meta.insert("after-pause", b"1".as_slice())?;
                        Ok(())
                    })
                    .await
            })
        };
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(
            store
                .trees()
                .meta
                .get("after-pause")
                .expect("get")
                .is_none(),
            "nothing is applied while paused"
        );
        assert!(!queued.is_finished());
        drop(pause);
        queued.await.expect("join").expect("write");
        store.close().await.expect("close");
        drop(store);
        let store = Store::open(&config(dir.path()), Default::default()).expect("reopen");
        for i in 0u32..100 {
            assert!(
                store
                    .trees()
                    .meta
                    .get(format!("a{i}"))
                    .expect("get")
                    .is_some()
            );
        }
        assert!(
            store
                .trees()
                .meta
                .get("after-pause")
                .expect("get")
                .is_some()
        );
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_version_1_store_is_upgraded_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(&config(dir.path()), Default::default()).expect("open");
            store
                .trees()
                .meta
                .insert(META_SCHEMA, &1u32.to_be_bytes())
                .expect("insert");
            store.close().await.expect("close");
        }
        let store = Store::open(&config(dir.path()), Default::default()).expect("reopen");
        let raw = store.trees().meta.get(META_SCHEMA).expect("get");
        assert_eq!(
            raw.as_deref(),
            Some(SCHEMA_VERSION.to_be_bytes().as_slice())
        );
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn concurrent_writes_are_group_committed_and_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&config(dir.path()), Default::default()).expect("open");
        let mut tasks = Vec::new();
        for i in 0u32..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .write(move |t| {
                        t.meta.insert(format!("k{i}"), &i.to_be_bytes())?;
                        Ok(i)
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await.expect("join").expect("write");
        }
        store.close().await.expect("close");
        assert!(
            store.write(|_| Ok(())).await.is_err(),
            "closed store refuses writes"
        );
        drop(store);
        let store = Store::open(&config(dir.path()), Default::default()).expect("reopen");
        for i in 0u32..200 {
            assert!(
                store
                    .trees()
                    .meta
                    .get(format!("k{i}"))
                    .expect("get")
                    .is_some()
            );
        }
        store.close().await.expect("close");
    }
}
