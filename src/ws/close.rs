//! Every WebSocket close code natter sends, in one table, and how a [`KickReason`] from the core
//! becomes one. Dialects name these constants; nothing below the WebSocket edge knows a close
//! code.

use crate::events::KickReason;

/// A normal close (the client's own close, answered).
pub const NORMAL: u16 = 1000;
/// The server is shutting down (standard "going away").
pub const GOING_AWAY: u16 = 1001;
/// A violation of the WebSocket framing (reserved bits or opcodes, an unmasked or fragmented
/// control frame, a continuation out of place, a bad close payload).
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text message that is not valid UTF-8 (standard "invalid frame payload data").
pub const INVALID_PAYLOAD: u16 = 1007;
/// A frame above `ws.max_frame_bytes` (standard "message too big").
pub const TOO_BIG: u16 = 1009;
/// The connection could not be set up for an internal reason (standard "internal error"; the
/// EduSphere and Kibray dialects, whose documents define no code of their own).
pub const INTERNAL_ERROR: u16 = 1011;
/// The server is at `ws.max_connections` (standard "try again later").
pub const TRY_AGAIN_LATER: u16 = 1013;
/// The peer did not answer the heartbeat in time.
pub const HEARTBEAT_TIMEOUT: u16 = 4000;
/// The connection fell `ws.outbound_queue` deliveries behind.
pub const SLOW_CONSUMER: u16 = 4008;
/// The connection's authentication ended (missing or bad token, logout, expiry, revocation).
pub const UNAUTHORIZED: u16 = 4401;
/// Its user may no longer be here (disabled, removed, or refused access to the room).
pub const FORBIDDEN: u16 = 4403;
/// The message rate limit was exceeded over and over, or too many connections.
pub const RATE_LIMITED: u16 = 4429;
/// The rooms dialect's "Internal Server Error".
pub const ROOMS_INTERNAL: u16 = 4500;

/// The close code and reason for a connection the core asked to end.
pub fn for_kick(reason: KickReason) -> (u16, &'static str) {
    let code = match reason {
        KickReason::SessionEnded(_) => UNAUTHORIZED,
        KickReason::AccountClosed(_) => FORBIDDEN,
        KickReason::SlowConsumer => SLOW_CONSUMER,
        KickReason::ShuttingDown => GOING_AWAY,
    };
    (code, reason.text())
}
