//! One WebSocket connection: one task, one `select!` loop over the client's frames, the
//! outbound queue, the heartbeat, token expiry and the broker's close requests. The session
//! runs a dialect's requests: it counts them against the dialect's rates (the one rate limiter
//! of every protocol), executes their commands on the core, and hands replies and errors back
//! to the dialect to encode. Frames produced in one turn of the loop are written together and
//! flushed once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::dialect::fastchat::{self, FirstFrame};
use super::dialect::root::Root;
use super::dialect::{Dialect, Facts, Out, Rate, RateLimits, Request, Step};
use super::socket::{Prepared, WebSocket, WsError};
use super::{Credentials, Endpoint, close, fanout};
use crate::app::AppState;
use crate::core::command::{Command, Reply};
use crate::core::conversations::GuestPass;
use crate::core::rates::{RateRegistry, Subject};
use crate::error::Error;
use crate::events::KickReason;
use crate::hub::{ConnCaps, ConnId, ConnInfo, RegisterError};
use crate::principal::Principal;
use crate::store::{QueueReceipt, now_secs};

/// Boxed: each layer of a session's future (`run_ws`, `run`, `serve`) keeps its own slots for
/// its arguments, so a socket passed by value would be stored several times over in every idle
/// connection's task.
pub type Socket = Box<WebSocket<TokioIo<hyper::upgrade::Upgraded>>>;

/// Most queued deliveries written in one turn before the loop looks at other events again.
const MAX_COALESCED: usize = 64;
/// One turn's writes (at most `MAX_COALESCED` frames) taking longer than this means the peer is
/// not keeping up: the connection is dropped rather than left to hold its buffers.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the closing handshake may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The same for a connection closed while a write to it was blocked (a slow consumer kicked
/// with 4008, most often): its peer is not reading, so it gets a shorter chance to take its
/// pending frames and the close frame, and is gone within 2 s of overflowing its queue.
const BLOCKED_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection's rates: its dialect's limits, counted against its user's buckets in the
/// core's rate registry (shared by every connection and HTTP request of the user, so a
/// reconnect starts where the last connection left off), and this connection's refusal
/// streaks.
struct Rates {
    limits: RateLimits,
    /// Whose buckets: the user's (a guest's: its address's).
    subject: Subject,
    /// Refusals in a row on this connection, per rate (messages, typing, joins).
    refused: [u32; 3],
}

impl Rates {
    fn new(limits: RateLimits, subject: Subject) -> Rates {
        Rates {
            limits,
            subject,
            refused: [0; 3],
        }
    }

    /// Counts one request against `rate`. Over the limit: `Throttled`; a client that keeps
    /// going a whole minute's worth past a limit that closes is closed with 4429.
    fn check(&mut self, registry: &RateRegistry, rate: Rate, out: &mut Out) -> Result<(), Error> {
        let (limit, streak) = match rate {
            Rate::Free => return Ok(()),
            Rate::Message => (self.limits.messages, 0),
            Rate::Typing => (self.limits.typing, 1),
            Rate::Join => (self.limits.joins, 2),
        };
        match registry.check(self.subject, limit.noun, limit.bucket) {
            Ok(()) => {
                self.refused[streak] = 0;
                Ok(())
            }
            Err(error) => {
                self.refused[streak] = self.refused[streak].saturating_add(1);
                if limit.closes && self.refused[streak] >= limit.bucket.per_minute() {
                    out.close(close::RATE_LIMITED, self.limits.close_reason);
                }
                Err(error)
            }
        }
    }
}

/// A page of queued direct messages given to the dialect, to be removed from the queue once
/// its frames are written.
struct Drain {
    receipt: QueueReceipt,
    /// More pages follow.
    more: bool,
}

/// What the session keeps of a connection besides its dialect.
struct Session {
    state: AppState,
    principal: Principal,
    conn: ConnId,
    rates: Rates,
    /// Highest sequence already sent per room by a replay: live duplicates are dropped.
    replayed: HashMap<u64, u64>,
    /// The page of queued direct messages in this turn's frames, if any.
    drain: Option<Drain>,
}

