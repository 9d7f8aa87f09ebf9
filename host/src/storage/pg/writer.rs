//! Group commit on PostgreSQL.
//!
//! Inserts queue on a channel. A gatherer takes whatever has queued (up to
//! `pending::MAX_BATCH` rows, never splitting a batch insert) and hands it to
//! one of `COMMITTERS` concurrent commits, each on its own connection: while
//! those are busy, the next group grows. A group is one statement in READ
//! COMMITTED, `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING
//! RETURNING message_id`, sent outside any transaction block: the server
//! commits it by itself before it answers ready, so a group costs one round
//! trip, not three (BEGIN, INSERT, COMMIT), and callers hear back only after
//! the commit returned.
//!
//! Ids go in sorted order (`rows::insert`), so two groups (on this host or
//! another) cannot deadlock; an id inserted concurrently elsewhere makes
//! this statement wait for that commit and then skip it: exactly one
//! `created`. A group the database refuses because of a row (a constraint,
//! a limit) is committed again caller by caller, so one bad request cannot
//! fail its neighbours.
//!
//! Nothing here cancels or times out a commit: with synchronous replication
//! a cancelled commit can become visible yet be lost on failover. A commit
//! whose connection broke is `unavailable` with its outcome unknown, and is
//! never retried here (a retry could report our own row as `duplicate`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::errors;
use super::rows::{self, NewRow};
use crate::bindings::inlet::service::storage::{InsertOutcome, Message};
use crate::storage::StoreError;
use crate::storage::pending::{Batch, MAX_BATCH, Pending, commit_time, stopped};

/// Commits in flight at once, each on its own connection. Fewer would make
/// fewer, larger groups, which cost the database less CPU per request (a
/// commit costs the leader and every standby whatever its size), but
/// requests then queue behind commits that hang on an unreachable
/// database, each answered 503 only near its deadline
/// (`runtime::imports::answered_by`).
pub(super) const COMMITTERS: usize = 4;

/// Rows that may wait for a commit before new inserts are refused (503)
/// rather than queued behind a commit that hangs (a lost synchronous standby).
const MAX_QUEUED_ROWS: usize = 8 * MAX_BATCH;

/// Handle to the gatherer. Dropping it lets the queue drain and the task end.
pub(super) struct Writer {
    jobs: mpsc::UnboundedSender<Pending>,
    queued: Arc<AtomicUsize>,
}

impl Writer {
    /// Starts the gatherer, committing on connections from `pool`.
    pub(super) fn start(pool: Pool) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(gather(pool, queue, queued.clone()));
        Self { jobs, queued }
    }

    pub(super) async fn insert(&self, message: Message) -> Result<InsertOutcome, StoreError> {
        self.submit(1, |reply| Pending::One(message, reply)).await
    }

    pub(super) async fn insert_batch(&self, messages: Vec<Message>) -> Result<Vec<InsertOutcome>, StoreError> {
        self.submit(messages.len(), |reply| Pending::Many(messages, reply))
            .await
    }

    async fn submit<T>(
        &self,
        rows: usize,
        pending: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Pending,
    ) -> Result<T, StoreError> {
        if self.queued.fetch_add(rows, Ordering::Relaxed) > MAX_QUEUED_ROWS {
            self.queued.fetch_sub(rows, Ordering::Relaxed);
            return Err(StoreError::Unavailable(
                "write backlog full; the database is not keeping up".into(),
            ));
        }
        let (reply, answer) = oneshot::channel();
        self.jobs.send(pending(reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Forms groups and starts their commits, at most `COMMITTERS` at a time.
async fn gather(pool: Pool, mut queue: mpsc::UnboundedReceiver<Pending>, queued: Arc<AtomicUsize>) {
    let committers = Arc::new(Semaphore::new(COMMITTERS));
    while let Some(first) = queue.recv().await {
        let Ok(committer) = committers.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Batch::default();
        batch.push(first);
        while batch.has_room() {
            match queue.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.rows, Ordering::Relaxed);
        let pool = pool.clone();
        tokio::spawn(async move {
            commit(&pool, batch).await;
            drop(committer);
        });
    }
}

/// Commits one group and answers its callers.
async fn commit(pool: &Pool, mut batch: Batch) {
    let Err(failure) = commit_once(pool, &mut batch).await else {
        return;
    };
    tracing::error!(error = ?failure.error, rows = batch.rows, "storage commit failed");
    match batch.split().filter(|_| failure.refused_row) {
        Some(groups) => {
            for mut alone in groups {
                if let Err(failure) = commit_once(pool, &mut alone).await {
                    alone.fail(&failure.error);
                }
            }
        }
        None => batch.fail(&failure.error),
    }
}

/// Why a group's commit failed: nothing of it was stored, unless the
/// error says the outcome is unknown.
struct Failure {
    error: StoreError,
    /// The database refused a row of the group (see `errors::refused_row`).
    refused_row: bool,
}

impl Failure {
    fn of(error: &tokio_postgres::Error) -> Self {
        Self {
            error: errors::classify(error),
            refused_row: errors::refused_row(error),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self {
            error,
            refused_row: false,
        }
    }
}

/// Commits `batch` and answers its callers; on a failure, leaves them waiting.
async fn commit_once(pool: &Pool, batch: &mut Batch) -> Result<(), Failure> {
    let messages: Vec<&Message> = batch.messages().collect();
    let mut created = insert(pool, &messages).await?;
    // The first of several equal ids in the group is the one created.
    let outcomes = messages
        .iter()
        .map(|m| {
            if created.remove(&m.message_id) {
                InsertOutcome::Created
            } else {
                InsertOutcome::Duplicate
            }
        })
        .collect();
    batch.answer(outcomes);
    Ok(())
}

/// Inserts `messages` in one statement that commits by itself; the ids it
/// created, once committed. The answer is read to the server's "ready"
/// that follows the commit: an error from the server means nothing was
/// stored; a connection lost on the way leaves the outcome unknown. This
/// holds because no connection of the pool is ever handed out inside a
/// transaction block (tokio-postgres rolls back a `Transaction` dropped
/// uncommitted, before any later statement on its connection); inside one,
/// the rows would be answered before anything committed them.
async fn insert(pool: &Pool, messages: &[&Message]) -> Result<HashSet<String>, Failure> {
    let created_at = commit_time();
    let rows: Vec<NewRow<'_>> = messages
        .iter()
        .map(|message| NewRow {
            message,
            created_at: &created_at,
            sqlite_seq: None,
        })
        .collect();
    let client = pool.get().await.map_err(|e| errors::classify_pool(&e))?;
    rows::insert(&client, &rows).await.map_err(|e| match e.as_db_error() {
        Some(_) => Failure::of(&e),
        None => errors::outcome_unknown(&e).into(),
    })
}
