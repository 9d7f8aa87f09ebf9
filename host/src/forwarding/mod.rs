//! Forwarding (`FORWARD_URL`): every message created while it is configured
//! is delivered downstream at least once, by a consumer of the feed inside
//! the host; nothing runs on the ingest path but a nudge.
//!
//! One task follows the feed from a position kept in the database
//! (`ForwardStore`), in one process at a time (`ForwardStore::forward_lead`:
//! on PostgreSQL, the host holding a lock; another takes over when it dies),
//! and attempts each message of a page, at most
//! `FORWARD_CONCURRENCY` at once, each attempt bounded by
//! `FORWARD_TIMEOUT_MS`. The position moves past a page only together with
//! the retry rows of what in it is still owed, in one transaction: after a
//! SIGKILL at any moment every undelivered message is past the position or
//! in a retry row, and is delivered after the restart (some delivered ones
//! again: at least once). An attempt still running `GRACE` after its page
//! began gets a leased retry row and finishes on its own, so one slow
//! answer does not hold up the rest. Pages are read no more often than
//! `PAGE_INTERVAL` unless the feed is a page ahead, so the position's
//! durable writes stay few at any ingest rate. A failed attempt is tried again after
//! `backoff::after` until `FORWARD_MAX_ATTEMPTS`; then the message is
//! `failed` until an operator's retry (`requeue`).

pub mod backoff;
mod body;
pub mod destination;
mod http;
mod nats;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use destination::Destination;

use crate::bindings::inlet::service::forwarding::ForwardingStatus;
use crate::bindings::inlet::service::storage::StoredMessage;
use crate::storage::forward::{Attempted, RetryState};
use crate::storage::{FeedPosition, ForwardStore, StoreError};
use crate::telemetry::metrics::{ForwardResult, Metrics};

/// What requests reach of forwarding (the guest's `forwarding` import, and
/// the nudge after a store): the `Forwarder`, or a test's stand-in.
#[async_trait]
pub trait Forwarding: Send + Sync {
    /// Messages were stored here: look at the feed now.
    fn stored(&self) {}
    /// What is owed now.
    async fn status(&self) -> Result<ForwardingStatus, StoreError>;
    /// Makes every failed message pending again; how many.
    async fn retry_failed(&self) -> Result<u64, StoreError>;
}

/// Forwarding's settings.
#[derive(Clone)]
pub struct ForwardSettings {
    /// Where to (`FORWARD_URL`, `FORWARD_SECRET`).
    pub destination: Destination,
    /// The longest one attempt may take (`FORWARD_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Attempts before a message is `failed` (`FORWARD_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Attempts under way at once, at most (`FORWARD_CONCURRENCY`).
    pub concurrency: usize,
}

/// Most messages one page of the feed brings: the position moves (one
/// durable write) once per page.
const PAGE: u32 = 500;
/// Attempts started and not finished, at most, in multiples of the
/// concurrency: what waits for a turn, so a slow receiver bounds the queue.
const QUEUED_PER_SLOT: usize = 4;
/// How long a page waits for its attempts before leaving the unfinished
/// ones to their retry rows.
const GRACE: Duration = Duration::from_secs(1);
/// How often the feed is read while nothing nudges.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The pause after a page that was not full, before the next: its
/// messages' ends come in, and later messages gather into one page (the
/// position moves, one durable write, at most this often unless behind).
const PAGE_INTERVAL: Duration = Duration::from_millis(50);
/// How often due retries are looked for (besides at once after an
/// operator's retry): a backoff's wait is kept within this much.
const RETRY_POLL: Duration = Duration::from_secs(1);
/// How often a process that does not forward asks for its turn.
const LEAD_POLL: Duration = Duration::from_secs(2);
/// The pause after a failed storage call.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How much longer than an attempt and its wait for a slot may take a
/// retry row stays leased to it.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How often the `forward_pending` gauge is brought up to date.
const BACKLOG_INTERVAL: Duration = Duration::from_secs(2);

#[async_trait]
impl Forwarding for Forwarder {
    fn stored(&self) {
        self.nudge.notify_one();
    }

    async fn status(&self) -> Result<ForwardingStatus, StoreError> {
        let backlog = self.store.forward_backlog().await?;
        Ok(ForwardingStatus {
            destination: self.settings.destination.to_string(),
            pending: backlog.pending,
            failed: backlog.failed,
            oldest_pending_age_ms: backlog.oldest_pending.as_deref().map(age_ms),
        })
    }

