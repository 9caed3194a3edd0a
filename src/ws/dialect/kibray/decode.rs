//! Reading Kibray client frames, one request per type and endpoint, and the chunks of uploads
//! (protocol framing: decoded here, each written to disk by the core as it comes).

use base64::Engine as _;
use serde_json::{Map, Value};

use super::super::{Rate, Request};
use super::{Action, Kibray, Meta, Missing, bad, id_field, optional_id, string_field};
use crate::core::command::{Command, ContentPolicy, EditMessage, RoomRef, SendMessage};
use crate::error::Error;
use crate::ws::KibrayEndpoint;

/// A request that cannot be taken: its error, and what was missing.
pub(super) type Refused = (Error, Missing);

impl Kibray {
    /// The chat endpoint's room (set once joined: requests come after).
    pub(super) fn room(&self) -> Result<RoomRef, Refused> {
        self.room
            .as_ref()
            .map(|(name, _)| RoomRef::Name(name.clone()))
            .ok_or_else(|| {
                (
                    Error::NotFound("not in a room".to_owned()),
                    Missing::Channel,
                )
            })
    }

    pub(super) fn decode(
        &mut self,
        kind: &str,
        request: &Map<String, Value>,
    ) -> Result<Request<Meta>, Refused> {
        let quiet = |command| {
            Request::core(
                Meta::new(Action::Quiet, Missing::Item),
                Rate::Message,
                command,
            )
        };
        let chat = matches!(self.endpoint, KibrayEndpoint::Chat { .. });
        let status = matches!(self.endpoint, KibrayEndpoint::Status);
        Ok(match kind {
            // `channel_id` is accepted and ignored: the path names the room.
            "chat_message" if chat => {
                let content = string_field(request, "message")?.to_owned();
                let reply_to = optional_id(request, "reply_to")?;
                quiet(Command::Send(SendMessage {
                    reply_to,
                    policy: ContentPolicy::plain(self.max_chars),
                    ..SendMessage::new(self.room()?, content)
                }))
            }
            "edit_message" if chat => {
                let seq = id_field(request, "message_id")?;
                let content = string_field(request, "new_content")?.to_owned();
                quiet(Command::Edit(EditMessage {
                    room: self.room()?,
                    seq,
                    content,
                    policy: ContentPolicy::plain(self.max_chars),
                }))
            }
            "delete_message" if chat => {
                let seq = id_field(request, "message_id")?;
                quiet(Command::Delete {
                    room: self.room()?,
                    seq,
                })
            }
            // With a `message_id` on the chat endpoint: a read receipt.
            "mark_read" if chat => {
                let seq = id_field(request, "message_id")?;
                quiet(Command::Read {
                    room: self.room()?,
                    seq,
                })
            }
            // The room of the chat endpoint (its `channel_id` is ignored), or on the status
            // endpoint the room whose id `channel_id` is.
            "typing" if chat || status => {
                let is_typing = match request.get("is_typing") {
                    None => true,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(bad("is_typing must be a boolean".to_owned())),
                };
                let room = match &self.room {
                    Some((name, _)) => RoomRef::Name(name.clone()),
                    None => RoomRef::Id(id_field(request, "channel_id")?),
                };
                Request::core(
                    Meta::new(Action::Typing, Missing::Channel),
                    Rate::Typing,
                    Command::Typing { room, is_typing },
                )
            }
            "upload_file" if chat => {
                let name = string_field(request, "file_name")?.to_owned();
                let size = id_field(request, "file_size")?;
                let content_type = string_field(request, "file_type")?.to_owned();
                // The document's chunks name an `upload_id` its `upload_file` does not show:
                // the client may choose it, else natter does (`upload_started` says which).
                let id = match request.get("upload_id") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(id))
                        if (1..=64).contains(&id.len())
                            && id
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
                    {
                        Some(id.clone())
                    }
                    Some(_) => {
                        return Err(bad(
                            "upload_id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"
                                .to_owned(),
                        ));
                    }
                };
                // A new upload abandons the one in progress (and frees its slot first).
                self.upload = None;
                Request::core(
                    Meta::new(
                        Action::UploadFile {
                            id,
                            name: name.clone(),
                            size,
                        },
                        Missing::Item,
                    ),
                    Rate::Message,
                    Command::StartUpload {
                        room: self.room()?,
                        file_name: name,
                        content_type,
                        size,
                        max_bytes: self.max_upload_bytes,
                    },
                )
            }
            "upload_chunk" if chat => {
                let upload_id = string_field(request, "upload_id")?.to_owned();
                let index = id_field(request, "chunk_index")?;
                let chunk = string_field(request, "chunk_data")?.to_owned();
                Request::local(
                    Meta::new(
                        Action::Chunk {
                            upload_id,
                            index,
                            chunk,
                        },
                        Missing::Item,
                    ),
                    Rate::Message,
                )
            }
            // With a `notification_id` on the notifications endpoint: answered with the new
            // `unread_count`.
            "mark_read" if matches!(self.endpoint, KibrayEndpoint::Notifications) => {
                let id = id_field(request, "notification_id")?;
                Request::core(
                    Meta::new(Action::Unread, Missing::Item),
                    Rate::Message,
                    Command::ReadNotification { id },
                )
            }
            // The people who share a room with the user see `user_status`.
            "status_update" if status => {
                let status = string_field(request, "status")?.to_owned();
                quiet(Command::SetStatus {
                    status,
                    metadata: None,
                })
            }
            other => {
                return Err(bad(format!(
                    "unknown message type {other:?} on this endpoint"
                )));
            }
        })
    }

    /// `upload_chunk`: chunks in order from 0, base64, each written to disk by the core and
    /// answered with `upload_progress`; the last one leads to storing the file and posting it
    /// to the room (a `chat_message` listing it), answered with `upload_complete`.
    pub(super) fn chunk(
        &mut self,
        upload_id: &str,
        index: u64,
        chunk: &str,
    ) -> Result<Option<Request<Meta>>, Error> {
        let bad = |message: String| Error::BadRequest(message);
        let Some(upload) = self.upload.as_mut().filter(|u| u.id == upload_id) else {
            return Err(bad(format!("no upload {upload_id:?} in progress")));
        };
        if index != upload.next_chunk {
            return Err(bad(format!(
                "chunk_index {index} out of order: expected {}",
                upload.next_chunk
            )));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(chunk)
            .map_err(|e| bad(format!("chunk_data is not base64: {e}")))?;
        let Some(file) = upload.file.take() else {
            return Err(bad(format!("upload {upload_id:?} is busy")));
        };
        Ok(Some(Request::core(
            Meta::new(Action::ChunkStored { index }, Missing::Item),
            Rate::Free,
            Command::UploadChunk {
                upload: file,
                data: bytes.into(),
            },
        )))
    }
}
