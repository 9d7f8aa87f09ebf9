//! Long-polls of the feed (`storage.wait-feed`), held by the host without a
//! guest instance: where the feed ends, kept current for the requests
//! waiting on it.
//!
//! One task reads the feed's head for all waiters: at once when a message
//! is stored here or a request starts waiting, and every `POLL_INTERVAL`
//! while any waits (what other hosts sharing a PostgreSQL database store is
//! seen that way, as is a row that becomes visible when an older
//! transaction ends). Nothing is read while nobody waits. A wait trusts
//! only heads read after it began: an older one may name messages removed
//! since. Waiters are bounded by `FEED_WAITERS`, apart from
//! `MAX_INSTANCES`: a wait holds a connection and this bound's slot, never
//! an instance.
//!
//! A long-poll reading on from where a short page ended moments ago is
//! paced (`storage.pace-feed`): it reads once `LINGER` has passed since, so
//! that a follower keeping up with a busy feed is handed batches. Those
//! ends are remembered by this host alone (a follower whose reads go to
//! several hosts is paced less), and a paced request holds its connection
//! for at most `LINGER` and no waiter's slot; no instance either, unless
//! it had an effect before (then it waits in its instance, as a wait does).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use lru::LruCache;

use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::bindings::inlet::service::storage::FeedWait;
use crate::storage::{FEED_START, FeedPosition, MessageStore, Operation, follows};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::request_log::latency_ms;

/// How often the head is read while requests wait, besides after each
/// message stored here.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How long a wait lingers once something arrived before it answers, and
/// the least time between a page that ended short (its reader had caught
/// up) and the next long-poll reading on from its end (`pace-feed`): a
/// follower would otherwise read one commit's messages at a time, a guest
/// run and a read per commit, and take that CPU from the ingest it follows.
/// Small beside the contract's second.
pub const LINGER: Duration = Duration::from_millis(20);

/// Ends of short pages remembered for pacing, at most: one per follower
/// keeping up; past that many, the least recent go unpaced.
const REMEMBERED_ENDS: NonZeroUsize = NonZeroUsize::new(256).expect("not zero");

/// How long the task waits after a failed read of the head.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The head as last read, and how many reads there have been.
#[derive(Debug, Clone, Copy)]
struct Head {
    reads: u64,
    position: FeedPosition,
}

/// The feed's head and the requests waiting for it to move.
pub struct FeedWatch {
    head: watch::Sender<Head>,
    /// Wakes the task: a message was stored here, or a wait began.
    nudge: Notify,
    waiters: Arc<Semaphore>,
    max_waiters: usize,
    /// Where short pages lately ended, and when (`pace-feed`).
    handed_out: Mutex<LruCache<FeedPosition, Instant>>,
    closing: CancellationToken,
}

impl FeedWatch {
    /// Starts watching `store`'s feed for at most `max_waiters` waiting
    /// requests; its reads are timed in `metrics`.
    pub fn start(store: Arc<dyn MessageStore>, metrics: Arc<Metrics>, max_waiters: usize) -> Arc<Self> {
        let watch = Arc::new(Self {
            head: watch::Sender::new(Head {
                reads: 0,
                position: FEED_START,
            }),
            nudge: Notify::new(),
            waiters: Arc::new(Semaphore::new(max_waiters)),
            max_waiters,
            handed_out: Mutex::new(LruCache::new(REMEMBERED_ENDS)),
            closing: CancellationToken::new(),
        });
        tokio::spawn(refresh(Arc::downgrade(&watch), store, metrics));
        watch
    }

    /// A message was stored (and committed) by this host.
    pub fn stored(&self) {
        if self.waiting() {
            self.nudge.notify_one();
        }
    }

    /// Whether a wait could start now (`FEED_WAITERS` not reached).
    pub fn has_room(&self) -> bool {
        self.waiters.available_permits() > 0
    }

    /// Waits until the feed holds something after `after` (and `LINGER`
    /// more), or `until`, or shutdown; `Full` at once when `FEED_WAITERS`
    /// requests wait already.
    pub async fn wait(&self, after: FeedPosition, until: Instant) -> FeedWait {
        let Ok(_slot) = self.waiters.clone().try_acquire_owned() else {
            return FeedWait::Full;
        };
        let mut head = self.head.subscribe();
        let began = head.borrow().reads;
        self.nudge.notify_one();
        let fresh_and_past = head.wait_for(|head| head.reads > began && follows(head.position, after));
        let arrived = tokio::time::timeout_at(until.into(), fresh_and_past);
        let outcome = tokio::select! {
            outcome = arrived => match outcome {
                Ok(Ok(_)) => FeedWait::Arrived,
                Ok(Err(_)) | Err(_) => FeedWait::TimedOut,
            },
            () = self.closing.cancelled() => return FeedWait::TimedOut,
        };
        if matches!(outcome, FeedWait::Arrived) {
            self.pace(until.min(Instant::now() + LINGER)).await;
        }
        outcome
    }

    /// A page shorter than its limit but not empty, ending at `next`, was
    /// handed out now (an empty one ends where its reader was: a wait's).
    pub fn handed_out(&self, next: FeedPosition) {
        self.remembered().put(next, Instant::now());
    }

    /// Until when a long-poll reading on from `after` is paced: `LINGER`
    /// after a short page ended there, if that is yet to come.
    pub fn paced_until(&self, after: FeedPosition) -> Option<Instant> {
        let until = *self.remembered().peek(&after)? + LINGER;
        (until > Instant::now()).then_some(until)
    }

    /// Waits until `until`, or shutdown.
    pub async fn pace(&self, until: Instant) {
        tokio::select! {
            () = tokio::time::sleep_until(until.into()) => {}
            () = self.closing.cancelled() => {}
        }
    }

    fn remembered(&self) -> MutexGuard<'_, LruCache<FeedPosition, Instant>> {
        self.handed_out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
async fn refresh(watch: Weak<FeedWatch>, store: Arc<dyn MessageStore>, metrics: Arc<Metrics>) {
    loop {
        let Some(current) = watch.upgrade() else { return };
        if current.waiting() {
            let started = Instant::now();
            let read = store.feed_head().await;
            metrics.record_storage(Operation::FeedHead, latency_ms(started));
            match read {
                Ok(position) => {
                    current.head.send_modify(|head| {
                        *head = Head {
                            reads: head.reads + 1,
                            position,
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(error = ?error, "feed head unreadable; long-polls wait on");
                    tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                }
            }
        }
        // Idle, only a nudge (a wait beginning) or shutdown wakes it.
        let poll = async {
            if current.waiting() {
                tokio::time::sleep(POLL_INTERVAL).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = current.nudge.notified() => {}
            () = poll => {}
            () = current.closing.cancelled() => return,
        }
    }
}
