//! The full-text index of the message log: an inverted index on disk, kept by the writer in
//! the same write as the message it indexes, and the search over it.
//!
//! The tree `search` holds one empty entry per (room, term, message): key `room id (u64 BE)
//! | term (UTF-8) | NUL | seq (u64 BE)`. Room first, so that a search reads only the ranges of
//! the rooms the caller may read (the core hands it that list: a private room's postings are
//! never even looked at for a non-member), one room's postings of a term are one range whose
//! reverse is newest first, and deleting a room is one prefix removal. Terms never hold a NUL
//! (they are letters and digits), so the NUL ends the term.
//!
//! Terms ([`terms`]): maximal runs of Unicode letters and digits, lowercased (fullwidth ASCII
//! read as ASCII, invisible formatting characters skipped, as `store::names` folds names), at
//! least [`MIN_TERM_CHARS`] long, cut to [`MAX_TERM_CHARS`], at most [`MAX_TERMS_PER_MESSAGE`]
//! distinct ones per message (the first in the text). A deleted message has none. The index
//! is a function of the message's current content, so an edit replaces the entries of the old
//! text with those of the new one, and whatever removes a message removes its entries by
//! computing them again.
//!
//! A search walks each readable room's postings newest first (a reverse range per term: the
//! query's longest exact word, or the words its last word is a prefix of, merged), checks each
//! candidate message's current terms against the whole query, and stops a room once its hits
//! are older than the `limit + 1` newest kept. Nothing of it lives in memory: it reads
//! postings and messages from sled, at most [`MAX_SEARCH_SCAN`] of them in all.

use std::collections::{BTreeSet, BinaryHeap};

use super::messages::Message;
use super::{SledStore, Trees, decode, keys};
use crate::error::Error;

/// Shortest term indexed or searched for, in characters.
pub const MIN_TERM_CHARS: usize = 2;
/// Longest term: longer words are indexed (and searched) by their first this many characters.
pub const MAX_TERM_CHARS: usize = 32;
/// Distinct terms indexed per message, the first ones in its text.
pub const MAX_TERMS_PER_MESSAGE: usize = 256;
/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// Most terms in one query.
pub const MAX_QUERY_TERMS: usize = 8;
/// Postings, messages and rooms one search reads at most; past it the search answers what it
/// found and says it is incomplete.
pub const MAX_SEARCH_SCAN: usize = 20_000;
/// Words a prefix stands for in one room at most (the first, in order).
pub const MAX_PREFIX_TERMS: usize = 64;
/// Highlights given per hit at most.
pub const MAX_HIGHLIGHTS: usize = 64;

/// One word of a text: its folded term and where it is, in characters (Unicode scalar values)
/// from the start of the text, `end` exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub term: String,
    pub start: usize,
    pub end: usize,
}

/// The words of `text` in order (each at least [`MIN_TERM_CHARS`] long), folded and cut to
/// [`MAX_TERM_CHARS`].
pub fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut term = String::new();
    let mut term_chars = 0usize;
    let mut word_chars = 0usize;
    let mut start = 0usize;
    let mut finish = |term: &mut String,
                      term_chars: &mut usize,
                      word_chars: &mut usize,
                      start: usize,
                      end: usize| {
        if *word_chars >= MIN_TERM_CHARS {
            out.push(Token {
                term: std::mem::take(term),
                start,
                end,
            });
        } else {
            term.clear();
        }
        *term_chars = 0;
        *word_chars = 0;
    };
    let mut position = 0usize;
    for c in text.chars() {
        if super::names::is_invisible(c) {
            // Shows as nothing: neither part of the word nor a break in it.
            position += 1;
            continue;
        }
        let c = match u32::from(c) {
            // FULLWIDTH EXCLAMATION MARK .. FULLWIDTH TILDE are ASCII 0x21 .. 0x7e.
            code @ 0xFF01..=0xFF5E => char::from_u32(code - 0xFEE0).unwrap_or(c),
            _ => c,
        };
        if c.is_alphanumeric() {
            if word_chars == 0 {
                start = position;
            }
            word_chars += 1;
            for lower in c.to_lowercase() {
                if term_chars < MAX_TERM_CHARS {
                    term.push(lower);
                    term_chars += 1;
                }
            }
        } else if word_chars > 0 {
            finish(&mut term, &mut term_chars, &mut word_chars, start, position);
        }
        position += 1;
    }
    if word_chars > 0 {
        finish(&mut term, &mut term_chars, &mut word_chars, start, position);
    }
    out
}

