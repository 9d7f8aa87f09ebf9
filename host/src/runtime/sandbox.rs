//! What one guest instance can reach: its `Store` data.
//!
//! A sandbox per instance (so per request, unless instances are reused):
//! WASI with no files, no network, no outgoing HTTP, an empty environment
//! and stderr kept for the log line, plus the Inlet imports bound to the
//! current request's log line and settings.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::parking::Parking;
use super::stderr::GuestStderr;
use crate::api_keys::ApiKeys;
use crate::feed_watch::FeedWatch;
use crate::forwarding::Forwarding;
use crate::limits::{MAX_GUEST_FIELD_BYTES, MAX_GUEST_RESOURCES};
use crate::secrets::{SecretSet, Secrets, WebhookSecret};
use crate::storage::MessageStore;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::request_log::{LogFields, RequestId};

/// Process-wide services every sandbox shares.
pub struct Services {
    /// Message storage behind the guest's `storage` import.
    pub store: Arc<dyn MessageStore>,
    /// Process-wide counters the host and the guest's `metrics` import update.
    pub metrics: Arc<Metrics>,
    /// The live webhook secrets; each request sees the set current when it starts.
    pub secrets: Arc<Secrets>,
    /// The guest's `settings.webhook` tolerance.
    pub tolerance_seconds: u64,
    /// The guest's `settings.whatsapp-verify-token`.
    pub whatsapp_verify_token: Option<WebhookSecret>,
    /// Who holds which key, for the guest's `access` import.
    pub api_keys: Arc<ApiKeys>,
    /// Where the feed ends and where short pages ended, for the guest's
    /// `storage.wait-feed` and `storage.pace-feed`.
    pub feed: Arc<FeedWatch>,
    /// Forwarding, when `FORWARD_URL` is set.
    pub forwarding: Option<Arc<dyn Forwarding>>,
}

impl Services {
    /// Messages were created (and committed) by a request here: those
    /// following the feed look now.
    pub fn created(&self, count: u64) {
        self.metrics.record_stored(count);
        if count > 0 {
            self.feed.stored();
            if let Some(forwarding) = &self.forwarding {
                forwarding.stored();
            }
        }
    }
}

/// The data of one request's `Store`.
pub struct Sandbox {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: DenyOutgoingHttp,
    pub services: Arc<Services>,
    /// The webhook secrets this request sees, whatever a rotation does meanwhile.
    pub secrets: Arc<SecretSet>,
    pub request_id: RequestId,
    /// When this request's time is up (`REQUEST_TIMEOUT_MS` from its start).
    pub deadline: Instant,
    pub fields: LogFields,
    stderr: GuestStderr,
    pub limiter: MemoryLimiter,
    /// Whether this request's run has done anything a second run would repeat.
    pub effects: Effects,
    /// The request's long-poll of the feed or its pacing, which outlive its runs.
    pub parking: Parking,
}

/// Whether a run has had an effect outside its instance: stored something,
/// counted a metric, written a log event or answered. Until then it may be
/// stopped and run again from the start (see `request_body`).
#[derive(Debug, Clone, Default)]
pub struct Effects(Arc<AtomicBool>);

impl Effects {
    /// Notes an effect.
    pub fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether any effect happened.
    pub fn any(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Sandbox {
    pub fn new(services: Arc<Services>, request_id: RequestId, deadline: Instant, memory_bytes: usize) -> Self {
        let stderr = GuestStderr::default();
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_GUEST_FIELD_BYTES);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_GUEST_RESOURCES);
        Self {
            wasi,
            http,
            table,
            hooks: DenyOutgoingHttp,
            secrets: services.secrets.current(),
            services,
            request_id,
            deadline,
            fields: LogFields::default(),
            stderr,
            limiter: MemoryLimiter {
                max_bytes: memory_bytes,
                exceeded: false,
            },
            effects: Effects::default(),
            parking: Parking::default(),
        }
    }

    /// Starts another request in a reused instance, under the secrets current now.
    pub fn begin_request(&mut self, request_id: RequestId, deadline: Instant) {
        self.secrets = self.services.secrets.current();
        self.request_id = request_id;
        self.deadline = deadline;
        self.fields = LogFields::default();
        self.limiter.exceeded = false;
        self.effects = Effects::default();
    }

    /// What the guest attached to this request's log line, plus anything it
    /// wrote to stderr as `guest_stderr` (a panic's message is there).
    pub fn take_log_fields(&mut self) -> LogFields {
        let mut fields = std::mem::take(&mut self.fields);
        if let Some(text) = self.stderr.take() {
            fields.set("guest_stderr", text.into());
        }
        fields
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Sandbox {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps linear memory, remembering whether the guest hit the cap (its
/// allocator then fails and the guest traps).
pub struct MemoryLimiter {
    max_bytes: usize,
    exceeded: bool,
}

impl MemoryLimiter {
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.exceeded |= desired > self.max_bytes;
        Ok(desired <= self.max_bytes)
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables are bounded by the pooling allocator's slots.
        Ok(true)
    }
}

/// The guest may not make HTTP requests of its own.
struct DenyOutgoingHttp;

impl WasiHttpHooks for DenyOutgoingHttp {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
