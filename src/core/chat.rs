//! The chat service: rooms, messages, direct messages, topics, presence and notifications.
//! Every edge (the native WebSocket protocol, the compatibility dialects, the HTTP API) calls
//! these functions; the rules (ACL, limits, durability, fan-out) live here and only here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use uuid::Uuid;

use crate::config::Config;
use crate::core::policy;
use crate::error::Error;
use crate::events::{Event, RoomMessage};
use crate::hub::topic;
use crate::hub::{Broker, ConnId};
use crate::principal::Principal;
use crate::store::{
    Message, NewRoom, Notification, QueuedDirectMessage, Room, Store, StoredFile, Visibility,
    now_secs,
};

/// Presence statuses a client may set.
pub const STATUSES: &[&str] = &["online", "away", "busy", "offline"];

/// What a Join returns: the room, the replayed history, and whether it is complete.
#[derive(Debug)]
pub struct JoinOutcome {
    pub room: Room,
    pub replay: Vec<Message>,
    /// True when every message after `since` was replayed (none missing to the replay cap or
    /// to retention).
    pub complete: bool,
}

/// What a Send returns.
#[derive(Debug)]
pub struct SendOutcome {
    pub room: Room,
    pub message: Message,
    /// The client_msg_id was seen before; `message` is the original, nothing new was stored.
    pub duplicate: bool,
}

/// What happened to a 004 DirectMessage.
#[derive(Debug)]
pub enum DirectOutcome {
    /// Queued for these live connections (public ids).
    Delivered(Vec<String>),
    /// The user exists but is offline: stored, delivered at their next connection.
    Queued,
}

/// A room as listed to a user.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomSummary {
    pub id: u64,
    pub name: String,
    pub visibility: Visibility,
    pub owner: String,
    pub persistent: bool,
    pub retention_secs: u64,
    pub last_seq: u64,
    pub member: bool,
    /// Messages after the member's read cursor (0 for non-members).
    pub unread: u64,
}

/// What creating a room takes.
#[derive(Debug, Clone)]
pub struct CreateRoom {
    pub name: String,
    pub visibility: Visibility,
    pub persistent: bool,
    pub retention_secs: u64,
}

/// What a notification takes.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub username: String,
    pub title: String,
    pub message: String,
    pub level: String,
    pub category: Option<String>,
    pub url: Option<String>,
    pub actions: Value,
}

#[derive(Clone)]
pub struct Chat {
    store: Store,
    broker: Arc<dyn Broker>,
    config: Arc<Config>,
    /// Status set with SetStatus, by user; absent means "online" while connected.
    statuses: Arc<Mutex<HashMap<Uuid, String>>>,
}

impl Chat {
    pub fn new(store: Store, broker: Arc<dyn Broker>, config: Arc<Config>) -> Chat {
        Chat {
            store,
            broker,
            config,
            statuses: Arc::default(),
        }
    }

