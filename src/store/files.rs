//! Uploaded files: their bytes under `<data_dir>/files/<sha256>` (content-addressed, so the same
//! file uploaded twice is stored once), their records in the sled tree `files` (file id, u64 BE
//! -> [`StoredFile`] JSON), and in `file_refs` which messages list each file (room id + file id
//! + sequence -> empty).
//!
//! An upload streams into a temporary file `files/.upload-<uuid>` ([`IncomingFile`]), hashed as
//! it comes; once complete it is fsynced and renamed to its hash (and the directory fsynced), and
//! only then is its record written through the writer, which flushes. So a record never names
//! content that is not on disk.
//!
//! A file lives as long as a message lists it. Deleting the message (or purging it, or deleting
//! its room) removes the file's record and reference in the same write as the message's change;
//! once that write is flushed, content that no record names any more is removed from disk. A
//! crash in between leaves only content without a record, which [`SledStore::sweep_files`]
//! removes (at start and hourly) and `verify` reports. Files no stored message lists (a binary
//! file transfer not attached yet, a file sent in a room that keeps no messages) are removed
//! once they are older than `server.unattached_file_ttl_secs`.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Message, SledStore, Trees, decode, encode, keys};
use crate::error::{Error, StoreError};

/// The directory of file contents, inside the data dir.
pub(super) const FILES_DIR: &str = "files";
/// Name prefix of the temporary files uploads stream into, in [`FILES_DIR`].
pub(super) const INCOMING_PREFIX: &str = ".upload-";
/// The `meta` counter of file ids.
const FILE_COUNTER: &[u8] = b"counter:file";
/// The `meta` key set once `file_refs` indexes every stored message (stores written before it
/// existed are indexed when opened).
const META_FILE_REFS: &[u8] = b"file_refs_indexed";
/// Most expired file records removed by one write, so the writer is never held long.
const EXPIRE_STEP: usize = 500;

/// A stored file, as its record and as messages list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    pub id: u64,
    /// The room it was attached in: who may read that room may download it. 0 for a file not
    /// attached yet (a binary file transfer): its uploader's (and admins') only.
    pub room_id: u64,
    pub uploader: Uuid,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// Hex SHA-256 of the content (also its file name under `files/`).
    pub sha256: String,
    /// Unix seconds.
    pub created_at: i64,
}

impl StoredFile {
    /// The stored file `id`, as a message to be stored names it: the store fills in the rest.
    pub fn reference(id: u64) -> StoredFile {
        StoredFile {
            id,
            room_id: 0,
            uploader: Uuid::nil(),
            name: String::new(),
            content_type: String::new(),
            size: 0,
            sha256: String::new(),
            created_at: 0,
        }
    }
}

/// What the engine keeps about the files directory besides its contents.
#[derive(Default)]
pub(crate) struct FileState {
    /// Shared while a finished upload's content is put in place and its record written;
    /// exclusive while content no record names is removed (and while `verify` looks). So
    /// content is never removed between an upload finding it already there and its record
    /// being written.
    contents: Arc<tokio::sync::RwLock<()>>,
    /// Names of the temporary files of uploads in progress: any other is left by a crash.
    incoming: Arc<Mutex<HashSet<String>>>,
}

impl FileState {
    /// The names of the temporary files of uploads in progress.
    pub(super) fn incoming(&self) -> HashSet<String> {
        self.incoming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Excludes uploads from putting content in place (for `verify`).
    pub(super) async fn exclusive(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.contents.clone().write_owned().await
    }
}

/// An upload on its way to disk: a temporary file in `files/` and the hash of what was written.
/// Dropped before [`crate::store::Store::keep_file`] took it, it removes its temporary file.
pub struct IncomingFile {
    path: PathBuf,
    name: String,
    /// The open file and the running hash; away on a blocking thread during a write, and gone
    /// after a failed one.
    writing: Option<Box<Writing>>,
    size: u64,
    incoming: Arc<Mutex<HashSet<String>>>,
    /// Renamed into place (or found there already): nothing to remove.
    kept: bool,
}

struct Writing {
    file: std::fs::File,
    hasher: crate::sha256::Sha256,
}

impl std::fmt::Debug for IncomingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingFile")
            .field("name", &self.name)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl IncomingFile {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `data` (on a blocking thread; hashed there too).
    pub async fn write(&mut self, data: Bytes) -> Result<(), Error> {
        let mut writing = self
            .writing
            .take()
            .ok_or_else(|| Error::Internal("an earlier write of this upload failed".to_owned()))?;
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let writing = tokio::task::spawn_blocking(move || {
            writing.file.write_all(&data)?;
            writing.hasher.update(&data);
            Ok::<_, std::io::Error>(writing)
        })
        .await
        .map_err(|e| Error::Internal(format!("file writer failed: {e}")))?
        .map_err(|e| io_error("cannot write an upload", &e))?;
        self.writing = Some(writing);
        self.size = self.size.saturating_add(len);
        Ok(())
    }
}

impl Drop for IncomingFile {
    fn drop(&mut self) {
        if !self.kept {
            // A quick unlink; the file is gone even if a write to it is still on its way.
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove an abandoned upload");
                }
            }
        }
        self.incoming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.name);
    }
}

