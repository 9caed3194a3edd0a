//! One-to-one conversations (FastChat's "chats"), the live roster of who is online in a dialect
//! that lists its users, and the guests such a dialect may admit.
//!
//! A conversation between two accounts is their direct room (`dm:a:b`, [`Chat::open_room`] with
//! `@username`): its messages are stored like any room message, and a native client joined to the
//! room sees them (and its own messages reach the conversation). A conversation with a guest has
//! no room, since a guest has no account: it is relayed live between the connections that have
//! it open, and nothing of it is stored. Which conversations a connection has open, and who is
//! in the roster, is the hub's per-connection state, so both sides of a conversation see it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

use crate::core::chat::{Chat, MAX_CLIENT_MSG_ID_BYTES, check_content, now_millis};
use crate::core::command::{ContentPolicy, Conversation, NamePolicy, RoomRef, SendMessage};
use crate::core::policy;
use crate::error::Error;
use crate::events::{ConversationEvent, Event};
use crate::hub::{ConnId, PeerChat};
use crate::principal::Principal;

/// Guests connected now, in all and per client address.
#[derive(Debug, Default)]
pub struct GuestCounts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// A guest's place among the guests (see [`Chat::admit_guest`]): given back when dropped, so
/// the connection holds it for its life.
#[derive(Debug)]
pub struct GuestPass {
    counts: Arc<Mutex<GuestCounts>>,
    address: Option<IpAddr>,
}

impl Drop for GuestPass {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(address) = self.address
            && let Some(count) = counts.by_address.get_mut(&address)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.by_address.remove(&address);
            }
        }
    }
}

/// Prefix of the ids of conversations that no room keeps (a guest takes part).
pub const LIVE_PREFIX: &str = "live:";

/// Longest message id a client may choose (the core's limit on `client_msg_id`).
const MAX_MESSAGE_ID_BYTES: usize = MAX_CLIENT_MSG_ID_BYTES;

/// What a connection has with a peer it names.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A conversation is open on this connection.
    Open { peer_id: Uuid, chat: PeerChat },
    /// The peer exists, but no conversation with them is open on this connection.
    NotOpened,
    /// No account and no listed guest has that id.
    NoSuchUser,
}

/// The id of the live conversation of two users (order-independent).
pub fn live_chat_id(a: Uuid, b: Uuid) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    format!("{LIVE_PREFIX}{}:{}", first.simple(), second.simple())
}

impl Chat {
    /// The user id of a guest that claims `claimed`: that id when it is a UUID v4 that is
    /// neither an account's nor online already, otherwise a fresh one (the dialect tells the
    /// client which). Claiming an account's id is `InvalidToken`: that takes the account's token.
    pub async fn guest_identity(&self, claimed: &str) -> Result<Uuid, Error> {
        let Ok(id) = Uuid::parse_str(claimed) else {
            return Ok(Uuid::new_v4());
        };
        if self.store().user(id).await?.is_some() {
            return Err(Error::InvalidToken(
                "this user_id belongs to an account: connect with its token",
            ));
        }
        if id.get_version() != Some(uuid::Version::Random) || self.broker().is_online(id) {
            return Ok(Uuid::new_v4());
        }
        Ok(id)
    }

    /// A guest admitted by its first frame from `address`: the id it gets (see
    /// [`Chat::guest_identity`]), its display name under `policy`, and its place among the
    /// guests, held for as long as the connection lives.
    ///
    /// Guests are bounded apart from accounts: at most `fastchat.max_guests` (never more than
    /// half of `ws.max_connections`, so accounts always find room; beyond: `Unavailable`) and
    /// `fastchat.max_guests_per_ip` from one address (beyond: `RateLimited`). A display name
    /// that is an account's username or display name (folded: case, spaces, invisible and
    /// fullwidth characters) is refused (`Conflict`): a guest must not pass for an account.
    pub async fn admit_guest(
        &self,
        claimed: &str,
        display_name: &str,
        policy: NamePolicy,
        address: Option<IpAddr>,
    ) -> Result<(Uuid, String, GuestPass), Error> {
        let name = policy::display_name(display_name, policy.min, policy.max)?;
        let id = self.guest_identity(claimed).await?;
        if self.store().is_account_name(&name).await? {
            return Err(Error::Conflict(format!(
                "display name {name} belongs to an account: choose another"
            )));
        }
        let pass = self.take_guest_place(address)?;
        Ok((id, name, pass))
    }

