//! Ingest beside a companion (a feed follower, forwarding, retention)
//! against ingest without it: a fresh server per turn at `CONNECTIONS`, in
//! rounds whose first turn alternates, since this machine's speed drifts
//! within minutes; the median ratio, and where the extra CPU went.

use crate::report::Results;
use crate::{Cli, Measured, of_rounds};

/// Ingest's turns without and with the companion, round by round.
pub(crate) struct Turns {
    without: Vec<Measured>,
    with: Vec<Measured>,
}

/// Which kind of turn: ingest alone, or beside the companion.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    Without,
    With,
}

/// `cli.companion_rounds` rounds of `turn(kind, tag)`, once `Without` the
/// companion and once `With` it, the first of each round alternating;
/// `tag` is new to each turn (for message ids that never repeat).
pub(crate) fn alternate(
    cli: &Cli,
    name: &str,
    mut turn: impl FnMut(Turn, &str) -> anyhow::Result<Measured>,
) -> anyhow::Result<Turns> {
    let mut turns = Turns {
        without: Vec::new(),
        with: Vec::new(),
    };
    for round in 0..cli.companion_rounds {
        let order = if round % 2 == 0 {
            [Turn::Without, Turn::With]
        } else {
            [Turn::With, Turn::Without]
        };
        for (place, kind) in order.into_iter().enumerate() {
            let measured = turn(kind, &format!("{name}{round}-{place}"))?;
            match kind {
                Turn::Without => turns.without.push(measured),
                Turn::With => turns.with.push(measured),
            }
        }
    }
    Ok(turns)
}

impl Turns {
    /// Ingest's median rates without `companion` and `with` it (as the
    /// label says), their ratio, and in both the CPU time per ingest request
    /// of the server's threads and of this process.
    pub(crate) fn report(&self, results: &mut Results, companion: &str, with: &str) {
        let without = format!("without {companion}");
        let of_rounds = of_rounds(self.without.len());
        let rates = |turns: &[Measured]| -> Vec<f64> { turns.iter().map(|t| t.load.requests_per_second).collect() };
        let (off, on) = (rates(&self.without), rates(&self.with));
        results.spread(&format!("ingest {without}, {of_rounds}"), &off, "req/s");
        results.spread(&format!("ingest {with}, {of_rounds}"), &on, "req/s");
        let ratios: Vec<f64> = on.iter().zip(&off).map(|(on, off)| on / off).collect();
        results.spread(&format!("ingest with / without {companion}"), &ratios, "ratio");
        for (turns, label) in [(&self.without, without.as_str()), (&self.with, with)] {
            crate::cpu_breakdown(results, &format!("ingest {label}"), turns);
        }
    }
}