/// A finished upload's content, in place under its hash. Until this is dropped, that content
/// cannot be removed: its record is to be written before.
#[derive(Debug)]
pub struct KeptContent {
    pub sha256: String,
    pub size: u64,
    _guard: tokio::sync::OwnedRwLockReadGuard<()>,
}

/// What `SledStore::sweep_files` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FileSweep {
    /// Temporary files of uploads a crash interrupted.
    pub temporary: usize,
    /// File records past `server.unattached_file_ttl_secs` that no message lists, or of rooms
    /// that were deleted.
    pub expired: usize,
    /// Contents no record names.
    pub contents: usize,
}

/// An I/O error of the files directory: `storage_full` (507) when the filesystem is full.
pub(crate) fn io_error(what: &str, e: &std::io::Error) -> Error {
    if matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) {
        Error::Store(StoreError::Full(format!("{what}: {e}")))
    } else {
        Error::Internal(format!("{what}: {e}"))
    }
}

impl SledStore {
    fn files_dir(&self) -> PathBuf {
        self.data_dir().join(FILES_DIR)
    }

    /// Where the content of a file with this hash lives.
    pub fn file_path(&self, sha256: &str) -> PathBuf {
        self.files_dir().join(sha256)
    }

    /// Starts an upload: a new temporary file in `files/`.
    pub async fn incoming_file(&self) -> Result<IncomingFile, Error> {
        let dir = self.files_dir();
        let name = format!("{INCOMING_PREFIX}{}", Uuid::new_v4().simple());
        let path = dir.join(&name);
        // Listed before it exists, so that a sweep never takes it for a crash's leftover.
        let incoming = self.inner.files.incoming.clone();
        incoming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone());
        let mut upload = IncomingFile {
            path: path.clone(),
            name,
            writing: None,
            size: 0,
            incoming,
            kept: false,
        };
        let file = tokio::task::spawn_blocking(move || {
            super::engine::create_private_dir(&dir)?;
            std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(&path)
        })
        .await
        .map_err(|e| Error::Internal(format!("file writer failed: {e}")))?
        .map_err(|e| io_error("cannot start an upload", &e))?;
        upload.writing = Some(Box::new(Writing {
            file,
            hasher: crate::sha256::Sha256::new(),
        }));
        Ok(upload)
    }

    /// Makes a finished upload durable under its hash (fsync, rename, fsync of the directory;
    /// when that content is there already, the upload is dropped). The record naming it must be
    /// written before the returned [`KeptContent`] is dropped.
    pub async fn keep_file(&self, mut upload: IncomingFile) -> Result<KeptContent, Error> {
        let writing = upload
            .writing
            .take()
            .ok_or_else(|| Error::Internal("an earlier write of this upload failed".to_owned()))?;
        let sha256 = tokio::task::spawn_blocking(move || {
            writing.file.sync_all()?;
            Ok::<_, std::io::Error>(hex(&writing.hasher.finalize()))
        })
        .await
        .map_err(|e| Error::Internal(format!("file writer failed: {e}")))?
        .map_err(|e| io_error("cannot store file", &e))?;
        let guard = self.inner.files.contents.clone().read_owned().await;
        let temporary = upload.path.clone();
        let target = self.file_path(&sha256);
        let size = upload.size;
        tokio::task::spawn_blocking(move || put_in_place(&temporary, &target, size))
            .await
            .map_err(|e| Error::Internal(format!("file writer failed: {e}")))?
            .map_err(|e| io_error("cannot store file", &e))?;
        upload.kept = true;
        Ok(KeptContent {
            sha256,
            size,
            _guard: guard,
        })
    }

    /// Stores `content` (durably) and a record for it; `file.id`, `file.size` and `file.sha256`
    /// are filled in here.
    pub async fn put_file(
        &self,
        mut file: StoredFile,
        content: Vec<u8>,
    ) -> Result<StoredFile, Error> {
        let mut upload = self.incoming_file().await?;
        upload.write(Bytes::from(content)).await?;
        let kept = self.keep_file(upload).await?;
        file.size = kept.size;
        file.sha256.clone_from(&kept.sha256);
        let stored = self
            .write(move |trees| {
                let mut files = [file];
                trees.store_attachments(&mut files, None)?;
                let [file] = files;
                Ok(file)
            })
            .await;
        self.release_content(kept, stored.is_err()).await;
        stored
    }

    /// Ends what a [`KeptContent`] holds; when its record was not written (`unused`), the
    /// content is removed unless another record names it.
    pub async fn release_content(&self, kept: KeptContent, unused: bool) {
        let KeptContent {
            sha256,
            size: _,
            _guard: guard,
        } = kept;
        // Released first: the removal waits for every upload's share, this one's too.
        drop(guard);
        if unused {
            self.remove_unreferenced(vec![sha256]).await;
        }
    }

    /// Attaches files to the room `room_id` for `author` without a stored message listing
    /// them (a room that keeps no messages): new ones (id 0) get a record, existing ones must
    /// be the author's, not attached elsewhere. Returns the records as they now are.
    pub async fn attach_files(
        &self,
        files: Vec<StoredFile>,
        room_id: u64,
        author: Uuid,
    ) -> Result<Vec<StoredFile>, Error> {
        self.write(move |trees| {
            let mut files = trees.resolve_attachments(room_id, author, files)?;
            trees.store_attachments(&mut files, None)?;
            Ok(files)
        })
        .await
    }

    /// A file's record.
    pub fn file(&self, id: u64) -> Result<Option<StoredFile>, Error> {
        self.trees()?.file(id)
    }

    /// Removes the contents among `candidates` that no file record names (after a write that
    /// removed records was flushed). Failures are logged: what is left is swept later.
    pub async fn remove_unreferenced(&self, candidates: Vec<String>) {
        if candidates.is_empty() {
            return;
        }
        let guard = self.inner.files.contents.clone().write_owned().await;
        let Ok(trees) = self.trees() else {
            // The store is reopening: the next sweep removes what is still unreferenced.
            return;
        };
        let tree = trees.files.clone();
        let dir = self.files_dir();
        let removed = tokio::task::spawn_blocking(move || {
            let mut unreferenced: HashSet<String> = candidates.into_iter().collect();
            for entry in tree.iter() {
                let (_, raw) = entry?;
                let file: StoredFile = decode("files", &raw)?;
                unreferenced.remove(&file.sha256);
                if unreferenced.is_empty() {
                    break;
                }
            }
            for sha256 in &unreferenced {
                remove_quietly(&dir.join(sha256));
            }
            drop(guard);
            Ok::<_, Error>(unreferenced.len())
        })
        .await;
        match removed {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove unreferenced file contents"),
            Err(e) => tracing::warn!(error = %e, "file remover failed"),
        }
    }

    /// Removes what a crash or time left in `files/`: temporary files of no upload in progress,
    /// records that no message lists and that are older than `unattached_ttl_secs` (and records
    /// of deleted rooms), then every content no record names.
    pub async fn sweep_files(&self, unattached_ttl_secs: u64) -> Result<FileSweep, Error> {
        let mut sweep = FileSweep::default();
        let cutoff = super::now_secs()
            .saturating_sub(i64::try_from(unattached_ttl_secs).unwrap_or(i64::MAX));
        let mut expired = Vec::new();
        for entry in self.trees()?.files.iter() {
            let (_, raw) = entry?;
            let file: StoredFile = decode("files", &raw)?;
            if self.trees()?.is_expired(&file, cutoff)? {
                expired.push(file.id);
            }
        }
        for step in expired.chunks(EXPIRE_STEP) {
            let step = step.to_vec();
            sweep.expired += self
                .write(move |trees| {
                    let mut removed = 0;
                    for id in step {
                        if let Some(file) = trees.file(id)?
                            && trees.is_expired(&file, cutoff)?
                        {
                            trees.files.remove(id.to_be_bytes())?;
                            removed += 1;
                        }
                    }
                    Ok(removed)
                })
                .await?;
        }
        // Then every content no record names: the expired ones' and any a crash left.
        let guard = self.inner.files.contents.clone().write_owned().await;
        let tree = self.trees()?.files.clone();
        let dir = self.files_dir();
        let incoming = self.inner.files.incoming();
        let (temporary, contents) = tokio::task::spawn_blocking(move || {
            let listed = list_files_dir(&dir)?;
            let mut temporary = 0;
            for name in &listed.temporary {
                if !incoming.contains(name) {
                    remove_quietly(&dir.join(name));
                    temporary += 1;
                }
            }
            let mut unreferenced: HashSet<String> = listed.contents.into_iter().collect();
            for entry in tree.iter() {
                let (_, raw) = entry?;
                let file: StoredFile = decode("files", &raw)?;
                unreferenced.remove(&file.sha256);
            }
            for name in &unreferenced {
                remove_quietly(&dir.join(name));
            }
            drop(guard);
            Ok::<_, Error>((temporary, unreferenced.len()))
        })
        .await
        .map_err(|e| Error::Internal(format!("file sweep failed: {e}")))??;
        sweep.temporary = temporary;
        sweep.contents = contents;
        Ok(sweep)
    }
}

