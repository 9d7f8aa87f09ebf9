//! The SQLite store: its fast paths (maintained aggregates, trigram index,
//! remembered search totals) give exactly what counting and scanning the rows
//! gives, including after migrations from every earlier schema version, after
//! rows are deleted by hand and while the text index has not caught up with
//! the newest rows.

use std::path::Path;
use std::time::{Duration, Instant};

use inlet::storage::sqlite::{IndexSchedule, bulk};
use inlet::storage::{MessageStore, SqliteStore};
use rusqlite::Connection;

use crate::conformance::*;

/// The rows of a SQLite database file, read without Inlet's code.
fn sqlite_rows(path: &Path) -> Vec<Row> {
    let conn = Connection::open(path).unwrap();
    let mut statement = conn
        .prepare("SELECT message_id, from_msisdn, ts, ts_micros, text FROM messages")
        .unwrap();
    statement
        .query_map([], |row| {
            Ok(Row {
                id: row.get(0)?,
                from: row.get(1)?,
                ts: row.get(2)?,
                micros: row.get(3)?,
                text: row.get(4)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

async fn assert_matches_rows(store: &SqliteStore, path: &Path) {
    assert_matches(store, &sqlite_rows(path)).await;
}

#[tokio::test]
async fn fast_paths_agree_with_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let report = bulk::load(&path, varied_messages()).unwrap();
    assert_eq!((report.created, report.duplicates), (600, 0));
    let again = bulk::load(&path, varied_messages()).unwrap();
    assert_eq!((again.created, again.duplicates), (0, 600));
    let store = SqliteStore::open(&path).unwrap();
    assert_matches_rows(&store, &path).await;
}

#[tokio::test]
async fn cursor_pages_walk_every_match_once_even_as_rows_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    bulk::load(&path, varied_messages()).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_cursor_walks(&store, &sqlite_rows(&path)).await;
}

#[tokio::test]
async fn aggregates_follow_rows_deleted_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    bulk::load(&path, varied_messages()).unwrap();
    let conn = Connection::open(&path).unwrap();
    let deleted = conn
        .execute(
            "DELETE FROM messages WHERE from_msisdn = '+91000000001' OR seq % 5 = 0",
            [],
        )
        .unwrap();
    assert!(deleted > 100, "deleted {deleted}");
    let store = SqliteStore::open(&path).unwrap();
    assert_matches_rows(&store, &path).await;
}

/// Version 1's layout, as released: the messages table and two indexes.
const SCHEMA_V1: &str = "
CREATE TABLE messages (
    message_id TEXT PRIMARY KEY, from_msisdn TEXT NOT NULL, to_msisdn TEXT NOT NULL,
    ts TEXT NOT NULL, text TEXT, created_at TEXT NOT NULL, ts_micros INTEGER NOT NULL);
CREATE INDEX messages_by_instant ON messages (ts_micros, message_id);
CREATE INDEX messages_by_sender ON messages (from_msisdn, ts_micros, message_id);
CREATE TABLE health_probe (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at TEXT NOT NULL);
PRAGMA user_version = 1;
";

#[tokio::test]
async fn a_version_1_database_is_migrated_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    for m in varied_messages() {
        conn.execute(
            "INSERT INTO messages VALUES (?1, ?2, ?3, ?4, ?5, 'then', ?6)",
            rusqlite::params![m.message_id, m.from, m.to, m.ts.text, m.text, m.ts.unix_micros],
        )
        .unwrap();
    }
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    store.ping().await.unwrap();
    assert_matches_rows(&store, &path).await;
    let created_at: String = Connection::open(&path)
        .unwrap()
        .query_row("SELECT created_at FROM messages LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(created_at, "then");
}

#[test]
fn a_database_from_a_newer_release_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let error = SqliteStore::open(&path).err().expect("must refuse");
    assert!(format!("{error:#}").contains("newer"), "{error:#}");
}

/// The highest row number in the text index.
fn indexed_through(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("SELECT indexed_through FROM text_index", [], |r| r.get(0))
        .unwrap()
}

/// Never indexes on its own: only rows the insert trigger indexes get in.
const HELD_BACK: IndexSchedule = IndexSchedule {
    chunk: u32::MAX,
    idle_after: Duration::from_secs(3600),
};

#[tokio::test]
async fn searches_are_exact_while_the_text_index_lags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    bulk::load(&path, varied_messages()).unwrap();
    assert_eq!(indexed_through(&path), 600);
    // The newest rows go; their numbers are not handed out again (the feed
    // follows them), so the rows inserted after are all past the index's
    // mark and are searched without it.
    let conn = Connection::open(&path).unwrap();
    assert_eq!(conn.execute("DELETE FROM messages WHERE seq > 550", []).unwrap(), 50);
    let store = SqliteStore::open_with(&path, HELD_BACK).unwrap();
    for message in numbered_messages(600..900) {
        store.insert(message).await.unwrap();
    }
    let newest: i64 = conn
        .query_row("SELECT MAX(seq) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!((indexed_through(&path), newest), (600, 900));
    assert_matches_rows(&store, &path).await;
}

#[tokio::test]
async fn the_text_index_follows_inserts_chunk_by_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let every_64 = IndexSchedule { chunk: 64, ..HELD_BACK };
    let store = SqliteStore::open_with(&path, every_64).unwrap();
    for message in numbered_messages(0..200) {
        store.insert(message).await.unwrap();
    }
    // A chunk is indexed after each commit that leaves 64 rows waiting.
    assert_eq!(indexed_through(&path), 192);
    assert_matches_rows(&store, &path).await;
}

