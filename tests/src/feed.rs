//! A consumer of `GET /feed`: follows `next` from the start, as the
//! contract tells consumers to, and keeps what it was handed.

use serde_json::Value;

use crate::{Reply, Server};

/// One consumer's place in the feed and what it has seen.
#[derive(Debug, Default)]
pub struct Follower {
    /// The last answer's `next`; `None` before the first.
    pub next: Option<String>,
    /// Every message id handed out, in order (repeats included, so a test
    /// can see one).
    pub seen: Vec<String>,
    /// The `Authorization` its reads carry, where API keys are required.
    pub authorization: Option<String>,
}

impl Follower {
    /// A consumer at the start of the feed.
    pub fn new() -> Self {
        Self::default()
    }

    /// One read of at most `limit` messages, waiting up to `wait` seconds
    /// when none follows; the items handed out (also kept in `seen`).
    /// Panics on any answer but 200.
    pub fn read(&mut self, server: &Server, limit: u32, wait: u32) -> Vec<Value> {
        let authorization = self.authorization.as_deref().map(|value| ("authorization", value));
        let reply = server.get_with(&self.query(limit, wait), authorization.as_slice());
        assert_eq!(reply.status, 200, "{}", reply.body);
        self.take(&reply)
    }

    /// Long-polls until `count` more messages were handed out (never more),
    /// or until `WAIT` seconds passed with nothing new: on PostgreSQL a
    /// message is handed out only once no older transaction is in flight in
    /// the whole PostgreSQL instance (another test's included), so even one
    /// stored just before may come a moment later, or apart from its
    /// neighbours.
    pub fn read_until(&mut self, server: &Server, count: u32) -> Vec<Value> {
        const WAIT: u32 = 5;
        let mut items = Vec::new();
        while items.len() < count as usize {
            let more = self.read(server, count - items.len() as u32, WAIT);
            if more.is_empty() {
                break;
            }
            items.extend(more);
        }
        items
    }

    /// The path and query of the next read.
    pub fn query(&self, limit: u32, wait: u32) -> String {
        let after = self
            .next
            .as_deref()
            .map(|next| format!("&after={next}"))
            .unwrap_or_default();
        format!("/feed?limit={limit}&wait={wait}{after}")
    }

    /// Keeps what a 200 answer to `query` handed out and where it ends.
    pub fn take(&mut self, reply: &Reply) -> Vec<Value> {
        let body = reply.json();
        let next = body["next"].as_str().expect("next is always present").to_owned();
        let data = body["data"].as_array().expect("data").clone();
        self.seen.extend(
            data.iter()
                .map(|item| item["message_id"].as_str().expect("an id").to_owned()),
        );
        self.next = Some(next);
        data
    }
}
