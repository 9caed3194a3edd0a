//! The command line. Doc comments here are the `--help` text (and the man page's source).
//!
//! Exit codes: 0 success, 1 failure, 2 usage or configuration error.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use uuid::Uuid;

use crate::admin::socket::Contact;
use crate::admin::{Reply, Request};
use crate::config::{Config, Overrides};
use crate::error::Error;
use crate::principal::Role;
use crate::server::Server;
use crate::store::Store;

/// natter: a self-contained chat daemon (HTTP tokens and WebSocket chat on one port, data in an
/// embedded store).
#[derive(Debug, Parser)]
#[command(name = "natter", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file (TOML). Without one, /etc/natter/natter.toml is read when it exists, else
    /// built-in defaults apply; NATTER_CONFIG= (empty) means no file.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Data directory (overrides store.data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Print the result as JSON (admin commands).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The config file read when neither --config nor NATTER_CONFIG names one.
pub const DEFAULT_CONFIG: &str = "/etc/natter/natter.toml";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve {
        /// Address to listen on (overrides server.listen), e.g. 127.0.0.1:8000.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Validate the configuration and print the effective config (exit 0 valid, 2 invalid).
    CheckConfig {
        /// Address to listen on (overrides server.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage rooms.
    #[command(subcommand)]
    Room(RoomCommand),
    /// Issue and revoke long-lived service tokens for backends.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Invite links: a one-time link to sign up with (the web client's /#invite=TOKEN).
    #[command(subcommand)]
    Invite(InviteCommand),
    /// List and end live WebSocket sessions (needs the running daemon).
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Webhook endpoints: signed event deliveries to your services.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Show connections, rooms, message rate, memory and store size.
    Stats,
    /// Write a consistent backup of the whole store to FILE, while the daemon serves.
    Backup {
        /// Where to write the backup (mode 0600).
        file: PathBuf,
    },
    /// Restore a backup into the data dir, which must not hold a store (the daemon stopped).
    /// The file is verified first; the store's epoch is bumped so resuming clients resync.
    Restore {
        /// The backup file.
        file: PathBuf,
    },
    /// Create an empty store in the data dir (mode 0700), to add users before the first `serve`.
    /// An existing store is left unchanged. Only `init`, `serve` and `restore` create a store.
    Init,
    /// Check the store's integrity (or, with --backup, a backup file's).
    Verify {
        /// Verify this backup file instead of the store.
        #[arg(long, value_name = "FILE")]
        backup: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from stdin (--password-stdin) or prompted for.
    /// An existing user is left unchanged.
    Add {
        username: String,
        /// admin or user.
        #[arg(long, default_value = "user")]
        role: Role,
        /// Name shown to others (defaults to the username).
        #[arg(long)]
        display_name: Option<String>,
        /// http(s) URL of the user's avatar.
        #[arg(long)]
        avatar_url: Option<String>,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// List users.
    List,
    /// Show one user.
    Show { username: String },
    /// Set a user's password; ends all of the user's sessions.
    Passwd {
        username: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Make a user an admin or a plain user.
    SetRole { username: String, role: Role },
    /// Disable a user: no logins, sessions ended, live connections closed.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// Delete a user, its sessions and memberships; live connections are closed.
    Remove { username: String },
}

#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Create a room (an existing room is left unchanged).
    Create {
        name: String,
        /// The owning user.
        #[arg(long, default_value = "admin")]
        owner: String,
        /// Only members may read and join it.
        #[arg(long)]
        private: bool,
        /// Relay messages without storing them.
        #[arg(long)]
        transient: bool,
        /// Keep messages this many seconds (0: forever).
        #[arg(long, default_value_t = 0, value_name = "SECS")]
        retention: u64,
    },
    /// List rooms.
    List,
    /// Show a room and its members.
    Show { name: String },
    /// Delete a room with its messages; its live members are told.
    Delete { name: String },
    /// Add or remove members.
    #[command(subcommand)]
    Members(MembersCommand),
    /// Delete a room's messages created before a date.
    Purge {
        name: String,
        /// YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC).
        #[arg(long, value_name = "DATE")]
        before: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Make a user a member of a room.
    Add { room: String, username: String },
    /// End a user's membership of a room.
    Remove { room: String, username: String },
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Create an invite link, printed once (its path is /#invite=TOKEN on the server's address).
    Create {
        /// The new user's role: admin or user.
        #[arg(long, default_value = "user")]
        role: Role,
        /// Lifetime: seconds, or with a unit: 7d, 12h, 30m (default accounts.invite_ttl_secs).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a service token acting as USERNAME, printed once on stdout.
    Issue {
        username: String,
        /// Comma-separated: chat (WebSockets and the chat API), publish (POST /api/v1/publish
        /// and notifications), admin (the admin API; admin users only).
        #[arg(long, default_value = "publish", value_name = "SCOPES")]
        scope: String,
        /// Lifetime: seconds, or with a unit: 90d, 12h, 30m.
        #[arg(long, default_value = "365d", value_name = "DURATION")]
        ttl: String,
        /// A name to recognise it by in `token list`.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List service tokens.
    List,
    /// Revoke a service token by id; its connections are closed.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add an endpoint; prints its id and its signing secret (shown this once only).
    Add {
        /// Where events are POSTed (https).
        url: String,
        /// Comma-separated event types (message.created, room.joined, user.online, ...), or
        /// `*` for all.
        #[arg(long, value_name = "EVENTS")]
        events: String,
    },
    /// List endpoints: id, URL, events, state, failures, pending events (never the secret).
    List,
    /// Remove an endpoint and its pending events.
    Remove { id: u64 },
    /// Send a webhook.test event to an endpoint now and print its answer.
    Test { id: u64 },
    /// Re-enable an endpoint disabled after failures.
    Enable { id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List live WebSocket connections.
    List,
    /// End a session: TARGET is a connection id, a session id, or a username (all of its
    /// sessions). Its connections close with 4401 and its tokens stop working.
    Kick { target: String },
}

#[derive(Debug, Args)]
pub struct PasswordSource {
    /// Read the password from standard input (one line) instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    private_umask();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("natter: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// The config file to read: --config, else NATTER_CONFIG (empty: none), else
/// /etc/natter/natter.toml when it exists.
fn config_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(path) = flag {
        return Some(path);
    }
    match std::env::var_os("NATTER_CONFIG") {
        Some(value) if value.is_empty() => None,
        Some(value) => Some(PathBuf::from(value)),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG);
            default.is_file().then_some(default)
        }
    }
}

/// Everything the process creates is for its own user only: sled creates the store's files
/// with the process's umask (0644 under the usual 0022), and they hold every password hash and
/// message. Files that must be shared say so with an explicit mode (the control socket, 0660).
fn private_umask() {
    use rustix::fs::Mode;
    let _ = rustix::process::umask(Mode::from_raw_mode(0o077));
}

/// Where the data dir of a command came from, for the line that names it.
#[derive(Debug, Clone)]
enum DataDirSource {
    Flag,
    Environment,
    ConfigFile(PathBuf),
    Default,
}

impl DataDirSource {
    /// The same order as the config's: --data-dir, then NATTER_STORE_DATA_DIR, then the config
    /// file's `store.data_dir`, then the built-in default.
    fn find(flag: bool, config: Option<&std::path::Path>) -> DataDirSource {
        if flag {
            return DataDirSource::Flag;
        }
        if std::env::var_os("NATTER_STORE_DATA_DIR").is_some() {
            return DataDirSource::Environment;
        }
        if let Some(path) = config {
            let sets_it = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.parse::<toml::Table>().ok())
                .and_then(|table| table.get("store")?.as_table()?.get("data_dir").cloned())
                .is_some();
            if sets_it {
                return DataDirSource::ConfigFile(path.to_path_buf());
            }
        }
        DataDirSource::Default
    }
}

impl std::fmt::Display for DataDirSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataDirSource::Flag => f.write_str("from --data-dir"),
            DataDirSource::Environment => f.write_str("from NATTER_STORE_DATA_DIR"),
            DataDirSource::ConfigFile(path) => write!(f, "from config {}", path.display()),
            DataDirSource::Default => f.write_str("the built-in default ./natter-data"),
        }
    }
}

/// The data dir as an absolute path, for messages (a relative one depends on the directory the
/// command runs in, which is the mistake the message is there to show).
fn shown(dir: &std::path::Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    let listen = match &cli.command {
        Command::Serve { listen } | Command::CheckConfig { listen } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        listen,
        data_dir: cli.data_dir.clone(),
    };
    let config_file = config_path(cli.config);
    let source = DataDirSource::find(cli.data_dir.is_some(), config_file.as_deref());
    let config = Config::load(config_file.as_deref(), &overrides)
        .map_err(|e| Failure::usage(format!("invalid configuration: {e}")))?;
    let json = cli.json;
    match cli.command {
        Command::CheckConfig { .. } => {
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Serve { .. } => serve(config),
        command => {
            crate::logging::init("warn", &config.log.format);
            let names_the_store = !matches!(
                command,
                Command::Verify {
                    backup: Some(_),
                    ..
                }
            );
            if names_the_store {
                // One line on stderr (stdout stays the result, --json too): which store the
                // command acts on, and why that one.
                eprintln!(
                    "natter: using data dir {} ({source})",
                    shown(&config.store.data_dir).display()
                );
            }
            runtime()?.block_on(admin_command(config, command, json, &source))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::from(format!("cannot start the async runtime: {e}")))
}

fn serve(config: Config) -> Result<(), Failure> {
    crate::logging::init(&config.log.level, &config.log.format);
    let addr = config
        .listen_addr()
        .map_err(|e| Failure::usage(format!("server.listen: {e}")))?;
    let runtime = runtime()?;
    let result = runtime.block_on(async move {
        // Before anything can tell systemd (or a test) that we are up.
        let signals = crate::shutdown::Signals::install()
            .map_err(|e| Failure::from(format!("cannot install signal handlers: {e}")))?;
        let listener = Server::listen(addr)
            .map_err(|e| Failure::from(format!("cannot listen on {addr}: {e}")))?;
        let server = Server::new(config, listener).await?;
        server.run(signals.received()).await.map_err(Failure::from)
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

/// Turns a command line into an admin request (reading passwords first, never from argv).
fn admin_request(command: Command) -> Result<Request, Failure> {
    Ok(match command {
        Command::User(command) => match command {
            UserCommand::Add {
                username,
                role,
                display_name,
                avatar_url,
                password,
            } => {
                crate::core::accounts::validate_username(&username)?;
                Request::UserAdd {
                    username,
                    role,
                    display_name,
                    avatar_url,
                    password: password.read(true)?,
                }
            }
            UserCommand::List => Request::UserList,
            UserCommand::Show { username } => Request::UserShow { username },
            UserCommand::Passwd { username, password } => Request::UserPasswd {
                username,
                password: password.read(true)?,
            },
            UserCommand::SetRole { username, role } => Request::UserSetRole { username, role },
            UserCommand::Disable { username } => Request::UserDisable { username },
            UserCommand::Enable { username } => Request::UserEnable { username },
            UserCommand::Remove { username } => Request::UserRemove { username },
        },
        Command::Room(command) => match command {
            RoomCommand::Create {
                name,
                owner,
                private,
                transient,
                retention,
            } => Request::RoomCreate {
                name,
                owner,
                private,
                transient,
                retention_secs: retention,
            },
            RoomCommand::List => Request::RoomList,
            RoomCommand::Show { name } => Request::RoomShow { name },
            RoomCommand::Delete { name } => Request::RoomDelete { name },
            RoomCommand::Members(MembersCommand::Add { room, username }) => {
                Request::RoomMembersAdd {
                    name: room,
                    username,
                }
            }
            RoomCommand::Members(MembersCommand::Remove { room, username }) => {
                Request::RoomMembersRemove {
                    name: room,
                    username,
                }
            }
            RoomCommand::Purge { name, before } => Request::RoomPurge {
                name,
                before_ms: crate::timefmt::parse_utc(&before)
                    .ok_or_else(|| {
                        Failure::usage(format!(
                            "--before {before:?}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"
                        ))
                    })?
                    .saturating_mul(1000),
            },
        },
        Command::Token(command) => match command {
            TokenCommand::Issue {
                username,
                scope,
                ttl,
                label,
            } => Request::TokenIssue {
                username,
                scopes: scope,
                ttl_secs: parse_duration(&ttl).ok_or_else(|| {
                    Failure::usage(format!("--ttl {ttl:?}: expected e.g. 3600, 90d, 12h, 30m"))
                })?,
                label,
            },
            TokenCommand::List => Request::TokenList,
            TokenCommand::Revoke { id } => Request::TokenRevoke {
                id: Uuid::parse_str(&id)
                    .map_err(|_| Failure::usage(format!("{id:?} is not a token id")))?,
            },
        },
        Command::Invite(InviteCommand::Create { role, expires_in }) => Request::InviteCreate {
            role,
            expires_in_secs: expires_in
                .map(|text| {
                    parse_duration(&text).ok_or_else(|| {
                        Failure::usage(format!(
                            "--expires-in {text:?}: expected e.g. 3600, 7d, 12h, 30m"
                        ))
                    })
                })
                .transpose()?,
        },
        Command::Webhook(command) => match command {
            WebhookCommand::Add { url, events } => Request::WebhookAdd {
                url,
                events: crate::webhooks::parse_events(&events)
                    .map_err(|e| Failure::usage(format!("--events: {e}")))?,
            },
            WebhookCommand::List => Request::WebhookList,
            WebhookCommand::Remove { id } => Request::WebhookRemove { id },
            WebhookCommand::Test { id } => Request::WebhookTest { id },
            WebhookCommand::Enable { id } => Request::WebhookEnable { id },
        },
        Command::Sessions(SessionsCommand::List) => Request::SessionsList,
        Command::Sessions(SessionsCommand::Kick { target }) => Request::SessionsKick { target },
        Command::Stats => Request::Stats,
        Command::Backup { .. } => Request::Backup,
        Command::Verify { .. } => Request::Verify,
        Command::Serve { .. }
        | Command::CheckConfig { .. }
        | Command::Restore { .. }
        | Command::Init => {
            return Err(Failure::usage("not an admin command"));
        }
    })
}

/// `90d`, `12h`, `30m`, `45s` or plain seconds.
fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(factor)
}

async fn admin_command(
    config: Config,
    command: Command,
    json: bool,
    source: &DataDirSource,
) -> Result<(), Failure> {
    match command {
        Command::Restore { file } => return restore(&config, &file, json),
        Command::Init => return init(&config, json).await,
        Command::Verify {
            backup: Some(file), ..
        } => {
            let summary = crate::store::verify_backup(&file)?;
            let text = format!(
                "{}: intact; {} records, {} files, epoch {}, digest {}",
                file.display(),
                summary.trees.values().sum::<u64>(),
                summary.files,
                summary.epoch,
                summary.digest
            );
            print_reply(&text, &serde_json::json!(summary), json);
            return Ok(());
        }
        _ => {}
    }
    let backup_target = match &command {
        Command::Backup { file } => Some(file.clone()),
        _ => None,
    };
    let request = admin_request(command)?;
    let reply = send(&config, request, source).await?;
    if let Some(target) = backup_target {
        let from = reply
            .data
            .get("path")
            .and_then(|p| p.as_str())
            .map(PathBuf::from)
            .ok_or_else(|| Failure::from("the daemon did not say where the backup is"))?;
        crate::admin::deliver_backup(&from, &target)?;
        let mut data = reply.data.get("summary").cloned().unwrap_or_default();
        if let Some(object) = data.as_object_mut() {
            object.insert("file".to_owned(), serde_json::json!(target));
        }
        print_reply(
            &format!("{}: {}", target.display(), reply.text),
            &data,
            json,
        );
        return Ok(());
    }
    print_reply(&reply.text, &reply.data, json);
    Ok(())
}

fn print_reply(text: &str, data: &serde_json::Value, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(data).unwrap_or_else(|_| data.to_string())
        );
    } else {
        println!("{text}");
    }
}

/// Sends a request to the running daemon over its control socket, or, when no daemon runs,
/// executes it on the data dir directly: on a store that exists. An admin command never creates
/// one (that is `init`'s, `serve`'s and `restore`'s): run in the wrong directory, or without the
/// daemon's config, it would report success on a new, empty store the daemon never reads.
async fn send(config: &Config, request: Request, source: &DataDirSource) -> Result<Reply, Failure> {
    if config.control.enabled {
        let path = config.control_socket_path();
        match crate::admin::socket::request(&path, &request).await? {
            Contact::Answered(Ok(reply)) => return Ok(reply),
            Contact::Answered(Err((message, code))) => {
                return Err(Failure {
                    code: if code == "bad_request" { 2 } else { 1 },
                    message,
                });
            }
            Contact::NoDaemon => {}
        }
    }
    if request.needs_daemon() {
        return Err(Failure::from(
            "the daemon is not running (or its control socket is off): there are no live sessions",
        ));
    }
    let data_dir = &config.store.data_dir;
    if !Store::exists(data_dir) {
        return Err(Failure::from(format!(
            "no store in {dir} (data dir {source}), and no daemon answers on {socket}. Point \
             at the daemon's data dir with --data-dir DIR, or at its config with --config PATH or \
             NATTER_CONFIG=PATH (default {DEFAULT_CONFIG}); to start a new store there, run \
             `natter init --data-dir {dir}` (or `natter serve`, which creates it too)",
            dir = shown(data_dir).display(),
            socket = shown(&config.control_socket_path()).display(),
        )));
    }
    check_data_dir_owner(data_dir)?;
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let store = Store::open(&config.store, metrics.clone()).map_err(|e| match e {
        crate::store::StoreError::Locked(dir) => Failure::from(format!(
            "a daemon holds data dir {} but does not answer on its control socket {} \
             (control.enabled or control.socket differ from this config?)",
            dir.display(),
            config.control_socket_path().display()
        )),
        other => Failure::from(other),
    })?;
    let state = crate::server::build_state(config.clone(), store.clone(), metrics)?;
    state
        .webhooks
        .sync_config()
        .await
        .map_err(|e| Failure::from(e.to_string()))?;
    let result = crate::admin::execute(&state, request, false).await;
    // Events the operation raised (a user created, ...) reach the outbox before it closes.
    state.webhooks.close().await;
    drop(state);
    store.close().await?;
    result.map_err(|e| Failure {
        code: if e.code() == "bad_request" { 2 } else { 1 },
        message: e.to_string(),
    })
}

/// Working on a data dir as root that belongs to the service user would leave root-owned files
/// the daemon cannot open later: refuse, and say how to do it.
fn check_data_dir_owner(data_dir: &std::path::Path) -> Result<(), Failure> {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(data_dir) else {
        return Ok(());
    };
    let me = crate::admin::socket::effective_uid();
    if me == Some(0) && meta.uid() != 0 {
        return Err(Failure::from(format!(
            "data dir {} belongs to uid {}: run this as that user (e.g. sudo -u natter natter ...) \
             or start the daemon, so that no file in it becomes root's",
            data_dir.display(),
            meta.uid()
        )));
    }
    Ok(())
}

/// `natter init`: an empty store in the data dir, created as `serve` creates it (the first
/// `serve` of a store without users still creates the initial admin).
async fn init(config: &Config, json: bool) -> Result<(), Failure> {
    let data_dir = &config.store.data_dir;
    let dir = shown(data_dir);
    if Store::exists(data_dir) {
        let text = format!("a store is in {} already (unchanged)", dir.display());
        print_reply(
            &text,
            &serde_json::json!({"created": false, "data_dir": dir}),
            json,
        );
        return Ok(());
    }
    check_data_dir_owner(data_dir)?;
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let store = Store::open(&config.store, metrics).map_err(|e| match e {
        crate::store::StoreError::Locked(dir) => {
            Failure::from(format!("a daemon holds data dir {} already", dir.display()))
        }
        other => Failure::from(other),
    })?;
    store.close().await?;
    let text = format!(
        "created an empty store in {} (add users with `natter user add`; the first `natter serve` \
         of a store without users creates the user admin)",
        dir.display()
    );
    print_reply(
        &text,
        &serde_json::json!({"created": true, "data_dir": dir}),
        json,
    );
    Ok(())
}

fn restore(config: &Config, file: &std::path::Path, json: bool) -> Result<(), Failure> {
    check_data_dir_owner(&config.store.data_dir)?;
    let data_dir = &config.store.data_dir;
    let summary = crate::store::restore(file, data_dir, &config.jwt_secret_path())?;
    let text = format!(
        "restored {} records and {} files into {} (digest {}); the store's epoch is now {}",
        summary.trees.values().sum::<u64>(),
        summary.files,
        data_dir.display(),
        summary.digest,
        summary.epoch + 1
    );
    print_reply(&text, &serde_json::json!(summary), json);
    Ok(())
}

impl PasswordSource {
    /// Reads a password: one line from stdin with --password-stdin, else a prompt on the terminal
    /// (twice when `confirm`). Never from argv.
    fn read(&self, confirm: bool) -> Result<String, Failure> {
        if self.password_stdin {
            let mut input = String::new();
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut input)
                .map_err(|e| Failure::from(format!("cannot read password from stdin: {e}")))?;
            let password = input.lines().next().unwrap_or("").to_owned();
            if password.is_empty() {
                return Err(Failure::usage("no password on stdin"));
            }
            return Ok(password);
        }
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage(
                "no terminal to prompt for a password: use --password-stdin",
            ));
        }
        let password = rpassword::prompt_password("Password: ")?;
        if confirm {
            let again = rpassword::prompt_password("Repeat password: ")?;
            if again != password {
                return Err(Failure::from(Error::BadRequest(
                    "passwords do not match".to_owned(),
                )));
            }
        }
        Ok(password)
    }
}
