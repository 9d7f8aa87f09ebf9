//! Totals of filtered listings that no aggregate answers (a `q` search,
//! `from` with `since`), remembered so that paging through a search or
//! polling it does not recheck every match again.
//!
//! Counting the rows whose text contains a common word means reading every
//! match the trigram index offers, which grows with the word's rows (the
//! benchmark measures it: tests/bench/RESULTS.md). A remembered total stays right up
//! to the row it was counted through as long as no row was deleted (new rows
//! get a higher `seq` than any before; SQLite reuses numbers only after the
//! newest rows were deleted). So a later count adds the rows above that mark,
//! checked one by one, to the remembered total. The delete trigger counts
//! deletions in `totals.removed`; a total remembered before a deletion is
//! not used again.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use rusqlite::Transaction;

use crate::bindings::inlet::service::storage::MessageFilter;

/// How many filters' totals are kept.
const CAPACITY: NonZeroUsize = NonZeroUsize::new(256).expect("non-zero");

/// Longer needles are not remembered: they are selective, so the index
/// counts them quickly, and they would make the cache's memory unbounded.
const MAX_NEEDLE_BYTES: usize = 256;

/// Most rows above a remembered total that are checked one by one; a longer
/// tail is counted afresh through the indexes.
const MAX_TAIL: i64 = 50_000;

/// Where the rows stood when a snapshot was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Watermark {
    /// Highest `seq`: every row inserted later has a higher one.
    pub newest: i64,
    /// Deletions ever made (`totals.removed`).
    pub removed: i64,
}

impl Watermark {
    pub(super) fn read(tx: &Transaction<'_>) -> rusqlite::Result<Self> {
        tx.prepare_cached("SELECT COALESCE((SELECT MAX(seq) FROM messages), 0), removed FROM totals")?
            .query_row([], |row| {
                Ok(Self {
                    newest: row.get(0)?,
                    removed: row.get(1)?,
                })
            })
    }
}

/// A filter's total as counted at a watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counted {
    pub total: i64,
    pub at: Watermark,
}

/// The remembered totals, shared by every reader.
pub(super) struct SearchCounts {
    remembered: Mutex<LruCache<MessageFilter, Counted>>,
}

/// Whether `filter`'s total may be kept.
fn is_remembered(filter: &MessageFilter) -> bool {
    filter.text_contains.as_ref().map_or(0, String::len) <= MAX_NEEDLE_BYTES
}

impl Default for SearchCounts {
    fn default() -> Self {
        Self {
            remembered: Mutex::new(LruCache::new(CAPACITY)),
        }
    }
}

impl SearchCounts {
    /// The total remembered for `filter` that can be extended to `now`: no
    /// deletion since, and at most `MAX_TAIL` rows inserted since.
    pub(super) fn extendable(&self, filter: &MessageFilter, now: Watermark) -> Option<Counted> {
        let earlier = *self.lock().get(filter)?;
        let tail = now.newest - earlier.at.newest;
        (earlier.at.removed == now.removed && (0..=MAX_TAIL).contains(&tail)).then_some(earlier)
    }

    /// Remembers `counted` unless a newer total is already remembered.
    pub(super) fn remember(&self, filter: &MessageFilter, counted: Counted) {
        if !is_remembered(filter) {
            return;
        }
        let mut remembered = self.lock();
        let newer_known = remembered
            .peek(filter)
            .is_some_and(|known| (known.at.removed, known.at.newest) > (counted.at.removed, counted.at.newest));
        if !newer_known {
            remembered.put(filter.clone(), counted);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<MessageFilter, Counted>> {
        // A panic while holding the lock cannot leave an entry half-written.
        self.remembered.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
