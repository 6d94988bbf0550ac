//! The real-time stream: the ledger published to brokers, webhooks and a
//! live feed, and the alert rules that watch it.
//!
//! The ledger is its own transactional outbox (see
//! [`patchaudit_store::stream`]): an event is in it once its append
//! committed, in seq order, and it never changes. Each sink runs as its own
//! task with a cursor stored in the database. The task reads the events
//! past its cursor, delivers them in order, and moves the cursor forward.
//! Ingest never waits for a sink: it only wakes the tasks through the
//! [`Hub`]. A sink that is down falls behind and catches up later. Its lag
//! shows in `/metrics` and at `GET /v1/stream/status`.
//!
//! Delivery is at least once. The cursor is saved a few times a second, not
//! after every message, so a restart may deliver the last messages again.
//! Every message carries a stable id (`<seq>` or `<seq>:<event_id>`, and
//! `alert:<id>` for alerts) for consumers to drop the repeats; NATS does it
//! itself through `Nats-Msg-Id`.

pub mod alerts;
pub mod consume;
pub mod consume_kafka;
pub mod kafka;
pub mod nats;
pub mod sse;
pub mod status;
pub mod webhook;

use crate::wire::EventOut;
use async_trait::async_trait;
use patchaudit_domain::{EventFilter, RecordedEvent};
use patchaudit_store::compliance::{decode_catalog, decode_tags, RecordKind};
use patchaudit_store::stream::Alert;
use patchaudit_store::{Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What the stream does, from the command line or the config file.
#[derive(Clone, Default)]
pub struct StreamConfig {
    /// The NATS server to publish to (and consume from), if any.
    pub nats_url: Option<String>,
    /// Kafka bootstrap brokers to publish to (`host:port,...`), if any.
    pub kafka_brokers: Option<String>,
    /// A Kafka topic to record events from.
    pub consume_kafka: Option<String>,
    /// Webhooks to POST every event and alert to.
    pub webhooks: Vec<webhook::WebhookConfig>,
    /// The alert rules' thresholds.
    pub alerts: alerts::AlertConfig,
    /// A NATS subject to record events from.
    pub consume_nats: Option<String>,
}

// By hand: the NATS URL may carry a password.
impl std::fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConfig")
            .field("nats_url", &self.nats_url.as_ref().map(|_| "****"))
            .field("kafka_brokers", &self.kafka_brokers)
            .field("consume_kafka", &self.consume_kafka)
            .field("webhooks", &self.webhooks)
            .field("alerts", &self.alerts)
            .field("consume_nats", &self.consume_nats)
            .finish()
    }
}

/// Starts the stream for a server: the alert rules, every configured sink
/// and consumer. `state` must hold the webhooks built by [`webhooks`].
pub async fn start_for(state: &crate::AppState, config: &StreamConfig) -> Result<Running, String> {
    let store = state.store.clone();
    let hub = state.hub.clone();
    let rules = Arc::new(alerts::AlertRules::new(
        store.clone(),
        hub.clone(),
        config.alerts.clone(),
    ));
    let mut sinks: Vec<Arc<dyn Sink>> = vec![rules.clone()];
    let mut nats_client = None;
    if let Some(url) = &config.nats_url {
        let client = nats::connect(url, "patchaudit").await?;
        sinks.push(Arc::new(nats::NatsSink::new(client.clone())));
        nats_client = Some(client);
    }
    if let Some(brokers) = &config.kafka_brokers {
        sinks.push(Arc::new(kafka::connect(brokers).await?));
    }
    for hook in state.webhooks.iter() {
        sinks.push(hook.clone());
    }
    let mut running = start(store, hub, sinks);
    running.extra.push(tokio::spawn(alerts::run_overdue(
        rules,
        state.clone(),
        config.alerts.overdue_every,
    )));
    if let Some(topic) = &config.consume_kafka {
        let brokers = config
            .kafka_brokers
            .clone()
            .ok_or("--consume-kafka needs --kafka-brokers")?;
        running
            .tasks
            .push(tokio::spawn(consume_kafka::consume_kafka(
                brokers,
                topic.clone(),
                state.clone(),
                running.stop.subscribe(),
            )));
    }
    if let Some(subject) = &config.consume_nats {
        let client = nats_client.ok_or("--consume-nats needs --nats-url")?;
        running.tasks.push(tokio::spawn(consume::consume_nats(
            client,
            subject.clone(),
            state.clone(),
            running.stop.subscribe(),
        )));
    }
    Ok(running)
}

