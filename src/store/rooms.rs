//! Rooms, memberships and the per-room message log.
//!
//! Each room numbers its messages 1, 2, 3, ... (`Room::last_seq` is the latest); a message's key
//! is room id + sequence, so "everything after seq N" is one range scan. That is what makes an
//! ordered resume possible.
//!
//! A room's last sequence number is the larger of two things on disk: the `last_seq` stored in
//! its record (a floor, written when the room is created, before retention purges messages, and
//! when the store closes) and the sequence of its newest message (the last key of its range).
//! Sending a message therefore writes one entry, the message, not the message plus a rewritten
//! room record; the writer keeps each room's number in memory ([`Sequences`]) once it has
//! looked it up. Messages of a room always form one gapless range: sequences only grow, and
//! only a purge (oldest first) or deleting the room removes messages.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::messages::newest_message_seq;
use super::{SledStore, Trees, decode, encode, keys, now_secs};
use crate::error::Error;

const META_NEXT_ROOM_ID: &[u8] = b"next_room_id";

/// Names of the rooms that are not created by name and so do not count against a user's room
/// quota: direct rooms (`dm:`) and personal rooms (`user:`), as `core::policy` names them.
pub const UNCOUNTED_PREFIXES: [&str; 2] = ["dm:", "user:"];

/// Whether a room of this name counts against its owner's room quota (`owned_rooms`).
pub(super) fn counts_against_quota(name: &str) -> bool {
    !UNCOUNTED_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// The room id in the next key of an index scan (at `offset` in the key).
fn next_id(
    scan: &mut impl Iterator<Item = Result<sled::IVec, sled::Error>>,
    offset: usize,
) -> Result<Option<u64>, Error> {
    match scan.next() {
        None => Ok(None),
        Some(key) => Ok(keys::u64_at(&key?, offset)),
    }
}

/// A page of the rooms a user can see, in id order.
#[derive(Debug, Default)]
pub struct RoomPage {
    /// Each room with the user's membership, if any.
    pub rooms: Vec<(Room, Option<Membership>)>,
    /// The id to continue after, when more rooms follow.
    pub next: Option<u64>,
}

/// A user's membership of a room.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Membership {
    /// Unix seconds.
    #[serde(default)]
    pub joined_at: i64,
    /// Highest sequence the user has marked read.
    #[serde(default)]
    pub last_read_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Room {
    pub id: u64,
    pub name: String,
    pub owner: Uuid,
    pub visibility: Visibility,
    /// Whether messages are kept (a non-persistent room only relays).
    pub persistent: bool,
    /// Messages older than this many seconds may be purged; 0 keeps them forever.
    pub retention_secs: u64,
    pub created_at: i64,
    /// Sequence number of the newest message; 0 for an empty room. In the stored record only a
    /// floor (see the module doc); every `Room` the store hands out carries the exact number.
    pub last_seq: u64,
    /// What people call the room (a "rename"): shown instead of the name, which is the room's
    /// id in every protocol and never changes. Absent in records without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The room's topic line. Absent in records without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// A room's last sequence number as the writer knows it.
#[derive(Debug, Clone, Copy)]
pub(super) struct RoomSequence {
    /// The newest message's sequence number (or the floor, if larger).
    pub(super) last: u64,
    /// What the room record on disk says (its `last_seq` floor).
    recorded: u64,
}

/// Last sequence numbers of the rooms the writer has appended to since the store opened: one
/// small entry per such room (rooms are few next to messages; deleting a room drops its entry).
///
/// Only the writer task adds or changes entries, so an entry is never older than what is on
/// disk; readers that miss derive the number from disk without caching it.
#[derive(Debug, Default)]
pub struct Sequences {
    rooms: Mutex<HashMap<u64, RoomSequence>>,
}

impl Sequences {
    fn get(&self, room_id: u64) -> Option<RoomSequence> {
        self.rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&room_id)
            .copied()
    }

    pub(super) fn set(&self, room_id: u64, sequence: RoomSequence) {
        self.rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(room_id, sequence);
    }

    fn forget(&self, room_id: u64) {
        self.rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&room_id);
    }

    /// Rooms whose record's floor is behind their last sequence number.
    fn stale(&self) -> Vec<(u64, u64)> {
        self.rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, s)| s.last > s.recorded)
            .map(|(id, s)| (*id, s.last))
            .collect()
    }
}

