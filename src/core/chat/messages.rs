//! Room messages: sending (durably, idempotent with a `client_msg_id`), editing, deleting,
//! reactions, history, typing, read receipts, and files attached to messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Chat, SendOutcome, check_content, now_millis};
use crate::core::command::{ContentPolicy, EditMessage, React, RoomRef, SendMessage};
use crate::core::policy;
use crate::error::Error;
use crate::events::{Event, RoomMessage};
use crate::hub::ConnId;
use crate::metrics::MessageKind;
use crate::principal::Principal;
use crate::store::{Message, Room, StoredFile};

/// Longest `client_msg_id`, in bytes.
pub const MAX_CLIENT_MSG_ID_BYTES: usize = 128;

/// Most files one message attaches.
const MAX_ATTACHMENTS: usize = 10;

/// Most different reactions (emoji) on one message.
pub const MAX_REACTIONS_PER_MESSAGE: usize = 32;

impl Chat {
    /// The content a policy lets through: markup stripped when it says so, then not blank and at
    /// most its (or the core's) number of characters.
    pub(super) fn apply_policy(
        &self,
        content: String,
        policy: ContentPolicy,
    ) -> Result<String, Error> {
        let content = if policy.strip_markup {
            policy::strip_markup(&content)
        } else {
            content
        };
        check_content(
            &content,
            policy.max_chars.unwrap_or(self.limits.max_message_chars),
        )?;
        Ok(content)
    }

    /// Stores a message (durably) and delivers it to the room. A repeated `client_msg_id`
    /// returns the original and delivers nothing.
    pub async fn send(&self, who: &Principal, message: SendMessage) -> Result<SendOutcome, Error> {
        let content = self.apply_policy(message.content, message.policy)?;
        if message.attachments.len() > MAX_ATTACHMENTS {
            return Err(Error::BadRequest(format!(
                "a message may attach at most {MAX_ATTACHMENTS} files"
            )));
        }
        // Resolved (the sender's own files, not attached in another room) in the write that
        // stores the message.
        let attachments = message
            .attachments
            .into_iter()
            .map(StoredFile::reference)
            .collect();
        self.send_with(
            who,
            &message.room,
            content,
            message.reply_to,
            message.client_msg_id,
            attachments,
        )
        .await
    }

    /// A message whose content passed its policy, with its files: new ones (id 0, content
    /// kept already) and [`StoredFile::reference`]s, stored with the message.
    pub(super) async fn send_with(
        &self,
        who: &Principal,
        room: &RoomRef,
        content: String,
        reply_to: Option<u64>,
        client_msg_id: Option<String>,
        attachments: Vec<StoredFile>,
    ) -> Result<SendOutcome, Error> {
        if let Some(id) = &client_msg_id
            && (id.is_empty() || id.len() > MAX_CLIENT_MSG_ID_BYTES)
        {
            return Err(Error::BadRequest(format!(
                "client_msg_id must be 1 to {MAX_CLIENT_MSG_ID_BYTES} bytes"
            )));
        }
        let room = self.open_room(who, room).await?;
        self.ensure_member(who, &room).await?;
        if let Some(parent) = reply_to
            && (parent == 0 || parent > room.last_seq)
        {
            return Err(Error::BadRequest(format!(
                "reply_to {parent} is not a message of this room"
            )));
        }
        // Resolved here, in the one Send path of every dialect and the HTTP API; stored (and
        // indexed per user) in the write that stores the message.
        let mentions = self.mention_names(&room, who.user_id, &content).await?;
        // One lookup per message (from memory once read), so that no encoding of it needs one.
        let author_avatar = self.store.avatar_url(who.user_id).await?;
        let attachments = if !room.persistent && !attachments.is_empty() {
            // Nothing stores the message: the files are attached to the room alone, and go
            // once older than `server.unattached_file_ttl_secs`.
            self.store
                .attach_files(attachments, room.id, who.user_id)
                .await?
        } else {
            attachments
        };
        let draft = Message {
            room_id: room.id,
            seq: 0,
            author: who.user_id,
            author_name: who.username.clone(),
            author_avatar,
            content,
            created_at_ms: now_millis(),
            edited_at_ms: None,
            deleted: false,
            reply_to,
            client_msg_id,
            attachments,
            reactions: Default::default(),
            mentions,
        };
        self.metrics.message(MessageKind::Sent);
        if !room.persistent {
            let message = self.emit_message(who, &room, draft).await?;
            return Ok(SendOutcome {
                room,
                message,
                duplicate: false,
            });
        }
        let appended = self
            .store
            .append_message_mentioning(draft, self.limits.max_mentions_per_user)
            .await?;
        let message = if appended.duplicate {
            appended.message
        } else {
            self.emit_message(who, &room, appended.message).await?
        };
        Ok(SendOutcome {
            room,
            message,
            duplicate: appended.duplicate,
        })
    }

