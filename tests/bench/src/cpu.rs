//! The CPU time a server's threads spend under a load, by thread name: where
//! a request's microseconds go, read beside the rate (which the load
//! generator on the same cores shares).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Linux counts process and machine CPU time in clock ticks of 1/100 s
/// (USER_HZ).
const TICK_NS: u64 = 10_000_000;

/// Name of the row that sums every thread, including those that ended.
pub(crate) const WHOLE_PROCESS: &str = "whole process";

/// CPU time so far, in nanoseconds, per thread (by id, with its group)
/// and for the process.
pub(crate) struct Sample {
    threads: BTreeMap<u32, (String, u64)>,
    process_ns: u64,
}

/// Reads process `pid`'s threads now. A thread's group is its name without
/// a trailing index (`sqlite-reader-3` → `sqlite-reader`).
pub(crate) fn sample(pid: u32) -> Sample {
    let mut threads = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Some(tid) = task.file_name().to_str().and_then(|tid| tid.parse().ok()) else {
            continue;
        };
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if let Some(ns) = schedstat_ns(&task.path().join("schedstat")) {
            threads.insert(tid, (group(name.trim()).to_owned(), ns));
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    Sample {
        threads,
        process_ns: process_ns(&stat),
    }
}

fn group(name: &str) -> &str {
    name.trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches('-')
}

/// User plus system time in a `/proc/PID/stat` line (ended threads
/// included), in nanoseconds.
fn process_ns(stat: &str) -> u64 {
    // The name is parenthesised and may hold anything; after it come the
    // state (field 3), ..., utime (field 14) and stime (field 15).
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    ticks * TICK_NS
}

/// Microseconds per request between `before` and `after`, per thread group
/// (those that ran at all) and for the whole process.
pub(crate) fn per_request_us(before: &Sample, after: &Sample, requests: u64) -> BTreeMap<String, f64> {
    let per_request = |ns: u64| ns as f64 / 1000.0 / requests.max(1) as f64;
    let mut spent_ns: BTreeMap<String, u64> = BTreeMap::new();
    // Per thread first: a thread that ended in between takes nothing from
    // the others of its group.
    for (tid, (group, ns)) in &after.threads {
        let earlier = before.threads.get(tid).map_or(0, |(_, ns)| *ns);
        *spent_ns.entry(group.clone()).or_default() += ns.saturating_sub(earlier);
    }
    let mut spent: BTreeMap<String, f64> = spent_ns
        .into_iter()
        .filter(|(_, ns)| *ns > 0)
        .map(|(group, ns)| (group, per_request(ns)))
        .collect();
    spent.insert(
        WHOLE_PROCESS.into(),
        per_request(after.process_ns.saturating_sub(before.process_ns)),
    );
    spent
}

/// CPU time so far, in nanoseconds, of the control group holding process
/// `pid` (a container: every process in it); `None` where this machine
/// keeps no such count.
pub(crate) fn group_ns(pid: u32) -> Option<u64> {
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let lines: Vec<(&str, &str)> = groups
        .lines()
        .filter_map(|line| line.split_once(':').and_then(|(_, rest)| rest.split_once(':')))
        .collect();
    // cgroup v1 counts in cpuacct.usage (ns); v2 in cpu.stat's usage_usec.
    if let Some((_, path)) = lines
        .iter()
        .find(|(controllers, _)| controllers.split(',').any(|c| c == "cpuacct"))
    {
        let usage = std::fs::read_to_string(format!("/sys/fs/cgroup/cpuacct{path}/cpuacct.usage")).ok()?;
        return usage.trim().parse().ok();
    }
    let (_, path) = lines.iter().find(|(controllers, _)| controllers.is_empty())?;
    let stat = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/cpu.stat")).ok()?;
    let usec: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix("usage_usec "))?
        .trim()
        .parse()
        .ok()?;
    Some(usec * 1000)
}