impl Trees {
    pub fn file(&self, id: u64) -> Result<Option<StoredFile>, Error> {
        self.files
            .get(id.to_be_bytes())?
            .map(|raw| decode("files", &raw))
            .transpose()
    }

    /// Whether a file record is to go: its room was deleted, or it is older than `cutoff` and
    /// no message lists it.
    fn is_expired(&self, file: &StoredFile, cutoff: i64) -> Result<bool, Error> {
        if file.room_id != 0 && !self.rooms.contains_key(keys::room(file.room_id))? {
            return Ok(true);
        }
        if file.created_at > cutoff {
            return Ok(false);
        }
        Ok(file.room_id == 0 || !self.is_listed(file.room_id, file.id)?)
    }

    /// Whether a message lists the file.
    fn is_listed(&self, room_id: u64, file_id: u64) -> Result<bool, Error> {
        Ok(self
            .file_refs
            .scan_prefix(keys::file_refs(room_id, file_id))
            .next()
            .transpose()?
            .is_some())
    }

    /// The files a message of `author` in `room_id` attaches, as they are to be stored: new
    /// ones (id 0, content kept already) as given, existing ones from their records, which
    /// must be the author's and not attached in another room. Checks only; writes nothing.
    pub(super) fn resolve_attachments(
        &self,
        room_id: u64,
        author: Uuid,
        files: Vec<StoredFile>,
    ) -> Result<Vec<StoredFile>, Error> {
        let mut seen = HashSet::new();
        let mut resolved = Vec::with_capacity(files.len());
        for file in files {
            if file.id == 0 {
                resolved.push(StoredFile {
                    room_id,
                    uploader: author,
                    ..file
                });
                continue;
            }
            if !seen.insert(file.id) {
                continue;
            }
            let id = file.id;
            let mut stored = self
                .file(id)?
                .ok_or_else(|| Error::NotFound(format!("no file {id}")))?;
            // Only the uploader attaches a file: nobody else can keep it alive in a message
            // of theirs once the uploader deletes the one that showed it.
            if stored.uploader != author || (stored.room_id != 0 && stored.room_id != room_id) {
                return Err(Error::Forbidden(format!(
                    "file {id} is not yours to attach here"
                )));
            }
            stored.room_id = room_id;
            resolved.push(stored);
        }
        Ok(resolved)
    }

