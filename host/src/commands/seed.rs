//! `inlet seed`: fills a database with synthetic messages, straight into
//! SQLite rather than through HTTP, so benchmarks and capacity tests can
//! start from millions of rows in about a minute.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat};

use crate::bindings::inlet::service::storage::{Message, Timestamp};
use crate::storage::sqlite::bulk::{self, LoadReport};

/// The shape of the synthetic data.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    /// Messages to generate; ids are `seed-<n>`, so a second run adds nothing.
    pub count: u64,
    /// Distinct senders; a few of them send much more than the rest.
    pub senders: u64,
    /// First message's instant; the rest follow evenly, one `step_micros` apart.
    pub start_unix_micros: i64,
    /// Microseconds between consecutive messages' instants.
    pub step_micros: i64,
    /// Seeds the generator: the same plan always gives the same rows.
    pub seed: u64,
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
pub fn run(database: &Path, plan: &SeedPlan) -> anyhow::Result<LoadReport> {
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
