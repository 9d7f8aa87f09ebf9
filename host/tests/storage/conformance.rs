//! What every store must give: the data the tests store, the oracle (a
//! plain scan of the rows), and the checks each backend's tests run against
//! its own store.

use std::time::Duration;

use inlet::bindings::inlet::service::storage::{Message, MessageFilter, PageRequest, Position, Timestamp};
use inlet::storage::{Expiry, MAX_ID_BYTES, MessageStore};

pub(crate) const HOUR: i64 = 3_600_000_000;

pub(crate) fn message(n: usize, from: &str, unix_micros: i64, text: Option<&str>) -> Message {
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

pub(crate) const TEXTS: &[Option<&str>] = &[
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
pub(crate) fn varied_messages() -> Vec<Message> {
    numbered_messages(0..600)
}

pub(crate) fn numbered_messages(numbers: std::ops::Range<usize>) -> Vec<Message> {
    numbers
        .map(|n| {
            let from = format!("+9100000000{}", (n * n) % 7);
            let unix_micros = (n as i64 - 200) * HOUR / 7 + (n as i64 % 3) * 1_000;
            message(n, &from, unix_micros, TEXTS[n % TEXTS.len()])
        })
        .collect()
}

pub(crate) fn filters() -> Vec<MessageFilter> {
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
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) from: String,
    pub(crate) ts: String,
    pub(crate) micros: i64,
    pub(crate) text: Option<String>,
}

impl Row {
    pub(crate) fn of(m: &Message) -> Self {
        Self {
            id: m.message_id.clone(),
            from: m.from.clone(),
            ts: m.ts.text.clone(),
            micros: m.ts.unix_micros,
            text: m.text.clone(),
        }
    }
}

/// What a plain Rust scan of `rows` says: the ids matching `filter` in
/// listing order, the definition the fast paths must meet (`q` as Unicode's
/// full lowercase mapping of both sides).
pub(crate) fn counted(rows: &[Row], filter: &MessageFilter) -> (u64, Vec<String>) {
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

/// Every filter's first page and total, and the stats, are what `rows` say.
pub(crate) async fn assert_matches(store: &dyn MessageStore, rows: &[Row]) {
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

/// Walks every fifth filter by cursor, 7 rows a page, inserting a row
/// behind the cursor after each page: each walk sees what `rows` say, once.
pub(crate) async fn assert_cursor_walks(store: &dyn MessageStore, rows: &[Row]) {
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

/// A batch with an id stored before it and an id repeated within it.
pub(crate) async fn assert_batch_outcomes(store: &dyn MessageStore) {
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
pub(crate) fn all_messages() -> PageRequest {
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

/// Ids that differ only by U+0000 and U+0001 at one instant list in byte
/// order, page by cursor one at a time, and come back with texts intact.
pub(crate) async fn assert_nul_parity(store: &dyn MessageStore) {
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

/// `len` bytes of printable ASCII that do not repeat (nothing to compress).
pub(crate) fn varied_key(len: usize, seed: u64) -> String {
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
pub(crate) fn escaped_key(len: usize, seed: u64) -> String {
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
pub(crate) async fn assert_key_bounds(store: &dyn MessageStore) {
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

/// While the database's write lock is held elsewhere, 40 inserts and then
/// one of the id `poison`, which the database refuses, queue up; `release`
/// lets them commit, as groups: every other insert is created, and
/// `poison` alone is `internal`.
pub(crate) async fn assert_refused_row_fails_alone(store: std::sync::Arc<dyn MessageStore>, release: impl FnOnce()) {
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

/// The retention step that removes nothing but lets every remembered id of
/// a message stored before `stored_before` go.
fn expiry(stored_before: &str, removed_before: &str, limit: u32) -> Expiry {
    Expiry {
        stored_before: stored_before.into(),
        removed_before: removed_before.into(),
        limit,
        keep_owed: false,
    }
}

/// `get`, `remove` and `expire`: a removed message is gone from every read
/// and its id refused as `duplicate` until retention forgets it, which it
/// does only once the message would have aged out too; aged messages go a
/// bounded step at a time and are remembered like erased ones.
pub(crate) async fn assert_removals(store: &dyn MessageStore) {
    use inlet::bindings::inlet::service::storage::InsertOutcome::{Created, Duplicate};
    use inlet::bindings::inlet::service::storage::Removal::{NotFound, Removed};
    const PAST: &str = "1970-01-01T00:00:00.000Z";
    const FUTURE: &str = "9999-12-31T23:59:59.999Z";
    let messages = numbered_messages(0..12);
    for m in &messages {
        assert_eq!(store.insert(m.clone()).await.unwrap(), Created);
    }
    let odd = Message {
        message_id: "a/b c?#%✓\0".into(),
        ..messages[0].clone()
    };
    assert_eq!(store.insert(odd.clone()).await.unwrap(), Created);
    let stored = store.get(odd.message_id.clone()).await.unwrap().expect("stored");
    assert_eq!(stored.message, odd);
    assert!(
        stored.created_at.as_str() > "2026" && stored.created_at.ends_with('Z'),
        "{}",
        stored.created_at
    );
    assert_eq!(store.get("m999".into()).await.unwrap(), None);
    assert_eq!(store.get("x".repeat(MAX_ID_BYTES + 1)).await.unwrap(), None);

    assert_eq!(store.remove(odd.message_id.clone()).await.unwrap(), Removed);
    assert_eq!(store.remove("m0".into()).await.unwrap(), Removed);
    assert_eq!(store.remove("m0".into()).await.unwrap(), NotFound);
    assert_eq!(store.remove("m999".into()).await.unwrap(), NotFound);
    assert_eq!(store.get("m0".into()).await.unwrap(), None);
    let kept: Vec<Row> = messages[1..].iter().map(Row::of).collect();
    assert_matches(store, &kept).await;
    assert_eq!(
        store.insert(messages[0].clone()).await.unwrap(),
        Duplicate,
        "an erased id"
    );
    let redelivered = store
        .insert_batch(vec![odd.clone(), messages[1].clone()])
        .await
        .unwrap();
    assert_eq!(redelivered, [Duplicate, Duplicate]);
    assert_matches(store, &kept).await;

    // Removed long ago, but the message would still be kept: remembered.
    let none_aged = store.expire(&expiry(PAST, FUTURE, 100)).await.unwrap();
    assert_eq!((none_aged.messages, none_aged.forgotten_ids), (0, 0));
    assert_eq!(store.insert(messages[0].clone()).await.unwrap(), Duplicate);

    // Aged out, a bounded step at a time; each remembered as it goes.
    let first = store.expire(&expiry(FUTURE, PAST, 4)).await.unwrap();
    assert_eq!((first.messages, first.forgotten_ids), (4, 0));
    let rest = store.expire(&expiry(FUTURE, PAST, 100)).await.unwrap();
    assert_eq!(rest.messages, 7);
    assert_matches(store, &[]).await;
    assert_eq!(
        store.insert(messages[5].clone()).await.unwrap(),
        Duplicate,
        "an expired id"
    );

    // Removed before `removed_before` and aged: forgotten, then new again.
    let forgotten = store.expire(&expiry(FUTURE, FUTURE, 100)).await.unwrap();
    assert_eq!((forgotten.messages, forgotten.forgotten_ids), (0, 13));
    assert_eq!(store.insert(odd.clone()).await.unwrap(), Created);
    assert_eq!(store.insert(messages[0].clone()).await.unwrap(), Created);
    assert_matches(store, &[Row::of(&messages[0]), Row::of(&odd)]).await;
}

/// `feed` and `feed_head`: every message once in the order it was stored
/// (not by `ts`), paged by positions that survive removals, a message
/// stored after the newest was removed still after it, and positions of
/// another database or a bad `limit` refused.
pub(crate) async fn assert_feed(store: &dyn MessageStore) {
    use inlet::storage::{FEED_START, FeedPosition, MAX_FEED_LIMIT};
    let ids = |page: &inlet::storage::FeedPage| -> Vec<String> {
        page.messages.iter().map(|m| m.message.message_id.clone()).collect()
    };
    let empty = store.feed(FEED_START, 10).await.unwrap().expect("the start");
    assert!(empty.messages.is_empty());
    assert_eq!(empty.next, FEED_START);
    assert_eq!(store.feed_head().await.unwrap(), FEED_START);
    // Stored newest `ts` first: the feed keeps the order of storing.
    for n in 0..5 {
        store
            .insert(message(n, "+1", (10 - n as i64) * HOUR, None))
            .await
            .unwrap();
    }
    let first = store.feed(FEED_START, 3).await.unwrap().unwrap();
    assert_eq!(ids(&first), ["m0", "m1", "m2"]);
    let rest = store.feed(first.next, 10).await.unwrap().unwrap();
    assert_eq!(ids(&rest), ["m3", "m4"]);
    assert_eq!(store.feed_head().await.unwrap(), rest.next);
    // The position names m4; remove m2 and m4, the newest, and store m5.
    store.remove("m2".into()).await.unwrap();
    store.remove("m4".into()).await.unwrap();
    let left = store.feed(FEED_START, 10).await.unwrap().unwrap();
    assert_eq!(ids(&left), ["m0", "m1", "m3"]);
    assert_eq!(
        store.feed_head().await.unwrap(),
        left.next,
        "the head is the newest stored"
    );
    store.insert(message(5, "+1", 0, None)).await.unwrap();
    let after = store.feed(rest.next, 10).await.unwrap().unwrap();
    assert_eq!(ids(&after), ["m5"]);
    let whole = store.feed(FEED_START, MAX_FEED_LIMIT).await.unwrap().unwrap();
    assert_eq!(ids(&whole), ["m0", "m1", "m3", "m5"]);
    assert_eq!(store.feed(whole.next, 10).await.unwrap().unwrap().next, whole.next);
    let foreign = FeedPosition { epoch: 1 << 62, seq: 1 };
    assert!(store.feed(foreign, 10).await.unwrap().is_none());
    let past_any_number = FeedPosition {
        epoch: 0,
        seq: u64::MAX,
    };
    assert!(store.feed(past_any_number, 10).await.unwrap().is_none());
    for limit in [0, MAX_FEED_LIMIT + 1] {
        assert!(matches!(
            store.feed(FEED_START, limit).await,
            Err(inlet::storage::StoreError::InvalidArgument(_))
        ));
    }
}

/// Forwarding's records: the position starts at the head, moves only from
/// where it is, with the retries owed; due retries are leased; outcomes
/// settle them; failed ones are requeued; a removed message takes its
/// retry with it; retention keeps what is owed.
pub(crate) async fn assert_forward_records(store: &dyn inlet::storage::ForwardStore) {
    use inlet::storage::forward::{Attempted, Backlog, RetryState};
    let attempted = |id: &str, attempts: u32, state: RetryState| Attempted {
        message_id: id.into(),
        attempts,
        state,
        error: "status 503".into(),
    };
    store.insert(message(0, "+1", HOUR, None)).await.unwrap();
    page_of(store, inlet::storage::FEED_START, 1).await;
    let start = store.forward_position().await.unwrap();
    let after_start = store.feed(start, 10).await.unwrap().expect("a position of this feed");
    assert!(after_start.messages.is_empty(), "what came before is not owed");
    assert_eq!(store.forward_backlog().await.unwrap(), Backlog::default());
    for n in 1..=4 {
        store.insert(message(n, "+1", HOUR, None)).await.unwrap();
    }
    let backlog = store.forward_backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.failed), (4, 0));
    assert!(backlog.oldest_pending.is_some());
    let page = page_of(store, start, 4).await;
    let owed = vec![
        attempted("m1", 1, RetryState::Due(1_000)),
        attempted("m2", 1, RetryState::Due(5_000)),
        attempted("m3", 3, RetryState::Failed),
    ];
    assert!(store.forward_advance(start, page.next, owed.clone()).await.unwrap());
    assert!(
        !store.forward_advance(start, page.next, owed).await.unwrap(),
        "only from where it is"
    );
    assert_eq!(store.forward_position().await.unwrap(), page.next);
    let backlog = store.forward_backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.failed), (2, 1));
    // Due at 2000: m1 only, leased until 9000.
    let due = store.forward_due(2_000, 9_000, 10).await.unwrap();
    let first: Vec<&str> = due.iter().map(|d| d.message.message.message_id.as_str()).collect();
    assert_eq!(first, ["m1"]);
    assert_eq!(due[0].attempts, 1);
    assert_eq!(due_ids(store, 8_000, 9_000).await, ["m2"], "m1 is leased");
    store
        .forward_settle(vec![
            attempted("m1", 2, RetryState::Delivered),
            attempted("m2", 2, RetryState::Due(7_000)),
        ])
        .await
        .unwrap();
    let backlog = store.forward_backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.failed), (1, 1));
    assert_eq!(store.forward_requeue(10_000).await.unwrap(), 1);
    assert_eq!(due_ids(store, 10_000, 20_000).await, ["m2", "m3"]);
    // An erased message is owed no more.
    store.remove("m2".into()).await.unwrap();
    store
        .forward_settle(vec![attempted("m2", 3, RetryState::Due(1))])
        .await
        .unwrap();
    assert_eq!(due_ids(store, 30_000, 40_000).await, ["m3"], "m2 is gone");
    // Retention keeping what is owed removes m0, m1 and m4 (delivered or
    // never owed) but not m3 (a retry) or m5 (past the position).
    // One row a step: an owed row at the head does not stop the rest.
    store.insert(message(5, "+1", HOUR, None)).await.unwrap();
    let mut step = expiry("9999", "0000", 1);
    step.keep_owed = true;
    let mut removed = 0;
    loop {
        let expired = store.expire(&step).await.unwrap();
        if expired.messages == 0 {
            break;
        }
        removed += expired.messages;
    }
    assert_eq!(removed, 3);
    let left = page_of(store, inlet::storage::FEED_START, 2).await;
    let left: Vec<&str> = left.messages.iter().map(|m| m.message.message_id.as_str()).collect();
    assert_eq!(left, ["m3", "m5"]);
}

/// The page after `after` once it holds `count` messages: on PostgreSQL a
/// transaction running anywhere on the server (another test's) holds the
/// feed back for a moment.
async fn page_of(
    store: &dyn MessageStore,
    after: inlet::storage::FeedPosition,
    count: usize,
) -> inlet::storage::FeedPage {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = store.feed(after, 10).await.unwrap().unwrap();
        if page.messages.len() >= count {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the feed never showed {count} messages"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The ids of the retries due at `now`, leased until `lease_until`, sorted.
async fn due_ids(store: &dyn inlet::storage::ForwardStore, now: i64, lease_until: i64) -> Vec<String> {
    let due = store.forward_due(now, lease_until, 10).await.unwrap();
    let mut ids: Vec<String> = due.into_iter().map(|d| d.message.message.message_id).collect();
    ids.sort();
    ids
}
