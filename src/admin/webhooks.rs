//! `natter webhook ...`: webhook endpoints, through the webhook service. The secret is in the
//! reply of `add` only; `list` never shows it.

use std::fmt::Write as _;

use serde_json::json;

use super::Reply;
use crate::app::AppState;
use crate::error::Error;

pub(super) async fn add(
    state: &AppState,
    url: String,
    events: Vec<String>,
) -> Result<Reply, Error> {
    let endpoint = state.webhooks.add(url, events).await?;
    Ok(Reply::new(
        format!(
            "webhook endpoint {id} added: {url}\nsecret: {secret}\n# the secret is shown this \
             once: give it to the receiver to verify signatures",
            id = endpoint.id,
            url = endpoint.url,
            secret = endpoint.secret,
        ),
        json!({"id": endpoint.id, "url": endpoint.url, "events": endpoint.events,
               "secret": endpoint.secret}),
    ))
}

pub(super) async fn list(state: &AppState) -> Result<Reply, Error> {
    let endpoints = state.webhooks.list().await?;
    let mut text = format!(
        "{:<6} {:<10} {:>8} {:>8} {:<40} EVENTS\n",
        "ID", "STATE", "FAILURES", "PENDING", "URL"
    );
    for e in &endpoints {
        let status = if !e.enabled {
            "off"
        } else if e.auto_disabled {
            "disabled"
        } else {
            "enabled"
        };
        let _ = writeln!(
            text,
            "{:<6} {:<10} {:>8} {:>8} {:<40} {}",
            e.id,
            status,
            e.failures,
            e.pending,
            e.url,
            e.events.join(",")
        );
    }
    Ok(Reply::new(
        text.trim_end().to_owned(),
        json!({ "endpoints": endpoints }),
    ))
}

pub(super) async fn remove(state: &AppState, id: u64) -> Result<Reply, Error> {
    state.webhooks.remove(id).await?;
    Ok(Reply::new(
        format!("webhook endpoint {id} removed"),
        json!({"id": id, "removed": true}),
    ))
}

pub(super) async fn test(state: &AppState, id: u64) -> Result<Reply, Error> {
    let status = state.webhooks.test(id).await?;
    let ok = (200..300).contains(&status);
    let text = if ok {
        format!("webhook endpoint {id} answered {status}: delivered")
    } else {
        format!("webhook endpoint {id} answered {status}: not accepted")
    };
    Ok(Reply::new(
        text,
        json!({"id": id, "status": status, "delivered": ok}),
    ))
}

pub(super) async fn enable(state: &AppState, id: u64) -> Result<Reply, Error> {
    let view = state.webhooks.enable(id).await?;
    Ok(Reply::new(
        format!("webhook endpoint {id} enabled ({} pending)", view.pending),
        json!({ "endpoint": view }),
    ))
}
