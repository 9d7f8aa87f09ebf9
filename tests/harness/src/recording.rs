//! A store wrapper that records every call the guest makes.

use std::sync::Mutex;

use async_trait::async_trait;

use inlet::storage::{Expired, Expiry, FeedPage, FeedPosition};

use crate::{
    InsertOutcome, Message, MessageStats, MessageStore, Page, PageRequest, Removal, StoreError, StoredMessage,
};

/// One storage call, as the guest made it.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageCall {
    /// `insert` of this message.
    Insert(Message),
    /// `insert_batch` of these messages.
    InsertBatch(Vec<Message>),
    /// `list` with this request.
    List(PageRequest),
    /// `stats`.
    Stats {
        /// How many top senders the guest asked for.
        top_senders: u32,
    },
    /// `get` of this id.
    Get(String),
    /// `remove` of this id.
    Remove(String),
    /// `expire` (the host's retention task; never the guest).
    Expire(Expiry),
    /// `feed` after this position, at most `limit` messages.
    Feed {
        /// Where the guest asked to continue.
        after: FeedPosition,
        /// How many messages it asked for at most.
        limit: u32,
    },
    /// `ping` (the readiness check).
    Ping,
}

pub(crate) struct RecordingStore {
    inner: Box<dyn MessageStore>,
    calls: Mutex<Vec<StorageCall>>,
}

impl RecordingStore {
    pub(crate) fn new(inner: impl MessageStore) -> Self {
        Self {
            inner: Box::new(inner),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The calls since the last `take_calls`.
    pub(crate) fn take_calls(&self) -> Vec<StorageCall> {
        std::mem::take(&mut *self.calls.lock().expect("calls lock"))
    }

    fn record(&self, call: StorageCall) {
        self.calls.lock().expect("calls lock").push(call);
    }
}

#[async_trait]
impl MessageStore for RecordingStore {
    async fn insert(&self, message: Message) -> Result<InsertOutcome, StoreError> {
        self.record(StorageCall::Insert(message.clone()));
        self.inner.insert(message).await
    }

    async fn insert_batch(&self, messages: Vec<Message>) -> Result<Vec<InsertOutcome>, StoreError> {
        self.record(StorageCall::InsertBatch(messages.clone()));
        self.inner.insert_batch(messages).await
    }

    async fn list(&self, request: PageRequest) -> Result<Page, StoreError> {
        self.record(StorageCall::List(request.clone()));
        self.inner.list(request).await
    }

    async fn stats(&self, top_senders: u32) -> Result<MessageStats, StoreError> {
        self.record(StorageCall::Stats { top_senders });
        self.inner.stats(top_senders).await
    }

    async fn get(&self, message_id: String) -> Result<Option<StoredMessage>, StoreError> {
        self.record(StorageCall::Get(message_id.clone()));
        self.inner.get(message_id).await
    }

    async fn remove(&self, message_id: String) -> Result<Removal, StoreError> {
        self.record(StorageCall::Remove(message_id.clone()));
        self.inner.remove(message_id).await
    }

    async fn expire(&self, expiry: &Expiry) -> Result<Expired, StoreError> {
        self.record(StorageCall::Expire(expiry.clone()));
        self.inner.expire(expiry).await
    }

    async fn feed(&self, after: FeedPosition, limit: u32) -> Result<Option<FeedPage>, StoreError> {
        self.record(StorageCall::Feed { after, limit });
        self.inner.feed(after, limit).await
    }

    /// Not recorded: the host reads it for waiting requests, on its own time.
    async fn feed_head(&self) -> Result<FeedPosition, StoreError> {
        self.inner.feed_head().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.record(StorageCall::Ping);
        self.inner.ping().await
    }
}
