//! `GUEST_INSTANCE_REUSE`: off by default (a fresh instance per request);
//! when on, an instance serves up to that many requests, and one that fails
//! is never used again.

use inlet_e2e::{Server, message, misbehaving_guest};

#[test]
fn by_default_every_request_gets_a_fresh_instance() {
    let server = Server::start();
    for _ in 0..10 {
        assert_eq!(server.get("/messages").status, 200);
    }
    assert_eq!(server.instantiations(), 10);
}

/// The misbehaving fixture guest, each instance serving up to `requests`.
fn fixture_reusing(requests: &str) -> Server {
    let guest = misbehaving_guest();
    Server::start_with(&[
        ("GUEST_COMPONENT", guest.to_str().unwrap()),
        ("GUEST_INSTANCE_REUSE", requests),
    ])
}

/// What the fixture's `/remember` found in guest memory.
fn remembered(server: &Server) -> String {
    let response = server.settled(|s| s.get("/remember"));
    assert_eq!(response.status, 200);
    response.body
}

#[test]
fn a_fresh_instance_sees_nothing_a_previous_request_wrote() {
    let guest = misbehaving_guest();
    let server = Server::start_with(&[("GUEST_COMPONENT", guest.to_str().unwrap())]);
    for _ in 0..50 {
        assert_eq!(remembered(&server), r#"{"image":7,"zero":0}"#);
    }
    let reusing = fixture_reusing("3");
    let seen: Vec<String> = (0..4).map(|_| remembered(&reusing)).collect();
    assert_eq!(
        seen,
        [
            r#"{"image":7,"zero":0}"#,
            r#"{"image":8,"zero":1}"#,
            r#"{"image":9,"zero":2}"#,
            r#"{"image":7,"zero":0}"#
        ]
    );
}

#[test]
fn a_reused_instance_serves_up_to_its_share_of_requests() {
    let server = Server::start_with(&[("GUEST_INSTANCE_REUSE", "4")]);
    for i in 0..6 {
        server.settled(|s| s.deliver(&message(&format!("r{i}"), "+1", "2025-01-15T10:00:00Z", Some("reuse"))));
    }
    for _ in 0..6 {
        let page = server.settled(|s| s.get("/messages?q=reuse"));
        assert_eq!((page.status, page.json()["total"].as_u64()), (200, Some(6)));
    }
    assert_eq!(server.instantiations(), 3, "12 requests, 4 per instance");
    let logs = server.request_logs(12);
    let mut ids: Vec<&str> = logs.iter().filter_map(|l| l["request_id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), logs.len(), "every request keeps its own log line and id");
    assert!(
        logs.iter()
            .filter(|l| l["path"] == "/webhook")
            .all(|l| l["dup"] == false)
    );
}

#[test]
fn an_instance_that_failed_is_not_reused() {
    let server = fixture_reusing("1000");
    let fine = |s: &Server| s.get("/fine").status;
    assert_eq!(server.settled(fine), 200);
    assert_eq!(server.settled(fine), 200);
    assert_eq!(server.instantiations(), 1);
    assert_eq!(server.settled(|s| s.get("/panic").status), 500);
    assert_eq!(server.settled(fine), 200);
    assert_eq!(server.instantiations(), 2, "the panicked instance was dropped");
}

#[test]
fn each_request_of_a_reused_instance_logs_only_its_own_stderr() {
    let server = fixture_reusing("1000");
    for _ in 0..3 {
        assert_eq!(server.settled(|s| s.get("/chatty").status), 200);
    }
    assert_eq!(server.settled(|s| s.get("/fine").status), 200);
    let lines = server.request_logs(4);
    let stderr: Vec<_> = lines.iter().map(|line| line["guest_stderr"].as_str()).collect();
    assert_eq!(stderr.len(), 4, "{lines:?}");
    for text in &stderr[..3] {
        assert!(text.is_some_and(|t| t.starts_with("chatter    0 ---")), "{lines:?}");
    }
    assert_eq!(stderr[3], None, "{lines:?}");
    assert_eq!(server.instantiations(), 1, "one instance served them all");
}
