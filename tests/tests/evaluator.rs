//! The SPEC.md evaluator's steps, literally, against `target/release/inlet`.

use inlet_e2e::{Server, sign};
use serde_json::json;

const SAMPLE: &str =
    r#"{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"Hello"}"#;

#[test]
fn evaluator_steps() {
    let server = Server::start();
    // 2. Probes.
    assert_eq!(server.get("/health/live").status, 200);
    assert_eq!(server.get("/health/ready").status, 200);

    // 3. Wrong signature, right signature, the same again.
    assert_eq!(server.webhook(SAMPLE, Some("123")).status, 401);
    assert_eq!(server.webhook(SAMPLE, Some(&sign(SAMPLE))).status, 200);
    assert_eq!(server.webhook(SAMPLE, Some(&sign(SAMPLE))).status, 200);
    assert_eq!(server.get("/messages").json()["total"], 1);

    // 4. More messages.
    for body in [
        r#"{"message_id":"m2","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T09:00:00Z","text":"Earlier hello"}"#,
        r#"{"message_id":"m3","from":"+14155550123","to":"+14155550100","ts":"2025-01-15T11:00:00Z","text":"Bye"}"#,
        r#"{"message_id":"m4","from":"+447700900123","to":"+14155550100","ts":"2025-01-14T08:00:00Z"}"#,
    ] {
        assert_eq!(server.webhook(body, Some(&sign(body))).status, 200);
    }

    // 5. Listings.
    let all = server.get("/messages").json();
    assert_eq!(
        (&all["total"], &all["limit"], &all["offset"]),
        (&json!(4), &json!(50), &json!(0))
    );
    let order: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["m4", "m2", "m1", "m3"]);
    let page = server.get("/messages?limit=2&offset=0").json();
    assert_eq!(
        (
            page["data"].as_array().unwrap().len(),
            &page["limit"],
            &page["offset"],
            &page["total"]
        ),
        (2, &json!(2), &json!(0), &json!(4))
    );
    let from = server.get("/messages?from=+919876543210").json();
    assert_eq!(from["total"], 2);
    assert!(
        from["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["from"] == "+919876543210")
    );
    assert_eq!(server.get("/messages?since=2025-01-15T09:30:00Z").json()["total"], 2);
    assert_eq!(server.get("/messages?q=Hello").json()["total"], 2);

    // 6. Stats.
    let stats = server.get("/stats").json();
    assert_eq!(
        (&stats["total_messages"], &stats["senders_count"]),
        (&json!(4), &json!(3))
    );
    let per_sender = stats["messages_per_sender"].as_array().unwrap();
    assert_eq!(per_sender[0], json!({"from": "+919876543210", "count": 2}));
    assert_eq!(per_sender.iter().map(|s| s["count"].as_u64().unwrap()).sum::<u64>(), 4);
    assert_eq!(
        (&stats["first_message_ts"], &stats["last_message_ts"]),
        (&json!("2025-01-14T08:00:00Z"), &json!("2025-01-15T11:00:00Z"))
    );

    // 7. Metrics.
    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.lines().any(|l| l.starts_with("http_requests_total{")));
    assert!(metrics.body.lines().any(|l| l.starts_with("webhook_requests_total{")));

    // 8. Logs: every line JSON; webhook lines carry message_id and dup.
    let lines = server.request_logs(15);
    let webhook_lines: Vec<_> = lines.iter().filter(|l| l["path"] == "/webhook").collect();
    assert_eq!(webhook_lines.len(), 6);
    assert!(webhook_lines.iter().all(|l| l["dup"].is_boolean()));
    assert!(
        webhook_lines
            .iter()
            .filter(|l| l["status"] == 200)
            .all(|l| l["message_id"].is_string())
    );
}
