//! The core's rules on their own: a [`Chat`] over a temporary store and an in-memory broker,
//! called directly (no socket, no HTTP). The end-to-end tests in `tests/` check the same rules
//! through every protocol; these say which rule is whose.

use std::sync::Arc;

use uuid::Uuid;

use super::Limits;
use super::chat::{Chat, CreateRoom};
use super::command::{ContentPolicy, EditMessage, RoomRef, SendMessage};
use crate::config::{Config, StoreConfig};
use crate::error::Error;
use crate::events::Event;
use crate::hub::{Attachment, Broker, ConnCaps, ConnId, ConnInfo, Hub, Registration};
use crate::principal::{Principal, Role};
use crate::store::{Store, User, Visibility};

struct Fixture {
    chat: Chat,
    hub: Arc<Hub>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_limits(Limits::of(&Config::default()))
    }

    fn with_limits(limits: Limits) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            &StoreConfig {
                data_dir: dir.path().to_path_buf(),
                ..StoreConfig::default()
            },
            Arc::default(),
        )
        .expect("open");
        let hub = Arc::new(Hub::new(Arc::new(|_: &mut Event| -> Attachment {
            Box::new(())
        })));
        let broker: Arc<dyn Broker> = hub.clone();
        let webhooks =
            crate::webhooks::Webhooks::new(store.clone(), crate::config::WebhooksConfig::default());
        Fixture {
            chat: Chat::new(store, broker, limits, Arc::default(), webhooks),
            hub,
            _dir: dir,
        }
    }

    /// A user of `role`, as a login would authenticate them.
    async fn user(&self, name: &str, role: Role) -> Principal {
        let user = self
            .chat
            .store()
            .insert_user(User {
                id: Uuid::new_v4(),
                number: 0,
                username: name.to_owned(),
                display_name: name.to_owned(),
                avatar_url: None,
                password_hash: String::new(),
                role,
                disabled: false,
                created_at: 0,
                last_seen: None,
            })
            .await
            .expect("user");
        Principal {
            user_id: user.id,
            number: user.number,
            username: user.username,
            role,
            session_id: Uuid::new_v4(),
            expires_at: i64::MAX,
            guest: false,
            scopes: None,
        }
    }

    /// A live connection of `who`.
    fn connect(&self, who: &Principal) -> Registration {
        self.hub
            .register(
                ConnInfo {
                    user_id: who.user_id,
                    username: who.username.clone(),
                    session_id: who.session_id,
                    public_id: Uuid::new_v4().to_string(),
                    dialect: "native",
                    peer: None,
                    connected_at: 0,
                },
                ConnCaps {
                    queue: 16,
                    per_user: 10,
                    total: 100,
                },
            )
            .expect("register")
    }

    async fn room(&self, owner: &Principal, name: &str, visibility: Visibility) {
        self.chat
            .create_room(
                owner,
                CreateRoom {
                    name: name.to_owned(),
                    visibility,
                    persistent: true,
                    retention_secs: 0,
                },
            )
            .await
            .expect("room");
    }

    async fn send(&self, who: &Principal, room: &str, content: &str) -> Result<u64, Error> {
        self.chat
            .send(
                who,
                SendMessage::new(RoomRef::from(room), content.to_owned()),
            )
            .await
            .map(|outcome| outcome.message.seq)
    }

    async fn edit(&self, who: &Principal, room: &str, seq: u64) -> Result<(), Error> {
        self.chat
            .edit(
                who,
                EditMessage {
                    room: RoomRef::from(room),
                    seq,
                    content: "edited".to_owned(),
                    policy: ContentPolicy::default(),
                },
            )
            .await
            .map(|_| ())
    }
}

fn conn(registration: &Registration) -> ConnId {
    registration.id
}

