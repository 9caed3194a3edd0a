//! The single writer task: applies write jobs in arrival order and flushes once per batch
//! (group commit). Many concurrent writers share one fsync; none is told "done" before it.
//! Pipelined: the next batch is applied while the previous one's flush is on disk's way.
//!
//! A failed flush (a full disk) is a state, not an event: the writer refuses every write
//! without applying it, and every `store.recovery_probe_secs` checks the disk; once it has
//! room, the writer reopens the engine (sled 0.34 keeps an instance's first I/O error for good,
//! see [`super::engine::Live`]) and makes one probe write durable before it takes writes again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::engine::{Live, open_trees};
use super::{StoreError, Trees};
use crate::config::StoreConfig;

/// Called with the outcome of the flush that covers the job's write.
pub type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write: runs on the writer task with the trees, and returns what to do once the write is
/// durable; or, while writes fail, is told why it is refused (and applies nothing).
pub type Job = Box<dyn FnOnce(Result<&Trees, StoreError>) -> Option<Completion> + Send>;

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

/// The free space the disk needs before the writer tries writing again after a failure: room
/// for a few of sled's log segments (512 KiB each) and the snapshot it writes when it opens.
pub const RECOVERY_FREE_BYTES: u64 = 4 * 1024 * 1024;

/// How long a reopen waits for the old instance to be released (readers in the middle of a
/// read, a backup) before it gives up until the next probe.
const REOPEN_WAIT: Duration = Duration::from_secs(10);
const REOPEN_RETRY: Duration = Duration::from_millis(20);

/// The meta key the recovery probe writes (the time of the last recovery, Unix seconds).
const META_RECOVERED_AT: &[u8] = b"writes_resumed_at";

pub fn spawn(
    live: Arc<Live>,
    trees: Arc<Trees>,
    config: StoreConfig,
    metrics: Arc<crate::metrics::Metrics>,
) -> mpsc::Sender<Command> {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(run(live, trees, config, rx, metrics));
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

/// Bytes available to natter on the data dir's filesystem; `None` if it cannot be told.
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let stats = rustix::fs::statvfs(path).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Why writes fail, in a line for the log.
fn describe(failure: &StoreError) -> &'static str {
    match failure {
        StoreError::Full(_) => "the disk is full",
        _ => "the store cannot write",
    }
}

