//! The SQLite store's fast paths (maintained aggregates, trigram index,
//! remembered search totals) give exactly what counting and scanning the rows
//! gives, including after migrations from schema versions 1 to 5, after
//! rows are deleted by hand and while the text index has not caught up with
//! the newest rows.

use std::path::Path;
use std::time::{Duration, Instant};

use inlet::bindings::inlet::service::storage::{Message, MessageFilter, PageRequest, Position, Timestamp};
use inlet::storage::{IndexSchedule, MessageStore, SqliteStore, bulk};
use rusqlite::Connection;

const HOUR: i64 = 3_600_000_000;

fn message(n: usize, from: &str, unix_micros: i64, text: Option<&str>) -> Message {
    Message {
        message_id: format!("m{n}"),
        from: from.into(),
        to: "+10000000000".into(),
        ts: Timestamp {
            text: format!("t{unix_micros}"),
            unix_micros,
        },
        text: text.map(str::to_owned),
    }
}

const TEXTS: &[Option<&str>] = &[
    Some("Hello World"),
    Some("hello there"),
    Some("ÉCOLE école"),
    Some("100% sure_x"),
    Some("say \"quoted\" words"),
    Some("nul\0byte inside"),
    Some("ab"),
    None,
    Some(""),
    Some("the quick brown fox jumps over the lazy dog, again and again and again"),
    // Mixed scripts: Unicode's full lowercase mapping decides (`str::to_lowercase`).
    Some("Άγιος ΝΙΚΌΛΑΟΣ, ΟΔΟΣ Σοφίας"),
    Some("Добрый ДЕНЬ, Юрий"),
    Some("İSTANBUL'da Iğdır"),
    Some("Straße STRASSE ǅemal \u{212A}elvin"),
];

/// A few hundred messages over senders, hours (before and after 1970) and texts.
fn varied_messages() -> Vec<Message> {
    numbered_messages(0..600)
}

fn numbered_messages(numbers: std::ops::Range<usize>) -> Vec<Message> {
    numbers
        .map(|n| {
            let from = format!("+9100000000{}", (n * n) % 7);
            let unix_micros = (n as i64 - 200) * HOUR / 7 + (n as i64 % 3) * 1_000;
            message(n, &from, unix_micros, TEXTS[n % TEXTS.len()])
        })
        .collect()
}

fn filters() -> Vec<MessageFilter> {
    let froms = [None, Some("+91000000002"), Some("+nobody")];
    let sinces = [None, Some(-5 * HOUR - 17), Some(0), Some(3 * HOUR), Some(HOUR * 1_000)];
    let needles = [
        None,
        Some("hello"),
        Some("HELLO"),
        Some("o w"),
        Some("école"),
        Some("ÉCOLE"),
        Some("100%"),
        Some("_x"),
        Some("\"quoted\""),
        Some("\0by"),
        Some("byte"),
        Some("COLE éc"),
        Some("ab"),
        Some("a"),
        Some(""),
        Some("quick brown fox jumps over the lazy dog, again and again"),
        // Longer than one phrase query: its index query only narrows, the
        // second to a text holding all of its trigrams but not the needle.
        Some("the QUICK brown fox jumps over the lazy dog, again and again and again"),
        Some("again and again and again and again and again and again and again and"),
        Some("absent text"),
        Some("νικόλαος"),
        Some("ΝΙΚΌΛΑΟΣ"),
        Some("οδος σοφ"),
        Some("οδοσ"),
        Some("ς"),
        Some("день, ю"),
        Some("ДОБРЫЙ"),
        Some("i̇stanbul"),
        Some("İst"),
        Some("istanbul"),
        Some("ığd"),
        Some("IĞDIR"),
        Some("straße"),
        Some("STRASSE"),
        Some("ǆemal"),
        Some("ǅEMAL"),
        Some("kelvin"),
    ];
    let mut filters = Vec::new();
    for from in froms {
        for since in sinces {
            for needle in needles {
                filters.push(MessageFilter {
                    from: from.map(str::to_owned),
                    since_unix_micros: since,
                    text_contains: needle.map(str::to_owned),
                });
            }
        }
    }
    filters
}

/// What a plain Rust scan of the rows says: the definition the fast paths
/// must meet (`q` as Unicode's full lowercase mapping of both sides).
fn counted(conn: &Connection, filter: &MessageFilter) -> (u64, Vec<String>) {
    let mut statement = conn
        .prepare(
            "SELECT message_id, text FROM messages
             WHERE (?1 IS NULL OR from_msisdn = ?1) AND (?2 IS NULL OR ts_micros >= ?2)
             ORDER BY ts_micros, message_id",
        )
        .unwrap();
    let rows: Vec<(String, Option<String>)> = statement
        .query_map(rusqlite::params![filter.from, filter.since_unix_micros], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let holds = |text: &Option<String>| match (&filter.text_contains, text) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(needle), Some(text)) => text.to_lowercase().contains(&needle.to_lowercase()),
    };
    let ids: Vec<String> = rows
        .into_iter()
        .filter(|(_, text)| holds(text))
        .map(|(id, _)| id)
        .collect();
    (ids.len() as u64, ids)
}

