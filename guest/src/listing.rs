//! `GET /messages`: one filtered page plus the filtered total.

use serde::Serialize;
use utoipa::ToSchema;

use crate::bindings::inlet::service::storage::{self, MessageFilter, PageRequest, Position};
use crate::cursor::Cursor;
use crate::query::{self, ListingQuery};
use crate::response::Response;

/// One page of a listing, in the order of `ts` (as an instant), then `message_id`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Page<'a> {
    /// The page's messages.
    data: Vec<MessageView<'a>>,
    /// How many messages match the filters, on every page.
    total: u64,
    /// The `limit` applied.
    limit: u32,
    /// The `offset` applied.
    offset: u64,
    /// Continues this listing after its last row; `null` when no row follows.
    #[schema(required)]
    next_cursor: Option<String>,
}

/// A stored message, as it was delivered.
#[derive(Serialize, ToSchema)]
pub(crate) struct MessageView<'a> {
    /// The sender's id for it, unique.
    message_id: &'a str,
    /// The sender's MSISDN (for a WhatsApp user who shares no number, their
    /// business-scoped user id).
    from: &'a str,
    /// The recipient's MSISDN.
    to: &'a str,
    /// When it was sent, exactly as delivered (ISO-8601 UTC).
    ts: &'a str,
    /// Its text; `null` when it had none.
    #[schema(required)]
    text: Option<&'a str>,
}

impl<'a> MessageView<'a> {
    pub(crate) fn of(message: &'a storage::Message) -> Self {
        Self {
            message_id: &message.message_id,
            from: &message.from,
            to: &message.to,
            ts: &message.ts.text,
            text: message.text.as_deref(),
        }
    }
}

pub(crate) fn handle(query_string: &str) -> Response {
    let query = match query::parse(query_string) {
        Ok(query) => query,
        Err(errors) => return Response::unprocessable(&errors),
    };
    match storage::list_messages(&page_request(&query)) {
        Ok(page) => Response::json(200, &render(&page, &query)),
        Err(error) => Response::storage_failure(&error),
    }
}

fn page_request(query: &ListingQuery) -> PageRequest {
    PageRequest {
        filter: MessageFilter {
            from: query.from.clone(),
            since_unix_micros: query.since.as_ref().map(|ts| ts.unix_micros),
            text_contains: query.q.clone(),
        },
        limit: query.limit,
        offset: query.offset,
        after: query.cursor.as_ref().map(|cursor| Position {
            unix_micros: cursor.unix_micros,
            message_id: cursor.message_id.clone(),
        }),
    }
}

fn render<'a>(page: &'a storage::Page, query: &ListingQuery) -> Page<'a> {
    let data = page.messages.iter().map(MessageView::of).collect();
    let next_cursor = page.messages.last().filter(|_| page.more).map(|last| {
        Cursor {
            unix_micros: last.ts.unix_micros,
            message_id: last.message_id.clone(),
            filters: query.filters(),
        }
        .encode()
    });
    Page {
        data,
        total: page.total,
        limit: query.limit,
        offset: query.offset,
        next_cursor,
    }
}
