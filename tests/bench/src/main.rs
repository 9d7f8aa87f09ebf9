//! `make bench`: runs the real `inlet` binary with the real guest on
//! 127.0.0.1 and measures ingest, duplicates, a trivial "hello" guest on the
//! same host, reads over a seeded database, retention, a feed follower,
//! forwarding to a local receiver, start-up, hot swap, peak memory
//! and the image size, and the same host with spinning guests beside real
//! traffic. Prints a table and writes the results as JSON.

mod cluster;
mod companion;
mod containment;
mod cpu;
mod feed;
mod forwarding;
mod load;
mod postgres;
mod reference;
mod report;
mod requests;
mod retention;
mod timing;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use inlet_e2e::{Server, misbehaving_guest};

use load::{Load, LoadResult, RequestFactory};
use report::Results;

#[derive(Parser)]
#[command(about = "Benchmarks the inlet binary and guest (build them first: `make build fixtures`)")]
struct Cli {
    /// Seconds each load scenario runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Messages in the database the read scenarios query.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Connections for the read scenarios.
    #[arg(long, default_value_t = 8)]
    read_connections: usize,
    /// Runs of each start-up and hot-swap timing.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Alternating rounds of ingest, the hello guest and the native
    /// reference (fresh servers, `CONNECTIONS` each) whose median rates and
    /// ratios are reported; 0 skips them.
    #[arg(long, default_value_t = 3)]
    ratio_rounds: usize,
    /// Alternating rounds of ingest without and with a companion (a feed
    /// follower, forwarding, retention): what it costs is within a single
    /// round's drift. With an even count each kind of turn goes first
    /// equally often.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..))]
    companion_rounds: u16,
    /// An earlier build whose ingest the rounds measure too, for this
    /// build's rate as a share of it: a directory holding its `inlet` and
    /// `inlet_guest.wasm`.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// A setting, `NAME=VALUE`, this build's ingest rounds run with (e.g.
    /// `RETENTION=2s`, against a baseline that has no such thing).
    #[arg(long = "setting", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Which parts to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ingest,rounds,reads,retention,feed,forwarding,postgres,startup,swap,containment"
    )]
    phases: Vec<Phase>,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    /// Ingest loads on one server, duplicates, WhatsApp, reused instances.
    Ingest,
    /// Alternating rounds: ingest, hello, the native reference.
    Rounds,
    Reads,
    /// Ingest with and without `RETENTION`; one pass over the seeded rows.
    Retention,
    /// Ingest with and without a follower tailing `/feed`; its lag.
    Feed,
    /// Ingest with and without forwarding to a local receiver; its
    /// backlog, catch-up and lag.
    Forwarding,
    /// The PostgreSQL backend: ingest beside SQLite, two hosts, reads.
    Postgres,
    Startup,
    Swap,
    Containment,
    /// The HA cluster through `lb` with 1, 2 and 3 hosts (`make
    /// bench-cluster`: it must be up; requests are signed with its secret).
    Cluster,
}

/// Most requests one load scenario may send, whatever its duration.
const MAX_REQUESTS: u64 = 2_000_000;

/// Connections of every load whose rate is reported or compared (but
/// `ingest`'s second load, at 128).
pub(crate) const CONNECTIONS: usize = 32;

/// How a median over alternating rounds is labelled.
pub(crate) fn of_rounds(rounds: usize) -> String {
    format!("at {CONNECTIONS} conns, median of {rounds} alternating rounds")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results = Results::new(cli.seconds, cli.rows, cli.read_connections);
    let runs = |phase| cli.phases.contains(&phase);
    if runs(Phase::Ingest) {
        ingest(&cli, &runtime, &mut results)?;
    }
    if runs(Phase::Rounds) {
        ratio_rounds(&cli, &runtime, &mut results)?;
    }
    if runs(Phase::Reads) {
        reads(&cli, &runtime, &mut results)?;
    }
    if runs(Phase::Retention) {
        retention::run(&cli, &runtime, &mut results)?;
    }
    if runs(Phase::Feed) {
        feed::run(&cli, &runtime, &mut results)?;
    }
    if runs(Phase::Forwarding) {
        forwarding::run(&cli, &runtime, &mut results)?;
    }
    if runs(Phase::Postgres) {
        postgres::run(&cli, &runtime, &mut results)?;
    }
    if runs(Phase::Startup) {
        timing::startup(cli.repeats, &mut results);
    }
    if runs(Phase::Swap) {
        timing::hot_swap(cli.repeats, &mut results);
    }
    if runs(Phase::Containment) {
        containment::run(cli.seconds, &runtime, &mut results)?;
    }
    if runs(Phase::Cluster) {
        cluster::run(&cli, &runtime, &mut results)?;
    }
    if let Some(bytes) = image_size() {
        results.value("runtime image size", bytes as f64 / (1024.0 * 1024.0), "MiB");
    }
    results.print();
    let out = in_workspace(&cli.out);
    results.save(&out)?;
    println!("\nresults written to {}", out.display());
    Ok(())
}

