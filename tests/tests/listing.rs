//! `GET /messages`: pagination, filters, ordering, parameter validation.

use inlet_e2e::{Server, message};
use serde_json::{Value, json};

/// Seeds five messages out of order; returns the server.
fn seeded() -> Server {
    let server = Server::start();
    for (id, from, ts, text) in [
        ("m3", "+919876543210", "2025-01-15T10:00:00Z", Some("Hello again")),
        ("m1", "+919876543210", "2025-01-15T09:00:00Z", Some("hello world")),
        ("m5", "+14155550100", "2025-01-16T08:00:00Z", None),
        ("m2", "+447700900123", "2025-01-15T09:30:00Z", Some("Bonjour")),
        ("m4", "+447700900123", "2025-01-15T10:00:00Z", Some("say HELLO")),
    ] {
        server.deliver(&message(id, from, ts, text));
    }
    server
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn all_listing_checks_on_one_dataset() {
    let server = seeded();

    let all = server.get("/messages");
    assert_eq!(all.status, 200);
    let all = all.json();
    assert_eq!(ids(&all), ["m1", "m2", "m3", "m4", "m5"], "ts ASC, then message_id ASC");
    assert_eq!(
        (&all["total"], &all["limit"], &all["offset"]),
        (&json!(5), &json!(50), &json!(0))
    );
    assert_eq!(
        all["data"][0],
        json!({"message_id": "m1", "from": "+919876543210", "to": "+14155550100", "ts": "2025-01-15T09:00:00Z", "text": "hello world"})
    );
    assert_eq!(all["data"][4]["text"], Value::Null);

    let page = server.get("/messages?limit=2&offset=0").json();
    assert_eq!(
        (ids(&page), &page["total"], &page["limit"], &page["offset"]),
        (vec!["m1".to_owned(), "m2".into()], &json!(5), &json!(2), &json!(0))
    );
    let page = server.get("/messages?limit=2&offset=4").json();
    assert_eq!(
        (ids(&page), &page["total"], &page["offset"]),
        (vec!["m5".to_owned()], &json!(5), &json!(4))
    );
    let page = server.get("/messages?offset=100").json();
    assert_eq!((ids(&page).len(), &page["total"]), (0, &json!(5)));

    let from = server.get("/messages?from=+919876543210").json();
    assert_eq!(
        (ids(&from), &from["total"]),
        (vec!["m1".to_owned(), "m3".into()], &json!(2))
    );
    let encoded = server.get("/messages?from=%2B919876543210").json();
    assert_eq!(ids(&encoded), ids(&from));
    assert_eq!(server.get("/messages?from=+10000000000").json()["total"], 0);

    let since = server.get("/messages?since=2025-01-15T09:30:00Z").json();
    assert_eq!(
        (ids(&since), &since["total"]),
        (vec!["m2".to_owned(), "m3".into(), "m4".into(), "m5".into()], &json!(4))
    );

    let q = server.get("/messages?q=Hello").json();
    assert_eq!(
        (ids(&q), &q["total"]),
        (vec!["m1".to_owned(), "m3".into(), "m4".into()], &json!(3)),
        "case-insensitive"
    );
    assert_eq!(server.get("/messages?q=hello+world").json()["total"], 1);
    assert_eq!(server.get("/messages?q=%25").json()["total"], 0, "% is literal");
    assert_eq!(server.get("/messages?q=_").json()["total"], 0, "_ is literal");

    let combined = server
        .get("/messages?from=+447700900123&since=2025-01-15T09:45:00Z&q=hello&limit=1")
        .json();
    assert_eq!(
        (ids(&combined), &combined["total"], &combined["limit"]),
        (vec!["m4".to_owned()], &json!(1), &json!(1))
    );
}

#[test]
fn ordering_is_by_instant_not_by_string() {
    let server = Server::start();
    server.deliver(&message("b", "+1", "2025-01-15T10:00:00.5Z", None));
    server.deliver(&message("a", "+1", "2025-01-15T10:00:00Z", None));
    server.deliver(&message("c", "+1", "2025-01-15T10:00:00.250Z", None));
    assert_eq!(ids(&server.get("/messages").json()), ["a", "c", "b"]);
    let since = server.get("/messages?since=2025-01-15T10:00:00.3Z").json();
    assert_eq!(ids(&since), ["b"]);
    let stats = server.get("/stats").json();
    assert_eq!(
        (&stats["first_message_ts"], &stats["last_message_ts"]),
        (&json!("2025-01-15T10:00:00Z"), &json!("2025-01-15T10:00:00.5Z"))
    );
}

#[test]
fn bad_parameters_are_422() {
    let server = Server::start();
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-5", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("limit=", "limit"),
        ("offset=-1", "offset"),
        ("offset=ten", "offset"),
        ("offset=99999999999999999999999", "offset"),
        ("since=yesterday", "since"),
        ("since=2025-01-15", "since"),
        ("since=2025-02-30T00:00:00Z", "since"),
    ] {
        let reply = server.get(&format!("/messages?{query}"));
        assert_eq!(reply.status, 422, "{query}: {}", reply.body);
        let detail = reply.json()["detail"].clone();
        assert_eq!(detail[0]["loc"], json!(["query", param]), "{query}: {detail}");
        assert!(detail[0]["msg"].is_string() && detail[0]["type"].is_string());
    }
    let limits = server.get("/messages?limit=100").json();
    assert_eq!(limits["limit"], 100);
    assert_eq!(server.get("/messages?limit=1&unknown=x").status, 200);
}

#[test]
fn cursors_walk_every_match_once_and_only_with_their_filters() {
    let server = seeded();
    let page = |query: &str| {
        let reply = server.get(&format!("/messages?{query}"));
        assert_eq!(reply.status, 200, "{query}: {}", reply.body);
        reply.json()
    };
    let first = page("limit=2&q=hello");
    assert_eq!(
        (ids(&first), &first["total"]),
        (vec!["m1".to_owned(), "m3".into()], &json!(3))
    );
    let cursor = first["next_cursor"].as_str().expect("more rows follow").to_owned();
    // A message arriving behind the cursor does not shift the next page.
    server.deliver(&message("m0", "+1", "2025-01-01T00:00:00Z", Some("hello first")));
    let second = page(&format!("limit=2&q=hello&cursor={cursor}"));
    assert_eq!(ids(&second), ["m4"]);
    assert_eq!(second["next_cursor"], Value::Null, "the last page");
    assert_eq!(second["offset"], 0);

    let walked: Vec<String> = std::iter::successors(Some(page("limit=1")), |previous| {
        let cursor = previous["next_cursor"].as_str()?;
        Some(page(&format!("limit=1&cursor={cursor}")))
    })
    .flat_map(|p| ids(&p))
    .collect();
    assert_eq!(walked, ["m0", "m1", "m2", "m3", "m4", "m5"]);

    for (query, why) in [
        (format!("q=other&cursor={cursor}"), "other filters"),
        (format!("q=hello&offset=1&cursor={cursor}"), "a non-zero offset"),
        ("cursor=not-a-cursor".to_owned(), "malformed"),
    ] {
        let reply = server.get(&format!("/messages?{query}"));
        assert_eq!(reply.status, 422, "{why}: {}", reply.body);
        assert_eq!(reply.json()["detail"][0]["loc"], json!(["query", "cursor"]), "{why}");
    }
}
