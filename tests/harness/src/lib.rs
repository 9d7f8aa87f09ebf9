//! Test a guest component by itself: no sockets, no SQLite, no server.
//!
//! The harness loads any guest `.wasm` with the engine and sandbox
//! `inlet serve` uses, backs its `storage` import with any [`MessageStore`]
//! (the in-memory [`MockStore`], or the real SQLite store), records every
//! storage call, answers its `settings` and `access` imports with what the
//! test chose (several secrets, none, any tolerance, a verify token or none,
//! API keys or none), and hands
//! back what the guest answered, logged and counted.
//!
//! ```no_run
//! use inlet_harness::{Harness, MockStore, StorageCall};
//!
//! # async fn example() -> anyhow::Result<()> {
//! let store = MockStore::new();
//! let harness = Harness::new("target/wasm32-wasip2/release/inlet_guest.wasm", store.clone())?;
//! let exchange = harness.webhook(r#"{"message_id":"m1"}"#, Some("bad")).await;
//! assert_eq!(exchange.status, 401);
//! assert!(exchange.storage_calls.is_empty());
//! # Ok(()) }
//! ```

mod forwarding;
mod mock;
mod recording;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::BodyExt;
use inlet::api_keys::{ApiKeys, KeySet};
use inlet::config::DEFAULT_TOLERANCE_SECONDS;
use inlet::feed_watch::FeedWatch;
pub use inlet::limits::GuestLimits;
pub use inlet::runtime::GuestFailure;
use inlet::runtime::{self, ClientBody, CompileCache, Guest, GuestReply, GuestRequest, Parking, Runtime, Services};
use inlet::secrets::{Secrets, WebhookSecret};
use inlet::telemetry::metrics::{self, Metrics};
use inlet::telemetry::request_log::{LogFields, RequestId};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use forwarding::MockForwarding;
pub use inlet::bindings::inlet::service::storage::{
    FeedPage, FeedPosition, InsertOutcome, Message, MessageFilter, MessageStats, Page, PageRequest, Position, Removal,
    SenderCount, StoredMessage, Timestamp,
};
pub use inlet::storage::{MessageStore, Operation, SqliteStore, StoreError};
pub use inlet::telemetry::logging::Level;
pub use inlet_signature::{SigningKey, standard};
pub use mock::{Hold, MockStore};
pub use recording::StorageCall;

use recording::RecordingStore;

/// How many requests may wait on the feed at once unless told otherwise.
const DEFAULT_FEED_WAITERS: usize = 1000;

/// The secret the harness configures unless told otherwise.
pub const DEFAULT_SECRET: &str = "testsecret";

/// One guest component, ready to take requests.
pub struct Harness {
    guest: Arc<Guest>,
    store: Arc<RecordingStore>,
    settings: Settings,
    /// The feed's long-polls and pacing, kept across requests as a host
    /// keeps them; started by the first request (it needs the runtime).
    feed: OnceLock<Arc<FeedWatch>>,
}

/// What the guest's `settings` and `access` imports answer.
#[derive(Clone)]
struct Settings {
    secrets: Vec<WebhookSecret>,
    tolerance_seconds: u64,
    whatsapp_verify_token: Option<WebhookSecret>,
    api_keys: Arc<ApiKeys>,
    /// `FEED_WAITERS`.
    feed_waiters: usize,
    /// Forwarding, if configured.
    forwarding: Option<Arc<dyn inlet::forwarding::Forwarding>>,
}

/// What one request produced.
#[derive(Debug)]
pub struct Exchange {
    /// The HTTP status: the guest's, or the host's for a failed guest (`GuestFailure::status`).
    pub status: u16,
    /// Response headers as (name, value), one pair per value; values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The whole response body.
    pub body: Vec<u8>,
    /// Storage calls the guest made, in order.
    pub storage_calls: Vec<StorageCall>,
    /// Webhook outcomes the guest recorded through `metrics`.
    pub webhook_results: Vec<&'static str>,
    /// Fields and level the guest attached through `log`.
    pub log: LogFields,
    /// Why the guest did not finish normally (a trap, a limit), if it did not.
    pub failure: Option<GuestFailure>,
    /// Guest runs (instances) the request took: more than one when the
    /// host stopped a run to wait for it, or to pace it.
    pub runs: u64,
}

