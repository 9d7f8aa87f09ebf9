//! The engine's epoch, advanced every `EPOCH_TICK` while at least one guest
//! runs: at each tick a computing guest yields its worker, and one past its
//! request's deadline is stopped there.
//!
//! Only a running guest checks its epoch deadline, so an idle server has no
//! reason to tick. A free-running ticker woke the process 100 times a second
//! with nothing to serve (about half of an idle server's wake-ups here).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, Thread};
use std::time::Duration;

use wasmtime::{Engine, EngineWeak};

/// How often the epoch advances while guests run: the longest a computing
/// guest holds a worker before others get their turn.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Handle to the ticker thread; `running` marks a guest as running.
#[derive(Clone)]
pub struct EpochTicker {
    running: Arc<AtomicUsize>,
    thread: Thread,
}

/// Keeps the epoch advancing until dropped.
pub struct Running(Arc<AtomicUsize>);

impl EpochTicker {
    /// Starts the ticker of `engine`; it ends once the engine or every
    /// handle is gone.
    pub fn start(engine: &Engine) -> anyhow::Result<Self> {
        let engine = engine.weak();
        let running = Arc::new(AtomicUsize::new(0));
        let counter = Arc::downgrade(&running);
        let thread = thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || tick(&engine, &counter))?;
        Ok(Self {
            running,
            thread: thread.thread().clone(),
        })
    }

    /// Marks one guest as running for the life of the returned guard; the
    /// first one wakes the ticker.
    pub fn running(&self) -> Running {
        if self.running.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Running(self.running.clone())
    }
}

/// Lets a parked ticker see that its last handle is gone.
impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.thread.unpark();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sleeps a tick, then advances the epoch, while any guest runs; parks
/// otherwise.
fn tick(engine: &EngineWeak, running: &Weak<AtomicUsize>) {
    loop {
        let Some(idle) = running.upgrade().map(|r| r.load(Ordering::Acquire) == 0) else {
            return;
        };
        if idle {
            thread::park();
            continue;
        }
        thread::sleep(EPOCH_TICK);
        let Some(engine) = engine.upgrade() else { return };
        engine.increment_epoch();
    }
}
