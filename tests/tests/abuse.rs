//! Hostile HTTP against the real binary: every case gets a documented
//! answer and the service stays healthy.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use inlet_e2e::raw::{body_of, exchange as raw, status_line};
use inlet_e2e::{Server, message, sign};
use serde_json::json;

fn signed_post(body: &[u8], content_type: Option<&str>) -> Vec<u8> {
    let signature = inlet_signature::SigningKey::new(inlet_e2e::SECRET).sign(body);
    let mut request = format!(
        "POST /webhook HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Signature: {signature}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        request.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A signed `POST /webhook` whose body is `parts` joined, sent as one chunk
/// per part with no Content-Length.
fn signed_chunked(parts: &[&str]) -> String {
    let chunks: String = parts
        .iter()
        .map(|part| format!("{:x}\r\n{part}\r\n", part.len()))
        .collect();
    format!(
        "POST /webhook HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nX-Signature: {}\r\n\r\n{chunks}0\r\n\r\n",
        sign(&parts.concat())
    )
}

fn assert_healthy(server: &Server) {
    assert_eq!(server.get("/health/ready").status, 200);
}

#[test]
fn header_abuse() {
    let server = Server::start_with(&[("HEADER_READ_TIMEOUT_MS", "500")]);
    let huge = format!(
        "GET /stats HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    assert!(
        status_line(&raw(&server, huge.as_bytes())).contains(" 431 "),
        "1 MiB header"
    );
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /stats HTTP/1.1\r\nHost: t\r\n{many}\r\n");
    assert!(
        status_line(&raw(&server, many.as_bytes())).contains(" 431 "),
        "500 headers"
    );

    // A client that never finishes its headers is cut off.
    let started = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    slow.write_all(b"GET /stats HTTP/1.1\r\nHost: t\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slow client closed after the header timeout"
    );
    assert!(!String::from_utf8_lossy(&rest).contains(" 200 "));

    // An idle keep-alive connection is closed after the same timeout.
    let mut idle = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut first = [0u8; 512];
    let read = idle.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..read]).contains(" 200 "));
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "idle connection closed after the header timeout"
    );

    let bad_signature = b"POST /webhook HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Signature: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}";
    assert!(
        status_line(&raw(&server, bad_signature)).contains(" 401 "),
        "non-UTF-8 signature header"
    );
    assert_healthy(&server);
}

