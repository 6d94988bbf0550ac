//! Ingest from a broker: `serve --consume-nats SUBJECT`.
//!
//! Agents publish events (one JSON object, a JSON array, or NDJSON with
//! `Content-Type: application/x-ndjson`) to a subject. The server reads
//! them through a durable JetStream consumer, `patchaudit-ingest`, and
//! records each message exactly as `POST /v1/events` would: the same
//! validation, the same all-or-nothing batch, the same idempotency.
//!
//! - A message is acknowledged only after its events are durable, so a
//!   crash before that means a redelivery, never a loss.
//! - An event without `event_id` gets `nats:<stream>:<stream seq>:<index>`,
//!   so a redelivered message is recorded once, not twice.
//! - A message that is invalid (or reuses an `event_id` with other
//!   content) goes to `patchaudit.deadletter.ingest` as a JSON envelope
//!   with the error and the original payload, and is acknowledged.
//! - When the database is unavailable the message is redelivered later.
//!
//! If no stream captures the subject yet, `PATCHAUDIT_INGEST` is created for
//! it, so messages published while the server is down wait in the broker.

use crate::api::{append, validate};
use crate::error::ApiError;
use crate::wire;
use crate::AppState;
use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use patchaudit_domain::EventId;
use std::time::Duration;
use tokio::sync::watch;

/// The durable consumer's name.
pub const CONSUMER: &str = "patchaudit-ingest";
/// The stream created for the subject when none captures it.
pub const INGEST_STREAM: &str = "PATCHAUDIT_INGEST";
/// Where invalid messages go.
pub const DEAD_LETTER_SUBJECT: &str = "patchaudit.deadletter.ingest";
const DEAD_LETTER_STREAM: &str = "PATCHAUDIT_DEADLETTER";

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Recorded (or already recorded): acknowledge.
    Recorded,
    /// Invalid: dead-letter it with this error, then acknowledge.
    Invalid(serde_json::Value),
    /// The ledger is unavailable: redeliver later.
    Retry(String),
}

