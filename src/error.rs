//! The one error type of natter's services, with a stable machine-readable code for each kind
//! and its mapping to HTTP status. WebSocket dialects map the same codes to their own shapes.
//! A leaf: the storage failures ([`StoreError`]) are defined here too, so that no layer needs the
//! store to name an error.

use std::path::PathBuf;
use std::time::Duration;

/// An error a client or operator can act on. `code()` strings are part of the API: never rename.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    /// Message content above the limit that applies to the request (typed, so that dialects can
    /// word it their way; code and text are those of the `bad_request` it used to be).
    #[error("message exceeds {max} characters")]
    ContentTooLong { max: usize },
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("expected content-type application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// The request body did not arrive within its time budget (`server.body_timeout_secs`).
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("refresh token was already used; the session has been revoked")]
    TokenReused,
    #[error("account is disabled")]
    AccountDisabled,
    #[error("{0}")]
    Forbidden(String),
    #[error("too many failed logins; try again in {} seconds", retry_after.as_secs().max(1))]
    TooManyAttempts { retry_after: Duration },
    #[error("{0}")]
    RateLimited(String),
    /// A connection over its rate for `what` (messages, typing indicators).
    #[error("rate limit exceeded: {per_minute} {what} per minute; retry in {retry_ms} ms")]
    Throttled {
        what: &'static str,
        per_minute: u32,
        retry_ms: u128,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A message to a peer without a one-to-one conversation open on this connection.
    #[error("{0}")]
    ConversationNotOpen(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Stable code for clients and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) | Error::ContentTooLong { .. } => "bad_request",
            Error::InvalidJson(_) => "invalid_json",
            Error::UnsupportedMediaType => "unsupported_media_type",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::RequestTimeout => "request_timeout",
            Error::InvalidCredentials => "invalid_credentials",
            Error::InvalidToken(_) => "invalid_token",
            Error::TokenReused => "token_reused",
            Error::AccountDisabled => "account_disabled",
            Error::Forbidden(_) => "forbidden",
            Error::TooManyAttempts { .. } => "too_many_attempts",
            Error::RateLimited(_) | Error::Throttled { .. } => "rate_limited",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) | Error::ConversationNotOpen(_) => "conflict",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::Unavailable(_) => "unavailable",
            Error::Store(StoreError::Full(_)) => "storage_full",
            Error::Store(_) => "storage_error",
            Error::Internal(_) => "internal",
        }
    }

    /// HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::BadRequest(_) | Error::ContentTooLong { .. } | Error::InvalidJson(_) => 400,
            Error::InvalidCredentials | Error::InvalidToken(_) | Error::TokenReused => 401,
            Error::AccountDisabled | Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed => 405,
            Error::RequestTimeout => 408,
            Error::Conflict(_) | Error::ConversationNotOpen(_) => 409,
            Error::PayloadTooLarge { .. } => 413,
            Error::UnsupportedMediaType => 415,
            Error::TooManyAttempts { .. } | Error::RateLimited(_) | Error::Throttled { .. } => 429,
            // 507 Insufficient Storage: the disk is full, nothing was stored.
            Error::Store(StoreError::Full(_)) => 507,
            Error::Store(_) | Error::Internal(_) => 500,
            Error::Unavailable(_) => 503,
        }
    }

    /// The numeric code of the native WebSocket protocol's `Error` frame (400, 401, 403, 404,
    /// 429, 500, 503): HTTP's, folded into the codes that protocol documents.
    pub fn ws_code(&self) -> u16 {
        match self.http_status() {
            405 | 408 | 409 | 413 | 415 => 400,
            507 => 500,
            other => other,
        }
    }

    /// The message shown to a client: internal details stay in the log.
    pub fn public_message(&self) -> String {
        match self {
            Error::Store(StoreError::Full(_)) => "storage is full: nothing was stored".to_owned(),
            Error::Store(_) | Error::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A storage failure. Clone, because one failed flush fails every write of its batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("natter is already running with data dir {0} (or another process holds it)")]
    Locked(PathBuf),
    #[error(
        "data dir {path} was written by a newer natter (schema version {found}; this build supports up to {supported})"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("cannot use data dir {path}: {detail}")]
    Open { path: PathBuf, detail: String },
    #[error("{0}")]
    Engine(String),
    /// The filesystem is full (or over quota): the write was not stored. sled refuses every
    /// later write too, until natter is restarted with space available.
    #[error("the data dir's filesystem is full: {0}")]
    Full(String),
    #[error("corrupt record in {tree}: {detail}")]
    Corrupt { tree: &'static str, detail: String },
    #[error("the store is closed")]
    Closed,
}
