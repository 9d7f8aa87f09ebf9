//! Prometheus metrics, exposed at `GET /metrics` (names documented in the README).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::bindings::inlet::service::metrics::WebhookResult;
use crate::storage::Operation;

/// Upper bounds (milliseconds) of the `request_latency_ms` buckets.
pub const LATENCY_BUCKETS_MS: [f64; 14] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Upper bounds (milliseconds) of `guest_instantiation_ms` buckets.
pub const INSTANTIATION_BUCKETS_MS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0];

/// Upper bounds (milliseconds) of `storage_operation_ms` buckets.
pub const STORAGE_BUCKETS_MS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
];

/// The `path` label of a request whose guest named no route, or a name past
/// the bounds below: clients and guests cannot grow the series.
pub const OTHER_ROUTE: &str = "other";
/// Most distinct route names guests may add as `path` labels, over the
/// process's life (the host's own routes are not among them).
pub const MAX_GUEST_ROUTES: usize = 32;
/// Longest route name kept as a label, in bytes.
pub const MAX_ROUTE_BYTES: usize = 64;
/// The host's own routes, which it answers and counts itself.
pub const HOST_LIVE: &str = "/health/live";
/// See `HOST_LIVE`: readiness, answered without a guest (see `server::readiness`).
pub const HOST_READY: &str = "/health/ready";
/// See `HOST_LIVE`.
pub const HOST_METRICS: &str = "/metrics";
/// See `HOST_LIVE`: the API docs page, and its files below it (see `docs`).
pub const HOST_DOCS: &str = "/docs";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    path: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuestLabels {
    sha256: String,
}

/// Why messages were removed, as `messages_removed_total` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// One message, by `DELETE /messages/{message_id}`.
    Erased,
    /// Aged past `RETENTION`.
    Expired,
}

/// An attempt to forward a message, as `forward_deliveries_total` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardResult {
    /// The destination took it.
    Delivered,
    /// It failed and will be tried again.
    Retry,
    /// It failed, the last attempt allowed: the message is `failed`.
    Failed,
}

impl ForwardResult {
    const ALL: [Self; 3] = [Self::Delivered, Self::Retry, Self::Failed];

    fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardLabels {
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The process's Prometheus registry and every series Inlet exports; shared by all requests.
pub struct Metrics {
    registry: Registry,
    /// The route names guests have added so far (at most `MAX_GUEST_ROUTES`).
    guest_routes: Mutex<Vec<&'static str>>,
    http_requests: Family<HttpLabels, Counter>,
    webhook_requests: Family<WebhookLabels, Counter>,
    request_latency: Histogram,
    in_flight: Gauge,
    instantiation: Histogram,
    storage_latency: HistogramFamily<OperationLabels>,
    messages_stored: Counter,
    messages_removed: Family<ReasonLabels, Counter>,
    whatsapp_statuses: Counter,
    guest_loads: Family<OutcomeLabels, Counter>,
    guest_info: Family<GuestLabels, Gauge>,
    guest_traps: Family<ReasonLabels, Counter>,
    forward_deliveries: Family<ForwardLabels, Counter>,
    forward_pending: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, with each `webhook_requests` result at zero.
    pub fn new() -> Self {
        let http_requests = Family::<HttpLabels, Counter>::default();
        let webhook_requests = Family::<WebhookLabels, Counter>::default();
        let request_latency = Histogram::new(LATENCY_BUCKETS_MS);
        let in_flight = Gauge::default();
        let instantiation = Histogram::new(INSTANTIATION_BUCKETS_MS);
        let storage_latency: HistogramFamily<OperationLabels> =
            Family::new_with_constructor(|| Histogram::new(STORAGE_BUCKETS_MS));
        let messages_stored = Counter::default();
        let messages_removed = Family::<ReasonLabels, Counter>::default();
        let whatsapp_statuses = Counter::default();
        let guest_loads = Family::<OutcomeLabels, Counter>::default();
        let guest_info = Family::<GuestLabels, Gauge>::default();
        let guest_traps = Family::<ReasonLabels, Counter>::default();
        let forward_deliveries = Family::<ForwardLabels, Counter>::default();
        let forward_pending = Gauge::default();
        let mut registry = Registry::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register("webhook_requests", "POST /webhook outcomes", webhook_requests.clone());
        registry.register(
            "request_latency_ms",
            "Request latency in milliseconds",
            request_latency.clone(),
        );
        registry.register("requests_in_flight", "Requests being served now", in_flight.clone());
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stdout did not keep up",
            super::stdout::dropped_lines(),
        );
        registry.register(
            "guest_instantiation_ms",
            "Time to instantiate a fresh guest for a request, in milliseconds",
            instantiation.clone(),
        );
        registry.register(
            "storage_operation_ms",
            "Storage operation latency by operation, in milliseconds",
            storage_latency.clone(),
        );
        registry.register(
            "messages_stored",
            "Messages stored (created) since start",
            messages_stored.clone(),
        );
        registry.register(
            "messages_removed",
            "Messages removed since start, by reason",
            messages_removed.clone(),
        );
        registry.register(
            "whatsapp_statuses",
            "WhatsApp status updates received (counted, not stored)",
            whatsapp_statuses.clone(),
        );
        registry.register("guest_loads", "Guest component loads by outcome", guest_loads.clone());
        registry.register("guest_info", "The live guest component, by SHA-256", guest_info.clone());
        registry.register(
            "guest_traps",
            "Requests the guest did not finish, by reason (deadline, memory, trap, no_response)",
            guest_traps.clone(),
        );
        registry.register(
            "forward_deliveries",
            "Attempts to forward a message, by result",
            forward_deliveries.clone(),
        );
        registry.register(
            "forward_pending",
            "Messages owed to the forwarding destination (not delivered, not failed)",
            forward_pending.clone(),
        );
        for result in ForwardResult::ALL {
            let _ = forward_deliveries.get_or_create(&ForwardLabels { result: result.label() });
        }
        for result in ALL_RESULTS {
            // Every outcome is exported from the start, at zero.
            let _ = webhook_requests.get_or_create(&WebhookLabels {
                result: result_label(result),
            });
        }
        Self {
            registry,
            guest_routes: Mutex::new(Vec::new()),
            http_requests,
            webhook_requests,
            request_latency,
            in_flight,
            instantiation,
            storage_latency,
            messages_stored,
            messages_removed,
            whatsapp_statuses,
            guest_loads,
            guest_info,
            guest_traps,
            forward_deliveries,
            forward_pending,
        }
    }

    /// A request arrived; `record_request` ends it.
    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    /// Counts a finished request.
    /// A request to `route` (a host route, or one `guest_route` returned)
    /// ended with `status`.
    pub fn record_request(&self, route: &'static str, status: u16, latency_ms: f64) {
        let labels = HttpLabels { path: route, status };
        self.http_requests.get_or_create(&labels).inc();
        self.request_latency.observe(latency_ms);
        self.in_flight.dec();
    }

    /// The label of a route a guest named: the name itself while the names
    /// stay within their bounds, else `OTHER_ROUTE`.
    pub fn guest_route(&self, name: &str) -> &'static str {
        if !is_route_name(name) {
            return OTHER_ROUTE;
        }
        let mut routes = self
            .guest_routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(known) = routes.iter().find(|known| **known == name) {
            return known;
        }
        if routes.len() == MAX_GUEST_ROUTES {
            return OTHER_ROUTE;
        }
        // Labels live as long as the registry; the bounds above cap what
        // this leaks at `MAX_GUEST_ROUTES` short strings per process.
        let label: &'static str = Box::leak(name.to_owned().into_boxed_str());
        routes.push(label);
        label
    }