/// Records one message's events as `recorded_by`, as `POST /v1/events`
/// would; events without an `event_id` get `<default_id>:<index>`. Shared
/// by every broker consumer.
pub(crate) async fn record(
    state: &AppState,
    payload: &[u8],
    ndjson: bool,
    default_id: &str,
    recorded_by: &str,
) -> Outcome {
    let decoded = if ndjson {
        wire::decode_ndjson(payload)
    } else {
        wire::decode_json(payload)
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(e) => {
            return Outcome::Invalid(serde_json::json!({
                "kind": "syntax",
                "detail": format!("malformed body at line {}, column {}: {}", e.line, e.column, e.message),
                "line": e.line,
                "column": e.column,
            }))
        }
    };
    let mut events = match validate(&state.config, decoded) {
        Ok(ev) => ev,
        Err(ApiError::Validation(errors)) => {
            return Outcome::Invalid(serde_json::json!({
                "kind": "validation",
                "detail": format!("{} validation error(s)", errors.len()),
                "errors": errors.iter().map(|e| serde_json::json!({
                    "index": e.index,
                    "field": e.error.field,
                    "code": e.error.code.as_str(),
                    "message": e.error.message,
                })).collect::<Vec<_>>(),
            }))
        }
        Err(e) => {
            return Outcome::Invalid(
                serde_json::json!({"kind": "invalid", "detail": e.to_string()}),
            )
        }
    };
    for (i, e) in events.iter_mut().enumerate() {
        if e.event_id.is_none() {
            e.event_id = EventId::parse(format!("{default_id}:{i}")).ok();
        }
    }
    match append(state.store.as_ref(), events, recorded_by).await {
        Ok(out) => {
            if let Some(max) = out.events.iter().map(|e| e.seq).max() {
                state.hub.appended(max + 1);
            }
            Outcome::Recorded
        }
        Err(e @ ApiError::Conflict { .. }) => {
            Outcome::Invalid(serde_json::json!({"kind": "conflict", "detail": e.to_string()}))
        }
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

/// Consumes `subject` until `stopped` turns true, reconnecting and
/// recreating what it needs after any broker error.
pub async fn consume_nats(
    client: async_nats::Client,
    subject: String,
    state: AppState,
    mut stopped: watch::Receiver<bool>,
) {
    let js = jetstream::new(client);
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stopped.borrow() {
            return;
        }
        let run = async {
            let messages = open(&js, &subject).await?;
            backoff = Duration::from_millis(200);
            tracing::info!(%subject, "consuming events from NATS");
            handle_all(&js, &subject, &state, messages).await
        };
        let result = tokio::select! {
            r = run => r,
            _ = stopped.changed() => return,
        };
        if let Err(e) = result {
            tracing::warn!(%subject, error = %e, retry_in = ?backoff, "the NATS consumer stopped; restarting it");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn open(js: &jetstream::Context, subject: &str) -> Result<pull::Stream, String> {
    let stream = match js.stream_by_subject(subject).await {
        Ok(name) => js
            .get_stream(&name)
            .await
            .map_err(|e| format!("opening stream {name}: {e}"))?,
        Err(_) => js
            .get_or_create_stream(jetstream::stream::Config {
                name: INGEST_STREAM.into(),
                subjects: vec![subject.to_owned()],
                ..Default::default()
            })
            .await
            .map_err(|e| format!("creating stream {INGEST_STREAM} for {subject}: {e}"))?,
    };
    js.get_or_create_stream(jetstream::stream::Config {
        name: DEAD_LETTER_STREAM.into(),
        subjects: vec![DEAD_LETTER_SUBJECT.to_owned()],
        ..Default::default()
    })
    .await
    .map_err(|e| format!("creating stream {DEAD_LETTER_STREAM}: {e}"))?;
    let consumer = stream
        .get_or_create_consumer(
            CONSUMER,
            pull::Config {
                durable_name: Some(CONSUMER.into()),
                filter_subject: subject.to_owned(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("creating consumer {CONSUMER}: {e}"))?;
    consumer
        .messages()
        .await
        .map_err(|e| format!("reading from consumer {CONSUMER}: {e}"))
}

async fn handle_all(
    js: &jetstream::Context,
    subject: &str,
    state: &AppState,
    mut messages: pull::Stream,
) -> Result<(), String> {
    let recorded_by = format!("nats:{subject}");
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| format!("receiving: {e}"))?;
        let info = msg.info().map_err(|e| format!("message metadata: {e}"))?;
        let default_id = format!("nats:{}:{}", info.stream, info.stream_sequence);
        let ndjson = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Content-Type"))
            .is_some_and(|v| v.as_str().contains("ndjson"));
        match record(state, &msg.payload, ndjson, &default_id, &recorded_by).await {
            Outcome::Recorded => {
                msg.ack().await.map_err(|e| format!("acknowledging: {e}"))?;
            }
            Outcome::Invalid(error) => {
                tracing::warn!(%subject, message = %default_id, error = %error, "invalid message sent to the dead-letter subject");
                metrics::counter!("patchaudit_consume_dead_letters_total").increment(1);
                let envelope = serde_json::json!({
                    "subject": msg.subject.as_str(),
                    "message": default_id,
                    "error": error,
                    "payload": String::from_utf8_lossy(&msg.payload),
                });
                js.send_publish(
                    DEAD_LETTER_SUBJECT,
                    jetstream::message::PublishMessage::build()
                        .payload(envelope.to_string().into())
                        .message_id(&default_id),
                )
                .await
                .map_err(|e| format!("dead-lettering: {e}"))?
                .await
                .map_err(|e| format!("dead-lettering: {e}"))?;
                msg.ack().await.map_err(|e| format!("acknowledging: {e}"))?;
            }
            Outcome::Retry(why) => {
                tracing::warn!(%subject, message = %default_id, error = %why, "cannot record now; the broker will redeliver");
                msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await
                    .map_err(|e| format!("refusing: {e}"))?;
            }
        }
    }
    Err("the message stream ended".into())
}
