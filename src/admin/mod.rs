//! The admin API: the operations behind `natter user|room|token|sessions|stats|backup|verify`.
//! A running daemon serves them on its control socket ([`socket`]); when none runs, the CLI
//! opens the data dir and calls [`execute`] itself. One function, two transports, same results.
//! Every operation goes through the core (accounts, chat, auth, store), like any other edge.

pub mod socket;

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::AppState;
use crate::core::accounts::{Actor, NewUser, UserView};
use crate::core::chat::CreateRoom;
use crate::error::Error;
use crate::events::{Event, KickReason};
use crate::principal::{Principal, Role, Scopes};
use crate::store::Visibility;

/// One admin operation, as the CLI sends it over the control socket (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    UserAdd {
        username: String,
        role: Role,
        display_name: Option<String>,
        avatar_url: Option<String>,
        password: String,
    },
    UserList,
    UserShow {
        username: String,
    },
    UserPasswd {
        username: String,
        password: String,
    },
    UserSetRole {
        username: String,
        role: Role,
    },
    UserDisable {
        username: String,
    },
    UserEnable {
        username: String,
    },
    UserRemove {
        username: String,
    },
    RoomCreate {
        name: String,
        owner: String,
        private: bool,
        transient: bool,
        retention_secs: u64,
    },
    RoomList,
    RoomShow {
        name: String,
    },
    RoomDelete {
        name: String,
    },
    RoomMembersAdd {
        name: String,
        username: String,
    },
    RoomMembersRemove {
        name: String,
        username: String,
    },
    RoomPurge {
        name: String,
        /// Unix milliseconds: messages created before it are deleted.
        before_ms: i64,
    },
    TokenIssue {
        username: String,
        scopes: String,
        ttl_secs: u64,
        label: String,
    },
    TokenList,
    TokenRevoke {
        id: Uuid,
    },
    SessionsList,
    SessionsKick {
        /// A connection id, a session id, or a username.
        target: String,
    },
    Stats,
    /// Writes a backup into the data dir; the CLI moves it where the operator asked (the
    /// daemon may not be allowed to write there).
    Backup,
    Verify,
}

impl Request {
    /// Operations that only make sense against a running daemon.
    pub fn needs_daemon(&self) -> bool {
        matches!(self, Request::SessionsKick { .. })
    }
}

/// What an operation returns: text for people, and the same as JSON for `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub text: String,
    pub data: Value,
}

impl Reply {
    fn new(text: impl Into<String>, data: Value) -> Reply {
        Reply {
            text: text.into(),
            data,
        }
    }
}

/// The operator, acting with an admin's rights (no account of its own).
fn operator() -> Principal {
    Principal {
        user_id: Uuid::nil(),
        username: "operator".to_owned(),
        role: Role::Admin,
        session_id: Uuid::nil(),
        expires_at: i64::MAX,
        guest: false,
        scopes: None,
    }
}

