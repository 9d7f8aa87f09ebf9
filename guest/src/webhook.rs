//! `POST /webhook`: verify the signature, validate, store exactly once.

use inlet_signature::{Signature, SigningKey};

use crate::bindings::inlet::service::log::{self, FieldValue, Level};
use crate::bindings::inlet::service::metrics::{self, WebhookResult};
use crate::bindings::inlet::service::storage::{self, InsertOutcome};
use crate::payload::{self, InboundMessage};
use crate::response::{Acknowledged, Response};

/// The header carrying the body's signature.
pub(crate) const SIGNATURE_HEADER: &str = "x-signature";

/// Where the secret comes from: the host puts it, and nothing else of its
/// own, in the guest's WASI environment.
const SECRET_VARIABLE: &str = "WEBHOOK_SECRET";

pub(crate) fn handle(signature: Option<&str>, body: &[u8]) -> Response {
    if !signature_is_valid(signature, body) {
        log::escalate(Level::Error);
        return finish(
            WebhookResult::InvalidSignature,
            None,
            Response::detail(401, "invalid signature"),
        );
    }
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

/// The key webhooks are signed with, when one is configured.
pub(crate) fn signing_key() -> Option<SigningKey> {
    std::env::var(SECRET_VARIABLE)
        .ok()
        .filter(|s| !s.is_empty())
        .map(SigningKey::new)
}

/// A missing secret verifies nothing: every request is then unauthorized.
fn signature_is_valid(header: Option<&str>, body: &[u8]) -> bool {
    let signature = header.and_then(Signature::from_header);
    match (signing_key(), signature) {
        (Some(key), Some(signature)) => key.verifies(body, &signature),
        _ => false,
    }
}

fn ok() -> Response {
    Response::json(200, &Acknowledged { status: "ok" })
}

/// Records the outcome (the host logs it as `result` too) and the log fields.
fn finish(result: WebhookResult, message_id: Option<&str>, response: Response) -> Response {
    metrics::record_webhook(result);
    if let Some(id) = message_id {
        log::annotate("message_id", &FieldValue::Text(id.to_owned()));
    }
    log::annotate("dup", &FieldValue::Flag(result == WebhookResult::Duplicate));
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
