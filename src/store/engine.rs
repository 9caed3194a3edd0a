//! The sled engine behind the [`super::Store`] facade: the trees, opening (lock, schema
//! check), and the one writer task every write goes through (see `writer`). Reads go straight
//! to sled.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{META_SCHEMA, SCHEMA_VERSION, files, keys, lookups, rooms, writer};
use crate::config::StoreConfig;
use crate::error::{Error, StoreError};

/// The sled trees of one open instance of the engine. Key layouts are in [`keys`].
pub(crate) struct Trees {
    /// The instance they belong to.
    pub db: sled::Db,
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
    /// file id (u64 BE) -> [`super::StoredFile`] JSON (see `store::files`).
    pub files: sled::Tree,
    /// room id + file id + sequence (u64 BE each) -> empty: the messages that list a file.
    pub file_refs: sled::Tree,
    /// room id -> empty, for every public room (listing without a scan of all rooms).
    pub public_rooms: sled::Tree,
    /// owner id + room id -> empty, for the rooms created by name (what
    /// `limits.max_rooms_per_user` counts; direct and personal rooms are not in it).
    pub owned_rooms: sled::Tree,
    /// user id -> the totals of the user's direct-message queue; user id + sender id -> that
    /// sender's share (both [`super::inbox::Totals`]).
    pub dm_queue_totals: sled::Tree,
    /// user id -> notifications and unread notifications in the user's inbox (two u64 BE).
    pub notification_counts: sled::Tree,
    /// normalized name + NUL + user id -> empty: every account's username and display name,
    /// as [`super::names::name_key`] folds them (guests may not take them).
    pub account_names: sled::Tree,
    /// invite id (u64 BE) -> [`super::invites::Invite`] JSON: pending invite links.
    pub invites: sled::Tree,
    /// user id + order (u64 BE) -> room id + sequence: the messages that mention the user,
    /// oldest first (see `store::mentions`).
    pub mentions: sled::Tree,
    /// user id + room id + sequence -> order: the same mentions by room (counts per room).
    pub mention_index: sled::Tree,
    /// user id -> how many mentions of the user are kept (u64 BE).
    pub mention_counts: sled::Tree,
    /// room id + term + NUL + sequence -> empty: the full-text index (see `store::search`).
    pub search: sled::Tree,
    pub webhook_endpoints: sled::Tree,
    pub webhook_outbox: sled::Tree,
    pub webhook_queues: sled::Tree,
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

pub(super) struct Inner {
    pub(super) live: Arc<Live>,
    pub(super) writer: mpsc::Sender<writer::Command>,
    data_dir: PathBuf,
    /// What the files directory needs besides its contents (see `store::files`).
    pub(super) files: files::FileState,
    /// Held for the life of the store: a second natter on the same data dir fails fast with a
    /// clear message instead of sled's lock error.
    /// Which webhook endpoints take which events (see `store::webhooks`).
    pub(super) webhook_routes: std::sync::RwLock<Arc<super::WebhookRoutes>>,
    _lock: File,
}

/// The engine's open instance, and whether writes fail. Shared by the readers and the writer.
///
/// sled 0.34 keeps the first I/O error of an open instance (a full disk's ENOSPC, say) for
/// the life of that instance: every later flush fails with it, even once the disk has room. The
/// writer therefore treats a failed flush as a state: it refuses writes (nothing applied, so
/// nothing unflushed is acknowledged or kept), reports it (`/readyz`), and once the disk has
/// room again it reopens the engine (what a restart would do: sled recovers to its last
/// completed flush) and proves a write durable before it takes writes again. While it reopens
/// there is no instance: reads fail with `unavailable` for those moments instead of blocking.
#[derive(Default)]
pub(super) struct Live {
    trees: std::sync::RwLock<Option<Arc<Trees>>>,
    failure: std::sync::Mutex<Option<StoreError>>,
}

impl Live {
    /// The open instance; `unavailable` while the writer reopens it.
    pub(super) fn trees(&self) -> Result<Arc<Trees>, Error> {
        self.trees
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                Error::Unavailable("the store is reopening after a write failure".to_owned())
            })
    }

    pub(super) fn set_trees(&self, trees: Option<Arc<Trees>>) {
        *self
            .trees
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = trees;
    }

    /// Why writes fail, while they do.
    pub(super) fn failure(&self) -> Option<StoreError> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set_failure(&self, failure: Option<StoreError>) {
        *self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = failure;
    }
}

/// The sled engine: a cheap, cloneable handle to the open store.
#[derive(Clone)]
pub(crate) struct SledStore {
    pub(super) inner: Arc<Inner>,
}

