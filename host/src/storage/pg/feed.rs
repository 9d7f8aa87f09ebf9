//! The feed on PostgreSQL, for several hosts at once.
//!
//! A row's place is `(tx, seq)`: the id of the transaction that stored it
//! (`pg_current_xact_id()`, one per group commit) and a number from a
//! sequence. Numbers are drawn when rows are inserted, not when they
//! commit, so a reader could see a later row before an earlier one commits.
//! A read therefore hands out only rows of transactions older than every
//! transaction still running (`pg_snapshot_xmin`): none of those can still
//! add a row, and every transaction that starts later gets a larger id. So
//! nothing ever lands behind a position handed out; a transaction held open
//! (by any client of the database) only delays what comes after it.
//!
//! Rows stored before the feed existed have `tx` 1 (schema version 3), and
//! rows `inlet copy` brings from SQLite have `tx` 0 and SQLite's `seq`,
//! so that a SQLite feed position goes on working here.

use std::sync::LazyLock;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::rows;
use crate::storage::{FEED_START, FeedPage, FeedPosition};

/// Rows of transactions no longer running, after `$1`/`$2`. (The order
/// names the table's columns: were the text in the select list called
/// `tx`, a bare `tx` would sort by it, `1000` before `786`.)
static READ: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, tx::text AS feed_tx, seq FROM messages
         WHERE (tx, seq) > ($1::text::xid8, $2) AND tx < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY messages.tx, messages.seq LIMIT $3",
        rows::STORED_COLUMNS
    )
});

/// Whether `$1` is a transaction id this database has handed out.
const ISSUED: &str = "SELECT $1::text::xid8 < pg_snapshot_xmax(pg_current_snapshot())";

/// The last row a read would hand out now.
const HEAD: &str = "SELECT tx::text AS feed_tx, seq FROM messages
     WHERE tx < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY messages.tx DESC, messages.seq DESC LIMIT 1";

/// At most `limit` messages after `after`; none when `after` names a
/// transaction this database has not reached (another database's).
pub(super) async fn read(
    client: &impl GenericClient,
    after: FeedPosition,
    limit: u32,
) -> Result<Option<FeedPage>, tokio_postgres::Error> {
    let Ok(after_seq) = i64::try_from(after.seq) else {
        return Ok(None);
    };
    let epoch = after.epoch.to_string();
    let statement = client.prepare_cached(&READ).await?;
    let found = client
        .query(&statement, &[&epoch, &after_seq, &i64::from(limit)])
        .await?;
    let next = found.last().map_or(after, |row| position(row, 8, 9));
    if found.is_empty() {
        let issued = client.prepare_cached(ISSUED).await?;
        if !client.query_one(&issued, &[&epoch]).await?.get::<_, bool>(0) {
            return Ok(None);
        }
    }
    let messages = found.iter().map(rows::stored).collect();
    Ok(Some(FeedPage { messages, next }))
}

/// The position of the last message a read would hand out now.
pub(super) async fn head(client: &impl GenericClient) -> Result<FeedPosition, tokio_postgres::Error> {
    let statement = client.prepare_cached(HEAD).await?;
    let last = client.query_opt(&statement, &[]).await?;
    Ok(last.map_or(FEED_START, |row| position(&row, 0, 1)))
}

/// The position in columns `tx` (as text) and `seq` of `row`.
pub(super) fn position(row: &Row, tx: usize, seq: usize) -> FeedPosition {
    FeedPosition {
        epoch: row.get::<_, &str>(tx).parse().unwrap_or_default(),
        seq: row.get::<_, i64>(seq).unsigned_abs(),
    }
}