/// The distinct terms `text` is indexed under: the first [`MAX_TERMS_PER_MESSAGE`].
pub fn terms(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for token in tokens(text) {
        if out.len() >= MAX_TERMS_PER_MESSAGE && !out.contains(&token.term) {
            break;
        }
        out.insert(token.term);
    }
    out
}

/// The terms a message is indexed under now: none once deleted.
fn message_terms(message: &Message) -> BTreeSet<String> {
    if message.deleted {
        BTreeSet::new()
    } else {
        terms(&message.content)
    }
}

/// A parsed query: every term must be in a message, the last one as a prefix (what is being
/// typed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Terms a message must hold exactly.
    pub exact: Vec<String>,
    /// A term of the message must start with this.
    pub prefix: String,
}

impl SearchQuery {
    /// Parses a query. `BadRequest` when it is empty, longer than [`MAX_QUERY_CHARS`], holds
    /// more than [`MAX_QUERY_TERMS`] words, or no word of at least [`MIN_TERM_CHARS`] letters
    /// or digits.
    pub fn parse(text: &str) -> Result<SearchQuery, Error> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::BadRequest(
                "q is empty: give a word to search for".to_owned(),
            ));
        }
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(Error::BadRequest(format!(
                "q is too long: at most {MAX_QUERY_CHARS} characters"
            )));
        }
        let mut words: Vec<String> = Vec::new();
        for token in tokens(text) {
            if !words.contains(&token.term) {
                words.push(token.term);
            }
        }
        if words.len() > MAX_QUERY_TERMS {
            return Err(Error::BadRequest(format!(
                "q has too many words: at most {MAX_QUERY_TERMS}"
            )));
        }
        let Some(prefix) = words.pop() else {
            return Err(Error::BadRequest(format!(
                "q needs a word of at least {MIN_TERM_CHARS} letters or digits"
            )));
        };
        Ok(SearchQuery {
            exact: words,
            prefix,
        })
    }

    fn matches_term(&self, term: &str) -> bool {
        term.starts_with(self.prefix.as_str()) || self.exact.iter().any(|e| e == term)
    }

    /// Whether a message with these terms is a hit.
    fn matches(&self, terms: &BTreeSet<String>) -> bool {
        self.exact.iter().all(|term| terms.contains(term))
            && terms
                .range(self.prefix.clone()..)
                .next()
                .is_some_and(|term| term.starts_with(self.prefix.as_str()))
    }

    /// Where the query's words are in `text`: `[start, end)` in characters (Unicode scalar
    /// values), in order, at most [`MAX_HIGHLIGHTS`].
    pub fn highlights(&self, text: &str) -> Vec<[usize; 2]> {
        tokens(text)
            .into_iter()
            .filter(|token| self.matches_term(&token.term))
            .take(MAX_HIGHLIGHTS)
            .map(|token| [token.start, token.end])
            .collect()
    }
}

/// Where a page of results ends: hits are ordered newest first by (created_at_ms, room id,
/// seq), and the next page holds those below this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SearchCursor {
    pub created_at_ms: i64,
    pub room_id: u64,
    pub seq: u64,
}

impl SearchCursor {
    fn of(message: &Message) -> SearchCursor {
        SearchCursor {
            created_at_ms: message.created_at_ms,
            room_id: message.room_id,
            seq: message.seq,
        }
    }

