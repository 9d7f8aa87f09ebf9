//! A fixed set of threads, each with its own read-only connection.

use std::path::Path;
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::pending::stopped;
use super::{StoreError, errors, schema};

type ReadJob = Box<dyn FnOnce(&mut Connection) + Send>;

pub(super) struct Readers {
    jobs: Sender<ReadJob>,
}

impl Readers {
    /// Starts `count` readers on the database at `path`, which the writer has
    /// already created.
    pub(super) fn start(path: &Path, count: usize) -> anyhow::Result<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<ReadJob>();
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
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(query(conn).map_err(|e| errors::classify(&e)));
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn serve(mut conn: Connection, queue: Receiver<ReadJob>) {
    while let Ok(job) = queue.recv() {
        job(&mut conn);
    }
}
