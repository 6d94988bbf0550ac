//! Ingest from Kafka: `serve --consume-kafka TOPIC`.
//!
//! Agents write events to a Kafka topic (one JSON object, a JSON array, or
//! NDJSON when the record's `content-type` header says so). The server
//! reads every partition of the topic and records each record exactly as
//! `POST /v1/events` would: the same validation, the same all-or-nothing
//! batch, the same idempotency. This is the Kafka twin of
//! [`super::consume`], and it shares that module's [`record`] function.
//!
//! Delivery is at least once. There is no consumer group: Kafka's group
//! protocol would keep the offsets in the broker, apart from the events
//! they stand for, and rskafka does not speak it anyway. Instead each
//! partition's offset is kept in the ledger's own database, as the stream
//! cursor `kafka-consume/<topic>/<partition>`, whose position is the next
//! offset to read. A partition without a cursor starts at its earliest
//! offset, so the records written before the server first started are
//! recorded too. The cursor is saved after each fetched batch, and at
//! least every [`SAVE_EVERY`] while a batch is long, always after the
//! records before it were recorded. A crash can therefore only make the
//! server read some records again, never skip one.
//!
//! Reading a record again is harmless. An event without an `event_id`
//! gets `kafka:<topic>:<partition>:<offset>:<index>`, which names the same
//! event every time the record is read, so the ledger records it once and
//! answers the repeat as already recorded. An event that has its own
//! `event_id` is deduplicated by it in the same way.
//!
//! A record that can never be recorded (malformed JSON, an invalid event,
//! or an `event_id` reused with other content) must not stop its partition
//! forever. It goes to the topic [`DEAD_LETTER_TOPIC`], created if missing,
//! as a JSON envelope with its origin, the error and the original payload,
//! under the original key; then the consumer moves on. When the ledger
//! itself is unavailable, the record is tried again every second and never
//! skipped, so the partition waits until the database is back.
//!
//! After any broker error the consumer logs a warning, waits (200 ms,
//! doubling up to 5 s), connects again from scratch and resumes each
//! partition where it was in memory. It also lists the topic every
//! [`RECHECK_EVERY`], and reconnects when its partition count changed, so
//! partitions added later are read too.

use super::consume::{record, Outcome};
use super::kafka::{self, MSG_ID_HEADER};
use crate::AppState;
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use rskafka::BackoffConfig;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Mutex};

/// Where records that cannot be recorded go, as for the NATS consumer.
pub const DEAD_LETTER_TOPIC: &str = super::consume::DEAD_LETTER_SUBJECT;
/// The first wait after a broker error; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait after a broker error.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long to wait before trying a record again while the ledger is
/// unavailable.
const RETRY_WAIT: Duration = Duration::from_secs(1);
/// The longest a partition's progress goes unsaved while it is busy.
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// How long the broker may hold a fetch when there is nothing new.
const FETCH_WAIT_MS: i32 = 500;
/// The most bytes one fetch asks for. A larger record still comes whole.
const FETCH_MAX_BYTES: i32 = 4 * 1024 * 1024;
/// The pause after an empty fetch, for brokers that answer at once
/// instead of waiting [`FETCH_WAIT_MS`].
const IDLE_PAUSE: Duration = Duration::from_millis(100);
/// The longest any one request to the broker may take. rskafka has no
/// request timeout of its own, so a broker that accepts connections but
/// never answers would otherwise hold the consumer forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long rskafka retries a failing request before it gives up; the
/// consumer retries afterwards with its own backoff.
const RETRY_DEADLINE: Duration = Duration::from_secs(5);
/// How long the broker may take to create a topic, in milliseconds.
const CREATE_TIMEOUT_MS: i32 = 5_000;
/// How often the topic's partition count is checked.
const RECHECK_EVERY: Duration = Duration::from_secs(30);
/// The most payload bytes a dead-letter envelope carries; the rest is cut,
/// so the envelope stays under the broker's record size limit.
const MAX_DEAD_PAYLOAD: usize = 256 * 1024;

/// Connects to the cluster through `brokers`: rskafka gives up on a
/// failing request after [`RETRY_DEADLINE`], and the caller retries with
/// its own backoff.
async fn client(brokers: &[String]) -> Result<Client, String> {
    ClientBuilder::new(brokers.to_vec())
        .client_id("patchaudit")
        .backoff_config(BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 3.0,
            deadline: Some(RETRY_DEADLINE),
        })
        .build()
        .await
        .map_err(|e| format!("cannot reach the brokers {}: {e}", brokers.join(",")))
}

