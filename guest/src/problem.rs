//! Validation errors in the FastAPI style:
//! `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.

use serde::Serialize;

/// One reason a request was rejected with 422.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FieldError {
    /// Where the error is: `["body", field]` or `["query", parameter]`.
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl FieldError {
    /// An error at `source` (`body` or `query`), optionally under `field`.
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

/// The 422 body.
#[derive(Debug, Serialize)]
pub(crate) struct ValidationProblem<'a> {
    pub detail: &'a [FieldError],
}
