//! The single writer: group commit on a dedicated thread.
//!
//! Inserts queue on a channel. The thread takes whatever has queued (up to
//! `MAX_BATCH`), runs them in one transaction, commits once (one fsync) and
//! only then answers each caller. A failed commit answers every caller in the
//! batch with the error and leaves no row behind. Between commits the thread
//! fills the text index and folds the WAL back (see `upkeep`).

use std::path::Path;
use std::thread;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::text_index::IndexSchedule;
use super::upkeep::Upkeep;
use super::{StoreError, errors, folding, schema};
use crate::bindings::inlet::service::storage::{InsertOutcome, Message};

/// Most inserts committed together; bounds one transaction's latency.
const MAX_BATCH: usize = 512;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Inserts waiting for one commit, with their callers.
type Batch = Vec<(Message, Reply<InsertOutcome>)>;

enum Job {
    Insert(Message, Reply<InsertOutcome>),
    Ping(Reply<()>),
    Checkpoint(Reply<()>),
}

/// Handle to the writer thread. Dropping it lets the thread finish the queue
/// and close the database.
pub(super) struct Writer {
    jobs: Sender<Job>,
}

impl Writer {
    pub(super) fn start(path: &Path, schedule: IndexSchedule) -> anyhow::Result<Self> {
        let mut conn =
            Connection::open(path).map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", path.display()))?;
        schema::prepare_writer(&mut conn)
            .map_err(|e| anyhow::anyhow!("cannot apply schema to {}: {e}", path.display()))?;
        // SQLite would fold the WAL inside whichever commit crossed 1000 pages,
        // before its callers hear back; `upkeep` folds it after the replies.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(|e| anyhow::anyhow!("cannot configure {}: {e}", path.display()))?;
        let (jobs, queue) = crossbeam_channel::unbounded();
        thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, queue, schedule))?;
        Ok(Self { jobs })
    }

    pub(super) async fn insert(&self, message: Message) -> Result<InsertOutcome, StoreError> {
        self.submit(|reply| Job::Insert(message, reply)).await
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.submit(Job::Ping).await
    }

    /// Commits what is queued, then folds the WAL into the database file.
    pub(super) async fn checkpoint(&self) -> Result<(), StoreError> {
        self.submit(Job::Checkpoint).await
    }

    async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(job(reply)).map_err(|_| errors::stopped())?;
        answer.await.map_err(|_| errors::stopped())?
    }
}

fn run(mut conn: Connection, queue: Receiver<Job>, schedule: IndexSchedule) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut upkeep = Upkeep::new(&conn, schedule);
    while let Some(first) = next_job(&queue, &mut conn, &mut upkeep) {
        gather(first, &queue, &mut conn, &mut batch);
        commit_batch(&mut conn, &mut batch);
        upkeep.after_commit(&mut conn);
    }
}

/// Waits for the next job, doing the upkeep whenever none comes for a
/// moment. `None` once every handle is gone.
fn next_job(queue: &Receiver<Job>, conn: &mut Connection, upkeep: &mut Upkeep) -> Option<Job> {
    loop {
        let Some(idle_after) = upkeep.idle_deadline() else {
            return queue.recv().ok();
        };
        match queue.recv_timeout(idle_after) {
            Ok(job) => return Some(job),
            Err(RecvTimeoutError::Timeout) => upkeep.when_idle(conn),
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// Handles `first` and whatever else has queued, up to `MAX_BATCH` inserts
/// in `batch`; pings and checkpoints are answered on the way.
fn gather(first: Job, queue: &Receiver<Job>, conn: &mut Connection, batch: &mut Batch) {
    let mut next = Some(first);
    while let Some(job) = next.take() {
        match job {
            Job::Insert(message, reply) => batch.push((message, reply)),
            Job::Ping(reply) => {
                let _ = reply.send(ping(conn));
            }
            Job::Checkpoint(reply) => {
                commit_batch(conn, batch);
                let _ = reply.send(checkpoint(conn));
            }
        }
        if batch.len() < MAX_BATCH {
            next = queue.try_recv().ok();
        }
    }
}

/// Commits every queued insert in one transaction and answers each caller.
fn commit_batch(conn: &mut Connection, batch: &mut Batch) {
    if batch.is_empty() {
        return;
    }
    let outcome = insert_all(conn, batch.iter().map(|(message, _)| message));
    match outcome {
        Ok(outcomes) => {
            for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            let error = errors::classify(&error);
            tracing::error!(error = ?error, rows = batch.len(), "storage commit failed; batch rolled back");
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

pub(super) fn insert_all<'a>(
    conn: &mut Connection,
    messages: impl Iterator<Item = &'a Message>,
) -> rusqlite::Result<Vec<InsertOutcome>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut outcomes = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, text, created_at, ts_micros, text_folded)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (message_id) DO NOTHING",
        )?;
        for m in messages {
            let changed = insert.execute(params![
                m.message_id,
                m.from,
                m.to,
                m.ts.text,
                m.text,
                created_at,
                m.ts.unix_micros,
                m.text.as_deref().map(folding::fold)
            ])?;
            outcomes.push(if changed == 1 {
                InsertOutcome::Created
            } else {
                InsertOutcome::Duplicate
            });
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

fn checkpoint(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(|e| errors::classify(&e))
}

/// The schema is current and the database takes a write.
fn ping(conn: &mut Connection) -> Result<(), StoreError> {
    match schema::is_current(conn) {
        Ok(true) => schema::probe_write(conn).map_err(|e| errors::classify(&e)),
        Ok(false) => Err(StoreError::Unavailable("database schema is not current".into())),
        Err(error) => Err(errors::classify(&error)),
    }
}
