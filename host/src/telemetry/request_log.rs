//! The one log line per request: what the host measured plus what the guest
//! attached.

use std::time::Instant;

use serde_json::{Map, Value};

use super::logging::{self, Level};

/// Identifies one request in logs and in the `X-Request-ID` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The caller's `X-Request-ID` when it is sane (1 to 128 of
    /// `[A-Za-z0-9._:-]`), else a new UUID.
    pub fn from_header(value: Option<&str>) -> Self {
        let sane = |v: &&str| {
            (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        };
        match value.filter(sane) {
            Some(v) => Self(v.to_owned()),
            None => Self(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// The id as logged and sent back in `X-Request-ID`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Keys the host writes itself; a guest's `annotate` cannot set them, so a
/// line's status, failure, outcome and captured stderr are the host's word.
const HOST_KEYS: [&str; 14] = [
    "ts",
    "level",
    "request_id",
    "method",
    "path",
    "status",
    "latency_ms",
    "msg",
    "error",
    "failure",
    "limit",
    "result",
    "guest_stderr",
    "api_key",
];

/// Fields the guest attached, the least level it asked for, the separate
/// events it emitted and the route it named.
#[derive(Debug, Default)]
pub struct LogFields {
    fields: Map<String, Value>,
    level: Level,
    events: Vec<(Level, String)>,
    route: Option<&'static str>,
}

impl LogFields {
    /// Which route served the request, as the metrics' `path` label.
    pub fn name_route(&mut self, route: &'static str) {
        self.route = Some(route);
    }

    /// The route named so far, if any.
    pub fn route(&self) -> Option<&'static str> {
        self.route
    }

    /// A field the guest asked for; one of `HOST_KEYS` is ignored.
    pub fn annotate(&mut self, key: String, value: Value) {
        if !HOST_KEYS.contains(&key.as_str()) {
            self.fields.insert(key, value);
        }
    }

    /// A field the host adds (one of `HOST_KEYS`).
    pub fn set(&mut self, key: &'static str, value: Value) {
        debug_assert!(HOST_KEYS.contains(&key), "{key} is not a host key");
        self.fields.insert(key.into(), value);
    }

    /// Raises the line's level to `level`; it never lowers it.
    pub fn escalate(&mut self, level: Level) {
        self.level = self.level.max(level);
    }

    /// Remembers an event the guest emitted (it is written at once).
    pub fn record_event(&mut self, level: Level, message: String) {
        self.events.push((level, message));
    }

    /// The events emitted so far, in order.
    pub fn events(&self) -> &[(Level, String)] {
        &self.events
    }

    /// The fields attached so far.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// The least level the line will be written at (5xx raise it further).
    pub fn level(&self) -> Level {
        self.level
    }
}

/// What the host knows about a request from the moment it arrives.
pub struct RequestInfo {
    /// From `X-Request-ID`, or a fresh UUID.
    pub id: RequestId,
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// The URI's path, without the query.
    pub path: String,
    /// When the host received the request; `latency_ms` counts from here.
    pub started: Instant,
}

/// Writes the request's line. 5xx, and any `failure`, are `error`.
pub fn finish(info: &RequestInfo, status: u16, guest: LogFields, failure: Option<&str>) {
    let level = if status >= 500 || failure.is_some() {
        Level::Error
    } else {
        guest.level
    };
    let mut line = Map::new();
    line.insert("request_id".into(), info.id.as_str().into());
    line.insert("method".into(), info.method.as_str().into());
    line.insert("path".into(), info.path.as_str().into());
    line.insert("status".into(), status.into());
    line.insert("latency_ms".into(), latency_ms(info.started).into());
    if let Some(failure) = failure {
        line.insert("error".into(), failure.into());
    }
    line.extend(guest.fields);
    logging::write_line(level, line);
}

/// Milliseconds since `started`, to the microsecond.
pub fn latency_ms(started: Instant) -> f64 {
    (started.elapsed().as_micros() as f64) / 1000.0
}

/// A separate event a guest emitted during a request.
pub fn guest_event(id: &RequestId, level: Level, message: &str) {
    let mut line = Map::new();
    line.insert("request_id".into(), id.as_str().into());
    line.insert("msg".into(), message.into());
    line.insert("source".into(), "guest".into());
    logging::write_line(level, line);
}
