//! The single writer task: applies write jobs in arrival order and flushes once per batch
//! (group commit). Many concurrent writers share one fsync; none is told "done" before it.
//! Pipelined: the next batch is applied while the previous one's flush is on disk's way.

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

/// What the writer was asked to do once everything before it is flushed.
enum Stop {
    Close(oneshot::Sender<Result<(), StoreError>>),
    Pause(oneshot::Sender<Pause>),
}

/// A flush on its way: its outcome, and the completions of the writes it covers.
struct InFlight {
    flush: tokio::task::JoinHandle<Result<(), StoreError>>,
    completions: Vec<Completion>,
    started: std::time::Instant,
}

/// Starts flushing everything applied so far. sled's flush covers every write made before it
/// is called; it runs on a blocking thread (one wake-up, unlike `flush_async`'s pool, which
/// wakes all its idle threads per call) while the writer goes on applying the next batch.
fn start_flush(db: &sled::Db, completions: Vec<Completion>) -> InFlight {
    let db = db.clone();
    InFlight {
        flush: tokio::task::spawn_blocking(move || {
            db.flush().map(|_| ()).map_err(StoreError::from)
        }),
        completions,
        started: std::time::Instant::now(),
    }
}

/// Applies writes in arrival order and group-commits them, pipelined: while one batch's flush
/// is on its way, the next batch is applied; it is flushed (by a flush called after its last
/// write) once the first flush is done. A completion runs only after a flush that began after
/// its write, so nothing is acknowledged before it is on disk.
async fn run(
    db: sled::Db,
    trees: Arc<Trees>,
    mut commands: mpsc::Receiver<Command>,
    max_batch: usize,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let mut pending: Vec<Completion> = Vec::with_capacity(max_batch);
    // The buffer of the batch last answered, reused for the next one.
    let mut spare: Vec<Completion> = Vec::with_capacity(max_batch);
    let mut in_flight: Option<InFlight> = None;
    let mut stop: Option<Stop> = None;
    // Set once every sender is gone: finish what is queued, then end.
    let mut senders_gone = false;
    let mut last_flush: Result<(), StoreError> = Ok(());
    loop {
        if in_flight.is_none() && !pending.is_empty() {
            let batch = std::mem::replace(&mut pending, std::mem::take(&mut spare));
            in_flight = Some(start_flush(&db, batch));
        }
        if in_flight.is_none() {
            // Everything applied is flushed and answered. A stop flushes once more anyway: it
            // promises that whatever came before it (writes made straight to the trees, too)
            // is on disk.
            if stop.is_some() {
                // On a blocking thread like the batches' flushes: sled 0.34's `flush_async`
                // has been seen to stall with several databases in one process.
                let db = db.clone();
                last_flush = match tokio::task::spawn_blocking(move || db.flush()).await {
                    Ok(flushed) => flushed.map(|_| ()).map_err(StoreError::from),
                    Err(e) => Err(StoreError::Engine(format!("flush task failed: {e}"))),
                };
            }
            match stop.take() {
                Some(Stop::Pause(reply)) => {
                    let (release, released) = oneshot::channel();
                    if reply.send(Pause { _release: release }).is_ok() {
                        // Resolves (with an error) when the Pause is dropped.
                        let _ = released.await;
                    }
                    continue;
                }
                Some(Stop::Close(reply)) => {
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
                    let _ = reply.send(last_flush);
                    return;
                }
                None if senders_gone => return,
                None => {}
            }
        }
        // Here either a flush is in flight or nothing is pending and no stop is due, so at
        // least one branch below is enabled.
        let accepting = stop.is_none() && !senders_gone && pending.len() < max_batch;
        tokio::select! {
            // A finished flush is answered first: its writers have waited longest.
            biased;
            joined = async {
                match in_flight.as_mut() {
                    Some(flight) => (&mut flight.flush).await,
                    None => std::future::pending().await,
                }
            }, if in_flight.is_some() => {
                let Some(flight) = in_flight.take() else { continue };
                let flushed = joined.unwrap_or_else(|e| {
                    Err(StoreError::Engine(format!("flush task failed: {e}")))
                });
                spare = finish(flight, flushed.clone(), &metrics);
                last_flush = flushed;
            }
            command = commands.recv(), if accepting => {
                let Some(command) = command else {
                    senders_gone = true;
                    continue;
                };
                let mut next = Some(command);
                while let Some(command) = next.take() {
                    match command {
                        Command::Write(job) => pending.push(job(&trees)),
                        Command::Close(reply) => {
                            stop = Some(Stop::Close(reply));
                            break;
                        }
                        Command::Pause(reply) => {
                            stop = Some(Stop::Pause(reply));
                            break;
                        }
                    }
                    if pending.len() >= max_batch {
                        break;
                    }
                    next = commands.try_recv().ok();
                }
            }
        }
    }
}

/// Answers the writes a flush covered; returns their (emptied) buffer for reuse.
fn finish(
    mut flight: InFlight,
    flushed: Result<(), StoreError>,
    metrics: &crate::metrics::Metrics,
) -> Vec<Completion> {
    let batch = flight.completions.len();
    metrics
        .store_flush
        .observe_duration(flight.started.elapsed());
    #[allow(clippy::cast_precision_loss)]
    metrics.store_batch.observe(batch as f64);
    if let Err(e) = &flushed {
        crate::metrics::Metrics::incr(&metrics.store_flush_errors);
        tracing::error!(error = %e, batch, "store flush failed");
    } else {
        tracing::trace!(
            batch,
            micros = u64::try_from(flight.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "group commit"
        );
    }
    for completion in flight.completions.drain(..) {
        completion(flushed.clone());
    }
    flight.completions
}
