//! Durable message storage on PostgreSQL, for several stateless hosts on one
//! database (`DATABASE_URL=postgres://…`).
//!
//! The same contract as the SQLite store: exactly one `created` per id, also
//! across hosts; a reply only after the commit returned; the same order,
//! filters, `q` folding and cursors. Connections come from two pools, one
//! for the group commits (`writer`) and one for reads, the count fold and
//! the readiness probe. Nothing connects at start: the schema is applied by
//! the first operation that reaches the database (`migrate`), so a host may
//! start before its database, answering 503 until it is there.

mod codec;
mod compact;
pub mod copy;
mod errors;
mod queries;
mod rows;
mod schema;
mod writer;

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use super::{MessageStore, StoreError, check_insert_batch, check_page_request, check_top_senders};
use crate::bindings::inlet::service::storage::{InsertOutcome, Message, MessageStats, Page, PageRequest};
use crate::config::PgUrl;

/// Connections for reads, the fold and the probe.
const READ_CONNECTIONS: usize = 8;

/// How long a request waits for a free connection, or for a new one to be
/// made, before it is answered 503.
const CONNECTION_WAIT: Duration = Duration::from_secs(2);

/// A connection lost without a word (a cut network, a dead machine) is
/// given up after this long, instead of the kernel's many minutes.
const DEAD_PEER: Duration = Duration::from_secs(10);

/// How long the readiness probe may take before it says "not ready".
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The PostgreSQL-backed store.
pub struct PgStore {
    writer: writer::Writer,
    writes: Pool,
    reads: Pool,
    migrated: OnceCell<()>,
    host: String,
}

impl PgStore {
    /// Sets up the pools and background tasks for the database at `url`;
    /// connects only when first used. Must be called inside a tokio runtime.
    pub fn open(url: &PgUrl) -> anyhow::Result<Self> {
        let config = connection_config(url);
        let writes = pool(&config, writer::COMMITTERS)?;
        let reads = pool(&config, READ_CONNECTIONS)?;
        tokio::spawn(compact::run(reads.clone()));
        Ok(Self {
            writer: writer::Writer::start(writes.clone()),
            writes,
            reads,
            migrated: OnceCell::new(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map_or_else(|_| "unknown".into(), |name| name.trim().to_owned()),
        })
    }

    /// Applies the schema once per store (under the database's advisory
    /// lock, so hosts starting together apply it once). Until it has
    /// succeeded, every operation tries again first and is `unavailable`
    /// while it fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| async {
                let mut client = self.writes.get().await.map_err(|e| errors::classify_pool(&e))?;
                schema::migrate(&mut client)
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("database schema not applied: {e:#}")))
            })
            .await
            .copied()
    }

    async fn read_connection(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.migrate().await?;
        self.reads.get().await.map_err(|e| errors::classify_pool(&e))
    }

    /// The schema is current, and the server takes a write (a primary, not
    /// a replica in recovery).
    async fn probe(&self) -> Result<(), StoreError> {
        let client = self.read_connection().await?;
        let version = schema::version(&**client).await.map_err(|e| errors::classify(&e))?;
        if version != Some(schema::VERSION) {
            return Err(StoreError::Unavailable(format!(
                "database schema is version {version:?}, not {}",
                schema::VERSION
            )));
        }
        client
            .execute(
                "INSERT INTO health_probe (host, checked_at) VALUES ($1, now())
                 ON CONFLICT (host) DO UPDATE SET checked_at = excluded.checked_at",
                &[&self.host],
            )
            .await
            .map_err(|e| errors::classify(&e))?;
        Ok(())
    }
}

/// The URL's settings, with Inlet's defaults where it sets none: a
/// connect timeout, a dead-peer timeout and keepalives, the application name.
fn connection_config(url: &PgUrl) -> tokio_postgres::Config {
    let mut config = (*url.0).clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECTION_WAIT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(DEAD_PEER);
    }
    config.keepalives_idle(DEAD_PEER / 2);
    if config.get_application_name().is_none() {
        config.application_name("inlet");
    }
    config
}

fn pool(config: &tokio_postgres::Config, size: usize) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(CONNECTION_WAIT))
        .create_timeout(Some(CONNECTION_WAIT))
        .runtime(Runtime::Tokio1)
        .build()?)
}

#[async_trait]
impl MessageStore for PgStore {
    async fn insert(&self, message: Message) -> Result<InsertOutcome, StoreError> {
        self.migrate().await?;
        self.writer.insert(message).await
    }

    async fn insert_batch(&self, messages: Vec<Message>) -> Result<Vec<InsertOutcome>, StoreError> {
        check_insert_batch(&messages)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.migrate().await?;
        self.writer.insert_batch(messages).await
    }

    async fn list(&self, request: PageRequest) -> Result<Page, StoreError> {
        check_page_request(&request)?;
        let mut client = self.read_connection().await?;
        queries::list(&mut client, &request)
            .await
            .map_err(|e| errors::classify(&e))
    }

    async fn stats(&self, top_senders: u32) -> Result<MessageStats, StoreError> {
        check_top_senders(top_senders)?;
        let mut client = self.read_connection().await?;
        queries::stats(&mut client, top_senders)
            .await
            .map_err(|e| errors::classify(&e))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        tokio::time::timeout(PING_TIMEOUT, self.probe())
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("database did not answer in time".into())))
    }
}