impl Session {
    /// Runs one request of `dialect` to its end: its rate, then its command (or its own work,
    /// which may lead to a further request), and its answer into `out`.
    async fn run<D: Dialect>(&mut self, dialect: &mut D, request: Request<D::Meta>, out: &mut Out) {
        let mut request = request;
        loop {
            let Request { meta, rate, step } = request;
            if let Err(error) = self.rates.check(self.state.core.chat.rates(), rate, out) {
                dialect.error(meta, &error, out);
                return;
            }
            match step {
                Step::Core(command) => {
                    let executed = self
                        .state
                        .core
                        .execute(&self.principal, self.conn, command)
                        .await;
                    match executed {
                        Ok(reply) => {
                            self.note(&reply);
                            dialect.reply(meta, reply, out);
                        }
                        Err(error) => dialect.error(meta, &error, out),
                    }
                    return;
                }
                Step::Invalid(error) => {
                    dialect.error(meta, &error, out);
                    return;
                }
                Step::Local => match dialect.local(meta, out) {
                    Some(next) => request = next,
                    None => return,
                },
            }
        }
    }

    /// What the session itself keeps of a reply: the sequences a Join replayed, new
    /// credentials.
    fn note(&mut self, reply: &Reply) {
        match reply {
            Reply::Joined(outcome) => {
                if let Some(last) = outcome.replay.last() {
                    let entry = self.replayed.entry(outcome.room.id).or_insert(0);
                    *entry = (*entry).max(last.seq);
                }
            }
            Reply::QueuedDirect(page) if !page.receipt.is_empty() => {
                self.drain = Some(Drain {
                    receipt: page.receipt.clone(),
                    more: page.more,
                });
            }
            Reply::Authenticated(principal) => {
                self.state
                    .broker
                    .set_session(self.conn, principal.session_id);
                self.principal = principal.clone();
            }
            _ => {}
        }
    }

    /// A text or binary frame of the client, decoded and run.
    async fn frame<D: Dialect>(&mut self, dialect: &mut D, frame: Incoming, out: &mut Out) {
        let request = match frame {
            Incoming::Text(text) => dialect.decode_text(&text),
            Incoming::Binary(data) => dialect.decode_binary(data),
        };
        if let Some(request) = request {
            self.run(dialect, request, out).await;
        }
    }
}

/// A data frame from the client.
enum Incoming {
    Text(tokio_tungstenite::tungstenite::Utf8Bytes),
    Binary(bytes::Bytes),
}

/// Runs a connection to its end: authenticates it with its token, then serves dialect `D`.
pub async fn run<D: Dialect>(
    state: AppState,
    mut socket: Socket,
    credentials: Credentials,
    peer: SocketAddr,
    endpoint: Endpoint,
) {
    // The token is not kept: an idle connection would hold its few hundred bytes for hours.
    let Credentials { token, .. } = credentials;
    let principal = match token {
        None => Err(Error::InvalidToken("missing token")),
        Some(token) => Box::pin(state.core.accounts.authenticate(&token)).await,
    };
    // Every WebSocket is chatting as the user: a service token without `chat` is refused here,
    // as a disabled account is, in the dialect's own refusal shape.
    let principal =
        principal.and_then(|p| p.require_scope(crate::principal::Scope::Chat).map(|()| p));
    let principal = match principal {
        Ok(principal) => principal,
        Err(error) => {
            let code = if matches!(error, Error::AccountDisabled | Error::Forbidden(_)) {
                close::FORBIDDEN
            } else {
                close::UNAUTHORIZED
            };
            tracing::info!(peer = %peer, error = %error, "WebSocket refused");
            Box::pin(refuse::<D>(&mut socket, &error, code)).await;
            return;
        }
    };
    let config = state.config.clone();
    serve(state, socket, principal, peer, |facts| {
        D::new(facts, &endpoint, &config)
    })
    .await;
}