/// Applies writes in arrival order and group-commits them, pipelined: while one batch's flush
/// is on its way, the next batch is applied; it is flushed (by a flush called after its last
/// write) once the first flush is done. A completion runs only after a flush that began after
/// its write, so nothing is acknowledged before it is on disk.
async fn run(
    live: Arc<Live>,
    trees: Arc<Trees>,
    config: StoreConfig,
    mut commands: mpsc::Receiver<Command>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let max_batch = config.max_batch.max(1);
    // The open instance; `None` only while a reopen has not succeeded.
    let mut trees: Option<Arc<Trees>> = Some(trees);
    // Set while writes fail (sticky until a recovery proves a write durable).
    let mut failed: Option<StoreError> = None;
    let mut probe = tokio::time::interval(Duration::from_secs(config.recovery_probe_secs.max(1)));
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<Completion> = Vec::with_capacity(max_batch);
    // The buffer of the batch last answered, reused for the next one.
    let mut spare: Vec<Completion> = Vec::with_capacity(max_batch);
    let mut in_flight: Option<InFlight> = None;
    let mut stop: Option<Stop> = None;
    // Set once every sender is gone: finish what is queued, then end.
    let mut senders_gone = false;
    let mut last_flush: Result<(), StoreError> = Ok(());
    loop {
        if in_flight.is_none()
            && !pending.is_empty()
            && let Some(open) = &trees
        {
            let batch = std::mem::replace(&mut pending, std::mem::take(&mut spare));
            in_flight = Some(start_flush(&open.db, batch));
        }
        if in_flight.is_none() {
            // Everything applied is flushed and answered. A stop flushes once more anyway: it
            // promises that whatever came before it (writes made straight to the trees, too)
            // is on disk.
            if stop.is_some() {
                last_flush = match (&trees, &failed) {
                    (_, Some(failure)) => Err(failure.clone()),
                    (None, None) => Err(StoreError::Closed),
                    (Some(open), None) => {
                        // On a blocking thread like the batches' flushes: sled 0.34's
                        // `flush_async` has been seen to stall with several databases in one
                        // process.
                        let db = open.db.clone();
                        match tokio::task::spawn_blocking(move || db.flush()).await {
                            Ok(flushed) => flushed.map(|_| ()).map_err(StoreError::from),
                            Err(e) => Err(StoreError::Engine(format!("flush task failed: {e}"))),
                        }
                    }
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
                    live.set_trees(None);
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
        let recovering = failed.is_some() && in_flight.is_none() && pending.is_empty();
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
                if let (Err(e), None) = (&flushed, &failed) {
                    tracing::error!(
                        error = %e,
                        free_space_needed = RECOVERY_FREE_BYTES,
                        "{}: writes are refused until it can write again (checked every {} s; /readyz answers 503 meanwhile)",
                        describe(e),
                        config.recovery_probe_secs
                    );
                    failed = Some(e.clone());
                    live.set_failure(Some(e.clone()));
                    probe.reset();
                }
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
                        Command::Write(job) => match (&trees, &failed) {
                            (Some(open), None) => {
                                if let Some(completion) = job(Ok(open)) {
                                    pending.push(completion);
                                }
                            }
                            (_, Some(failure)) => {
                                let _ = job(Err(failure.clone()));
                            }
                            (None, None) => {
                                let _ = job(Err(StoreError::Closed));
                            }
                        },
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
            _ = probe.tick(), if recovering && stop.is_none() => {
                let Some(failure) = failed.clone() else { continue };
                if let Some(outcome) = recover(&live, &config, &mut trees, &mut commands, &failure).await {
                    match outcome {
                        Ok(()) => {
                            tracing::info!("the store writes again: writes are taken again");
                            failed = None;
                            live.set_failure(None);
                            last_flush = Ok(());
                        }
                        Err(Deferred(Some(command))) => {
                            // A stop that came in while the engine was reopened: handled
                            // once this turn is over (writes stay refused until a later
                            // probe).
                            match command {
                                Command::Close(reply) => stop = Some(Stop::Close(reply)),
                                Command::Pause(reply) => stop = Some(Stop::Pause(reply)),
                                Command::Write(_) => {}
                            }
                        }
                        Err(Deferred(None)) => {}
                    }
                }
            }
        }
    }
}

/// A stop (close, pause) met while draining the queue during a reopen.
struct Deferred(Option<Command>);

/// One recovery attempt, when the disk has room ([`RECOVERY_FREE_BYTES`]): reopens the engine
/// and makes a probe write durable. `None`: no room yet. `Some(Ok)`: writes can resume. `Some(Err)`: still failing (or
/// a stop came in), logged.
async fn recover(
    live: &Arc<Live>,
    config: &StoreConfig,
    trees: &mut Option<Arc<Trees>>,
    commands: &mut mpsc::Receiver<Command>,
    failure: &StoreError,
) -> Option<Result<(), Deferred>> {
    // A filesystem that cannot say how full it is gets the reopen and the probe write.
    let free = free_bytes(&config.data_dir);
    if let Some(free) = free
        && free < RECOVERY_FREE_BYTES
    {
        tracing::debug!(free, needed = RECOVERY_FREE_BYTES, "still no room to write");
        return None;
    }
    tracing::info!(
        free = free.unwrap_or(0),
        "the disk has room again: reopening the store to resume writes"
    );
    // The old instance goes first (sled locks its files): ours, the readers' copy, and those
    // of the queued writes (refused).
    *trees = None;
    live.set_trees(None);
    let deadline = tokio::time::Instant::now() + REOPEN_WAIT;
    let opened = loop {
        let mut deferred = None;
        while let Ok(command) = commands.try_recv() {
            match command {
                Command::Write(job) => {
                    let _ = job(Err(failure.clone()));
                }
                other if deferred.is_none() => deferred = Some(other),
                Command::Close(reply) => {
                    let _ = reply.send(Ok(()));
                }
                Command::Pause(_) => {}
            }
        }
        let reopen = config.clone();
        let result = tokio::task::spawn_blocking(move || open_trees(&reopen))
            .await
            .unwrap_or_else(|e| Err(StoreError::Engine(format!("reopen task failed: {e}"))));
        match result {
            Ok(open) => {
                if deferred.is_some() {
                    *trees = Some(open.clone());
                    live.set_trees(Some(open));
                    return Some(Err(Deferred(deferred)));
                }
                break open;
            }
            Err(StoreError::Locked(_)) if tokio::time::Instant::now() < deadline => {
                if deferred.is_some() {
                    // Wait for the old instance with the stop handled first: nothing is open.
                    return Some(Err(Deferred(deferred)));
                }
                // Still held by a reader that is finishing; polling is all sled offers.
                tokio::time::sleep(REOPEN_RETRY).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reopen the store yet; trying again at the next probe");
                return Some(Err(Deferred(deferred)));
            }
        }
    };
    *trees = Some(opened.clone());
    live.set_trees(Some(opened.clone()));
    // A write made durable on the new instance: proof that writes work again.
    let probe = opened.clone();
    let written = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        let now = super::now_secs().to_be_bytes();
        probe.meta.insert(META_RECOVERED_AT, &now)?;
        probe.db.flush()?;
        Ok(())
    })
    .await
    .unwrap_or_else(|e| Err(StoreError::Engine(format!("probe task failed: {e}"))));
    match written {
        Ok(()) => Some(Ok(())),
        Err(e) => {
            tracing::warn!(error = %e, "the store still cannot write; trying again at the next probe");
            Some(Err(Deferred(None)))
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
