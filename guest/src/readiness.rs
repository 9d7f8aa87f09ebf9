//! `GET /health/ready`: this guest can serve, storage answers, and a secret is set.

use crate::bindings::inlet::service::storage;
use crate::response::Response;
use crate::webhook;

pub(crate) fn handle() -> Response {
    if webhook::signing_key().is_none() {
        return Response::unavailable("WEBHOOK_SECRET is not set");
    }
    match storage::ping() {
        Ok(()) => Response::json(200, &serde_json::json!({ "status": "ready" })),
        Err(_) => Response::unavailable("storage unavailable"),
    }
}
