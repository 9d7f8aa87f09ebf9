//! An in-memory store with the real semantics, and scripted failures and holds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use inlet::storage::{
    Expired, Expiry, FEED_START, FeedPage, FeedPosition, check_feed_limit, check_insert_batch, check_message,
    check_page_request, check_top_senders, fold, stamp,
};
use tokio::sync::oneshot;

use crate::{
    InsertOutcome, Message, MessageStats, MessageStore, Operation, Page, PageRequest, Removal, SenderCount, StoreError,
    StoredMessage,
};

/// Created/duplicate by `message-id`, filters, ordering by instant then id,
/// totals and stats as the SQLite store computes them; removed ids are
/// remembered and forgotten as the real stores do; the feed numbers
/// messages as they are stored, as SQLite does (epoch 0). Clones share state.
#[derive(Clone, Default)]
pub struct MockStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    messages: BTreeMap<String, Message>,
    /// Each stored message's `created_at`, by id.
    created_at: BTreeMap<String, String>,
    /// Removed ids: their message's `created_at` and when it was removed.
    removed: BTreeMap<String, (String, String)>,
    /// Stored ids by their feed number.
    feed: BTreeMap<u64, String>,
    /// The last feed number handed out.
    last_seq: u64,
    scripted: VecDeque<(Operation, Scripted)>,
}

/// What a scripted call does instead of its work, or first.
enum Scripted {
    /// Fails with this error, storing nothing.
    Fail(StoreError),
    /// Waits until released, as a call on a database that stopped
    /// answering mid-commit, then does its work.
    Hold(oneshot::Receiver<()>),
}

/// Holds a call scripted by [`MockStore::hold_next`] until released or dropped.
pub struct Hold(oneshot::Sender<()>);

impl Hold {
    /// Lets the held call go on.
    pub fn release(self) {
        let _ = self.0.send(());
    }
}

impl MockStore {
    /// An empty store with nothing scripted.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next call of `operation` fails with `error` (and stores nothing).
    /// Several scripted calls apply in order.
    pub fn fail_next(&self, operation: Operation, error: StoreError) {
        self.lock().scripted.push_back((operation, Scripted::Fail(error)));
    }

    /// The next call of `operation` waits, storing nothing, until the
    /// returned [`Hold`] is released or dropped; then it does its work.
    pub fn hold_next(&self, operation: Operation) -> Hold {
        let (release, released) = oneshot::channel();
        self.lock().scripted.push_back((operation, Scripted::Hold(released)));
        Hold(release)
    }

    /// Plays the next call scripted for `operation`, if any.
    async fn script(&self, operation: Operation) -> Result<(), StoreError> {
        let scripted = {
            let mut state = self.lock();
            let index = state.scripted.iter().position(|(op, _)| *op == operation);
            index.and_then(|index| state.scripted.remove(index))
        };
        match scripted {
            None => Ok(()),
            Some((_, Scripted::Fail(error))) => Err(error),
            Some((_, Scripted::Hold(released))) => {
                let _ = released.await;
                Ok(())
            }
        }
    }

    /// Everything stored, by `message-id`.
    pub fn messages(&self) -> Vec<Message> {
        self.lock().messages.values().cloned().collect()
    }

    /// The ids of removed messages the store still remembers.
    pub fn removed_ids(&self) -> Vec<String> {
        self.lock().removed.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("mock store lock")
    }
}

impl State {
    /// Keeps `message` unless its id is kept or remembered already.
    fn store(&mut self, message: Message) -> InsertOutcome {
        let id = &message.message_id;
        if self.messages.contains_key(id) || self.removed.contains_key(id) {
            return InsertOutcome::Duplicate;
        }
        self.created_at.insert(id.clone(), stamp(chrono::Utc::now()));
        self.last_seq += 1;
        self.feed.insert(self.last_seq, id.clone());
        self.messages.insert(id.clone(), message);
        InsertOutcome::Created
    }