    /// Writes the records of resolved attachments (new ones get their id), and, for a stored
    /// message, the references of message `seq` to them. Writer task only.
    pub(super) fn store_attachments(
        &self,
        files: &mut [StoredFile],
        seq: Option<u64>,
    ) -> Result<(), Error> {
        for file in files {
            if file.id == 0 {
                file.id = self.next_counter(FILE_COUNTER)?;
            }
            self.files.insert(file.id.to_be_bytes(), encode(file)?)?;
            if let Some(seq) = seq {
                self.file_refs
                    .insert(keys::file_ref(file.room_id, file.id, seq), b"".as_slice())?;
            }
        }
        Ok(())
    }

    /// Message `seq` of `room_id` no longer lists file `file_id`: its reference goes, and the
    /// file's record with it when no other message lists it (its hash is added to `freed`, for
    /// removal once the write is flushed). Writer task only.
    pub(super) fn detach_file(
        &self,
        room_id: u64,
        file_id: u64,
        seq: u64,
        freed: &mut Vec<String>,
    ) -> Result<(), Error> {
        self.file_refs
            .remove(keys::file_ref(room_id, file_id, seq))?;
        if self.is_listed(room_id, file_id)? {
            return Ok(());
        }
        if let Some(file) = self.file(file_id)?
            && file.room_id == room_id
        {
            self.files.remove(file_id.to_be_bytes())?;
            freed.push(file.sha256);
        }
        Ok(())
    }

