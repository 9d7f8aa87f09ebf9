//! The cluster README's PostgreSQL backup and restore: `pg_dump` on the
//! leader while the load runs, `pg_restore` into a database of its own.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use inlet_e2e::cluster::Cluster;
use serde_json::json;

use crate::{load, stored};

/// Where the dump is written, inside the leader's container.
const DUMP: &str = "/tmp/inlet-backup.dump";
/// The database the dump is restored into (the README restores into `inlet`
/// itself, with the hosts stopped; the load keeps writing to it here).
const RESTORED: &str = "inlet_restored";

/// Every message acknowledged before `pg_dump` began is in the restored
/// database; the restore is removed after.
pub(crate) fn backup_and_restore(cluster: &Cluster) -> anyhow::Result<()> {
    let load = load::Load::start("backup");
    std::thread::sleep(Duration::from_secs(3));
    let leader = cluster.database_leader()?;
    let dump_started = Instant::now();
    let dumped = as_postgres(
        cluster,
        &leader,
        &["pg_dump", "--format=custom", "--file", DUMP, "inlet"],
    );
    std::thread::sleep(Duration::from_secs(1));
    let outcome = load.stop();
    dumped?;
    anyhow::ensure!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    stored::check(&outcome.prefix, &outcome.acknowledged)?;
    let before = outcome.acknowledged_before(dump_started);
    anyhow::ensure!(!before.is_empty(), "nothing was acknowledged before the dump");

    let restored = restore(cluster, &leader, &outcome.prefix);
    as_postgres(cluster, &leader, &["dropdb", "--if-exists", RESTORED])?;
    as_postgres(cluster, &leader, &["rm", "-f", DUMP])?;
    let restored = restored?;
    let missing: Vec<&String> = before.iter().filter(|id| !restored.contains(*id)).collect();
    anyhow::ensure!(
        missing.is_empty(),
        "acknowledged before the dump, not restored: {missing:?}"
    );
    println!(
        "{}",
        json!({"scenario": "backup_and_restore", "acknowledged_before_dump": before.len(), "restored": restored.len()})
    );
    Ok(())
}

/// The README's restore into `RESTORED`: the ids under `prefix` it holds.
fn restore(cluster: &Cluster, leader: &str, prefix: &str) -> anyhow::Result<HashSet<String>> {
    let create = [
        "createdb",
        "--owner",
        "inlet",
        "--encoding",
        "UTF8",
        "--locale",
        "C.UTF-8",
        "--template",
        "template0",
    ];
    as_postgres(cluster, leader, &[&create[..], &[RESTORED]].concat())?;
    let restore = [
        "pg_restore",
        "--no-owner",
        "--role",
        "inlet",
        "--exit-on-error",
        "--dbname",
        RESTORED,
        DUMP,
    ];
    as_postgres(cluster, leader, &restore)?;
    let pattern = prefix.replace('_', "\\_");
    let sql = format!("SELECT message_id FROM messages WHERE message_id LIKE '{pattern}-%'");
    let ids = as_postgres(
        cluster,
        leader,
        &[
            "psql",
            "--no-align",
            "--tuples-only",
            "--dbname",
            RESTORED,
            "--command",
            &sql,
        ],
    )?;
    Ok(ids.lines().map(str::to_owned).collect())
}

/// `args` run in `node`'s container, whose user (`postgres`, the image's)
/// reaches the node's own server over its socket as the superuser.
fn as_postgres(cluster: &Cluster, node: &str, args: &[&str]) -> anyhow::Result<String> {
    cluster.exec(node, args)
}
