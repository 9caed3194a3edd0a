//! A connection's outbound queue: the broker pushes deliveries without waiting, the
//! connection's task takes them. One sender (the broker's entry for the connection), one
//! receiver (its session).
//!
//! Not tokio's `mpsc::channel`: that allocates its channel state (cache-padded, 512 bytes) and
//! a first block of 32 slots (288 bytes) for every connection, used or not. Here an idle
//! connection's queue is one allocation of under 100 bytes, and its buffer exists only while
//! deliveries wait (issue #16: memory per idle connection).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// A buffer that grew past this while a burst waited is released once the queue is empty, so
/// a connection that once had a burst does not keep its buffer while idle.
const KEEP_CAPACITY: usize = 64;

struct Inner<T> {
    items: VecDeque<T>,
    /// The receiver's task, waiting for an item.
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

struct Shared<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
}

impl<T> Shared<T> {
    /// A panic while the lock was held cannot leave the queue inconsistent (every change is a
    /// single push, pop or flag), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why an item was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError {
    /// The queue holds `capacity` items: the receiver is not keeping up.
    Full,
    /// The receiver is gone.
    Closed,
}

/// Why nothing was taken.
#[derive(Debug, PartialEq, Eq)]
pub enum TryRecvError {
    Empty,
    /// The sender is gone and nothing is left.
    Disconnected,
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A queue of at most `capacity` items (at least one).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            items: VecDeque::new(),
            waker: None,
            sender_gone: false,
            receiver_gone: false,
        }),
        capacity: capacity.max(1),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Queues `item` without waiting.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError> {
        let waker = {
            let mut inner = self.shared.lock();
            if inner.receiver_gone {
                return Err(TrySendError::Closed);
            }
            if inner.items.len() >= self.shared.capacity {
                return Err(TrySendError::Full);
            }
            inner.items.push_back(item);
            inner.waker.take()
        };
        // Woken outside the lock: the receiver's task may run at once on another thread.
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut inner = self.shared.lock();
            inner.sender_gone = true;
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// Takes the oldest item without waiting.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut inner = self.shared.lock();
        match take(&mut inner) {
            Some(item) => Ok(item),
            None if inner.sender_gone => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// The oldest item, waiting for one; `None` once the sender is gone and nothing is left.
    /// Cancel-safe: an item is taken only when this returns it.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if let Some(item) = take(&mut inner) {
                return Poll::Ready(Some(item));
            }
            if inner.sender_gone {
                return Poll::Ready(None);
            }
            match &mut inner.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

fn take<T>(inner: &mut Inner<T>) -> Option<T> {
    let item = inner.items.pop_front()?;
    if inner.items.is_empty() && inner.items.capacity() > KEEP_CAPACITY {
        inner.items = VecDeque::new();
    }
    Some(item)
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // What is still queued goes now, not when the broker drops its end.
        let items = {
            let mut inner = self.shared.lock();
            inner.receiver_gone = true;
            inner.waker = None;
            std::mem::take(&mut inner.items)
        };
        drop(items);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_in_order() {
        let (tx, mut rx) = channel(2);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(TrySendError::Full));
        assert_eq!(rx.try_recv(), Ok(1));
        tx.try_send(3).unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn closed_once_the_receiver_is_gone() {
        let (tx, rx) = channel(4);
        tx.try_send(1).unwrap();
        drop(rx);
        assert_eq!(tx.try_send(2), Err(TrySendError::Closed));
    }

    #[test]
    fn a_drained_burst_releases_its_buffer() {
        let (tx, mut rx) = channel(1000);
        for i in 0..500 {
            tx.try_send(i).unwrap();
        }
        for i in 0..500 {
            assert_eq!(rx.try_recv(), Ok(i));
        }
        assert_eq!(rx.shared.lock().items.capacity(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recv_wakes_on_send_and_ends_with_the_sender() {
        let (tx, mut rx) = channel(8);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = rx.recv().await {
                got.push(item);
            }
            got
        });
        for i in 0..1000 {
            // Full while the reader lags: try again once it has taken some.
            while tx.try_send(i) == Err(TrySendError::Full) {
                tokio::task::yield_now().await;
            }
        }
        drop(tx);
        let got = reader.await.unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }
}