    fn take_guest_place(&self, address: Option<IpAddr>) -> Result<GuestPass, Error> {
        let limits = self.limits();
        let mut counts = self
            .guest_counts()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if counts.total >= limits.max_guests {
            return Err(Error::Unavailable(format!(
                "too many guests ({}); try again later",
                limits.max_guests
            )));
        }
        if let Some(address) = address
            && counts.by_address.get(&address).copied().unwrap_or(0) >= limits.max_guests_per_ip
        {
            return Err(Error::RateLimited(format!(
                "too many guests from your address (at most {})",
                limits.max_guests_per_ip
            )));
        }
        counts.total += 1;
        if let Some(address) = address {
            *counts.by_address.entry(address).or_default() += 1;
        }
        Ok(GuestPass {
            counts: self.guests_handle(),
            address,
        })
    }

    /// Lists a connection in the live roster under `display_name` (see
    /// [`policy::display_name`]: markup stripped, then within `policy`); the roster goes to
    /// every listed connection when it changed, and to this one in any case. Returns the name
    /// as listed.
    pub fn roster_enter(
        &self,
        conn: ConnId,
        display_name: &str,
        policy: NamePolicy,
    ) -> Result<String, Error> {
        let name = policy::display_name(display_name, policy.min, policy.max)?;
        self.broker().roster_enter(conn, &name);
        Ok(name)
    }

    /// Opens the conversation of `who` with the user (or listed guest) whose id is `target`, on
    /// connection `conn`, and on every listed connection of the target, which are told
    /// ([`ConversationEvent::Opened`]). Two accounts talk in their direct room (created on first
    /// use); a guest on either side makes it a live conversation, which needs the other side
    /// listed in the roster. `NotFound` for nobody by that id; `RateLimited` beyond
    /// `ws.max_joined_rooms` rooms and conversations on the connection.
    pub async fn open_conversation(
        &self,
        who: &Principal,
        conn: ConnId,
        target: &str,
    ) -> Result<Conversation, Error> {
        let not_found = || Error::NotFound(format!("user {target} not found"));
        let peer_id = Uuid::parse_str(target).map_err(|_| not_found())?;
        if peer_id == who.user_id {
            return Err(Error::BadRequest("a chat needs another user".to_owned()));
        }
        let listed = self.broker().roster_name(peer_id);
        // Whether the peer's connections get the conversation too: always for a live one; for
        // a direct room, only while the peer is still its member.
        let mut peer_reads = true;
        let (chat, peer_name) = match self.store().user(peer_id).await? {
            Some(user) if user.disabled => return Err(not_found()),
            Some(user) if !who.guest => {
                let room = self
                    .open_room(who, &RoomRef::Name(format!("@{}", user.username)))
                    .await?;
                // The direct room may have lost a member (an admin removed them): opening the
                // conversation joins its audience, which takes the room's read right, as Join
                // does.
                self.check_read(who, &room).await?;
                peer_reads = self.store().is_member(room.id, peer_id).await?;
                let chat = PeerChat {
                    chat_id: room.name,
                    room: Some(room.id),
                };
                (chat, listed.unwrap_or(user.username))
            }
            _ => {
                let name = listed.ok_or_else(not_found)?;
                let chat = PeerChat {
                    chat_id: live_chat_id(who.user_id, peer_id),
                    room: None,
                };
                (chat, name)
            }
        };
        let max = self.limits().max_joined_rooms;
        if !self.broker().open_peer(conn, peer_id, chat.clone(), max) {
            return Err(Error::RateLimited(format!(
                "at most {max} rooms and chats per connection"
            )));
        }
        let participants = [who.user_id, peer_id];
        let opener_name = self
            .broker()
            .roster_name_of(conn)
            .unwrap_or_else(|| who.username.clone());
        let opened = Event::Conversation(ConversationEvent::Opened {
            chat_id: chat.chat_id.clone(),
            participants,
            peer_id: who.user_id,
            peer_name: opener_name,
        });
        if peer_reads {
            self.broker()
                .open_peer_for_user(peer_id, who.user_id, &chat, max, opened);
        }
        Ok(Conversation {
            chat_id: chat.chat_id,
            participants,
            peer_id,
            peer_name,
        })
    }

