//! The real guest component against mock host imports.

use std::path::PathBuf;
use std::time::Duration;

use inlet_harness::{
    GuestLimits, Harness, InsertOutcome, Level, Message, MessageStore, MockStore, Operation, SqliteStore, StorageCall,
    StoreError, Timestamp, standard,
};
use serde_json::json;

fn guest() -> PathBuf {
    inlet_e2e::guest_wasm()
}

fn body(id: &str, from: &str, ts: &str, text: Option<&str>) -> String {
    json!({"message_id": id, "from": from, "to": "+14155550100", "ts": ts, "text": text}).to_string()
}

fn stored(id: &str, from: &str, ts: &str, micros: i64, text: Option<&str>) -> Message {
    Message {
        message_id: id.into(),
        from: from.into(),
        to: "+14155550100".into(),
        ts: Timestamp {
            text: ts.into(),
            unix_micros: micros,
        },
        text: text.map(Into::into),
    }
}

#[tokio::test]
async fn bad_signature_and_invalid_payloads_make_no_storage_call() {
    let harness = Harness::new(guest(), MockStore::new()).unwrap();
    let valid = body("m1", "+1", "2025-01-15T10:00:00Z", None);
    for exchange in [
        harness.webhook(&valid, None).await,
        harness.webhook(&valid, Some("00")).await,
        harness.webhook("garbage", Some("zz")).await,
    ] {
        assert_eq!(exchange.status, 401);
        assert_eq!(exchange.storage_calls, []);
        assert_eq!(exchange.webhook_results, ["invalid_signature"]);
        assert_eq!(exchange.log.level(), Level::Error);
    }
    for invalid in [
        "not json",
        "[]",
        r#"{"message_id":""}"#,
        &body("m1", "+1", "2025-02-30T00:00:00Z", None),
    ] {
        let exchange = harness.signed_webhook(invalid).await;
        assert_eq!(exchange.status, 422, "{invalid}");
        assert_eq!(exchange.storage_calls, [], "{invalid}");
        assert_eq!(exchange.webhook_results, ["validation_error"]);
        assert_eq!(exchange.log.level(), Level::Warn);
    }
}

#[tokio::test]
async fn the_guest_verifies_under_every_secret_its_settings_give_and_none_without() {
    let valid = body("m1", "+1", "2025-01-15T10:00:00Z", None);
    let signed_by = |secret: &str| inlet_harness::SigningKey::new(secret).sign(valid.as_bytes());
    let harness = Harness::new(guest(), MockStore::new())
        .unwrap()
        .with_secrets(&["old", "new"]);
    assert_eq!(harness.webhook(&valid, Some(&signed_by("new"))).await.status, 200);
    assert_eq!(harness.webhook(&valid, Some(&signed_by("old"))).await.status, 200);
    let refused = harness.webhook(&valid, Some(&signed_by("other"))).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.logged("signature"), Some(&json!("mismatch")));

    let harness = Harness::new(guest(), MockStore::new()).unwrap().with_secrets(&[]);
    let refused = harness
        .webhook(&valid, Some(&signed_by(inlet_harness::DEFAULT_SECRET)))
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.storage_calls, []);
}

