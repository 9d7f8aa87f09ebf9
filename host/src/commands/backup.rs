//! `inlet backup PATH`: a consistent copy of the SQLite database, taken
//! while the server runs (`storage::sqlite::backup`). PostgreSQL has its
//! own tools, which this command names instead of copying.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::config::{DEFAULT_DATABASE_URL, Database};
use crate::storage::sqlite::backup::{self, Existing};
use crate::telemetry::request_log::latency_ms;

/// `inlet backup`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// Where the copy goes; an existing file is refused unless `--force`.
    path: PathBuf,
    /// Replace PATH if it exists (only once the new copy is complete).
    #[arg(long)]
    force: bool,
    /// The database to copy, as `inlet serve` reads it.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database: String,
}

/// Copies and prints what the copy holds as one JSON line; a request this
/// command cannot serve (PostgreSQL, an existing PATH) exits 2.
pub fn run(args: &BackupArgs) -> anyhow::Result<ExitCode> {
    let source = match Database::parse(&args.database).map_err(|e| anyhow::anyhow!("DATABASE_URL {}", e.reason))? {
        Database::Sqlite(path) => path,
        Database::Postgres(_) => {
            return Ok(refused(
                "DATABASE_URL is PostgreSQL: back it up with pg_dump (one database, logical) or \
                 pg_basebackup (the whole server, physical)",
            ));
        }
    };
    if args.path.exists() && !args.force {
        return Ok(refused(&format!(
            "{} exists; pass --force to replace it",
            args.path.display()
        )));
    }
    let started = Instant::now();
    let existing = if args.force { Existing::Replace } else { Existing::Keep };
    let copied = backup::copy(&source, &args.path, existing)?;
    let report = serde_json::json!({
        "database": source.display().to_string(),
        "copy": args.path.display().to_string(),
        "messages": copied.messages,
        "bytes": copied.bytes,
        "elapsed_ms": latency_ms(started),
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn refused(why: &str) -> ExitCode {
    eprintln!("error: {why}");
    ExitCode::from(2)
}