    async fn retry_failed(&self) -> Result<u64, StoreError> {
        let requeued = self.store.forward_requeue(now_ms()).await?;
        tracing::info!(requeued, "forwarding requeued");
        self.retry_now.store(true, Ordering::SeqCst);
        self.nudge.notify_one();
        Ok(requeued)
    }
}

/// How long ago `created_at` (a stored stamp) was, in ms; 0 if unreadable
/// or ahead of the clock.
fn age_ms(created_at: &str) -> u64 {
    let created = chrono::DateTime::parse_from_rfc3339(created_at).map(|at| at.timestamp_millis());
    created.map_or(0, |created| (now_ms() - created).max(0).unsigned_abs())
}

/// The forwarding task's handle.
pub struct Forwarder {
    settings: ForwardSettings,
    store: Arc<dyn ForwardStore>,
    delivery: Arc<Delivery>,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    nudge: Notify,
    /// An operator's retry: look for due retries now.
    retry_now: AtomicBool,
    closing: CancellationToken,
}

/// A client for the destination.
enum Delivery {
    Http(http::HttpDelivery),
    Nats(nats::NatsDelivery),
}

impl Delivery {
    async fn new(settings: &ForwardSettings) -> anyhow::Result<Self> {
        Ok(match &settings.destination {
            Destination::Http { url, secret } => Self::Http(http::HttpDelivery::new(
                url,
                secret.clone(),
                settings.concurrency,
                settings.timeout,
            )?),
            Destination::Nats { address, subject } => {
                Self::Nats(nats::NatsDelivery::connect(address, subject, settings.timeout).await?)
            }
        })
    }

    /// One attempt to deliver `body` as message `id`; the reason it failed
    /// otherwise.
    async fn deliver(&self, id: &str, body: bytes::Bytes) -> Result<(), String> {
        match self {
            Self::Http(http) => http.deliver(id, body).await,
            Self::Nats(nats) => nats.deliver(id, body).await,
        }
    }
}

/// One attempt's end.
struct Finished {
    message_id: String,
    /// Attempts made before this one.
    earlier: u32,
    result: Result<(), String>,
}

impl Forwarder {
    /// Starts forwarding what `store` stores as `settings` say, whenever
    /// it is this process's turn. The store has set the position before it
    /// took its first message (`ForwardStore::forward_position` on SQLite,
    /// `PgStore::open_forwarding`), so every message acknowledged here is
    /// past it.
    pub async fn start(
        settings: ForwardSettings,
        store: Arc<dyn ForwardStore>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let delivery = Arc::new(Delivery::new(&settings).await?);
        let forwarder = Arc::new(Self {
            slots: Arc::new(Semaphore::new(settings.concurrency)),
            settings,
            store,
            delivery,
            metrics,
            nudge: Notify::new(),
            retry_now: AtomicBool::new(false),
            closing: CancellationToken::new(),
        });
        tokio::spawn(forwarder.clone().run());
        tokio::spawn(forwarder.clone().gauge());
        Ok(forwarder)
    }

    /// Stops the tasks (shutting down): what is under way is delivered
    /// again after the restart.
    pub fn close(&self) {
        self.closing.cancel();
    }

    async fn run(self: Arc<Self>) {
        tokio::select! {
            () = self.follow_in_turn() => {}
            () = self.closing.cancelled() => {}
        }
    }