impl Trees {
    /// A room with its exact last sequence number.
    pub fn room(&self, id: u64) -> Result<Option<Room>, Error> {
        self.room_record(id)?
            .map(|room| self.with_last_seq(room))
            .transpose()
    }

    /// A room as its record stores it (`last_seq` only a floor).
    fn room_record(&self, id: u64) -> Result<Option<Room>, Error> {
        self.rooms
            .get(keys::room(id))?
            .map(|raw| decode("rooms", &raw))
            .transpose()
    }

    /// `room` (as recorded) with its exact last sequence number.
    fn with_last_seq(&self, mut room: Room) -> Result<Room, Error> {
        let last = match self.sequences.get(room.id) {
            Some(known) => known.last,
            None => newest_message_seq(&self.messages, room.id)?,
        };
        room.last_seq = room.last_seq.max(last);
        Ok(room)
    }

    /// The last sequence number of `room_id`, looked up once and then kept in memory. Writer
    /// task only. `NotFound` if there is no such room.
    pub(super) fn last_seq_for_append(&self, room_id: u64) -> Result<RoomSequence, Error> {
        if let Some(known) = self.sequences.get(room_id) {
            return Ok(known);
        }
        let room = self
            .room_record(room_id)?
            .ok_or_else(|| Error::NotFound(format!("no room {room_id}")))?;
        let known = RoomSequence {
            last: room
                .last_seq
                .max(newest_message_seq(&self.messages, room_id)?),
            recorded: room.last_seq,
        };
        self.sequences.set(room_id, known);
        Ok(known)
    }

    /// Writes `last` as the floor in the record of `room_id` if the record is behind. Writer
    /// task only.
    pub(super) fn record_last_seq(&self, room_id: u64, last: u64) -> Result<(), Error> {
        let Some(mut room) = self.room_record(room_id)? else {
            self.sequences.forget(room_id);
            return Ok(());
        };
        if room.last_seq < last {
            room.last_seq = last;
            self.put_room(&room)?;
        }
        self.sequences.set(
            room_id,
            RoomSequence {
                last: room.last_seq,
                recorded: room.last_seq,
            },
        );
        Ok(())
    }

    /// Brings every room record the writer has left behind up to date (on close). Writer task
    /// only.
    pub(crate) fn persist_last_seqs(&self) -> Result<(), Error> {
        for (room_id, last) in self.sequences.stale() {
            self.record_last_seq(room_id, last)?;
        }
        Ok(())
    }

    /// A room by name, with its exact last sequence number. The record comes from memory once
    /// read (see `store::lookups`); the number is the writer's, as for every read.
    pub fn room_by_name(&self, name: &str) -> Result<Option<Room>, Error> {
        if let Some(room) = self.lookups.room(name) {
            return self.with_last_seq(room).map(Some);
        }
        let ticket = self.lookups.ticket();
        let Some(id) = self
            .room_names
            .get(name.as_bytes())?
            .and_then(|raw| keys::u64_at(&raw, 0))
        else {
            return Ok(None);
        };
        let Some(room) = self.room_record(id)? else {
            return Ok(None);
        };
        self.lookups.fill_room(ticket, &room);
        self.with_last_seq(room).map(Some)
    }

    fn put_room(&self, room: &Room) -> Result<(), Error> {
        let written = encode(room).and_then(|record| {
            self.rooms.insert(keys::room(room.id), record)?;
            Ok(())
        });
        self.lookups.forget_room(&room.name);
        written
    }

    pub fn membership(&self, room_id: u64, user_id: Uuid) -> Result<Option<Membership>, Error> {
        self.memberships
            .get(keys::membership(room_id, user_id))?
            .map(|raw| decode("memberships", &raw))
            .transpose()
    }

