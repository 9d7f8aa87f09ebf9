//! Forwarding (`FORWARD_URL`): every new message reaches a real HTTP
//! receiver at least once, signed, through failures, stalls, a receiver
//! that is down and a SIGKILL of the host; and a real NATS JetStream
//! (`jetstream`), through a broker that is down and a SIGKILL.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use inlet_e2e::receiver::{Answer, Delivery, Receiver};
use inlet_e2e::{Server, message, sign, wait_until};
use serde_json::Value;
use sha2::Sha256;

/// The key deliveries are signed with: Standard Webhooks' own example.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How long a test waits for deliveries that should arrive.
const DELIVERED_WITHIN: Duration = Duration::from_secs(20);

fn forwarding_to(receiver: &Receiver, more: &[(&str, &str)]) -> Server {
    let url = receiver.url();
    let mut env = vec![("FORWARD_URL", url.as_str()), ("FORWARD_SECRET", SECRET)];
    env.extend_from_slice(more);
    Server::start_with(&env)
}

/// Posts one message per id; all must be acknowledged.
fn post(server: &Server, ids: &[String]) {
    for id in ids {
        let body = message(id, "+15550001", "2025-01-15T10:00:00Z", Some("forward me"));
        let reply = server.webhook(&body, Some(&sign(&body)));
        assert_eq!(reply.status, 200, "{id}: {}", reply.body);
    }
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// The Standard Webhooks signature of `delivery`, computed here from the
/// specification rather than by Inlet's own code.
fn signature_holds(delivery: &Delivery) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let (Some(id), Some(timestamp), Some(signature)) = (
        delivery.header("webhook-id"),
        delivery.header("webhook-timestamp"),
        delivery.header("webhook-signature"),
    ) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{}", delivery.body).as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signature.split(' ').any(|entry| entry == format!("v1,{expected}"))
}

/// `forward_deliveries_total{result}` as `/metrics` shows it now.
fn deliveries_counted(server: &Server, result: &str) -> u64 {
    let series = format!("forward_deliveries_total{{result=\"{result}\"}}");
    server
        .metric(&series)
        .expect("every result is on /metrics from the start") as u64
}

#[test]
fn every_new_message_is_delivered_once_signed_with_its_stored_fields() {
    let receiver = Receiver::start();
    let server = forwarding_to(&receiver, &[]);
    let sent = ids("happy", 60);
    post(&server, &sent);
    // A redelivery is a duplicate: not forwarded again.
    post(&server, &sent[..5]);
    assert_eq!(receiver.wait_for(&sent, DELIVERED_WITHIN), Vec::<String>::new());
    // Give a stray second delivery time to show.
    std::thread::sleep(Duration::from_millis(500));
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), sent.len(), "each message exactly once");
    for delivery in &deliveries {
        assert!(signature_holds(delivery), "{delivery:?}");
        assert_eq!(delivery.header("content-type"), Some("application/json"));
        let id = delivery.message_id();
        assert_eq!(delivery.header("webhook-id"), Some(id.as_str()));
        let body: Value = serde_json::from_str(&delivery.body).unwrap();
        let stored = server.get(&format!("/messages/{id}")).json();
        for field in ["message_id", "from", "to", "ts", "text", "created_at"] {
            assert_eq!(body[field], stored[field], "{field} of {id}");
        }
        let at = |field: &str| delivery.body.find(&format!("\"{field}\":")).unwrap();
        let order = ["message_id", "from", "to", "ts", "text", "created_at"].map(at);
        assert!(order.is_sorted(), "fields in the contract's order: {}", delivery.body);
    }
    // Counted once the receiver's answer is back, a moment after it kept the delivery.
    assert!(wait_until(Duration::from_secs(10), || server.metric("forward_pending")
        == Some(0.0)));
    assert!(wait_until(Duration::from_secs(10), || deliveries_counted(
        &server,
        "delivered"
    ) >= 60));
    assert_eq!(deliveries_counted(&server, "delivered"), 60);
}

