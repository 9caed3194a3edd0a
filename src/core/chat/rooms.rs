//! Rooms: creating, naming (direct rooms `dm:a:b`, personal rooms `user:N`), reading rights,
//! joining connections, membership, listing, deleting and purging.

use std::collections::HashMap;

use uuid::Uuid;

use super::{Chat, CreateRoom, JoinOutcome, MemberView, RoomSummary, RoomView, now_millis};
use crate::core::command::{RoomRef, UpdateRoom};
use crate::core::policy;
use crate::core::rates::Subject;
use crate::error::Error;
use crate::events::Event;
use crate::hub::ConnId;
use crate::principal::Principal;
use crate::store::{NewRoom, Room, User, Visibility};

/// Messages a purge removes in one write, so that the writer is never held long.
const PURGE_STEP: usize = 1000;

/// Most rooms one listing page holds (`GET /api/v1/rooms?limit=`).
pub const MAX_ROOM_PAGE: usize = 500;
/// Rooms in a listing page when the request names no limit.
pub const DEFAULT_ROOM_PAGE: usize = 100;

/// The refusal of a private room to a non-member. It does not name the room: the request may
/// have named it by id, and the name of a private room (`dm:alice:bob`) is not the caller's to
/// learn.
fn not_a_member() -> Error {
    Error::Forbidden("this room is private and you are not a member".to_owned())
}

impl Chat {
    pub async fn create_room(&self, who: &Principal, req: CreateRoom) -> Result<Room, Error> {
        policy::validate_room_name(&req.name)?;
        policy::check_room_namespace(who, &req.name)?;
        // Quota and rate: admins are exempt. They create rooms for others (a backend's
        // channel:N rooms, the operator's CLI), and could delete any room or user anyway.
        let quota = if who.is_admin() {
            None
        } else {
            self.rates
                .check(Subject::of(who, None), "rooms", self.limits.room_creations)?;
            Some(self.limits.max_rooms_per_user)
        };
        self.store
            .create_room(NewRoom {
                name: req.name,
                owner: who.user_id,
                members: Vec::new(),
                visibility: req.visibility,
                persistent: req.persistent,
                retention_secs: req.retention_secs,
                quota,
            })
            .await
    }

