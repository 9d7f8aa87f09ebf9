//! `inlet serve`: configuration, storage, the guest, then the HTTP server
//! until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::runtime::{Guest, GuestSlot, MAX_INSTANCES, Runtime, Services};
use crate::server::{self, App};
use crate::storage::SqliteStore;
use crate::telemetry::metrics::Metrics;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = SqliteStore::open(&config.database)?;
    tracing::info!(database = %config.database.display(), "storage ready");
    let runtime = Runtime::new()?;
    let guest = Guest::load(&runtime, &config.guest)?;
    tracing::info!(path = %guest.path.display(), sha256 = %guest.sha256, "guest loaded");
    let metrics = Arc::new(Metrics::new());
    metrics.record_guest_loaded(&guest.sha256);
    let app = Arc::new(App {
        guests: GuestSlot::new(guest),
        services: Arc::new(Services {
            store: Arc::new(store),
            metrics,
            secret: config.secret.clone(),
        }),
        instances: Arc::new(Semaphore::new(MAX_INSTANCES as usize)),
        max_body_bytes: config.max_body_bytes,
    });
    let address = SocketAddr::from((config.bind_address, config.port));
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    tracing::info!(%address, "listening");
    server::serve(listener, app, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (docker stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutdown requested");
}