#[test]
fn messages_stored_before_forwarding_was_configured_are_not_forwarded() {
    let receiver = Receiver::start();
    let server = Server::start();
    post(&server, &ids("before", 3));
    let dir = server.kill();
    let url = receiver.url();
    let server = Server::start_in(dir, &[("FORWARD_URL", &url), ("FORWARD_SECRET", SECRET)]);
    let after = ids("after", 3);
    post(&server, &after);
    assert_eq!(receiver.wait_for(&after, DELIVERED_WITHIN), Vec::<String>::new());
    std::thread::sleep(Duration::from_millis(500));
    let delivered: HashSet<String> = receiver.delivered_ids().into_iter().collect();
    assert_eq!(delivered, after.into_iter().collect());
}

#[test]
fn failed_attempts_are_retried_with_backoff_and_logged_without_the_secret() {
    let receiver = Receiver::start();
    receiver.answer(Answer::Status(503));
    let server = forwarding_to(&receiver, &[]);
    let sent = ids("retried", 5);
    post(&server, &sent);
    assert!(
        wait_until(DELIVERED_WITHIN, || deliveries_counted(&server, "retry") >= 5),
        "first attempts failed"
    );
    receiver.answer(Answer::Status(200));
    assert_eq!(receiver.wait_for(&sent, DELIVERED_WITHIN), Vec::<String>::new());
    // Backoff starts at a second, give or take a quarter: no attempt
    // followed the one before it at once.
    let deliveries = receiver.deliveries();
    for id in &sent {
        let times: Vec<Instant> = deliveries
            .iter()
            .filter(|d| &d.message_id() == id)
            .map(|d| d.arrived)
            .collect();
        assert!(times.len() >= 2, "{id}: {times:?}");
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(700), "{id}: {times:?}");
        }
    }
    let failed_lines: Vec<Value> = server
        .logs()
        .into_iter()
        .filter(|line| line["msg"] == "forward attempt failed")
        .collect();
    assert!(failed_lines.len() >= 5, "{failed_lines:?}");
    for line in &failed_lines {
        assert!(sent.iter().any(|id| line["message_id"] == id.as_str()), "{line}");
        assert!(line["attempt"].as_u64().is_some_and(|n| n >= 1), "{line}");
        assert_eq!(line["reason"], "status 503", "{line}");
    }
    assert!(!server.raw_logs().contains(SECRET.trim_start_matches("whsec_")));
}

const ADMIN_KEY: &str = "inlet_forwarding-test-admin-key-0123456789";
const READ_KEY: &str = "inlet_forwarding-test-read-key-0123456789ab";

/// `method path` with `key` presented.
fn with_key(server: &Server, key: &str, method: &str, path: &str) -> inlet_e2e::Reply {
    server.request_with(method, path, None, &[("Authorization", &format!("Bearer {key}"))])
}

#[test]
fn a_message_out_of_attempts_is_failed_until_an_operator_retries_it() {
    let receiver = Receiver::start();
    receiver.answer(Answer::Status(500));
    let url = receiver.url();
    let keys = format!("ops admin {ADMIN_KEY}\nreader read {READ_KEY}\n");
    let server = Server::start_with_keys(
        &keys,
        &[
            ("FORWARD_URL", &url),
            ("FORWARD_SECRET", SECRET),
            ("FORWARD_MAX_ATTEMPTS", "2"),
        ],
    );
    let doomed = ids("doomed", 2);
    post(&server, &doomed);
    assert!(wait_until(DELIVERED_WITHIN, || deliveries_counted(&server, "failed") == 2));
    let attempts = receiver.deliveries().len();
    assert_eq!(attempts, 4, "two attempts each");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        receiver.deliveries().len(),
        attempts,
        "a failed message is not tried again"
    );
    let failed = server
        .logs()
        .into_iter()
        .filter(|line| line["msg"] == "forwarding failed; waiting for POST /forwarding/retry");
    assert_eq!(failed.count(), 2);
    let status = with_key(&server, ADMIN_KEY, "GET", "/forwarding");
    assert_eq!(status.status, 200, "{}", status.body);
    let status = status.json();
    assert_eq!(status["destination"], url.as_str());
    assert_eq!(
        (status["pending"].as_u64(), status["failed"].as_u64()),
        (Some(0), Some(2))
    );
    assert!(status["oldest_pending_age_seconds"].is_null());
    // The operator's routes need the admin key.
    assert_eq!(server.get("/forwarding").status, 401);
    let reader = with_key(&server, READ_KEY, "POST", "/forwarding/retry");
    assert_eq!(reader.status, 403);
    receiver.answer(Answer::Status(200));
    let retried = with_key(&server, ADMIN_KEY, "POST", "/forwarding/retry");
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.json(), serde_json::json!({"requeued": 2}));
    assert_eq!(receiver.wait_for(&doomed, DELIVERED_WITHIN), Vec::<String>::new());
    assert!(wait_until(Duration::from_secs(10), || {
        let status = with_key(&server, ADMIN_KEY, "GET", "/forwarding").json();
        status["pending"] == 0 && status["failed"] == 0
    }));
}

