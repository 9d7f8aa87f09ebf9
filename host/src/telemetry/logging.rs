//! JSON lines on stdout: one object per line, nothing else ever.
//!
//! Every line has `ts` (ISO-8601 UTC, milliseconds) and `level`. Events from
//! `tracing` (start-up, storage errors, ...) carry their fields plus `msg`;
//! request lines are written whole by `request_log`.

use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use super::stdout;

/// Severity, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Level {
    /// Detail for diagnosing; off unless `LOG_LEVEL=DEBUG`.
    Debug,
    /// Normal operation: start-up, swaps, one line per request.
    #[default]
    Info,
    /// Something is off but serving goes on.
    Warn,
    /// A failure, e.g. a 5xx response, a rejected guest or a failed storage commit.
    Error,
}

impl Level {
    /// The `level` field of a JSON log line: `debug`, `info`, `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

impl From<tracing::Level> for Level {
    fn from(level: tracing::Level) -> Self {
        match level {
            tracing::Level::ERROR => Self::Error,
            tracing::Level::WARN => Self::Warn,
            tracing::Level::INFO => Self::Info,
            _ => Self::Debug,
        }
    }
}

/// The least severe level written; set once at start-up.
static THRESHOLD: OnceLock<Level> = OnceLock::new();

/// Routes `tracing` events (ours at `level`, dependencies' at `warn`) and
/// panics to stdout as JSON lines.
pub fn init(level: tracing::Level) {
    let threshold = Level::from(level);
    let _ = THRESHOLD.set(threshold);
    let targets = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target(env!("CARGO_CRATE_NAME"), LevelFilter::from_level(level));
    let _ = tracing_subscriber::registry()
        .with(JsonLayer.with_filter(targets))
        .try_init();
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "panic");
        // The process may end right after this hook: the line must be out.
        super::stdout::flush(std::time::Duration::from_millis(500));
    }));
}

/// Whether lines at `level` are written.
pub fn enabled(level: Level) -> bool {
    level >= *THRESHOLD.get().unwrap_or(&Level::Info)
}

/// Writes one line: `ts`, `level`, then `fields`.
pub fn write_line(level: Level, fields: Map<String, Value>) {
    if !enabled(level) {
        return;
    }
    let mut line = Map::with_capacity(fields.len() + 2);
    line.insert("ts".into(), Value::String(now()));
    line.insert("level".into(), Value::String(level.as_str().into()));
    line.extend(fields);
    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
    bytes.push(b'\n');
    stdout::write(bytes);
}

/// The current time as ISO-8601 UTC with milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

struct JsonLayer;

impl<S: tracing::Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = JsonFields(Map::new());
        event.record(&mut visitor);
        write_line(Level::from(*event.metadata().level()), visitor.0);
    }
}

/// Collects an event's fields; the message becomes `msg`.
struct JsonFields(Map<String, Value>);

impl JsonFields {
    fn put(&mut self, field: &Field, value: Value) {
        let name = if field.name() == "message" { "msg" } else { field.name() };
        self.0.insert(name.to_owned(), value);
    }
}

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}
