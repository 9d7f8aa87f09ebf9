//! The single writer: group commit on a dedicated thread.
//!
//! Inserts queue on a channel. The thread takes whatever has queued (until
//! it holds `pending::MAX_BATCH` rows; a batch insert is never split, so a group may
//! hold up to `MAX_BATCH - 1 + MAX_INSERT_BATCH`), runs them in one
//! transaction, commits once (one fsync) and only then answers each caller.
//! A failed commit leaves no row behind, so a batch insert is all or none;
//! every caller in the group hears the error, unless a row broke a
//! constraint or a limit, when each caller's inserts are committed alone so
//! that one cannot fail the others. Between commits the thread
//! fills the text index and folds the WAL back (see `upkeep`).
//!
//! The queue is bounded: past `QUEUE` waiting jobs a caller is refused at
//! once (`unavailable`: 503). A readiness ping is answered from the last
//! commit when one succeeded within `PROVEN_FOR`, without queuing, so probes
//! cost no durable write and wait for no insert while messages flow.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::text_index::IndexSchedule;
use super::upkeep::Upkeep;
use super::{errors, schema};
use crate::bindings::inlet::service::storage::{InsertOutcome, Message};
use crate::storage::pending::{Batch, Pending, Reply, commit_time, stopped};
use crate::storage::{StoreError, fold};

/// Jobs waiting for the writer, at most; more are refused.
const QUEUE: usize = 4096;

/// How long a successful commit proves that the database takes writes.
const PROVEN_FOR: Duration = Duration::from_secs(5);

enum Job {
    Insert(Pending),
    /// Any other write (a removal, a retention step, forwarding's records,
    /// the checkpoint): run alone, after the inserts queued before it are
    /// committed; it answers its caller itself.
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
    Ping(Reply<()>),
}

/// Handle to the writer thread. Dropping it lets the thread finish the queue
/// and close the database.
pub(super) struct Writer {
    jobs: Sender<Job>,
    proof: Arc<WriteProof>,
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
        let (jobs, queue) = crossbeam_channel::bounded(QUEUE);
        let proof = Arc::new(WriteProof::default());
        let written = proof.clone();
        thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, queue, schedule, &written))?;
        Ok(Self { jobs, proof })
    }

    pub(super) async fn insert(&self, message: Message) -> Result<InsertOutcome, StoreError> {
        self.submit(|reply| Job::Insert(Pending::One(message, reply))).await
    }

    /// Commits `messages` together (and with whatever else is queued).
    pub(super) async fn insert_batch(&self, messages: Vec<Message>) -> Result<Vec<InsertOutcome>, StoreError> {
        self.submit(|reply| Job::Insert(Pending::Many(messages, reply))).await
    }

    /// Runs `write` on the writer's connection, after the inserts queued
    /// before it are committed.
    pub(super) async fn alone<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(|reply: Reply<T>| {
            Job::Alone(Box::new(move |conn| {
                let _ = reply.send(write(conn).map_err(|e| errors::classify(&e)));
            }))
        })
        .await
    }

    /// A commit proved writes lately, or the writer checks now (behind what is queued).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        if self.proof.fresh() {
            return Ok(());
        }
        self.submit(Job::Ping).await
    }

    /// Commits what is queued, then folds the WAL into the database file.
    pub(super) async fn checkpoint(&self) -> Result<(), StoreError> {
        self.alone(|conn| conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);"))
            .await
    }

    async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.try_send(job(reply)).map_err(|error| match error {
            TrySendError::Full(_) => StoreError::Unavailable("too many writes are waiting".into()),
            TrySendError::Disconnected(_) => stopped(),
        })?;
        answer.await.map_err(|_| stopped())?
    }
}

/// When a write last succeeded, shared by the writer thread and its
/// handle: it answers readiness pings for a while without queuing them.
#[derive(Default)]
struct WriteProof(Mutex<Option<Instant>>);

impl WriteProof {
    fn record(&self, succeeded: bool) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = succeeded.then(Instant::now);
    }

    fn fresh(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < PROVEN_FOR)
    }
}

fn run(mut conn: Connection, queue: Receiver<Job>, schedule: IndexSchedule, proof: &WriteProof) {
    let mut batch = Batch::default();
    let mut upkeep = Upkeep::new(&conn, schedule);
    while let Some(first) = next_job(&queue, &mut conn, &mut upkeep) {
        gather(first, &queue, &mut conn, &mut batch, proof);
        commit_batch(&mut conn, &mut batch, proof);
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

/// Handles `first` and whatever else has queued, up to `MAX_BATCH` rows in
/// `batch`; pings are answered on the way, and other writes after
/// committing the inserts that queued before them.
fn gather(first: Job, queue: &Receiver<Job>, conn: &mut Connection, batch: &mut Batch, proof: &WriteProof) {
    let mut next = Some(first);
    while let Some(job) = next.take() {
        match job {
            Job::Insert(pending) => batch.push(pending),
            Job::Ping(reply) => {
                let _ = reply.send(ping(conn, proof));
            }
            Job::Alone(write) => {
                commit_batch(conn, batch, proof);
                write(conn);
            }
        }
        if batch.has_room() {
            next = queue.try_recv().ok();
        }
    }
}

/// Commits every queued insert in one transaction and answers each caller.
fn commit_batch(conn: &mut Connection, batch: &mut Batch, proof: &WriteProof) {
    if batch.pending.is_empty() {
        return;
    }
    let committed = insert_all(conn, batch.messages());
    proof.record(committed.is_ok());
    match committed {
        Ok(outcomes) => batch.answer(outcomes),
        Err(error) => {
            let refused_row = errors::refused_row(&error);
            let error = errors::classify(&error);
            tracing::error!(error = ?error, rows = batch.rows, "storage commit failed; batch rolled back");
            match batch.split().filter(|_| refused_row) {
                Some(groups) => groups
                    .into_iter()
                    .for_each(|mut alone| commit_batch(conn, &mut alone, proof)),
                None => batch.fail(&error),
            }
        }
    }
}

pub(super) fn insert_all<'a>(
    conn: &mut Connection,
    messages: impl Iterator<Item = &'a Message>,
) -> rusqlite::Result<Vec<InsertOutcome>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let created_at = commit_time();
    let mut outcomes = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO messages (seq, message_id, from_msisdn, to_msisdn, ts, text, created_at, ts_micros, text_folded)
             VALUES ((SELECT MAX(COALESCE((SELECT MAX(seq) FROM messages), 0), seq) + 1 FROM feed_mark),
                     ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
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
                m.text.as_deref().map(fold)
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

/// The schema is current and the database takes a write: a commit proved
/// it lately, or a probe write does now.
fn ping(conn: &mut Connection, proof: &WriteProof) -> Result<(), StoreError> {
    match schema::is_current(conn) {
        Ok(true) if proof.fresh() => Ok(()),
        Ok(true) => {
            let probed = schema::probe_write(conn);
            proof.record(probed.is_ok());
            probed.map_err(|e| errors::classify(&e))
        }
        Ok(false) => Err(StoreError::Unavailable("database schema is not current".into())),
        Err(error) => Err(errors::classify(&error)),
    }
}
