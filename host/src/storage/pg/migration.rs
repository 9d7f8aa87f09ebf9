//! Applying the schema from a background task, until it is done.
//!
//! A host may start before its database (or before the database is
//! created, or its role allowed in). One task tries, pausing longer after
//! each failure, while requests are answered at once with the last failure
//! (503) rather than each waiting on a connection attempt of its own. Only
//! the first attempt is waited for, so a fresh host's first requests do not
//! fail merely because they came early. A forwarding host also sets the
//! forwarding position (if no host has) before the schema counts as
//! applied: no message it acknowledges can be behind it.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{errors, forward, schema};
use crate::storage::StoreError;

/// The pause after the first failed attempt; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Where the schema stands.
#[derive(Debug, Clone)]
enum State {
    /// The first attempt is running.
    FirstAttempt,
    /// The last attempt failed, for this reason; another will follow.
    Failed(String),
    /// The schema is current; nothing more to do.
    Applied,
}

/// Whether the schema is applied, as the store's operations ask it.
#[derive(Clone)]
pub(super) struct Applied(watch::Receiver<State>);

impl Applied {
    /// `Ok` once the schema is applied; `unavailable` with the reason until
    /// then (after waiting for the first attempt, if it is still running).
    pub(super) async fn ready(&self) -> Result<(), StoreError> {
        let mut state = self.0.clone();
        let state = state
            .wait_for(|state| !matches!(state, State::FirstAttempt))
            .await
            .map_err(|_| StoreError::Unavailable("database schema not applied: the store is closed".into()))?;
        match &*state {
            State::Applied => Ok(()),
            State::Failed(why) => Err(StoreError::Unavailable(format!("database schema not applied: {why}"))),
            State::FirstAttempt => unreachable!("waited for another state"),
        }
    }
}

/// What a store needs besides the schema before it takes messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Needs {
    /// The schema alone.
    Schema,
    /// The schema and a forwarding position.
    ForwardPosition,
}

/// Starts the task that applies the schema with connections from `pool`.
pub(super) fn start(pool: Pool, needs: Needs) -> (Applied, JoinHandle<()>) {
    let (state, applied) = watch::channel(State::FirstAttempt);
    let task = tokio::spawn(async move {
        let mut pause = FIRST_PAUSE;
        loop {
            match attempt(&pool, needs).await {
                Ok(()) => {
                    state.send_replace(State::Applied);
                    return;
                }
                Err(why) => {
                    tracing::warn!(error = %why, "database schema not applied yet; trying again");
                    state.send_replace(State::Failed(why));
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    });
    (Applied(applied), task)
}

async fn attempt(pool: &Pool, needs: Needs) -> Result<(), String> {
    let mut client = pool.get().await.map_err(|e| errors::with_causes(&e))?;
    schema::migrate(&mut client).await.map_err(|e| format!("{e:#}"))?;
    if needs == Needs::ForwardPosition {
        forward::set_position(&client)
            .await
            .map_err(|e| errors::with_causes(&e))?;
    }
    Ok(())
}
