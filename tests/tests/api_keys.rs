//! `API_KEYS_FILE`: who may read. Every route class with and without keys,
//! both key forms, rotation both ways, a broken file while serving and at
//! start-up, the `api_key` log field, `inlet key new`, and that no key
//! material is ever printed.

use std::process::Command;
use std::time::{Duration, Instant};

use inlet_e2e::{Reply, Server, inlet_bin, message, sign};
use serde_json::json;

const READ_KEY: &str = "read-key-0123456789-abcdefghijklmnopqrstuvwxyz";
const ADMIN_KEY: &str = "admin.key~0123456789+ABCDEFGHIJKLMNOPQRSTUVWXYZ/=";
/// The read routes there are so far.
const READ_ROUTES: [&str; 2] = ["/messages", "/stats"];
/// How long a change to the file may take to apply (the contract's bound).
const ROTATION_BOUND: Duration = Duration::from_secs(5);

fn sha256_hex(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// The file: the read key as itself, the admin key by its digest.
fn key_file() -> String {
    format!(
        "# who may read\nci read {READ_KEY}\n\nops admin sha256:{}\n",
        sha256_hex(ADMIN_KEY)
    )
}

/// A server whose `API_KEYS_FILE` holds `contents` (written first).
fn server_with_keys(contents: &str) -> Server {
    Server::start_with_keys(contents, &[])
}

fn key_path(server: &Server) -> std::path::PathBuf {
    server.dir().join("keys")
}

fn with_key(server: &Server, path: &str, key: &str) -> Reply {
    server.get_with(path, &[("Authorization", &format!("Bearer {key}"))])
}

fn assert_not_authenticated(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.body);
    assert_eq!(reply.json(), json!({"detail": "not authenticated"}), "{what}");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{what}");
}

#[test]
fn reads_need_a_key_and_the_open_routes_stay_open() {
    let server = server_with_keys(&key_file());
    let body = message("k1", "+15550001", "2025-01-15T10:00:00Z", Some("hi"));
    assert_eq!(
        server.webhook(&body, Some(&sign(&body))).status,
        200,
        "webhooks need no key"
    );
    for route in READ_ROUTES {
        assert_not_authenticated(&server.get(route), route);
        for refused in [
            format!("Basic {READ_KEY}"),
            "Bearer".to_owned(),
            format!("Bearer {READ_KEY} {READ_KEY}"),
            format!("Bearer {READ_KEY}x"),
            format!("Bearer sha256:{}", sha256_hex(ADMIN_KEY)),
        ] {
            assert_not_authenticated(&server.get_with(route, &[("Authorization", &refused)]), &refused);
        }
        assert_eq!(
            with_key(&server, route, READ_KEY).status,
            200,
            "{route} with the read key"
        );
        assert_eq!(
            with_key(&server, route, ADMIN_KEY).status,
            200,
            "{route} with the admin key"
        );
        let lowercase = server.get_with(route, &[("authorization", &format!("bearer  {READ_KEY}"))]);
        assert_eq!(lowercase.status, 200, "the scheme in any case, then spaces");
    }
    assert_eq!(with_key(&server, "/messages", READ_KEY).json()["total"], 1);
    for open in ["/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs"] {
        assert_eq!(server.get(open).status, 200, "{open} is open");
    }

    let lines = server.request_logs(1 + 2 * 9 + 1 + 4);
    let mut admitted: Vec<&str> = lines
        .iter()
        .filter(|line| line["path"] == "/messages" && line["status"] == 200)
        .map(|line| line["api_key"].as_str().unwrap_or_default())
        .collect();
    admitted.sort_unstable();
    assert_eq!(admitted, ["ci", "ci", "ci", "ops"]);
    let refusals = lines.iter().filter(|line| line["status"] == 401).count();
    assert_eq!(refusals, 2 * 6);
    assert!(
        lines
            .iter()
            .filter(|line| line["status"] == 401)
            .all(|line| line.get("api_key").is_none())
    );
    let printed = server.raw_logs() + &server.get("/metrics").body;
    for secret in [READ_KEY, ADMIN_KEY, &sha256_hex(ADMIN_KEY), &sha256_hex(READ_KEY)] {
        assert!(!printed.contains(secret), "key material printed: {secret}");
    }
}

#[test]
fn the_document_declares_the_bearer_scheme_as_the_server_applies_it() {
    let keyed = server_with_keys(&key_file());
    let open = Server::start();
    for (server, security, refusal) in [
        (&keyed, json!([{"bearer": []}]), true),
        // Without keys a read takes a key but needs none.
        (&open, json!([{"bearer": []}, {}]), false),
    ] {
        let document = server.get("/openapi.json").json();
        assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        for route in READ_ROUTES {
            let operation = &document["paths"][route]["get"];
            assert_eq!(operation["security"], security, "{route}");
            assert_eq!(operation["responses"]["401"].is_object(), refusal, "{route}");
        }
        let webhook = &document["paths"]["/webhook"]["post"];
        assert!(webhook["security"].is_null() && webhook["responses"]["401"].is_object());
    }
}

