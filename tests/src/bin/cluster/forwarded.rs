//! Forwarding in the cluster: the host that forwards (the holder of
//! `forward_lead`) SIGKILLed under load; every message acknowledged through
//! `lb`, before the kill and after, reaches the JetStream stream.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use inlet_e2e::cluster::{self, Cluster};
use inlet_e2e::nats::Streams;
use serde_json::json;

use crate::RECOVERY;

/// How long after the load stopped every message it had acknowledged may
/// take to reach the stream: another host's turn begins once the killed
/// one's lease has run out.
const FORWARDED_WITHIN: Duration = Duration::from_secs(90);

pub(crate) fn kill_forwarding_host(cluster: &Cluster) -> anyhow::Result<()> {
    let streams = cluster::bind_stream(RECOVERY)?;
    let before = streams.last_sequence(cluster::STREAM)?;
    let mut killed = String::new();
    let outcome = crate::under_load(cluster, "kill_forwarding_host", || {
        killed = forwarding_host()?;
        cluster.kill(&killed)?;
        std::thread::sleep(Duration::from_secs(5));
        cluster.start(&killed)
    })?;
    let started = Instant::now();
    let missing = not_forwarded(&streams, before, &outcome.acknowledged)?;
    anyhow::ensure!(
        missing.is_empty(),
        "{} of {} acknowledged messages never reached the stream: {:?}",
        missing.len(),
        outcome.acknowledged.len(),
        &missing[..missing.len().min(10)]
    );
    println!(
        "{}",
        json!({
            "scenario": "kill_forwarding_host",
            "killed": killed,
            "forwarded": outcome.acknowledged.len(),
            "all_in_stream_after_ms": started.elapsed().as_millis(),
            "forwarding_now": forwarding_host()?,
        })
    );
    Ok(())
}

/// The Inlet host holding forwarding's turn, by the name its holder gives
/// (`<host name>/<id>`).
fn forwarding_host() -> anyhow::Result<String> {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let rows = inlet_pgserver::rows(
            &cluster::database_url()?,
            "SELECT holder FROM forward_lead WHERE until > clock_timestamp()",
        );
        let holder = rows.ok().and_then(|rows| rows.first().and_then(|row| row[0].clone()));
        if let Some(holder) = holder {
            let host = holder.split('/').next().unwrap_or_default();
            anyhow::ensure!(
                cluster::HOST_SERVICES.contains(&host),
                "{holder} is no host of the cluster"
            );
            return Ok(host.to_owned());
        }
        anyhow::ensure!(Instant::now() < deadline, "no host took forwarding's turn");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Which of `ids` are not in the stream after sequence `after`, once all
/// are or `FORWARDED_WITHIN` has passed.
fn not_forwarded(streams: &Streams, after: u64, ids: &[String]) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + FORWARDED_WITHIN;
    loop {
        let published = streams.messages_after(cluster::STREAM, after)?;
        let published: HashSet<String> = published.into_iter().filter_map(|m| m.message_id).collect();
        let missing: Vec<String> = ids.iter().filter(|id| !published.contains(*id)).cloned().collect();
        if missing.is_empty() || Instant::now() >= deadline {
            return Ok(missing);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
