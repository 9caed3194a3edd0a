//! Fan-out: rooms and topics (who listens where) and queuing a delivery to each listener
//! without waiting.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

use super::topic::Subscription;
use super::{Conn, ConnId, Delivery, State};
use crate::events::KickReason;

pub(super) fn join_room(
    state: &mut State,
    id: ConnId,
    room_id: u64,
    max: usize,
    present: bool,
) -> Option<bool> {
    let conn = state.conns.get_mut(&id)?;
    if !conn.rooms.contains(&room_id) && conn.rooms.len() >= max {
        return None;
    }
    conn.rooms.insert(room_id);
    let user_id = conn.info.user_id;
    let entered = present && conn.present.insert(room_id);
    state.rooms.entry(room_id).or_default().insert(id);
    if !entered {
        return Some(false);
    }
    let count = state
        .present
        .entry(room_id)
        .or_default()
        .entry(user_id)
        .or_insert(0);
    *count += 1;
    Some(*count == 1)
}

pub(super) fn leave_room(state: &mut State, id: ConnId, room_id: u64) -> bool {
    let mut last = false;
    if let Some(conn) = state.conns.get_mut(&id) {
        conn.rooms.remove(&room_id);
        if conn.present.remove(&room_id) {
            let user_id = conn.info.user_id;
            last = leave_presence(&mut state.present, room_id, user_id);
        }
    }
    remove_member(&mut state.rooms, &room_id, id);
    last
}

/// One present connection of `user_id` fewer in `room_id`; true when it was the last.
pub(super) fn leave_presence(
    present: &mut HashMap<u64, HashMap<Uuid, u32>>,
    room_id: u64,
    user_id: Uuid,
) -> bool {
    let Some(users) = present.get_mut(&room_id) else {
        return false;
    };
    let last = match users.get_mut(&user_id) {
        Some(count) if *count > 1 => {
            *count -= 1;
            false
        }
        Some(_) => {
            users.remove(&user_id);
            true
        }
        None => false,
    };
    if users.is_empty() {
        present.remove(&room_id);
    }
    last
}

pub(super) fn close_room(state: &mut State, room_id: u64, delivery: &Arc<Delivery>) -> usize {
    let ids = state.rooms.remove(&room_id).unwrap_or_default();
    state.present.remove(&room_id);
    for id in &ids {
        if let Some(conn) = state.conns.get_mut(id) {
            conn.rooms.remove(&room_id);
            conn.present.remove(&room_id);
            deliver(conn, delivery);
        }
    }
    ids.len()
}

pub(super) fn remove_user_from_room(
    state: &mut State,
    user_id: Uuid,
    room_id: u64,
    delivery: &Arc<Delivery>,
) -> (usize, bool) {
    let ids: Vec<ConnId> = state
        .rooms
        .get(&room_id)
        .map(|members| {
            members
                .iter()
                .copied()
                .filter(|id| {
                    state
                        .conns
                        .get(id)
                        .is_some_and(|c| c.info.user_id == user_id)
                })
                .collect()
        })
        .unwrap_or_default();
    let was_present = state
        .present
        .get_mut(&room_id)
        .is_some_and(|users| users.remove(&user_id).is_some());
    if state.present.get(&room_id).is_some_and(HashMap::is_empty) {
        state.present.remove(&room_id);
    }
    for id in &ids {
        remove_member(&mut state.rooms, &room_id, *id);
        if let Some(conn) = state.conns.get_mut(id) {
            conn.rooms.remove(&room_id);
            conn.present.remove(&room_id);
            deliver(conn, delivery);
        }
    }
    (ids.len(), was_present)
}

pub(super) fn subscribe_all(
    state: &mut State,
    id: ConnId,
    subscriptions: &[Subscription],
    max: usize,
) -> Result<usize, usize> {
    let Some(conn) = state.conns.get_mut(&id) else {
        return Err(0);
    };
    let count = conn.topics.len() + conn.patterns.len();
    let new: HashSet<&str> = subscriptions
        .iter()
        .map(|s| match s {
            Subscription::Exact(topic) => topic.as_str(),
            Subscription::Pattern(pattern) => pattern.text.as_str(),
        })
        .filter(|text| !conn.topics.contains(*text) && !conn.patterns.contains(*text))
        .collect();
    if count + new.len() > max {
        return Err(count);
    }
    for subscription in subscriptions {
        match subscription {
            Subscription::Exact(topic) => {
                if conn.topics.insert(topic.clone()) {
                    state.topics.entry(topic.clone()).or_default().insert(id);
                }
            }
            Subscription::Pattern(pattern) => {
                if conn.patterns.insert(pattern.text.clone()) {
                    state
                        .patterns
                        .entry(pattern.text.clone())
                        .or_insert_with(|| (pattern.clone(), HashSet::new()))
                        .1
                        .insert(id);
                }
            }
        }
    }
    Ok(conn.topics.len() + conn.patterns.len())
}