    /// Finds a room: by name (`@username` names the direct room with that user, which must
    /// exist already: reads never create rooms), by id, or the caller's personal room (created
    /// on first use).
    pub async fn resolve_room(&self, who: &Principal, room: &RoomRef) -> Result<Room, Error> {
        policy::check_account(who)?;
        match room {
            RoomRef::Name(name) => self.room_named(who, name).await,
            RoomRef::Id(id) => self
                .readable_room_by_id(who, *id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no room with id {id}"))),
            RoomRef::Personal(number) => self.personal_room(who, *number).await,
            RoomRef::NameOrId(name) => match self.room_named(who, name).await {
                Err(Error::NotFound(message)) => match name.parse::<u64>() {
                    Ok(id) => self
                        .readable_room_by_id(who, id)
                        .await?
                        .ok_or(Error::NotFound(message)),
                    Err(_) => Err(Error::NotFound(message)),
                },
                found => found,
            },
        }
    }

    /// The room with id `id` if `who` may read it. A room found by its id that the caller may
    /// not read is answered like one that does not exist: ids are counted, so anything else
    /// would let anyone walk them to learn which private rooms and direct conversations exist.
    async fn readable_room_by_id(&self, who: &Principal, id: u64) -> Result<Option<Room>, Error> {
        let Some(room) = self.store.room(id).await? else {
            return Ok(None);
        };
        let readable = policy::can_read_room(who, &room, self.is_member(&room, who).await?);
        Ok(readable.then_some(room))
    }

    async fn room_named(&self, who: &Principal, name: &str) -> Result<Room, Error> {
        if let Some(other) = name.strip_prefix('@') {
            if other == who.username {
                return Err(Error::BadRequest(
                    "a direct room needs another user".to_owned(),
                ));
            }
            let name = policy::dm_room_name(&who.username, other);
            return self
                .store
                .room_by_name(&name)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no direct room with {other} yet")));
        }
        self.store
            .room_by_name(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no room {name}")))
    }

    /// Like [`Chat::resolve_room`], but creates the direct room of `@username` on first use
    /// (private, the two of them as members). Used by Join and Send.
    pub async fn open_room(&self, who: &Principal, room: &RoomRef) -> Result<Room, Error> {
        policy::check_account(who)?;
        if let RoomRef::Name(name) = room
            && let Some(other) = name.strip_prefix('@')
        {
            return self.direct_room(who, other).await;
        }
        self.resolve_room(who, room).await
    }

    async fn direct_room(&self, who: &Principal, other: &str) -> Result<Room, Error> {
        let peer = self
            .store
            .user_by_name(other)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(|| Error::NotFound(format!("no user {other}")))?;
        if peer.id == who.user_id {
            return Err(Error::BadRequest(
                "a direct room needs another user".to_owned(),
            ));
        }
        let name = policy::dm_room_name(&who.username, &peer.username);
        if let Some(room) = self.store.room_by_name(&name).await? {
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
                quota: None,
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
                .room_by_name(&name)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no room {name}"))),
            Err(e) => Err(e),
        }
    }

    /// The personal room `user:<number>` of `who` (the rooms protocol's), created on first use:
    /// private, persistent, owned by `who`. Another user's number is `Forbidden` (admins
    /// included: a personal room is its user's own channel, and reading it is not a reason to
    /// create it).
    async fn personal_room(&self, who: &Principal, number: u64) -> Result<Room, Error> {
        if who.number != number {
            return Err(Error::Forbidden(format!(
                "{} belongs to another user",
                policy::personal_room_name(number)
            )));
        }
        let name = policy::personal_room_name(number);
        let room = match self.store.room_by_name(&name).await? {
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
                        quota: None,
                    })
                    .await;
                match created {
                    Ok(room) => room,
                    // Two connections of the user opened it at once: the other one won.
                    Err(Error::Conflict(_)) => self
                        .store
                        .room_by_name(&name)
                        .await?
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

    async fn is_member(&self, room: &Room, who: &Principal) -> Result<bool, Error> {
        self.store.is_member(room.id, who.user_id).await
    }

    /// Read access (public room, member, or admin), else Forbidden.
    pub async fn check_read(&self, who: &Principal, room: &Room) -> Result<(), Error> {
        if policy::can_read_room(who, room, self.is_member(room, who).await?) {
            Ok(())
        } else {
            Err(not_a_member())
        }
    }

    /// Makes sure `who` may post: members may; a public room makes them a member; admins may
    /// post anywhere.
    pub(super) async fn ensure_member(&self, who: &Principal, room: &Room) -> Result<(), Error> {
        if self.is_member(room, who).await? {
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
            Visibility::Private => Err(not_a_member()),
        }
    }

    /// Joins a connection to a room: subscribes it first, then reads what it missed (sequence >
    /// `since`), so nothing falls between history and live events (duplicates are dropped by
    /// sequence on the connection).
    pub async fn join(
        &self,
        who: &Principal,
        conn: ConnId,
        room: &RoomRef,
        since: Option<u64>,
    ) -> Result<JoinOutcome, Error> {
        let room = self.open_room(who, room).await?;
        self.check_read(who, &room).await?;
        let max = self.limits.max_joined_rooms;
        // Capacity first, so a refused Join changes nothing.
        let Some(first) = self.broker.join_room(conn, room.id, max, true) else {
            return Err(Error::RateLimited(format!(
                "at most {max} rooms per connection"
            )));
        };
        if room.visibility == Visibility::Public
            && !self.is_member(&room, who).await?
            && let Err(e) = self.ensure_member(who, &room).await
        {
            self.broker.leave_room(conn, room.id);
            return Err(e);
        }
        if first {
            self.emit_room_presence(&room, who, Some(conn), true);
        }
        // Re-read: messages stored between resolve and subscribe are in the replay.
        let room = self.store.room_by_name(&room.name).await?.unwrap_or(room);
        let epoch = self.store.epoch().await;
        let Some(since) = since else {
            return Ok(JoinOutcome {
                room,
                replay: Vec::new(),
                complete: true,
                since: None,
                epoch,
            });
        };
        let cap = self.limits.max_replay;
        let replay = self
            .store
            .messages_within(room.id, since, u64::MAX, cap, self.limits.max_replay_bytes)
            .await?;
        let first_expected = since.saturating_add(1);
        let gap_at_start = room.last_seq >= first_expected
            && replay.first().map(|m| m.seq) != Some(first_expected);
        // Stopped at the message or byte cap with newer messages left.
        // (An empty replay of an empty room is not truncated: `None < Some(0)` would say so.)
        let truncated = room.last_seq > replay.last().map_or(since, |m| m.seq);
        let complete = !gap_at_start && !truncated && since <= room.last_seq;
        Ok(JoinOutcome {
            room,
            replay,
            complete,
            since: Some(since),
            epoch,
        })
    }

    pub async fn leave(
        &self,
        who: &Principal,
        conn: ConnId,
        room: &RoomRef,
    ) -> Result<Room, Error> {
        let room = self.resolve_room(who, room).await?;
        if self.broker.leave_room(conn, room.id) {
            self.emit_room_presence(&room, who, None, false);
        }
        Ok(room)
    }

    /// A connection that ended was its user's last one in `rooms`: the others in each are
    /// told they left.
    pub async fn left_rooms(&self, who: &Principal, rooms: &[u64]) {
        for room_id in rooms {
            match self.store.room(*room_id).await {
                Ok(Some(room)) => self.emit_room_presence(&room, who, None, false),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read a room a connection left"),
            }
        }
    }

    /// Tells the others in a room that `who` entered it or left it (live presence).
    fn emit_room_presence(
        &self,
        room: &Room,
        who: &Principal,
        skip: Option<ConnId>,
        entered: bool,
    ) {
        self.webhooks.emit(
            if entered { "room.joined" } else { "room.left" },
            serde_json::json!({
                "room": room.name,
                "room_id": room.id,
                "user": who.username,
                "user_id": who.user_id,
            }),
        );
        self.broker.publish_room(
            room.id,
            Event::RoomPresence {
                room: room.name.clone(),
                room_id: room.id,
                user_id: who.user_id,
                user_number: who.number,
                username: who.username.clone(),
                entered,
            },
            skip,
        );
    }

    /// Joins a connection to a room that only its members may enter, for protocols whose rooms
    /// are entered by invitation (EduSphere): the room must exist, be owned by `host` (a
    /// username), and have `who` as a member already. Unlike [`Chat::join`], a public room does
    /// not make a visitor a member and admins get no exception. `NotFound` when there is no such
    /// room, `Forbidden` when it has another owner or `who` is not a member.
    pub async fn join_as_participant(
        &self,
        who: &Principal,
        conn: ConnId,
        name: &str,
        host: &str,
    ) -> Result<Room, Error> {
        policy::check_account(who)?;
        let room = self
            .store
            .room_by_name(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no room {name}")))?;
        let owned = self
            .store
            .user_by_name(host)
            .await?
            .is_some_and(|user| user.id == room.owner);
        if !owned {
            return Err(Error::Forbidden(format!(
                "room {name} is not hosted by {host}"
            )));
        }
        if !self.is_member(&room, who).await? {
            return Err(Error::Forbidden(format!(
                "you are not a participant of room {name}"
            )));
        }
        let max = self.limits.max_joined_rooms;
        let Some(first) = self.broker.join_room(conn, room.id, max, true) else {
            return Err(Error::RateLimited(format!(
                "at most {max} rooms per connection"
            )));
        };
        if first {
            self.emit_room_presence(&room, who, Some(conn), true);
        }
        Ok(room)
    }

    /// Joins a connection to the rooms `who` is a member of (at most `ws.max_joined_rooms`), so
    /// that it hears the presence and typing of the people it shares a room with. Returns how
    /// many rooms it joined.
    pub async fn watch_member_rooms(&self, who: &Principal, conn: ConnId) -> Result<usize, Error> {
        policy::check_account(who)?;
        let max = self.limits.max_joined_rooms;
        let mut joined = 0;
        for room_id in self.store.user_room_ids(who.user_id).await? {
            // Listening, not entering: watching a room is not being in it.
            if self.broker.join_room(conn, room_id, max, false).is_none() {
                break;
            }
            joined += 1;
        }
        Ok(joined)
    }

    /// A page of the rooms `who` can see (public ones and their own; an admin every room),
    /// with membership and unread counts, in id order: at most `limit` (clamped to 1 to
    /// [`MAX_ROOM_PAGE`]) with ids above `after`. Returns the page and the id to continue
    /// after when more follow. Read from the store's indexes on a blocking thread: a page costs
    /// its own rooms, never a scan of all rooms.
    pub async fn list_rooms(
        &self,
        who: &Principal,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<RoomSummary>, Option<u64>), Error> {
        let limit = limit.clamp(1, MAX_ROOM_PAGE);
        let page = self
            .store
            .visible_rooms(who.user_id, who.is_admin(), after, limit)
            .await?;
        let mut out = Vec::with_capacity(page.rooms.len());
        let mut owners: HashMap<Uuid, String> = HashMap::new();
        for (room, membership) in page.rooms {
            if !policy::can_read_room(who, &room, membership.is_some()) {
                continue;
            }
            let owner = match owners.get(&room.owner) {
                Some(name) => name.clone(),
                None => {
                    let name = self.owner_name(&room).await?;
                    owners.insert(room.owner, name.clone());
                    name
                }
            };
            let mentions = match &membership {
                Some(m) => self.mention_count(who, &room, m.last_read_seq).await?,
                None => 0,
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
                title: room.title.clone(),
                topic: room.topic.clone(),
                mentions,
            });
        }
        Ok((out, page.next))
    }

    /// Every room `who` can see, page by page (the operator's `natter room list`).
    pub async fn list_all_rooms(&self, who: &Principal) -> Result<Vec<RoomSummary>, Error> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let (page, next) = self.list_rooms(who, after, MAX_ROOM_PAGE).await?;
            out.extend(page);
            match next {
                Some(next) => after = next,
                None => return Ok(out),
            }
        }
    }

    /// The username of a room's owner; their id when the owner was removed.
    async fn owner_name(&self, room: &Room) -> Result<String, Error> {
        Ok(self
            .store
            .user(room.owner)
            .await?
            .map_or_else(|| room.owner.to_string(), |u| u.username))
    }

    /// A room as shown to clients and operators: with its owner's username.
    pub async fn room_view(&self, room: &Room) -> Result<RoomView, Error> {
        Ok(RoomView {
            id: room.id,
            name: room.name.clone(),
            visibility: room.visibility,
            owner: self.owner_name(room).await?,
            persistent: room.persistent,
            retention_secs: room.retention_secs,
            last_seq: room.last_seq,
            created_at: room.created_at,
            title: room.title.clone(),
            topic: room.topic.clone(),
        })
    }

    /// Member usernames of a room (read access needed).
    pub async fn members(&self, who: &Principal, room: &Room) -> Result<Vec<String>, Error> {
        Ok(self
            .members_presence(who, room)
            .await?
            .into_iter()
            .map(|member| member.username)
            .collect())
    }

    /// The members of a room with each one's presence now (`online`, `away`, `busy` or
    /// `offline`), sorted by username (read access needed). Presence events only report
    /// changes, so a client starts from this.
    pub async fn members_presence(
        &self,
        who: &Principal,
        room: &Room,
    ) -> Result<Vec<MemberView>, Error> {
        self.check_read(who, room).await?;
        let mut out = Vec::new();
        for id in self.store.room_member_ids(room.id).await? {
            if let Some(user) = self.store.user(id).await? {
                out.push(MemberView {
                    id,
                    user_id: user.number,
                    username: user.username,
                    presence: self.status_of(id),
                });
            }
        }
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }

    /// Whether `username` is a member of the room (`None`: there is no such user).
    pub async fn is_member_named(&self, room: &Room, username: &str) -> Result<bool, Error> {
        let user = self
            .store
            .user_by_name(username)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user {username}")))?;
        Ok(self.store.membership(room.id, user.id).await?.is_some())
    }

    /// The room and user of a membership change; direct rooms keep their two members (only an
    /// admin may change them).
    async fn membership_target(
        &self,
        who: &Principal,
        name: &str,
        username: &str,
    ) -> Result<(Room, User), Error> {
        let room = self.resolve_room(who, &RoomRef::from(name)).await?;
        let user = self
            .store
            .user_by_name(username)
            .await?
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
            let (_, was_present) = self.broker.remove_user_from_room(
                user.id,
                room.id,
                Event::RoomClosed {
                    room: room.name.clone(),
                    room_id: room.id,
                    reason: "removed from the room".to_owned(),
                },
            );
            if was_present {
                let removed = Principal {
                    user_id: user.id,
                    number: user.number,
                    username: user.username.clone(),
                    ..who.clone()
                };
                self.emit_room_presence(&room, &removed, None, false);
            }
        }
        self.emit_membership(&room, user.id, &user.username, false);
        Ok(room)
    }

