//! Webhooks signed as real senders sign them: every scheme, any configured
//! secret, Standard Webhooks' time window, and secrets rotated through
//! `WEBHOOK_SECRET_FILE` while a client keeps sending.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inlet_e2e::{SECRET, Server, inlet_bin, message};
use inlet_signature::{SigningKey, hex_hmac, standard};

/// A secret only the file holds, in Standard Webhooks' `whsec_` form.
const FILE_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Header names and values, as a scheme sends them.
type Headers = Vec<(String, String)>;

fn now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

/// A server that also takes the secrets in its `secrets` file (written first).
fn server_with_file(contents: &str, extra: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets");
    std::fs::write(&file, contents).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let mut env = vec![("WEBHOOK_SECRET_FILE", file.as_str())];
    env.extend_from_slice(extra);
    Server::start_in(dir, &env)
}

fn secret_file(server: &Server) -> std::path::PathBuf {
    server.dir().join("secrets")
}

fn standard_headers(secret: &str, id: &str, timestamp: i64, body: &str) -> [(String, String); 3] {
    let [id_name, timestamp_name, signature_name] = standard::HEADER_NAMES;
    [
        (id_name.to_owned(), id.to_owned()),
        (timestamp_name.to_owned(), timestamp.to_string()),
        (
            signature_name.to_owned(),
            standard::sign(secret, id, timestamp, body.as_bytes()),
        ),
    ]
}

fn send(server: &Server, body: &str, headers: &[(String, String)]) -> u16 {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    server.webhook_with(body, &headers).status
}