    /// Removes the message stored under `id`, remembering the id.
    fn remove(&mut self, id: &str) -> Removal {
        if self.messages.remove(id).is_none() {
            return Removal::NotFound;
        }
        let created_at = self.created_at.remove(id).unwrap_or_default();
        self.feed.retain(|_, stored| stored != id);
        self.removed
            .insert(id.to_owned(), (created_at, stamp(chrono::Utc::now())));
        Removal::Removed
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
        check_message(&message)?;
        self.script(Operation::Insert).await?;
        Ok(self.lock().store(message))
    }

    async fn insert_batch(&self, messages: Vec<Message>) -> Result<Vec<InsertOutcome>, StoreError> {
        check_insert_batch(&messages)?;
        self.script(Operation::InsertBatch).await?;
        let mut state = self.lock();
        Ok(messages.into_iter().map(|message| state.store(message)).collect())
    }

    async fn list(&self, request: PageRequest) -> Result<Page, StoreError> {
        check_page_request(&request)?;
        self.script(Operation::List).await?;
        let state = self.lock();
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
        check_top_senders(top_senders)?;
        self.script(Operation::Stats).await?;
        let state = self.lock();
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

    async fn get(&self, message_id: String) -> Result<Option<StoredMessage>, StoreError> {
        self.script(Operation::Get).await?;
        let state = self.lock();
        Ok(state.messages.get(&message_id).map(|message| StoredMessage {
            message: message.clone(),
            created_at: state.created_at[&message_id].clone(),
        }))
    }

    async fn remove(&self, message_id: String) -> Result<Removal, StoreError> {
        self.script(Operation::Remove).await?;
        Ok(self.lock().remove(&message_id))
    }

    async fn expire(&self, expiry: &Expiry) -> Result<Expired, StoreError> {
        self.script(Operation::Expire).await?;
        let mut state = self.lock();
        let limit = expiry.limit as usize;
        let aged: Vec<String> = state
            .created_at
            .iter()
            .filter(|(_, at)| **at < expiry.stored_before)
            .map(|(id, _)| id.clone())
            .take(limit)
            .collect();
        aged.iter().for_each(|id| {
            state.remove(id);
        });
        let forgettable: Vec<String> = state
            .removed
            .iter()
            .filter(|(_, (created, removed))| *removed < expiry.removed_before && *created < expiry.stored_before)
            .map(|(id, _)| id.clone())
            .take(limit)
            .collect();
        forgettable.iter().for_each(|id| {
            state.removed.remove(id);
        });
        Ok(Expired {
            messages: aged.len() as u64,
            forgotten_ids: forgettable.len() as u64,
        })
    }

    async fn feed(&self, after: FeedPosition, limit: u32) -> Result<Option<FeedPage>, StoreError> {
        check_feed_limit(limit)?;
        self.script(Operation::Feed).await?;
        let state = self.lock();
        if after.epoch != 0 || after.seq > state.last_seq {
            return Ok(None);
        }
        let found: Vec<(u64, &String)> = state
            .feed
            .range(after.seq + 1..)
            .take(limit as usize)
            .map(|(seq, id)| (*seq, id))
            .collect();
        let next = found
            .last()
            .map_or(after, |(seq, _)| FeedPosition { epoch: 0, seq: *seq });
        let messages = found
            .iter()
            .map(|(_, id)| StoredMessage {
                message: state.messages[*id].clone(),
                created_at: state.created_at[*id].clone(),
            })
            .collect();
        Ok(Some(FeedPage { messages, next }))
    }

    async fn feed_head(&self) -> Result<FeedPosition, StoreError> {
        self.script(Operation::FeedHead).await?;
        Ok(self
            .lock()
            .feed
            .keys()
            .next_back()
            .map_or(FEED_START, |seq| FeedPosition { epoch: 0, seq: *seq }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.script(Operation::Ping).await
    }
}
