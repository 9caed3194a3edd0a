//! The command line. Doc comments here are the `--help` text (and the man page's source).
//!
//! Exit codes: 0 success, 1 failure, 2 usage or configuration error.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::core::accounts::{Actor, NewUser, UserView};
use crate::error::Error;
use crate::server::{AppState, Server};
use crate::store::{Role, Store};

/// natter: a self-contained chat daemon (HTTP tokens and WebSocket chat on one port, data in an
/// embedded store).
#[derive(Debug, Parser)]
#[command(name = "natter", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file (TOML). Without one, built-in defaults apply.
    #[arg(long, global = true, env = "NATTER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Data directory (overrides store.data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

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
    /// Manage users. Works on the data dir directly, so the daemon must not be running.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from stdin (--password-stdin) or prompted for.
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
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one user.
    Show {
        username: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password; ends all of the user's sessions.
    Passwd {
        username: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Make a user an admin or a plain user.
    SetRole { username: String, role: Role },
    /// Disable a user: no logins, sessions ended.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// Delete a user, its sessions and memberships.
    Remove { username: String },
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
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("natter: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    let listen = match &cli.command {
        Command::Serve { listen } | Command::CheckConfig { listen } => listen.clone(),
        Command::User(_) => None,
    };
    let overrides = Overrides {
        listen,
        data_dir: cli.data_dir.clone(),
    };
    let config = Config::load(cli.config.as_deref(), &overrides)
        .map_err(|e| Failure::usage(format!("invalid configuration: {e}")))?;
    match cli.command {
        Command::CheckConfig { .. } => {
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Serve { .. } => serve(config),
        Command::User(command) => {
            crate::logging::init(&crate::config::LogConfig {
                level: "warn".to_owned(),
                ..config.log.clone()
            });
            runtime()?.block_on(user_command(config, command))
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
    crate::logging::init(&config.log);
    let addr = config
        .listen_addr()
        .map_err(|e| Failure::usage(format!("server.listen: {e}")))?;
    let runtime = runtime()?;
    let result = runtime.block_on(async move {
        // Before anything can tell systemd (or a test) that we are up.
        let signals = crate::shutdown::Signals::install()
            .map_err(|e| Failure::from(format!("cannot install signal handlers: {e}")))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::from(format!("cannot listen on {addr}: {e}")))?;
        let server = Server::new(config, listener).await?;
        server.run(signals.received()).await.map_err(Failure::from)
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

async fn user_command(config: Config, command: UserCommand) -> Result<(), Failure> {
    let store = Store::open(&config.store)?;
    let state = AppState::new(config, store.clone())?;
    let result = run_user_command(&state, command).await;
    store.close().await?;
    result
}

async fn run_user_command(state: &AppState, command: UserCommand) -> Result<(), Failure> {
    let accounts = &state.accounts;
    match command {
        UserCommand::Add {
            username,
            role,
            display_name,
            avatar_url,
            password,
        } => {
            crate::core::accounts::validate_username(&username)?;
            let password = password.read(true)?;
            let user = accounts
                .create(
                    Actor::Operator,
                    NewUser {
                        username,
                        password,
                        role,
                        display_name,
                        avatar_url,
                    },
                )
                .await?;
            println!("created user {} ({})", user.username, user.role.as_str());
        }
        UserCommand::List { json } => {
            let users: Vec<UserView> = accounts
                .list(Actor::Operator)?
                .iter()
                .map(UserView::from)
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                print_user_table(&users);
            }
        }
        UserCommand::Show { username, json } => {
            let user = UserView::from(&accounts.get(&username)?);
            if json {
                println!("{}", serde_json::to_string_pretty(&user)?);
            } else {
                print_user_table(std::slice::from_ref(&user));
            }
        }
        UserCommand::Passwd { username, password } => {
            accounts.get(&username)?;
            let password = password.read(true)?;
            accounts
                .set_password(Actor::Operator, &username, password)
                .await?;
            println!("password of {username} changed; its sessions were ended");
        }
        UserCommand::SetRole { username, role } => {
            accounts.set_role(Actor::Operator, &username, role).await?;
            println!("{username} is now {}", role.as_str());
        }
        UserCommand::Disable { username } => {
            accounts
                .set_disabled(Actor::Operator, &username, true)
                .await?;
            println!("{username} is disabled");
        }
        UserCommand::Enable { username } => {
            accounts
                .set_disabled(Actor::Operator, &username, false)
                .await?;
            println!("{username} is enabled");
        }
        UserCommand::Remove { username } => {
            accounts.remove(Actor::Operator, &username).await?;
            println!("{username} was removed");
        }
    }
    Ok(())
}

fn print_user_table(users: &[UserView]) {
    println!(
        "{:<32} {:<6} {:<9} {:<21} LAST SEEN",
        "USERNAME", "ROLE", "STATUS", "CREATED"
    );
    for user in users {
        println!(
            "{:<32} {:<6} {:<9} {:<21} {}",
            user.username,
            user.role.as_str(),
            if user.disabled { "disabled" } else { "active" },
            crate::timefmt::rfc3339(user.created_at),
            user.last_seen
                .map_or_else(|| "never".to_owned(), crate::timefmt::rfc3339),
        );
    }
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
