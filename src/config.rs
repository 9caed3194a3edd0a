//! Configuration: defaults, the TOML file, `NATTER_<SECTION>_<FIELD>` environment overrides and
//! command-line flags, applied in that order, then validated as a whole.
//!
//! Every field has a default, so natter runs with no config file at all. Unknown fields are an
//! error that names the file and line, because a misspelt option that is silently ignored is a
//! production incident waiting to happen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variables that are not config overrides. `NATTER_TEST_PYTHON` is the test
/// suite's (the python that checks webhooks, see tests/webhooks.rs): a daemon a test starts
/// inherits it.
const RESERVED_ENV: &[&str] = &["NATTER_CONFIG", "NATTER_LOG", "NATTER_TEST_PYTHON"];

/// A config problem, reported to the operator verbatim.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub accounts: AccountsConfig,
    pub ws: WsConfig,
    pub log: LogConfig,
    pub dialects: DialectsConfig,
    pub fastchat: FastChatConfig,
    pub kibray: KibrayConfig,
    pub limits: LimitsConfig,
    pub control: ControlConfig,
    pub tls: TlsConfig,
    pub metrics: MetricsConfig,
    pub webhooks: WebhooksConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address for HTTP and WebSocket clients.
    pub listen: String,
    /// Largest accepted HTTP request body, in bytes (413 above it).
    pub max_body_bytes: u64,
    /// Largest file accepted by `POST /api/v1/rooms/{room}/files`, in bytes (413 above it). An
    /// upload streams to a temporary file under `DATA_DIR/files/`, not into memory.
    pub max_upload_bytes: u64,
    /// How long the body of `POST /api/v1/rooms/{room}/files` may keep the server waiting for
    /// its next bytes, in seconds; then the upload is dropped (408 `request_timeout`, the
    /// connection closes) and its temporary file removed. Also the grace period of
    /// `upload_min_bytes_per_sec`.
    pub upload_idle_timeout_secs: u64,
    /// Slowest average rate an HTTP upload may arrive at once it has run for
    /// `upload_idle_timeout_secs`, in bytes per second; slower, it is dropped (408). 0: no
    /// minimum.
    pub upload_min_bytes_per_sec: u64,
    /// Uploads one user may have in progress at once (HTTP and Kibray together); one more is
    /// refused with 429 `rate_limited` (Kibray: `RATE_LIMIT_EXCEEDED`).
    pub max_uploads_per_user: usize,
    /// Files that no stored message lists (a binary file transfer never attached, a file sent to
    /// a room that keeps no messages) are deleted once they are this many seconds old.
    pub unattached_file_ttl_secs: u64,
    /// How long shutdown waits for in-flight requests and WebSocket closes, in seconds.
    pub shutdown_grace_secs: u64,
    /// How long a client may take to send its request headers, in seconds (slowloris bound).
    pub header_read_timeout_secs: u64,
    /// Take the client address from the last `X-Forwarded-For` entry (set this only behind a
    /// reverse proxy you run; otherwise clients could pick their own address for login throttling).
    pub trust_forwarded_for: bool,
    /// How long a request body may take to arrive, in seconds; a larger body may take longer as
    /// long as it keeps `body_min_bytes_per_sec` on average. Past that: 408, connection closed.
    pub body_timeout_secs: u64,
    /// The average rate, in bytes per second since its start, that a body taking longer than
    /// `body_timeout_secs` must keep.
    pub body_min_bytes_per_sec: u64,
    /// Connections still in the HTTP stage (not upgraded to a WebSocket, which
    /// `ws.max_connections` counts) at once. Lowered at start to what the open-file limit leaves
    /// beside `ws.max_connections`. Past it, a connection only gets `/healthz` and `/readyz`
    /// (others 503).
    pub max_http_connections: usize,
    /// Connections in the HTTP stage at once from one client address (the TCP peer's, whatever
    /// `trust_forwarded_for` says).
    pub max_http_connections_per_ip: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8000".to_owned(),
            max_body_bytes: 64 * 1024,
            max_upload_bytes: 10 * 1024 * 1024,
            upload_idle_timeout_secs: 10,
            upload_min_bytes_per_sec: 8192,
            max_uploads_per_user: 4,
            unattached_file_ttl_secs: 24 * 3600,
            shutdown_grace_secs: 10,
            header_read_timeout_secs: 10,
            trust_forwarded_for: false,
            body_timeout_secs: 30,
            body_min_bytes_per_sec: 4096,
            max_http_connections: 4096,
            max_http_connections_per_ip: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where users, rooms, messages and secrets live.
    pub data_dir: PathBuf,
    /// sled's page cache, in MiB (sled's own default is 1 GiB, too much for a small board).
    pub cache_capacity_mb: u64,
    /// sled's periodic background flush, in milliseconds; 0 turns it off. Every write natter
    /// acknowledges is flushed by the group-commit writer anyway, so the periodic flush only
    /// bounds how much unacknowledged bookkeeping (e.g. last_seen) a power cut can lose.
    pub flush_every_ms: u64,
    /// Most writes one group commit gathers before it flushes.
    pub max_batch: usize,
    /// While writes fail (a full disk), how often the writer checks for room, in seconds; once
    /// there is room it reopens the store and takes writes again, without a restart.
    pub recovery_probe_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./natter-data"),
            cache_capacity_mb: 64,
            flush_every_ms: 0,
            max_batch: 1024,
            recovery_probe_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of an access token (JWT), in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh-token family from its login, in seconds.
    pub refresh_token_ttl_secs: u64,
    /// `iss` claim of issued tokens, checked on use.
    pub issuer: String,
    /// `aud` claim of issued tokens, checked on use.
    pub audience: String,
    /// File holding the HS256 signing secret. Empty: `<data_dir>/jwt-secret`, generated on first
    /// start with mode 0600.
    pub jwt_secret_file: PathBuf,
    /// argon2id memory cost, in KiB.
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
    /// Shortest password accepted when a password is set.
    pub min_password_length: usize,
    /// Failed logins per username, and per client address, before logins are refused (429).
    pub login_max_failures: u32,
    /// The window those failures are counted in, in seconds.
    pub login_window_secs: u64,
    /// Other applications whose JWTs are accepted (`[[auth.external]]` tables); none by default.
    /// A token whose `iss` names one of them is verified with that issuer's key, and its user is
    /// created on first sight.
    pub external: Vec<ExternalIssuerConfig>,
}

