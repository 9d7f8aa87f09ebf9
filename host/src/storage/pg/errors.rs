//! Mapping PostgreSQL failures onto the WIT `storage.error` cases.

use deadpool_postgres::PoolError;

use crate::storage::StoreError;

/// SQLSTATE classes that say "not now" rather than "never": a lost or
/// refused connection (08), a rolled-back transaction (40: serialization,
/// deadlock), resources (53), an operator or a failover (57: shutdown,
/// cancel), lock not available (55), read-only after a demotion (25), a
/// system error (58), authentication (28).
const TRANSIENT_CLASSES: &[&str] = &["08", "25", "28", "40", "53", "55", "57", "58"];

/// A database error is `unavailable` when its class is transient (or the
/// schema is missing, as on a fresh replica), else `internal`; an error with
/// no SQLSTATE is a broken or refused connection: `unavailable`.
pub(super) fn classify(error: &tokio_postgres::Error) -> StoreError {
    let Some(db) = error.as_db_error() else {
        return StoreError::Unavailable(format!("database unreachable: {}", with_causes(error)));
    };
    let code = db.code().code();
    if TRANSIENT_CLASSES.contains(&&code[..2]) || code == "42P01" {
        StoreError::Unavailable(format!("database: {} ({code})", db.message()))
    } else {
        StoreError::Internal(format!("database: {} ({code})", db.message()))
    }
}

/// SQLSTATE classes of a statement refused because of a row it wrote: a
/// bad value (22), a constraint (23), a limit such as an index entry's size
/// (54), a trigger's `RAISE` (P0).
const ROW_CLASSES: &[&str] = &["22", "23", "54", "P0"];

/// Whether a statement failed because of the row it wrote, not because of
/// the database: then the other rows of its group may go in without it.
pub(super) fn refused_row(error: &tokio_postgres::Error) -> bool {
    error
        .as_db_error()
        .is_some_and(|db| ROW_CLASSES.contains(&&db.code().code()[..2]))
}

/// No connection could be had: refused, timed out, the pool closed, and
/// also a database not created yet or a password not accepted yet. None of
/// these is the request's fault, and each may mend while the host runs.
pub(super) fn classify_pool(error: &PoolError) -> StoreError {
    StoreError::Unavailable(format!("no database connection: {}", with_causes(error)))
}

/// An error and its causes on one line: the pool and the client say only
/// "db error" and leave the server's reason to the cause.
pub(super) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let text = error.to_string();
        // Some errors print their cause themselves.
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = error.source();
    }
    line
}

/// The connection broke while an insert or its commit was in flight: the
/// database may or may not have committed it. The sender's retry with the
/// same `message_id` settles it (`created` or `duplicate`).
pub(super) fn outcome_unknown(error: &tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("commit outcome unknown: {}", with_causes(error)))
}
