//! `GET /stats`: totals, the top senders and the time range.

use serde::Serialize;

use crate::bindings::inlet::service::storage;
use crate::response::Response;

/// How many senders `messages_per_sender` lists.
const TOP_SENDERS: u32 = 10;

#[derive(Serialize)]
struct StatsView<'a> {
    total_messages: u64,
    senders_count: u64,
    messages_per_sender: Vec<SenderView<'a>>,
    first_message_ts: Option<&'a str>,
    last_message_ts: Option<&'a str>,
}

#[derive(Serialize)]
struct SenderView<'a> {
    from: &'a str,
    count: u64,
}

pub(crate) fn handle() -> Response {
    match storage::stats(TOP_SENDERS) {
        Ok(stats) => Response::json(200, &render(&stats)),
        Err(error) => Response::storage_failure(&error),
    }
}

fn render(stats: &storage::MessageStats) -> StatsView<'_> {
    StatsView {
        total_messages: stats.total_messages,
        senders_count: stats.senders_count,
        messages_per_sender: stats
            .top_senders
            .iter()
            .map(|s| SenderView {
                from: &s.from,
                count: s.count,
            })
            .collect(),
        first_message_ts: stats.first_ts.as_deref(),
        last_message_ts: stats.last_ts.as_deref(),
    }
}