#[test]
fn without_forwarding_its_routes_are_not_found() {
    let keys = format!("ops admin {ADMIN_KEY}\n");
    let server = Server::start_with_keys(&keys, &[]);
    assert_eq!(with_key(&server, ADMIN_KEY, "GET", "/forwarding").status, 404);
    let retry = with_key(&server, ADMIN_KEY, "POST", "/forwarding/retry");
    assert_eq!(retry.status, 404);
}

#[test]
fn retention_keeps_a_message_until_it_is_delivered() {
    let mut receiver = Receiver::start();
    receiver.down();
    let server = forwarding_to(&receiver, &[("RETENTION", "1s")]);
    let sent = ids("kept", 10);
    post(&server, &sent);
    // Past its age and more than one retention pass.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(server.stored_rows(), 10, "owed messages are kept");
    receiver.up();
    assert_eq!(receiver.wait_for(&sent, DELIVERED_WITHIN), Vec::<String>::new());
    assert!(
        wait_until(DELIVERED_WITHIN, || server.stored_rows() == 0),
        "removed once delivered"
    );
}

#[test]
fn a_stalled_answer_holds_up_no_other_delivery() {
    let receiver = Receiver::start();
    receiver.answer(Answer::StallPrefix("slow", Duration::from_secs(12)));
    let server = forwarding_to(&receiver, &[("FORWARD_TIMEOUT_MS", "10000")]);
    post(&server, &ids("slow", 2));
    let quick = ids("quick", 40);
    post(&server, &quick);
    // Well before the stalled deliveries' timeout would free their turns.
    let missing = receiver.wait_for(&quick, Duration::from_secs(6));
    let forward_lines: Vec<String> = server
        .raw_logs()
        .lines()
        .filter(|line| line.contains("forward"))
        .map(str::to_owned)
        .collect();
    assert_eq!(missing, Vec::<String>::new(), "{forward_lines:#?}");
}

#[test]
fn a_receiver_that_is_down_slows_no_webhook_and_gets_everything_when_back() {
    let mut receiver = Receiver::start();
    receiver.down();
    let server = forwarding_to(&receiver, &[]);
    let sent = ids("down", 50);
    let started = Instant::now();
    post(&server, &sent);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ingest went on at its pace"
    );
    assert!(wait_until(DELIVERED_WITHIN, || deliveries_counted(&server, "retry") >= 50));
    receiver.up();
    // The first retries come within two seconds (a second plus jitter).
    assert_eq!(receiver.wait_for(&sent, DELIVERED_WITHIN), Vec::<String>::new());
}

#[test]
fn a_sigkill_mid_delivery_loses_no_delivery() {
    let receiver = Receiver::start();
    receiver.answer(Answer::StallPrefix("kill", Duration::from_millis(300)));
    let mut dir = tempfile::tempdir().unwrap();
    let url = receiver.url();
    let env = [
        ("FORWARD_URL", url.as_str()),
        ("FORWARD_SECRET", SECRET),
        ("FORWARD_CONCURRENCY", "4"),
    ];
    let mut sent = Vec::new();
    for round in 0..3 {
        let server = Server::start_in(dir, &env);
        let batch = ids(&format!("kill-{round}"), 40);
        post(&server, &batch);
        sent.extend(batch);
        // Some deliveries are under way, most are not yet.
        std::thread::sleep(Duration::from_millis(700));
        dir = server.kill();
    }
    let _server = Server::start_in(dir, &env);
    assert_eq!(receiver.wait_for(&sent, Duration::from_secs(60)), Vec::<String>::new());
    let mut times: HashMap<String, usize> = HashMap::new();
    for id in receiver.delivered_ids() {
        *times.entry(id).or_default() += 1;
    }
    let repeated = times.values().filter(|n| **n > 1).count();
    println!("{} messages, {repeated} delivered more than once", sent.len());
}

