//! How stores stamp time, and what one step of the retention policy asks
//! of a store: which messages have aged out and which remembered ids of
//! removed messages may be forgotten.
//!
//! Times are stored as text in one fixed-width UTC format (`stamp`), so
//! that both backends compare them as strings in the order of time.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long a removed message's id is remembered at least, counted from
/// its removal: Meta redelivers an unacknowledged webhook for up to seven
/// days, and a redelivery must not bring an erased message back.
pub const REMEMBER_REMOVED: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Most messages, and most remembered ids, one `MessageStore::expire` call
/// removes: a step is one short transaction, so group commits wait for it
/// only briefly.
pub const EXPIRY_STEP: u32 = 1000;

/// `at` as stores keep times: ISO-8601 UTC with milliseconds.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One step of the retention policy at the instant `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// Messages stored (`created_at`) before this stamp are removed, like an
    /// erasure: their ids are remembered.
    pub stored_before: String,
    /// A remembered id is forgotten once it was removed before this stamp
    /// and its message was stored before `stored_before` (it would have
    /// aged out by now anyway).
    pub removed_before: String,
    /// At most this many messages, and this many ids, in this step.
    pub limit: u32,
    /// Whether messages forwarding still owes (past its position, or in a
    /// retry row, failed ones included) are kept whatever their age.
    pub keep_owed: bool,
}

impl Expiry {
    /// The step that keeps messages for `retention`, at `now`, and those
    /// forwarding owes when `keep_owed`.
    pub fn at(now: DateTime<Utc>, retention: Duration, keep_owed: bool) -> Self {
        let ago = |span: Duration| {
            let before = chrono::Duration::from_std(span)
                .ok()
                .and_then(|span| now.checked_sub_signed(span));
            stamp(before.unwrap_or(DateTime::<Utc>::MIN_UTC))
        };
        Self {
            stored_before: ago(retention),
            removed_before: ago(REMEMBER_REMOVED),
            limit: EXPIRY_STEP,
            keep_owed,
        }
    }
}

/// What one `MessageStore::expire` step removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Messages removed because they aged out.
    pub messages: u64,
    /// Remembered ids forgotten.
    pub forgotten_ids: u64,
}

impl Expired {
    /// Whether a step removed as much as it could: more may be waiting.
    pub fn filled(&self, limit: u32) -> bool {
        self.messages >= u64::from(limit) || self.forgotten_ids >= u64::from(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_sort_as_time_does() {
        let earlier = "2026-12-05T09:59:59.999Z".parse::<DateTime<Utc>>().unwrap();
        let later = earlier + chrono::Duration::milliseconds(1);
        assert!(stamp(earlier) < stamp(later));
        assert_eq!(stamp(later), "2026-12-05T10:00:00.000Z");
    }

    #[test]
    fn a_step_looks_back_by_the_retention_and_the_memory_of_removals() {
        let now = "2026-12-10T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let step = Expiry::at(now, Duration::from_secs(90 * 60), false);
        assert_eq!(step.stored_before, "2026-12-09T22:30:00.000Z");
        assert_eq!(step.removed_before, "2026-12-03T00:00:00.000Z");
    }

    #[test]
    fn a_retention_beyond_the_calendar_removes_nothing() {
        let step = Expiry::at(Utc::now(), Duration::from_secs(u64::MAX), false);
        assert!(step.stored_before.as_str() < "1000", "{}", step.stored_before);
    }
}
