//! What the core can be asked to do over a connection: one [`Command`] per request, one
//! [`Reply`] per success, both typed, and [`Core::execute`] to run them. A WebSocket dialect
//! decodes its frames into commands and encodes the replies; every rule is behind this entry
//! point. The HTTP API and the admin API call the same core functions directly (a request there
//! is not tied to a connection).
//!
//! Content rules that a protocol documents for itself (a shorter message limit, plain text only)
//! travel with the command as a [`ContentPolicy`]; the core applies them.

use bytes::Bytes;
use serde_json::Value;

use super::Core;
use super::accounts::UserView;
use super::chat::{DirectOutcome, JoinOutcome, QueuedDirect, SendOutcome, Upload};
use crate::error::Error;
pub use crate::events::BinaryKind;
use crate::hub::ConnId;
use crate::principal::{Principal, Scope};
use crate::store::{Message, QueueReceipt, Room};

/// An open conversation, as the connection that opened it sees it (the reply to
/// [`Command::OpenConversation`]).
#[derive(Debug, Clone)]
pub struct Conversation {
    pub chat_id: String,
    /// The opener first.
    pub participants: [uuid::Uuid; 2],
    pub peer_id: uuid::Uuid,
    /// The peer's roster name, or their username when they are not listed.
    pub peer_name: String,
}

/// How a request names a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomRef {
    /// By name; `@username` is the direct room with that user.
    Name(String),
    /// By the core's room id.
    Id(u64),
    /// By name, or, when no room has that name and it is a number, by that id (a protocol
    /// whose path names a room that clients know by its id).
    NameOrId(String),
    /// The personal room `user:<number>` of the user with that number (created on first use,
    /// for its own user only).
    Personal(u64),
}

impl From<&str> for RoomRef {
    fn from(name: &str) -> RoomRef {
        RoomRef::Name(name.to_owned())
    }
}

/// The content rules of a request: the core's by default, or what the protocol documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentPolicy {
    /// Longest content in characters; `None`: the core's `ws.max_message_chars`.
    pub max_chars: Option<usize>,
    /// Markup is stripped before the checks and storage ([`super::policy::strip_markup`]).
    pub strip_markup: bool,
}

impl ContentPolicy {
    /// At most `max_chars` characters, markup kept.
    pub fn limited(max_chars: usize) -> ContentPolicy {
        ContentPolicy {
            max_chars: Some(max_chars),
            strip_markup: false,
        }
    }

    /// Plain text of at most `max_chars` characters: every tag is stripped.
    pub fn plain(max_chars: usize) -> ContentPolicy {
        ContentPolicy {
            max_chars: Some(max_chars),
            strip_markup: true,
        }
    }
}

/// The rules of a display name in the live roster: markup stripped, then `min` to `max`
/// characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamePolicy {
    pub min: usize,
    pub max: usize,
}

/// A new message.
#[derive(Debug, Clone)]
pub struct SendMessage {
    pub room: RoomRef,
    pub content: String,
    pub reply_to: Option<u64>,
    /// Makes retries idempotent: a repeated id returns the original message.
    pub client_msg_id: Option<String>,
    pub policy: ContentPolicy,
    /// Files to attach: the sender's own, not attached anywhere yet (a binary file transfer),
    /// or attached in this room already.
    pub attachments: Vec<u64>,
}

impl SendMessage {
    /// `content` to `room` under the core's rules, no reply, no idempotency key.
    pub fn new(room: RoomRef, content: String) -> SendMessage {
        SendMessage {
            room,
            content,
            reply_to: None,
            client_msg_id: None,
            policy: ContentPolicy::default(),
            attachments: Vec::new(),
        }
    }
}

/// New content for a stored message.
#[derive(Debug, Clone)]
pub struct EditMessage {
    pub room: RoomRef,
    pub seq: u64,
    pub content: String,
    pub policy: ContentPolicy,
}

/// The caller's reaction to a stored message: added, or removed.
#[derive(Debug, Clone)]
pub struct React {
    pub room: RoomRef,
    pub seq: u64,
    pub emoji: String,
    pub add: bool,
}

/// New title and topic for a room (its owner or an admin): `None` leaves one as it is,
/// `Some(None)` (or an empty text) clears it. The room's name never changes.
#[derive(Debug, Clone)]
pub struct UpdateRoom {
    pub room: RoomRef,
    pub title: Option<Option<String>>,
    pub topic: Option<Option<String>>,
}

