//! `GET /health/ready`: this guest can serve, storage answers, and a secret is set.

use serde::Serialize;

use crate::bindings::inlet::service::storage;
use crate::response::Response;
use crate::webhook;

/// Ready to serve (the host adds the guest it loaded: see `openapi`).
#[derive(Serialize)]
struct Ready {
    status: &'static str,
}

pub(crate) fn handle() -> Response {
    if webhook::secrets().is_empty() {
        return Response::unavailable("no webhook secret is configured");
    }
    match storage::ping() {
        Ok(()) => Response::json(200, &Ready { status: "ready" }),
        Err(_) => Response::unavailable("storage unavailable"),
    }
}
