//! A message's lifecycle: read one and erase one by odd ids, a redelivery
//! of an erased message refused, retention, and counts that stay exact
//! while messages arrive and go at once.

use std::time::{Duration, Instant};

use inlet_e2e::{Reply, Server, message, per_sender_sum, sign};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

const READ_KEY: &str = "lifecycle-read-key-0123456789abcdefghijklmnop";
const ADMIN_KEY: &str = "lifecycle-admin-key-0123456789abcdefghijklmno";

/// Ids a path can only carry percent-encoded.
const ODD_IDS: [&str; 6] = ["a/b", "with space", "100%", "what?#frag", "✓ café 🇺🇸", "+plus+"];

fn server_with_keys(env: &[(&str, &str)]) -> Server {
    Server::start_with_keys(&format!("reader read {READ_KEY}\nops admin {ADMIN_KEY}\n"), env)
}

fn path_of(id: &str) -> String {
    format!("/messages/{}", utf8_percent_encode(id, NON_ALPHANUMERIC))
}

fn call(server: &Server, method: &str, id: &str, key: &str) -> Reply {
    let bearer = format!("Bearer {key}");
    server.request_with(method, &path_of(id), None, &[("Authorization", &bearer)])
}

fn body_for(id: &str, n: usize) -> String {
    message(
        id,
        &format!("+1555000{}", n % 3),
        &format!("2025-01-15T10:00:0{}Z", n % 10),
        Some("hello"),
    )
}

