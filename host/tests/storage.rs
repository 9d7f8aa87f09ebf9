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

/// A stored message as the oracle sees it.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    from: String,
    ts: String,
    micros: i64,
    text: Option<String>,
}

impl Row {
    fn of(m: &Message) -> Self {
        Self {
            id: m.message_id.clone(),
            from: m.from.clone(),
            ts: m.ts.text.clone(),
            micros: m.ts.unix_micros,
            text: m.text.clone(),
        }
    }
}

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

/// What a plain Rust scan of `rows` says: the ids matching `filter` in
/// listing order, the definition the fast paths must meet (`q` as Unicode's
/// full lowercase mapping of both sides).
fn counted(rows: &[Row], filter: &MessageFilter) -> (u64, Vec<String>) {
    let holds = |text: &Option<String>| match (&filter.text_contains, text) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(needle), Some(text)) => text.to_lowercase().contains(&needle.to_lowercase()),
    };
    let mut matching: Vec<&Row> = rows
        .iter()
        .filter(|r| filter.from.as_ref().is_none_or(|from| &r.from == from))
        .filter(|r| filter.since_unix_micros.is_none_or(|since| r.micros >= since))
        .filter(|r| holds(&r.text))
        .collect();
    matching.sort_by(|a, b| (a.micros, &a.id).cmp(&(b.micros, &b.id)));
    let ids: Vec<String> = matching.into_iter().map(|r| r.id.clone()).collect();
    (ids.len() as u64, ids)
}

async fn assert_matches_rows(store: &SqliteStore, path: &Path) {
    assert_matches(store, &sqlite_rows(path)).await;
}

