//! Long-polls of the feed (`storage.wait-feed`), held by the host without a
//! guest instance: where the feed ends, kept current for the requests
//! waiting on it.
//!
//! One task reads the feed's head for all waiters: at once when a message
//! is stored here or a request starts waiting, and every `POLL_INTERVAL`
//! while any waits (what other hosts sharing a PostgreSQL database store is
//! seen that way, as is a row that becomes visible when an older
//! transaction ends). Nothing is read while nobody waits. Waiters are
//! bounded by `FEED_WAITERS`, apart from `MAX_INSTANCES`: a wait holds a
//! connection and this bound's slot, never an instance.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::bindings::inlet::service::storage::FeedWait;
use crate::storage::{FEED_START, FeedPosition, MessageStore, follows};

/// How often the head is read while requests wait, besides after each
/// message stored here.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How long the task waits after a failed read of the head.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The feed's head and the requests waiting for it to move.
pub struct FeedWatch {
    head: watch::Sender<FeedPosition>,
    /// Wakes the task: a message was stored here, or a wait began.
    nudge: Notify,
    waiters: Arc<Semaphore>,
    max_waiters: usize,
    closing: CancellationToken,
}

impl FeedWatch {
    /// Starts watching `store`'s feed for at most `max_waiters` waiting requests.
    pub fn start(store: Arc<dyn MessageStore>, max_waiters: usize) -> Arc<Self> {
        let watch = Arc::new(Self {
            head: watch::Sender::new(FEED_START),
            nudge: Notify::new(),
            waiters: Arc::new(Semaphore::new(max_waiters)),
            max_waiters,
            closing: CancellationToken::new(),
        });
        tokio::spawn(refresh(Arc::downgrade(&watch), store));
        watch
    }

    /// A message was stored (and committed) by this host.
    pub fn stored(&self) {
        if self.waiting() {
            self.nudge.notify_one();
        }
    }

    /// Waits until the feed holds something after `after`, or `until`, or
    /// shutdown; `Full` at once when `FEED_WAITERS` requests wait already.
    pub async fn wait(&self, after: FeedPosition, until: Instant) -> FeedWait {
        let Ok(_slot) = self.waiters.clone().try_acquire_owned() else {
            return FeedWait::Full;
        };
        let mut head = self.head.subscribe();
        self.nudge.notify_one();
        let arrived = tokio::time::timeout_at(until.into(), head.wait_for(|head| follows(*head, after)));
        tokio::select! {
            outcome = arrived => match outcome {
                Ok(Ok(_)) => FeedWait::Arrived,
                Ok(Err(_)) | Err(_) => FeedWait::TimedOut,
            },
            () = self.closing.cancelled() => FeedWait::TimedOut,
        }
    }

    /// Ends every wait (shutting down: they answer at once, with nothing new).
    pub fn close(&self) {
        self.closing.cancel();
    }

    fn waiting(&self) -> bool {
        self.waiters.available_permits() < self.max_waiters
    }
}

/// The task: reads the head whenever nudged, and every `POLL_INTERVAL`
/// while anyone waits; ends with its `FeedWatch`.
async fn refresh(watch: Weak<FeedWatch>, store: Arc<dyn MessageStore>) {
    loop {
        let Some(current) = watch.upgrade() else { return };
        if current.waiting() {
            match store.feed_head().await {
                Ok(head) => {
                    current
                        .head
                        .send_if_modified(|old| std::mem::replace(old, head) != head);
                }
                Err(error) => {
                    tracing::warn!(error = ?error, "feed head unreadable; long-polls wait on");
                    tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                }
            }
        }
        tokio::select! {
            () = current.nudge.notified() => {}
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            () = current.closing.cancelled() => return,
        }
    }
}
