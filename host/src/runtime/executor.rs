//! The threads guests run on, apart from the threads that accept
//! connections and answer the host's own endpoints.
//!
//! A computing guest keeps its worker until its next epoch yield. Were
//! guests on the server's own runtime, every spinning guest would sit in
//! the run queue in front of the accept loop, `/health/live` and
//! `/metrics`; on workers of their own, the kernel shares the cores between
//! the two sets of threads, and host work never waits behind a guest.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

/// Name of each guest worker thread (as `/proc/<pid>/task/*/comm` shows it).
pub const WORKER_NAME: &str = "guest-worker";

/// A tokio runtime of its own for guest instances; cheap to clone.
#[derive(Clone)]
pub struct GuestExecutor {
    handle: Handle,
    _owner: Arc<Owner>,
}

/// Stops the runtime without blocking when the last handle goes, which may
/// be inside another runtime's task (where a blocking shutdown panics).
struct Owner(Option<Runtime>);

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl GuestExecutor {
    /// One worker per core: guests may use every core, but only beside the
    /// host's threads, never in front of them.
    pub fn start() -> anyhow::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(WORKER_NAME)
            .enable_all()
            .build()
            .context("starting the guest workers")?;
        Ok(Self {
            handle: runtime.handle().clone(),
            _owner: Arc::new(Owner(Some(runtime))),
        })
    }

    /// Runs `task` on the guest workers; the handle yields its output or its panic.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }
}
