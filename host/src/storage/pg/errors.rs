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
        return StoreError::Unavailable(format!("database unreachable: {error}"));
    };
    let code = db.code().code();
    if TRANSIENT_CLASSES.contains(&&code[..2]) || code == "42P01" {
        StoreError::Unavailable(format!("database: {} ({code})", db.message()))
    } else {
        StoreError::Internal(format!("database: {} ({code})", db.message()))
    }
}

/// No connection could be had in time, or the pool is closed.
pub(super) fn classify_pool(error: &PoolError) -> StoreError {
    match error {
        PoolError::Backend(error) => classify(error),
        other => StoreError::Unavailable(format!("database unreachable: {other}")),
    }
}

/// The connection broke while an insert or its commit was in flight: the
/// database may or may not have committed it. The sender's retry with the
/// same `message_id` settles it (`created` or `duplicate`).
pub(super) fn outcome_unknown(error: &tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("commit outcome unknown: {error}"))
}
