//! In-memory copies of what every Send reads: rooms by name, who is a member of which room, and
//! authors' avatar URLs. Without them a Send decodes a room record, a membership record and a
//! whole user record (password hash included) from sled, for values that almost never change.
//!
//! The rule that keeps them right: every write that changes a room record, a room name, a
//! membership or a user record drops the entries it touches, on the writer task, *after* the
//! change is in the trees (see the callers in `rooms` and `users`). Readers fill entries from
//! the trees; a fill is refused if any entry was dropped between the reader's look at the trees
//! and the fill (a generation number, bumped by every drop, tells), so a reader that read the
//! old value just before a write can never put it back after that write's drop.
//!
//! Only positive facts are kept (a room that exists, a membership that exists), so writes that
//! only add (a new room, a new member) need no drop. Each map holds at most [`MAX_ENTRIES`]
//! entries and is emptied when full: the working set of a busy server is its active rooms and
//! authors, far fewer; a larger one only falls back to reading the trees.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use uuid::Uuid;

use super::rooms::Room;

/// Bound of each map (rooms, memberships, avatars). A room record is ~100 bytes in memory, a
/// membership 24, an avatar URL up to a few hundred: at most a few MiB in all.
pub const MAX_ENTRIES: usize = 4096;

/// See the module doc.
#[derive(Debug, Default)]
pub struct Lookups {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every drop; fills taken before it changed are refused.
    generation: u64,
    /// Room name -> room record as stored (its `last_seq` only a floor: the exact number is
    /// the writer's, added on every read).
    rooms: HashMap<String, Room>,
    /// (room id, user id) of memberships known to exist.
    members: HashSet<(u64, Uuid)>,
    /// User id -> the user's avatar URL (`None`: the user has none, or no longer exists).
    avatars: HashMap<Uuid, Option<String>>,
}

/// Where a reader stood before it read the trees: pass it back with the value it read.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl Lookups {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Taken before a reader reads the trees for a fill.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock().generation)
    }

    pub fn room(&self, name: &str) -> Option<Room> {
        self.lock().rooms.get(name).cloned()
    }

    pub fn fill_room(&self, ticket: Ticket, room: &Room) {
        let mut state = self.lock();
        if state.generation == ticket.0 {
            bounded_insert(&mut state.rooms, room.name.clone(), room.clone());
        }
    }

    pub fn is_member(&self, room_id: u64, user_id: Uuid) -> bool {
        self.lock().members.contains(&(room_id, user_id))
    }

    pub fn fill_member(&self, ticket: Ticket, room_id: u64, user_id: Uuid) {
        let mut state = self.lock();
        if state.generation == ticket.0 {
            if state.members.len() >= MAX_ENTRIES {
                state.members.clear();
            }
            state.members.insert((room_id, user_id));
        }
    }

    /// `Some(avatar)` when known.
    pub fn avatar(&self, user_id: Uuid) -> Option<Option<String>> {
        self.lock().avatars.get(&user_id).cloned()
    }

    pub fn fill_avatar(&self, ticket: Ticket, user_id: Uuid, avatar: Option<String>) {
        let mut state = self.lock();
        if state.generation == ticket.0 {
            bounded_insert(&mut state.avatars, user_id, avatar);
        }
    }

    /// A room record or name changed (created, floor rewritten, deleted). Writer task, after
    /// the change.
    pub fn forget_room(&self, name: &str) {
        let mut state = self.lock();
        state.generation += 1;
        state.rooms.remove(name);
    }

    /// A room is gone: its record and every membership of it.
    pub fn forget_deleted_room(&self, room_id: u64, name: &str) {
        let mut state = self.lock();
        state.generation += 1;
        state.rooms.remove(name);
        state.members.retain(|(room, _)| *room != room_id);
    }

    /// A membership ended. Writer task, after the change.
    pub fn forget_member(&self, room_id: u64, user_id: Uuid) {
        let mut state = self.lock();
        state.generation += 1;
        state.members.remove(&(room_id, user_id));
    }

    /// A user record changed (avatar, rename of the display name, disabled, ...). Writer task,
    /// after the change.
    pub fn forget_user(&self, user_id: Uuid) {
        let mut state = self.lock();
        state.generation += 1;
        state.avatars.remove(&user_id);
    }

    /// A user is gone: their record and every membership of theirs.
    pub fn forget_removed_user(&self, user_id: Uuid) {
        let mut state = self.lock();
        state.generation += 1;
        state.avatars.remove(&user_id);
        state.members.retain(|(_, user)| *user != user_id);
    }
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_that_raced_with_a_drop_is_refused() {
        let lookups = Lookups::default();
        let user = Uuid::new_v4();
        let ticket = lookups.ticket();
        // The writer changes the user after the reader read the old record.
        lookups.forget_user(user);
        lookups.fill_avatar(ticket, user, Some("old".to_owned()));
        assert_eq!(lookups.avatar(user), None, "a stale fill must not stick");
        let ticket = lookups.ticket();
        lookups.fill_avatar(ticket, user, Some("new".to_owned()));
        assert_eq!(lookups.avatar(user), Some(Some("new".to_owned())));
    }

    #[test]
    fn deleting_a_room_or_a_user_drops_their_memberships() {
        let lookups = Lookups::default();
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let ticket = lookups.ticket();
        for (room, user) in [(1, alice), (1, bob), (2, alice), (2, bob)] {
            lookups.fill_member(ticket, room, user);
        }
        lookups.forget_deleted_room(1, "one");
        assert!(!lookups.is_member(1, alice) && !lookups.is_member(1, bob));
        assert!(lookups.is_member(2, alice) && lookups.is_member(2, bob));
        lookups.forget_removed_user(bob);
        assert!(lookups.is_member(2, alice) && !lookups.is_member(2, bob));
    }

    #[test]
    fn maps_stay_bounded() {
        let lookups = Lookups::default();
        let ticket = lookups.ticket();
        for room in 0..u64::try_from(MAX_ENTRIES * 2 + 1).unwrap_or(u64::MAX) {
            lookups.fill_member(ticket, room, Uuid::nil());
        }
        assert!(lookups.lock().members.len() <= MAX_ENTRIES);
    }
}