/// Creates a topic with the sink's partition count and replication, or
/// finds the one another client created meanwhile; returns its partition
/// count.
async fn create_topic(client: &Client, name: &str) -> Result<usize, String> {
    let controller = client
        .controller_client()
        .map_err(|e| format!("finding the controller: {e}"))?;
    match controller
        .create_topic(
            name,
            kafka::PARTITIONS,
            kafka::REPLICATION,
            CREATE_TIMEOUT_MS,
        )
        .await
    {
        Ok(()) => {
            tracing::info!(
                topic = name,
                partitions = kafka::PARTITIONS,
                "created the Kafka topic"
            );
            Ok(kafka::PARTITIONS as usize)
        }
        Err(KafkaError::ServerError {
            protocol_error: ProtocolError::TopicAlreadyExists,
            ..
        }) => client
            .list_topics()
            .await
            .map_err(|e| format!("listing the topics: {e}"))?
            .into_iter()
            .find(|t| t.name == name)
            .map(|t| t.partitions.len())
            .ok_or_else(|| format!("the topic {name} exists but is not listed")),
        Err(e) => Err(format!("creating the topic {name}: {e}")),
    }
}

/// The current time, to the millisecond, as Kafka keeps it.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(kafka::now_millis()).unwrap_or_default()
}

/// The cursor that keeps a partition's next offset.
pub fn cursor_name(topic: &str, partition: i32) -> String {
    format!("kafka-consume/{topic}/{partition}")
}

/// What the consumer knows of one partition across reconnections.
struct Progress {
    /// The next offset to read; `None` until the cursor was loaded.
    position: Option<i64>,
    /// The position last saved in the cursor.
    saved: Option<i64>,
    /// When the cursor was last saved (or tried).
    last_save: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            position: None,
            saved: None,
            last_save: Instant::now(),
        }
    }
}

/// Records the events written to every partition of `topic` on the
/// comma-separated `brokers`, until `stopped` turns true. The positions
/// reached are saved before it returns.
pub async fn consume_kafka(
    brokers: String,
    topic: String,
    state: AppState,
    mut stopped: watch::Receiver<bool>,
) {
    let brokers = match kafka::parse_brokers(&brokers) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(%topic, error = %e, "the Kafka consumer cannot start");
            return;
        }
    };
    let mut progress: BTreeMap<i32, Progress> = BTreeMap::new();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stopped.borrow() {
            break;
        }
        let result = tokio::select! {
            r = run(&brokers, &topic, &state, &mut progress, &mut backoff) => r,
            _ = until_stopped(&mut stopped) => break,
        };
        if let Err(e) = result {
            tracing::warn!(%topic, error = %e, retry_in = ?backoff, "the Kafka consumer stopped; restarting it");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = until_stopped(&mut stopped) => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    for (&partition, p) in progress.iter_mut() {
        save(&state, &cursor_name(&topic, partition), p).await;
    }
    tracing::info!(%topic, "the Kafka consumer stopped");
}

/// Returns once `stopped` is true, or its sender is gone.
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Connects, makes sure both topics exist, and consumes every partition
/// until an error.
async fn run(
    brokers: &[String],
    topic: &str,
    state: &AppState,
    progress: &mut BTreeMap<i32, Progress>,
    backoff: &mut Duration,
) -> Result<(), String> {
    let client = timed("connecting", client(brokers)).await??;
    let existing = timed("listing the topics", client.list_topics())
        .await?
        .map_err(|e| format!("listing the topics: {e}"))?;
    let partitions: Vec<i32> = match existing.iter().find(|t| t.name == topic) {
        Some(t) => t.partitions.iter().copied().collect(),
        None => {
            let n = timed("creating the topic", create_topic(&client, topic)).await??;
            (0..i32::try_from(n).unwrap_or(i32::MAX)).collect()
        }
    };
    if partitions.is_empty() {
        return Err(format!("the topic {topic} has no partitions"));
    }
    let dead_partitions = match existing.iter().find(|t| t.name == DEAD_LETTER_TOPIC) {
        Some(t) => t.partitions.len(),
        None => {
            timed(
                "creating the dead-letter topic",
                create_topic(&client, DEAD_LETTER_TOPIC),
            )
            .await??
        }
    };
    let dead = DeadLetters {
        client: &client,
        partitions: i32::try_from(dead_partitions)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("the topic {DEAD_LETTER_TOPIC} has no partitions"))?,
        cache: Mutex::new(HashMap::new()),
    };
    *backoff = FIRST_BACKOFF;
    tracing::info!(%topic, ?partitions, "consuming events from Kafka");
    for &p in &partitions {
        progress.entry(p).or_default();
    }
    let consumers = progress
        .iter_mut()
        .filter(|(p, _)| partitions.contains(p))
        .map(|(&p, prog)| consume_partition(&client, topic, p, prog, state, &dead));
    tokio::select! {
        r = futures::future::try_join_all(consumers) => r.map(|_| ()),
        r = watch_partitions(&client, topic, partitions.len()) => r,
    }
}

