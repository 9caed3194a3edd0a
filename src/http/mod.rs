//! The HTTP API (warp). Filters are named `<resource>_<verb>`; their doc line is the route.
//! Every error leaves through `recover` as JSON `{"error": "...", "code": "..."}`.

mod accounts;
pub mod cors;
mod files;
mod health;
mod mentions;
mod notifications;
mod profiles;
mod rooms;
mod search;
mod token;
mod users;
mod web;

pub use health::{metrics_reply, render_metrics};
pub use web::{CONTENT_SECURITY_POLICY, asset_paths};

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use futures_util::TryStreamExt as _;
use serde::de::DeserializeOwned;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::app::AppState;
use crate::error::Error;
use crate::principal::{Principal, Scope};
use crate::wire::bearer_token;

/// The peer address of the TCP connection, put into each request's extensions by the server.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// An [`Error`] travelling through warp's rejection machinery.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl warp::reject::Reject for ApiError {}

impl From<Error> for Rejection {
    fn from(e: Error) -> Rejection {
        warp::reject::custom(ApiError(e))
    }
}

/// All HTTP routes, with the JSON rejection handler at the root.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    // Grouped and boxed: one long `.or()` chain makes a type too deep for the compiler.
    let tokens = boxed(
        token::token_create(state.clone())
            .or(token::token_refresh(state.clone()))
            .or(token::token_revoke(state.clone()))
            .or(health::healthz())
            .or(health::readyz(state.clone()))
            .or(health::metrics(state.clone())),
    );
    let rooms = boxed(
        rooms::me_get(state.clone())
            .or(rooms::rooms_list(state.clone()))
            .or(rooms::rooms_create(state.clone()))
            .or(rooms::rooms_get(state.clone()))
            .or(rooms::rooms_delete(state.clone()))
            .or(rooms::rooms_update(state.clone()))
            .or(rooms::messages_list(state.clone()))
            .or(rooms::messages_create(state.clone()))
            .or(rooms::reactions_put_delete(state.clone()))
            .or(rooms::members_add(state.clone()))
            .or(rooms::members_remove(state.clone()))
            .or(profiles::profiles_get(state.clone()))
            .or(search::search_get(state.clone())),
    );
    let notifications = boxed(
        notifications::publish_create(state.clone())
            .or(notifications::notifications_create(state.clone()))
            .or(notifications::notifications_list(state.clone()))
            .or(notifications::notifications_read(state.clone()))
            .or(mentions::mentions_list(state.clone()))
            .or(files::files_get(state.clone()))
            .or(files::files_upload(state.clone())),
    );
    let users = boxed(
        users::users_list(state.clone())
            .or(users::users_create(state.clone()))
            .or(users::users_disable(state.clone()))
            .or(users::users_enable(state.clone()))
            .or(users::users_remove(state.clone())),
    );
    let accounts = boxed(
        accounts::me_password(state.clone())
            .or(accounts::me_patch(state.clone()))
            .or(accounts::users_password(state.clone()))
            .or(accounts::users_role(state.clone()))
            .or(accounts::invites_create(state.clone()))
            .or(accounts::invites_list(state.clone()))
            .or(accounts::invites_revoke(state.clone()))
            .or(accounts::invites_accept(state)),
    );
    // Last: it claims only `/` and `/assets/...`, everything else falls through to the 404.
    let web = boxed(web::web_get());
    tokens
        .or(rooms)
        .unify()
        .or(notifications)
        .unify()
        .or(users)
        .unify()
        .or(accounts)
        .unify()
        .or(web)
        .unify()
        .recover(recover)
}

/// Erases a route group's type (see `routes`).
fn boxed<F, R>(filter: F) -> warp::filters::BoxedFilter<(warp::reply::Response,)>
where
    F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
    R: Reply + 'static,
{
    filter.map(|reply: R| reply.into_response()).boxed()
}

/// Passes the state to a handler.
fn with_state(state: AppState) -> impl Filter<Extract = (AppState,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// A GET for a caller signed in with `scope`, its query string as a map, and the state: what
/// every listing route takes (after its path filter).
fn get_query(
    state: AppState,
    scope: Scope,
) -> impl Filter<Extract = (Principal, HashMap<String, String>, AppState), Error = Rejection> + Clone
{
    warp::get()
        .and(authenticated(state.clone(), scope))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state))
}

/// The caller, from `Authorization: Bearer <access token>` checked by [`crate::auth::Auth`];
/// a missing, malformed or invalid token is a 401, a service token without `scope` a 403. Each
/// route names the scope it needs here (the routes' table of scopes, as `Command::scope` is the
/// connections'). Put it after the path and method filters, so a request for another route is
/// not answered with a 401.
fn authenticated(
    state: AppState,
    scope: Scope,
) -> impl Filter<Extract = (Principal,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization").and_then(move |header: Option<String>| {
        let state = state.clone();
        async move {
            let token = bearer_token(header.as_deref())?;
            principal_of(&state, token, scope).await
        }
    })
}

