//! `inlet copy`: a SQLite database's messages into PostgreSQL, then checked
//! row by row.
//!
//! The copy walks the SQLite table by rowid in chunks. Each chunk is one
//! PostgreSQL transaction: the same insert as the hosts' group commits (an
//! id stored already is skipped, never overwritten; `created_at` is kept)
//! and the chunk's last rowid in `copy_progress`, so an interrupted copy
//! resumes after its last committed chunk and a repeated one copies
//! nothing. The check then reads every source row's id back from
//! PostgreSQL and compares the whole message. It may run while hosts serve
//! from either database: rows that arrive in SQLite after the copy passed
//! them are picked up by running it again. The ids SQLite remembers as
//! removed are copied too, so that a redelivery of an erased message stays
//! a duplicate after the move.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use deadpool_postgres::Object;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::rows::{self, NewRow};
use super::{codec, compact, connection_config, pool, schema};
use crate::bindings::inlet::service::storage::Message;
use crate::config::PgUrl;
use crate::storage::sqlite::message_from_row;

/// How a copy runs.
#[derive(Debug, Clone, Copy)]
pub struct CopyPlan {
    /// Rows per chunk (one PostgreSQL transaction each).
    pub chunk: u32,
    /// Stop copying after this many chunks (to test resuming); the check still runs.
    pub stop_after_chunks: Option<u64>,
}

/// What a copy did and found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Messages in the SQLite database when checked.
    pub source_rows: u64,
    /// Messages this run inserted into PostgreSQL.
    pub copied: u64,
    /// Messages this run found stored already (an earlier run, or a host
    /// on PostgreSQL) and left as they were.
    pub already_present: u64,
    /// Source messages PostgreSQL holds with the same content.
    pub verified: u64,
    /// Source messages whose id PostgreSQL holds with other content.
    pub mismatched: u64,
    /// Source messages PostgreSQL does not hold.
    pub missing: u64,
    /// Removed messages' ids this run added to those PostgreSQL remembers.
    pub removed_ids: u64,
}

impl CopyReport {
    /// Whether every source message is in PostgreSQL as it is in SQLite.
    pub fn complete(&self) -> bool {
        self.verified == self.source_rows
    }
}

/// A SQLite row with its place in the walk.
struct SourceRow {
    rowid: i64,
    message: Message,
    created_at: String,
}

/// Copies the messages of the SQLite file `source` into the database at
/// `target` (its schema applied first), then checks them.
pub async fn from_sqlite(source: &Path, target: &PgUrl, plan: CopyPlan) -> anyhow::Result<CopyReport> {
    let sqlite = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", source.display()))?;
    let pool = pool(&connection_config(target), 2)?;
    let mut client = pool.get().await.context("cannot connect to the PostgreSQL database")?;
    schema::migrate(&mut client).await?;
    let name = source.canonicalize()?.display().to_string();
    let mut report = CopyReport::default();
    let mut after = resume_point(&client, &name).await?;
    let mut chunks = 0;
    while plan.stop_after_chunks.is_none_or(|most| chunks < most) {
        let rows = read_chunk(&sqlite, after, plan.chunk)?;
        let Some(last) = rows.last().map(|row| row.rowid) else {
            break;
        };
        copy_chunk(&mut client, &name, &rows, &mut report).await?;
        after = last;
        chunks += 1;
    }
    report.removed_ids = copy_removed_ids(&sqlite, &client, plan.chunk).await?;
    // Each chunk left count deltas: fold them now rather than leave a
    // million of them to the first host that serves this database.
    compact::fold(&pool).await?;
    compact::vacuum(&pool).await?;
    check(&sqlite, &client, plan.chunk, report).await
}

/// The rowid the last run of a copy from `source` committed up to.
async fn resume_point(client: &Object, source: &str) -> anyhow::Result<i64> {
    let row = client
        .query_opt("SELECT last_rowid FROM copy_progress WHERE source = $1", &[&source])
        .await?;
    Ok(row.map_or(0, |row| row.get(0)))
}

