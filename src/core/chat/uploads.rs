//! Files uploaded to a room: streamed to disk as they come (never held whole in memory), at
//! most `server.max_uploads_per_user` at a time per user, then posted as a message that lists
//! the file. The edges bring the bytes (HTTP bodies, Kibray's chunks) and their own deadlines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use uuid::Uuid;

use super::{Chat, SendOutcome};
use crate::core::command::{ContentPolicy, RoomRef};
use crate::core::policy;
use crate::error::Error;
use crate::principal::Principal;
use crate::store::{IncomingFile, Room, StoredFile, now_secs};

/// Longest content of a message that carries an uploaded file (its name).
const FILE_MESSAGE_CHARS: usize = 255;

/// How many uploads each user has in progress: over `server.max_uploads_per_user`, a new one
/// is refused (429), so one account's stalled uploads cannot fill the disk.
#[derive(Debug)]
pub(super) struct Uploads {
    max_per_user: usize,
    active: Mutex<HashMap<Uuid, usize>>,
}

impl Uploads {
    pub(super) fn new(max_per_user: usize) -> Uploads {
        Uploads {
            max_per_user,
            active: Mutex::default(),
        }
    }

    fn permit(self: &Arc<Self>, user: Uuid) -> Result<UploadPermit, Error> {
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        let count = active.entry(user).or_insert(0);
        if *count >= self.max_per_user {
            return Err(Error::RateLimited(format!(
                "at most {} uploads at a time per user; wait for one to finish",
                self.max_per_user
            )));
        }
        *count += 1;
        Ok(UploadPermit {
            uploads: self.clone(),
            user,
        })
    }
}

/// One of a user's upload slots, given back when dropped.
#[derive(Debug)]
struct UploadPermit {
    uploads: Arc<Uploads>,
    user: Uuid,
}

impl Drop for UploadPermit {
    fn drop(&mut self) {
        let mut active = self
            .uploads
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = active.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                active.remove(&self.user);
            }
        }
    }
}

/// An upload in progress: where it goes, what it is, and its bytes so far (in a temporary file,
/// removed if the upload is dropped before [`Chat::finish_upload`]).
#[derive(Debug)]
pub struct Upload {
    room: Room,
    file_name: String,
    content_type: String,
    /// The size announced at the start (Kibray's `file_size`): the upload is complete at it.
    expected: Option<u64>,
    max_bytes: u64,
    file: IncomingFile,
    _permit: UploadPermit,
}

impl Upload {
    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.file.size()
    }

    /// Whether the announced size has been received.
    pub fn is_complete(&self) -> bool {
        self.expected == Some(self.received())
    }

    /// Appends bytes: never beyond the announced size (`BadRequest`) or the limit
    /// (`PayloadTooLarge`).
    pub async fn write(&mut self, data: Bytes) -> Result<(), Error> {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let total = self.received().saturating_add(len);
        match self.expected {
            Some(expected) if total > expected => {
                return Err(Error::BadRequest(
                    "the chunks exceed file_size; upload abandoned".to_owned(),
                ));
            }
            None if total > self.max_bytes => {
                return Err(Error::PayloadTooLarge {
                    limit: self.max_bytes,
                });
            }
            _ => {}
        }
        if data.is_empty() {
            return Ok(());
        }
        self.file.write(data).await
    }
}

impl Chat {
    /// Starts an upload of a file named `file_name` of type `content_type` to `room`: `who`
    /// may post there (a public room makes them a member), has a free upload slot (else
    /// `RateLimited`), and `expected` (the announced size, when there is one) is 1 to
    /// `max_bytes` (`PayloadTooLarge` above).
    pub async fn start_upload(
        &self,
        who: &Principal,
        room: &RoomRef,
        file_name: &str,
        content_type: &str,
        expected: Option<u64>,
        max_bytes: u64,
    ) -> Result<Upload, Error> {
        match expected {
            Some(size) if size > max_bytes => {
                return Err(Error::PayloadTooLarge { limit: max_bytes });
            }
            Some(0) => {
                return Err(Error::BadRequest("file_size must be at least 1".to_owned()));
            }
            _ => {}
        }
        let file_name = policy::strip_markup(file_name).trim().to_owned();
        if file_name.is_empty()
            || file_name.chars().count() > FILE_MESSAGE_CHARS
            || file_name
                .chars()
                .any(|c| c.is_control() || c == '/' || c == '\\')
        {
            return Err(Error::BadRequest(
                "file_name must be 1 to 255 characters without '/', '\\' or control characters"
                    .to_owned(),
            ));
        }
        if content_type.is_empty()
            || content_type.len() > 255
            || !content_type
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(Error::BadRequest(
                "file_type must be 1 to 255 printable ASCII characters".to_owned(),
            ));
        }
        let room = self.open_room(who, room).await?;
        self.ensure_member(who, &room).await?;
        let permit = self.uploads.permit(who.user_id)?;
        let file = self.store.incoming_file().await?;
        Ok(Upload {
            room,
            file_name,
            content_type: content_type.to_owned(),
            expected,
            max_bytes,
            file,
            _permit: permit,
        })
    }

    /// Stores a finished upload (durably: see `store::files`) and posts it to its room as a
    /// message whose content is the file's name and which lists it in its attachments. Only
    /// who may read the room may download it ([`Chat::file`]).
    pub async fn finish_upload(
        &self,
        who: &Principal,
        upload: Upload,
    ) -> Result<SendOutcome, Error> {
        let Upload {
            room,
            file_name,
            content_type,
            expected,
            file,
            _permit,
            ..
        } = upload;
        let received = file.size();
        if received == 0 {
            return Err(Error::BadRequest("the file is empty".to_owned()));
        }
        if let Some(expected) = expected
            && expected != received
        {
            return Err(Error::BadRequest(format!(
                "the upload ended after {received} of {expected} bytes"
            )));
        }
        let kept = self.store.keep_file(file).await?;
        let stored = StoredFile {
            id: 0,
            room_id: room.id,
            uploader: who.user_id,
            name: file_name.clone(),
            content_type,
            size: kept.size,
            sha256: kept.sha256.clone(),
            created_at: now_secs(),
        };
        let posted = match self.apply_policy(file_name, ContentPolicy::limited(FILE_MESSAGE_CHARS))
        {
            Ok(content) => {
                self.send_with(
                    who,
                    &RoomRef::Name(room.name),
                    content,
                    None,
                    None,
                    vec![stored],
                )
                .await
            }
            Err(e) => Err(e),
        };
        self.store.release_content(kept, posted.is_err()).await;
        posted
    }

    /// Removes what a crash or time left among the files: temporary files of interrupted
    /// uploads, files no stored message lists older than `server.unattached_file_ttl_secs`,
    /// contents no record names (see `store::files`). Run when the daemon starts (it holds the
    /// data dir) and hourly.
    pub async fn sweep_files(&self) {
        match self
            .store
            .sweep_files(self.limits.unattached_file_ttl_secs)
            .await
        {
            Ok(sweep) if sweep == crate::store::FileSweep::default() => {}
            Ok(sweep) => tracing::info!(
                temporary = sweep.temporary,
                expired = sweep.expired,
                contents = sweep.contents,
                "swept files"
            ),
            Err(e) => tracing::warn!(error = %e, "file sweep failed"),
        }
    }
}