pub(super) fn unsubscribe(state: &mut State, id: ConnId, text: &str) -> usize {
    let Some(conn) = state.conns.get_mut(&id) else {
        return 0;
    };
    if conn.topics.remove(text) {
        remove_member(&mut state.topics, &text.to_owned(), id);
    }
    if conn.patterns.remove(text)
        && let Some((_, members)) = state.patterns.get_mut(text)
    {
        members.remove(&id);
        if members.is_empty() {
            state.patterns.remove(text);
        }
    }
    conn.topics.len() + conn.patterns.len()
}

pub(super) fn publish_topic(state: &State, topic: &str, delivery: &Arc<Delivery>) -> usize {
    let exact = state.topics.get(topic);
    let mut matched: Vec<&HashSet<ConnId>> = state
        .patterns
        .values()
        .filter(|(pattern, _)| pattern.matches(topic))
        .map(|(_, members)| members)
        .collect();
    if matched.is_empty() {
        return exact.map_or(0, |members| deliver_all(state, members.iter(), delivery));
    }
    matched.extend(exact);
    let unique: HashSet<ConnId> = matched.into_iter().flatten().copied().collect();
    deliver_all(state, unique.iter(), delivery)
}

pub(super) fn publish_room(state: &State, room_id: u64, delivery: &Arc<Delivery>) -> usize {
    state
        .rooms
        .get(&room_id)
        .map_or(0, |members| deliver_all(state, members.iter(), delivery))
}

pub(super) fn publish_rooms(state: &State, room_ids: &[u64], delivery: &Arc<Delivery>) -> usize {
    let unique: HashSet<ConnId> = room_ids
        .iter()
        .filter_map(|room| state.rooms.get(room))
        .flatten()
        .copied()
        .collect();
    deliver_all(state, unique.iter(), delivery)
}

pub(super) fn publish_user(state: &State, user_id: Uuid, delivery: &Arc<Delivery>) -> Vec<String> {
    let mut delivered = Vec::new();
    if let Some(ids) = state.users.get(&user_id) {
        for id in ids {
            if let Some(conn) = state.conns.get(id)
                && Some(*id) != delivery.skip
                && deliver(conn, delivery)
            {
                delivered.push(conn.info.public_id.clone());
            }
        }
    }
    delivered
}

pub(super) fn publish_user_outside_room(
    state: &State,
    user_id: Uuid,
    room_id: u64,
    delivery: &Arc<Delivery>,
) -> usize {
    let Some(ids) = state.users.get(&user_id) else {
        return 0;
    };
    ids.iter()
        .filter_map(|id| state.conns.get(id))
        .filter(|conn| !conn.rooms.contains(&room_id) && deliver(conn, delivery))
        .count()
}

pub(super) fn remove_member<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, HashSet<ConnId>>,
    key: &K,
    id: ConnId,
) {
    if let Some(members) = map.get_mut(key) {
        members.remove(&id);
        if members.is_empty() {
            map.remove(key);
        }
    }
}

pub(super) fn deliver_all<'a>(
    state: &State,
    ids: impl Iterator<Item = &'a ConnId>,
    delivery: &Arc<Delivery>,
) -> usize {
    let mut count = 0;
    for id in ids {
        if Some(*id) == delivery.skip {
            continue;
        }
        if let Some(conn) = state.conns.get(id)
            && deliver(conn, delivery)
        {
            count += 1;
        }
    }
    count
}

/// Queues without waiting; a full queue marks the connection as a slow consumer to be closed.
pub(super) fn deliver(conn: &Conn, delivery: &Arc<Delivery>) -> bool {
    match conn.outbound.try_send(delivery.clone()) {
        Ok(()) => true,
        Err(super::queue::TrySendError::Full) => {
            if !conn.kick.is_fired() {
                tracing::warn!(
                    user = %conn.info.username,
                    connection = %conn.info.public_id,
                    "slow consumer: outbound queue full; disconnecting"
                );
            }
            conn.kick.fire(KickReason::SlowConsumer);
            false
        }
        Err(super::queue::TrySendError::Closed) => false,
    }
}
