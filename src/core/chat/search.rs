//! Search: the rules of who finds what. A search covers the rooms the caller may read, the
//! store's index (`store::search`) finds the messages in them.

use std::collections::HashMap;

use super::Chat;
use crate::core::command::RoomRef;
use crate::core::policy;
use crate::core::rates::Subject;
use crate::error::Error;
use crate::principal::Principal;
use crate::store::{Message, SearchCursor, SearchQuery};

/// Hits in a page when the request names no limit.
pub const DEFAULT_SEARCH_LIMIT: usize = 20;
/// Most hits in one page.
pub const MAX_SEARCH_LIMIT: usize = 100;
/// Most rooms one search covers (the first in id order of those the caller may read).
pub const MAX_SEARCH_ROOMS: usize = 5_000;

/// What to search for (`GET /api/v1/search`).
#[derive(Debug, Clone)]
pub struct Search {
    pub query: String,
    /// Only this room (a name, as the rooms API takes it).
    pub room: Option<String>,
    pub limit: Option<usize>,
    /// A `next_cursor` an earlier page returned.
    pub cursor: Option<String>,
}

/// One hit: the message as it is now, its room's name and where the query's words are.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub room: String,
    pub message: Message,
    /// `[start, end)` in characters of `message.content`.
    pub highlights: Vec<[usize; 2]>,
}

/// A page of hits, newest first.
#[derive(Debug, Clone, Default)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    pub next_cursor: Option<String>,
    /// The search read as much as one may (`store::search::MAX_SEARCH_SCAN`) before it was
    /// done: older hits may be missing.
    pub truncated: bool,
}

impl Chat {
    /// Messages matching `search` in the rooms `who` may read: public rooms and the rooms
    /// they are a member of (direct rooms included), or the one room asked for. Every word
    /// must be in a message, the last as a prefix; hits are newest first.
    ///
    /// A room the caller may not read is answered like one that does not exist, so a search
    /// tells nothing of a private room to a non-member. An admin's search covers the same
    /// rooms as anyone's unless it names a room (which an admin may read).
    pub async fn search(&self, who: &Principal, search: Search) -> Result<SearchResults, Error> {
        policy::check_account(who)?;
        let query = SearchQuery::parse(&search.query)?;
        let limit = search.limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
        if limit == 0 || limit > MAX_SEARCH_LIMIT {
            return Err(Error::BadRequest(format!(
                "limit must be 1 to {MAX_SEARCH_LIMIT}"
            )));
        }
        let after = match search.cursor.as_deref() {
            None | Some("") => None,
            Some(text) => Some(SearchCursor::decode(text).ok_or_else(|| {
                Error::BadRequest("cursor must be a next_cursor this API returned".to_owned())
            })?),
        };
        self.rates
            .check(Subject::of(who, None), "searches", self.limits.searches)?;
        let mut names: HashMap<u64, String> = HashMap::new();
        match search.room.as_deref().filter(|name| !name.is_empty()) {
            Some(name) => {
                let missing = || Error::NotFound(format!("no room {name}"));
                let room = match self
                    .resolve_room(who, &RoomRef::Name(name.to_owned()))
                    .await
                {
                    Ok(room) => room,
                    Err(Error::NotFound(_)) => return Err(missing()),
                    Err(other) => return Err(other),
                };
                self.check_read(who, &room).await.map_err(|e| match e {
                    Error::Forbidden(_) => missing(),
                    other => other,
                })?;
                names.insert(room.id, room.name);
            }
            None => {
                let mut after_id = 0;
                while names.len() < MAX_SEARCH_ROOMS {
                    let want = (MAX_SEARCH_ROOMS - names.len()).min(super::MAX_ROOM_PAGE);
                    let page = self
                        .store
                        .visible_rooms(who.user_id, false, after_id, want)
                        .await?;
                    for (room, _) in page.rooms {
                        names.insert(room.id, room.name);
                    }
                    match page.next {
                        Some(next) => after_id = next,
                        None => break,
                    }
                }
            }
        }
        let mut rooms: Vec<u64> = names.keys().copied().collect();
        rooms.sort_unstable();
        let page = self
            .store
            .search(rooms, query.clone(), after, limit)
            .await?;
        let hits = page
            .hits
            .into_iter()
            .map(|message| SearchHit {
                room: names.get(&message.room_id).cloned().unwrap_or_default(),
                highlights: query.highlights(&message.content),
                message,
            })
            .collect();
        Ok(SearchResults {
            hits,
            next_cursor: page.next.map(|cursor| cursor.encode()),
            truncated: page.truncated,
        })
    }
}