    /// Delivers a new message to the room and hands it back; copied for the delivery only when
    /// a connection has joined the room (a room posted to over HTTP or by senders that do not
    /// listen has nobody to tell).
    async fn emit_message(
        &self,
        who: &Principal,
        room: &Room,
        message: Message,
    ) -> Result<Message, Error> {
        if policy::is_direct(room) {
            // A direct message names its recipient: looked up once here, for every encoding.
            let event = self.room_message(room, message.clone(), who.number).await?;
            self.emit_room(room, Event::Message(event));
            return Ok(message);
        }
        self.broker.publish_room_with(room.id, &mut || {
            Event::Message(RoomMessage {
                room: room.name.clone(),
                message: message.clone(),
                author_number: who.number,
                direct_peer: None,
            })
        });
        Ok(message)
    }

    /// Replaces a message's content: its author, the room's owner or an admin may (see
    /// [`policy::can_modify_message`]).
    pub async fn edit(&self, who: &Principal, edit: EditMessage) -> Result<(Room, Message), Error> {
        let content = self.apply_policy(edit.content, edit.policy)?;
        let seq = edit.seq;
        let room = self.resolve_room(who, &edit.room).await?;
        self.check_read(who, &room).await?;
        // Mentions are resolved again for the new text, as its author wrote it (an admin's
        // edit of bob's message does not make bob mention himself); the store adds the new
        // ones and forgets the removed ones in the write that stores the edit.
        let author = self.store.message(room.id, seq).await?.map(|m| m.author);
        let mentions = match author {
            Some(author) => self.mentioned_users(&room, author, &content).await?,
            None => Vec::new(),
        };
        let who_inner = who.clone();
        let room_for_check = room.clone();
        let message = self
            .store
            .update_message_mentioning(room.id, seq, self.limits.max_mentions_per_user, move |m| {
                if m.deleted {
                    return Err(Error::NotFound(format!("message {seq} was deleted")));
                }
                if !policy::can_modify_message(&who_inner, &room_for_check, m.author) {
                    return Err(Error::Forbidden(
                        "you can only edit your own messages".to_owned(),
                    ));
                }
                m.mentions = mentions
                    .into_iter()
                    .filter(|(id, _)| *id != m.author)
                    .map(|(_, name)| name)
                    .collect();
                m.content = content;
                m.edited_at_ms = Some(now_millis());
                Ok(())
            })
            .await?;
        self.metrics.message(MessageKind::Edited);
        let author_number = self
            .store
            .user(message.author)
            .await?
            .map_or(0, |author| author.number);
        let event = self
            .room_message(&room, message.clone(), author_number)
            .await?;
        self.emit_room(&room, Event::MessageEdited(event));
        Ok((room, message))
    }

    /// Adds (or removes) the caller's reaction `emoji` to a stored message; the room hears a
    /// `Reaction` event with the emoji's new count. Reacting is posting: the same rooms, the
    /// same membership. Idempotent: reacting twice with one emoji, or removing a reaction one
    /// does not have, changes nothing and emits nothing.
    pub async fn react(&self, who: &Principal, react: React) -> Result<(Room, Message), Error> {
        policy::validate_reaction(&react.emoji)?;
        let room = self.open_room(who, &react.room).await?;
        self.ensure_member(who, &room).await?;
        let seq = react.seq;
        let username = who.username.clone();
        let emoji = react.emoji.clone();
        let add = react.add;
        let changed = Arc::new(AtomicBool::new(false));
        let changed_inner = changed.clone();
        let message = self
            .store
            .update_message(room.id, seq, move |m| {
                if m.deleted {
                    return Err(Error::NotFound(format!("message {seq} was deleted")));
                }
                let users = m.reactions.entry(emoji.clone()).or_default();
                let had = users.contains(&username);
                if add && !had {
                    users.push(username);
                } else if !add && had {
                    users.retain(|u| *u != username);
                }
                let now_empty = users.is_empty();
                if now_empty {
                    m.reactions.remove(&emoji);
                }
                if m.reactions.len() > MAX_REACTIONS_PER_MESSAGE {
                    return Err(Error::BadRequest(format!(
                        "a message has at most {MAX_REACTIONS_PER_MESSAGE} different reactions"
                    )));
                }
                changed_inner.store(add != had, Ordering::Relaxed);
                Ok(())
            })
            .await?;
        if changed.load(Ordering::Relaxed) {
            let count = message.reactions.get(&react.emoji).map_or(0, Vec::len);
            self.emit_room(
                &room,
                Event::Reaction {
                    room: room.name.clone(),
                    room_id: room.id,
                    seq,
                    emoji: react.emoji,
                    user: who.username.clone(),
                    user_id: who.user_id,
                    added: add,
                    count,
                },
            );
        }
        Ok((room, message))
    }

