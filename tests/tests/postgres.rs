//! Several hosts on one PostgreSQL database, and the faults they must
//! survive: duplicates split across hosts, a host killed under load, the
//! database stopped under load, the forwarding host killed for good. Each test runs its own hosts on a database
//! of its own (`inlet-pgserver`), whatever `INLET_E2E_BACKEND` says.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use inlet_e2e::feed::Follower;
use inlet_e2e::{Reply, Server, message, wait_until};
use inlet_pgserver::{PgServer, Session, fresh_database, psql};

/// A host serving the database at `url`.
fn host(url: &str) -> Server {
    let mut server = Server::start_with(&[("DATABASE_URL", url)]);
    server.wait_ready();
    server
}

/// The message ids stored in the database at `url`.
fn stored_ids(url: &str) -> HashSet<String> {
    psql(url, "SELECT message_id FROM messages")
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The sum of `webhook_requests_total{result="…"}` on `hosts`.
fn counted(hosts: &[&Server], result: &str) -> u64 {
    let series = format!("webhook_requests_total{{result=\"{result}\"}}");
    hosts
        .iter()
        .map(|host| {
            host.metric(&series)
                .expect("every result is on /metrics from the start") as u64
        })
        .sum()
}

#[test]
fn duplicates_sent_to_two_hosts_at_once_make_one_row_each() {
    let url = fresh_database();
    let (a, b) = (host(&url), host(&url));
    let ids = 30;
    std::thread::scope(|scope| {
        for copy in 0..8 {
            let server = if copy % 2 == 0 { &a } else { &b };
            scope.spawn(move || {
                for n in 0..ids {
                    let body = message(&format!("d{n}"), "+1", "2025-01-15T10:00:00Z", Some("twice"));
                    let reply = server.try_deliver(&body).expect("an answer");
                    assert_eq!(reply.status, 200, "{}", reply.body);
                }
            });
        }
    });
    assert_eq!(stored_ids(&url).len(), ids);
    // Metrics are counted just after each response: give the last a moment.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(counted(&[&a, &b], "created"), ids as u64);
    assert_eq!(counted(&[&a, &b], "duplicate"), 7 * ids as u64);
    let page = b.get("/messages?limit=100").json();
    assert_eq!(page["total"], ids);
    assert_eq!(b.get("/stats").json()["total_messages"], ids);
}

/// What a load against some hosts saw.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<String>,
    unavailable: usize,
    /// Any other answer: status and body.
    wrong: Vec<(u16, String)>,
    /// Requests that got no answer (their host died).
    unanswered: usize,
}

impl Seen {
    fn record(&mut self, id: String, reply: Option<Reply>) {
        match reply {
            Some(reply) if reply.status == 200 => self.acknowledged.push(id),
            Some(reply) if reply.status == 503 && reply.header("retry-after") == Some("1") => self.unavailable += 1,
            Some(reply) => self.wrong.push((reply.status, reply.body)),
            None => self.unanswered += 1,
        }
    }
}

/// Sends unique signed messages from 4 clients, each to `targets[i % n]`,
/// until `stop` (at most 5,000 each); what they saw.
fn load(targets: &[&Server], stop: &AtomicBool, seen: &Mutex<Seen>) {
    std::thread::scope(|scope| {
        for client in 0..4 {
            let server = targets[client % targets.len()];
            scope.spawn(move || {
                for n in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("c{client}-{n}");
                    let body = message(&id, &format!("+{client}"), "2025-01-15T10:00:00Z", Some("load"));
                    let reply = server.try_deliver(&body);
                    seen.lock().unwrap().record(id, reply);
                }
            });
        }
    });
}