/// Runs a connection to `/ws` ([`Root`]: native, or FastChat after a first frame `HELLO`). With
/// a token, or without one while `fastchat.guests` is off, that is [`run`]. Otherwise the
/// connection must send a FastChat HELLO within `fastchat.hello_timeout_secs`, which makes it a
/// guest; any other first frame, or none in time, is refused like a missing token.
pub async fn run_ws(
    state: AppState,
    mut socket: Socket,
    credentials: Credentials,
    peer: SocketAddr,
    endpoint: Endpoint,
) {
    if credentials.token.is_some() || !state.config.fastchat.guests {
        run::<Root>(state, socket, credentials, peer, endpoint).await;
        return;
    }
    let Some((user_id, display_name, place)) = await_guest_hello(&state, &mut socket, peer).await
    else {
        return;
    };
    let principal = Principal::guest(user_id);
    let config = state.config.clone();
    serve(state, socket, principal, peer, move |facts| {
        Root::guest(facts, &config, display_name)
    })
    .await;
    // The guest's place among the guests is given back once its connection is gone.
    drop(place);
}

/// Reads the first frames of a connection without a token until a FastChat HELLO admits it as
/// a guest (its user id, display name and place among the guests). A HELLO that cannot be
/// accepted as it is (a bad name, an account's name) gets its ERROR and the client may try
/// again, within the same deadline; one that claims an account's id, any other frame, or
/// silence until the deadline, ends the connection (4401); so do too many guests (1013) or
/// too many from one address (4429), after their ERROR.
async fn await_guest_hello(
    state: &AppState,
    socket: &mut Socket,
    peer: SocketAddr,
) -> Option<(Uuid, String, GuestPass)> {
    let missing = Error::InvalidToken("missing token (or FastChat HELLO)");
    let deadline = Instant::now() + Duration::from_secs(state.config.fastchat.hello_timeout_secs);
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            () = tokio::time::sleep_until(deadline) => {
                tracing::info!(peer = %peer, "WebSocket refused: no token and no HELLO in time");
                refuse::<Root>(socket, &missing, close::UNAUTHORIZED).await;
                return None;
            }
            () = state.shutdown_token().cancelled() => {
                close_gracefully(socket, close::GOING_AWAY, "server shutting down").await;
                return None;
            }
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Binary(_))) => {
                refuse::<Root>(socket, &missing, close::UNAUTHORIZED).await;
                return None;
            }
            Some(Ok(Message::Close(_))) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.flush()).await;
                return None;
            }
            Some(Err(e)) => {
                if let Some((code, reason)) = close_for_read_error(&e) {
                    close_gracefully(socket, code, &reason).await;
                }
                return None;
            }
            None => return None,
        };
        let (claimed, display_name) = match fastchat::first_frame(text.as_str()) {
            FirstFrame::Ping => {
                if !send_within(socket, fastchat::pong()).await {
                    return None;
                }
                continue;
            }
            FirstFrame::Early => {
                let early =
                    Error::Forbidden("send HELLO first to establish your identity".to_owned());
                if !retry(socket, &early).await {
                    return None;
                }
                continue;
            }
            FirstFrame::NotHello => {
                tracing::info!(peer = %peer, "WebSocket refused: no token");
                refuse::<Root>(socket, &missing, close::UNAUTHORIZED).await;
                return None;
            }
            FirstFrame::Invalid(error) => {
                if !retry(socket, &error).await {
                    return None;
                }
                continue;
            }
            FirstFrame::Hello {
                user_id,
                display_name,
            } => (user_id, display_name),
        };
        let policy = fastchat::name_policy(&state.config.fastchat);
        match state
            .core
            .chat
            .admit_guest(&claimed, &display_name, policy, Some(peer.ip()))
            .await
        {
            Ok(admitted) => return Some(admitted),
            Err(error @ (Error::Unavailable(_) | Error::RateLimited(_))) => {
                tracing::info!(peer = %peer, error = %error, "WebSocket refused: guest limit");
                let code = if matches!(error, Error::Unavailable(_)) {
                    close::TRY_AGAIN_LATER
                } else {
                    close::RATE_LIMITED
                };
                let _ =
                    tokio::time::timeout(CLOSE_TIMEOUT, socket.send(fastchat::error_frame(&error)))
                        .await;
                close_gracefully(socket, code, &error.public_message()).await;
                return None;
            }
            Err(error) if fastchat::Code::of(&error) == fastchat::Code::Unauthorized => {
                tracing::info!(peer = %peer, "WebSocket refused: a guest claimed an account's user id");
                let _ =
                    tokio::time::timeout(CLOSE_TIMEOUT, socket.send(fastchat::error_frame(&error)))
                        .await;
                close_gracefully(socket, close::UNAUTHORIZED, "user_id belongs to an account")
                    .await;
                return None;
            }
            Err(error) => {
                if !retry(socket, &error).await {
                    return None;
                }
            }
        }
    }
}

