//! Upgrades of older stores on open, before the writer starts (nothing else writes then).
//!
//! 2 -> 3: the indexes and counters of schema version 3, built from the records: public rooms
//! and the rooms each user created (listing, the room quota), the totals of each queue and
//! inbox, the accounts' names. Each is cleared and rebuilt whole, so an upgrade interrupted
//! by a crash is simply done again on the next open.
//!
//! 3 -> 4: the full-text index (`store::search`), cleared and built whole from the message
//! log, the same way.

use std::collections::HashMap;

use uuid::Uuid;

use super::inbox::{Notification, QueuedDirectMessage, Totals, sender_totals_key};
use super::rooms::{Room, Visibility, counts_against_quota};
use super::{Trees, decode, keys};
use crate::error::Error;

pub(super) fn to_v3(trees: &Trees) -> Result<(), Error> {
    for tree in [
        &trees.public_rooms,
        &trees.owned_rooms,
        &trees.dm_queue_totals,
        &trees.notification_counts,
        &trees.account_names,
    ] {
        tree.clear()?;
    }
    let mut rooms = 0usize;
    for entry in trees.rooms.iter() {
        let (_, raw) = entry?;
        let room: Room = decode("rooms", &raw)?;
        if room.visibility == Visibility::Public {
            trees
                .public_rooms
                .insert(keys::room(room.id), b"".as_slice())?;
        }
        if counts_against_quota(&room.name) {
            trees
                .owned_rooms
                .insert(keys::user_room(room.owner, room.id), b"".as_slice())?;
        }
        rooms += 1;
    }
    let mut queues: HashMap<Vec<u8>, Totals> = HashMap::new();
    for entry in trees.dm_queue.iter() {
        let (key, raw) = entry?;
        let Some(user_id) = keys::uuid_at(&key, 0) else {
            continue;
        };
        let message: QueuedDirectMessage = decode("dm_queue", &raw)?;
        let size = u64::try_from(raw.len()).unwrap_or(u64::MAX);
        for totals_key in [
            user_id.as_bytes().to_vec(),
            sender_totals_key(user_id, message.from_user_id).to_vec(),
        ] {
            let totals = queues.entry(totals_key).or_default();
            totals.first += 1;
            totals.second = totals.second.saturating_add(size);
        }
    }
    for (key, totals) in &queues {
        totals.write(&trees.dm_queue_totals, key)?;
    }
    let mut inboxes: HashMap<Uuid, Totals> = HashMap::new();
    for entry in trees.notifications.iter() {
        let (_, raw) = entry?;
        let notification: Notification = decode("notifications", &raw)?;
        let counts = inboxes.entry(notification.user_id).or_default();
        counts.first += 1;
        if !notification.read {
            counts.second += 1;
        }
    }
    for (user_id, counts) in &inboxes {
        counts.write(&trees.notification_counts, user_id.as_bytes())?;
    }
    let mut users = 0usize;
    for entry in trees.users.iter() {
        let (_, raw) = entry?;
        let user: super::User = decode("users", &raw)?;
        trees.reindex_names(None, Some(&user))?;
        users += 1;
    }
    tracing::info!(
        rooms,
        users,
        queues = queues.len(),
        inboxes = inboxes.len(),
        "store upgraded to schema version 3 (indexes built)"
    );
    Ok(())
}

pub(super) fn to_v4(trees: &Trees) -> Result<(), Error> {
    let messages = trees.rebuild_search_index()?;
    tracing::info!(
        messages,
        entries = trees.search.len(),
        "store upgraded to schema version 4 (search index built)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{META_SCHEMA, NewRoom, SledStore};

    fn open(dir: &std::path::Path) -> SledStore {
        crate::store::open_for_tests(dir)
    }

    #[tokio::test]
    async fn a_version_2_store_gets_its_indexes_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let owner = Uuid::new_v4();
        let (public_id, private_id) = {
            let store = open(dir.path());
            let new = |name: &str, visibility| NewRoom {
                name: name.to_owned(),
                owner,
                members: Vec::new(),
                visibility,
                persistent: true,
                retention_secs: 0,
                quota: None,
            };
            let public = store
                .create_room(new("pub", Visibility::Public))
                .await
                .expect("room");
            let private = store
                .create_room(new("priv", Visibility::Private))
                .await
                .expect("room");
            // What a version-2 store has: no indexes.
            for tree in [
                &store.trees().expect("trees").public_rooms,
                &store.trees().expect("trees").owned_rooms,
            ] {
                tree.clear().expect("clear");
            }
            store
                .trees()
                .expect("trees")
                .meta
                .insert(META_SCHEMA, &2u32.to_be_bytes())
                .expect("insert");
            store.close().await.expect("close");
            (public.id, private.id)
        };
        let store = open(dir.path());
        let listed = store
            .visible_rooms(Uuid::new_v4(), false, 0, 10)
            .await
            .expect("list");
        let ids: Vec<u64> = listed.rooms.iter().map(|(room, _)| room.id).collect();
        assert_eq!(ids, vec![public_id], "a stranger sees the public room only");
        let mine = store
            .visible_rooms(owner, false, 0, 10)
            .await
            .expect("list");
        assert_eq!(mine.rooms.len(), 2);
        assert_eq!(
            store
                .trees()
                .expect("trees")
                .owned_rooms
                .scan_prefix(owner.as_bytes())
                .count(),
            2
        );
        let _ = private_id;
        store.close().await.expect("close");
    }
}
