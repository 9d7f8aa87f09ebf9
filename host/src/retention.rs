//! The retention policy (`RETENTION`): a background task removes messages
//! older than the setting, and forgets the remembered ids of removed
//! messages once they may go, in bounded steps off the request path.
//!
//! Every `PASS_INTERVAL` a pass runs steps (`MessageStore::expire`, at most
//! `EXPIRY_STEP` rows each) until one removes less than it could, so a
//! message is removed at most an interval and a pass after it ages out. On
//! PostgreSQL every host runs the task; hosts skip the rows another is
//! removing rather than wait for them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use crate::storage::{Expired, Expiry, MessageStore, Operation};
use crate::telemetry::metrics::{Metrics, RemovalReason};
use crate::telemetry::request_log::latency_ms;

/// How often a pass starts.
const PASS_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the policy for `retention` until the task is dropped, keeping what
/// forwarding owes when `keep_owed`.
pub async fn run(store: Arc<dyn MessageStore>, retention: Duration, keep_owed: bool, metrics: Arc<Metrics>) {
    let mut passes = tokio::time::interval(PASS_INTERVAL);
    passes.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        passes.tick().await;
        pass(&*store, retention, keep_owed, &metrics).await;
    }
}

/// Steps until little is left; logs what the pass removed, if anything.
async fn pass(store: &dyn MessageStore, retention: Duration, keep_owed: bool, metrics: &Metrics) {
    let started = Instant::now();
    let mut total = Expired::default();
    loop {
        let expiry = Expiry::at(chrono::Utc::now(), retention, keep_owed);
        let step_started = Instant::now();
        let step = store.expire(&expiry).await;
        metrics.record_storage(Operation::Expire, latency_ms(step_started));
        match step {
            Ok(expired) => {
                metrics.record_removed(RemovalReason::Expired, expired.messages);
                total.messages += expired.messages;
                total.forgotten_ids += expired.forgotten_ids;
                if !expired.filled(expiry.limit) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(error = ?error, "retention step failed; the next pass tries again");
                break;
            }
        }
    }
    if total != Expired::default() {
        tracing::info!(
            removed = total.messages,
            forgotten_ids = total.forgotten_ids,
            pass_ms = latency_ms(started),
            "retention pass"
        );
    }
}