/// Tells a guest why its HELLO was not taken; false when the connection is gone.
async fn retry(socket: &mut Socket, error: &Error) -> bool {
    send_within(socket, fastchat::error_frame(error)).await
}

/// Sends one frame before the connection is registered; false when the connection is gone.
async fn send_within(socket: &mut Socket, frame: Message) -> bool {
    tokio::time::timeout(CLOSE_TIMEOUT, socket.send(frame))
        .await
        .is_ok_and(|sent| sent.is_ok())
}

/// Serves an authenticated connection (or an admitted guest) with the dialect `make` builds
/// once it is registered, until it ends.
///
/// The awaits outside the loop (refusals, account checks, presence, the queue's removal, the
/// close) are boxed: a future is as large as its largest await, and every idle connection's
/// task would carry it (issue #16: 5.3 KB per connection before, most of it `execute`).
async fn serve<D: Dialect>(
    state: AppState,
    mut socket: Socket,
    mut principal: Principal,
    peer: SocketAddr,
    make: impl FnOnce(&Facts) -> D,
) {
    let config = &state.config.ws;
    let public_id = Uuid::new_v4().to_string();
    // A guest's id is its only identity: one connection per id.
    let per_user = if principal.guest {
        1
    } else {
        config.max_connections_per_user
    };
    let registration = loop {
        let registered = state.broker.register(
            ConnInfo {
                user_id: principal.user_id,
                username: principal.username.clone(),
                session_id: principal.session_id,
                public_id: public_id.clone(),
                dialect: "native",
                peer: Some(peer),
                connected_at: now_secs(),
            },
            ConnCaps {
                queue: config.outbound_queue,
                per_user,
                total: config.max_connections,
            },
        );
        if !matches!(registered, Ok(_) | Err(RegisterError::UserLimit) if principal.guest) {
            crate::metrics::Metrics::incr(if registered.is_ok() {
                &state.metrics.connections_opened
            } else {
                &state.metrics.connections_refused
            });
        }
        match registered {
            Ok(registration) => break registration,
            Err(RegisterError::UserLimit) if principal.guest => {
                // Another guest took the id since it was checked: this one gets a fresh id
                // (its HELLO_ACK says which).
                principal = Principal::guest(Uuid::new_v4());
            }
            Err(RegisterError::UserLimit) => {
                let error = Error::RateLimited(format!(
                    "too many connections: at most {} per user",
                    config.max_connections_per_user
                ));
                Box::pin(refuse::<D>(&mut socket, &error, close::RATE_LIMITED)).await;
                return;
            }
            Err(RegisterError::ServerLimit) => {
                let error = Error::Unavailable(format!(
                    "server is at its connection limit ({}); try again later",
                    config.max_connections
                ));
                Box::pin(refuse::<D>(&mut socket, &error, close::TRY_AGAIN_LATER)).await;
                return;
            }
        }
    };
    // Kicks reach the connection from here on; one that came between its authentication and
    // now (a role change, a disabled account) is applied here.
    let stale = Box::pin(state.core.accounts.still_current(&principal))
        .await
        .unwrap_or_else(|error| {
            tracing::warn!(error = %error, "cannot check a new connection's account");
            Some(KickReason::SessionEnded("account could not be checked"))
        });
    if let Some(reason) = stale {
        state.broker.unregister(registration.id);
        let (code, text) = kick_close(reason);
        Box::pin(close_gracefully(&mut socket, code, &text)).await;
        return;
    }
    tracing::debug!(user = %principal.username, connection = %public_id, peer = %peer, "WebSocket connected");
    let conn = registration.id;
    let facts = Facts {
        user_id: principal.user_id,
        username: principal.username.clone(),
        role: principal.role,
        public_id,
    };
    let mut dialect = make(&facts);
    let subject = Subject::of(&principal, Some(peer.ip()));
    let mut session = Session {
        state: state.clone(),
        rates: Rates::new(dialect.rate_limits(&state.config), subject),
        principal,
        conn,
        replayed: HashMap::new(),
        drain: None,
    };
    state.broker.set_dialect(conn, dialect.name());
    let mut out = Out::default();
    Box::pin(async {
        for request in dialect.connect(&facts) {
            session.run(&mut dialect, request, &mut out).await;
            if out.is_closing() {
                break;
            }
        }
    })
    .await;
    // Guests have no account: no last_seen, no rooms to tell.
    if registration.first_for_user && !session.principal.guest {
        Box::pin(state.core.chat.connected(&session.principal)).await;
    }
    let mut outbound = registration.outbound;
    let kick = registration.kick;

    let mut heartbeat = heartbeat_of(&dialect, config);
    let mut next_ping = Instant::now() + heartbeat.0;
    let mut pong_deadline: Option<Instant> = None;
    let mut expiry = Expiry::new(&session.principal, config, dialect.enforces_token_expiry());
    let mut close_timeout = CLOSE_TIMEOUT;
    let deflate = socket.deflate();
    // Deliveries encoded for this turn's write, with how each goes out compressed.
    let mut outgoing: Vec<(Message, Prepared)> = Vec::new();

    // Creation time of the oldest event in the frames waiting to be written.
    let mut oldest_pending: Option<std::time::Instant> = None;
    let metrics = state.metrics.clone();
    let close = loop {
        // Taken, not drained: the replies' buffer is not kept by an idle connection.
        outgoing.extend(
            std::mem::take(&mut out.frames)
                .into_iter()
                .map(|frame| (frame, Prepared::Fresh)),
        );
        if !outgoing.is_empty() || out.close.is_some() {
            let frames = std::mem::take(&mut outgoing);
            let count = frames.len() as u64;
            if !write(&mut socket, frames, &kick).await {
                // Kicked while blocked on a peer that does not read: still try to say why,
                // briefly.
                close_timeout = BLOCKED_CLOSE_TIMEOUT;
                break kick.reason().map(kick_close);
            }
            metrics
                .frames_out
                .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            if let Some(created) = oldest_pending.take() {
                metrics.delivery_latency.observe_duration(created.elapsed());
            }
            if let Some(close) = out.close.take() {
                break Some(close);
            }
            // A page of queued direct messages was in what was just written: it leaves the
            // queue, and the next page (if any) goes out in the next write. So a queue reaches
            // the client a page at a time, as fast as the socket takes it, and what a dropped
            // connection did not get stays queued.
            if let Some(drain) = session.drain.take() {
                let after = drain.receipt.last();
                let delivered = Box::pin(state.core.execute(
                    &session.principal,
                    conn,
                    Command::DeliveredDirectMessages(drain.receipt),
                ))
                .await;
                match delivered {
                    Err(e) => {
                        tracing::warn!(user = %session.principal.username, error = %e, "cannot remove delivered direct messages from the queue");
                    }
                    // Not past a shutdown: what is left stays queued for the next connection.
                    Ok(_) if drain.more && !state.is_shutting_down() => {
                        if let Some(request) = after.and_then(|after| dialect.queued_page(after)) {
                            Box::pin(session.run(&mut dialect, request, &mut out)).await;
                            continue;
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
        if expiry.expires_at != session.principal.expires_at {
            expiry = Expiry::new(&session.principal, config, dialect.enforces_token_expiry());
        }
        let current = heartbeat_of(&dialect, config);
        if current != heartbeat {
            // The connection changed protocol (/ws to FastChat): its heartbeat, rates and
            // token expiry start over.
            heartbeat = current;
            expiry = Expiry::new(&session.principal, config, dialect.enforces_token_expiry());
            state.broker.set_dialect(conn, dialect.name());
            session.rates = Rates::new(dialect.rate_limits(&state.config), session.rates.subject);
            next_ping = Instant::now() + heartbeat.0;
        }
        tokio::select! {
            biased;
            reason = kick.fired() => break Some(kick_close(reason)),
            () = state.shutdown_token().cancelled() => break Some((close::GOING_AWAY, "server shutting down".to_owned())),
            frame = socket.next() => {
                pong_deadline = None;
                let incoming = match frame {
                    Some(Ok(Message::Text(text))) => Incoming::Text(text),
                    Some(Ok(Message::Binary(data))) => Incoming::Binary(data),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) => {
                        // The socket queued the reply to the peer's close: send it.
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.flush()).await;
                        break None;
                    }
                    None => break None,
                    Some(Err(e)) => {
                        tracing::debug!(user = %session.principal.username, error = %e, "WebSocket read error");
                        break close_for_read_error(&e);
                    }
                };
                // What was queued for the connection before this frame came goes out before its
                // answer: a client that sees the answer has seen every event that preceded it.
                if let Ok(first) = outbound.try_recv() {
                    oldest_pending.get_or_insert(first.created);
                    let pending = Pending { outbound: &mut outbound, deflate: deflate.is_some() };
                    pending.encode(first, &dialect, &session.replayed, &mut outgoing);
                }
                // Boxed: a request's future (the largest request's state) would otherwise be
                // inlined into this loop's, and every idle connection would carry it.
                Box::pin(session.frame(&mut dialect, incoming, &mut out)).await;
            }
            delivery = outbound.recv() => {
                let Some(first) = delivery else { break None };
                oldest_pending.get_or_insert(first.created);
                let pending = Pending { outbound: &mut outbound, deflate: deflate.is_some() };
                pending.encode(first, &dialect, &session.replayed, &mut outgoing);
            }
            // One timer for the four deadlines: each `Sleep` is a timer entry of its own in
            // every idle connection's future.
            () = tokio::time::sleep_until(next_deadline(next_ping, pong_deadline, &expiry)) => {
                let now = Instant::now();
                if expiry.close_at.is_some_and(|at| at <= now) {
                    break Some((close::UNAUTHORIZED, "token expired".to_owned()));
                }
                if pong_deadline.is_some_and(|at| at <= now) {
                    break Some((close::HEARTBEAT_TIMEOUT, "heartbeat timeout".to_owned()));
                }
                if !expiry.warned && expiry.warn_at.is_some_and(|at| at <= now) {
                    expiry.warned = true;
                    if let Some(frame) = dialect.token_expiring(session.principal.expires_at) {
                        out.send(frame);
                    }
                }
                if next_ping <= now {
                    next_ping = now + heartbeat.0;
                    if pong_deadline.is_none() {
                        pong_deadline = Some(now + heartbeat.1);
                    }
                    out.send(dialect.ping().unwrap_or_else(|| Message::Ping(bytes::Bytes::new())));
                }
            }
        }
    };

    if let Some((code, reason)) = close {
        if code == close::SLOW_CONSUMER {
            crate::metrics::Metrics::incr(&metrics.slow_consumers);
        }
        Box::pin(close_within(&mut socket, code, &reason, close_timeout)).await;
    }
    let gone = state.broker.unregister(conn);
    if !session.principal.guest {
        Box::pin(
            state
                .core
                .chat
                .left_rooms(&session.principal, &gone.rooms_left),
        )
        .await;
        if gone.last_for_user {
            Box::pin(state.core.chat.disconnected(&session.principal)).await;
        }
    }
    tracing::debug!(user = %session.principal.username, connection = %facts.public_id, "WebSocket closed");
}

/// A connection's queue of deliveries, as one turn takes them.
struct Pending<'a> {
    outbound: &'a mut crate::hub::queue::Receiver<std::sync::Arc<crate::hub::Delivery>>,
    /// permessage-deflate was negotiated.
    deflate: bool,
}

impl Pending<'_> {
    /// Encodes `first` and what is queued after it (at most `MAX_COALESCED` in all) into
    /// `outgoing`, each shared with every receiver of the same dialect and compressed once when
    /// deflate was negotiated.
    fn encode<D: Dialect>(
        self,
        first: std::sync::Arc<crate::hub::Delivery>,
        dialect: &D,
        replayed: &HashMap<u64, u64>,
        outgoing: &mut Vec<(Message, Prepared)>,
    ) {
        let encoder = dialect.encoder();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(delivery) = next.take() {
            if let Some((room, seq)) = delivery.event.room_seq()
                && replayed.get(&room).is_some_and(|done| seq <= *done)
            {
                // Already sent by the Join replay.
            } else if !dialect.wants(&delivery.event) {
                // Not for this client (e.g. FastChat does not echo the sender's own message).
            } else if let Some(frame) = fanout::encoded(&delivery, encoder.slot, encoder.encode) {
                let prepared = if self.deflate {
                    Prepared::Deflated(fanout::deflated(&delivery, encoder.slot, &frame))
                } else {
                    Prepared::Fresh
                };
                outgoing.push((frame, prepared));
            }
            taken += 1;
            if taken < MAX_COALESCED {
                next = self.outbound.try_recv().ok();
            }
        }
    }
}

/// The close frame of a connection the core asked to end.
fn kick_close(reason: KickReason) -> (u16, String) {
    let (code, text) = close::for_kick(reason);
    (code, text.to_owned())
}

/// How a connection ends after a read error: the close frame to send, or `None` when the
/// connection is already gone (reset, EOF, I/O error) and only dropping it is left.
pub fn close_for_read_error(error: &WsError) -> Option<(u16, String)> {
    match error {
        WsError::TooBig(max) => Some((close::TOO_BIG, format!("message exceeds {max} bytes"))),
        WsError::Utf8 => Some((
            close::INVALID_PAYLOAD,
            "text message is not valid UTF-8".to_owned(),
        )),
        WsError::Protocol(violation) => Some((
            close::PROTOCOL_ERROR,
            format!("protocol error: {violation}"),
        )),
        // The peer went away (reset, EOF, I/O error): nobody to tell.
        WsError::Reset | WsError::Io(_) => None,
    }
}

/// The conformance echo endpoint (`/ws/echo`, only with `ws.conformance_echo`): every text and
/// binary message goes back as it came, through the same WebSocket configuration and the same
/// error-to-close-code mapping as every other endpoint, so a conformance suite run against it
/// tests what `/ws` clients get. No token, no hub registration, no rate limit: test-only.
pub async fn run_echo(state: AppState, mut socket: Socket) {
    let close = loop {
        let frame = tokio::select! {
            () = state.shutdown_token().cancelled() => break Some((close::GOING_AWAY, "server shutting down".to_owned())),
            frame = socket.next() => frame,
        };
        match frame {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                let sent = tokio::time::timeout(WRITE_TIMEOUT, socket.send(message)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    break None;
                }
            }
            // The socket queued the pong; the next read flushes it.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_))) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.flush()).await;
                break None;
            }
            None => break None,
            Some(Err(e)) => break close_for_read_error(&e),
        }
    };
    if let Some((code, reason)) = close {
        close_gracefully(&mut socket, code, &reason).await;
    }
}

