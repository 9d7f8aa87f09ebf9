//! `/webhook/whatsapp`: the WhatsApp Cloud API's own deliveries.
//!
//! `GET` is Meta's subscription handshake: with `hub.mode=subscribe` and
//! `hub.verify_token` equal to `WHATSAPP_VERIFY_TOKEN`, the answer is
//! `hub.challenge` as plain text; anything else is 403. `POST` is a
//! notification, verified by `X-Hub-Signature-256` under any configured
//! secret (Meta's app secret is one): every `entry[].changes[].value.messages[]`
//! element becomes one message, all stored in one transaction, exactly once
//! per `message_id` however often Meta redelivers; `statuses[]` are counted,
//! not stored.

use serde_json::{Map, Value};

use crate::bindings::inlet::service::log::{self, FieldValue, Level};
use crate::bindings::inlet::service::metrics::{self, WebhookResult};
use crate::bindings::inlet::service::settings;
use crate::bindings::inlet::service::storage::{self, InsertOutcome};
use crate::payload::{MAX_ID_CHARS, MAX_MSISDN_CHARS, MAX_TEXT_CHARS, too_long};
use crate::problem::FieldError;
use crate::query;
use crate::response::{Acknowledged, Response};

/// `object` of a WhatsApp Business Account notification.
pub(crate) const OBJECT: &str = "whatsapp_business_account";
/// Most messages one delivery may carry (Meta batches up to 1000 updates;
/// `storage.insert-batch` takes as many).
pub(crate) const MAX_MESSAGES: usize = 1000;
/// The parts of a message that may carry its text: the part's name and its
/// text field (`text.body`, or a media `caption`).
pub(crate) const TEXT_PARTS: [(&str, &str); 4] = [
    ("text", "body"),
    ("image", "caption"),
    ("video", "caption"),
    ("document", "caption"),
];
/// Most digits of a `timestamp` (Unix seconds): 11 reach year 5138, and
/// every such instant prints as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) const MAX_TIMESTAMP_DIGITS: usize = 11;

/// `GET`: the subscription handshake.
pub(crate) fn verify_subscription(query_string: &str) -> Response {
    let (mut mode, mut token, mut challenge) = (None, None, None);
    for (key, value) in query::pairs(query_string) {
        let slot = match key.as_str() {
            "hub.mode" => &mut mode,
            "hub.verify_token" => &mut token,
            "hub.challenge" => &mut challenge,
            _ => continue,
        };
        *slot = Some(query::decode(value, true));
    }
    // An empty token would let any handshake without one through.
    let expected = settings::whatsapp_verify_token().filter(|t| !t.is_empty());
    let verified = mode.as_deref() == Some("subscribe")
        && matches!((&expected, &token), (Some(expected), Some(token)) if same(expected, token));
    match challenge {
        Some(challenge) if verified => Response::plain(200, challenge),
        _ => {
            log::escalate(Level::Warn);
            Response::detail(403, "verification failed")
        }
    }
}

/// Compares in time that depends on the lengths only.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST`: a notification whose signature verified.
pub(crate) fn handle(body: &[u8]) -> Response {
    let delivery = match parse(body) {
        Ok(delivery) => delivery,
        Err(errors) => {
            log::escalate(Level::Warn);
            metrics::record_webhook(WebhookResult::ValidationError);
            return Response::unprocessable(&errors);
        }
    };
    metrics::record_whatsapp_statuses(delivery.statuses);
    log::annotate("messages", &FieldValue::Number(delivery.messages.len() as i64));
    log::annotate("statuses", &FieldValue::Number(i64::from(delivery.statuses)));
    if delivery.messages.is_empty() {
        return ok();
    }
    match storage::insert_batch(&delivery.messages) {
        Ok(outcomes) => {
            for outcome in &outcomes {
                metrics::record_webhook(match outcome {
                    InsertOutcome::Created => WebhookResult::Created,
                    InsertOutcome::Duplicate => WebhookResult::Duplicate,
                });
            }
            let duplicates = outcomes.iter().filter(|o| **o == InsertOutcome::Duplicate).count();
            log::annotate("duplicates", &FieldValue::Number(duplicates as i64));
            ok()
        }
        Err(error) => {
            log::event(Level::Error, &format!("storing a WhatsApp delivery failed: {error:?}"));
            metrics::record_webhook(WebhookResult::StorageError);
            Response::storage_failure(&error)
        }
    }
}