/// The whole machine's CPU time so far (`/proc/stat`), busy and in all, in
/// clock ticks.
#[derive(Clone, Copy)]
pub(crate) struct Machine {
    busy: u64,
    total: u64,
}

impl Machine {
    pub(crate) fn sample() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        Self::parse(stat.lines().next().unwrap_or_default())
    }

    /// The `cpu` line: user nice system idle iowait irq softirq steal ….
    /// Steal is time the hypervisor gave to other machines: not busy here.
    fn parse(line: &str) -> Self {
        let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
        let field = |index: usize| ticks.get(index).copied().unwrap_or(0);
        let total = ticks.iter().take(8).sum();
        Self {
            busy: total - field(3) - field(4) - field(7),
            total,
        }
    }

    /// The share of every core's time spent busy between `self` and `later`.
    pub(crate) fn busy_share(self, later: Self) -> f64 {
        let total = later.total.saturating_sub(self.total);
        later.busy.saturating_sub(self.busy) as f64 / total.max(1) as f64
    }

    /// The busy time of all cores together between `self` and `later`, in
    /// nanoseconds.
    pub(crate) fn busy_ns(self, later: Self) -> u64 {
        later.busy.saturating_sub(self.busy) * TICK_NS
    }
}

/// CPU time the calling thread has spent so far (the first field of its
/// schedstat).
pub(crate) fn this_thread() -> Duration {
    Duration::from_nanos(schedstat_ns(Path::new("/proc/thread-self/schedstat")).unwrap_or(0))
}

/// The time a thread has spent on a CPU, by its `schedstat` file (the
/// first field, in nanoseconds).
fn schedstat_ns(path: &Path) -> Option<u64> {
    let schedstat = std::fs::read_to_string(path).ok()?;
    schedstat.split_whitespace().next()?.parse().ok()
}

/// Microseconds of this whole process (the bench) per request
/// between `before` and now.
pub(crate) fn own_per_request_us(before: &Sample, requests: u64) -> f64 {
    per_request_us(before, &sample(std::process::id()), requests)[WHOLE_PROCESS]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_group_by_name_without_their_index() {
        assert_eq!(group("sqlite-reader-3"), "sqlite-reader");
        assert_eq!(group("sqlite-writer"), "sqlite-writer");
        assert_eq!(group("tokio-rt-worker"), "tokio-rt-worker");
    }

    #[test]
    fn the_process_time_is_read_after_a_name_holding_parentheses() {
        let stat = "4242 (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(process_ns(stat), 325 * TICK_NS);
        assert_eq!(process_ns(""), 0);
    }

    #[test]
    fn the_machine_is_busy_but_for_idle_iowait_and_steal() {
        let before = Machine::parse("cpu  100 0 50 800 50 0 0 0 0 0");
        let after = Machine::parse("cpu  400 0 150 1200 250 0 0 100 0 0");
        // 400 busy ticks of 1100 (100 stolen).
        assert_eq!(before.busy_share(after), 400.0 / 1100.0);
        assert_eq!(before.busy_ns(after), 4_000_000_000);
    }

    #[test]
    fn this_process_group_counts_the_time_spent_in_it() {
        let Some(before) = group_ns(std::process::id()) else {
            return eprintln!("no CPU count per control group on this machine");
        };
        let mut x = 0u64;
        for _ in 0..50_000_000 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        assert!(group_ns(std::process::id()).expect("counted") > before);
    }

    #[test]
    fn a_busy_thread_shows_in_its_group() {
        let before = sample(std::process::id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut x = 0u64;
        loop {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
            }
            let spent = per_request_us(&before, &sample(std::process::id()), 1);
            let threads: f64 = spent
                .iter()
                .filter(|(group, _)| *group != WHOLE_PROCESS)
                .map(|(_, us)| us)
                .sum();
            if threads >= 20_000.0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "10 s of spinning, yet {spent:?}");
        }
    }
}
