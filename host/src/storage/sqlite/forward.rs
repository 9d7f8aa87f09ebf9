//! Forwarding's records on SQLite (see `storage::forward`): the position
//! (`forward_position`, a `seq` of the feed) and the retries
//! (`forward_retries`). Writes run on the writer's connection, reads on a
//! reader's.

use rusqlite::{Connection, OptionalExtension, params};

use super::feed;
use super::queries::message_from_row;
use crate::bindings::inlet::service::storage::StoredMessage;
use crate::storage::FeedPosition;
use crate::storage::forward::{Attempted, Backlog, DueRetry, RetryState, seq_of};

/// The position, set to the feed's head when there is none yet.
pub(super) fn position(conn: &mut Connection) -> rusqlite::Result<FeedPosition> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT OR IGNORE INTO forward_position (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM messages",
        [],
    )?;
    let seq: i64 = tx.query_row("SELECT seq FROM forward_position", [], |row| row.get(0))?;
    tx.commit()?;
    Ok(feed::position(seq))
}

/// Moves the position from `from` to `to` with `retries`, if it is at `from`.
pub(super) fn advance(
    conn: &mut Connection,
    from: FeedPosition,
    to: FeedPosition,
    retries: &[Attempted],
) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let moved = tx
        .prepare_cached("UPDATE forward_position SET seq = ?2 WHERE seq = ?1")?
        .execute(params![seq_of(from), seq_of(to)])?;
    if moved == 0 {
        return Ok(false);
    }
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO forward_retries (message_id, attempts, next_attempt_at, failed, last_error)
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM messages WHERE message_id = ?1)
             ON CONFLICT (message_id) DO UPDATE SET attempts = excluded.attempts,
                 next_attempt_at = excluded.next_attempt_at, failed = excluded.failed,
                 last_error = excluded.last_error",
        )?;
        for retry in retries.iter().filter(|retry| retry.state != RetryState::Delivered) {
            let (next_attempt_at, failed) = columns(&retry.state);
            insert.execute(params![
                retry.message_id,
                retry.attempts,
                next_attempt_at,
                failed,
                retry.error
            ])?;
        }
    }
    tx.commit()?;
    Ok(true)
}

/// Retries due at `now`, put off until `lease_until`.
pub(super) fn due(conn: &mut Connection, now: i64, lease_until: i64, limit: u32) -> rusqlite::Result<Vec<DueRetry>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut due = Vec::new();
    {
        let mut rows = tx.prepare_cached(
            "SELECT m.message_id, m.from_msisdn, m.to_msisdn, m.ts, m.ts_micros, m.text, m.created_at, r.attempts
             FROM forward_retries r JOIN messages m ON m.message_id = r.message_id
             WHERE r.failed = 0 AND r.next_attempt_at <= ?1 ORDER BY r.next_attempt_at LIMIT ?2",
        )?;
        let mut rows = rows.query(params![now, limit])?;
        while let Some(row) = rows.next()? {
            due.push(DueRetry {
                message: StoredMessage {
                    message: message_from_row(row)?,
                    created_at: row.get(6)?,
                },
                attempts: row.get(7)?,
            });
        }
        let mut lease = tx.prepare_cached("UPDATE forward_retries SET next_attempt_at = ?2 WHERE message_id = ?1")?;
        for retry in &due {
            lease.execute(params![retry.message.message.message_id, lease_until])?;
        }
    }
    tx.commit()?;
    Ok(due)
}

/// Records attempts' outcomes on the retry rows that still exist.
pub(super) fn settle(conn: &mut Connection, attempted: &[Attempted]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut delete = tx.prepare_cached("DELETE FROM forward_retries WHERE message_id = ?1")?;
        let mut update = tx.prepare_cached(
            "UPDATE forward_retries SET attempts = ?2, next_attempt_at = ?3, failed = ?4, last_error = ?5
             WHERE message_id = ?1",
        )?;
        for outcome in attempted {
            if outcome.state == RetryState::Delivered {
                delete.execute([&outcome.message_id])?;
            } else {
                let (next_attempt_at, failed) = columns(&outcome.state);
                update.execute(params![
                    outcome.message_id,
                    outcome.attempts,
                    next_attempt_at,
                    failed,
                    outcome.error
                ])?;
            }
        }
    }
    tx.commit()
}

/// Every failed delivery due at `now` again, its attempts reset.
pub(super) fn requeue(conn: &mut Connection, now: i64) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let requeued = tx.execute(
        "UPDATE forward_retries SET failed = 0, attempts = 0, next_attempt_at = ?1 WHERE failed = 1",
        [now],
    )?;
    tx.commit()?;
    Ok(requeued as u64)
}

/// What is owed: rows past the position and retries, by state.
pub(super) fn backlog(conn: &Connection) -> rusqlite::Result<Backlog> {
    let position: Option<i64> = conn
        .query_row("SELECT seq FROM forward_position", [], |row| row.get(0))
        .optional()?;
    let Some(position) = position else {
        return Ok(Backlog::default());
    };
    let (past, oldest_past): (i64, Option<String>) = conn.query_row(
        "SELECT COUNT(*), (SELECT created_at FROM messages WHERE seq > ?1 ORDER BY seq LIMIT 1)
         FROM messages WHERE seq > ?1",
        [position],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let (retrying, failed, oldest_retry): (i64, i64, Option<String>) = conn.query_row(
        "SELECT COALESCE(SUM(r.failed = 0), 0), COALESCE(SUM(r.failed = 1), 0),
                MIN(CASE WHEN r.failed = 0 THEN m.created_at END)
         FROM forward_retries r JOIN messages m ON m.message_id = r.message_id",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let oldest_pending = match (oldest_past, oldest_retry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Backlog {
        pending: (past + retrying).unsigned_abs(),
        failed: failed.unsigned_abs(),
        oldest_pending,
    })
}

/// `next_attempt_at` and `failed` of a row in `state` (a delivered one is
/// never written: its row goes).
fn columns(state: &RetryState) -> (i64, bool) {
    match state {
        RetryState::Due(at) => (*at, false),
        RetryState::Failed => (0, true),
        RetryState::Delivered => (0, false),
    }
}
