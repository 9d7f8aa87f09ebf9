//! Forwarding's records on PostgreSQL (see `storage::forward`): the
//! position (`forward_position`, a place `(tx, seq)` of the feed), the
//! retries (`forward_retries`, keyed like `messages`, gone with their
//! message) and the turn: one host at a time forwards, the one holding the
//! lease in `forward_lead`.
//!
//! A lease, not a session lock: the hosts may reach the database through
//! a proxy (the cluster's HAProxy) or a pooler, where a session outlives a
//! host that vanished from the network for as long as the proxy's timeouts
//! say. The lease runs on the database's clock, so hosts' clocks never
//! compare. Its holder renews it every `RENEW_EVERY`, and stops forwarding
//! once it has gone `LEASE - RENEW_EVERY` without a renewal it knows
//! succeeded: before the lease can have run out. A host that dies is
//! replaced within `LEASE`; one that stops gives the lease up at once. Two
//! hosts that both believe they forward for a moment do no harm anyway:
//! the position moves by compare-and-set and due retries are leased row by
//! row (`SKIP LOCKED`).

use std::time::{Duration, Instant};

use deadpool_postgres::{GenericClient, Pool};
use tokio_util::sync::CancellationToken;

use super::{codec, feed, rows};
use crate::storage::FeedPosition;
use crate::storage::forward::{Attempted, Backlog, DueRetry, Lead, RetryState, seq_of};

/// How long a turn lasts unless renewed.
const LEASE: Duration = Duration::from_secs(10);
/// How often its holder renews it, and how long one renewal may take.
const RENEW_EVERY: Duration = Duration::from_secs(2);

/// Sets the position, unless it is set, before every transaction still
/// running: what committed before is not forwarded (rows `inlet copy`
/// brought, `tx` 0, included), what commits from now on is.
pub(super) async fn set_position(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "INSERT INTO forward_position (id, tx, seq) VALUES (1, pg_snapshot_xmin(pg_current_snapshot()), 0)
             ON CONFLICT (id) DO NOTHING",
        )
        .await?;
    client.execute(&statement, &[]).await?;
    Ok(())
}

/// The position, set (`set_position`) when there is none yet.
pub(super) async fn position(client: &impl GenericClient) -> Result<FeedPosition, tokio_postgres::Error> {
    set_position(client).await?;
    let row = client
        .query_one("SELECT tx::text AS feed_tx, seq FROM forward_position", &[])
        .await?;
    Ok(feed::position(&row, 0, 1))
}

/// Moves the position from `from` to `to` with `retries`, if it is at `from`.
pub(super) async fn advance(
    client: &mut deadpool_postgres::Client,
    from: FeedPosition,
    to: FeedPosition,
    retries: &[Attempted],
) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let moved = tx
        .execute(
            "UPDATE forward_position SET tx = $3::text::xid8, seq = $4 WHERE tx = $1::text::xid8 AND seq = $2",
            &[
                &from.epoch.to_string(),
                &seq_of(from),
                &to.epoch.to_string(),
                &seq_of(to),
            ],
        )
        .await?;
    if moved == 0 {
        return Ok(false);
    }
    let owed: Vec<&Attempted> = retries.iter().filter(|r| r.state != RetryState::Delivered).collect();
    if !owed.is_empty() {
        let columns = Columns::of(owed.into_iter());
        tx.execute(
            "INSERT INTO forward_retries (message_id, attempts, next_attempt_at, failed, last_error)
             SELECT r.* FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bool[], $5::text[])
                 AS r (message_id, attempts, next_attempt_at, failed, last_error)
             WHERE EXISTS (SELECT 1 FROM messages m WHERE m.message_id = r.message_id FOR KEY SHARE)
             ON CONFLICT (message_id) DO UPDATE SET attempts = excluded.attempts,
                 next_attempt_at = excluded.next_attempt_at, failed = excluded.failed,
                 last_error = excluded.last_error",
            &[
                &columns.ids,
                &columns.attempts,
                &columns.next_attempt_at,
                &columns.failed,
                &columns.errors,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Retries due at `now`, put off until `lease_until`; rows another host is
/// leasing at this moment are skipped.
pub(super) async fn due(
    client: &impl GenericClient,
    now: i64,
    lease_until: i64,
    limit: u32,
) -> Result<Vec<DueRetry>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "WITH due AS (
                 SELECT message_id FROM forward_retries WHERE NOT failed AND next_attempt_at <= $1
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED),
             leased AS (
                 UPDATE forward_retries r SET next_attempt_at = $2 FROM due
                 WHERE r.message_id = due.message_id RETURNING r.message_id, r.attempts)
             SELECT {}, leased.attempts FROM leased JOIN messages USING (message_id)",
            rows::STORED_COLUMNS
        ))
        .await?;
    let found = client
        .query(&statement, &[&now, &lease_until, &i64::from(limit)])
        .await?;
    Ok(found
        .iter()
        .map(|row| DueRetry {
            message: rows::stored(row),
            attempts: row.get::<_, i32>(8).unsigned_abs(),
        })
        .collect())
}