    pub fn broker(&self) -> &dyn Broker {
        &*self.broker
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- rooms -------------------------------------------------------------------------

    pub async fn create_room(&self, who: &Principal, req: CreateRoom) -> Result<Room, Error> {
        policy::validate_room_name(&req.name)?;
        if req.name.starts_with(policy::DM_PREFIX) {
            return Err(Error::BadRequest(
                "room names starting with dm: are reserved for direct messages".to_owned(),
            ));
        }
        if req.name.starts_with(policy::PERSONAL_PREFIX) {
            return Err(Error::BadRequest(
                "room names starting with user: are reserved for personal rooms".to_owned(),
            ));
        }
        self.store
            .create_room(NewRoom {
                name: req.name,
                owner: who.user_id,
                members: Vec::new(),
                visibility: req.visibility,
                persistent: req.persistent,
                retention_secs: req.retention_secs,
            })
            .await
    }

    /// Finds a room by name; `@username` names the direct room with that user (which must
    /// exist already: reads never create rooms).
    pub async fn resolve_room(&self, who: &Principal, name: &str) -> Result<Room, Error> {
        policy::check_account(who)?;
        if let Some(other) = name.strip_prefix('@') {
            if other == who.username {
                return Err(Error::BadRequest(
                    "a direct room needs another user".to_owned(),
                ));
            }
            let name = policy::dm_room_name(&who.username, other);
            return self
                .store
                .room_by_name(&name)?
                .ok_or_else(|| Error::NotFound(format!("no direct room with {other} yet")));
        }
        self.store
            .room_by_name(name)?
            .ok_or_else(|| Error::NotFound(format!("no room {name}")))
    }

    /// Like [`Chat::resolve_room`], but creates the direct room of `@username` on first use
    /// (private, the two of them as members). Used by Join and Send.
    pub async fn open_room(&self, who: &Principal, name: &str) -> Result<Room, Error> {
        policy::check_account(who)?;
        if let Some(other) = name.strip_prefix('@') {
            return self.direct_room(who, other).await;
        }
        self.resolve_room(who, name).await
    }

    async fn direct_room(&self, who: &Principal, other: &str) -> Result<Room, Error> {
        let peer = self
            .store
            .user_by_name(other)?
            .filter(|u| !u.disabled)
            .ok_or_else(|| Error::NotFound(format!("no user {other}")))?;
        if peer.id == who.user_id {
            return Err(Error::BadRequest(
                "a direct room needs another user".to_owned(),
            ));
        }
        let name = policy::dm_room_name(&who.username, &peer.username);
        if let Some(room) = self.store.room_by_name(&name)? {
            return Ok(room);
        }
        let created = self
            .store
            .create_room(NewRoom {
                name: name.clone(),
                owner: who.user_id,
                members: vec![peer.id],
                visibility: Visibility::Private,
                persistent: true,
                retention_secs: 0,
            })
            .await;
        match created {
            Ok(room) => {
                self.announce_membership(&room, peer.id, &peer.username);
                Ok(room)
            }
            // Both sides opened it at once: the other one won.
            Err(Error::Conflict(_)) => self
                .store
                .room_by_name(&name)?
                .ok_or_else(|| Error::NotFound(format!("no room {name}"))),
            Err(e) => Err(e),
        }
    }

    fn is_member(&self, room: &Room, who: &Principal) -> Result<bool, Error> {
        self.store.is_member(room.id, who.user_id)
    }

    /// Read access (public room, member, or admin), else Forbidden.
    pub fn check_read(&self, who: &Principal, room: &Room) -> Result<(), Error> {
        if policy::can_read_room(who, room, self.is_member(room, who)?) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "room {} is private and you are not a member",
                room.name
            )))
        }
    }

    /// Makes sure `who` may post: members may; a public room makes them a member; admins may
    /// post anywhere.
    async fn ensure_member(&self, who: &Principal, room: &Room) -> Result<(), Error> {
        if self.is_member(room, who)? {
            return Ok(());
        }
        match room.visibility {
            Visibility::Public => {
                if self.store.add_member(room.id, who.user_id).await? {
                    self.emit_membership(room, who.user_id, &who.username, true);
                }
                Ok(())
            }
            Visibility::Private if who.is_admin() => Ok(()),
            Visibility::Private => Err(Error::Forbidden(format!(
                "room {} is private and you are not a member",
                room.name
            ))),
        }
    }

    /// Joins a connection to a room: subscribes it first, then reads what it missed (sequence >
    /// `since`), so nothing falls between history and live events (duplicates are dropped by
    /// sequence on the connection).
    pub async fn join(
        &self,
        who: &Principal,
        conn: ConnId,
        name: &str,
        since: Option<u64>,
    ) -> Result<JoinOutcome, Error> {
        let room = self.open_room(who, name).await?;
        self.check_read(who, &room)?;
        // Capacity first, so a refused Join changes nothing.
        if !self
            .broker
            .join_room(conn, room.id, self.config.ws.max_joined_rooms)
        {
            return Err(Error::RateLimited(format!(
                "at most {} rooms per connection",
                self.config.ws.max_joined_rooms
            )));
        }
        if room.visibility == Visibility::Public
            && !self.is_member(&room, who)?
            && let Err(e) = self.ensure_member(who, &room).await
        {
            self.broker.leave_room(conn, room.id);
            return Err(e);
        }
        // Re-read: messages stored between resolve and subscribe are in the replay.
        let room = self.store.room_by_name(&room.name)?.unwrap_or(room);
        let Some(since) = since else {
            return Ok(JoinOutcome {
                room,
                replay: Vec::new(),
                complete: true,
            });
        };
        let cap = self.config.ws.max_replay;
        let replay = self.store.messages(room.id, since, u64::MAX, cap)?;
        let first_expected = since.saturating_add(1);
        let gap_at_start = room.last_seq >= first_expected
            && replay.first().map(|m| m.seq) != Some(first_expected);
        let truncated = replay.len() >= cap && replay.last().map(|m| m.seq) < Some(room.last_seq);
        let complete = !gap_at_start && !truncated && since <= room.last_seq;
        Ok(JoinOutcome {
            room,
            replay,
            complete,
        })
    }

    pub async fn leave(&self, who: &Principal, conn: ConnId, name: &str) -> Result<Room, Error> {
        let room = self.resolve_room(who, name).await?;
        self.broker.leave_room(conn, room.id);
        Ok(room)
    }

    /// Joins a connection to a room that only its members may enter, for protocols whose rooms
    /// are entered by invitation (seed 000): the room must exist, be owned by `owner` (a
    /// username), and have `who` as a member already. Unlike [`Chat::join`], a public room does
    /// not make a visitor a member and admins get no exception. `NotFound` when there is no such
    /// room, `Forbidden` when it has another owner or `who` is not a member.
    pub async fn join_as_member(
        &self,
        who: &Principal,
        conn: ConnId,
        name: &str,
        owner: &str,
    ) -> Result<Room, Error> {
        policy::check_account(who)?;
        let room = self
            .store
            .room_by_name(name)?
            .ok_or_else(|| Error::NotFound(format!("no room {name}")))?;
        let owned = self
            .store
            .user_by_name(owner)?
            .is_some_and(|user| user.id == room.owner);
        if !owned {
            return Err(Error::Forbidden(format!(
                "room {name} is not hosted by {owner}"
            )));
        }
        if !self.is_member(&room, who)? {
            return Err(Error::Forbidden(format!(
                "you are not a participant of room {name}"
            )));
        }
        if !self
            .broker
            .join_room(conn, room.id, self.config.ws.max_joined_rooms)
        {
            return Err(Error::RateLimited(format!(
                "at most {} rooms per connection",
                self.config.ws.max_joined_rooms
            )));
        }
        Ok(room)
    }

    /// The personal room `user:<number>` of `who` (seed 001), created on first use: private,
    /// persistent, owned by `who`. Another user's number is `Forbidden` (admins included: a
    /// personal room is its user's own channel, and reading it is not a reason to create it).
    pub async fn personal_room(&self, who: &Principal, number: u64) -> Result<Room, Error> {
        policy::check_account(who)?;
        let user = self
            .store
            .user(who.user_id)?
            .ok_or(Error::InvalidToken("user no longer exists"))?;
        if user.number != number {
            return Err(Error::Forbidden(format!(
                "{} belongs to another user",
                policy::personal_room_name(number)
            )));
        }
        let name = policy::personal_room_name(number);
        let room = match self.store.room_by_name(&name)? {
            Some(room) => room,
            None => {
                let created = self
                    .store
                    .create_room(NewRoom {
                        name: name.clone(),
                        owner: who.user_id,
                        members: Vec::new(),
                        visibility: Visibility::Private,
                        persistent: true,
                        retention_secs: 0,
                    })
                    .await;
                match created {
                    Ok(room) => room,
                    // Two connections of the user opened it at once: the other one won.
                    Err(Error::Conflict(_)) => self
                        .store
                        .room_by_name(&name)?
                        .ok_or_else(|| Error::NotFound(format!("no room {name}")))?,
                    Err(e) => return Err(e),
                }
            }
        };
        if room.owner != who.user_id {
            // Only possible with data from before the prefix was reserved.
            return Err(Error::Forbidden(format!("{name} belongs to another user")));
        }
        Ok(room)
    }

    /// Stores a message (durably) and delivers it to the room. A repeated `client_msg_id`
    /// returns the original and delivers nothing. Content is limited to `ws.max_message_chars`.
    pub async fn send(
        &self,
        who: &Principal,
        name: &str,
        content: String,
        reply_to: Option<u64>,
        client_msg_id: Option<String>,
    ) -> Result<SendOutcome, Error> {
        let max_chars = self.config.ws.max_message_chars;
        self.send_limited(who, name, content, reply_to, client_msg_id, max_chars)
            .await
    }

    /// [`Chat::send`] with an explicit content limit, for a protocol that documents its own
    /// (seed 000's `dialects.edusphere_max_message_chars`); it replaces `ws.max_message_chars`.
    /// Longer content is `ContentTooLong`.
    pub async fn send_limited(
        &self,
        who: &Principal,
        name: &str,
        content: String,
        reply_to: Option<u64>,
        client_msg_id: Option<String>,
        max_chars: usize,
    ) -> Result<SendOutcome, Error> {
        self.send_with(
            who,
            name,
            content,
            reply_to,
            client_msg_id,
            max_chars,
            Vec::new(),
        )
        .await
    }

    /// [`Chat::send_limited`] of a message with files attached (already stored).
    #[allow(clippy::too_many_arguments)]
    async fn send_with(
        &self,
        who: &Principal,
        name: &str,
        content: String,
        reply_to: Option<u64>,
        client_msg_id: Option<String>,
        max_chars: usize,
        attachments: Vec<StoredFile>,
    ) -> Result<SendOutcome, Error> {
        check_content(&content, max_chars)?;
        if let Some(id) = &client_msg_id
            && (id.is_empty() || id.len() > 128)
        {
            return Err(Error::BadRequest(
                "client_msg_id must be 1 to 128 bytes".to_owned(),
            ));
        }
        let room = self.open_room(who, name).await?;
        self.ensure_member(who, &room).await?;
        if let Some(parent) = reply_to
            && (parent == 0 || parent > room.last_seq)
        {
            return Err(Error::BadRequest(format!(
                "reply_to {parent} is not a message of this room"
            )));
        }
        // One lookup per message (from memory once read), so that no encoding of it needs one.
        let author_avatar = self.store.avatar_url(who.user_id)?;
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
        };
        self.store
            .metrics()
            .message(crate::metrics::MessageKind::Sent);
        if !room.persistent {
            let message = self.emit_message(&room, draft);
            return Ok(SendOutcome {
                room,
                message,
                duplicate: false,
            });
        }
        let appended = self.store.append_message(draft).await?;
        let message = if appended.duplicate {
            appended.message
        } else {
            self.emit_message(&room, appended.message)
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
    fn emit_message(&self, room: &Room, message: Message) -> Message {
        self.broker.publish_room_with(room.id, &mut || {
            Event::Message(RoomMessage {
                room: room.name.clone(),
                message: message.clone(),
            })
        });
        message
    }

    /// Replaces a message's content: its author, the room's owner or an admin may (see
    /// [`policy::can_modify_message`]). Content is limited to `ws.max_message_chars`.
    pub async fn edit(
        &self,
        who: &Principal,
        name: &str,
        seq: u64,
        content: String,
    ) -> Result<(Room, Message), Error> {
        let max_chars = self.config.ws.max_message_chars;
        self.edit_limited(who, name, seq, content, max_chars).await
    }

    /// [`Chat::edit`] with an explicit content limit (see [`Chat::send_limited`]).
    pub async fn edit_limited(
        &self,
        who: &Principal,
        name: &str,
        seq: u64,
        content: String,
        max_chars: usize,
    ) -> Result<(Room, Message), Error> {
        check_content(&content, max_chars)?;
        let room = self.resolve_room(who, name).await?;
        self.check_read(who, &room)?;
        let who_inner = who.clone();
        let room_for_check = room.clone();
        let message = self
            .store
            .update_message(room.id, seq, move |m| {
                if m.deleted {
                    return Err(Error::NotFound(format!("message {seq} was deleted")));
                }
                if !policy::can_modify_message(&who_inner, &room_for_check, m.author) {
                    return Err(Error::Forbidden(
                        "you can only edit your own messages".to_owned(),
                    ));
                }
                m.content = content;
                m.edited_at_ms = Some(now_millis());
                Ok(())
            })
            .await?;
        self.store
            .metrics()
            .message(crate::metrics::MessageKind::Edited);
        self.emit_room(
            &room,
            Event::MessageEdited(RoomMessage {
                room: room.name.clone(),
                message: message.clone(),
            }),
        );
        Ok((room, message))
    }

    /// Deletes a message: its content is erased, a tombstone keeps its sequence.
    pub async fn delete(&self, who: &Principal, name: &str, seq: u64) -> Result<Room, Error> {
        let room = self.resolve_room(who, name).await?;
        self.check_read(who, &room)?;
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
                m.edited_at_ms = Some(now_millis());
                Ok(())
            })
            .await?;
        self.store
            .metrics()
            .message(crate::metrics::MessageKind::Deleted);
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
        name: &str,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<(Room, Vec<Message>, bool), Error> {
        let room = self.resolve_room(who, name).await?;
        self.check_read(who, &room)?;
        let limit = limit.unwrap_or(50).clamp(1, self.config.ws.max_history);
        let before = before.unwrap_or(u64::MAX);
        let (messages, has_more) = match after {
            Some(after) => {
                let mut page = self.store.messages(room.id, after, before, limit + 1)?;
                let more = page.len() > limit;
                page.truncate(limit);
                (page, more)
            }
            None => {
                let mut page = self.store.messages_before(room.id, before, limit + 1)?;
                let more = page.len() > limit;
                if more {
                    page.remove(0);
                }
                (page, more)
            }
        };
        Ok((room, messages, has_more))
    }

    /// Tells the room someone is typing. Never stored.
    pub async fn typing(
        &self,
        who: &Principal,
        origin: ConnId,
        name: &str,
        is_typing: bool,
    ) -> Result<(), Error> {
        let room = self.resolve_room(who, name).await?;
        self.check_read(who, &room)?;
        self.broker.publish_room(
            room.id,
            Event::Typing {
                room: room.name.clone(),
                room_id: room.id,
                user_id: who.user_id,
                username: who.username.clone(),
                is_typing,
            },
            Some(origin),
        );
        Ok(())
    }

    /// Moves the read cursor and tells the room (read receipts).
    pub async fn read(&self, who: &Principal, name: &str, seq: u64) -> Result<(Room, u64), Error> {
        let room = self.resolve_room(who, name).await?;
        self.check_read(who, &room)?;
        let seq = seq.min(room.last_seq);
        let cursor = self.store.mark_read(room.id, who.user_id, seq).await?;
        self.emit_room(
            &room,
            Event::Read {
                room: room.name.clone(),
                room_id: room.id,
                user_id: who.user_id,
                username: who.username.clone(),
                seq: cursor,
            },
        );
        Ok((room, cursor))
    }

    /// Rooms `who` can see (public ones and their own), with unread counts.
    pub fn list_rooms(&self, who: &Principal) -> Result<Vec<RoomSummary>, Error> {
        let mut out = Vec::new();
        let mut owners: HashMap<Uuid, String> = HashMap::new();
        for room in self.store.rooms()? {
            let membership = self.store.membership(room.id, who.user_id)?;
            if !policy::can_read_room(who, &room, membership.is_some()) {
                continue;
            }
            let owner = match owners.get(&room.owner) {
                Some(name) => name.clone(),
                None => {
                    let name = self
                        .store
                        .user(room.owner)?
                        .map_or_else(|| room.owner.to_string(), |u| u.username);
                    owners.insert(room.owner, name.clone());
                    name
                }
            };
            out.push(RoomSummary {
                id: room.id,
                name: room.name.clone(),
                visibility: room.visibility,
                owner,
                persistent: room.persistent,
                retention_secs: room.retention_secs,
                last_seq: room.last_seq,
                member: membership.is_some(),
                unread: membership.map_or(0, |m| room.last_seq.saturating_sub(m.last_read_seq)),
            });
        }
        Ok(out)
    }

    /// Member usernames of a room (read access needed).
    pub fn members(&self, who: &Principal, room: &Room) -> Result<Vec<String>, Error> {
        self.check_read(who, room)?;
        let mut names = Vec::new();
        for id in self.store.room_member_ids(room.id)? {
            if let Some(user) = self.store.user(id)? {
                names.push(user.username);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Member usernames of a room with each one's presence now (`online`, `away`, `busy` or
    /// `offline`), sorted by name (read access needed). Presence events only report changes, so
    /// a client starts from this.
    pub fn members_presence(
        &self,
        who: &Principal,
        room: &Room,
    ) -> Result<Vec<(String, String)>, Error> {
        self.check_read(who, room)?;
        let mut out = Vec::new();
        for id in self.store.room_member_ids(room.id)? {
            if let Some(user) = self.store.user(id)? {
                out.push((user.username, self.status_of(id)));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The room and user of a membership change; direct rooms keep their two members (only an
    /// admin may change them).
    async fn membership_target(
        &self,
        who: &Principal,
        name: &str,
        username: &str,
    ) -> Result<(Room, crate::store::User), Error> {
        let room = self.resolve_room(who, name).await?;
        let user = self
            .store
            .user_by_name(username)?
            .ok_or_else(|| Error::NotFound(format!("no user {username}")))?;
        if policy::is_direct(&room) && !who.is_admin() {
            return Err(Error::Forbidden(
                "a direct room has exactly its two members".to_owned(),
            ));
        }
        Ok((room, user))
    }

    /// Adds a member: the owner or an admin may add anyone; anyone may add themselves to a
    /// public room.
    pub async fn add_member(
        &self,
        who: &Principal,
        name: &str,
        username: &str,
    ) -> Result<Room, Error> {
        let (room, user) = self.membership_target(who, name, username).await?;
        let allowed = who.is_admin()
            || policy::is_owner(who, &room)
            || (user.id == who.user_id && room.visibility == Visibility::Public);
        if !allowed {
            return Err(Error::Forbidden(
                "only the room owner or an admin may add members".to_owned(),
            ));
        }
        if self.store.add_member(room.id, user.id).await? {
            self.emit_membership(&room, user.id, &user.username, true);
            self.announce_membership(&room, user.id, &user.username);
        }
        Ok(room)
    }

    /// Removes a member: the owner or an admin may remove anyone, anyone may leave. The user's
    /// live connections lose the room at once.
    pub async fn remove_member(
        &self,
        who: &Principal,
        name: &str,
        username: &str,
    ) -> Result<Room, Error> {
        let (room, user) = self.membership_target(who, name, username).await?;
        if !(who.is_admin() || policy::is_owner(who, &room) || user.id == who.user_id) {
            return Err(Error::Forbidden(
                "only the room owner or an admin may remove members".to_owned(),
            ));
        }
        if user.id == room.owner && !who.is_admin() {
            return Err(Error::BadRequest(
                "the owner cannot leave their room".to_owned(),
            ));
        }
        if !self.store.remove_member(room.id, user.id).await? {
            return Err(Error::NotFound(format!(
                "{username} is not a member of {}",
                room.name
            )));
        }
        if room.visibility == Visibility::Private {
            self.broker.remove_user_from_room(
                user.id,
                room.id,
                Event::RoomClosed {
                    room: room.name.clone(),
                    room_id: room.id,
                    reason: "removed from the room".to_owned(),
                },
            );
        }
        self.emit_membership(&room, user.id, &user.username, false);
        Ok(room)
    }

    fn emit_membership(&self, room: &Room, user_id: Uuid, username: &str, joined: bool) {
        self.emit_room(
            room,
            Event::Membership {
                room: room.name.clone(),
                room_id: room.id,
                user_id,
                username: username.to_owned(),
                joined,
            },
        );
    }

    /// Tells the new member's own connections that have not joined the room (a room they were
    /// added to, a direct room the other side opened): room events reach joined connections
    /// only, so without this a client would not learn of the room until it lists rooms again.
    fn announce_membership(&self, room: &Room, user_id: Uuid, username: &str) {
        self.broker.publish_user_outside_room(
            user_id,
            room.id,
            Event::Membership {
                room: room.name.clone(),
                room_id: room.id,
                user_id,
                username: username.to_owned(),
                joined: true,
            },
        );
    }

    fn emit_room(&self, room: &Room, event: Event) -> usize {
        self.broker.publish_room(room.id, event, None)
    }

    // ----- topics (004 pub/sub) ----------------------------------------------------------

    /// Subscribes a connection to topics and patterns, all or nothing. Returns the active
    /// subscription count.
    pub fn subscribe(
        &self,
        who: &Principal,
        conn: ConnId,
        topics: &[String],
    ) -> Result<usize, Error> {
        let mut parsed = Vec::with_capacity(topics.len());
        for text in topics {
            let subscription = topic::parse_subscription(text)
                .map_err(|e| Error::BadRequest(format!("{text:?}: {e}")))?;
            policy::check_subscribe(who, &subscription)?;
            parsed.push(subscription);
        }
        let max = self.config.ws.max_subscriptions;
        self.broker
            .subscribe_all(conn, &parsed, max)
            .map_err(|_| Error::RateLimited(format!("at most {max} subscriptions per connection")))
    }

    pub fn unsubscribe(&self, conn: ConnId, topics: &[String]) -> usize {
        let mut active = self.broker.subscription_count(conn);
        for text in topics {
            active = self.broker.unsubscribe(conn, text);
        }
        active
    }

    /// Publishes a Broadcast; returns the number of connections it was delivered to.
    pub fn broadcast(
        &self,
        who: &Principal,
        origin: Option<ConnId>,
        topic_name: &str,
        payload: Value,
        message_id: String,
    ) -> Result<usize, Error> {
        policy::check_publish(who, topic_name)?;
        let event = Event::Broadcast {
            topic: topic_name.to_owned(),
            payload,
            sender: who.username.clone(),
            sent_at: now_secs(),
            message_id,
        };
        Ok(self.broker.publish_topic(topic_name, event, origin))
    }

    /// Relays a custom `X-` frame on a topic.
    pub fn relay_custom(
        &self,
        who: &Principal,
        origin: Option<ConnId>,
        kind: &str,
        topic_name: &str,
        data: Value,
    ) -> Result<usize, Error> {
        policy::check_publish(who, topic_name)?;
        let event = Event::Custom {
            kind: kind.to_owned(),
            topic: topic_name.to_owned(),
            data,
            sender: who.username.clone(),
        };
        Ok(self.broker.publish_topic(topic_name, event, origin))
    }

    /// Relays a binary frame to a topic's subscribers.
    pub fn binary_to_topic(
        &self,
        who: &Principal,
        origin: ConnId,
        topic_name: &str,
        frame: bytes::Bytes,
    ) -> Result<usize, Error> {
        policy::check_publish(who, topic_name)?;
        Ok(self
            .broker
            .publish_topic(topic_name, Event::Binary { frame }, Some(origin)))
    }

    /// Relays a binary frame to a user's live connections.
    pub fn binary_to_user(&self, target: &str, frame: bytes::Bytes) -> Result<Vec<String>, Error> {
        let user = self
            .store
            .user_by_name(target)?
            .filter(|u| !u.disabled)
            .ok_or_else(|| Error::NotFound(format!("User {target} not found or not connected")))?;
        let delivered = self.broker.publish_user(user.id, Event::Binary { frame });
        if delivered.is_empty() {
            return Err(Error::NotFound(format!(
                "User {target} not found or not connected"
            )));
        }
        Ok(delivered)
    }

    /// A 004 DirectMessage: delivered to every live connection of the target, or stored for
    /// their next connection. `NotFound` when there is no such user.
    pub async fn direct_message(
        &self,
        who: &Principal,
        target: &str,
        payload: Value,
        message_id: String,
    ) -> Result<DirectOutcome, Error> {
        let user = match Uuid::parse_str(target) {
            Ok(id) => self.store.user(id)?,
            Err(_) => self.store.user_by_name(target)?,
        }
        .filter(|u| !u.disabled)
        .ok_or_else(|| Error::NotFound(format!("User {target} not found or not connected")))?;
        let sent_at = now_secs();
        self.store
            .metrics()
            .message(crate::metrics::MessageKind::Direct);
        let event = Event::DirectMessage {
            from_user: who.username.clone(),
            from_user_id: who.user_id,
            payload: payload.clone(),
            sent_at,
            message_id: message_id.clone(),
        };
        let delivered = self.broker.publish_user(user.id, event);
        if !delivered.is_empty() {
            return Ok(DirectOutcome::Delivered(delivered));
        }
        self.store
            .queue_direct_message(
                user.id,
                QueuedDirectMessage {
                    from_user_id: who.user_id,
                    from_user: who.username.clone(),
                    payload,
                    message_id,
                    sent_at,
                },
                self.config.ws.max_queued_direct_messages,
            )
            .await?;
        Ok(DirectOutcome::Queued)
    }

    /// Direct messages queued while the user was offline, as events, oldest first (removed from
    /// the queue).
    pub async fn take_queued_direct_messages(&self, who: &Principal) -> Result<Vec<Event>, Error> {
        Ok(self
            .store
            .take_direct_messages(who.user_id)
            .await?
            .into_iter()
            .map(|m| Event::DirectMessage {
                from_user: m.from_user,
                from_user_id: m.from_user_id,
                payload: m.payload,
                sent_at: m.sent_at,
                message_id: m.message_id,
            })
            .collect())
    }

    // ----- presence ------------------------------------------------------------------------

    /// A user's first connection came up.
    pub async fn connected(&self, who: &Principal) {
        self.touch_last_seen(who).await;
        let status = self.status_of(who.user_id);
        self.emit_presence(who, &status, None);
    }

    /// A user's last connection went away.
    pub async fn disconnected(&self, who: &Principal) {
        let last_seen = self.touch_last_seen(who).await;
        if let Ok(mut statuses) = self.statuses.lock() {
            statuses.remove(&who.user_id);
        }
        self.emit_presence_at(who, "offline", last_seen, None);
    }

    /// Sets a user's status (online, away, busy, offline) and tells their rooms.
    pub async fn set_status(
        &self,
        who: &Principal,
        status: &str,
        metadata: Option<Value>,
    ) -> Result<(), Error> {
        if !STATUSES.contains(&status) {
            return Err(Error::BadRequest(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )));
        }
        if let Ok(mut statuses) = self.statuses.lock() {
            statuses.insert(who.user_id, status.to_owned());
        }
        self.touch_last_seen(who).await;
        self.emit_presence(who, status, metadata);
        Ok(())
    }

    pub fn status_of(&self, user_id: Uuid) -> String {
        if !self.broker.is_online(user_id) {
            return "offline".to_owned();
        }
        self.statuses
            .lock()
            .ok()
            .and_then(|s| s.get(&user_id).cloned())
            .unwrap_or_else(|| "online".to_owned())
    }

    fn emit_presence(&self, who: &Principal, status: &str, metadata: Option<Value>) {
        self.emit_presence_at(who, status, Some(now_secs()), metadata);
    }

    /// Presence goes to every connection that joined a room the user is a member of.
    fn emit_presence_at(
        &self,
        who: &Principal,
        status: &str,
        last_seen: Option<i64>,
        metadata: Option<Value>,
    ) {
        let rooms = match self.store.user_room_ids(who.user_id) {
            Ok(rooms) => self.broker.joined_rooms_of(&rooms),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read memberships for presence");
                return;
            }
        };
        if rooms.is_empty() {
            return;
        }
        let event = Event::Presence {
            user_id: who.user_id,
            username: who.username.clone(),
            status: status.to_owned(),
            last_seen,
            metadata,
        };
        self.broker.publish_rooms(&rooms, event);
    }

    async fn touch_last_seen(&self, who: &Principal) -> Option<i64> {
        let now = now_secs();
        match self
            .store
            .update_user(&who.username, move |u| {
                u.last_seen = Some(now);
                Ok(())
            })
            .await
        {
            Ok(_) => Some(now),
            Err(e) => {
                tracing::debug!(error = %e, "cannot update last_seen");
                None
            }
        }
    }

    // ----- server-side publishing and notifications (admin / service) --------------------

    /// Delivers an arbitrary event into a room (seed 001's task.* and project.* events).
    pub async fn publish(
        &self,
        who: &Principal,
        name: &str,
        kind: &str,
        data: Value,
    ) -> Result<usize, Error> {
        if !who.may_publish() {
            return Err(Error::Forbidden(
                "publishing needs an admin or a service token with the publish scope".to_owned(),
            ));
        }
        if kind.is_empty() || kind.len() > 64 {
            return Err(Error::BadRequest("type must be 1 to 64 bytes".to_owned()));
        }
        // Not resolve_room: a publish-only token has no chat scope, and `@user` rooms are
        // relative to a chatting user anyway.
        let room = self
            .store
            .room_by_name(name)?
            .ok_or_else(|| Error::NotFound(format!("no room {name}")))?;
        self.store
            .metrics()
            .message(crate::metrics::MessageKind::Published);
        Ok(self.emit_room(
            &room,
            Event::Published {
                room: room.name.clone(),
                room_id: room.id,
                kind: kind.to_owned(),
                data,
            },
        ))
    }

    /// Stores a notification in the user's inbox and delivers it live.
    pub async fn notify(
        &self,
        who: &Principal,
        new: NewNotification,
    ) -> Result<Notification, Error> {
        if !who.may_publish() {
            return Err(Error::Forbidden(
                "sending notifications needs an admin or a service token with the publish scope"
                    .to_owned(),
            ));
        }
        if !matches!(new.level.as_str(), "info" | "success" | "warning" | "error") {
            return Err(Error::BadRequest(
                "level must be info, success, warning or error".to_owned(),
            ));
        }
        if new.title.chars().count() > 200 || new.message.chars().count() > 4000 {
            return Err(Error::BadRequest(
                "title is limited to 200 and message to 4000 characters".to_owned(),
            ));
        }
        match &new.actions {
            Value::Null => {}
            Value::Array(actions) if actions.len() <= 10 => {}
            _ => {
                return Err(Error::BadRequest(
                    "actions must be an array of at most 10 entries".to_owned(),
                ));
            }
        }
        if new.actions.to_string().len() > 8192 {
            return Err(Error::BadRequest("actions are limited to 8 KiB".to_owned()));
        }
        if new
            .category
            .as_ref()
            .is_some_and(|c| c.chars().count() > 64)
        {
            return Err(Error::BadRequest(
                "category is limited to 64 characters".to_owned(),
            ));
        }
        if let Some(url) = &new.url
            && (url.len() > 2048 || !(url.starts_with("https://") || url.starts_with("http://")))
        {
            return Err(Error::BadRequest(
                "url must be an http(s) URL of at most 2048 bytes".to_owned(),
            ));
        }
        let user = self
            .store
            .user_by_name(&new.username)?
            .ok_or_else(|| Error::NotFound(format!("no user {}", new.username)))?;
        let stored = self
            .store
            .insert_notification(Notification {
                id: 0,
                user_id: user.id,
                level: new.level,
                title: new.title,
                message: new.message,
                category: new.category,
                url: new.url,
                actions: if new.actions.is_null() {
                    Value::Array(Vec::new())
                } else {
                    new.actions
                },
                created_at: now_secs(),
                read: false,
            })
            .await?;
        self.store
            .metrics()
            .message(crate::metrics::MessageKind::Notification);
        self.broker
            .publish_user(user.id, Event::Notification(stored.clone()));
        Ok(stored)
    }
}

impl Chat {
    /// The caller's notifications, newest first (at most `limit`, capped at 200), and the
    /// unread count.
    pub fn notifications(
        &self,
        who: &Principal,
        limit: usize,
    ) -> Result<(Vec<Notification>, usize), Error> {
        self.store.notifications(who.user_id, limit.clamp(1, 200))
    }

    /// Marks one of the caller's notifications read.
    pub async fn mark_notification_read(
        &self,
        who: &Principal,
        id: u64,
    ) -> Result<Notification, Error> {
        self.store.mark_notification_read(who.user_id, id).await
    }
}

/// What protocols that document sanitized plain-text messages (seed 002, Kibray) need: their
/// content goes through [`policy::strip_markup`] before the usual checks and storage, and rooms
/// are also named by id.
impl Chat {
    /// [`Chat::send_limited`] of `content` without markup: every tag is dropped (`script`,
    /// `iframe` and `style` with their content, event-handler attributes with their tag).
    pub async fn send_plain(
        &self,
        who: &Principal,
        name: &str,
        content: &str,
        reply_to: Option<u64>,
        max_chars: usize,
    ) -> Result<SendOutcome, Error> {
        let content = policy::strip_markup(content);
        self.send_limited(who, name, content, reply_to, None, max_chars)
            .await
    }

    /// [`Chat::edit_limited`] of `content` without markup (see [`Chat::send_plain`]).
    pub async fn edit_plain(
        &self,
        who: &Principal,
        name: &str,
        seq: u64,
        content: &str,
        max_chars: usize,
    ) -> Result<(Room, Message), Error> {
        let content = policy::strip_markup(content);
        self.edit_limited(who, name, seq, content, max_chars).await
    }

    /// The room with id `id`, if `who` may read it: `NotFound` when there is none, `Forbidden`
    /// when it is private and `who` is not a member.
    pub fn readable_room(&self, who: &Principal, id: u64) -> Result<Room, Error> {
        policy::check_account(who)?;
        let room = self
            .store
            .trees()
            .room(id)?
            .ok_or_else(|| Error::NotFound(format!("no room with id {id}")))?;
        self.check_read(who, &room)?;
        Ok(room)
    }

    /// Joins a connection to the rooms `who` is a member of (at most `ws.max_joined_rooms`), so
    /// that it hears the presence and typing of the people it shares a room with. Returns how
    /// many rooms it joined.
    pub fn watch_member_rooms(&self, who: &Principal, conn: ConnId) -> Result<usize, Error> {
        policy::check_account(who)?;
        let max = self.config.ws.max_joined_rooms;
        let mut joined = 0;
        for room_id in self.store.user_room_ids(who.user_id)? {
            if !self.broker.join_room(conn, room_id, max) {
                break;
            }
            joined += 1;
        }
        Ok(joined)
    }

    /// Checks that an upload of `size` bytes to room `name` may start: `who` may post there
    /// (a public room makes them a member) and `size` is 1 to `max_bytes` (`PayloadTooLarge`
    /// above). Returns the room.
    pub async fn check_upload(
        &self,
        who: &Principal,
        name: &str,
        size: u64,
        max_bytes: u64,
    ) -> Result<Room, Error> {
        if size > max_bytes {
            return Err(Error::PayloadTooLarge { limit: max_bytes });
        }
        if size == 0 {
            return Err(Error::BadRequest("file_size must be at least 1".to_owned()));
        }
        let room = self.open_room(who, name).await?;
        self.ensure_member(who, &room).await?;
        Ok(room)
    }

    /// Stores an uploaded file (durably: see `store::files`) and posts it to room `name` as a
    /// message whose content is the file's name (markup stripped, at most 255 characters) and
    /// which lists it in its attachments. Only who may read the room may download it
    /// ([`Chat::file`]).
    pub async fn attach_file(
        &self,
        who: &Principal,
        name: &str,
        file_name: &str,
        content_type: &str,
        content: Vec<u8>,
        max_bytes: u64,
    ) -> Result<SendOutcome, Error> {
        let size = u64::try_from(content.len()).unwrap_or(u64::MAX);
        let room = self.check_upload(who, name, size, max_bytes).await?;
        let file_name = policy::strip_markup(file_name).trim().to_owned();
        if file_name.is_empty()
            || file_name.chars().count() > 255
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
        let file = self
            .store
            .put_file(
                StoredFile {
                    id: 0,
                    room_id: room.id,
                    uploader: who.user_id,
                    name: file_name.clone(),
                    content_type: content_type.to_owned(),
                    size: 0,
                    sha256: String::new(),
                    created_at: now_secs(),
                },
                content,
            )
            .await?;
        self.send_with(who, &room.name, file_name, None, None, 255, vec![file])
            .await
    }

    /// A stored file and where its content is, for `who` if they may read the room it was
    /// attached in (else `Forbidden`; `NotFound` when there is no such file).
    pub fn file(
        &self,
        who: &Principal,
        id: u64,
    ) -> Result<(StoredFile, std::path::PathBuf), Error> {
        policy::check_account(who)?;
        let file = self
            .store
            .file(id)?
            .ok_or_else(|| Error::NotFound(format!("no file {id}")))?;
        let room = self
            .store
            .trees()
            .room(file.room_id)?
            .ok_or_else(|| Error::NotFound(format!("no file {id}")))?;
        self.check_read(who, &room)?;
        let path = self.store.file_path(&file.sha256);
        Ok((file, path))
    }

    /// How many of the caller's notifications are unread.
    pub fn unread_notifications(&self, who: &Principal) -> Result<usize, Error> {
        self.store
            .notifications(who.user_id, 1)
            .map(|(_, unread)| unread)
    }
}

/// Message content: not blank, at most `max` characters.
pub(crate) fn check_content(content: &str, max: usize) -> Result<(), Error> {
    if content.trim().is_empty() {
        return Err(Error::BadRequest("message content is empty".to_owned()));
    }
    if content.chars().count() > max {
        return Err(Error::ContentTooLong { max });
    }
    Ok(())
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