fn ok() -> Response {
    Response::json(200, &Acknowledged { status: "ok" })
}

/// What a valid notification carries.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub messages: Vec<storage::Message>,
    pub statuses: u32,
}

/// Parses and validates a notification, collecting every error (at its
/// `loc` in the body).
pub(crate) fn parse(body: &[u8]) -> Result<Delivery, Vec<FieldError>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        vec![FieldError::new(
            "body",
            None,
            "json_invalid",
            format!("JSON decode error: {e}"),
        )]
    })?;
    let mut walk = Walk::default();
    let root = walk.object(&value, &[]);
    let mut delivery = Delivery {
        messages: Vec::new(),
        statuses: 0,
    };
    if let Some(root) = root {
        match root.get("object") {
            Some(Value::String(object)) if object == OBJECT => {}
            _ => walk.error(&["object"], "literal_error", format!("Input should be '{OBJECT}'")),
        }
        for (e, entry) in walk.list(root, &[], "entry").into_iter().enumerate() {
            let at = [Segment::from("entry"), e.into()];
            let Some(entry) = walk.object(entry, &at) else { continue };
            for (c, change) in walk.list(entry, &at, "changes").into_iter().enumerate() {
                let at = [at.as_slice(), &["changes".into(), c.into()]].concat();
                let Some(change) = walk.object(change, &at) else {
                    continue;
                };
                let at = [at.as_slice(), &["value".into()]].concat();
                let Some(value) = change.get("value").and_then(|v| walk.object(v, &at)) else {
                    walk.error(&at, "missing", "Field required");
                    continue;
                };
                walk.change(value, &at, &mut delivery);
            }
        }
    }
    if delivery.messages.len() > MAX_MESSAGES {
        walk.error(
            &["entry"],
            "too_long",
            format!("A delivery carries at most {MAX_MESSAGES} messages"),
        );
    }
    if walk.errors.is_empty() {
        Ok(delivery)
    } else {
        Err(walk.errors)
    }
}

/// A step of a `loc`: a key or a list index.
#[derive(Clone)]
struct Segment(String);

impl From<&str> for Segment {
    fn from(key: &str) -> Self {
        Self(key.to_owned())
    }
}

impl From<usize> for Segment {
    fn from(index: usize) -> Self {
        Self(index.to_string())
    }
}

/// Collects the errors of one notification as it is walked.
#[derive(Default)]
struct Walk {
    errors: Vec<FieldError>,
}

impl Walk {
    fn error(&mut self, at: &[impl Clone + Into<Segment>], kind: &'static str, msg: impl Into<String>) {
        let loc = at.iter().cloned().map(|s| s.into().0);
        self.errors.push(FieldError::at(loc, kind, msg));
    }

