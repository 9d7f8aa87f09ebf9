//! The database layout, its migrations and connection settings.
//!
//! Besides the messages themselves the schema keeps what the read paths need
//! to stay fast at millions of rows, maintained by triggers in the same
//! transaction as each insert (so they can never disagree with the rows):
//! running totals, per-sender counts, per-hour counts and a trigram index of
//! `text` for substring search.

use rusqlite::{Connection, Transaction};

use rusqlite::functions::FunctionFlags;

use crate::storage::{fold, hour_of};

/// Bumped whenever `SCHEMA` changes shape; `ping` checks it.
pub(super) const VERSION: i64 = 9;

/// `text_folded` is `text` folded as `q` compares it (see `storage::fold`), written
/// by the writer. The text index holds it, with a case-sensitive trigram
/// tokenizer and token positions (`detail = full`): a phrase query of a
/// folded needle then matches exactly the rows whose text contains it as `q`
/// defines it, so a search is counted from the index alone (see `queries`).
/// FTS5's own case folding is not Unicode's full lowercase mapping. The
/// index is filled and emptied by explicit inserts and `'delete'` commands,
/// since it covers only the rows up to `text_index.indexed_through`.
///
/// The text index merges its segments 16 at a time instead of 4: each
/// indexing transaction adds a segment, and merging them four by four cost
/// about as much as indexing the text. Those merges run a little after each
/// indexing transaction rather than all at once when a level fills up
/// (`crisismerge` 64, which by default equals 16), so that no one chunk, and
/// no group commit waiting behind it, takes many times longer than the rest.
///
/// Rows at or below `text_index.indexed_through` are in the text index; the
/// insert trigger indexes a new row at once only when its `seq` is that low,
/// which happened when the newest rows were deleted and SQLite handed out
/// their numbers again (before version 8: see `feed_mark`). The delete trigger removes only indexed rows.
///
/// `totals.removed` counts deletions ever made, so that a remembered search
/// total can tell whether it still holds (see `search_counts`).
///
/// `removed_ids` remembers the id of every deleted row (however it was
/// deleted), with its `created_at` and the time of its removal, until the
/// retention policy forgets it (`removals::expire`); an insert of a
/// remembered id is ignored (`RAISE(IGNORE)`: no row, no change), which the
/// writer reports as `duplicate`. Version 6 had no `removed_ids`.
///
/// `seq` is also the feed's order, so it never goes back: the writer
/// numbers each row past `feed_mark`, which a delete of the newest row
/// raises to its `seq` (SQLite alone would hand that number out again; a
/// delete of any other row, such as retention's, leaves it).
/// Version 7 had no `feed_mark`; it starts at the highest `seq` stored.
///
/// `forward_position` and `forward_retries` are forwarding's (see
/// `storage::forward`); a removed message's retry row goes with it.
/// Version 8 had neither.
///
/// `seq` is the stable rowid the text index refers to (a VACUUM may renumber
/// an implicit rowid). `ts_micros` is the instant of `ts`: ordering and
/// `since` use it, because ISO-8601 strings with fractions do not sort by
/// instant. The hour of a row is `hour_of!`.
const SCHEMA: &str = concat!(
    "
CREATE TABLE IF NOT EXISTS messages (
    seq         INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL UNIQUE,
    from_msisdn TEXT NOT NULL,
    to_msisdn   TEXT NOT NULL,
    ts          TEXT NOT NULL,
    text        TEXT,
    created_at  TEXT NOT NULL,
    ts_micros   INTEGER NOT NULL,
    text_folded TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_instant ON messages (ts_micros, message_id);
CREATE INDEX IF NOT EXISTS messages_by_sender ON messages (from_msisdn, ts_micros, message_id);

CREATE TABLE IF NOT EXISTS totals (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    messages INTEGER NOT NULL,
    senders  INTEGER NOT NULL,
    removed  INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO totals (id, messages, senders) VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS sender_counts (
    from_msisdn TEXT PRIMARY KEY,
    messages    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sender_counts_by_count ON sender_counts (messages DESC, from_msisdn);
CREATE TABLE IF NOT EXISTS hourly_counts (
    hour     INTEGER PRIMARY KEY,
    messages INTEGER NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS message_text USING fts5 (
    text_folded, content = 'messages', content_rowid = 'seq', tokenize = 'trigram case_sensitive 1',
    detail = full, columnsize = 0
);
INSERT INTO message_text (message_text, rank) VALUES ('automerge', 16);
INSERT INTO message_text (message_text, rank) VALUES ('crisismerge', 64);
CREATE TABLE IF NOT EXISTS text_index (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_through  INTEGER NOT NULL
);
INSERT OR IGNORE INTO text_index (id, indexed_through) VALUES (1, 0);

CREATE TRIGGER IF NOT EXISTS messages_counted AFTER INSERT ON messages BEGIN
    UPDATE totals SET
        messages = messages + 1,
        senders = senders + NOT EXISTS (SELECT 1 FROM sender_counts WHERE from_msisdn = new.from_msisdn);
    INSERT INTO sender_counts (from_msisdn, messages) VALUES (new.from_msisdn, 1)
        ON CONFLICT (from_msisdn) DO UPDATE SET messages = messages + 1;
    INSERT INTO hourly_counts (hour, messages) VALUES (",
    hour_of!("new.ts_micros"),
    ", 1)
        ON CONFLICT (hour) DO UPDATE SET messages = messages + 1;
    INSERT INTO message_text (rowid, text_folded)
        SELECT new.seq, new.text_folded WHERE new.seq <= (SELECT indexed_through FROM text_index);
END;

CREATE TRIGGER IF NOT EXISTS messages_uncounted AFTER DELETE ON messages BEGIN
    UPDATE sender_counts SET messages = messages - 1 WHERE from_msisdn = old.from_msisdn;
    DELETE FROM sender_counts WHERE from_msisdn = old.from_msisdn AND messages = 0;
    UPDATE totals SET
        messages = messages - 1,
        senders = senders - NOT EXISTS (SELECT 1 FROM sender_counts WHERE from_msisdn = old.from_msisdn),
        removed = removed + 1;
    UPDATE hourly_counts SET messages = messages - 1 WHERE hour = ",
    hour_of!("old.ts_micros"),
    ";
    INSERT INTO message_text (message_text, rowid, text_folded)
        SELECT 'delete', old.seq, old.text_folded WHERE old.seq <= (SELECT indexed_through FROM text_index);
END;

CREATE TABLE IF NOT EXISTS removed_ids (
    message_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    removed_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS removed_ids_by_age ON removed_ids (removed_at);

CREATE TRIGGER IF NOT EXISTS messages_remembered AFTER DELETE ON messages BEGIN
    INSERT INTO removed_ids (message_id, created_at, removed_at)
        VALUES (old.message_id, old.created_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        ON CONFLICT (message_id) DO UPDATE SET created_at = excluded.created_at, removed_at = excluded.removed_at;
END;

CREATE TRIGGER IF NOT EXISTS messages_not_removed BEFORE INSERT ON messages
    WHEN EXISTS (SELECT 1 FROM removed_ids WHERE message_id = new.message_id)
BEGIN
    SELECT RAISE(IGNORE);
END;

CREATE TABLE IF NOT EXISTS feed_mark (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO feed_mark (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM messages;
CREATE TRIGGER IF NOT EXISTS messages_feed_mark AFTER DELETE ON messages
    WHEN old.seq > (SELECT seq FROM feed_mark)
        AND old.seq > COALESCE((SELECT MAX(seq) FROM messages), 0)
BEGIN
    UPDATE feed_mark SET seq = old.seq;
END;

CREATE TABLE IF NOT EXISTS forward_position (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS forward_retries (
    message_id      TEXT PRIMARY KEY,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    failed          INTEGER NOT NULL,
    last_error      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS forward_retries_due ON forward_retries (failed, next_attempt_at);
CREATE TRIGGER IF NOT EXISTS messages_unforwarded AFTER DELETE ON messages BEGIN
    DELETE FROM forward_retries WHERE message_id = old.message_id;
END;

CREATE TABLE IF NOT EXISTS health_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at TEXT NOT NULL
);
"
);

/// Versions 2 and 3 did not count deletions (`totals.removed`, which tells
/// remembered search totals apart from stale ones).
const COUNT_DELETIONS: &str = "
ALTER TABLE totals ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
";

/// Versions 2 to 5 indexed `text` itself (2 to 4 folded by FTS5, without
/// positions; 5 as `lower(text)`, which folds ASCII letters only). Their
/// index and the triggers that keep it are replaced; the rows it covered
/// are indexed again (`INDEX_COVERED_ROWS`) once `text_folded` is filled.
const DROP_TEXT_INDEX: &str = "
DROP TRIGGER IF EXISTS messages_counted;
DROP TRIGGER IF EXISTS messages_uncounted;
DROP TABLE IF EXISTS message_text;
";

/// Versions 2 to 5 had no `text_folded`: one pass fills it (`inlet_fold`
/// is registered on the writer's connection, `register_fold`).
const ADD_FOLDED_TEXT: &str = "
ALTER TABLE messages ADD COLUMN text_folded TEXT;
UPDATE messages SET text_folded = inlet_fold(text) WHERE text IS NOT NULL;
";

/// Marks every row as covered by the text index: true of version 2, which
/// indexed in the insert trigger, and of version 1's copied rows.
const ALL_ROWS_INDEXED: &str = "
UPDATE text_index SET indexed_through = (SELECT COALESCE(MAX(seq), 0) FROM messages);
";

/// Indexes the rows a migrated database counts as indexed (once).
const INDEX_COVERED_ROWS: &str = "
INSERT INTO message_text (rowid, text_folded)
    SELECT seq, text_folded FROM messages WHERE seq <= (SELECT indexed_through FROM text_index);
";

/// Version 1 kept only the messages table (implicit rowid, no aggregates).
/// Its rows are copied into the current table, which fills every aggregate
/// through the insert trigger.
const MIGRATE_FROM_1: &str = "
DROP INDEX IF EXISTS messages_by_instant;
DROP INDEX IF EXISTS messages_by_sender;
ALTER TABLE messages RENAME TO messages_v1;
";
const COPY_FROM_1: &str = "
INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, text, created_at, ts_micros, text_folded)
    SELECT message_id, from_msisdn, to_msisdn, ts, text, created_at, ts_micros, inlet_fold(text)
    FROM messages_v1 ORDER BY ts_micros, message_id;
DROP TABLE messages_v1;
";

/// The writer's page cache: the index pages inserts land on stay in memory
/// instead of being read back through the OS. It fills as the database
/// grows and counts in the resident memory, and twice this size measured no
/// faster (the pages inserts revisit are the few last leaves of each index;
/// random ids miss beyond either size at a million rows).
const WRITER_CACHE_KIB: u32 = 16 * 1024;

/// How long a connection waits on another's lock before reporting busy.
const BUSY_TIMEOUT_MS: u32 = 2000;

/// Settings for the read-write connection, then the schema (migrating an
/// older one in the same transaction).
///
/// WAL lets readers run beside the writer; `synchronous=FULL` makes every
/// commit durable (fsync of the WAL) before its callers hear 200. Group commit
/// in the writer keeps that affordable.
pub(super) fn prepare_writer(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA cache_size = -{WRITER_CACHE_KIB};
         PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"
    ))?;
    register_fold(conn)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    apply(&tx)?;
    tx.commit()
}

fn apply(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let found = user_version(tx)?;
    if found == VERSION {
        return Ok(());
    }
    if found > VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "database schema version {found} is newer than this binary's {VERSION}"
            )),
        ));
    }
    match found {
        1 => tx.execute_batch(MIGRATE_FROM_1)?,
        2 | 3 => tx.execute_batch(&format!("{COUNT_DELETIONS}{DROP_TEXT_INDEX}{ADD_FOLDED_TEXT}"))?,
        4 | 5 => tx.execute_batch(&format!("{DROP_TEXT_INDEX}{ADD_FOLDED_TEXT}"))?,
        _ => {}
    }
    tx.execute_batch(SCHEMA)?;
    match found {
        1 => tx.execute_batch(&format!("{COPY_FROM_1}{ALL_ROWS_INDEXED}"))?,
        2 => tx.execute_batch(ALL_ROWS_INDEXED)?,
        _ => {}
    }
    // Versions 1 to 5 lost their text index above; 6 keeps its own.
    if (1..=5).contains(&found) {
        tx.execute_batch(INDEX_COVERED_ROWS)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {VERSION};"))
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Settings for a read-only connection.
pub(super) fn prepare_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"))
}

/// Whether the schema this binary expects is in place.
pub(super) fn is_current(conn: &Connection) -> rusqlite::Result<bool> {
    Ok(user_version(conn)? == VERSION)
}

/// Commits a one-row write, proving the database takes writes now: not
/// locked by another process, not read-only, not out of space.
pub(super) fn probe_write(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO health_probe (id, checked_at) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
        [chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)],
    )?;
    tx.commit()
}

/// Makes `inlet_fold(text)` available on `conn`, for the migrations that fill
/// `text_folded` in older databases (NULL stays NULL).
fn register_fold(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "inlet_fold",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS,
        |ctx| Ok(ctx.get::<Option<String>>(0)?.as_deref().map(fold)),
    )
}
