//! Delivery to an HTTP(S) endpoint: a signed `POST` (Standard Webhooks, the
//! scheme Inlet verifies on `/webhook`). TLS is verified against the
//! bundled Mozilla roots (the runtime image has no system store); redirects
//! are not followed (hyper's client never does): a 3xx is a failed attempt.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::body::header_id;
use crate::secrets::WebhookSecret;

/// Most bytes of a receiver's answer read (and dropped), so that its
/// connection can be used again; a longer answer is not waited for.
const ANSWER_BYTES: usize = 64 * 1024;

/// A client for one endpoint.
pub(super) struct HttpDelivery {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: http::Uri,
    /// `Basic` credentials from the URL's user and password, if it has them.
    authorization: Option<HeaderValue>,
    secret: WebhookSecret,
}

impl HttpDelivery {
    /// A client for `url`, keeping up to `connections` idle connections and
    /// giving up on a connection attempt after `timeout`.
    pub(super) fn new(
        url: &url::Url,
        secret: WebhookSecret,
        connections: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        // ring rather than aws-lc-rs: no C toolchain beyond the one the
        // build has; its lack of post-quantum key exchange is the deprecation.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(connections)
            .build(https);
        let mut endpoint = url.clone();
        // Sent as a header, not in the request line.
        let _ = endpoint.set_username("");
        let _ = endpoint.set_password(None);
        Ok(Self {
            client,
            url: endpoint.as_str().parse()?,
            authorization: basic_credentials(url),
            secret,
        })
    }

    /// One attempt to deliver `body` as message `id`; the reason it failed
    /// otherwise. The caller bounds its time.
    pub(super) async fn deliver(&self, id: &str, body: Bytes) -> Result<(), String> {
        let webhook_id = header_id(id);
        let timestamp = chrono::Utc::now().timestamp();
        let signature = inlet_signature::standard::sign(self.secret.expose(), &webhook_id, timestamp, &body);
        let mut request = http::Request::post(self.url.clone());
        if let Some(credentials) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, credentials.clone());
        }
        let request = request
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("webhook-id", &webhook_id)
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature)
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let answer = self.client.request(request).await.map_err(|e| describe(&e))?;
        let status = answer.status();
        // Read what is small, so the connection can serve the next one.
        let _ = Limited::new(answer.into_body(), ANSWER_BYTES).collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("status {}", status.as_u16()))
        }
    }
}

/// `Authorization: Basic …` for a URL naming a user (and password).
fn basic_credentials(url: &url::Url) -> Option<HeaderValue> {
    use base64::Engine as _;
    if url.username().is_empty() {
        return None;
    }
    let decoded = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pair = format!(
        "{}:{}",
        decoded(url.username()),
        decoded(url.password().unwrap_or_default())
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// A client error as a reason: its chain of causes (a refused connection,
/// a TLS failure naming the certificate), never the URL.
fn describe(error: &hyper_util::client::legacy::Error) -> String {
    let mut reason = String::from(if error.is_connect() { "connect" } else { "request" });
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_in_the_url_becomes_basic_credentials() {
        let url = url::Url::parse("https://hook%20user:p%40ss@example.com/in").unwrap();
        let value = basic_credentials(&url).unwrap();
        // "hook user:p@ss"
        assert_eq!(value.to_str().unwrap(), "Basic aG9vayB1c2VyOnBAc3M=");
        assert!(basic_credentials(&url::Url::parse("https://example.com/in").unwrap()).is_none());
    }
}
