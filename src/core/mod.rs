//! The core: every rule about users, rooms and messages lives here, behind typed functions that
//! the edges (HTTP, WebSocket dialects, the admin CLI) call. It knows nothing of JSON or HTTP.

pub mod accounts;
pub mod chat;
pub mod conversations;
pub mod policy;