/// A Standard Webhooks delivery of `body` signed `age` seconds ago.
fn standard_delivery(body: &str, age: i64) -> http::Request<bytes::Bytes> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let timestamp = i64::try_from(now.as_secs()).unwrap() - age;
    http::Request::post("/webhook")
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            standard::sign(inlet_harness::DEFAULT_SECRET, "msg_1", timestamp, body.as_bytes()),
        )
        .body(bytes::Bytes::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn the_tolerance_comes_from_the_settings() {
    let valid = body("m1", "+1", "2025-01-15T10:00:00Z", None);
    let strict = Harness::new(guest(), MockStore::new())
        .unwrap()
        .with_tolerance_seconds(60);
    let late = strict.send(standard_delivery(&valid, 120)).await;
    assert_eq!(late.status, 401);
    assert_eq!(late.logged("signature"), Some(&json!("outside_tolerance")));
    assert_eq!(strict.send(standard_delivery(&valid, 30)).await.status, 200);
    let lenient = Harness::new(guest(), MockStore::new())
        .unwrap()
        .with_tolerance_seconds(600);
    assert_eq!(lenient.send(standard_delivery(&valid, 120)).await.status, 200);
}

#[tokio::test]
async fn the_whatsapp_handshake_needs_the_token_the_settings_give() {
    let handshake = "/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=tok&hub.challenge=42";
    let unset = Harness::new(guest(), MockStore::new()).unwrap();
    assert_eq!(unset.get(handshake).await.status, 403);
    let other = Harness::new(guest(), MockStore::new())
        .unwrap()
        .with_whatsapp_verify_token(Some("toke"));
    assert_eq!(other.get(handshake).await.status, 403);
    let set = Harness::new(guest(), MockStore::new())
        .unwrap()
        .with_whatsapp_verify_token(Some("tok"));
    let answered = set.get(handshake).await;
    assert_eq!((answered.status, answered.body.as_slice()), (200, b"42".as_slice()));
}

#[tokio::test]
async fn the_access_import_decides_who_reads() {
    let key = "read-key-0123456789-abcdefghijklmnopqrstuvwxyz";
    let listing = |authorization: Option<&str>| {
        let request = http::Request::get("/messages");
        let request = match authorization {
            Some(value) => request.header("authorization", value),
            None => request,
        };
        request.body(bytes::Bytes::new()).unwrap()
    };
    let keyed = Harness::new(guest(), MockStore::new())
        .unwrap()
        .with_api_keys(&format!("ci read {key}"));
    for refused in [None, Some("Bearer not-the-key-0123456789-abcdefghijklmnop")] {
        let exchange = keyed.send(listing(refused)).await;
        assert_eq!(exchange.status, 401, "{refused:?}");
        assert_eq!(exchange.header("www-authenticate"), Some("Bearer"));
        assert_eq!(exchange.storage_calls, [], "refused before storage");
        assert_eq!(exchange.logged("api_key"), None);
    }
    let admitted = keyed.send(listing(Some(&format!("Bearer {key}")))).await;
    assert_eq!(admitted.status, 200);
    assert_eq!(admitted.logged("api_key"), Some(&json!("ci")));
    assert_eq!(keyed.get("/openapi.json").await.status, 200, "open without a key");

    let open = Harness::new(guest(), MockStore::new()).unwrap();
    assert_eq!(open.send(listing(None)).await.status, 200, "no keys: reads are open");
}

#[tokio::test]
async fn storage_failure_is_a_clean_503_never_a_trap() {
    let store = MockStore::new();
    let harness = Harness::new(guest(), store.clone()).unwrap();
    store.fail_next(Operation::Insert, StoreError::Unavailable("disk full".into()));
    let message = body("m1", "+1", "2025-01-15T10:00:00Z", Some("hi"));
    let exchange = harness.signed_webhook(&message).await;
    assert_eq!(exchange.status, 503);
    assert_eq!(exchange.header("retry-after"), Some("1"));
    assert_eq!(exchange.json(), json!({"detail": "storage unavailable, retry later"}));
    assert_eq!(exchange.failure, None, "the guest answered; it did not trap");
    assert_eq!(exchange.logged("result"), Some(&json!("storage_error")));
    assert_eq!(exchange.logged("message_id"), Some(&json!("m1")));
    assert_eq!(exchange.webhook_results, ["storage_error"]);
    assert!(
        exchange
            .log
            .events()
            .iter()
            .any(|(level, msg)| *level == Level::Error && msg.contains("disk full")),
        "the reason is logged: {:?}",
        exchange.log.events()
    );
    assert!(store.messages().is_empty());

    // The retry succeeds.
    assert_eq!(harness.signed_webhook(&message).await.status, 200);
    assert_eq!(store.messages().len(), 1);

    store.fail_next(Operation::List, StoreError::Unavailable("locked".into()));
    let listing = harness.get("/messages").await;
    assert_eq!((listing.status, listing.header("retry-after")), (503, Some("1")));
    store.fail_next(Operation::Stats, StoreError::Internal("bug".into()));
    let stats = harness.get("/stats").await;
    assert_eq!((stats.status, stats.json()), (500, json!({"detail": "internal error"})));
}

#[tokio::test]
async fn a_write_held_up_is_a_503_before_the_deadline_and_goes_on() {
    let store = MockStore::new();
    let limits = GuestLimits {
        request_timeout: Duration::from_secs(2),
        ..GuestLimits::default()
    };
    let harness = Harness::with_limits(guest(), store.clone(), limits).unwrap();
    let message = body("m1", "+1", "2025-01-15T10:00:00Z", Some("hi"));
    let hold = store.hold_next(Operation::Insert);
    let held = harness.signed_webhook(&message).await;
    assert_eq!((held.status, held.header("retry-after")), (503, Some("1")));
    assert_eq!(held.failure, None, "the guest answered; the deadline did not");
    assert!(store.messages().is_empty());
    hold.release();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.messages().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the held insert did not go on");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let retry = harness.signed_webhook(&message).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.webhook_results, ["duplicate"]);
}

#[tokio::test]
async fn one_message_is_read_and_erased_through_the_storage_import() {
    let admin = "admin-key-0123456789-abcdefghijklmnopqrstuvwxyz";
    let store = MockStore::new();
    let harness = Harness::new(guest(), store.clone())
        .unwrap()
        .with_api_keys(&format!("ops admin {admin}"));
    let one = |method: &str| {
        http::Request::builder()
            .method(method)
            .uri("/messages/a%2Fb")
            .header("authorization", format!("Bearer {admin}"))
            .body(bytes::Bytes::new())
            .unwrap()
    };
    let message = body("a/b", "+1", "2025-01-15T10:00:00Z", Some("hi"));
    assert_eq!(harness.signed_webhook(&message).await.status, 200);

    let read = harness.send(one("GET")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.storage_calls, [StorageCall::Get("a/b".into())]);
    assert_eq!(read.json()["text"], "hi");
    assert!(read.json()["created_at"].is_string());
    store.fail_next(Operation::Get, StoreError::Unavailable("locked".into()));
    let unavailable = harness.send(one("GET")).await;
    assert_eq!(
        (unavailable.status, unavailable.header("retry-after")),
        (503, Some("1"))
    );

    store.fail_next(Operation::Remove, StoreError::Internal("bug".into()));
    let failed = harness.send(one("DELETE")).await;
    assert_eq!(
        (failed.status, failed.json()),
        (500, json!({"detail": "internal error"}))
    );
    assert_eq!(store.messages().len(), 1, "nothing removed");
    let erased = harness.send(one("DELETE")).await;
    assert_eq!((erased.status, erased.body.len()), (204, 0));
    assert_eq!(erased.storage_calls, [StorageCall::Remove("a/b".into())]);
    assert_eq!(erased.logged("message_id"), Some(&json!("a/b")));
    assert_eq!(store.removed_ids(), ["a/b"]);
    assert_eq!(harness.send(one("DELETE")).await.status, 404);
    assert_eq!(harness.send(one("GET")).await.status, 404);

    let redelivered = harness.signed_webhook(&message).await;
    assert_eq!(redelivered.status, 200);
    assert_eq!(redelivered.logged("dup"), Some(&json!(true)));
    assert!(store.messages().is_empty(), "an erased message is not stored again");
}

#[tokio::test]
async fn the_feed_is_read_and_waited_on_through_the_storage_import() {
    use inlet_harness::FeedPosition;
    let store = MockStore::new();
    let harness = Harness::new(guest(), store.clone()).unwrap();
    for id in ["f1", "f2"] {
        let delivered = harness
            .signed_webhook(&body(id, "+1", "2025-01-15T10:00:00Z", None))
            .await;
        assert_eq!(delivered.status, 200);
    }
    let read = harness.get("/feed?limit=1").await;
    assert_eq!(read.status, 200);
    let start = FeedPosition { epoch: 0, seq: 0 };
    assert_eq!(read.storage_calls, [StorageCall::Feed { after: start, limit: 1 }]);
    assert_eq!(read.json()["data"][0]["message_id"], "f1");
    let next = read.json()["next"].as_str().unwrap().to_owned();
    let rest = harness.get(&format!("/feed?after={next}")).await;
    assert_eq!(rest.json()["data"][0]["message_id"], "f2");

    store.fail_next(Operation::Feed, StoreError::Unavailable("locked".into()));
    let unavailable = harness.get("/feed").await;
    assert_eq!(
        (unavailable.status, unavailable.header("retry-after")),
        (503, Some("1"))
    );
    let foreign = harness.get("/feed?after=QAAAAAAAAAAAAAAAAAAABQ").await;
    assert_eq!(foreign.status, 422);
    assert_eq!(foreign.json()["detail"][0]["loc"], json!(["query", "after"]));

    // Nothing follows the end: the host waits (the run stopped, then run
    // again with the outcome), and the answer is empty with the same `next`.
    let end = rest.json()["next"].as_str().unwrap().to_owned();
    let waited = harness.get(&format!("/feed?after={end}&wait=1")).await;
    assert_eq!(waited.status, 200);
    assert_eq!(waited.json(), json!({"data": [], "next": end}));
    assert_eq!(
        waited.storage_calls.len(),
        2,
        "a read before the wait, one in the run after it"
    );
    // A feed head the host cannot read leaves the wait to time out.
    store.fail_next(Operation::FeedHead, StoreError::Unavailable("locked".into()));
    let started = std::time::Instant::now();
    let blind = harness.get(&format!("/feed?after={end}&wait=1")).await;
    assert_eq!(blind.json(), json!({"data": [], "next": end}));
    assert!(started.elapsed() >= Duration::from_millis(950), "waited out");

    let full = Harness::new(guest(), store.clone()).unwrap().with_feed_waiters(0);
    let refused = full.get(&format!("/feed?after={end}&wait=1")).await;
    assert_eq!((refused.status, refused.header("retry-after")), (503, Some("1")));
}

#[tokio::test]
async fn a_long_poll_straight_back_from_a_short_page_is_paced() {
    let store = MockStore::new();
    let harness = Harness::new(guest(), store.clone()).unwrap();
    let delivered = harness
        .signed_webhook(&body("p1", "+1", "2025-01-15T10:00:00Z", None))
        .await;
    assert_eq!(delivered.status, 200);
    let short = harness.get("/feed").await;
    assert_eq!(
        short.json()["data"].as_array().map(Vec::len),
        Some(1),
        "neither empty nor full"
    );
    let end = short.json()["next"].as_str().unwrap().to_owned();
    // Straight back with nothing new: a run stopped for the pacing, one
    // that finds nothing and waits, one that answers (unpaced: two).
    let paced = harness.get(&format!("/feed?after={end}&wait=1")).await;
    assert_eq!(paced.json(), json!({"data": [], "next": end}));
    assert_eq!(paced.runs, 3);
    // Without a wait nothing is paced.
    let glance = harness.get(&format!("/feed?after={end}")).await;
    assert_eq!((glance.status, glance.runs), (200, 1));
}

#[tokio::test]
async fn a_whatsapp_delivery_whose_commit_fails_is_a_503_with_nothing_stored() {
    let store = MockStore::new();
    let harness = Harness::new(guest(), store.clone()).unwrap();
    let notification = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages",
        "value": {"metadata": {"display_phone_number": "15550783881"},
                  "messages": [{"from": "16505551234", "id": "wamid.1", "timestamp": "1736935200",
                                "type": "text", "text": {"body": "hi"}}]}}]}]})
    .to_string();
    let signature = format!("sha256={}", harness.sign(&notification));
    let deliver = || {
        let request = http::Request::post("/webhook/whatsapp")
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature.as_str())
            .body(bytes::Bytes::from(notification.clone()))
            .unwrap();
        harness.send(request)
    };
    store.fail_next(Operation::InsertBatch, StoreError::Unavailable("disk full".into()));
    let exchange = deliver().await;
    assert_eq!((exchange.status, exchange.header("retry-after")), (503, Some("1")));
    assert_eq!(exchange.webhook_results, ["storage_error"]);
    assert!(store.messages().is_empty());
    // Meta's retry succeeds.
    let exchange = deliver().await;
    assert_eq!(exchange.status, 200);
    assert_eq!(exchange.webhook_results, ["created"]);
    assert_eq!(store.messages().len(), 1);
}

