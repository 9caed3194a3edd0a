//! User records, the username index, and the index of external identities (users of
//! `auth.external` issuers).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SledStore, Trees, decode, encode, keys};
use crate::error::Error;
use crate::principal::Role;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    /// A small number, unique per store, for protocols whose user ids are integers (the rooms protocol, Kibray).
    /// Assigned when the user is stored.
    #[serde(default)]
    pub number: u64,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    /// argon2id PHC string. Never serialized to clients (see `core::accounts::UserView`).
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last login or connection.
    pub last_seen: Option<i64>,
}

impl Trees {
    pub fn user(&self, id: Uuid) -> Result<Option<User>, Error> {
        self.users
            .get(id.as_bytes())?
            .map(|raw| decode("users", &raw))
            .transpose()
    }

    pub fn user_id_by_name(&self, username: &str) -> Result<Option<Uuid>, Error> {
        Ok(self
            .usernames
            .get(username.as_bytes())?
            .and_then(|raw| keys::uuid_at(&raw, 0)))
    }

    pub fn user_by_name(&self, username: &str) -> Result<Option<User>, Error> {
        match self.user_id_by_name(username)? {
            Some(id) => self.user(id),
            None => Ok(None),
        }
    }

    /// Writes a user record (the username index is maintained by insert/remove only: usernames
    /// do not change).
    pub fn put_user(&self, user: &User) -> Result<(), Error> {
        let old = self.user(user.id)?;
        let written = encode(user).and_then(|record| {
            self.users.insert(user.id.as_bytes(), record)?;
            self.reindex_names(old.as_ref(), Some(user))
        });
        self.lookups.forget_user(user.id);
        written
    }

    /// The avatar URL of a user (`None` also when there is no such user); once read, answered
    /// from memory until the user record changes (see `store::lookups`).
    pub fn avatar_url(&self, id: Uuid) -> Result<Option<String>, Error> {
        if let Some(avatar) = self.lookups.avatar(id) {
            return Ok(avatar);
        }
        let ticket = self.lookups.ticket();
        let avatar = self.user(id)?.and_then(|user| user.avatar_url);
        self.lookups.fill_avatar(ticket, id, avatar.clone());
        Ok(avatar)
    }
}

impl SledStore {
    pub fn user(&self, id: Uuid) -> Result<Option<User>, Error> {
        self.trees()?.user(id)
    }

    /// The avatar URL of a user, without decoding the whole record each time (a Send's).
    pub fn avatar_url(&self, id: Uuid) -> Result<Option<String>, Error> {
        self.trees()?.avatar_url(id)
    }

    pub fn user_by_name(&self, username: &str) -> Result<Option<User>, Error> {
        self.trees()?.user_by_name(username)
    }

    /// All users, in username order.
    pub fn users(&self) -> Result<Vec<User>, Error> {
        let trees = self.trees()?;
        let mut out = Vec::new();
        for entry in trees.usernames.iter() {
            let (_, id) = entry?;
            if let Some(user) = keys::uuid_at(&id, 0).map(|id| trees.user(id)).transpose()? {
                out.extend(user);
            }
        }
        Ok(out)
    }

    pub fn has_users(&self) -> Result<bool, Error> {
        Ok(!self.trees()?.users.is_empty())
    }

    /// Inserts a new user; `Conflict` if the username is taken. Durable when it returns.
    pub async fn insert_user(&self, mut user: User) -> Result<User, Error> {
        self.write(move |t| {
            if t.usernames.contains_key(user.username.as_bytes())? {
                return Err(Error::Conflict(format!(
                    "user {} already exists",
                    user.username
                )));
            }
            t.insert_user_entries(&mut user)?;
            Ok(user)
        })
        .await
    }

    /// Sets the display name and avatar URL of the user `user_id`; `Conflict` when the display
    /// name, folded, is another account's username or display name. Durable when it returns.
    pub async fn set_profile(
        &self,
        user_id: Uuid,
        display_name: String,
        avatar_url: Option<String>,
    ) -> Result<User, Error> {
        self.write(move |t| {
            let mut user = t
                .user(user_id)?
                .ok_or(Error::InvalidToken("user no longer exists"))?;
            if t.name_taken_by_other(&display_name, user_id)? {
                return Err(Error::Conflict(
                    "that display name is another account's name; pick another".to_owned(),
                ));
            }
            user.display_name = display_name;
            user.avatar_url = avatar_url;
            t.put_user(&user)?;
            Ok(user)
        })
        .await
    }

    /// Applies `change` to the user named `username` and stores the result. Durable when it
    /// returns; `NotFound` if there is no such user.
    pub async fn update_user<F>(&self, username: &str, change: F) -> Result<User, Error>
    where
        F: FnOnce(&mut User) -> Result<(), Error> + Send + 'static,
    {
        let username = username.to_owned();
        self.write(move |t| {
            let mut user = t
                .user_by_name(&username)?
                .ok_or_else(|| Error::NotFound(format!("no user {username}")))?;
            change(&mut user)?;
            t.put_user(&user)?;
            Ok(user)
        })
        .await
    }

    /// The user an external identity (issuer + the issuer's user id) maps to, if it was seen
    /// before and that user still exists.
    pub fn external_user(&self, issuer: &str, subject: &str) -> Result<Option<User>, Error> {
        let trees = self.trees()?;
        match trees
            .external_ids
            .get(keys::external_id(issuer, subject))?
            .and_then(|raw| keys::uuid_at(&raw, 0))
        {
            Some(id) => trees.user(id),
            None => Ok(None),
        }
    }

