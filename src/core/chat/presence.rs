//! Presence: who is online, the status they set, and telling the people they share a room with.

use serde_json::Value;
use uuid::Uuid;

use super::{Chat, STATUSES};
use crate::error::Error;
use crate::events::Event;
use crate::principal::Principal;
use crate::store::now_secs;

impl Chat {
    /// A user's first connection came up.
    pub async fn connected(&self, who: &Principal) {
        self.webhooks.user_connected(who.user_id, &who.username);
        self.touch_last_seen(who).await;
        let status = self.status_of(who.user_id);
        self.emit_presence(who, &status, Some(now_secs()), None)
            .await;
    }

    /// A user's last connection went away.
    pub async fn disconnected(&self, who: &Principal) {
        self.webhooks.user_disconnected(who.user_id, &who.username);
        let last_seen = self.touch_last_seen(who).await;
        if let Ok(mut statuses) = self.statuses.lock() {
            statuses.remove(&who.user_id);
        }
        self.emit_presence(who, "offline", last_seen, None).await;
    }

    /// Sets a user's status (online, away, busy, offline) and tells their rooms.
    pub async fn set_status(
        &self,
        who: &Principal,
        status: &str,
        metadata: Option<Value>,
    ) -> Result<(), Error> {
        if !STATUSES.contains(&status) {
            return Err(Error::BadRequest(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )));
        }
        if let Ok(mut statuses) = self.statuses.lock() {
            statuses.insert(who.user_id, status.to_owned());
        }
        self.touch_last_seen(who).await;
        self.emit_presence(who, status, Some(now_secs()), metadata)
            .await;
        Ok(())
    }

    /// A user's presence now: `offline` without a live connection, else the status they set
    /// (`online` until they set one).
    pub fn status_of(&self, user_id: Uuid) -> String {
        if !self.broker.is_online(user_id) {
            return "offline".to_owned();
        }
        self.statuses
            .lock()
            .ok()
            .and_then(|s| s.get(&user_id).cloned())
            .unwrap_or_else(|| "online".to_owned())
    }

    /// Presence goes to every connection that joined a room the user is a member of.
    async fn emit_presence(
        &self,
        who: &Principal,
        status: &str,
        last_seen: Option<i64>,
        metadata: Option<Value>,
    ) {
        let rooms = match self.store.user_room_ids(who.user_id).await {
            Ok(rooms) => self.broker.joined_rooms_of(&rooms),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read memberships for presence");
                return;
            }
        };
        if rooms.is_empty() {
            return;
        }
        let event = Event::Presence {
            user_id: who.user_id,
            user_number: who.number,
            username: who.username.clone(),
            status: status.to_owned(),
            last_seen,
            metadata,
        };
        self.broker.publish_rooms(&rooms, event);
    }

    async fn touch_last_seen(&self, who: &Principal) -> Option<i64> {
        let now = now_secs();
        match self
            .store
            .update_user(&who.username, move |u| {
                u.last_seen = Some(now);
                Ok(())
            })
            .await
        {
            Ok(_) => Some(now),
            Err(e) => {
                tracing::debug!(error = %e, "cannot update last_seen");
                None
            }
        }
    }
}
