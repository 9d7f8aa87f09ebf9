//! The host side of the `inlet:service` imports, for one request's sandbox.

use crate::bindings::inlet::service::{log, metrics, storage};
use crate::telemetry::request_log::{self, Level};

use super::sandbox::Sandbox;

impl storage::Host for Sandbox {
    async fn insert(&mut self, message: storage::Message) -> Result<storage::InsertOutcome, storage::Error> {
        self.services.store.insert(message).await
    }

    async fn list_messages(&mut self, request: storage::PageRequest) -> Result<storage::Page, storage::Error> {
        self.services.store.list(request).await
    }

    async fn stats(&mut self, top_senders: u32) -> Result<storage::MessageStats, storage::Error> {
        self.services.store.stats(top_senders).await
    }

    async fn ping(&mut self) -> Result<(), storage::Error> {
        self.services.store.ping().await
    }
}

impl log::Host for Sandbox {
    fn annotate(&mut self, key: String, value: log::FieldValue) {
        let value = match value {
            log::FieldValue::Text(text) => serde_json::Value::String(text),
            log::FieldValue::Flag(flag) => serde_json::Value::Bool(flag),
            log::FieldValue::Number(n) => serde_json::Value::from(n),
        };
        self.fields.annotate(key, value);
    }

    fn escalate(&mut self, level: log::Level) {
        self.fields.escalate(level.into());
    }

    fn event(&mut self, level: log::Level, message: String) {
        request_log::guest_event(&self.request_id, level.into(), &message);
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
        self.services.metrics.record_webhook(outcome);
    }
}