/// The ping interval and pong timeout of a connection: its dialect's, or `ws`'s.
fn heartbeat_of<D: Dialect>(dialect: &D, config: &crate::config::WsConfig) -> (Duration, Duration) {
    dialect.heartbeat().unwrap_or((
        Duration::from_secs(config.ping_interval_secs),
        Duration::from_secs(config.pong_timeout_secs),
    ))
}

/// When to warn about and when to enforce the access token's expiry (never, for a guest: it has
/// no token).
struct Expiry {
    expires_at: i64,
    warn_at: Option<Instant>,
    warned: bool,
    close_at: Option<Instant>,
}

impl Expiry {
    /// `enforced`: the connection closes when its token expires (after a warning); else the
    /// token was checked at connect, and only a revoked session or account ends it.
    fn new(principal: &Principal, config: &crate::config::WsConfig, enforced: bool) -> Expiry {
        if principal.guest || !enforced {
            return Expiry {
                expires_at: principal.expires_at,
                warn_at: None,
                warned: true,
                close_at: None,
            };
        }
        let now = Instant::now();
        let left = u64::try_from(principal.expires_at.saturating_sub(now_secs())).unwrap_or(0);
        let warn_in = left.checked_sub(config.expiry_warning_secs);
        Expiry {
            expires_at: principal.expires_at,
            warn_at: Some(now + Duration::from_secs(warn_in.unwrap_or(0))),
            warned: false,
            close_at: Some(
                now + Duration::from_secs(left.saturating_add(config.expiry_grace_secs)),
            ),
        }
    }
}