    /// As the API writes it: `created_at_ms.room_id.seq`.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.created_at_ms, self.room_id, self.seq)
    }

    /// `None` unless `text` is what [`SearchCursor::encode`] wrote.
    pub fn decode(text: &str) -> Option<SearchCursor> {
        let mut parts = text.split('.');
        let cursor = SearchCursor {
            created_at_ms: parts.next()?.parse().ok()?,
            room_id: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(cursor)
    }
}

/// A page of search results.
#[derive(Debug, Default)]
pub struct SearchPage {
    /// Newest first.
    pub hits: Vec<Message>,
    /// Where the next page starts, when there may be more.
    pub next: Option<SearchCursor>,
    /// The search stopped at [`MAX_SEARCH_SCAN`]: older hits may be missing.
    pub truncated: bool,
}

/// The key of one posting.
fn posting(room_id: u64, term: &str, seq: u64) -> Vec<u8> {
    let mut key = term_prefix(room_id, term);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The prefix of a room's postings of exactly `term`.
fn term_prefix(room_id: u64, term: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + term.len() + 9);
    key.extend_from_slice(&keys::room(room_id));
    key.extend_from_slice(term.as_bytes());
    key.push(0);
    key
}

impl Trees {
    /// Indexes a message just stored (its terms, if any). Writer task only.
    pub(super) fn index_message(&self, message: &Message) -> Result<(), Error> {
        for term in message_terms(message) {
            self.search
                .insert(posting(message.room_id, &term, message.seq), b"".as_slice())?;
        }
        Ok(())
    }

    /// Takes a message out of the index (it is being removed). Writer task only.
    pub(super) fn unindex_message(&self, message: &Message) -> Result<(), Error> {
        for term in message_terms(message) {
            self.search
                .remove(posting(message.room_id, &term, message.seq))?;
        }
        Ok(())
    }

    /// Moves a changed message's entries from its old text to its new one. Writer task only.
    pub(super) fn reindex_message(&self, before: &Message, after: &Message) -> Result<(), Error> {
        let old = message_terms(before);
        let new = message_terms(after);
        for term in old.difference(&new) {
            self.search
                .remove(posting(before.room_id, term, before.seq))?;
        }
        for term in new.difference(&old) {
            self.search
                .insert(posting(after.room_id, term, after.seq), b"".as_slice())?;
        }
        Ok(())
    }

    /// Removes every entry of a room (it is being deleted). Writer task only.
    pub(super) fn unindex_room(&self, room_id: u64) -> Result<(), Error> {
        for key in self.search.scan_prefix(keys::room(room_id)).keys() {
            self.search.remove(key?)?;
        }
        Ok(())
    }

    /// Builds the index from the message log, from scratch (schema upgrade). Returns how many
    /// messages it indexed.
    pub(super) fn rebuild_search_index(&self) -> Result<u64, Error> {
        self.search.clear()?;
        let mut indexed = 0u64;
        for entry in self.messages.iter() {
            let (_, raw) = entry?;
            let message: Message = decode("messages", &raw)?;
            self.index_message(&message)?;
            indexed += 1;
        }
        Ok(indexed)
    }
}

