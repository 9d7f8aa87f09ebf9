//! The PostgreSQL backend beside SQLite on this machine: ingest on one host
//! of each and on two hosts sharing one database, in alternating rounds, and
//! the read scenarios over the seeded rows moved into PostgreSQL by
//! `inlet copy`. The PostgreSQL server syncs every commit, as SQLite does,
//! and shares the machine's cores with the hosts and the load generator.

use std::time::Instant;

use inlet_e2e::Server;
use inlet_pgserver::{PgServer, psql};

use crate::load::LoadResult;
use crate::report::Results;
use crate::{CONNECTIONS, Cli, address, of_rounds, push, push_to, read_scenarios, requests, seeded_database};

pub(crate) fn run(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    let server = PgServer::start_durable()?;
    ingest_rounds(cli, runtime, results, &server)?;
    reads(cli, runtime, results, &server)
}

/// A host serving the database at `url`, ready.
fn host(url: &str) -> Server {
    let mut server = Server::start_with(&[("DATABASE_URL", url)]);
    server.wait_ready();
    server
}

/// Where an ingest round's messages go.
#[derive(Clone, Copy)]
enum Setup {
    Sqlite,
    PostgresOneHost,
    PostgresTwoHosts,
}

impl Setup {
    const ALL: [Self; 3] = [Self::Sqlite, Self::PostgresOneHost, Self::PostgresTwoHosts];

    fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "ingest, one host on SQLite",
            Self::PostgresOneHost => "ingest, one host on PostgreSQL",
            Self::PostgresTwoHosts => "ingest, two hosts on one PostgreSQL (16 conns each)",
        }
    }

    /// Fresh hosts and database, then the load.
    fn measure(
        self,
        runtime: &tokio::runtime::Runtime,
        server: &PgServer,
        seconds: u64,
        round: usize,
    ) -> anyhow::Result<LoadResult> {
        let webhooks = requests::webhooks(&format!("pg-round{round}"), None);
        match self {
            Self::Sqlite => {
                // SQLite whatever INLET_E2E_BACKEND says: it is the contender.
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite:///{}", dir.path().join("app.db").display());
                let inlet = Server::start_in(dir, &[("DATABASE_URL", &url)]);
                push(runtime, address(&inlet), CONNECTIONS, seconds, webhooks)
            }
            Self::PostgresOneHost => {
                let inlet = host(&server.fresh_database());
                push(runtime, address(&inlet), CONNECTIONS, seconds, webhooks)
            }
            Self::PostgresTwoHosts => {
                let url = server.fresh_database();
                let (a, b) = (host(&url), host(&url));
                push_to(runtime, &[address(&a), address(&b)], CONNECTIONS, seconds, webhooks)
            }
        }
    }
}

/// Each setup once per round, each round starting one setup further on,
/// since this machine's speed drifts within minutes.
fn ingest_rounds(
    cli: &Cli,
    runtime: &tokio::runtime::Runtime,
    results: &mut Results,
    server: &PgServer,
) -> anyhow::Result<()> {
    let rounds = cli.ratio_rounds.max(1);
    let mut measured: Vec<Vec<LoadResult>> = Setup::ALL.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for turn in 0..Setup::ALL.len() {
            let index = (turn + round - 1) % Setup::ALL.len();
            let setup = Setup::ALL[index];
            let result = setup.measure(runtime, server, cli.seconds, round)?;
            results.load(&format!("round {round}: {}", setup.label()), result.clone());
            measured[index].push(result);
        }
    }
    let of_rounds = of_rounds(rounds);
    for (setup, runs) in Setup::ALL.iter().zip(&measured) {
        let rates: Vec<f64> = runs.iter().map(|run| run.requests_per_second).collect();
        results.spread(&format!("{} {of_rounds}", setup.label()), &rates, "req/s");
        let p99s: Vec<f64> = runs.iter().map(|run| run.p99_ms).collect();
        results.spread(&format!("{} p99 {of_rounds}", setup.label()), &p99s, "ms");
    }
    let ratios: Vec<f64> = measured[1]
        .iter()
        .zip(&measured[0])
        .map(|(postgres, sqlite)| postgres.requests_per_second / sqlite.requests_per_second)
        .collect();
    results.spread(
        &format!("ingest PostgreSQL / SQLite, one host, {of_rounds}"),
        &ratios,
        "ratio",
    );
    Ok(())
}

/// The seeded database moved into PostgreSQL by `inlet copy` (timed), then
/// the same read scenarios as on SQLite.
fn reads(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results, server: &PgServer) -> anyhow::Result<()> {
    let seeded = seeded_database(cli.rows, results)?;
    let url = server.fresh_database();
    let started = Instant::now();
    let copy = std::process::Command::new(inlet_e2e::inlet_bin())
        .args(["copy", "--to", &url, "--from"])
        .arg(format!("sqlite:///{}", seeded.display()))
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(copy.success(), "inlet copy failed: {copy}");
    results.value(
        &format!("inlet copy of {} rows into PostgreSQL, checked", cli.rows),
        started.elapsed().as_secs_f64(),
        "s",
    );
    // As autovacuum would soon: the planner's statistics of the copied rows.
    psql(&url, "VACUUM ANALYZE")?;
    let inlet = host(&url);
    read_scenarios(cli, runtime, results, &inlet, " (PostgreSQL)")
}
