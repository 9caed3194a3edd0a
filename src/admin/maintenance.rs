//! `natter stats`, `backup` and `verify`: what the store holds and how to keep it safe.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::json;
use uuid::Uuid;

use super::Reply;
use crate::app::AppState;
use crate::error::Error;

pub(super) async fn stats(state: &AppState, online: bool) -> Result<Reply, Error> {
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
    let counts = state.store.counts().await?;
    let memory = crate::metrics::resident_memory_bytes();
    let store_bytes = state.store.size_on_disk().await;
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
    let _ = writeln!(text, "users:           {}", counts.users);
    let _ = writeln!(text, "rooms:           {}", counts.rooms);
    let _ = writeln!(text, "stored messages: {}", counts.messages);
    let _ = writeln!(text, "messages/s:      {messages_per_sec}");
    if online {
        let _ = writeln!(text, "memory (RSS):    {} KiB", memory / 1024);
    }
    let _ = writeln!(text, "store size:      {} KiB", store_bytes / 1024);
    let epoch = state.store.epoch().await;
    let _ = write!(text, "store epoch:     {epoch}");
    Ok(Reply::new(
        text,
        json!({"online": online, "connections": connections, "connections_by_dialect": by_dialect,
               "users": counts.users, "rooms": counts.rooms, "stored_messages": counts.messages,
               "messages_per_sec": messages_per_sec,
               "memory_bytes": if online { Some(memory) } else { None },
               "store_bytes": store_bytes, "epoch": epoch}),
    ))
}

/// Writes a backup into the data dir; the CLI moves it where the operator asked.
pub(super) async fn backup(state: &AppState) -> Result<Reply, Error> {
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

pub(super) async fn verify(state: &AppState) -> Result<Reply, Error> {
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