/// Opens the engine in `config.data_dir` (whose lock natter holds) and checks its schema.
pub(super) fn open_trees(config: &StoreConfig) -> Result<Arc<Trees>, StoreError> {
    let data_dir = config.data_dir.clone();
    let open_err = |detail: String| StoreError::Open {
        path: data_dir.clone(),
        detail,
    };
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
        files: db.open_tree("files")?,
        file_refs: db.open_tree("file_refs")?,
        public_rooms: db.open_tree("public_rooms")?,
        owned_rooms: db.open_tree("owned_rooms")?,
        dm_queue_totals: db.open_tree("dm_queue_totals")?,
        notification_counts: db.open_tree("notification_counts")?,
        account_names: db.open_tree("account_names")?,
        invites: db.open_tree("invites")?,
        mentions: db.open_tree("mentions")?,
        mention_index: db.open_tree("mention_index")?,
        mention_counts: db.open_tree("mention_counts")?,
        search: db.open_tree("search")?,
        webhook_endpoints: db.open_tree("webhook_endpoints")?,
        webhook_outbox: db.open_tree("webhook_outbox")?,
        webhook_queues: db.open_tree("webhook_queues")?,
        sequences: rooms::Sequences::default(),
        lookups: lookups::Lookups::default(),
        db,
    });
    check_schema(&trees, &data_dir)?;
    files::index_file_refs(&trees.db, &trees).map_err(|e| open_err(e.to_string()))?;
    Ok(trees)
}

