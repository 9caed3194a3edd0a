//! The storage facade: everything natter keeps on disk goes through [`Store`], so the engine
//! (sled 0.34 today) can be swapped without touching the core.
//!
//! Reads go straight to sled. Writes go through one writer task (`writer`) that applies them in
//! order and flushes each batch once (group commit): a write's future resolves only after the
//! flush of its batch, so whatever natter acknowledges has reached the disk. What sled's flush
//! promises: the data survives a crash of the process; after a power cut, data written since the
//! last completed flush may be lost (natter acknowledges nothing before that flush).

mod backup;
mod engine;
mod files;
mod inbox;
mod invites;
pub mod keys;
mod lookups;
mod mentions;
mod messages;
mod migrate;
mod names;
mod rooms;
pub mod search;
mod sessions;
mod users;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::config::StoreConfig;
use crate::error::Error;
pub use crate::error::StoreError;

pub use backup::{BackupSummary, META_EPOCH, VerifyReport, restore, verify_backup};
pub use files::{FileSweep, IncomingFile, KeptContent, StoredFile};
pub use inbox::{
    Notification, NotificationPage, QueueBounds, QueueReceipt, QueuedDirectMessage, QueuedPage,
};
pub use invites::Invite;
pub use mentions::MentionEntry;
pub use messages::{Appended, Message};
pub use names::name_key;
pub use rooms::{Membership, NewRoom, Room, RoomPage, UNCOUNTED_PREFIXES, Visibility};
pub use search::{SearchCursor, SearchPage, SearchQuery};
pub use sessions::{Family, Rotation};
pub use users::User;
pub use webhooks::{
    OutboxEntry, WebhookEndpoint, WebhookEvent, WebhookRoutes, event_body, new_webhook_id,
};

pub(crate) use engine::{SledStore, Trees};

/// The on-disk layout version this build writes. Opening a store with a higher version fails.
///
/// 2: a room record's `last_seq` is a floor, refreshed lazily; the room's last sequence number
/// is the larger of it and its newest message's (see `store::rooms`). A version-1 build would trust
/// the stale floor and reuse sequence numbers, so it must refuse such a store. Version-1 stores
/// (whose records are exact) are upgraded in place on open.
///
/// 3: indexes and counters kept by the writer with what they index: the tree `file_refs` says
/// which messages list each file, and a file's record goes when the last one does (see
/// `store::files`); public rooms, the rooms each user created, the totals of each
/// direct-message queue and notification inbox, the accounts' names. A version-2 build would
/// not keep them (it would add messages without their file references, whose files a later
/// sweep would then take for unlisted ones), so it must refuse such a store; older stores get
/// them built on open (`store::migrate`, `store::files::index_file_refs`).
///
/// 4: the full-text index (`search`, see `store::search`), kept by the writer with each
/// message. A version-3 build would store messages without their entries, so it must refuse
/// such a store; older stores get the index built on open (`store::migrate::to_v4`).
pub const SCHEMA_VERSION: u32 = 4;

/// Mentions kept per user when the caller names no bound (`limits.max_mentions_per_user`'s
/// default).
pub const DEFAULT_MAX_MENTIONS_PER_USER: usize = 1000;

pub(crate) const META_SCHEMA: &[u8] = b"schema_version";

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

/// The storage facade: every read and write of natter's data, whatever the engine. Async where
/// a networked engine needs it (every read and write; the embedded sled engine answers reads at
/// once). Cheap to clone.
#[derive(Clone)]
pub struct Store(Engine);

/// The engines behind [`Store`]: sled, embedded, today. Another engine is another variant whose
/// methods have the same names and meanings; nothing above the facade sees which one it is.
#[derive(Clone)]
enum Engine {
    Sled(SledStore),
}

/// Calls `$body` with the engine behind `$store` bound to `$engine`.
macro_rules! on_engine {
    ($store:expr, $engine:ident => $body:expr) => {
        match &$store.0 {
            Engine::Sled($engine) => $body,
        }
    };
}

/// How much a store holds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Counts {
    pub users: u64,
    pub rooms: u64,
    pub messages: u64,
}

impl Store {
    /// Whether `data_dir` holds a store (what `open` would open rather than create).
    pub fn exists(data_dir: &Path) -> bool {
        engine::holds_store(data_dir)
    }