impl Exchange {
    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The first header called `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A field the guest logged.
    pub fn logged(&self, key: &str) -> Option<&Value> {
        self.log.fields().get(key)
    }
}

impl Drop for Harness {
    /// Ends the feed's task, as a host shutting down does.
    fn drop(&mut self) {
        if let Some(feed) = self.feed.get() {
            feed.close();
        }
    }
}

impl Harness {
    /// Loads the guest at `path` (as `inlet serve` would) over `store`.
    pub fn new(path: impl AsRef<Path>, store: impl MessageStore) -> anyhow::Result<Self> {
        Self::with_limits(path, store, GuestLimits::default())
    }

    /// The same, with `limits` instead of the defaults (a short deadline, a
    /// small memory cap).
    pub fn with_limits(path: impl AsRef<Path>, store: impl MessageStore, limits: GuestLimits) -> anyhow::Result<Self> {
        let runtime = Runtime::new(limits)?;
        let guest = Guest::load(&runtime, path.as_ref(), &CompileCache::default())?;
        Ok(Self {
            guest: Arc::new(guest),
            store: Arc::new(RecordingStore::new(store)),
            settings: Settings {
                secrets: vec![WebhookSecret::new(DEFAULT_SECRET)],
                tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
                whatsapp_verify_token: None,
                api_keys: Arc::new(ApiKeys::none()),
                feed_waiters: DEFAULT_FEED_WAITERS,
                forwarding: None,
            },
            feed: OnceLock::new(),
        })
    }

    /// Gives the guest `secret` as its one webhook secret from now on.
    pub fn with_secret(self, secret: &str) -> Self {
        self.with_secrets(&[secret])
    }

    /// Gives the guest these webhook secrets from now on; none at all is
    /// what a guest must survive but a real host never sends.
    pub fn with_secrets(mut self, secrets: &[&str]) -> Self {
        self.settings.secrets = secrets.iter().map(|s| WebhookSecret::new(*s)).collect();
        self
    }

    /// Gives the guest this Standard Webhooks tolerance from now on.
    pub fn with_tolerance_seconds(mut self, seconds: u64) -> Self {
        self.settings.tolerance_seconds = seconds;
        self
    }

    /// Gives the guest this WhatsApp verify token (`None`: unset) from now on.
    pub fn with_whatsapp_verify_token(mut self, token: Option<&str>) -> Self {
        self.settings.whatsapp_verify_token = token.map(WebhookSecret::new);
        self
    }

    /// Configures the API keys of `lines` (`API_KEYS_FILE`'s format) from
    /// now on; without, the guest's callers are anonymous. Panics on a
    /// malformed line.
    pub fn with_api_keys(mut self, lines: &str) -> Self {
        let set = KeySet::parse(lines).unwrap_or_else(|e| panic!("API key line {}: {}", e.line_number, e.reason));
        self.settings.api_keys = Arc::new(ApiKeys::fixed(set));
        self
    }

    /// Lets at most `waiters` requests wait on the feed at once
    /// (`FEED_WAITERS`); 0 makes every wait `full`.
    pub fn with_feed_waiters(mut self, waiters: usize) -> Self {
        if let Some(feed) = self.feed.take() {
            feed.close();
        }
        self.settings.feed_waiters = waiters;
        self
    }

    /// Configures forwarding as `forwarding` says from now on; without,
    /// the guest hears there is none.
    pub fn with_forwarding(mut self, forwarding: Arc<MockForwarding>) -> Self {
        self.settings.forwarding = Some(forwarding);
        self
    }

    /// The signature of `body` under the first configured secret (with none,
    /// under [`DEFAULT_SECRET`], which then verifies under nothing).
    pub fn sign(&self, body: &str) -> String {
        let secret = self
            .settings
            .secrets
            .first()
            .map_or(DEFAULT_SECRET, WebhookSecret::expose);
        SigningKey::new(secret).sign(body.as_bytes())
    }

    /// `GET path_and_query`.
    pub async fn get(&self, path_and_query: &str) -> Exchange {
        let request = http::Request::get(path_and_query)
            .body(Bytes::new())
            .expect("a valid request");
        self.send(request).await
    }

    /// `POST /webhook` with `body` and, when given, `X-Signature`.
    pub async fn webhook(&self, body: &str, signature: Option<&str>) -> Exchange {
        let mut request = http::Request::post("/webhook").header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header("x-signature", signature);
        }
        self.send(request.body(Bytes::from(body.to_owned())).expect("a valid request"))
            .await
    }

    /// `POST /webhook` signed with the configured secret.
    pub async fn signed_webhook(&self, body: &str) -> Exchange {
        self.webhook(body, Some(&self.sign(body))).await
    }

    /// Runs any request through a fresh guest instance.
    pub async fn send(&self, request: http::Request<Bytes>) -> Exchange {
        let (mut head, body) = request.into_parts();
        head.headers
            .entry("host")
            .or_insert(http::HeaderValue::from_static("localhost"));
        let request = GuestRequest {
            head,
            body: ClientBody::whole(body),
            parking: Parking::default(),
        };
        let metrics = Arc::new(Metrics::new());
        let feed = self.feed.get_or_init(|| {
            let store: Arc<dyn MessageStore> = self.store.clone();
            FeedWatch::start(store, Arc::new(Metrics::new()), self.settings.feed_waiters)
        });
        let services = Arc::new(Services {
            store: self.store.clone(),
            metrics: metrics.clone(),
            secrets: Arc::new(Secrets::fixed(&self.settings.secrets)),
            tolerance_seconds: self.settings.tolerance_seconds,
            whatsapp_verify_token: self.settings.whatsapp_verify_token.clone(),
            api_keys: self.settings.api_keys.clone(),
            feed: feed.clone(),
            forwarding: self.settings.forwarding.clone(),
        });
        let id = RequestId::from_header(None);
        let never_cancelled = CancellationToken::new();
        let mut exchange = match runtime::call(
            self.guest.clone(),
            services,
            id,
            &request,
            std::time::Instant::now(),
            &never_cancelled,
        )
        .await
        {
            GuestReply::Response { response, exit } => {
                let (parts, body) = response.into_parts();
                let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                let exit = exit.exit().await;
                Exchange {
                    status: parts.status.as_u16(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                        .collect(),
                    body,
                    storage_calls: Vec::new(),
                    webhook_results: Vec::new(),
                    log: exit.fields,
                    failure: exit.result.err(),
                    runs: 0,
                }
            }
            GuestReply::Failed { fields, failure } => Exchange {
                status: failure.status().as_u16(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: inlet::server::detail_body(failure.client_detail()).into_bytes(),
                storage_calls: Vec::new(),
                webhook_results: Vec::new(),
                log: fields,
                failure: Some(failure),
                runs: 0,
            },
            GuestReply::Busy | GuestReply::Body(_) => unreachable!("one request at a time, with its whole body"),
        };
        exchange.storage_calls = self.store.take_calls();
        exchange.runs = instantiations(&metrics);
        exchange.webhook_results = metrics::ALL_RESULTS
            .into_iter()
            .flat_map(|result| {
                let times = metrics.webhook_count(result) as usize;
                std::iter::repeat_n(metrics::result_label(result), times)
            })
            .collect();
        exchange
    }
}

/// `guest_instantiation_ms_count` in `metrics`: one per guest run.
fn instantiations(metrics: &Metrics) -> u64 {
    let text = metrics.render();
    text.lines()
        .find_map(|line| line.strip_prefix("guest_instantiation_ms_count ")?.parse().ok())
        .unwrap_or_else(|| panic!("no guest_instantiation_ms_count in:\n{text}"))
}
