//! The daemon: opens the store, builds the shared state, serves HTTP (and, through upgrades,
//! WebSockets) on a listener it is handed, and shuts down in order: stop accepting, let in-flight
//! requests finish within the grace period, flush the store.
//!
//! `Server::new(config, listener)` + `run(shutdown)` is the whole lifecycle, so tests run the real
//! server in-process on 127.0.0.1:0.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use tokio_util::task::TaskTracker;

use crate::app::{AppState, Services};
use crate::auth::{Auth, Hasher};
use crate::config::Config;
use crate::core::Core;
use crate::core::accounts::{Accounts, NewUser};
use crate::core::chat::Chat;
use crate::error::Error;
use crate::events::KickReason;
use crate::http::RemoteAddr;
use crate::hub::{Broker, Hub};
use crate::principal::Role;
use crate::store::Store;

mod admission;

use admission::{Admission, Admitted};

/// Name of the file the first start writes the generated admin password to.
pub const INITIAL_ADMIN_PASSWORD_FILE: &str = "initial-admin-password";

/// The listen backlog asked for (the kernel caps it at `net.core.somaxconn`, 4096 on current
/// kernels): room for a reconnect storm's SYNs while the accept loop catches up.
pub const LISTEN_BACKLOG: u32 = 4096;

/// How often ended sessions and messages past retention are purged from the store.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// The header deadline of a connection over the HTTP caps (health probes only): a probe sends
/// its request at once.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How often, at most, the log says that the HTTP connection caps are reached.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Wires the services over an open store: the composition root, shared by `serve` and the
/// offline admin commands. `metrics` is the one the store was opened with.
pub fn build_state(
    config: Config,
    store: Store,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<AppState, Error> {
    let config = Arc::new(config);
    let broker: Arc<dyn Broker> = Arc::new(Hub::new(crate::ws::fanout::prepare()));
    let hasher = Hasher::new(&config.auth)?;
    let auth = Auth::new(
        &config,
        store.clone(),
        hasher,
        broker.clone(),
        metrics.clone(),
    )?;
    let webhooks = crate::webhooks::Webhooks::new(store.clone(), config.webhooks.clone());
    let accounts = Accounts::new(
        store.clone(),
        auth.clone(),
        broker.clone(),
        config.auth.min_password_length,
        config.accounts.clone(),
        webhooks.clone(),
    );
    let chat = Chat::new(
        store.clone(),
        broker.clone(),
        crate::core::Limits::of(&config),
        metrics.clone(),
        webhooks.clone(),
    );
    Ok(AppState::new(Services {
        config,
        store,
        auth,
        broker,
        core: Core { chat, accounts },
        metrics,
        webhooks,
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
    }))
}

pub struct Server {
    state: AppState,
    listener: TcpListener,
    control: Option<crate::admin::socket::ControlSocket>,
    /// `metrics.listen`: a listener of its own for `/metrics`.
    metrics: Option<TcpListener>,
    /// `[tls]`: https and wss on the main listener.
    tls: Option<crate::tls::Tls>,
}

impl Server {
    /// Opens the store, creates the initial admin on first start, and readies the services.
    /// A listening socket on `addr` with a backlog of [`LISTEN_BACKLOG`] (tokio's `bind` asks
    /// for 128, which a reconnect storm of a few thousand clients overflows: their SYNs are
    /// dropped and they wait a second or more to retry).
    pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    }

    pub async fn new(config: Config, listener: TcpListener) -> anyhow::Result<Server> {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let store = Store::open(&config.store, metrics.clone())?;
        let state = build_state(config, store, metrics)?;
        // The config file's endpoints, then every endpoint's routes, before the first write.
        state.webhooks.sync_config().await?;
        // What a crash left in files/ (temporary uploads): only the daemon, which holds the
        // data dir, removes it (`natter verify` reports it).
        state.core.chat.sweep_files().await;
        bootstrap_admin(&state).await?;
        // The dummy hash (one argon2 run, tens of milliseconds, more on a small board) is made
        // in the background: awaited here, it delayed the first handshake by that much (a cold
        // start). An unknown-user login that comes first makes its own.
        let hasher = state.auth.hasher().clone();
        tokio::spawn(async move {
            if let Err(e) = hasher.warm_up().await {
                tracing::warn!(error = %e, "argon2 warm-up failed");
            }
        });
        let control = if state.config.control.enabled {
            let path = state.config.control_socket_path();
            Some(crate::admin::socket::ControlSocket::bind(&path)?)
        } else {
            None
        };
        let metrics = match state.config.metrics.listen.as_str() {
            "" => None,
            _ if !state.config.metrics.enabled => None,
            addr => {
                let listener = addr
                    .parse()
                    .map_err(anyhow::Error::from)
                    .and_then(|parsed| Server::listen(parsed).map_err(anyhow::Error::from));
                Some(listener.map_err(|e| {
                    anyhow::anyhow!("cannot listen on {addr} (metrics.listen): {e}")
                })?)
            }
        };
        let tls = if state.config.tls.enabled() {
            Some(crate::tls::Tls::load(&state.config.tls)?)
        } else {
            None
        };
        Ok(Server {
            state,
            listener,
            control,
            metrics,
            tls,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains and flushes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Server {
            state,
            listener,
            control,
            metrics,
            tls,
        } = self;
        let addr = listener.local_addr()?;
        let config = state.config.clone();
        let routes = warp::service(crate::http::routes(state.clone()));
        // HTTP/1.1 only: hyper-util's auto builder would link an HTTP/2 implementation (a third
        // of a megabyte) that natter never speaks.
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(config.server.header_read_timeout_secs));
        // Every connection task is tracked, so shutdown can wait until none holds the state (and
        // with it the store) any more: the data dir is released when `run` returns.
        let tasks = state.tasks.clone();
        let purger = tokio::spawn(housekeeping(state.clone()));
        let webhooks = tokio::spawn(crate::webhooks::delivery::run(
            state.webhooks.clone(),
            state.shutdown.clone(),
        ));
        let control = control.map(|socket| tokio::spawn(socket.serve(state.clone())));
        let metrics = metrics.map(|listener| tokio::spawn(serve_metrics(state.clone(), listener)));
        let reloader = tls
            .as_ref()
            .map(|tls| tokio::spawn(reload_on_hangup(tls.clone())));

        let first_byte_timeout = Duration::from_secs(config.server.header_read_timeout_secs);
        let admission = admission_for(&config);
        tracing::info!(listen = %addr, data_dir = %config.store.data_dir.display(), version = env!("CARGO_PKG_VERSION"), "natter is serving");
        crate::systemd::notify_ready();
        let watchdog = crate::systemd::spawn_watchdog(state.shutdown.clone());

        // Connections over the caps: health probes only, a short header deadline, one request.
        let mut overflow_builder = http1::Builder::new();
        overflow_builder
            .timer(TokioTimer::new())
            .header_read_timeout(
                OVERFLOW_HEADER_TIMEOUT
                    .min(Duration::from_secs(config.server.header_read_timeout_secs)),
            )
            .keep_alive(false);
        let mut last_cap_warning: Option<Instant> = None;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // Typically EMFILE: back off instead of spinning on the error.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let (ticket, probes_only) = match admission.admit(peer.ip()) {
                        Admitted::Full(ticket) => (ticket, false),
                        Admitted::Overflow(ticket) => (ticket, true),
                        Admitted::Refused => {
                            tracing::debug!(peer = %peer, "over the HTTP connection caps and their spare places; closed");
                            continue;
                        }
                    };
                    if probes_only && last_cap_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_INTERVAL) {
                        last_cap_warning = Some(Instant::now());
                        tracing::warn!(
                            peer = %peer,
                            max_http_connections = admission.max_total(),
                            max_http_connections_per_ip = config.server.max_http_connections_per_ip,
                            "HTTP connection cap reached: new connections get /healthz and /readyz only (503 for anything else) until some close"
                        );
                    }
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                    let service = connection_service(state.clone(), routes.clone(), peer);
                    let service = probes_only_unless(!probes_only, service);
                    let (builder, first_byte_timeout) = if probes_only {
                        (overflow_builder.clone(), OVERFLOW_HEADER_TIMEOUT.min(first_byte_timeout))
                    } else {
                        (builder.clone(), first_byte_timeout)
                    };
                    let acceptor = tls.as_ref().map(crate::tls::Tls::acceptor);
                    let stopping = state.shutdown.clone();
                    tasks.spawn(async move {
                        // The place in the HTTP stage is held until the connection ends or is
                        // upgraded to a WebSocket (then `ws.max_connections` counts it).
                        let _ticket = ticket;
                        // A peer that connects and sends nothing is dropped after the header
                        // timeout, whatever hyper's own timer makes of an idle connection. (With
                        // TLS, the first byte is the ClientHello's.)
                        let mut first = [0u8; 1];
                        tokio::select! {
                            peeked = tokio::time::timeout(first_byte_timeout, stream.peek(&mut first)) => {
                                if !matches!(peeked, Ok(Ok(n)) if n > 0) {
                                    tracing::debug!(peer = %peer, "connection sent nothing in time; closed");
                                    return;
                                }
                            }
                            () = stopping.cancelled() => return,
                        }
                        let result = match acceptor {
                            None => serve_http(&builder, stream, service, &stopping).await,
                            Some(acceptor) => {
                                // The handshake is bounded like the request headers (slowloris).
                                let stream = match tokio::time::timeout(first_byte_timeout, acceptor.accept(stream)).await {
                                    Ok(Ok(stream)) => stream,
                                    Ok(Err(e)) => {
                                        tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!(peer = %peer, "TLS handshake timed out");
                                        return;
                                    }
                                };
                                serve_http(&builder, stream, service, &stopping).await
                            }
                        };
                        if let Err(e) = result {
                            tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }

        tracing::info!("shutting down: no longer accepting connections");
        drop(listener);
        state.shutdown.cancel();
        // WebSocket sessions see the cancellation and close with 1001 (going away).
        state.broker.kick_all(KickReason::ShuttingDown);
        crate::systemd::notify_stopping();
        // Each connection saw the cancellation: idle ones are closed, requests in flight finish
        // (`serve_http`), WebSocket sessions close with 1001 within two seconds.
        let grace = Duration::from_secs(config.server.shutdown_grace_secs);
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            // They are cut: their futures are dropped when the runtime shuts down.
            tracing::warn!(
                grace_secs = grace.as_secs(),
                open = tasks.len(),
                "requests or connections did not finish in time; closing them"
            );
        }
        purger.abort();
        let _ = purger.await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        if let Some(reloader) = reloader {
            reloader.abort();
            let _ = reloader.await;
        }
        if let Some(control) = control {
            // It stops at the shutdown signal; dropping it removes the socket file.
            let _ = control.await;
        }
        if let Some(watchdog) = watchdog {
            watchdog.abort();
            let _ = watchdog.await;
        }
        // Deliveries stop at the cancellation (what is undelivered stays in the outbox); the
        // events emitted until now reach the outbox before the store closes.
        let _ = webhooks.await;
        state.webhooks.close().await;
        drop(routes);
        state.store.close().await?;
        tracing::info!("store flushed; bye");
        Ok(())
    }
}

