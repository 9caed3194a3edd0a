//! Setting natter up as its users would, over its HTTP API: users created by the admin
//! (`POST /api/v1/users`), each logged in (`POST /api/token/`), rooms created by a user
//! (`POST /api/v1/rooms`) and members added by the room's owner
//! (`POST /api/v1/rooms/{room}/members/{user}`).

use std::future::Future;
use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;

use crate::servers::{self, BENCH_PASSWORD, Server};

/// A user of the bench and its access token.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub token: String,
}

/// Runs `f` on every item, at most `concurrency` at a time; the results in the items' order.
pub async fn concurrently<T, R, F, Fut>(
    items: Vec<T>,
    concurrency: usize,
    f: F,
) -> anyhow::Result<Vec<R>>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = anyhow::Result<R>>,
{
    let mut results: Vec<(usize, R)> = futures_util::stream::iter(items.into_iter().enumerate())
        .map(|(index, item)| {
            let fut = f(item);
            async move { fut.await.map(|r| (index, r)) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    results.sort_by_key(|(index, _)| *index);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

async fn post(
    addr: SocketAddr,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<(u16, String)> {
    servers::http(addr, "POST", path, Some(token), Some(&body.to_string())).await
}

/// Creates `count` users named `PREFIX0`, `PREFIX1`, ... (role user, the bench password) with
/// the admin's token, and logs each in. natter hashes and verifies at most one password per
/// core at a time, so a few requests in flight are enough.
pub async fn users(server: &Server, prefix: &str, count: usize) -> anyhow::Result<Vec<User>> {
    let admin = server
        .admin_token
        .clone()
        .context("creating users needs the admin (NatterOptions::admin)")?;
    let addr = server.addr;
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    concurrently(names, 4, |name| {
        let admin = admin.clone();
        async move {
            let (status, body) = post(
                addr,
                &admin,
                "/api/v1/users",
                serde_json::json!({"username": name, "password": BENCH_PASSWORD}),
            )
            .await?;
            if status != 201 && status != 200 {
                bail!("creating user {name}: {status} {body}");
            }
            let token = servers::login_as(addr, &name, BENCH_PASSWORD).await?;
            Ok(User { name, token })
        }
    })
    .await
}

/// Creates a persistent room as the holder of `token` (its owner).
pub async fn room(
    addr: SocketAddr,
    token: &str,
    name: &str,
    visibility: &str,
) -> anyhow::Result<()> {
    let (status, body) = post(
        addr,
        token,
        "/api/v1/rooms",
        serde_json::json!({"name": name, "visibility": visibility, "persistent": true}),
    )
    .await?;
    if status != 201 && status != 200 {
        bail!("creating room {name}: {status} {body}");
    }
    Ok(())
}

/// Adds `member` to `room`, as the holder of `token` (the owner or an admin).
pub async fn add_member(
    addr: SocketAddr,
    token: &str,
    room: &str,
    member: &str,
) -> anyhow::Result<()> {
    let (status, body) = post(
        addr,
        token,
        &format!("/api/v1/rooms/{room}/members/{member}"),
        serde_json::json!({}),
    )
    .await?;
    if status != 200 && status != 201 {
        bail!("adding {member} to {room}: {status} {body}");
    }
    Ok(())
}