/// Builds the webhook sinks of `config`, for [`crate::AppState::with_webhooks`].
pub fn webhooks(store: &Arc<dyn Store>, config: &StreamConfig) -> Vec<Arc<webhook::WebhookSink>> {
    config
        .webhooks
        .iter()
        .map(|c| Arc::new(webhook::WebhookSink::new(c.clone(), store.clone())))
        .collect()
}

/// How many events a sink reads and delivers at a time.
const BATCH: usize = 500;
/// How often a caught-up sink looks for events appended by another process
/// (the CLI writing locally, another server on the same PostgreSQL).
const POLL: Duration = Duration::from_secs(1);
/// The longest a delivered position may wait before its cursor is saved.
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// The longest wait between retries of a broker that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Wakes the stream's tasks when the ledger grows.
///
/// It holds the ledger length last seen by this process. Ingest calls
/// [`Hub::appended`] after each commit; sinks and live feeds wait on it.
#[derive(Clone)]
pub struct Hub {
    len: Arc<watch::Sender<u64>>,
    alerts: Arc<watch::Sender<u64>>,
    closing: Arc<watch::Sender<bool>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            len: Arc::new(watch::channel(0).0),
            alerts: Arc::new(watch::channel(0).0),
            closing: Arc::new(watch::channel(false).0),
        }
    }
}

impl Hub {
    /// Tells live feeds that the server is shutting down, so they end and
    /// the graceful shutdown does not wait on them forever.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Records that the ledger now holds at least `len` events.
    pub fn appended(&self, len: u64) {
        self.len.send_if_modified(|v| {
            let grew = len > *v;
            *v = (*v).max(len);
            grew
        });
    }

    /// Records that an alert with id `id` was raised.
    pub fn alerted(&self, id: u64) {
        self.alerts.send_if_modified(|v| {
            let grew = id > *v;
            *v = (*v).max(id);
            grew
        });
    }

    /// The ledger length last seen.
    pub fn len(&self) -> u64 {
        *self.len.borrow()
    }

    /// Whether no event was seen yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn watch(&self, source: Source) -> watch::Receiver<u64> {
        match source {
            Source::Events => self.len.subscribe(),
            Source::Alerts => self.alerts.subscribe(),
        }
    }
}

/// What a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Ledger events, by seq.
    Events,
    /// Raised alerts, by id.
    Alerts,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Events => "events",
            Source::Alerts => "alerts",
        }
    }
}

/// One message for the sinks.
#[derive(Debug, Clone)]
pub struct Message {
    /// The stable id consumers deduplicate by.
    pub id: String,
    /// Events or alerts.
    pub source: Source,
    /// Its position: the event's seq, or the alert's id.
    pub position: u64,
    /// What orders and routes it: the event's system, or the alert's rule.
    pub key: String,
    /// The JSON body.
    pub body: Arc<[u8]>,
    /// The event itself, for the alert rules.
    pub event: Option<Arc<RecordedEvent>>,
    /// The catalog's severity of the event's patch, where known.
    pub severity: Option<patchaudit_compliance::Severity>,
}

/// The body of an event message: the event as the API shows it, with the
/// system's tags and the catalog's severity of the patch.
#[derive(Serialize)]
struct EventBody<'a> {
    message_id: &'a str,
    #[serde(flatten)]
    event: EventOut,
    tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<&'static str>,
}

/// The body of an alert message.
#[derive(Serialize)]
struct AlertBody<'a> {
    message_id: &'a str,
    alert_id: u64,
    rule: &'a str,
    key: &'a str,
    raised_at: String,
    #[serde(flatten)]
    detail: serde_json::Value,
}

/// The stable id of an event's message.
pub fn event_message_id(e: &RecordedEvent) -> String {
    match &e.event.event_id {
        Some(id) => format!("{}:{}", e.seq, id.as_str()),
        None => e.seq.to_string(),
    }
}

/// Builds the message of an event.
pub fn event_message(e: RecordedEvent, context: &Context) -> Message {
    let id = event_message_id(&e);
    let tags = context
        .tags
        .get(e.event.system.as_str())
        .map_or(&[][..], Vec::as_slice);
    let severity = context.severity.get(e.event.patch_id.as_str()).copied();
    let body = serde_json::to_vec(&EventBody {
        message_id: &id,
        event: EventOut::from(&e),
        tags,
        severity: severity.map(|s| s.as_str()),
    })
    .unwrap_or_default();
    Message {
        id,
        source: Source::Events,
        position: e.seq,
        key: e.event.system.as_str().to_owned(),
        body: body.into(),
        event: Some(Arc::new(e)),
        severity,
    }
}

