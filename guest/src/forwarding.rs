//! `GET /forwarding` and `POST /forwarding/retry`: what forwarding owes,
//! and an operator's retry of what failed. Both admin routes; without
//! forwarding configured both are 404 (after the key check, so a caller
//! without one learns nothing of the configuration).

use serde::Serialize;
use utoipa::ToSchema;

use crate::bindings::inlet::service::forwarding;
use crate::response::Response;

/// What forwarding owes now.
#[derive(Serialize, ToSchema)]
#[schema(as = Forwarding)]
pub(crate) struct StatusView<'a> {
    /// Where deliveries go, without credentials or query.
    destination: &'a str,
    /// Messages neither delivered yet nor failed.
    pending: u64,
    /// Messages out of attempts, waiting for `POST /forwarding/retry`.
    failed: u64,
    /// How long the oldest pending message has been stored, in seconds;
    /// `null` when nothing is pending.
    #[schema(required)]
    oldest_pending_age_seconds: Option<f64>,
}

/// What a retry did.
#[derive(Serialize, ToSchema)]
#[schema(as = Requeued)]
pub(crate) struct RequeuedView {
    /// Failed messages made pending again.
    requeued: u64,
}

pub(crate) fn status() -> Response {
    match forwarding::status() {
        Ok(Some(status)) => Response::json(200, &render(&status)),
        Ok(None) => Response::detail(404, "Not Found"),
        Err(error) => Response::storage_failure(&error),
    }
}

pub(crate) fn retry() -> Response {
    match forwarding::retry_failed() {
        Ok(Some(requeued)) => Response::json(200, &RequeuedView { requeued }),
        Ok(None) => Response::detail(404, "Not Found"),
        Err(error) => Response::storage_failure(&error),
    }
}

fn render(status: &forwarding::ForwardingStatus) -> StatusView<'_> {
    StatusView {
        destination: &status.destination,
        pending: status.pending,
        failed: status.failed,
        oldest_pending_age_seconds: status.oldest_pending_age_ms.map(|ms| ms as f64 / 1000.0),
    }
}
