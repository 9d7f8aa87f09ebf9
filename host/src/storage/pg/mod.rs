//! Durable message storage on PostgreSQL, for several stateless hosts on one
//! database (`DATABASE_URL=postgres://…`).
//!
//! The same contract as the SQLite store: exactly one `created` per id, also
//! across hosts; a reply only after the commit returned; the same order,
//! filters, `q` folding and cursors. Connections come from three pools: the
//! group commits' (`writer`); reads, removals and the readiness probe; and
//! one for the count fold. Nothing waits for the database at start: a
//! background task applies the schema (`migration`), trying again until it
//! succeeds, so a host may start before its database and answer 503 until
//! it is there.

mod codec;
mod compact;
pub mod copy;
mod errors;
mod feed;
mod forward;
mod migration;
mod queries;
mod removals;
mod rows;
mod schema;
mod writer;

pub use compact::FOLD_LOCK;

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_postgres::NoTls;

use super::forward::{Attempted, Backlog, DueRetry, Lead};
use super::{
    Expired, Expiry, FeedPage, FeedPosition, ForwardStore, MessageStore, READ_TIME_LIMIT, StoreError, check_feed_limit,
    check_insert_batch, check_message, check_page_request, check_top_senders, is_storable_id,
};
use crate::bindings::inlet::service::storage::{
    InsertOutcome, Message, MessageStats, Page, PageRequest, Removal, StoredMessage,
};
use crate::config::PgUrl;

/// Connections for reads, removals (an erasure, a retention step) and the
/// readiness probe.
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
    reads: Pool,
    /// Who this store is when it holds forwarding's turn: the host's name
    /// (for operators) and an id of its own.
    holder: String,
    schema: migration::Applied,
    /// The migration and the fold, stopped with the store.
    background: Vec<AbortHandle>,
}

impl PgStore {
    /// Sets up the pools and starts the background tasks (the migration,
    /// then the count fold) for the database at `url`, without waiting for
    /// it. Must be called inside a tokio runtime.
    pub fn open(url: &PgUrl) -> anyhow::Result<Self> {
        Self::open_for(url, migration::Needs::Schema)
    }

    /// `open` for a host that forwards: it also sets the forwarding
    /// position, if no host has, before it takes a message.
    pub fn open_forwarding(url: &PgUrl) -> anyhow::Result<Self> {
        Self::open_for(url, migration::Needs::ForwardPosition)
    }

    fn open_for(url: &PgUrl, needs: migration::Needs) -> anyhow::Result<Self> {
        let config = connection_config(url);
        // Group commits and the migration: only through tokio-postgres's
        // `Transaction` (never a raw BEGIN), so that no connection goes back
        // to the pool inside a transaction block (writer::insert relies on it).
        let writes = pool(&config, writer::COMMITTERS)?;
        let reads = pool(&read_config(&config), READ_CONNECTIONS)?;
        // One connection of its own, without the reads' statement timeout:
        // a fold after a large copy or delete may take long.
        let upkeep = pool(&config, 1)?;
        let (schema, migrating) = migration::start(writes.clone(), needs);
        let folding = tokio::spawn(compact::run(upkeep, schema.clone()));
        Ok(Self {
            writer: writer::Writer::start(writes),
            reads,
            holder: holder_name(),
            schema,
            background: vec![migrating.abort_handle(), folding.abort_handle()],
        })
    }

    /// Waits for the first attempt to apply the schema: `Ok` once it is
    /// applied, `unavailable` with the reason until then.
    pub async fn schema_ready(&self) -> Result<(), StoreError> {
        self.schema.ready().await
    }

    async fn read_connection(&self) -> Result<Object, StoreError> {
        self.schema.ready().await?;
        self.reads.get().await.map_err(|e| errors::classify_pool(&e))
    }

    /// The schema is current, and the server is a primary that takes writes
    /// (not a replica in recovery, not read-only). Asks without writing: a
    /// write would wait on a synchronous standby. A probe that runs out of
    /// time cancels its query and takes its connection out of the pool.
    async fn probe(&self, deadline: Instant) -> Result<(), StoreError> {
        let too_late = || StoreError::Unavailable("database did not answer in time".into());
        let client = tokio::time::timeout_at(deadline, self.read_connection())
            .await
            .map_err(|_| too_late())??;
        let Ok(answer) = tokio::time::timeout_at(deadline, schema::writable_version(&**client)).await else {
            let cancel = client.cancel_token();
            drop(Object::take(client));
            tokio::spawn(async move { cancel.cancel_query(NoTls).await });
            return Err(too_late());
        };
        match answer.map_err(|e| errors::classify(&e))? {
            schema::Writable::Yes(version) if version == Some(schema::VERSION) => Ok(()),
            schema::Writable::Yes(version) => Err(StoreError::Unavailable(format!(
                "database schema is version {version:?}, not {}",
                schema::VERSION
            ))),
            schema::Writable::No(why) => Err(StoreError::Unavailable(format!("database is {why}"))),
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.background.iter().for_each(AbortHandle::abort);
    }
}

/// `<host name>/<random id>`: which host forwards, as `forward_lead` shows it.
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!(
        "{}/{}",
        if host.is_empty() { "inlet" } else { host },
        uuid::Uuid::new_v4()
    )
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
    // The client's default (two hours) stands for "not set in the URL".
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(DEAD_PEER / 2);
    }
    if config.get_application_name().is_none() {
        config.application_name("inlet");
    }
    config
}