/// The caps of connections in the HTTP stage, fitted to the open-file limit (read, and raised to
/// its hard value, here): `ws.max_connections` WebSockets, `server.max_http_connections` in the
/// HTTP stage, the spare places and the descriptors kept for the store must fit, so that
/// `accept` never fails for want of one. When they do not, the HTTP cap is lowered and a warning
/// says what to change.
fn admission_for(config: &Config) -> Admission {
    let configured = config.server.max_http_connections;
    let per_ip = config.server.max_http_connections_per_ip;
    let Some(fd_limit) = admission::open_file_limit() else {
        return Admission::new(configured, per_ip);
    };
    let ws_max = config.ws.max_connections;
    let (cap, fits) = admission::http_cap(fd_limit, ws_max, configured);
    if !fits {
        tracing::warn!(
            open_file_limit = fd_limit,
            ws_max_connections = ws_max,
            max_http_connections = configured,
            lowered_to = cap,
            spare = admission::OVERFLOW_PLACES,
            reserved = admission::RESERVED_FDS,
            "ws.max_connections + server.max_http_connections + spare and reserved descriptors exceed the open-file limit: the HTTP cap is lowered; raise the limit (LimitNOFILE=) or lower ws.max_connections"
        );
    }
    tracing::debug!(
        open_file_limit = fd_limit,
        max_http_connections = cap,
        max_http_connections_per_ip = per_ip,
        "HTTP connection caps"
    );
    Admission::new(cap, per_ip)
}