/// What `natter verify` checks of the index: every entry names a stored message whose current
/// text has the term, and every stored message has the entries of its terms. Problems go to
/// `note`.
pub(super) fn verify_index(db: &sled::Db, note: &mut impl FnMut(String)) -> Result<(), Error> {
    let search = db.open_tree("search")?;
    let messages = db.open_tree("messages")?;
    for key in search.iter().keys() {
        let key = key?;
        let parsed = key.len().checked_sub(9).and_then(|term_end| {
            let room_id = keys::u64_at(&key, 0)?;
            let seq = keys::u64_at(&key, term_end + 1)?;
            let term = std::str::from_utf8(key.get(8..term_end)?).ok()?;
            (key.get(term_end) == Some(&0)).then(|| (room_id, term.to_owned(), seq))
        });
        let Some((room_id, term, seq)) = parsed else {
            note("search: malformed key".to_owned());
            continue;
        };
        let indexed = match messages.get(keys::message(room_id, seq))? {
            Some(raw) => decode::<Message>("messages", &raw)
                .map(|message| message_terms(&message).contains(&term))
                .unwrap_or(false),
            None => false,
        };
        if !indexed {
            note(format!(
                "search: entry {term:?} of message {room_id}/{seq}, which does not hold it"
            ));
        }
    }
    for entry in messages.iter() {
        let (_, raw) = entry?;
        let Ok(message) = decode::<Message>("messages", &raw) else {
            continue; // reported with the messages
        };
        for term in message_terms(&message) {
            if !search.contains_key(posting(message.room_id, &term, message.seq))? {
                note(format!(
                    "search: message {}/{} is not indexed under {term:?}",
                    message.room_id, message.seq
                ));
                break;
            }
        }
    }
    Ok(())
}

/// Counts what a search reads against [`MAX_SEARCH_SCAN`].
struct Budget {
    left: usize,
    exhausted: bool,
}

impl Budget {
    /// Takes one; false (and marks the search incomplete) when none is left.
    fn take(&mut self) -> bool {
        if self.left == 0 {
            self.exhausted = true;
            return false;
        }
        self.left -= 1;
        true
    }
}

impl SledStore {
    /// Messages of `rooms` that match `query`, newest first, below `after` if given, at most
    /// `limit`. The caller decides which rooms may be searched.
    pub async fn search(
        &self,
        rooms: Vec<u64>,
        query: SearchQuery,
        after: Option<SearchCursor>,
        limit: usize,
    ) -> Result<SearchPage, Error> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            store.search_now(&rooms, &query, after, limit, MAX_SEARCH_SCAN)
        })
        .await
        .map_err(|e| Error::Internal(format!("search failed: {e}")))?
    }

    pub(super) fn search_now(
        &self,
        rooms: &[u64],
        query: &SearchQuery,
        after: Option<SearchCursor>,
        limit: usize,
        scan: usize,
    ) -> Result<SearchPage, Error> {
        let t = self.trees()?;
        let limit = limit.max(1);
        let mut budget = Budget {
            left: scan,
            exhausted: false,
        };
        // The best `limit + 1` hits so far, newest first.
        let mut best: Vec<Message> = Vec::with_capacity(limit + 1);
        'rooms: for &room_id in rooms {
            if !budget.take() {
                break;
            }
            let mut candidates = Candidates::open(&t, room_id, query, after, &mut budget)?;
            while let Some(seq) = candidates.next(&mut budget)? {
                if !budget.take() {
                    break 'rooms;
                }
                let Some(message) = t.message(room_id, seq)? else {
                    continue;
                };
                let at = SearchCursor::of(&message);
                if after.is_some_and(|after| at >= after) {
                    continue;
                }
                if best.len() > limit
                    && best
                        .last()
                        .is_some_and(|worst| at < SearchCursor::of(worst))
                {
                    // Older than every hit kept, and the rest of this room is older still.
                    break;
                }
                if !query.matches(&message_terms(&message)) {
                    continue;
                }
                let position = best
                    .iter()
                    .position(|kept| SearchCursor::of(kept) < at)
                    .unwrap_or(best.len());
                best.insert(position, message);
                best.truncate(limit + 1);
            }
        }
        let next = if best.len() > limit {
            best.truncate(limit);
            best.last().map(SearchCursor::of)
        } else {
            None
        };
        Ok(SearchPage {
            hits: best,
            next,
            truncated: budget.exhausted,
        })
    }
}

/// The sequence numbers of one room's messages that may match, newest first, read lazily: the
/// postings of the query's longest exact term, or, for a one-word query, the postings of
/// every word with its prefix (at most [`MAX_PREFIX_TERMS`] of them) merged.
struct Candidates {
    /// One reverse cursor per term, each over `[seq 0, below)`.
    cursors: Vec<sled::Iter>,
    /// The next sequence number of each cursor that has one: (seq, cursor index).
    heads: BinaryHeap<(u64, usize)>,
    last: Option<u64>,
}

