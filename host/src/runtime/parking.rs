//! A request's long-poll of the feed (`storage.wait-feed`), handed from its
//! guest's run to the host: the run is stopped while the host waits, so no
//! instance is held and the time is not counted against
//! `REQUEST_TIMEOUT_MS`, and the request then runs again from its start,
//! where `wait-feed` returns what the wait ended in (see `invoke`).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::bindings::inlet::service::storage::FeedWait;
use crate::storage::FeedPosition;

/// What a run asked the host to wait for.
#[derive(Debug, Clone, Copy)]
pub struct FeedWaitRequest {
    /// Until something follows this position.
    pub after: FeedPosition,
    /// At the latest.
    pub until: Instant,
}

/// One request's wait, shared by its runs and the host.
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
    Asked(FeedWaitRequest),
    Waited(FeedWait),
}

impl Parking {
    /// What this request's wait ended in, once the host has waited.
    pub fn outcome(&self) -> Option<FeedWait> {
        match *self.lock() {
            State::Waited(outcome) => Some(outcome),
            State::NotAsked | State::Asked(_) => None,
        }
    }

    /// A run asks the host to wait (and is stopped).
    pub fn ask(&self, request: FeedWaitRequest) {
        *self.lock() = State::Asked(request);
        self.0.asked.notify_one();
    }

    /// Resolves once a run has asked.
    pub async fn asked(&self) -> FeedWaitRequest {
        loop {
            let notified = self.0.asked.notified();
            if let State::Asked(request) = *self.lock() {
                return request;
            }
            notified.await;
        }
    }

    /// The host has waited: the next run is told `outcome`.
    pub fn waited(&self, outcome: FeedWait) {
        *self.lock() = State::Waited(outcome);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
