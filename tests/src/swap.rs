//! Replacing a running server's guest component and watching it go live.

use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{Server, guest_wasm};

/// The guest with a custom section appended: another valid component with
/// another digest.
pub fn variant(tag: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(guest_wasm()).unwrap();
    let name = b"inlet-variant";
    let payload = tag.as_bytes();
    let size = 1 + name.len() + payload.len();
    assert!(size < 128 && name.len() < 128, "single-byte LEB128 lengths");
    bytes.extend([0u8, size as u8, name.len() as u8]);
    bytes.extend(name);
    bytes.extend(payload);
    bytes
}

/// Lowercase hex SHA-256 of `bytes`, as the server reports a guest's digest.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Replaces `path` the way `cp new x && mv x path` does.
pub fn replace_by_rename(path: &Path, bytes: &[u8]) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, bytes).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

/// The digest of the guest the server says is live.
pub fn live_sha(server: &Server) -> String {
    server.get("/health/ready").json()["guest"]["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until the server reports `sha`; returns how long that took.
pub fn wait_for_sha(server: &Server, sha: &str) -> Duration {
    let started = Instant::now();
    while live_sha(server) != sha {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "guest {sha} never went live"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    started.elapsed()
}
