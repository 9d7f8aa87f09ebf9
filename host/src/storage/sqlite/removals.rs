//! Removing messages: one by its id (an erasure), and the oldest ones by
//! age (retention). The triggers of `schema` do the rest in the same
//! transaction: they uncount the row, drop it from the text index and
//! remember its id, so a redelivery of it is `duplicate`.

use rusqlite::{Connection, params};

use crate::bindings::inlet::service::storage::Removal;
use crate::storage::{Expired, Expiry};

/// Removes the message stored under `message_id`, durably.
pub(super) fn remove(conn: &mut Connection, message_id: &str) -> rusqlite::Result<Removal> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let removed = tx
        .prepare_cached("DELETE FROM messages WHERE message_id = ?1")?
        .execute([message_id])?;
    tx.commit()?;
    Ok(if removed == 0 {
        Removal::NotFound
    } else {
        Removal::Removed
    })
}

/// Removes the messages stored before `expiry.stored_before` among the
/// `expiry.limit` oldest by `seq` (but those forwarding owes, with
/// `expiry.keep_owed`), then forgets remembered ids `expiry` lets go, in one
/// transaction.
///
/// What forwarding owes is skipped before the step's rows are counted, so
/// that a run of undelivered or failed messages at the head never stops
/// retention for the rest.
///
/// Rows are visited in `seq` order, which is commit order, so that a step
/// reads only the head of the table and needs no index on `created_at`
/// (which every insert would pay for). `created_at` follows `seq` unless the
/// clock stepped back; a row stored then is removed once the rows before it
/// are, late by at most that step.
pub(super) fn expire(conn: &mut Connection, expiry: &Expiry) -> rusqlite::Result<Expired> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let messages = tx
        .prepare_cached(
            "DELETE FROM messages WHERE seq IN (
                 SELECT seq FROM (
                     SELECT seq, created_at FROM messages AS m
                     WHERE m.seq <= CASE WHEN ?3 THEN COALESCE((SELECT seq FROM forward_position), 0)
                                         ELSE 9223372036854775807 END
                       AND NOT (?3 AND EXISTS (SELECT 1 FROM forward_retries r WHERE r.message_id = m.message_id))
                     ORDER BY seq LIMIT ?2)
                 WHERE created_at < ?1)",
        )?
        .execute(params![expiry.stored_before, expiry.limit, expiry.keep_owed])?;
    let forgotten_ids = tx
        .prepare_cached(
            "DELETE FROM removed_ids WHERE message_id IN (
                 SELECT message_id FROM removed_ids
                 WHERE removed_at < ?1 AND created_at < ?2 ORDER BY removed_at LIMIT ?3)",
        )?
        .execute(params![expiry.removed_before, expiry.stored_before, expiry.limit])?;
    tx.commit()?;
    Ok(Expired {
        messages: messages as u64,
        forgotten_ids: forgotten_ids as u64,
    })
}
