//! An in-memory store with the real semantics, and scripted failures.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use inlet::storage::{check_insert_batch, check_message, check_page_request, check_top_senders, fold};

use crate::{
    InsertOutcome, Message, MessageStats, MessageStore, Operation, Page, PageRequest, SenderCount, StoreError,
};

/// Created/duplicate by `message-id`, filters, ordering by instant then id,
/// totals and stats as the SQLite store computes them. Clones share state.
#[derive(Clone, Default)]
pub struct MockStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    messages: BTreeMap<String, Message>,
    failures: VecDeque<(Operation, StoreError)>,
}

impl MockStore {
    /// An empty store with no scripted failures.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next call of `operation` fails with `error` (and stores nothing).
    /// Several scripted failures apply in order.
    pub fn fail_next(&self, operation: Operation, error: StoreError) {
        self.lock().failures.push_back((operation, error));
    }

    /// Everything stored, by `message-id`.
    pub fn messages(&self) -> Vec<Message> {
        self.lock().messages.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("mock store lock")
    }
}

impl State {
    fn scripted_failure(&mut self, operation: Operation) -> Result<(), StoreError> {
        match self.failures.iter().position(|(op, _)| *op == operation) {
            Some(index) => Err(self.failures.remove(index).expect("index in range").1),
            None => Ok(()),
        }
    }

    /// Keeps `message` unless its id is kept already.
    fn store(&mut self, message: Message) -> InsertOutcome {
        if self.messages.contains_key(&message.message_id) {
            return InsertOutcome::Duplicate;
        }
        self.messages.insert(message.message_id.clone(), message);
        InsertOutcome::Created
    }

    /// Messages matching `filter`, by instant then id.
    fn matching(&self, request: &PageRequest) -> Vec<&Message> {
        let filter = &request.filter;
        // The same folding as every real store (`inlet::storage::fold`).
        let needle = filter.text_contains.as_deref().map(fold);
        let mut found: Vec<&Message> = self
            .messages
            .values()
            .filter(|m| filter.from.as_ref().is_none_or(|from| &m.from == from))
            .filter(|m| filter.since_unix_micros.is_none_or(|since| m.ts.unix_micros >= since))
            .filter(|m| match (&needle, &m.text) {
                (None, _) => true,
                (Some(needle), Some(text)) => fold(text).contains(needle.as_str()),
                (Some(_), None) => false,
            })
            .collect();
        found.sort_by(|a, b| (a.ts.unix_micros, &a.message_id).cmp(&(b.ts.unix_micros, &b.message_id)));
        found
    }
}

#[async_trait]
impl MessageStore for MockStore {
    async fn insert(&self, message: Message) -> Result<InsertOutcome, StoreError> {
        let mut state = self.lock();
        check_message(&message)?;
        state.scripted_failure(Operation::Insert)?;
        Ok(state.store(message))
    }

    async fn insert_batch(&self, messages: Vec<Message>) -> Result<Vec<InsertOutcome>, StoreError> {
        let mut state = self.lock();
        check_insert_batch(&messages)?;
        state.scripted_failure(Operation::InsertBatch)?;
        Ok(messages.into_iter().map(|message| state.store(message)).collect())
    }

    async fn list(&self, request: PageRequest) -> Result<Page, StoreError> {
        let mut state = self.lock();
        check_page_request(&request)?;
        state.scripted_failure(Operation::List)?;
        let matching = state.matching(&request);
        let after = request.after.as_ref().map(|p| (p.unix_micros, p.message_id.as_str()));
        let mut messages: Vec<Message> = matching
            .iter()
            .filter(|m| after.is_none_or(|after| (m.ts.unix_micros, m.message_id.as_str()) > after))
            .skip(usize::try_from(request.offset).unwrap_or(usize::MAX))
            .take(request.limit as usize + 1)
            .map(|m| (*m).clone())
            .collect();
        let more = messages.len() > request.limit as usize;
        messages.truncate(request.limit as usize);
        Ok(Page {
            messages,
            total: matching.len() as u64,
            more,
        })
    }

    async fn stats(&self, top_senders: u32) -> Result<MessageStats, StoreError> {
        let mut state = self.lock();
        check_top_senders(top_senders)?;
        state.scripted_failure(Operation::Stats)?;
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for message in state.messages.values() {
            *counts.entry(&message.from).or_default() += 1;
        }
        let mut ranked: Vec<(&str, u64)> = counts.iter().map(|(from, count)| (*from, *count)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let by_instant = |m: &&Message| (m.ts.unix_micros, m.message_id.clone());
        Ok(MessageStats {
            total_messages: state.messages.len() as u64,
            senders_count: counts.len() as u64,
            top_senders: ranked
                .into_iter()
                .take(top_senders as usize)
                .map(|(from, count)| SenderCount {
                    from: from.to_owned(),
                    count,
                })
                .collect(),
            first_ts: state
                .messages
                .values()
                .min_by_key(by_instant)
                .map(|m| m.ts.text.clone()),
            last_ts: state
                .messages
                .values()
                .max_by_key(by_instant)
                .map(|m| m.ts.text.clone()),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.lock().scripted_failure(Operation::Ping)
    }
}