    /// Deletes a message: its content is erased and its files go with it (unless another
    /// message of the uploader's lists them), a tombstone keeps its sequence.
    pub async fn delete(&self, who: &Principal, room: &RoomRef, seq: u64) -> Result<Room, Error> {
        let room = self.resolve_room(who, room).await?;
        self.check_read(who, &room).await?;
        let who_inner = who.clone();
        let room_for_check = room.clone();
        self.store
            .update_message(room.id, seq, move |m| {
                if m.deleted {
                    return Err(Error::NotFound(format!("message {seq} was deleted")));
                }
                if !policy::can_modify_message(&who_inner, &room_for_check, m.author) {
                    return Err(Error::Forbidden(
                        "you can only delete your own messages".to_owned(),
                    ));
                }
                m.deleted = true;
                m.content.clear();
                m.attachments.clear();
                m.reactions.clear();
                m.edited_at_ms = Some(now_millis());
                Ok(())
            })
            .await?;
        self.metrics.message(MessageKind::Deleted);
        self.emit_room(
            &room,
            Event::MessageDeleted {
                room: room.name.clone(),
                room_id: room.id,
                seq,
            },
        );
        Ok(room)
    }

    /// Messages with `after < seq < before`: the newest `limit` of them when only `before` (or
    /// nothing) is given, the oldest `limit` when `after` is. Returns them oldest first and
    /// whether more lie beyond.
    pub async fn history(
        &self,
        who: &Principal,
        room: &RoomRef,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<(Room, Vec<Message>, bool), Error> {
        let room = self.resolve_room(who, room).await?;
        self.check_read(who, &room).await?;
        let limit = limit.unwrap_or(50).clamp(1, self.limits.max_history);
        let before = before.unwrap_or(u64::MAX);
        let (messages, has_more) = match after {
            Some(after) => {
                let mut page = self
                    .store
                    .messages(room.id, after, before, limit + 1)
                    .await?;
                let more = page.len() > limit;
                page.truncate(limit);
                (page, more)
            }
            None => {
                let mut page = self
                    .store
                    .messages_before(room.id, before, limit + 1)
                    .await?;
                let more = page.len() > limit;
                if more {
                    page.remove(0);
                }
                (page, more)
            }
        };
        Ok((room, messages, has_more))
    }

    /// Tells the room someone is typing (everyone but the connection that says so). Never
    /// stored.
    pub async fn typing(
        &self,
        who: &Principal,
        origin: ConnId,
        room: &RoomRef,
        is_typing: bool,
    ) -> Result<(), Error> {
        let room = self.resolve_room(who, room).await?;
        self.check_read(who, &room).await?;
        self.broker.publish_room(
            room.id,
            Event::Typing {
                room: room.name.clone(),
                room_id: room.id,
                user_id: who.user_id,
                user_number: who.number,
                username: who.username.clone(),
                is_typing,
            },
            Some(origin),
        );
        Ok(())
    }

    /// Moves the read cursor and tells the room (read receipts).
    pub async fn read(
        &self,
        who: &Principal,
        room: &RoomRef,
        seq: u64,
    ) -> Result<(Room, u64), Error> {
        let room = self.resolve_room(who, room).await?;
        self.check_read(who, &room).await?;
        let seq = seq.min(room.last_seq);
        let cursor = self.store.mark_read(room.id, who.user_id, seq).await?;
        self.emit_room(
            &room,
            Event::Read {
                room: room.name.clone(),
                room_id: room.id,
                user_id: who.user_id,
                user_number: who.number,
                username: who.username.clone(),
                seq: cursor,
            },
        );
        Ok((room, cursor))
    }

    /// A stored file and where its content is, for `who` if they may read the room it was
    /// attached in (else `Forbidden`; `NotFound` when there is no such file).
    pub async fn file(
        &self,
        who: &Principal,
        id: u64,
    ) -> Result<(StoredFile, std::path::PathBuf), Error> {
        policy::check_account(who)?;
        let file = self
            .store
            .file(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no file {id}")))?;
        if file.room_id == 0 {
            // Not attached anywhere yet: its uploader's.
            if file.uploader != who.user_id && !who.is_admin() {
                return Err(Error::NotFound(format!("no file {id}")));
            }
            let path = self.store.file_path(&file.sha256);
            return Ok((file, path));
        }
        // A file of a room the caller may not read is answered like a missing file: file ids
        // are counted, and the room's name is not the caller's to learn.
        let room = self
            .store
            .room(file.room_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no file {id}")))?;
        let member = self.store.is_member(room.id, who.user_id).await?;
        if !policy::can_read_room(who, &room, member) {
            return Err(Error::NotFound(format!("no file {id}")));
        }
        let path = self.store.file_path(&file.sha256);
        Ok((file, path))
    }
}
