//! What the database holds, read through `lb`'s PostgreSQL port.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use inlet_e2e::cluster;

use crate::load;

/// A stored row's `from`, `ts` and `text`.
struct Stored {
    from: String,
    ts: String,
    text: Option<String>,
}

/// Every id in `acknowledged` is stored, and every stored row under
/// `prefix` (acknowledged or not) is whole: exactly the message sent.
pub(crate) fn check(prefix: &str, acknowledged: &[String]) -> anyhow::Result<()> {
    let rows = read(prefix)?;
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !rows.contains_key(*id)).collect();
    anyhow::ensure!(lost.is_empty(), "{} acknowledged, not stored: {lost:?}", lost.len());
    let expected_ts = "2025-01-15T10:00:00Z";
    for (id, Stored { from, ts, text }) in &rows {
        let whole = from == "+15550100" && ts == expected_ts && text.as_deref() == Some(id.as_str());
        anyhow::ensure!(
            whole,
            "{id} is stored as ({from}, {ts}, {text:?}), not as sent: {}",
            load::body(id)
        );
    }
    Ok(())
}

/// The rows under `prefix` by id, each id once (checked, though it is the
/// primary key), asked again while the database is still coming back.
fn read(prefix: &str) -> anyhow::Result<HashMap<String, Stored>> {
    // `_` is a LIKE wildcard; a scenario's name holds it.
    let pattern = prefix.replace('_', "\\_");
    let sql = format!("SELECT message_id, from_msisdn, ts, text FROM messages WHERE message_id LIKE '{pattern}-%'");
    let url = cluster::database_url()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match inlet_pgserver::rows(&url, &sql) {
            Ok(rows) => {
                let count = rows.len();
                let by_id: HashMap<String, Stored> = rows
                    .into_iter()
                    .map(|row| {
                        let text = |n: usize| row[n].clone().unwrap_or_default();
                        let stored = Stored {
                            from: text(1),
                            ts: text(2),
                            text: row[3].clone(),
                        };
                        (text(0), stored)
                    })
                    .collect();
                anyhow::ensure!(by_id.len() == count, "{} rows for {} ids", count, by_id.len());
                return Ok(by_id);
            }
            Err(error) if Instant::now() > deadline => return Err(error.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}