/// What a connection can ask of the core.
#[derive(Debug)]
pub enum Command {
    /// What a new connection is told about the server (the store's epoch).
    Welcome,
    /// The caller's account.
    Me,
    /// New credentials for this connection (an in-band renewal): the same user only.
    Authenticate {
        token: String,
    },
    /// Joins the connection to a room, replaying what it missed after `since`.
    Join {
        room: RoomRef,
        since: Option<u64>,
    },
    /// Joins the connection to a room that only its participants may enter, hosted by `host`
    /// (EduSphere's invitation-only rooms: no membership by visiting, no admin exception).
    JoinAsParticipant {
        room: String,
        host: String,
    },
    /// Joins the connection to every room the user is a member of, to hear the presence and
    /// typing of the people they share a room with.
    WatchMemberRooms,
    Leave {
        room: RoomRef,
    },
    Send(SendMessage),
    Edit(EditMessage),
    React(React),
    UpdateRoom(UpdateRoom),
    Delete {
        room: RoomRef,
        seq: u64,
    },
    History {
        room: RoomRef,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<usize>,
    },
    /// Full-text search over the messages the caller may read.
    Search(crate::core::chat::Search),
    Typing {
        room: RoomRef,
        is_typing: bool,
    },
    /// Moves the read cursor.
    Read {
        room: RoomRef,
        seq: u64,
    },
    /// Starts an upload of a file of `size` bytes (at most `max_bytes`) to the room: its bytes
    /// go to disk as they come ([`Command::UploadChunk`]).
    StartUpload {
        room: RoomRef,
        file_name: String,
        content_type: String,
        size: u64,
        max_bytes: u64,
    },
    /// The next bytes of an upload; the last ones store the file and post it to its room. The
    /// upload travels with the command and back with its reply: dropped on the way (an error,
    /// a closed connection), it is abandoned and its temporary file removed.
    UploadChunk {
        upload: Box<Upload>,
        data: Bytes,
    },
    Subscribe {
        topics: Vec<String>,
    },
    Unsubscribe {
        topics: Vec<String>,
    },
    Broadcast {
        topic: String,
        payload: Value,
        message_id: String,
    },
    /// A custom (`X-`) frame relayed on a topic, its type and data as they came.
    Relay {
        kind: String,
        topic: String,
        data: Value,
    },
    /// A binary frame: with an address, to a topic's subscribers (broadcast, stream) or a
    /// user's connections (direct, file); without one, acknowledged, and a file transfer kept
    /// as a file of the sender's.
    Binary {
        kind: BinaryKind,
        address: Option<String>,
        data: Bytes,
    },
    DirectMessage {
        target: String,
        payload: Value,
        message_id: String,
    },
    /// The next page of the direct messages queued while the user was offline, after queue
    /// id `after` (0: the first). They stay queued until [`Command::DeliveredDirectMessages`].
    QueuedDirectMessages {
        after: u64,
    },
    /// A page of queued direct messages was written to the connection: they leave the queue.
    DeliveredDirectMessages(QueueReceipt),
    SetStatus {
        status: String,
        metadata: Option<Value>,
    },
    UnreadNotifications,
    /// Marks a notification read.
    ReadNotification {
        id: u64,
    },
    /// Lists the connection in the live roster. `claimed`: an id the client says it is, which
    /// may not be another account's.
    EnterRoster {
        display_name: String,
        policy: NamePolicy,
        claimed: Option<uuid::Uuid>,
    },
    /// Opens a one-to-one conversation with the user (or listed guest) whose id is `target`.
    OpenConversation {
        target: String,
    },
    /// A message in a conversation open on this connection, with the peer whose id is `to`.
    ConversationSend {
        to: String,
        content: String,
        message_id: Option<String>,
        policy: ContentPolicy,
    },
    /// Typing in every conversation open on this connection.
    ConversationTyping {
        is_typing: bool,
    },
}