#[test]
fn protocol_variants() {
    let server = Server::start();
    let http10 = raw(&server, b"GET /stats HTTP/1.0\r\n\r\n");
    assert!(
        status_line(&http10).contains(" 200 "),
        "HTTP/1.0 without Host: {http10}"
    );
    let pipelined = raw(
        &server,
        b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\nGET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        pipelined.matches("HTTP/1.1 200 OK").count(),
        2,
        "two pipelined answers: {pipelined}"
    );
    assert!(pipelined.contains("total_messages"));
    let absolute = raw(
        &server,
        b"GET http://localhost/stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(status_line(&absolute).contains(" 200 "));
    let odd_method = raw(&server, b"BREW /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(status_line(&odd_method).contains(" 405 "));
    let garbage = raw(
        &server,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
    );
    assert!(
        garbage.is_empty() || status_line(&garbage).contains(" 400 "),
        "TLS hello / garbage: {garbage}"
    );
    assert_healthy(&server);
}

#[test]
fn body_abuse() {
    let server = Server::start_with(&[("MAX_BODY_BYTES", "4096")]);
    let not_utf8 = raw(
        &server,
        &signed_post(b"{\"message_id\": \"\xff\xfe\"}", Some("application/json")),
    );
    assert!(status_line(&not_utf8).contains(" 422 "), "{not_utf8}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body_of(&not_utf8)).unwrap()["detail"][0]["type"],
        "json_invalid"
    );
    let nested = "[".repeat(4000);
    let deep = raw(&server, &signed_post(nested.as_bytes(), Some("application/json")));
    assert!(status_line(&deep).contains(" 422 "), "deeply nested JSON");

    // Content-Type is not required: the signed bytes are what count.
    let text_plain = message("ct-1", "+1", "2025-01-15T10:00:00Z", None);
    assert!(status_line(&raw(&server, &signed_post(text_plain.as_bytes(), Some("text/plain")))).contains(" 200 "));
    let no_type = message("ct-2", "+1", "2025-01-15T10:00:00Z", None);
    assert!(status_line(&raw(&server, &signed_post(no_type.as_bytes(), None))).contains(" 200 "));

    // Over the cap while streaming, with no Content-Length to check first.
    let big = message("big", "+1", "2025-01-15T10:00:00Z", Some(&"x".repeat(8000)));
    assert!(
        status_line(&raw(&server, signed_chunked(&[&big]).as_bytes())).contains(" 413 "),
        "chunked body over the cap"
    );
    let lying = format!(
        "POST /webhook HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 100000\r\nX-Signature: {}\r\n\r\n{{}}",
        sign("{}")
    );
    assert!(
        status_line(&raw(&server, lying.as_bytes())).contains(" 413 "),
        "declared length over the cap"
    );
    assert_eq!(server.stored_rows(), 2);
    assert_healthy(&server);
}

/// The guest reads a body with no Content-Length to its end, and one with
/// a Content-Length to that many bytes; both arrive whole.
#[test]
fn a_body_is_read_whole_with_or_without_its_length() {
    let server = Server::start();
    let body = message("chunks", "+1", "2025-01-15T10:00:00Z", Some("split over three chunks"));
    let (first, rest) = body.split_at(10);
    let (second, third) = rest.split_at(20);
    assert!(
        status_line(&raw(&server, signed_chunked(&[first, second, third]).as_bytes())).contains(" 200 "),
        "chunked body"
    );
    let empty = raw(&server, &signed_post(b"", None));
    assert!(status_line(&empty).contains(" 422 "), "empty body: {empty}");
    // Two bodies with their lengths, one after the other on one connection:
    // the first one's end is where the second request begins.
    let first = signed_post_text("first").replacen("Connection: close", "Connection: keep-alive", 1);
    let both = format!("{first}{}", signed_post_text("second"));
    let answers = raw(&server, both.as_bytes());
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 2, "{answers}");
    let listed = server.get("/messages").json();
    assert_eq!(listed["total"], 3, "{listed}");
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["text"] == "split over three chunks")
    );
}

/// A signed `POST /webhook` of a message `id` that closes its connection.
fn signed_post_text(id: &str) -> String {
    let body = message(id, "+1", "2025-01-15T10:00:00Z", Some("kept alive"));
    String::from_utf8(signed_post(body.as_bytes(), None)).unwrap()
}

#[test]
fn query_abuse() {
    let server = Server::start();
    server.deliver(&message("q1", "+1", "2025-01-15T10:00:00Z", Some("ü text")));
    for (query, status) in [
        ("/messages?q=%FF%FE", 200),
        ("/messages?q=%ZZ&from=%", 200),
        ("/messages?q=%", 200),
        ("/messages?limit=%FF", 422),
        ("/messages?limit=5&limit=2", 200),
        ("/messages?limit=+7", 200),
        ("/messages?offset=-0", 200),
        ("/messages?limit=1e2", 422),
        ("/messages?limit=0x10", 422),
        ("/messages?since=2025-01-15T10:00:00Z%00", 422),
        ("/messages?&&&=&==&limit", 422),
        ("/messages?q=%C3%BC", 200),
    ] {
        let reply = server.get(query);
        assert_eq!(reply.status, status, "{query}: {}", reply.body);
    }
    assert_eq!(
        server.get("/messages?limit=5&limit=2").json()["limit"],
        2,
        "the last repeat wins"
    );
    assert_eq!(server.get("/messages?q=%C3%BC").json()["total"], 1);
    assert_eq!(
        server.get("/messages?q=%C3%9C").json()["total"],
        1,
        "Ü finds ü: Unicode case folding"
    );
    let long = format!("/messages?q={}", "a".repeat(60_000));
    let reply = server.get(&long);
    assert_eq!(reply.json()["total"], json!(0), "{} {}", reply.status, reply.body);
    assert_healthy(&server);
    for line in server.raw_logs().lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("non-JSON log line ({e}): {line}"));
    }
}
