//! Nothing acknowledged is ever lost: crashes, restarts, clean shutdowns.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use inlet_e2e::{Server, message, misbehaving_guest, sign};

/// Sends unique signed messages from 4 threads until the server stops
/// answering (or 2,000 each); returns the ids that got a 200.
fn ingest_until_gone(server: &Server, round: usize) -> Vec<String> {
    let acknowledged = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let acknowledged = &acknowledged;
            scope.spawn(move || {
                for i in 0..2_000 {
                    let id = format!("r{round}-w{worker}-{i}");
                    let body = message(&id, "+1", "2025-01-15T10:00:00Z", Some("durable"));
                    let request = ureq::post(&server.url("/webhook"))
                        .header("X-Signature", &sign(&body))
                        .content_type("application/json");
                    match request.send(&body) {
                        Ok(reply) if reply.status() == 200 => acknowledged.lock().unwrap().push(id),
                        Ok(reply) => panic!("{id}: unexpected {}", reply.status()),
                        // The server was killed: this request was never acknowledged.
                        Err(_) => break,
                    }
                }
            });
        }
    });
    acknowledged.into_inner().unwrap()
}

fn stored_ids(server: &Server) -> Vec<String> {
    let conn = rusqlite::Connection::open(server.database()).unwrap();
    let mut statement = conn.prepare("SELECT message_id FROM messages").unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_message() {
    let mut dir = tempfile::tempdir().unwrap();
    let mut acknowledged = Vec::new();
    for (round, run_for_ms) in [350u64, 600, 250, 800, 450].into_iter().enumerate() {
        let server = Server::start_in(dir, &[]);
        std::thread::scope(|scope| {
            let load = scope.spawn(|| ingest_until_gone(&server, round));
            std::thread::sleep(Duration::from_millis(run_for_ms));
            server.signal("KILL");
            acknowledged.extend(load.join().unwrap());
        });
        dir = server.kill();
    }
    let server = Server::start_in(dir, &[]);
    let stored = stored_ids(&server);
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "each message stored once");
    let missing: Vec<&String> = acknowledged.iter().filter(|id| !unique.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(acknowledged.len() > 200, "the load ran: {}", acknowledged.len());
    let conn = rusqlite::Connection::open(server.database()).unwrap();
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    eprintln!(
        "crash test: 5 SIGKILLs under load; {} acknowledged, {} stored, 0 lost, integrity ok",
        acknowledged.len(),
        stored.len()
    );
}

#[test]
fn sigterm_drains_checkpoints_and_exits_zero() {
    let mut server = Server::start();
    let acknowledged = std::thread::scope(|scope| {
        let load = scope.spawn(|| ingest_until_gone(&server, 0));
        std::thread::sleep(Duration::from_millis(400));
        server.signal("TERM");
        load.join().unwrap()
    });
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0), "clean exit");
    let stored: HashSet<String> = stored_ids(&server).into_iter().collect();
    assert!(
        acknowledged.iter().all(|id| stored.contains(id)),
        "every acknowledged message stored"
    );
    let logs = server.logs();
    for msg in ["shutdown requested", "storage closed", "stopped"] {
        assert!(logs.iter().any(|l| l["msg"] == msg), "no {msg:?} line");
    }
    let wal = server.database().with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0,
        "WAL checkpointed into the database"
    );
}

#[test]
fn sigterm_lets_a_running_request_finish() {
    let guest = misbehaving_guest();
    let mut server = Server::start_with(&[
        ("GUEST_COMPONENT", guest.to_str().unwrap()),
        ("REQUEST_TIMEOUT_MS", "1500"),
    ]);
    let status = std::thread::scope(|scope| {
        let slow = scope.spawn(|| server.get("/loop").status);
        std::thread::sleep(Duration::from_millis(300));
        server.signal("TERM");
        slow.join().unwrap()
    });
    assert_eq!(status, 504, "the request in flight got its answer");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
}

/// How many times SQLite has started the WAL over from its beginning (the
/// checkpoint sequence number in the WAL's header). It does so only when
/// every frame has been folded into the database file.
fn wal_restarts(server: &Server) -> u32 {
    let mut header = [0u8; 16];
    let mut wal = std::fs::File::open(server.database().with_extension("db-wal")).expect("the WAL exists");
    std::io::Read::read_exact(&mut wal, &mut header).expect("a WAL header");
    u32::from_be_bytes([header[12], header[13], header[14], header[15]])
}

/// Commits append to the WAL; the writer folds them into the database file
/// while the server runs, so the WAL is started over and reused instead of
/// growing with every message ever stored. (Its file size is no measure: it
/// keeps its high-water mark, which depends on how fast commits came.)
#[test]
fn the_wal_is_folded_back_while_serving() {
    let server = Server::start();
    let text = "x".repeat(2_000);
    let mut after_first_wave = 0;
    for wave in 0..4 {
        for i in 0..100 {
            let id = format!("fold-{wave}-{i}");
            server.deliver(&message(&id, "+1", "2025-01-15T10:00:00Z", Some(&text)));
        }
        // Idle: the writer folds everything, so the next wave starts the WAL over.
        std::thread::sleep(Duration::from_millis(1_200));
        if wave == 0 {
            after_first_wave = wal_restarts(&server);
        }
    }
    let restarts = wal_restarts(&server) - after_first_wave;
    assert!(
        restarts >= 3,
        "the WAL was started over {restarts} times in three waves"
    );
}

/// Under inserts that never pause the WAL is still folded back and reused:
/// it stays far smaller than the database it feeds (without folding between
/// commits it held every frame ever written, more than the database).
#[test]
fn the_wal_stays_small_under_sustained_ingest() {
    let server = Server::start();
    let text = "y".repeat(2_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let (server, text) = (&server, &text);
            scope.spawn(move || {
                for i in 0..20_000 {
                    if std::time::Instant::now() >= deadline {
                        break;
                    }
                    let id = format!("sustained-{worker}-{i}");
                    server.deliver(&message(&id, "+1", "2025-01-15T10:00:00Z", Some(text)));
                }
            });
        }
    });
    let size = |extension| {
        std::fs::metadata(server.database().with_extension(extension))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let (wal, database) = (size("db-wal"), size("db"));
    assert!(
        wal < database / 2,
        "WAL {wal} bytes beside a database of {database} bytes after {} rows",
        server.stored_rows()
    );
}
