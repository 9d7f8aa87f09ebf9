//! `cursor`: an opaque token for "the page after this one".
//!
//! It holds the last row's place in the listing order (its `ts` instant and
//! `message_id`) and the filters the page was listed under, as base64url of
//! a small JSON object, so a cursor sent with other filters is refused
//! rather than silently applied to them. It is neither secret nor signed: a
//! forged cursor can only name a place in the order, which any client may
//! ask for anyway.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// The filters of a listing, as a cursor records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Filters {
    pub from: Option<String>,
    pub since_unix_micros: Option<i64>,
    pub q: Option<String>,
}

/// A decoded cursor: list the rows after this place, under these filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// The `ts` instant of the last row of the previous page, in microseconds.
    #[serde(rename = "t")]
    pub unix_micros: i64,
    /// The `message_id` of that row.
    #[serde(rename = "i")]
    pub message_id: String,
    #[serde(rename = "f")]
    pub filters: Filters,
}

/// What every issued token matches (base64url without padding), as
/// `/openapi.json` describes it: a string outside it is malformed by the
/// document as well as by `decode`.
pub(crate) const PATTERN: &str = "^[A-Za-z0-9_-]+$";

impl Cursor {
    /// The token a client sends back as `cursor`.
    pub(crate) fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a cursor serialises");
        URL_SAFE_NO_PAD.encode(json)
    }

    /// The cursor `token` stands for, or `None` when this service could not
    /// have issued it.
    pub(crate) fn decode(token: &str) -> Option<Self> {
        let json = URL_SAFE_NO_PAD.decode(token).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(q: Option<&str>) -> Cursor {
        Cursor {
            unix_micros: 1_736_935_200_000_000,
            message_id: "m-é/+ 1".into(),
            filters: Filters {
                from: Some("+919876543210".into()),
                since_unix_micros: None,
                q: q.map(Into::into),
            },
        }
    }

    #[test]
    fn round_trips_and_is_url_safe() {
        for q in [None, Some("100% sure & ?"), Some("Ελληνικά")] {
            let token = cursor(q).encode();
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{token}"
            );
            assert_eq!(Cursor::decode(&token), Some(cursor(q)));
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let padded = format!(" {} ", cursor(None).encode());
        for token in ["", "not a cursor", "e30", "eyJ0IjoxfQ", "%%%", &padded] {
            assert_eq!(Cursor::decode(token), None, "{token}");
        }
    }
}