/// Runs one admin operation. `online`: this is the running daemon (live sessions exist).
pub async fn execute(state: &AppState, request: Request, online: bool) -> Result<Reply, Error> {
    match request {
        Request::UserAdd {
            username,
            role,
            display_name,
            avatar_url,
            password,
        } => {
            crate::core::accounts::validate_username(&username)?;
            if let Ok(existing) = state.accounts.get(&username) {
                return Ok(Reply::new(
                    format!("user {username} exists already (unchanged)"),
                    json!({"created": false, "user": UserView::from(&existing)}),
                ));
            }
            let user = state
                .accounts
                .create(
                    Actor::Operator,
                    NewUser {
                        username,
                        password,
                        role,
                        display_name,
                        avatar_url,
                    },
                )
                .await?;
            Ok(Reply::new(
                format!("created user {} ({})", user.username, user.role.as_str()),
                json!({"created": true, "user": UserView::from(&user)}),
            ))
        }
        Request::UserList => {
            let users: Vec<UserView> = state
                .accounts
                .list(Actor::Operator)?
                .iter()
                .map(UserView::from)
                .collect();
            Ok(Reply::new(user_table(&users), json!(users)))
        }
        Request::UserShow { username } => {
            let user = UserView::from(&state.accounts.get(&username)?);
            Ok(Reply::new(
                user_table(std::slice::from_ref(&user)),
                json!(user),
            ))
        }
        Request::UserPasswd { username, password } => {
            state.accounts.get(&username)?;
            state
                .accounts
                .set_password(Actor::Operator, &username, password)
                .await?;
            Ok(Reply::new(
                format!("password of {username} changed; its sessions were ended"),
                json!({"username": username}),
            ))
        }
        Request::UserSetRole { username, role } => {
            state
                .accounts
                .set_role(Actor::Operator, &username, role)
                .await?;
            Ok(Reply::new(
                format!("{username} is now {}", role.as_str()),
                json!({"username": username, "role": role}),
            ))
        }
        Request::UserDisable { username } => {
            state
                .accounts
                .set_disabled(Actor::Operator, &username, true)
                .await?;
            Ok(Reply::new(
                format!("{username} is disabled"),
                json!({"username": username, "disabled": true}),
            ))
        }
        Request::UserEnable { username } => {
            state
                .accounts
                .set_disabled(Actor::Operator, &username, false)
                .await?;
            Ok(Reply::new(
                format!("{username} is enabled"),
                json!({"username": username, "disabled": false}),
            ))
        }
        Request::UserRemove { username } => {
            if state.accounts.get(&username).is_err() {
                return Ok(Reply::new(
                    format!("no user {username} (nothing to do)"),
                    json!({"removed": false}),
                ));
            }
            state.accounts.remove(Actor::Operator, &username).await?;
            Ok(Reply::new(
                format!("{username} was removed"),
                json!({"removed": true}),
            ))
        }
        Request::RoomCreate {
            name,
            owner,
            private,
            transient,
            retention_secs,
        } => room_create(state, name, owner, private, transient, retention_secs).await,
        Request::RoomList => {
            let rooms = state.chat.list_rooms(&operator())?;
            let mut text = format!(
                "{:<32} {:<8} {:<16} {:>8} {:>10}\n",
                "ROOM", "VISIBLE", "OWNER", "MESSAGES", "RETENTION"
            );
            for room in &rooms {
                let _ = writeln!(
                    text,
                    "{:<32} {:<8} {:<16} {:>8} {:>10}",
                    room.name,
                    visibility_name(room.visibility),
                    room.owner,
                    room.last_seq,
                    retention_text(room.retention_secs),
                );
            }
            Ok(Reply::new(text.trim_end(), json!(rooms)))
        }
        Request::RoomShow { name } => {
            let who = operator();
            let room = state.chat.resolve_room(&who, &name).await?;
            let members = state.chat.members(&who, &room)?;
            let owner = state
                .store
                .user(room.owner)?
                .map_or_else(|| room.owner.to_string(), |u| u.username);
            let text = format!(
                "room {} (id {})\nvisibility: {}\nowner: {owner}\npersistent: {}\nretention: {}\nlast sequence: {}\nmembers: {}",
                room.name,
                room.id,
                visibility_name(room.visibility),
                room.persistent,
                retention_text(room.retention_secs),
                room.last_seq,
                if members.is_empty() {
                    "(none)".to_owned()
                } else {
                    members.join(", ")
                },
            );
            Ok(Reply::new(
                text,
                json!({"id": room.id, "name": room.name, "visibility": room.visibility,
                       "owner": owner, "persistent": room.persistent,
                       "retention_secs": room.retention_secs, "last_seq": room.last_seq,
                       "created_at": room.created_at, "members": members}),
            ))
        }
        Request::RoomDelete { name } => {
            let Some(room) = state.store.room_by_name(&name)? else {
                return Ok(Reply::new(
                    format!("no room {name} (nothing to do)"),
                    json!({"deleted": false}),
                ));
            };
            let messages = state.store.delete_room(room.id).await?;
            state.broker.close_room(
                room.id,
                Event::RoomClosed {
                    room: room.name.clone(),
                    room_id: room.id,
                    reason: "the room was deleted".to_owned(),
                },
            );
            Ok(Reply::new(
                format!("room {name} was deleted with {messages} messages"),
                json!({"deleted": true, "messages": messages}),
            ))
        }
        Request::RoomMembersAdd { name, username } => {
            let who = operator();
            let room = state.chat.resolve_room(&who, &name).await?;
            let user = state.accounts.get(&username)?;
            if state.store.membership(room.id, user.id)?.is_some() {
                return Ok(Reply::new(
                    format!("{username} is a member of {name} already"),
                    json!({"added": false}),
                ));
            }
            state.chat.add_member(&who, &name, &username).await?;
            Ok(Reply::new(
                format!("{username} is now a member of {name}"),
                json!({"added": true}),
            ))
        }
        Request::RoomMembersRemove { name, username } => {
            let who = operator();
            let room = state.chat.resolve_room(&who, &name).await?;
            let user = state.accounts.get(&username)?;
            if state.store.membership(room.id, user.id)?.is_none() {
                return Ok(Reply::new(
                    format!("{username} is not a member of {name} (nothing to do)"),
                    json!({"removed": false}),
                ));
            }
            state.chat.remove_member(&who, &name, &username).await?;
            Ok(Reply::new(
                format!("{username} is no longer a member of {name}"),
                json!({"removed": true}),
            ))
        }
        Request::RoomPurge { name, before_ms } => {
            let room = state
                .store
                .room_by_name(&name)?
                .ok_or_else(|| Error::NotFound(format!("no room {name}")))?;
            const STEP: usize = 1000;
            let mut total = 0;
            loop {
                let purged = state
                    .store
                    .purge_messages_before(room.id, before_ms, STEP)
                    .await?;
                total += purged;
                if purged < STEP {
                    break;
                }
            }
            Ok(Reply::new(
                format!(
                    "purged {total} messages of {name} created before {}",
                    crate::timefmt::rfc3339(before_ms.div_euclid(1000))
                ),
                json!({"purged": total}),
            ))
        }
        Request::TokenIssue {
            username,
            scopes,
            ttl_secs,
            label,
        } => {
            let scopes = Scopes::parse(&scopes)?;
            if ttl_secs == 0 {
                return Err(Error::BadRequest(
                    "--ttl must be at least 1 second".to_owned(),
                ));
            }
            let (family, token) = state
                .auth
                .issue_service_token(&username, scopes, ttl_secs, &label)
                .await?;
            Ok(Reply::new(
                format!(
                    "{token}\n# service token {} for {username}, scopes: {}, expires {}; \
                     revoke with: natter token revoke {}",
                    family.id,
                    scopes.to_text(),
                    crate::timefmt::rfc3339(family.expires_at),
                    family.id
                ),
                json!({"id": family.id, "token": token, "username": username,
                       "scopes": scopes.to_text(), "label": label,
                       "expires_at": family.expires_at}),
            ))
        }
        Request::TokenList => {
            let mut rows = Vec::new();
            let mut text = format!(
                "{:<36} {:<16} {:<20} {:<20} {:<21} STATUS\n",
                "ID", "USER", "LABEL", "SCOPES", "EXPIRES"
            );
            let now = crate::store::now_secs();
            for family in state.store.families()? {
                let Some(scopes) = &family.scopes else {
                    continue;
                };
                let username = state
                    .store
                    .user(family.user_id)?
                    .map_or_else(|| family.user_id.to_string(), |u| u.username);
                let status = if family.revoked_at.is_some() {
                    "revoked"
                } else if family.expires_at <= now {
                    "expired"
                } else {
                    "active"
                };
                let label = family.label.clone().unwrap_or_default();
                let _ = writeln!(
                    text,
                    "{:<36} {:<16} {:<20} {:<20} {:<21} {status}",
                    family.id,
                    username,
                    label,
                    scopes,
                    crate::timefmt::rfc3339(family.expires_at),
                );
                rows.push(
                    json!({"id": family.id, "username": username, "label": label,
                                 "scopes": scopes, "expires_at": family.expires_at,
                                 "status": status}),
                );
            }
            Ok(Reply::new(text.trim_end(), json!(rows)))
        }
        Request::TokenRevoke { id } => {
            let family = state
                .store
                .family_by_id(id)?
                .filter(|f| f.scopes.is_some())
                .ok_or_else(|| Error::NotFound(format!("no service token {id}")))?;
            if family.revoked_at.is_some() {
                return Ok(Reply::new(
                    format!("service token {id} was revoked already"),
                    json!({"revoked": false}),
                ));
            }
            state
                .store
                .revoke_family(family.user_id, family.id, "revoked by the operator")
                .await?;
            let closed = state
                .broker
                .kick_session(family.id, KickReason::SessionEnded("token revoked"));
            Ok(Reply::new(
                format!("service token {id} revoked ({closed} connections closed)"),
                json!({"revoked": true, "closed": closed}),
            ))
        }
        Request::SessionsList => {
            let sessions = state.broker.connections();
            let mut text = format!(
                "{:<36} {:<16} {:<10} {:<22} {:<21} {:>5}\n",
                "CONNECTION", "USER", "DIALECT", "PEER", "SINCE", "ROOMS"
            );
            for s in &sessions {
                let _ = writeln!(
                    text,
                    "{:<36} {:<16} {:<10} {:<22} {:<21} {:>5}",
                    s.connection_id,
                    s.username,
                    s.dialect,
                    s.peer.as_deref().unwrap_or("-"),
                    crate::timefmt::rfc3339(s.connected_at),
                    s.rooms,
                );
            }
            if !online {
                text = "the daemon is not running: no live sessions".to_owned();
            }
            Ok(Reply::new(text.trim_end(), json!(sessions)))
        }
        Request::SessionsKick { target } => sessions_kick(state, &target).await,
        Request::Stats => stats(state, online).await,
        Request::Backup => {
            let name = format!("backup-{}.partial-natter", Uuid::new_v4().simple());
            let path = state.store.data_dir().join(name);
            let summary = state
                .store
                .backup(&path, &state.config.jwt_secret_path())
                .await?;
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            Ok(Reply::new(
                format!(
                    "backup of {} records and {} files, digest {}",
                    summary.trees.values().sum::<u64>(),
                    summary.files,
                    summary.digest
                ),
                json!({"path": path, "summary": summary}),
            ))
        }
        Request::Verify => {
            let report = state.store.verify().await?;
            let mut text = format!(
                "{} records in {} trees, {} files, epoch {}, digest {}",
                report.trees.values().sum::<u64>(),
                report.trees.len(),
                report.files,
                report.epoch,
                report.digest
            );
            if report.problems.is_empty() {
                text.push_str("\nno problems found");
            } else {
                for problem in &report.problems {
                    let _ = write!(text, "\nproblem: {problem}");
                }
            }
            let problems = report.problems.len();
            let reply = Reply::new(text, json!(report));
            if problems > 0 {
                return Err(Error::Conflict(format!(
                    "{problems} problems found\n{}",
                    reply.text
                )));
            }
            Ok(reply)
        }
    }
}

