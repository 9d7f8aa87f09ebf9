//! `RETENTION`: ingest while aged messages are removed as fast as they
//! arrive, against ingest without it (`companion`); then one retention pass
//! over the whole seeded database.

use std::time::{Duration, Instant, SystemTime};

use inlet_e2e::Server;

use crate::companion::Turn;
use crate::report::Results;
use crate::{Cli, Measured, address, companion, requests, seeded_database};

/// Short enough that most of a round runs with removals under way.
const RETENTION_ON: &str = "2s";

/// The full pass's `RETENTION`.
const FULL_PASS_RETENTION: Duration = Duration::from_secs(1);

/// How long one pass over the seeded database may take before the bench
/// gives up on it.
const PASS_BOUND: Duration = Duration::from_secs(15 * 60);

pub(crate) fn run(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    ingest_rounds(cli, runtime, results)?;
    full_pass(cli, results)
}

/// Ingest without and with `RETENTION_ON` (`companion`).
fn ingest_rounds(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    let mut removed = Vec::new();
    let turns = companion::alternate(cli, "retention", |turn, tag| {
        let settings: &[(&str, &str)] = if turn == Turn::With {
            &[("RETENTION", RETENTION_ON)]
        } else {
            &[]
        };
        let server = Server::start_with(settings);
        let ids = requests::webhooks(tag, None);
        let measured = Measured::take(runtime, server.pid(), address(&server), cli.seconds, ids)?;
        if turn == Turn::With {
            removed.push(removed_so_far(&server) as f64);
        }
        Ok(measured)
    })?;
    results.spread("messages retention removed during an ingest round", &removed, "rows");
    turns.report(
        results,
        "RETENTION",
        &format!("with RETENTION={RETENTION_ON} removing as fast"),
    );
    Ok(())
}

/// Messages the server's retention passes have removed, by its log.
fn removed_so_far(server: &Server) -> u64 {
    let passes = server.logs().into_iter().filter(|l| l["msg"] == "retention pass");
    passes.filter_map(|pass| pass["removed"].as_u64()).sum()
}

/// A server started on a copy of the seeded database with every row aged:
/// the time its first pass (the `retention pass` log line) took to remove
/// them all.
fn full_pass(cli: &Cli, results: &mut Results) -> anyhow::Result<()> {
    let seeded = seeded_database(cli.rows, results)?;
    // A seed made just now holds rows younger than the retention: every
    // row is older than it once the file is.
    let written = std::fs::metadata(&seeded)?.modified()?;
    // A second more for the clock's grain.
    let aged = written + FULL_PASS_RETENTION + Duration::from_secs(1);
    if let Ok(young) = aged.duration_since(SystemTime::now()) {
        std::thread::sleep(young);
    }
    let dir = tempfile::tempdir()?;
    std::fs::copy(&seeded, dir.path().join("app.db"))?;
    let retention = format!("{}s", FULL_PASS_RETENTION.as_secs());
    let server = Server::start_in(dir, &[("RETENTION", retention.as_str())]);
    let started = Instant::now();
    let pass = loop {
        if let Some(pass) = server.logs().into_iter().find(|l| l["msg"] == "retention pass") {
            break pass;
        }
        anyhow::ensure!(
            started.elapsed() < PASS_BOUND,
            "no retention pass within {PASS_BOUND:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    anyhow::ensure!(
        pass["removed"].as_u64() == Some(cli.rows),
        "the pass removed {} of {} rows",
        pass["removed"],
        cli.rows
    );
    let seconds = pass["pass_ms"].as_f64().unwrap_or_default() / 1000.0;
    results.value(&format!("retention pass removing {} rows", cli.rows), seconds, "s");
    results.value("retention pass rate", cli.rows as f64 / seconds, "rows/s");
    Ok(())
}
