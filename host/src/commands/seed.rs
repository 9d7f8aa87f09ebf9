//! `inlet seed`: fills a database with synthetic messages, straight into
//! SQLite rather than through HTTP, so benchmarks and capacity tests can
//! start from millions of rows in about a minute.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::bindings::inlet::service::storage::{Message, Timestamp};
use crate::config::Database;
use crate::storage::sqlite::bulk::{self, LoadReport};

/// `inlet seed`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// The SQLite database, as a `sqlite:///` URL or a path (without `:`).
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
    start: DateTime<Utc>,
    /// Seconds between consecutive messages.
    #[arg(long, default_value_t = 30)]
    step_seconds: i64,
    /// Generator seed: the same arguments give the same rows.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Seeds the database the arguments name and prints what it did as one JSON line.
pub fn run(args: &SeedArgs) -> anyhow::Result<()> {
    // A URL has a scheme; a path (what the benchmark passes) has no colon.
    let path = if args.database.contains(':') {
        match Database::parse(&args.database).map_err(|e| anyhow::anyhow!("--database {}", e.reason))? {
            Database::Sqlite(path) => path,
            Database::Postgres(_) => anyhow::bail!("--database must be SQLite: seed writes SQLite files only"),
        }
    } else {
        PathBuf::from(&args.database)
    };
    let plan = SeedPlan {
        count: args.count,
        senders: args.senders,
        start_unix_micros: args.start.timestamp_micros(),
        step_micros: args.step_seconds.saturating_mul(1_000_000),
        seed: args.seed,
    };
    let started = Instant::now();
    let outcome = seed(&path, &plan)?;
    let report = serde_json::json!({
        "database": path.display().to_string(),
        "created": outcome.created,
        "duplicates": outcome.duplicates,
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{report}");
    Ok(())
}

/// The shape of the synthetic data.
#[derive(Debug, Clone)]
struct SeedPlan {
    /// Messages to generate; ids are `seed-<n>`, so a second run adds nothing.
    count: u64,
    /// Distinct senders; a few of them send much more than the rest.
    senders: u64,
    /// First message's instant; the rest follow evenly, one `step_micros` apart.
    start_unix_micros: i64,
    /// Microseconds between consecutive messages' instants.
    step_micros: i64,
    /// Seeds the generator: the same plan always gives the same rows.
    seed: u64,
}

/// Words message texts are made of, so substring search sees realistic text.
const WORDS: &[&str] = &[
    "hello",
    "order",
    "shipped",
    "delivered",
    "payment",
    "received",
    "thanks",
    "please",
    "call",
    "me",
    "tomorrow",
    "meeting",
    "invoice",
    "refund",
    "status",
    "update",
    "customer",
    "support",
    "ticket",
    "number",
    "confirm",
    "address",
    "package",
    "tracking",
    "when",
    "where",
    "how",
    "much",
    "price",
    "discount",
    "offer",
    "today",
    "week",
];

/// Adds the messages of `plan` to the database at `database` (created if missing).
/// Fails when `plan.senders` is 0 or the database cannot be written.
fn seed(database: &Path, plan: &SeedPlan) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(plan.senders > 0, "--senders must be at least 1");
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let messages = (0..plan.count).map(move |n| synthetic_message(plan, n, &mut rng));
    bulk::load(database, messages).with_context(|| format!("seeding {}", database.display()))
}

fn synthetic_message(plan: &SeedPlan, n: u64, rng: &mut fastrand::Rng) -> Message {
    let unix_micros = plan.start_unix_micros + plan.step_micros * n as i64;
    let text = (0..rng.usize(3..=12))
        .map(|_| WORDS[rng.usize(..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ");
    Message {
        message_id: format!("seed-{n}"),
        from: sender(plan.senders, rng),
        to: "+14155550100".into(),
        ts: Timestamp {
            text: DateTime::from_timestamp_micros(unix_micros)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            unix_micros,
        },
        text: Some(format!("{text} #{n}")),
    }
}

/// Skewed: the square of a uniform draw favours the low sender numbers, so
/// the top-senders list has clear leaders as real traffic does.
fn sender(senders: u64, rng: &mut fastrand::Rng) -> String {
    let draw = rng.f64();
    let index = ((draw * draw) * senders as f64) as u64;
    format!("+91{:010}", 9_000_000_000 + index.min(senders - 1))
}
