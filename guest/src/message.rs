//! `GET` and `DELETE /messages/{message_id}`: one message by its id, which
//! the path carries percent-encoded (an id may hold `/`, `?`, `#`, spaces
//! and any Unicode). The id is decoded once, here; bytes that decode to no
//! UTF-8 string cannot name a stored message and are simply not found.

use percent_encoding::percent_decode_str;
use serde::Serialize;
use utoipa::ToSchema;

use crate::bindings::inlet::service::log::{self, FieldValue};
use crate::bindings::inlet::service::storage::{self, Removal, StoredMessage};
use crate::listing::MessageView;
use crate::payload::MAX_ID_CHARS;
use crate::response::Response;

/// A stored message and when Inlet stored it.
#[derive(Serialize, ToSchema)]
#[schema(as = StoredMessage)]
pub(crate) struct StoredView<'a> {
    #[serde(flatten)]
    message: MessageView<'a>,
    /// When Inlet stored it (ISO-8601 UTC, milliseconds).
    created_at: &'a str,
}

impl<'a> StoredView<'a> {
    pub(crate) fn of(stored: &'a StoredMessage) -> Self {
        Self {
            message: MessageView::of(&stored.message),
            created_at: &stored.created_at,
        }
    }
}

/// `GET`: the message, or 404.
pub(crate) fn read(encoded_id: &str) -> Response {
    let Some(message_id) = decoded(encoded_id) else {
        return not_found();
    };
    match storage::get_message(&message_id) {
        Ok(Some(stored)) => Response::json(200, &StoredView::of(&stored)),
        Ok(None) => not_found(),
        Err(error) => Response::storage_failure(&error),
    }
}

/// `DELETE`: 204 once the message is removed (and its id remembered), or 404.
pub(crate) fn erase(encoded_id: &str) -> Response {
    let Some(message_id) = decoded(encoded_id) else {
        return not_found();
    };
    match storage::remove_message(&message_id) {
        Ok(Removal::Removed) => Response::no_content(),
        Ok(Removal::NotFound) => not_found(),
        Err(error) => Response::storage_failure(&error),
    }
}

/// The id a path segment names, noted on the request's log line when it
/// is no longer than a delivered id may be (the host bounds log fields).
fn decoded(encoded_id: &str) -> Option<String> {
    let message_id = id_in(encoded_id)?;
    if message_id.chars().count() <= MAX_ID_CHARS {
        log::annotate("message_id", &FieldValue::Text(message_id.clone()));
    }
    Some(message_id)
}

/// The id of a percent-encoded path segment: `+` is itself (it means a
/// space only in a query), and a segment that decodes to no UTF-8 names none.
fn id_in(encoded_id: &str) -> Option<String> {
    percent_decode_str(encoded_id)
        .decode_utf8()
        .ok()
        .map(|id| id.into_owned())
}

fn not_found() -> Response {
    Response::detail(404, "Not Found")
}

#[cfg(test)]
mod tests {
    use super::id_in;

    #[test]
    fn odd_ids_decode_to_themselves() {
        for (encoded, id) in [
            ("a%2Fb%20c%3F%23%25", "a/b c?#%"),
            ("%E2%9C%93%20caf%C3%A9", "✓ café"),
            ("plain-id_1", "plain-id_1"),
            ("a+b", "a+b"),
            ("a/b", "a/b"),
        ] {
            assert_eq!(id_in(encoded).as_deref(), Some(id));
        }
    }

    #[test]
    fn bytes_that_are_no_text_name_no_message() {
        assert_eq!(id_in("%FF"), None);
        assert_eq!(id_in("ok%C3"), None);
    }
}