/// `NAME=VALUE` as a pair.
fn parse_setting(setting: &str) -> Result<(String, String), String> {
    let (name, value) = setting.split_once('=').ok_or("expected NAME=VALUE")?;
    Ok((name.to_owned(), value.to_owned()))
}

fn address(server: &Server) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port()))
}

fn push(
    runtime: &tokio::runtime::Runtime,
    server: SocketAddr,
    connections: usize,
    seconds: u64,
    factory: RequestFactory,
) -> anyhow::Result<LoadResult> {
    push_to(runtime, &[server], connections, seconds, factory)
}

/// `connections` closed-loop connections spread over `servers` for `seconds`.
fn push_to(
    runtime: &tokio::runtime::Runtime,
    servers: &[SocketAddr],
    connections: usize,
    seconds: u64,
    factory: RequestFactory,
) -> anyhow::Result<LoadResult> {
    runtime.block_on(load::run(
        servers,
        bounded(connections, Duration::from_secs(seconds)),
        factory,
    ))
}

/// `connections` closed-loop connections to `server` for `duration`.
async fn drive(
    server: SocketAddr,
    connections: usize,
    duration: Duration,
    factory: RequestFactory,
) -> anyhow::Result<LoadResult> {
    load::run(&[server], bounded(connections, duration), factory).await
}

/// A load of `connections` for `duration`, at most `MAX_REQUESTS`.
fn bounded(connections: usize, duration: Duration) -> Load {
    Load {
        connections,
        duration,
        max_requests: MAX_REQUESTS,
    }
}

/// Ingest at `CONNECTIONS` and at 128 connections, the same ids again, then the hello
/// guest on the same host for the ratio.
fn ingest(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    let server = Server::start();
    let target = address(&server);
    let at = |connections: usize, repeat: Option<u64>| {
        let tag = format!("c{connections}");
        push(
            runtime,
            target,
            connections,
            cli.seconds,
            requests::webhooks(&tag, repeat),
        )
    };
    let unique = at(CONNECTIONS, None)?;
    results.load("ingest, unique ids", unique.clone());
    results.load("ingest, unique ids", at(128, None)?);
    let duplicates = at(CONNECTIONS, Some(unique.requests / CONNECTIONS as u64 / 2))?;
    results.load("ingest, duplicate ids", duplicates);
    whatsapp_deliveries(cli, &server, results);
    results.value("peak RSS after ingest", peak_rss_mib(&server)?, "MiB");
    drop(server);

    hello_ratio(cli, runtime, results, &unique, &[], "")?;
    reused_instances(cli, runtime, results)
}

/// Messages in one timed WhatsApp delivery, and each one's text: about
/// 3 MB in all, Meta's largest.
const WHATSAPP_MESSAGES: usize = 1000;
const WHATSAPP_TEXT_CHARS: usize = 2_900;

/// One delivery of `WHATSAPP_MESSAGES` new messages at a time, timed to the
/// 200 that follows its commit.
fn whatsapp_deliveries(cli: &Cli, server: &Server, results: &mut Results) {
    let runs: Vec<std::time::Duration> = (0..cli.repeats)
        .map(|run| {
            let body = requests::whatsapp_delivery(&format!("run{run}"), WHATSAPP_MESSAGES, WHATSAPP_TEXT_CHARS);
            let signature = inlet_e2e::whatsapp::signature(&body);
            let started = std::time::Instant::now();
            let reply = server.post_json("/webhook/whatsapp", &body, &[("X-Hub-Signature-256", &signature)]);
            assert_eq!(reply.status, 200, "{}", reply.body);
            started.elapsed()
        })
        .collect();
    results.timing("WhatsApp delivery, 1000 messages (3 MB), to its 200", &runs);
}

