//! Forwarding's records on PostgreSQL (see `storage::forward`): the
//! position (`forward_position`, a place `(tx, seq)` of the feed), the
//! retries (`forward_retries`, keyed like `messages`, gone with their
//! message) and the lead: one host at a time forwards, the one holding a
//! session advisory lock on a connection of its own.
//!
//! A lead ends when its connection does: when the host dies the server
//! drops the lock at once (a killed process's sockets close) or, when the
//! host vanishes from the network, after the keepalives this connection
//! asks the server for; the host itself gives up its lead when a check
//! does not come back within `LEAD_CHECK`. Two hosts that both believe they
//! lead for a moment do no harm: the position moves by compare-and-set and
//! due retries are leased row by row (`SKIP LOCKED`).

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use super::{codec, feed, rows};
use crate::storage::FeedPosition;
use crate::storage::forward::{Attempted, Backlog, DueRetry, Lead, RetryState};

/// The advisory lock the forwarding host holds (any constant every host shares).
const LEAD_LOCK: i64 = 0x696e_6c65_745f_6677;

/// How often the lead's connection is checked, and how long a check may take.
const LEAD_CHECK: Duration = Duration::from_secs(2);

/// The server's keepalives on the lead's connection: a host gone from the
/// network loses its lock after about idle + interval × count seconds.
const LEAD_KEEPALIVES: &str =
    "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 -c tcp_user_timeout=10000";

/// Sets the position to the feed's head unless it is set.
pub(super) async fn set_position(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    let head = feed::head(client).await?;
    let statement = client
        .prepare_cached(
            "INSERT INTO forward_position (id, tx, seq) VALUES (1, $1::text::xid8, $2) ON CONFLICT (id) DO NOTHING",
        )
        .await?;
    client
        .execute(&statement, &[&head.epoch.to_string(), &seq_of(head)])
        .await?;
    Ok(())
}

/// The position, set to the feed's head when there is none yet.
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
             WHERE EXISTS (SELECT 1 FROM messages m WHERE m.message_id = r.message_id)
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

/// Tries to take the lead on a connection of its own made with `config`.
pub(super) async fn lead(config: &tokio_postgres::Config) -> Result<Option<Lead>, tokio_postgres::Error> {
    let mut config = config.clone();
    let options = match config.get_options() {
        Some(options) => format!("{options} {LEAD_KEEPALIVES}"),
        None => LEAD_KEEPALIVES.to_owned(),
    };
    config.options(options);
    let (client, connection) = config.connect(NoTls).await?;
    let connection = tokio::spawn(connection);
    let locked = client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEAD_LOCK]).await;
    match locked {
        Ok(row) if row.get::<_, bool>(0) => {}
        other => {
            connection.abort();
            return other.map(|_| None);
        }
    }
    let lost = CancellationToken::new();
    let stop = CancellationToken::new();
    tokio::spawn(hold(client, connection, lost.clone(), stop.clone()));
    Ok(Some(Lead::held(lost, stop.drop_guard())))
}

/// Keeps the lead's connection (and so the lock) until `stop`, and says
/// `lost` when the connection ends or stops answering first.
async fn hold(
    client: tokio_postgres::Client,
    mut connection: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let mut checks = tokio::time::interval(LEAD_CHECK);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = &mut connection => break,
            _ = checks.tick() => {
                let answered = tokio::time::timeout(LEAD_CHECK, client.simple_query("SELECT 1")).await;
                if !matches!(answered, Ok(Ok(_))) {
                    break;
                }
            }
        }
    }
    lost.cancel();
    // Closing the connection lets the lock go.
    drop(client);
    connection.abort();
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

fn seq_of(position: FeedPosition) -> i64 {
    i64::try_from(position.seq).unwrap_or(i64::MAX)
}
