//! The database layout and connection settings.

use rusqlite::Connection;

/// Bumped whenever `SCHEMA` changes shape; `ping` checks it.
pub const VERSION: i64 = 1;

/// `ts_micros` is the instant of `ts`: ordering and `since` use it, because
/// ISO-8601 strings with fractions do not sort by instant.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    message_id  TEXT PRIMARY KEY,
    from_msisdn TEXT NOT NULL,
    to_msisdn   TEXT NOT NULL,
    ts          TEXT NOT NULL,
    text        TEXT,
    created_at  TEXT NOT NULL,
    ts_micros   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_instant ON messages (ts_micros, message_id);
CREATE INDEX IF NOT EXISTS messages_by_sender ON messages (from_msisdn, ts_micros, message_id);
CREATE TABLE IF NOT EXISTS health_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at TEXT NOT NULL
);
";

/// How long a connection waits on another's lock before reporting busy.
const BUSY_TIMEOUT_MS: u32 = 2000;

/// Settings for the read-write connection, then the schema.
///
/// WAL lets readers run beside the writer; `synchronous=FULL` makes every
/// commit durable (fsync of the WAL) before its callers hear 200. Group commit
/// in the writer keeps that affordable.
pub fn prepare_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};
         BEGIN;
         {SCHEMA}
         PRAGMA user_version = {VERSION};
         COMMIT;"
    ))
}

/// Settings for a read-only connection.
pub fn prepare_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"))
}

/// Whether the schema this binary expects is in place.
pub fn is_current(conn: &Connection) -> rusqlite::Result<bool> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    Ok(version == VERSION)
}

/// Commits a one-row write, proving the database takes writes now: not
/// locked by another process, not read-only, not out of space.
pub fn probe_write(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO health_probe (id, checked_at) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
        [chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)],
    )?;
    tx.commit()
}
