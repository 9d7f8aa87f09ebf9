//! `GET /feed` end to end, on both backends (`INLET_E2E_BACKEND`): every
//! message once in the order it was stored, late `ts` included, under
//! concurrent posters; removals, restarts and positions; long-polls that
//! wake when a message is stored and hold no guest instance while they wait.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use inlet_e2e::feed::Follower;
use inlet_e2e::{Backend, Server, message, wait_until};

const TS: &str = "2025-01-15T10:00:00Z";

fn post(server: &Server, id: &str, ts: &str) {
    server.deliver(&message(id, "+15550001", ts, Some(id)));
}

#[test]
fn a_late_redelivery_with_an_old_ts_is_not_missed() {
    let server = Server::start();
    post(&server, "new", "2025-01-15T10:00:00Z");
    let mut follower = Follower::new();
    let first = follower.read_until(&server, 1);
    assert_eq!(first[0]["created_at"].as_str().map(str::len), Some(24), "{first:?}");
    // Stored after, sent before: behind `new` by `ts`, after it in the feed.
    post(&server, "late", "2025-01-15T09:00:00Z");
    follower.read_until(&server, 1);
    assert_eq!(follower.seen, ["new", "late"]);
    let listed = server.get("/messages").json();
    assert_eq!(listed["data"][0]["message_id"], "late", "the listing orders by ts");
    // Nothing more: the same position again.
    let before = follower.next.clone();
    assert!(follower.read(&server, 10, 0).is_empty());
    assert_eq!(follower.next, before);
}

#[test]
fn sixteen_posters_and_a_follower_see_every_message_exactly_once() {
    let server = Server::start();
    let acknowledged = Mutex::new(Vec::new());
    let posting = AtomicBool::new(true);
    let mut follower = Follower::new();
    std::thread::scope(|scope| {
        let posters: Vec<_> = (0..16)
            .map(|poster| {
                let (server, acknowledged) = (&server, &acknowledged);
                scope.spawn(move || {
                    for n in 0..60 {
                        let id = format!("p{poster}-{n}");
                        post(server, &id, TS);
                        acknowledged.lock().unwrap().push(id);
                    }
                })
            })
            .collect();
        let posting = &posting;
        scope.spawn(move || {
            posters.into_iter().for_each(|p| p.join().unwrap());
            posting.store(false, Ordering::SeqCst);
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        // Small pages, so that reads interleave with commits.
        while posting.load(Ordering::SeqCst) || follower.seen.len() < 960 {
            follower.read(&server, 7, 1);
            assert!(
                Instant::now() < deadline,
                "the follower saw {} of 960",
                follower.seen.len()
            );
        }
    });
    let seen: HashSet<&String> = follower.seen.iter().collect();
    assert_eq!(seen.len(), follower.seen.len(), "a message came twice");
    let acknowledged = acknowledged.into_inner().unwrap();
    assert_eq!(acknowledged.len(), 960);
    assert!(acknowledged.iter().all(|id| seen.contains(id)), "a message was skipped");
    assert!(follower.read(&server, 1000, 0).is_empty());
}

#[test]
fn removed_messages_are_absent_and_positions_still_work_across_a_restart() {
    let server = Server::start();
    for id in ["a", "b", "c"] {
        post(&server, id, TS);
    }
    let mut follower = Follower::new();
    follower.read_until(&server, 2);
    assert_eq!(follower.seen, ["a", "b"]);
    // The position now names `b`; erase it and the newest message, `c`.
    for id in ["b", "c"] {
        assert_eq!(server.request("DELETE", &format!("/messages/{id}"), None).status, 401);
    }
    let admin = "admin admin 0123456789abcdef0123456789abcdef-admin";
    let dir = server.kill();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, admin).unwrap();
    let server = Server::start_in(dir, &[("API_KEYS_FILE", keys.to_str().unwrap())]);
    let bearer = "Bearer 0123456789abcdef0123456789abcdef-admin";
    for id in ["b", "c"] {
        let erased = server.request_with("DELETE", &format!("/messages/{id}"), None, &[("authorization", bearer)]);
        assert_eq!(erased.status, 204, "{}", erased.body);
    }
    // A message stored after the newest was erased still comes after the
    // position (a store that numbered it like `c` would hide it).
    post(&server, "d", TS);
    follower.authorization = Some(bearer.into());
    follower.read_until(&server, 1);
    assert_eq!(follower.seen, ["a", "b", "d"]);
    let mut fresh = Follower {
        authorization: Some(bearer.into()),
        ..Follower::new()
    };
    fresh.read_until(&server, 2);
    assert_eq!(fresh.seen, ["a", "d"], "removed messages are not shown");
}

#[test]
fn a_long_poll_straight_back_from_a_short_page_is_paced() {
    // Pacing is the host's, whatever the backend. The runs it adds are
    // counted on SQLite, where a read sees a commit at once; on PostgreSQL
    // a read may wait for one to become visible, which adds runs too.
    if Backend::under_test() != Backend::Sqlite {
        return;
    }
    let server = Server::start();
    let mut follower = Follower::new();
    // A page shorter than its limit, then a read on from its end that finds
    // nothing new: the runs both took.
    let mut runs_of_two_reads = |wait: u32, attempt: u32| {
        post(&server, &format!("short-{wait}-{attempt}"), TS);
        let before = server.instantiations();
        assert_eq!(follower.read(&server, 10, 0).len(), 1, "a page shorter than its limit");
        assert!(follower.read(&server, 10, wait).is_empty());
        server.instantiations() - before
    };
    assert_eq!(runs_of_two_reads(0, 0), 2, "nothing paced without a wait");
    // Paced, the long-poll takes a run stopped for the pacing, one that
    // finds nothing and waits, one that answers; unpaced, the last two. A
    // follower slower than `LINGER` (a stalled machine) is not paced, hence
    // a few tries.
    assert!((0..3).any(|attempt| runs_of_two_reads(1, attempt) == 4));
}

#[test]
fn a_long_poll_wakes_when_a_message_is_stored() {
    let server = Server::start();
    post(&server, "first", TS);
    let mut follower = Follower::new();
    assert_eq!(follower.read_until(&server, 1).len(), 1);
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            let started = Instant::now();
            let items = follower.read(&server, 10, 20);
            (items, Instant::now(), started)
        });
        std::thread::sleep(Duration::from_millis(700));
        let stored = Instant::now();
        post(&server, "second", TS);
        let (items, answered, started) = waiting.join().unwrap();
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["message_id"], "second");
        let woke = answered.saturating_duration_since(stored);
        eprintln!("long-poll answered {woke:?} after the message was acknowledged");
        // The poll asked for 20 s: it was woken, within the contract's second
        // plus room for a loaded machine.
        assert!(woke < Duration::from_secs(2), "{woke:?} after {:?}", answered - started);
    });
}

