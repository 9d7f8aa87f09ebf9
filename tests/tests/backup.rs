//! `inlet backup`: a consistent copy of a SQLite database taken under load,
//! holding every message acknowledged before it began, that a server then
//! serves; and its refusals (an existing file, PostgreSQL).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use inlet_e2e::{Server, inlet_bin, message};

fn backup(database_url: &str, args: &[&str]) -> Output {
    Command::new(inlet_bin())
        .env_clear()
        .env("DATABASE_URL", database_url)
        .arg("backup")
        .args(args)
        .output()
        .expect("inlet backup runs")
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite:///{}", path.display())
}

fn count_and_check(copy: &Path) -> (i64, String) {
    let conn = rusqlite::Connection::open(copy).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    let count: i64 = conn
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    (count, check)
}

fn has_id(copy: &Path, id: &str) -> bool {
    let conn = rusqlite::Connection::open(copy).unwrap();
    conn.query_row("SELECT COUNT(*) FROM messages WHERE message_id = ?1", [id], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap()
        == 1
}

#[test]
fn a_backup_under_load_holds_every_acknowledged_message_and_serves() {
    let server = Server::start();
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("app.db");
    let acknowledged = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let before_backup = std::thread::scope(|scope| {
        for poster in 0..2 {
            let (server, acknowledged, stop) = (&server, &acknowledged, &stop);
            scope.spawn(move || {
                for n in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("load-{poster}-{n}");
                    server.deliver(&message(&id, "+15550001", "2025-01-15T10:00:00Z", Some("load")));
                    acknowledged.lock().unwrap().push(id);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        let before: Vec<String> = acknowledged.lock().unwrap().clone();
        let output = backup(&sqlite_url(&server.database()), &[copy.to_str().unwrap()]);
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(report["messages"].as_i64().unwrap() >= before.len() as i64, "{report}");
        before
    });
    assert!(before_backup.len() > 10, "the load ran: {}", before_backup.len());
    let (count, check) = count_and_check(&copy);
    assert_eq!(check, "ok");
    let missing: Vec<&String> = before_backup.iter().filter(|id| !has_id(&copy, id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup but not in it: {missing:?}"
    );
    let stored_after = server.stored_rows();
    assert!(
        count <= stored_after,
        "the copy holds {count}, the server {stored_after}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["app.db"], "no partial file is left");

    // Restore: a server started on the copy serves what it holds.
    let restored = Server::start_in(out, &[]);
    let listed = restored.get("/messages?limit=1");
    assert_eq!(listed.json()["total"], count);
    let one = restored.get(&format!("/messages/{}", before_backup[0]));
    assert_eq!(one.status, 200, "{}", one.body);
}

#[test]
fn an_existing_file_is_replaced_only_when_forced() {
    let server = Server::start();
    server.deliver(&message("b1", "+15550001", "2025-01-15T10:00:00Z", None));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    std::fs::write(&copy, "precious").unwrap();
    let url = sqlite_url(&server.database());
    let refused = backup(&url, &[copy.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("exists") && stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "precious");
    let forced = backup(&url, &[copy.to_str().unwrap(), "--force"]);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    assert_eq!(count_and_check(&copy), (1, "ok".to_owned()));
}

#[test]
fn postgres_and_missing_databases_are_refused_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let pg = backup("postgres://inlet@127.0.0.1:1/inlet", &[copy.to_str().unwrap()]);
    assert_eq!(pg.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&pg.stderr);
    assert!(
        stderr.contains("pg_dump") && stderr.contains("pg_basebackup"),
        "{stderr}"
    );
    let missing = dir.path().join("nothing-here.db");
    let absent = backup(&sqlite_url(&missing), &[copy.to_str().unwrap()]);
    assert_eq!(absent.status.code(), Some(1));
    assert!(!missing.exists(), "the source was not created");
    assert!(!copy.exists(), "no copy was written");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no partial file");
}
