//! The host side of the `inlet:service` imports, for one request's sandbox.

use std::time::{Duration, Instant};

use crate::api_keys::{Caller, Scope};
use crate::bindings::inlet::service::{access, forwarding, log, metrics, settings, storage};
use crate::limits::{GUEST_LOG, write_wait};
use crate::storage::{Operation, check_feed_wait};
use crate::telemetry::logging::Level;
use crate::telemetry::metrics::{RemovalReason, result_label};
use crate::telemetry::request_log;

use super::parking::FeedPause;
use super::sandbox::{Sandbox, Services};

impl storage::Host for Sandbox {
    async fn insert(&mut self, message: storage::Message) -> Result<storage::InsertOutcome, storage::Error> {
        self.effects.mark();
        let services = self.services.clone();
        answered_by(self.deadline, async move {
            let outcome = timed(&services, Operation::Insert, services.store.insert(message)).await;
            if outcome == Ok(storage::InsertOutcome::Created) {
                services.created(1);
            }
            outcome
        })
        .await
    }

    async fn insert_batch(
        &mut self,
        messages: Vec<storage::Message>,
    ) -> Result<Vec<storage::InsertOutcome>, storage::Error> {
        self.effects.mark();
        let services = self.services.clone();
        answered_by(self.deadline, async move {
            let outcomes = timed(&services, Operation::InsertBatch, services.store.insert_batch(messages)).await?;
            let created = outcomes
                .iter()
                .filter(|o| **o == storage::InsertOutcome::Created)
                .count();
            services.created(created as u64);
            Ok(outcomes)
        })
        .await
    }

    async fn list_messages(&mut self, request: storage::PageRequest) -> Result<storage::Page, storage::Error> {
        let services = self.services.clone();
        timed(&services, Operation::List, services.store.list(request)).await
    }

    async fn stats(&mut self, top_senders: u32) -> Result<storage::MessageStats, storage::Error> {
        let services = self.services.clone();
        timed(&services, Operation::Stats, services.store.stats(top_senders)).await
    }

    async fn get_message(&mut self, message_id: String) -> Result<Option<storage::StoredMessage>, storage::Error> {
        let services = self.services.clone();
        timed(&services, Operation::Get, services.store.get(message_id)).await
    }

    async fn remove_message(&mut self, message_id: String) -> Result<storage::Removal, storage::Error> {
        self.effects.mark();
        let services = self.services.clone();
        answered_by(self.deadline, async move {
            let removal = timed(&services, Operation::Remove, services.store.remove(message_id)).await;
            if removal == Ok(storage::Removal::Removed) {
                services.metrics.record_removed(RemovalReason::Erased, 1);
            }
            removal
        })
        .await
    }

    async fn read_feed(
        &mut self,
        after: storage::FeedPosition,
        limit: u32,
    ) -> Result<Option<storage::FeedPage>, storage::Error> {
        let services = self.services.clone();
        let page = timed(&services, Operation::Feed, services.store.feed(after, limit)).await?;
        if let Some(page) = &page
            && !page.messages.is_empty()
            && u32::try_from(page.messages.len()).is_ok_and(|count| count < limit)
        {
            services.feed.handed_out(page.next);
        }
        Ok(page)
    }

    async fn wait_feed(
        &mut self,
        after: storage::FeedPosition,
        timeout_seconds: u32,
    ) -> Result<storage::FeedWait, storage::Error> {
        check_feed_wait(timeout_seconds)?;
        if let Some(outcome) = self.parking.outcome() {
            return Ok(outcome);
        }
        // Refused before the run is stopped, which would cost a second run.
        if !self.services.feed.has_room() {
            return Ok(storage::FeedWait::Full);
        }
        let until = Instant::now() + Duration::from_secs(timeout_seconds.into());
        if self.effects.any() {
            // This run cannot be run again: it waits in its instance.
            return Ok(self.services.feed.wait(after, until).await);
        }
        self.parking.ask(FeedPause::Wait { after, until });
        // `invoke` stops this run now; the next one is told the outcome.
        std::future::pending().await
    }

    async fn pace_feed(&mut self, after: storage::FeedPosition) {
        if !self.parking.may_pace() {
            return;
        }
        let Some(until) = self.services.feed.paced_until(after) else {
            return;
        };
        if self.effects.any() {
            // This run cannot be run again: it waits in its instance.
            return self.services.feed.pace(until).await;
        }
        self.parking.ask(FeedPause::Pace { until });
        // `invoke` stops this run now; the next one goes on at once.
        std::future::pending().await
    }

    async fn ping(&mut self) -> Result<(), storage::Error> {
        let services = self.services.clone();
        timed(&services, Operation::Ping, services.store.ping()).await
    }
}