impl Candidates {
    fn open(
        t: &Trees,
        room_id: u64,
        query: &SearchQuery,
        after: Option<SearchCursor>,
        budget: &mut Budget,
    ) -> Result<Candidates, Error> {
        // In the cursor's own room, only what lies below it.
        let below = after
            .filter(|after| after.room_id == room_id)
            .map_or(u64::MAX, |after| after.seq);
        let terms = match query.exact.iter().max_by_key(|term| term.len()) {
            Some(driver) => vec![driver.clone()],
            None => prefix_terms(t, room_id, &query.prefix, budget)?,
        };
        let mut candidates = Candidates {
            cursors: Vec::with_capacity(terms.len()),
            heads: BinaryHeap::with_capacity(terms.len()),
            last: None,
        };
        for term in &terms {
            let cursor = t
                .search
                .range(posting(room_id, term, 0)..posting(room_id, term, below));
            candidates.cursors.push(cursor);
            let index = candidates.cursors.len() - 1;
            candidates.advance(index, budget)?;
        }
        Ok(candidates)
    }

    /// Reads cursor `index`'s next (older) posting into `heads`.
    fn advance(&mut self, index: usize, budget: &mut Budget) -> Result<(), Error> {
        if !budget.take() {
            return Ok(());
        }
        if let Some(cursor) = self.cursors.get_mut(index)
            && let Some(entry) = cursor.next_back()
        {
            let (key, _) = entry?;
            if let Some(seq) = keys::u64_at(&key, key.len().saturating_sub(8)) {
                self.heads.push((seq, index));
            }
        }
        Ok(())
    }

