//! HTTP responses as the guest builds them, before they reach `wasi:http`.

use serde::Serialize;
use utoipa::ToSchema;

use crate::bindings::inlet::service::storage;
use crate::problem::{FieldError, ValidationProblem};

/// Seconds a client should wait before retrying after a storage failure.
pub(crate) const RETRY_AFTER_SECONDS: u32 = 1;

/// The body of every error but a validation error.
#[derive(Serialize, ToSchema)]
pub(crate) struct Detail<'a> {
    /// What went wrong, e.g. `invalid signature`.
    detail: &'a str,
}

/// The body of a request that was done, e.g. a stored (or already stored)
/// message.
#[derive(Serialize, ToSchema)]
pub(crate) struct Acknowledged {
    /// `ok`.
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
}

/// A complete response: status, extra headers and a body (JSON unless
/// `content_type` says otherwise).
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    /// `status` with `value` serialized as the JSON body.
    pub(crate) fn json(status: u16, value: &impl Serialize) -> Self {
        // Serializing our own derive(Serialize) types into memory cannot fail.
        let body = serde_json::to_vec(value).expect("response types serialize");
        Self {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body,
        }
    }

    /// `status` with `text` as a plain-text body.
    pub(crate) fn plain(status: u16, text: String) -> Self {
        Self {
            status,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8",
            body: text.into_bytes(),
        }
    }

    /// 204: done, nothing to say.
    pub(crate) fn no_content() -> Self {
        Self {
            status: 204,
            headers: Vec::new(),
            content_type: "",
            body: Vec::new(),
        }
    }

    /// `{"detail": "<detail>"}`, the shape of every non-validation error.
    pub(crate) fn detail(status: u16, detail: &str) -> Self {
        Self::json(status, &Detail { detail })
    }

    /// 422 with every validation error.
    pub(crate) fn unprocessable(errors: &[FieldError]) -> Self {
        Self::json(422, &ValidationProblem { detail: errors })
    }

    /// The answer to a failed storage call: 503 with `Retry-After` when the
    /// failure is transient, 500 otherwise.
    pub(crate) fn storage_failure(error: &storage::Error) -> Self {
        match error {
            storage::Error::Unavailable(_) => Self::unavailable("storage unavailable, retry later"),
            storage::Error::InvalidArgument(_) | storage::Error::Internal(_) => Self::detail(500, "internal error"),
        }
    }

    /// 503 with `Retry-After`: a transient condition the client may retry.
    pub(crate) fn unavailable(detail: &str) -> Self {
        Self::detail(503, detail).with_header("retry-after", RETRY_AFTER_SECONDS.to_string())
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}
