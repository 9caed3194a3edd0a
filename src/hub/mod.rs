//! The in-memory broker: which connection is subscribed to which topic, joined to which room,
//! and belongs to which user; and fan-out of events to them.
//!
//! Every connection has a bounded outbound queue. Fan-out never waits: it `try_send`s a shared
//! `Arc<Delivery>` (encoded lazily once per dialect, see [`Delivery::encoded`]); a connection
//! whose queue is full is told to close (close code [`CLOSE_SLOW_CONSUMER`]) and never slows the
//! publisher or anyone else. Topics and rooms with no subscribers are dropped from memory.
//! Locks are never held across an `.await`.

pub mod topic;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::{Event, RosterEntry};
use topic::{Pattern, Subscription};

/// Close code for a subscriber that fell `ws.outbound_queue` frames behind.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;

/// How many dialects can encode a delivery (one cache slot each).
pub const DIALECT_SLOTS: usize = 5;

/// Connection handle id inside the hub.
pub type ConnId = u64;

/// An event on its way to subscribers, with one lazily-filled encoding per dialect.
pub struct Delivery {
    pub event: Event,
    /// The connection whose request caused the event, when it must not receive it itself.
    pub skip: Option<ConnId>,
    /// When the event was made, for the delivery-latency metric.
    pub created: std::time::Instant,
    encoded: [OnceLock<Option<tokio_tungstenite::tungstenite::Message>>; DIALECT_SLOTS],
    /// Each encoding compressed for permessage-deflate, made by the first receiver that
    /// negotiated it.
    deflated: [OnceLock<bytes::Bytes>; DIALECT_SLOTS],
}

impl Delivery {
    pub fn new(event: Event) -> Arc<Delivery> {
        Self::skipping(event, None)
    }

    pub fn skipping(event: Event, skip: Option<ConnId>) -> Arc<Delivery> {
        Arc::new(Delivery {
            event,
            skip,
            created: std::time::Instant::now(),
            encoded: Default::default(),
            deflated: Default::default(),
        })
    }

    /// A delivery whose encoding for `slot` is already made (by the publisher's dialect, while
    /// the event still held everything that encoding needs), so the event can be kept without
    /// the parts only that encoding used.
    pub fn preencoded(
        event: Event,
        skip: Option<ConnId>,
        slot: usize,
        encoded: Option<tokio_tungstenite::tungstenite::Message>,
    ) -> Arc<Delivery> {
        let delivery = Delivery {
            event,
            skip,
            created: std::time::Instant::now(),
            encoded: Default::default(),
            deflated: Default::default(),
        };
        if let Some(cell) = delivery.encoded.get(slot) {
            let _ = cell.set(encoded);
        }
        Arc::new(delivery)
    }

    /// This event as dialect `slot` encodes it, computed by the first subscriber of that dialect
    /// and shared (a cheap refcount clone) by the rest. `None`: the dialect does not show it.
    pub fn encoded(
        &self,
        slot: usize,
        encode: impl FnOnce(&Event) -> Option<tokio_tungstenite::tungstenite::Message>,
    ) -> Option<tokio_tungstenite::tungstenite::Message> {
        match self.encoded.get(slot) {
            Some(cell) => cell.get_or_init(|| encode(&self.event)).clone(),
            None => encode(&self.event),
        }
    }

    /// The payload of `frame` (this delivery's encoding for `slot`) compressed for
    /// permessage-deflate, computed once and shared like the encoding.
    pub fn deflated(
        &self,
        slot: usize,
        frame: &tokio_tungstenite::tungstenite::Message,
    ) -> bytes::Bytes {
        let compress = || crate::ws::deflate::compress(&frame.clone().into_data(), usize::MAX);
        match self.deflated.get(slot) {
            Some(cell) => cell.get_or_init(compress).clone(),
            None => compress(),
        }
    }
}

/// Why the hub asks a connection to close.
#[derive(Debug, Clone)]
pub struct CloseReason {
    pub code: u16,
    pub reason: String,
}