/// Fails when the topic's partition count is no longer `count`, so that
/// the consumer reconnects and reads the new partitions too.
async fn watch_partitions(client: &Client, topic: &str, count: usize) -> Result<(), String> {
    loop {
        tokio::time::sleep(RECHECK_EVERY).await;
        let topics = timed("listing the topics", client.list_topics())
            .await?
            .map_err(|e| format!("listing the topics: {e}"))?;
        let now = topics
            .iter()
            .find(|t| t.name == topic)
            .map_or(0, |t| t.partitions.len());
        if now != count {
            return Err(format!(
                "the topic {topic} now has {now} partitions instead of {count}"
            ));
        }
    }
}

/// Consumes one partition from its position until an error.
async fn consume_partition(
    client: &Client,
    topic: &str,
    partition: i32,
    progress: &mut Progress,
    state: &AppState,
    dead: &DeadLetters<'_>,
) -> Result<(), String> {
    let name = cursor_name(topic, partition);
    let pc = timed(
        "finding the partition leader",
        client.partition_client(topic, partition, UnknownTopicHandling::Retry),
    )
    .await?
    .map_err(|e| format!("finding the leader of {topic}/{partition}: {e}"))?;
    let mut position = match progress.position {
        Some(p) => p,
        None => {
            let stored = state
                .store
                .cursors()
                .await
                .map_err(|e| format!("reading the cursor {name}: {e}"))?
                .into_iter()
                .find(|c| c.name == name)
                .map(|c| i64::try_from(c.position).unwrap_or(i64::MAX));
            let start = match stored {
                Some(p) => p,
                None => offset(&pc, OffsetAt::Earliest).await?,
            };
            progress.saved = stored;
            progress.position = Some(start);
            start
        }
    };
    tracing::debug!(%topic, partition, position, "reading the partition");
    let recorded_by = format!("kafka:{topic}");
    let lag = metrics::gauge!("patchaudit_consume_lag", "cursor" => name.clone());
    loop {
        let fetched = timed(
            "fetching",
            pc.fetch_records(position, 1..FETCH_MAX_BYTES, FETCH_WAIT_MS),
        )
        .await?;
        let (records, high_watermark) = match fetched {
            Ok(f) => f,
            Err(KafkaError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }) => {
                position = out_of_range(&pc, position).await?;
                progress.position = Some(position);
                continue;
            }
            Err(e) => return Err(format!("fetching {topic}/{partition}@{position}: {e}")),
        };
        if records.is_empty() {
            lag.set(high_watermark.saturating_sub(position).max(0) as f64);
            save(state, &name, progress).await;
            tokio::time::sleep(IDLE_PAUSE).await;
            continue;
        }
        for r in records {
            if r.offset < position {
                continue;
            }
            let value = r.record.value.as_deref().unwrap_or_default();
            let ndjson = r.record.headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("content-type")
                    && String::from_utf8_lossy(v).contains("ndjson")
            });
            let default_id = format!("kafka:{topic}:{partition}:{}", r.offset);
            loop {
                match record(state, value, ndjson, &default_id, &recorded_by).await {
                    Outcome::Recorded => break,
                    Outcome::Invalid(error) => {
                        tracing::warn!(%topic, record = %default_id, error = %error, "invalid record sent to the dead-letter topic");
                        metrics::counter!("patchaudit_consume_dead_letters_total").increment(1);
                        let envelope =
                            envelope(topic, partition, r.offset, &default_id, error, value);
                        dead.send(&default_id, r.record.key.clone(), envelope)
                            .await?;
                        break;
                    }
                    Outcome::Retry(why) => {
                        tracing::warn!(%topic, record = %default_id, error = %why, "cannot record now; trying again");
                        tokio::time::sleep(RETRY_WAIT).await;
                    }
                }
            }
            position = r.offset + 1;
            progress.position = Some(position);
            if progress.last_save.elapsed() >= SAVE_EVERY {
                save(state, &name, progress).await;
            }
        }
        lag.set(high_watermark.saturating_sub(position).max(0) as f64);
        save(state, &name, progress).await;
    }
}

/// Where to go on when `position` is outside the partition's records:
/// the earliest record still kept when older ones were deleted, or the
/// end of the partition when it is shorter than the position (the topic
/// was deleted and made again).
async fn out_of_range(pc: &PartitionClient, position: i64) -> Result<i64, String> {
    let earliest = offset(pc, OffsetAt::Earliest).await?;
    let latest = offset(pc, OffsetAt::Latest).await?;
    let next = position.clamp(earliest, latest.max(earliest));
    if next != position {
        tracing::warn!(
            topic = pc.topic(),
            partition = pc.partition(),
            position,
            earliest,
            latest,
            next,
            "the position is outside the partition; moving to its nearest end"
        );
    }
    Ok(next)
}

