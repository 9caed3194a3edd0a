//! What travels to subscribers: an event in an `Arc`, shared by every queue it is put on, with
//! the attachment the delivering edge made for it (its encodings), and each connection's
//! one-shot close request.

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::ConnId;
use crate::events::{Event, KickReason};

/// What the delivering edge keeps with each delivery (the WebSocket edge: one encoding per
/// dialect, made by the first receiver of that dialect and shared by the rest).
pub type Attachment = Box<dyn Any + Send + Sync>;

/// Makes a delivery's attachment when the event is published. It may thin the event: an event
/// only one encoding shows can be encoded here and the parts only that encoding needed dropped,
/// so that a queued delivery holds its frame once and not the payload again (a slow
/// subscriber's full queue is what bounds the memory it can hold).
pub type Prepare = Arc<dyn Fn(&mut Event) -> Attachment + Send + Sync>;

/// An event on its way to subscribers.
pub struct Delivery {
    pub event: Event,
    /// The connection whose request caused the event, when it must not receive it itself.
    pub skip: Option<ConnId>,
    /// When the event was made, for the delivery-latency metric.
    pub created: Instant,
    /// The delivering edge's data for this delivery (see [`Prepare`]).
    pub attachment: Attachment,
}

impl Delivery {
    pub(super) fn new(prepare: &Prepare, mut event: Event, skip: Option<ConnId>) -> Arc<Delivery> {
        let attachment = prepare(&mut event);
        Arc::new(Delivery {
            event,
            skip,
            created: Instant::now(),
            attachment,
        })
    }
}

/// A one-shot "please close" signal for one connection.
#[derive(Default)]
pub struct Kick {
    pub(super) token: CancellationToken,
    reason: OnceLock<KickReason>,
}

impl Kick {
    /// Asks the connection to close; the first reason wins.
    pub fn fire(&self, reason: KickReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// The reason, once fired.
    pub fn reason(&self) -> Option<KickReason> {
        self.reason.get().copied()
    }

    pub fn is_fired(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once fired, with the reason.
    pub async fn fired(&self) -> KickReason {
        self.token.cancelled().await;
        self.reason().unwrap_or(KickReason::ShuttingDown)
    }
}