#[test]
fn a_host_killed_under_load_loses_no_acknowledged_message() {
    let url = fresh_database();
    let (doomed, survivor) = (host(&url), host(&url));
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    std::thread::scope(|scope| {
        scope.spawn(|| load(&[&doomed, &survivor], &stop, &seen));
        std::thread::sleep(Duration::from_millis(800));
        doomed.signal("KILL");
        std::thread::sleep(Duration::from_millis(800));
        stop.store(true, Ordering::Relaxed);
    });
    let seen = seen.into_inner().unwrap();
    assert!(seen.wrong.is_empty(), "{:?}", seen.wrong);
    let stored = stored_ids(&url);
    let lost: Vec<&String> = seen.acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(
        seen.acknowledged.len() > 100,
        "too little load: {}",
        seen.acknowledged.len()
    );
    // The survivor went on serving.
    assert_eq!(survivor.get("/health/ready").status, 200);
    println!(
        "host killed: {} acknowledged, {} unanswered (in flight on the killed host or sent to it after)",
        seen.acknowledged.len(),
        seen.unanswered
    );
}

#[test]
fn the_database_stopped_under_load_gives_503_then_recovers_by_itself() {
    let server = PgServer::start().unwrap();
    let url = server.fresh_database();
    let inlet = host(&url);
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    let mut outage_ready = None;
    std::thread::scope(|scope| {
        scope.spawn(|| load(&[&inlet], &stop, &seen));
        std::thread::sleep(Duration::from_millis(700));
        server.crash();
        let deadline = Instant::now() + Duration::from_secs(5);
        while outage_ready.is_none() && Instant::now() < deadline {
            let status = inlet.get("/health/ready").status;
            if status != 200 {
                outage_ready = Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        server.restart().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while inlet.get("/health/ready").status != 200 {
            assert!(
                Instant::now() < deadline,
                "not ready again 15 s after the database came back"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });
    let seen = seen.into_inner().unwrap();
    assert_eq!(outage_ready, Some(503), "readiness during the outage");
    assert!(
        seen.wrong.is_empty(),
        "only 200 and 503 + Retry-After: {:?}",
        seen.wrong
    );
    assert_eq!(seen.unanswered, 0);
    assert!(seen.unavailable > 0, "the outage was not seen");
    let stored = stored_ids(&url);
    let lost: Vec<&String> = seen.acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let after = message("after", "+9", "2025-01-15T10:00:00Z", None);
    assert_eq!(inlet.try_deliver(&after).map(|r| r.status), Some(200));
    println!(
        "database outage: {} acknowledged, {} answered 503",
        seen.acknowledged.len(),
        seen.unavailable
    );
}

/// Runs `inlet copy` with `args`; its JSON report and whether it exited 0.
fn copy(args: &[&str]) -> (serde_json::Value, bool) {
    let out = std::process::Command::new(inlet_e2e::inlet_bin())
        .arg("copy")
        .args(args)
        .output()
        .unwrap();
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (report, out.status.success())
}

#[test]
fn inlet_copy_moves_a_sqlite_database_resumably_and_checks_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite:///{}", dir.path().join("app.db").display());
    let seeded = std::process::Command::new(inlet_e2e::inlet_bin())
        .args(["seed", "--count", "2500", "--senders", "40", "--database", &sqlite_url])
        .output()
        .unwrap();
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
    let source = Server::start_in(
        tempfile::TempDir::new_in(dir.path()).unwrap(),
        &[("DATABASE_URL", &sqlite_url)],
    );
    for (id, text) in [("nul\u{0}id", "a\u{0}b"), ("unicode", "ΟΔΟΣ École")] {
        let body =
            serde_json::json!({"message_id": id, "from": "+1", "to": "+2", "ts": "2024-06-01T00:00:00Z", "text": text});
        source.deliver(&body.to_string());
    }
    let url = fresh_database();
    let args = ["--from", &sqlite_url, "--to", &url, "--chunk", "1000"];

    let (first, complete) = copy(&[&args[..], &["--stop-after-chunks", "1"]].concat());
    assert!(!complete, "{first}");
    assert_eq!(
        (first["copied"].as_u64(), first["missing"].as_u64()),
        (Some(1000), Some(1502)),
        "{first}"
    );

    let (second, complete) = copy(&args);
    assert!(complete, "{second}");
    assert_eq!(second["copied"], 1502, "resumed after the first chunk: {second}");
    assert_eq!(
        (second["source_rows"].as_u64(), second["verified"].as_u64()),
        (Some(2502), Some(2502))
    );

    let (third, complete) = copy(&args);
    assert!(complete, "{third}");
    assert_eq!(
        (third["copied"].as_u64(), third["verified"].as_u64()),
        (Some(0), Some(2502))
    );

    let target = host(&url);
    for path in [
        "/stats",
        "/messages?limit=100&offset=1200",
        "/messages?q=%C3%A9cole",
        "/messages?q=a%00b",
    ] {
        assert_eq!(target.get(path).json(), source.get(path).json(), "{path}");
    }
    assert_feed_carried_over(&source, &target);

    psql(
        &url,
        "UPDATE messages SET to_msisdn = '+3' WHERE message_id = 'unicode'",
    )
    .unwrap();
    let (changed, complete) = copy(&args);
    assert!(!complete);
    assert_eq!(
        (changed["mismatched"].as_u64(), changed["verified"].as_u64()),
        (Some(1), Some(2501))
    );
}

/// A consumer of the SQLite feed goes on from its position on PostgreSQL
/// after the copy: the rest of the messages in the same order, then what
/// PostgreSQL stores.
fn assert_feed_carried_over(source: &Server, target: &Server) {
    let mut whole = Follower::new();
    while !whole.read(source, 1000, 0).is_empty() {}
    let mut on_sqlite = Follower::new();
    on_sqlite.read(source, 1000, 0);
    on_sqlite.read(source, 200, 0);
    let mut moved = Follower {
        next: on_sqlite.next.clone(),
        ..Follower::new()
    };
    while !moved.read(target, 1000, 0).is_empty() {}
    assert_eq!([&on_sqlite.seen[..], &moved.seen[..]].concat(), whole.seen);
    target.deliver(&message("after-copy", "+1", "2020-01-01T00:00:00Z", None));
    moved.read(target, 1000, 0);
    assert_eq!(moved.seen.last().map(String::as_str), Some("after-copy"));
}

#[test]
fn a_transaction_that_commits_late_delays_the_feed_on_every_host_but_is_never_skipped() {
    let url = fresh_database();
    let (a, b) = (host(&url), host(&url));
    a.deliver(&message("before", "+1", "2025-01-15T10:00:00Z", None));
    // A row stored by a transaction held open: every row the hosts store
    // meanwhile has a later transaction id, and commits first.
    let mut held = hold_open_insert(&url, "held");
    let later: Vec<String> = (0..10).map(|n| format!("later-{n}")).collect();
    for (n, id) in later.iter().enumerate() {
        let server = if n % 2 == 0 { &a } else { &b };
        server.deliver(&message(id, "+1", "2025-01-15T10:00:00Z", None));
    }
    let mut follower = Follower::new();
    follower.read(&b, 100, 0);
    assert_eq!(
        follower.seen,
        ["before"],
        "nothing is handed out past the open transaction"
    );
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            let items = follower.read(&a, 100, 20);
            (items.len(), Instant::now())
        });
        std::thread::sleep(Duration::from_millis(500));
        let committed = Instant::now();
        held.run("COMMIT;").unwrap();
        let (handed, answered) = waiting.join().unwrap();
        assert!(handed > 0);
        let woke = answered.saturating_duration_since(committed);
        eprintln!("the long-poll on the other host answered {woke:?} after the commit");
        assert!(
            woke < Duration::from_secs(4),
            "within the contract's 2 s across hosts, plus room: {woke:?}"
        );
    });
    while !follower.read(&b, 100, 0).is_empty() {}
    assert_eq!(
        follower.seen[..2],
        ["before", "held"],
        "the held row comes in its own place"
    );
    let mut rest = follower.seen[2..].to_vec();
    rest.sort();
    let mut expected = later.clone();
    expected.sort();
    assert_eq!(rest, expected, "every later row once");
}

