//! The single writer task: applies write jobs in arrival order and flushes once per batch
//! (group commit). Many concurrent writers share one fsync; none is told "done" before it.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{StoreError, Trees};

/// Called with the outcome of the flush that covers the job's write.
pub type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write: runs on the writer task, returns what to do once the write is durable.
pub type Job = Box<dyn FnOnce(&Trees) -> Completion + Send>;

pub enum Command {
    Write(Job),
    /// Finish the queued writes, flush, stop.
    Close(oneshot::Sender<Result<(), StoreError>>),
}

/// Bound of the writer's queue: writers beyond it wait (backpressure), memory stays bounded.
const QUEUE_DEPTH: usize = 4096;

pub fn spawn(db: sled::Db, trees: Arc<Trees>, max_batch: usize) -> mpsc::Sender<Command> {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(run(db, trees, rx, max_batch.max(1)));
    tx
}

async fn run(
    db: sled::Db,
    trees: Arc<Trees>,
    mut commands: mpsc::Receiver<Command>,
    max_batch: usize,
) {
    let mut completions: Vec<Completion> = Vec::with_capacity(max_batch);
    let mut close_reply = None;
    while let Some(first) = commands.recv().await {
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Write(job) => completions.push(job(&trees)),
                Command::Close(reply) => {
                    close_reply = Some(reply);
                    break;
                }
            }
            if completions.len() >= max_batch {
                break;
            }
            next = commands.try_recv().ok();
        }
        let started = std::time::Instant::now();
        let flushed = db.flush_async().await.map(|_| ()).map_err(StoreError::from);
        if let Err(e) = &flushed {
            tracing::error!(error = %e, batch = completions.len(), "store flush failed");
        } else {
            tracing::trace!(
                batch = completions.len(),
                micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                "group commit"
            );
        }
        for completion in completions.drain(..) {
            completion(flushed.clone());
        }
        if let Some(reply) = close_reply.take() {
            commands.close();
            // Writes that raced with close are refused rather than silently dropped.
            while let Ok(command) = commands.try_recv() {
                match command {
                    Command::Write(_) => {}
                    Command::Close(other) => {
                        let _ = other.send(Ok(()));
                    }
                }
            }
            drop(trees);
            drop(db);
            let _ = reply.send(flushed);
            return;
        }
    }
}
