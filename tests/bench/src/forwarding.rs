//! Forwarding beside full-speed ingest: ingest with every message forwarded
//! to a local HTTP receiver against ingest without forwarding (`companion`;
//! the receiver runs on the same cores, as the load generator does); the
//! most the backlog held while ingest ran, how long the forwarder took to
//! catch up after, and the lag from a message's commit to its arrival at the
//! receiver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use inlet_e2e::Server;
use inlet_e2e::receiver::Receiver;

use crate::report::Results;
use crate::{Cli, Measured, address, companion, cpu, requests};

/// The key deliveries are signed with.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// How long the forwarder may take to deliver the rest once ingest stopped.
const CATCH_UP: Duration = Duration::from_secs(120);
/// How often the backlog is measured while ingest runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

pub(crate) fn run(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    let (mut backlogs, mut catch_ups, mut lags, mut receiving) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let turns = companion::alternate(cli, "forward", |forwarded, tag| {
        let receiver = Receiver::start();
        let url = receiver.url();
        let settings = [("FORWARD_URL", url.as_str()), ("FORWARD_SECRET", SECRET)];
        let server = Server::start_with(if forwarded { &settings[..] } else { &[] });
        let ids = requests::webhooks(tag, None);
        let ingesting = AtomicBool::new(true);
        let here = cpu::sample(std::process::id());
        let (measured, most_owed) = std::thread::scope(|scope| {
            let sampler = scope.spawn(|| most_owed(&server, &receiver, &ingesting));
            let measured = Measured::take(runtime, server.pid(), address(&server), cli.seconds, ids);
            ingesting.store(false, Ordering::SeqCst);
            (measured, sampler.join().expect("the sampler thread"))
        });
        let measured = measured?;
        if forwarded {
            let spent = cpu::per_request_us(&here, &cpu::sample(std::process::id()), measured.load.requests);
            receiving.push(spent.get(Receiver::THREADS).copied().unwrap_or_default());
            backlogs.push(most_owed as f64);
            catch_ups.push(catch_up(&server, &receiver)?.as_secs_f64());
            lags.extend(lags_ms(&receiver));
        }
        Ok(measured)
    })?;
    turns.report(results, "forwarding", "forwarding each message to a local receiver");
    // The receiver is a second HTTP exchange per message on the server's
    // cores, as the load generator is: what it takes is not the server's.
    results.spread("receiver's CPU (its threads here) per ingest request", &receiving, "us");
    results.spread(
        "most messages owed while ingest ran (stored, not yet received)",
        &backlogs,
        "messages",
    );
    results.spread("forwarder's catch-up after ingest stopped", &catch_ups, "s");
    results.percentiles("forwarding lag from commit to the receiver", &mut lags, "ms");
    Ok(())
}

/// The most messages stored and not yet received while `ingesting`.
fn most_owed(server: &Server, receiver: &Receiver, ingesting: &AtomicBool) -> u64 {
    let mut most = 0;
    while ingesting.load(Ordering::SeqCst) {
        // Received first: what arrives between the two reads is counted
        // owed, never the other way round.
        let received = receiver.distinct_delivered() as u64;
        let stored = u64::try_from(server.stored_rows()).unwrap_or_default();
        most = most.max(stored.saturating_sub(received));
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
