//! Guests that compute without yielding, beside everything else: the host's
//! own endpoints and real signed ingest and listings, while spinning
//! requests (the fixture's `/loop`) keep the guest workers busy.

use std::time::Duration;

use inlet_e2e::{Server, misbehaving_guest};

use crate::report::Results;
use crate::{address, drive, requests};

/// Spinning requests in flight at once: four per core here.
const SPINNERS: usize = 8;
/// Each spinner's deadline (`REQUEST_TIMEOUT_MS`).
const DEADLINE_MS: u64 = 2000;

/// Probes first, then ingest with listings, all beside `SPINNERS` spinning
/// guests that are replaced as each reaches its deadline.
pub(crate) fn run(seconds: u64, runtime: &tokio::runtime::Runtime, results: &mut Results) -> anyhow::Result<()> {
    let guest = misbehaving_guest();
    let deadline = DEADLINE_MS.to_string();
    let server = Server::start_with(&[
        ("GUEST_COMPONENT", guest.to_str().expect("UTF-8 path")),
        ("REQUEST_TIMEOUT_MS", &deadline),
    ]);
    let phase = Duration::from_secs(seconds);
    let target = address(&server);
    let spinning = drive(
        target,
        SPINNERS,
        phase * 2 + Duration::from_secs(1),
        requests::get("/loop"),
    );
    let beside = async {
        // Let every spinner reach the guest before measuring beside them.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let probes = tokio::join!(
            drive(target, 1, phase, requests::get("/health/live")),
            drive(target, 1, phase, requests::get("/metrics")),
        );
        let traffic = tokio::join!(
            drive(target, 8, phase, requests::webhooks("beside-spinners", None)),
            drive(target, 2, phase, requests::get("/messages?limit=10")),
        );
        (probes, traffic)
    };
    let (spinners, (probes, traffic)) = runtime.block_on(async { tokio::join!(spinning, beside) });
    let label = format!("beside {SPINNERS} spinning guests");
    results.load(&format!("GET /health/live, {label}"), probes.0?);
    results.load(&format!("GET /metrics, {label}"), probes.1?);
    results.load(&format!("ingest, unique ids, {label}"), traffic.0?);
    results.load(&format!("GET /messages, {label}"), traffic.1?);
    // Every spinner's answer is a 504, counted among its errors; its
    // latency is how long after its start it ended.
    results.load(
        &format!("spinning guests GET /loop, each ended at its {DEADLINE_MS} ms deadline"),
        spinners?,
    );
    Ok(())
}
