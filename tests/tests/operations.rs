//! Health, metrics, logs, routing errors, configuration and the CLI tools.

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};

use inlet_e2e::{Server, guest_wasm, inlet_bin, message, sign};
use serde_json::{Value, json};

#[test]
fn health_probes() {
    let server = Server::start();
    assert_eq!(
        server.logged_port(),
        Some(server.port()),
        "`listening` names the port PORT=0 got"
    );
    let live = server.get("/health/live");
    assert_eq!((live.status, live.json()), (200, json!({"status": "ok"})));
    let ready = server.get("/health/ready");
    assert_eq!(ready.status, 200);
    let ready = ready.json();
    assert_eq!(ready["status"], "ready");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(guest_wasm()).unwrap()))
    };
    assert_eq!(ready["guest"]["sha256"], sha.as_str());
    assert!(ready["guest"]["loaded_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn unknown_route_is_404_and_wrong_method_405() {
    let server = Server::start();
    let missing = server.get("/nope");
    assert_eq!((missing.status, missing.json()), (404, json!({"detail": "Not Found"})));
    for (method, path, allow) in [
        ("GET", "/webhook", "POST"),
        ("POST", "/messages", "GET"),
        ("DELETE", "/stats", "GET"),
        ("POST", "/metrics", "GET"),
        ("PUT", "/health/live", "GET"),
    ] {
        let reply = server.request(method, path, Some("{}"));
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.json(), json!({"detail": "Method Not Allowed"}));
        assert_eq!(reply.header("allow"), Some(allow));
    }
}