async fn assert_matches_rows(store: &SqliteStore, path: &Path) {
    let conn = Connection::open(path).unwrap();
    for filter in filters() {
        let (total, ids) = counted(&conn, &filter);
        let first_ids: Vec<String> = ids.into_iter().take(100).collect();
        let page = store
            .list(PageRequest {
                filter: filter.clone(),
                limit: 100,
                offset: 0,
                after: None,
            })
            .await
            .unwrap();
        let ids: Vec<String> = page.messages.into_iter().map(|m| m.message_id).collect();
        assert_eq!((page.total, &ids), (total, &first_ids), "filter {filter:?}");
        assert_eq!(page.more, total > 100, "filter {filter:?}");
    }
    let stats = store.stats(100).await.unwrap();
    let (rows, senders): (i64, i64) = conn
        .query_row("SELECT COUNT(*), COUNT(DISTINCT from_msisdn) FROM messages", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        (stats.total_messages, stats.senders_count),
        (rows as u64, senders as u64)
    );
    let mut by_sender = conn
        .prepare("SELECT from_msisdn, COUNT(*) AS n FROM messages GROUP BY 1 ORDER BY n DESC, 1")
        .unwrap();
    let expected: Vec<(String, i64)> = by_sender
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let got: Vec<(String, i64)> = stats
        .top_senders
        .into_iter()
        .map(|s| (s.from, s.count as i64))
        .collect();
    assert_eq!(got, expected);
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
    let conn = Connection::open(&path).unwrap();
    let mut arrivals = 10_000;
    for filter in filters().into_iter().step_by(5) {
        let (total, expected) = counted(&conn, &filter);
        let (mut seen, mut after) = (Vec::new(), None);
        loop {
            let request = PageRequest {
                filter: filter.clone(),
                limit: 7,
                offset: 0,
                after: after.clone(),
            };
            let page = store.list(request).await.unwrap();
            if after.is_none() {
                assert_eq!(page.total, total, "filter {filter:?}");
            }
            seen.extend(page.messages.iter().map(|m| m.message_id.clone()));
            let Some(last) = page.messages.last().filter(|_| page.more) else {
                break;
            };
            after = Some(Position {
                unix_micros: last.ts.unix_micros,
                message_id: last.message_id.clone(),
            });
            // Rows arriving behind the cursor (each earlier than every row
            // so far) are not part of this walk and shift nothing in it.
            arrivals += 1;
            let earliest = -1_000_000 * HOUR - arrivals as i64;
            let behind = message(arrivals, "+91000000002", earliest, Some("hello école"));
            store.insert(behind).await.unwrap();
        }
        assert_eq!(seen, expected, "filter {filter:?}");
    }
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
    // The newest rows go, so SQLite hands their numbers out again: those rows
    // are below the index's mark and must be indexed as they are inserted.
    let conn = Connection::open(&path).unwrap();
    assert_eq!(conn.execute("DELETE FROM messages WHERE seq > 550", []).unwrap(), 50);
    let store = SqliteStore::open_with(&path, HELD_BACK).unwrap();
    for message in numbered_messages(600..900) {
        store.insert(message).await.unwrap();
    }
    let newest: i64 = conn
        .query_row("SELECT MAX(seq) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!((indexed_through(&path), newest), (600, 850));
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
    // The newest rows go and their numbers are handed out again.
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
async fn a_batch_is_stored_in_order_with_an_outcome_per_message() {
    use inlet::bindings::inlet::service::storage::InsertOutcome::{Created, Duplicate};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = SqliteStore::open(&path).unwrap();
    store.insert(message(1, "+1", 0, Some("before"))).await.unwrap();
    let batch = vec![
        message(0, "+1", 10, Some("Zero")),
        message(1, "+1", 20, Some("already stored")),
        message(2, "+2", 30, None),
        message(0, "+1", 40, Some("repeated in the batch")),
    ];
    let outcomes = store.insert_batch(batch).await.unwrap();
    assert_eq!(outcomes, [Created, Duplicate, Created, Duplicate]);
    let texts: Vec<(String, Option<String>)> = Connection::open(&path)
        .unwrap()
        .prepare("SELECT message_id, text FROM messages ORDER BY message_id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [("m0", Some("Zero")), ("m1", Some("before")), ("m2", None)]
        .map(|(id, text)| (id.to_owned(), text.map(str::to_owned)));
    assert_eq!(texts, expected);
    assert_matches_rows(&store, &path).await;
    assert_eq!(store.insert_batch(Vec::new()).await.unwrap(), []);
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