/// Runs a write, with what it counts, as a task of its own, so that it goes
/// on whatever becomes of its request (a commit is never cancelled); answers
/// `unavailable` (the guest's 503 with `Retry-After`) once the request's
/// `deadline` is near (`limits::write_wait`), so that a write hanging on
/// its database (cut off, a lost synchronous standby) is a 503 the sender
/// retries, not a 504. Its outcome is unknown then: the retry finds the
/// message it stored `duplicate`, the message it erased `not-found`.
async fn answered_by<T: Send + 'static>(
    deadline: Instant,
    write: impl Future<Output = Result<T, storage::Error>> + Send + 'static,
) -> Result<T, storage::Error> {
    let wait = write_wait(deadline.saturating_duration_since(Instant::now()));
    match tokio::time::timeout(wait, tokio::spawn(write)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(failed)) => Err(storage::Error::Internal(format!("the write's task failed: {failed}"))),
        Err(_) => Err(storage::Error::Unavailable(
            "the database has not confirmed the write in time; its outcome is unknown".into(),
        )),
    }
}

/// Awaits a storage call and records its latency.
async fn timed<T>(services: &Services, operation: Operation, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let result = call.await;
    services
        .metrics
        .record_storage(operation, request_log::latency_ms(started));
    result
}

/// The log imports trap a guest that goes past `limits::GuestLogLimits`:
/// what it attaches is held by the host until the request's line is written.
impl log::Host for Sandbox {
    fn annotate(&mut self, key: String, value: log::FieldValue) -> wasmtime::Result<()> {
        let text_bytes = match &value {
            log::FieldValue::Text(text) => text.len(),
            log::FieldValue::Flag(_) | log::FieldValue::Number(_) => 0,
        };
        let fields = self.fields.fields().len() + usize::from(!self.fields.fields().contains_key(&key));
        GUEST_LOG.check_field(fields, key.len() + text_bytes)?;
        let value = match value {
            log::FieldValue::Text(text) => serde_json::Value::String(text),
            log::FieldValue::Flag(flag) => serde_json::Value::Bool(flag),
            log::FieldValue::Number(n) => serde_json::Value::from(n),
        };
        self.fields.annotate(key, value);
        Ok(())
    }

    fn escalate(&mut self, level: log::Level) {
        self.fields.escalate(level.into());
    }

    fn event(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        GUEST_LOG.check_event(self.fields.events().len(), message.len())?;
        self.effects.mark();
        request_log::guest_event(&self.request_id, level.into(), &message);
        self.fields.record_event(level.into(), message);
        Ok(())
    }
}

impl From<log::Level> for Level {
    fn from(level: log::Level) -> Self {
        match level {
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        }
    }
}

impl metrics::Host for Sandbox {
    fn record_webhook(&mut self, outcome: metrics::WebhookResult) {
        self.effects.mark();
        self.services.metrics.record_webhook(outcome);
        self.fields.set("result", result_label(outcome).into());
    }

    fn record_whatsapp_statuses(&mut self, count: u32) {
        self.effects.mark();
        self.services.metrics.record_whatsapp_statuses(count);
    }

    fn name_route(&mut self, route: String) {
        let label = self.services.metrics.guest_route(&route);
        self.fields.name_route(label);
    }
}

impl settings::Host for Sandbox {
    fn webhook(&mut self) -> settings::WebhookSettings {
        settings::WebhookSettings {
            secrets: self.secrets.expose().to_vec(),
            tolerance_seconds: self.services.tolerance_seconds,
        }
    }

    fn whatsapp_verify_token(&mut self) -> Option<String> {
        let token = self.services.whatsapp_verify_token.as_ref()?;
        Some(token.expose().to_owned())
    }
}

/// A recognised key's name goes on the log line as the host's own field,
/// so that a guest cannot forge it.
impl access::Host for Sandbox {
    fn identify(&mut self, authorization: Option<String>) -> access::Caller {
        match self.services.api_keys.identify(authorization.as_deref()) {
            Caller::Anonymous => access::Caller::Anonymous,
            Caller::Unauthenticated => access::Caller::Unauthenticated,
            Caller::Holder(holder) => {
                self.fields.set("api_key", holder.name.clone().into());
                access::Caller::Holder(access::KeyHolder {
                    name: holder.name.clone(),
                    scope: match holder.scope {
                        Scope::Read => access::Scope::Read,
                        Scope::Admin => access::Scope::Admin,
                    },
                })
            }
        }
    }
}

/// A retry is an effect: the run is not started again after it.
impl forwarding::Host for Sandbox {
    async fn status(&mut self) -> Result<Option<forwarding::ForwardingStatus>, storage::Error> {
        let Some(forwarding) = self.services.forwarding.clone() else {
            return Ok(None);
        };
        forwarding.status().await.map(Some)
    }

    async fn retry_failed(&mut self) -> Result<Option<u64>, storage::Error> {
        self.effects.mark();
        let Some(forwarding) = self.services.forwarding.clone() else {
            return Ok(None);
        };
        forwarding.retry_failed().await.map(Some)
    }
}