    /// The message's files it no longer lists after a change (`before`: the ids it listed).
    pub(super) fn detach_removed(
        &self,
        before: &[u64],
        message: &Message,
        freed: &mut Vec<String>,
    ) -> Result<(), Error> {
        for id in before {
            if !message.attachments.iter().any(|file| file.id == *id) {
                self.detach_file(message.room_id, *id, message.seq, freed)?;
            }
        }
        Ok(())
    }

    /// Removes the records and references of every file listed in a room (the room is being
    /// deleted), adding their hashes to `freed`. Writer task only.
    pub(super) fn remove_room_files(
        &self,
        room_id: u64,
        freed: &mut Vec<String>,
    ) -> Result<(), Error> {
        let mut file_ids = Vec::new();
        for key in self.file_refs.scan_prefix(keys::room(room_id)).keys() {
            let key = key?;
            if let Some(id) = keys::u64_at(&key, 8)
                && file_ids.last() != Some(&id)
            {
                file_ids.push(id);
            }
            self.file_refs.remove(key)?;
        }
        for id in file_ids {
            if let Some(file) = self.file(id)?
                && file.room_id == room_id
            {
                self.files.remove(id.to_be_bytes())?;
                freed.push(file.sha256);
            }
        }
        Ok(())
    }
}

/// Builds `file_refs` for a store written before it existed, once: every stored message's
/// files are referenced, tombstones (deleted messages, which used to keep their files) list
/// none, and the records of files no message lists are removed (their content goes with the
/// next sweep). Runs at open, before the writer starts.
pub(super) fn index_file_refs(db: &sled::Db, trees: &Trees) -> Result<(), Error> {
    if trees.meta.contains_key(META_FILE_REFS)? {
        return Ok(());
    }
    let mut indexed = 0u64;
    for entry in trees.messages.iter() {
        let (key, raw) = entry?;
        const LISTS_FILES: &[u8] = b"\"attachments\"";
        if !raw.windows(LISTS_FILES.len()).any(|w| w == LISTS_FILES) {
            continue;
        }
        let mut message: Message = decode("messages", &raw)?;
        if message.deleted && !message.attachments.is_empty() {
            message.attachments.clear();
            super::insert_record(&trees.messages, key, &message)?;
            continue;
        }
        for file in &message.attachments {
            trees.file_refs.insert(
                keys::file_ref(message.room_id, file.id, message.seq),
                b"".as_slice(),
            )?;
            indexed += 1;
        }
    }
    // Files attached in a room that no message lists any more: those of deleted or purged
    // messages (which used to keep them), gone now as they would have gone then. Their
    // content goes with the daemon's next sweep.
    let mut dropped = 0u64;
    for entry in trees.files.iter() {
        let (key, raw) = entry?;
        let file: StoredFile = decode("files", &raw)?;
        if file.room_id != 0 && !trees.is_listed(file.room_id, file.id)? {
            trees.files.remove(key)?;
            dropped += 1;
        }
    }
    trees.meta.insert(META_FILE_REFS, b"1".as_slice())?;
    db.flush()?;
    if indexed > 0 || dropped > 0 {
        tracing::info!(
            references = indexed,
            dropped,
            "indexed the files listed by messages"
        );
    }
    Ok(())
}

/// The names in `files/`: contents (hex SHA-256 names) and temporary files of uploads.
pub(super) struct FilesDir {
    pub contents: Vec<String>,
    pub temporary: Vec<String>,
}

pub(super) fn list_files_dir(dir: &Path) -> Result<FilesDir, Error> {
    let mut listed = FilesDir {
        contents: Vec::new(),
        temporary: Vec::new(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(listed),
        Err(e) => {
            return Err(Error::Internal(format!(
                "cannot list {}: {e}",
                dir.display()
            )));
        }
    };
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::Internal(format!("cannot list {}: {e}", dir.display())))?;
        if !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(INCOMING_PREFIX) {
            listed.temporary.push(name);
        } else if is_sha256_hex(&name) {
            listed.contents.push(name);
        }
    }
    listed.contents.sort();
    listed.temporary.sort();
    Ok(listed)
}

