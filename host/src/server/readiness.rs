//! `GET /health/ready`, answered by the host without a guest instance:
//! a probe must not wait in line behind the requests it is checking, nor
//! drop every host of a cluster out of rotation when they are busy.
//!
//! Ready means a guest is loaded (always, once serving), a webhook secret
//! is configured and storage answers with its schema applied. The storage
//! check is shared: a success answers probes for `FRESH`, probes that
//! arrive during a check take its outcome, and one check is bounded by
//! `CHECK_TIMEOUT`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::runtime::Services;
use crate::storage::{Operation, StoreError};
use crate::telemetry::request_log::latency_ms;

/// How long a storage check's outcome answers probes.
const FRESH: Duration = Duration::from_secs(1);

/// Longest a storage check may take; past it storage counts as unavailable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the service is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NotReady {
    /// No webhook secret is configured (the secret file holds none).
    NoSecret,
    /// Storage did not answer, or answered with an error.
    Storage,
}

impl NotReady {
    /// What a probe is told.
    pub(super) fn detail(&self) -> &'static str {
        match self {
            Self::NoSecret => "no webhook secret is configured",
            Self::Storage => "storage unavailable",
        }
    }
}

/// The shared outcome of the last storage check.
#[derive(Default)]
pub(super) struct Readiness {
    last: Mutex<Option<(Instant, bool)>>,
    checking: tokio::sync::Mutex<()>,
}

impl Readiness {
    /// Whether the service can serve.
    pub(super) async fn check(&self, services: &Services) -> Result<(), NotReady> {
        if services.secrets.current().count() == 0 {
            return Err(NotReady::NoSecret);
        }
        if self.storage_ok(services).await {
            Ok(())
        } else {
            Err(NotReady::Storage)
        }
    }

    async fn storage_ok(&self, services: &Services) -> bool {
        let arrived = Instant::now();
        if self.last().is_some_and(|(at, ok)| ok && at.elapsed() < FRESH) {
            return true;
        }
        // One check at a time. A probe that waited takes the outcome of a
        // check begun after it arrived; a failure is not reused otherwise,
        // so storage that recovers is ready at the next probe.
        let _checking = self.checking.lock().await;
        if let Some((_, ok)) = self.last().filter(|(at, _)| *at >= arrived) {
            return ok;
        }
        let started = Instant::now();
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, services.store.ping()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StoreError::Unavailable("the check took longer than its timeout".into())),
        };
        services.metrics.record_storage(Operation::Ping, latency_ms(started));
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // Said once when it changes, not at every probe.
        match (&outcome, last.map(|(_, ok)| ok)) {
            (Err(error), None | Some(true)) => tracing::warn!(error = ?error, "not ready: storage check failed"),
            (Ok(()), Some(false)) => tracing::info!("ready again: storage answers"),
            _ => {}
        }
        *last = Some((started, outcome.is_ok()));
        outcome.is_ok()
    }

    /// When the last check began, and whether storage answered.
    fn last(&self) -> Option<(Instant, bool)> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}
