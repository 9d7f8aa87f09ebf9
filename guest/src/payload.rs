//! The `POST /webhook` body: parsing and validation.

use serde_json::{Map, Value};

use crate::problem::FieldError;
use crate::timestamp::{self, UtcTimestamp};

/// The longest accepted `text`, in characters (Unicode scalar values).
pub(crate) const MAX_TEXT_CHARS: usize = 4096;

/// The longest `message_id`, in characters: within the storage interface's
/// 1024 bytes whatever the characters (UTF-8 takes at most 4 bytes each).
pub(crate) const MAX_ID_CHARS: usize = 256;

/// The longest `from` and `to` as stored (`+` and digits, or a WhatsApp
/// user id): within the storage interface's 256 bytes.
pub(crate) const MAX_MSISDN_CHARS: usize = 64;

/// What `from` and `to` must match (`is_msisdn`), as a JSON Schema pattern.
pub(crate) const MSISDN_PATTERN: &str = r"^\+[0-9]+$";

/// A webhook message that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InboundMessage {
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub ts: UtcTimestamp,
    pub text: Option<String>,
}

/// A body that failed validation: every reason, plus the `message_id` when
/// the body carried a usable one (for the log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub errors: Vec<FieldError>,
    pub message_id: Option<String>,
}

/// Parses and validates a raw body. Unknown fields are ignored.
pub(crate) fn parse(body: &[u8]) -> Result<InboundMessage, Rejection> {
    let value: Value = serde_json::from_slice(body).map_err(|e| Rejection {
        errors: vec![FieldError::new(
            "body",
            None,
            "json_invalid",
            format!("JSON decode error: {e}"),
        )],
        message_id: None,
    })?;
    let Value::Object(fields) = value else {
        return Err(Rejection {
            errors: vec![FieldError::new(
                "body",
                None,
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
            )],
            message_id: None,
        });
    };
    validate(&fields)
}

fn validate(fields: &Map<String, Value>) -> Result<InboundMessage, Rejection> {
    let mut errors = Vec::new();
    let mut check = |result: Result<Option<String>, FieldError>| match result {
        Ok(value) => value,
        Err(error) => {
            errors.push(error);
            None
        }
    };
    let message_id = check(
        required_string(fields, "message_id")
            .and_then(non_empty("message_id"))
            .and_then(at_most("message_id", MAX_ID_CHARS)),
    );
    let from = check(
        required_string(fields, "from")
            .and_then(msisdn("from"))
            .and_then(at_most("from", MAX_MSISDN_CHARS)),
    );
    let to = check(
        required_string(fields, "to")
            .and_then(msisdn("to"))
            .and_then(at_most("to", MAX_MSISDN_CHARS)),
    );
    let ts = check(required_string(fields, "ts")).map(|text| timestamp::parse(&text));
    let text = check(optional_string(fields, "text").and_then(at_most("text", MAX_TEXT_CHARS)));
    let ts = match ts {
        Some(Ok(ts)) => Some(ts),
        Some(Err(why)) => {
            errors.push(FieldError::new(
                "body",
                Some("ts"),
                "value_error",
                format!("Value error, ts {}", why.message()),
            ));
            None
        }
        None => None,
    };
    match (message_id, from, to, ts) {
        (Some(message_id), Some(from), Some(to), Some(ts)) if errors.is_empty() => Ok(InboundMessage {
            message_id,
            from,
            to,
            ts,
            text,
        }),
        (message_id, ..) => Err(Rejection { errors, message_id }),
    }
}

fn required_string(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, FieldError> {
    match fields.get(name) {
        None => Err(FieldError::new("body", Some(name), "missing", "Field required")),
        Some(value) => string(name, value).map(Some),
    }
}

fn optional_string(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, FieldError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => string(name, value).map(Some),
    }
}

fn string(name: &str, value: &Value) -> Result<String, FieldError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(FieldError::new(
            "body",
            Some(name),
            "string_type",
            "Input should be a valid string",
        )),
    }
}

fn non_empty(name: &'static str) -> impl Fn(Option<String>) -> Result<Option<String>, FieldError> {
    move |value| match value {
        Some(s) if s.is_empty() => Err(FieldError::new(
            "body",
            Some(name),
            "string_too_short",
            "String should have at least 1 character",
        )),
        other => Ok(other),
    }
}

fn msisdn(name: &'static str) -> impl Fn(Option<String>) -> Result<Option<String>, FieldError> {
    move |value| match value {
        Some(s) if !is_msisdn(&s) => Err(FieldError::new(
            "body",
            Some(name),
            "string_pattern_mismatch",
            format!("String should match pattern '{MSISDN_PATTERN}'"),
        )),
        other => Ok(other),
    }
}

