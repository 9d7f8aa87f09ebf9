//! Replacing the guest component while the server takes traffic.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use inlet_e2e::swap::{live_sha, replace_by_rename, sha256, variant, wait_for_sha};
use inlet_e2e::{OLD_WIT_REFUSAL, Server, guest_wasm, message, old_wit_guest, sign};

#[test]
fn swaps_under_load_with_zero_failed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let guest_path = dir.path().join("guest.wasm");
    let (a, b) = (variant("a"), variant("b"));
    std::fs::write(&guest_path, &a).unwrap();
    let server = Server::start_with(&[("GUEST_COMPONENT", guest_path.to_str().unwrap())]);
    assert_eq!(live_sha(&server), sha256(&a));

    let stop = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    let acknowledged = Mutex::new(Vec::new());
    let sent = AtomicUsize::new(0);
    let mut latencies = Vec::new();
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let (server, stop, failures, acknowledged, sent) = (&server, &stop, &failures, &acknowledged, &sent);
            scope.spawn(move || {
                // Bounded in count as well as by the swaps below.
                for i in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("w{worker}-{i}");
                    let body = message(&id, "+1", "2025-01-15T10:00:00Z", Some("swap"));
                    sent.fetch_add(1, Ordering::Relaxed);
                    let reply = server.webhook(&body, Some(&sign(&body)));
                    if reply.status == 200 {
                        acknowledged.lock().unwrap().push(id);
                    } else {
                        failures.lock().unwrap().push((id, reply.status, reply.body));
                    }
                    if i % 10 == 0 {
                        let listing = server.get("/messages?limit=1");
                        if listing.status != 200 {
                            failures
                                .lock()
                                .unwrap()
                                .push(("GET".into(), listing.status, listing.body));
                        }
                    }
                }
            });
        }

        std::thread::sleep(Duration::from_millis(500));
        for (bytes, in_place) in [(&b, false), (&a, false), (&b, true), (&a, false)] {
            if in_place {
                std::fs::write(&guest_path, bytes).unwrap();
            } else {
                replace_by_rename(&guest_path, bytes);
            }
            latencies.push(wait_for_sha(&server, &sha256(bytes)));
            std::thread::sleep(Duration::from_millis(300));
        }
        replace_by_rename(&guest_path, b"this is not a component");
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            live_sha(&server),
            sha256(&a),
            "an invalid file leaves the previous guest live"
        );
        replace_by_rename(&guest_path, &b);
        latencies.push(wait_for_sha(&server, &sha256(&b)));
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });

    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    let acknowledged: HashSet<String> = acknowledged.into_inner().unwrap().into_iter().collect();
    let conn = rusqlite::Connection::open(server.database()).unwrap();
    let mut statement = conn.prepare("SELECT message_id FROM messages").unwrap();
    let stored: HashSet<String> = statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(acknowledged.is_subset(&stored), "every acknowledged message is stored");
    assert!(
        acknowledged.len() > 100,
        "traffic ran during the swaps: {}",
        acknowledged.len()
    );

    assert_eq!(server.metric("guest_loads_total{outcome=\"loaded\"}"), Some(6.0));
    assert_eq!(server.metric("guest_loads_total{outcome=\"rejected\"}"), Some(1.0));
    let live_info = format!("guest_info{{sha256=\"{}\"}}", sha256(&b));
    assert_eq!(server.metric(&live_info), Some(1.0));
    let rejected = rejections(&server).into_iter().next();
    let rejected = rejected.expect("a log line for the rejected guest");
    assert_eq!(rejected["level"], "error");
    assert!(
        rejected["reason"]
            .as_str()
            .unwrap()
            .contains("not a valid WebAssembly component"),
        "{rejected}"
    );
    eprintln!(
        "hot swap: {} requests acknowledged during 5 swaps, 0 failed; file replaced -> new guest serving: {:?}",
        acknowledged.len(),
        latencies
    );
}

/// The `guest rejected` log lines so far.
fn rejections(server: &Server) -> Vec<serde_json::Value> {
    let logs = server.logs().into_iter();
    logs.filter(|l| l["msg"] == "guest rejected; the previous guest keeps serving")
        .collect()
}

#[test]
fn a_guest_built_against_another_wit_is_refused_while_the_live_one_serves() {
    let dir = tempfile::tempdir().unwrap();
    let guest_path = dir.path().join("guest.wasm");
    std::fs::copy(guest_wasm(), &guest_path).unwrap();
    let server = Server::start_with(&[("GUEST_COMPONENT", guest_path.to_str().unwrap())]);
    let live = live_sha(&server);

    replace_by_rename(&guest_path, &std::fs::read(old_wit_guest()).unwrap());
    let started = Instant::now();
    while rejections(&server).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the old guest was not rejected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let rejected = rejections(&server);
    assert_eq!(rejected.len(), 1, "one line per swap attempt: {rejected:?}");
    assert_eq!(rejected[0]["level"], "error");
    let reason = rejected[0]["reason"].as_str().unwrap();
    assert!(reason.contains(OLD_WIT_REFUSAL), "{reason}");
    assert_eq!(live_sha(&server), live, "the running guest stays live");
    let body = message("after-refusal", "+1", "2025-01-15T10:00:00Z", None);
    assert_eq!(server.webhook(&body, Some(&sign(&body))).status, 200);
    assert_eq!(server.metric("guest_loads_total{outcome=\"rejected\"}"), Some(1.0));
}

#[test]
fn sighup_reloads() {
    let server = Server::start_with(&[("LOG_LEVEL", "debug")]);
    server.signal("HUP");
    server.wait_for_line(|line| line["trigger"] == "sighup");
    assert_eq!(server.get("/health/ready").status, 200, "still serving after SIGHUP");
}