#[tokio::test]
async fn the_text_index_catches_up_when_the_writer_is_idle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = SqliteStore::open(&path).unwrap();
    for message in numbered_messages(0..100) {
        store.insert(message).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while indexed_through(&path) < 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(indexed_through(&path), 100);
}

/// A database laid out by `fixture` (an earlier release's schema), holding
/// `varied_messages` inserted through that release's triggers.
fn database_from_release(path: &Path, fixture: &str) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(fixture).unwrap();
    for m in varied_messages() {
        conn.execute(
            "INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, text, created_at, ts_micros)
             VALUES (?1, ?2, ?3, ?4, ?5, 'then', ?6)",
            rusqlite::params![m.message_id, m.from, m.to, m.ts.text, m.text, m.ts.unix_micros],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn a_version_2_database_is_migrated_with_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    database_from_release(&path, include_str!("fixtures/schema-v2.sql"));
    let store = SqliteStore::open_with(&path, HELD_BACK).unwrap();
    assert_eq!(indexed_through(&path), 600);
    for message in numbered_messages(600..700) {
        store.insert(message).await.unwrap();
    }
    assert_eq!(indexed_through(&path), 600, "new rows wait for the writer");
    assert_matches_rows(&store, &path).await;
}

/// Deletes by hand, as an operator might; returns the rows deleted.
fn delete_by_hand(path: &Path, condition: &str) -> usize {
    Connection::open(path)
        .unwrap()
        .execute(&format!("DELETE FROM messages WHERE {condition}"), [])
        .unwrap()
}

#[tokio::test]
async fn remembered_search_totals_follow_new_and_deleted_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    bulk::load(&path, varied_messages()).unwrap();
    let store = SqliteStore::open_with(&path, HELD_BACK).unwrap();
    assert_matches_rows(&store, &path).await;
    for message in numbered_messages(600..700) {
        store.insert(message).await.unwrap();
    }
    assert_matches_rows(&store, &path).await;
    // Older rows go: the newest row number stays where it was.
    assert_eq!(delete_by_hand(&path, "seq % 5 = 0"), 140);
    assert_matches_rows(&store, &path).await;
    // The newest rows go; the rows after them are numbered past them.
    assert_eq!(delete_by_hand(&path, "seq > 650"), 40);
    for message in numbered_messages(700..760) {
        store.insert(message).await.unwrap();
    }
    assert_matches_rows(&store, &path).await;
}

#[tokio::test]
async fn a_version_3_database_counts_deletions_once_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    database_from_release(&path, include_str!("fixtures/schema-v3.sql"));
    let store = SqliteStore::open_with(&path, HELD_BACK).unwrap();
    assert_matches_rows(&store, &path).await;
    assert_eq!(delete_by_hand(&path, "seq % 3 = 0 AND seq < 600"), 199);
    assert_matches_rows(&store, &path).await;
}

#[tokio::test]
async fn a_version_4_database_is_indexed_again_once_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    database_from_release(&path, include_str!("fixtures/schema-v4.sql"));
    // As version 4's writer left it: every row indexed, text as it is.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "INSERT INTO message_text (rowid, text) SELECT seq, text FROM messages;
             UPDATE text_index SET indexed_through = (SELECT MAX(seq) FROM messages);",
        )
        .unwrap();
    let store = SqliteStore::open_with(&path, HELD_BACK).unwrap();
    assert_eq!(indexed_through(&path), 600);
    assert_matches_rows(&store, &path).await;
    assert_eq!(delete_by_hand(&path, "seq % 4 = 0"), 150);
    assert_matches_rows(&store, &path).await;
}

