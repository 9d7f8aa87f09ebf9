//! `GET /stats`: totals, top senders, time range.

use inlet_e2e::{Server, message};
use serde_json::json;

#[test]
fn empty_database() {
    let server = Server::start();
    let reply = server.get("/stats");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"total_messages": 0, "senders_count": 0, "messages_per_sender": [],
               "first_message_ts": null, "last_message_ts": null})
    );
}

#[test]
fn top_ten_senders_by_count_then_sender() {
    let server = Server::start();
    // Twelve senders: +100 sends 12 messages, +101 sends 11, ... +111 sends 1.
    // +099 and +120 send 3 each, tying +109 for tenth place: +099 wins it.
    let mut expected_total = 0;
    for s in 0..12u32 {
        let count = 12 - s;
        for i in 0..count {
            let ts = format!("2025-01-{:02}T{:02}:00:00Z", 10 + s % 5, i);
            server.deliver(&message(&format!("s{s}-{i}"), &format!("+{}", 100 + s), &ts, None));
            expected_total += 1;
        }
    }
    for (sender, id) in [
        ("+099", "t1"),
        ("+099", "t2"),
        ("+099", "t3"),
        ("+120", "t4"),
        ("+120", "t5"),
        ("+120", "t6"),
    ] {
        server.deliver(&message(id, sender, "2025-01-12T00:00:00Z", None));
        expected_total += 1;
    }
    let stats = server.get("/stats").json();
    assert_eq!(stats["total_messages"], expected_total);
    assert_eq!(stats["senders_count"], 14);
    let top = stats["messages_per_sender"].as_array().unwrap();
    assert_eq!(top.len(), 10);
    let pairs: Vec<(String, u64)> = top
        .iter()
        .map(|e| (e["from"].as_str().unwrap().to_owned(), e["count"].as_u64().unwrap()))
        .collect();
    let expected: Vec<(String, u64)> = (0..9u32)
        .map(|s| (format!("+{}", 100 + s), u64::from(12 - s)))
        .chain([("+099".to_owned(), 3)])
        .collect();
    assert_eq!(pairs, expected, "count DESC, then sender ASC");
    assert_eq!(stats["first_message_ts"], "2025-01-10T00:00:00Z");
    assert_eq!(stats["last_message_ts"], "2025-01-14T07:00:00Z");
    let sum: u64 = (0..12u64).map(|s| 12 - s).sum::<u64>() + 6;
    assert_eq!(stats["total_messages"], sum);
}
