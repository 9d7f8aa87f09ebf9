//! Signed deliveries through `lb`, as a webhook sender makes them: a 503
//! with `Retry-After` is tried again with the same `message_id`; anything
//! else but a 200 within the deadline is a violation of the contract.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use inlet_e2e::cluster::sign;
use inlet_e2e::cluster::{LB, agent};
use inlet_e2e::message;

/// Concurrent senders in a load.
const SENDERS: usize = 8;

/// The longest a reply may take (a hang past it is a violation).
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// How long a sender keeps retrying one id before calling it lost.
const RETRY_FOR: Duration = Duration::from_secs(90);

/// A pause between retries of one id.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Ids unique to this run and scenario.
pub(crate) fn prefix(kind: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{kind}-{}", now.as_millis())
}

/// The body stored under `id`: its text is the id, so a stored row can be
/// checked against what was sent.
pub(crate) fn body(id: &str) -> String {
    message(id, "+15550100", "2025-01-15T10:00:00Z", Some(id))
}

/// What one delivery attempt got.
enum Reply {
    Acknowledged,
    RetryLater,
    Violation(String),
}

fn attempt(agent: &ureq::Agent, base: &str, id: &str) -> Reply {
    let body = body(id);
    let sent = Instant::now();
    let response = agent
        .post(format!("{base}/webhook"))
        .header("Content-Type", "application/json")
        .header("X-Signature", sign(&body))
        .send(body.as_str());
    match response {
        Ok(response) if response.status() == 200 => Reply::Acknowledged,
        Ok(response) if response.status() == 503 && response.headers().contains_key("retry-after") => Reply::RetryLater,
        Ok(response) => Reply::Violation(format!("{id}: status {}", response.status())),
        Err(error) => Reply::Violation(format!("{id}: {error} after {:?}", sent.elapsed())),
    }
}

/// How delivering one id ended.
pub(crate) struct Delivery {
    /// When it was acknowledged; `None` after a violation.
    pub(crate) acknowledged: Option<Instant>,
    /// 503s answered (and retried) on the way.
    pub(crate) unavailable: usize,
    pub(crate) violation: Option<String>,
}

/// Delivers `id` to `base` until it is acknowledged, a reply breaks the
/// contract, or `RETRY_FOR` runs out.
pub(crate) fn deliver(agent: &ureq::Agent, base: &str, id: &str) -> Delivery {
    let until = Instant::now() + RETRY_FOR;
    let mut unavailable = 0;
    loop {
        let violation = match attempt(agent, base, id) {
            Reply::Acknowledged => None,
            Reply::RetryLater if Instant::now() < until => {
                unavailable += 1;
                std::thread::sleep(RETRY_PAUSE);
                continue;
            }
            Reply::RetryLater => Some(format!("{id}: still 503 after {RETRY_FOR:?}")),
            Reply::Violation(why) => Some(why),
        };
        return Delivery {
            acknowledged: violation.is_none().then(Instant::now),
            unavailable,
            violation,
        };
    }
}

/// A running load: `SENDERS` threads, each delivering new ids one after
/// another until stopped.
pub(crate) struct Load {
    prefix: String,
    stop: Arc<AtomicBool>,
    senders: Vec<JoinHandle<Sent>>,
}

/// What one sender did.
#[derive(Default)]
struct Sent {
    acknowledged: Vec<(String, Instant)>,
    unavailable: usize,
    violations: Vec<String>,
}

/// What a load did, all senders together.
pub(crate) struct Outcome {
    pub(crate) prefix: String,
    pub(crate) acknowledged: Vec<String>,
    /// 503s answered (each retried).
    pub(crate) unavailable: usize,
    pub(crate) violations: Vec<String>,
    /// The longest time in which no sender got an acknowledgement.
    pub(crate) longest_gap: Duration,
    /// When each of `acknowledged` was acknowledged, in the same order.
    acknowledged_at: Vec<Instant>,
}

impl Outcome {
    /// The ids acknowledged before `instant`.
    pub(crate) fn acknowledged_before(&self, instant: Instant) -> Vec<String> {
        let at = self.acknowledged_at.iter();
        self.acknowledged
            .iter()
            .zip(at)
            .filter(|(_, at)| **at < instant)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

impl Load {
    pub(crate) fn start(kind: &str) -> Self {
        let prefix = prefix(kind);
        let stop = Arc::new(AtomicBool::new(false));
        let senders = (0..SENDERS)
            .map(|sender| {
                let (prefix, stop) = (prefix.clone(), stop.clone());
                std::thread::spawn(move || send(&format!("{prefix}-{sender}"), &stop))
            })
            .collect();
        Self { prefix, stop, senders }
    }

    pub(crate) fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Sent::default();
        for sender in self.senders {
            let sent = sender.join().expect("sender thread");
            all.acknowledged.extend(sent.acknowledged);
            all.unavailable += sent.unavailable;
            all.violations.extend(sent.violations);
        }
        let mut instants: Vec<Instant> = all.acknowledged.iter().map(|(_, at)| *at).collect();
        instants.sort_unstable();
        let longest_gap = instants.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
        let (acknowledged, acknowledged_at) = all.acknowledged.into_iter().unzip();
        Outcome {
            prefix: self.prefix,
            acknowledged,
            unavailable: all.unavailable,
            violations: all.violations,
            longest_gap,
            acknowledged_at,
        }
    }
}

/// Delivers `<ids>-0`, `<ids>-1`, … until `stop` (checked between ids, so
/// none is left half-tried).
fn send(ids: &str, stop: &AtomicBool) -> Sent {
    let agent = agent(DEADLINE);
    let mut sent = Sent::default();
    for n in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let id = format!("{ids}-{n}");
        let delivery = deliver(&agent, LB, &id);
        sent.unavailable += delivery.unavailable;
        sent.violations.extend(delivery.violation);
        sent.acknowledged.extend(delivery.acknowledged.map(|at| (id, at)));
    }
    sent
}
