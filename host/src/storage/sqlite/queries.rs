//! The read queries: filtered pages, one message by id, and aggregates. Every value is bound as a
//! parameter; the SQL text only varies by which filters are present.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};

use super::search_counts::{Counted, SearchCounts, Watermark};
use crate::bindings::inlet::service::storage::{
    Message, MessageFilter, MessageStats, Page, PageRequest, SenderCount, StoredMessage, Timestamp,
};
use crate::storage::{MICROS_PER_HOUR, fold};

/// Most trigrams of a long needle looked up in the text index. More would
/// only narrow a candidate set that is rechecked exactly anyway.
const MAX_TRIGRAMS: usize = 16;

/// Longest needle, in characters, searched as one phrase: every one of its
/// trigrams is looked up, and a long needle is selective enough that
/// `MAX_TRIGRAMS` of them find few candidates to recheck.
const MAX_PHRASE_CHARS: usize = 64;

/// How rows matching `q` are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextSearch {
    /// Candidates from the trigram index and the rows it does not cover
    /// yet, then the exact check.
    Indexed,
    /// The exact check on each row the query visits (for an in-order walk
    /// that stops after one page).
    Scan,
}

/// Rows an in-order walk may be expected to visit before it is preferred to
/// sorting every indexed match: a common needle fills a page within a few
/// hundred rows, while the index would hand over hundreds of thousands.
const WALK_BUDGET: i64 = 20_000;

/// `WHERE` clause and its parameters for a filter.
fn where_clause(filter: &MessageFilter, search: TextSearch) -> (String, Vec<Value>) {
    let mut conditions: Vec<String> = Vec::new();
    let mut values = Vec::new();
    if let Some(from) = &filter.from {
        conditions.push("from_msisdn = ?".into());
        values.push(Value::Text(from.clone()));
    }
    if let Some(since) = filter.since_unix_micros {
        conditions.push("ts_micros >= ?".into());
        values.push(Value::Integer(since));
    }
    if let Some(needle) = &filter.text_contains {
        let needle = fold(needle);
        let query = TextQuery::for_needle(&needle).filter(|_| search == TextSearch::Indexed);
        if let Some(query) = &query {
            conditions.push(format!("seq IN {}", indexed_text_rows()));
            values.extend(query.parameters(&needle));
        }
        // A scan, or an index query that only narrows the candidates, needs
        // every row checked.
        if query.is_none_or(|query| query.matches == IndexMatches::Candidates) {
            conditions.push(HOLDS_NEEDLE.into());
            values.push(Value::Text(needle));
        }
    }
    if conditions.is_empty() {
        (String::new(), values)
    } else {
        (format!("WHERE {}", conditions.join(" AND ")), values)
    }
}

/// The exact test behind `q`, given the folded needle: both sides folded by
/// `storage::fold`, so containment is a comparison of bytes. A NULL text
/// holds nothing; every text holds the empty needle.
const HOLDS_NEEDLE: &str = "instr(text_folded, ?) > 0";

/// The row numbers a `TextQuery` finds: its matches among the rows the text
/// index covers, and the newer rows that hold the needle. Parameters: the
/// FTS5 query, then the folded needle (`TextQuery::parameters`).
fn indexed_text_rows() -> String {
    format!(
        "(SELECT rowid FROM message_text WHERE message_text MATCH ?
          UNION ALL
          SELECT seq FROM messages WHERE seq > (SELECT indexed_through FROM text_index) AND {HOLDS_NEEDLE})"
    )
}

/// An FTS5 query over the trigram index (which holds `text_folded`) for a
/// folded `q` needle.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TextQuery {
    fts: String,
    matches: IndexMatches,
}

/// What the index query's matches are, among the rows the index covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexMatches {
    /// Exactly the rows containing the needle.
    Exactly,
    /// Every row containing the needle, and maybe others: each is rechecked.
    Candidates,
}

impl TextQuery {
    /// The folded needle as one phrase: its trigrams
    /// at consecutive positions, which is exactly containment. A needle
    /// longer than `MAX_PHRASE_CHARS`, or holding a NUL, becomes up to
    /// `MAX_TRIGRAMS` of its trigrams without a NUL that must all occur.
    /// `None` when the needle is too short for trigrams, so a scan has to
    /// decide.
    fn for_needle(needle: &str) -> Option<Self> {
        let chars: Vec<char> = needle.chars().collect();
        if chars.len() < 3 {
            return None;
        }
        if chars.len() <= MAX_PHRASE_CHARS && !chars.contains(&'\0') {
            return Some(Self {
                fts: quoted(needle),
                matches: IndexMatches::Exactly,
            });
        }
        let mut trigrams: Vec<String> = chars
            .windows(3)
            .filter(|window| !window.contains(&'\0'))
            .map(|window| window.iter().collect())
            .collect();
        trigrams.sort_unstable();
        trigrams.dedup();
        if trigrams.is_empty() {
            return None;
        }
        let step = trigrams.len().div_ceil(MAX_TRIGRAMS);
        let terms: Vec<String> = trigrams.iter().step_by(step).map(|trigram| quoted(trigram)).collect();
        Some(Self {
            fts: terms.join(" AND "),
            matches: IndexMatches::Candidates,
        })
    }

