//! A stand-in for forwarding behind the guest's `forwarding` import: it
//! reports the status a test sets, counts retries, and fails when told to.

use std::sync::Mutex;

use async_trait::async_trait;
use inlet::bindings::inlet::service::forwarding::ForwardingStatus;
use inlet::forwarding::Forwarding;
use inlet::storage::StoreError;

/// Scripted forwarding: `status` answers what was set, `retry_failed`
/// moves every failed message to pending; both fail with the error set by
/// `fail_with`.
#[derive(Default)]
pub struct MockForwarding {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    status: Option<ForwardingStatus>,
    failure: Option<StoreError>,
    retries: u32,
}

impl MockForwarding {
    /// Forwarding to `destination` that owes `pending` and has `failed`.
    pub fn new(destination: &str, pending: u64, failed: u64) -> Self {
        let status = ForwardingStatus {
            destination: destination.into(),
            pending,
            failed,
            oldest_pending_age_ms: (pending > 0).then_some(1500),
        };
        Self {
            state: Mutex::new(State {
                status: Some(status),
                ..State::default()
            }),
        }
    }

    /// Every call fails with `error` from now on (`None`: they succeed again).
    pub fn fail_with(&self, error: Option<StoreError>) {
        self.state.lock().unwrap().failure = error;
    }

    /// How many times `retry_failed` was called.
    pub fn retries(&self) -> u32 {
        self.state.lock().unwrap().retries
    }
}

#[async_trait]
impl Forwarding for MockForwarding {
    async fn status(&self) -> Result<ForwardingStatus, StoreError> {
        let state = self.state.lock().unwrap();
        if let Some(error) = &state.failure {
            return Err(error.clone());
        }
        Ok(state.status.clone().expect("a status was set"))
    }

    async fn retry_failed(&self) -> Result<u64, StoreError> {
        let mut state = self.state.lock().unwrap();
        if let Some(error) = &state.failure {
            return Err(error.clone());
        }
        state.retries += 1;
        let status = state.status.as_mut().expect("a status was set");
        let requeued = std::mem::take(&mut status.failed);
        status.pending += requeued;
        Ok(requeued)
    }
}