    /// Sets a room's title (what the client shows as its name: a "rename") and topic: its
    /// owner or an admin (a direct room: admins only, as for deleting). The name is the room's
    /// id in every protocol and stays. A room the caller may not read is "not found". The
    /// connections that joined the room hear `RoomUpdated` when something changed.
    pub async fn update_room(&self, who: &Principal, update: UpdateRoom) -> Result<Room, Error> {
        let title = update
            .title
            .map(|t| policy::room_text("title", t.as_deref(), policy::MAX_ROOM_TITLE_CHARS))
            .transpose()?;
        let topic = update
            .topic
            .map(|t| policy::room_text("topic", t.as_deref(), policy::MAX_ROOM_TOPIC_CHARS))
            .transpose()?;
        if title.is_none() && topic.is_none() {
            return Err(Error::BadRequest(
                "a room update sets a title, a topic or both".to_owned(),
            ));
        }
        let room = self.resolve_room(who, &update.room).await?;
        self.check_read(who, &room).await?;
        if !(who.is_admin() || policy::is_owner(who, &room)) {
            return Err(Error::Forbidden(
                "only the room owner or an admin may change its title or topic".to_owned(),
            ));
        }
        if title.as_ref().is_none_or(|t| *t == room.title)
            && topic.as_ref().is_none_or(|t| *t == room.topic)
        {
            return Ok(room);
        }
        let updated = self
            .store
            .update_room(room.id, move |r| {
                if let Some(title) = title {
                    r.title = title;
                }
                if let Some(topic) = topic {
                    r.topic = topic;
                }
                Ok(())
            })
            .await?;
        self.emit_room(
            &updated,
            Event::RoomUpdated {
                room: updated.name.clone(),
                room_id: updated.id,
                title: updated.title.clone(),
                topic: updated.topic.clone(),
                by: who.username.clone(),
            },
        );
        Ok(updated)
    }

