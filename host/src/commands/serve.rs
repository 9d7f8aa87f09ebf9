//! `inlet serve`: configuration, storage, the guest, then the HTTP server
//! until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api_keys::ApiKeys;
use crate::config::{Config, Database};
use crate::docs::Docs;
use crate::feed_watch::FeedWatch;
use crate::forwarding::{ForwardSettings, Forwarder, Forwarding};
use crate::retention;
use crate::runtime::{CompileCache, Guest, GuestSlot, Reloader, Runtime, Services};
use crate::secrets::Secrets;
use crate::server::{self, App};
use crate::storage::{ForwardStore, MessageStore, PgStore, SqliteStore};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::request_log::latency_ms;

/// Serves until SIGTERM or Ctrl-C, then drains and closes storage (SQLite
/// checkpoints its WAL).
/// Fails when storage, the guest or the listening socket cannot be set up.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let secrets = Arc::new(Secrets::load(config.secrets.clone())?);
    tokio::spawn(secrets.clone().watch());
    let api_keys = Arc::new(ApiKeys::load(config.api_keys_file.as_deref())?);
    tokio::spawn(api_keys.clone().watch());
    let (store, forward_store) = open_store(&config.database, config.forwarding.as_ref()).await?;
    let runtime = Runtime::new(config.guest_limits)?;
    tracing::info!(memory_reset = runtime.memory_reset.as_str(), "engine ready");
    let cache = CompileCache::open(config.guest_cache.clone());
    let guest = Guest::load(&runtime, &config.guest, &cache)?;
    tracing::info!(
        path = %guest.path.display(),
        sha256 = %guest.sha256,
        compilation = guest.compilation.as_str(),
        load_ms = latency_ms(started),
        "guest loaded"
    );
    let metrics = Arc::new(Metrics::new());
    metrics.record_guest_loaded(&guest.sha256);
    let feed = FeedWatch::start(store.clone(), metrics.clone(), config.feed_waiters);
    let forwarder = match (config.forwarding.clone(), forward_store) {
        (Some(settings), Some(forward_store)) => {
            tracing::info!(
                destination = %settings.destination,
                concurrency = settings.concurrency,
                max_attempts = settings.max_attempts,
                "forwarding"
            );
            Some(Forwarder::start(settings, forward_store, metrics.clone()).await?)
        }
        (Some(_), None) => anyhow::bail!("this database cannot keep forwarding's records"),
        (None, _) => None,
    };
    let services = Arc::new(Services {
        store: store.clone(),
        metrics,
        secrets: secrets.clone(),
        tolerance_seconds: config.tolerance_seconds,
        whatsapp_verify_token: config.whatsapp_verify_token.clone(),
        api_keys,
        feed,
        forwarding: forwarder.clone().map(|forwarder| forwarder as Arc<dyn Forwarding>),
    });
    let retention = config.retention.map(|retention| {
        // On PostgreSQL another host may forward (its position is shared):
        // every host keeps what is owed.
        let keep_owed = config.forwarding.is_some() || matches!(config.database, Database::Postgres(_));
        tokio::spawn(retention::run(
            store.clone(),
            retention,
            keep_owed,
            services.metrics.clone(),
        ))
    });
    let guests = Arc::new(GuestSlot::new(guest));
    let reloader = Reloader::new(runtime, cache, config.guest.clone(), guests.clone(), services.clone());
    tokio::spawn(Arc::new(reloader).watch());
    let feed = services.feed.clone();
    let app = Arc::new(App::new(guests, services, config.http_limits, Docs::new()?));
    let address = SocketAddr::from((config.bind_address, config.port));
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    // The bound address: with `PORT=0` the kernel picks the port.
    let address = listener.local_addr().unwrap_or(address);
    tracing::info!(%address, startup_ms = latency_ms(started), "listening");
    // Long-polls answer at once when shutdown begins, rather than hold it up.
    let stopping = async move {
        shutdown_signal().await;
        feed.close();
    };
    server::serve(listener, app, stopping).await;
    // Its steps would fail against a closing store.
    if let Some(retention) = retention {
        retention.abort();
    }
    if let Some(forwarder) = forwarder {
        forwarder.close();
    }
    match store.close().await {
        Ok(()) => tracing::info!("storage closed"),
        Err(error) => tracing::error!(error = ?error, "storage close failed"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// The store `DATABASE_URL` names, and the same store as forwarding's when
/// `forwarding` is set, its position set before the store takes a message.
/// A PostgreSQL database that is not reachable yet does not stop start-up:
/// the host serves, answering 503 and not ready, until it is.
async fn open_store(
    database: &Database,
    forwarding: Option<&ForwardSettings>,
) -> anyhow::Result<(Arc<dyn MessageStore>, Option<Arc<dyn ForwardStore>>)> {
    let database_name = database.describe();
    match database {
        Database::Sqlite(path) => {
            let store = Arc::new(SqliteStore::open(path)?);
            tracing::info!(database = %database_name, "storage ready");
            if forwarding.is_none() {
                return Ok((store, None));
            }
            store
                .forward_position()
                .await
                .map_err(|error| anyhow::anyhow!("cannot set the forwarding position: {error:?}"))?;
            Ok((store.clone(), Some(store)))
        }
        Database::Postgres(url) => {
            let store = Arc::new(match forwarding {
                Some(_) => PgStore::open_forwarding(url)?,
                None => PgStore::open(url)?,
            });
            match store.schema_ready().await {
                Ok(()) => tracing::info!(database = %database_name, "storage ready"),
                Err(error) => tracing::warn!(
                    database = %database_name,
                    error = ?error,
                    "storage not reachable yet; answering 503 until it is"
                ),
            }
            let forward_store = forwarding.map(|_| store.clone() as Arc<dyn ForwardStore>);
            Ok((store, forward_store))
        }
    }
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