#[tokio::test]
async fn duplicate_is_logged_as_dup() {
    let harness = Harness::new(guest(), MockStore::new()).unwrap();
    let message = body("m1", "+1", "2025-01-15T10:00:00Z", None);
    let first = harness.signed_webhook(&message).await;
    assert_eq!(
        (first.logged("dup"), first.logged("result")),
        (Some(&json!(false)), Some(&json!("created")))
    );
    let second = harness.signed_webhook(&message).await;
    assert_eq!(second.status, 200);
    assert_eq!(
        (second.logged("dup"), second.logged("result")),
        (Some(&json!(true)), Some(&json!("duplicate")))
    );
    assert!(matches!(&second.storage_calls[..], [StorageCall::Insert(m)] if m.message_id == "m1"));
}

#[tokio::test]
async fn mock_page_and_stats_render_as_the_spec_shapes_them() {
    let store = MockStore::new();
    for message in [
        stored("b", "+2", "2025-01-15T10:00:00Z", 1_736_935_200_000_000, None),
        stored("a", "+1", "2025-01-15T09:00:00Z", 1_736_931_600_000_000, Some("Hello")),
    ] {
        assert_eq!(store.insert(message).await, Ok(InsertOutcome::Created));
    }
    let harness = Harness::new(guest(), store).unwrap();
    let page = harness.get("/messages?limit=1&offset=1").await;
    assert_eq!(
        page.json(),
        json!({"data": [{"message_id": "b", "from": "+2", "to": "+14155550100", "ts": "2025-01-15T10:00:00Z", "text": null}],
               "total": 2, "limit": 1, "offset": 1, "next_cursor": null})
    );
    assert!(matches!(&page.storage_calls[..], [StorageCall::List(r)] if r.limit == 1 && r.offset == 1));
    let stats = harness.get("/stats").await;
    assert_eq!(
        stats.json(),
        json!({"total_messages": 2, "senders_count": 2,
               "messages_per_sender": [{"from": "+1", "count": 1}, {"from": "+2", "count": 1}],
               "first_message_ts": "2025-01-15T09:00:00Z", "last_message_ts": "2025-01-15T10:00:00Z"})
    );
    assert_eq!(stats.storage_calls, [StorageCall::Stats { top_senders: 10 }]);
}

