//! WhatsApp Cloud API deliveries at `/webhook/whatsapp`: Meta's handshake,
//! notifications signed with `X-Hub-Signature-256`, stored all or none and
//! exactly once however often they are redelivered.

use inlet_e2e::whatsapp::{self, notification};
use inlet_e2e::{SECRET, Server};
use inlet_signature::{SigningKey, hex_hmac};
use serde_json::{Value, json};

const TOKEN: &str = "meta-verify-token";
const ROUTE: &str = "/webhook/whatsapp";

fn server() -> Server {
    Server::start_with(&[("WHATSAPP_VERIFY_TOKEN", TOKEN)])
}

fn text_message(n: usize, text: &str) -> Value {
    whatsapp::text_message(&format!("wamid.{n}"), "16505551234", n, text)
}

fn deliver(server: &Server, body: &str) -> inlet_e2e::Reply {
    server.post_json(ROUTE, body, &[("X-Hub-Signature-256", &whatsapp::signature(body))])
}

#[test]
fn the_handshake_echoes_the_challenge_for_the_right_token_only() {
    let server = server();
    let reply = server.get(&format!(
        "{ROUTE}?hub.mode=subscribe&hub.verify_token={TOKEN}&hub.challenge=1158201444"
    ));
    assert_eq!((reply.status, reply.body.as_str()), (200, "1158201444"));
    assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"));
    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1".to_owned(),
        format!("hub.mode=unsubscribe&hub.verify_token={TOKEN}&hub.challenge=1"),
        "hub.mode=subscribe&hub.challenge=1".to_owned(),
        format!("hub.mode=subscribe&hub.verify_token={TOKEN}"),
    ] {
        let reply = server.get(&format!("{ROUTE}?{query}"));
        assert_eq!(reply.status, 403, "{query}");
        assert_eq!(reply.json()["detail"], "verification failed");
    }
    let unconfigured = Server::start();
    let reply = unconfigured.get(&format!("{ROUTE}?hub.mode=subscribe&hub.verify_token=&hub.challenge=1"));
    assert_eq!(reply.status, 403, "no token configured verifies nothing");
    assert!(!server.raw_logs().contains(TOKEN), "the token was logged");
}

#[test]
fn a_delivery_stores_each_message_once_however_often_it_comes() {
    let server = server();
    let mut messages = vec![text_message(1, "Hello"), text_message(2, "¿Dónde está mi pedido?")];
    messages.push(
        json!({"from": "16505551234", "id": "wamid.3", "timestamp": "1736935203", "type": "image",
                         "image": {"caption": "the receipt", "id": "media1", "mime_type": "image/jpeg"}}),
    );
    messages.push(
        json!({"from_user_id": "BR.1502576394655843", "id": "wamid.4", "timestamp": "1736935204",
                         "type": "reaction", "reaction": {"message_id": "wamid.1", "emoji": "👍"}}),
    );
    let body = notification(messages, 3);
    for _ in 0..3 {
        let reply = deliver(&server, &body);
        assert_eq!((reply.status, reply.json()), (200, json!({"status": "ok"})));
    }
    assert_eq!(server.stored_rows(), 4, "a redelivery stores nothing new");
    let page = server.get("/messages?from=%2B16505551234").json();
    let rows: Vec<(String, String, String, Value)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["message_id"].as_str().unwrap().to_owned(),
                m["to"].as_str().unwrap().to_owned(),
                m["ts"].as_str().unwrap().to_owned(),
                m["text"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "wamid.1".into(),
                "+15550783881".into(),
                "2025-01-15T10:00:01Z".into(),
                json!("Hello")
            ),
            (
                "wamid.2".into(),
                "+15550783881".into(),
                "2025-01-15T10:00:02Z".into(),
                json!("¿Dónde está mi pedido?")
            ),
            (
                "wamid.3".into(),
                "+15550783881".into(),
                "2025-01-15T10:00:03Z".into(),
                json!("the receipt")
            ),
        ]
    );
    let bsuid = server.get("/messages?from=BR.1502576394655843").json();
    assert_eq!(
        (bsuid["total"].clone(), bsuid["data"][0]["text"].clone()),
        (json!(1), Value::Null)
    );
    assert_eq!(
        server.get("/messages?q=d%C3%93NDE").json()["total"],
        1,
        "searchable like any message"
    );
    let metrics = server.metrics_showing(&["whatsapp_statuses_total 9".to_owned()]);
    assert!(metrics.contains("whatsapp_statuses_total 9"), "{metrics}");
    assert!(
        metrics.contains(r#"webhook_requests_total{result="created"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"webhook_requests_total{result="duplicate"} 8"#),
        "{metrics}"
    );
}