/// Accounts a team runs itself: invite links.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Most invite links pending (created, not yet used, revoked or expired) at once.
    pub max_pending_invites: usize,
    /// Lifetime of an invite link when its creator names none, in seconds.
    pub invite_ttl_secs: u64,
    /// Longest lifetime an invite link may be given, in seconds.
    pub max_invite_ttl_secs: u64,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            max_pending_invites: 100,
            invite_ttl_secs: 7 * 24 * 3600,
            max_invite_ttl_secs: 30 * 24 * 3600,
        }
    }
}

/// Signature algorithm of an external issuer, pinned: the `alg` of a token's header is never
/// trusted, a token signed any other way is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExternalAlgorithm {
    /// HMAC-SHA256 with a shared secret (`secret_file`).
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256; the issuer's public key is `public_key_file`.
    RS256,
    /// Ed25519; the issuer's public key is `public_key_file`.
    EdDSA,
}

/// One `[[auth.external]]` table: an application that issues its own JWTs for natter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalIssuerConfig {
    /// The `iss` claim its tokens carry (required, and different from `auth.issuer`).
    pub issuer: String,
    /// The `aud` claim its tokens must carry; empty: `aud` is not checked.
    pub audience: String,
    /// `HS256`, `RS256` or `EdDSA`.
    pub algorithm: ExternalAlgorithm,
    /// HS256: file holding the shared secret (at least 32 bytes; surrounding whitespace ignored).
    pub secret_file: PathBuf,
    /// RS256 / EdDSA: the issuer's public key, a PEM file (`PUBLIC KEY`; for RS256 also
    /// `RSA PUBLIC KEY`, 2048 to 8192 bits).
    pub public_key_file: PathBuf,
    /// Claim holding the issuer's stable user id (a string or an integer).
    pub user_id_claim: String,
    /// Claim holding the preferred username; when a token lacks it, the user id is used. Either
    /// is lowercased and sanitized to natter's username rules, and a numeric suffix is added
    /// when the name is taken.
    pub username_claim: String,
    /// Role of a user created on first sight (`user` or `admin`); later changes are natter's.
    pub default_role: crate::principal::Role,
}

impl Default for ExternalIssuerConfig {
    fn default() -> Self {
        ExternalIssuerConfig {
            issuer: String::new(),
            audience: String::new(),
            algorithm: ExternalAlgorithm::HS256,
            secret_file: PathBuf::new(),
            public_key_file: PathBuf::new(),
            user_id_claim: "sub".to_owned(),
            username_claim: "username".to_owned(),
            default_role: crate::principal::Role::User,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            issuer: "natter".to_owned(),
            audience: "natter".to_owned(),
            jwt_secret_file: PathBuf::new(),
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            min_password_length: 8,
            login_max_failures: 5,
            login_window_secs: 15 * 60,
            external: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    /// Largest WebSocket message (and frame) accepted, in bytes; a larger one closes with 1009.
    pub max_frame_bytes: usize,
    /// Longest chat message content, in characters.
    pub max_message_chars: usize,
    /// Sustained rate of messages (Send, Broadcast, DirectMessage, Edit, binary, HTTP posts
    /// and uploads, ...) per user per minute; above it (after the burst) a request gets 429.
    pub messages_per_minute: u32,
    /// Messages a user may send at once above the sustained rate. The rate and the burst are
    /// per user: every connection and HTTP request of the user draws on the same bucket, so a
    /// reconnect does not refill it.
    pub message_burst: u32,
    /// Typing notifications per user per minute; extra ones are dropped silently.
    pub typing_per_minute: u32,
    /// Topic subscriptions per connection.
    pub max_subscriptions: usize,
    /// Rooms joined at once per connection.
    pub max_joined_rooms: usize,
    /// Concurrent WebSocket connections per user; the next one is refused (Error 429, close 4429).
    pub max_connections_per_user: usize,
    /// Concurrent WebSocket connections in total; the next one is refused (Error 503, close 1013).
    pub max_connections: usize,
    /// Frames waiting to be written to one connection; a subscriber that falls this far behind
    /// is disconnected (close 4008) so it never slows anyone else.
    pub outbound_queue: usize,
    /// Seconds between server pings.
    pub ping_interval_secs: u64,
    /// Seconds a peer has to show life (a Pong or any frame) after a ping before it is closed.
    pub pong_timeout_secs: u64,
    /// Seconds before access-token expiry at which `AuthStatus token_expiring` is sent.
    pub expiry_warning_secs: u64,
    /// Seconds after access-token expiry before a connection that did not renew is closed (4401).
    pub expiry_grace_secs: u64,
    /// Most messages replayed by a Join with `since`; beyond it the Join says `complete: false`.
    pub max_replay: usize,
    /// Most bytes (of stored messages) one Join replays; beyond it the Join says
    /// `complete: false` and the client pages on with History. At least one message is
    /// replayed whatever its size.
    pub max_replay_bytes: usize,
    /// Joins (native `Join`, rooms `join_room`) per user per minute; a whole connection's rooms
    /// (`max_joined_rooms`) may come at once. Beyond: Error 429, nothing joined.
    pub joins_per_minute: u32,
    /// Most messages one History request returns.
    pub max_history: usize,
    /// Offline direct messages kept per user; a DirectMessage beyond is refused (429).
    pub max_queued_direct_messages: usize,
    /// Bytes of offline direct messages kept per user; a DirectMessage beyond is refused.
    pub max_queued_direct_bytes: usize,
    /// Offline direct messages one sender may have queued for one user (a share of
    /// `max_queued_direct_messages`, so one sender cannot fill another user's queue alone).
    pub max_queued_direct_messages_per_sender: usize,
    /// Bytes of offline direct messages one sender may have queued for one user.
    pub max_queued_direct_bytes_per_sender: usize,
    /// Browser origins allowed to open WebSockets besides the server's own origin, e.g.
    /// `["https://chat.example.com"]`. Clients that send no Origin (non-browsers) are always allowed.
    pub allowed_origins: Vec<String>,
    /// Accept permessage-deflate (RFC 7692) when a client offers it. natter imposes
    /// `server_no_context_takeover` and `client_no_context_takeover`, so a connection keeps no
    /// compression state.
    pub permessage_deflate: bool,
    /// Test only: serve `/ws/echo`, an unauthenticated endpoint that echoes every text and
    /// binary message back, through the same upgrade and WebSocket configuration as `/ws`. It
    /// exists so a WebSocket conformance suite (Autobahn cases) can exercise that layer; never
    /// turn it on in production.
    pub conformance_echo: bool,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_frame_bytes: 1024 * 1024,
            max_message_chars: 4000,
            messages_per_minute: 120,
            message_burst: 20,
            typing_per_minute: 30,
            max_subscriptions: 100,
            max_joined_rooms: 100,
            max_connections_per_user: 5,
            max_connections: 10_000,
            outbound_queue: 256,
            ping_interval_secs: 30,
            pong_timeout_secs: 10,
            expiry_warning_secs: 60,
            expiry_grace_secs: 30,
            max_replay: 1000,
            max_replay_bytes: 1024 * 1024,
            joins_per_minute: 60,
            max_history: 200,
            max_queued_direct_messages: 1000,
            max_queued_direct_bytes: 8 * 1024 * 1024,
            max_queued_direct_messages_per_sender: 250,
            max_queued_direct_bytes_per_sender: 2 * 1024 * 1024,
            allowed_origins: Vec::new(),
            permessage_deflate: true,
            conformance_echo: false,
        }
    }
}