#[test]
fn a_write_the_database_holds_past_the_deadline_is_answered_503_and_settled_by_the_retry() {
    let url = fresh_database();
    let mut server = Server::start_with(&[("DATABASE_URL", &url), ("REQUEST_TIMEOUT_MS", "2000")]);
    server.wait_ready();
    // A transaction inserting the same id, held open: the host's insert
    // waits for it as it would for a database that stopped answering.
    let mut held = hold_open_insert(&url, "held");
    let body = message("held", "+1", "2025-01-15T10:00:00Z", Some("the sender"));
    let reply = server.try_deliver(&body).expect("an answer");
    assert_eq!(reply.status, 503, "not 504 at the deadline: {}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("1"));
    held.run("ROLLBACK;").unwrap();
    // The insert the host stopped waiting for goes on, and is counted.
    assert!(
        wait_until(Duration::from_secs(10), || !stored_ids(&url).is_empty()),
        "the host's insert did not go on"
    );
    let stored = psql(&url, "SELECT text FROM messages WHERE message_id = 'held'").unwrap();
    assert_eq!(stored.trim(), "the sender");
    assert_eq!(server.metric("messages_stored_total"), Some(1.0));
    let retry = server.try_deliver(&body).expect("an answer");
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(counted(&[&server], "duplicate"), 1, "the retry finds it stored");
}

/// A session holding open a transaction that inserts `id`: rows stored
/// meanwhile commit before it, and an insert of `id` waits for it.
fn hold_open_insert(url: &str, id: &str) -> Session {
    let mut held = Session::open(url).unwrap();
    held.run(&format!(
        "BEGIN; INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, text, created_at, ts_micros)
         VALUES ('{id}', '+1', '+2', '2025-01-15T10:00:00Z', 'held', '2025-01-15T10:00:00.000Z', 1736935200000000);"
    ))
    .unwrap();
    held
}

/// Whether `server` logged that it took forwarding's turn.
fn forwards(server: &Server) -> bool {
    server
        .logs()
        .iter()
        .any(|line| line["msg"] == "forwarding from this host")
}

#[test]
fn when_the_forwarding_host_dies_for_good_another_delivers_everything() {
    use inlet_e2e::receiver::{Answer, Receiver};
    let receiver = Receiver::start();
    // Some deliveries are under way when the host dies.
    receiver.answer(Answer::StallPrefix("first", Duration::from_millis(400)));
    let url = fresh_database();
    let forward_url = receiver.url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("FORWARD_URL", forward_url.as_str()),
        ("FORWARD_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ];
    let hosts = [Server::start_with(&env), Server::start_with(&env)];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !hosts.iter().any(forwards) {
        assert!(Instant::now() < deadline, "no host took forwarding's turn");
        std::thread::sleep(Duration::from_millis(50));
    }
    let post = |host: &Server, prefix: &str| -> Vec<String> {
        let ids: Vec<String> = (0..30).map(|i| format!("{prefix}-{i}")).collect();
        for id in &ids {
            let body = message(id, "+15550001", "2025-01-15T10:00:00Z", Some("forward me"));
            let reply = host.webhook(&body, Some(&inlet_e2e::sign(&body)));
            assert_eq!(reply.status, 200, "{id}: {}", reply.body);
        }
        ids
    };
    let [first, second] = hosts;
    let (leader, other) = if forwards(&first) {
        (first, second)
    } else {
        (second, first)
    };
    assert!(!forwards(&other), "one host forwards at a time");
    let mut sent = post(&leader, "first-leader");
    sent.extend(post(&other, "first-other"));
    drop(leader.kill());
    sent.extend(post(&other, "after"));
    let missing = receiver.wait_for(&sent, Duration::from_secs(60));
    assert_eq!(missing, Vec::<String>::new(), "{}", other.raw_logs());
    assert!(forwards(&other), "the survivor took the turn");
}
