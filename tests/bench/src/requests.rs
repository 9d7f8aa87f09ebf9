//! The requests each scenario sends.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use inlet_e2e::{message, sign, whatsapp};

use crate::load::RequestFactory;

/// Senders the ingest traffic spreads over.
const SENDERS: u64 = 100;

/// Signed webhooks. Message ids are `bench-<tag>-<connection>-<n>`, so a
/// tag run for the first time creates every message; `distinct` bounds `n`
/// (a second run with the same tag and bound sends only duplicates).
pub(crate) fn webhooks(tag: &str, distinct: Option<u64>) -> RequestFactory {
    webhooks_signed(tag, distinct, sign)
}

/// `webhooks`, signed by `sign` (a server with another secret).
pub(crate) fn webhooks_signed(tag: &str, distinct: Option<u64>, sign: fn(&str) -> String) -> RequestFactory {
    let tag = tag.to_owned();
    Arc::new(move |connection, n| {
        let n = distinct.map_or(n, |bound| n % bound);
        let id = format!("bench-{tag}-{connection}-{n}");
        let from = format!("+9198765{:05}", (connection as u64 * 7919 + n) % SENDERS);
        let ts = format!("2025-01-15T{:02}:{:02}:{:02}Z", (n / 3600) % 24, (n / 60) % 60, n % 60);
        let text = format!("bench message {n} from connection {connection}");
        let body = message(&id, &from, &ts, Some(&text));
        Request::post("/webhook")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("x-signature", sign(&body))
            .body(Full::new(Bytes::from(body)))
            .expect("valid request")
    })
}

/// A WhatsApp Cloud API notification of `messages` text messages with
/// `text_chars` characters each, ids `wamid.<tag>.<n>`.
pub(crate) fn whatsapp_delivery(tag: &str, messages: usize, text_chars: usize) -> String {
    let text = "x".repeat(text_chars);
    let messages = (0..messages)
        .map(|n| {
            whatsapp::text_message(
                &format!("wamid.{tag}.{n}"),
                &format!("1650555{:04}", n % 1000),
                n,
                &text,
            )
        })
        .collect();
    whatsapp::notification(messages, 0)
}

/// The same GET over and over.
pub(crate) fn get(path_and_query: &str) -> RequestFactory {
    let uri = path_and_query.to_owned();
    Arc::new(move |_, _| {
        Request::get(uri.as_str())
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .expect("valid request")
    })
}
