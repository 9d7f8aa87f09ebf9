//! What forwarding (`crate::forwarding`) keeps in the database: how far the
//! feed has been handed on, and the deliveries that failed and wait for
//! another attempt. The host's own: no guest reaches these, and nothing is
//! written per message on the ingest path (a message's delivery is owed
//! while it is past the position, or while it has a retry row).

use async_trait::async_trait;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{FeedPosition, MessageStore, StoreError};
use crate::bindings::inlet::service::storage::StoredMessage;

/// Where a delivery stands after an attempt that did not succeed, or after
/// one that did (`Delivered`: its retry row, if any, goes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryState {
    /// Delivered: nothing is owed any more.
    Delivered,
    /// Tried again at this instant (Unix milliseconds).
    Due(i64),
    /// Out of attempts: waits for an operator's retry.
    Failed,
}

/// A delivery's record after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempted {
    /// The message.
    pub message_id: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// What comes next.
    pub state: RetryState,
    /// Why the last attempt failed (empty once delivered).
    pub error: String,
}

/// A retry that is due, with what to deliver.
#[derive(Debug, Clone)]
pub struct DueRetry {
    /// The message, as stored.
    pub message: StoredMessage,
    /// Attempts made so far.
    pub attempts: u32,
}

/// What is owed, for `GET /forwarding` and the `forward_pending` gauge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backlog {
    /// Messages not delivered yet and not failed: past the position, or
    /// waiting for a retry.
    pub pending: u64,
    /// Messages out of attempts.
    pub failed: u64,
    /// The `created_at` of the oldest pending message, if any.
    pub oldest_pending: Option<String>,
}

/// This process's turn as the one that forwards from a database: it lasts
/// until `lost` says otherwise, and is given up when dropped.
pub struct Lead {
    lost: CancellationToken,
    /// Gives the turn up when dropped.
    _held: Option<DropGuard>,
}

impl Lead {
    /// The turn on a database no other process forwards from: never lost.
    pub fn sole() -> Self {
        Self {
            lost: CancellationToken::new(),
            _held: None,
        }
    }

    /// A turn that `lost` ends, held until `held` is dropped.
    pub fn held(lost: CancellationToken, held: DropGuard) -> Self {
        Self {
            lost,
            _held: Some(held),
        }
    }

    /// Resolves once another process may have taken the turn.
    pub async fn lost(&self) {
        self.lost.cancelled().await;
    }
}

/// A position's `seq` as a column holds it: one past any stored number
/// stays past them all.
pub(crate) fn seq_of(position: FeedPosition) -> i64 {
    i64::try_from(position.seq).unwrap_or(i64::MAX)
}

/// A store that can keep forwarding's state (both backends).
#[async_trait]
pub trait ForwardStore: MessageStore {
    /// The position forwarding has handed on everything up to. The first
    /// call sets it at the feed's end: what was stored before forwarding
    /// was configured is not forwarded.
    async fn forward_position(&self) -> Result<FeedPosition, StoreError>;
    /// Moves the position from `from` to `to` and records `retries` (the
    /// deliveries between them still owed), in one transaction; `false`
    /// (and nothing written) when the position is no longer `from`.
    async fn forward_advance(
        &self,
        from: FeedPosition,
        to: FeedPosition,
        retries: Vec<Attempted>,
    ) -> Result<bool, StoreError>;
    /// At most `limit` retries due at `now` (Unix ms), each put off until
    /// `lease_until` so that no other attempt takes it meanwhile.
    async fn forward_due(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<DueRetry>, StoreError>;
    /// Records attempts' outcomes on their retry rows (removed when
    /// delivered; a row that is gone, its message erased, stays gone).
    async fn forward_settle(&self, attempted: Vec<Attempted>) -> Result<(), StoreError>;
    /// Makes every failed delivery due at `now` with its attempts reset;
    /// how many.
    async fn forward_requeue(&self, now: i64) -> Result<u64, StoreError>;
    /// What is owed now.
    async fn forward_backlog(&self) -> Result<Backlog, StoreError>;
    /// This process's turn to forward, or `None` while another process has
    /// it: one process at a time forwards from a database.
    async fn forward_lead(&self) -> Result<Option<Lead>, StoreError>;
}