impl SledStore {
    /// Opens (creating if needed) the store in `config.data_dir` and starts its writer task.
    /// Must be called inside a tokio runtime.
    pub fn open(
        config: &StoreConfig,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<SledStore, StoreError> {
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
        create_store_dir(&data_dir.join("db")).map_err(|e| open_err(e.to_string()))?;
        let trees = open_trees(config)?;
        let live = Arc::new(Live::default());
        live.set_trees(Some(trees.clone()));
        let writer = writer::spawn(live.clone(), trees, config.clone(), metrics);
        Ok(SledStore {
            inner: Arc::new(Inner {
                live,
                writer,
                data_dir,
                files: files::FileState::default(),
                webhook_routes: std::sync::RwLock::default(),
                _lock: lock,
            }),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Read access to the trees. Writes must go through [`SledStore::write`]. `unavailable`
    /// while the engine is reopened after a write failure (see [`Live`]).
    pub(crate) fn trees(&self) -> Result<Arc<Trees>, Error> {
        self.inner.live.trees()
    }

    /// The open instance of the engine (see [`SledStore::trees`]).
    pub(crate) fn db(&self) -> Result<sled::Db, Error> {
        Ok(self.trees()?.db.clone())
    }

    /// Why writes fail, while they do (a full disk, an I/O error): `/readyz` says so.
    pub fn write_failure(&self) -> Option<StoreError> {
        self.inner.live.failure()
    }

    /// Runs `op` on the writer task and resolves once the batch it landed in is flushed to disk.
    /// `op` runs alone (writes are serialized), so read-check-write inside it is race-free.
    pub async fn write<R, F>(&self, op: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&Trees) -> Result<R, Error> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: writer::Job = Box::new(move |trees: Result<&Trees, StoreError>| {
            let trees = match trees {
                Ok(trees) => trees,
                Err(refused) => {
                    // Not applied at all: writes are refused while the store fails.
                    let _ = reply_tx.send(Err(Error::Store(refused)));
                    return None;
                }
            };
            let outcome = op(trees);
            let completion: writer::Completion =
                Box::new(move |flushed: Result<(), StoreError>| {
                    let result = match (outcome, flushed) {
                        (Ok(value), Ok(())) => Ok(value),
                        (Err(e), _) => Err(e),
                        (Ok(_), Err(e)) => Err(Error::Store(e)),
                    };
                    // The caller may have gone away; the write is durable either way.
                    let _ = reply_tx.send(result);
                });
            Some(completion)
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

    /// A room by id, with its exact last sequence number.
    pub fn room(&self, id: u64) -> Result<Option<super::Room>, Error> {
        self.trees()?.room(id)
    }

    /// How many users, rooms and stored messages there are.
    pub fn counts(&self) -> Result<super::Counts, Error> {
        let trees = self.trees()?;
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Ok(super::Counts {
            users: count(trees.users.len()),
            rooms: count(trees.rooms.len()),
            messages: count(trees.messages.len()),
        })
    }

    /// A cheap liveness probe of the engine, for `/readyz`: the writer runs and takes writes,
    /// and a read works.
    pub fn is_healthy(&self) -> bool {
        !self.inner.writer.is_closed()
            && self.write_failure().is_none()
            && self
                .trees()
                .is_ok_and(|trees| trees.meta.get(META_SCHEMA).is_ok())
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db()
            .ok()
            .and_then(|db| db.size_on_disk().ok())
            .unwrap_or(0)
    }
}

/// Whether `data_dir` holds a store: sled's directory in it.
pub(super) fn holds_store(data_dir: &Path) -> bool {
    data_dir.join("db").exists()
}

/// Creates the data dir with mode 0700 if it does not exist: it holds secrets. An existing
/// dir that other users may enter is used as it is, with a warning naming the fix: refusing
/// would turn an upgrade into an outage for a deployment that has always run so (and the
/// operator may mean it, e.g. a backup group), and changing the mode behind the operator's back
/// would break such a setup silently. What natter creates inside is private either way (the
/// process's umask is 0077, see `cli`), and the store's own dir `db` is made 0700.
pub(super) fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if path.is_dir() {
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                data_dir = %path.display(),
                mode = format_args!("{mode:04o}"),
                "the data dir is open to other users: they may read the store (password hashes, \
                 messages) through it; make it private with `chmod 700 {}`",
                path.display()
            );
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Creates the store's own directory `db` with mode 0700 if it does not exist (before sled,
/// which would create it with the umask).
fn create_store_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

fn check_schema(trees: &Trees, path: &Path) -> Result<(), StoreError> {
    let meta = &trees.meta;
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
                // Version 1 -> 2 needs no rewrite (exact last_seq records are valid floors).
                // 2 -> 3 builds the indexes and counters of version 3 from the records (the
                // file_refs index is built right after this, `store::files`). Both
                // are flushed before the new version is recorded, so a crash midway redoes
                // the upgrade on the next open; recording it before anything else is written
                // keeps older builds out.
                if found < 3 {
                    super::migrate::to_v3(trees).map_err(|e| StoreError::Open {
                        path: path.to_path_buf(),
                        detail: format!("cannot upgrade the store to schema version 3: {e}"),
                    })?;
                    meta.flush()?;
                }
                // 3 -> 4 builds the full-text index from the message log.
                if found < 4 {
                    super::migrate::to_v4(trees).map_err(|e| StoreError::Open {
                        path: path.to_path_buf(),
                        detail: format!("cannot upgrade the store to schema version 4: {e}"),
                    })?;
                    trees.db.flush()?;
                }
                meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                meta.flush()?;
            }
            Ok(())
        }
    }
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
        let store = SledStore::open(&config(dir.path()), Default::default()).expect("first open");
        let err = SledStore::open(&config(dir.path()), Default::default())
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
            let store = SledStore::open(&config(dir.path()), Default::default()).expect("open");
            store
                .trees()
                .expect("trees")
                .meta
                .insert(META_SCHEMA, &99u32.to_be_bytes())
                .expect("insert");
            store.close().await.expect("close");
        }
        let err = SledStore::open(&config(dir.path()), Default::default())
            .err()
            .expect("must refuse");
        assert!(err.to_string().contains("newer natter"), "{err}");
    }

    #[tokio::test]
    async fn writes_wait_out_a_pause_and_every_acked_write_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(
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
                .expect("trees")
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
        let store = SledStore::open(&config(dir.path()), Default::default()).expect("reopen");
        for i in 0u32..100 {
            assert!(
                store
                    .trees()
                    .expect("trees")
                    .meta
                    .get(format!("a{i}"))
                    .expect("get")
                    .is_some()
            );
        }
        assert!(
            store
                .trees()
                .expect("trees")
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
            let store = SledStore::open(&config(dir.path()), Default::default()).expect("open");
            store
                .trees()
                .expect("trees")
                .meta
                .insert(META_SCHEMA, &1u32.to_be_bytes())
                .expect("insert");
            store.close().await.expect("close");
        }
        let store = SledStore::open(&config(dir.path()), Default::default()).expect("reopen");
        let raw = store
            .trees()
            .expect("trees")
            .meta
            .get(META_SCHEMA)
            .expect("get");
        assert_eq!(
            raw.as_deref(),
            Some(SCHEMA_VERSION.to_be_bytes().as_slice())
        );
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn concurrent_writes_are_group_committed_and_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(&config(dir.path()), Default::default()).expect("open");
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
        let store = SledStore::open(&config(dir.path()), Default::default()).expect("reopen");
        for i in 0u32..200 {
            assert!(
                store
                    .trees()
                    .expect("trees")
                    .meta
                    .get(format!("k{i}"))
                    .expect("get")
                    .is_some()
            );
        }
        store.close().await.expect("close");
    }
}
