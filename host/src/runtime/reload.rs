//! Hot swap: replace the live guest while serving, with no failed request.
//!
//! The watcher polls `GUEST_COMPONENT` (so a replace by rename, `docker cp`
//! and an in-place write are all seen, on any filesystem) and reloads on
//! SIGHUP. A candidate is compiled, linked and instantiated off the request
//! path; only then does it replace the live guest, atomically. Requests
//! already running finish on the old guest. A candidate that fails any step
//! is rejected with a log line and a metric, and the old guest keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use super::cache::CompileCache;
use super::engine::Runtime;
use super::guest::{Guest, GuestSlot};
use super::sandbox::Services;
use crate::file_watch::{Absence, FileWatch, Stamp};
use crate::telemetry::request_log::{RequestId, latency_ms};

/// How often the guest file is checked for a change, and how long it must
/// then hold still. A `stat` every 50 ms costs nothing measurable; at 200 ms
/// the two waits were most of a swap's latency. A file caught mid-write
/// fails to compile and is rejected, then loaded once complete.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What made a reload happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The watcher saw the guest file change and then hold still.
    FileChanged,
    /// The process got SIGHUP.
    Signal,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::FileChanged => "file_changed",
            Self::Signal => "sighup",
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new guest is live.
    Swapped {
        /// Hex SHA-256 of the component file now serving.
        sha256: String,
    },
    /// The file holds the guest already live.
    Unchanged,
    /// The candidate failed; the previous guest keeps serving.
    Rejected {
        /// The failed step and its cause, as the `guest rejected` log line gives it.
        reason: String,
    },
}

/// Replaces the live guest with the guest file's contents, on a change or SIGHUP.
pub struct Reloader {
    runtime: Runtime,
    cache: CompileCache,
    path: PathBuf,
    slot: Arc<GuestSlot>,
    services: Arc<Services>,
    /// One reload at a time: the pool keeps one slot for a trial instance.
    trial: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader of the guest at `path` into `slot`, compiled by `runtime` through `cache`;
    /// nothing is loaded until `reload` or `watch` runs.
    pub fn new(
        runtime: Runtime,
        cache: CompileCache,
        path: PathBuf,
        slot: Arc<GuestSlot>,
        services: Arc<Services>,
    ) -> Self {
        Self {
            runtime,
            cache,
            path,
            slot,
            services,
            trial: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads the guest file and, if it is valid and different, makes it live.
    pub async fn reload(&self, trigger: Trigger) -> ReloadOutcome {
        let _trial = self.trial.lock().await;
        let started = Instant::now();
        let outcome = match self.candidate().await {
            Ok(guest) if guest.sha256 == self.slot.current().sha256 => ReloadOutcome::Unchanged,
            Ok(guest) => {
                let sha256 = guest.sha256.clone();
                let compilation = guest.compilation.as_str();
                let previous = self.slot.replace(guest);
                self.services.metrics.record_guest_loaded(&sha256);
                tracing::info!(
                    trigger = trigger.as_str(),
                    sha256 = %sha256,
                    previous_sha256 = %previous.sha256,
                    compilation,
                    reload_ms = latency_ms(started),
                    "guest swapped"
                );
                ReloadOutcome::Swapped { sha256 }
            }
            Err(error) => {
                let reason = format!("{error:#}");
                self.services.metrics.record_guest_rejected();
                tracing::error!(
                    trigger = trigger.as_str(),
                    path = %self.path.display(),
                    reason = %reason,
                    live_sha256 = %self.slot.current().sha256,
                    "guest rejected; the previous guest keeps serving"
                );
                ReloadOutcome::Rejected { reason }
            }
        };
        if outcome == ReloadOutcome::Unchanged {
            tracing::debug!(trigger = trigger.as_str(), "guest file unchanged");
        }
        outcome
    }

    /// Compiles, links and instantiates the file once, off the request path.
    async fn candidate(&self) -> anyhow::Result<Guest> {
        let (runtime, cache, path) = (self.runtime.clone(), self.cache.clone(), self.path.clone());
        let guest = tokio::task::spawn_blocking(move || Guest::load(&runtime, &path, &cache))
            .await
            .context("guest compilation task failed")??;
        // On the guest workers and within a request's deadline, like any
        // instance: a start function that spins is stopped, not waited for.
        // Its pool slot is the one kept for trials, so a busy moment, when
        // requests hold every other slot, cannot fail it.
        let id = RequestId::from_header(Some("guest-reload"));
        let mut store = guest.new_store(self.services.clone(), id, Instant::now() + guest.limits.request_timeout);
        let (pre, ticker) = (guest.pre.clone(), guest.ticker.clone());
        let trial = guest.executor.spawn(async move {
            let _clock = ticker.running();
            pre.instantiate_async(&mut store).await.map(drop)
        });
        trial
            .await
            .context("guest instantiation task failed")?
            .map_err(anyhow::Error::from)
            .context("the guest failed to instantiate")?;
        Ok(guest)
    }

    /// Watches the file and SIGHUP until the process ends.
    pub async fn watch(self: Arc<Self>) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; only file changes reload the guest");
                None
            }
        };
        let mut file = FileWatch::from(&self.path, Stamp::of(&self.path), POLL_INTERVAL, Absence::Ignored);
        loop {
            tokio::select! {
                () = file.changed() => {
                    self.reload(Trigger::FileChanged).await;
                }
                Some(()) = async { hangup.as_mut()?.recv().await } => {
                    file.rescan();
                    self.reload(Trigger::Signal).await;
                }
            }
        }
    }
}
