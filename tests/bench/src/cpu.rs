//! The CPU time a server's threads spend under a load, by thread name: where
//! a request's microseconds go, read beside the rate (which the load
//! generator on the same cores shares).

use std::collections::BTreeMap;

/// Name of the row that sums every thread, including those that ended.
pub(crate) const WHOLE_PROCESS: &str = "whole process";

/// CPU time so far, in nanoseconds, per thread group and for the process.
pub(crate) struct Sample {
    by_thread: BTreeMap<String, u64>,
    process_ns: u64,
}

/// Reads process `pid`'s threads now. A thread's group is its name without
/// a trailing index (`sqlite-reader-3` → `sqlite-reader`).
pub(crate) fn sample(pid: u32) -> Sample {
    let mut by_thread = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let on_cpu = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        let Some(ns) = on_cpu.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()) else {
            continue;
        };
        *by_thread.entry(group(name.trim()).to_owned()).or_default() += ns;
    }
    Sample {
        by_thread,
        process_ns: process_ns(pid),
    }
}

fn group(name: &str) -> &str {
    name.trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches('-')
}

/// User and system time of the whole process, ended threads included.
fn process_ns(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    // Clock ticks are 100 per second on Linux.
    fields.iter().sum::<u64>() * 10_000_000
}

/// Microseconds per request between `before` and `after`, per thread group
/// (those that ran at all) and for the whole process.
pub(crate) fn per_request_us(before: &Sample, after: &Sample, requests: u64) -> BTreeMap<String, f64> {
    let per_request = |ns: u64| ns as f64 / 1000.0 / requests.max(1) as f64;
    let mut spent: BTreeMap<String, f64> = after
        .by_thread
        .iter()
        .map(|(name, ns)| {
            (
                name,
                ns.saturating_sub(before.by_thread.get(name).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, ns)| *ns > 0)
        .map(|(name, ns)| (name.clone(), per_request(ns)))
        .collect();
    spent.insert(
        WHOLE_PROCESS.into(),
        per_request(after.process_ns.saturating_sub(before.process_ns)),
    );
    spent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_group_by_name_without_their_index() {
        assert_eq!(group("sqlite-reader-3"), "sqlite-reader");
        assert_eq!(group("sqlite-writer"), "sqlite-writer");
        assert_eq!(group("tokio-runtime-w"), "tokio-runtime-w");
    }

    #[test]
    fn this_process_has_spent_cpu_time() {
        let before = sample(std::process::id());
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let spent = per_request_us(&before, &sample(std::process::id()), 1);
        assert!(spent.values().any(|us| *us > 0.0), "{spent:?}");
    }
}