    /// The values `indexed_text_rows` binds.
    fn parameters(&self, needle: &str) -> [Value; 2] {
        [Value::Text(self.fts.clone()), Value::Text(needle.to_owned())]
    }
}

/// `text` as an FTS5 string: one phrase of all its tokens.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// How many rows match `filter`. The common shapes are answered from the
/// aggregates the insert trigger maintains instead of counting rows.
fn count(tx: &Transaction<'_>, filter: &MessageFilter, remembered: &SearchCounts) -> rusqlite::Result<i64> {
    match (&filter.from, filter.since_unix_micros, &filter.text_contains) {
        (None, None, None) => tx
            .prepare_cached("SELECT messages FROM totals")?
            .query_row([], |row| row.get(0)),
        (Some(from), None, None) => tx
            .prepare_cached("SELECT COALESCE((SELECT messages FROM sender_counts WHERE from_msisdn = ?), 0)")?
            .query_row([from], |row| row.get(0)),
        (None, Some(since), None) => count_since(tx, since),
        _ => count_rows(tx, filter, remembered),
    }
}

/// Counts the matching rows, or only those inserted since a remembered
/// total of the same filter (see `search_counts`).
fn count_rows(tx: &Transaction<'_>, filter: &MessageFilter, remembered: &SearchCounts) -> rusqlite::Result<i64> {
    let now = Watermark::read(tx)?;
    let total = match remembered.extendable(filter, now) {
        Some(earlier) => earlier.total + count_newer(tx, filter, earlier.at.newest)?,
        None => count_afresh(tx, filter)?,
    };
    remembered.remember(filter, Counted { total, at: now });
    Ok(total)
}

/// Counts every matching row. A search alone with an exact index query
/// counts the row numbers the index gives without reading a row (a common
/// word matches a fifth of a million rows).
fn count_afresh(tx: &Transaction<'_>, filter: &MessageFilter) -> rusqlite::Result<i64> {
    if let MessageFilter {
        from: None,
        since_unix_micros: None,
        text_contains: Some(needle),
    } = filter
        && let needle = fold(needle)
        && let Some(query) = TextQuery::for_needle(&needle).filter(|query| query.matches == IndexMatches::Exactly)
    {
        return tx
            .prepare_cached(&format!("SELECT COUNT(*) FROM {}", indexed_text_rows()))?
            .query_row(params_from_iter(query.parameters(&needle)), |row| row.get(0));
    }
    let (condition, values) = where_clause(filter, TextSearch::Indexed);
    tx.prepare_cached(&format!("SELECT COUNT(*) FROM messages {condition}"))?
        .query_row(params_from_iter(values.iter()), |row| row.get(0))
}

/// Matching rows above `seq`, found by the rowid alone and checked one by
/// one: a short tail (`search_counts::MAX_TAIL` rows at most), cheaper to
/// walk than anything an index would hand over.
fn count_newer(tx: &Transaction<'_>, filter: &MessageFilter, seq: i64) -> rusqlite::Result<i64> {
    let (condition, mut values) = where_clause(filter, TextSearch::Scan);
    let condition = and(condition, "seq > ?");
    values.push(Value::Integer(seq));
    tx.prepare_cached(&format!("SELECT COUNT(*) FROM messages NOT INDEXED {condition}"))?
        .query_row(params_from_iter(values.iter()), |row| row.get(0))
}

/// Whole hours after `since` come from `hourly_counts`; only the rows in the
/// hour holding `since` are counted one by one.
fn count_since(tx: &Transaction<'_>, since: i64) -> rusqlite::Result<i64> {
    let hour = since.div_euclid(MICROS_PER_HOUR);
    let hour_end = (hour + 1).saturating_mul(MICROS_PER_HOUR);
    tx.prepare_cached(
        "SELECT (SELECT COALESCE(SUM(messages), 0) FROM hourly_counts WHERE hour > ?1)
              + (SELECT COUNT(*) FROM messages WHERE ts_micros >= ?2 AND ts_micros < ?3)",
    )?
    .query_row(params![hour, since, hour_end], |row| row.get(0))
}

/// `condition` (a `WHERE` clause, or nothing) narrowed by `clause`.
fn and(condition: String, clause: &str) -> String {
    if condition.is_empty() {
        format!("WHERE {clause}")
    } else {
        format!("{condition} AND {clause}")
    }
}

/// One page and the filtered total, read in one snapshot.
pub(super) fn list(conn: &mut Connection, request: &PageRequest, remembered: &SearchCounts) -> rusqlite::Result<Page> {
    let tx = conn.transaction()?;
    let total = count(&tx, &request.filter, remembered)?;
    let (messages, more) = if total == 0 {
        (Vec::new(), false)
    } else {
        page(&tx, request, total)?
    };
    Ok(Page {
        messages,
        total: total as u64,
        more,
    })
}