/// The log line of the second delivery of `id` (the first stored it),
/// once written: lines are written after their responses.
fn redelivery_line(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut lines: Vec<Value> = server
            .request_logs(0)
            .into_iter()
            .filter(|l| l["path"] == "/webhook" && l["message_id"] == id)
            .collect();
        if lines.len() >= 2 || Instant::now() > deadline {
            assert_eq!(lines.len(), 2, "two deliveries of {id} logged: {lines:?}");
            return lines.remove(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn listed_total(server: &Server) -> u64 {
    let reply = server.get_with(
        "/messages?limit=100",
        &[("Authorization", &format!("Bearer {READ_KEY}"))],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["total"].as_u64().unwrap()
}

fn stats(server: &Server) -> Value {
    let reply = server.get_with("/stats", &[("Authorization", &format!("Bearer {READ_KEY}"))]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

#[test]
fn messages_are_read_and_erased_by_odd_ids_and_stay_erased() {
    let server = server_with_keys(&[]);
    for (n, id) in ODD_IDS.iter().enumerate() {
        server.deliver(&body_for(id, n));
    }
    for (n, id) in ODD_IDS.iter().enumerate() {
        let read = call(&server, "GET", id, READ_KEY);
        assert_eq!(read.status, 200, "{id}: {}", read.body);
        let mut found = read.json();
        let created_at = found.as_object_mut().unwrap().remove("created_at");
        assert!(
            created_at
                .as_ref()
                .and_then(Value::as_str)
                .is_some_and(|at| at.ends_with('Z')),
            "{created_at:?}"
        );
        let delivered: Value = serde_json::from_str(&body_for(id, n)).unwrap();
        assert_eq!(found, delivered, "{id}");

        let refused = call(&server, "DELETE", id, READ_KEY);
        assert_eq!(
            (refused.status, refused.json()),
            (403, json!({"detail": "forbidden"})),
            "{id}"
        );
        let erased = call(&server, "DELETE", id, ADMIN_KEY);
        assert_eq!((erased.status, erased.body.as_str()), (204, ""), "{id}");
        assert_eq!(erased.header("content-length"), None, "a 204 has no length");
        for method in ["GET", "DELETE"] {
            let gone = call(&server, method, id, ADMIN_KEY);
            assert_eq!(
                (gone.status, gone.json()),
                (404, json!({"detail": "Not Found"})),
                "{method} {id}"
            );
        }
    }
    assert_eq!(listed_total(&server), 0);
    assert_eq!(stats(&server)["total_messages"], 0);

    // Senders redeliver what they stored: acknowledged, not stored again.
    let redelivered = body_for(ODD_IDS[0], 0);
    let reply = server.webhook(&redelivered, Some(&sign(&redelivered)));
    assert_eq!((reply.status, reply.json()), (200, json!({"status": "ok"})));
    let line = redelivery_line(&server, ODD_IDS[0]);
    assert_eq!(
        (line["result"].as_str(), line["dup"].as_bool()),
        (Some("duplicate"), Some(true)),
        "{line}"
    );
    assert_eq!(call(&server, "GET", ODD_IDS[0], READ_KEY).status, 404);
    assert_eq!(listed_total(&server), 0);

    let erasures = format!("messages_removed_total{{reason=\"erased\"}} {}", ODD_IDS.len());
    server.metrics_showing(std::slice::from_ref(&erasures));
    let lines = server.request_logs(0);
    let erased = lines
        .iter()
        .filter(|l| l["method"] == "DELETE" && l["status"] == 204)
        .collect::<Vec<_>>();
    assert_eq!(erased.len(), ODD_IDS.len());
    assert!(erased.iter().all(|l| l["api_key"] == "ops"), "{erased:?}");
    assert_eq!(erased[0]["message_id"], ODD_IDS[0], "the log names what was erased");
}

#[test]
fn ids_that_name_no_message_are_not_found_and_methods_are_checked() {
    let server = server_with_keys(&[]);
    let bearer = format!("Bearer {ADMIN_KEY}");
    let too_long = format!("/messages/{}", "x".repeat(5000));
    for path in ["/messages/%FF", "/messages/ok%C3", "/messages/", too_long.as_str()] {
        for method in ["GET", "DELETE"] {
            let reply = server.request_with(method, path, None, &[("Authorization", &bearer)]);
            assert_eq!(
                (reply.status, reply.json()),
                (404, json!({"detail": "Not Found"})),
                "{method} {path}"
            );
        }
    }
    let wrong = server.request_with("PUT", "/messages/m1", Some("{}"), &[("Authorization", &bearer)]);
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, DELETE"));
    let unauthenticated = server.request("DELETE", "/messages/m1", None);
    assert_eq!(unauthenticated.status, 401);
}

#[test]
fn without_keys_reads_stay_open_and_erasure_is_refused() {
    let server = Server::start();
    let body = body_for("open-1", 1);
    server.deliver(&body);
    assert_eq!(server.get(&path_of("open-1")).status, 200);
    let refused = server.request("DELETE", &path_of("open-1"), None);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    let with_a_key = server.request_with("DELETE", &path_of("open-1"), None, &[("Authorization", "Bearer x")]);
    assert_eq!(with_a_key.status, 401, "nobody holds a key");
    assert_eq!(server.get(&path_of("open-1")).status, 200, "still stored");
}

#[test]
fn retention_removes_aged_messages_and_refuses_their_redelivery() {
    let server = server_with_keys(&[("RETENTION", "3s")]);
    let old: Vec<String> = (0..5).map(|n| body_for(&format!("old-{n}"), n)).collect();
    old.iter().for_each(|body| server.deliver(body));
    assert_eq!(listed_total(&server), 5);
    // Within a pass interval and a pass of reaching the age (the contract
    // allows a minute).
    let deadline = Instant::now() + Duration::from_secs(30);
    while listed_total(&server) > 0 {
        assert!(Instant::now() < deadline, "aged messages were not removed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(stats(&server)["total_messages"], 0);
    let young = body_for("young", 7);
    server.deliver(&young);
    let redelivered = server.webhook(&old[0], Some(&sign(&old[0])));
    assert_eq!(redelivered.status, 200);
    let line = redelivery_line(&server, "old-0");
    assert_eq!(line["result"], "duplicate", "{line}");
    assert_eq!(listed_total(&server), 1, "the young message, not the redelivered one");
    server.metrics_showing(&["messages_removed_total{reason=\"expired\"} 5".to_owned()]);
    let pass = server.logs().into_iter().find(|l| l["msg"] == "retention pass");
    assert_eq!(pass.expect("a retention pass line")["removed"], 5);
}

#[test]
fn counts_stay_exact_while_messages_arrive_and_are_erased() {
    const POSTERS: usize = 4;
    const EACH: usize = 60;
    let server = server_with_keys(&[]);
    let erased = std::thread::scope(|scope| {
        let server = &server;
        for poster in 0..POSTERS {
            scope.spawn(move || {
                for n in 0..EACH {
                    server.deliver(&body_for(&format!("p{poster}-{n}"), n));
                }
            });
        }
        // Erase every third message of each poster as soon as it is stored.
        let eraser = scope.spawn(move || {
            let mut erased = 0;
            for n in (0..EACH).step_by(3) {
                for poster in 0..POSTERS {
                    let id = format!("p{poster}-{n}");
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while call(server, "DELETE", &id, ADMIN_KEY).status != 204 {
                        assert!(Instant::now() < deadline, "{id} never stored");
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    erased += 1;
                }
            }
            erased
        });
        eraser.join().unwrap()
    });
    let kept = (POSTERS * EACH - erased) as u64;
    assert_eq!(listed_total(&server), kept);
    let stats = stats(&server);
    assert_eq!(stats["total_messages"], kept);
    assert_eq!(per_sender_sum(&stats), kept);
    // Every message of one sender (n % 3 == 0) was erased: it is gone too.
    assert_eq!(stats["senders_count"], 2);
    let searched = server.get_with(
        "/messages?q=hello&limit=1",
        &[("Authorization", &format!("Bearer {READ_KEY}"))],
    );
    assert_eq!(searched.json()["total"], kept, "the text index follows");
}