/// A one-shot "please close" signal for one connection.
#[derive(Default)]
pub struct Kick {
    token: CancellationToken,
    reason: OnceLock<CloseReason>,
}

impl Kick {
    /// Asks the connection to close; the first reason wins.
    pub fn fire(&self, code: u16, reason: &str) {
        let _ = self.reason.set(CloseReason {
            code,
            reason: reason.to_owned(),
        });
        self.token.cancel();
    }

    /// The reason, once fired.
    pub fn reason(&self) -> Option<CloseReason> {
        self.reason.get().cloned()
    }

    pub async fn fired(&self) -> CloseReason {
        self.token.cancelled().await;
        self.reason.get().cloned().unwrap_or(CloseReason {
            code: 1000,
            reason: String::new(),
        })
    }
}

/// What a connection tells the hub about itself.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub user_id: Uuid,
    pub username: String,
    pub session_id: Uuid,
    /// The id shown to clients (`connection_id`, `delivered_to`).
    pub public_id: String,
    /// The protocol it speaks (`native`, `edusphere`, `rooms`, `fastchat`, `kibray`).
    pub dialect: &'static str,
    /// Client address, for `natter sessions list`.
    pub peer: Option<std::net::SocketAddr>,
    /// Unix seconds.
    pub connected_at: i64,
}

/// One live connection, as `natter sessions list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnSummary {
    pub connection_id: String,
    pub user_id: Uuid,
    pub username: String,
    pub session_id: Uuid,
    pub dialect: &'static str,
    pub peer: Option<String>,
    pub connected_at: i64,
    pub rooms: usize,
    pub topics: usize,
}

/// A one-to-one conversation open on a connection (FastChat's chats, see
/// `core::conversations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerChat {
    /// The conversation's id: its direct room's name, or a `live:` id when no room keeps it.
    pub chat_id: String,
    /// The direct room that keeps it (joined by the connection like any room); `None`: it is
    /// relayed live only, because a guest takes part.
    pub room: Option<u64>,
}

struct Conn {
    info: ConnInfo,
    outbound: mpsc::Sender<Arc<Delivery>>,
    kick: Arc<Kick>,
    topics: HashSet<String>,
    patterns: HashSet<String>,
    rooms: HashSet<u64>,
    /// The name this connection is listed under in the live roster (a FastChat client after its
    /// HELLO); `None`: not listed.
    roster_name: Option<String>,
    /// Open conversations by peer user id; at most `ws.max_joined_rooms`, like rooms.
    peers: HashMap<Uuid, PeerChat>,
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, Conn>,
    users: HashMap<Uuid, HashSet<ConnId>>,
    topics: HashMap<String, HashSet<ConnId>>,
    patterns: HashMap<String, (Pattern, HashSet<ConnId>)>,
    rooms: HashMap<u64, HashSet<ConnId>>,
    /// Connections listed in the live roster.
    roster: HashSet<ConnId>,
}

/// A registered connection's end of the hub.
pub struct Registration {
    pub id: ConnId,
    pub outbound: mpsc::Receiver<Arc<Delivery>>,
    pub kick: Arc<Kick>,
    /// This is the user's only connection (they just came online).
    pub first_for_user: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The user has `max_connections_per_user` connections already.
    UserLimit,
    /// The server has `max_connections` connections already.
    ServerLimit,
}

#[derive(Clone, Default)]
pub struct Hub {
    state: Arc<RwLock<State>>,
    next_id: Arc<AtomicU64>,
}

impl Hub {
    pub fn new() -> Hub {
        Hub::default()
    }

