//! `inlet`: Inlet's host. `serve` (the default) serves the guest component
//! over HTTP; the other subcommands are tools, each in its own module of
//! `commands` with its own arguments and output.

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
    Probe(commands::probe::ProbeArgs),
    /// Fill a database with synthetic messages (for benchmarks), without a server.
    Seed(commands::seed::SeedArgs),
    /// Move a SQLite database's messages into PostgreSQL (resumable, idempotent), then check them.
    Copy(commands::copy::CopyArgs),
    /// Say whether a guest component can be served by this host.
    Check(commands::check::CheckArgs),
    /// Make API keys: `inlet key new NAME --scope read|admin`.
    Key(commands::key::KeyArgs),
    /// Write a consistent copy of the SQLite database, also while the server runs.
    Backup(commands::backup::BackupArgs),
}

fn main() -> ExitCode {
    let command = Cli::parse()
        .command
        .unwrap_or_else(|| Command::Serve(Box::new(config::Settings::from_env())));
    let succeeded = |()| ExitCode::SUCCESS;
    let outcome = match command {
        Command::Serve(settings) => return serve(*settings),
        Command::Sign(args) => commands::sign::run(&args).map(succeeded),
        Command::Probe(args) => commands::probe::run(&args).map(succeeded),
        Command::Seed(args) => commands::seed::run(&args).map(succeeded),
        Command::Copy(args) => commands::copy::run(&args),
        Command::Check(args) => commands::check::run(&args),
        Command::Key(args) => commands::key::run(&args).map(succeeded),
        Command::Backup(args) => commands::backup::run(&args),
    };
    outcome.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
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
            return refused(&error);
        }
    };
    telemetry::logging::init(config.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let Err(error) = runtime.block_on(commands::serve::run(config)) else {
        return ExitCode::SUCCESS;
    };
    // A setting found bad only once read (a malformed key file).
    if let Some(bad_setting) = error.downcast_ref::<config::ConfigError>() {
        return refused(bad_setting);
    }
    tracing::error!("{error:#}");
    ExitCode::FAILURE
}

/// Start-up stopped by a bad setting: one line naming it, exit code 2.
fn refused(error: &config::ConfigError) -> ExitCode {
    tracing::error!(variable = error.variable, "{error}");
    ExitCode::from(2)
}