    /// What connection `conn` has with the peer whose id is `peer`.
    async fn conversation(&self, conn: ConnId, peer: &str) -> Result<Lookup, Error> {
        let Ok(peer_id) = Uuid::parse_str(peer) else {
            return Ok(Lookup::NoSuchUser);
        };
        if let Some(chat) = self.broker().peer_chat(conn, peer_id) {
            return Ok(Lookup::Open { peer_id, chat });
        }
        let exists = self
            .store()
            .user(peer_id)
            .await?
            .is_some_and(|u| !u.disabled)
            || self.broker().roster_name(peer_id).is_some();
        Ok(if exists {
            Lookup::NotOpened
        } else {
            Lookup::NoSuchUser
        })
    }

    /// Sends a message in the conversation with the peer whose id is `to`, open on `conn`
    /// (`ConversationNotOpen` when it is not; `NotFound` when nobody has that id). The content
    /// goes through `policy`. `message_id` (or a new UUID) identifies it: in a direct room it is
    /// the stored message's `client_msg_id`, so a repeated id stores nothing new, and this
    /// returns once the message is durable. A live conversation delivers to the peer's
    /// connections that have it open, and is `Unavailable` when there are none. Returns the
    /// message id.
    pub async fn conversation_send(
        &self,
        who: &Principal,
        conn: ConnId,
        to: &str,
        content: &str,
        message_id: Option<String>,
        policy: ContentPolicy,
    ) -> Result<String, Error> {
        let (peer_id, chat) = match self.conversation(conn, to).await? {
            Lookup::Open { peer_id, chat } => (peer_id, chat),
            Lookup::NotOpened => {
                return Err(Error::ConversationNotOpen(format!(
                    "no chat with {to} is open on this connection: send OPEN_CHAT first"
                )));
            }
            Lookup::NoSuchUser => return Err(Error::NotFound(format!("user {to} not found"))),
        };
        let message_id = message_id.unwrap_or_else(|| Uuid::new_v4().to_string());
        if chat.room.is_some() {
            self.send(
                who,
                SendMessage {
                    room: RoomRef::Name(chat.chat_id.clone()),
                    content: content.to_owned(),
                    reply_to: None,
                    client_msg_id: Some(message_id.clone()),
                    policy,
                    attachments: Vec::new(),
                },
            )
            .await?;
            return Ok(message_id);
        }
        let content = if policy.strip_markup {
            policy::strip_markup(content)
        } else {
            content.to_owned()
        };
        check_content(
            &content,
            policy.max_chars.unwrap_or(self.limits().max_message_chars),
        )?;
        if message_id.is_empty() || message_id.len() > MAX_MESSAGE_ID_BYTES {
            return Err(Error::BadRequest(format!(
                "message_id must be 1 to {MAX_MESSAGE_ID_BYTES} bytes"
            )));
        }
        let event = Event::Conversation(ConversationEvent::Message {
            chat_id: chat.chat_id.clone(),
            from: who.user_id,
            to: peer_id,
            content,
            message_id: message_id.clone(),
            sent_at_ms: now_millis(),
        });
        if self
            .broker()
            .publish_to_peer(peer_id, who.user_id, event, None)
            == 0
        {
            return Err(Error::Unavailable(format!(
                "user {peer_id} is not connected to this chat"
            )));
        }
        Ok(message_id)
    }

    /// Tells the peers of every conversation open on `conn` that `who` is (or stopped) typing:
    /// a core Typing event in each direct room, a live one otherwise. Returns how many
    /// conversations were told.
    pub async fn conversation_typing(
        &self,
        who: &Principal,
        conn: ConnId,
        is_typing: bool,
    ) -> Result<usize, Error> {
        let chats = self.broker().peer_chats(conn);
        for (peer_id, chat) in &chats {
            if chat.room.is_some() {
                self.typing(who, conn, &RoomRef::Name(chat.chat_id.clone()), is_typing)
                    .await?;
            } else {
                let event = Event::Conversation(ConversationEvent::Typing {
                    chat_id: chat.chat_id.clone(),
                    user_id: who.user_id,
                    is_typing,
                });
                self.broker()
                    .publish_to_peer(*peer_id, who.user_id, event, Some(conn));
            }
        }
        Ok(chats.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_chat_ids_are_order_independent() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        assert_eq!(live_chat_id(a, b), live_chat_id(b, a));
        assert!(live_chat_id(a, b).starts_with(LIVE_PREFIX));
    }
}
