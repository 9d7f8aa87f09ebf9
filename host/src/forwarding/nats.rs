//! Delivery to NATS JetStream: a publish to the subject with `Nats-Msg-Id`
//! set to the message's id, so that the stream drops a redelivery inside
//! its duplicate window; the stream's ack is the delivery. The connection
//! is made, and remade, in the background: a broker that is down at
//! start-up or goes away makes attempts fail (and be retried), never
//! start-up or ingestion.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;

use super::body::header_id;

/// A JetStream publisher to one subject.
pub(super) struct NatsDelivery {
    jetstream: jetstream::Context,
    subject: async_nats::Subject,
}

impl NatsDelivery {
    /// A client for the server at `address` (`HOST:PORT`) that waits for
    /// an ack as long as an attempt may take (`timeout`), rather than the
    /// library's shorter default.
    pub(super) async fn connect(address: &str, subject: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("inlet")
            .retry_on_initial_connect()
            .connect(address)
            .await?;
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(timeout);
        let delivery = Self {
            jetstream,
            subject: subject.into(),
        };
        tokio::spawn(warn_without_stream(delivery.jetstream.clone(), subject.to_owned()));
        Ok(delivery)
    }

    /// One attempt to publish `body` as message `id`; the reason it failed
    /// otherwise. The caller bounds its time.
    pub(super) async fn deliver(&self, id: &str, body: Bytes) -> Result<(), String> {
        // The same injective form as HTTP's `webhook-id`: a line break in
        // an id cannot end the header block.
        let publish = PublishMessage::build().payload(body).message_id(header_id(id));
        let ack = self
            .jetstream
            .send_publish(self.subject.clone(), publish)
            .await
            .map_err(|e| format!("publish: {e}"))?;
        ack.await.map_err(|e| format!("ack: {e}"))?;
        Ok(())
    }
}

/// Says once, when the broker first answers, that no stream is bound to
/// the subject: every attempt would fail with "no responders" until one is;
/// or, when it never answers the question (down, or JetStream not enabled),
/// says that.
async fn warn_without_stream(jetstream: jetstream::Context, subject: String) {
    const TRIES: u32 = 30;
    for _ in 0..TRIES {
        match jetstream.stream_by_subject(subject.as_str()).await {
            Ok(stream) => {
                tracing::info!(%stream, %subject, "forwarding to JetStream stream");
                return;
            }
            Err(error) if error.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound => {
                tracing::warn!(%subject, "no JetStream stream is bound to FORWARD_URL's subject: deliveries fail until one is");
                return;
            }
            // Not connected yet: ask again.
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
    tracing::warn!(%subject, "the NATS server does not say which JetStream stream is bound to FORWARD_URL's subject (down, or JetStream not enabled?)");
}
