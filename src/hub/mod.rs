//! The broker: which connection is subscribed to which topic, joined to which room, and belongs
//! to which user; fan-out of events to them; presence, the live roster, kicks and per-user
//! connection caps. [`Broker`] is what the core and the edges use; [`Hub`], in memory, is the
//! one implementation today (a broker spanning several nodes would be a second).
//!
//! Every connection has a bounded outbound queue. Fan-out never waits: it `try_send`s a shared
//! `Arc<Delivery>`; a connection whose queue is full is asked to close
//! ([`KickReason::SlowConsumer`]) and never slows the publisher or anyone else. Topics and rooms
//! with no subscribers are dropped from memory. Locks are never held across an `.await`. The
//! broker knows events, not wire frames: what the delivering edge keeps with a delivery (its
//! encodings) is the [`Attachment`] its [`Prepare`] makes.

mod delivery;
mod fanout;
pub mod queue;
mod registry;
mod roster;
pub mod topic;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use uuid::Uuid;

pub use delivery::{Attachment, Delivery, Kick, Prepare};
use topic::{Pattern, Subscription};

use crate::events::{Event, KickReason};

/// Connection handle id inside the broker.
pub type ConnId = u64;

/// The broker behind the core: a trait, so that the in-memory [`Hub`] can be joined by an
/// implementation that spans nodes. Methods never block (no I/O, no lock held across them).
pub trait Broker: Send + Sync + 'static {
    // ----- connections ---------------------------------------------------------------------

    /// Adds a connection, refused beyond the per-user or the total cap.
    fn register(&self, info: ConnInfo, caps: ConnCaps) -> Result<Registration, RegisterError>;
    /// Removes a connection and all its subscriptions: whether it was its user's last, and the
    /// rooms it was the user's last connection in.
    fn unregister(&self, conn: ConnId) -> Unregistered;
    /// Records the protocol a connection speaks (it may change once, from `/ws` to FastChat).
    fn set_dialect(&self, conn: ConnId, dialect: &'static str);
    /// Records a connection's new session after an in-band token renewal.
    fn set_session(&self, conn: ConnId, session_id: Uuid);
    /// Whether the user has a live connection.
    fn is_online(&self, user_id: Uuid) -> bool;
    /// Every live connection, oldest first.
    fn connections(&self) -> Vec<ConnSummary>;
    /// Open connections per dialect name.
    fn connections_by_dialect(&self) -> BTreeMap<&'static str, usize>;

    // ----- kicks ---------------------------------------------------------------------------

    /// Closes every connection of a user; returns how many.
    fn kick_user(&self, user_id: Uuid, reason: KickReason) -> usize;
    /// Closes every connection authenticated with a session (refresh-token family).
    fn kick_session(&self, session_id: Uuid, reason: KickReason) -> usize;
    /// Closes every connection (shutdown).
    fn kick_all(&self, reason: KickReason) -> usize;

    // ----- rooms ---------------------------------------------------------------------------

    /// Adds a connection to a room's audience; `None` (nothing done) beyond `max` rooms. With
    /// `present`, the connection is in the room, not only listening to it (the live presence
    /// of who is in a room counts it): `Some(true)` when it is its user's first there.
    fn join_room(&self, conn: ConnId, room_id: u64, max: usize, present: bool) -> Option<bool>;
    /// Takes a connection out of a room's audience; true when it was its user's last connection
    /// in the room.
    fn leave_room(&self, conn: ConnId, room_id: u64) -> bool;
    /// Ids of the rooms among `room_ids` that at least one connection joined.
    fn joined_rooms_of(&self, room_ids: &[u64]) -> Vec<u64>;
    /// Takes a user's connections out of a room and tells each of them with `event`; returns
    /// how many, and whether the user was in the room (present).
    fn remove_user_from_room(&self, user_id: Uuid, room_id: u64, event: Event) -> (usize, bool);
    /// Takes every connection out of a room (it was deleted) and tells each with `event`.
    fn close_room(&self, room_id: u64, event: Event) -> usize;

    // ----- topics --------------------------------------------------------------------------

    /// Subscribes a connection to all of `subscriptions` or (beyond `max` in all) to none;
    /// returns the subscription count afterwards, or `Err(count)` when refused.
    fn subscribe_all(
        &self,
        conn: ConnId,
        subscriptions: &[Subscription],
        max: usize,
    ) -> Result<usize, usize>;
    /// Unsubscribes (exact topic or pattern text); returns the subscriptions left.
    fn unsubscribe(&self, conn: ConnId, text: &str) -> usize;
    fn subscription_count(&self, conn: ConnId) -> usize;

    // ----- fan-out (each returns how many connections the event was queued for) ------------

    /// To the subscribers of `topic` (exact and matching patterns, each connection once).
    fn publish_topic(&self, topic: &str, event: Event, skip: Option<ConnId>) -> usize;
    /// To the connections that joined `room_id`.
    fn publish_room(&self, room_id: u64, event: Event, skip: Option<ConnId>) -> usize;
    /// [`Broker::publish_room`] of an event made only when some connection joined the room,
    /// under the same look at its members (called at most once).
    fn publish_room_with(&self, room_id: u64, make: &mut dyn FnMut() -> Event) -> usize;
    /// Once to every connection that joined any of `room_ids`.
    fn publish_rooms(&self, room_ids: &[u64], event: Event) -> usize;
    /// To every connection of a user; returns the public ids it was queued for.
    fn publish_user(&self, user_id: Uuid, event: Event) -> Vec<String>;
    /// To every connection of a user that has not joined `room_id` (those that have get the
    /// room's own events).
    fn publish_user_outside_room(&self, user_id: Uuid, room_id: u64, event: Event) -> usize;

    // ----- the live roster and one-to-one conversations ------------------------------------

    /// Lists a connection in the live roster under `display_name` (or renames it). When that
    /// changed the roster, every listed connection gets the new one; otherwise only this one
    /// does (a newcomer always sees the whole roster).
    fn roster_enter(&self, conn: ConnId, display_name: &str) -> bool;
    /// The name a user is listed under (that of their newest listed connection).
    fn roster_name(&self, user_id: Uuid) -> Option<String>;
    /// The name a connection is listed under.
    fn roster_name_of(&self, conn: ConnId) -> Option<String>;
    /// Opens the conversation with `peer` on a connection (joining its room, if it has one);
    /// false, and nothing done, beyond `max` conversations or rooms on the connection.
    fn open_peer(&self, conn: ConnId, peer: Uuid, chat: PeerChat, max: usize) -> bool;
    /// Opens the conversation with `peer` on every listed connection of `user` that has room
    /// for it, and tells those with `event`; returns how many.
    fn open_peer_for_user(
        &self,
        user: Uuid,
        peer: Uuid,
        chat: &PeerChat,
        max: usize,
        event: Event,
    ) -> usize;
    /// The conversation with `peer` open on a connection, if any.
    fn peer_chat(&self, conn: ConnId, peer: Uuid) -> Option<PeerChat>;
    /// Every conversation open on a connection, by peer.
    fn peer_chats(&self, conn: ConnId) -> Vec<(Uuid, PeerChat)>;
    /// To the connections of `user` that have the conversation with `peer` open.
    fn publish_to_peer(&self, user: Uuid, peer: Uuid, event: Event, skip: Option<ConnId>) -> usize;
}