#[test]
fn every_scheme_verifies_with_any_configured_secret() {
    let server = server_with_file("# the sender's keys\nsecond-key\n", &[]);
    let body = |n: usize| message(&format!("s{n}"), "+15550001", "2025-01-15T10:00:00Z", Some("hi"));
    let hex = |secret: &str, body: &str| SigningKey::new(secret).sign(body.as_bytes());
    let cases: Vec<(String, Headers, &str)> = vec![
        (
            body(1),
            vec![("X-Signature".into(), hex(SECRET, &body(1)))],
            "x-signature",
        ),
        (
            body(2),
            vec![("X-Signature".into(), hex("second-key", &body(2)).to_uppercase())],
            "x-signature",
        ),
        (
            body(3),
            vec![("X-Signature".into(), format!("sha256={}", hex(SECRET, &body(3))))],
            "x-signature",
        ),
        (
            body(4),
            vec![(
                "X-Hub-Signature-256".into(),
                hex_hmac::hub_header(&SigningKey::new("second-key"), body(4).as_bytes()),
            )],
            "hub-signature-256",
        ),
        (
            body(5),
            standard_headers(SECRET, "msg_5", now(), &body(5)).to_vec(),
            "standard-webhooks",
        ),
        (
            body(6),
            // Svix's names as a set: a stray `webhook-id` beside them is not mixed in.
            standard_headers("second-key", "msg_6", now(), &body(6))
                .map(|(name, value)| (name.replace("webhook-", "svix-"), value))
                .into_iter()
                .chain([("webhook-id".to_owned(), "msg_stray".to_owned())])
                .collect(),
            "standard-webhooks",
        ),
    ];
    // Settled: the log lines must come in the order the requests were sent.
    for (body, headers, _) in &cases {
        assert_eq!(server.settled(|s| send(s, body, headers)), 200, "{headers:?}");
    }
    assert_eq!(server.stored_rows(), 6);
    let schemes: Vec<String> = server
        .request_logs(6 + 1)
        .iter()
        .filter(|line| line["path"] == "/webhook")
        .map(|line| line["scheme"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<&str> = cases.iter().map(|(_, _, scheme)| *scheme).collect();
    assert_eq!(schemes, expected);
}

#[test]
fn a_whsec_secret_keys_standard_webhooks_with_its_decoded_bytes() {
    let server = server_with_file(&format!("{FILE_SECRET}\n"), &[]);
    let body = message("w1", "+15550001", "2025-01-15T10:00:00Z", None);
    assert_eq!(
        send(&server, &body, &standard_headers(FILE_SECRET, "msg_w1", now(), &body)),
        200
    );
    // The same secret as text keys the hex schemes, as Meta and GitHub use it.
    let hex = SigningKey::new(FILE_SECRET).sign(body.as_bytes());
    assert_eq!(send(&server, &body, &[("X-Signature".into(), hex)]), 200);
}

#[test]
fn refusals_name_their_reason_in_the_log_and_never_a_secret() {
    let server = server_with_file("second-key\n", &[("WEBHOOK_TOLERANCE_SECONDS", "60")]);
    let body = message("r1", "+15550001", "2025-01-15T10:00:00Z", None);
    let good_hex = SigningKey::new(SECRET).sign(body.as_bytes());
    let wrong_hub = format!("sha256={}", SigningKey::new("not-a-key").sign(body.as_bytes()));
    let refused: Vec<(Headers, &str)> = vec![
        (vec![], "missing"),
        (vec![("X-Hub-Signature-256".into(), good_hex.clone())], "malformed"),
        // The strongest scheme present decides: a good X-Signature does not
        // rescue a wrong X-Hub-Signature-256.
        (
            vec![
                ("X-Signature".into(), good_hex.clone()),
                ("X-Hub-Signature-256".into(), wrong_hub),
            ],
            "mismatch",
        ),
        (
            standard_headers(SECRET, "msg_r1", now() - 120, &body).to_vec(),
            "outside_tolerance",
        ),
        (
            standard_headers(SECRET, "msg_r1", now() + 120, &body).to_vec(),
            "outside_tolerance",
        ),
        (
            standard_headers("not-a-key", "msg_r1", now(), &body).to_vec(),
            "mismatch",
        ),
    ];
    // Settled: the log lines must come in the order the requests were sent.
    for (headers, _) in &refused {
        assert_eq!(server.settled(|s| send(s, &body, headers)), 401, "{headers:?}");
    }
    // Inside the window near both edges (10 s in, for a slow machine).
    for offset in [-50, 50] {
        let headers = standard_headers(SECRET, "msg_r1", now() + offset, &body);
        assert_eq!(send(&server, &body, &headers), 200, "{offset}");
    }
    assert_eq!(server.stored_rows(), 1);
    let reasons: Vec<String> = server
        .request_logs(refused.len() + 2)
        .iter()
        .filter(|line| line["status"] == 401)
        .map(|line| {
            assert_eq!(line["level"], "error");
            line["signature"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    let expected: Vec<&str> = refused.iter().map(|(_, reason)| *reason).collect();
    assert_eq!(reasons, expected);
    let logs = server.raw_logs();
    assert!(
        !logs.contains(SECRET) && !logs.contains("second-key"),
        "a secret was logged"
    );
}

/// Sends signed messages with whichever secret `signer` holds until `stop`,
/// recording each status.
fn keep_sending(
    server: Arc<Server>,
    signer: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<u16>> {
    std::thread::spawn(move || {
        let mut statuses = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        for n in 0.. {
            if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                break;
            }
            let body = message(&format!("rot{n}"), "+15550001", "2025-01-15T10:00:00Z", None);
            let secret = signer.lock().unwrap().clone();
            let signature = SigningKey::new(secret).sign(body.as_bytes());
            statuses.push(server.webhook(&body, Some(&signature)).status);
            std::thread::sleep(Duration::from_millis(5));
        }
        statuses
    })
}

/// Waits (bounded) until a message signed with `secret` gets `status`.
fn until_answered(server: &Server, secret: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for n in 0.. {
        let body = message(&format!("probe{n}"), "+15550002", "2025-01-15T10:00:00Z", None);
        let signature = SigningKey::new(secret).sign(body.as_bytes());
        if server.webhook(&body, Some(&signature)).status == status {
            return;
        }
        assert!(Instant::now() < deadline, "{secret} never got {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `server` has logged that it kept its secrets, for `reason`.
fn refused_reload(server: &Server, reason: &str) {
    server.wait_for_line(|line| {
        line["msg"] == "webhook secrets not reloaded; the last good set stays"
            && line["error"].as_str().is_some_and(|error| error.contains(reason))
    });
}

#[test]
fn secrets_rotate_through_the_file_with_no_failed_request() {
    let server = Arc::new(server_with_file("old-key\n", &[]));
    let file = secret_file(&server);
    let signer = Arc::new(Mutex::new("old-key".to_owned()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = keep_sending(server.clone(), signer.clone(), stop.clone());
    // Add the new key; once it verifies, the sender switches, then the old goes.
    std::fs::write(&file, "old-key\nnew-key\n").unwrap();
    until_answered(&server, "new-key", 200);
    *signer.lock().unwrap() = "new-key".to_owned();
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&file, "new-key\n").unwrap();
    until_answered(&server, "old-key", 401);
    // A file that becomes empty, then unreadable, keeps the last good set.
    // The client goes on sending after each refusal.
    std::fs::write(&file, "# emptied by mistake\n").unwrap();
    refused_reload(&server, "holds no secret");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&file).unwrap();
    refused_reload(&server, "cannot be read");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let statuses = client.join().unwrap();
    assert!(statuses.len() > 50, "the client kept sending: {}", statuses.len());
    assert!(statuses.iter().all(|&s| s == 200), "failed requests: {statuses:?}");
    until_answered(&server, "new-key", 200);
    assert_eq!(server.get("/health/ready").status, 200);
    let logs = server.raw_logs();
    assert!(
        !logs.contains("old-key") && !logs.contains("new-key"),
        "a secret was logged"
    );
}

#[test]
fn a_rotation_reaches_reused_instances_on_their_next_request() {
    let server = server_with_file("old-key\n", &[("GUEST_INSTANCE_REUSE", "1000")]);
    for _ in 0..5 {
        until_answered(&server, "old-key", 200);
    }
    std::fs::write(secret_file(&server), "new-key\n").unwrap();
    until_answered(&server, "new-key", 200);
    for n in 0..20 {
        let body = message(&format!("late{n}"), "+15550002", "2025-01-15T10:00:00Z", None);
        let signature = SigningKey::new("old-key").sign(body.as_bytes());
        assert_eq!(server.webhook(&body, Some(&signature)).status, 401, "request {n}");
    }
    let requests = 5 + 1 + 20;
    assert!(
        server.instantiations() < 10,
        "instances were reused over at least {requests} requests"
    );
}

#[test]
fn a_secret_file_that_cannot_be_read_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let output = std::process::Command::new(inlet_bin())
        .env_clear()
        .env("WEBHOOK_SECRET_FILE", &missing)
        .env(
            "DATABASE_URL",
            format!("sqlite:///{}", dir.path().join("app.db").display()),
        )
        .env("PORT", "0")
        .env("BIND_ADDRESS", "127.0.0.1")
        .env("GUEST_COMPONENT", inlet_e2e::guest_wasm())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("WEBHOOK_SECRET_FILE") && stdout.contains("cannot be read"),
        "{stdout}"
    );
}

#[test]
fn inlet_sign_makes_each_schemes_headers() {
    let server = Server::start();
    let body = message("sign1", "+15550001", "2025-01-15T10:00:00Z", Some("signed by the CLI"));
    let sign = |args: &[&str]| {
        let mut child = std::process::Command::new(inlet_bin())
            .arg("sign")
            .args(["--secret", SECRET])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    };
    let hex = sign(&[]);
    assert_eq!(send(&server, &body, &[("X-Signature".into(), hex.trim().into())]), 200);
    let hub = sign(&["--scheme", "hub-signature-256"]);
    assert!(hub.starts_with("sha256="), "{hub}");
    assert_eq!(
        send(&server, &body, &[("X-Hub-Signature-256".into(), hub.trim().into())]),
        200
    );
    let lines = sign(&["--scheme", "standard-webhooks", "--id", "msg_cli"]);
    let headers: Vec<(String, String)> = lines
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(": ").unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect();
    assert_eq!(headers[0], ("webhook-id".to_owned(), "msg_cli".to_owned()));
    assert_eq!(send(&server, &body, &headers), 200);
}
