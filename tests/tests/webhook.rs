//! `POST /webhook`: signatures, validation, exactly-once storage.

use inlet_e2e::{Server, message, sign};
use serde_json::{Value, json};

const SAMPLE: &str = r#"{"message_id": "m1", "from": "+919876543210", "to": "+14155550100", "ts": "2025-01-15T10:00:00Z", "text": "Hello"}"#;

#[test]
fn signed_message_is_stored_once() {
    let server = Server::start();
    let reply = server.webhook(SAMPLE, Some(&sign(SAMPLE)));
    assert_eq!((reply.status, reply.json()), (200, json!({"status": "ok"})));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let again = server.webhook(SAMPLE, Some(&sign(SAMPLE)));
    assert_eq!((again.status, again.json()), (200, json!({"status": "ok"})));
    assert_eq!(server.stored_rows(), 1);
}

#[test]
fn duplicate_with_different_content_changes_nothing() {
    let server = Server::start();
    server.deliver(&message("m1", "+111", "2025-01-15T10:00:00Z", Some("first")));
    server.deliver(&message("m1", "+222", "2025-01-16T10:00:00Z", Some("second")));
    let page = server.get("/messages").json();
    assert_eq!(page["total"], 1);
    assert_eq!(page["data"][0]["from"], "+111");
    assert_eq!(page["data"][0]["text"], "first");
}

#[test]
fn stored_row_has_the_spec_columns() {
    let server = Server::start();
    server.deliver(SAMPLE);
    let rows = server.query("SELECT message_id, from_msisdn, to_msisdn, ts, text, created_at FROM messages");
    let [row] = rows.as_slice() else { panic!("{rows:?}") };
    let text = |v: &str| Some(v.to_owned());
    assert_eq!(
        row[..5],
        [
            text("m1"),
            text("+919876543210"),
            text("+14155550100"),
            text("2025-01-15T10:00:00Z"),
            text("Hello")
        ]
    );
    let created_at = row[5].as_deref().unwrap_or_default();
    assert!(
        created_at.ends_with('Z') && created_at.starts_with("20"),
        "created_at {created_at}"
    );
}

#[test]
fn bad_or_missing_signature_is_401_and_stores_nothing() {
    let server = Server::start();
    let wrong_key = inlet_signature::SigningKey::new("not-the-secret").sign(SAMPLE.as_bytes());
    let other_body = sign("{}");
    let cases: [(&str, Option<&str>); 6] = [
        (SAMPLE, None),
        (SAMPLE, Some("123")),
        (SAMPLE, Some("")),
        (SAMPLE, Some(&wrong_key)),
        (SAMPLE, Some(&other_body)),
        ("this is not json", Some("deadbeef")),
    ];
    for (body, signature) in cases {
        let reply = server.webhook(body, signature);
        assert_eq!(reply.status, 401, "signature {signature:?}");
        assert_eq!(reply.json(), json!({"detail": "invalid signature"}));
    }
    assert_eq!(server.stored_rows(), 0);
    let lines = server.request_logs(cases.len());
    let webhook_lines: Vec<_> = lines.iter().filter(|l| l["path"] == "/webhook").collect();
    assert_eq!(webhook_lines.len(), cases.len());
    for line in webhook_lines {
        assert_eq!(
            (&line["level"], &line["result"], &line["dup"]),
            (&json!("error"), &json!("invalid_signature"), &json!(false))
        );
    }
}

#[test]
fn signature_covers_the_raw_bytes() {
    let server = Server::start();
    let spaced = SAMPLE.replace(", ", ",   ");
    let reply = server.webhook(&spaced, Some(&sign(SAMPLE)));
    assert_eq!(reply.status, 401, "same JSON, different bytes must not verify");
    assert_eq!(server.webhook(&spaced, Some(&sign(&spaced))).status, 200);
}

fn assert_rejected(server: &Server, body: &str, field: &str, kind: &str) {
    let reply = server.webhook(body, Some(&sign(body)));
    assert_eq!(reply.status, 422, "{body}: {}", reply.body);
    let detail = reply.json()["detail"].clone();
    let errors = detail
        .as_array()
        .unwrap_or_else(|| panic!("detail is not a list: {detail}"));
    let expected_loc = if field.is_empty() {
        json!(["body"])
    } else {
        json!(["body", field])
    };
    assert!(
        errors
            .iter()
            .any(|e| e["loc"] == expected_loc && e["type"] == kind && e["msg"].is_string()),
        "{body}: expected {kind} at {expected_loc}, got {detail}"
    );
}

