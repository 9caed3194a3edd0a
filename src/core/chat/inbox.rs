//! Server-side publishing into rooms, and the notification inbox (stored per user, delivered
//! live).

use serde_json::Value;

use super::{Chat, NewNotification};
use crate::core::policy;
use crate::error::Error;
use crate::events::Event;
use crate::metrics::MessageKind;
use crate::principal::Principal;
use crate::store::{Notification, NotificationPage, now_secs};

impl Chat {
    /// Delivers an arbitrary event into a room (the rooms protocol's task.* and project.* events).
    pub async fn publish(
        &self,
        who: &Principal,
        name: &str,
        kind: &str,
        data: Value,
    ) -> Result<usize, Error> {
        if !who.may_publish() {
            return Err(Error::Forbidden(
                "publishing needs an admin or a service token with the publish scope".to_owned(),
            ));
        }
        if kind.is_empty() || kind.len() > 64 {
            return Err(Error::BadRequest("type must be 1 to 64 bytes".to_owned()));
        }
        // Not resolve_room: a publish-only token has no chat scope, and `@user` rooms are
        // relative to a chatting user anyway.
        let room = self
            .store
            .room_by_name(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no room {name}")))?;
        self.metrics.message(crate::metrics::MessageKind::Published);
        Ok(self.emit_room(
            &room,
            Event::Published {
                room: room.name.clone(),
                room_id: room.id,
                kind: kind.to_owned(),
                data,
            },
        ))
    }

    /// Stores a notification in the user's inbox and delivers it live.
    pub async fn notify(
        &self,
        who: &Principal,
        new: NewNotification,
    ) -> Result<Notification, Error> {
        if !who.may_publish() {
            return Err(Error::Forbidden(
                "sending notifications needs an admin or a service token with the publish scope"
                    .to_owned(),
            ));
        }
        if !matches!(new.level.as_str(), "info" | "success" | "warning" | "error") {
            return Err(Error::BadRequest(
                "level must be info, success, warning or error".to_owned(),
            ));
        }
        if new.title.chars().count() > 200 || new.message.chars().count() > 4000 {
            return Err(Error::BadRequest(
                "title is limited to 200 and message to 4000 characters".to_owned(),
            ));
        }
        match &new.actions {
            Value::Null => {}
            Value::Array(actions) if actions.len() <= 10 => {
                // An action's link is followed like the notification's own.
                if actions.iter().any(|action| {
                    action
                        .get("url")
                        .is_some_and(|url| !url.as_str().is_some_and(policy::is_safe_link))
                }) {
                    return Err(Error::BadRequest(
                        "an action's url must be an http(s) URL or a path on this server \
                         (\"/tasks/123\") of at most 2048 bytes, without control characters"
                            .to_owned(),
                    ));
                }
            }
            _ => {
                return Err(Error::BadRequest(
                    "actions must be an array of at most 10 entries".to_owned(),
                ));
            }
        }
        if new.actions.to_string().len() > 8192 {
            return Err(Error::BadRequest("actions are limited to 8 KiB".to_owned()));
        }
        if new
            .category
            .as_ref()
            .is_some_and(|c| c.chars().count() > 64)
        {
            return Err(Error::BadRequest(
                "category is limited to 64 characters".to_owned(),
            ));
        }
        if let Some(url) = &new.url
            && !policy::is_safe_link(url)
        {
            return Err(Error::BadRequest(
                "url must be an http(s) URL or a path on this server (\"/tasks/123\") of at \
                 most 2048 bytes, without control characters"
                    .to_owned(),
            ));
        }
        let user = self
            .store
            .user_by_name(&new.username)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user {}", new.username)))?;
        let (stored, dropped) = self
            .store
            .insert_notification(
                Notification {
                    id: 0,
                    user_id: user.id,
                    level: new.level,
                    title: new.title,
                    message: new.message,
                    category: new.category,
                    url: new.url,
                    actions: if new.actions.is_null() {
                        Value::Array(Vec::new())
                    } else {
                        new.actions
                    },
                    created_at: now_secs(),
                    read: false,
                },
                self.limits.max_notifications_per_user,
            )
            .await?;
        self.metrics.message(MessageKind::Notification);
        if dropped > 0 {
            self.metrics.notifications_dropped.fetch_add(
                u64::try_from(dropped).unwrap_or(u64::MAX),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        self.broker.publish_user(
            user.id,
            Event::Notification {
                notification: stored.clone(),
                user_number: user.number,
            },
        );
        Ok(stored)
    }

    /// A page of the caller's notifications, newest first: at most `limit` (clamped to 1 to
    /// 200) with ids below `before` (none: the newest), the inbox's unread count, and whether
    /// older ones follow.
    pub async fn notifications(
        &self,
        who: &Principal,
        before: Option<u64>,
        limit: usize,
    ) -> Result<NotificationPage, Error> {
        self.store
            .notifications(who.user_id, before, limit.clamp(1, 200))
            .await
    }

    /// Marks one of the caller's notifications read.
    pub async fn mark_notification_read(
        &self,
        who: &Principal,
        id: u64,
    ) -> Result<Notification, Error> {
        self.store.mark_notification_read(who.user_id, id).await
    }

    /// How many of the caller's notifications are unread (a counter the store keeps: no scan).
    pub async fn unread_notifications(&self, who: &Principal) -> Result<usize, Error> {
        let unread = self.store.unread_notifications(who.user_id).await?;
        Ok(usize::try_from(unread).unwrap_or(usize::MAX))
    }
}
