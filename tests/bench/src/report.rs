//! Collects results, prints them as a table and saves them as JSON.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::load::LoadResult;

#[derive(Debug, Serialize)]
pub(crate) struct Results {
    machine: Machine,
    settings: Settings,
    loads: Vec<NamedLoad>,
    medians: Vec<Median>,
    values: Vec<NamedValue>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    memory_gib: f64,
    commit: String,
}

#[derive(Debug, Serialize)]
struct Settings {
    seconds_per_load: u64,
    seeded_rows: u64,
    read_connections: usize,
}

#[derive(Debug, Serialize)]
struct NamedLoad {
    name: String,
    #[serde(flatten)]
    result: LoadResult,
}

/// A measure taken several times: its median and every run, sorted.
#[derive(Debug, Serialize)]
struct Median {
    name: String,
    median: f64,
    unit: String,
    runs: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct NamedValue {
    name: String,
    value: f64,
    unit: String,
}

impl Results {
    pub(crate) fn new(seconds_per_load: u64, seeded_rows: u64, read_connections: usize) -> Self {
        Self {
            machine: Machine::this(),
            settings: Settings {
                seconds_per_load,
                seeded_rows,
                read_connections,
            },
            loads: Vec::new(),
            medians: Vec::new(),
            values: Vec::new(),
        }
    }

    pub(crate) fn load(&mut self, name: &str, result: LoadResult) {
        println!(
            "  {name}: {} conns, {:.0} req/s, p99 {:.1} ms, {} errors",
            result.connections, result.requests_per_second, result.p99_ms, result.errors
        );
        self.loads.push(NamedLoad {
            name: name.into(),
            result,
        });
    }

    pub(crate) fn timing(&mut self, name: &str, runs: &[Duration]) {
        let runs_ms: Vec<f64> = runs.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        self.spread(name, &runs_ms, "ms");
    }

    /// `runs` of one measure, reported by their median.
    pub(crate) fn spread(&mut self, name: &str, runs: &[f64], unit: &str) {
        let mut runs = runs.to_vec();
        runs.sort_by(f64::total_cmp);
        let median = runs.get(runs.len() / 2).copied().unwrap_or(f64::NAN);
        println!("  {name}: median {} {unit}", shown(median));
        self.medians.push(Median {
            name: name.into(),
            median,
            unit: unit.into(),
            runs,
        });
    }

    /// The 50th and 99th percentiles of `samples`, as `<name>, p50` and `, p99`.
    pub(crate) fn percentiles(&mut self, name: &str, samples: &mut [f64], unit: &str) {
        samples.sort_by(f64::total_cmp);
        for (label, quantile) in [("p50", 0.5), ("p99", 0.99)] {
            let at = ((samples.len() as f64 * quantile) as usize).min(samples.len().saturating_sub(1));
            let value = samples.get(at).copied().unwrap_or(f64::NAN);
            self.value(&format!("{name}, {label}"), value, unit);
        }
    }

    pub(crate) fn value(&mut self, name: &str, value: f64, unit: &str) {
        println!("  {name}: {value:.2} {unit}");
        self.values.push(NamedValue {
            name: name.into(),
            value,
            unit: unit.into(),
        });
    }

    pub(crate) fn print(&self) {
        let m = &self.machine;
        println!(
            "\n{} cores ({}), {:.0} GiB, commit {}; load generator on the same machine",
            m.cores, m.cpu, m.memory_gib, m.commit
        );
        println!(
            "\n| scenario | conns | req/s | p50 ms | p99 ms | p99.9 ms | errors |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for NamedLoad { name, result: r } in &self.loads {
            println!(
                "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
                r.connections, r.requests_per_second, r.p50_ms, r.p99_ms, r.p999_ms, r.errors
            );
        }
        println!("\n| measure, several runs | median | runs |\n|---|---:|---|");
        for m in &self.medians {
            let runs: Vec<String> = m.runs.iter().copied().map(shown).collect();
            println!("| {} | {} {} | {} |", m.name, shown(m.median), m.unit, runs.join(", "));
        }
        println!("\n| measure | value |\n|---|---:|");
        for v in &self.values {
            println!("| {} | {:.2} {} |", v.name, v.value, v.unit);
        }
    }

    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}

impl Machine {
    fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|line| line.starts_with(key))
                .and_then(|line| line.split(':').nth(1))
                .map(|value| value.trim().to_owned())
                .unwrap_or_default()
        };
        let memory_kib: f64 = field(&meminfo, "MemTotal")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(0.0);
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(inlet_e2e::workspace_root())
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self {
            cpu: field(&cpuinfo, "model name"),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: memory_kib / (1024.0 * 1024.0),
            commit,
        }
    }
}

/// Whole numbers from 100 up (rates, slow timings), two decimals below.
fn shown(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_is_reported_by_its_median_with_every_run_sorted() {
        let mut results = Results::new(1, 1, 1);
        results.spread("ratio", &[0.35, 0.33, 0.41], "ratio");
        results.timing("start", &[Duration::from_millis(120), Duration::from_millis(9)]);
        assert_eq!(results.medians[0].median, 0.35);
        assert_eq!(results.medians[0].runs, [0.33, 0.35, 0.41]);
        assert_eq!(results.medians[1].median, 120.0);
        assert_eq!(results.medians[1].runs, [9.0, 120.0]);
    }

    #[test]
    fn rates_are_shown_whole_and_ratios_with_two_decimals() {
        assert_eq!(shown(11_437.78), "11438");
        assert_eq!(shown(0.352), "0.35");
    }
}
