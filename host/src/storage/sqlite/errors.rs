//! Mapping SQLite failures onto the WIT `storage.error` cases.

use rusqlite::ErrorCode;

use super::StoreError;

/// Transient conditions (locks, a full disk, an unwritable file, a read
/// stopped at its time limit) are `unavailable`, so the caller answers 503
/// and the sender retries; anything else is `internal`.
pub(super) fn classify(error: &rusqlite::Error) -> StoreError {
    let transient = matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::OperationInterrupted
        )
    );
    if transient {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Internal(error.to_string())
    }
}

/// Whether a statement failed because of the row it wrote (a constraint or
/// a trigger refused it, or it was too big) rather than because of the
/// database: then the other rows of its group may go in without it.
pub(super) fn refused_row(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::ConstraintViolation | ErrorCode::TooBig)
    )
}
