//! The same contract on PostgreSQL: a real server (`inlet-pgserver`), a
//! fresh database per test; the oracle is the messages the test stored (the
//! SQL a test runs by hand changes the model the same way).

use std::time::{Duration, Instant};

use inlet::bindings::inlet::service::storage::InsertOutcome::{Created, Duplicate};
use inlet::bindings::inlet::service::storage::Message;
use inlet::config::PgUrl;
use inlet::storage::sqlite::bulk;
use inlet::storage::{FEED_START, ForwardStore, MessageStore, PgStore, StoreError};
use inlet_pgserver::{CutProxy, PgServer, fresh_database, url_at};

use crate::conformance::*;

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
async fn removed_messages_are_gone_and_their_ids_remembered_until_they_age_out() {
    assert_removals(&open(&fresh_database())).await;
}

#[tokio::test]
async fn the_feed_hands_out_every_message_once_in_the_order_stored() {
    assert_feed(&open(&fresh_database())).await;
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
    assert_eq!(psql(&url, "SELECT version FROM inlet_schema").await.unwrap(), "5");
    stores[3].ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_racing_its_erasure_is_not_stored_again() {
    use inlet::bindings::inlet::service::storage::Removal;
    let url = fresh_database();
    let store = std::sync::Arc::new(open(&url));
    assert_eq!(
        store.insert(message(1, "+1", 0, Some("erase me"))).await.unwrap(),
        Created
    );
    let (eraser, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    eraser
        .batch_execute("BEGIN; DELETE FROM messages WHERE message_id = 'm1'")
        .await
        .unwrap();
    // The redelivery reaches the row while its erasure is uncommitted, and waits.
    let racing = store.clone();
    let redelivery = tokio::spawn(async move { racing.insert(message(1, "+1", 0, Some("again"))).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!redelivery.is_finished(), "the insert waits for the erasure");
    eraser.batch_execute("COMMIT").await.unwrap();
    let raced = redelivery.await.unwrap();
    assert!(matches!(raced, Err(StoreError::Unavailable(_))), "{raced:?}");
    assert_eq!(
        store.insert(message(1, "+1", 0, Some("again"))).await.unwrap(),
        Duplicate
    );
    assert_eq!(store.get("m1".into()).await.unwrap(), None, "not stored again");
    assert_eq!(store.remove("m1".into()).await.unwrap(), Removal::NotFound);
}

#[tokio::test]
async fn a_version_1_database_is_upgraded_with_its_rows() {
    use inlet::bindings::inlet::service::storage::Removal;
    let url = fresh_database();
    let store = open(&url);
    store.insert(message(1, "+1", 0, Some("kept"))).await.unwrap();
    drop(store);
    // What version 1 lacked (version 2's additions, then version 3's, 4's and 5's).
    psql(
        &url,
        "DROP TABLE forward_position, forward_retries, forward_lead;
         DROP FUNCTION inlet_forget_retries() CASCADE; DROP FUNCTION inlet_forget_all_retries() CASCADE;
         DROP TRIGGER messages_remembered ON messages; DROP FUNCTION inlet_remember_deleted();
         DROP TRIGGER messages_not_removed ON messages; DROP FUNCTION inlet_refuse_removed();
         DROP TABLE removed_ids; DROP INDEX messages_by_age;
         ALTER TABLE messages DROP COLUMN tx, DROP COLUMN seq; UPDATE inlet_schema SET version = 1",
    )
    .await
    .unwrap();
    let store = open(&url);
    store.schema_ready().await.unwrap();
    store.ping().await.unwrap();
    assert_eq!(psql(&url, "SELECT version FROM inlet_schema").await.unwrap(), "5");
    assert_eq!(
        store.get("m1".into()).await.unwrap().unwrap().message.text.as_deref(),
        Some("kept")
    );
    // The row from before the feed comes first in it; a new one after.
    store.insert(message(2, "+1", 0, None)).await.unwrap();
    // The feed hands out rows below the server's oldest open transaction,
    // which another test on this server may hold a moment.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut page = store.feed(FEED_START, 10).await.unwrap().unwrap();
    while page.messages.len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        page = store.feed(FEED_START, 10).await.unwrap().unwrap();
    }
    let ids: Vec<&str> = page.messages.iter().map(|m| m.message.message_id.as_str()).collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert_eq!(
        psql(&url, "SELECT tx::text FROM messages WHERE message_id = 'm1'")
            .await
            .unwrap(),
        "1"
    );
    store.remove("m2".into()).await.unwrap();
    assert_eq!(store.remove("m1".into()).await.unwrap(), Removal::Removed);
    assert_eq!(store.insert(message(1, "+1", 0, None)).await.unwrap(), Duplicate);
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

#[tokio::test]
async fn a_copy_carries_the_ids_of_removed_messages() {
    use inlet::storage::SqliteStore;
    use inlet::storage::pg::copy::{CopyPlan, from_sqlite};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let messages = numbered_messages(0..30);
    {
        let sqlite = SqliteStore::open(&path).unwrap();
        sqlite.insert_batch(messages.clone()).await.unwrap();
        for id in ["m3", "m7"] {
            sqlite.remove(id.into()).await.unwrap();
        }
        sqlite.close().await.unwrap();
    }
    let url = fresh_database();
    let target = PgUrl(Box::new(url.parse().unwrap()));
    let plan = CopyPlan {
        chunk: 7,
        stop_after_chunks: None,
    };
    let report = from_sqlite(&path, &target, plan).await.unwrap();
    assert_eq!((report.verified, report.removed_ids), (28, 2));
    assert_eq!(
        from_sqlite(&path, &target, plan).await.unwrap().removed_ids,
        0,
        "a rerun adds none"
    );
    let store = open(&url);
    assert_eq!(store.insert(messages[3].clone()).await.unwrap(), Duplicate);
    assert_eq!(store.insert(messages[7].clone()).await.unwrap(), Duplicate);
    assert_eq!(store.get("m7".into()).await.unwrap(), None);
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

#[tokio::test]
async fn forwarding_keeps_its_position_and_retries() {
    assert_forward_records(&open(&fresh_database())).await;
}

#[tokio::test]
async fn one_store_at_a_time_has_forwardings_turn_until_it_gives_it_up_or_loses_it() {
    let url = fresh_database();
    let (first, second) = (open(&url), open(&url));
    let lead = first.forward_lead().await.unwrap().expect("nobody else has the turn");
    assert!(second.forward_lead().await.unwrap().is_none(), "one at a time");
    drop(lead);
    // Given up when dropped: the other takes it at once, not a lease later.
    let deadline = Instant::now() + Duration::from_secs(2);
    let lead = loop {
        if let Some(lead) = second.forward_lead().await.unwrap() {
            break lead;
        }
        assert!(Instant::now() < deadline, "the turn was never given up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let holder = psql(&url, "SELECT holder FROM forward_lead").await.unwrap();
    assert!(holder.contains('/'), "the host's name and an id: {holder}");
    // Taken over (as after a lease ran out): the holder notices at its next renewal.
    psql(&url, "UPDATE forward_lead SET holder = 'elsewhere/1'")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), lead.lost())
        .await
        .expect("a lease held by another ends the turn");
    assert!(first.forward_lead().await.unwrap().is_none(), "still another's");
}