/// `service` when `serve_all`; else (a connection over the HTTP caps) only `GET /healthz` and
/// `GET /readyz` reach it, and anything else is answered 503 in the API's JSON error shape with
/// `Connection: close`.
fn probes_only_unless<S>(
    serve_all: bool,
    service: S,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = warp::reply::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<warp::reply::Response, Infallible>> + Send,
> + Clone
+ Send
where
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let path = request.uri().path().trim_end_matches('/');
        let probe =
            request.method() == hyper::Method::GET && matches!(path, "/healthz" | "/readyz");
        let answer = (serve_all || probe).then(|| service.call(request));
        async move {
            match answer {
                Some(answer) => answer.await,
                None => {
                    let mut response = crate::http::error_response(&Error::Unavailable(
                        "server is at its connection limit; try again later".to_owned(),
                    ));
                    response.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                    Ok(response)
                }
            }
        }
    })
}

/// Serves one HTTP/1.1 connection (WebSocket upgrades included) until it ends. When the server
/// begins to shut down, the connection finishes the request in flight, if any, and closes.
async fn serve_http<I, S>(
    builder: &http1::Builder,
    io: I,
    service: S,
    stopping: &CancellationToken,
) -> Result<(), hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result,
        () = stopping.cancelled() => {}
    }
    connection.as_mut().graceful_shutdown();
    connection.await
}

