//! `GET /stats`: totals, the top senders and the time range.

use serde::Serialize;
use utoipa::ToSchema;

use crate::bindings::inlet::service::storage;
use crate::response::Response;

/// How many senders `messages_per_sender` lists.
const TOP_SENDERS: u32 = 10;

/// What is stored, in aggregate.
#[derive(Serialize, ToSchema)]
#[schema(as = Stats)]
pub(crate) struct StatsView<'a> {
    /// Messages stored.
    total_messages: u64,
    /// Distinct senders.
    senders_count: u64,
    /// The senders with the most messages (at most 10), most first; ties by sender.
    messages_per_sender: Vec<SenderView<'a>>,
    /// The earliest `ts` by instant; `null` when nothing is stored.
    #[schema(required)]
    first_message_ts: Option<&'a str>,
    /// The latest `ts` by instant; `null` when nothing is stored.
    #[schema(required)]
    last_message_ts: Option<&'a str>,
}

/// One sender's count.
#[derive(Serialize, ToSchema)]
#[schema(as = SenderCount)]
pub(crate) struct SenderView<'a> {
    /// The sender's MSISDN.
    from: &'a str,
    /// Messages from it.
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
