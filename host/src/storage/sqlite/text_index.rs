//! The trigram index of `text` (`message_text`) is filled behind the
//! inserts, not in their transaction.
//!
//! Indexing a row in its own small group commit cost as much as the rest of
//! the insert: FTS5 writes a new segment and its structure record on every
//! commit. Indexed 512 rows at a time it costs a fraction of that. So the writer indexes the oldest unindexed rows in chunks: after a
//! commit that leaves a full chunk waiting, and whenever it has been idle
//! for a moment.
//!
//! `text_index.indexed_through` is the highest `seq` indexed: every row at or
//! below it is in the index, none above it is. A search reads it in the same
//! snapshot as the index and checks the rows above it one by one, so results
//! stay exact while the index catches up (at most one chunk plus one group
//! commit behind under load).

use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior, params};

/// When the writer indexes waiting rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSchedule {
    /// Rows indexed in one transaction; also the backlog that makes the
    /// writer index right after a commit.
    pub chunk: u32,
    /// Idle time after which the writer indexes a smaller backlog.
    pub idle_after: Duration,
}

impl Default for IndexSchedule {
    /// 512-row chunks index an order of magnitude faster than small ones,
    /// and one chunk's time bounds what an insert waiting behind it waits.
    fn default() -> Self {
        Self {
            chunk: 512,
            idle_after: Duration::from_millis(50),
        }
    }
}

/// Rows waiting for the index, counted by `seq` (rows deleted since count
/// too, which only makes the writer index a little earlier).
pub(super) fn backlog(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE((SELECT MAX(seq) FROM messages), 0) - indexed_through FROM text_index")?
        .query_row([], |row| row.get(0))
}

/// Indexes up to `rows` of the oldest unindexed rows in one transaction.
pub(super) fn index_next(conn: &mut Connection, rows: u32) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    index_within(&tx, rows)?;
    tx.commit()
}

/// Indexes up to `rows` of the oldest unindexed rows in `tx`.
pub(super) fn index_within(tx: &Transaction<'_>, rows: u32) -> rusqlite::Result<()> {
    let through: i64 = tx
        .prepare_cached("SELECT indexed_through FROM text_index")?
        .query_row([], |row| row.get(0))?;
    let last: Option<i64> = tx
        .prepare_cached("SELECT MAX(seq) FROM (SELECT seq FROM messages WHERE seq > ?1 ORDER BY seq LIMIT ?2)")?
        .query_row(params![through, rows], |row| row.get(0))?;
    let Some(last) = last else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT INTO message_text (rowid, text_folded) SELECT seq, text_folded FROM messages WHERE seq > ?1 AND seq <= ?2",
    )?
    .execute(params![through, last])?;
    tx.prepare_cached("UPDATE text_index SET indexed_through = ?1")?
        .execute([last])?;
    Ok(())
}