/// Records attempts' outcomes on the retry rows that still exist.
pub(super) async fn settle(
    client: &mut deadpool_postgres::Client,
    attempted: &[Attempted],
) -> Result<(), tokio_postgres::Error> {
    let delivered: Vec<String> = attempted
        .iter()
        .filter(|a| a.state == RetryState::Delivered)
        .map(|a| codec::key(&a.message_id).into_owned())
        .collect();
    let owed = Columns::of(attempted.iter().filter(|a| a.state != RetryState::Delivered));
    let tx = client.transaction().await?;
    tx.execute("DELETE FROM forward_retries WHERE message_id = ANY($1)", &[&delivered])
        .await?;
    tx.execute(
        "UPDATE forward_retries r SET attempts = u.attempts, next_attempt_at = u.next_attempt_at,
             failed = u.failed, last_error = u.last_error
         FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bool[], $5::text[])
             AS u (message_id, attempts, next_attempt_at, failed, last_error)
         WHERE r.message_id = u.message_id",
        &[
            &owed.ids,
            &owed.attempts,
            &owed.next_attempt_at,
            &owed.failed,
            &owed.errors,
        ],
    )
    .await?;
    tx.commit().await
}

/// Every failed delivery due at `now` again, its attempts reset.
pub(super) async fn requeue(client: &impl GenericClient, now: i64) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE forward_retries SET failed = false, attempts = 0, next_attempt_at = $1 WHERE failed",
            &[&now],
        )
        .await
}

/// What is owed: rows past the position and retries, by state.
pub(super) async fn backlog(client: &impl GenericClient) -> Result<Backlog, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "WITH p AS (SELECT tx, seq FROM forward_position),
                  past AS (SELECT m.created_at FROM messages m, p WHERE (m.tx, m.seq) > (p.tx, p.seq))
             SELECT EXISTS (SELECT 1 FROM p),
                    (SELECT count(*) FROM past), (SELECT min(created_at) FROM past),
                    count(*) FILTER (WHERE NOT r.failed), count(*) FILTER (WHERE r.failed),
                    min(m.created_at) FILTER (WHERE NOT r.failed)
             FROM forward_retries r JOIN messages m USING (message_id)",
        )
        .await?;
    let row = client.query_one(&statement, &[]).await?;
    if !row.get::<_, bool>(0) {
        return Ok(Backlog::default());
    }
    let past: i64 = row.get(1);
    let retrying: i64 = row.get(3);
    let oldest = [row.get::<_, Option<String>>(2), row.get(5)];
    Ok(Backlog {
        pending: (past + retrying).unsigned_abs(),
        failed: row.get::<_, i64>(4).unsigned_abs(),
        oldest_pending: oldest.into_iter().flatten().min(),
    })
}

/// Takes the turn for `holder` if nobody holds it (or its lease ran
/// out), and keeps it with connections from `pool` until the `Lead` is
/// dropped or lost.
pub(super) async fn lead(pool: &Pool, holder: &str) -> Result<Option<Lead>, super::StoreError> {
    let asked = Instant::now();
    let client = pool.get().await.map_err(|e| super::errors::classify_pool(&e))?;
    if !renew(&client, holder).await.map_err(|e| super::errors::classify(&e))? {
        return Ok(None);
    }
    let lost = CancellationToken::new();
    let stop = CancellationToken::new();
    tokio::spawn(hold(pool.clone(), holder.to_owned(), asked, lost.clone(), stop.clone()));
    Ok(Some(Lead::held(lost, stop.drop_guard())))
}

/// Takes or extends the lease for `holder`: whether it holds it now.
async fn renew(client: &impl GenericClient, holder: &str) -> Result<bool, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "INSERT INTO forward_lead (id, holder, until)
                 VALUES (1, $1, clock_timestamp() + $2::bigint * interval '1 millisecond')
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE forward_lead.holder = excluded.holder OR forward_lead.until < clock_timestamp()
             RETURNING holder",
        )
        .await?;
    let lease_ms = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
    Ok(client.query_opt(&statement, &[&holder, &lease_ms]).await?.is_some())
}

/// Renews the lease until `stop` (then gives it up) or until it may have
/// run out or another host holds it (then says `lost`). `renewed`: when the
/// last renewal known to have succeeded was asked for.
async fn hold(pool: Pool, holder: String, mut renewed: Instant, lost: CancellationToken, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = tokio::time::timeout(RENEW_EVERY, give_up(&pool, &holder)).await;
                return;
            }
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
        let asked = Instant::now();
        let answer = tokio::time::timeout(RENEW_EVERY, async {
            let client = pool.get().await.ok()?;
            renew(&client, &holder).await.ok()
        })
        .await;
        match answer {
            Ok(Some(true)) => renewed = asked,
            Ok(Some(false)) => break,
            // Unknown: safe only while the last lease surely runs.
            _ if renewed.elapsed() >= LEASE - RENEW_EVERY => break,
            _ => {}
        }
    }
    lost.cancel();
}

async fn give_up(pool: &Pool, holder: &str) {
    if let Ok(client) = pool.get().await {
        let _ = client
            .execute("DELETE FROM forward_lead WHERE holder = $1", &[&holder])
            .await;
    }
}

/// Retry rows as the arrays `unnest` takes.
#[derive(Default)]
struct Columns {
    ids: Vec<String>,
    attempts: Vec<i32>,
    next_attempt_at: Vec<i64>,
    failed: Vec<bool>,
    errors: Vec<String>,
}

impl Columns {
    fn of<'a>(attempted: impl Iterator<Item = &'a Attempted>) -> Self {
        let mut columns = Self::default();
        for attempt in attempted {
            let (next_attempt_at, failed) = match attempt.state {
                RetryState::Due(at) => (at, false),
                RetryState::Failed | RetryState::Delivered => (0, attempt.state == RetryState::Failed),
            };
            columns.ids.push(codec::key(&attempt.message_id).into_owned());
            columns
                .attempts
                .push(i32::try_from(attempt.attempts).unwrap_or(i32::MAX));
            columns.next_attempt_at.push(next_attempt_at);
            columns.failed.push(failed);
            columns.errors.push(attempt.error.replace('\0', "\u{fffd}"));
        }
        columns
    }
}
