//! The compiled-guest cache holds native code, so the host loads it only
//! from a directory private to its user and only entries it wrote itself;
//! every refusal costs a compile, never the service.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use inlet_e2e::swap::sha256;
use inlet_e2e::{Server, misbehaving_guest};
use serde_json::Value;

/// The `guest loaded` line of the server's latest start (restarts append
/// to the same log).
fn guest_loaded(server: &Server) -> Value {
    last_line(server, "guest loaded").expect("a guest loaded line")
}

/// The latest line saying `msg`, once the latest start's lines are all
/// written: they come before its `listening` line, through one writer
/// thread that may lag the socket.
fn last_line(server: &Server, msg: &str) -> Option<Value> {
    server.logged_port().expect("the latest start logged `listening`");
    server.logs().into_iter().rev().find(|l| l["msg"] == msg)
}

/// Why the latest start refused a cache entry (its warning's `reason`).
fn refused_entry(server: &Server) -> String {
    let warning = last_line(server, "compile cache entry not used; compiling").expect("a warning");
    assert_eq!(warning["level"], "warn");
    warning["reason"].as_str().expect("a reason").to_owned()
}

fn cache_dir(server: &Server) -> PathBuf {
    server.dir().join("guest-cache")
}

/// The cache's one compiled entry.
fn entry(dir: &Path) -> PathBuf {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.pop().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Restarts the server on the same directory and says how it got its guest,
/// after checking that it serves.
fn restart(server: Server) -> (Server, String) {
    let server = Server::start_in(server.kill(), &[]);
    assert_eq!(server.get("/health/ready").status, 200, "the guest serves");
    let compilation = guest_loaded(&server)["compilation"].as_str().unwrap().to_owned();
    (server, compilation)
}

#[test]
fn a_restart_loads_the_guest_from_a_private_cache() {
    let server = Server::start();
    assert_eq!(guest_loaded(&server)["compilation"], "compiled");
    let first_ms = guest_loaded(&server)["load_ms"].as_f64().unwrap();
    let dir = cache_dir(&server);
    assert_eq!(mode(&dir), 0o700, "the directory is created owner-only");
    assert_eq!(mode(&dir.join("key")), 0o600, "the key is owner-only");
    assert_eq!(mode(&entry(&dir)) & 0o022, 0, "no one else may write an entry");

    let (server, compilation) = restart(server);
    assert_eq!(compilation, "cached");
    let cached_ms = guest_loaded(&server)["load_ms"].as_f64().unwrap();
    eprintln!("guest load at start-up: compiled {first_ms} ms, cached {cached_ms} ms");
    assert!(last_line(&server, "compile cache off").is_none());
}

#[test]
fn a_truncated_entry_is_compiled_over() {
    let server = Server::start();
    let entry = entry(&cache_dir(&server));
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
    let (server, compilation) = restart(server);
    assert_eq!(compilation, "compiled");
    refused_entry(&server);
    let (_, compilation) = restart(server);
    assert_eq!(compilation, "cached", "the entry was written again");
}

#[test]
fn an_entry_from_another_host_is_not_loaded() {
    // Two hosts, two keys: the same guest compiled by one is planted, under
    // the very name the other looks for, in the other's cache.
    let theirs = Server::start();
    let planted = std::fs::read(entry(&cache_dir(&theirs))).unwrap();
    let ours = Server::start();
    let target = entry(&cache_dir(&ours));
    std::fs::write(&target, &planted).unwrap();
    let (ours, compilation) = restart(ours);
    assert_eq!(compilation, "compiled");
    let reason = refused_entry(&ours);
    assert!(reason.contains("not written by this host"), "{reason}");
}

#[test]
fn an_entry_under_another_guests_name_is_not_loaded() {
    // This host's own entry for the real guest, copied over its entry for
    // the fixture guest: the MAC binds an entry to its name.
    let server = Server::start();
    let real = std::fs::read(entry(&cache_dir(&server))).unwrap();
    let fixture = misbehaving_guest();
    let env = [("GUEST_COMPONENT", fixture.to_str().unwrap())];
    let server = Server::start_in(server.kill(), &env);
    let fixture_sha = sha256(&std::fs::read(&fixture).unwrap());
    let fixture_entry = std::fs::read_dir(cache_dir(&server))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&fixture_sha))
        .expect("the fixture's entry");
    std::fs::write(&fixture_entry, &real).unwrap();

    let server = Server::start_in(server.kill(), &env);
    assert_eq!(guest_loaded(&server)["compilation"], "compiled");
    assert_eq!(
        server.get("/fine").status,
        200,
        "the fixture serves, not the real guest"
    );
    let reason = refused_entry(&server);
    assert!(reason.contains("not written by this host"), "{reason}");
}

#[test]
fn a_group_writable_cache_is_switched_off() {
    let server = Server::start();
    let dir = cache_dir(&server);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
    let (server, compilation) = restart(server);
    assert_eq!(compilation, "compiled", "the entry there is not trusted");
    let off = last_line(&server, "compile cache off").expect("one warning");
    assert_eq!(off["level"], "warn");
    assert!(
        off["reason"].as_str().unwrap().contains("writable by group or others"),
        "{off}"
    );
}

#[test]
fn a_group_writable_entry_is_not_loaded() {
    let server = Server::start();
    let entry = entry(&cache_dir(&server));
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (server, compilation) = restart(server);
    assert_eq!(compilation, "compiled");
    let reason = refused_entry(&server);
    assert!(reason.contains("writable by group or others"), "{reason}");
}

#[test]
#[ignore = "needs root"]
fn a_cache_owned_by_another_user_is_switched_off() {
    let server = Server::start();
    let dir = cache_dir(&server);
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let (server, compilation) = restart(server);
    assert_eq!(compilation, "compiled");
    let off = last_line(&server, "compile cache off").expect("one warning");
    assert!(off["reason"].as_str().unwrap().contains("owned by uid 65534"), "{off}");
}

#[test]
fn an_unusable_cache_directory_only_costs_a_compile() {
    let server = Server::start_with(&[("GUEST_CACHE_DIR", "/proc/inlet-cannot-write-here")]);
    assert_eq!(server.get("/health/ready").status, 200);
    assert_eq!(guest_loaded(&server)["compilation"], "compiled");
    assert!(last_line(&server, "compile cache off").is_some());
}