    fn object<'a>(&mut self, value: &'a Value, at: &[Segment]) -> Option<&'a Map<String, Value>> {
        let object = value.as_object();
        if object.is_none() {
            self.error(
                at,
                "model_attributes_type",
                "Input should be a valid dictionary or object",
            );
        }
        object
    }

    /// The list under `key` (absent: empty).
    fn list<'a>(&mut self, object: &'a Map<String, Value>, at: &[Segment], key: &str) -> Vec<&'a Value> {
        match object.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(_) => {
                self.error(
                    &[at, &[key.into()]].concat(),
                    "list_type",
                    "Input should be a valid list",
                );
                Vec::new()
            }
        }
    }

    /// One `changes[].value`: its messages and its statuses' count.
    fn change(&mut self, value: &Map<String, Value>, at: &[Segment], delivery: &mut Delivery) {
        let statuses = self.list(value, at, "statuses");
        for (n, status) in statuses.iter().enumerate() {
            self.object(status, &[at, &["statuses".into(), n.into()]].concat());
        }
        let statuses = statuses.len();
        delivery.statuses = delivery
            .statuses
            .saturating_add(u32::try_from(statuses).unwrap_or(u32::MAX));
        let messages = self.list(value, at, "messages");
        // Checked on every change: Meta always sends it.
        let to = self.recipient(value, at);
        for (m, message) in messages.into_iter().enumerate() {
            let at = [at, &["messages".into(), m.into()]].concat();
            if let (Some(message), Some(to)) = (self.message(message, &at), &to) {
                delivery.messages.push(storage::Message {
                    to: to.clone(),
                    ..message
                });
            }
        }
    }

    /// `+` and the digits of `metadata.display_phone_number`.
    fn recipient(&mut self, value: &Map<String, Value>, at: &[Segment]) -> Option<String> {
        let at = [at, &["metadata".into(), "display_phone_number".into()]].concat();
        let number = value.get("metadata").and_then(|m| m.get("display_phone_number"));
        let digits: String = number
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if digits.is_empty() {
            self.error(&at, "missing", "A phone number with digits is required");
            return None;
        }
        if number
            .and_then(Value::as_str)
            .is_some_and(|n| n.chars().count() >= MAX_MSISDN_CHARS)
        {
            self.error(&at, "string_too_long", too_long(MAX_MSISDN_CHARS - 1));
            return None;
        }
        Some(format!("+{digits}"))
    }

    /// One `messages[]` element, `to` left empty.
    fn message(&mut self, value: &Value, at: &[Segment]) -> Option<storage::Message> {
        let message = self.object(value, at)?;
        let field = |key: &str| [at, &[key.into()]].concat();
        let id = self.message_id(message, at);
        let from = self.stored_sender(message, at);
        if message.get("type").is_some_and(|kind| !kind.is_string()) {
            self.error(&field("type"), "string_type", "Input should be a valid string");
        }
        for (part, text_field) in TEXT_PARTS {
            self.text_part(message.get(part), &field(part), text_field);
        }
        let ts = timestamp(message.get("timestamp"));
        if ts.is_none() {
            self.error(
                &field("timestamp"),
                "value_error",
                "Unix seconds, as a string of digits, are required",
            );
        }
        // Each part's length was checked where it is (`text_part`).
        let text = text(message);
        Some(storage::Message {
            message_id: id?,
            from: from?,
            to: String::new(),
            ts: ts?,
            text: text.filter(|t| t.chars().count() <= MAX_TEXT_CHARS),
        })
    }

    /// The message's `id`: a string of 1 to `MAX_ID_CHARS` characters.
    fn message_id(&mut self, message: &Map<String, Value>, at: &[Segment]) -> Option<String> {
        let at = [at, &["id".into()]].concat();
        match message.get("id").and_then(Value::as_str) {
            None | Some("") => {
                self.error(&at, "string_too_short", "A non-empty string is required");
                None
            }
            Some(id) if id.chars().count() > MAX_ID_CHARS => {
                self.error(&at, "string_too_long", too_long(MAX_ID_CHARS));
                None
            }
            Some(id) => Some(id.to_owned()),
        }
    }

    /// The sender as stored (see `sender`), each of `from` and
    /// `from_user_id` within its bound where it is given.
    fn stored_sender(&mut self, message: &Map<String, Value>, at: &[Segment]) -> Option<String> {
        let field = |key: &str| [at, &[key.into()]].concat();
        let mut from = sender(message);
        if from.is_none() {
            self.error(
                &field("from"),
                "string_pattern_mismatch",
                "Digits, or a from_user_id, are required",
            );
        }
        // Stored with a `+`, the digits may be one fewer than a user id.
        for (key, most) in [("from", MAX_MSISDN_CHARS - 1), ("from_user_id", MAX_MSISDN_CHARS)] {
            if message
                .get(key)
                .and_then(Value::as_str)
                .is_some_and(|value| value.chars().count() > most)
            {
                self.error(&field(key), "string_too_long", too_long(most));
                from = None;
            }
        }
        from
    }

    /// A part that may carry text (`text`, a media part): an object whose
    /// `text_field`, when there, is a string of at most `MAX_TEXT_CHARS`.
    fn text_part(&mut self, part: Option<&Value>, at: &[Segment], text_field: &str) {
        match part {
            None => {}
            Some(Value::Object(object)) if object.get(text_field).is_some_and(|text| !text.is_string()) => {
                let at = [at, &[text_field.into()]].concat();
                self.error(&at, "string_type", "Input should be a valid string");
            }
            Some(Value::Object(object))
                if object
                    .get(text_field)
                    .and_then(Value::as_str)
                    .is_some_and(|text| text.chars().count() > MAX_TEXT_CHARS) =>
            {
                let at = [at, &[text_field.into()]].concat();
                self.error(&at, "string_too_long", too_long(MAX_TEXT_CHARS));
            }
            Some(Value::Object(_)) => {}
            Some(_) => self.error(
                at,
                "model_attributes_type",
                "Input should be a valid dictionary or object",
            ),
        }
    }
}