    /// Deletes a room for a user: its owner or an admin (a direct room has no owner: admins
    /// only). A room the caller may not read is "not found". Returns the room and how many
    /// messages went with it.
    pub async fn delete_room_as(
        &self,
        who: &Principal,
        room: &RoomRef,
    ) -> Result<(Room, usize), Error> {
        let room = self.resolve_room(who, room).await?;
        self.check_read(who, &room).await?;
        if !(who.is_admin() || policy::is_owner(who, &room)) {
            return Err(Error::Forbidden(
                "only the room owner or an admin may delete a room".to_owned(),
            ));
        }
        let messages = self.delete_room(&room.name).await?.unwrap_or(0);
        Ok((room, messages))
    }

    /// Deletes a room with its messages; its connections lose it at once. `None` when there is
    /// no such room, else how many messages went with it.
    pub async fn delete_room(&self, name: &str) -> Result<Option<usize>, Error> {
        let Some(room) = self.store.room_by_name(name).await? else {
            return Ok(None);
        };
        let messages = self.store.delete_room(room.id).await?;
        self.broker.close_room(
            room.id,
            Event::RoomClosed {
                room: room.name.clone(),
                room_id: room.id,
                reason: "the room was deleted".to_owned(),
            },
        );
        Ok(Some(messages))
    }