/// What a connection tells the broker about itself.
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

/// The bounds a connection is registered under.
#[derive(Debug, Clone, Copy)]
pub struct ConnCaps {
    /// Deliveries its outbound queue holds (`ws.outbound_queue`).
    pub queue: usize,
    /// Connections one user may have (`ws.max_connections_per_user`).
    pub per_user: usize,
    /// Connections in all (`ws.max_connections`).
    pub total: usize,
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

/// A registered connection's end of the broker.
pub struct Registration {
    pub id: ConnId,
    pub outbound: queue::Receiver<Arc<Delivery>>,
    pub kick: Arc<Kick>,
    /// This is the user's only connection (they just came online).
    pub first_for_user: bool,
}

/// What unregistering a connection ended.
#[derive(Debug, Default)]
pub struct Unregistered {
    /// It was its user's last connection (they went offline).
    pub last_for_user: bool,
    /// The rooms it was its user's last connection in.
    pub rooms_left: Vec<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The user has `per_user` connections already.
    UserLimit,
    /// The server has `total` connections already.
    ServerLimit,
}

struct Conn {
    info: ConnInfo,
    outbound: queue::Sender<Arc<Delivery>>,
    kick: Arc<Kick>,
    topics: HashSet<String>,
    patterns: HashSet<String>,
    rooms: HashSet<u64>,
    /// The rooms (among `rooms`) the connection is in, rather than only listening to.
    present: HashSet<u64>,
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
    /// Who is in each room: present connections per user.
    present: HashMap<u64, HashMap<Uuid, u32>>,
    /// Connections listed in the live roster.
    roster: HashSet<ConnId>,
}

/// The in-memory broker of one process.
#[derive(Clone)]
pub struct Hub {
    state: Arc<RwLock<State>>,
    next_id: Arc<AtomicU64>,
    prepare: Prepare,
}

impl Hub {
    /// A broker whose deliveries get the attachments `prepare` makes.
    pub fn new(prepare: Prepare) -> Hub {
        Hub {
            state: Arc::default(),
            next_id: Arc::default(),
            prepare,
        }
    }