async fn room_create(
    state: &AppState,
    name: String,
    owner: String,
    private: bool,
    transient: bool,
    retention_secs: u64,
) -> Result<Reply, Error> {
    if let Some(room) = state.store.room_by_name(&name)? {
        return Ok(Reply::new(
            format!("room {name} exists already (unchanged)"),
            json!({"created": false, "id": room.id}),
        ));
    }
    let owner = state.accounts.get(&owner)?;
    // The owner creates it, with the operator's rights.
    let who = Principal {
        user_id: owner.id,
        username: owner.username.clone(),
        ..operator()
    };
    let room = state
        .chat
        .create_room(
            &who,
            CreateRoom {
                name,
                visibility: if private {
                    Visibility::Private
                } else {
                    Visibility::Public
                },
                persistent: !transient,
                retention_secs,
            },
        )
        .await?;
    Ok(Reply::new(
        format!(
            "created room {} (id {}, {}, owner {})",
            room.name,
            room.id,
            visibility_name(room.visibility),
            owner.username
        ),
        json!({"created": true, "id": room.id}),
    ))
}

async fn sessions_kick(state: &AppState, target: &str) -> Result<Reply, Error> {
    const REASON: &str = "signed out by an administrator";
    let connections = state.broker.connections();
    // A connection id: end that connection's session.
    let sessions: Vec<(Uuid, Uuid)> =
        if let Some(conn) = connections.iter().find(|c| c.connection_id == target) {
            vec![(conn.user_id, conn.session_id)]
        } else if let Ok(id) = Uuid::parse_str(target) {
            connections
                .iter()
                .filter(|c| c.session_id == id)
                .map(|c| (c.user_id, c.session_id))
                .take(1)
                .collect()
        } else {
            let user = state.accounts.get(target)?;
            let revoked = state.store.revoke_user_families(user.id, REASON).await?;
            let closed = state
                .broker
                .kick_user(user.id, KickReason::SessionEnded(REASON));
            return Ok(Reply::new(
                format!("{target}: {revoked} sessions ended, {closed} connections closed"),
                json!({"sessions": revoked, "closed": closed}),
            ));
        };
    let Some((user_id, session_id)) = sessions.first().copied() else {
        return Err(Error::NotFound(format!(
            "no live connection, session or user {target}"
        )));
    };
    // Guests and external tokens have no stored session: closing the connection is all.
    let _ = state.store.revoke_family(user_id, session_id, REASON).await;
    let closed = state
        .broker
        .kick_session(session_id, KickReason::SessionEnded(REASON));
    Ok(Reply::new(
        format!("session {session_id} ended, {closed} connections closed"),
        json!({"sessions": 1, "closed": closed}),
    ))
}

