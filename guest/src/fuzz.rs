//! Fuzz targets for the guest's pure logic (bolero). Under `cargo test` each
//! target replays its kept corpus (`src/__fuzz__/…/corpus`) and a bounded
//! number of random inputs; `cargo bolero test fuzz::…` (nightly, libFuzzer)
//! runs the same targets coverage-guided and grows the corpus.
//!
//! Each target checks that nothing panics and that nothing invalid is
//! accepted: whatever a parser lets through satisfies every rule.

use inlet_signature::{Signature, SigningKey};

use crate::{payload, query, timestamp};

#[test]
fn webhook_payload() {
    let msisdn = regex::Regex::new(payload::MSISDN_PATTERN).expect("a valid pattern");
    bolero::check!().for_each(|bytes: &[u8]| {
        if let Ok(text) = std::str::from_utf8(bytes) {
            assert_eq!(payload::is_msisdn(text), msisdn.is_match(text), "{text:?}");
        }
        if let Ok(message) = payload::parse(bytes) {
            assert!(!message.message_id.is_empty());
            assert!(payload::is_msisdn(&message.from) && payload::is_msisdn(&message.to));
            assert_eq!(timestamp::parse(&message.ts.text).as_ref(), Ok(&message.ts));
            assert!(
                message
                    .text
                    .is_none_or(|t| t.chars().count() <= payload::MAX_TEXT_CHARS)
            );
            assert!(serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes).is_ok());
        }
    });
}

#[test]
fn listing_query() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let Ok(text) = std::str::from_utf8(bytes) else { return };
        if let Ok(q) = query::parse(text) {
            assert!((1..=query::MAX_LIMIT).contains(&q.limit));
            assert!(q.offset <= query::MAX_OFFSET);
            assert!(q.from.as_deref() != Some("") && q.q.as_deref() != Some(""));
        }
    });
}

#[test]
fn utc_timestamp() {
    let documented = regex::Regex::new(timestamp::PATTERN).expect("a valid pattern");
    bolero::check!().for_each(|bytes: &[u8]| {
        let Ok(text) = std::str::from_utf8(bytes) else { return };
        // The document's pattern admits every accepted timestamp; what it
        // refuses, the parser refuses too (the calendar is `format`'s part).
        assert!(timestamp::parse(text).is_err() || documented.is_match(text), "{text:?}");
        if let Ok(ts) = timestamp::parse(text) {
            assert!(text.ends_with('Z') && text.as_bytes()[10] == b'T');
            let instant = chrono::DateTime::from_timestamp_micros(ts.unix_micros).expect("a representable instant");
            let rendered = instant.format("%Y-%m-%dT%H:%M:%S").to_string();
            assert_eq!(&text[..19], rendered, "the instant matches the text");
        }
    });
}

#[test]
fn signature_header() {
    let documented = regex::Regex::new(inlet_signature::hex_hmac::X_SIGNATURE_PATTERN).expect("a valid pattern");
    bolero::check!()
        .with_type::<(Vec<u8>, String)>()
        .for_each(|(body, header)| {
            let key = SigningKey::new("fuzz-secret");
            let verified = Signature::from_header(header).is_some_and(|s| key.verifies(body, &s));
            if verified {
                let header = header.trim();
                let digits = header.strip_prefix("sha256=").unwrap_or(header);
                assert_eq!(digits.to_ascii_lowercase(), key.sign(body));
            }
            let good = Signature::from_header(&key.sign(body)).expect("our own signature decodes");
            // Well formed as the document says (around the whitespace it trims).
            let well_formed = documented.is_match(header.trim());
            assert_eq!(Signature::from_header(header).is_some(), well_formed, "{header:?}");
            assert!(key.verifies(body, &good));
        });
}
