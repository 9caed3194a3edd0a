//! `natter token ...` and `natter sessions ...`: service tokens and live sessions, through auth
//! (which ends sessions: the revocation in the store and the close of their connections).

use std::fmt::Write as _;

use serde_json::json;
use uuid::Uuid;

use super::Reply;
use crate::app::AppState;
use crate::error::Error;
use crate::events::KickReason;
use crate::principal::Scopes;

/// Why an operator's kick ends a session, as its connections are told.
const KICKED: &str = "signed out by an administrator";

pub(super) async fn issue(
    state: &AppState,
    username: &str,
    scopes: &str,
    ttl_secs: u64,
    label: &str,
) -> Result<Reply, Error> {
    let scopes = Scopes::parse(scopes)?;
    if ttl_secs == 0 {
        return Err(Error::BadRequest(
            "--ttl must be at least 1 second".to_owned(),
        ));
    }
    let (family, token) = state
        .auth
        .issue_service_token(username, scopes, ttl_secs, label)
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

pub(super) async fn list(state: &AppState) -> Result<Reply, Error> {
    let mut rows = Vec::new();
    let mut text = format!(
        "{:<36} {:<16} {:<20} {:<20} {:<21} STATUS\n",
        "ID", "USER", "LABEL", "SCOPES", "EXPIRES"
    );
    let now = crate::store::now_secs();
    for token in state.auth.service_tokens().await? {
        let family = &token.family;
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
            token.username,
            label,
            token.scopes,
            crate::timefmt::rfc3339(family.expires_at),
        );
        rows.push(
            json!({"id": family.id, "username": token.username, "label": label,
                         "scopes": token.scopes, "expires_at": family.expires_at,
                         "status": status}),
        );
    }
    Ok(Reply::new(text.trim_end(), json!(rows)))
}

pub(super) async fn revoke(state: &AppState, id: Uuid) -> Result<Reply, Error> {
    match state.auth.revoke_service_token(id).await? {
        None => Ok(Reply::new(
            format!("service token {id} was revoked already"),
            json!({"revoked": false}),
        )),
        Some(closed) => Ok(Reply::new(
            format!("service token {id} revoked ({closed} connections closed)"),
            json!({"revoked": true, "closed": closed}),
        )),
    }
}

pub(super) fn sessions_list(state: &AppState, online: bool) -> Reply {
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
    Reply::new(text.trim_end(), json!(sessions))
}

/// `sessions kick TARGET`: a connection id ends that connection's session, a session id that
/// session (live or not: a stored session without a connection, a stolen refresh token's, is
/// revoked in the store), a username every session of the user.
pub(super) async fn sessions_kick(state: &AppState, target: &str) -> Result<Reply, Error> {
    let connections = state.broker.connections();
    let session = if let Some(conn) = connections.iter().find(|c| c.connection_id == target) {
        Some((conn.user_id, conn.session_id))
    } else if let Ok(id) = Uuid::parse_str(target) {
        match connections.iter().find(|c| c.session_id == id) {
            Some(conn) => Some((conn.user_id, conn.session_id)),
            None => state
                .auth
                .session(id)
                .await?
                .map(|family| (family.user_id, family.id)),
        }
    } else {
        let user = state.core.accounts.get(target).await?;
        let (revoked, closed) = state
            .auth
            .end_sessions_of(user.id, KickReason::SessionEnded(KICKED))
            .await?;
        return Ok(Reply::new(
            format!("{target}: {revoked} sessions ended, {closed} connections closed"),
            json!({"sessions": revoked, "closed": closed}),
        ));
    };
    let Some((user_id, session_id)) = session else {
        return Err(Error::NotFound(format!(
            "no live connection, session or user {target}"
        )));
    };
    // Guests and external tokens have no stored session: closing the connection is all.
    let (revoked, closed) = state.auth.end_session(user_id, session_id, KICKED).await?;
    if !revoked && closed == 0 {
        return Ok(Reply::new(
            format!("session {session_id} was ended already (nothing to do)"),
            json!({"sessions": 0, "closed": 0}),
        ));
    }
    Ok(Reply::new(
        format!("session {session_id} ended, {closed} connections closed"),
        json!({"sessions": 1, "closed": closed}),
    ))
}