#[test]
fn a_long_poll_with_nothing_new_answers_empty_at_its_time() {
    let server = Server::start();
    let started = Instant::now();
    let reply = server.get("/feed?wait=1");
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["data"], serde_json::json!([]));
    let start = body["next"].as_str().unwrap().to_owned();
    assert!(took >= Duration::from_millis(950), "{took:?}");
    let again = server.get(&format!("/feed?after={start}&wait=1")).json();
    assert_eq!(again["next"], start.as_str(), "an empty answer hands back `after`");
}

#[test]
fn a_long_poll_holds_no_instance_and_no_request_deadline() {
    // One instance and a 1-s deadline: a 4-s wait must take neither.
    let server = Server::start_with(&[("MAX_INSTANCES", "1"), ("REQUEST_TIMEOUT_MS", "1000")]);
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| server.get("/feed?wait=4"));
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..5 {
            let stats = server.get("/stats");
            assert_eq!(stats.status, 200, "{}", stats.body);
        }
        // Past the poll's own deadline.
        std::thread::sleep(Duration::from_millis(1500));
        post(&server, "after-the-deadline", TS);
        let reply = waiting.join().unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["data"][0]["message_id"], "after-the-deadline");
    });
}

#[test]
fn waiters_past_feed_waiters_are_told_to_retry() {
    let server = Server::start_with(&[("FEED_WAITERS", "1")]);
    std::thread::scope(|scope| {
        // The host reads the feed's head once someone waits.
        let head_reads = || {
            server
                .metric("storage_operation_ms_count{operation=\"feed_head\"}")
                .unwrap_or(0.0)
        };
        let before = head_reads();
        let first = scope.spawn(|| server.get("/feed?wait=3"));
        assert!(
            wait_until(Duration::from_secs(2), || head_reads() != before),
            "the first long-poll never waited"
        );
        let second = server.get("/feed?wait=3");
        assert_eq!(second.status, 503, "{}", second.body);
        assert!(second.header("retry-after").is_some());
        // Without `wait` nothing waits: answered at once.
        assert_eq!(server.get("/feed").status, 200);
        assert_eq!(first.join().unwrap().status, 200);
    });
}

#[test]
fn bad_parameters_are_422_at_their_place() {
    let server = Server::start();
    for (query, place) in [
        ("after=nonsense", "after"),
        ("after=AAAAAAAAAAAAAAAAAAAAAB", "after"),
        // A position from beyond this database (an epoch no transaction reached).
        ("after=QAAAAAAAAAAAAAAAAAAABQ", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("wait=26", "wait"),
        ("wait=x", "wait"),
    ] {
        let reply = server.get(&format!("/feed?{query}"));
        assert_eq!(reply.status, 422, "{query}: {}", reply.body);
        assert_eq!(
            reply.json()["detail"][0]["loc"],
            serde_json::json!(["query", place]),
            "{query}"
        );
    }
}

#[test]
fn a_long_poll_behind_an_erased_newest_message_waits_its_time() {
    let admin = "admin admin 0123456789abcdef0123456789abcdef-admin";
    let server = Server::start_with_keys(admin, &[]);
    let bearer = "Bearer 0123456789abcdef0123456789abcdef-admin";
    let auth = [("authorization", bearer)];
    post(&server, "kept", TS);
    let mut follower = Follower {
        authorization: Some(bearer.into()),
        ..Follower::new()
    };
    assert_eq!(follower.read_until(&server, 1).len(), 1);
    // A long-poll woken by `newest`: the host's head is at it now.
    let mut other = Follower {
        next: follower.next.clone(),
        authorization: follower.authorization.clone(),
        seen: Vec::new(),
    };
    std::thread::scope(|scope| {
        let woken = scope.spawn(|| other.read(&server, 10, 10).len());
        std::thread::sleep(Duration::from_millis(300));
        post(&server, "newest", TS);
        assert_eq!(woken.join().unwrap(), 1);
    });
    let erased = server.request_with("DELETE", "/messages/newest", None, &auth);
    assert_eq!(erased.status, 204, "{}", erased.body);
    // Nothing follows `kept` now: the poll waits its second, whatever the
    // head read before the erasure said.
    let started = Instant::now();
    assert!(follower.read(&server, 10, 1).is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
}