    /// Follows the feed whenever it is this process's turn. A turn lost
    /// leaves what is under way to be sent again by the next (at least once).
    async fn follow_in_turn(&self) {
        loop {
            match self.store.forward_lead().await {
                Ok(Some(lead)) => {
                    tracing::info!("forwarding from this host");
                    let position = self.position().await;
                    tokio::select! {
                        () = self.follow(position) => {}
                        () = lead.lost() => tracing::warn!("forwarding's turn lost; another host may take it"),
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(error = ?error, "forwarding cannot ask for its turn; trying again"),
            }
            tokio::time::sleep(LEAD_POLL).await;
        }
    }

    async fn follow(&self, mut position: FeedPosition) {
        // No more attempts are under way than it holds (`room` below), so a
        // sender never waits.
        let most_under_way = self.settings.concurrency * QUEUED_PER_SLOT;
        let (finished, mut ends) = mpsc::channel(most_under_way);
        let mut under_way = 0;
        let mut retries_checked = None;
        loop {
            let mut settle = Vec::new();
            let mut room = most_under_way.saturating_sub(under_way);
            let retries_due = retries_checked.is_none_or(|at: Instant| at.elapsed() >= RETRY_POLL);
            if retries_due || self.retry_now.swap(false, Ordering::SeqCst) {
                let retried = self.retry_due(room, &finished).await;
                // A full batch: more are likely due, look again at once.
                retries_checked = (retried < room).then(Instant::now);
                under_way += retried;
                room -= retried;
            }
            let limit = u32::try_from(room).unwrap_or(u32::MAX).min(PAGE);
            let page = self.page(position, limit).await;
            let read = page.as_ref().map_or(0, |(messages, _)| messages.len());
            if let Some((messages, next)) = page {
                under_way += messages.len();
                let owed = self
                    .attempt_page(messages, &finished, &mut ends, &mut under_way, &mut settle)
                    .await;
                position = self.advance(position, next, owed).await;
            }
            // Between pages, ends come in and, unless the feed is behind by
            // more than a page, more messages: fewer, larger commits.
            let pause = if read == 0 { POLL_INTERVAL } else { PAGE_INTERVAL };
            let behind = read > 0 && read == limit as usize;
            if !behind {
                let until = tokio::time::Instant::now() + pause;
                loop {
                    tokio::select! {
                        () = self.nudge.notified(), if read == 0 => break,
                        () = tokio::time::sleep_until(until) => break,
                        Some(end) = ends.recv() => {
                            under_way -= 1;
                            settle.push(self.outcome(end));
                        }
                    }
                }
            }
            while let Ok(end) = ends.try_recv() {
                under_way -= 1;
                settle.push(self.outcome(end));
            }
            self.settle(settle).await;
        }
    }

    /// The messages after `position` (at most `limit`) and the position
    /// after them; none when there are none or the feed cannot be read.
    async fn page(&self, position: FeedPosition, limit: u32) -> Option<(Vec<StoredMessage>, FeedPosition)> {
        if limit == 0 {
            return None;
        }
        match self.store.feed(position, limit).await {
            Ok(Some(page)) if !page.messages.is_empty() => Some((page.messages, page.next)),
            Ok(Some(_)) => None,
            Ok(None) => {
                tracing::error!("the forwarding position is not in this database's feed; forwarding waits");
                tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                None
            }
            Err(error) => {
                tracing::warn!(error = ?error, "forwarding cannot read the feed; trying again");
                tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                None
            }
        }
    }

    /// The stored position, read (and first set) until that succeeds.
    async fn position(&self) -> FeedPosition {
        loop {
            match self.store.forward_position().await {
                Ok(position) => return position,
                Err(error) => {
                    tracing::warn!(error = ?error, "forwarding cannot read its position; trying again");
                    tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                }
            }
        }
    }

    /// Starts the due retries, at most `room`; how many.
    async fn retry_due(&self, room: usize, finished: &mpsc::Sender<Finished>) -> usize {
        if room == 0 {
            return 0;
        }
        let now = now_ms();
        let lease_until = now + millis(self.lease());
        let limit = u32::try_from(room).unwrap_or(u32::MAX);
        match self.store.forward_due(now, lease_until, limit).await {
            Ok(due) => {
                let count = due.len();
                for retry in due {
                    self.attempt(retry.message, retry.attempts, finished.clone());
                }
                count
            }
            Err(error) => {
                tracing::warn!(error = ?error, "forwarding cannot read its retries; trying again");
                0
            }
        }
    }

    /// Attempts each of a page's messages and waits for them, at most
    /// `GRACE`; what is still owed (failed attempts, and leased rows for
    /// the unfinished). Other attempts' ends arriving meanwhile go to
    /// `settle`.
    async fn attempt_page(
        &self,
        messages: Vec<StoredMessage>,
        finished: &mpsc::Sender<Finished>,
        ends: &mut mpsc::Receiver<Finished>,
        under_way: &mut usize,
        settle: &mut Vec<Attempted>,
    ) -> Vec<Attempted> {
        let mut waiting: HashSet<String> = messages.iter().map(|m| m.message.message_id.clone()).collect();
        for message in messages {
            self.attempt(message, 0, finished.clone());
        }
        let mut owed = Vec::new();
        let grace = tokio::time::sleep(GRACE);
        tokio::pin!(grace);
        while !waiting.is_empty() {
            tokio::select! {
                Some(end) = ends.recv() => {
                    *under_way -= 1;
                    let ours = waiting.remove(&end.message_id);
                    let attempted = self.outcome(end);
                    match (ours, &attempted.state) {
                        (true, RetryState::Delivered) => {}
                        (true, _) => owed.push(attempted),
                        (false, _) => settle.push(attempted),
                    }
                }
                () = &mut grace => break,
            }
        }
        let lease_until = now_ms() + millis(self.lease());
        owed.extend(waiting.into_iter().map(|message_id| Attempted {
            message_id,
            attempts: 0,
            state: RetryState::Due(lease_until),
            error: String::new(),
        }));
        owed
    }

    /// How long a retry row is left to an attempt started now: its wait
    /// for a slot behind the others queued, its own time, and a margin.
    fn lease(&self) -> Duration {
        let turns = u32::try_from(QUEUED_PER_SLOT + 1).unwrap_or(u32::MAX);
        self.settings.timeout.saturating_mul(turns) + LEASE_MARGIN
    }

    /// Moves the position past a page with what it still owes; the
    /// position to go on from.
    async fn advance(&self, from: FeedPosition, to: FeedPosition, owed: Vec<Attempted>) -> FeedPosition {
        match self.store.forward_advance(from, to, owed).await {
            Ok(true) => to,
            // Moved by another process: go on from where it is.
            Ok(false) => {
                tracing::error!("the forwarding position moved under this host; going on from there");
                self.position().await
            }
            Err(error) => {
                // The page is attempted again: delivered twice, not lost.
                tracing::warn!(error = ?error, "forwarding cannot record its progress; the page is sent again");
                tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                from
            }
        }
    }

    async fn settle(&self, attempted: Vec<Attempted>) {
        if attempted.is_empty() {
            return;
        }
        if let Err(error) = self.store.forward_settle(attempted).await {
            // The rows stay leased, then due: attempted again.
            tracing::warn!(error = ?error, "forwarding cannot record attempts; they are made again");
        }
    }

    /// Starts one attempt at `stored`; its end arrives on `finished`.
    fn attempt(&self, stored: StoredMessage, earlier: u32, finished: mpsc::Sender<Finished>) {
        let slots = self.slots.clone();
        let timeout = self.settings.timeout;
        let delivery = self.delivery.clone();
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else { return };
            let body = body::render(&stored);
            let message_id = stored.message.message_id;
            let result = match tokio::time::timeout(timeout, delivery.deliver(&message_id, body)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            };
            let _ = finished
                .send(Finished {
                    message_id,
                    earlier,
                    result,
                })
                .await;
        });
    }

