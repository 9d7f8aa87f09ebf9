//! `GET /health/ready`: this guest can serve, storage answers, and a secret is set.

use serde::Serialize;
use utoipa::ToSchema;

use crate::bindings::inlet::service::storage;
use crate::response::Response;
use crate::webhook;

/// Ready to serve. The host adds `guest`: the loaded component's `sha256`,
/// `loaded_at` and `path`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Ready {
    /// `ready`.
    #[schema(value_type = String, example = "ready")]
    status: &'static str,
}

pub(crate) fn handle() -> Response {
    if webhook::signing_key().is_none() {
        return Response::unavailable("WEBHOOK_SECRET is not set");
    }
    match storage::ping() {
        Ok(()) => Response::json(200, &Ready { status: "ready" }),
        Err(_) => Response::unavailable("storage unavailable"),
    }
}