    /// Opens (creating if needed) the embedded store in `config.data_dir` and starts its writer
    /// task. Must be called inside a tokio runtime. `metrics` is the server's.
    pub fn open(
        config: &StoreConfig,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Store, StoreError> {
        SledStore::open(config, metrics).map(|engine| Store(Engine::Sled(engine)))
    }

    /// A room by id, with its exact last sequence number.
    pub async fn room(&self, id: u64) -> Result<Option<Room>, Error> {
        on_engine!(self, engine => engine.room(id))
    }

    /// How many users, rooms and stored messages there are (`natter stats`, `/metrics`).
    pub async fn counts(&self) -> Result<Counts, Error> {
        on_engine!(self, engine => engine.counts())
    }

    pub fn data_dir(&self) -> &Path {
        on_engine!(self, engine => engine.data_dir())
    }

    /// Lets queued writes finish, flushes, and stops the writer. Later writes fail with `Closed`.
    pub async fn close(&self) -> Result<(), StoreError> {
        on_engine!(self, engine => engine.close().await)
    }

    /// A cheap liveness probe of the engine, for `/readyz`: open, taking writes, reading.
    pub async fn is_healthy(&self) -> bool {
        on_engine!(self, engine => engine.is_healthy())
    }

    /// Why writes fail, while they do (a full disk, an I/O error). They resume by themselves
    /// once the disk can take them again: the engine checks every `store.recovery_probe_secs`.
    pub async fn write_failure(&self) -> Option<StoreError> {
        on_engine!(self, engine => engine.write_failure())
    }

    /// Bytes the store occupies on disk.
    pub async fn size_on_disk(&self) -> u64 {
        on_engine!(self, engine => engine.size_on_disk())
    }

    /// The store's epoch: 0 until the first restore, then one more with every restore.
    pub async fn epoch(&self) -> u64 {
        on_engine!(self, engine => engine.epoch())
    }

    /// Writes a consistent backup of the whole store to `target` (mode 0600, written to a
    /// temporary name and renamed, so a failed backup leaves no partial file) while serving.
    /// `secret` is the signing secret's path, included when it lives in the data dir.
    pub async fn backup(&self, target: &Path, secret: &Path) -> Result<BackupSummary, Error> {
        on_engine!(self, engine => engine.backup(target, secret).await)
    }

    /// Checks every record of the store: that it decodes, that indexes agree with what they
    /// index, that each room's messages form a gapless run, that stored files match their hash.
    pub async fn verify(&self) -> Result<VerifyReport, Error> {
        on_engine!(self, engine => engine.verify().await)
    }

    /// Where the content of a file with this hash lives.
    pub fn file_path(&self, sha256: &str) -> PathBuf {
        on_engine!(self, engine => engine.file_path(sha256))
    }

    /// Starts an upload: its bytes go to a temporary file (removed if it is dropped unkept).
    pub async fn incoming_file(&self) -> Result<IncomingFile, Error> {
        on_engine!(self, engine => engine.incoming_file().await)
    }

    /// Makes a finished upload durable under its hash. Its record must be written (a message
    /// attaching it as a new file, id 0) before the returned [`KeptContent`] is given to
    /// [`Store::release_content`].
    pub async fn keep_file(&self, upload: IncomingFile) -> Result<KeptContent, Error> {
        on_engine!(self, engine => engine.keep_file(upload).await)
    }

    /// Ends what a [`KeptContent`] holds; `unused` when no record of it was written (the
    /// content is then removed unless another record names it).
    pub async fn release_content(&self, kept: KeptContent, unused: bool) {
        on_engine!(self, engine => engine.release_content(kept, unused).await)
    }

    /// Stores `content` (durably) and a record for it; `file.id`, `file.size` and `file.sha256`
    /// are filled in here.
    pub async fn put_file(&self, file: StoredFile, content: Vec<u8>) -> Result<StoredFile, Error> {
        on_engine!(self, engine => engine.put_file(file, content).await)
    }

    /// Attaches files to the room `room_id` for `author` without a stored message listing
    /// them (a room that keeps no messages): new ones (id 0) get a record, existing ones
    /// ([`StoredFile::reference`]) must be the author's and not attached in another room.
    /// Returns the records as they now are.
    pub async fn attach_files(
        &self,
        files: Vec<StoredFile>,
        room_id: u64,
        author: Uuid,
    ) -> Result<Vec<StoredFile>, Error> {
        on_engine!(self, engine => engine.attach_files(files, room_id, author).await)
    }

    /// Removes what a crash or time left among the files: temporary files of no upload in
    /// progress, records no message lists that are older than `unattached_ttl_secs` (and those
    /// of deleted rooms), and contents no record names.
    pub async fn sweep_files(&self, unattached_ttl_secs: u64) -> Result<FileSweep, Error> {
        on_engine!(self, engine => engine.sweep_files(unattached_ttl_secs).await)
    }

    /// A file's record.
    pub async fn file(&self, id: u64) -> Result<Option<StoredFile>, Error> {
        on_engine!(self, engine => engine.file(id))
    }

    /// Queues a direct message for `user_id` unless that goes beyond `bounds` (the recipient's
    /// queue in messages or bytes, or the sender's share of it): then `RateLimited`, and nothing
    /// is stored or dropped.
    pub async fn queue_direct_message(
        &self,
        user_id: Uuid,
        message: QueuedDirectMessage,
        bounds: QueueBounds,
    ) -> Result<(), Error> {
        on_engine!(self, engine => engine.queue_direct_message(user_id, message, bounds).await)
    }

    /// The next page of `user_id`'s queued direct messages after queue id `after` (0: the
    /// first), oldest first: at most `max_bytes` of stored entries, at least one entry. Read
    /// outside the writer; nothing is deleted until [`Store::delete_direct_messages`].
    pub async fn queued_direct_messages(
        &self,
        user_id: Uuid,
        after: u64,
        max_bytes: usize,
    ) -> Result<QueuedPage, Error> {
        on_engine!(self, engine => engine.queued_direct_messages(user_id, after, max_bytes).await)
    }

    /// Deletes the entries of a delivered page (those still there). Durable when it returns.
    pub async fn delete_direct_messages(&self, receipt: QueueReceipt) -> Result<(), Error> {
        on_engine!(self, engine => engine.delete_direct_messages(receipt).await)
    }

    /// Messages and bytes queued for `user_id`.
    pub async fn queued_direct_totals(&self, user_id: Uuid) -> Result<(u64, u64), Error> {
        on_engine!(self, engine => engine.queued_direct_totals(user_id))
    }

    /// Stores a notification in its user's inbox, assigning its id; beyond `max` in the inbox
    /// the oldest are dropped. Returns it and how many were dropped.
    pub async fn insert_notification(
        &self,
        notification: Notification,
        max: usize,
    ) -> Result<(Notification, usize), Error> {
        on_engine!(self, engine => engine.insert_notification(notification, max).await)
    }

    /// A page of a user's notifications, newest first (ids below `before`, at most `limit`),
    /// with the inbox's unread count.
    pub async fn notifications(
        &self,
        user_id: Uuid,
        before: Option<u64>,
        limit: usize,
    ) -> Result<NotificationPage, Error> {
        on_engine!(self, engine => engine.notifications(user_id, before, limit))
    }

    /// How many of a user's notifications are unread (a counter, not a scan).
    pub async fn unread_notifications(&self, user_id: Uuid) -> Result<u64, Error> {
        on_engine!(self, engine => engine.unread_notifications(user_id))
    }

    /// Marks one notification read. `NotFound` if it is not this user's.
    pub async fn mark_notification_read(
        &self,
        user_id: Uuid,
        id: u64,
    ) -> Result<Notification, Error> {
        on_engine!(self, engine => engine.mark_notification_read(user_id, id).await)
    }

    /// Sets which webhook endpoints take which events (read by every write that queues one).
    pub fn set_webhook_routes(&self, routes: WebhookRoutes) {
        on_engine!(self, engine => engine.set_webhook_routes(routes))
    }

    /// Every webhook endpoint, by id (with its secret: callers must not show it).
    pub async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, Error> {
        on_engine!(self, engine => engine.webhook_endpoints())
    }

    /// Stores a webhook endpoint (id 0: a new one, its id assigned here).
    pub async fn put_webhook_endpoint(
        &self,
        endpoint: WebhookEndpoint,
    ) -> Result<WebhookEndpoint, Error> {
        on_engine!(self, engine => engine.put_webhook_endpoint(endpoint).await)
    }

    /// Changes a stored webhook endpoint; `NotFound` when there is none with this id.
    pub async fn update_webhook_endpoint<F>(
        &self,
        id: u64,
        change: F,
    ) -> Result<WebhookEndpoint, Error>
    where
        F: FnOnce(&mut WebhookEndpoint) -> Result<(), Error> + Send + 'static,
    {
        on_engine!(self, engine => engine.update_webhook_endpoint(id, change).await)
    }

    /// Removes a webhook endpoint and its outbox.
    pub async fn remove_webhook_endpoint(&self, id: u64) -> Result<(), Error> {
        on_engine!(self, engine => engine.remove_webhook_endpoint(id).await)
    }

    /// Queues webhook events for the endpoints that take them. Durable when it returns.
    pub async fn queue_webhook_events(&self, events: Vec<WebhookEvent>) -> Result<(), Error> {
        on_engine!(self, engine => engine.queue_webhook_events(events).await)
    }

    /// The oldest pending outbox entry of an endpoint, with its number.
    pub async fn webhook_head(&self, endpoint: u64) -> Result<Option<(u64, OutboxEntry)>, Error> {
        on_engine!(self, engine => engine.webhook_head(endpoint))
    }

    /// Removes a delivered outbox entry. Durable when it returns.
    pub async fn webhook_delivered(&self, endpoint: u64, number: u64) -> Result<(), Error> {
        on_engine!(self, engine => engine.webhook_delivered(endpoint, number).await)
    }

    /// Pending outbox entries per endpoint id.
    pub async fn webhook_pending(&self) -> Result<std::collections::HashMap<u64, u64>, Error> {
        on_engine!(self, engine => engine.webhook_pending())
    }

    /// Whether `name` (folded: case, spacing, invisible and fullwidth characters) is an
    /// account's username or display name.
    pub async fn is_account_name(&self, name: &str) -> Result<bool, Error> {
        on_engine!(self, engine => engine.is_account_name(name))
    }

    pub async fn room_by_name(&self, name: &str) -> Result<Option<Room>, Error> {
        on_engine!(self, engine => engine.room_by_name(name))
    }

    /// Creates a room with a fresh id, its owner as first member. `Conflict` if the name is
    /// taken, `Forbidden` if the owner has `new.quota` rooms already.
    pub async fn create_room(&self, new: NewRoom) -> Result<Room, Error> {
        on_engine!(self, engine => engine.create_room(new).await)
    }

    /// The membership of `user_id` in `room_id`, if any.
    pub async fn membership(
        &self,
        room_id: u64,
        user_id: Uuid,
    ) -> Result<Option<Membership>, Error> {
        on_engine!(self, engine => engine.membership(room_id, user_id))
    }

    /// Whether `user_id` is a member of `room_id` (without decoding the membership record).
    pub async fn is_member(&self, room_id: u64, user_id: Uuid) -> Result<bool, Error> {
        on_engine!(self, engine => engine.is_member(room_id, user_id))
    }

    /// Ids of the rooms `user_id` is a member of.
    pub async fn user_room_ids(&self, user_id: Uuid) -> Result<Vec<u64>, Error> {
        on_engine!(self, engine => engine.user_room_ids(user_id))
    }

    /// User ids of the members of a room.
    pub async fn room_member_ids(&self, room_id: u64) -> Result<Vec<Uuid>, Error> {
        on_engine!(self, engine => engine.room_member_ids(room_id))
    }

    /// All rooms, in id order (tools and tests; servers page with [`Store::visible_rooms`]).
    pub async fn rooms(&self) -> Result<Vec<Room>, Error> {
        on_engine!(self, engine => engine.rooms())
    }

    /// A page of the rooms `user_id` can see with ids above `after` (at most `limit`, in id
    /// order, with the user's memberships): public rooms and the user's own, or with `all`
    /// every room. From indexes, on a blocking thread.
    pub async fn visible_rooms(
        &self,
        user_id: Uuid,
        all: bool,
        after: u64,
        limit: usize,
    ) -> Result<RoomPage, Error> {
        on_engine!(self, engine => engine.visible_rooms(user_id, all, after, limit).await)
    }

    /// Rooms created by name that `owner` owns (what `limits.max_rooms_per_user` counts).
    pub async fn owned_room_count(&self, owner: Uuid) -> Result<usize, Error> {
        on_engine!(self, engine => engine.owned_room_count(owner))
    }

    /// Makes `user_id` a member (keeping an existing membership as it is). Returns whether the
    /// user was newly added.
    pub async fn add_member(&self, room_id: u64, user_id: Uuid) -> Result<bool, Error> {
        on_engine!(self, engine => engine.add_member(room_id, user_id).await)
    }

    /// Deletes a room with its messages, memberships, idempotency keys and the files its
    /// messages list. Returns how many messages went with it. Runs as one write, so nothing sees
    /// half a room.
    pub async fn delete_room(&self, room_id: u64) -> Result<usize, Error> {
        on_engine!(self, engine => engine.delete_room(room_id).await)
    }

    /// Applies `change` to a room's title and topic (never its name, id or owner) and
    /// returns the room. Durable when it returns.
    pub async fn update_room<F>(&self, room_id: u64, change: F) -> Result<Room, Error>
    where
        F: FnOnce(&mut Room) -> Result<(), Error> + Send + 'static,
    {
        on_engine!(self, engine => engine.update_room(room_id, change).await)
    }

    /// Ends a membership. Returns whether there was one.
    pub async fn remove_member(&self, room_id: u64, user_id: Uuid) -> Result<bool, Error> {
        on_engine!(self, engine => engine.remove_member(room_id, user_id).await)
    }

    /// Moves a member's read cursor forward (never back). Returns the cursor.
    pub async fn mark_read(&self, room_id: u64, user_id: Uuid, seq: u64) -> Result<u64, Error> {
        on_engine!(self, engine => engine.mark_read(room_id, user_id, seq).await)
    }

    /// Appends a message to its room's log with the next sequence number and returns it as
    /// stored. A `client_msg_id` already used by the same author in the room returns the original
    /// instead (idempotent retries). Durable when it returns. Its `attachments` are stored in the
    /// same write: new files (id 0) get a record, existing ones ([`StoredFile::reference`]) must
    /// be the author's and not attached in another room.
    pub async fn append_message(&self, message: Message) -> Result<Appended, Error> {
        self.append_message_mentioning(message, DEFAULT_MAX_MENTIONS_PER_USER)
            .await
    }

    /// [`Store::append_message`], recording the message's `mentions` (usernames) for each
    /// mentioned account in the same write, at most `max_mentions` kept per user (the oldest
    /// go).
    pub async fn append_message_mentioning(
        &self,
        message: Message,
        max_mentions: usize,
    ) -> Result<Appended, Error> {
        on_engine!(self, engine => engine.append_message_mentioning(message, max_mentions).await)
    }

    /// Applies `change` to a stored message and returns the result. Durable when it returns.
    /// The files it takes out of the message's attachments go, unless another message lists
    /// them.
    pub async fn update_message<F>(
        &self,
        room_id: u64,
        seq: u64,
        change: F,
    ) -> Result<Message, Error>
    where
        F: FnOnce(&mut Message) -> Result<(), Error> + Send + 'static,
    {
        self.update_message_mentioning(room_id, seq, DEFAULT_MAX_MENTIONS_PER_USER, change)
            .await
    }

    /// [`Store::update_message`]; the recorded mentions follow the message's `mentions` in the
    /// same write (new ones recorded, at most `max_mentions` kept per user; removed ones
    /// forgotten).
    pub async fn update_message_mentioning<F>(
        &self,
        room_id: u64,
        seq: u64,
        max_mentions: usize,
        change: F,
    ) -> Result<Message, Error>
    where
        F: FnOnce(&mut Message) -> Result<(), Error> + Send + 'static,
    {
        on_engine!(self, engine => engine.update_message(room_id, seq, max_mentions, change).await)
    }

    /// How many mentions of `user_id` in the room have sequence numbers above `after` (its read
    /// cursor, say).
    pub async fn mentions_after(
        &self,
        user_id: Uuid,
        room_id: u64,
        after: u64,
    ) -> Result<u64, Error> {
        on_engine!(self, engine => engine.mentions_after(user_id, room_id, after))
    }

    /// The newest `limit` mentions of `user_id` with ids below `before`, newest first.
    pub async fn mention_page(
        &self,
        user_id: Uuid,
        before: u64,
        limit: usize,
    ) -> Result<Vec<MentionEntry>, Error> {
        on_engine!(self, engine => engine.mention_page(user_id, before, limit))
    }

    /// How many mentions of `user_id` are kept.
    pub async fn mention_total(&self, user_id: Uuid) -> Result<u64, Error> {
        on_engine!(self, engine => engine.mention_total(user_id))
    }

    pub async fn message(&self, room_id: u64, seq: u64) -> Result<Option<Message>, Error> {
        on_engine!(self, engine => engine.message(room_id, seq))
    }

    /// Deletes a room's messages created before `cutoff_ms` (retention), oldest first, at most
    /// `max` in one call so the writer is never held long, with the files only they list.
    /// Returns how many were deleted.
    pub async fn purge_messages_before(
        &self,
        room_id: u64,
        cutoff_ms: i64,
        max: usize,
    ) -> Result<usize, Error> {
        on_engine!(self, engine => engine.purge_messages_before(room_id, cutoff_ms, max).await)
    }

    /// The newest `limit` messages of a room with `seq < before`, oldest first.
    pub async fn messages_before(
        &self,
        room_id: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Message>, Error> {
        on_engine!(self, engine => engine.messages_before(room_id, before, limit))
    }

    /// Messages of a room with `after < seq < before`, oldest first, at most `limit`, and at
    /// most `max_bytes` of stored records (at least one message).
    pub async fn messages_within(
        &self,
        room_id: u64,
        after: u64,
        before: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, Error> {
        on_engine!(self, engine => engine.messages_within(room_id, after, before, limit, max_bytes))
    }

    /// Messages of a room with `after < seq < before`, oldest first, at most `limit`.
    /// Messages of `rooms` matching `query`, newest first (see `store::search`), below
    /// `after`, at most `limit`. The caller decides which rooms the searcher may read.
    pub async fn search(
        &self,
        rooms: Vec<u64>,
        query: SearchQuery,
        after: Option<SearchCursor>,
        limit: usize,
    ) -> Result<SearchPage, Error> {
        on_engine!(self, engine => engine.search(rooms, query, after, limit).await)
    }

    pub async fn messages(
        &self,
        room_id: u64,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Message>, Error> {
        on_engine!(self, engine => engine.messages(room_id, after, before, limit))
    }

    pub async fn family(&self, user_id: Uuid, family_id: Uuid) -> Result<Option<Family>, Error> {
        on_engine!(self, engine => engine.family(user_id, family_id))
    }

    /// Starts a family for a login. Durable when it returns.
    pub async fn create_family(&self, user_id: Uuid, ttl_secs: u64) -> Result<Family, Error> {
        on_engine!(self, engine => engine.create_family(user_id, ttl_secs).await)
    }

    /// Starts the session of a service token. Durable when it returns.
    pub async fn create_service_family(
        &self,
        user_id: Uuid,
        ttl_secs: u64,
        label: &str,
        scopes: &str,
    ) -> Result<Family, Error> {
        on_engine!(self, engine => engine.create_service_family(user_id, ttl_secs, label, scopes).await)
    }

    /// Every session family (logins and service tokens), for `natter token list`.
    pub async fn families(&self) -> Result<Vec<Family>, Error> {
        on_engine!(self, engine => engine.families())
    }

    /// Finds a family by id alone (service tokens are revoked by id).
    pub async fn family_by_id(&self, family_id: Uuid) -> Result<Option<Family>, Error> {
        on_engine!(self, engine => engine.family_by_id(family_id))
    }

    /// Presents generation `generation` of a family. Runs on the writer, so two concurrent
    /// refreshes with the same token cannot both rotate: the second one is a reuse.
    pub async fn rotate_family(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        generation: u64,
    ) -> Result<Rotation, Error> {
        on_engine!(self, engine => engine.rotate_family(user_id, family_id, generation).await)
    }

    /// Revokes one family (logout). Returns whether it was live.
    pub async fn revoke_family(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        reason: &str,
    ) -> Result<bool, Error> {
        on_engine!(self, engine => engine.revoke_family(user_id, family_id, reason).await)
    }

    /// Revokes every family of a user (password change, disable). Returns how many were live.
    pub async fn revoke_user_families(&self, user_id: Uuid, reason: &str) -> Result<usize, Error> {
        on_engine!(self, engine => engine.revoke_user_families(user_id, reason).await)
    }

    /// Revokes every family of a user but `keep` (a password change from the session `keep`).
    /// Returns the ids of the families that were live.
    pub async fn revoke_other_families(
        &self,
        user_id: Uuid,
        keep: Uuid,
        reason: &str,
    ) -> Result<Vec<Uuid>, Error> {
        on_engine!(self, engine => engine.revoke_other_families(user_id, keep, reason).await)
    }

    /// Sets a user's display name and avatar URL; `Conflict` when the display name, folded, is
    /// another account's name.
    pub async fn set_profile(
        &self,
        user_id: Uuid,
        display_name: String,
        avatar_url: Option<String>,
    ) -> Result<User, Error> {
        on_engine!(self, engine => engine.set_profile(user_id, display_name, avatar_url).await)
    }

    /// Every pending (unexpired) invite, oldest first.
    pub async fn invites(&self) -> Result<Vec<Invite>, Error> {
        on_engine!(self, engine => engine.invites())
    }

    /// Stores a new invite (id assigned), sweeping expired ones; `Conflict` at `max_pending`.
    pub async fn insert_invite(&self, invite: Invite, max_pending: usize) -> Result<Invite, Error> {
        on_engine!(self, engine => engine.insert_invite(invite, max_pending).await)
    }

    /// Revokes an invite. Returns whether it existed.
    pub async fn remove_invite(&self, id: u64) -> Result<bool, Error> {
        on_engine!(self, engine => engine.remove_invite(id).await)
    }

    /// Consumes the invite of `token_hash` and creates `user` with its role, in one write.
    pub async fn accept_invite(&self, token_hash: String, user: User) -> Result<User, Error> {
        on_engine!(self, engine => engine.accept_invite(token_hash, user).await)
    }

    /// Deletes families that expired more than `keep_secs` ago, so the tree does not grow
    /// forever. Returns how many were deleted.
    pub async fn purge_families(&self, keep_secs: i64) -> Result<usize, Error> {
        on_engine!(self, engine => engine.purge_families(keep_secs).await)
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<User>, Error> {
        on_engine!(self, engine => engine.user(id))
    }

    /// The avatar URL of a user, without decoding the whole record each time (a Send's).
    pub async fn avatar_url(&self, id: Uuid) -> Result<Option<String>, Error> {
        on_engine!(self, engine => engine.avatar_url(id))
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, Error> {
        on_engine!(self, engine => engine.user_by_name(username))
    }

    /// All users, in username order.
    pub async fn users(&self) -> Result<Vec<User>, Error> {
        on_engine!(self, engine => engine.users())
    }

    pub async fn has_users(&self) -> Result<bool, Error> {
        on_engine!(self, engine => engine.has_users())
    }

    /// Inserts a new user; `Conflict` if the username is taken. Durable when it returns.
    pub async fn insert_user(&self, user: User) -> Result<User, Error> {
        on_engine!(self, engine => engine.insert_user(user).await)
    }

    /// Applies `change` to the user named `username` and stores the result. Durable when it
    /// returns; `NotFound` if there is no such user.
    pub async fn update_user<F>(&self, username: &str, change: F) -> Result<User, Error>
    where
        F: FnOnce(&mut User) -> Result<(), Error> + Send + 'static,
    {
        on_engine!(self, engine => engine.update_user(username, change).await)
    }

    /// The user an external identity (issuer + the issuer's user id) maps to, if it was seen
    /// before and that user still exists.
    pub async fn external_user(&self, issuer: &str, subject: &str) -> Result<Option<User>, Error> {
        on_engine!(self, engine => engine.external_user(issuer, subject))
    }

    /// Creates `user` for an external identity under the first free name of `usernames`, and
    /// maps the identity to it, in one write (so two first sights at once make one user). If
    /// the identity already maps to an existing user, that user is returned and nothing is
    /// written. `Conflict` when every name is taken. Durable when it returns.
    pub async fn insert_external_user(
        &self,
        issuer: &str,
        subject: &str,
        usernames: Vec<String>,
        user: User,
    ) -> Result<User, Error> {
        on_engine!(self, engine => engine.insert_external_user(issuer, subject, usernames, user).await)
    }

    /// Removes a user, its sessions and its memberships. Messages stay (attributed to the id).
    pub async fn remove_user(&self, username: &str) -> Result<User, Error> {
        on_engine!(self, engine => engine.remove_user(username).await)
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

/// A store in `dir` with the default settings, for the store's unit tests.
#[cfg(test)]
pub(crate) fn open_for_tests(dir: &std::path::Path) -> SledStore {
    SledStore::open(
        &crate::config::StoreConfig {
            data_dir: dir.to_path_buf(),
            ..crate::config::StoreConfig::default()
        },
        Default::default(),
    )
    .expect("open")
}