    /// The next older candidate, each once.
    fn next(&mut self, budget: &mut Budget) -> Result<Option<u64>, Error> {
        while let Some((seq, index)) = self.heads.pop() {
            self.advance(index, budget)?;
            if self.last != Some(seq) {
                self.last = Some(seq);
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }
}

/// Words with `prefix` in a room's postings, in order, at most [`MAX_PREFIX_TERMS`] (one seek
/// each): the search is incomplete when there are more.
fn prefix_terms(
    t: &Trees,
    room_id: u64,
    prefix: &str,
    budget: &mut Budget,
) -> Result<Vec<String>, Error> {
    let mut start = keys::room(room_id).to_vec();
    start.extend_from_slice(prefix.as_bytes());
    let mut terms = Vec::new();
    loop {
        if !budget.take() {
            break;
        }
        let Some(key) = t
            .search
            .range(start.as_slice()..)
            .keys()
            .next()
            .transpose()?
        else {
            break;
        };
        let Some(term) = key
            .get(8..key.len().saturating_sub(9))
            .and_then(|term| std::str::from_utf8(term).ok())
            .filter(|term| key.starts_with(&keys::room(room_id)) && term.starts_with(prefix))
        else {
            break;
        };
        if terms.len() == MAX_PREFIX_TERMS {
            budget.exhausted = true;
            break;
        }
        terms.push(term.to_owned());
        // Past every posting of this term: its NUL separator, then 0x01.
        start = term_prefix(room_id, term);
        if let Some(last) = start.last_mut() {
            *last = 1;
        }
    }
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{META_SCHEMA, NewRoom, Visibility};
    use uuid::Uuid;

    fn draft(room_id: u64, author: Uuid, content: &str) -> Message {
        Message {
            room_id,
            seq: 0,
            author,
            author_name: "owner".to_owned(),
            author_avatar: None,
            content: content.to_owned(),
            created_at_ms: 0,
            edited_at_ms: None,
            deleted: false,
            reply_to: None,
            client_msg_id: None,
            attachments: Vec::new(),
            reactions: Default::default(),
            mentions: Vec::new(),
        }
    }

    async fn room(store: &SledStore, name: &str, owner: Uuid) -> u64 {
        store
            .create_room(NewRoom {
                name: name.to_owned(),
                owner,
                members: Vec::new(),
                visibility: Visibility::Public,
                persistent: true,
                retention_secs: 0,
                quota: None,
            })
            .await
            .expect("room")
            .id
    }

    fn found(store: &SledStore, rooms: &[u64], q: &str) -> Vec<String> {
        let query = SearchQuery::parse(q).expect("query");
        store
            .search_now(rooms, &query, None, 100, MAX_SEARCH_SCAN)
            .expect("search")
            .hits
            .into_iter()
            .map(|m| m.content)
            .collect()
    }

    #[tokio::test]
    async fn a_store_written_without_the_index_gets_it_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let owner = Uuid::new_v4();
        let id = {
            let store = crate::store::open_for_tests(dir.path());
            let id = room(&store, "r", owner).await;
            for content in ["older otter", "newer otter", "a heron"] {
                store
                    .append_message(draft(id, owner, content))
                    .await
                    .expect("append");
            }
            // What a version-3 store holds: the messages, no index.
            let trees = store.trees().expect("trees");
            trees.search.clear().expect("clear");
            trees
                .meta
                .insert(META_SCHEMA, &3u32.to_be_bytes())
                .expect("insert");
            assert!(found(&store, &[id], "otter").is_empty());
            store.close().await.expect("close");
            id
        };
        let store = crate::store::open_for_tests(dir.path());
        assert_eq!(
            found(&store, &[id], "otter"),
            vec!["newer otter", "older otter"]
        );
        assert_eq!(found(&store, &[id], "he"), vec!["a heron"]);
        assert_eq!(
            store
                .trees()
                .expect("trees")
                .meta
                .get(META_SCHEMA)
                .expect("get")
                .as_deref(),
            Some(crate::store::SCHEMA_VERSION.to_be_bytes().as_slice())
        );
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn verify_reports_stale_and_missing_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::open_for_tests(dir.path());
        let owner = Uuid::new_v4();
        let id = room(&store, "r", owner).await;
        store
            .append_message(draft(id, owner, "hello world"))
            .await
            .expect("append");
        let search_problems = |problems: Vec<String>| -> Vec<String> {
            problems
                .into_iter()
                .filter(|p| p.starts_with("search:"))
                .collect()
        };
        assert!(search_problems(store.verify().await.expect("verify").problems).is_empty());
        let trees = store.trees().expect("trees");
        trees
            .search
            .remove(posting(id, "world", 1))
            .expect("remove");
        trees
            .search
            .insert(posting(id, "stale", 1), b"".as_slice())
            .expect("insert");
        assert_eq!(
            search_problems(store.verify().await.expect("verify").problems),
            vec![
                format!("search: entry \"stale\" of message {id}/1, which does not hold it"),
                format!("search: message {id}/1 is not indexed under \"world\""),
            ]
        );
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_search_reads_only_the_rooms_it_is_given_and_stops_at_its_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::open_for_tests(dir.path());
        let owner = Uuid::new_v4();
        let a = room(&store, "a", owner).await;
        let b = room(&store, "b", owner).await;
        for i in 0..30 {
            for (id, offset) in [(a, 1), (b, 0)] {
                // a's messages are each a moment newer than b's of the same round.
                let mut message = draft(id, owner, &format!("lunch {i}"));
                message.created_at_ms = 2 * i + offset;
                store.append_message(message).await.expect("append");
            }
        }
        assert_eq!(found(&store, &[a], "lunch").len(), 30);
        assert_eq!(found(&store, &[a, b], "lunch").len(), 60);
        let query = SearchQuery::parse("lunch").expect("query");
        let page = store
            .search_now(&[a, b], &query, None, 100, 50)
            .expect("search");
        assert!(page.truncated);
        assert!(page.hits.len() < 60);
        // A small page of a common word reads only what it needs: complete within a small
        // budget, the newest hits.
        let page = store
            .search_now(&[a, b], &query, None, 3, 50)
            .expect("search");
        assert!(!page.truncated);
        let newest: Vec<(u64, u64)> = page.hits.iter().map(|m| (m.room_id, m.seq)).collect();
        assert_eq!(newest, vec![(a, 30), (b, 30), (a, 29)]);
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_prefix_merges_its_words_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::open_for_tests(dir.path());
        let owner = Uuid::new_v4();
        let id = room(&store, "r", owner).await;
        for content in [
            "hello",
            "he said",
            "help me",
            "hero",
            "other",
            "hello again",
            "hex",
        ] {
            store
                .append_message(draft(id, owner, content))
                .await
                .expect("append");
        }
        assert_eq!(
            found(&store, &[id], "he"),
            vec!["hex", "hello again", "hero", "help me", "he said", "hello"]
        );
        assert_eq!(
            found(&store, &[id], "hel"),
            vec!["hello again", "help me", "hello"]
        );
        assert_eq!(found(&store, &[id], "again hel"), vec!["hello again"]);
        assert!(found(&store, &[id], "hexa").is_empty());
        store.close().await.expect("close");
    }

    /// Disk cost of the index: `cargo test --lib search_index_size -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore = "a measurement, not a check"]
    async fn search_index_size() {
        const MESSAGES: usize = 10_000;
        let words = [
            "deploy", "friday", "lunch", "meeting", "review", "merge", "bug", "fixed", "the",
            "build", "is", "green", "again", "coffee", "anyone", "release", "notes", "please",
            "look", "at", "this", "ticket", "tomorrow", "morning", "standup", "moved", "to", "ten",
            "thanks", "team",
        ];
        let mut sizes = Vec::new();
        for indexed in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = crate::store::open_for_tests(dir.path());
            let owner = Uuid::new_v4();
            let id = room(&store, "r", owner).await;
            let mut state = 12345u64;
            let mut batch = Vec::new();
            for n in 0..MESSAGES {
                // A typical chat line: 6 to 21 words of a small vocabulary plus a number.
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                let len = 6 + usize::try_from(state >> 60).expect("small");
                let mut text = String::new();
                for w in 0..len {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let pick = usize::try_from(state >> 33).expect("small") % words.len();
                    text.push_str(words[pick]);
                    text.push(' ');
                    if w == 2 {
                        text.push_str(&format!("{} ", state % 1000));
                    }
                }
                let mut message = draft(id, owner, &text);
                message.seq = u64::try_from(n + 1).expect("small");
                batch.push(message);
                if batch.len() == 100 || n + 1 == MESSAGES {
                    let messages = std::mem::take(&mut batch);
                    store
                        .write(move |t| {
                            for message in &messages {
                                crate::store::insert_record(
                                    &t.messages,
                                    keys::message(message.room_id, message.seq),
                                    message,
                                )?;
                                if indexed {
                                    t.index_message(message)?;
                                }
                            }
                            Ok(())
                        })
                        .await
                        .expect("write");
                }
            }
            let trees = store.trees().expect("trees");
            let key_bytes: usize = trees
                .search
                .iter()
                .keys()
                .map(|k| k.expect("key").len())
                .sum();
            let entries = trees.search.len();
            store.close().await.expect("close");
            drop(trees);
            drop(store);
            let written: u64 = walk(dir.path());
            // Reopened: what sled keeps once its log has been recovered and compacted.
            let store = crate::store::open_for_tests(dir.path());
            store.close().await.expect("close");
            drop(store);
            let on_disk: u64 = walk(dir.path());
            println!("indexed={indexed}: data dir {written} bytes as written");
            sizes.push(on_disk);
            println!(
                "indexed={indexed}: {entries} postings ({:.1}/message), {key_bytes} key bytes \
                 ({:.0}/message), data dir {on_disk} bytes",
                entries as f64 / MESSAGES as f64,
                key_bytes as f64 / MESSAGES as f64
            );
        }
        println!(
            "disk per message for the index: {:.0} bytes",
            (sizes[1] as f64 - sizes[0] as f64) / MESSAGES as f64
        );
    }