/// `config` with `READ_TIME_LIMIT` as the server's `statement_timeout` (it
/// cancels a longer read: 503), after any options the URL sets. A request
/// cut short by its own deadline cannot cancel its query, and its connection
/// goes back to the pool with the query still running: this bounds how long
/// such a connection stays busy.
fn read_config(config: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut config = config.clone();
    let timeout = format!("-c statement_timeout={}", READ_TIME_LIMIT.as_millis());
    let options = match config.get_options() {
        Some(options) => format!("{options} {timeout}"),
        None => timeout,
    };
    config.options(options);
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
        check_message(&message)?;
        self.schema.ready().await?;
        self.writer.insert(message).await
    }

    async fn insert_batch(&self, messages: Vec<Message>) -> Result<Vec<InsertOutcome>, StoreError> {
        check_insert_batch(&messages)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.schema.ready().await?;
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

    async fn get(&self, message_id: String) -> Result<Option<StoredMessage>, StoreError> {
        if !is_storable_id(&message_id) {
            return Ok(None);
        }
        let client = self.read_connection().await?;
        removals::get(&client, &message_id)
            .await
            .map_err(|e| errors::classify(&e))
    }

    async fn remove(&self, message_id: String) -> Result<Removal, StoreError> {
        if !is_storable_id(&message_id) {
            return Ok(Removal::NotFound);
        }
        let client = self.read_connection().await?;
        removals::remove(&client, &message_id)
            .await
            .map_err(|e| errors::classify(&e))
    }

    async fn expire(&self, expiry: &Expiry) -> Result<Expired, StoreError> {
        let client = self.read_connection().await?;
        removals::expire(&client, expiry)
            .await
            .map_err(|e| errors::classify(&e))
    }

    async fn feed(&self, after: FeedPosition, limit: u32) -> Result<Option<FeedPage>, StoreError> {
        check_feed_limit(limit)?;
        let client = self.read_connection().await?;
        feed::read(&client, after, limit)
            .await
            .map_err(|e| errors::classify(&e))
    }

    async fn feed_head(&self) -> Result<FeedPosition, StoreError> {
        let client = self.read_connection().await?;
        feed::head(&client).await.map_err(|e| errors::classify(&e))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.probe(Instant::now() + PING_TIMEOUT).await
    }
}

#[async_trait]
impl ForwardStore for PgStore {
    async fn forward_position(&self) -> Result<FeedPosition, StoreError> {
        let client = self.read_connection().await?;
        forward::position(&client).await.map_err(|e| errors::classify(&e))
    }

    async fn forward_advance(
        &self,
        from: FeedPosition,
        to: FeedPosition,
        retries: Vec<Attempted>,
    ) -> Result<bool, StoreError> {
        let mut client = self.read_connection().await?;
        forward::advance(&mut client, from, to, &retries)
            .await
            .map_err(|e| errors::classify(&e))
    }

    async fn forward_due(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<DueRetry>, StoreError> {
        let client = self.read_connection().await?;
        forward::due(&client, now, lease_until, limit)
            .await
            .map_err(|e| errors::classify(&e))
    }

    async fn forward_settle(&self, attempted: Vec<Attempted>) -> Result<(), StoreError> {
        let mut client = self.read_connection().await?;
        forward::settle(&mut client, &attempted)
            .await
            .map_err(|e| errors::classify(&e))
    }

    async fn forward_requeue(&self, now: i64) -> Result<u64, StoreError> {
        let client = self.read_connection().await?;
        forward::requeue(&client, now).await.map_err(|e| errors::classify(&e))
    }

    async fn forward_backlog(&self) -> Result<Backlog, StoreError> {
        let client = self.read_connection().await?;
        forward::backlog(&client).await.map_err(|e| errors::classify(&e))
    }

    async fn forward_lead(&self) -> Result<Option<Lead>, StoreError> {
        self.schema.ready().await?;
        forward::lead(&self.reads, &self.holder).await
    }
}