#[test]
fn metrics_count_what_happened() {
    let server = Server::start();
    let body = message("m1", "+1", "2025-01-15T10:00:00Z", Some("hi"));
    server.deliver(&body);
    server.deliver(&body);
    assert_eq!(server.webhook(&body, Some("00")).status, 401);
    assert_eq!(server.webhook("{}", Some(&sign("{}"))).status, 422);
    assert_eq!(server.get("/messages").status, 200);
    let expected = [
        "http_requests_total{path=\"/webhook\",status=\"200\"} 2",
        "http_requests_total{path=\"/webhook\",status=\"401\"} 1",
        "http_requests_total{path=\"/webhook\",status=\"422\"} 1",
        "http_requests_total{path=\"/messages\",status=\"200\"} 1",
        "webhook_requests_total{result=\"created\"} 1",
        "webhook_requests_total{result=\"duplicate\"} 1",
        "webhook_requests_total{result=\"invalid_signature\"} 1",
        "webhook_requests_total{result=\"validation_error\"} 1",
        "request_latency_ms_bucket{le=\"100.0\"}",
        "request_latency_ms_count",
    ]
    .map(String::from);
    let text = server.metrics_showing(&expected);
    for line in &expected {
        assert!(text.contains(line.as_str()), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn metrics_expose_host_internals() {
    use sha2::Digest;
    let server = Server::start();
    server.deliver(&message("m1", "+1", "2025-01-15T10:00:00Z", None));
    server.deliver(&message("m1", "+1", "2025-01-15T10:00:00Z", None));
    assert_eq!(server.get("/messages").status, 200);
    let sha = hex::encode(sha2::Sha256::digest(std::fs::read(guest_wasm()).unwrap()));
    let expected = [
        format!("guest_info{{sha256=\"{sha}\"}} 1"),
        "guest_loads_total{outcome=\"loaded\"} 1".to_owned(),
        "messages_stored_total 1".to_owned(),
        "storage_operation_ms_count{operation=\"insert\"} 2".to_owned(),
        "storage_operation_ms_count{operation=\"list\"} 1".to_owned(),
        "requests_in_flight 1".to_owned(),
    ];
    let text = server.metrics_showing(&expected);
    for line in &expected {
        assert!(text.contains(line.as_str()), "missing {line:?} in:\n{text}");
    }
    assert!(server.instantiations() >= 3, "{text}");
}

#[test]
fn unknown_paths_do_not_grow_metric_series() {
    let server = Server::start();
    for i in 0..300 {
        assert_eq!(server.get(&format!("/random/{i}?x={i}")).status, 404);
    }
    let expected = "http_requests_total{path=\"other\",status=\"404\"} 300".to_owned();
    let text = server.metrics_showing(std::slice::from_ref(&expected));
    // The host's own routes (start-up's probes, these reads of the metrics) aside.
    let host_route = |l: &&str| l.contains("path=\"/health/live\"") || l.contains("path=\"/metrics\"");
    let series = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .filter(|l| !host_route(l))
        .count();
    assert_eq!(series, 1, "{text}");
    assert!(text.contains(&expected), "{text}");
}

#[test]
fn a_swapped_in_guest_counts_its_own_routes_within_a_bound() {
    // The fixture guest names `/fine`, and `/named/<x>` names `<x>`: routes
    // the host has never heard of get their own label, up to the bound.
    let guest = inlet_e2e::misbehaving_guest();
    let server = Server::start_with(&[("GUEST_COMPONENT", guest.to_str().unwrap())]);
    assert_eq!(server.get("/fine").status, 200);
    for i in 0..60 {
        assert_eq!(server.get(&format!("/named/r{i}")).status, 200);
    }
    let expected = [
        "http_requests_total{path=\"/fine\",status=\"200\"} 1".to_owned(),
        "http_requests_total{path=\"other\",status=\"200\"} 29".to_owned(),
    ];
    let text = server.metrics_showing(&expected);
    let named = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{path=\"r"))
        .count();
    assert_eq!(named, 31, "/fine and 31 names fill the 32 guest labels:\n{text}");
}

#[test]
fn one_json_log_line_per_request() {
    let server = Server::start();
    let body = message("log-1", "+1", "2025-01-15T10:00:00Z", None);
    server.deliver(&body);
    server.deliver(&body);
    server.webhook(&body, Some("bad"));
    let invalid = r#"{"message_id": "log-2", "from": "nope"}"#;
    server.webhook(invalid, Some(&sign(invalid)));
    server.get("/messages");
    server.get("/unknown");
    let lines = server.request_logs(6);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let mut ids = HashSet::new();
    for line in &lines {
        for key in ["ts", "level", "request_id", "method", "path", "status", "latency_ms"] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
        assert!(
            ids.insert(line["request_id"].as_str().unwrap().to_owned()),
            "request ids are unique"
        );
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
    }
    let webhook: Vec<&Value> = lines.iter().filter(|l| l["path"] == "/webhook").collect();
    // Lines are written as guests finish, not strictly in request order.
    let mut summary: Vec<(Value, Value, Value, Value)> = webhook
        .iter()
        .map(|l| {
            (
                l["message_id"].clone(),
                l["dup"].clone(),
                l["result"].clone(),
                l["level"].clone(),
            )
        })
        .collect();
    summary.sort_by_key(|line| line.2.to_string());
    assert_eq!(
        summary,
        [
            (json!("log-1"), json!(false), json!("created"), json!("info")),
            (json!("log-1"), json!(true), json!("duplicate"), json!("info")),
            (Value::Null, json!(false), json!("invalid_signature"), json!("error")),
            (json!("log-2"), json!(false), json!("validation_error"), json!("warn")),
        ]
    );
    // Every line of stdout (start-up included) is JSON: `logs()` panics otherwise.
    assert!(server.logs().len() > lines.len());
    assert!(
        !server.raw_logs().contains(inlet_e2e::SECRET),
        "the secret is never logged"
    );
}

#[test]
fn request_id_is_echoed_or_generated() {
    let server = Server::start();
    let reply = server.get("/stats");
    let generated = reply.header("x-request-id").expect("x-request-id").to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let request = ureq::http::Request::get(server.url("/stats"))
        .header("X-Request-ID", "abc-123")
        .body(())
        .unwrap();
    let echoed = ureq::run(request).unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    let lines = server.request_logs(2);
    assert!(lines.iter().any(|l| l["request_id"] == "abc-123"));
}

#[test]
fn log_level_filters_request_lines() {
    let server = Server::start_with(&[("LOG_LEVEL", "error")]);
    server.get("/stats");
    server.webhook("{}", Some("bad"));
    let lines = server.request_logs(1);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["status"], 401);
}

/// Runs `inlet` to completion with `env` (plus a valid secret unless
/// overridden); returns exit code and stdout.
fn run_inlet(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(inlet_bin())
        .args(args)
        .env_clear()
        .env("GUEST_COMPONENT", guest_wasm())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run inlet");
    if let Some(input) = stdin {
        // The process may exit (e.g. on a usage error) before reading it.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_stops_start_up_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:///{}/app.db", dir.path().display());
    for (env, variable) in [
        (vec![("DATABASE_URL", db.as_str())], "WEBHOOK_SECRET"),
        (
            vec![("WEBHOOK_SECRET", ""), ("DATABASE_URL", db.as_str())],
            "WEBHOOK_SECRET",
        ),
        (
            vec![("WEBHOOK_SECRET", "s"), ("DATABASE_URL", "mysql://x")],
            "DATABASE_URL",
        ),
        (
            vec![
                ("WEBHOOK_SECRET", "s"),
                ("DATABASE_URL", "postgres://inlet:pw@db:port/x"),
            ],
            "DATABASE_URL",
        ),
        (
            vec![
                ("WEBHOOK_SECRET", "s"),
                ("DATABASE_URL", db.as_str()),
                ("PORT", "eighty"),
            ],
            "PORT",
        ),
        (
            vec![
                ("WEBHOOK_SECRET", "s"),
                ("DATABASE_URL", db.as_str()),
                ("LOG_LEVEL", "chatty"),
            ],
            "LOG_LEVEL",
        ),
    ] {
        let (code, stdout, _) = run_inlet(&["serve"], &env, None);
        assert_eq!(code, 2, "{env:?}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{stdout}");
        let line: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "error");
        assert_eq!(line["variable"], variable);
        assert!(line["msg"].as_str().unwrap().contains(variable), "{line}");
    }
}

#[test]
fn serve_help_lists_every_setting_and_the_readme_the_same() {
    let (code, help, _) = run_inlet(&["serve", "--help"], &[], None);
    assert_eq!(code, 0, "{help}");
    let in_help: BTreeSet<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .collect();
    assert!(
        in_help.contains("WEBHOOK_SECRET") && in_help.contains("MAX_CONNECTIONS"),
        "{help}"
    );
    assert!(help.contains("[default: 10000]"), "defaults are shown: {help}");
    // The README's configuration table: rows whose first cell is a variable.
    let readme = std::fs::read_to_string(inlet_e2e::workspace_root().join("README.md")).unwrap();
    let in_readme: BTreeSet<&str> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert_eq!(
        in_readme, in_help,
        "README's configuration table against `inlet serve --help`"
    );
}

#[test]
fn missing_guest_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:///{}/app.db", dir.path().display());
    let env = [
        ("WEBHOOK_SECRET", "s"),
        ("DATABASE_URL", db.as_str()),
        ("GUEST_COMPONENT", "/nonexistent/guest.wasm"),
    ];
    let (code, stdout, _) = run_inlet(&[], &env, None);
    assert_ne!(code, 0);
    assert!(stdout.contains("/nonexistent/guest.wasm"), "{stdout}");
}