    /// Whether `user_id` is a member of `room_id`; once true, answered from memory until the
    /// membership, the room or the user goes (see `store::lookups`).
    pub fn is_member(&self, room_id: u64, user_id: Uuid) -> Result<bool, Error> {
        if self.lookups.is_member(room_id, user_id) {
            return Ok(true);
        }
        let ticket = self.lookups.ticket();
        let member = self
            .memberships
            .contains_key(keys::membership(room_id, user_id))?;
        if member {
            self.lookups.fill_member(ticket, room_id, user_id);
        }
        Ok(member)
    }

    /// Moves a member's read cursor forward to `seq` (never back); nothing for a non-member.
    /// Writer task only.
    pub(crate) fn advance_read_cursor(
        &self,
        room_id: u64,
        user_id: Uuid,
        seq: u64,
    ) -> Result<(), Error> {
        if !self.is_member(room_id, user_id)? {
            return Ok(());
        }
        if let Some(mut membership) = self.membership(room_id, user_id)?
            && membership.last_read_seq < seq
        {
            membership.last_read_seq = seq;
            self.memberships
                .insert(keys::membership(room_id, user_id), encode(&membership)?)?;
        }
        Ok(())
    }

    fn put_membership(
        &self,
        room_id: u64,
        user_id: Uuid,
        membership: &Membership,
    ) -> Result<(), Error> {
        self.memberships
            .insert(keys::membership(room_id, user_id), encode(membership)?)?;
        self.user_rooms
            .insert(keys::user_room(user_id, room_id), b"".as_slice())?;
        Ok(())
    }

    /// Removes a room's messages, their search entries, memberships, idempotency keys, name and record, and the
    /// records of the files its messages list (their hashes go to `freed`). Returns how many
    /// messages went. Writer task only.
    fn delete_room_entries(&self, room: &Room, freed: &mut Vec<String>) -> Result<usize, Error> {
        let prefix = keys::room(room.id);
        self.remove_room_files(room.id, freed)?;
        self.unindex_room(room.id)?;
        let mut messages = 0;
        for entry in self.messages.scan_prefix(prefix) {
            let (key, raw) = entry?;
            // Only a record that names mentions is decoded, to forget them.
            if raw.windows(12).any(|w| w == b"\"mentions\":[")
                && let Ok(message) = super::decode::<super::Message>("messages", &raw)
            {
                self.reindex_mentions(room.id, message.seq, &message.mentions, &[], 0)?;
            }
            self.messages.remove(key)?;
            messages += 1;
        }
        for key in self.memberships.scan_prefix(prefix).keys() {
            let key = key?;
            if let Some(user_id) = keys::uuid_at(&key, 8) {
                self.user_rooms.remove(keys::user_room(user_id, room.id))?;
            }
            self.memberships.remove(key)?;
        }
        for key in self.client_ids.scan_prefix(prefix).keys() {
            self.client_ids.remove(key?)?;
        }
        self.room_names.remove(room.name.as_bytes())?;
        self.public_rooms.remove(prefix)?;
        self.owned_rooms
            .remove(keys::user_room(room.owner, room.id))?;
        self.rooms.remove(prefix)?;
        self.sequences.forget(room.id);
        Ok(messages)
    }
}

/// What a new room looks like before it has an id.
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub name: String,
    pub owner: Uuid,
    /// Members besides the owner.
    pub members: Vec<Uuid>,
    pub visibility: Visibility,
    pub persistent: bool,
    pub retention_secs: u64,
    /// Rooms the owner may own at most, counting this one (`limits.max_rooms_per_user`);
    /// `None`: no limit (admins, and rooms not created by name).
    pub quota: Option<usize>,
}

impl SledStore {
    pub fn room_by_name(&self, name: &str) -> Result<Option<Room>, Error> {
        self.trees()?.room_by_name(name)
    }