/// What a command did.
#[derive(Debug)]
pub enum Reply {
    /// Nothing to report beyond success.
    Done,
    Welcome {
        epoch: u64,
    },
    Me(UserView),
    Authenticated(Principal),
    Joined(JoinOutcome),
    /// The connection entered a participants-only room.
    Entered(Room),
    /// How many rooms the connection watches.
    Watching(usize),
    Left(Room),
    Sent(SendOutcome),
    Edited {
        room: Room,
        message: Message,
    },
    /// The message after a React, with its reactions.
    Reacted {
        room: Room,
        message: Message,
    },
    Deleted {
        room: Room,
        seq: u64,
    },
    /// The room after an UpdateRoom.
    RoomUpdated(Room),
    History {
        room: Room,
        messages: Vec<Message>,
        has_more: bool,
    },
    /// A page of search hits.
    SearchResults(crate::core::chat::SearchResults),
    /// The read cursor after a Read.
    ReadUpTo {
        room: Room,
        seq: u64,
    },
    /// An upload started: the connection keeps it for its chunks.
    UploadReady(Box<Upload>),
    /// A chunk is on disk; more are to come.
    UploadProgress(Box<Upload>),
    /// The active subscriptions after a Subscribe or Unsubscribe.
    Subscriptions {
        active: usize,
    },
    /// How many connections a Broadcast or relay reached.
    Delivered {
        recipients: usize,
    },
    /// How many connections a binary frame reached, and the file it was kept as.
    Binary {
        recipients: usize,
        file_id: Option<u64>,
    },
    Direct(DirectOutcome),
    /// A page of queued direct messages, for this connection only.
    QueuedDirect(QueuedDirect),
    Unread(usize),
    /// The name the connection is listed under.
    Listed(String),
    ConversationOpened(Conversation),
    /// The id of a conversation message.
    ConversationSent(String),
}

impl Command {
    /// The scope a caller's token needs for this command: the one table of them, checked by
    /// [`Core::execute`] before anything else. Every command of a connection is chatting as its
    /// user (`chat`); publishing and the admin API are HTTP and control-socket operations. The
    /// match names every variant, so a new command must say what it needs.
    pub fn scope(&self) -> Scope {
        match self {
            Command::Welcome
            | Command::Me
            | Command::Authenticate { .. }
            | Command::Join { .. }
            | Command::JoinAsParticipant { .. }
            | Command::WatchMemberRooms
            | Command::Leave { .. }
            | Command::Send(_)
            | Command::Edit(_)
            | Command::React(_)
            | Command::UpdateRoom(_)
            | Command::Delete { .. }
            | Command::History { .. }
            | Command::Search(_)
            | Command::Typing { .. }
            | Command::Read { .. }
            | Command::StartUpload { .. }
            | Command::UploadChunk { .. }
            | Command::Subscribe { .. }
            | Command::Unsubscribe { .. }
            | Command::Broadcast { .. }
            | Command::Relay { .. }
            | Command::Binary { .. }
            | Command::DirectMessage { .. }
            | Command::QueuedDirectMessages { .. }
            | Command::DeliveredDirectMessages(_)
            | Command::SetStatus { .. }
            | Command::UnreadNotifications
            | Command::ReadNotification { .. }
            | Command::EnterRoster { .. }
            | Command::OpenConversation { .. }
            | Command::ConversationSend { .. }
            | Command::ConversationTyping { .. } => Scope::Chat,
        }
    }
}