    // Poisoning: a panic cannot happen while these locks are held (no user code runs under them),
    // and with panic=abort in release it would end the process anyway.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection with an outbound queue of `queue` deliveries.
    pub fn register(
        &self,
        info: ConnInfo,
        queue: usize,
        max_per_user: usize,
        max_total: usize,
    ) -> Result<Registration, RegisterError> {
        let mut state = self.write();
        if state.conns.len() >= max_total {
            return Err(RegisterError::ServerLimit);
        }
        let existing = state.users.get(&info.user_id).map_or(0, HashSet::len);
        if existing >= max_per_user {
            return Err(RegisterError::UserLimit);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(queue.max(1));
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
                roster_name: None,
                peers: HashMap::new(),
            },
        );
        Ok(Registration {
            id,
            outbound: rx,
            kick,
            first_for_user: existing == 0,
        })
    }

    /// Removes a connection and all its subscriptions. Returns true if it was its user's last.
    /// A connection listed in the live roster leaves it, and the other listed connections are
    /// told when that changed the roster.
    pub fn unregister(&self, id: ConnId) -> bool {
        let mut state = self.write();
        let roster_before = state.roster.contains(&id).then(|| roster_of(&state));
        let Some(conn) = state.conns.remove(&id) else {
            return false;
        };
        if let Some(before) = roster_before {
            state.roster.remove(&id);
            let after = roster_of(&state);
            if after != before {
                let delivery = Delivery::new(Event::Roster { users: after });
                deliver_all(&state, state.roster.iter(), &delivery);
            }
        }
        for topic in &conn.topics {
            remove_member(&mut state.topics, topic, id);
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
            remove_member(&mut state.rooms, room, id);
        }
        let user_id = conn.info.user_id;
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
        last
    }

    /// Subscribes a connection to all of `subscriptions` or (beyond `max` in all) to none;
    /// returns the subscription count afterwards, or `Err(count)` when refused.
    pub fn subscribe_all(
        &self,
        id: ConnId,
        subscriptions: &[Subscription],
        max: usize,
    ) -> Result<usize, usize> {
        let mut state = self.write();
        let state = &mut *state;
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

    /// Unsubscribes (exact topic or pattern text); returns the subscriptions left.
    pub fn unsubscribe(&self, id: ConnId, text: &str) -> usize {
        let mut state = self.write();
        let state = &mut *state;
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

    /// Records a connection's new session after an in-band token renewal.
    pub fn set_session(&self, id: ConnId, session_id: Uuid) {
        if let Some(conn) = self.write().conns.get_mut(&id) {
            conn.info.session_id = session_id;
        }
    }

    pub fn subscription_count(&self, id: ConnId) -> usize {
        self.read()
            .conns
            .get(&id)
            .map_or(0, |c| c.topics.len() + c.patterns.len())
    }

    /// Adds a connection to a room's audience; false (nothing done) beyond `max` rooms.
    pub fn join_room(&self, id: ConnId, room_id: u64, max: usize) -> bool {
        let mut state = self.write();
        let state = &mut *state;
        let Some(conn) = state.conns.get_mut(&id) else {
            return false;
        };
        if !conn.rooms.contains(&room_id) && conn.rooms.len() >= max {
            return false;
        }
        conn.rooms.insert(room_id);
        state.rooms.entry(room_id).or_default().insert(id);
        true
    }

    pub fn leave_room(&self, id: ConnId, room_id: u64) {
        let mut state = self.write();
        let state = &mut *state;
        if let Some(conn) = state.conns.get_mut(&id) {
            conn.rooms.remove(&room_id);
        }
        remove_member(&mut state.rooms, &room_id, id);
    }

    /// Whether the connection has joined the room.
    pub fn in_room(&self, id: ConnId, room_id: u64) -> bool {
        self.read()
            .conns
            .get(&id)
            .is_some_and(|c| c.rooms.contains(&room_id))
    }

    /// Delivers to the subscribers of `topic` (exact and matching patterns, each connection
    /// once). Returns how many connections it was queued for.
    pub fn publish_topic(&self, topic: &str, delivery: &Arc<Delivery>) -> usize {
        let state = self.read();
        let exact = state.topics.get(topic);
        let mut matched: Vec<&HashSet<ConnId>> = state
            .patterns
            .values()
            .filter(|(pattern, _)| pattern.matches(topic))
            .map(|(_, members)| members)
            .collect();
        if matched.is_empty() {
            return exact.map_or(0, |members| deliver_all(&state, members.iter(), delivery));
        }
        matched.extend(exact);
        let unique: HashSet<ConnId> = matched.into_iter().flatten().copied().collect();
        deliver_all(&state, unique.iter(), delivery)
    }

    /// Delivers to the connections that joined `room_id`.
    pub fn publish_room(&self, room_id: u64, delivery: &Arc<Delivery>) -> usize {
        let state = self.read();
        state
            .rooms
            .get(&room_id)
            .map_or(0, |members| deliver_all(&state, members.iter(), delivery))
    }

    /// [`Hub::publish_room`] of a delivery made only when some connection has joined the room,
    /// under the same look at the room's members.
    pub fn publish_room_with(&self, room_id: u64, make: impl FnOnce() -> Arc<Delivery>) -> usize {
        let state = self.read();
        match state.rooms.get(&room_id) {
            Some(members) if !members.is_empty() => deliver_all(&state, members.iter(), &make()),
            _ => 0,
        }
    }

    /// Delivers once to every connection that joined any of `room_ids`.
    pub fn publish_rooms(&self, room_ids: &[u64], delivery: &Arc<Delivery>) -> usize {
        let state = self.read();
        let unique: HashSet<ConnId> = room_ids
            .iter()
            .filter_map(|room| state.rooms.get(room))
            .flatten()
            .copied()
            .collect();
        deliver_all(&state, unique.iter(), delivery)
    }

    /// Delivers to every connection of a user; returns the public ids it was queued for.
    pub fn publish_user(&self, user_id: Uuid, delivery: &Arc<Delivery>) -> Vec<String> {
        let state = self.read();
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

    /// Delivers to every connection of a user that has not joined `room_id` (those that have
    /// get the room's own events); returns how many it was queued for.
    pub fn publish_user_outside_room(
        &self,
        user_id: Uuid,
        room_id: u64,
        delivery: &Arc<Delivery>,
    ) -> usize {
        let state = self.read();
        let Some(ids) = state.users.get(&user_id) else {
            return 0;
        };
        ids.iter()
            .filter_map(|id| state.conns.get(id))
            .filter(|conn| !conn.rooms.contains(&room_id) && deliver(conn, delivery))
            .count()
    }

    /// Delivers to one connection.
    pub fn publish_conn(&self, id: ConnId, delivery: &Arc<Delivery>) -> bool {
        let state = self.read();
        state
            .conns
            .get(&id)
            .is_some_and(|conn| deliver(conn, delivery))
    }

    pub fn is_online(&self, user_id: Uuid) -> bool {
        self.read().users.contains_key(&user_id)
    }

    pub fn connection_count(&self) -> usize {
        self.read().conns.len()
    }

    /// Records the protocol a connection speaks (it may change once, from `/ws` to FastChat).
    pub fn set_dialect(&self, id: ConnId, dialect: &'static str) {
        if let Some(conn) = self.write().conns.get_mut(&id) {
            conn.info.dialect = dialect;
        }
    }

    /// Every live connection, oldest first.
    pub fn connections(&self) -> Vec<ConnSummary> {
        let state = self.read();
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

    /// Open connections per dialect name.
    pub fn connections_by_dialect(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for conn in self.read().conns.values() {
            *counts.entry(conn.info.dialect).or_insert(0) += 1;
        }
        counts
    }

    /// Closes the connection with this public id.
    pub fn kick_connection(&self, public_id: &str, code: u16, reason: &str) -> usize {
        self.kick_where(|info| info.public_id == public_id, code, reason)
    }

    /// Closes every connection of a user.
    pub fn kick_user(&self, user_id: Uuid, code: u16, reason: &str) -> usize {
        self.kick_where(|info| info.user_id == user_id, code, reason)
    }

    /// Closes every connection authenticated with a session (refresh-token family).
    pub fn kick_session(&self, session_id: Uuid, code: u16, reason: &str) -> usize {
        self.kick_where(|info| info.session_id == session_id, code, reason)
    }

    /// Closes every connection (shutdown).
    pub fn kick_all(&self, code: u16, reason: &str) -> usize {
        self.kick_where(|_| true, code, reason)
    }

    fn kick_where(&self, select: impl Fn(&ConnInfo) -> bool, code: u16, reason: &str) -> usize {
        let state = self.read();
        let mut kicked = 0;
        for conn in state.conns.values().filter(|c| select(&c.info)) {
            conn.kick.fire(code, reason);
            kicked += 1;
        }
        kicked
    }

    /// Takes a user's connections out of a room and tells each of them with `event`.
    /// Takes every connection out of a room (it was deleted) and tells each with `event`.
    pub fn close_room(&self, room_id: u64, event: Event) -> usize {
        let mut state = self.write();
        let state = &mut *state;
        let ids = state.rooms.remove(&room_id).unwrap_or_default();
        let delivery = Delivery::new(event);
        for id in &ids {
            if let Some(conn) = state.conns.get_mut(id) {
                conn.rooms.remove(&room_id);
                deliver(conn, &delivery);
            }
        }
        ids.len()
    }

    pub fn remove_user_from_room(&self, user_id: Uuid, room_id: u64, event: Event) -> usize {
        let mut state = self.write();
        let state = &mut *state;
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
        let delivery = Delivery::new(event);
        for id in &ids {
            remove_member(&mut state.rooms, &room_id, *id);
            if let Some(conn) = state.conns.get_mut(id) {
                conn.rooms.remove(&room_id);
                deliver(conn, &delivery);
            }
        }
        ids.len()
    }

    // ----- live roster and one-to-one conversations (FastChat) ---------------------------

    /// Lists a connection in the live roster under `display_name` (or renames it). When that
    /// changed the roster, every listed connection gets the new one; otherwise only this one
    /// does (a newcomer always sees the whole roster). All under one lock, so every connection
    /// sees the rosters in the order they came to be.
    pub fn roster_enter(&self, id: ConnId, display_name: &str) -> bool {
        let mut state = self.write();
        let before = roster_of(&state);
        let Some(conn) = state.conns.get_mut(&id) else {
            return false;
        };
        conn.roster_name = Some(display_name.to_owned());
        state.roster.insert(id);
        let after = roster_of(&state);
        let changed = after != before;
        let delivery = Delivery::new(Event::Roster { users: after });
        if changed {
            deliver_all(&state, state.roster.iter(), &delivery);
        } else if let Some(conn) = state.conns.get(&id) {
            deliver(conn, &delivery);
        }
        true
    }

    /// The name a user is listed under in the live roster (that of their newest listed
    /// connection), or `None` when they are not listed.
    pub fn roster_name(&self, user_id: Uuid) -> Option<String> {
        let state = self.read();
        let conns = state.users.get(&user_id)?;
        conns
            .iter()
            .filter(|id| state.roster.contains(id))
            .max()
            .and_then(|id| state.conns.get(id))
            .and_then(|conn| conn.roster_name.clone())
    }

    /// The name a connection is listed under in the live roster.
    pub fn roster_name_of(&self, id: ConnId) -> Option<String> {
        self.read()
            .conns
            .get(&id)
            .and_then(|conn| conn.roster_name.clone())
    }

    /// Opens the conversation with `peer` on connection `id` (joining its room, if it has one);
    /// false, and nothing done, beyond `max` conversations or rooms on the connection.
    pub fn open_peer(&self, id: ConnId, peer: Uuid, chat: PeerChat, max: usize) -> bool {
        open_peer_on(&mut self.write(), id, peer, chat, max)
    }

    /// Opens the conversation with `peer` on every listed connection of `user` that has room
    /// for it, and delivers `delivery` to those; returns how many.
    pub fn open_peer_for_user(
        &self,
        user: Uuid,
        peer: Uuid,
        chat: &PeerChat,
        max: usize,
        delivery: &Arc<Delivery>,
    ) -> usize {
        let mut state = self.write();
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
            if open_peer_on(&mut state, id, peer, chat.clone(), max)
                && let Some(conn) = state.conns.get(&id)
                && deliver(conn, delivery)
            {
                opened += 1;
            }
        }
        opened
    }

    /// The conversation with `peer` open on connection `id`, if any.
    pub fn peer_chat(&self, id: ConnId, peer: Uuid) -> Option<PeerChat> {
        self.read()
            .conns
            .get(&id)
            .and_then(|conn| conn.peers.get(&peer).cloned())
    }

    /// Every conversation open on connection `id`, by peer.
    pub fn peer_chats(&self, id: ConnId) -> Vec<(Uuid, PeerChat)> {
        self.read().conns.get(&id).map_or_else(Vec::new, |conn| {
            conn.peers
                .iter()
                .map(|(peer, chat)| (*peer, chat.clone()))
                .collect()
        })
    }

    /// Delivers to the connections of `user` that have the conversation with `peer` open;
    /// returns how many.
    pub fn publish_to_peer(&self, user: Uuid, peer: Uuid, delivery: &Arc<Delivery>) -> usize {
        let state = self.read();
        let Some(conns) = state.users.get(&user) else {
            return 0;
        };
        let open = conns.iter().filter(|id| {
            state
                .conns
                .get(id)
                .is_some_and(|conn| conn.peers.contains_key(&peer))
        });
        deliver_all(&state, open, delivery)
    }

    /// Ids of rooms joined by at least one connection (for presence fan-out).
    pub fn joined_rooms_of(&self, room_ids: &[u64]) -> Vec<u64> {
        let state = self.read();
        room_ids
            .iter()
            .copied()
            .filter(|id| state.rooms.contains_key(id))
            .collect()
    }
}

/// The live roster: one entry per listed user (the name of their newest listed connection),
/// ordered by name, then id.
fn roster_of(state: &State) -> Vec<RosterEntry> {
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

fn open_peer_on(state: &mut State, id: ConnId, peer: Uuid, chat: PeerChat, max: usize) -> bool {
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

fn remove_member<K: std::hash::Hash + Eq + Clone>(
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

fn deliver_all<'a>(
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
fn deliver(conn: &Conn, delivery: &Arc<Delivery>) -> bool {
    match conn.outbound.try_send(delivery.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            if !conn.kick.token.is_cancelled() {
                tracing::warn!(
                    user = %conn.info.username,
                    connection = %conn.info.public_id,
                    "slow consumer: outbound queue full; disconnecting"
                );
            }
            conn.kick
                .fire(CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(user: Uuid) -> ConnInfo {
        ConnInfo {
            user_id: user,
            username: "u".to_owned(),
            session_id: Uuid::new_v4(),
            public_id: Uuid::new_v4().to_string(),
            dialect: "native",
            peer: None,
            connected_at: 0,
        }
    }

    fn event() -> Event {
        Event::MessageDeleted {
            room: "r".to_owned(),
            room_id: 1,
            seq: 1,
        }
    }

    #[test]
    fn per_user_and_total_limits() {
        let hub = Hub::new();
        let user = Uuid::new_v4();
        let _a = hub.register(info(user), 4, 2, 3).expect("first");
        let _b = hub.register(info(user), 4, 2, 3).expect("second");
        assert_eq!(
            hub.register(info(user), 4, 2, 3).err(),
            Some(RegisterError::UserLimit)
        );
        let _c = hub
            .register(info(Uuid::new_v4()), 4, 2, 3)
            .expect("other user");
        assert_eq!(
            hub.register(info(Uuid::new_v4()), 4, 2, 3).err(),
            Some(RegisterError::ServerLimit)
        );
    }

    #[test]
    fn full_queue_kicks_only_the_slow_consumer_and_empty_topics_vanish() {
        let hub = Hub::new();
        let slow = hub.register(info(Uuid::new_v4()), 2, 5, 10).expect("slow");
        let mut fast = hub.register(info(Uuid::new_v4()), 2, 5, 10).expect("fast");
        let sub = [topic::parse_subscription("t").expect("topic")];
        hub.subscribe_all(slow.id, &sub, 10).expect("sub");
        hub.subscribe_all(fast.id, &sub, 10).expect("sub");
        for _ in 0..3 {
            hub.publish_topic("t", &Delivery::new(event()));
            while fast.outbound.try_recv().is_ok() {}
        }
        assert!(slow.kick.token.is_cancelled());
        assert!(!fast.kick.token.is_cancelled());
        hub.unregister(slow.id);
        hub.unregister(fast.id);
        assert!(hub.read().topics.is_empty());
        assert!(hub.read().users.is_empty());
    }
}

#[cfg(test)]
mod roster_tests {
    use super::*;

    fn info(user: Uuid) -> ConnInfo {
        ConnInfo {
            user_id: user,
            username: "u".to_owned(),
            session_id: Uuid::new_v4(),
            public_id: Uuid::new_v4().to_string(),
            dialect: "native",
            peer: None,
            connected_at: 0,
        }
    }

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
        let hub = Hub::new();
        let ann = Uuid::new_v4();
        let mut ann_1 = hub.register(info(ann), 8, 5, 10).expect("ann 1");
        hub.roster_enter(ann_1.id, "Ann");
        assert_eq!(roster(&mut ann_1), Some(vec!["Ann".to_owned()]));
        // Ann's second connection changes nothing: only the newcomer is told.
        let mut ann_2 = hub.register(info(ann), 8, 5, 10).expect("ann 2");
        hub.roster_enter(ann_2.id, "Ann");
        assert_eq!(roster(&mut ann_2), Some(vec!["Ann".to_owned()]));
        assert_eq!(roster(&mut ann_1), None);
        let bob_id = Uuid::new_v4();
        let mut bob = hub.register(info(bob_id), 8, 5, 10).expect("bob");
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
        let hub = Hub::new();
        let ann = Uuid::new_v4();
        let bob = Uuid::new_v4();
        let ann_conn = hub.register(info(ann), 8, 5, 10).expect("ann");
        let mut bob_listed = hub.register(info(bob), 8, 5, 10).expect("bob listed");
        let mut bob_native = hub.register(info(bob), 8, 5, 10).expect("bob native");
        hub.roster_enter(bob_listed.id, "Bob");
        while bob_listed.outbound.try_recv().is_ok() {}
        let chat = PeerChat {
            chat_id: "dm:ann:bob".to_owned(),
            room: Some(7),
        };
        assert!(hub.open_peer(ann_conn.id, bob, chat.clone(), 1));
        assert!(hub.in_room(ann_conn.id, 7));
        let other = PeerChat {
            chat_id: "live:x".to_owned(),
            room: None,
        };
        assert!(
            !hub.open_peer(ann_conn.id, Uuid::new_v4(), other, 1),
            "beyond the limit"
        );
        let told = hub.open_peer_for_user(bob, ann, &chat, 1, &Delivery::new(event()));
        assert_eq!(told, 1, "only Bob's listed connection");
        assert!(bob_listed.outbound.try_recv().is_ok());
        assert!(bob_native.outbound.try_recv().is_err());
        assert_eq!(hub.peer_chat(bob_listed.id, ann), Some(chat));
        assert_eq!(hub.peer_chat(bob_native.id, ann), None);
        assert_eq!(
            hub.publish_to_peer(bob, ann, &Delivery::new(event())),
            1,
            "delivered where the chat is open"
        );
    }

    fn event() -> Event {
        Event::MessageDeleted {
            room: "r".to_owned(),
            room_id: 1,
            seq: 1,
        }
    }
}
