//! The HA cluster (`make cluster-up`) through `lb`: signed ingest at 32
//! connections served by 1, 2 and 3 Inlet hosts, in alternating rounds, and
//! where each request's CPU time goes (`lb`, the hosts, each PostgreSQL node
//! by its role, this load generator) beside how busy the machine was. Every
//! container and the generator share this machine's cores, so the rates are
//! floors; the breakdown says what a machine with cores to spare runs out of
//! first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use inlet_e2e::cluster::{self, Cluster};
use inlet_pgserver::psql;

use crate::cpu;
use crate::load::{LoadResult, RequestFactory};
use crate::report::Results;
use crate::{CONNECTIONS, Cli, of_rounds, push, requests};

/// How many hosts serve in each round's loads, in the first round's order.
const HOST_COUNTS: [usize; 3] = [1, 2, 3];

/// How long the cluster may take to serve, or `lb` to take a host in or out.
const PATIENCE: Duration = Duration::from_secs(60);

/// The parts of the machine's busy time outside the cluster's containers.
const GENERATOR: &str = "load generator";
const REST: &str = "rest of the machine (Docker's port proxy and log capture, the kernel)";

/// How long a PostgreSQL session may keep its counts before they show in
/// `pg_stat_database` (it reports them when idle, at most once a second).
const STATS_DELAY: Duration = Duration::from_secs(2);

pub(crate) fn run(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    let cluster = Cluster::from_env()?;
    cluster.wait_serving(PATIENCE)?;
    // Measured as deployed: each message forwarded (not attempted in vain).
    cluster::bind_stream(PATIENCE)?;
    let rounds = cli.ratio_rounds.max(1);
    let measured = measure_rounds(cli.seconds, rounds, runtime, results, &cluster);
    // Every host back in rotation, whatever happened.
    let restored = cluster.serve_with(cluster::HOST_SERVICES.len(), PATIENCE);
    let measured = measured?;
    report(results, rounds, &measured);
    restored?;
    // The target is durable ingest: a load that stored nothing, or got
    // anything but 200s, measured something else.
    let failed = measured
        .iter()
        .flatten()
        .find(|r| r.load.requests == 0 || r.load.errors > 0);
    match failed {
        Some(round) => anyhow::bail!("a cluster load failed: {:?}", round.load),
        None => Ok(()),
    }
}

/// What one load measured.
struct Round {
    load: LoadResult,
    /// The share of the machine's cores busy during it.
    busy: f64,
    /// The machine's busy time, all cores, per request: every part's CPU
    /// time together, in microseconds.
    machine_us: f64,
    /// Requests per database commit (group commits, with the hosts'
    /// readiness checks and other transactions counted too).
    per_commit: f64,
    /// CPU microseconds per request by part of the cluster; empty where
    /// this machine keeps no count per container.
    cpu_us: BTreeMap<String, f64>,
}

/// Each host count once per round, each round starting one further on, since
/// this machine's speed drifts within minutes; the rounds by host count.
fn measure_rounds(
    seconds: u64,
    rounds: usize,
    runtime: &tokio::runtime::Runtime,
    results: &mut Results,
    cluster: &Cluster,
) -> anyhow::Result<Vec<Vec<Round>>> {
    // Ids new to the database, whatever earlier runs stored in it.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let mut measured: Vec<Vec<Round>> = HOST_COUNTS.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for turn in 0..HOST_COUNTS.len() {
            let index = (turn + round - 1) % HOST_COUNTS.len();
            let hosts = HOST_COUNTS[index];
            cluster.serve_with(hosts, PATIENCE)?;
            let webhooks = requests::webhooks_signed(&format!("cluster{run}-r{round}-h{hosts}"), None, cluster::sign);
            let measured_round = measure(cluster, runtime, seconds, webhooks)?;
            results.load(&format!("round {round}: {}", label(hosts)), measured_round.load.clone());
            measured[index].push(measured_round);
        }
    }
    Ok(measured)
}