#[tokio::test]
async fn a_version_5_database_is_folded_and_indexed_again_once_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    database_from_release(&path, include_str!("fixtures/schema-v5.sql"));
    // As version 5's writer left it under load: rows indexed as
    // `lower(text)` up to a mark, the newest not yet.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "INSERT INTO message_text (rowid, text) SELECT seq, lower(text) FROM messages WHERE seq <= 550;
             UPDATE text_index SET indexed_through = 550;",
        )
        .unwrap();
    let store = SqliteStore::open_with(&path, HELD_BACK).unwrap();
    assert_eq!(indexed_through(&path), 550);
    assert_matches_rows(&store, &path).await;
    for message in numbered_messages(600..700) {
        store.insert(message).await.unwrap();
    }
    assert_matches_rows(&store, &path).await;
    assert_eq!(delete_by_hand(&path, "seq % 4 = 0"), 175);
    assert_matches_rows(&store, &path).await;
}

#[tokio::test]
async fn a_version_6_database_remembers_removals_once_migrated() {
    use inlet::bindings::inlet::service::storage::InsertOutcome::Duplicate;
    use inlet::bindings::inlet::service::storage::Removal::Removed;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    bulk::load(&path, numbered_messages(0..50)).unwrap();
    // What version 6 lacked.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TRIGGER messages_remembered; DROP TRIGGER messages_not_removed;
             DROP TABLE removed_ids; PRAGMA user_version = 6;",
        )
        .unwrap();
    // The index's pages: indexing the rows again would add a segment.
    let index_pages = |path: &Path| -> i64 {
        let conn = Connection::open(path).unwrap();
        conn.query_row("SELECT COUNT(*) FROM message_text_data", [], |row| row.get(0))
            .unwrap()
    };
    let before = index_pages(&path);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(index_pages(&path), before, "the text index is kept as it was");
    assert_eq!(store.remove("m7".into()).await.unwrap(), Removed);
    assert_eq!(
        store.insert(numbered_messages(7..8).remove(0)).await.unwrap(),
        Duplicate
    );
    assert_eq!(delete_by_hand(&path, "message_id = 'm8'"), 1);
    assert_eq!(
        store.insert(numbered_messages(8..9).remove(0)).await.unwrap(),
        Duplicate,
        "deleted by hand"
    );
    assert_matches_rows(&store, &path).await;
}

#[tokio::test]
async fn removed_messages_are_gone_and_their_ids_remembered_until_they_age_out() {
    let dir = tempfile::tempdir().unwrap();
    assert_removals(&SqliteStore::open(&dir.path().join("app.db")).unwrap()).await;
}

#[tokio::test]
async fn the_feed_hands_out_every_message_once_in_the_order_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("app.db")).unwrap();
    assert_feed(&store).await;
    // Past every number handed out, also those of removed rows: another database's.
    let last = store.feed_head().await.unwrap();
    let beyond = inlet::storage::FeedPosition {
        epoch: 0,
        seq: last.seq + 1,
    };
    assert!(store.feed(beyond, 10).await.unwrap().is_none());
    store.remove("m5".into()).await.unwrap();
    assert!(
        store.feed(last, 10).await.unwrap().is_some(),
        "a removed message's position"
    );
}

#[tokio::test]
async fn a_batch_is_stored_in_order_with_an_outcome_per_message() {
    let dir = tempfile::tempdir().unwrap();
    assert_batch_outcomes(&SqliteStore::open(&dir.path().join("app.db")).unwrap()).await;
}

#[tokio::test]
async fn keys_and_texts_holding_nul_keep_their_order_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    assert_nul_parity(&SqliteStore::open(&dir.path().join("app.db")).unwrap()).await;
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = SqliteStore::open(&path).unwrap();
    let too_many = numbered_messages(0..inlet::storage::MAX_INSERT_BATCH + 1);
    let error = store.insert_batch(too_many).await.unwrap_err();
    assert!(
        matches!(error, inlet::storage::StoreError::InvalidArgument(_)),
        "{error:?}"
    );
    let full = numbered_messages(0..inlet::storage::MAX_INSERT_BATCH);
    assert_eq!(
        store.insert_batch(full).await.unwrap().len(),
        inlet::storage::MAX_INSERT_BATCH
    );
    assert_matches_rows(&store, &path).await;
}

#[tokio::test]
async fn keys_at_their_bounds_are_stored_and_longer_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert_key_bounds(&SqliteStore::open(&dir.path().join("app.db")).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_database_refuses_fails_only_its_own_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages WHEN new.message_id = 'poison'
         BEGIN SELECT RAISE(ABORT, 'poisoned'); END;
         BEGIN IMMEDIATE;",
    )
    .unwrap();
    assert_refused_row_fails_alone(store, move || conn.execute_batch("COMMIT").unwrap()).await;
}

#[tokio::test]
async fn forwarding_keeps_its_position_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    assert_forward_records(&SqliteStore::open(&dir.path().join("app.db")).unwrap()).await;
}
