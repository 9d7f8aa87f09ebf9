//! The limits the host enforces on guests and clients. Each has a default
//! fit for a webhook service and an environment variable to override it.

use std::time::Duration;

/// Guest-facing limits: what one request's sandbox may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    /// Wall-clock budget for one request in the guest (`REQUEST_TIMEOUT_MS`):
    /// CPU-bound guests are interrupted (epoch deadline), guests waiting on
    /// the host are abandoned. Answered with 504.
    pub request_timeout: Duration,
    /// Linear memory one instance may grow to (`GUEST_MEMORY_MB`). Exceeding
    /// it traps the instance: 500.
    pub memory_bytes: usize,
    /// Guest instances alive at once (`MAX_INSTANCES`); the pooling allocator
    /// reserves this many slots, and requests beyond it wait for one.
    pub max_instances: u32,
    /// Requests one instance serves before it is dropped
    /// (`GUEST_INSTANCE_REUSE`). 1, the default, is a fresh instance per
    /// request. Above 1 an instance serves requests one after another (never
    /// two at once) and keeps its memory between them: faster, but what one
    /// request leaves in guest memory the next can see. An instance that
    /// fails is never reused.
    pub requests_per_instance: u32,
}

impl GuestLimits {
    /// Whether instances serve more than one request.
    pub fn reuses_instances(&self) -> bool {
        self.requests_per_instance > 1
    }
}

impl Default for GuestLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            memory_bytes: 64 << 20,
            max_instances: 256,
            requests_per_instance: 1,
        }
    }
}

/// Room a write leaves before its request's deadline (`write_wait`), for
/// the guest to answer 503 itself before the deadline would answer 504,
/// on a machine that stalls now and then.
const WRITE_ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// How long a write may keep its request waiting with `left` before the
/// request's deadline: all but `WRITE_ANSWER_MARGIN`, and at least half of
/// `left`. Past it the write is answered `unavailable`.
pub fn write_wait(left: Duration) -> Duration {
    left - WRITE_ANSWER_MARGIN.min(left / 2)
}

/// Most resources (`wasi:http` requests, fields, bodies, streams, pollables)
/// one instance may hold at once; one request needs a few dozen. Past it a
/// constructor traps.
pub const MAX_GUEST_RESOURCES: usize = 256;

/// Most bytes of names and values one `wasi:http` `fields` the guest builds
/// may hold; past it `set`/`append` trap the guest (wasmtime-wasi-http's
/// choice). With
/// `MAX_GUEST_RESOURCES` it bounds what a guest's headers cost the host.
pub const MAX_GUEST_FIELD_BYTES: usize = 16 << 10;

/// What a guest may attach to its request's log line through `log`,
/// which the host holds until the line is written. Past it the call traps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLogLimits {
    /// Distinct keys `annotate` may set.
    pub fields: usize,
    /// Bytes of one field's key and text value.
    pub field_bytes: usize,
    /// Calls to `event`.
    pub events: usize,
    /// Bytes of one event's message.
    pub event_bytes: usize,
}

/// The log limits every guest runs under.
pub const GUEST_LOG: GuestLogLimits = GuestLogLimits {
    fields: 32,
    field_bytes: 4 << 10,
    events: 16,
    event_bytes: 4 << 10,
};

impl GuestLogLimits {
    /// Refuses a field that would make `fields` distinct keys, or whose key
    /// and text take `bytes`, beyond the limits.
    pub fn check_field(&self, fields: usize, bytes: usize) -> wasmtime::Result<()> {
        wasmtime::ensure!(
            fields <= self.fields,
            "the guest annotated more than {} log fields",
            self.fields
        );
        wasmtime::ensure!(
            bytes <= self.field_bytes,
            "the guest annotated a log field of {bytes} bytes; at most {}",
            self.field_bytes
        );
        Ok(())
    }

    /// Refuses an event beyond the `events` already emitted, or of `bytes`
    /// beyond the limit.
    pub fn check_event(&self, emitted: usize, bytes: usize) -> wasmtime::Result<()> {
        wasmtime::ensure!(
            emitted < self.events,
            "the guest emitted more than {} log events",
            self.events
        );
        wasmtime::ensure!(
            bytes <= self.event_bytes,
            "the guest emitted a log event of {bytes} bytes; at most {}",
            self.event_bytes
        );
        Ok(())
    }
}

/// Bytes of request bodies the host holds at once, over every request it
/// is receiving or serving. Bodies are received before a guest runs (see
/// `runtime::request_body`), so without this, clients that never send a
/// valid signature could make the host hold `MAX_CONNECTIONS` full bodies.
/// A body that would pass it is refused with 503.
pub const MAX_BUFFERED_BODY_BYTES: u64 = 256 << 20;

/// The guest's route for WhatsApp Cloud API deliveries, which may be larger
/// than other bodies.
pub const WHATSAPP_ROUTE: &str = "/webhook/whatsapp";

/// The body limit one request is held to, and the setting that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit {
    /// Largest body in bytes.
    pub bytes: u64,
    /// The variable it comes from, for the 413's log line.
    pub variable: &'static str,
}

impl HttpLimits {
    /// The body limit of a request to `path`.
    pub fn body_limit_for(&self, path: &str) -> BodyLimit {
        if path == WHATSAPP_ROUTE {
            BodyLimit {
                bytes: self.max_whatsapp_body_bytes,
                variable: "WHATSAPP_MAX_BODY_BYTES",
            }
        } else {
            BodyLimit {
                bytes: self.max_body_bytes,
                variable: "MAX_BODY_BYTES",
            }
        }
    }
}

/// Client-facing limits: what one connection or request may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body (`MAX_BODY_BYTES`), checked from
    /// `Content-Length` and while the body streams: 413.
    pub max_body_bytes: u64,
    /// Largest request body on `WHATSAPP_ROUTE` (`WHATSAPP_MAX_BODY_BYTES`),
    /// where Meta sends up to 3 MB in one delivery; `max_body_bytes` does not
    /// apply there.
    pub max_whatsapp_body_bytes: u64,
    /// Time a client has to send a request's headers
    /// (`HEADER_READ_TIMEOUT_MS`); slower connections are closed. The clock
    /// also runs while a keep-alive connection waits for its next request,
    /// so it is the idle timeout too.
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's whole body once its headers
    /// are in (`BODY_READ_TIMEOUT_MS`): 408, and the connection closes. The
    /// host receives bodies itself, so a slow one holds no guest instance.
    pub body_read_timeout: Duration,
    /// Time a response may go without a byte accepted by the client
    /// (`SEND_TIMEOUT_MS`) before the connection is closed, so a client that
    /// never reads frees its connection slot.
    pub send_timeout: Duration,
    /// Open connections at once (`MAX_CONNECTIONS`); further clients wait in
    /// the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_whatsapp_body_bytes: 4 << 20,
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_waits_for_all_but_the_margin_and_at_least_half_the_time_left() {
        assert_eq!(write_wait(WRITE_ANSWER_MARGIN * 10), WRITE_ANSWER_MARGIN * 9);
        assert_eq!(write_wait(WRITE_ANSWER_MARGIN), WRITE_ANSWER_MARGIN / 2);
        assert_eq!(write_wait(Duration::ZERO), Duration::ZERO);
    }
}