/// The same ingest, then hello, with instances reused for up to 1000
/// requests each (opt-in: requests then share guest memory).
fn reused_instances(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    let reuse = [("GUEST_INSTANCE_REUSE", "1000")];
    let server = Server::start_with(&reuse);
    let ingest = push(
        runtime,
        address(&server),
        CONNECTIONS,
        cli.seconds,
        requests::webhooks("reuse", None),
    )?;
    results.load("ingest, unique ids, GUEST_INSTANCE_REUSE=1000", ingest.clone());
    drop(server);
    hello_ratio(cli, runtime, results, &ingest, &reuse, ", GUEST_INSTANCE_REUSE=1000")
}

/// The hello guest (the fixture's `/fine`) on the same host with `env`, at
/// `CONNECTIONS`, and `ingest`'s rate as a share of its rate.
fn hello_ratio(
    cli: &Cli,
    runtime: &tokio::runtime::Runtime,
    results: &mut Results,
    ingest: &LoadResult,
    env: &[(&str, &str)],
    label: &str,
) -> anyhow::Result<()> {
    let hello = hello_server(env);
    let fine = push(
        runtime,
        address(&hello),
        CONNECTIONS,
        cli.seconds,
        requests::get("/fine"),
    )?;
    let ratio = ingest.requests_per_second / fine.requests_per_second;
    results.value(&format!("ingest / hello guest{label}"), ratio, "ratio");
    results.load(&format!("hello guest GET /fine{label}"), fine);
    Ok(())
}

/// The host with `env`, serving the hello guest (the fixture's `/fine`).
fn hello_server(env: &[(&str, &str)]) -> Server {
    let guest = misbehaving_guest();
    let mut env = env.to_vec();
    env.push(("GUEST_COMPONENT", guest.to_str().expect("UTF-8 path")));
    Server::start_with(&env)
}

/// One server the ratio rounds measure, started fresh each round.
#[derive(Clone, Copy)]
enum Contender {
    Inlet,
    Baseline,
    Hello,
    Native(reference::Mode),
}

impl Contender {
    fn label(self) -> String {
        match self {
            Self::Inlet => "ingest, unique ids".into(),
            Self::Baseline => "baseline build's ingest, unique ids".into(),
            Self::Hello => "hello guest GET /fine".into(),
            Self::Native(mode) => format!("native reference ({}), unique ids", mode.name()),
        }
    }

    /// Starts it and pushes its load: `CONNECTIONS` for `seconds`.
    fn measure(self, runtime: &tokio::runtime::Runtime, cli: &Cli, round: usize) -> anyhow::Result<Measured> {
        let seconds = cli.seconds;
        let webhooks = requests::webhooks(&format!("round{round}"), None);
        match self {
            Self::Inlet => {
                let settings: Vec<(&str, &str)> = cli.settings.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                let server = Server::start_with(&settings);
                Measured::take(runtime, server.pid(), address(&server), seconds, webhooks)
            }
            Self::Baseline => {
                let build = in_workspace(cli.baseline.as_deref().context("no --baseline")?);
                let guest = build.join("inlet_guest.wasm");
                let guest = guest.to_str().context("a UTF-8 baseline path")?;
                let server = Server::start_binary(&build.join("inlet"), &[("GUEST_COMPONENT", guest)]);
                Measured::take(runtime, server.pid(), address(&server), seconds, webhooks)
            }
            Self::Hello => {
                let server = hello_server(&[]);
                Measured::take(runtime, server.pid(), address(&server), seconds, requests::get("/fine"))
            }
            Self::Native(mode) => {
                let binary = reference::binary().context("the reference is not built")?;
                let native = reference::Reference::start(&binary, mode)?;
                Measured::take(runtime, native.pid(), native.address(), seconds, webhooks)
            }
        }
    }
}

/// A load's result and the CPU time spent on it per request: the server's
/// by thread group, and this process's.
struct Measured {
    load: LoadResult,
    server_cpu_us: BTreeMap<String, f64>,
    /// The load generator's, and a companion's client side (a feed
    /// follower, a forwarding receiver) when it runs here.
    bench_cpu_us: f64,
}

impl Measured {
    fn take(
        runtime: &tokio::runtime::Runtime,
        pid: u32,
        target: SocketAddr,
        seconds: u64,
        factory: RequestFactory,
    ) -> anyhow::Result<Self> {
        let (before, bench_before) = (cpu::sample(pid), cpu::sample(std::process::id()));
        let load = push(runtime, target, CONNECTIONS, seconds, factory)?;
        Ok(Self {
            server_cpu_us: cpu::per_request_us(&before, &cpu::sample(pid), load.requests),
            bench_cpu_us: cpu::own_per_request_us(&bench_before, load.requests),
            load,
        })
    }
}