#[test]
fn sign_prints_the_signature() {
    let body = r#"{"message_id":"m1"}"#;
    let (code, stdout, _) = run_inlet(&["sign"], &[("WEBHOOK_SECRET", inlet_e2e::SECRET)], Some(body));
    assert_eq!((code, stdout.trim()), (0, sign(body).as_str()));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let path = file.path().to_str().unwrap();
    let (code, stdout, _) = run_inlet(&["sign", "--secret", inlet_e2e::SECRET, path], &[], None);
    assert_eq!((code, stdout.trim()), (0, sign(body).as_str()));
    let (code, _, stderr) = run_inlet(&["sign"], &[], Some(body));
    assert_ne!(code, 0, "no secret: {stderr}");
}

#[test]
fn check_accepts_the_guest_and_rejects_others() {
    let guest = guest_wasm();
    let (code, stdout, _) = run_inlet(&["check", guest.to_str().unwrap()], &[], None);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("ok:"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("not.wasm");
    std::fs::write(&not_wasm, "hello").unwrap();
    let (code, stdout, _) = run_inlet(&["check", not_wasm.to_str().unwrap()], &[], None);
    assert_eq!(code, 1);
    assert!(stdout.contains("not a valid WebAssembly component"), "{stdout}");

    let empty_component = dir.path().join("empty.wasm");
    std::fs::write(&empty_component, b"\0asm\x0d\x00\x01\x00").unwrap();
    let (code, stdout, _) = run_inlet(&["check", empty_component.to_str().unwrap()], &[], None);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("does not export wasi:http/incoming-handler"),
        "{stdout}"
    );

    let old = inlet_e2e::old_wit_guest();
    let (code, stdout, _) = run_inlet(&["check", old.to_str().unwrap()], &[], None);
    assert_eq!(code, 1);
    assert!(stdout.contains(inlet_e2e::OLD_WIT_REFUSAL), "{stdout}");

    let (code, stdout, _) = run_inlet(&["check", "/nonexistent.wasm"], &[], None);
    assert_eq!(code, 1);
    assert!(stdout.contains("cannot read"), "{stdout}");
}

