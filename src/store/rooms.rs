//! Rooms, memberships and the per-room message log.
//!
//! Each room numbers its messages 1, 2, 3, ... (`Room::last_seq` is the latest); a message's key
//! is room id + sequence, so "everything after seq N" is one range scan. That is what makes an
//! ordered resume possible.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Store, Trees, decode, encode, keys, now_secs};
use crate::error::Error;

const META_NEXT_ROOM_ID: &[u8] = b"next_room_id";

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
    /// Sequence number of the newest message; 0 for an empty room.
    pub last_seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub room_id: u64,
    pub seq: u64,
    pub author: Uuid,
    pub content: String,
    pub created_at_ms: i64,
    pub edited_at_ms: Option<i64>,
    pub deleted: bool,
    pub reply_to: Option<u64>,
    pub client_msg_id: Option<String>,
}

impl Trees {
    pub fn room(&self, id: u64) -> Result<Option<Room>, Error> {
        self.rooms
            .get(keys::room(id))?
            .map(|raw| decode("rooms", &raw))
            .transpose()
    }

    pub fn room_by_name(&self, name: &str) -> Result<Option<Room>, Error> {
        match self.room_names.get(name.as_bytes())? {
            Some(raw) => match keys::u64_at(&raw, 0) {
                Some(id) => self.room(id),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    fn put_room(&self, room: &Room) -> Result<(), Error> {
        self.rooms.insert(keys::room(room.id), encode(room)?)?;
        Ok(())
    }
}

/// What a new room looks like before it has an id.
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub name: String,
    pub owner: Uuid,
    pub visibility: Visibility,
    pub persistent: bool,
    pub retention_secs: u64,
}

impl Store {
    pub fn room_by_name(&self, name: &str) -> Result<Option<Room>, Error> {
        self.trees().room_by_name(name)
    }

    /// Creates a room with a fresh id, its owner as first member. `Conflict` if the name is taken.
    pub async fn create_room(&self, new: NewRoom) -> Result<Room, Error> {
        self.write(move |t| {
            if t.room_names.contains_key(new.name.as_bytes())? {
                return Err(Error::Conflict(format!("room {} already exists", new.name)));
            }
            let id = match t.meta.get(META_NEXT_ROOM_ID)? {
                Some(raw) => keys::u64_at(&raw, 0).unwrap_or(1),
                None => 1,
            };
            t.meta.insert(META_NEXT_ROOM_ID, &(id + 1).to_be_bytes())?;
            let room = Room {
                id,
                name: new.name,
                owner: new.owner,
                visibility: new.visibility,
                persistent: new.persistent,
                retention_secs: new.retention_secs,
                created_at: now_secs(),
                last_seq: 0,
            };
            t.put_room(&room)?;
            t.room_names.insert(room.name.as_bytes(), &keys::room(id))?;
            t.memberships
                .insert(keys::membership(id, room.owner), b"{}".as_slice())?;
            t.user_rooms
                .insert(keys::user_room(room.owner, id), b"".as_slice())?;
            Ok(room)
        })
        .await
    }

    /// Appends a message to its room's log with the next sequence number and returns it as
    /// stored. Durable when it returns.
    pub async fn append_message(&self, mut message: Message) -> Result<Message, Error> {
        self.write(move |t| {
            let mut room = t
                .room(message.room_id)?
                .ok_or_else(|| Error::NotFound(format!("no room {}", message.room_id)))?;
            room.last_seq += 1;
            message.seq = room.last_seq;
            t.messages
                .insert(keys::message(room.id, message.seq), encode(&message)?)?;
            t.put_room(&room)?;
            Ok(message)
        })
        .await
    }

    /// Messages of a room with `after < seq < before`, oldest first, at most `limit`.
    pub fn messages(
        &self,
        room_id: u64,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Message>, Error> {
        let start = keys::message(room_id, after.saturating_add(1));
        let end = keys::message(room_id, before);
        let mut out = Vec::new();
        if after.saturating_add(1) >= before {
            return Ok(out);
        }
        for entry in self.trees().messages.range(start..end).take(limit) {
            let (_, raw) = entry?;
            out.push(decode("messages", &raw)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;

    #[tokio::test]
    async fn sequences_are_per_room_and_ranges_are_ordered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..StoreConfig::default()
        })
        .expect("open");
        let owner = Uuid::new_v4();
        let new = |name: &str| NewRoom {
            name: name.to_owned(),
            owner,
            visibility: Visibility::Public,
            persistent: true,
            retention_secs: 0,
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
                        content: format!("{} {i}", room.name),
                        created_at_ms: 0,
                        edited_at_ms: None,
                        deleted: false,
                        reply_to: None,
                        client_msg_id: None,
                    })
                    .await
                    .expect("append");
            }
        }
        let after_two = store.messages(a.id, 2, u64::MAX, 100).expect("range");
        let seqs: Vec<u64> = after_two.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert!(after_two.iter().all(|m| m.content.starts_with("a ")));
        assert_eq!(store.messages(b.id, 0, 3, 100).expect("range").len(), 2);
        assert_eq!(
            store.room_by_name("b").expect("get").map(|r| r.last_seq),
            Some(5)
        );
        store.close().await.expect("close");
    }
}
