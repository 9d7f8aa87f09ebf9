//! Durable message storage behind one trait, `MessageStore`, with two
//! backends: SQLite (`sqlite`; one host, the default) and PostgreSQL (`pg`;
//! several hosts on one database). What both share lives here: the
//! operations, the contract every backend checks its arguments against, the
//! inserts waiting for a group commit, how `q` folds case, and the hourly
//! bucket both schemas count by (`hour_of`).

mod contract;
pub use contract::{
    MAX_FEED_LIMIT, MAX_ID_BYTES, MAX_INSERT_BATCH, MAX_MSISDN_BYTES, READ_TIME_LIMIT, check_feed_limit,
    check_feed_wait, check_insert_batch, check_message, check_page_request, check_top_senders, follows, is_storable_id,
};
mod expiry;
pub use expiry::{EXPIRY_STEP, Expired, Expiry, REMEMBER_REMOVED, stamp};
mod folding;
pub mod forward;
pub use folding::fold;
pub use forward::ForwardStore;
mod pending;
pub mod pg;
pub use pg::PgStore;
pub mod sqlite;
pub use sqlite::SqliteStore;

use async_trait::async_trait;

pub use crate::bindings::inlet::service::storage::Error as StoreError;
pub use crate::bindings::inlet::service::storage::{FeedPage, FeedPosition};
use crate::bindings::inlet::service::storage::{
    InsertOutcome, Message, MessageStats, Page, PageRequest, Removal, StoredMessage,
};

/// Before every message of the feed.
pub const FEED_START: FeedPosition = FeedPosition { epoch: 0, seq: 0 };

/// The storage operations the guest's `storage` import exposes. Both
/// backends implement it; test harnesses may supply their own.
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
    /// The message stored under `message_id`, with its `created_at`.
    async fn get(&self, message_id: String) -> Result<Option<StoredMessage>, StoreError>;
    /// Removes the message stored under `message_id` and remembers its id
    /// (an insert of it is then `duplicate`); returns once durable.
    async fn remove(&self, message_id: String) -> Result<Removal, StoreError>;
    /// One step of the retention policy: removes at most `expiry.limit`
    /// messages stored before `expiry.stored_before` (remembering their
    /// ids), and forgets at most as many remembered ids that `expiry`
    /// lets go; returns once durable.
    async fn expire(&self, expiry: &Expiry) -> Result<Expired, StoreError>;
    /// At most `limit` messages stored after `after`, in the order they
    /// became durable, and the position after them; none when `after` is no
    /// position of this database. Nothing is ever stored behind a position
    /// this hands out.
    async fn feed(&self, after: FeedPosition, limit: u32) -> Result<Option<FeedPage>, StoreError>;
    /// The position of the last message `feed` would hand out now
    /// (`FEED_START` when none): long-polls compare theirs with it.
    async fn feed_head(&self) -> Result<FeedPosition, StoreError>;
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
    /// `MessageStore::get`: one message by its id.
    Get,
    /// `MessageStore::remove`: erasing one message.
    Remove,
    /// `MessageStore::expire`: one step of the retention policy.
    Expire,
    /// `MessageStore::feed`: one page of the feed.
    Feed,
    /// `MessageStore::feed_head`: where the feed ends, for long-polls.
    FeedHead,
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
            Self::Get => "get",
            Self::Remove => "remove",
            Self::Expire => "expire",
            Self::Feed => "feed",
            Self::FeedHead => "feed_head",
            Self::Ping => "ping",
        }
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