/// Limits that a compatibility dialect's protocol documents differently from natter's own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DialectsConfig {
    /// Longest message content on the EduSphere endpoint (`/ws/chat/{host}/{room}`), in
    /// characters; it replaces `ws.max_message_chars` there, and its clients are told
    /// "Message exceeds {max} characters." above it (the EduSphere document says 500).
    pub edusphere_max_message_chars: usize,
}

impl Default for DialectsConfig {
    fn default() -> Self {
        DialectsConfig {
            edusphere_max_message_chars: 500,
        }
    }
}

/// The Kibray dialect (`/ws/chat/{room}/`, `/ws/notifications/`, `/ws/status/`): the limits its
/// protocol documents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KibrayConfig {
    /// Frames per connection in any rolling 60 seconds (the Kibray document's `WEBSOCKET_RATE_LIMIT`);
    /// beyond: `{"type": "error", ..., "code": "RATE_LIMIT_EXCEEDED"}`, and close 4429 after as
    /// many refusals in a row.
    pub messages_per_minute: u32,
    /// Longest message content, in characters after markup is stripped (replaces
    /// `ws.max_message_chars` on the Kibray chat endpoint); beyond: `MESSAGE_TOO_LARGE`.
    pub max_message_chars: usize,
    /// Largest file `upload_file` accepts, in bytes; beyond: `MESSAGE_TOO_LARGE`. An upload in
    /// progress (one per connection) streams its chunks to a temporary file under
    /// `DATA_DIR/files/`, removed if the upload is abandoned or its connection closes.
    pub max_upload_bytes: u64,
}

impl Default for KibrayConfig {
    fn default() -> Self {
        KibrayConfig {
            messages_per_minute: 60,
            max_message_chars: 4000,
            max_upload_bytes: 10 * 1024 * 1024,
        }
    }
}

/// Per-user bounds on what accounts create and keep, over every protocol and HTTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Rooms one user may own (created by name; direct and personal rooms do not count).
    /// Admins are exempt: they create rooms for others (backends, the operator). Beyond: 403.
    pub max_rooms_per_user: usize,
    /// Rooms one user may create per minute, sustained (admins exempt). Beyond: 429.
    pub room_creations_per_minute: u32,
    /// Rooms one user may create at once above that rate.
    pub room_creation_burst: u32,
    /// Searches (`GET /api/v1/search`) one user may run per minute, sustained. Beyond: 429.
    pub searches_per_minute: u32,
    /// Searches one user may run at once above that rate.
    pub search_burst: u32,
    /// Notifications kept in one user's inbox; a new one beyond drops the oldest
    /// (`natter_notifications_dropped_total`).
    pub max_notifications_per_user: usize,
    /// Mentions kept per user (what the per-room mention counts and `GET /api/v1/me/mentions`
    /// are made of); a new one beyond drops the user's oldest.
    pub max_mentions_per_user: usize,
    /// Rate-limit buckets kept in memory (one per user and rate in use). Buckets that are
    /// full again are dropped first (that loses nothing); beyond, arbitrary ones are.
    pub max_rate_buckets: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_rooms_per_user: 200,
            room_creations_per_minute: 5,
            room_creation_burst: 20,
            searches_per_minute: 60,
            search_burst: 20,
            max_notifications_per_user: 1000,
            max_mentions_per_user: 1000,
            max_rate_buckets: 100_000,
        }
    }
}

