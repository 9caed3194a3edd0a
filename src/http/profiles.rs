//! Profiles over HTTP: the display names and avatars of the people a client shows. The rules
//! (who may ask, how many, what a profile holds) are the core's ([`crate::core::profiles`]).

use std::collections::HashMap;

use serde_json::json;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{get_query, json_reply};
use crate::app::AppState;
use crate::error::Error;
use crate::principal::{Principal, Scope};

/// GET /api/v1/profiles?names=a,b,... — `{"profiles": [{"username", "display_name",
/// "avatar_url"}]}` of the named users that exist (at most 100 names; unknown ones absent).
pub fn profiles_get(
    state: AppState,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "profiles")
        .and(get_query(state, Scope::Chat))
        .and_then(
            |who: Principal, query: HashMap<String, String>, state: AppState| async move {
                let names: Vec<String> = query
                    .get("names")
                    .ok_or_else(|| {
                        Error::BadRequest(
                            "names (comma-separated usernames) is required".to_owned(),
                        )
                    })?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                let profiles = state.core.chat.profiles(&who, &names).await?;
                Ok::<_, Rejection>(json_reply(&json!({"profiles": profiles}), StatusCode::OK))
            },
        )
}