    /// Requests counted as started and not yet as done.
    pub fn requests_in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// The label of `path` if a guest has named it a route already; unlike
    /// `guest_route`, a client's path never becomes a label.
    pub fn known_route(&self, path: &str) -> Option<&'static str> {
        let routes = self
            .guest_routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        routes.iter().find(|known| **known == path).copied()
    }

    /// Observes one guest instantiation in `guest_instantiation_ms`.
    pub fn record_instantiation(&self, elapsed_ms: f64) {
        self.instantiation.observe(elapsed_ms);
    }

    /// Observes one `operation`'s latency in `storage_operation_ms`.
    pub fn record_storage(&self, operation: Operation, elapsed_ms: f64) {
        self.storage_latency
            .get_or_create(&OperationLabels {
                operation: operation.label(),
            })
            .observe(elapsed_ms);
    }

    /// Counts `count` messages newly stored (not duplicates) in `messages_stored_total`.
    pub fn record_stored(&self, count: u64) {
        self.messages_stored.inc_by(count);
    }

    /// Counts one forwarding attempt's result.
    pub fn record_forward(&self, result: ForwardResult) {
        self.forward_deliveries
            .get_or_create(&ForwardLabels { result: result.label() })
            .inc();
    }

    /// Sets how many messages forwarding owes.
    pub fn set_forward_pending(&self, pending: u64) {
        self.forward_pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// Counts `count` messages removed for `reason` in `messages_removed_total`.
    pub fn record_removed(&self, reason: RemovalReason, count: u64) {
        let reason = match reason {
            RemovalReason::Erased => "erased",
            RemovalReason::Expired => "expired",
        };
        self.messages_removed
            .get_or_create(&ReasonLabels { reason })
            .inc_by(count);
    }

    /// Counts `count` WhatsApp status updates in `whatsapp_statuses_total`.
    pub fn record_whatsapp_statuses(&self, count: u32) {
        self.whatsapp_statuses.inc_by(u64::from(count));
    }

    /// Counts a loaded guest and makes it the one `guest_info` shows.
    pub fn record_guest_loaded(&self, sha256: &str) {
        self.guest_loads
            .get_or_create(&OutcomeLabels { outcome: "loaded" })
            .inc();
        self.guest_info.clear();
        self.guest_info
            .get_or_create(&GuestLabels {
                sha256: sha256.to_owned(),
            })
            .set(1);
    }

    /// Counts one `POST /webhook` outcome in `webhook_requests_total`, as the guest reported it.
    pub fn record_webhook(&self, result: WebhookResult) {
        self.webhook_requests
            .get_or_create(&WebhookLabels {
                result: result_label(result),
            })
            .inc();
    }

    /// How many webhooks ended with `result` so far.
    pub fn webhook_count(&self, result: WebhookResult) -> u64 {
        self.webhook_requests
            .get_or_create(&WebhookLabels {
                result: result_label(result),
            })
            .get()
    }

    /// Counts a request the guest did not finish; `reason` as in `GuestFailure::reason`.
    pub fn record_guest_trap(&self, reason: &'static str) {
        self.guest_traps.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a guest candidate that failed to load.
    pub fn record_guest_rejected(&self) {
        self.guest_loads
            .get_or_create(&OutcomeLabels { outcome: "rejected" })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Every webhook outcome.
pub const ALL_RESULTS: [WebhookResult; 5] = [
    WebhookResult::Created,
    WebhookResult::Duplicate,
    WebhookResult::InvalidSignature,
    WebhookResult::ValidationError,
    WebhookResult::StorageError,
];

/// A name fit for a label: short, of characters the exposition format needs
/// no escape for (prometheus-client writes label values as they are), and
/// not one of the host's own routes, whose counts a guest must not join.
fn is_route_name(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "/_.-".contains(c);
    (1..=MAX_ROUTE_BYTES).contains(&name.len())
        && name.chars().all(allowed)
        && ![OTHER_ROUTE, HOST_LIVE, HOST_READY, HOST_METRICS, HOST_DOCS].contains(&name)
}

/// The `result` label (and log value) of an outcome.
pub fn result_label(result: WebhookResult) -> &'static str {
    match result {
        WebhookResult::Created => "created",
        WebhookResult::Duplicate => "duplicate",
        WebhookResult::InvalidSignature => "invalid_signature",
        WebhookResult::ValidationError => "validation_error",
        WebhookResult::StorageError => "storage_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_lines() {
        let metrics = Metrics::new();
        for _ in 0..15 {
            metrics.record_request("/webhook", 200, 3.0);
        }
        metrics.record_webhook(WebhookResult::Created);
        let text = metrics.render();
        assert!(
            text.contains("http_requests_total{path=\"/webhook\",status=\"200\"} 15"),
            "{text}"
        );
        assert!(text.contains("webhook_requests_total{result=\"created\"} 1"), "{text}");
        assert!(
            text.contains("webhook_requests_total{result=\"duplicate\"} 0"),
            "{text}"
        );
        assert!(text.contains("request_latency_ms_bucket{le=\"5.0\"} 15"), "{text}");
    }

    #[test]
    fn host_internals() {
        let metrics = Metrics::new();
        metrics.request_started();
        metrics.record_instantiation(0.2);
        metrics.record_storage(Operation::Insert, 0.7);
        metrics.record_stored(1);
        metrics.record_guest_loaded("aa");
        metrics.record_guest_loaded("bb");
        metrics.record_guest_rejected();
        let text = metrics.render();
        for line in [
            "requests_in_flight 1",
            "guest_instantiation_ms_count 1",
            "storage_operation_ms_bucket{le=\"1.0\",operation=\"insert\"} 1",
            "messages_stored_total 1",
            "guest_loads_total{outcome=\"loaded\"} 2",
            "guest_loads_total{outcome=\"rejected\"} 1",
            "guest_info{sha256=\"bb\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in {text}");
        }
        assert!(!text.contains("sha256=\"aa\""), "{text}");
    }

    #[test]
    fn guest_route_names_are_bounded_in_number_and_length() {
        let metrics = Metrics::new();
        for i in 0..100 {
            let route = metrics.guest_route(&format!("/random/{i}"));
            metrics.record_request(route, 404, 1.0);
        }
        metrics.record_request(metrics.guest_route(&"/long".repeat(20)), 404, 1.0);
        for forged in ["/metrics", "/health/live", "other", "a\"b", "line\nbreak", ""] {
            assert_eq!(metrics.guest_route(forged), OTHER_ROUTE, "{forged:?}");
        }
        metrics.record_request(metrics.guest_route("/random/0"), 404, 1.0);
        let text = metrics.render();
        assert!(
            text.contains("http_requests_total{path=\"other\",status=\"404\"} 69"),
            "{text}"
        );
        assert!(
            text.contains("http_requests_total{path=\"/random/0\",status=\"404\"} 2"),
            "{text}"
        );
        assert_eq!(text.matches("http_requests_total{").count(), MAX_GUEST_ROUTES + 1);
    }
}
