//! A closed-loop HTTP/1.1 load generator: every connection sends its next
//! request as soon as it has read the previous answer, until the time or
//! request budget runs out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// Builds request `n` of connection `connection`.
pub(crate) type RequestFactory = Arc<dyn Fn(usize, u64) -> Request<Full<Bytes>> + Send + Sync>;

/// How hard and how long to push.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub connections: usize,
    pub duration: Duration,
    /// Upper bound on requests across all connections.
    pub max_requests: u64,
}

/// What a run measured. Latencies are from sending the request to having
/// read the whole answer. Any answer other than 200 counts as an error.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoadResult {
    pub connections: usize,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// One connection's tally.
struct Tally {
    latencies_us: Histogram<u64>,
    errors: u64,
}

/// Pushes `load`, connection `i` to `targets[i % targets.len()]`.
pub(crate) async fn run(targets: &[SocketAddr], load: Load, factory: RequestFactory) -> anyhow::Result<LoadResult> {
    let budget = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + load.duration;
    let tasks: Vec<_> = (0..load.connections)
        .map(|connection| {
            let (factory, budget) = (factory.clone(), budget.clone());
            let address = targets[connection % targets.len()];
            tokio::spawn(drive(address, connection, deadline, load.max_requests, budget, factory))
        })
        .collect();
    let mut latencies_us = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for task in tasks {
        let tally = task.await??;
        latencies_us.add(&tally.latencies_us)?;
        errors += tally.errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    let ms = |quantile: f64| latencies_us.value_at_quantile(quantile) as f64 / 1000.0;
    Ok(LoadResult {
        connections: load.connections,
        requests: latencies_us.len(),
        errors,
        seconds,
        requests_per_second: latencies_us.len() as f64 / seconds,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: latencies_us.max() as f64 / 1000.0,
    })
}

async fn drive(
    address: SocketAddr,
    connection: usize,
    deadline: Instant,
    max_requests: u64,
    budget: Arc<AtomicU64>,
    factory: RequestFactory,
) -> anyhow::Result<Tally> {
    let mut tally = Tally {
        latencies_us: Histogram::new(3)?,
        errors: 0,
    };
    let mut sender = connect(address).await?;
    let mut n = 0;
    while Instant::now() < deadline && budget.fetch_add(1, Ordering::Relaxed) < max_requests {
        let request = factory(connection, n);
        n += 1;
        let sent = Instant::now();
        match exchange(&mut sender, request).await {
            Ok(status) => {
                tally.latencies_us.record(sent.elapsed().as_micros() as u64)?;
                if status != 200 {
                    tally.errors += 1;
                }
            }
            Err(_) => {
                tally.errors += 1;
                sender = connect(address).await?;
            }
        }
    }
    Ok(tally)
}

async fn connect(address: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn exchange(sender: &mut SendRequest<Full<Bytes>>, request: Request<Full<Bytes>>) -> anyhow::Result<u16> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}