/// One scripted session: requests to send, in order.
enum Step {
    Webhook(String),
    Get(&'static str),
}

fn shared_cases() -> Vec<Step> {
    let mut steps = vec![
        Step::Get("/stats"),
        Step::Webhook(body("m3", "+919876543210", "2025-01-15T10:00:00Z", Some("Hello again"))),
        Step::Webhook(body("m1", "+919876543210", "2025-01-15T09:00:00Z", Some("hello world"))),
        Step::Webhook(body(
            "m2",
            "+447700900123",
            "2025-01-15T09:30:00.5Z",
            Some("50% off_now"),
        )),
        Step::Webhook(body("m4", "+447700900123", "2025-01-15T09:30:00Z", None)),
        Step::Webhook(body(
            "m5",
            "+447700900123",
            "2025-01-15T11:00:00Z",
            Some("ΟΔΟΣ École İSTANBUL"),
        )),
        Step::Webhook(body("m1", "+1", "2025-01-15T09:00:00Z", Some("dup"))),
        Step::Webhook("not json".into()),
    ];
    for query in [
        "/messages",
        "/messages?limit=2&offset=1",
        "/messages?offset=10",
        "/messages?from=+919876543210",
        "/messages?since=2025-01-15T09:30:00.2Z",
        "/messages?q=HELLO",
        "/messages?q=%C3%A9cole",
        "/messages?q=%CE%BF%CE%B4%CE%BF%CF%82",
        "/messages?q=i%CC%87stanbul",
        "/messages?q=%25",
        "/messages?q=_",
        "/messages?limit=0",
        "/stats",
        "/nope",
    ] {
        steps.push(Step::Get(query));
    }
    steps
}

async fn run(harness: &Harness) -> Vec<(u16, String)> {
    let mut results = Vec::new();
    for step in shared_cases() {
        let exchange = match step {
            Step::Webhook(body) => harness.signed_webhook(&body).await,
            Step::Get(path) => harness.get(path).await,
        };
        results.push((exchange.status, String::from_utf8(exchange.body).unwrap()));
    }
    results
}

#[tokio::test]
async fn guest_behaves_the_same_on_the_mock_and_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("app.db")).unwrap();
    let on_sqlite = run(&Harness::new(guest(), sqlite).unwrap()).await;
    let on_mock = run(&Harness::new(guest(), MockStore::new()).unwrap()).await;
    assert_eq!(on_mock.len(), on_sqlite.len());
    for (index, (mock, sqlite)) in on_mock.iter().zip(&on_sqlite).enumerate() {
        assert_eq!(mock, sqlite, "step {index} differs");
    }
    let created = on_sqlite.iter().filter(|(status, _)| *status == 200).count();
    assert!(created > 10, "the session exercised real work: {on_sqlite:?}");
    // Unicode case folding found the mixed-script message on both.
    for (step, (_, body)) in shared_cases().iter().zip(&on_sqlite) {
        if let Step::Get(query) = step
            && query.contains("%C3%A9cole")
        {
            assert!(body.contains(r#""total":1"#), "{query}: {body}");
        }
    }
}

#[tokio::test]
async fn a_failing_guest_gets_the_answer_the_server_gives() {
    let limits = GuestLimits {
        request_timeout: Duration::from_millis(300),
        memory_bytes: 16 << 20,
        ..GuestLimits::default()
    };
    let harness = Harness::with_limits(inlet_e2e::misbehaving_guest(), MockStore::new(), limits).unwrap();
    for (path, status, detail, failure) in [
        ("/loop", 504, "request deadline exceeded", "deadline"),
        ("/hammer", 504, "request deadline exceeded", "deadline"),
        ("/alloc", 500, "internal error", "memory"),
        ("/panic", 500, "internal error", "trap"),
    ] {
        let exchange = harness.get(path).await;
        assert_eq!(
            (exchange.status, exchange.json()),
            (status, json!({"detail": detail})),
            "{path}"
        );
        assert_eq!(exchange.failure.as_ref().map(|f| f.reason()), Some(failure), "{path}");
    }
    assert_eq!(harness.get("/fine").await.status, 200);
}

#[tokio::test]
async fn forwarding_routes_report_retry_and_fail_as_the_import_answers() {
    use std::sync::Arc;

    use inlet_harness::MockForwarding;
    let admin = |method: &str, path: &str| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer inlet_harness-admin-key-000000000000000")
            .body(bytes::Bytes::new())
            .unwrap()
    };
    let keys = "ops admin inlet_harness-admin-key-000000000000000\n";
    let none = Harness::new(guest(), MockStore::new()).unwrap().with_api_keys(keys);
    assert_eq!(
        none.send(admin("GET", "/forwarding")).await.status,
        404,
        "not configured"
    );
    assert_eq!(none.send(admin("POST", "/forwarding/retry")).await.status, 404);

    let forwarding = Arc::new(MockForwarding::new("https://crm.example.com/in", 3, 2));
    let harness = Harness::new(guest(), MockStore::new())
        .unwrap()
        .with_api_keys(keys)
        .with_forwarding(forwarding.clone());
    let status = harness.send(admin("GET", "/forwarding")).await;
    assert_eq!(status.status, 200);
    assert_eq!(
        status.json(),
        json!({"destination": "https://crm.example.com/in", "pending": 3, "failed": 2,
               "oldest_pending_age_seconds": 1.5})
    );
    assert_eq!(harness.get("/forwarding").await.status, 401, "the admin key is needed");
    let retried = harness.send(admin("POST", "/forwarding/retry")).await;
    assert_eq!(retried.json(), json!({"requeued": 2}));
    assert_eq!(forwarding.retries(), 1);
    assert_eq!(harness.send(admin("GET", "/forwarding")).await.json()["pending"], 5);

    forwarding.fail_with(Some(StoreError::Unavailable("locked".into())));
    let unavailable = harness.send(admin("POST", "/forwarding/retry")).await;
    assert_eq!(
        (unavailable.status, unavailable.header("retry-after")),
        (503, Some("1"))
    );
    forwarding.fail_with(Some(StoreError::Internal("broken".into())));
    assert_eq!(harness.send(admin("GET", "/forwarding")).await.status, 500);
}