    /// Creates `user` for an external identity under the first free name of `usernames`, and
    /// maps the identity to it, in one write (so two first sights at once make one user). If
    /// the identity already maps to an existing user, that user is returned and nothing is
    /// written. `Conflict` when every name is taken. Durable when it returns.
    pub async fn insert_external_user(
        &self,
        issuer: &str,
        subject: &str,
        usernames: Vec<String>,
        mut user: User,
    ) -> Result<User, Error> {
        let key = keys::external_id(issuer, subject);
        self.write(move |t| {
            if let Some(existing) = t
                .external_ids
                .get(&key)?
                .and_then(|raw| keys::uuid_at(&raw, 0))
                .map(|id| t.user(id))
                .transpose()?
                .flatten()
            {
                return Ok(existing);
            }
            let mut free = None;
            for name in usernames {
                if !t.usernames.contains_key(name.as_bytes())? {
                    free = Some(name);
                    break;
                }
            }
            user.username = free.ok_or_else(|| {
                Error::Conflict(format!(
                    "no free username for {} (too many users with that name)",
                    user.username
                ))
            })?;
            user.number = t.next_counter(b"next_user_number")?;
            // Record, then name, then identity: a crash midway leaves an unreachable record or
            // an unmapped user, and the next sight creates the user again.
            t.put_user(&user)?;
            t.usernames
                .insert(user.username.as_bytes(), user.id.as_bytes())?;
            t.external_ids.insert(key, user.id.as_bytes())?;
            Ok(user)
        })
        .await
    }

    /// Removes a user, its sessions and its memberships. Messages stay (attributed to the id).
    pub async fn remove_user(&self, username: &str) -> Result<User, Error> {
        let username = username.to_owned();
        self.write(move |t| {
            let user = t
                .user_by_name(&username)?
                .ok_or_else(|| Error::NotFound(format!("no user {username}")))?;
            let removed = t.remove_user_entries(&user);
            // Also when the removal stopped halfway: what memory holds may be gone from disk.
            t.lookups.forget_removed_user(user.id);
            removed.map(|()| user)
        })
        .await
    }
}

impl Trees {
    /// Stores a new user and its username (the name must be free): assigns its number. Writer
    /// task only.
    pub(super) fn insert_user_entries(&self, user: &mut User) -> Result<(), Error> {
        user.number = self.next_counter(b"next_user_number")?;
        // Record before index: a crash between the two leaves an unreachable record, never
        // a name that points nowhere.
        self.put_user(user)?;
        self.usernames
            .insert(user.username.as_bytes(), user.id.as_bytes())?;
        Ok(())
    }

    /// Removes a user's name, sessions, memberships, external identities and record. Writer
    /// task only.
    fn remove_user_entries(&self, user: &User) -> Result<(), Error> {
        // Name first: a crash midway leaves an unreachable record, not a reachable half-user.
        self.usernames.remove(user.username.as_bytes())?;
        for entry in self.families.scan_prefix(user.id.as_bytes()) {
            let (key, _) = entry?;
            self.families.remove(key)?;
        }
        for entry in self.user_rooms.scan_prefix(user.id.as_bytes()) {
            let (key, _) = entry?;
            if let Some(room_id) = keys::u64_at(&key, 16) {
                self.memberships
                    .remove(keys::membership(room_id, user.id))?;
            }
            self.user_rooms.remove(key)?;
        }
        // External identities of the user (rare, and removal is rare: a scan is fine). The
        // identity's next sight creates a new user.
        for entry in self.external_ids.iter() {
            let (key, id) = entry?;
            if id.as_ref() == user.id.as_bytes() {
                self.external_ids.remove(key)?;
            }
        }
        self.reindex_names(Some(user), None)?;
        self.remove_user_inbox(user.id)?;
        self.remove_user_mentions(user.id)?;
        self.users.remove(user.id.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use crate::store::{NewRoom, Visibility};

    fn user(username: &str, avatar_url: Option<&str>) -> User {
        User {
            id: Uuid::new_v4(),
            number: 0,
            username: username.to_owned(),
            display_name: username.to_owned(),
            avatar_url: avatar_url.map(str::to_owned),
            password_hash: String::new(),
            role: Role::User,
            disabled: false,
            created_at: 0,
            last_seen: None,
        }
    }

    #[tokio::test]
    async fn an_avatar_read_from_memory_follows_changes_and_removal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(
            &StoreConfig {
                data_dir: dir.path().to_path_buf(),
                ..StoreConfig::default()
            },
            Default::default(),
        )
        .expect("open");
        let dora = store
            .insert_user(user("dora", Some("https://a.example/1.png")))
            .await
            .expect("insert");
        for _ in 0..2 {
            assert_eq!(
                store.avatar_url(dora.id).expect("get").as_deref(),
                Some("https://a.example/1.png")
            );
        }
        store
            .update_user("dora", |u| {
                u.avatar_url = Some("https://a.example/2.png".to_owned());
                Ok(())
            })
            .await
            .expect("update");
        assert_eq!(
            store.avatar_url(dora.id).expect("get").as_deref(),
            Some("https://a.example/2.png"),
            "the next message shows the new avatar"
        );
        let room = store
            .create_room(NewRoom {
                name: "r".to_owned(),
                owner: dora.id,
                members: Vec::new(),
                visibility: Visibility::Public,
                persistent: true,
                retention_secs: 0,
                quota: None,
            })
            .await
            .expect("room");
        assert!(store.is_member(room.id, dora.id).expect("get"));
        store.remove_user("dora").await.expect("remove");
        assert_eq!(store.avatar_url(dora.id).expect("get"), None);
        assert!(!store.is_member(room.id, dora.id).expect("get"));
        store.close().await.expect("close");
    }
}
