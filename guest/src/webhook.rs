//! `POST /webhook`: verify the signature (`signed`), validate, store exactly once.

use crate::bindings::inlet::service::log::{self, Level};
use crate::bindings::inlet::service::metrics::WebhookResult;
use crate::bindings::inlet::service::storage::{self, InsertOutcome};
use crate::payload::{self, InboundMessage};
use crate::response::{Acknowledged, Response};
use crate::signed;

/// Stores the delivery whose signature verified.
pub(crate) fn handle(body: &[u8]) -> Response {
    let message = match payload::parse(body) {
        Ok(message) => message,
        Err(rejection) => {
            log::escalate(Level::Warn);
            let response = Response::unprocessable(&rejection.errors);
            return finish(
                WebhookResult::ValidationError,
                rejection.message_id.as_deref(),
                response,
            );
        }
    };
    let id = message.message_id.clone();
    match storage::insert(&into_record(message)) {
        Ok(InsertOutcome::Created) => finish(WebhookResult::Created, Some(&id), ok()),
        Ok(InsertOutcome::Duplicate) => finish(WebhookResult::Duplicate, Some(&id), ok()),
        Err(error) => {
            log::event(Level::Error, &format!("storing message failed: {error:?}"));
            finish(
                WebhookResult::StorageError,
                Some(&id),
                Response::storage_failure(&error),
            )
        }
    }
}

fn ok() -> Response {
    Response::json(200, &Acknowledged { status: "ok" })
}

/// Records the outcome and answers `response`.
fn finish(result: WebhookResult, message_id: Option<&str>, response: Response) -> Response {
    signed::record_outcome(result, message_id);
    response
}

fn into_record(message: InboundMessage) -> storage::Message {
    storage::Message {
        message_id: message.message_id,
        from: message.from,
        to: message.to,
        ts: storage::Timestamp {
            text: message.ts.text,
            unix_micros: message.ts.unix_micros,
        },
        text: message.text,
    }
}