async fn stats(state: &AppState, online: bool) -> Result<Reply, Error> {
    let metrics = &state.metrics;
    let before = metrics.messages_total();
    let messages_per_sec = if online {
        // A one-second sample of the message counter.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        metrics.messages_total().saturating_sub(before)
    } else {
        0
    };
    let by_dialect = state.broker.connections_by_dialect();
    let connections: usize = by_dialect.values().sum();
    let rooms = state.store.rooms()?;
    let stored_messages = state.store.trees().messages.len();
    let users = state.store.trees().users.len();
    let memory = crate::metrics::resident_memory_bytes();
    let store_bytes = state.store.size_on_disk();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "daemon:          {}",
        if online { "running" } else { "not running" }
    );
    let _ = writeln!(text, "connections:     {connections}");
    for (dialect, count) in &by_dialect {
        let _ = writeln!(text, "  {dialect:<14} {count}");
    }
    let _ = writeln!(text, "users:           {users}");
    let _ = writeln!(text, "rooms:           {}", rooms.len());
    let _ = writeln!(text, "stored messages: {stored_messages}");
    let _ = writeln!(text, "messages/s:      {messages_per_sec}");
    if online {
        let _ = writeln!(text, "memory (RSS):    {} KiB", memory / 1024);
    }
    let _ = writeln!(text, "store size:      {} KiB", store_bytes / 1024);
    let _ = write!(text, "store epoch:     {}", state.store.epoch());
    Ok(Reply::new(
        text,
        json!({"online": online, "connections": connections, "connections_by_dialect": by_dialect,
               "users": users, "rooms": rooms.len(), "stored_messages": stored_messages,
               "messages_per_sec": messages_per_sec,
               "memory_bytes": if online { Some(memory) } else { None },
               "store_bytes": store_bytes, "epoch": state.store.epoch()}),
    ))
}