/// The earliest of a connection's deadlines: the next ping, the pong it waits for, and its
/// token's expiry warning and end.
fn next_deadline(next_ping: Instant, pong_deadline: Option<Instant>, expiry: &Expiry) -> Instant {
    [
        pong_deadline,
        expiry.warn_at.filter(|_| !expiry.warned),
        expiry.close_at,
    ]
    .into_iter()
    .flatten()
    .fold(next_ping, Instant::min)
}

/// Writes the frames of one turn and flushes once. Gives up (false) when the peer does not
/// read within `WRITE_TIMEOUT` or the hub asks the connection to close meanwhile.
async fn write(
    socket: &mut Socket,
    frames: Vec<(Message, Prepared)>,
    kick: &crate::hub::Kick,
) -> bool {
    for (frame, prepared) in frames {
        socket.feed_prepared(&frame, prepared);
    }
    let work = socket.flush();
    tokio::select! {
        result = work => result.is_ok(),
        _ = kick.fired() => false,
        () = tokio::time::sleep(WRITE_TIMEOUT) => false,
    }
}

/// Says why, then closes.
async fn refuse<D: Dialect>(socket: &mut Socket, error: &Error, code: u16) {
    if let Some(frame) = D::refusal(error) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(frame)).await;
    }
    close_gracefully(socket, code, &error.public_message()).await;
}

/// The closing handshake: send a close frame, then read (and discard) until the peer answers
/// with its own, both bounded by `CLOSE_TIMEOUT`. Reading what the peer still sent matters: a
/// socket closed with unread input is reset by the kernel, and the peer would lose the frames
/// (the close code among them) that were already on their way to it.
async fn close_gracefully(socket: &mut Socket, code: u16, reason: &str) {
    close_within(socket, code, reason, CLOSE_TIMEOUT).await;
}

/// [`close_gracefully`] bounded by `timeout` instead of `CLOSE_TIMEOUT`.
async fn close_within(socket: &mut Socket, code: u16, reason: &str, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        if socket.close(code, reason).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
}
