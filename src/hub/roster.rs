//! The live roster (who is listed as online, by display name, in a dialect that shows it) and
//! the one-to-one conversations open on each connection: both are connection state that both
//! sides of a conversation see, so they live with the connections.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::{ConnId, Delivery, Hub, PeerChat, State, fanout};
use crate::events::{Event, RosterEntry};

/// Lists a connection in the live roster under `display_name` (or renames it), all under one
/// lock, so every connection sees the rosters in the order they came to be.
pub(super) fn enter(hub: &Hub, id: ConnId, display_name: &str) -> bool {
    let mut state = hub.write();
    let before = roster_of(&state);
    let Some(conn) = state.conns.get_mut(&id) else {
        return false;
    };
    conn.roster_name = Some(display_name.to_owned());
    state.roster.insert(id);
    let after = roster_of(&state);
    let changed = after != before;
    let delivery = hub.delivery(Event::Roster { users: after }, None);
    if changed {
        fanout::deliver_all(&state, state.roster.iter(), &delivery);
    } else if let Some(conn) = state.conns.get(&id) {
        fanout::deliver(conn, &delivery);
    }
    true
}

/// The name a user is listed under (their newest listed connection's), if listed.
pub(super) fn name_of_user(state: &State, user_id: Uuid) -> Option<String> {
    let conns = state.users.get(&user_id)?;
    conns
        .iter()
        .filter(|id| state.roster.contains(id))
        .max()
        .and_then(|id| state.conns.get(id))
        .and_then(|conn| conn.roster_name.clone())
}

/// Opens the conversation on every listed connection of `user` that has room for it, and
/// delivers `delivery` to those; returns how many.
pub(super) fn open_peer_for_user(
    state: &mut State,
    user: Uuid,
    peer: Uuid,
    chat: &PeerChat,
    max: usize,
    delivery: &Arc<Delivery>,
) -> usize {
    let listed: Vec<ConnId> = state
        .users
        .get(&user)
        .map(|conns| {
            conns
                .iter()
                .copied()
                .filter(|id| state.roster.contains(id))
                .collect()
        })
        .unwrap_or_default();
    let mut opened = 0;
    for id in listed {
        if open_peer_on(state, id, peer, chat.clone(), max)
            && let Some(conn) = state.conns.get(&id)
            && fanout::deliver(conn, delivery)
        {
            opened += 1;
        }
    }
    opened
}

/// Delivers to the connections of `user` that have the conversation with `peer` open.
pub(super) fn publish_to_peer(
    state: &State,
    user: Uuid,
    peer: Uuid,
    delivery: &Arc<Delivery>,
) -> usize {
    let Some(conns) = state.users.get(&user) else {
        return 0;
    };
    let open = conns.iter().filter(|id| {
        state
            .conns
            .get(id)
            .is_some_and(|conn| conn.peers.contains_key(&peer))
    });
    fanout::deliver_all(state, open, delivery)
}

/// The live roster: one entry per listed user (the name of their newest listed connection),
/// ordered by name, then id.
pub(super) fn roster_of(state: &State) -> Vec<RosterEntry> {
    let mut newest: HashMap<Uuid, (ConnId, &str)> = HashMap::new();
    for id in &state.roster {
        let Some(conn) = state.conns.get(id) else {
            continue;
        };
        let Some(name) = conn.roster_name.as_deref() else {
            continue;
        };
        let entry = newest.entry(conn.info.user_id).or_insert((*id, name));
        if *id > entry.0 {
            *entry = (*id, name);
        }
    }
    let mut users: Vec<RosterEntry> = newest
        .into_iter()
        .map(|(user_id, (_, name))| RosterEntry {
            user_id,
            display_name: name.to_owned(),
        })
        .collect();
    users.sort_by(|a, b| {
        a.display_name
            .cmp(&b.display_name)
            .then(a.user_id.cmp(&b.user_id))
    });
    users
}

pub(super) fn open_peer_on(
    state: &mut State,
    id: ConnId,
    peer: Uuid,
    chat: PeerChat,
    max: usize,
) -> bool {
    let Some(conn) = state.conns.get_mut(&id) else {
        return false;
    };
    if !conn.peers.contains_key(&peer) && conn.peers.len() >= max {
        return false;
    }
    if let Some(room) = chat.room {
        if !conn.rooms.contains(&room) && conn.rooms.len() >= max {
            return false;
        }
        conn.rooms.insert(room);
        state.rooms.entry(room).or_default().insert(id);
    }
    conn.peers.insert(peer, chat);
    true
}