/// The earliest or latest offset of a partition.
async fn offset(pc: &PartitionClient, at: OffsetAt) -> Result<i64, String> {
    timed("reading an offset", pc.get_offset(at))
        .await?
        .map_err(|e| {
            format!(
                "reading the {at:?} offset of {}/{}: {e}",
                pc.topic(),
                pc.partition()
            )
        })
}

/// Saves a partition's position in its cursor if it moved since the last
/// save. A failure is only logged: the position is saved again later.
async fn save(state: &AppState, name: &str, progress: &mut Progress) {
    let Some(position) = progress.position else {
        return;
    };
    if progress.saved.is_some_and(|s| s >= position) {
        return;
    }
    progress.last_save = Instant::now();
    let Ok(cursor) = u64::try_from(position) else {
        return;
    };
    match state.store.save_cursor(name, cursor).await {
        Ok(()) => progress.saved = Some(position),
        Err(e) => {
            tracing::warn!(cursor = %name, error = %e, "saving the Kafka consumer's cursor failed; it will be saved later");
        }
    }
}

/// The dead-letter envelope of a record.
fn envelope(
    topic: &str,
    partition: i32,
    offset: i64,
    message: &str,
    error: serde_json::Value,
    payload: &[u8],
) -> serde_json::Value {
    let mut text = String::from_utf8_lossy(payload).into_owned();
    let mut out = serde_json::json!({
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "message": message,
        "error": error,
    });
    if text.len() > MAX_DEAD_PAYLOAD {
        let mut cut = MAX_DEAD_PAYLOAD;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        out["payload_truncated"] = true.into();
        out["payload_bytes"] = payload.len().into();
    }
    out["payload"] = text.into();
    out
}

/// The dead-letter topic of one connection.
struct DeadLetters<'a> {
    client: &'a Client,
    partitions: i32,
    /// The partition clients made so far.
    cache: Mutex<HashMap<i32, Arc<PartitionClient>>>,
}

impl DeadLetters<'_> {
    /// Writes `envelope` under `key`, on the partition Kafka's default
    /// partitioner picks for the key (the first one when there is none),
    /// with the record's id in [`MSG_ID_HEADER`] to drop repeats by.
    async fn send(
        &self,
        id: &str,
        key: Option<Vec<u8>>,
        envelope: serde_json::Value,
    ) -> Result<(), String> {
        let partition = key
            .as_deref()
            .map_or(0, |k| kafka::partition_for(k, self.partitions));
        let pc = self.partition(partition).await?;
        let record = Record {
            key,
            value: Some(envelope.to_string().into_bytes()),
            headers: BTreeMap::from([
                (MSG_ID_HEADER.to_owned(), id.as_bytes().to_vec()),
                ("content-type".to_owned(), b"application/json".to_vec()),
            ]),
            timestamp: now(),
        };
        timed(
            "dead-lettering",
            pc.produce(vec![record], Compression::NoCompression),
        )
        .await?
        .map_err(|e| format!("dead-lettering {id} to {DEAD_LETTER_TOPIC}/{partition}: {e}"))?;
        Ok(())
    }

    async fn partition(&self, partition: i32) -> Result<Arc<PartitionClient>, String> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.get(&partition) {
            return Ok(c.clone());
        }
        let c = Arc::new(
            timed(
                "finding the partition leader",
                self.client.partition_client(
                    DEAD_LETTER_TOPIC,
                    partition,
                    UnknownTopicHandling::Retry,
                ),
            )
            .await?
            .map_err(|e| format!("finding the leader of {DEAD_LETTER_TOPIC}/{partition}: {e}"))?,
        );
        cache.insert(partition, c.clone());
        Ok(c)
    }
}

/// Runs one request to the broker, failing after [`REQUEST_TIMEOUT`].
async fn timed<T>(what: &str, request: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| format!("{what}: no answer within {REQUEST_TIMEOUT:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_carry_the_origin_and_cut_huge_payloads() {
        let e = envelope(
            "t",
            2,
            7,
            "kafka:t:2:7",
            serde_json::json!({"kind": "syntax"}),
            b"not json",
        );
        assert_eq!(
            e,
            serde_json::json!({
                "topic": "t", "partition": 2, "offset": 7, "message": "kafka:t:2:7",
                "error": {"kind": "syntax"}, "payload": "not json",
            })
        );
        let big = "ü".repeat(MAX_DEAD_PAYLOAD);
        let e = envelope("t", 0, 0, "m", serde_json::Value::Null, big.as_bytes());
        let payload = e["payload"].as_str().unwrap();
        assert!(payload.len() <= MAX_DEAD_PAYLOAD && payload.len() > MAX_DEAD_PAYLOAD - 4);
        assert_eq!(e["payload_truncated"], true);
        assert_eq!(e["payload_bytes"], big.len());
        assert_eq!(
            cursor_name("agents.events", 1),
            "kafka-consume/agents.events/1"
        );
    }
}
