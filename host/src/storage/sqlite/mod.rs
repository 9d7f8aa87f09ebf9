//! The SQLite backend, for one host (the default): one writer thread owns
//! the only read-write connection and commits inserts in groups (many
//! requests, one fsync); a few reader threads own read-only connections.
//! Callers are async and never block a tokio worker: every SQLite call runs
//! on these dedicated threads.

pub mod backup;
pub mod bulk;
mod errors;
mod feed;
mod forward;
mod queries;
pub(super) use queries::message_from_row;
mod readers;
mod removals;
mod schema;
mod search_counts;
mod text_index;
pub use text_index::IndexSchedule;
mod upkeep;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::forward::{Attempted, Backlog, DueRetry, ForwardStore, Lead};
use super::{
    Expired, Expiry, FeedPage, FeedPosition, MessageStore, StoreError, check_feed_limit, check_insert_batch,
    check_message, check_page_request, check_top_senders, is_storable_id,
};
use crate::bindings::inlet::service::storage::{
    InsertOutcome, Message, MessageStats, Page, PageRequest, Removal, StoredMessage,
};

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

    async fn get(&self, message_id: String) -> Result<Option<StoredMessage>, StoreError> {
        if !is_storable_id(&message_id) {
            return Ok(None);
        }
        self.readers.run(move |conn| queries::get(conn, &message_id)).await
    }

    async fn remove(&self, message_id: String) -> Result<Removal, StoreError> {
        if !is_storable_id(&message_id) {
            return Ok(Removal::NotFound);
        }
        self.writer.alone(move |conn| removals::remove(conn, &message_id)).await
    }

    async fn expire(&self, expiry: &Expiry) -> Result<Expired, StoreError> {
        let expiry = expiry.clone();
        self.writer.alone(move |conn| removals::expire(conn, &expiry)).await
    }

    async fn feed(&self, after: FeedPosition, limit: u32) -> Result<Option<FeedPage>, StoreError> {
        check_feed_limit(limit)?;
        self.readers.run(move |conn| feed::read(conn, after, limit)).await
    }

    async fn feed_head(&self) -> Result<FeedPosition, StoreError> {
        self.readers.run(|conn| feed::head(conn)).await
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

#[async_trait]
impl ForwardStore for SqliteStore {
    async fn forward_position(&self) -> Result<FeedPosition, StoreError> {
        self.writer.alone(forward::position).await
    }

    async fn forward_advance(
        &self,
        from: FeedPosition,
        to: FeedPosition,
        retries: Vec<Attempted>,
    ) -> Result<bool, StoreError> {
        self.writer
            .alone(move |conn| forward::advance(conn, from, to, &retries))
            .await
    }

    async fn forward_due(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<DueRetry>, StoreError> {
        self.writer
            .alone(move |conn| forward::due(conn, now, lease_until, limit))
            .await
    }

    async fn forward_settle(&self, attempted: Vec<Attempted>) -> Result<(), StoreError> {
        self.writer.alone(move |conn| forward::settle(conn, &attempted)).await
    }

    async fn forward_requeue(&self, now: i64) -> Result<u64, StoreError> {
        self.writer.alone(move |conn| forward::requeue(conn, now)).await
    }

    async fn forward_backlog(&self) -> Result<Backlog, StoreError> {
        self.readers.run(|conn| forward::backlog(conn)).await
    }

    /// One process serves a SQLite database.
    async fn forward_lead(&self) -> Result<Option<Lead>, StoreError> {
        Ok(Some(Lead::sole()))
    }
}
