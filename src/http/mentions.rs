//! The caller's mentions: the messages that mention them (see `core::chat::mentions`).

use std::collections::HashMap;

use serde_json::json;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{get_query, json_reply, query_number};
use crate::app::AppState;
use crate::core::chat::MAX_MENTION_PAGE;
use crate::error::Error;
use crate::principal::{Principal, Scope};

/// Mentions listed when the request does not say.
const DEFAULT_MENTIONS: usize = 50;

/// GET /api/v1/me/mentions?limit=&before= — the caller's recent mentions, newest first (ids
/// below `before`), how many are kept in all, and `next_before` (null when no older page
/// follows) to page on with.
pub fn mentions_list(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "me" / "mentions")
        .and(get_query(state, Scope::Chat))
        .and_then(
            |who: Principal, query: HashMap<String, String>, state: AppState| async move {
                let limit = query_number::<usize>(&query, "limit")?.unwrap_or(DEFAULT_MENTIONS);
                if limit == 0 || limit > MAX_MENTION_PAGE {
                    return Err(Rejection::from(Error::BadRequest(format!(
                        "limit must be 1 to {MAX_MENTION_PAGE}"
                    ))));
                }
                let before = query_number::<u64>(&query, "before")?;
                let (mentions, next, total) =
                    state.core.chat.mentions_page(&who, before, limit).await?;
                Ok::<_, Rejection>(json_reply(
                    &json!({"mentions": mentions, "total": total, "next_before": next}),
                    StatusCode::OK,
                ))
            },
        )
}
