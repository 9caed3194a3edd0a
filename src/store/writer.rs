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
    /// Flush what came before, then hand out a [`Pause`] and apply nothing until it is dropped:
    /// a consistent view of the whole store for an online backup. Writes queue meanwhile (the
    /// queue is bounded, so writers wait).
    Pause(oneshot::Sender<Pause>),
}

/// Held by whoever paused the writer; dropping it lets writes continue.
pub struct Pause {
    _release: oneshot::Sender<()>,
}

/// Bound of the writer's queue: writers beyond it wait (backpressure), memory stays bounded.
const QUEUE_DEPTH: usize = 4096;

pub fn spawn(
    db: sled::Db,
    trees: Arc<Trees>,
    max_batch: usize,
    metrics: Arc<crate::metrics::Metrics>,
) -> mpsc::Sender<Command> {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(run(db, trees, rx, max_batch.max(1), metrics));
    tx
}

async fn run(
    db: sled::Db,
    trees: Arc<Trees>,
    mut commands: mpsc::Receiver<Command>,
    max_batch: usize,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let mut completions: Vec<Completion> = Vec::with_capacity(max_batch);
    let mut close_reply = None;
    let mut pause_reply = None;
    while let Some(first) = commands.recv().await {
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Write(job) => completions.push(job(&trees)),
                Command::Close(reply) => {
                    close_reply = Some(reply);
                    break;
                }
                Command::Pause(reply) => {
                    pause_reply = Some(reply);
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
        metrics.store_flush.observe_duration(started.elapsed());
        #[allow(clippy::cast_precision_loss)]
        metrics.store_batch.observe(completions.len() as f64);
        if let Err(e) = &flushed {
            crate::metrics::Metrics::incr(&metrics.store_flush_errors);
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
        if let Some(reply) = pause_reply.take() {
            let (release, released) = oneshot::channel();
            if reply.send(Pause { _release: release }).is_ok() {
                // Resolves (with an error) when the Pause is dropped.
                let _ = released.await;
            }
        }
        if let Some(reply) = close_reply.take() {
            commands.close();
            // Writes that raced with close are refused rather than silently dropped.
            while let Ok(command) = commands.try_recv() {
                match command {
                    Command::Write(_) | Command::Pause(_) => {}
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