/// Every filter's first page and total, and the stats, are what `rows` say.
async fn assert_matches(store: &dyn MessageStore, rows: &[Row]) {
    for filter in filters() {
        let (total, ids) = counted(rows, &filter);
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
    let mut by_sender: std::collections::BTreeMap<&str, i64> = Default::default();
    for row in rows {
        *by_sender.entry(&row.from).or_default() += 1;
    }
    let mut ranked: Vec<(String, i64)> = by_sender.iter().map(|(f, n)| ((*f).to_owned(), *n)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    // The first few alone too: where counts not folded yet reorder the top.
    for most in [1, 2, 3] {
        let top: Vec<(String, i64)> = store
            .stats(most)
            .await
            .unwrap()
            .top_senders
            .into_iter()
            .map(|s| (s.from, s.count as i64))
            .collect();
        assert_eq!(top, ranked[..ranked.len().min(most as usize)], "top {most}");
    }
    let stats = store.stats(100).await.unwrap();
    assert_eq!(
        (stats.total_messages, stats.senders_count),
        (rows.len() as u64, by_sender.len() as u64)
    );
    ranked.truncate(100);
    let got: Vec<(String, i64)> = stats
        .top_senders
        .into_iter()
        .map(|s| (s.from, s.count as i64))
        .collect();
    assert_eq!(got, ranked);
    let in_order = |a: &&Row, b: &&Row| (a.micros, &a.id).cmp(&(b.micros, &b.id));
    let edges = (
        rows.iter().min_by(in_order).map(|r| r.ts.clone()),
        rows.iter().max_by(in_order).map(|r| r.ts.clone()),
    );
    assert_eq!((stats.first_ts, stats.last_ts), edges);
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

/// Walks every fifth filter by cursor, 7 rows a page, inserting a row
/// behind the cursor after each page: each walk sees what `rows` say, once.
async fn assert_cursor_walks(store: &dyn MessageStore, rows: &[Row]) {
    let mut rows = rows.to_vec();
    let mut arrivals = 10_000;
    for filter in filters().into_iter().step_by(5) {
        let (total, expected) = counted(&rows, &filter);
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
            store.insert(behind.clone()).await.unwrap();
            rows.push(Row::of(&behind));
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
    let dir = tempfile::tempdir().unwrap();
    assert_batch_outcomes(&SqliteStore::open(&dir.path().join("app.db")).unwrap()).await;
}

/// A batch with an id stored before it and an id repeated within it.
async fn assert_batch_outcomes(store: &dyn MessageStore) {
    use inlet::bindings::inlet::service::storage::InsertOutcome::{Created, Duplicate};
    store.insert(message(1, "+1", 0, Some("before"))).await.unwrap();
    let batch = vec![
        message(0, "+1", 10, Some("Zero")),
        message(1, "+1", 20, Some("already stored")),
        message(2, "+2", 30, None),
        message(0, "+1", 40, Some("repeated in the batch")),
    ];
    let outcomes = store.insert_batch(batch.clone()).await.unwrap();
    assert_eq!(outcomes, [Created, Duplicate, Created, Duplicate]);
    let rows = [message(1, "+1", 0, Some("before")), batch[0].clone(), batch[2].clone()].map(|m| Row::of(&m));
    let page = store.list(all_messages()).await.unwrap();
    let texts: Vec<(String, Option<String>)> = page.messages.into_iter().map(|m| (m.message_id, m.text)).collect();
    let expected = [("m1", Some("before")), ("m0", Some("Zero")), ("m2", None)]
        .map(|(id, text)| (id.to_owned(), text.map(str::to_owned)));
    assert_eq!(texts, expected);
    assert_matches(store, &rows).await;
    assert_eq!(store.insert_batch(Vec::new()).await.unwrap(), []);
}

/// The first 100 messages, unfiltered.
fn all_messages() -> PageRequest {
    PageRequest {
        filter: MessageFilter {
            from: None,
            since_unix_micros: None,
            text_contains: None,
        },
        limit: 100,
        offset: 0,
        after: None,
    }
}

#[tokio::test]
async fn keys_and_texts_holding_nul_keep_their_order_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    assert_nul_parity(&SqliteStore::open(&dir.path().join("app.db")).unwrap()).await;
}

/// Ids that differ only by U+0000 and U+0001 at one instant list in byte
/// order, page by cursor one at a time, and come back with texts intact.
async fn assert_nul_parity(store: &dyn MessageStore) {
    let ids = ["k", "k\0", "k\0\0", "k\u{1}", "k\u{1}\0", "k\u{2}", "k0", "k\0\u{1}"];
    let messages: Vec<Message> = ids
        .iter()
        .map(|id| Message {
            message_id: (*id).to_owned(),
            text: Some(format!("{id}\0after Nul")),
            ..message(0, "+1", 7, None)
        })
        .collect();
    store.insert_batch(messages.clone()).await.unwrap();
    let mut expected: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    expected.sort_unstable();
    let page = store.list(all_messages()).await.unwrap();
    let listed: Vec<String> = page.messages.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(listed, expected);
    for m in &page.messages {
        assert_eq!(m.text.as_deref(), Some(format!("{}\0after Nul", m.message_id).as_str()));
    }
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let request = PageRequest {
            limit: 1,
            after: after.clone(),
            ..all_messages()
        };
        let page = store.list(request).await.unwrap();
        let Some(last) = page.messages.last() else { break };
        walked.push(last.message_id.clone());
        after = Some(Position {
            unix_micros: last.ts.unix_micros,
            message_id: last.message_id.clone(),
        });
    }
    assert_eq!(walked, expected);
    assert_matches(store, &messages.iter().map(Row::of).collect::<Vec<_>>()).await;
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

/// `len` bytes of printable ASCII that do not repeat (nothing to compress).
fn varied_key(len: usize, seed: u64) -> String {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(b'!' + ((state >> 33) % 94) as u8)
        })
        .collect()
}

/// `len` bytes, about half of them U+0000 or U+0001 (each stored as two
/// bytes on PostgreSQL) among varied ASCII: long once stored, and hard to
/// compress.
fn escaped_key(len: usize, seed: u64) -> String {
    varied_key(len, seed)
        .chars()
        .enumerate()
        .map(|(n, c)| match (n % 2, c as u8 % 2) {
            (0, 0) => '\0',
            (0, _) => '\u{1}',
            _ => c,
        })
        .collect()
}

/// Ids and numbers as long as the interface allows are stored, whatever
/// their bytes; one byte more is `invalid-argument`, alone or in a batch,
/// and stores nothing.
async fn assert_key_bounds(store: &dyn MessageStore) {
    use inlet::bindings::inlet::service::storage::InsertOutcome::Created;
    use inlet::storage::{MAX_ID_BYTES, MAX_MSISDN_BYTES, StoreError};
    let widest = [
        Message {
            message_id: varied_key(MAX_ID_BYTES, 1),
            from: varied_key(MAX_MSISDN_BYTES, 2),
            to: varied_key(MAX_MSISDN_BYTES, 3),
            ..message(0, "+1", 0, None)
        },
        Message {
            message_id: escaped_key(MAX_ID_BYTES, 4),
            from: escaped_key(MAX_MSISDN_BYTES, 5),
            to: escaped_key(MAX_MSISDN_BYTES, 6),
            ..message(0, "+1", 1, None)
        },
    ];
    for m in &widest {
        assert_eq!(store.insert(m.clone()).await.unwrap(), Created);
    }
    let longer = [
        Message {
            message_id: "i".repeat(MAX_ID_BYTES + 1),
            ..message(1, "+1", 2, None)
        },
        Message {
            from: "1".repeat(MAX_MSISDN_BYTES + 1),
            ..message(2, "+1", 2, None)
        },
        Message {
            to: "é".repeat(MAX_MSISDN_BYTES / 2 + 1),
            ..message(3, "+1", 2, None)
        },
    ];
    for m in longer {
        let error = store.insert(m.clone()).await.unwrap_err();
        assert!(matches!(error, StoreError::InvalidArgument(_)), "{error:?}");
        let error = store
            .insert_batch(vec![message(4, "+1", 2, None), m])
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::InvalidArgument(_)), "{error:?}");
    }
    assert_matches(store, &widest.map(|m| Row::of(&m))).await;
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