#[test]
fn a_straggler_whose_host_died_is_delivered_by_the_next_once_its_lease_ran_out() {
    // An attempt still running a second after its page began (the host's
    // grace) is left to a leased retry row and the position moves on; the
    // host dies before the answer. The next one must take the row up once
    // its lease ran out, and not before.
    let receiver = Receiver::start();
    receiver.answer(Answer::StallPrefix("straggler", Duration::from_secs(10)));
    let url = receiver.url();
    let env = [
        ("FORWARD_URL", url.as_str()),
        ("FORWARD_SECRET", SECRET),
        // Long enough that the attempt is still running at the kill.
        ("FORWARD_TIMEOUT_MS", "2500"),
    ];
    let server = Server::start_in(tempfile::tempdir().unwrap(), &env);
    post(&server, &ids("straggler", 1));
    let leased = || server.query("SELECT next_attempt_at, attempts FROM forward_retries");
    assert!(
        wait_until(Duration::from_secs(10), || !leased().is_empty()),
        "no retry row"
    );
    let row = leased();
    let dir = server.kill();
    let field = |column: usize| -> i64 { row[0][column].as_deref().unwrap().parse().unwrap() };
    assert_eq!(field(1), 0, "the attempt ended before the kill");
    let lease_ends = field(0);
    receiver.answer(Answer::Status(204));
    let next = Server::start_in(dir, &env);
    let early = lease_ends - 3000 - unix_ms();
    std::thread::sleep(Duration::from_millis(early.max(0).unsigned_abs()));
    assert_eq!(deliveries_counted(&next, "delivered"), 0, "taken up while still leased");
    assert!(
        wait_until(Duration::from_secs(30), || deliveries_counted(&next, "delivered") == 1),
        "the straggler was not taken up: {}",
        next.raw_logs()
    );
    assert!(unix_ms() >= lease_ends);
    assert!(receiver.delivered_ids().contains(&"straggler-0".to_owned()));
}

fn unix_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

#[test]
fn bad_forwarding_settings_stop_start_up_naming_the_variable() {
    for (env, variable) in [
        (vec![("FORWARD_URL", "ftp://example.com/x")], "FORWARD_URL"),
        (vec![("FORWARD_URL", "http://127.0.0.1:9/x")], "FORWARD_SECRET"),
        (vec![("FORWARD_URL", "nats://127.0.0.1:4222/a.*")], "FORWARD_URL"),
        (
            vec![
                ("FORWARD_URL", "http://127.0.0.1:9/x"),
                ("FORWARD_SECRET", "k"),
                ("FORWARD_MAX_ATTEMPTS", "0"),
            ],
            "FORWARD_MAX_ATTEMPTS",
        ),
        (
            vec![
                ("FORWARD_URL", "http://127.0.0.1:9/x"),
                ("FORWARD_SECRET", "k"),
                ("FORWARD_TIMEOUT_MS", "x"),
            ],
            "FORWARD_TIMEOUT_MS",
        ),
    ] {
        let mut server = Server::launch_in(tempfile::tempdir().unwrap(), &env);
        assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(2), "{env:?}");
        let logs = server.raw_logs();
        assert!(logs.contains(variable), "{env:?}: {logs}");
    }
}

/// Forwarding to a real `nats-server -js`.
mod jetstream {
    use inlet_e2e::nats::Broker;

    use super::*;

    const STREAM: &str = "INLET";
    const SUBJECT: &str = "inlet.messages";
    /// Longer than any test: a redelivery is always dropped.
    const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

    fn forwarding_to(broker: &Broker, dir: tempfile::TempDir) -> Server {
        Server::start_in(dir, &[("FORWARD_URL", &broker.url(SUBJECT))])
    }