/// Ingest, the hello guest and the native reference in both modes (when
/// built), each on a fresh server at `CONNECTIONS`, round after round: this
/// machine's rate drifts by 10% and more within minutes, so one pair's ratio
/// can mislead where the median of alternating rounds does not. Each round
/// starts one contender further on, so that none always follows the same one.
fn ratio_rounds(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    if cli.ratio_rounds == 0 {
        return Ok(());
    }
    let mut contenders = vec![Contender::Inlet, Contender::Hello];
    if cli.baseline.is_some() {
        contenders.push(Contender::Baseline);
    }
    if reference::binary().is_some() {
        contenders.extend([
            Contender::Native(reference::Mode::Group),
            Contender::Native(reference::Mode::Naive),
        ]);
    } else {
        println!("  native reference not built (`make reference`): its rounds are skipped");
    }
    let mut rounds: Vec<Vec<Measured>> = contenders.iter().map(|_| Vec::new()).collect();
    for round in 1..=cli.ratio_rounds {
        for turn in 0..contenders.len() {
            let index = (turn + round - 1) % contenders.len();
            let contender = contenders[index];
            let measured = contender.measure(runtime, cli, round)?;
            results.load(&format!("round {round}: {}", contender.label()), measured.load.clone());
            if let Contender::Native(_) = contender {
                // Its every answer should be 200: anything else is a broken
                // setup, whose rate would make a meaningless ratio.
                anyhow::ensure!(measured.load.errors == 0, "the native reference answered errors");
            }
            rounds[index].push(measured);
        }
    }
    let of_rounds = of_rounds(cli.ratio_rounds);
    for (contender, runs) in contenders.iter().zip(&rounds) {
        let label = contender.label();
        let rates: Vec<f64> = runs.iter().map(|run| run.load.requests_per_second).collect();
        results.spread(&format!("{label} {of_rounds}"), &rates, "req/s");
        cpu_breakdown(results, &label, runs);
    }
    let p99s: Vec<f64> = rounds[0].iter().map(|run| run.load.p99_ms).collect();
    results.spread(&format!("ingest p99 {of_rounds}"), &p99s, "ms");
    for (contender, runs) in contenders.iter().zip(&rounds).skip(1) {
        let ratios: Vec<f64> = rounds[0]
            .iter()
            .zip(runs)
            .map(|(inlet, other)| inlet.load.requests_per_second / other.load.requests_per_second)
            .collect();
        let name = match contender {
            Contender::Native(mode) => format!("ingest / native reference ({})", mode.name()),
            Contender::Baseline => "ingest / baseline build's".into(),
            _ => "ingest / hello guest".into(),
        };
        results.spread(&format!("{name}, {of_rounds}"), &ratios, "ratio");
    }
    Ok(())
}

/// The server CPU time per request of each thread group of one contender
/// (groups that ran in every round), and this process's.
fn cpu_breakdown(results: &mut Results, label: &str, runs: &[Measured]) {
    let Some(first) = runs.first() else { return };
    for group in first.server_cpu_us.keys() {
        let spent: Vec<f64> = runs
            .iter()
            .filter_map(|run| run.server_cpu_us.get(group).copied())
            .collect();
        if spent.len() == runs.len() {
            results.spread(&format!("server CPU per request, {label}: {group}"), &spent, "µs");
        }
    }
    let bench: Vec<f64> = runs.iter().map(|run| run.bench_cpu_us).collect();
    results.spread(&format!("bench process CPU per request, {label}"), &bench, "µs");
}

/// Listings and stats over a database of `cli.rows` seeded messages.
fn reads(cli: &Cli, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    let seeded = seeded_database(cli.rows, results)?;
    let dir = tempfile::tempdir()?;
    std::fs::copy(&seeded, dir.path().join("app.db")).context("copying the seeded database")?;
    let server = Server::start_in(dir, &[]);
    read_scenarios(cli, runtime, results, &server, "")?;
    results.value("peak RSS after reads", peak_rss_mib(&server)?, "MiB");
    Ok(())
}

