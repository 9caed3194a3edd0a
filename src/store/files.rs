//! Uploaded files: their bytes under `<data_dir>/files/<sha256>` (content-addressed, so the same
//! file uploaded twice is stored once) and their records in the sled tree `files`
//! (file id, u64 BE -> [`StoredFile`] JSON). A file is durable before it is acknowledged: the
//! bytes are written to a temporary file, fsynced and renamed (and the directory fsynced), then
//! the record is written through [`Store::write`], which flushes.

use std::io::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SledStore, decode, encode};
use crate::error::Error;

/// The sled tree of file records.
const FILES_TREE: &str = "files";
/// The directory of file contents, inside the data dir.
const FILES_DIR: &str = "files";
/// The `meta` counter of file ids.
const FILE_COUNTER: &[u8] = b"counter:file";

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

impl SledStore {
    fn files_tree(&self) -> Result<sled::Tree, Error> {
        Ok(self.db()?.open_tree(FILES_TREE)?)
    }

    /// Where the content of a file with this hash lives.
    pub fn file_path(&self, sha256: &str) -> PathBuf {
        self.data_dir().join(FILES_DIR).join(sha256)
    }

    /// Stores `content` (durably) and a record for it; `file.id`, `file.size` and `file.sha256`
    /// are filled in here.
    pub async fn put_file(
        &self,
        mut file: StoredFile,
        content: Vec<u8>,
    ) -> Result<StoredFile, Error> {
        let sha256 = hex(&crate::sha256::Sha256::digest(&content));
        file.size = u64::try_from(content.len()).unwrap_or(u64::MAX);
        file.sha256.clone_from(&sha256);
        let target = self.file_path(&sha256);
        tokio::task::spawn_blocking(move || write_durably(&target, &content))
            .await
            .map_err(|e| Error::Internal(format!("file writer failed: {e}")))?
            .map_err(|e| Error::Internal(format!("cannot store file: {e}")))?;
        let tree = self.files_tree()?;
        self.write(move |trees| {
            file.id = trees.next_counter(FILE_COUNTER)?;
            tree.insert(file.id.to_be_bytes(), encode(&file)?)?;
            Ok(file)
        })
        .await
    }

    /// Attaches the files `ids` to the room `room_id`, for `uploader`: each must be one of
    /// theirs not attached anywhere yet (room 0), or attached in that room already. Returns the
    /// records as they now are.
    pub async fn attach_files(
        &self,
        ids: Vec<u64>,
        room_id: u64,
        uploader: Uuid,
    ) -> Result<Vec<StoredFile>, Error> {
        let tree = self.files_tree()?;
        self.write(move |_| {
            let mut attached = Vec::with_capacity(ids.len());
            for id in ids {
                let mut file: StoredFile = tree
                    .get(id.to_be_bytes())?
                    .map(|raw| decode("files", &raw))
                    .transpose()?
                    .ok_or_else(|| Error::NotFound(format!("no file {id}")))?;
                if file.room_id == 0 && file.uploader == uploader {
                    file.room_id = room_id;
                    tree.insert(id.to_be_bytes(), encode(&file)?)?;
                } else if file.room_id != room_id {
                    return Err(Error::Forbidden(format!(
                        "file {id} is not yours to attach here"
                    )));
                }
                attached.push(file);
            }
            Ok(attached)
        })
        .await
    }

    /// A file's record.
    pub fn file(&self, id: u64) -> Result<Option<StoredFile>, Error> {
        self.files_tree()?
            .get(id.to_be_bytes())?
            .map(|raw| decode("files", &raw))
            .transpose()
    }
}

/// Writes `content` to `target` unless it is there already: temporary file, fsync, rename,
/// fsync of the directory.
fn write_durably(target: &std::path::Path, content: &[u8]) -> std::io::Result<()> {
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("file path has no directory"))?;
    std::fs::create_dir_all(dir)?;
    if target
        .metadata()
        .is_ok_and(|m| m.len() == u64::try_from(content.len()).unwrap_or(u64::MAX))
    {
        return Ok(());
    }
    let temporary = dir.join(format!(".upload-{}", Uuid::new_v4()));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(content)?;
        file.sync_all()?;
        std::fs::rename(&temporary, target)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
