//! What the writer does between group commits: fill the text index (see
//! `text_index`) and fold the WAL back into the database file.
//!
//! The WAL is folded by the writer itself, every `FOLD_EVERY` of commits and
//! once it falls idle. SQLite starts the WAL over from its beginning only when
//! a write transaction begins with every frame already copied back. A
//! checkpoint running beside the writer never gets there under sustained
//! load, because commits keep adding frames while it copies, so the WAL grew
//! without bound (gigabytes within seconds of ingest), every commit extended
//! the file, and its fdatasync wrote the inode as well. A passive checkpoint
//! run between two commits copies everything, and the next commit reuses the
//! WAL's space: a faster ingest, for a pause of a few milliseconds every
//! `FOLD_EVERY`.

use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::text_index::{self, IndexSchedule};

/// Most time commits accumulate in the WAL before the writer folds it back.
const FOLD_EVERY: Duration = Duration::from_millis(100);

/// The writer's chores and how far behind they are.
pub(super) struct Upkeep {
    schedule: IndexSchedule,
    /// Rows waiting for the text index.
    backlog: i64,
    /// Whether anything was committed since the WAL was last folded.
    unfolded: bool,
    last_fold: Instant,
}

impl Upkeep {
    pub(super) fn new(conn: &Connection, schedule: IndexSchedule) -> Self {
        Self {
            schedule,
            backlog: text_index::backlog(conn).unwrap_or(0),
            unfolded: true,
            last_fold: Instant::now(),
        }
    }

    /// How long the writer may wait for a job before `when_idle` has work,
    /// or `None` when nothing is left to do.
    pub(super) fn idle_deadline(&self) -> Option<Duration> {
        (self.backlog > 0 || self.unfolded).then_some(self.schedule.idle_after)
    }

    /// After a group commit: indexes a chunk once a full one waits, and
    /// folds the WAL once `FOLD_EVERY` has passed.
    pub(super) fn after_commit(&mut self, conn: &mut Connection) {
        self.unfolded = true;
        self.backlog = text_index::backlog(conn).unwrap_or(0);
        if self.backlog >= i64::from(self.schedule.chunk) {
            self.index_text(conn);
        }
        if self.last_fold.elapsed() >= FOLD_EVERY {
            self.fold(conn);
        }
    }

    /// No job came for a while: indexes the next chunk, or once every row is
    /// indexed, folds the WAL.
    pub(super) fn when_idle(&mut self, conn: &mut Connection) {
        if self.backlog > 0 {
            self.index_text(conn);
            self.unfolded = true;
        } else {
            self.fold(conn);
        }
    }

    /// A failure is retried after the next commit rather than on every idle
    /// moment.
    fn index_text(&mut self, conn: &mut Connection) {
        let indexed = text_index::index_next(conn, self.schedule.chunk).and_then(|()| text_index::backlog(conn));
        self.backlog = indexed.unwrap_or_else(|error| {
            tracing::error!(%error, "indexing message text failed; retrying after the next commit");
            0
        });
    }

    /// Copies the WAL back into the database file (and syncs it). Passive:
    /// a reader still using older frames keeps them, and the WAL restarts
    /// once it is done.
    fn fold(&mut self, conn: &Connection) {
        if let Err(error) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
            tracing::warn!(%error, "WAL checkpoint failed; retrying after the next commit");
        }
        self.unfolded = false;
        self.last_fold = Instant::now();
    }
}