    /// Creates a room with a fresh id, its owner as first member. `Conflict` if the name is taken.
    pub async fn create_room(&self, new: NewRoom) -> Result<Room, Error> {
        self.write(move |t| {
            if t.room_names.contains_key(new.name.as_bytes())? {
                return Err(Error::Conflict(format!("room {} already exists", new.name)));
            }
            let counted = counts_against_quota(&new.name);
            if let Some(max) = new.quota.filter(|_| counted) {
                // Keys only, and at most `max` of them.
                let owned = t
                    .owned_rooms
                    .scan_prefix(new.owner.as_bytes())
                    .keys()
                    .take(max)
                    .count();
                if owned >= max {
                    return Err(Error::Forbidden(format!(
                        "you own {owned} rooms, the most a user may (limits.max_rooms_per_user); \
                         delete one first"
                    )));
                }
            }
            let id = t.next_counter(META_NEXT_ROOM_ID)?;
            let room = Room {
                id,
                name: new.name,
                owner: new.owner,
                visibility: new.visibility,
                persistent: new.persistent,
                retention_secs: new.retention_secs,
                created_at: now_secs(),
                last_seq: 0,
                title: None,
                topic: None,
            };
            t.put_room(&room)?;
            t.room_names.insert(room.name.as_bytes(), &keys::room(id))?;
            if room.visibility == Visibility::Public {
                t.public_rooms.insert(keys::room(id), b"".as_slice())?;
            }
            if counted {
                t.owned_rooms
                    .insert(keys::user_room(room.owner, id), b"".as_slice())?;
            }
            t.put_membership(
                id,
                room.owner,
                &Membership {
                    joined_at: now_secs(),
                    last_read_seq: 0,
                },
            )?;
            for member in &new.members {
                t.put_membership(
                    id,
                    *member,
                    &Membership {
                        joined_at: now_secs(),
                        last_read_seq: 0,
                    },
                )?;
            }
            Ok(room)
        })
        .await
    }

    /// The membership of `user_id` in `room_id`, if any.
    pub fn membership(&self, room_id: u64, user_id: Uuid) -> Result<Option<Membership>, Error> {
        self.trees()?.membership(room_id, user_id)
    }

    /// Whether `user_id` is a member of `room_id` (without decoding the membership record).
    pub fn is_member(&self, room_id: u64, user_id: Uuid) -> Result<bool, Error> {
        self.trees()?.is_member(room_id, user_id)
    }

