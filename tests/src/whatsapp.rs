//! WhatsApp Cloud API notifications as Meta sends them, for the suites and
//! the benchmark.

use inlet_signature::{SigningKey, hex_hmac};
use serde_json::{Value, json};

use crate::SECRET;

/// A notification from the business number +1 555 078 3881 carrying
/// `messages` and `statuses` delivery receipts.
pub fn notification(messages: Vec<Value>, statuses: usize) -> String {
    let statuses: Vec<Value> = (0..statuses)
        .map(|n| json!({"id": format!("wamid.out{n}"), "status": "delivered", "timestamp": "1736935200", "recipient_id": "16505551234"}))
        .collect();
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Kerry"}, "wa_id": "16505551234"}],
            "messages": messages,
            "statuses": statuses,
        }}]}]
    })
    .to_string()
}

/// A text message `id` from `from`, sent `n` seconds after 2025-01-15T10:00:00Z.
pub fn text_message(id: &str, from: &str, n: usize, text: &str) -> Value {
    json!({"from": from, "id": id, "timestamp": (1_736_935_200 + n).to_string(), "type": "text", "text": {"body": text}})
}

/// The `X-Hub-Signature-256` Meta would send with `body`.
pub fn signature(body: &str) -> String {
    hex_hmac::hub_header(&SigningKey::new(SECRET), body.as_bytes())
}
