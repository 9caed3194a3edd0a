//! Search over HTTP: `GET /api/v1/search`. The rules (which rooms, the query's limits, the
//! ranking) are the core's ([`crate::core::command::Command::Search`]); this filter only
//! translates the query string and the results.

use std::collections::HashMap;

use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{get_query, json_reply, query_number};
use crate::app::AppState;
use crate::core::chat::Search;
use crate::core::command::{Command, Reply as CoreReply};
use crate::error::Error;
use crate::hub::ConnId;
use crate::principal::{Principal, Scope};
use crate::wire::message_json;

/// The connection an HTTP request runs its command on: none. Search touches no connection;
/// hub ids count up from 0, so this one is never a live connection's.
const NO_CONNECTION: ConnId = ConnId::MAX;

/// GET /api/v1/search?q=&room=&limit=&cursor= — messages the caller may read that hold every
/// word of `q` (the last as a prefix), newest first, with where the words are.
pub fn search_get(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "search")
        .and(get_query(state, Scope::Chat))
        .and_then(
            |who: Principal, query: HashMap<String, String>, state: AppState| async move {
                let search = Search {
                    query: query.get("q").cloned().unwrap_or_default(),
                    room: query.get("room").cloned(),
                    limit: query_number::<usize>(&query, "limit")?,
                    cursor: query.get("cursor").cloned(),
                };
                let reply = state
                    .core
                    .execute(&who, NO_CONNECTION, Command::Search(search))
                    .await?;
                let CoreReply::SearchResults(results) = reply else {
                    return Err(Error::Internal("search gave no results".to_owned()).into());
                };
                let hits: Vec<Value> = results
                    .hits
                    .iter()
                    .map(|hit| {
                        let mut body = message_json(&hit.room, &hit.message);
                        if let Some(map) = body.as_object_mut() {
                            map.insert("highlights".to_owned(), json!(hit.highlights));
                        }
                        body
                    })
                    .collect();
                Ok::<_, Rejection>(json_reply(
                    &json!({
                        "results": hits,
                        "next_cursor": results.next_cursor,
                        "truncated": results.truncated,
                    }),
                    StatusCode::OK,
                ))
            },
        )
}