/// The FastChat dialect at `/ws` (a connection whose first frame is `HELLO`): the limits its
/// protocol documents, its heartbeat, and whether clients without a token may join as guests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FastChatConfig {
    /// Admit clients without a token as guests: their HELLO names them (no account, nothing
    /// stored, live chats only, gone when they disconnect). Off: no token is refused with 4401.
    pub guests: bool,
    /// How long a connection without a token may take to send its HELLO (guests only), in
    /// seconds; then it is closed with 4401.
    pub hello_timeout_secs: u64,
    /// Guests connected at once, at most (and never more than half of `ws.max_connections`,
    /// so guests cannot take the connections accounts need). Beyond: ERROR, close 1013.
    pub max_guests: usize,
    /// Guests connected at once from one client address. Beyond: ERROR RATE_LIMITED, close 4429.
    pub max_guests_per_ip: usize,
    /// Longest message content, in characters (after markup is stripped); it replaces
    /// `ws.max_message_chars` for FastChat.
    pub max_message_chars: usize,
    /// Shortest and longest display name, in characters (after markup is stripped).
    pub display_name_min_chars: usize,
    pub display_name_max_chars: usize,
    /// MSG per connection per minute; a whole minute's worth may come at once, then they
    /// refill evenly. Beyond: ERROR RATE_LIMITED, and close 4429 after a minute's worth of those.
    pub messages_per_minute: u32,
    /// TYPING per connection per minute, the same way.
    pub typing_per_minute: u32,
    /// Server WebSocket ping interval on FastChat connections, and how long the client has to
    /// answer, in seconds (they replace `ws.ping_interval_secs` and `ws.pong_timeout_secs`).
    pub ping_interval_secs: u64,
    pub pong_timeout_secs: u64,
}

impl Default for FastChatConfig {
    fn default() -> Self {
        FastChatConfig {
            guests: false,
            hello_timeout_secs: 10,
            max_guests: 1000,
            max_guests_per_ip: 10,
            max_message_chars: 1000,
            display_name_min_chars: 3,
            display_name_max_chars: 50,
            messages_per_minute: 60,
            typing_per_minute: 10,
            ping_interval_secs: 15,
            pong_timeout_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `natter=debug,warp=info`, ... (`NATTER_LOG` wins).
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: "text".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Serve the admin control socket (the CLI's way into a running daemon).
    pub enabled: bool,
    /// Path of the Unix socket. Empty: `$RUNTIME_DIRECTORY/natter.sock` when systemd gives a
    /// runtime directory, else `<data_dir>/natter.sock`. Mode 0660; only root and the daemon's
    /// own user are served (peer credentials).
    pub socket: PathBuf,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            enabled: true,
            socket: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain. With `key_file`, natter serves https and wss itself (reloaded on
    /// SIGHUP); empty: plain HTTP, e.g. behind a reverse proxy.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the certificate.
    pub key_file: PathBuf,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics at `GET /metrics`.
    pub enabled: bool,
    /// A separate address for `/metrics` (e.g. 127.0.0.1:9100); then it is not served on
    /// `server.listen`. Empty: on `server.listen`.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: String::new(),
        }
    }
}

/// Signed, durable webhooks (see `crate::webhooks`): how they are delivered, and the
/// endpoints the file defines (`[[webhooks.endpoints]]`; more can be added with
/// `natter webhook add`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Test-only: lets deliveries go to loopback, private and link-local addresses and over
    /// plain http. Never in production: an endpoint could then reach the host's own services.
    pub allow_private_addresses: bool,
    /// How long one delivery may take (connect, send, answer), in seconds.
    pub timeout_secs: u64,
    /// Events kept per endpoint while undelivered; beyond it the oldest are dropped (counted
    /// in `natter_webhook_dropped_total`, one warning per overflow episode).
    pub max_pending: u64,
    /// Consecutive failed deliveries after which an endpoint is disabled, until `natter
    /// webhook enable`.
    pub disable_after: u64,
    /// How long a user must be without a connection before `user.offline` is sent, in seconds
    /// (a reconnect within it sends neither `user.offline` nor another `user.online`).
    pub offline_grace_secs: u64,
    /// The first retry's delay, in milliseconds; each further failure doubles it (with
    /// jitter), up to `backoff_max_secs`.
    pub backoff_base_ms: u64,
    /// The longest delay between retries, in seconds.
    pub backoff_max_secs: u64,
    /// Endpoints defined in the file.
    pub endpoints: Vec<WebhookEndpointConfig>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allow_private_addresses: false,
            timeout_secs: 10,
            max_pending: 10_000,
            disable_after: 50,
            offline_grace_secs: 30,
            backoff_base_ms: 1000,
            backoff_max_secs: 600,
            endpoints: Vec::new(),
        }
    }
}

/// One `[[webhooks.endpoints]]` table.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookEndpointConfig {
    /// Where events are POSTed (https; http only with `allow_private_addresses`).
    pub url: String,
    /// Event types it receives (`message.created`, ...; `*`: all).
    pub events: Vec<String>,
    /// The signing secret, `whsec_` and base64 of 24 to 64 bytes.
    pub secret: String,
    /// `false`: defined but not delivered to (events still queue, up to the bound).
    pub enabled: bool,
}

impl std::fmt::Debug for WebhookEndpointConfig {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpointConfig")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Default for WebhookEndpointConfig {
    fn default() -> Self {
        WebhookEndpointConfig {
            url: String::new(),
            events: Vec::new(),
            secret: String::new(),
            enabled: true,
        }
    }
}