pub(super) fn is_sha256_hex(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a file"),
    }
}

/// Renames a finished (fsynced) upload to `target` and fsyncs the directory, unless that content
/// is there already (same hash, same length): then the upload is removed.
fn put_in_place(temporary: &Path, target: &Path, size: u64) -> std::io::Result<()> {
    if target.metadata().is_ok_and(|m| m.len() == size) {
        remove_quietly(temporary);
        return Ok(());
    }
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("file path has no directory"))?;
    std::fs::rename(temporary, target)?;
    std::fs::File::open(dir)?.sync_all()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;

    fn open(dir: &Path) -> SledStore {
        let config = StoreConfig {
            data_dir: dir.to_path_buf(),
            ..StoreConfig::default()
        };
        SledStore::open(&config, Default::default()).expect("open")
    }

    fn file(uploader: Uuid) -> StoredFile {
        StoredFile {
            uploader,
            name: "f.txt".to_owned(),
            content_type: "text/plain".to_owned(),
            created_at: super::super::now_secs(),
            ..StoredFile::reference(0)
        }
    }

    /// A store written before `file_refs`: a tombstone that still lists its file, and a live
    /// message listing another. Opened, the live one is indexed, the tombstone's file is gone
    /// (record now, content at the sweep), and verify finds nothing wrong with the files.
    #[tokio::test]
    async fn a_store_from_before_file_refs_is_indexed_and_loses_its_deleted_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let author = Uuid::new_v4();
        let (room, kept_sha, deleted_sha) = {
            let store = open(dir.path());
            let room = store
                .create_room(super::super::NewRoom {
                    name: "r".to_owned(),
                    owner: author,
                    members: Vec::new(),
                    visibility: super::super::Visibility::Public,
                    persistent: true,
                    retention_secs: 0,
                    quota: None,
                })
                .await
                .expect("room");
            let mut shas = Vec::new();
            for content in [b"kept".as_slice(), b"deleted".as_slice()] {
                let stored = store
                    .put_file(file(author), content.to_vec())
                    .await
                    .expect("file");
                shas.push(stored.sha256.clone());
                let mut message = super::super::Message {
                    room_id: room.id,
                    seq: 0,
                    author,
                    author_name: "a".to_owned(),
                    author_avatar: None,
                    content: "with a file".to_owned(),
                    created_at_ms: 0,
                    edited_at_ms: None,
                    deleted: false,
                    reply_to: None,
                    client_msg_id: None,
                    attachments: vec![StoredFile::reference(stored.id)],
                    reactions: Default::default(),
                    mentions: Vec::new(),
                };
                let appended = store.append_message(message.clone()).await.expect("append");
                message = appended.message;
                if content == b"deleted" {
                    // What an older natter's delete left: a tombstone listing its file (and,
                    // as this natter's delete does, no search entries).
                    store
                        .trees()
                        .expect("trees")
                        .unindex_message(&message)
                        .expect("unindex");
                    message.deleted = true;
                    message.content.clear();
                    crate::store::insert_record(
                        &store.trees().expect("trees").messages,
                        keys::message(room.id, message.seq),
                        &message,
                    )
                    .expect("tombstone");
                }
            }
            store
                .trees()
                .expect("trees")
                .file_refs
                .clear()
                .expect("clear");
            store
                .trees()
                .expect("trees")
                .meta
                .remove(META_FILE_REFS)
                .expect("forget");
            store.close().await.expect("close");
            (room, shas[0].clone(), shas[1].clone())
        };
        let store = open(dir.path());
        let trees = store.trees().expect("trees");
        assert_eq!(
            trees.file_refs.len(),
            1,
            "the live message's file is indexed"
        );
        let tombstone = trees.message(room.id, 2).expect("read").expect("tombstone");
        assert!(tombstone.attachments.is_empty());
        assert_eq!(trees.files.len(), 1, "the tombstone's file record is gone");
        let sweep = store.sweep_files(3600).await.expect("sweep");
        assert_eq!(sweep.contents, 1);
        assert!(store.file_path(&kept_sha).is_file());
        assert!(!store.file_path(&deleted_sha).exists());
        let report = store.verify().await.expect("verify");
        // (The room's owner is no user here: the test made no account.)
        let problems: Vec<&String> = report
            .problems
            .iter()
            .filter(|p| !p.starts_with("memberships: user"))
            .collect();
        assert!(problems.is_empty(), "{problems:?}");
        store.close().await.expect("close");
    }
}