/// One load through `lb` with the hosts it serves with now, and where its
/// CPU time went.
fn measure(
    cluster: &Cluster,
    runtime: &tokio::runtime::Runtime,
    seconds: u64,
    webhooks: RequestFactory,
) -> anyhow::Result<Round> {
    let lb: SocketAddr = cluster::LB.trim_start_matches("http://").parse()?;
    let parts = Parts::of(cluster)?;
    let commits = database_commits()?;
    let (machine, before) = (cpu::Machine::sample(), parts.sample());
    let generator = cpu::sample(std::process::id());
    let load = push(runtime, lb, CONNECTIONS, seconds, webhooks)?;
    let (machine_after, after) = (cpu::Machine::sample(), parts.sample());
    let per_request = |ns: f64| ns / 1000.0 / load.requests.max(1) as f64;
    let machine_us = per_request(machine.busy_ns(machine_after) as f64);
    let mut cpu_us = parts.per_request_us(&before, &after, load.requests);
    if !cpu_us.is_empty() {
        cpu_us.insert(GENERATOR.into(), cpu::own_per_request_us(&generator, load.requests));
        let attributed: f64 = cpu_us.values().sum();
        cpu_us.insert(REST.into(), machine_us - attributed);
    }
    std::thread::sleep(STATS_DELAY);
    let commits = database_commits()? - commits;
    Ok(Round {
        busy: machine.busy_share(machine_after),
        machine_us,
        per_commit: load.requests as f64 / commits.max(1) as f64,
        load,
        cpu_us,
    })
}

/// Transactions committed in the cluster's database so far.
fn database_commits() -> anyhow::Result<u64> {
    let sql = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()";
    let count = psql(&cluster::database_url()?, sql).context("reading the commit count through lb")?;
    Ok(count.trim().parse()?)
}

fn label(hosts: usize) -> String {
    format!(
        "cluster through lb, {hosts} Inlet host{}",
        if hosts == 1 { "" } else { "s" }
    )
}

/// The medians of every host count's rounds.
fn report(results: &mut Results, rounds: usize, measured: &[Vec<Round>]) {
    let of_rounds = of_rounds(rounds);
    for (hosts, runs) in HOST_COUNTS.iter().zip(measured) {
        let label = label(*hosts);
        let of = |value: fn(&Round) -> f64| runs.iter().map(value).collect::<Vec<f64>>();
        results.spread(
            &format!("{label} {of_rounds}"),
            &of(|r| r.load.requests_per_second),
            "req/s",
        );
        results.spread(&format!("{label} p99 {of_rounds}"), &of(|r| r.load.p99_ms), "ms");
        results.spread(&format!("{label}: machine busy"), &of(|r| r.busy * 100.0), "%");
        results.spread(
            &format!("{label}: CPU per request, whole machine"),
            &of(|r| r.machine_us),
            "µs",
        );
        results.spread(
            &format!("{label}: requests per database commit"),
            &of(|r| r.per_commit),
            "",
        );
        let Some(first) = runs.first() else { continue };
        for part in first.cpu_us.keys() {
            let spent: Vec<f64> = runs.iter().filter_map(|run| run.cpu_us.get(part).copied()).collect();
            if spent.len() == runs.len() {
                results.spread(&format!("{label}: CPU per request, {part}"), &spent, "µs");
            }
        }
    }
}

/// The cluster's containers by the part each plays now, by main process.
struct Parts {
    pids: Vec<(String, u32)>,
}

impl Parts {
    /// `lb`, the Inlet hosts together, each PostgreSQL node by its role.
    fn of(cluster: &Cluster) -> anyhow::Result<Self> {
        let roles = cluster.database_roles()?;
        let pids = cluster::services()
            .map(|service| {
                let part = match roles.get(service) {
                    Some(role) => format!("PostgreSQL {}", role.to_lowercase()),
                    None if cluster::HOST_SERVICES.contains(&service) => "Inlet hosts".into(),
                    None => service.to_owned(),
                };
                let pid = cluster
                    .pid(service)
                    .with_context(|| format!("the process of {service}"))?;
                Ok((part, pid))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { pids })
    }

    /// Each part's CPU time so far, in nanoseconds; empty where this
    /// machine keeps no count per container.
    fn sample(&self) -> BTreeMap<String, u64> {
        let mut spent = BTreeMap::new();
        for (part, pid) in &self.pids {
            let Some(ns) = cpu::group_ns(*pid) else {
                return BTreeMap::new();
            };
            *spent.entry(part.clone()).or_default() += ns;
        }
        spent
    }

    fn per_request_us(
        &self,
        before: &BTreeMap<String, u64>,
        after: &BTreeMap<String, u64>,
        requests: u64,
    ) -> BTreeMap<String, f64> {
        after
            .iter()
            .filter_map(|(part, ns)| {
                let spent = ns.saturating_sub(*before.get(part)?);
                Some((part.clone(), spent as f64 / 1000.0 / requests.max(1) as f64))
            })
            .collect()
    }
}