#[cfg(test)]
mod tests {
    use super::super::tests::{caps, event, hub, info};
    use super::super::*;

    /// The names of the next queued roster, or `None` when nothing is queued.
    fn roster(registration: &mut Registration) -> Option<Vec<String>> {
        let delivery = registration.outbound.try_recv().ok()?;
        match &delivery.event {
            Event::Roster { users } => Some(users.iter().map(|u| u.display_name.clone()).collect()),
            other => panic!("not a roster: {other:?}"),
        }
    }

    #[test]
    fn roster_lists_users_once_and_is_told_when_it_changes() {
        let hub = hub();
        let ann = Uuid::new_v4();
        let mut ann_1 = hub.register(info(ann), caps(8, 5, 10)).expect("ann 1");
        hub.roster_enter(ann_1.id, "Ann");
        assert_eq!(roster(&mut ann_1), Some(vec!["Ann".to_owned()]));
        // Ann's second connection changes nothing: only the newcomer is told.
        let mut ann_2 = hub.register(info(ann), caps(8, 5, 10)).expect("ann 2");
        hub.roster_enter(ann_2.id, "Ann");
        assert_eq!(roster(&mut ann_2), Some(vec!["Ann".to_owned()]));
        assert_eq!(roster(&mut ann_1), None);
        let bob_id = Uuid::new_v4();
        let mut bob = hub.register(info(bob_id), caps(8, 5, 10)).expect("bob");
        // Not listed yet: not told.
        assert_eq!(roster(&mut bob), None);
        hub.roster_enter(bob.id, "Bob");
        for registration in [&mut ann_1, &mut ann_2, &mut bob] {
            assert_eq!(
                roster(registration),
                Some(vec!["Ann".to_owned(), "Bob".to_owned()])
            );
        }
        hub.unregister(ann_2.id);
        assert_eq!(roster(&mut bob), None, "Ann is still listed");
        hub.unregister(ann_1.id);
        assert_eq!(roster(&mut bob), Some(vec!["Bob".to_owned()]));
        assert_eq!(hub.roster_name(ann), None);
        assert_eq!(hub.roster_name(bob_id), Some("Bob".to_owned()));
    }

    #[test]
    fn conversations_are_bounded_and_reach_the_peers_listed_connections() {
        let hub = hub();
        let ann = Uuid::new_v4();
        let bob = Uuid::new_v4();
        let ann_conn = hub.register(info(ann), caps(8, 5, 10)).expect("ann");
        let mut bob_listed = hub.register(info(bob), caps(8, 5, 10)).expect("bob listed");
        let mut bob_native = hub.register(info(bob), caps(8, 5, 10)).expect("bob native");
        hub.roster_enter(bob_listed.id, "Bob");
        while bob_listed.outbound.try_recv().is_ok() {}
        let chat = PeerChat {
            chat_id: "dm:ann:bob".to_owned(),
            room: Some(7),
        };
        assert!(hub.open_peer(ann_conn.id, bob, chat.clone(), 1));
        assert!(
            hub.read()
                .rooms
                .get(&7)
                .is_some_and(|m| m.contains(&ann_conn.id))
        );
        let other = PeerChat {
            chat_id: "live:x".to_owned(),
            room: None,
        };
        assert!(
            !hub.open_peer(ann_conn.id, Uuid::new_v4(), other, 1),
            "beyond the limit"
        );
        let told = hub.open_peer_for_user(bob, ann, &chat, 1, event());
        assert_eq!(told, 1, "only Bob's listed connection");
        assert!(bob_listed.outbound.try_recv().is_ok());
        assert!(bob_native.outbound.try_recv().is_err());
        assert_eq!(hub.peer_chat(bob_listed.id, ann), Some(chat));
        assert_eq!(hub.peer_chat(bob_native.id, ann), None);
        assert_eq!(
            hub.publish_to_peer(bob, ann, event(), None),
            1,
            "delivered where the chat is open"
        );
    }
}