#[test]
fn without_a_key_file_reads_are_open_and_one_warning_says_so() {
    let server = Server::start();
    for route in READ_ROUTES {
        assert_eq!(server.get(route).status, 200);
        assert_eq!(
            with_key(&server, route, "not-a-configured-key-at-all-0123456789").status,
            200
        );
    }
    let warnings: Vec<_> = server
        .logs()
        .into_iter()
        .filter(|line| line["level"] == "warn" && line["msg"].as_str().unwrap_or_default().contains("API_KEYS_FILE"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(server.logs().iter().all(|line| line.get("api_key").is_none()));
}

/// Waits (bounded) until `key` gets `status` on `/stats`; how long it took.
fn until(server: &Server, key: &str, status: u16) -> Duration {
    let started = Instant::now();
    while with_key(server, "/stats", key).status != status {
        assert!(started.elapsed() < ROTATION_BOUND, "{key:.8}… never got {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

#[test]
fn keys_rotate_both_ways_and_a_broken_file_keeps_the_last_good_set() {
    let server = server_with_keys(&format!("ci read {READ_KEY}\n"));
    let file = key_path(&server);
    assert_eq!(with_key(&server, "/stats", ADMIN_KEY).status, 401);
    std::fs::write(&file, key_file()).unwrap();
    let added = until(&server, ADMIN_KEY, 200);
    std::fs::write(&file, format!("ops admin sha256:{}\n", sha256_hex(ADMIN_KEY))).unwrap();
    let removed = until(&server, READ_KEY, 401);
    eprintln!("a key added works after {added:?}; a key removed is refused after {removed:?}");

    // A broken file whose good line would let the read key back in, an
    // emptied one, then none: each keeps the last good set.
    for (change, reason) in [
        (Some(format!("ci read {READ_KEY}\nbroken line\n")), "line 2"),
        (Some("# all keys revoked by mistake\n".to_owned()), "holds no key line"),
        (None, "cannot be read"),
    ] {
        match change {
            Some(contents) => std::fs::write(&file, contents).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }
        until_refused_reload(&server, reason);
        assert_eq!(
            with_key(&server, "/stats", ADMIN_KEY).status,
            200,
            "the last good set stays"
        );
        assert_eq!(
            with_key(&server, "/stats", READ_KEY).status,
            401,
            "nothing of {reason} applied"
        );
    }
    assert!(!server.raw_logs().contains(READ_KEY), "a key was logged");
}

/// Waits (bounded) for the `error` line of a reload refused for `reason`.
fn until_refused_reload(server: &Server, reason: &str) {
    server.wait_for_line(|line| {
        line["msg"] == "API keys not reloaded; the last good set stays"
            && line["error"].as_str().is_some_and(|error| error.contains(reason))
    });
}

#[test]
fn a_malformed_empty_or_missing_key_file_stops_start_up_naming_the_line() {
    for (contents, named) in [
        (
            Some(format!("ci read {READ_KEY}\n# fine\nops writer {ADMIN_KEY}\n")),
            "line 3",
        ),
        (Some(format!("ci read {READ_KEY}\nci admin {ADMIN_KEY}\n")), "line 2"),
        (Some("ci read too-short\n".to_owned()), "line 1"),
        (Some("# nobody yet\n".to_owned()), "holds no key line"),
        (None, "cannot be read"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        if let Some(contents) = &contents {
            std::fs::write(&file, contents).unwrap();
        }
        let file = file.to_str().unwrap().to_owned();
        let mut server = Server::launch_in(dir, &[("API_KEYS_FILE", &file)]);
        assert_eq!(server.wait_exit(Duration::from_secs(20)), Some(2), "{named}");
        let logs = server.logs();
        let error = logs
            .iter()
            .find(|line| line["level"] == "error")
            .expect("an error line");
        assert_eq!(error["variable"], "API_KEYS_FILE");
        let text = error["msg"].as_str().unwrap();
        assert!(text.contains(named) && text.contains(&file), "{text}");
        let raw = server.raw_logs();
        assert!(
            !raw.contains(READ_KEY) && !raw.contains(ADMIN_KEY),
            "a key was printed: {raw}"
        );
    }
}

#[test]
fn inlet_key_new_makes_a_key_and_a_line_that_admits_it() {
    let made = Command::new(inlet_bin())
        .args(["key", "new", "deploy-bot", "--scope", "read"])
        .output()
        .unwrap();
    assert!(made.status.success());
    let stdout = String::from_utf8(made.stdout).unwrap();
    let [key, line] = stdout.lines().collect::<Vec<_>>()[..] else {
        panic!("two lines: {stdout}");
    };
    assert_eq!(line, format!("deploy-bot read sha256:{}", sha256_hex(key)));
    let server = server_with_keys(&format!("{line}\n"));
    assert_eq!(with_key(&server, "/messages", key).status, 200);
    let lines = server.request_logs(1);
    assert_eq!(lines.iter().filter(|l| l["api_key"] == "deploy-bot").count(), 1);

    let refused = Command::new(inlet_bin())
        .args(["key", "new", "no spaces", "--scope", "admin"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
}
