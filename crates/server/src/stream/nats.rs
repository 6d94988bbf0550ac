//! The NATS JetStream sink.
//!
//! Events go to `patchaudit.events.<system>` (the system made safe by
//! [`super::subject_token`]) and alerts to `patchaudit.alerts.<rule>`, in
//! the stream `PATCHAUDIT`, which is created if missing. Every message
//! carries `Nats-Msg-Id`, so JetStream itself drops a message published
//! again within the stream's duplicate window (two minutes by default).
//! A batch is published without waiting message by message and then
//! awaited as a whole, so the round trips overlap.

use super::{Message, Sink, SinkError, Source};
use async_nats::jetstream::{self, message::PublishMessage};
use async_trait::async_trait;
use std::time::Duration;
use tokio::sync::Mutex;

/// The stream the sink publishes to.
pub const STREAM: &str = "PATCHAUDIT";
/// The subjects of that stream.
pub const SUBJECTS: [&str; 2] = ["patchaudit.events.>", "patchaudit.alerts.>"];

/// Publishes to NATS JetStream.
pub struct NatsSink {
    js: jetstream::Context,
    /// Whether the stream is known to exist; cleared after an error, since
    /// the broker may have lost it.
    ready: Mutex<bool>,
}

/// Connects to NATS without waiting for the server: the client keeps
/// reconnecting in the background, so a broker that is down at start is
/// the same as one that goes down later.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(5)))
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to NATS at {url}: {e}"))
}

impl NatsSink {
    /// A sink over an existing client.
    pub fn new(client: async_nats::Client) -> Self {
        NatsSink {
            js: jetstream::new(client),
            ready: Mutex::new(false),
        }
    }

    async fn ensure_stream(&self) -> Result<(), SinkError> {
        let mut ready = self.ready.lock().await;
        if *ready {
            return Ok(());
        }
        self.js
            .get_or_create_stream(jetstream::stream::Config {
                name: STREAM.into(),
                subjects: SUBJECTS.iter().map(|s| (*s).to_owned()).collect(),
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                SinkError::Unavailable(format!("creating the NATS stream {STREAM}: {e}"))
            })?;
        *ready = true;
        Ok(())
    }
}

/// The subject a message is published to.
pub fn subject(m: &Message) -> String {
    match m.source {
        Source::Events => format!("patchaudit.events.{}", super::subject_token(&m.key)),
        // Rules are this crate's own names (`bad_patch`), safe as they are.
        Source::Alerts => format!("patchaudit.alerts.{}", m.key),
    }
}

#[async_trait]
impl Sink for NatsSink {
    fn name(&self) -> &str {
        "nats"
    }

    async fn deliver(&self, batch: &[Message]) -> Result<(), SinkError> {
        self.ensure_stream().await?;
        let result = async {
            let mut acks = Vec::with_capacity(batch.len());
            for m in batch {
                let publish = PublishMessage::build()
                    .payload(bytes::Bytes::copy_from_slice(&m.body))
                    .message_id(&m.id)
                    .header("Content-Type", "application/json");
                acks.push(
                    self.js
                        .send_publish(subject(m), publish)
                        .await
                        .map_err(|e| format!("publishing {}: {e}", m.id))?,
                );
            }
            for ack in acks {
                ack.await.map_err(|e| format!("waiting for the ack: {e}"))?;
            }
            Ok::<_, String>(())
        }
        .await;
        if let Err(e) = result {
            *self.ready.lock().await = false;
            return Err(SinkError::Unavailable(format!("NATS: {e}")));
        }
        Ok(())
    }
}
