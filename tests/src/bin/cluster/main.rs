//! `make test-cluster`: Inlet's HA cluster (`make cluster-up`) under faults.
//!
//! Each scenario runs a steady signed load through `lb` (every sender
//! retries a 503 with the same `message_id`, as webhook senders do), makes
//! one fault, waits for the cluster to serve again by itself, and checks:
//! every acknowledged message is stored exactly once and as sent, every
//! reply was 200 or 503 with `Retry-After` within the deadline. It prints
//! one JSON line per scenario and exits non-zero on the first violation.
//!
//! Reaches the cluster only through ports published on 127.0.0.1 and
//! `docker` commands, never at a container's own address.

mod backup;
mod forwarded;
mod load;
mod private;
mod stored;

use std::time::{Duration, Instant};

use inlet_e2e::cluster::{self, Cluster, HostState, HostStatus};
use inlet_e2e::swap;
use serde_json::json;

/// How long the cluster has to serve again after a fault.
pub(crate) const RECOVERY: Duration = Duration::from_secs(60);

type Scenario = fn(&Cluster) -> anyhow::Result<()>;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("secrets_stay_private", private::secrets_stay_private),
    ("duplicates_across_hosts", duplicates_across_hosts),
    ("kill_inlet_host", kill_inlet_host),
    ("kill_database_leader", kill_database_leader),
    ("switchover_database_leader", switchover_database_leader),
    ("drain_and_recreate_host", drain_and_recreate_host),
    ("cut_host_from_database", cut_host_from_database),
    ("swap_guest_under_load", swap_guest_under_load),
    ("kill_forwarding_host", forwarded::kill_forwarding_host),
    ("backup_and_restore", backup::backup_and_restore),
    ("cluster_down_and_up", cluster_down_and_up),
];

fn main() -> anyhow::Result<()> {
    let cluster = Cluster::from_env()?;
    // What every scenario's messages are forwarded to.
    cluster::bind_stream(RECOVERY)?;
    let chosen: Vec<String> = std::env::args().skip(1).collect();
    for (name, scenario) in SCENARIOS {
        if !chosen.is_empty() && !chosen.iter().any(|c| c == name) {
            continue;
        }
        cluster.wait_serving(RECOVERY)?;
        let started = Instant::now();
        scenario(&cluster).map_err(|e| e.context(format!("scenario {name}")))?;
        eprintln!("{name}: passed in {:.0?}", started.elapsed());
    }
    Ok(())
}

/// 9 senders, three at each host, deliver the same 20 ids at once: one
/// row each.
fn duplicates_across_hosts(_: &Cluster) -> anyhow::Result<()> {
    let prefix = load::prefix("dup");
    let ids: Vec<String> = (0..20).map(|n| format!("{prefix}-{n}")).collect();
    let senders: Vec<_> = cluster::HOSTS
        .iter()
        .cycle()
        .take(9)
        .map(|host| {
            let ids = ids.clone();
            std::thread::spawn(move || {
                let agent = cluster::agent(load::DEADLINE);
                ids.iter().map(|id| load::deliver(&agent, host, id)).collect::<Vec<_>>()
            })
        })
        .collect();
    for sender in senders {
        for delivery in sender.join().expect("sender thread") {
            anyhow::ensure!(delivery.acknowledged.is_some(), "{:?}", delivery.violation);
        }
    }
    stored::check(&prefix, &ids)?;
    println!(
        "{}",
        json!({"scenario": "duplicates_across_hosts", "ids": ids.len(), "deliveries": ids.len() * 9})
    );
    Ok(())
}