#[tokio::test]
async fn a_private_room_is_its_members_and_admins_only() {
    let f = Fixture::new();
    let owner = f.user("owner", Role::User).await;
    let stranger = f.user("stranger", Role::User).await;
    let admin = f.user("admin", Role::Admin).await;
    f.room(&owner, "secret", Visibility::Private).await;
    assert!(f.send(&owner, "secret", "hi").await.is_ok());
    assert!(matches!(
        f.send(&stranger, "secret", "let me in").await,
        Err(Error::Forbidden(_))
    ));
    let stranger_conn = f.connect(&stranger);
    assert!(matches!(
        f.chat
            .join(
                &stranger,
                conn(&stranger_conn),
                &RoomRef::from("secret"),
                None
            )
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        f.chat
            .history(&stranger, &RoomRef::from("secret"), None, None, None)
            .await,
        Err(Error::Forbidden(_))
    ));
    // Admins read and post anywhere, without becoming members.
    assert!(f.send(&admin, "secret", "moderating").await.is_ok());
    let members = f
        .chat
        .members(
            &admin,
            &f.chat
                .resolve_room(&admin, &RoomRef::from("secret"))
                .await
                .expect("room"),
        )
        .await
        .expect("members");
    assert_eq!(members, ["owner"]);
    // A stranger does not see it listed; the owner does.
    let listed = |(rooms, next): (Vec<super::chat::RoomSummary>, Option<u64>)| -> Vec<String> {
        assert_eq!(next, None, "one page");
        rooms.into_iter().map(|r| r.name).collect()
    };
    assert!(listed(f.chat.list_rooms(&stranger, 0, 10).await.expect("list")).is_empty());
    assert_eq!(
        listed(f.chat.list_rooms(&owner, 0, 10).await.expect("list")),
        ["secret"]
    );
}

#[tokio::test]
async fn posting_to_a_public_room_makes_a_member() {
    let f = Fixture::new();
    let owner = f.user("owner", Role::User).await;
    let visitor = f.user("visitor", Role::User).await;
    f.room(&owner, "lobby", Visibility::Public).await;
    f.send(&visitor, "lobby", "hello").await.expect("send");
    let room = f
        .chat
        .resolve_room(&owner, &RoomRef::from("lobby"))
        .await
        .expect("room");
    assert_eq!(
        f.chat.members(&owner, &room).await.expect("members"),
        ["owner", "visitor"]
    );
}