#[test]
fn a_thousand_message_delivery_of_three_megabytes_is_stored_whole() {
    let server = server();
    let text = "x".repeat(2_900);
    let messages: Vec<Value> = (0..1000).map(|n| text_message(n, &text)).collect();
    let body = notification(messages, 0);
    assert!(body.len() > 2_900_000 && body.len() < 4 << 20, "{} bytes", body.len());
    let started = std::time::Instant::now();
    let reply = deliver(&server, &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    eprintln!("1000 messages, {} bytes: {:?}", body.len(), started.elapsed());
    assert_eq!(server.stored_rows(), 1000);
    assert_eq!(deliver(&server, &body).status, 200);
    assert_eq!(server.stored_rows(), 1000);
}

#[test]
fn a_malformed_or_badly_signed_delivery_stores_nothing() {
    let server = server();
    let mut messages = vec![text_message(1, "fine")];
    messages.push(json!({"from": "16505551234", "id": "wamid.2", "timestamp": "yesterday", "type": "text", "text": {"body": "bad"}}));
    let reply = deliver(&server, &notification(messages, 0));
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(
        reply.json()["detail"][0]["loc"],
        json!([
            "body",
            "entry",
            "0",
            "changes",
            "0",
            "value",
            "messages",
            "1",
            "timestamp"
        ])
    );
    assert_eq!(server.stored_rows(), 0, "all or none");
    let body = notification(vec![text_message(3, "signed wrong")], 0);
    let wrong = hex_hmac::hub_header(&SigningKey::new("not-the-app-secret"), body.as_bytes());
    assert_eq!(
        server
            .post_json(ROUTE, &body, &[("X-Hub-Signature-256", &wrong)])
            .status,
        401
    );
    // Only Meta's scheme is accepted here.
    let x_signature = SigningKey::new(SECRET).sign(body.as_bytes());
    assert_eq!(
        server.post_json(ROUTE, &body, &[("X-Signature", &x_signature)]).status,
        401
    );
    assert_eq!(server.post_json(ROUTE, &body, &[]).status, 401);
    assert_eq!(server.stored_rows(), 0);
    assert_eq!(server.request("PUT", ROUTE, None).header("allow"), Some("GET, POST"));
}

#[test]
fn the_route_has_its_own_body_limit() {
    let server = Server::start_with(&[("MAX_BODY_BYTES", "1000"), ("WHATSAPP_MAX_BODY_BYTES", "20000")]);
    let body = notification(vec![text_message(1, &"y".repeat(3_000))], 0);
    assert!(body.len() > 1000 && body.len() < 20_000);
    assert_eq!(
        deliver(&server, &body).status,
        200,
        "over MAX_BODY_BYTES but within its own"
    );
    let big = notification(vec![text_message(2, &"y".repeat(30_000))], 0);
    let reply = deliver(&server, &big);
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["detail"], "request body is larger than 20000 bytes");
    let lines = server.request_logs(2);
    let line = lines.iter().find(|l| l["status"] == 413).expect("the 413 is logged");
    assert_eq!(line["limit"], "WHATSAPP_MAX_BODY_BYTES");
    assert_eq!(server.stored_rows(), 1);
}
