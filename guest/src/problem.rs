//! Validation errors in the FastAPI style:
//! `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.

use serde::Serialize;
use utoipa::ToSchema;

/// One reason a request was rejected with 422.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct FieldError {
    /// Where the error is: `["body"]`, `["body", field]` or `["query", parameter]`.
    pub loc: Vec<String>,
    /// What is wrong, for people.
    pub msg: String,
    /// What is wrong, for programs (pydantic's error types, e.g. `missing`).
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl FieldError {
    /// An error at `source` (`body` or `query`), optionally under `field`.
    /// An error at a nested place of the body: `loc` after `"body"`.
    pub(crate) fn at(loc: impl IntoIterator<Item = String>, kind: &'static str, msg: impl Into<String>) -> Self {
        Self {
            loc: std::iter::once("body".to_owned()).chain(loc).collect(),
            msg: msg.into(),
            kind,
        }
    }

    pub(crate) fn new(source: &str, field: Option<&str>, kind: &'static str, msg: impl Into<String>) -> Self {
        let mut loc = vec![source.to_owned()];
        loc.extend(field.map(str::to_owned));
        Self {
            loc,
            msg: msg.into(),
            kind,
        }
    }
}

/// The 422 body: every reason the request was rejected.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ValidationProblem<'a> {
    #[schema(value_type = Vec<FieldError>)]
    pub detail: &'a [FieldError],
}