/// [`authenticated`], or the `natter_access` cookie when there is no Authorization header: for
/// what a browser fetches by URL (file links and images), which cannot carry a bearer token.
/// Only for reads (SameSite=Strict keeps other sites from sending the cookie at all).
fn authenticated_or_cookie(
    state: AppState,
    scope: Scope,
) -> impl Filter<Extract = (Principal,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::cookie::optional::<String>(crate::wire::ACCESS_COOKIE))
        .and_then(move |header: Option<String>, cookie: Option<String>| {
            let state = state.clone();
            async move {
                let token = match (&header, &cookie) {
                    (None, Some(cookie)) if !cookie.is_empty() => cookie.as_str(),
                    _ => bearer_token(header.as_deref())?,
                };
                principal_of(&state, token, scope).await
            }
        })
}

async fn principal_of(state: &AppState, token: &str, scope: Scope) -> Result<Principal, Rejection> {
    let who = state.core.accounts.authenticate(token).await?;
    who.require_scope(scope)?;
    Ok(who)
}

/// An optional unsigned number from the query string; anything else there is a 400.
fn query_number<T: std::str::FromStr>(
    query: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, Error> {
    query
        .get(name)
        .map(|text| {
            text.trim().parse::<T>().map_err(|_| {
                Error::BadRequest(format!(
                    "{name} must be a non-negative integer, got {text:?}"
                ))
            })
        })
        .transpose()
}

/// How long a request body may take to arrive (`server.body_timeout_secs` and
/// `server.body_min_bytes_per_sec`): the whole of `timeout`, or, for a larger body, as long as it
/// keeps an average of at least `min_rate` bytes a second from the start. A client that holds
/// a body open (stalled or trickling) is answered 408 and its connection closed: without it, a
/// half-sent body pinned a connection, its file descriptor and its buffers for ever.
///
/// The server puts the budget into every request's extensions ([`body_budget`] reads it), so
/// that each route that reads a body, whatever its size, bounds it the same way.
#[derive(Debug, Clone, Copy)]
pub struct BodyBudget {
    pub timeout: std::time::Duration,
    /// Bytes per second; at least 1.
    pub min_rate: u64,
}

impl BodyBudget {
    pub fn of(config: &crate::config::ServerConfig) -> BodyBudget {
        BodyBudget {
            timeout: std::time::Duration::from_secs(config.body_timeout_secs),
            min_rate: config.body_min_bytes_per_sec.max(1),
        }
    }

    /// The time from the start of the body by which more of it must have come, once `received`
    /// bytes are in.
    fn allowed(&self, received: u64) -> std::time::Duration {
        let at_rate = std::time::Duration::from_secs_f64(
            // Precision is irrelevant at these magnitudes (a deadline in seconds).
            #[allow(clippy::cast_precision_loss)]
            {
                received as f64 / self.min_rate as f64
            },
        );
        self.timeout.max(at_rate)
    }

    /// `body`'s chunks, failing with [`Error::RequestTimeout`] once the body falls behind its
    /// budget (the clock starts now). Ends where the body ends.
    pub fn bound<S, B>(self, body: S) -> impl futures_util::Stream<Item = Result<B, Error>> + Send
    where
        S: futures_util::Stream<Item = Result<B, warp::Error>> + Send,
        B: warp::Buf + Send,
    {
        let started = tokio::time::Instant::now();
        let body = Box::pin(body);
        futures_util::stream::unfold(Some((body, 0u64)), move |state| async move {
            let (mut body, received) = state?;
            let deadline = started + self.allowed(received);
            match tokio::time::timeout_at(deadline, body.try_next()).await {
                Err(_) => Some((
                    Err(Error::RequestTimeout(
                        "the request body did not arrive in time".to_owned(),
                    )),
                    None,
                )),
                Ok(Err(e)) => Some((
                    Err(Error::BadRequest(format!("cannot read request body: {e}"))),
                    None,
                )),
                Ok(Ok(None)) => None,
                Ok(Ok(Some(chunk))) => {
                    let n = u64::try_from(chunk.remaining()).unwrap_or(u64::MAX);
                    Some((Ok(chunk), Some((body, received.saturating_add(n)))))
                }
            }
        })
    }
}

impl Default for BodyBudget {
    fn default() -> Self {
        BodyBudget::of(&crate::config::ServerConfig::default())
    }
}

/// The request's [`BodyBudget`] (the server's, from the request extensions).
pub fn body_budget() -> impl Filter<Extract = (BodyBudget,), Error = Infallible> + Clone {
    warp::ext::optional::<BodyBudget>().map(|budget: Option<BodyBudget>| budget.unwrap_or_default())
}

/// A JSON request body: `application/json` (else 415), at most `server.max_body_bytes` (else
/// 413, checked against Content-Length before reading and while reading), within the request's
/// [`BodyBudget`] (else 408), valid JSON (else 400).
fn json_body<T: DeserializeOwned + Send>(
    limit: u64,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(warp::header::optional::<String>("content-length"))
        .and(body_budget())
        .and(warp::body::stream())
        .and_then(
            move |content_type: Option<String>,
                  length: Option<String>,
                  budget: BodyBudget,
                  body| async move {
                let is_json = content_type.as_deref().is_some_and(|ct| {
                    ct.split(';')
                        .next()
                        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
                });
                if !is_json {
                    return Err(Rejection::from(Error::UnsupportedMediaType));
                }
                if let Some(length) = length {
                    match length.trim().parse::<u64>() {
                        Ok(n) if n > limit => {
                            return Err(Error::PayloadTooLarge { limit }.into());
                        }
                        Ok(_) => {}
                        Err(_) => {
                            return Err(
                                Error::BadRequest("invalid Content-Length".to_owned()).into()
                            );
                        }
                    }
                }
                let bytes = collect_limited_within(budget.bound(body), limit).await?;
                parse_json(&bytes).map_err(Rejection::from)
            },
        )
}

/// Collects a body (see [`BodyBudget::bound`]) of at most `limit` bytes (else 413).
async fn collect_limited_within<S, B>(body: S, limit: u64) -> Result<BytesMut, Error>
where
    S: futures_util::Stream<Item = Result<B, Error>>,
    B: warp::Buf,
{
    let mut out = BytesMut::new();
    let mut body = std::pin::pin!(body);
    while let Some(mut chunk) = body.try_next().await? {
        let total = u64::try_from(out.len() + chunk.remaining()).unwrap_or(u64::MAX);
        if total > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(out)
}

/// Syntax errors are `invalid_json`; well-formed JSON of the wrong shape is `bad_request`.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Error::BadRequest(format!("invalid request: {e}")),
        _ => Error::InvalidJson(e.to_string()),
    })
}