/// `+` followed by one or more ASCII digits, nothing else.
pub(crate) fn is_msisdn(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

fn at_most(name: &'static str, most: usize) -> impl Fn(Option<String>) -> Result<Option<String>, FieldError> {
    move |value| match value {
        Some(s) if s.chars().count() > most => {
            Err(FieldError::new("body", Some(name), "string_too_long", too_long(most)))
        }
        other => Ok(other),
    }
}

/// What a `string_too_long` error says, in pydantic's words.
pub(crate) fn too_long(most: usize) -> String {
    format!("String should have at most {most} characters")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn sample() -> Value {
        json!({"message_id": "m1", "from": "+919876543210", "to": "+14155550100",
               "ts": "2025-01-15T10:00:00Z", "text": "Hello"})
    }

    fn kinds(rejection: Rejection) -> Vec<(String, &'static str)> {
        rejection
            .errors
            .into_iter()
            .map(|e| (serde_json::to_string(&e.loc).unwrap(), e.kind))
            .collect()
    }

    #[test]
    fn accepts_the_sample_and_ignores_unknown_fields() {
        let mut value = sample();
        value["extra"] = json!({"nested": [1, 2]});
        let message = parse(&body(value)).unwrap();
        assert_eq!(message.message_id, "m1");
        assert_eq!(message.from, "+919876543210");
        assert_eq!(message.to, "+14155550100");
        assert_eq!(message.ts.text, "2025-01-15T10:00:00Z");
        assert_eq!(message.text.as_deref(), Some("Hello"));
    }

    #[test]
    fn text_may_be_absent_or_null() {
        let mut value = sample();
        value["text"] = Value::Null;
        assert_eq!(parse(&body(value.clone())).unwrap().text, None);
        value.as_object_mut().unwrap().remove("text");
        assert_eq!(parse(&body(value)).unwrap().text, None);
    }

    #[test]
    fn text_limit_counts_characters_not_bytes() {
        let mut value = sample();
        value["text"] = json!("é".repeat(MAX_TEXT_CHARS));
        assert!(parse(&body(value.clone())).is_ok());
        value["text"] = json!("a".repeat(MAX_TEXT_CHARS + 1));
        assert_eq!(
            kinds(parse(&body(value)).unwrap_err()),
            [(r#"["body","text"]"#.into(), "string_too_long")]
        );
    }

    #[test]
    fn ids_and_numbers_are_bounded_in_characters() {
        let mut value = sample();
        value["message_id"] = json!("😀".repeat(MAX_ID_CHARS));
        value["from"] = json!(format!("+{}", "1".repeat(MAX_MSISDN_CHARS - 1)));
        value["to"] = value["from"].clone();
        assert!(parse(&body(value.clone())).is_ok());
        value["message_id"] = json!("m".repeat(MAX_ID_CHARS + 1));
        value["from"] = json!(format!("+{}", "1".repeat(MAX_MSISDN_CHARS)));
        value["to"] = value["from"].clone();
        assert_eq!(
            kinds(parse(&body(value)).unwrap_err()),
            [
                (r#"["body","message_id"]"#.into(), "string_too_long"),
                (r#"["body","from"]"#.into(), "string_too_long"),
                (r#"["body","to"]"#.into(), "string_too_long"),
            ]
        );
    }

    #[test]
    fn not_json_or_not_an_object() {
        for raw in [&b"not json"[..], b"", b"{\"message_id\":", b"\xff\xfe"] {
            assert_eq!(kinds(parse(raw).unwrap_err()), [(r#"["body"]"#.into(), "json_invalid")]);
        }
        for raw in [&b"[]"[..], b"\"m1\"", b"42", b"null"] {
            assert_eq!(
                kinds(parse(raw).unwrap_err()),
                [(r#"["body"]"#.into(), "model_attributes_type")]
            );
        }
    }

    #[test]
    fn reports_every_bad_field_at_once() {
        let rejection = parse(b"{}").unwrap_err();
        assert_eq!(rejection.message_id, None);
        let found = kinds(rejection);
        for field in ["message_id", "from", "to", "ts"] {
            assert!(
                found.contains(&(format!(r#"["body","{field}"]"#), "missing")),
                "{field}: {found:?}"
            );
        }
        assert_eq!(found.len(), 4);
    }

    #[test]
    fn field_rules() {
        let cases: [(&str, Value, &str); 12] = [
            ("message_id", json!(""), "string_too_short"),
            ("message_id", json!(7), "string_type"),
            ("message_id", Value::Null, "string_type"),
            ("from", json!("919876543210"), "string_pattern_mismatch"),
            ("from", json!("+"), "string_pattern_mismatch"),
            ("from", json!("+91 98"), "string_pattern_mismatch"),
            ("to", json!("+1415x"), "string_pattern_mismatch"),
            ("to", json!("+١٢٣"), "string_pattern_mismatch"),
            ("ts", json!("2025-01-15T10:00:00"), "value_error"),
            ("ts", json!("2025-02-30T10:00:00Z"), "value_error"),
            ("ts", json!(1736935200), "string_type"),
            ("text", json!(["Hello"]), "string_type"),
        ];
        for (field, value, kind) in cases {
            let mut doc = sample();
            doc[field] = value.clone();
            let rejection = parse(&body(doc)).unwrap_err();
            assert_eq!(
                kinds(rejection.clone()),
                [(format!(r#"["body","{field}"]"#), kind)],
                "{field}={value}"
            );
            let expected_id = (field != "message_id").then(|| "m1".to_owned());
            assert_eq!(rejection.message_id, expected_id);
        }
    }
}