/// While the database's write lock is held elsewhere, 40 inserts and then
/// one of the id `poison`, which the database refuses, queue up; `release`
/// lets them commit, as groups: every other insert is created, and
/// `poison` alone is `internal`.
async fn assert_refused_row_fails_alone(store: std::sync::Arc<dyn MessageStore>, release: impl FnOnce()) {
    use inlet::bindings::inlet::service::storage::InsertOutcome::Created;
    use inlet::storage::StoreError;
    let mut messages = numbered_messages(0..40);
    messages.push(Message {
        message_id: "poison".into(),
        ..message(0, "+1", 0, None)
    });
    let inserts: Vec<_> = messages
        .iter()
        .map(|m| {
            let (store, m) = (store.clone(), m.clone());
            tokio::spawn(async move { store.insert(m).await })
        })
        .collect();
    // Long enough for every insert to queue behind the first commits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    release();
    let mut outcomes = Vec::new();
    for insert in inserts {
        outcomes.push(insert.await.unwrap());
    }
    let poisoned = outcomes.pop().unwrap();
    assert!(matches!(poisoned, Err(StoreError::Internal(_))), "{poisoned:?}");
    assert!(outcomes.iter().all(|o| matches!(o, Ok(Created))), "{outcomes:?}");
    messages.pop();
    assert_matches(&*store, &messages.iter().map(Row::of).collect::<Vec<_>>()).await;
}

/// The same contract on PostgreSQL: a real server (`inlet-pgserver`), a
/// fresh database per test; the oracle is the messages the test stored (the
/// SQL a test runs by hand changes the model the same way).
mod postgres {
    use std::time::{Duration, Instant};

    use inlet::bindings::inlet::service::storage::InsertOutcome::{Created, Duplicate};
    use inlet::config::PgUrl;
    use inlet::storage::{MessageStore, PgStore, StoreError};
    use inlet_pgserver::{CutProxy, PgServer, fresh_database, url_at};

    use super::*;

    /// Runs `sql` with `psql`, off the runtime's thread (whose tasks drive
    /// the store's connections, which `sql` may wait for).
    async fn psql(url: &str, sql: &str) -> std::io::Result<String> {
        let (url, sql) = (url.to_owned(), sql.to_owned());
        tokio::task::spawn_blocking(move || inlet_pgserver::psql(&url, &sql))
            .await
            .unwrap()
    }

    fn open(url: &str) -> PgStore {
        PgStore::open(&PgUrl(Box::new(url.parse().unwrap()))).unwrap()
    }

    /// What storing `messages` leaves: the first of each id.
    fn model(messages: &[Message]) -> Vec<Row> {
        let mut seen = std::collections::HashSet::new();
        messages
            .iter()
            .filter(|m| seen.insert(m.message_id.clone()))
            .map(Row::of)
            .collect()
    }