/// `+` and the sender's digits; for a user who shares no phone number,
/// their business-scoped user id (`from_user_id`) as it is. A
/// `from_user_id` that is there must be a non-empty string either way.
fn sender(message: &Map<String, Value>) -> Option<String> {
    let user_id = match message.get("from_user_id") {
        None => None,
        Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
        Some(_) => return None,
    };
    match message.get("from") {
        Some(Value::String(digits)) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(format!("+{digits}"))
        }
        Some(_) => None,
        None => user_id,
    }
}

/// Unix seconds (a string of up to `MAX_TIMESTAMP_DIGITS` digits, or such
/// a number) as `YYYY-MM-DDTHH:MM:SSZ`.
fn timestamp(value: Option<&Value>) -> Option<storage::Timestamp> {
    let seconds: i64 = match value? {
        Value::String(text)
            if (1..=MAX_TIMESTAMP_DIGITS).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            text.parse().ok()?
        }
        // JSON Schema's integers include `623.0`.
        Value::Number(number) => number
            .as_i64()
            .or_else(|| {
                number
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                    .map(|f| f as i64)
            })
            .filter(|s| (0..=max_timestamp()).contains(s))?,
        _ => return None,
    };
    let instant = chrono::DateTime::from_timestamp(seconds, 0)?;
    Some(storage::Timestamp {
        text: instant.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        unix_micros: seconds.checked_mul(1_000_000)?,
    })
}

/// The largest timestamp of `MAX_TIMESTAMP_DIGITS` digits.
pub(crate) fn max_timestamp() -> i64 {
    10_i64.pow(MAX_TIMESTAMP_DIGITS as u32) - 1
}

