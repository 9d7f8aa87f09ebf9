//! Start-up and hot-swap timings, repeated and reported as medians.

use std::time::{Duration, Instant};

use inlet_e2e::Server;
use inlet_e2e::swap::{replace_by_rename, sha256, variant, wait_for_sha};

use crate::report::Results;

/// Process start to `/health/ready` answering 200 on an empty database,
/// compiling the guest each time (cache off) and from a warm compile cache.
pub(crate) fn startup(repeats: usize, results: &mut Results) {
    let uncached: Vec<Duration> = (0..repeats)
        .map(|_| start_to_ready(&[("GUEST_CACHE_DIR", "off")]))
        .collect();
    results.timing("start to ready, guest compiled", &uncached);
    let cache = tempfile::tempdir().expect("temp dir");
    let cache_dir = cache.path().to_str().expect("UTF-8 path");
    start_to_ready(&[("GUEST_CACHE_DIR", cache_dir)]);
    let cached: Vec<Duration> = (0..repeats)
        .map(|_| start_to_ready(&[("GUEST_CACHE_DIR", cache_dir)]))
        .collect();
    results.timing("start to ready, compile cache warm", &cached);
}

fn start_to_ready(env: &[(&str, &str)]) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let mut server = Server::launch_in(dir, env);
    server.wait_ready();
    started.elapsed()
}

/// File replaced (by rename) to the new guest serving `/health/ready`:
/// new components (compiled on the swap) and a return to one already in
/// the compile cache.
pub(crate) fn hot_swap(repeats: usize, results: &mut Results) {
    let dir = tempfile::tempdir().expect("temp dir");
    let guest = dir.path().join("guest.wasm");
    let original = variant("bench-original");
    std::fs::write(&guest, &original).expect("write guest");
    let server = Server::start_with(&[("GUEST_COMPONENT", guest.to_str().expect("UTF-8 path"))]);
    let mut compiled = Vec::new();
    let mut cached = Vec::new();
    for run in 0..repeats {
        compiled.push(swap_to(&server, &guest, &variant(&format!("bench-{run}"))));
        cached.push(swap_to(&server, &guest, &original));
    }
    results.timing("hot swap, new guest compiled", &compiled);
    results.timing("hot swap, guest in compile cache", &cached);
}

fn swap_to(server: &Server, guest: &std::path::Path, bytes: &[u8]) -> Duration {
    let sha = sha256(bytes);
    replace_by_rename(guest, bytes);
    wait_for_sha(server, &sha)
}