    /// Waits until some host has folded every count delta into the summaries.
    async fn wait_folded(url: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while psql(url, "SELECT count(*) FROM count_deltas").await.unwrap() != "0" {
            assert!(Instant::now() < deadline, "the count deltas were never folded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checks `rows` both before the deltas are folded and after.
    async fn assert_matches_folded_or_not(store: &PgStore, url: &str, rows: &[Row]) {
        assert_matches(store, rows).await;
        wait_folded(url).await;
        assert_matches(store, rows).await;
    }

    #[tokio::test]
    async fn fast_paths_agree_with_the_rows() {
        let url = fresh_database();
        let store = open(&url);
        let outcomes = store.insert_batch(varied_messages()).await.unwrap();
        assert!(outcomes.iter().all(|o| *o == Created), "{outcomes:?}");
        let again = store.insert_batch(varied_messages()).await.unwrap();
        assert!(again.iter().all(|o| *o == Duplicate), "{again:?}");
        assert_matches_folded_or_not(&store, &url, &model(&varied_messages())).await;
    }

    #[tokio::test]
    async fn aggregates_follow_rows_changed_by_hand() {
        let url = fresh_database();
        let store = open(&url);
        store.insert_batch(varied_messages()).await.unwrap();
        let mut rows = model(&varied_messages());
        psql(
            &url,
            "DELETE FROM messages WHERE from_msisdn = '+91000000001' OR ts_micros % 5 = 0",
        )
        .await
        .unwrap();
        rows.retain(|r| !(r.from == "+91000000001" || r.micros % 5 == 0));
        assert_matches_folded_or_not(&store, &url, &rows).await;
        psql(
            &url,
            "UPDATE messages SET from_msisdn = '+moved' WHERE from_msisdn = '+91000000002'",
        )
        .await
        .unwrap();
        for row in rows.iter_mut().filter(|r| r.from == "+91000000002") {
            row.from = "+moved".into();
        }
        assert_matches_folded_or_not(&store, &url, &rows).await;
        psql(&url, "TRUNCATE messages").await.unwrap();
        assert_matches(&store, &[]).await;
        let later = numbered_messages(600..700);
        store.insert_batch(later.clone()).await.unwrap();
        assert_matches_folded_or_not(&store, &url, &model(&later)).await;
    }

    #[tokio::test]
    async fn cursor_pages_walk_every_match_once_even_as_rows_arrive() {
        let url = fresh_database();
        let store = open(&url);
        store.insert_batch(varied_messages()).await.unwrap();
        assert_cursor_walks(&store, &model(&varied_messages())).await;
    }

    #[tokio::test]
    async fn a_batch_is_stored_in_order_with_an_outcome_per_message() {
        let store = open(&fresh_database());
        assert_batch_outcomes(&store).await;
    }

    #[tokio::test]
    async fn keys_and_texts_holding_nul_keep_their_order_and_bytes() {
        let store = open(&fresh_database());
        assert_nul_parity(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_inserts_of_one_id_on_two_hosts_create_one_row() {
        let url = fresh_database();
        let hosts = [std::sync::Arc::new(open(&url)), std::sync::Arc::new(open(&url))];
        for round in 0..5 {
            let inserts: Vec<_> = (0..64)
                .map(|n| {
                    let host = hosts[n % 2].clone();
                    tokio::spawn(async move { host.insert(message(round, "+1", 0, Some("same"))).await.unwrap() })
                })
                .collect();
            let mut created = 0;
            for insert in inserts {
                created += usize::from(insert.await.unwrap() == Created);
            }
            assert_eq!(created, 1, "round {round}");
        }
        assert_eq!(psql(&url, "SELECT count(*) FROM messages").await.unwrap(), "5");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hosts_starting_together_apply_the_schema_once() {
        let url = fresh_database();
        let stores: Vec<_> = (0..8).map(|_| std::sync::Arc::new(open(&url))).collect();
        let migrations: Vec<_> = stores
            .iter()
            .map(|store| {
                let store = store.clone();
                tokio::spawn(async move { store.schema_ready().await })
            })
            .collect();
        for migration in migrations {
            migration.await.unwrap().unwrap();
        }
        assert_eq!(psql(&url, "SELECT version FROM inlet_schema").await.unwrap(), "1");
        stores[3].ping().await.unwrap();
    }

    #[tokio::test]
    async fn a_database_from_a_newer_release_is_refused() {
        let url = fresh_database();
        open(&url).schema_ready().await.unwrap();
        psql(&url, "UPDATE inlet_schema SET version = 99").await.unwrap();
        let store = open(&url);
        let error = store.schema_ready().await.unwrap_err();
        assert!(
            matches!(&error, StoreError::Unavailable(why) if why.contains("newer")),
            "{error:?}"
        );
        assert!(store.ping().await.is_err());
        assert!(store.insert(message(1, "+1", 0, None)).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_database_is_unavailable_then_serves_again_by_itself() {
        let server = PgServer::start().unwrap();
        let url = server.fresh_database();
        let store = open(&url);
        store.insert(message(1, "+1", 0, None)).await.unwrap();
        server.stop_fast();
        let started = Instant::now();
        let error = store.insert(message(2, "+1", 0, None)).await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
        assert!(matches!(store.stats(10).await, Err(StoreError::Unavailable(_))));
        assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
        server.restart().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.ping().await.is_err() {
            assert!(Instant::now() < deadline, "not ready again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(store.insert(message(2, "+1", 0, None)).await.unwrap(), Created);
        assert_eq!(store.stats(10).await.unwrap().total_messages, 2);
    }

    /// A session that has run `sql` and keeps what it holds (locks, an open
    /// transaction) until it is dropped.
    async fn holding(url: &str, sql: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
        client
    }

    /// Holds the lock every host's fold takes, so that count deltas stay
    /// unfolded until the returned session is dropped.
    async fn hold_folds(url: &str) -> tokio_postgres::Client {
        let lock = inlet::storage::pg::FOLD_LOCK;
        holding(url, &format!("SELECT pg_advisory_lock({lock})")).await
    }

    /// Pings until `store` is ready, for at most `patience`.
    async fn wait_ready(store: &PgStore, patience: Duration) {
        let deadline = Instant::now() + patience;
        while let Err(error) = store.ping().await {
            assert!(Instant::now() < deadline, "not ready: {error:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_not_created_yet_is_unavailable_until_it_is() {
        let server = inlet_pgserver::shared();
        let name = format!("late_{}", std::process::id());
        let store = open(&server.url(&name));
        for error in [
            store.insert(message(1, "+1", 0, None)).await.unwrap_err(),
            store.list(all_messages()).await.unwrap_err(),
            store.ping().await.unwrap_err(),
        ] {
            assert!(
                matches!(&error, StoreError::Unavailable(why) if why.contains(&name)),
                "{error:?}"
            );
        }
        psql(&server.url("postgres"), &format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        wait_ready(&store, Duration::from_secs(10)).await;
        assert_eq!(store.insert(message(1, "+1", 0, None)).await.unwrap(), Created);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_only_database_is_not_ready_and_refuses_writes_with_503() {
        let url = fresh_database();
        open(&url).schema_ready().await.unwrap();
        let name = url.rsplit('/').next().unwrap();
        psql(
            &url,
            &format!("ALTER DATABASE {name} SET default_transaction_read_only = on"),
        )
        .await
        .unwrap();
        let store = open(&url);
        let not_ready = store.ping().await.unwrap_err();
        assert!(
            matches!(&not_ready, StoreError::Unavailable(why) if why.contains("read-only")),
            "{not_ready:?}"
        );
        let refused = store.insert(message(1, "+1", 0, None)).await.unwrap_err();
        assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
        assert_eq!(store.list(all_messages()).await.unwrap().total, 0, "reads still served");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_probe_that_hangs_is_not_ready_in_time_and_keeps_no_connection_busy() {
        let url = fresh_database();
        let store = std::sync::Arc::new(open(&url));
        store.schema_ready().await.unwrap();
        let held = holding(&url, "BEGIN; LOCK TABLE inlet_schema IN ACCESS EXCLUSIVE MODE").await;
        let started = Instant::now();
        let error = store.ping().await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        // Every read connection answers at once: none is stuck behind the lock.
        let reads: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.list(all_messages()).await.map(|page| page.total) })
            })
            .collect();
        for read in reads {
            let total = tokio::time::timeout(Duration::from_secs(5), read).await;
            assert!(matches!(total, Ok(Ok(Ok(0)))), "{total:?}");
        }
        drop(held);
        wait_ready(&store, Duration::from_secs(5)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copy_beside_a_serving_host_meets_its_inserts_without_deadlock() {
        use inlet::storage::pg::copy::{CopyPlan, from_sqlite};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        // Ids in SQLite's rowid order run backwards against their sort order.
        let messages: Vec<Message> = (0..4_000)
            .rev()
            .map(|n| Message {
                message_id: format!("c{n:05}"),
                ..message(n, "+1", n as i64, None)
            })
            .collect();
        bulk::load(&path, messages.clone()).unwrap();
        let url = fresh_database();
        let store = std::sync::Arc::new(open(&url));
        store.schema_ready().await.unwrap();
        let serving = {
            let (store, messages) = (store.clone(), messages.clone());
            tokio::spawn(async move {
                for chunk in messages.chunks(200) {
                    store.insert_batch(chunk.to_vec()).await.unwrap();
                }
            })
        };
        let target = PgUrl(Box::new(url.parse().unwrap()));
        let plan = CopyPlan {
            chunk: 500,
            stop_after_chunks: None,
        };
        let report = from_sqlite(&path, &target, plan).await.unwrap();
        serving.await.unwrap();
        assert_eq!(
            (report.copied + report.already_present, report.verified),
            (4_000, 4_000)
        );
        assert_matches(&*store, &model(&messages)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn top_senders_merge_counts_not_folded_yet() {
        let url = fresh_database();
        let store = open(&url);
        let mut messages = varied_messages();
        store.insert_batch(messages.clone()).await.unwrap();
        wait_folded(&url).await;
        let held = hold_folds(&url).await;
        // A new sender climbs to the top, the first falls behind.
        let climber = numbered_messages(600..800)
            .into_iter()
            .map(|m| Message {
                from: "+91000000006".into(),
                ..m
            })
            .collect::<Vec<_>>();
        store.insert_batch(climber.clone()).await.unwrap();
        messages.extend(climber);
        psql(
            &url,
            "DELETE FROM messages WHERE from_msisdn = '+91000000001' AND ts_micros % 3 <> 0",
        )
        .await
        .unwrap();
        messages.retain(|m| !(m.from == "+91000000001" && m.ts.unix_micros % 3 != 0));
        assert_ne!(psql(&url, "SELECT count(*) FROM count_deltas").await.unwrap(), "0");
        assert_matches(&store, &model(&messages)).await;
        drop(held);
        wait_folded(&url).await;
        assert_matches(&store, &model(&messages)).await;
    }

    #[tokio::test]
    async fn keys_at_their_bounds_are_stored_and_longer_ones_refused() {
        assert_key_bounds(&open(&fresh_database())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_row_the_database_refuses_fails_only_its_own_request() {
        let url = fresh_database();
        let store = std::sync::Arc::new(open(&url));
        store.schema_ready().await.unwrap();
        psql(
            &url,
            "ALTER TABLE messages ADD CONSTRAINT refuse_poison CHECK (message_id <> 'poison')",
        )
        .await
        .unwrap();
        let held = holding(&url, "BEGIN; LOCK TABLE messages IN SHARE MODE").await;
        assert_refused_row_fails_alone(store, move || drop(held)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_cut_during_commits_are_unavailable_and_lose_no_acknowledged_row() {
        let url = fresh_database();
        let database = url.rsplit('/').next().unwrap();
        let proxy = CutProxy::start(inlet_pgserver::shared().port()).unwrap();
        let store = std::sync::Arc::new(open(&url_at(proxy.port(), database)));
        store.schema_ready().await.unwrap();
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let store = store.clone();
                tokio::spawn(async move {
                    let (mut acknowledged, mut unavailable) = (Vec::new(), 0);
                    for n in 0..300 {
                        let message = message(writer * 1_000 + n, "+1", n as i64, None);
                        let id = message.message_id.clone();
                        match store.insert(message).await {
                            Ok(Created) => acknowledged.push(id),
                            Err(StoreError::Unavailable(_)) => unavailable += 1,
                            other => panic!("{id}: {other:?}"),
                        }
                    }
                    (acknowledged, unavailable)
                })
            })
            .collect();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            proxy.cut();
        }
        let (mut acknowledged, mut unavailable) = (Vec::new(), 0);
        for writer in writers {
            let (acked, failed) = writer.await.unwrap();
            acknowledged.extend(acked);
            unavailable += failed;
        }
        assert!(unavailable > 0, "no insert met a cut connection");
        let stored: std::collections::HashSet<String> = psql(&url, "SELECT message_id FROM messages")
            .await
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let lost: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
        assert!(lost.is_empty(), "acknowledged, not stored: {lost:?}");
        // Rows committed whose caller heard "unavailable" (the outcome was
        // unknown) are at most the failures; a retry finds each stored.
        assert!(stored.len() - acknowledged.len() <= unavailable);
        assert_eq!(store.insert(message(99_999, "+1", 0, None)).await.unwrap(), Created);
    }
}
