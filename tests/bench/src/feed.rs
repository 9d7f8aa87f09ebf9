//! `GET /feed` beside full-speed ingest: ingest with a follower tailing the
//! feed against ingest without one (`companion`), and the follower's lag
//! from a message's commit to its delivery.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use inlet_e2e::Server;
use inlet_e2e::feed::Follower;

use crate::companion::Turn;
use crate::report::Results;
use crate::{Cli, Measured, address, companion, cpu, requests};

/// Messages one follower read takes at most.
const PAGE: u32 = 1000;
/// Its long-poll, in seconds.
const WAIT: u32 = 5;
/// How long the follower may take to catch up once ingest stopped.
const CATCH_UP: Duration = Duration::from_secs(60);

pub(crate) fn run(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    let (mut lags, mut pages, mut client_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let turns = companion::alternate(cli, "feed", |turn, tag| {
        let server = Server::start();
        let ids = requests::webhooks(tag, None);
        let following = AtomicBool::new(turn == Turn::With);
        let (measured, follower) = std::thread::scope(|scope| {
            let follower = scope.spawn(|| tail(&server, &following));
            let measured = Measured::take(runtime, server.pid(), address(&server), cli.seconds, ids);
            following.store(false, Ordering::SeqCst);
            (measured, follower.join().expect("the follower thread"))
        });
        if turn == Turn::With {
            let tailed = follower?;
            check_exactly_once(&server, &tailed.seen)?;
            pages.push(tailed.seen.len() as f64 / tailed.reads.max(1) as f64);
            client_cpu.push(tailed.cpu.as_secs_f64() / tailed.took.as_secs_f64());
            lags.extend(tailed.lags);
        }
        measured
    })?;
    turns.report(results, "a feed follower", "with a follower tailing /feed");
    results.spread("messages per follower read", &pages, "messages");
    // The follower is a client on the server's cores, as the load
    // generator is: what it takes itself is not the server's cost.
    results.spread(
        "follower's own CPU (its thread here), share of one core",
        &client_cpu,
        "ratio",
    );
    results.percentiles("feed lag from commit to delivery", &mut lags, "ms");
    Ok(())
}

/// What a follower was handed.
#[derive(Default)]
struct Tailed {
    /// Every id, in order.
    seen: Vec<String>,
    /// Each one's lag from its commit, in ms.
    lags: Vec<f64>,
    /// Reads it took.
    reads: usize,
    /// CPU time its thread spent (sending, receiving, parsing).
    cpu: Duration,
    /// From its first read to its last.
    took: Duration,
}

/// Follows the feed while `following` (not at all when it starts false),
/// then catches up.
fn tail(server: &Server, following: &AtomicBool) -> anyhow::Result<Tailed> {
    let mut follower = Follower::new();
    let mut lags = Vec::new();
    if !following.load(Ordering::SeqCst) {
        return Ok(Tailed::default());
    }
    let mut caught_up_by = None;
    let mut reads = 0;
    let (started, cpu_before) = (Instant::now(), cpu::this_thread());
    loop {
        reads += 1;
        let wait = if following.load(Ordering::SeqCst) { WAIT } else { 0 };
        let items = follower.read(server, PAGE, wait);
        let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
        for item in &items {
            let created = chrono::DateTime::parse_from_rfc3339(item["created_at"].as_str().unwrap_or_default())?;
            lags.push((now - created.with_timezone(&chrono::Utc)).as_seconds_f64() * 1000.0);
        }
        if !following.load(Ordering::SeqCst) {
            let deadline = *caught_up_by.get_or_insert_with(|| Instant::now() + CATCH_UP);
            if items.is_empty() {
                return Ok(Tailed {
                    seen: follower.seen,
                    lags,
                    reads,
                    cpu: cpu::this_thread().saturating_sub(cpu_before),
                    took: started.elapsed(),
                });
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the follower did not catch up within {CATCH_UP:?}"
            );
        }
    }
}

/// The follower was handed every stored message, each once.
fn check_exactly_once(server: &Server, seen: &[String]) -> anyhow::Result<()> {
    let distinct: HashSet<&String> = seen.iter().collect();
    anyhow::ensure!(distinct.len() == seen.len(), "the follower got a message twice");
    let stored = server.stored_rows();
    anyhow::ensure!(
        i64::try_from(seen.len())? == stored,
        "the follower got {} of {stored} stored messages",
        seen.len()
    );
    Ok(())
}
