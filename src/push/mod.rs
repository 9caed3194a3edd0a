//! Web Push building blocks (issue 17), not yet used by the daemon: [`ece`] encrypts a message
//! for a subscription (RFC 8291, `aes128gcm`), [`vapid`] holds the server's key pair and signs
//! the `Authorization` header (RFC 8292). Both on ring, the crate's one cryptography library.
//! They import nothing of the crate: delivery, subscriptions and config come later.

pub mod ece;
pub mod vapid;
