//! Standard Webhooks (standardwebhooks.com; Svix and others send it).
//!
//! The sender signs `<webhook-id>.<webhook-timestamp>.<raw body>` and sends
//! `webhook-signature` as space-separated `<version>,<base64>` entries (one
//! per key during the sender's rotation). `v1` is HMAC-SHA256; entries of
//! other versions (`v1a`, ed25519) are skipped. A secret written
//! `whsec_<base64>` keys with its decoded bytes, any other with its UTF-8
//! bytes. The timestamp (Unix seconds) must lie within the tolerance of the
//! verifier's clock in both directions, which bounds replays.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::Mac;

use crate::hex_hmac::HmacSha256;
use crate::{Rejection, Scheme};

/// The prefix of a secret given as base64 bytes.
const SECRET_PREFIX: &str = "whsec_";
/// The signature version this crate verifies and makes.
const VERSION: &str = "v1";

/// A well-formed `webhook-timestamp` (`unix_seconds`), as a JSON Schema pattern.
pub const TIMESTAMP_PATTERN: &str = "^[0-9]{1,18}$";

/// The three headers' names, as `Headers` lists them.
pub const HEADER_NAMES: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

/// The three headers as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    /// `webhook-id`: the message's id (the same on every retry).
    pub id: &'a str,
    /// `webhook-timestamp`: this attempt's Unix seconds.
    pub timestamp: &'a str,
    /// `webhook-signature`: the signature entries.
    pub signature: &'a str,
}

/// The verifier's clock and how far a timestamp may stray from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Now, in Unix seconds.
    pub now_unix: i64,
    /// Largest accepted distance between a timestamp and now, either way.
    pub tolerance_seconds: u64,
}

/// The HMAC key `secret` stands for.
pub fn key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|encoded| BASE64.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The `webhook-signature` value a sender with `secret` sends.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = mac(&key(secret), id, &timestamp.to_string(), body);
    format!("{VERSION},{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// A Standard Webhooks signature as its headers present it: well formed
/// and within the clock's tolerance, not yet checked against the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Presented<'a> {
    id: &'a str,
    timestamp: &'a str,
    signatures: Vec<Vec<u8>>,
}

/// The headers' signature, if well formed and within the clock's tolerance.
pub(crate) fn present<'a>(headers: &Headers<'a>, clock: Clock) -> Result<Presented<'a>, Rejection> {
    let malformed = Rejection::Malformed(Scheme::StandardWebhooks);
    let timestamp = unix_seconds(headers.timestamp).ok_or(malformed)?;
    let signatures: Vec<Vec<u8>> = headers
        .signature
        .split_ascii_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == VERSION)
        .filter_map(|(_, encoded)| BASE64.decode(encoded).ok())
        .collect();
    if headers.id.is_empty() || signatures.is_empty() {
        return Err(malformed);
    }
    if timestamp.abs_diff(clock.now_unix) > clock.tolerance_seconds {
        return Err(Rejection::OutsideTolerance);
    }
    Ok(Presented {
        id: headers.id,
        timestamp: headers.timestamp,
        signatures,
    })
}

impl Presented<'_> {
    /// Whether one of `secrets` signed `body` so.
    pub(crate) fn verify<S: AsRef<str>>(&self, body: &[u8], secrets: &[S]) -> Result<(), Rejection> {
        let signed = |secret: &S| {
            let mac = mac(&key(secret.as_ref()), self.id, self.timestamp, body);
            self.signatures
                .iter()
                .any(|signature| mac.clone().verify_slice(signature).is_ok())
        };
        if secrets.iter().any(signed) {
            Ok(())
        } else {
            Err(Rejection::Mismatch(Scheme::StandardWebhooks))
        }
    }
}

/// Unix seconds written as 1 to 18 ASCII digits (so any fits an `i64`).
fn unix_seconds(text: &str) -> Option<i64> {
    if !(1..=18).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    // The specification's published test vector.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: i64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn verify(headers: &Headers<'_>, body: &[u8], secrets: &[&str], clock: Clock) -> Result<(), Rejection> {
        present(headers, clock)?.verify(body, secrets)
    }

    fn at(now_unix: i64) -> Clock {
        Clock {
            now_unix,
            tolerance_seconds: 300,
        }
    }

    fn check(signature: &str, timestamp: &str, now: i64) -> Result<(), Rejection> {
        let headers = Headers {
            id: ID,
            timestamp,
            signature,
        };
        verify(&headers, BODY, &["some-other-secret", SECRET], at(now))
    }

    #[test]
    fn the_published_vector_signs_and_verifies() {
        assert_eq!(sign(SECRET, ID, TIMESTAMP, BODY), SIGNATURE);
        assert_eq!(check(SIGNATURE, "1649367553", TIMESTAMP), Ok(()));
    }

    #[test]
    fn other_versions_are_skipped_and_any_v1_entry_may_match() {
        let entries = format!("v1a,bm90LWVkMjU1MTk= v1,AAAA {SIGNATURE}");
        assert_eq!(check(&entries, "1649367553", TIMESTAMP), Ok(()));
        assert_eq!(
            check("v1a,bm90LWVkMjU1MTk=", "1649367553", TIMESTAMP),
            Err(Rejection::Malformed(Scheme::StandardWebhooks))
        );
    }

    #[test]
    fn the_window_holds_at_both_edges() {
        assert_eq!(check(SIGNATURE, "1649367553", TIMESTAMP + 300), Ok(()));
        assert_eq!(check(SIGNATURE, "1649367553", TIMESTAMP - 300), Ok(()));
        assert_eq!(
            check(SIGNATURE, "1649367553", TIMESTAMP + 301),
            Err(Rejection::OutsideTolerance)
        );
        assert_eq!(
            check(SIGNATURE, "1649367553", TIMESTAMP - 301),
            Err(Rejection::OutsideTolerance)
        );
    }

    #[test]
    fn a_changed_id_timestamp_or_body_fails() {
        let headers = Headers {
            id: "msg_other",
            timestamp: "1649367553",
            signature: SIGNATURE,
        };
        assert_eq!(
            verify(&headers, BODY, &[SECRET], at(TIMESTAMP)),
            Err(Rejection::Mismatch(Scheme::StandardWebhooks))
        );
        assert_eq!(
            check(SIGNATURE, "1649367554", TIMESTAMP),
            Err(Rejection::Mismatch(Scheme::StandardWebhooks))
        );
        let headers = Headers {
            id: ID,
            timestamp: "1649367553",
            signature: SIGNATURE,
        };
        assert_eq!(
            verify(&headers, b"{}", &[SECRET], at(TIMESTAMP)),
            Err(Rejection::Mismatch(Scheme::StandardWebhooks))
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        for timestamp in ["", "-1", "+1649367553", "1649367553.0", "abc"] {
            assert_eq!(
                check(SIGNATURE, timestamp, TIMESTAMP),
                Err(Rejection::Malformed(Scheme::StandardWebhooks)),
                "{timestamp:?}"
            );
        }
        assert_eq!(
            check("", "1649367553", TIMESTAMP),
            Err(Rejection::Malformed(Scheme::StandardWebhooks))
        );
    }

    #[test]
    fn a_secret_without_the_prefix_keys_with_its_text() {
        assert_eq!(key("plain"), b"plain");
        assert_eq!(key("whsec_not base64!"), b"whsec_not base64!");
        let signature = sign("plain", ID, TIMESTAMP, BODY);
        let headers = Headers {
            id: ID,
            timestamp: "1649367553",
            signature: &signature,
        };
        assert_eq!(verify(&headers, BODY, &["plain"], at(TIMESTAMP)), Ok(()));
    }
}