#[tokio::test]
async fn messages_are_changed_by_their_author_the_room_owner_or_an_admin_only() {
    let f = Fixture::new();
    let owner = f.user("owner", Role::User).await;
    let author = f.user("author", Role::User).await;
    let other = f.user("other", Role::User).await;
    let admin = f.user("admin", Role::Admin).await;
    f.room(&owner, "lobby", Visibility::Public).await;
    let seq = f.send(&author, "lobby", "mine").await.expect("send");
    assert!(matches!(
        f.edit(&other, "lobby", seq).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        f.chat.delete(&other, &RoomRef::from("lobby"), seq).await,
        Err(Error::Forbidden(_))
    ));
    f.edit(&author, "lobby", seq).await.expect("author edits");
    f.edit(&owner, "lobby", seq).await.expect("owner edits");
    f.edit(&admin, "lobby", seq).await.expect("admin edits");
    f.chat
        .delete(&owner, &RoomRef::from("lobby"), seq)
        .await
        .expect("owner deletes");
    // A tombstone is gone for good.
    assert!(matches!(
        f.edit(&author, "lobby", seq).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn a_direct_room_has_exactly_its_two_members_and_no_owner_powers() {
    let f = Fixture::new();
    let ann = f.user("ann", Role::User).await;
    let bob = f.user("bob", Role::User).await;
    let eve = f.user("eve", Role::User).await;
    let seq = f
        .send(&ann, "@bob", "hi bob")
        .await
        .expect("opens the room");
    let room = f
        .chat
        .resolve_room(&bob, &RoomRef::from("@ann"))
        .await
        .expect("the same room from the other side");
    assert_eq!(room.name, "dm:ann:bob");
    assert_eq!(room.visibility, Visibility::Private);
    assert!(matches!(
        f.chat.add_member(&ann, &room.name, "eve").await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        f.send(&eve, &room.name, "me too").await,
        Err(Error::Forbidden(_))
    ));
    // Whoever opened it is its nominal owner only: no power over the other's messages.
    let reply = f.send(&bob, &room.name, "hi ann").await.expect("reply");
    assert!(matches!(
        f.edit(&ann, &room.name, reply).await,
        Err(Error::Forbidden(_))
    ));
    f.edit(&ann, &room.name, seq).await.expect("her own");
    assert!(matches!(
        f.send(&ann, "@ann", "to myself").await,
        Err(Error::BadRequest(_))
    ));
}

#[tokio::test]
async fn a_connection_joins_at_most_its_rooms_and_a_refused_join_changes_nothing() {
    let mut limits = Limits::of(&Config::default());
    limits.max_joined_rooms = 2;
    let f = Fixture::with_limits(limits);
    let owner = f.user("owner", Role::User).await;
    let visitor = f.user("visitor", Role::User).await;
    for name in ["a", "b", "c"] {
        f.room(&owner, name, Visibility::Public).await;
    }
    let connection = f.connect(&visitor);
    for name in ["a", "b"] {
        f.chat
            .join(&visitor, conn(&connection), &RoomRef::from(name), None)
            .await
            .expect("join");
    }
    assert!(matches!(
        f.chat
            .join(&visitor, conn(&connection), &RoomRef::from("c"), None)
            .await,
        Err(Error::RateLimited(_))
    ));
    let room = f
        .chat
        .resolve_room(&owner, &RoomRef::from("c"))
        .await
        .expect("room");
    assert_eq!(
        f.chat.members(&owner, &room).await.expect("members"),
        ["owner"],
        "the refused join made no member"
    );
}

#[tokio::test]
async fn content_policies_and_idempotency_keys() {
    let f = Fixture::new();
    let owner = f.user("owner", Role::User).await;
    f.room(&owner, "lobby", Visibility::Public).await;
    let send = |content: &str, policy, client_msg_id: Option<&str>| SendMessage {
        room: RoomRef::from("lobby"),
        content: content.to_owned(),
        reply_to: None,
        client_msg_id: client_msg_id.map(str::to_owned),
        policy,
        attachments: Vec::new(),
    };
    assert!(matches!(
        f.chat
            .send(&owner, send("toolong", ContentPolicy::limited(3), None))
            .await,
        Err(Error::ContentTooLong { max: 3 })
    ));
    let plain = f
        .chat
        .send(&owner, send("<b>bold</b>", ContentPolicy::plain(100), None))
        .await
        .expect("plain");
    assert_eq!(plain.message.content, "bold");
    assert!(matches!(
        f.chat
            .send(
                &owner,
                send("<script>x</script>", ContentPolicy::plain(100), None)
            )
            .await,
        Err(Error::BadRequest(_))
    ));
    let first = f
        .chat
        .send(&owner, send("once", ContentPolicy::default(), Some("k-1")))
        .await
        .expect("first");
    let again = f
        .chat
        .send(&owner, send("once", ContentPolicy::default(), Some("k-1")))
        .await
        .expect("again");
    assert!(again.duplicate && !first.duplicate);
    assert_eq!(again.message.seq, first.message.seq);
    assert!(matches!(
        f.chat
            .send(
                &owner,
                send("x", ContentPolicy::default(), Some(&"k".repeat(129)))
            )
            .await,
        Err(Error::BadRequest(_))
    ));
}

#[tokio::test]
async fn a_personal_room_is_its_own_users_only() {
    let f = Fixture::new();
    let ann = f.user("ann", Role::User).await;
    let admin = f.user("admin", Role::Admin).await;
    let room = f
        .chat
        .resolve_room(&ann, &RoomRef::Personal(ann.number))
        .await
        .expect("created on first use");
    assert_eq!(room.name, format!("user:{}", ann.number));
    assert!(matches!(
        f.chat
            .resolve_room(&admin, &RoomRef::Personal(ann.number))
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        f.chat
            .create_room(
                &admin,
                CreateRoom {
                    name: "user:999".to_owned(),
                    visibility: Visibility::Public,
                    persistent: true,
                    retention_secs: 0,
                },
            )
            .await,
        Err(Error::BadRequest(_))
    ));
}

#[tokio::test]
async fn a_joined_member_hears_a_message_with_its_authors_number() {
    let f = Fixture::new();
    let ann = f.user("ann", Role::User).await;
    let bob = f.user("bob", Role::User).await;
    f.room(&ann, "lobby", Visibility::Public).await;
    let mut listener = f.connect(&bob);
    f.chat
        .join(&bob, conn(&listener), &RoomRef::from("lobby"), None)
        .await
        .expect("join");
    // Joining made bob a member: that comes first.
    let joined = listener.outbound.try_recv().expect("membership");
    assert!(matches!(
        &joined.event,
        Event::Membership { joined: true, .. }
    ));
    let seq = f.send(&ann, "lobby", "hi").await.expect("send");
    let delivery = listener
        .outbound
        .try_recv()
        .expect("delivered before the send returned");
    match &delivery.event {
        Event::Message(m) => {
            assert_eq!(m.message.seq, seq);
            assert_eq!(m.author_number, ann.number);
            assert_eq!(m.direct_peer, None);
        }
        other => panic!("a message was expected, got {other:?}"),
    }
}

#[test]
fn the_store_knows_which_rooms_the_quota_leaves_out() {
    assert_eq!(
        crate::store::UNCOUNTED_PREFIXES,
        [super::policy::DM_PREFIX, super::policy::PERSONAL_PREFIX]
    );
}