/// Flags that override the config (they win over the file and the environment).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads defaults, then `path` (if any), then the process environment, then `overrides`,
    /// and validates the result.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(path, &env, overrides)
    }

    /// [`Config::load`] with an explicit environment (for tests and for clarity).
    pub fn load_from(
        path: Option<&Path>,
        env: &[(String, String)],
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!("cannot read config file {}: {e}", path.display()))
                })?;
                toml::from_str::<Config>(&text)
                    .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        if let Some(listen) = &overrides.listen {
            config.server.listen = listen.clone();
        }
        if let Some(dir) = &overrides.data_dir {
            config.store.data_dir = dir.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// Applies `NATTER_<SECTION>_<FIELD>=value`. The value is read as a TOML value when it parses
    /// as one (numbers, booleans) and as a string otherwise.
    fn apply_env(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
        let mut overrides: Vec<(&str, &str, &str)> = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("NATTER_") else {
                continue;
            };
            if RESERVED_ENV.contains(&name.as_str()) {
                continue;
            }
            let Some((section, field)) = rest.split_once('_') else {
                return Err(ConfigError(format!(
                    "environment variable {name}: expected NATTER_<SECTION>_<FIELD>"
                )));
            };
            overrides.push((section, field, value));
        }
        if overrides.is_empty() {
            return Ok(());
        }
        let mut table = toml::Table::try_from(&*self)
            .map_err(|e| ConfigError(format!("internal: cannot represent config: {e}")))?;
        for (section, field, value) in overrides {
            let env_name = format!("NATTER_{section}_{field}");
            let section_key = section.to_ascii_lowercase();
            let field_key = field.to_ascii_lowercase();
            let Some(toml::Value::Table(section_table)) = table.get_mut(&section_key) else {
                return Err(ConfigError(format!(
                    "environment variable {env_name}: there is no config section [{section_key}]"
                )));
            };
            let Some(current) = section_table.get(&field_key) else {
                return Err(ConfigError(format!(
                    "environment variable {env_name}: section [{section_key}] has no field {field_key}"
                )));
            };
            let parsed = match current {
                toml::Value::String(_) => toml::Value::String(value.to_owned()),
                _ => toml::from_str::<toml::Table>(&format!("v = {value}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "environment variable {env_name}: {value:?} is not a valid {}",
                            current.type_str()
                        ))
                    })?,
            };
            section_table.insert(field_key, parsed);
        }
        *self = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError(format!("environment override: {e}")))?;
        Ok(())
    }

    /// Checks every value that has a domain narrower than its type.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.listen_addr().is_err() {
            problems.push(format!(
                "server.listen: {:?} is not an address like 127.0.0.1:8000",
                self.server.listen
            ));
        }
        if self.server.max_body_bytes == 0 {
            problems.push("server.max_body_bytes must be at least 1".to_owned());
        }
        if self.server.max_upload_bytes == 0 {
            problems.push("server.max_upload_bytes must be at least 1".to_owned());
        }
        if self.server.upload_idle_timeout_secs == 0 {
            problems.push("server.upload_idle_timeout_secs must be at least 1".to_owned());
        }
        if self.server.max_uploads_per_user == 0 {
            problems.push("server.max_uploads_per_user must be at least 1".to_owned());
        }
        if self.server.unattached_file_ttl_secs == 0 {
            problems.push("server.unattached_file_ttl_secs must be at least 1".to_owned());
        }
        if self.server.header_read_timeout_secs == 0 {
            problems.push("server.header_read_timeout_secs must be at least 1".to_owned());
        }
        for (name, value) in [
            ("server.body_timeout_secs", self.server.body_timeout_secs),
            (
                "server.body_min_bytes_per_sec",
                self.server.body_min_bytes_per_sec,
            ),
            (
                "server.max_http_connections",
                u64::try_from(self.server.max_http_connections).unwrap_or(u64::MAX),
            ),
            (
                "server.max_http_connections_per_ip",
                u64::try_from(self.server.max_http_connections_per_ip).unwrap_or(u64::MAX),
            ),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        if self.store.recovery_probe_secs == 0 {
            problems.push("store.recovery_probe_secs must be at least 1".to_owned());
        }
        if self.store.data_dir.as_os_str().is_empty() {
            problems.push("store.data_dir must not be empty".to_owned());
        }
        if self.store.cache_capacity_mb == 0 {
            problems.push("store.cache_capacity_mb must be at least 1".to_owned());
        }
        if self.store.max_batch == 0 {
            problems.push("store.max_batch must be at least 1".to_owned());
        }
        if self.auth.access_token_ttl_secs < 5 {
            problems.push("auth.access_token_ttl_secs must be at least 5".to_owned());
        }
        if self.auth.refresh_token_ttl_secs < self.auth.access_token_ttl_secs {
            problems.push(
                "auth.refresh_token_ttl_secs must be at least auth.access_token_ttl_secs"
                    .to_owned(),
            );
        }
        if self.auth.issuer.is_empty() || self.auth.audience.is_empty() {
            problems.push("auth.issuer and auth.audience must not be empty".to_owned());
        }
        if let Err(e) = argon2::Params::new(
            self.auth.argon2_memory_kib,
            self.auth.argon2_iterations,
            self.auth.argon2_parallelism,
            None,
        ) {
            problems.push(format!("auth.argon2_*: {e}"));
        }
        if self.auth.min_password_length == 0 || self.auth.min_password_length > 1024 {
            problems.push("auth.min_password_length must be between 1 and 1024".to_owned());
        }
        if self.accounts.max_pending_invites == 0
            || self.accounts.invite_ttl_secs == 0
            || self.accounts.invite_ttl_secs > self.accounts.max_invite_ttl_secs
        {
            problems.push(
                "accounts.max_pending_invites and accounts.invite_ttl_secs must be at least 1, and invite_ttl_secs at most max_invite_ttl_secs".to_owned(),
            );
        }
        if self.auth.login_max_failures == 0 || self.auth.login_window_secs == 0 {
            problems.push(
                "auth.login_max_failures and auth.login_window_secs must be at least 1".to_owned(),
            );
        }
        self.validate_external_issuers(&mut problems);
        self.validate_webhooks(&mut problems);
        let ws = &self.ws;
        for (name, value) in [
            ("ws.max_frame_bytes", ws.max_frame_bytes),
            ("ws.max_message_chars", ws.max_message_chars),
            ("ws.max_subscriptions", ws.max_subscriptions),
            ("ws.max_joined_rooms", ws.max_joined_rooms),
            ("ws.max_connections_per_user", ws.max_connections_per_user),
            ("ws.max_connections", ws.max_connections),
            ("ws.outbound_queue", ws.outbound_queue),
            ("ws.max_replay", ws.max_replay),
            ("ws.max_history", ws.max_history),
            (
                "ws.max_queued_direct_messages",
                ws.max_queued_direct_messages,
            ),
            (
                "ws.max_queued_direct_messages_per_sender",
                ws.max_queued_direct_messages_per_sender,
            ),
            ("fastchat.max_guests", self.fastchat.max_guests),
            (
                "fastchat.max_guests_per_ip",
                self.fastchat.max_guests_per_ip,
            ),
            ("limits.max_rooms_per_user", self.limits.max_rooms_per_user),
            (
                "limits.max_notifications_per_user",
                self.limits.max_notifications_per_user,
            ),
            (
                "limits.max_mentions_per_user",
                self.limits.max_mentions_per_user,
            ),
            ("limits.max_rate_buckets", self.limits.max_rate_buckets),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        for (name, value) in [
            ("ws.max_replay_bytes", ws.max_replay_bytes),
            ("ws.max_queued_direct_bytes", ws.max_queued_direct_bytes),
            (
                "ws.max_queued_direct_bytes_per_sender",
                ws.max_queued_direct_bytes_per_sender,
            ),
        ] {
            if value < 1024 {
                problems.push(format!("{name} must be at least 1024"));
            }
        }
        if ws.joins_per_minute == 0
            || self.limits.room_creations_per_minute == 0
            || self.limits.room_creation_burst == 0
            || self.limits.searches_per_minute == 0
            || self.limits.search_burst == 0
        {
            problems.push(
                "ws.joins_per_minute, limits.room_creations_per_minute, \
                 limits.room_creation_burst, limits.searches_per_minute and \
                 limits.search_burst must be at least 1"
                    .to_owned(),
            );
        }
        if ws.messages_per_minute == 0 || ws.message_burst == 0 || ws.typing_per_minute == 0 {
            problems.push(
                "ws.messages_per_minute, ws.message_burst and ws.typing_per_minute must be at least 1"
                    .to_owned(),
            );
        }
        if ws.ping_interval_secs == 0 || ws.pong_timeout_secs == 0 {
            problems.push(
                "ws.ping_interval_secs and ws.pong_timeout_secs must be at least 1".to_owned(),
            );
        }
        if ws.max_frame_bytes < 1024 {
            problems.push("ws.max_frame_bytes must be at least 1024".to_owned());
        }
        if self.dialects.edusphere_max_message_chars == 0 {
            problems.push("dialects.edusphere_max_message_chars must be at least 1".to_owned());
        }
        if self.kibray.messages_per_minute == 0
            || self.kibray.max_message_chars == 0
            || self.kibray.max_upload_bytes == 0
        {
            problems.push(
                "kibray.messages_per_minute, max_message_chars and max_upload_bytes must be at least 1"
                    .to_owned(),
            );
        }
        let fastchat = &self.fastchat;
        if fastchat.hello_timeout_secs == 0
            || fastchat.max_message_chars == 0
            || fastchat.messages_per_minute == 0
            || fastchat.typing_per_minute == 0
            || fastchat.ping_interval_secs == 0
            || fastchat.pong_timeout_secs == 0
        {
            problems.push(
                "fastchat.hello_timeout_secs, max_message_chars, messages_per_minute, \
                 typing_per_minute, ping_interval_secs and pong_timeout_secs must be at least 1"
                    .to_owned(),
            );
        }
        if fastchat.display_name_min_chars == 0
            || fastchat.display_name_min_chars > fastchat.display_name_max_chars
        {
            problems.push(
                "fastchat.display_name_min_chars must be at least 1 and at most \
                 fastchat.display_name_max_chars"
                    .to_owned(),
            );
        }
        if self.tls.cert_file.as_os_str().is_empty() != self.tls.key_file.as_os_str().is_empty() {
            problems.push("tls.cert_file and tls.key_file must be set together".to_owned());
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            problems.push(format!(
                "metrics.listen: {:?} is not an address like 127.0.0.1:9100",
                self.metrics.listen
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            problems.push(format!(
                "log.format: {:?} is not \"text\" or \"json\"",
                self.log.format
            ));
        }
        if let Err(e) = crate::logging::parse_filter(&self.log.level) {
            problems.push(format!("log.level: {e}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems.join("\n")))
        }
    }

    /// `[webhooks]`: bounds at least 1, each endpoint's URL, events and secret well-formed.
    fn validate_webhooks(&self, problems: &mut Vec<String>) {
        let hooks = &self.webhooks;
        for (name, value) in [
            ("webhooks.timeout_secs", hooks.timeout_secs),
            ("webhooks.max_pending", hooks.max_pending),
            ("webhooks.disable_after", hooks.disable_after),
            ("webhooks.backoff_base_ms", hooks.backoff_base_ms),
            ("webhooks.backoff_max_secs", hooks.backoff_max_secs),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        if hooks.max_pending > crate::webhooks::MAX_PENDING_LIMIT {
            problems.push(format!(
                "webhooks.max_pending must be at most {}",
                crate::webhooks::MAX_PENDING_LIMIT
            ));
        }
        for (index, endpoint) in hooks.endpoints.iter().enumerate() {
            let name = format!("webhooks.endpoints[{index}]");
            if let Err(e) = crate::webhooks::check_url(&endpoint.url, hooks.allow_private_addresses)
            {
                problems.push(format!("{name}.url: {e}"));
            }
            if let Err(e) = crate::webhooks::check_events(&endpoint.events) {
                problems.push(format!("{name}.events: {e}"));
            }
            if let Err(e) = crate::webhooks::sign::Secret::parse(&endpoint.secret) {
                problems.push(format!("{name}.secret: {e}"));
            }
            if hooks.endpoints[..index]
                .iter()
                .any(|other| other.url == endpoint.url)
            {
                problems.push(format!("{name}.url: {:?} is listed twice", endpoint.url));
            }
        }
    }

    /// `[[auth.external]]`: each issuer named, distinct, and with the key its algorithm needs
    /// (whether the key file exists and parses is checked at startup, when `Auth` loads it).
    fn validate_external_issuers(&self, problems: &mut Vec<String>) {
        for (index, external) in self.auth.external.iter().enumerate() {
            let name = format!("auth.external[{index}] (issuer {:?})", external.issuer);
            if external.issuer.is_empty() || external.issuer.contains('\0') {
                problems.push(format!("{name}: issuer must be set (and hold no NUL)"));
            }
            if external.issuer == self.auth.issuer {
                problems.push(format!(
                    "{name}: issuer must differ from auth.issuer, natter's own"
                ));
            }
            if self.auth.external[..index]
                .iter()
                .any(|other| other.issuer == external.issuer)
            {
                problems.push(format!("{name}: issuer is configured twice"));
            }
            let has_secret = !external.secret_file.as_os_str().is_empty();
            let has_public_key = !external.public_key_file.as_os_str().is_empty();
            match external.algorithm {
                ExternalAlgorithm::HS256 if !has_secret || has_public_key => problems.push(
                    format!("{name}: HS256 needs secret_file (and no public_key_file)"),
                ),
                ExternalAlgorithm::RS256 | ExternalAlgorithm::EdDSA
                    if !has_public_key || has_secret =>
                {
                    problems.push(format!(
                        "{name}: {:?} needs public_key_file (and no secret_file)",
                        external.algorithm
                    ));
                }
                _ => {}
            }
            if external.user_id_claim.is_empty() || external.username_claim.is_empty() {
                problems.push(format!(
                    "{name}: user_id_claim and username_claim must not be empty"
                ));
            }
        }
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.server.listen.parse()
    }

    /// The signing-secret file, defaulted into the data dir.
    pub fn jwt_secret_path(&self) -> PathBuf {
        if self.auth.jwt_secret_file.as_os_str().is_empty() {
            self.store.data_dir.join("jwt-secret")
        } else {
            self.auth.jwt_secret_file.clone()
        }
    }

    /// The control socket's path (see [`ControlConfig::socket`]).
    pub fn control_socket_path(&self) -> PathBuf {
        if !self.control.socket.as_os_str().is_empty() {
            return self.control.socket.clone();
        }
        match std::env::var_os("RUNTIME_DIRECTORY") {
            // systemd may list several directories, separated by ':'.
            Some(dirs) if !dirs.is_empty() => {
                let dirs = dirs.to_string_lossy().into_owned();
                let first = dirs.split(':').next().unwrap_or_default().to_owned();
                PathBuf::from(first).join("natter.sock")
            }
            _ => self.store.data_dir.join("natter.sock"),
        }
    }

    /// The effective config as TOML. It holds no secret values: secrets live in files that the
    /// config only names (`auth.jwt_secret_file`), so the output is safe to paste into a report.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::load_from(None, &[], &Overrides::default()).expect("defaults");
        assert_eq!(config.server.listen, "127.0.0.1:8000");
        assert_eq!(config.store.data_dir, PathBuf::from("./natter-data"));
    }

    #[test]
    fn env_overrides_typed_fields() {
        let config = Config::load_from(
            None,
            &env(&[
                ("NATTER_SERVER_LISTEN", "127.0.0.1:9001"),
                ("NATTER_STORE_CACHE_CAPACITY_MB", "8"),
                ("NATTER_SERVER_TRUST_FORWARDED_FOR", "true"),
                ("NATTER_CONFIG", "/ignored"),
                ("OTHER", "x"),
            ]),
            &Overrides::default(),
        )
        .expect("config");
        assert_eq!(config.server.listen, "127.0.0.1:9001");
        assert_eq!(config.store.cache_capacity_mb, 8);
        assert!(config.server.trust_forwarded_for);
    }

    #[test]
    fn bad_env_is_named() {
        let err = Config::load_from(
            None,
            &env(&[("NATTER_STORE_CACHE_CAPACITY_MB", "lots")]),
            &Overrides::default(),
        )
        .expect_err("must fail");
        assert!(err.0.contains("NATTER_STORE_CACHE_CAPACITY_MB"), "{err}");
        let err = Config::load_from(
            None,
            &env(&[("NATTER_SERVER_LISTN", "x")]),
            &Overrides::default(),
        )
        .expect_err("must fail");
        assert!(err.0.contains("has no field listn"), "{err}");
    }

    #[test]
    fn unknown_file_field_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("natter.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n").expect("write");
        let err =
            Config::load_from(Some(&path), &[], &Overrides::default()).expect_err("must fail");
        assert!(err.0.contains("natter.toml"), "{err}");
        assert!(err.0.contains("line 3"), "{err}");
        assert!(err.0.contains("listne"), "{err}");
    }

    #[test]
    fn flags_win() {
        let config = Config::load_from(
            None,
            &env(&[("NATTER_SERVER_LISTEN", "127.0.0.1:9001")]),
            &Overrides {
                listen: Some("127.0.0.1:9002".into()),
                data_dir: Some("/tmp/x".into()),
            },
        )
        .expect("config");
        assert_eq!(config.server.listen, "127.0.0.1:9002");
        assert_eq!(config.store.data_dir, PathBuf::from("/tmp/x"));
    }
}

#[cfg(test)]
mod packaged_config_tests {
    use super::*;

    /// The shipped config documents every option at its default: uncommenting every
    /// `# key = value` line must give exactly `Config::default()`, and no option may be missing.
    #[test]
    fn packaged_config_lists_every_option_at_its_default() {
        let text = include_str!("../packaging/natter.toml");
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(key, _)| {
                        key.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    }) =>
                {
                    rest.to_owned()
                }
                _ if line.starts_with('#') => String::new(),
                // Uncommented lines are the package's own values; checked below.
                _ => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut parsed: Config = toml::from_str(&uncommented).expect("packaged config parses");
        // The two paths the Debian package sets for its layout; every other value must be the
        // built-in default.
        assert_eq!(parsed.store.data_dir, PathBuf::from("/var/lib/natter"));
        assert_eq!(
            parsed.control.socket,
            PathBuf::from("/run/natter/natter.sock")
        );
        parsed.store.data_dir = Config::default().store.data_dir;
        parsed.control.socket = Config::default().control.socket;
        assert_eq!(parsed.to_toml(), Config::default().to_toml());
        let listed = toml::from_str::<toml::Table>(&uncommented).expect("table");
        let defaults = toml::Table::try_from(Config::default()).expect("table");
        for (section, fields) in &defaults {
            let Some(fields) = fields.as_table() else {
                continue;
            };
            for field in fields.keys() {
                assert!(
                    listed
                        .get(section)
                        .and_then(|s| s.as_table())
                        .is_some_and(|s| s.contains_key(field)),
                    "packaging/natter.toml does not list {section}.{field}"
                );
            }
        }
    }

    /// `[[auth.external]]` is empty by default, so the check above sees only `external = []`;
    /// the indented example (`#   key = value`, which that check ignores) must parse and show
    /// every field of an issuer.
    #[test]
    fn packaged_config_documents_an_external_issuer() {
        let text = include_str!("../packaging/natter.toml");
        let example: String = text
            .lines()
            .filter_map(|line| line.strip_prefix("#   "))
            .collect::<Vec<_>>()
            .join("\n");
        let parsed: Config = toml::from_str(&example).expect("external issuer example parses");
        assert_eq!(parsed.auth.external.len(), 1, "{example}");
        let listed = toml::from_str::<toml::Table>(&example).expect("table");
        let listed = listed["auth"]["external"][0]
            .as_table()
            .expect("an [[auth.external]] table");
        let defaults =
            toml::Table::try_from(ExternalIssuerConfig::default()).expect("issuer table");
        for field in defaults.keys() {
            assert!(
                listed.contains_key(field),
                "packaging/natter.toml's example does not show auth.external.{field}"
            );
        }
        let mut config = Config::default();
        config.auth.external = parsed.auth.external;
        config.validate().expect("the example is valid");
    }

    /// A config with issuers renders (`check-config`) as TOML that reads back the same.
    #[test]
    fn external_issuers_round_trip_and_are_validated() {
        let mut config = Config::default();
        config.auth.external = vec![
            ExternalIssuerConfig {
                issuer: "app".to_owned(),
                secret_file: "/etc/natter/app.secret".into(),
                ..ExternalIssuerConfig::default()
            },
            ExternalIssuerConfig {
                issuer: "idp".to_owned(),
                audience: "natter".to_owned(),
                algorithm: ExternalAlgorithm::EdDSA,
                public_key_file: "/etc/natter/idp.pem".into(),
                ..ExternalIssuerConfig::default()
            },
        ];
        config.validate().expect("valid");
        let back: Config = toml::from_str(&config.to_toml()).expect("round trip");
        assert_eq!(back.to_toml(), config.to_toml());

        let mut bad = config.clone();
        bad.auth.external[1].algorithm = ExternalAlgorithm::HS256;
        bad.auth.external.push(ExternalIssuerConfig {
            issuer: "natter".to_owned(),
            algorithm: ExternalAlgorithm::RS256,
            secret_file: "/x".into(),
            ..ExternalIssuerConfig::default()
        });
        bad.auth.external.push(config.auth.external[0].clone());
        let err = bad.validate().expect_err("invalid").0;
        assert!(
            err.contains("auth.external[1] (issuer \"idp\"): HS256 needs secret_file"),
            "{err}"
        );
        assert!(
            err.contains("auth.external[2] (issuer \"natter\"): issuer must differ"),
            "{err}"
        );
        assert!(
            err.contains("auth.external[2] (issuer \"natter\"): RS256 needs public_key_file"),
            "{err}"
        );
        assert!(
            err.contains("auth.external[3] (issuer \"app\"): issuer is configured twice"),
            "{err}"
        );
    }

    #[test]
    fn webhook_endpoints_are_validated() {
        let mut config = Config::default();
        let good = WebhookEndpointConfig {
            url: "https://hooks.example.com/natter".to_owned(),
            events: vec!["message.created".to_owned()],
            secret: "whsec_bmF0dGVyIHdlYmhvb2sgZXhhbXBsZSBzZWNyZXQgMzI=".to_owned(),
            enabled: true,
        };
        config.webhooks.endpoints = vec![good.clone()];
        config.validate().expect("valid");
        // The packaged example's secret is the one above: it must stay valid.
        assert!(include_str!("../packaging/natter.toml").contains(&good.secret));

        let mut bad = config.clone();
        bad.webhooks.max_pending = 0;
        bad.webhooks.endpoints.push(WebhookEndpointConfig {
            url: "http://127.0.0.1/hook".to_owned(),
            events: vec!["message.exploded".to_owned()],
            secret: "not-a-secret".to_owned(),
            enabled: true,
        });
        bad.webhooks.endpoints.push(good);
        let err = bad.validate().expect_err("invalid").0;
        for expected in [
            "webhooks.max_pending must be at least 1",
            "webhooks.endpoints[1].url",
            "webhooks.endpoints[1].events: unknown event type \"message.exploded\"",
            "webhooks.endpoints[1].secret",
            "webhooks.endpoints[2].url: \"https://hooks.example.com/natter\" is listed twice",
        ] {
            assert!(err.contains(expected), "{expected}: {err}");
        }
        // Plain http to loopback only with the test-only switch.
        let mut test_only = bad.clone();
        test_only.webhooks.allow_private_addresses = true;
        let err = test_only.validate().expect_err("invalid").0;
        assert!(!err.contains("webhooks.endpoints[1].url"), "{err}");
    }
}
