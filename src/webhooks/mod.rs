//! Webhook building blocks (issue 17), not yet used by the daemon: [`sign`] signs a delivery
//! as the Standard Webhooks specification describes. It imports nothing of the crate: the
//! outbox, endpoints and config come later.

pub mod sign;
