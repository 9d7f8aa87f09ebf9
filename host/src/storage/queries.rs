//! The read queries: filtered pages and aggregates. Every value is bound as a
//! parameter; the SQL text only varies by which filters are present.

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params_from_iter};

use super::StoreError;
use crate::bindings::inlet::service::storage::{
    Message, MessageFilter, MessageStats, Page, PageRequest, SenderCount, Timestamp,
};

/// Largest `limit` and `top-senders` the storage interface accepts.
const MAX_PAGE: u32 = 100;

pub fn check_page_request(request: &PageRequest) -> Result<(), StoreError> {
    if !(1..=MAX_PAGE).contains(&request.limit) {
        return Err(StoreError::InvalidArgument(format!(
            "limit {} is not in 1..={MAX_PAGE}",
            request.limit
        )));
    }
    if i64::try_from(request.offset).is_err() {
        return Err(StoreError::InvalidArgument(format!(
            "offset {} is too large",
            request.offset
        )));
    }
    Ok(())
}

pub fn check_top_senders(top_senders: u32) -> Result<(), StoreError> {
    if (1..=MAX_PAGE).contains(&top_senders) {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "top-senders {top_senders} is not in 1..={MAX_PAGE}"
        )))
    }
}

/// `WHERE` clause and its parameters for a filter.
fn where_clause(filter: &MessageFilter) -> (String, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    if let Some(from) = &filter.from {
        conditions.push("from_msisdn = ?");
        values.push(Value::Text(from.clone()));
    }
    if let Some(since) = filter.since_unix_micros {
        conditions.push("ts_micros >= ?");
        values.push(Value::Integer(since));
    }
    if let Some(needle) = &filter.text_contains {
        // lower() folds ASCII case only, as the interface promises. instr()
        // has no wildcards to escape and, unlike LIKE, no pattern length limit.
        conditions.push("instr(lower(text), lower(?)) > 0");
        values.push(Value::Text(needle.clone()));
    }
    if conditions.is_empty() {
        (String::new(), values)
    } else {
        (format!("WHERE {}", conditions.join(" AND ")), values)
    }
}

/// One page and the filtered total, read in one snapshot.
pub fn list(conn: &mut Connection, request: &PageRequest) -> rusqlite::Result<Page> {
    let (condition, mut values) = where_clause(&request.filter);
    let tx = conn.transaction()?;
    let total: i64 = tx
        .prepare_cached(&format!("SELECT COUNT(*) FROM messages {condition}"))?
        .query_row(params_from_iter(values.iter()), |row| row.get(0))?;
    values.push(Value::Integer(request.limit.into()));
    values.push(Value::Integer(request.offset as i64));
    let mut page = tx.prepare_cached(&format!(
        "SELECT message_id, from_msisdn, to_msisdn, ts, ts_micros, text FROM messages {condition}
         ORDER BY ts_micros, message_id LIMIT ? OFFSET ?"
    ))?;
    let messages = page
        .query_map(params_from_iter(values.iter()), message_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page {
        messages,
        total: total as u64,
    })
}

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
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

/// Totals, top senders (count descending, sender ascending) and the first
/// and last `ts` by instant, read in one snapshot.
pub fn stats(conn: &mut Connection, top_senders: u32) -> rusqlite::Result<MessageStats> {
    let tx = conn.transaction()?;
    let (total, senders): (i64, i64) = tx
        .prepare_cached("SELECT COUNT(*), COUNT(DISTINCT from_msisdn) FROM messages")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let top_senders = tx
        .prepare_cached(
            "SELECT from_msisdn, COUNT(*) AS n FROM messages
             GROUP BY from_msisdn ORDER BY n DESC, from_msisdn ASC LIMIT ?",
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