    /// Ids of the rooms `user_id` is a member of.
    pub fn user_room_ids(&self, user_id: Uuid) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        for entry in self.trees()?.user_rooms.scan_prefix(user_id.as_bytes()) {
            let (key, _) = entry?;
            out.extend(keys::u64_at(&key, 16));
        }
        Ok(out)
    }

    /// User ids of the members of a room.
    pub fn room_member_ids(&self, room_id: u64) -> Result<Vec<Uuid>, Error> {
        let mut out = Vec::new();
        for entry in self.trees()?.memberships.scan_prefix(keys::room(room_id)) {
            let (key, _) = entry?;
            out.extend(keys::uuid_at(&key, 8));
        }
        Ok(out)
    }

    /// All rooms, in id order.
    pub fn rooms(&self) -> Result<Vec<Room>, Error> {
        let mut out = Vec::new();
        for entry in self.trees()?.rooms.iter() {
            let (_, raw) = entry?;
            out.push(self.trees()?.with_last_seq(decode("rooms", &raw)?)?);
        }
        Ok(out)
    }

    /// Rooms created by name that `owner` owns (what the room quota counts).
    pub fn owned_room_count(&self, owner: Uuid) -> Result<usize, Error> {
        Ok(self
            .trees()?
            .owned_rooms
            .scan_prefix(owner.as_bytes())
            .keys()
            .count())
    }

    /// A page of the rooms `user_id` can see with ids above `after`, at most `limit`, in id
    /// order: the public rooms and the user's own (memberships), merged from their indexes;
    /// `all`: every room (an admin's view). Each with the user's membership. Read on a
    /// blocking thread: a page costs `limit` lookups, whatever the number of rooms.
    pub async fn visible_rooms(
        &self,
        user_id: Uuid,
        all: bool,
        after: u64,
        limit: usize,
    ) -> Result<RoomPage, Error> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.visible_rooms_now(user_id, all, after, limit))
            .await
            .map_err(|e| Error::Internal(format!("room listing failed: {e}")))?
    }

    fn visible_rooms_now(
        &self,
        user_id: Uuid,
        all: bool,
        after: u64,
        limit: usize,
    ) -> Result<RoomPage, Error> {
        let t = self.trees()?;
        let Some(start) = after.checked_add(1) else {
            return Ok(RoomPage::default());
        };
        let wanted = limit.saturating_add(1);
        let mut ids: Vec<u64> = Vec::with_capacity(wanted.min(1024));
        if all {
            for key in t.rooms.range(keys::room(start)..).keys().take(wanted) {
                ids.extend(keys::u64_at(&key?, 0));
            }
        } else {
            let mut public = t.public_rooms.range(keys::room(start)..).keys();
            let mut mine = t
                .user_rooms
                .range(keys::user_room(user_id, start)..=keys::user_room(user_id, u64::MAX))
                .keys();
            let mut next_public = next_id(&mut public, 0)?;
            let mut next_mine = next_id(&mut mine, 16)?;
            while ids.len() < wanted {
                let id = match (next_public, next_mine) {
                    (Some(a), Some(b)) if a == b => {
                        next_public = next_id(&mut public, 0)?;
                        next_mine = next_id(&mut mine, 16)?;
                        a
                    }
                    (Some(a), b) if b.is_none_or(|b| a < b) => {
                        next_public = next_id(&mut public, 0)?;
                        a
                    }
                    (_, Some(b)) => {
                        next_mine = next_id(&mut mine, 16)?;
                        b
                    }
                    _ => break,
                };
                ids.push(id);
            }
        }
        let more = ids.len() > limit;
        ids.truncate(limit);
        let next = if more { ids.last().copied() } else { None };
        let mut rooms = Vec::with_capacity(ids.len());
        for id in ids {
            // An index entry whose room is gone (a crash between the two) is skipped.
            if let Some(room) = t.room(id)? {
                rooms.push((room, t.membership(id, user_id)?));
            }
        }
        Ok(RoomPage { rooms, next })
    }

    /// Makes `user_id` a member (keeping an existing membership as it is). Returns whether the
    /// user was newly added.
    pub async fn add_member(&self, room_id: u64, user_id: Uuid) -> Result<bool, Error> {
        self.write(move |t| {
            if t.room(room_id)?.is_none() {
                return Err(Error::NotFound(format!("no room {room_id}")));
            }
            if t.membership(room_id, user_id)?.is_some() {
                return Ok(false);
            }
            t.put_membership(
                room_id,
                user_id,
                &Membership {
                    joined_at: now_secs(),
                    last_read_seq: 0,
                },
            )?;
            Ok(true)
        })
        .await
    }

    /// Deletes a room with its messages, memberships and idempotency keys. Returns how many
    /// messages went with it. Runs as one write, so nothing sees half a room.
    pub async fn delete_room(&self, room_id: u64) -> Result<usize, Error> {
        let (deleted, freed) = self
            .write(move |t| {
                let room = t
                    .room(room_id)?
                    .ok_or_else(|| Error::NotFound(format!("no room {room_id}")))?;
                let mut freed = Vec::new();
                let deleted = t.delete_room_entries(&room, &mut freed);
                // Also when the deletion stopped halfway: what memory holds may be gone from
                // disk.
                t.lookups.forget_deleted_room(room_id, &room.name);
                Ok((deleted?, freed))
            })
            .await?;
        self.remove_unreferenced(freed).await;
        Ok(deleted)
    }

    /// Applies `change` to a room's record (its title and topic; never its name, id or
    /// owner, which other records and every protocol refer to) and returns the room. Durable
    /// when it returns.
    pub async fn update_room<F>(&self, room_id: u64, change: F) -> Result<Room, Error>
    where
        F: FnOnce(&mut Room) -> Result<(), Error> + Send + 'static,
    {
        self.write(move |t| {
            let mut room = t
                .room_record(room_id)?
                .ok_or_else(|| Error::NotFound(format!("no room {room_id}")))?;
            let (name, owner) = (room.name.clone(), room.owner);
            change(&mut room)?;
            if room.name != name || room.owner != owner || room.id != room_id {
                return Err(Error::Internal(
                    "a room update may not change its name, id or owner".to_owned(),
                ));
            }
            t.put_room(&room)?;
            t.with_last_seq(room)
        })
        .await
    }

    /// Ends a membership. Returns whether there was one.
    pub async fn remove_member(&self, room_id: u64, user_id: Uuid) -> Result<bool, Error> {
        self.write(move |t| {
            let removed = t
                .memberships
                .remove(keys::membership(room_id, user_id))
                .map(|old| old.is_some());
            t.lookups.forget_member(room_id, user_id);
            let existed = removed?;
            t.user_rooms.remove(keys::user_room(user_id, room_id))?;
            Ok(existed)
        })
        .await
    }

    /// Moves a member's read cursor forward (never back). Returns the cursor.
    pub async fn mark_read(&self, room_id: u64, user_id: Uuid, seq: u64) -> Result<u64, Error> {
        self.write(move |t| {
            let mut membership = t
                .membership(room_id, user_id)?
                .ok_or_else(|| Error::Forbidden("not a member of this room".to_owned()))?;
            if seq > membership.last_read_seq {
                membership.last_read_seq = seq;
                t.put_membership(room_id, user_id, &membership)?;
            }
            Ok(membership.last_read_seq)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use crate::store::Message;

    fn open(dir: &std::path::Path) -> SledStore {
        crate::store::open_for_tests(dir)
    }

    fn new_room(name: &str, owner: Uuid) -> NewRoom {
        NewRoom {
            name: name.to_owned(),
            owner,
            members: Vec::new(),
            visibility: Visibility::Public,
            persistent: true,
            retention_secs: 0,
            quota: None,
        }
    }

    fn draft(room_id: u64, author: Uuid, client_msg_id: Option<&str>) -> Message {
        Message {
            room_id,
            seq: 0,
            author,
            author_name: "owner".to_owned(),
            author_avatar: None,
            content: "hello".to_owned(),
            created_at_ms: 0,
            edited_at_ms: None,
            deleted: false,
            reply_to: None,
            client_msg_id: client_msg_id.map(str::to_owned),
            attachments: Vec::new(),
            reactions: Default::default(),
            mentions: Vec::new(),
        }
    }

    async fn append(store: &SledStore, room_id: u64, author: Uuid) -> u64 {
        store
            .append_message(draft(room_id, author, None))
            .await
            .expect("append")
            .message
            .seq
    }

    /// What the room record on disk says, bypassing the exact number the store hands out.
    fn recorded_last_seq(store: &SledStore, room_id: u64) -> u64 {
        let raw = store
            .trees()
            .expect("trees")
            .rooms
            .get(keys::room(room_id))
            .expect("get")
            .expect("record");
        decode::<Room>("rooms", &raw).expect("decode").last_seq
    }

    fn set_recorded_last_seq(store: &SledStore, room_id: u64, last_seq: u64) {
        let raw = store
            .trees()
            .expect("trees")
            .rooms
            .get(keys::room(room_id))
            .expect("get")
            .expect("record");
        let mut room = decode::<Room>("rooms", &raw).expect("decode");
        room.last_seq = last_seq;
        store
            .trees()
            .expect("trees")
            .rooms
            .insert(keys::room(room_id), encode(&room).expect("encode"))
            .expect("insert");
    }

    /// What verify says about the messages tree (these tests store no users for the members).
    async fn message_problems(store: &SledStore) -> Vec<String> {
        let report = store.verify().await.expect("verify");
        report
            .problems
            .into_iter()
            .filter(|p| p.starts_with("messages:"))
            .collect()
    }

    #[tokio::test]
    async fn a_send_writes_only_the_message_and_the_room_still_reports_its_last_seq() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let owner = Uuid::new_v4();
        let room = store.create_room(new_room("r", owner)).await.expect("room");
        let rooms_before = store
            .trees()
            .expect("trees")
            .rooms
            .checksum()
            .expect("checksum");
        for expected in 1..=3 {
            assert_eq!(append(&store, room.id, owner).await, expected);
        }
        assert_eq!(
            store
                .trees()
                .expect("trees")
                .rooms
                .checksum()
                .expect("checksum"),
            rooms_before,
            "no room record rewritten per message"
        );
        assert_eq!(recorded_last_seq(&store, room.id), 0);
        assert_eq!(
            store.room_by_name("r").expect("get").map(|r| r.last_seq),
            Some(3)
        );
        assert_eq!(
            store.rooms().expect("rooms").first().map(|r| r.last_seq),
            Some(3)
        );
        // A clean close refreshes the record; numbering continues after reopening.
        store.close().await.expect("close");
        drop(store);
        let store = open(dir.path());
        assert_eq!(recorded_last_seq(&store, room.id), 3);
        assert_eq!(append(&store, room.id, owner).await, 4);
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_stale_record_is_overtaken_by_the_newest_message() {
        // What a crash leaves: messages past the record's floor (it is refreshed lazily).
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let owner = Uuid::new_v4();
        let room = store.create_room(new_room("r", owner)).await.expect("room");
        for _ in 0..3 {
            append(&store, room.id, owner).await;
        }
        store.close().await.expect("close");
        drop(store);
        let store = open(dir.path());
        set_recorded_last_seq(&store, room.id, 1);
        assert_eq!(
            store.room_by_name("r").expect("get").map(|r| r.last_seq),
            Some(3),
            "readers derive it before the writer has"
        );
        assert_eq!(append(&store, room.id, owner).await, 4);
        assert_eq!(
            store
                .messages(room.id, 0, u64::MAX, 10)
                .expect("range")
                .len(),
            4
        );
        assert!(
            message_problems(&store).await.is_empty(),
            "{:?}",
            message_problems(&store).await
        );
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn purging_every_message_keeps_the_number_for_the_next_send() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let owner = Uuid::new_v4();
        let room = store.create_room(new_room("r", owner)).await.expect("room");
        for _ in 0..3 {
            append(&store, room.id, owner).await;
        }
        assert_eq!(
            store
                .purge_messages_before(room.id, 1, 100)
                .await
                .expect("purge"),
            3
        );
        assert_eq!(
            recorded_last_seq(&store, room.id),
            3,
            "the floor is on disk with the purge, not only at close"
        );
        assert_eq!(
            store.room_by_name("r").expect("get").map(|r| r.last_seq),
            Some(3)
        );
        assert_eq!(append(&store, room.id, owner).await, 4);
        store.close().await.expect("close");
        drop(store);
        let store = open(dir.path());
        assert_eq!(append(&store, room.id, owner).await, 5);
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_deleted_room_is_forgotten_and_appends_to_it_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let owner = Uuid::new_v4();
        let room = store.create_room(new_room("r", owner)).await.expect("room");
        append(&store, room.id, owner).await;
        assert_eq!(store.delete_room(room.id).await.expect("delete"), 1);
        let err = store
            .append_message(draft(room.id, owner, None))
            .await
            .expect_err("no room");
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        // A new room starts at 1 whatever came before.
        let other = store.create_room(new_room("r", owner)).await.expect("room");
        assert_ne!(other.id, room.id);
        assert_eq!(append(&store, other.id, owner).await, 1);
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_room_read_from_memory_follows_deletion_and_recreation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let owner = Uuid::new_v4();
        let room = store.create_room(new_room("r", owner)).await.expect("room");
        // Read twice: the second comes from memory, with the number still exact.
        assert_eq!(
            store.room_by_name("r").expect("get").map(|r| r.id),
            Some(room.id)
        );
        append(&store, room.id, owner).await;
        assert_eq!(
            store.room_by_name("r").expect("get").map(|r| r.last_seq),
            Some(1)
        );
        store.delete_room(room.id).await.expect("delete");
        assert!(store.room_by_name("r").expect("get").is_none(), "deleted");
        let mut private = new_room("r", owner);
        private.visibility = Visibility::Private;
        let other = store.create_room(private).await.expect("room");
        let found = store.room_by_name("r").expect("get").expect("recreated");
        assert_eq!(
            (found.id, found.visibility, found.last_seq),
            (other.id, Visibility::Private, 0)
        );
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_membership_read_from_memory_ends_with_the_membership() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let owner = Uuid::new_v4();
        let member = Uuid::new_v4();
        let room = store.create_room(new_room("r", owner)).await.expect("room");
        let other = store.create_room(new_room("s", owner)).await.expect("room");
        assert!(!store.is_member(room.id, member).expect("get"));
        assert!(store.add_member(room.id, member).await.expect("add"));
        assert!(store.add_member(other.id, member).await.expect("add"));
        for _ in 0..2 {
            assert!(store.is_member(room.id, member).expect("get"));
            assert!(store.is_member(other.id, member).expect("get"));
        }
        // Removed: no longer a member, though memory said so a moment ago.
        assert!(store.remove_member(room.id, member).await.expect("remove"));
        assert!(!store.is_member(room.id, member).expect("get"));
        assert!(store.is_member(other.id, member).expect("get"));
        // The room deleted: nobody is a member of it any more.
        assert!(store.is_member(other.id, owner).expect("get"));
        store.delete_room(other.id).await.expect("delete");
        assert!(!store.is_member(other.id, member).expect("get"));
        assert!(!store.is_member(other.id, owner).expect("get"));
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn verify_reports_a_gap_in_a_room() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let owner = Uuid::new_v4();
        let room = store.create_room(new_room("r", owner)).await.expect("room");
        for _ in 0..3 {
            append(&store, room.id, owner).await;
        }
        store
            .trees()
            .expect("trees")
            .messages
            .remove(keys::message(room.id, 2))
            .expect("remove");
        assert_eq!(
            message_problems(&store).await,
            vec![format!(
                "messages: room {} jumps from sequence 1 to 3",
                room.id
            )]
        );
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn sequences_are_per_room_and_ranges_are_ordered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(
            &StoreConfig {
                data_dir: dir.path().to_path_buf(),
                ..StoreConfig::default()
            },
            Default::default(),
        )
        .expect("open");
        let owner = Uuid::new_v4();
        let new = |name: &str| NewRoom {
            name: name.to_owned(),
            owner,
            members: Vec::new(),
            visibility: Visibility::Public,
            persistent: true,
            retention_secs: 0,
            quota: None,
        };
        let a = store.create_room(new("a")).await.expect("room a");
        let b = store.create_room(new("b")).await.expect("room b");
        assert!(store.create_room(new("a")).await.is_err(), "duplicate name");
        for i in 0..5 {
            for room in [&a, &b] {
                store
                    .append_message(Message {
                        room_id: room.id,
                        seq: 0,
                        author: owner,
                        author_name: "owner".to_owned(),
                        author_avatar: None,
                        content: format!("{} {i}", room.name),
                        created_at_ms: 0,
                        edited_at_ms: None,
                        deleted: false,
                        reply_to: None,
                        client_msg_id: Some(format!("{}-{i}", room.name)),
                        attachments: Vec::new(),
                        reactions: Default::default(),
                        mentions: Vec::new(),
                    })
                    .await
                    .expect("append");
            }
        }
        let retry = store
            .append_message(Message {
                room_id: a.id,
                seq: 0,
                author: owner,
                author_name: "owner".to_owned(),
                author_avatar: None,
                content: "retried".to_owned(),
                created_at_ms: 0,
                edited_at_ms: None,
                deleted: false,
                reply_to: None,
                client_msg_id: Some("a-3".to_owned()),
                attachments: Vec::new(),
                reactions: Default::default(),
                mentions: Vec::new(),
            })
            .await
            .expect("append");
        assert!(retry.duplicate);
        assert_eq!(
            (retry.message.seq, retry.message.content.as_str()),
            (4, "a 3")
        );
        let after_two = store.messages(a.id, 2, u64::MAX, 100).expect("range");
        let seqs: Vec<u64> = after_two.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert!(after_two.iter().all(|m| m.content.starts_with("a ")));
        assert_eq!(store.messages(b.id, 0, 3, 100).expect("range").len(), 2);
        assert_eq!(
            store.room_by_name("b").expect("get").map(|r| r.last_seq),
            Some(5)
        );
        // Retention: everything was created at 0 ms, so a cutoff of 1 ms purges it, in bounded
        // steps, and only in that room.
        assert_eq!(
            store
                .purge_messages_before(a.id, 1, 3)
                .await
                .expect("purge"),
            3
        );
        assert_eq!(
            store
                .purge_messages_before(a.id, 1, 100)
                .await
                .expect("purge"),
            2
        );
        assert!(
            store
                .messages(a.id, 0, u64::MAX, 100)
                .expect("range")
                .is_empty()
        );
        assert_eq!(
            store.messages(b.id, 0, u64::MAX, 100).expect("range").len(),
            5
        );
        store.close().await.expect("close");
    }
}