    /// What an attempt's end means, counted and logged.
    fn outcome(&self, end: Finished) -> Attempted {
        let attempts = end.earlier + 1;
        let message_id = end.message_id;
        let (state, error) = match end.result {
            Ok(()) => {
                self.metrics.record_forward(ForwardResult::Delivered);
                (RetryState::Delivered, String::new())
            }
            Err(reason) if attempts >= self.settings.max_attempts => {
                self.metrics.record_forward(ForwardResult::Failed);
                tracing::error!(%message_id, attempt = attempts, %reason, "forwarding failed; waiting for POST /forwarding/retry");
                (RetryState::Failed, reason)
            }
            Err(reason) => {
                self.metrics.record_forward(ForwardResult::Retry);
                let wait = backoff::after(attempts);
                tracing::warn!(%message_id, attempt = attempts, %reason, retry_in_ms = millis(wait), "forward attempt failed");
                (RetryState::Due(now_ms() + millis(wait)), reason)
            }
        };
        Attempted {
            message_id,
            attempts,
            state,
            error,
        }
    }

    /// Keeps `forward_pending` current.
    async fn gauge(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(BACKLOG_INTERVAL);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = self.closing.cancelled() => return,
            }
            if let Ok(backlog) = self.store.forward_backlog().await {
                self.metrics.set_forward_pending(backlog.pending);
            }
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
