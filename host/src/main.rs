//! `inlet`: Inlet's host. Serves the guest component over HTTP with SQLite
//! storage, and offers the `sign`, `check` and `probe` tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use inlet::{commands, config, telemetry};

/// Every request allocates and frees on every worker (a store, WASI
/// contexts, hyper buffers, the log line); glibc's malloc took about a sixth
/// of the workers' CPU under ingest load, and mimalloc serves the same
/// requests measurably faster. Built without transparent huge pages: with
/// them the idle resident memory more than doubled.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "inlet",
    version,
    about = "Webhook ingestion: a wasmtime host serving a WebAssembly guest"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default), configured by the environment variables below.
    Serve(Box<config::Settings>),
    /// Print a request body's signature: X-Signature, X-Hub-Signature-256 or Standard Webhooks.
    Sign(commands::sign::SignArgs),
    /// Exit 0 when the server on this machine is ready (for health checks).
    Probe {
        /// Port the server listens on.
        #[arg(long, env = "PORT", default_value_t = 8000)]
        port: u16,
        /// Path to GET.
        #[arg(long, default_value = "/health/ready")]
        path: String,
    },
    /// Fill a database with synthetic messages (for benchmarks), without a server.
    Seed {
        /// The database, as a `sqlite:///` URL or a path.
        #[arg(long, env = "DATABASE_URL")]
        database: String,
        /// Messages to add.
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Distinct senders.
        #[arg(long, default_value_t = 1_000)]
        senders: u64,
        /// Instant of the first message (RFC 3339).
        #[arg(long, default_value = "2025-01-01T00:00:00Z")]
        start: chrono::DateTime<chrono::Utc>,
        /// Seconds between consecutive messages.
        #[arg(long, default_value_t = 30)]
        step_seconds: i64,
        /// Generator seed: the same arguments give the same rows.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Move a SQLite database's messages into PostgreSQL (resumable, idempotent), then check them.
    Copy(commands::copy::CopyArgs),
    /// Say whether a guest component can be served by this host.
    Check {
        /// Path to the guest `.wasm` component.
        guest: PathBuf,
    },
}

fn main() -> ExitCode {
    let command = Cli::parse()
        .command
        .unwrap_or_else(|| Command::Serve(Box::new(config::Settings::from_env())));
    match command {
        Command::Serve(settings) => serve(*settings),
        Command::Sign(args) => report(commands::sign::run(&args)),
        Command::Probe { port, path } => report(commands::probe::run(port, &path)),
        Command::Seed {
            database,
            count,
            senders,
            start,
            step_seconds,
            seed,
        } => {
            let plan = commands::seed::SeedPlan {
                count,
                senders,
                start_unix_micros: start.timestamp_micros(),
                step_micros: step_seconds.saturating_mul(1_000_000),
                seed,
            };
            report(seed_database(&database, &plan))
        }
        Command::Copy(args) => match commands::copy::run(&args) {
            Ok(report) => {
                println!("{}", serde_json::json!(report));
                if report.complete() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(error) => report(Err(error)),
        },
        Command::Check { guest } => match commands::check::run(&guest) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => report(Err(error)),
        },
    }
}

fn seed_database(database: &str, plan: &commands::seed::SeedPlan) -> anyhow::Result<()> {
    let path = if database.starts_with("sqlite:") {
        config::parse_sqlite_url(database)?
    } else {
        PathBuf::from(database)
    };
    let started = std::time::Instant::now();
    let outcome = commands::seed::run(&path, plan)?;
    println!(
        "{}",
        serde_json::json!({
            "database": path.display().to_string(),
            "created": outcome.created,
            "duplicates": outcome.duplicates,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

/// How long an ending process waits for its last log lines to be written.
const FINAL_LOG_FLUSH: Duration = Duration::from_secs(2);

fn serve(settings: config::Settings) -> ExitCode {
    let code = serve_until_stopped(settings);
    telemetry::stdout::flush(FINAL_LOG_FLUSH);
    code
}

fn serve_until_stopped(settings: config::Settings) -> ExitCode {
    let config = match config::Config::from_settings(settings) {
        Ok(config) => config,
        Err(error) => {
            telemetry::logging::init(tracing::Level::INFO);
            tracing::error!(variable = error.variable, "{error}");
            return ExitCode::from(2);
        }
    };
    telemetry::logging::init(config.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return report(Err(error.into())),
    };
    match runtime.block_on(commands::serve::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
