//! The one writer of stdout. Lines go through a bounded queue to a thread
//! of their own, so a reader of stdout that stalls (a full pipe, a paused
//! log collector) never stalls a request. Past `QUEUE_LINES` waiting lines,
//! or `QUEUE_BYTES` (a client's path can make a line long), lines are
//! dropped and counted (`log_lines_dropped_total`) rather than held.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use prometheus_client::metrics::counter::Counter;

/// Lines waiting for stdout, at most.
const QUEUE_LINES: usize = 65_536;

/// Bytes of lines waiting for stdout, at most.
const QUEUE_BYTES: usize = 16 << 20;

/// Bytes of lines gathered into one write.
const BATCH_BYTES: usize = 64 << 10;

enum Item {
    Line(Vec<u8>),
    /// Answered once every line queued before it is written.
    Flush(Sender<()>),
}

struct Sink {
    queue: Sender<Item>,
    /// Bytes of the lines in `queue`.
    queued: Arc<AtomicUsize>,
    dropped: Counter,
}

static SINK: OnceLock<Sink> = OnceLock::new();

fn sink() -> &'static Sink {
    SINK.get_or_init(|| {
        let (queue, lines) = crossbeam_channel::bounded(QUEUE_LINES);
        let queued = Arc::new(AtomicUsize::new(0));
        let written = queued.clone();
        // Without its thread nothing is written; then lines count as dropped.
        let _ = thread::Builder::new()
            .name("stdout".into())
            .spawn(move || write_all(&lines, &written));
        Sink {
            queue,
            queued,
            dropped: Counter::default(),
        }
    })
}

/// Queues one whole line (with its newline) for stdout.
pub fn write(line: Vec<u8>) {
    let sink = sink();
    let size = line.len();
    if sink.queued.fetch_add(size, Ordering::AcqRel) + size > QUEUE_BYTES
        || sink.queue.try_send(Item::Line(line)).is_err()
    {
        sink.queued.fetch_sub(size, Ordering::AcqRel);
        sink.dropped.inc();
    }
}

/// Waits, at most `timeout`, until every line queued so far is written.
pub fn flush(timeout: Duration) {
    let (done, written) = crossbeam_channel::bounded(1);
    if sink().queue.send_timeout(Item::Flush(done), timeout).is_ok() {
        let _ = written.recv_timeout(timeout);
    }
}

/// Lines dropped because stdout did not keep up (shared with the metrics).
pub fn dropped_lines() -> Counter {
    sink().dropped.clone()
}

fn write_all(items: &Receiver<Item>, queued: &AtomicUsize) {
    let stdout = std::io::stdout();
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    while let Ok(first) = items.recv() {
        // Under load many lines wait by the time this thread runs: one
        // write for all of them, rather than a system call per line.
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Item::Line(line) => batch.extend_from_slice(&line),
                Item::Flush(done) => {
                    write_batch(&stdout, &mut batch, queued);
                    let _ = stdout.lock().flush();
                    let _ = done.send(());
                }
            }
            next = if batch.len() < BATCH_BYTES {
                items.try_recv().ok()
            } else {
                None
            };
        }
        write_batch(&stdout, &mut batch, queued);
    }
}

/// Writes and empties `batch`, whose lines count as queued until then; a
/// closed stdout is not worth stopping for. A batch grown by one huge line
/// gives its memory back.
fn write_batch(stdout: &std::io::Stdout, batch: &mut Vec<u8>, queued: &AtomicUsize) {
    if !batch.is_empty() {
        let _ = stdout.lock().write_all(batch);
        queued.fetch_sub(batch.len(), Ordering::AcqRel);
        batch.clear();
        batch.shrink_to(BATCH_BYTES);
    }
}