/// Builds the message of an alert.
pub fn alert_message(a: &Alert) -> Message {
    let id = format!("alert:{}", a.id);
    let detail = serde_json::from_str(&a.body).unwrap_or(serde_json::Value::Null);
    let body = serde_json::to_vec(&AlertBody {
        message_id: &id,
        alert_id: a.id,
        rule: &a.rule,
        key: &a.key,
        raised_at: a.raised_at.to_rfc3339(),
        detail,
    })
    .unwrap_or_default();
    Message {
        id,
        source: Source::Alerts,
        position: a.id,
        key: a.rule.clone(),
        body: body.into(),
        event: None,
        severity: None,
    }
}

/// The tags of each system and the severity of each cataloged patch, kept
/// up to date from the audit trail of records, so that a sink reads only
/// the revisions written since it last looked.
#[derive(Default)]
pub struct Context {
    rev: u64,
    tags: HashMap<String, Vec<String>>,
    severity: HashMap<String, patchaudit_compliance::Severity>,
}

impl Context {
    /// Reads the record revisions written since the last refresh.
    pub async fn refresh(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        loop {
            let changes = store.record_changes(self.rev, 1000).await?;
            let done = changes.len() < 1000;
            for (kind, rec) in changes {
                self.rev = rec.rev;
                match (kind, &rec.body) {
                    (RecordKind::System, Some(body)) => {
                        let tags = decode_tags(&rec.id, body)?;
                        self.tags.insert(rec.id, tags.to_strings());
                    }
                    (RecordKind::System, None) => {
                        self.tags.remove(&rec.id);
                    }
                    (RecordKind::Catalog, Some(body)) => {
                        let entry = decode_catalog(&rec.id, body)?;
                        self.severity.insert(rec.id, entry.severity);
                    }
                    (RecordKind::Catalog, None) => {
                        self.severity.remove(&rec.id);
                    }
                    _ => {}
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    /// The tags of `system`.
    pub fn tags(&self, system: &str) -> &[String] {
        self.tags.get(system).map_or(&[][..], Vec::as_slice)
    }
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination is unreachable or refused; the batch is retried.
    #[error("{0}")]
    Unavailable(String),
    /// The ledger could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A destination of the stream.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// The sink's name, which names its cursors (`<name>/events`,
    /// `<name>/alerts`) and its metrics.
    fn name(&self) -> &str;

    /// Which sources the sink takes.
    fn sources(&self) -> &'static [Source] {
        &[Source::Events, Source::Alerts]
    }

    /// Delivers `batch` in order. On an error the whole batch is retried;
    /// what was delivered before the error is delivered again, which the
    /// message ids make harmless.
    async fn deliver(&self, batch: &[Message]) -> Result<(), SinkError>;
}

/// The running stream tasks.
pub struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Tasks with nothing to save, aborted at stop.
    extra: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Running {
    /// Stops every task after it saved its cursor, and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.extra {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts one task per (sink, source).
pub fn start(store: Arc<dyn Store>, hub: Hub, sinks: Vec<Arc<dyn Sink>>) -> Running {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for sink in sinks {
        for &source in sink.sources() {
            tasks.push(tokio::spawn(run_sink(
                store.clone(),
                hub.clone(),
                sink.clone(),
                source,
                stopped.clone(),
            )));
        }
    }
    Running {
        tasks,
        extra: Vec::new(),
        stop,
    }
}

/// The cursor name of a sink's source.
pub fn cursor_name(sink: &str, source: Source) -> String {
    format!("{sink}/{}", source.as_str())
}

async fn run_sink(
    store: Arc<dyn Store>,
    hub: Hub,
    sink: Arc<dyn Sink>,
    source: Source,
    mut stopped: watch::Receiver<bool>,
) {
    let name = cursor_name(sink.name(), source);
    let mut wake = hub.watch(source);
    let mut context = Context::default();
    let mut position: Option<u64> = None;
    let mut saved = 0u64;
    let mut last_save = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let delivered =
        metrics::counter!("patchaudit_stream_delivered_total", "cursor" => name.clone());
    let failures = metrics::counter!("patchaudit_stream_errors_total", "cursor" => name.clone());
    let lag = metrics::gauge!("patchaudit_stream_lag", "cursor" => name.clone());
    tracing::info!(cursor = %name, "stream sink started");
    loop {
        if *stopped.borrow() {
            break;
        }
        let step = async {
            let pos = match position {
                Some(p) => p,
                None => {
                    let stored = store
                        .cursors()
                        .await?
                        .into_iter()
                        .find(|c| c.name == name)
                        .map_or(0, |c| c.position);
                    position = Some(stored);
                    saved = stored;
                    stored
                }
            };
            let batch = read(store.as_ref(), &mut context, source, pos).await?;
            if batch.is_empty() {
                return Ok::<_, SinkError>((pos, 0));
            }
            sink.deliver(&batch).await?;
            let next = batch.last().map_or(pos, |m| m.position + 1);
            Ok((next, batch.len()))
        }
        .await;
        match step {
            Ok((next, n)) => {
                backoff = Duration::from_millis(100);
                position = Some(next);
                delivered.increment(n as u64);
                let head = match source {
                    Source::Events => hub.len(),
                    Source::Alerts => *wake.borrow() + 1,
                };
                lag.set(head.saturating_sub(next) as f64);
                let idle = n < BATCH;
                // The save runs beside delivery, never in its way: a cursor
                // write waits for SQLite's write lock behind ingest, and
                // delivery must not. Saves may overlap; the store keeps the
                // highest position, so their order does not matter.
                if next > saved && last_save.elapsed() >= SAVE_EVERY {
                    save_in_background(&store, &name, next);
                    saved = next;
                    last_save = Instant::now();
                }
                if idle {
                    let pending = next > saved;
                    let save_due = SAVE_EVERY.saturating_sub(last_save.elapsed());
                    tokio::select! {
                        _ = wake.changed() => {}
                        _ = tokio::time::sleep(save_due), if pending => {
                            save_in_background(&store, &name, next);
                            saved = next;
                            last_save = Instant::now();
                        }
                        _ = tokio::time::sleep(POLL) => {
                            if source == Source::Events {
                                if let Ok(len) = store.len().await {
                                    hub.appended(len);
                                }
                            }
                        }
                        _ = stopped.changed() => {}
                    }
                }
            }
            Err(e) => {
                failures.increment(1);
                tracing::warn!(cursor = %name, error = %e, retry_in = ?backoff, "stream delivery failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    // Saved whether or not a background save already did: one may have failed.
    if let Some(p) = position.filter(|p| *p > 0) {
        if let Err(e) = store.save_cursor(&name, p).await {
            tracing::warn!(cursor = %name, error = %e, "saving the stream cursor at shutdown failed");
        }
    }
    tracing::info!(cursor = %name, "stream sink stopped");
}

/// Saves a cursor on its own task; a failure is logged, and the next save
/// (or the one at shutdown) covers it.
fn save_in_background(store: &Arc<dyn Store>, name: &str, position: u64) {
    let (store, name) = (store.clone(), name.to_owned());
    tokio::spawn(async move {
        if let Err(e) = store.save_cursor(&name, position).await {
            tracing::warn!(cursor = %name, error = %e, "saving the stream cursor failed; it will be saved later");
        }
    });
}

/// Reads the next messages of `source` from `position` on.
async fn read(
    store: &dyn Store,
    context: &mut Context,
    source: Source,
    position: u64,
) -> Result<Vec<Message>, StoreError> {
    match source {
        Source::Events => {
            let filter = EventFilter {
                seq_from: Some(position),
                ..EventFilter::default()
            };
            let events = store.list(&filter, BATCH).await?;
            if events.is_empty() {
                return Ok(Vec::new());
            }
            context.refresh(store).await?;
            Ok(events
                .into_iter()
                .map(|e| event_message(e, context))
                .collect())
        }
        Source::Alerts => {
            let alerts = store.alerts(position.saturating_sub(1), BATCH).await?;
            Ok(alerts.iter().map(alert_message).collect())
        }
    }
}

/// Makes a system id safe as one token of a NATS subject, reversibly:
/// ASCII letters, digits and `-` stay, every other byte becomes `_` and
/// two hex digits. `web-01.example.com` becomes `web-01_2Eexample_2Ecom`.
/// Distinct systems never share a subject.
pub fn subject_token(system: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(system.len());
    for b in system.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            let _ = write!(out, "_{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_are_safe_and_distinct() {
        assert_eq!(subject_token("web-01"), "web-01");
        assert_eq!(
            subject_token("web-01.example.com"),
            "web-01_2Eexample_2Ecom"
        );
        assert_ne!(subject_token("a.b"), subject_token("a_b"));
        assert_eq!(subject_token("a_b"), "a_5Fb");
        for s in ["a b", "a*b", "a>b", "ü", "a\u{7f}"] {
            let t = subject_token(s);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{s:?} -> {t:?}"
            );
        }
    }

    #[test]
    fn the_hub_only_moves_forward() {
        let hub = Hub::default();
        let mut rx = hub.watch(Source::Events);
        hub.appended(5);
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        hub.appended(3);
        assert!(!rx.has_changed().unwrap());
        assert_eq!(hub.len(), 5);
    }
}
