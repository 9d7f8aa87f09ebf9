//! Loading many messages at once, outside a running server (seeding a
//! database for benchmarks and capacity tests).

use std::path::Path;

use anyhow::Context;
use rusqlite::Connection;

use super::{schema, text_index, writer};
use crate::bindings::inlet::service::storage::{InsertOutcome, Message};

/// Rows per transaction: large enough that commits are rare.
const BATCH: usize = 10_000;

/// What a load did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadReport {
    /// Messages inserted.
    pub created: u64,
    /// Messages skipped because their `message_id` was already stored.
    pub duplicates: u64,
}

/// Inserts `messages` into the database at `path` (created if missing) with
/// the same statement, triggers and aggregates as the server, and indexes
/// their text as it goes. Commits are
/// not synced one by one and a large page cache keeps the indexes in memory;
/// the database is synced and checkpointed once at the end, so an
/// interrupted load may lose its last batches but never leaves a
/// half-written one.
pub fn load(path: &Path, messages: impl IntoIterator<Item = Message>) -> anyhow::Result<LoadReport> {
    let mut conn = Connection::open(path).with_context(|| format!("cannot open database {}", path.display()))?;
    schema::prepare_writer(&mut conn).with_context(|| format!("cannot apply schema to {}", path.display()))?;
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")?;
    let mut report = LoadReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    for message in messages {
        batch.push(message);
        if batch.len() == BATCH {
            insert(&mut conn, &mut batch, &mut report)?;
        }
    }
    insert(&mut conn, &mut batch, &mut report)?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(report)
}

fn insert(conn: &mut Connection, batch: &mut Vec<Message>, report: &mut LoadReport) -> anyhow::Result<()> {
    for outcome in writer::insert_all(conn, batch.iter())? {
        match outcome {
            InsertOutcome::Created => report.created += 1,
            InsertOutcome::Duplicate => report.duplicates += 1,
        }
    }
    batch.clear();
    while text_index::backlog(conn)? > 0 {
        text_index::index_next(conn, BATCH as u32)?;
    }
    Ok(())
}
