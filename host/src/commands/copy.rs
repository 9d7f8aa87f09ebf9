//! `inlet copy`: moves a SQLite database's messages into PostgreSQL
//! (resumable, idempotent, checked row by row: `storage::pg::copy`).

use std::process::ExitCode;

use anyhow::Context;

use crate::config::Database;
use crate::storage::pg::copy::{self, CopyPlan, CopyReport};

/// `inlet copy`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CopyArgs {
    /// The SQLite database to copy from, as a `sqlite:///` URL (it is only read).
    #[arg(long)]
    from: String,
    /// The PostgreSQL database to copy into, as a `postgres://` URL; its schema is applied first.
    #[arg(long)]
    to: String,
    /// Messages per transaction.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    chunk: u32,
    /// Stop copying after this many chunks; the check still runs (tests resuming).
    #[arg(long, hide = true)]
    stop_after_chunks: Option<u64>,
}

/// Copies, then checks, and prints the report; one that is not complete
/// is a failure exit.
pub fn run(args: &CopyArgs) -> anyhow::Result<ExitCode> {
    let report = copy_and_check(args)?;
    println!("{}", serde_json::json!(report));
    Ok(if report.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn copy_and_check(args: &CopyArgs) -> anyhow::Result<CopyReport> {
    let source = match Database::parse(&args.from).map_err(|e| anyhow::anyhow!("--from {}", e.reason))? {
        Database::Sqlite(path) => path,
        Database::Postgres(_) => anyhow::bail!("--from must be a sqlite:/// URL"),
    };
    let target = match Database::parse(&args.to).map_err(|e| anyhow::anyhow!("--to {}", e.reason))? {
        Database::Postgres(url) => url,
        Database::Sqlite(_) => anyhow::bail!("--to must be a postgres:// URL"),
    };
    let plan = CopyPlan {
        chunk: args.chunk,
        stop_after_chunks: args.stop_after_chunks,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(copy::from_sqlite(&source, &target, plan))
        .context("copy failed")
}
