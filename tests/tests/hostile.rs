//! Hostile clients against the real binary: each may cost only its own
//! request. Slow bodies, vanished clients, clients that never read, broken
//! `Host` headers, missing signatures, bursts of probes, a guest that tries
//! to make the host hold too much, and a hot swap while every instance is busy.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use inlet_e2e::raw::{self, connect, read_status, status_line};
use inlet_e2e::{Server, inlet_bin, message, misbehaving_guest, sign, swap, wait_until};

/// What every answer a hostile client must not delay has to come within.
const PROMPTLY: Duration = Duration::from_secs(2);

/// `send` answered within `PROMPTLY`; its status.
fn promptly(what: &str, send: impl FnOnce() -> u16) -> u16 {
    let started = Instant::now();
    let status = send();
    assert!(
        started.elapsed() < PROMPTLY,
        "{what} took {:?} (status {status})",
        started.elapsed()
    );
    status
}

/// The request lines logged with `status`, once there are `expected`.
fn lines_with_status(server: &Server, status: u64, expected: usize) -> Vec<serde_json::Value> {
    lines_where(server, expected, |line| line["status"] == status)
}

/// The log lines `wanted` picks, once there are `expected` (or after 5 s).
fn lines_where(
    server: &Server,
    expected: usize,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<_> = server.logs().into_iter().filter(|line| wanted(line)).collect();
        if lines.len() >= expected || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A signed `POST path` whose headers are sent now and whose body follows later.
fn headers_only(server: &Server, path: &str, length: usize, signature: Option<&str>) -> TcpStream {
    let mut stream = connect(server);
    let signature = signature.map(|line| format!("{line}\r\n")).unwrap_or_default();
    let head = format!("POST {path} HTTP/1.1\r\nHost: t\r\n{signature}Content-Length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

#[test]
fn a_host_header_that_is_no_authority_is_the_clients_error() {
    let server = Server::start();
    let body = message("h1", "+1", "2025-01-15T10:00:00Z", None);
    let signed = format!(
        "POST /webhook HTTP/1.1\r\nHost: ex\u{e4}mple.com\r\nConnection: close\r\nX-Signature: {}\r\nContent-Length: {}\r\n\r\n{body}",
        sign(&body),
        body.len()
    );
    let requests: [&[u8]; 4] = [
        b"GET /stats HTTP/1.1\r\nHost: \xff\xfe\r\nConnection: close\r\n\r\n",
        "GET /health/ready HTTP/1.1\r\nHost: ex\u{e4}mple.com\r\nConnection: close\r\n\r\n".as_bytes(),
        signed.as_bytes(),
        b"GET /stats HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    ];
    for request in requests {
        let answer = raw::exchange(&server, request);
        assert!(status_line(&answer).contains(" 400 "), "{answer}");
        assert!(raw::body_of(&answer).contains("invalid Host header"), "{answer}");
    }
    assert_eq!(server.stored_rows(), 0);
    assert_eq!(server.metric("guest_traps_total{reason=\"trap\"}").unwrap_or(0.0), 0.0);
    assert_eq!(server.get("/health/ready").status, 200);
}

#[test]
fn a_delivery_without_a_usable_signature_is_refused_before_its_body() {
    let server = Server::start();
    let cases = [
        ("/webhook", 500_000, None),
        ("/webhook/whatsapp", 4_000_000, None),
        ("/webhook", 500_000, Some("X-Signature: zz")),
        ("/webhook/whatsapp", 1_000, Some("X-Hub-Signature-256: sha256=zz")),
        // Meta's route takes only Meta's scheme.
        ("/webhook/whatsapp", 1_000, Some("X-Signature: 00")),
    ];
    for (path, length, signature) in cases {
        let status = promptly(&format!("{path} {signature:?}"), || {
            read_status(&mut headers_only(&server, path, length, signature)).unwrap_or(0)
        });
        assert_eq!(status, 401, "{path} with {signature:?}");
    }
    assert_eq!(
        server.metric("webhook_requests_total{result=\"invalid_signature\"}"),
        Some(5.0)
    );
}

#[test]
fn clients_dripping_their_bodies_hold_no_guest_instance() {
    let server = Server::start_with(&[("MAX_INSTANCES", "2"), ("BODY_READ_TIMEOUT_MS", "4000")]);
    let body = message("dripped", "+1", "2025-01-15T10:00:00Z", Some("slowly"));
    let signature = format!("X-Signature: {}", sign(&body));
    let mut drippers: Vec<TcpStream> = (0..4)
        .map(|_| headers_only(&server, "/webhook", body.len(), Some(&signature)))
        .collect();
    let sent = 12;
    for byte in 0..sent {
        for dripper in &mut drippers {
            dripper.write_all(&body.as_bytes()[byte..=byte]).unwrap();
        }
        let probe = promptly("a probe", || server.get("/health/ready").status);
        assert_eq!(probe, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(promptly("a listing", || server.get("/stats").status), 200);
    let other = message("prompt", "+2", "2025-01-15T10:00:00Z", None);
    let delivered = promptly("another webhook", || server.webhook(&other, Some(&sign(&other))).status);
    assert_eq!(delivered, 200);
    // A slow body that does arrive is served; the others run out of time.
    drippers[0].write_all(&body.as_bytes()[sent..]).unwrap();
    assert_eq!(read_status(&mut drippers[0]), Some(200));
    for dripper in &mut drippers[1..] {
        assert_eq!(read_status(dripper), Some(408));
    }
    assert_eq!(server.stored_rows(), 2);
    let timed_out = lines_with_status(&server, 408, 3);
    assert_eq!(timed_out.len(), 3);
    assert!(timed_out.iter().all(|line| line["limit"] == "BODY_READ_TIMEOUT_MS"));
}

#[test]
fn a_client_that_leaves_frees_its_instance_and_is_logged_499() {
    let server = Server::start_with(&[
        ("GUEST_COMPONENT", misbehaving_guest().to_str().unwrap()),
        ("MAX_INSTANCES", "2"),
    ]);
    let leavers: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = connect(&server);
            stream.write_all(b"GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    drop(leavers);
    // Both instances were held; once their clients left they are free again.
    assert_eq!(promptly("a listing", || server.get("/stats").status), 200);
    let gone = lines_with_status(&server, 499, 2);
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(
        gone.iter()
            .all(|line| line["path"] == "/sleep" && line["level"] == "warn")
    );
    assert_eq!(server.metric("guest_traps_total{reason=\"trap\"}").unwrap_or(0.0), 0.0);
    // The one request in flight is the one reading the metrics, once the
    // leavers' requests have ended (their log line can come a moment before).
    let mut in_flight = None;
    wait_until(Duration::from_secs(5), || {
        in_flight = server.metric("requests_in_flight");
        in_flight == Some(1.0)
    });
    assert_eq!(in_flight, Some(1.0));
}

#[test]
fn a_client_that_never_reads_is_cut_off() {
    let server = Server::start_with(&[
        ("MAX_CONNECTIONS", "2"),
        ("SEND_TIMEOUT_MS", "1000"),
        ("HEADER_READ_TIMEOUT_MS", "300"),
    ]);
    let pipelined = "GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n".repeat(3000);
    // The test client's idle keep-alive connection from start-up is closed.
    std::thread::sleep(Duration::from_millis(600));
    let hogs: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = connect(&server);
            // The server may cut the connection before all of it is written.
            let _ = stream.write_all(pipelined.as_bytes());
            stream
        })
        .collect();
    // Both connection slots are taken by clients that read nothing; a
    // third client waits in the backlog until they are cut off.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let answer = raw::exchange(
        &server,
        b"GET /health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(status_line(&answer).contains(" 200 "), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "served after {:?}",
        started.elapsed()
    );
    drop(hogs);
}

#[test]
fn a_setting_out_of_range_stops_start_up_with_exit_2() {
    for (variable, value) in [
        ("MAX_CONNECTIONS", "4294967296"),
        ("REQUEST_TIMEOUT_MS", "18446744073709551615"),
        ("SEND_TIMEOUT_MS", "0"),
    ] {
        let output = Command::new(inlet_bin())
            .env_clear()
            .env("WEBHOOK_SECRET", "s")
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}={value}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{stdout}");
        assert_eq!(lines[0]["variable"], variable);
    }
}

#[test]
fn a_burst_of_probes_costs_one_storage_check_and_no_instance() {
    let server = Server::start_with(&[
        ("GUEST_COMPONENT", misbehaving_guest().to_str().unwrap()),
        ("MAX_INSTANCES", "1"),
    ]);
    std::thread::scope(|scope| {
        // The one instance is busy for 5 s.
        let sleeper = scope.spawn(|| server.get("/sleep").status);
        std::thread::sleep(Duration::from_millis(300));
        let checks_before = server
            .metric("storage_operation_ms_count{operation=\"ping\"}")
            .unwrap_or(0.0);
        let burst = Instant::now();
        for _ in 0..50 {
            assert_eq!(server.get("/health/ready").status, 200);
        }
        assert!(burst.elapsed() < PROMPTLY, "50 probes took {:?}", burst.elapsed());
        let checks = server
            .metric("storage_operation_ms_count{operation=\"ping\"}")
            .expect("the probes' storage check on /metrics")
            - checks_before;
        assert!(checks <= 2.0, "{checks} storage checks for 50 probes");
        assert_eq!(sleeper.join().unwrap(), 200);
    });
}

#[test]
fn a_guest_swapped_while_every_instance_is_busy_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.wasm");
    std::fs::copy(misbehaving_guest(), &path).unwrap();
    let server = Server::start_with(&[("GUEST_COMPONENT", path.to_str().unwrap()), ("MAX_INSTANCES", "1")]);
    std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| server.get("/sleep").status);
        std::thread::sleep(Duration::from_millis(300));
        let variant = swap::variant("busy");
        swap::replace_by_rename(Path::new(&path), &variant);
        let waited = swap::wait_for_sha(&server, &swap::sha256(&variant));
        assert!(
            !sleeper.is_finished(),
            "live after {waited:?}, not while the only instance was busy"
        );
        assert_eq!(sleeper.join().unwrap(), 200);
    });
}

#[test]
fn a_guest_cannot_make_the_host_hold_more_than_its_limits() {
    let server = Server::start_with(&[("GUEST_COMPONENT", misbehaving_guest().to_str().unwrap())]);
    for (path, reason) in [
        ("/flood-log", "more than 32 log fields"),
        ("/flood-events", "more than 16 log events"),
        ("/flood-resources", "resource table"),
        ("/flood-header", "total size of fields exceeds limit"),
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 500, "{path}: {}", reply.body);
        let failed = lines_where(&server, 1, |line| line["path"] == path && line["status"] == 500)
            .into_iter()
            .next();
        let error = failed.map(|line| line["error"].to_string()).unwrap_or_default();
        assert!(error.contains(reason), "{path}: {error}");
    }
    assert_eq!(server.get("/health/ready").status, 200);
}