    /// Deletes the messages of the room named `name` created before `before_ms` (Unix
    /// milliseconds), oldest first. Returns how many went.
    pub async fn purge_room(&self, name: &str, before_ms: i64) -> Result<usize, Error> {
        let room = self
            .store
            .room_by_name(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no room {name}")))?;
        self.purge_before(&room, before_ms).await
    }

    /// Deletes the messages past their room's retention, in every room that has one.
    pub async fn purge_retention(&self) -> Result<(), Error> {
        let now_ms = now_millis();
        // Page by page, each read on a blocking thread: never every room at once.
        let mut after = 0;
        loop {
            let page = self
                .store
                .visible_rooms(Uuid::nil(), true, after, MAX_ROOM_PAGE)
                .await?;
            for (room, _) in &page.rooms {
                self.purge_past_retention(room, now_ms).await?;
            }
            match page.next {
                Some(next) => after = next,
                None => return Ok(()),
            }
        }
    }

    async fn purge_past_retention(&self, room: &Room, now_ms: i64) -> Result<(), Error> {
        if room.retention_secs == 0 {
            return Ok(());
        }
        let keep_ms = i64::try_from(room.retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let total = self
            .purge_before(room, now_ms.saturating_sub(keep_ms))
            .await?;
        if total > 0 {
            tracing::info!(room = %room.name, purged = total, "purged messages past retention");
        }
        Ok(())
    }

    async fn purge_before(&self, room: &Room, before_ms: i64) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            let purged = self
                .store
                .purge_messages_before(room.id, before_ms, PURGE_STEP)
                .await?;
            total += purged;
            if purged < PURGE_STEP {
                return Ok(total);
            }
        }
    }

    fn emit_membership(&self, room: &Room, user_id: Uuid, username: &str, joined: bool) {
        self.webhooks.emit(
            if joined {
                "room.member_added"
            } else {
                "room.member_removed"
            },
            serde_json::json!({
                "room": room.name,
                "room_id": room.id,
                "user": username,
                "user_id": user_id,
            }),
        );
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
}
