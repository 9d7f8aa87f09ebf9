//! Messages as rows of the `messages` table: the one insert statement (the
//! writer's group commits and `inlet copy` both use it) and the one way a
//! row is read back.

use std::collections::HashSet;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::codec;
use crate::bindings::inlet::service::storage::{Message, StoredMessage, Timestamp};
use crate::storage::fold;

/// Inserts every row whose id is neither stored nor remembered as removed;
/// the ids it inserted. A concurrent insert of the same id elsewhere makes
/// it wait for that commit and then skip the row.
///
/// The remembered ids are read in the statement's snapshot; a removal
/// committed while it ran is caught by a trigger (see `schema`).
///
/// A row's feed place (see `feed`) is its transaction's and the next
/// number, unless it comes with SQLite's `seq` (`inlet copy`): then
/// transaction 0 and that number.
const INSERT: &str = "
INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, text, created_at, ts_micros, text_folded, raw_text, raw_folded, tx, seq)
SELECT message_id, from_msisdn, to_msisdn, ts, text, created_at, ts_micros, text_folded, raw_text, raw_folded,
       CASE WHEN sqlite_seq IS NULL THEN pg_current_xact_id() ELSE '0'::xid8 END,
       COALESCE(sqlite_seq, nextval('messages_feed_seq'))
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[], $8::text[], $9::bytea[], $10::bytea[], $11::int8[])
    AS given (message_id, from_msisdn, to_msisdn, ts, text, created_at, ts_micros, text_folded, raw_text, raw_folded, sqlite_seq)
WHERE NOT EXISTS (SELECT 1 FROM removed_ids WHERE removed_ids.message_id = given.message_id COLLATE \"C\")
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id";

/// A row to insert.
#[derive(Clone, Copy)]
pub(super) struct NewRow<'a> {
    pub message: &'a Message,
    pub created_at: &'a str,
    /// Its `seq` in the SQLite database `inlet copy` brings it from.
    pub sqlite_seq: Option<i64>,
}

/// Inserts `rows` through `client` (in the caller's transaction, or
/// committed by itself), the first of each id only; the ids it inserted.
/// The rows go in id order, whoever calls: two transactions (hosts' group
/// commits, a copy) then meet on their common ids in one order and cannot
/// deadlock.
pub(super) async fn insert(
    client: &impl GenericClient,
    rows: &[NewRow<'_>],
) -> Result<HashSet<String>, tokio_postgres::Error> {
    let mut seen = HashSet::with_capacity(rows.len());
    let mut rows: Vec<NewRow<'_>> = rows
        .iter()
        .copied()
        .filter(|row| seen.insert(row.message.message_id.as_str()))
        .collect();
    rows.sort_unstable_by(|a, b| a.message.message_id.cmp(&b.message.message_id));
    let columns = Columns::of(&rows);
    let statement = client.prepare_cached(INSERT).await?;
    let returned = client
        .query(
            &statement,
            &[
                &columns.ids,
                &columns.senders,
                &columns.recipients,
                &columns.ts,
                &columns.texts,
                &columns.created_at,
                &columns.micros,
                &columns.folded,
                &columns.raw_texts,
                &columns.raw_folded,
                &columns.sqlite_seqs,
            ],
        )
        .await?;
    Ok(returned.into_iter().map(|row| codec::unkey(row.get(0))).collect())
}

/// The columns `message` reads, in its order (a macro, so that
/// `STORED_COLUMNS` can extend it).
macro_rules! message_columns {
    () => {
        "message_id, from_msisdn, to_msisdn, ts, ts_micros, text, raw_text"
    };
}
pub(super) const MESSAGE_COLUMNS: &str = message_columns!();

/// `MESSAGE_COLUMNS`, then `created_at`: what `stored` reads.
pub(super) const STORED_COLUMNS: &str = concat!(message_columns!(), ", created_at");

/// A row selected as `MESSAGE_COLUMNS`, as it was stored.
pub(super) fn message(row: &Row) -> Message {
    Message {
        message_id: codec::unkey(row.get(0)),
        from: codec::unkey(row.get(1)),
        to: codec::unkey(row.get(2)),
        ts: Timestamp {
            text: codec::unkey(row.get(3)),
            unix_micros: row.get(4),
        },
        text: codec::text(row.get(5), row.get(6)),
    }
}

/// A row selected as `STORED_COLUMNS`.
pub(super) fn stored(row: &Row) -> StoredMessage {
    StoredMessage {
        message: message(row),
        created_at: row.get(7),
    }
}

/// A group's rows as the statement's parameter arrays.
struct Columns {
    ids: Vec<String>,
    senders: Vec<String>,
    recipients: Vec<String>,
    ts: Vec<String>,
    texts: Vec<Option<String>>,
    created_at: Vec<String>,
    micros: Vec<i64>,
    folded: Vec<Option<String>>,
    raw_texts: Vec<Option<Vec<u8>>>,
    raw_folded: Vec<Option<Vec<u8>>>,
    /// Each row's SQLite `seq`, if it comes from there.
    sqlite_seqs: Vec<Option<i64>>,
}

impl Columns {
    fn of(new_rows: &[NewRow<'_>]) -> Self {
        let (rows, created_at): (Vec<&Message>, Vec<String>) = new_rows
            .iter()
            .map(|row| (row.message, row.created_at.to_owned()))
            .unzip();
        let sqlite_seqs = new_rows.iter().map(|row| row.sqlite_seq).collect();
        let folded: Vec<Option<String>> = rows.iter().map(|m| m.text.as_deref().map(fold)).collect();
        Self {
            ids: rows.iter().map(|m| codec::key(&m.message_id).into_owned()).collect(),
            senders: rows.iter().map(|m| codec::key(&m.from).into_owned()).collect(),
            recipients: rows.iter().map(|m| codec::key(&m.to).into_owned()).collect(),
            ts: rows.iter().map(|m| codec::key(&m.ts.text).into_owned()).collect(),
            texts: rows
                .iter()
                .map(|m| m.text.as_deref().map(|t| codec::searchable(t).into_owned()))
                .collect(),
            created_at,
            micros: rows.iter().map(|m| m.ts.unix_micros).collect(),
            raw_texts: rows.iter().map(|m| m.text.as_deref().and_then(codec::raw)).collect(),
            raw_folded: folded.iter().map(|f| f.as_deref().and_then(codec::raw)).collect(),
            folded: folded
                .iter()
                .map(|f| f.as_deref().map(|f| codec::searchable(f).into_owned()))
                .collect(),
            sqlite_seqs,
        }
    }
}