    // Poisoning: a panic cannot happen while these locks are held (no user code runs under them),
    // and with panic=abort in release it would end the process anyway.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn delivery(&self, event: Event, skip: Option<ConnId>) -> Arc<Delivery> {
        Delivery::new(&self.prepare, event, skip)
    }
}

impl Broker for Hub {
    fn register(&self, info: ConnInfo, caps: ConnCaps) -> Result<Registration, RegisterError> {
        registry::register(self, info, caps)
    }
    fn unregister(&self, conn: ConnId) -> Unregistered {
        registry::unregister(self, conn)
    }
    fn set_dialect(&self, conn: ConnId, dialect: &'static str) {
        if let Some(conn) = self.write().conns.get_mut(&conn) {
            conn.info.dialect = dialect;
        }
    }
    fn set_session(&self, conn: ConnId, session_id: Uuid) {
        if let Some(conn) = self.write().conns.get_mut(&conn) {
            conn.info.session_id = session_id;
        }
    }
    fn is_online(&self, user_id: Uuid) -> bool {
        self.read().users.contains_key(&user_id)
    }
    fn connections(&self) -> Vec<ConnSummary> {
        registry::connections(&self.read())
    }
    fn connections_by_dialect(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for conn in self.read().conns.values() {
            *counts.entry(conn.info.dialect).or_insert(0) += 1;
        }
        counts
    }
    fn kick_user(&self, user_id: Uuid, reason: KickReason) -> usize {
        registry::kick_where(&self.read(), |info| info.user_id == user_id, reason)
    }
    fn kick_session(&self, session_id: Uuid, reason: KickReason) -> usize {
        registry::kick_where(&self.read(), |info| info.session_id == session_id, reason)
    }
    fn kick_all(&self, reason: KickReason) -> usize {
        registry::kick_where(&self.read(), |_| true, reason)
    }
    fn join_room(&self, conn: ConnId, room_id: u64, max: usize, present: bool) -> Option<bool> {
        fanout::join_room(&mut self.write(), conn, room_id, max, present)
    }
    fn leave_room(&self, conn: ConnId, room_id: u64) -> bool {
        fanout::leave_room(&mut self.write(), conn, room_id)
    }
    fn joined_rooms_of(&self, room_ids: &[u64]) -> Vec<u64> {
        let state = self.read();
        room_ids
            .iter()
            .copied()
            .filter(|id| state.rooms.contains_key(id))
            .collect()
    }
    fn remove_user_from_room(&self, user_id: Uuid, room_id: u64, event: Event) -> (usize, bool) {
        let delivery = self.delivery(event, None);
        fanout::remove_user_from_room(&mut self.write(), user_id, room_id, &delivery)
    }
    fn close_room(&self, room_id: u64, event: Event) -> usize {
        let delivery = self.delivery(event, None);
        fanout::close_room(&mut self.write(), room_id, &delivery)
    }
    fn subscribe_all(
        &self,
        conn: ConnId,
        subscriptions: &[Subscription],
        max: usize,
    ) -> Result<usize, usize> {
        fanout::subscribe_all(&mut self.write(), conn, subscriptions, max)
    }
    fn unsubscribe(&self, conn: ConnId, text: &str) -> usize {
        fanout::unsubscribe(&mut self.write(), conn, text)
    }
    fn subscription_count(&self, conn: ConnId) -> usize {
        self.read()
            .conns
            .get(&conn)
            .map_or(0, |c| c.topics.len() + c.patterns.len())
    }
    fn publish_topic(&self, topic: &str, event: Event, skip: Option<ConnId>) -> usize {
        let delivery = self.delivery(event, skip);
        fanout::publish_topic(&self.read(), topic, &delivery)
    }
    fn publish_room(&self, room_id: u64, event: Event, skip: Option<ConnId>) -> usize {
        let delivery = self.delivery(event, skip);
        fanout::publish_room(&self.read(), room_id, &delivery)
    }
    fn publish_room_with(&self, room_id: u64, make: &mut dyn FnMut() -> Event) -> usize {
        let state = self.read();
        match state.rooms.get(&room_id) {
            Some(members) if !members.is_empty() => {
                let delivery = self.delivery(make(), None);
                fanout::deliver_all(&state, members.iter(), &delivery)
            }
            _ => 0,
        }
    }
    fn publish_rooms(&self, room_ids: &[u64], event: Event) -> usize {
        let delivery = self.delivery(event, None);
        fanout::publish_rooms(&self.read(), room_ids, &delivery)
    }
    fn publish_user(&self, user_id: Uuid, event: Event) -> Vec<String> {
        let delivery = self.delivery(event, None);
        fanout::publish_user(&self.read(), user_id, &delivery)
    }
    fn publish_user_outside_room(&self, user_id: Uuid, room_id: u64, event: Event) -> usize {
        let delivery = self.delivery(event, None);
        fanout::publish_user_outside_room(&self.read(), user_id, room_id, &delivery)
    }
    fn roster_enter(&self, conn: ConnId, display_name: &str) -> bool {
        roster::enter(self, conn, display_name)
    }
    fn roster_name(&self, user_id: Uuid) -> Option<String> {
        roster::name_of_user(&self.read(), user_id)
    }
    fn roster_name_of(&self, conn: ConnId) -> Option<String> {
        self.read()
            .conns
            .get(&conn)
            .and_then(|conn| conn.roster_name.clone())
    }
    fn open_peer(&self, conn: ConnId, peer: Uuid, chat: PeerChat, max: usize) -> bool {
        roster::open_peer_on(&mut self.write(), conn, peer, chat, max)
    }
    fn open_peer_for_user(
        &self,
        user: Uuid,
        peer: Uuid,
        chat: &PeerChat,
        max: usize,
        event: Event,
    ) -> usize {
        let delivery = self.delivery(event, None);
        roster::open_peer_for_user(&mut self.write(), user, peer, chat, max, &delivery)
    }
    fn peer_chat(&self, conn: ConnId, peer: Uuid) -> Option<PeerChat> {
        self.read()
            .conns
            .get(&conn)
            .and_then(|conn| conn.peers.get(&peer).cloned())
    }
    fn peer_chats(&self, conn: ConnId) -> Vec<(Uuid, PeerChat)> {
        self.read().conns.get(&conn).map_or_else(Vec::new, |conn| {
            conn.peers
                .iter()
                .map(|(peer, chat)| (*peer, chat.clone()))
                .collect()
        })
    }
    fn publish_to_peer(&self, user: Uuid, peer: Uuid, event: Event, skip: Option<ConnId>) -> usize {
        let delivery = self.delivery(event, skip);
        roster::publish_to_peer(&self.read(), user, peer, &delivery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hub whose deliveries carry no attachment.
    pub(super) fn hub() -> Hub {
        Hub::new(Arc::new(|_: &mut Event| -> Attachment { Box::new(()) }))
    }

    pub(super) fn info(user: Uuid) -> ConnInfo {
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

    pub(super) fn caps(queue: usize, per_user: usize, total: usize) -> ConnCaps {
        ConnCaps {
            queue,
            per_user,
            total,
        }
    }

    pub(super) fn event() -> Event {
        Event::MessageDeleted {
            room: "r".to_owned(),
            room_id: 1,
            seq: 1,
        }
    }

    #[test]
    fn per_user_and_total_limits() {
        let hub = hub();
        let user = Uuid::new_v4();
        let _a = hub.register(info(user), caps(4, 2, 3)).expect("first");
        let _b = hub.register(info(user), caps(4, 2, 3)).expect("second");
        assert_eq!(
            hub.register(info(user), caps(4, 2, 3)).err(),
            Some(RegisterError::UserLimit)
        );
        let _c = hub
            .register(info(Uuid::new_v4()), caps(4, 2, 3))
            .expect("other user");
        assert_eq!(
            hub.register(info(Uuid::new_v4()), caps(4, 2, 3)).err(),
            Some(RegisterError::ServerLimit)
        );
    }

    #[test]
    fn full_queue_kicks_only_the_slow_consumer_and_empty_topics_vanish() {
        let hub = hub();
        let slow = hub
            .register(info(Uuid::new_v4()), caps(2, 5, 10))
            .expect("slow");
        let mut fast = hub
            .register(info(Uuid::new_v4()), caps(2, 5, 10))
            .expect("fast");
        let sub = [topic::parse_subscription("t").expect("topic")];
        hub.subscribe_all(slow.id, &sub, 10).expect("sub");
        hub.subscribe_all(fast.id, &sub, 10).expect("sub");
        for _ in 0..3 {
            hub.publish_topic("t", event(), None);
            while fast.outbound.try_recv().is_ok() {}
        }
        assert_eq!(slow.kick.reason(), Some(KickReason::SlowConsumer));
        assert!(!fast.kick.is_fired());
        hub.unregister(slow.id);
        hub.unregister(fast.id);
        assert!(hub.read().topics.is_empty());
        assert!(hub.read().users.is_empty());
    }
}
