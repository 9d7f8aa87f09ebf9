//! Durable message storage behind one trait, `MessageStore`, with two
//! backends: SQLite (this module; one host, the default) and PostgreSQL
//! (`pg`; several hosts on one database).
//!
//! SQLite: one writer thread owns the only read-write connection and commits
//! inserts in groups (many requests, one fsync); a few reader threads own
//! read-only connections. Callers are async and never block a tokio worker:
//! every SQLite call runs on these dedicated threads.

pub mod bulk;
mod contract;
pub use contract::{
    MAX_ID_BYTES, MAX_INSERT_BATCH, MAX_MSISDN_BYTES, READ_TIME_LIMIT, check_insert_batch, check_message,
    check_page_request, check_top_senders,
};
mod errors;
mod folding;
pub use folding::fold;
mod pending;
pub mod pg;
pub use pg::PgStore;
mod queries;
mod readers;
mod schema;
mod search_counts;
mod text_index;
pub use text_index::IndexSchedule;
mod upkeep;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

pub use crate::bindings::inlet::service::storage::Error as StoreError;
use crate::bindings::inlet::service::storage::{InsertOutcome, Message, MessageStats, Page, PageRequest};

/// The storage operations the guest's `storage` import exposes. The SQLite
/// store implements it; test harnesses may supply their own.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Stores `message` unless its id exists; returns once durably committed.
    async fn insert(&self, message: Message) -> Result<InsertOutcome, StoreError>;
    /// Stores each of `messages` whose id does not exist, all or none, in one
    /// transaction (at most `MAX_INSERT_BATCH`); one outcome per message, in
    /// order; returns once durably committed.
    async fn insert_batch(&self, messages: Vec<Message>) -> Result<Vec<InsertOutcome>, StoreError>;
    /// One page of matching messages plus the filtered total.
    async fn list(&self, request: PageRequest) -> Result<Page, StoreError>;
    /// Aggregates with at most `top_senders` senders listed.
    async fn stats(&self, top_senders: u32) -> Result<MessageStats, StoreError>;
    /// Succeeds when the database answers with its schema applied and takes writes.
    async fn ping(&self) -> Result<(), StoreError>;
    /// For a clean shutdown, once no request is left: commits what is queued
    /// and leaves the database tidy.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Width of an hourly count's bucket (`since` counts whole hours from them).
const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// The hourly bucket of a `ts_micros` expression, in SQL (both backends'
/// schemas): floor division by `MICROS_PER_HOUR`, also before 1970, that
/// cannot overflow at either end of the range.
macro_rules! hour_of {
    ($micros:literal) => {
        concat!(
            "(CASE WHEN ",
            $micros,
            " >= 0 THEN ",
            $micros,
            " / 3600000000 ELSE (",
            $micros,
            " + 1) / 3600000000 - 1 END)"
        )
    };
}
use hour_of;

/// One of `MessageStore`'s operations, as metrics label them and test
/// stores script failures for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `MessageStore::insert`: storing one webhook message.
    Insert,
    /// `MessageStore::insert_batch`: storing a delivery's messages at once.
    InsertBatch,
    /// `MessageStore::list`: one page of messages.
    List,
    /// `MessageStore::stats`: the aggregates.
    Stats,
    /// `MessageStore::ping`: the readiness check.
    Ping,
}

impl Operation {
    /// The `operation` label of `storage_operation_ms`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::InsertBatch => "insert_batch",
            Self::List => "list",
            Self::Stats => "stats",
            Self::Ping => "ping",
        }
    }
}

/// The SQLite-backed store.
pub struct SqliteStore {
    writer: writer::Writer,
    readers: readers::Readers,
    search_counts: Arc<search_counts::SearchCounts>,
}

/// How many read-only connections serve listings and stats.
const READER_THREADS: usize = 2;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies the schema.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_with(path, IndexSchedule::default())
    }

    /// `open`, with the text index filled on `schedule` (tests hold it back
    /// to see searches over rows it does not cover yet).
    pub fn open_with(path: &Path, schedule: IndexSchedule) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create database directory {}: {e}", dir.display()))?;
        }
        let writer = writer::Writer::start(path, schedule)?;
        let readers = readers::Readers::start(path, READER_THREADS)?;
        Ok(Self {
            writer,
            readers,
            search_counts: Arc::default(),
        })
    }
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn insert(&self, message: Message) -> Result<InsertOutcome, StoreError> {
        check_message(&message)?;
        self.writer.insert(message).await
    }

    async fn insert_batch(&self, messages: Vec<Message>) -> Result<Vec<InsertOutcome>, StoreError> {
        check_insert_batch(&messages)?;
        self.writer.insert_batch(messages).await
    }

    async fn list(&self, request: PageRequest) -> Result<Page, StoreError> {
        check_page_request(&request)?;
        let remembered = Arc::clone(&self.search_counts);
        self.readers
            .run(move |conn| queries::list(conn, &request, &remembered))
            .await
    }

    async fn stats(&self, top_senders: u32) -> Result<MessageStats, StoreError> {
        check_top_senders(top_senders)?;
        self.readers.run(move |conn| queries::stats(conn, top_senders)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.writer.ping().await
    }

    /// Commits what is queued and checkpoints the WAL, leaving the whole
    /// database in its main file.
    async fn close(&self) -> Result<(), StoreError> {
        self.writer.checkpoint().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_hour_divides_by_the_same_width() {
        assert!(hour_of!("ts_micros").contains(&MICROS_PER_HOUR.to_string()));
    }
}
