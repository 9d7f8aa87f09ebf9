//! Folding `count_deltas` into the summary tables, now and then, by
//! whichever host gets there first.
//!
//! Only this fold writes `sender_counts`, `hourly_counts` and `totals` (the
//! truncate trigger aside), under a transaction-level advisory lock, so it
//! never contends with the writers, and two hosts never fold at once. Every
//! statement of the fold sees one snapshot: the deltas it deletes are
//! exactly the ones it adds up, and deltas committed meanwhile wait for the
//! next fold. A reader's snapshot sees either the deltas or their sum, never
//! both. If no host folds, reads stay exact and only grow slower.
//!
//! Every fold leaves its deltas behind as dead rows, and reads sum the
//! whole delta table: each host vacuums it every `VACUUM_INTERVAL`, far more
//! often than autovacuum would, so that those sums stay short.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::migration::Applied;

/// How often each host tries to fold.
pub(super) const INTERVAL: Duration = Duration::from_millis(250);

/// How often each host vacuums `count_deltas`.
const VACUUM_INTERVAL: Duration = Duration::from_secs(5);

/// The advisory lock every host's fold takes (any constant unlike the
/// migration's). A session holding it pauses the folds: reads stay exact.
pub const FOLD_LOCK: i64 = 0x696e_6c65_745f_6366;

/// One statement: the deltas go, their sums land in the summaries. With no
/// deltas it writes nothing (no WAL, no dead row in `totals`).
const FOLD: &str = "
WITH moved AS (
    DELETE FROM count_deltas RETURNING from_msisdn, hour, messages
), by_sender AS (
    SELECT moved.from_msisdn, sum(moved.messages)::bigint AS delta, COALESCE(max(s.messages), 0) AS before
    FROM moved LEFT JOIN sender_counts s USING (from_msisdn)
    GROUP BY moved.from_msisdn
), by_hour AS (
    SELECT hour, sum(messages)::bigint AS delta FROM moved GROUP BY hour
), senders_set AS (
    INSERT INTO sender_counts (from_msisdn, messages)
        SELECT from_msisdn, before + delta FROM by_sender WHERE before + delta > 0 ORDER BY from_msisdn
    ON CONFLICT (from_msisdn) DO UPDATE SET messages = excluded.messages
), senders_gone AS (
    DELETE FROM sender_counts s USING by_sender b
    WHERE s.from_msisdn = b.from_msisdn AND b.before + b.delta <= 0
), hours_set AS (
    INSERT INTO hourly_counts (hour, messages)
        SELECT hour, delta FROM by_hour ORDER BY hour
    ON CONFLICT (hour) DO UPDATE SET messages = hourly_counts.messages + excluded.messages
)
UPDATE totals SET
    messages = messages + COALESCE((SELECT sum(delta) FROM by_sender), 0),
    senders = senders
        + (SELECT count(*) FROM by_sender WHERE before <= 0 AND before + delta > 0)
        - (SELECT count(*) FROM by_sender WHERE before > 0 AND before + delta <= 0)
WHERE EXISTS (SELECT 1 FROM moved)
";

/// Folds the deltas unless another host is folding them right now.
pub(super) async fn fold(pool: &Pool) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&FOLD_LOCK])
        .await?
        .get(0);
    if locked {
        tx.batch_execute(FOLD).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Removes the dead rows folds left in `count_deltas` (outside any
/// transaction, as `VACUUM` must be; it skips the table if it is locked).
pub(super) async fn vacuum(pool: &Pool) -> anyhow::Result<()> {
    pool.get()
        .await?
        .batch_execute("VACUUM (SKIP_LOCKED) count_deltas")
        .await?;
    Ok(())
}

/// Once the schema is applied, folds every `INTERVAL` and vacuums every
/// `VACUUM_INTERVAL`, until the store aborts it. A fold that starts failing
/// is logged once (reads stay exact, only slower), and again when it works.
pub(super) async fn run(pool: Pool, schema: Applied) {
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut vacuumed = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        ticks.tick().await;
        if schema.ready().await.is_err() {
            continue;
        }
        match fold(&pool).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("count fold works again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(error = %error, "count fold failing; /stats reads more deltas until it works");
            }
            Err(error) => tracing::debug!(error = %error, "count fold failed again"),
        }
        if vacuumed.elapsed() >= VACUUM_INTERVAL {
            vacuumed = tokio::time::Instant::now();
            if let Err(error) = vacuum(&pool).await {
                tracing::debug!(error = %error, "count deltas not vacuumed");
            }
        }
    }
}
