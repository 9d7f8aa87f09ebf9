//! A fixed set of threads, each with its own read-only connection, serving
//! a bounded queue of reads.
//!
//! A read whose caller has gone (its client left, its deadline passed) is
//! skipped if it has not started, and stopped if it has; no read runs past
//! `READ_TIME_LIMIT`. A full queue refuses at once (`unavailable`: 503).

use std::path::Path;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::{errors, schema};
use crate::storage::pending::stopped;
use crate::storage::{READ_TIME_LIMIT, StoreError};

type ReadJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// Reads waiting for a reader, at most; more answer `unavailable`.
const QUEUE: usize = 1024;

/// SQLite virtual-machine steps between two checks of a read's caller and
/// time limit: well under a millisecond apart.
const CHECK_EVERY_STEPS: i32 = 10_000;

pub(super) struct Readers {
    jobs: Sender<ReadJob>,
}

impl Readers {
    /// Starts `count` readers on the database at `path`, which the writer has
    /// already created.
    pub(super) fn start(path: &Path, count: usize) -> anyhow::Result<Self> {
        let (jobs, queue) = crossbeam_channel::bounded::<ReadJob>(QUEUE);
        for index in 0..count {
            let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| anyhow::anyhow!("cannot open database {} for reading: {e}", path.display()))?;
            schema::prepare_reader(&conn)?;
            let queue = queue.clone();
            thread::Builder::new()
                .name(format!("sqlite-reader-{index}"))
                .spawn(move || serve(conn, queue))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `query` on the next free reader.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        // Held by this future: gone once its caller is.
        let waiting = Arc::new(());
        let caller = Arc::downgrade(&waiting);
        let job: ReadJob = Box::new(move |conn| {
            // Its caller left while it queued.
            if caller.strong_count() == 0 {
                return;
            }
            let result = interruptible(conn, caller, query);
            let _ = reply.send(result.map_err(|e| errors::classify(&e)));
        });
        self.jobs.try_send(job).map_err(|error| match error {
            TrySendError::Full(_) => StoreError::Unavailable("too many reads are waiting".into()),
            TrySendError::Disconnected(_) => stopped(),
        })?;
        let answer = answer.await;
        drop(waiting);
        answer.map_err(|_| stopped())?
    }
}

/// Runs `query`, interrupted once its `caller` is gone or
/// `READ_TIME_LIMIT` has passed.
fn interruptible<T>(
    conn: &mut Connection,
    caller: Weak<()>,
    query: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let deadline = Instant::now() + READ_TIME_LIMIT;
    conn.progress_handler(
        CHECK_EVERY_STEPS,
        Some(move || caller.strong_count() == 0 || Instant::now() >= deadline),
    )?;
    let result = query(conn);
    conn.progress_handler(0, None::<fn() -> bool>)?;
    result
}

fn serve(mut conn: Connection, queue: Receiver<ReadJob>) {
    while let Ok(job) = queue.recv() {
        job(&mut conn);
    }
}