/// One chunk and the progress it makes, in one transaction.
async fn copy_chunk(
    client: &mut Object,
    source: &str,
    rows: &[SourceRow],
    report: &mut CopyReport,
) -> anyhow::Result<()> {
    let last = rows.last().map_or(0, |row| row.rowid);
    let new_rows: Vec<NewRow<'_>> = rows
        .iter()
        .map(|r| NewRow {
            message: &r.message,
            created_at: &r.created_at,
            sqlite_seq: Some(r.rowid),
        })
        .collect();
    let tx = client.transaction().await?;
    let copied = rows::insert(&tx, &new_rows).await?.len() as u64;
    tx.execute(
        "INSERT INTO copy_progress (source, last_rowid) VALUES ($1, $2)
         ON CONFLICT (source) DO UPDATE SET last_rowid = excluded.last_rowid",
        &[&source, &last],
    )
    .await?;
    tx.commit().await?;
    report.copied += copied;
    report.already_present += rows.len() as u64 - copied;
    Ok(())
}

/// Copies the ids SQLite remembers as removed, `chunk` at a time, keeping
/// those PostgreSQL remembers already; how many it added. A source from a
/// release that remembered none has no `removed_ids`.
async fn copy_removed_ids(sqlite: &Connection, client: &Object, chunk: u32) -> anyhow::Result<u64> {
    let remembers: bool = sqlite.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'removed_ids')",
        [],
        |row| row.get(0),
    )?;
    if !remembers {
        return Ok(0);
    }
    let mut read = sqlite.prepare(
        "SELECT message_id, created_at, removed_at FROM removed_ids
         WHERE message_id > ?1 ORDER BY message_id LIMIT ?2",
    )?;
    let insert = "INSERT INTO removed_ids (message_id, created_at, removed_at)
                  SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
                  ON CONFLICT (message_id) DO NOTHING";
    let (mut after, mut added) = (String::new(), 0);
    loop {
        let rows: Vec<(String, String, String)> = read
            .query_map(rusqlite::params![after, chunk], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        let Some(last) = rows.last().map(|(id, _, _)| id.clone()) else {
            return Ok(added);
        };
        let ids: Vec<String> = rows.iter().map(|(id, _, _)| codec::key(id).into_owned()).collect();
        let (created, removed): (Vec<&str>, Vec<&str>) = rows.iter().map(|(_, c, r)| (c.as_str(), r.as_str())).unzip();
        added += client.execute(insert, &[&ids, &created, &removed]).await?;
        after = last;
    }
}

/// Compares every source message with what PostgreSQL holds under its id.
async fn check(sqlite: &Connection, client: &Object, chunk: u32, mut report: CopyReport) -> anyhow::Result<CopyReport> {
    let select = format!(
        "SELECT {} FROM messages WHERE message_id = ANY($1)",
        rows::MESSAGE_COLUMNS
    );
    let mut after = 0;
    loop {
        let rows = read_chunk(sqlite, after, chunk)?;
        let Some(last) = rows.last().map(|row| row.rowid) else {
            return Ok(report);
        };
        let ids: Vec<String> = rows
            .iter()
            .map(|row| codec::key(&row.message.message_id).into_owned())
            .collect();
        let stored: HashMap<String, Message> = client
            .query(&select, &[&ids])
            .await?
            .iter()
            .map(rows::message)
            .map(|message| (message.message_id.clone(), message))
            .collect();
        for row in &rows {
            match stored.get(&row.message.message_id) {
                Some(message) if *message == row.message => report.verified += 1,
                Some(_) => report.mismatched += 1,
                None => report.missing += 1,
            }
        }
        report.source_rows += rows.len() as u64;
        after = last;
    }
}

/// Up to `chunk` SQLite rows after `rowid`, in rowid order (every schema
/// version has the columns read here).
fn read_chunk(sqlite: &Connection, rowid: i64, chunk: u32) -> rusqlite::Result<Vec<SourceRow>> {
    let mut statement = sqlite.prepare_cached(
        "SELECT message_id, from_msisdn, to_msisdn, ts, ts_micros, text, rowid, created_at
         FROM messages WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
    )?;
    statement
        .query_map(rusqlite::params![rowid, chunk], |row| {
            Ok(SourceRow {
                message: message_from_row(row)?,
                rowid: row.get(6)?,
                created_at: row.get(7)?,
            })
        })?
        .collect()
}