/// The client's address: the TCP peer, or the last `X-Forwarded-For` hop when configured to
/// trust the reverse proxy in front.
fn client_ip(
    state: AppState,
) -> impl Filter<Extract = (Option<IpAddr>,), Error = Rejection> + Clone {
    warp::ext::optional::<RemoteAddr>()
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .map(
            move |remote: Option<RemoteAddr>, forwarded: Option<String>| {
                if state.config.server.trust_forwarded_for
                    && let Some(ip) = forwarded
                        .as_deref()
                        .and_then(|v| v.rsplit(',').next())
                        .and_then(|v| v.trim().parse::<IpAddr>().ok())
                {
                    return Some(ip);
                }
                remote.map(|r| r.0.ip())
            },
        )
}

/// A JSON reply with a status.
fn json_reply<T: serde::Serialize>(value: &T, status: StatusCode) -> warp::reply::Response {
    let mut response = warp::reply::with_status(warp::reply::json(value), status).into_response();
    // Token responses and everything else here are per-user: never cache.
    response.headers_mut().insert(
        warp::http::header::CACHE_CONTROL,
        warp::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Turns every rejection into a JSON error.
async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    let error = if let Some(ApiError(e)) = rejection.find::<ApiError>() {
        return Ok(error_response(e));
    } else if rejection.is_not_found() {
        Error::NotFound("no such route".to_owned())
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        Error::MethodNotAllowed
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        Error::BadRequest(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        Error::BadRequest(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        Error::BadRequest(e.to_string())
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        Error::PayloadTooLarge { limit: 0 }
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        Error::UnsupportedMediaType
    } else {
        tracing::error!(rejection = ?rejection, "unhandled rejection");
        Error::Internal("unhandled rejection".to_owned())
    };
    Ok(error_response(&error))
}

/// The shape of every HTTP error body.
#[derive(serde::Serialize)]
struct ErrorBody {
    error: String,
    code: &'static str,
}

/// The JSON error response for `error`.
pub fn error_response(error: &Error) -> warp::reply::Response {
    if matches!(error, Error::Store(_) | Error::Internal(_)) {
        tracing::error!(error = %error, "request failed");
    }
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody {
        error: error.public_message(),
        code: error.code(),
    };
    let mut response = json_reply(&body, status);
    if matches!(error, Error::InvalidToken(_)) {
        response.headers_mut().insert(
            warp::http::header::WWW_AUTHENTICATE,
            warp::http::HeaderValue::from_static("Bearer"),
        );
    }
    if matches!(error, Error::RequestTimeout(_)) {
        // The rest of the body is not read: the connection cannot carry another request.
        response.headers_mut().insert(
            warp::http::header::CONNECTION,
            warp::http::HeaderValue::from_static("close"),
        );
    }
    let retry_secs = match error {
        Error::TooManyAttempts { retry_after } => Some(retry_after.as_secs().max(1)),
        // Whole seconds, rounded up: a client that waits that long gets through.
        Error::Throttled { retry_ms, .. } => Some(
            u64::try_from(retry_ms.div_ceil(1000))
                .unwrap_or(u64::MAX)
                .max(1),
        ),
        _ => None,
    };
    if let Some(secs) = retry_secs {
        let secs = secs.to_string();
        if let Ok(value) = warp::http::HeaderValue::from_str(&secs) {
            response
                .headers_mut()
                .insert(warp::http::header::RETRY_AFTER, value);
        }
    }
    response
}