/// `text.body` for a text message, the caption of captioned media, else none.
fn text(message: &Map<String, Value>) -> Option<String> {
    let kind = message.get("type").and_then(Value::as_str)?;
    let (part, field) = TEXT_PARTS.into_iter().find(|(part, _)| *part == kind)?;
    message.get(part)?.get(field)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn notification(messages: Value, statuses: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "1 555 078 3881", "phone_number_id": "106540352242922"},
                "contacts": [{"profile": {"name": "Kerry"}, "wa_id": "16505551234"}],
                "messages": messages,
                "statuses": statuses,
            }}]}]
        }))
        .unwrap()
    }

    #[test]
    fn each_message_becomes_one_with_its_text_or_caption() {
        let body = notification(
            json!([
                {"from": "16505551234", "id": "wamid.1", "timestamp": "1736935200", "type": "text", "text": {"body": "Hello"}},
                {"from": "16505551234", "id": "wamid.2", "timestamp": "1736935201", "type": "image",
                 "image": {"caption": "a photo", "mime_type": "image/jpeg", "id": "img"}},
                {"from_user_id": "BR.1502576394655843", "id": "wamid.3", "timestamp": 1736935202, "type": "sticker", "sticker": {}},
            ]),
            json!([{"id": "wamid.out", "status": "read"}, {"id": "wamid.out", "status": "delivered"}]),
        );
        let delivery = parse(&body).unwrap();
        assert_eq!(delivery.statuses, 2);
        let got: Vec<(&str, &str, &str, &str, Option<&str>)> = delivery
            .messages
            .iter()
            .map(|m| {
                (
                    m.message_id.as_str(),
                    m.from.as_str(),
                    m.to.as_str(),
                    m.ts.text.as_str(),
                    m.text.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "wamid.1",
                    "+16505551234",
                    "+15550783881",
                    "2025-01-15T10:00:00Z",
                    Some("Hello")
                ),
                (
                    "wamid.2",
                    "+16505551234",
                    "+15550783881",
                    "2025-01-15T10:00:01Z",
                    Some("a photo")
                ),
                (
                    "wamid.3",
                    "BR.1502576394655843",
                    "+15550783881",
                    "2025-01-15T10:00:02Z",
                    None
                ),
            ]
        );
        assert_eq!(delivery.messages[0].ts.unix_micros, 1_736_935_200_000_000);
    }

    #[test]
    fn a_notification_of_statuses_only_stores_nothing() {
        let delivery = parse(&notification(json!([]), json!([{"id": "w", "status": "sent"}]))).unwrap();
        assert_eq!((delivery.messages.len(), delivery.statuses), (0, 1));
    }

    fn locs(body: &[u8]) -> Vec<(String, &'static str)> {
        parse(body)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.loc.join("."), e.kind))
            .collect()
    }

    #[test]
    fn ids_and_numbers_are_bounded() {
        let widest = notification(
            json!([{"from": "1".repeat(MAX_MSISDN_CHARS - 1), "id": "😀".repeat(MAX_ID_CHARS), "timestamp": "1"}]),
            json!([]),
        );
        assert_eq!(parse(&widest).unwrap().messages.len(), 1);
        let body = notification(
            json!([
                {"from": "1650", "id": "w".repeat(MAX_ID_CHARS + 1), "timestamp": "1"},
                {"from": "1".repeat(MAX_MSISDN_CHARS), "id": "w2", "timestamp": "1"},
                {"from_user_id": "B".repeat(MAX_MSISDN_CHARS + 1), "id": "w3", "timestamp": "1"},
            ]),
            json!([]),
        );
        let at = "body.entry.0.changes.0.value.messages";
        assert_eq!(
            locs(&body),
            [
                (format!("{at}.0.id"), "string_too_long"),
                (format!("{at}.1.from"), "string_too_long"),
                (format!("{at}.2.from_user_id"), "string_too_long"),
            ]
        );
        let with_number = |digits: usize| {
            let mut value = serde_json::from_slice::<Value>(&widest).unwrap();
            value["entry"][0]["changes"][0]["value"]["metadata"]["display_phone_number"] = json!("1".repeat(digits));
            serde_json::to_vec(&value).unwrap()
        };
        let longest = parse(&with_number(MAX_MSISDN_CHARS - 1)).unwrap();
        assert_eq!(longest.messages[0].to.len(), MAX_MSISDN_CHARS);
        assert_eq!(
            locs(&with_number(MAX_MSISDN_CHARS)),
            [(
                "body.entry.0.changes.0.value.metadata.display_phone_number".to_owned(),
                "string_too_long"
            )]
        );
    }

    #[test]
    fn every_error_is_given_at_its_place() {
        let body = notification(
            json!([
                {"from": "+1650", "id": "", "timestamp": "soon", "type": "text", "text": {"body": "x".repeat(MAX_TEXT_CHARS + 1)}},
                "not an object",
            ]),
            json!([]),
        );
        assert_eq!(
            locs(&body),
            [
                (
                    "body.entry.0.changes.0.value.messages.0.id".to_owned(),
                    "string_too_short"
                ),
                (
                    "body.entry.0.changes.0.value.messages.0.from".to_owned(),
                    "string_pattern_mismatch"
                ),
                (
                    "body.entry.0.changes.0.value.messages.0.text.body".to_owned(),
                    "string_too_long"
                ),
                (
                    "body.entry.0.changes.0.value.messages.0.timestamp".to_owned(),
                    "value_error"
                ),
                (
                    "body.entry.0.changes.0.value.messages.1".to_owned(),
                    "model_attributes_type"
                ),
            ]
        );
        assert_eq!(locs(b"[]"), [("body".to_owned(), "model_attributes_type")]);
        assert_eq!(locs(b"{"), [("body".to_owned(), "json_invalid")]);
        let other = serde_json::to_vec(&json!({"object": "page", "entry": []})).unwrap();
        assert_eq!(locs(&other), [("body.object".to_owned(), "literal_error")]);
        let no_number = serde_json::to_vec(&json!({"object": OBJECT, "entry": [{"changes": [{"value": {
            "metadata": {}, "messages": [{"from": "1", "id": "w", "timestamp": "1"}]}}]}]}))
        .unwrap();
        assert_eq!(
            locs(&no_number),
            [(
                "body.entry.0.changes.0.value.metadata.display_phone_number".to_owned(),
                "missing"
            )]
        );
    }

    #[test]
    fn a_delivery_holds_at_most_the_batch_limit() {
        let one = json!({"from": "1", "id": "w", "timestamp": "1", "type": "text", "text": {"body": "hi"}});
        let body = notification(Value::Array(vec![one; MAX_MESSAGES + 1]), json!([]));
        assert_eq!(locs(&body), [("body.entry".to_owned(), "too_long")]);
    }

    #[test]
    fn the_verify_token_is_compared_whole() {
        assert!(same("token", "token"));
        assert!(!same("token", "tokem") && !same("token", "toke") && !same("", "t"));
    }
}