#[test]
fn invalid_payloads_are_422_and_store_nothing() {
    let server = Server::start();
    let sample: Value = serde_json::from_str(SAMPLE).unwrap();
    let with = |field: &str, value: Value| {
        let mut doc = sample.clone();
        doc[field] = value;
        doc.to_string()
    };
    let without = |field: &str| {
        let mut doc = sample.clone();
        doc.as_object_mut().unwrap().remove(field);
        doc.to_string()
    };
    assert_rejected(&server, "not json", "", "json_invalid");
    assert_rejected(&server, "", "", "json_invalid");
    assert_rejected(&server, "[1, 2]", "", "model_attributes_type");
    for field in ["message_id", "from", "to", "ts"] {
        assert_rejected(&server, &without(field), field, "missing");
    }
    assert_rejected(
        &server,
        &with("message_id", json!("")),
        "message_id",
        "string_too_short",
    );
    assert_rejected(&server, &with("message_id", json!(42)), "message_id", "string_type");
    for bad in ["919876543210", "+", "+91-98", "+91 98", "++91", "+91a", " +91"] {
        assert_rejected(&server, &with("from", json!(bad)), "from", "string_pattern_mismatch");
        assert_rejected(&server, &with("to", json!(bad)), "to", "string_pattern_mismatch");
    }
    for bad in [
        "2025-01-15T10:00:00",
        "2025-01-15T10:00:00+00:00",
        "2025-02-30T10:00:00Z",
        "2025-01-15T25:00:00Z",
        "yesterday",
        "",
    ] {
        assert_rejected(&server, &with("ts", json!(bad)), "ts", "value_error");
    }
    assert_rejected(
        &server,
        &with("text", json!("x".repeat(4097))),
        "text",
        "string_too_long",
    );
    assert_rejected(&server, &with("text", json!(5)), "text", "string_type");
    // Ids and numbers are bounded in characters (what the storage keys allow).
    assert_rejected(
        &server,
        &with("message_id", json!("m".repeat(257))),
        "message_id",
        "string_too_long",
    );
    let long_number = json!(format!("+{}", "1".repeat(64)));
    assert_rejected(&server, &with("from", long_number.clone()), "from", "string_too_long");
    assert_rejected(&server, &with("to", long_number), "to", "string_too_long");
    assert_eq!(server.stored_rows(), 0);
}

#[test]
fn ids_and_numbers_at_their_bounds_are_stored_as_sent() {
    let server = Server::start();
    let mut doc: Value = serde_json::from_str(SAMPLE).unwrap();
    // 256 characters of four bytes each, NUL among them.
    let id = format!("\0{}", "😀".repeat(255));
    let number = format!("+{}", "9".repeat(63));
    doc["message_id"] = json!(id);
    doc["from"] = json!(number);
    doc["to"] = json!(number);
    server.deliver(&doc.to_string());
    server.deliver(&doc.to_string());
    let page = server.get(&format!("/messages?from=%2B{}", "9".repeat(63))).json();
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["data"][0]["message_id"], json!(id));
    assert_eq!(page["data"][0]["to"], json!(number));
}

#[test]
fn optional_text_and_unicode_length() {
    let server = Server::start();
    let sample: Value = serde_json::from_str(SAMPLE).unwrap();
    let mut doc = sample.clone();
    doc["message_id"] = json!("null-text");
    doc["text"] = Value::Null;
    server.deliver(&doc.to_string());
    doc["message_id"] = json!("no-text");
    doc.as_object_mut().unwrap().remove("text");
    doc["extra"] = json!({"ignored": true});
    server.deliver(&doc.to_string());
    doc["message_id"] = json!("long-unicode");
    doc["text"] = json!("ü".repeat(4096));
    server.deliver(&doc.to_string());
    let page = server.get("/messages").json();
    assert_eq!(page["total"], 3);
    let texts: Vec<&Value> = page["data"].as_array().unwrap().iter().map(|m| &m["text"]).collect();
    assert!(texts.iter().filter(|t| t.is_null()).count() == 2, "{texts:?}");
}

#[test]
fn oversized_body_is_413() {
    let server = Server::start_with(&[("MAX_BODY_BYTES", "2048")]);
    let text = "x".repeat(4000);
    let body = message("big", "+1", "2025-01-15T10:00:00Z", Some(&text));
    let reply = server.webhook(&body, Some(&sign(&body)));
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(reply.json()["detail"].as_str().unwrap().contains("2048"));
    assert_eq!(server.stored_rows(), 0);
    server.deliver(&message("small", "+1", "2025-01-15T10:00:00Z", Some("ok")));
}

#[test]
fn concurrent_deliveries_of_one_id_store_one_row() {
    let server = Server::start();
    let body = message("same", "+1", "2025-01-15T10:00:00Z", Some("race"));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..24)
            .map(|_| scope.spawn(|| server.webhook(&body, Some(&sign(&body))).status))
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap(), 200);
        }
    });
    assert_eq!(server.stored_rows(), 1);
    assert_eq!(server.metric("webhook_requests_total{result=\"created\"}"), Some(1.0));
    assert_eq!(
        server.metric("webhook_requests_total{result=\"duplicate\"}"),
        Some(23.0)
    );
}

#[test]
fn concurrent_distinct_deliveries_are_all_stored() {
    let server = Server::start();
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let server = &server;
            scope.spawn(move || {
                for i in 0..25 {
                    server.deliver(&message(&format!("w{worker}-{i}"), "+1", "2025-01-15T10:00:00Z", None));
                }
            });
        }
    });
    assert_eq!(server.stored_rows(), 200);
}

#[test]
fn acknowledged_messages_survive_a_kill() {
    let server = Server::start();
    for i in 0..20 {
        server.deliver(&message(&format!("k{i}"), "+1", "2025-01-15T10:00:00Z", None));
    }
    let dir = server.kill();
    let server = Server::start_in(dir, &[]);
    assert_eq!(server.get("/messages").json()["total"], 20);
}