    fn walk(dir: &std::path::Path) -> u64 {
        let mut total = 0;
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                total += walk(&entry.path());
            } else {
                total += meta.len();
            }
        }
        total
    }

    fn words(text: &str) -> Vec<String> {
        tokens(text).into_iter().map(|t| t.term).collect()
    }

    #[test]
    fn tokens_are_folded_runs_of_letters_and_digits_with_char_offsets() {
        assert_eq!(
            tokens("Hé, WORLD-42 x"),
            vec![
                Token {
                    term: "hé".to_owned(),
                    start: 0,
                    end: 2
                },
                Token {
                    term: "world".to_owned(),
                    start: 4,
                    end: 9
                },
                Token {
                    term: "42".to_owned(),
                    start: 10,
                    end: 12
                },
            ]
        );
        assert_eq!(words("ＡＢＣ déjà-vu"), vec!["abc", "déjà", "vu"]);
        assert_eq!(words("zero\u{200b}width"), vec!["zerowidth"]);
        assert_eq!(
            words("a b c"),
            Vec::<String>::new(),
            "one letter is no term"
        );
        assert_eq!(words("東京 тест"), vec!["東京", "тест"]);
        assert!(words("").is_empty());
        assert!(words("!!! ... 🎉").is_empty());
    }

    #[test]
    fn long_words_are_cut_and_terms_per_message_are_bounded() {
        let long = "x".repeat(100);
        let token = &tokens(&long)[0];
        assert_eq!(token.term.chars().count(), MAX_TERM_CHARS);
        assert_eq!(
            (token.start, token.end),
            (0, 100),
            "the highlight covers it all"
        );
        let many: String = (0..1000).map(|i| format!("w{i} ")).collect();
        let indexed = terms(&many);
        assert_eq!(indexed.len(), MAX_TERMS_PER_MESSAGE);
        assert!(indexed.contains("w0") && !indexed.contains("w999"));
        // İ lowercases to two chars; the cut counts chars of the term.
        let turkish = "İ".repeat(40);
        assert_eq!(tokens(&turkish)[0].term.chars().count(), MAX_TERM_CHARS);
    }

    #[test]
    fn queries_take_the_last_word_as_a_prefix_and_refuse_what_cannot_match() {
        let q = SearchQuery::parse("  Deploy the fri ").expect("parse");
        assert_eq!(q.exact, vec!["deploy", "the"]);
        assert_eq!(q.prefix, "fri");
        assert!(q.matches(&terms("the deploy is on friday")));
        assert!(!q.matches(&terms("the deploy is on monday")));
        assert!(
            !q.matches(&terms("deploying the fridge")),
            "exact words are exact"
        );
        assert_eq!(q.highlights("Friday: deploy"), vec![[0, 6], [8, 14]]);
        for bad in ["", "   ", "a", "! ?"] {
            assert!(
                matches!(SearchQuery::parse(bad), Err(Error::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert!(SearchQuery::parse(&"ab ".repeat(100)).is_err(), "too long");
        assert!(
            SearchQuery::parse("a1 a2 a3 a4 a5 a6 a7 a8 a9").is_err(),
            "too many"
        );
        assert_eq!(
            SearchQuery::parse("ab ab ab").expect("dupes").exact,
            Vec::<String>::new()
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = SearchCursor {
            created_at_ms: -5,
            room_id: 7,
            seq: 9,
        };
        assert_eq!(SearchCursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "1.2", "1.2.3.4", "x.1.2", "1.-2.3"] {
            assert_eq!(SearchCursor::decode(bad), None, "{bad:?}");
        }
    }
}
