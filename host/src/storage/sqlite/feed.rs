//! The feed on SQLite: messages by `seq`. One writer commits them in order,
//! and `seq` only grows (the insert takes the next number after any ever
//! handed out, `feed_mark` remembering those of deleted rows), so a reader
//! never sees a row appear behind one it has seen. Every position's epoch is
//! 0 (see `wit/service.wit`).

use rusqlite::{Connection, OptionalExtension};

use super::queries::message_from_row;
use crate::bindings::inlet::service::storage::StoredMessage;
use crate::storage::{FEED_START, FeedPage, FeedPosition};

/// The highest `seq` handed out so far, stored or deleted since.
const HIGHEST_SEQ: &str =
    "SELECT MAX(COALESCE((SELECT MAX(seq) FROM messages), 0), COALESCE((SELECT seq FROM feed_mark), 0))";

/// At most `limit` messages after `after`; none when `after` is no position
/// of this database (another epoch, or past any `seq` handed out).
pub(super) fn read(conn: &Connection, after: FeedPosition, limit: u32) -> rusqlite::Result<Option<FeedPage>> {
    let Ok(after_seq) = i64::try_from(after.seq) else {
        return Ok(None);
    };
    if after.epoch != 0 {
        return Ok(None);
    }
    let mut next = after;
    let mut messages = Vec::new();
    let mut rows = conn.prepare_cached(
        "SELECT message_id, from_msisdn, to_msisdn, ts, ts_micros, text, created_at, seq
             FROM messages WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = rows.query((after_seq, limit))?;
    while let Some(row) = rows.next()? {
        messages.push(StoredMessage {
            message: message_from_row(row)?,
            created_at: row.get(6)?,
        });
        next = position(row.get(7)?);
    }
    if messages.is_empty() && after_seq > conn.query_row(HIGHEST_SEQ, [], |row| row.get(0))? {
        return Ok(None);
    }
    Ok(Some(FeedPage { messages, next }))
}

/// The position of the last stored message.
pub(super) fn head(conn: &Connection) -> rusqlite::Result<FeedPosition> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT seq FROM messages ORDER BY seq DESC LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(last.map_or(FEED_START, position))
}

pub(super) fn position(seq: i64) -> FeedPosition {
    FeedPosition {
        epoch: 0,
        seq: seq.unsigned_abs(),
    }
}