impl Core {
    /// Runs one command of `who` on connection `conn`: first the scope its token needs
    /// ([`Command::scope`]), then the command's own rules.
    pub async fn execute(
        &self,
        who: &Principal,
        conn: ConnId,
        command: Command,
    ) -> Result<Reply, Error> {
        who.require_scope(command.scope())?;
        let chat = &self.chat;
        Ok(match command {
            Command::Welcome => Reply::Welcome {
                epoch: chat.store().epoch().await,
            },
            Command::Me => Reply::Me(self.accounts.me(who).await?),
            Command::Authenticate { token } => {
                Reply::Authenticated(self.accounts.renew(who, &token).await?)
            }
            Command::Join { room, since } => {
                Reply::Joined(chat.join(who, conn, &room, since).await?)
            }
            Command::JoinAsParticipant { room, host } => {
                Reply::Entered(chat.join_as_participant(who, conn, &room, &host).await?)
            }
            Command::WatchMemberRooms => Reply::Watching(chat.watch_member_rooms(who, conn).await?),
            Command::Leave { room } => Reply::Left(chat.leave(who, conn, &room).await?),
            Command::Send(message) => Reply::Sent(chat.send(who, message).await?),
            Command::Edit(edit) => {
                let (room, message) = chat.edit(who, edit).await?;
                Reply::Edited { room, message }
            }
            Command::React(react) => {
                let (room, message) = chat.react(who, react).await?;
                Reply::Reacted { room, message }
            }
            Command::UpdateRoom(update) => Reply::RoomUpdated(chat.update_room(who, update).await?),
            Command::Delete { room, seq } => Reply::Deleted {
                room: chat.delete(who, &room, seq).await?,
                seq,
            },
            Command::History {
                room,
                before,
                after,
                limit,
            } => {
                let (room, messages, has_more) =
                    chat.history(who, &room, before, after, limit).await?;
                Reply::History {
                    room,
                    messages,
                    has_more,
                }
            }
            Command::Search(search) => Reply::SearchResults(chat.search(who, search).await?),
            Command::Typing { room, is_typing } => {
                chat.typing(who, conn, &room, is_typing).await?;
                Reply::Done
            }
            Command::Read { room, seq } => {
                let (room, seq) = chat.read(who, &room, seq).await?;
                Reply::ReadUpTo { room, seq }
            }
            Command::StartUpload {
                room,
                file_name,
                content_type,
                size,
                max_bytes,
            } => Reply::UploadReady(Box::new(
                chat.start_upload(who, &room, &file_name, &content_type, Some(size), max_bytes)
                    .await?,
            )),
            Command::UploadChunk { mut upload, data } => {
                upload.write(data).await?;
                if upload.is_complete() {
                    Reply::Sent(chat.finish_upload(who, *upload).await?)
                } else {
                    Reply::UploadProgress(upload)
                }
            }
            Command::Subscribe { topics } => Reply::Subscriptions {
                active: chat.subscribe(who, conn, &topics)?,
            },
            Command::Unsubscribe { topics } => Reply::Subscriptions {
                active: chat.unsubscribe(conn, &topics),
            },
            Command::Broadcast {
                topic,
                payload,
                message_id,
            } => Reply::Delivered {
                recipients: chat.broadcast(who, Some(conn), &topic, payload, message_id)?,
            },
            Command::Relay { kind, topic, data } => Reply::Delivered {
                recipients: chat.relay_custom(who, Some(conn), &kind, &topic, data)?,
            },
            Command::Binary {
                kind,
                address,
                data,
            } => {
                let (recipients, file_id) = chat.binary(who, conn, kind, address, data).await?;
                Reply::Binary {
                    recipients,
                    file_id,
                }
            }
            Command::DirectMessage {
                target,
                payload,
                message_id,
            } => Reply::Direct(
                chat.direct_message(who, &target, payload, message_id)
                    .await?,
            ),
            Command::QueuedDirectMessages { after } => {
                Reply::QueuedDirect(chat.queued_direct_messages(who, after).await?)
            }
            Command::DeliveredDirectMessages(receipt) => {
                chat.delivered_queued_direct_messages(receipt).await?;
                Reply::Done
            }
            Command::SetStatus { status, metadata } => {
                chat.set_status(who, &status, metadata).await?;
                Reply::Done
            }
            Command::UnreadNotifications => Reply::Unread(chat.unread_notifications(who).await?),
            Command::ReadNotification { id } => {
                chat.mark_notification_read(who, id).await?;
                Reply::Unread(chat.unread_notifications(who).await?)
            }
            Command::EnterRoster {
                display_name,
                policy,
                claimed,
            } => {
                if let Some(claimed) = claimed
                    && claimed != who.user_id
                    && chat.store().user(claimed).await?.is_some()
                {
                    return Err(Error::Forbidden(
                        "user_id does not match the user of the access token".to_owned(),
                    ));
                }
                Reply::Listed(chat.roster_enter(conn, &display_name, policy)?)
            }
            Command::OpenConversation { target } => {
                Reply::ConversationOpened(chat.open_conversation(who, conn, &target).await?)
            }
            Command::ConversationSend {
                to,
                content,
                message_id,
                policy,
            } => Reply::ConversationSent(
                chat.conversation_send(who, conn, &to, &content, message_id, policy)
                    .await?,
            ),
            Command::ConversationTyping { is_typing } => {
                chat.conversation_typing(who, conn, is_typing).await?;
                Reply::Done
            }
        })
    }
}