/// The rows of one page, `total` of them matching in all, and whether
/// another matching row follows them (one row more is read to know).
fn page(tx: &Transaction<'_>, request: &PageRequest, total: i64) -> rusqlite::Result<(Vec<Message>, bool)> {
    let walk = walks_in_order(tx, request, total)?;
    let search = if walk { TextSearch::Scan } else { TextSearch::Indexed };
    let (mut condition, mut values) = where_clause(&request.filter, search);
    if let Some(after) = &request.after {
        // A row-value range: both listing indexes seek straight to it.
        condition = and(condition, "(ts_micros, message_id) > (?, ?)");
        values.push(Value::Integer(after.unix_micros));
        values.push(Value::Text(after.message_id.clone()));
    }
    let source = if walk {
        "messages INDEXED BY messages_by_instant"
    } else {
        "messages"
    };
    let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
    values.push(Value::Integer(i64::from(request.limit) + 1));
    values.push(Value::Integer(request.offset as i64));
    // The inner query walks an index that covers the order and `seq`, so
    // rows skipped by a deep offset are never read from the table.
    let mut page = tx.prepare_cached(&format!(
        "SELECT message_id, from_msisdn, to_msisdn, ts, ts_micros, text FROM messages
         WHERE seq IN (SELECT seq FROM {source} {condition} ORDER BY ts_micros, message_id LIMIT ? OFFSET ?)
         ORDER BY ts_micros, message_id"
    ))?;
    let mut messages = page
        .query_map(params_from_iter(values.iter()), message_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = messages.len() > limit;
    messages.truncate(limit);
    Ok((messages, more))
}

/// Whether a `q`-only page is better found by walking all rows in order and
/// checking each until the page is full: when matches are dense enough that
/// the walk should stay within `WALK_BUDGET` rows.
fn walks_in_order(tx: &Transaction<'_>, request: &PageRequest, total: i64) -> rusqlite::Result<bool> {
    let filter = &request.filter;
    if filter.from.is_some() || filter.since_unix_micros.is_some() || filter.text_contains.is_none() {
        return Ok(false);
    }
    let rows: i64 = tx
        .prepare_cached("SELECT messages FROM totals")?
        .query_row([], |row| row.get(0))?;
    let wanted = i64::from(request.limit).saturating_add(request.offset as i64);
    Ok(wanted.saturating_mul(rows) / total.max(1) <= WALK_BUDGET)
}

/// A row selected as `message_id, from_msisdn, to_msisdn, ts, ts_micros,
/// text` (first), as a message.
pub(in crate::storage) fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        message_id: row.get(0)?,
        from: row.get(1)?,
        to: row.get(2)?,
        ts: Timestamp {
            text: row.get(3)?,
            unix_micros: row.get(4)?,
        },
        text: row.get(5)?,
    })
}

/// The message stored under `message_id`, with its `created_at`.
pub(super) fn get(conn: &Connection, message_id: &str) -> rusqlite::Result<Option<StoredMessage>> {
    conn.prepare_cached(
        "SELECT message_id, from_msisdn, to_msisdn, ts, ts_micros, text, created_at
         FROM messages WHERE message_id = ?1",
    )?
    .query_row([message_id], |row| {
        Ok(StoredMessage {
            message: message_from_row(row)?,
            created_at: row.get(6)?,
        })
    })
    .optional()
}

/// Totals, top senders (count descending, sender ascending) and the first
/// and last `ts` by instant, read in one snapshot.
pub(super) fn stats(conn: &mut Connection, top_senders: u32) -> rusqlite::Result<MessageStats> {
    let tx = conn.transaction()?;
    let (total, senders): (i64, i64) = tx
        .prepare_cached("SELECT messages, senders FROM totals")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let top_senders = tx
        .prepare_cached(
            "SELECT from_msisdn, messages FROM sender_counts
             ORDER BY messages DESC, from_msisdn ASC LIMIT ?",
        )?
        .query_map([top_senders], |row| {
            Ok(SenderCount {
                from: row.get(0)?,
                count: row.get::<_, i64>(1)? as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let edge = |order: &str| -> rusqlite::Result<Option<String>> {
        let sql = format!("SELECT ts FROM messages ORDER BY ts_micros {order}, message_id {order} LIMIT 1");
        let mut statement = tx.prepare_cached(&sql)?;
        let mut rows = statement.query([])?;
        rows.next()?.map(|row| row.get(0)).transpose()
    };
    let (first_ts, last_ts) = (edge("ASC")?, edge("DESC")?);
    Ok(MessageStats {
        total_messages: total as u64,
        senders_count: senders as u64,
        top_senders,
        first_ts,
        last_ts,
    })
}
