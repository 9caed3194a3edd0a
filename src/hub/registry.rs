//! The connection registry: registering and unregistering connections under their caps,
//! listing them, and asking them to close.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{
    Conn, ConnCaps, ConnId, ConnInfo, ConnSummary, Hub, Kick, RegisterError, Registration, State,
    Unregistered, fanout, roster,
};
use crate::events::{Event, KickReason};

pub(super) fn register(
    hub: &Hub,
    info: ConnInfo,
    caps: ConnCaps,
) -> Result<Registration, RegisterError> {
    let mut state = hub.write();
    if state.conns.len() >= caps.total {
        return Err(RegisterError::ServerLimit);
    }
    let existing = state.users.get(&info.user_id).map_or(0, HashSet::len);
    if existing >= caps.per_user {
        return Err(RegisterError::UserLimit);
    }
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = super::queue::channel(caps.queue);
    let kick = Arc::new(Kick::default());
    state.users.entry(info.user_id).or_default().insert(id);
    state.conns.insert(
        id,
        Conn {
            info,
            outbound: tx,
            kick: kick.clone(),
            topics: HashSet::new(),
            patterns: HashSet::new(),
            rooms: HashSet::new(),
            present: HashSet::new(),
            roster_name: None,
            peers: std::collections::HashMap::new(),
        },
    );
    Ok(Registration {
        id,
        outbound: rx,
        kick,
        first_for_user: existing == 0,
    })
}

/// Removes a connection and all its subscriptions. A connection listed in the live roster
/// leaves it, and the other listed connections are told when that changed the roster.
pub(super) fn unregister(hub: &Hub, id: ConnId) -> Unregistered {
    let mut state = hub.write();
    let roster_before = state
        .roster
        .contains(&id)
        .then(|| roster::roster_of(&state));
    let Some(conn) = state.conns.remove(&id) else {
        return Unregistered::default();
    };
    if let Some(before) = roster_before {
        state.roster.remove(&id);
        let after = roster::roster_of(&state);
        if after != before {
            let delivery = hub.delivery(Event::Roster { users: after }, None);
            fanout::deliver_all(&state, state.roster.iter(), &delivery);
        }
    }
    for topic in &conn.topics {
        fanout::remove_member(&mut state.topics, topic, id);
    }
    for pattern in &conn.patterns {
        if let Some((_, members)) = state.patterns.get_mut(pattern) {
            members.remove(&id);
            if members.is_empty() {
                state.patterns.remove(pattern);
            }
        }
    }
    for room in &conn.rooms {
        fanout::remove_member(&mut state.rooms, room, id);
    }
    let user_id = conn.info.user_id;
    let rooms_left = conn
        .present
        .iter()
        .copied()
        .filter(|room| fanout::leave_presence(&mut state.present, *room, user_id))
        .collect();
    let last = match state.users.get_mut(&user_id) {
        Some(set) => {
            set.remove(&id);
            set.is_empty()
        }
        None => true,
    };
    if last {
        state.users.remove(&user_id);
    }
    Unregistered {
        last_for_user: last,
        rooms_left,
    }
}

/// Every live connection, oldest first.
pub(super) fn connections(state: &State) -> Vec<ConnSummary> {
    let mut list: Vec<(ConnId, ConnSummary)> = state
        .conns
        .iter()
        .map(|(id, conn)| {
            (
                *id,
                ConnSummary {
                    connection_id: conn.info.public_id.clone(),
                    user_id: conn.info.user_id,
                    username: conn.info.username.clone(),
                    session_id: conn.info.session_id,
                    dialect: conn.info.dialect,
                    peer: conn.info.peer.map(|p| p.to_string()),
                    connected_at: conn.info.connected_at,
                    rooms: conn.rooms.len(),
                    topics: conn.topics.len() + conn.patterns.len(),
                },
            )
        })
        .collect();
    list.sort_by_key(|(id, _)| *id);
    list.into_iter().map(|(_, summary)| summary).collect()
}

pub(super) fn kick_where(
    state: &State,
    select: impl Fn(&ConnInfo) -> bool,
    reason: KickReason,
) -> usize {
    let mut kicked = 0;
    for conn in state.conns.values().filter(|c| select(&c.info)) {
        conn.kick.fire(reason);
        kicked += 1;
    }
    kicked
}
