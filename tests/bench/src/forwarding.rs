//! Forwarding beside full-speed ingest: ingest with every message forwarded
//! to a local HTTP receiver against ingest without forwarding, in
//! alternating rounds on fresh servers (the receiver runs on the same cores,
//! as the load generator does); the most the backlog held while ingest ran,
//! how long the forwarder took to catch up after, and the lag from a
//! message's commit to its arrival at the receiver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use inlet_e2e::Server;
use inlet_e2e::receiver::Receiver;

use crate::report::Results;
use crate::{Cli, address, push, requests};

/// The key deliveries are signed with.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// How long the forwarder may take to deliver the rest once ingest stopped.
const CATCH_UP: Duration = Duration::from_secs(120);
/// How often the backlog (`forward_pending`) is read while ingest runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

pub(crate) fn run(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    let mut rates = [Vec::new(), Vec::new()];
    let (mut backlogs, mut catch_ups, mut lags) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..cli.ratio_rounds.max(1) {
        for turn in 0..2 {
            let forwarded = (turn + round) % 2 == 1;
            let receiver = Receiver::start();
            let url = receiver.url();
            let settings = [("FORWARD_URL", url.as_str()), ("FORWARD_SECRET", SECRET)];
            let server = Server::start_with(if forwarded { &settings[..] } else { &[] });
            let ids = requests::webhooks(&format!("forward{round}-{turn}"), None);
            let ingesting = AtomicBool::new(true);
            let (load, most_pending) = std::thread::scope(|scope| {
                let sampler = scope.spawn(|| most_pending(&server, &ingesting));
                let load = push(runtime, address(&server), 32, cli.seconds, ids);
                ingesting.store(false, Ordering::SeqCst);
                (load, sampler.join().expect("the sampler thread"))
            });
            rates[usize::from(forwarded)].push(load?.requests_per_second);
            if forwarded {
                backlogs.push(most_pending as f64);
                catch_ups.push(catch_up(&server, &receiver)?.as_secs_f64());
                lags.extend(lags_ms(&receiver));
            }
        }
    }
    let of_rounds = format!("at 32 conns, median of {} alternating rounds", rates[0].len());
    results.spread(&format!("ingest without forwarding, {of_rounds}"), &rates[0], "req/s");
    results.spread(
        &format!("ingest forwarding each message to a local receiver, {of_rounds}"),
        &rates[1],
        "req/s",
    );
    let ratios: Vec<f64> = rates[1].iter().zip(&rates[0]).map(|(on, off)| on / off).collect();
    results.spread("ingest with / without forwarding", &ratios, "ratio");
    results.spread(
        "most messages owed while ingest ran (forward_pending)",
        &backlogs,
        "messages",
    );
    results.spread("forwarder's catch-up after ingest stopped", &catch_ups, "s");
    results.percentiles("forwarding lag from commit to the receiver", &mut lags, "ms");
    Ok(())
}

/// The most `forward_pending` showed while `ingesting`.
fn most_pending(server: &Server, ingesting: &AtomicBool) -> u64 {
    let mut most = 0;
    while ingesting.load(Ordering::SeqCst) {
        let metrics = server.get("/metrics").body;
        let pending = metrics
            .lines()
            .find_map(|line| line.strip_prefix("forward_pending ")?.trim().parse().ok());
        most = most.max(pending.unwrap_or(0));
        std::thread::sleep(SAMPLE_EVERY);
    }
    most
}

/// How long after ingest stopped every stored message had reached the
/// receiver; an error if they did not within `CATCH_UP`.
fn catch_up(server: &Server, receiver: &Receiver) -> anyhow::Result<Duration> {
    let (stopped, stored) = (Instant::now(), usize::try_from(server.stored_rows())?);
    loop {
        let delivered = receiver.distinct_delivered();
        if delivered >= stored {
            return Ok(stopped.elapsed());
        }
        anyhow::ensure!(
            stopped.elapsed() < CATCH_UP,
            "{delivered} of {stored} messages delivered {CATCH_UP:?} after ingest stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each delivery's lag from its message's `created_at` to its arrival, in ms.
fn lags_ms(receiver: &Receiver) -> Vec<f64> {
    let (now, wall_now) = (Instant::now(), chrono::DateTime::<chrono::Utc>::from(SystemTime::now()));
    let deliveries = receiver.deliveries();
    deliveries
        .iter()
        .filter_map(|delivery| {
            let body: serde_json::Value = serde_json::from_str(&delivery.body).ok()?;
            let created = chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str()?).ok()?;
            let arrived = wall_now - chrono::Duration::from_std(now - delivery.arrived).ok()?;
            Some((arrived - created.with_timezone(&chrono::Utc)).as_seconds_f64() * 1000.0)
        })
        .collect()
}