/// Starts a load named for `scenario`, makes `fault` once it runs, waits
/// for `lb` and every host to serve again, and checks the load
/// (`finish`); what the load did.
pub(crate) fn under_load(
    cluster: &Cluster,
    scenario: &str,
    fault: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<load::Outcome> {
    let load = load::Load::start(scenario);
    std::thread::sleep(Duration::from_secs(3));
    fault()?;
    cluster.wait_serving(RECOVERY)?;
    // Acknowledgements after the recovery, so that the load proves it.
    std::thread::sleep(Duration::from_secs(3));
    finish(scenario, load)
}

/// One Inlet host SIGKILLed under load, started again 5 s later.
fn kill_inlet_host(cluster: &Cluster) -> anyhow::Result<()> {
    under_load(cluster, "kill_inlet_host", || {
        cluster.kill("inlet2")?;
        std::thread::sleep(Duration::from_secs(5));
        cluster.start("inlet2")
    })
    .map(drop)
}

/// The PostgreSQL leader SIGKILLed under load; the outage is the longest
/// time without an acknowledgement. The old leader is started again after
/// and rejoins as a replica.
fn kill_database_leader(cluster: &Cluster) -> anyhow::Result<()> {
    let leader = cluster.database_leader()?;
    let result = under_load(cluster, "kill_database_leader", || {
        cluster.kill(&leader)?;
        cluster.wait_new_leader(&leader, RECOVERY)
    });
    cluster.start(&leader)?;
    cluster.wait_replicating(&leader, RECOVERY)?;
    result.map(drop)
}

/// A planned switchover of the leader to the synchronous standby under load
/// (`patronictl switchover`, as an operator does before maintenance): a
/// short write pause, the old leader a replica after.
fn switchover_database_leader(cluster: &Cluster) -> anyhow::Result<()> {
    let leader = cluster.database_leader()?;
    let roles = cluster.database_roles()?;
    let standby = roles
        .iter()
        .find(|(_, role)| *role == "Sync Standby")
        .map(|(member, _)| member.clone())
        .ok_or_else(|| anyhow::anyhow!("no synchronous standby among {roles:?}"))?;
    under_load(cluster, "switchover_database_leader", || {
        cluster.switchover(&leader, &standby)?;
        cluster.wait_new_leader(&leader, RECOVERY)
    })?;
    cluster.wait_replicating(&leader, RECOVERY)
}

/// A host taken out of rotation by a drain, recreated from its image (how
/// a new Inlet image is rolled out, host by host) and put back: no request
/// failed, not even with a 503.
fn drain_and_recreate_host(cluster: &Cluster) -> anyhow::Result<()> {
    let outcome = under_load(cluster, "drain_and_recreate_host", || {
        cluster.set_host_state("inlet2", HostState::Drain)?;
        cluster.wait_host_status("inlet2", HostStatus::Drain, RECOVERY)?;
        cluster.recreate("inlet2")?;
        cluster.wait_serving(RECOVERY)?;
        cluster.set_host_state("inlet2", HostState::Ready)?;
        cluster.wait_host_status("inlet2", HostStatus::Up, RECOVERY)
    })?;
    let unavailable = outcome.unavailable;
    anyhow::ensure!(
        unavailable == 0,
        "{unavailable} requests were answered 503 during the rollout"
    );
    Ok(())
}

/// One Inlet host cut off the database network for 10 s, then reconnected:
/// it answers 503 (and leaves `lb`'s rotation) meanwhile, then serves.
fn cut_host_from_database(cluster: &Cluster) -> anyhow::Result<()> {
    under_load(cluster, "cut_host_from_database", || {
        cluster.disconnect("inlet1")?;
        std::thread::sleep(Duration::from_secs(10));
        cluster.connect("inlet1")
    })
    .map(drop)
}

/// The shared guest file replaced under load: every host reports the new
/// digest, and no request failed, not even with a 503.
fn swap_guest_under_load(cluster: &Cluster) -> anyhow::Result<()> {
    let outcome = under_load(cluster, "swap_guest_under_load", || {
        let variant = swap::variant(&load::prefix("cluster"));
        let live = inlet_e2e::workspace_root().join("target/cluster/guest/inlet_guest.wasm");
        swap::replace_by_rename(&live, &variant);
        cluster.wait_every_host_serving(&swap::sha256(&variant), RECOVERY)
    })?;
    let unavailable = outcome.unavailable;
    anyhow::ensure!(
        unavailable == 0,
        "{unavailable} requests were answered 503 during the swap"
    );
    Ok(())
}

/// The whole cluster down and up again, its volumes kept (as
/// `make cluster-down` and `make cluster-up` do, without building): what was
/// acknowledged before is still there, and it serves again.
fn cluster_down_and_up(cluster: &Cluster) -> anyhow::Result<()> {
    let load = load::Load::start("restart");
    std::thread::sleep(Duration::from_secs(3));
    let before = load.stop();
    anyhow::ensure!(before.violations.is_empty(), "{:?}", before.violations);
    cluster.down_and_up()?;
    cluster.wait_serving(RECOVERY)?;
    stored::check(&before.prefix, &before.acknowledged)?;
    println!(
        "{}",
        json!({"scenario": "cluster_down_and_up", "acknowledged_before": before.acknowledged.len()})
    );
    Ok(())
}

/// Stops `load`, checks what it was told against what is stored, and
/// prints the scenario's line; what the load did.
fn finish(scenario: &str, load: load::Load) -> anyhow::Result<load::Outcome> {
    let outcome = load.stop();
    stored::check(&outcome.prefix, &outcome.acknowledged)?;
    println!(
        "{}",
        json!({
            "scenario": scenario,
            "acknowledged": outcome.acknowledged.len(),
            "unavailable_503": outcome.unavailable,
            "longest_write_gap_ms": outcome.longest_gap.as_millis(),
        })
    );
    anyhow::ensure!(
        outcome.violations.is_empty(),
        "replies outside the contract: {:?}",
        outcome.violations
    );
    Ok(outcome)
}
