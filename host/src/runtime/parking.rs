//! A request's long-poll of the feed (`storage.wait-feed`) or its pacing
//! (`storage.pace-feed`), handed from its guest's run to the host: the run
//! is stopped while the host waits, so no instance is held and the time is
//! not counted against `REQUEST_TIMEOUT_MS`, and the request then runs again
//! from its start, where the call returns at once (see `invoke`).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::bindings::inlet::service::storage::FeedWait;
use crate::storage::FeedPosition;

/// What a run asked the host to wait for.
#[derive(Debug, Clone, Copy)]
pub enum FeedPause {
    /// Until something follows `after`, `until` at the latest (`wait-feed`).
    Wait { after: FeedPosition, until: Instant },
    /// Until `until` (`pace-feed`).
    Pace { until: Instant },
}

/// One request's waits (its pacing included), shared by its runs and the host.
#[derive(Clone, Default)]
pub struct Parking(Arc<Shared>);

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    asked: Notify,
}

#[derive(Default)]
enum State {
    #[default]
    NotAsked,
    Asked(FeedPause),
    Paced,
    Waited(FeedWait),
}

impl Parking {
    /// What this request's wait ended in, once the host has waited.
    pub fn outcome(&self) -> Option<FeedWait> {
        match *self.lock() {
            State::Waited(outcome) => Some(outcome),
            State::NotAsked | State::Asked(_) | State::Paced => None,
        }
    }

    /// Whether the request may still be paced: it has neither been paced
    /// nor waited (a request is paced once, before any wait).
    pub fn may_pace(&self) -> bool {
        matches!(*self.lock(), State::NotAsked)
    }

    /// A run asks the host to wait (and is stopped).
    pub fn ask(&self, pause: FeedPause) {
        *self.lock() = State::Asked(pause);
        self.0.asked.notify_one();
    }

    /// Resolves once a run has asked.
    pub async fn asked(&self) -> FeedPause {
        loop {
            let notified = self.0.asked.notified();
            if let State::Asked(pause) = *self.lock() {
                return pause;
            }
            notified.await;
        }
    }

    /// The host has paced the request: the next run goes on at once.
    pub fn paced(&self) {
        *self.lock() = State::Paced;
    }

    /// The host has waited: the next run is told `outcome`.
    pub fn waited(&self, outcome: FeedWait) {
        *self.lock() = State::Waited(outcome);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