/// Reloads the TLS certificate and key at every SIGHUP.
async fn reload_on_hangup(tls: crate::tls::Tls) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: TLS files will not be reloaded");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the previous certificate")
            }
        }
    }
}

/// Serves `GET /metrics` (and 404 for anything else) on `metrics.listen` until shutdown.
async fn serve_metrics(state: AppState, listener: TcpListener) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "serving metrics");
    }
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = state.shutdown.cancelled() => break,
        };
        let shutdown = state.shutdown.clone();
        let state = state.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let state = state.clone();
            async move {
                let response = if request.uri().path() == "/metrics"
                    && request.method() == hyper::Method::GET
                {
                    crate::http::metrics_reply(&state).await
                } else {
                    let mut response = warp::reply::Response::new("not found\n".into());
                    *response.status_mut() = hyper::StatusCode::NOT_FOUND;
                    response
                };
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

/// The per-connection hyper service: records the peer, makes a trailing slash optional on every
/// route, writes the access log (path only: query strings may hold tokens), and calls warp.
fn connection_service<S>(
    state: AppState,
    routes: S,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = warp::reply::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<warp::reply::Response, Infallible>> + Send,
> + Clone
+ Send
where
    S: tower_service::Service<
            hyper::Request<Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let budget = crate::http::BodyBudget::of(&state.config.server);
    hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let mut routes = routes.clone();
        let state = state.clone();
        request.extensions_mut().insert(RemoteAddr(peer));
        request.extensions_mut().insert(budget);
        strip_trailing_slash(&mut request);
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let started = Instant::now();
        crate::metrics::Metrics::incr(&state.metrics.http_requests);
        async move {
            let response = match crate::ws::endpoint(&path) {
                Some(endpoint) => crate::ws::upgrade(state, endpoint, request, peer),
                None => {
                    let allowed = &state.config.ws.allowed_origins;
                    let headers = request.headers();
                    match crate::http::cors::preflight(&method, headers, &path, allowed) {
                        Some(answer) => answer,
                        None => {
                            let origin = crate::http::cors::request_origin(headers);
                            let mut response = routes.call(request).await?;
                            crate::http::cors::decorate(
                                origin.as_deref(),
                                &path,
                                allowed,
                                &mut response,
                            );
                            response
                        }
                    }
                }
            };
            tracing::info!(
                target: "natter::access",
                method = %method,
                path = %loggable_path(&path),
                status = response.status().as_u16(),
                micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                peer = %peer,
            );
            Ok(response)
        }
    })
}