fn visibility_name(visibility: Visibility) -> &'static str {
    match visibility {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}

fn retention_text(secs: u64) -> String {
    if secs == 0 {
        "forever".to_owned()
    } else {
        format!("{secs}s")
    }
}

fn user_table(users: &[UserView]) -> String {
    let mut text = format!(
        "{:<32} {:<6} {:<9} {:<21} LAST SEEN\n",
        "USERNAME", "ROLE", "STATUS", "CREATED"
    );
    for user in users {
        let _ = writeln!(
            text,
            "{:<32} {:<6} {:<9} {:<21} {}",
            user.username,
            user.role.as_str(),
            if user.disabled { "disabled" } else { "active" },
            crate::timefmt::rfc3339(user.created_at),
            user.last_seen
                .map_or_else(|| "never".to_owned(), crate::timefmt::rfc3339),
        );
    }
    text.trim_end().to_owned()
}

/// Where the CLI puts a backup the daemon wrote into its data dir: copied (the target may be on
/// another filesystem), synced, renamed into place, and the daemon's file removed.
pub fn deliver_backup(from: &std::path::Path, to: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let partial = PathBuf::from(format!("{}.partial", to.display()));
    let copy = || -> std::io::Result<()> {
        let mut source = std::fs::File::open(from)?;
        let mut target = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        std::io::copy(&mut source, &mut target)?;
        target.sync_all()?;
        std::fs::rename(&partial, to)
    };
    let result = copy();
    let _ = std::fs::remove_file(from);
    result.map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        Error::Internal(format!("cannot write {}: {e}", to.display()))
    })
}