#[test]
fn probe_reports_readiness() {
    let server = Server::start();
    let port = server.port().to_string();
    let (code, stdout, _) = run_inlet(&["probe", "--port", &port], &[], None);
    assert_eq!(code, 0, "{stdout}");
    let (code, _, _) = run_inlet(&["probe"], &[("PORT", &port)], None);
    assert_eq!(code, 0, "PORT from the environment");
    let (code, _, stderr) = run_inlet(&["probe", "--port", &port, "--path", "/nope"], &[], None);
    assert_eq!(code, 1, "a 404 is not ready: {stderr}");
    drop(server);
    let (code, _, stderr) = run_inlet(&["probe", "--port", &port], &[], None);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

fn seed(database: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(inlet_bin())
        .args(["seed", "--database"])
        .arg(database)
        .args(args)
        .output()
        .expect("run inlet seed")
}

#[test]
fn seed_fills_a_database_the_server_then_serves() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("app.db");
    let first = seed(&database, &["--count", "500", "--senders", "7"]);
    assert!(first.status.success(), "{first:?}");
    let report: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(
        (report["created"].as_u64(), report["duplicates"].as_u64()),
        (Some(500), Some(0))
    );
    let again: Value = serde_json::from_slice(&seed(&database, &["--count", "500"]).stdout).unwrap();
    assert_eq!(
        (again["created"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(500))
    );

    let server = Server::start_in(dir, &[]);
    let stats = server.get("/stats").json();
    assert_eq!(stats["total_messages"], 500);
    assert_eq!(stats["senders_count"], 7);
    assert_eq!(stats["first_message_ts"], "2025-01-01T00:00:00Z");
    assert_eq!(stats["last_message_ts"], "2025-01-01T04:09:30Z");
    assert_eq!(inlet_e2e::per_sender_sum(&stats), 500);
    assert_eq!(server.get("/messages?q=%23499").json()["total"], 1);
}

#[test]
fn seed_refuses_a_plan_without_senders() {
    let dir = tempfile::tempdir().unwrap();
    let out = seed(&dir.path().join("app.db"), &["--count", "5", "--senders", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--senders must be at least 1"));
}

#[test]
fn seed_and_copy_refuse_databases_of_the_wrong_kind() {
    let refusal = |args: &[&str]| {
        let out = Command::new(inlet_bin()).args(args).output().expect("run inlet");
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stdout.is_empty(), "{args:?} printed a report");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let (sqlite, postgres) = ("sqlite:///./never-made.db", "postgres://inlet@127.0.0.1:1/inlet");
    for (args, reason) in [
        (vec!["seed", "--database", postgres], "seed writes SQLite files only"),
        (
            vec!["seed", "--database", "sqlite://relative.db"],
            "--database must start with sqlite:///",
        ),
        (
            vec!["copy", "--from", postgres, "--to", postgres],
            "--from must be a sqlite:/// URL",
        ),
        (
            vec!["copy", "--from", sqlite, "--to", sqlite],
            "--to must be a postgres:// URL",
        ),
        (
            vec!["copy", "--from", sqlite, "--to", "postgres://inlet@db:port/inlet"],
            "--to is not a valid PostgreSQL URL",
        ),
    ] {
        let stderr = refusal(&args);
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
    assert!(!std::path::Path::new("never-made.db").exists());
}