/// A request path as the access log shows it: an invite token (`/api/v1/invites/TOKEN/accept`,
/// a secret that signs someone up) is written as `-`. Query strings are never logged.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path
        .strip_prefix("/api/v1/invites/")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((_, tail)) => format!("/api/v1/invites/-/{tail}").into(),
        None => path.into(),
    }
}

fn strip_trailing_slash<B>(request: &mut hyper::Request<B>) {
    let path = request.uri().path();
    if path.len() <= 1 || !path.ends_with('/') {
        return;
    }
    let trimmed = path.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{trimmed}?{query}"),
        None => trimmed.to_owned(),
    };
    let mut parts = request.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = hyper::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
}

/// On the first start (no users at all) creates `admin` with a random password and
/// writes it to `<data_dir>/initial-admin-password` (mode 0600).
async fn bootstrap_admin(state: &AppState) -> Result<(), Error> {
    if state.store.has_users().await? {
        return Ok(());
    }
    let mut random = [0u8; 18];
    getrandom::fill(&mut random).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let password = crate::auth::base64url(&random);
    let path = state.store.data_dir().join(INITIAL_ADMIN_PASSWORD_FILE);
    write_private_file(&path, format!("{password}\n").as_bytes())
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))?;
    state
        .core
        .accounts
        .create(
            crate::core::accounts::Actor::Operator,
            NewUser {
                username: "admin".to_owned(),
                password: password.clone(),
                role: Role::Admin,
                display_name: Some("Administrator".to_owned()),
                avatar_url: None,
            },
        )
        .await?;
    // The password goes to the 0600 file only: logs (the journal) are readable more widely.
    tracing::warn!(
        username = "admin",
        file = %path.display(),
        "created the initial admin user; its password is in the file (change it with `natter user passwd admin`)"
    );
    Ok(())
}

/// Writes `contents` to `path` with mode 0600, replacing any older file.
fn write_private_file(path: &PathBuf, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An older file keeps its mode on open: make sure.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Hourly: deletes ended sessions and messages past their room's retention.
async fn housekeeping(state: AppState) {
    let keep = i64::try_from(state.config.auth.refresh_token_ttl_secs).unwrap_or(i64::MAX);
    let mut ticker = tokio::time::interval(PURGE_INTERVAL);
    loop {
        ticker.tick().await;
        match state.store.purge_families(keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged ended sessions"),
            Err(e) => tracing::warn!(error = %e, "session purge failed"),
        }
        if let Err(e) = state.core.chat.purge_retention().await {
            tracing::warn!(error = %e, "retention purge failed");
        }
        state.core.chat.sweep_files().await;
    }
}
