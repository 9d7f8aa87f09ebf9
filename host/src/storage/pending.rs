//! Inserts waiting for a group commit, and how their callers hear back:
//! shared by the SQLite and PostgreSQL writers.

use tokio::sync::oneshot;

use super::StoreError;
use crate::bindings::inlet::service::storage::{InsertOutcome, Message};

/// Rows after which no further insert joins a group; with batch inserts
/// never split, it bounds one transaction's size and latency.
pub(super) const MAX_BATCH: usize = 512;

/// Where one caller's answer goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// An insert waiting for the commit, with its caller.
pub(super) enum Pending {
    One(Message, Reply<InsertOutcome>),
    Many(Vec<Message>, Reply<Vec<InsertOutcome>>),
}

impl Pending {
    pub(super) fn messages(&self) -> &[Message] {
        match self {
            Self::One(message, _) => std::slice::from_ref(message),
            Self::Many(messages, _) => messages,
        }
    }

    /// Answers the caller with its share of `outcomes`.
    fn answer(self, outcomes: &mut impl Iterator<Item = InsertOutcome>) {
        match self {
            Self::One(_, reply) => {
                let _ = reply.send(outcomes.next().ok_or_else(stopped));
            }
            Self::Many(messages, reply) => {
                let _ = reply.send(Ok(outcomes.take(messages.len()).collect()));
            }
        }
    }

    fn fail(self, error: StoreError) {
        match self {
            Self::One(_, reply) => {
                let _ = reply.send(Err(error));
            }
            Self::Many(_, reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// Inserts waiting for one commit.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) pending: Vec<Pending>,
    pub(super) rows: usize,
}

impl Batch {
    pub(super) fn push(&mut self, pending: Pending) {
        self.rows += pending.messages().len();
        self.pending.push(pending);
    }

    /// Whether another insert may still join.
    pub(super) fn has_room(&self) -> bool {
        self.rows < MAX_BATCH
    }

    /// Every queued message, in arrival order.
    pub(super) fn messages(&self) -> impl Iterator<Item = &Message> {
        self.pending.iter().flat_map(Pending::messages)
    }

    /// Answers every caller from `outcomes`, one per message in `messages` order.
    pub(super) fn answer(&mut self, outcomes: Vec<InsertOutcome>) {
        let mut outcomes = outcomes.into_iter();
        for pending in self.pending.drain(..) {
            pending.answer(&mut outcomes);
        }
        self.rows = 0;
    }

    /// Answers every caller with `error`: none of their rows was stored.
    pub(super) fn fail(&mut self, error: &StoreError) {
        for pending in self.pending.drain(..) {
            pending.fail(error.clone());
        }
        self.rows = 0;
    }

    /// One group per caller, so that each is committed or refused alone:
    /// after the database refused the group because of a row, one request
    /// cannot fail its neighbours. `None` when the group is one caller's.
    pub(super) fn split(&mut self) -> Option<Vec<Batch>> {
        if self.pending.len() < 2 {
            return None;
        }
        self.rows = 0;
        let alone = self.pending.drain(..).map(|pending| {
            let mut batch = Batch::default();
            batch.push(pending);
            batch
        });
        Some(alone.collect())
    }
}

/// The `created_at` of rows committed now: UTC, milliseconds, `Z`.
pub(super) fn commit_time() -> String {
    super::stamp(chrono::Utc::now())
}

/// The writer is gone (shutting down, or it died).
pub(super) fn stopped() -> StoreError {
    StoreError::Unavailable("storage is shutting down".into())
}
