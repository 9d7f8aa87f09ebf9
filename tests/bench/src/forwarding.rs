//! Forwarding beside full-speed ingest: ingest with every message forwarded
//! to a local HTTP receiver, then to a local `nats-server -js`, against
//! ingest without forwarding (`companion`; the destination runs on the same
//! cores, as the load generator does); the most the backlog held while
//! ingest ran, how long the forwarder took to catch up after, and the lag
//! from a message's commit to its arrival at the receiver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;

use inlet_e2e::Server;
use inlet_e2e::nats::Broker;
use inlet_e2e::receiver::Receiver;

use crate::companion::Turn;
use crate::report::Results;
use crate::{Cli, Measured, address, companion, cpu, requests};

/// The key deliveries are signed with.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The JetStream stream the broker keeps deliveries in, and its subject.
const STREAM: &str = "BENCH";
const SUBJECT: &str = "inlet.bench";
/// Longer than a turn: the stream drops every repeated `Nats-Msg-Id`.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
/// How long the forwarder may take to deliver the rest once ingest stopped.
const CATCH_UP: Duration = Duration::from_secs(120);
/// How often the backlog is measured while ingest runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

pub(crate) fn run(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    for kind in [Kind::Http, Kind::JetStream] {
        measure(cli, runtime, results, kind)?;
    }
    Ok(())
}

/// A kind of destination.
#[derive(Clone, Copy)]
enum Kind {
    /// A local webhook receiver (`Receiver`).
    Http,
    /// A local `nats-server -js`.
    JetStream,
}

impl Kind {
    /// Begins its turns' message ids.
    fn tag(self) -> &'static str {
        match self {
            Self::Http => "forward-http",
            Self::JetStream => "forward-nats",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Http => "HTTP forwarding",
            Self::JetStream => "JetStream forwarding",
        }
    }

    fn with(self) -> &'static str {
        match self {
            Self::Http => "forwarding each message to a local receiver",
            Self::JetStream => "forwarding each message to a local nats-server",
        }
    }
}

/// A destination, started for one turn.
enum Sink {
    Http(Receiver),
    JetStream(Broker),
}

impl Sink {
    fn start(kind: Kind) -> anyhow::Result<Self> {
        Ok(match kind {
            Kind::Http => Self::Http(Receiver::start()),
            Kind::JetStream => {
                let broker = Broker::start();
                broker.streams().bind(STREAM, SUBJECT, DUPLICATE_WINDOW)?;
                Self::JetStream(broker)
            }
        })
    }

    /// The server's settings that forward here.
    fn settings(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Http(receiver) => vec![("FORWARD_URL", receiver.url()), ("FORWARD_SECRET", SECRET.into())],
            Self::JetStream(broker) => vec![("FORWARD_URL", broker.url(SUBJECT))],
        }
    }

    /// Distinct messages received so far.
    fn received(&self) -> anyhow::Result<u64> {
        match self {
            Self::Http(receiver) => Ok(receiver.distinct_delivered() as u64),
            Self::JetStream(broker) => broker.streams().last_sequence(STREAM),
        }
    }

    /// The destination's CPU time so far, and the thread group holding
    /// it: the receiver's threads here, or the broker's whole process.
    fn cpu(&self) -> (cpu::Sample, &'static str) {
        match self {
            Self::Http(_) => (cpu::sample(std::process::id()), Receiver::THREAD_NAME),
            Self::JetStream(broker) => (cpu::sample(broker.pid()), cpu::WHOLE_PROCESS),
        }
    }

    /// Each delivery's lag from its message's `created_at` to its arrival,
    /// in ms, where the destination tells.
    fn lags_ms(&self) -> Vec<f64> {
        match self {
            Self::Http(receiver) => lags_ms(receiver),
            Self::JetStream(_) => Vec::new(),
        }
    }
}

/// Ingest without forwarding and with it to a `kind` of destination
/// (`companion`): rates, CPU, the backlog, the catch-up and the lag.
fn measure(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results, kind: Kind) -> anyhow::Result<()> {
    let (mut backlogs, mut catch_ups, mut lags, mut receiving) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let turns = companion::alternate(cli, kind.tag(), |turn, tag| {
        let sink = Sink::start(kind)?;
        let settings = sink.settings();
        let settings: Vec<(&str, &str)> = settings.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let server = Server::start_with(if turn == Turn::With { &settings[..] } else { &[] });
        let ids = requests::webhooks(tag, None);
        let ingesting = AtomicBool::new(true);
        let (before, _) = sink.cpu();
        let (measured, most_owed) = std::thread::scope(|scope| {
            let sampler = scope.spawn(|| most_owed(&server, &sink, &ingesting));
            let measured = Measured::take(runtime, server.pid(), address(&server), cli.seconds, ids);
            ingesting.store(false, Ordering::SeqCst);
            (measured, sampler.join().expect("the sampler thread"))
        });
        let (measured, most_owed) = (measured?, most_owed?);
        if turn == Turn::With {
            let (after, group) = sink.cpu();
            let spent = cpu::per_request_us(&before, &after, measured.load.requests);
            receiving.push(spent.get(group).copied().unwrap_or_default());
            backlogs.push(most_owed as f64);
            catch_ups.push(catch_up(&server, &sink)?.as_secs_f64());
            lags.extend(sink.lags_ms());
        }
        Ok(measured)
    })?;
    let name = kind.name();
    turns.report(results, name, kind.with());
    // The destination runs on the server's cores, as the load generator
    // does: what it takes is not the server's.
    results.spread(
        &format!("{name}: destination's CPU per ingest request"),
        &receiving,
        "µs",
    );
    results.spread(
        &format!("{name}: most messages owed while ingest ran (stored, not yet received)"),
        &backlogs,
        "messages",
    );
    results.spread(&format!("{name}: catch-up after ingest stopped"), &catch_ups, "s");
    if !lags.is_empty() {
        results.percentiles(&format!("{name}: lag from commit to the receiver"), &mut lags, "ms");
    }
    Ok(())
}

/// The most messages stored and not yet received while `ingesting`. It
/// runs in both kinds of turn, so that its own cost weighs on both.
fn most_owed(server: &Server, sink: &Sink, ingesting: &AtomicBool) -> anyhow::Result<u64> {
    let mut most = 0;
    while ingesting.load(Ordering::SeqCst) {
        // Received first: what arrives between the two reads is counted
        // owed, never the other way round.
        let received = sink.received()?;
        most = most.max(stored_so_far(server)?.saturating_sub(received));
        std::thread::sleep(SAMPLE_EVERY);
    }
    Ok(most)
}

/// Messages the server has stored, by its `messages_stored_total` (a
/// count of the table would cost the machine more than the server's
/// answer does).
fn stored_so_far(server: &Server) -> anyhow::Result<u64> {
    let stored = server
        .metric("messages_stored_total")
        .context("no messages_stored_total")?;
    Ok(stored as u64)
}

/// How long after ingest stopped every stored message had reached the
/// receiver; an error if they did not within `CATCH_UP`.
fn catch_up(server: &Server, sink: &Sink) -> anyhow::Result<Duration> {
    let (stopped, stored) = (Instant::now(), u64::try_from(server.stored_rows())?);
    loop {
        let delivered = sink.received()?;
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
