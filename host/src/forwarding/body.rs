//! What a delivery carries: the stored message as JSON, the same bytes on
//! every attempt and to every kind of destination, and its id in the form a
//! header carries (`webhook-id`, `Nats-Msg-Id`).

use bytes::Bytes;
use serde::Serialize;

use crate::bindings::inlet::service::storage::StoredMessage;

/// A delivery's body, fields in the contract's order; serialized straight
/// from the stored message, on every delivery's path.
#[derive(Serialize)]
struct Body<'a> {
    message_id: &'a str,
    from: &'a str,
    to: &'a str,
    ts: &'a str,
    /// Null when the message has none.
    text: Option<&'a str>,
    created_at: &'a str,
}

/// The body of `stored`'s deliveries.
pub(super) fn render(stored: &StoredMessage) -> Bytes {
    let message = &stored.message;
    let body = Body {
        message_id: &message.message_id,
        from: &message.from,
        to: &message.to,
        ts: &message.ts.text,
        text: message.text.as_deref(),
        created_at: &stored.created_at,
    };
    Bytes::from(serde_json::to_vec(&body).expect("a struct of strings serializes"))
}

/// `id` as a header value: as is when a header carries it unchanged (no
/// control character, no space at either end where parsers trim, no `%`);
/// otherwise with those characters and every `%` and space percent-encoded.
/// Every encoded value holds a `%` and no value sent as is does, so two ids
/// never share a header value, and receivers de-duplicate by it safely (the
/// body keeps the id itself).
pub(super) fn header_id(id: &str) -> String {
    let as_is = !id.contains('%') && !id.chars().any(|c| c.is_ascii_control()) && id.trim_matches(' ') == id;
    if as_is {
        return id.to_owned();
    }
    let mut encoded = String::with_capacity(id.len() + 8);
    for character in id.chars() {
        if character.is_ascii_control() || character == '%' || character == ' ' {
            encoded.push_str(&format!("%{:02X}", u32::from(character)));
        } else {
            encoded.push(character);
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::inlet::service::storage::{Message, Timestamp};
    use http::header::HeaderValue;

    #[test]
    fn the_body_names_every_field_in_order() {
        let stored = StoredMessage {
            message: Message {
                message_id: "m/1 é".into(),
                from: "+15550001".into(),
                to: "+15550002".into(),
                ts: Timestamp {
                    text: "2025-01-15T10:00:00Z".into(),
                    unix_micros: 1_736_935_200_000_000,
                },
                text: None,
            },
            created_at: "2026-12-06T10:00:00.123456Z".into(),
        };
        assert_eq!(
            render(&stored),
            r#"{"message_id":"m/1 é","from":"+15550001","to":"+15550002","ts":"2025-01-15T10:00:00Z","text":null,"created_at":"2026-12-06T10:00:00.123456Z"}"#
        );
    }

    #[test]
    fn ids_a_header_can_carry_are_sent_as_they_are() {
        assert_eq!(header_id("wamid.HBgL/é ?#"), "wamid.HBgL/é ?#");
    }

    #[test]
    fn what_a_header_would_change_is_percent_encoded_with_every_percent_sign() {
        assert_eq!(header_id("a\nb%c\u{7f}"), "a%0Ab%25c%7F");
        assert_eq!(header_id(" m 1"), "%20m%201");
        assert_eq!(header_id("50%"), "50%25");
        // The encoded form of one id is never another id sent as is.
        assert_ne!(header_id("a\nb"), header_id("a%0Ab"));
        for id in ["a\tb", "x\r\n", "%", "m1 "] {
            assert!(HeaderValue::from_str(&header_id(id)).is_ok(), "{id:?}");
        }
    }
}