/// The read scenarios against `server`, which holds the seeded rows;
/// `backend` ends each label.
fn read_scenarios(
    cli: &Cli,
    runtime: &tokio::runtime::Runtime,
    results: &mut Results,
    server: &Server,
    backend: &str,
) -> anyhow::Result<()> {
    let since = seed_instant(cli.rows / 2);
    let rare = format!("%23{}", cli.rows / 80);
    let queries = [
        ("/stats", "/stats".to_owned()),
        ("/messages (no filter)", "/messages".to_owned()),
        ("/messages?from=", "/messages?from=%2B919000000005".to_owned()),
        ("/messages?since= (half the rows)", format!("/messages?since={since}")),
        ("/messages?q= (rare: 11 rows)", format!("/messages?q={rare}")),
        ("/messages?q= (common word)", "/messages?q=refund".to_owned()),
        (
            "/messages deep offset",
            format!("/messages?offset={}", cli.rows * 9 / 10),
        ),
        (
            "/messages?cursor= at the same depth",
            format!("/messages?cursor={}", cursor_after(server, cli.rows * 9 / 10)),
        ),
        (
            "/messages?cursor= the last page",
            format!("/messages?cursor={}", cursor_after(server, cli.rows - 2)),
        ),
    ];
    let first_counts: Vec<std::time::Duration> = (0..cli.repeats)
        .map(|run| first_request(server, &format!("/messages?q={}", spelling_of("refund", run))))
        .collect();
    results.timing(
        &format!("/messages?q= common word, total counted afresh{backend}"),
        &first_counts,
    );
    let seconds = cli.seconds.div_ceil(2).max(1);
    for (name, query) in queries {
        let result = push(
            runtime,
            address(server),
            cli.read_connections,
            seconds,
            requests::get(&query),
        )?;
        results.load(&format!("{name}{backend}"), result);
    }
    Ok(())
}

/// The `next_cursor` of the page that holds row `offset` alone: a cursor
/// that continues after it.
fn cursor_after(server: &Server, offset: u64) -> String {
    let reply = server.get(&format!("/messages?limit=1&offset={offset}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["next_cursor"].as_str().expect("a row follows").to_owned()
}

/// How long one request takes that the server has not seen before.
fn first_request(server: &Server, path_and_query: &str) -> std::time::Duration {
    let started = std::time::Instant::now();
    let reply = server.get(path_and_query);
    assert_eq!(reply.status, 200, "{path_and_query}");
    started.elapsed()
}

/// `word` with the letters of `run` in binary upper-cased: the same search
/// (case-insensitive) that the server has not remembered a total for.
fn spelling_of(word: &str, run: usize) -> String {
    word.chars()
        .enumerate()
        .map(|(i, c)| if run >> i & 1 == 1 { c.to_ascii_uppercase() } else { c })
        .collect()
}

/// A database of `rows` seeded messages, built by `inlet seed` once and
/// kept under target/bench (the seed is deterministic).
fn seeded_database(rows: u64, results: &mut Results) -> anyhow::Result<PathBuf> {
    let path = inlet_e2e::workspace_root().join(format!("target/bench/seed-{rows}.db"));
    if path.exists() {
        // Seeding nothing migrates a seed made by an earlier release once,
        // here, instead of in every server's copy of it.
        seed(&path, 0)?;
        return Ok(path);
    }
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let started = std::time::Instant::now();
    seed(&partial, rows)?;
    results.value("seed the database (inlet seed)", started.elapsed().as_secs_f64(), "s");
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// Runs `inlet seed` for `rows` messages into the database at `path`.
fn seed(path: &Path, rows: u64) -> anyhow::Result<()> {
    let status = std::process::Command::new(inlet_e2e::inlet_bin())
        .args(["seed", "--count", &rows.to_string(), "--database"])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "inlet seed failed: {status}");
    Ok(())
}

/// The process's peak resident set (VmHWM) so far.
fn peak_rss_mib(server: &Server) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}

/// The size of the `inlet:latest` image, when Docker has one.
fn image_size() -> Option<u64> {
    let output = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Size}}", "inlet:latest"])
        .output()
        .ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

/// The `ts` of seeded message `n`, as `inlet seed`'s defaults lay them out
/// (from 2025-01-01T00:00:00Z, 30 s apart).
fn seed_instant(n: u64) -> String {
    let first = chrono::DateTime::from_timestamp(1_735_689_600, 0).expect("valid instant");
    (first + chrono::Duration::seconds(30 * n as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A relative path is taken from the workspace root.
fn in_workspace(path: &Path) -> PathBuf {
    inlet_e2e::workspace_root().join(path)
}