    /// Waits until the stream holds a message for each of `ids`; the ids
    /// it holds then, one per message.
    fn published_ids(broker: &Broker, ids: &[String], within: Duration) -> Vec<String> {
        let held = || -> Vec<String> {
            let messages = broker.streams().messages_after(STREAM, 0).unwrap();
            messages
                .iter()
                .map(|m| m.message_id.clone().unwrap_or_default())
                .collect()
        };
        wait_until(within, || {
            let held: HashSet<String> = held().into_iter().collect();
            ids.iter().all(|id| held.contains(id))
        });
        held()
    }

    #[test]
    fn each_new_message_is_published_once_with_its_id_and_stored_fields() {
        let broker = Broker::start();
        broker.streams().bind(STREAM, SUBJECT, DUPLICATE_WINDOW).unwrap();
        let server = forwarding_to(&broker, tempfile::tempdir().unwrap());
        let sent = ids("nats", 30);
        post(&server, &sent);
        let mut held = published_ids(&broker, &sent, DELIVERED_WITHIN);
        held.sort();
        let mut expected = sent.clone();
        expected.sort();
        assert_eq!(held, expected);
        for message in broker.streams().messages_after(STREAM, 0).unwrap() {
            let body: Value = serde_json::from_str(&message.body).unwrap();
            let id = body["message_id"].as_str().unwrap();
            assert_eq!(message.message_id.as_deref(), Some(id));
            let stored = server.get(&format!("/messages/{id}")).json();
            for field in ["message_id", "from", "to", "ts", "text", "created_at"] {
                assert_eq!(body[field], stored[field], "{field} of {id}");
            }
        }
        // JetStream acks a duplicate as well: Inlet's own count shows it
        // published each message once, and no more after a while.
        assert!(wait_until(DELIVERED_WITHIN, || deliveries_counted(
            &server,
            "delivered"
        ) >= 30));
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(deliveries_counted(&server, "delivered"), 30);
        assert_eq!(deliveries_counted(&server, "retry"), 0);
    }

    #[test]
    fn a_broker_down_or_without_a_stream_delays_deliveries_and_loses_none() {
        let mut broker = Broker::start();
        let server = forwarding_to(&broker, tempfile::tempdir().unwrap());
        // No stream bound yet: JetStream has no responder for the subject.
        let early = ids("unbound", 5);
        post(&server, &early);
        assert!(wait_until(DELIVERED_WITHIN, || deliveries_counted(&server, "retry") >= 5));
        server.wait_for_line(|line| {
            line["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("no JetStream stream"))
        });
        broker.down();
        let started = Instant::now();
        let late = ids("down", 20);
        post(&server, &late);
        assert!(started.elapsed() < Duration::from_secs(5), "ingest went on at its pace");
        std::thread::sleep(Duration::from_secs(2));
        broker.up();
        broker.streams().bind(STREAM, SUBJECT, DUPLICATE_WINDOW).unwrap();
        let everything: Vec<String> = early.into_iter().chain(late).collect();
        let held: HashSet<String> = published_ids(&broker, &everything, Duration::from_secs(60))
            .into_iter()
            .collect();
        assert_eq!(held, everything.into_iter().collect());
    }

    #[test]
    fn a_sigkill_mid_delivery_loses_none_and_the_stream_drops_the_repeats() {
        let broker = Broker::start();
        broker.streams().bind(STREAM, SUBJECT, DUPLICATE_WINDOW).unwrap();
        let mut dir = tempfile::tempdir().unwrap();
        let mut sent = Vec::new();
        for round in 0..3 {
            let server = forwarding_to(&broker, dir);
            let batch = ids(&format!("nats-kill-{round}"), 40);
            post(&server, &batch);
            sent.extend(batch);
            // Killed once deliveries have begun: the stream holds some of
            // what was sent, most likely not all.
            let held = || broker.streams().messages_after(STREAM, 0).unwrap().len();
            assert!(wait_until(DELIVERED_WITHIN, || held() > sent.len() - 40));
            dir = server.kill();
        }
        let _server = forwarding_to(&broker, dir);
        let mut held = published_ids(&broker, &sent, Duration::from_secs(60));
        held.sort();
        sent.sort();
        assert_eq!(held, sent, "every message exactly once in the stream");
    }
}
