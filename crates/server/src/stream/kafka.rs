//! The Kafka sink.
//!
//! Events go to the topic `patchaudit.events` and alerts to
//! `patchaudit.alerts`. Both topics are created if missing, with
//! [`PARTITIONS`] partitions and a replication factor of
//! [`REPLICATION`]. A topic that already exists is used as it is, with its
//! own partition count.
//!
//! A record's key is the message's key (the system for events, the rule for
//! alerts) and its value the JSON body. The partition comes from the key
//! exactly as Kafka's default partitioner picks it in a Java producer:
//! `(murmur2(key) & 0x7fffffff) % partitions`. A system therefore always
//! lands on the same partition, and its events stay in order there. Adding
//! partitions to a topic later moves keys, as it does for any Kafka
//! producer; the sink reads the partition count again whenever it
//! reconnects.
//!
//! A batch is enqueued in order on one producer and succeeds once the
//! broker acknowledged every record (`acks=all`). Records of one partition
//! are sent in enqueue order, at most five requests in flight, and a retry
//! never reorders them.
//!
//! The producer is idempotent where the broker supports it: it asks for a
//! producer id (`InitProducerId`) and numbers every batch, so a produce
//! request that the client sends again after a lost answer or a dropped
//! connection is written once; the broker recognises the sequence. The
//! client is krafka, a pure Rust Kafka client with an idempotent producer
//! (rskafka, which the broker consumer uses, has none). A cluster that
//! refuses a producer id gets a plain producer instead, with a warning.
//!
//! Idempotence covers the producer's own retries only. When a whole
//! delivery fails (the broker is down past the producer's delivery
//! timeout) or the server restarts before the cursor was saved, the stream
//! sends the batch again from the cursor with a new producer, and Kafka
//! keeps both copies. Every record therefore also carries the header
//! [`MSG_ID_HEADER`] with the message's stable id (`<seq>`,
//! `<seq>:<event_id>` or `alert:<id>`), and consumers drop such repeats by
//! it.
//!
//! [`connect`] does not contact the brokers. The first delivery does, and
//! every delivery after an error connects again from scratch. A broker
//! that is down when the server starts is thus the same as one that goes
//! down later: the sink falls behind and catches up once it is back.

use super::{Message, Sink, SinkError, Source};
use async_trait::async_trait;
use krafka::admin::{CreateTopicsOptions, ListTopicsOptions, NewTopic};
use krafka::error::ErrorCode;
use krafka::producer::{Acks, Producer};
use krafka::{CloseOptions, Kafka, KrafkaError, Record};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// The topic events are written to.
pub const EVENTS_TOPIC: &str = "patchaudit.events";
/// The topic alerts are written to.
pub const ALERTS_TOPIC: &str = "patchaudit.alerts";
/// The partition count of a topic the sink creates.
pub const PARTITIONS: i32 = 3;
/// The replication factor of a topic the sink creates.
pub const REPLICATION: i16 = 1;
/// The record header that carries the message's stable id.
pub const MSG_ID_HEADER: &str = "patchaudit-msg-id";

/// How long the producer keeps retrying a record before the delivery fails.
/// Its retries are idempotent, so retrying there is better than failing the
/// batch and sending it again from the cursor.
const PRODUCER_DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one request to the broker may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing an idle producer may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a whole delivery may take, connecting included: a broker
/// that accepts connections but never answers must not hold the sink.
const DELIVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes to Kafka.
pub struct KafkaSink {
    brokers: Vec<String>,
    /// The current connection, if any; dropped after an error, with its
    /// partition clients, so the next delivery starts afresh.
    conn: Mutex<Option<Arc<Connection>>>,
}

/// A producer with the topics known to exist.
struct Connection {
    producer: Arc<Producer>,
    /// The partition count of each topic.
    partitions: HashMap<&'static str, i32>,
}

impl Drop for Connection {
    /// Closes the producer when the sink goes away (at shutdown every
    /// delivery was awaited, so nothing is left to send). krafka warns about
    /// a producer dropped without a close.
    fn drop(&mut self) {
        let producer = self.producer.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = producer
                    .close_with(CloseOptions::new().timeout(CLOSE_TIMEOUT))
                    .await;
            });
        }
    }
}

/// Makes a sink for the comma-separated bootstrap brokers `brokers`
/// (`host:port`, optionally prefixed with `kafka://` or `tcp://`).
///
/// It fails only when the list is malformed. The brokers are not contacted
/// here but at the first delivery, so a broker that is down at start only
/// delays the stream.
pub async fn connect(brokers: &str) -> Result<KafkaSink, String> {
    Ok(KafkaSink {
        brokers: parse_brokers(brokers)?,
        conn: Mutex::new(None),
    })
}

/// Parses comma-separated bootstrap brokers (`host:port`, optionally
/// prefixed with `kafka://` or `tcp://`) into `host:port` strings.
pub(crate) fn parse_brokers(brokers: &str) -> Result<Vec<String>, String> {
    let mut list = Vec::new();
    for b in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let b = b
            .strip_prefix("kafka://")
            .or_else(|| b.strip_prefix("tcp://"))
            .unwrap_or(b)
            .trim_end_matches('/');
        match b.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                list.push(b.to_owned());
            }
            _ => return Err(format!("invalid Kafka broker {b:?}: expected host:port")),
        }
    }
    if list.is_empty() {
        return Err("no Kafka broker given: expected host:port[,host:port...]".into());
    }
    Ok(list)
}

/// The topic of a source.
pub fn topic(source: Source) -> &'static str {
    match source {
        Source::Events => EVENTS_TOPIC,
        Source::Alerts => ALERTS_TOPIC,
    }
}

/// Kafka's murmur2 hash, bit for bit as `org.apache.kafka.common.utils.Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions`, as Kafka's default
/// partitioner picks it for a keyed record.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

impl KafkaSink {
    /// The current connection, made if there is none.
    async fn connection(&self) -> Result<Arc<Connection>, String> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(Connection::open(&self.brokers).await?);
        *conn = Some(c.clone());
        Ok(c)
    }

    async fn try_deliver(&self, batch: &[Message]) -> Result<(), String> {
        let conn = self.connection().await?;
        let timestamp = now_millis();
        let mut pending = Vec::with_capacity(batch.len());
        for m in batch {
            let topic = topic(m.source);
            let partitions = conn
                .partitions
                .get(topic)
                .copied()
                .ok_or_else(|| format!("the topic {topic} is not known"))?;
            let partition = partition_for(m.key.as_bytes(), partitions);
            let handle = conn
                .producer
                .enqueue(record(m, topic, partition, timestamp))
                .await
                .map_err(|e| format!("queueing a record for {topic}/{partition}: {e}"))?;
            pending.push((topic, partition, handle));
        }
        let mut repeats = 0;
        for (topic, partition, handle) in pending {
            let written = handle
                .await
                .map_err(|e| format!("writing a record to {topic}/{partition}: {e}"))?;
            if written.is_deduplicated() {
                repeats += 1;
            }
        }
        if repeats > 0 {
            // The broker had written these already, from a request the
            // producer sent again: idempotence at work, worth seeing.
            metrics::counter!("patchaudit_stream_kafka_deduplicated_total").increment(repeats);
            tracing::info!(
                records = repeats,
                "the Kafka broker dropped records sent twice"
            );
        }
        Ok(())
    }
}

impl Connection {
    /// Connects to the cluster, makes sure both topics exist, and starts a
    /// producer: an idempotent one unless the cluster refuses it a
    /// producer id.
    async fn open(brokers: &[String]) -> Result<Connection, String> {
        let kafka = Kafka::builder(brokers.join(","))
            .client_id("patchaudit")
            .request_timeout(REQUEST_TIMEOUT)
            .connect()
            .await
            .map_err(|e| format!("cannot reach the brokers {}: {e}", brokers.join(",")))?;
        let existing = kafka
            .admin()
            .list_topics(ListTopicsOptions::default())
            .await
            .map_err(|e| format!("listing the topics: {e}"))?;
        for name in [EVENTS_TOPIC, ALERTS_TOPIC] {
            if !existing.iter().any(|t| t == name) {
                create_topic(&kafka, name).await?;
            }
        }
        let producer = producer(&kafka).await?;
        let mut partitions = HashMap::new();
        for name in [EVENTS_TOPIC, ALERTS_TOPIC] {
            let count = producer
                .partitions_for(name)
                .await
                .map_err(|e| format!("reading the partitions of {name}: {e}"))?
                .len();
            let count = i32::try_from(count)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("the topic {name} has {count} partitions"))?;
            partitions.insert(name, count);
        }
        Ok(Connection {
            producer: Arc::new(producer),
            partitions,
        })
    }
}

/// Starts the sink's producer: idempotent, or plain on a cluster that
/// refuses a producer id. A network error or a timeout is returned as it
/// is, since it says nothing about what the cluster supports.
async fn producer(kafka: &Kafka) -> Result<Producer, String> {
    let build = |idempotent: bool| {
        kafka
            .producer()
            .acks(Acks::All)
            .idempotent(idempotent)
            .delivery_timeout(PRODUCER_DELIVERY_TIMEOUT)
            .max_block(REQUEST_TIMEOUT)
            .build()
    };
    match build(true).await {
        Ok(p) => Ok(p),
        Err(e) if !e.is_retriable() => {
            let p = build(false)
                .await
                .map_err(|e| format!("starting the producer: {e}"))?;
            tracing::warn!(
                error = %e,
                "the Kafka cluster gave the producer no producer id; publishing without idempotence, \
                 so a retried request may write a record twice (consumers drop repeats by the patchaudit-msg-id header)"
            );
            Ok(p)
        }
        Err(e) => Err(format!("starting the idempotent producer: {e}")),
    }
}

/// Creates a topic; one that another client created meanwhile is fine.
async fn create_topic(kafka: &Kafka, name: &str) -> Result<(), String> {
    let topic = NewTopic::new(name, PARTITIONS, REPLICATION).map_err(|e| e.to_string())?;
    let mut results = kafka
        .admin()
        .create_topics([topic], CreateTopicsOptions::default())
        .await
        .map_err(|e| format!("creating the topic {name}: {e}"))?;
    match results.remove(name) {
        Some(Ok(())) => {
            tracing::info!(
                topic = name,
                partitions = PARTITIONS,
                "created the Kafka topic"
            );
            Ok(())
        }
        Some(Err(KrafkaError::Broker {
            code: ErrorCode::TopicAlreadyExists,
            ..
        })) => Ok(()),
        Some(Err(e)) => Err(format!("creating the topic {name}: {e}")),
        None => Err(format!("creating the topic {name}: no answer for it")),
    }
}

/// The record the sink writes for a message, to `partition` of `topic`,
/// stamped `timestamp` (milliseconds since the epoch).
pub fn record(m: &Message, topic: &str, partition: i32, timestamp: i64) -> Record {
    Record::new(topic, m.body.to_vec())
        .partition(partition)
        .key(m.key.as_bytes().to_vec())
        .header(MSG_ID_HEADER, m.id.as_bytes().to_vec())
        .header("content-type", &b"application/json"[..])
        .timestamp(timestamp)
}

/// The current time in milliseconds since the epoch, as Kafka keeps it.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &str {
        "kafka"
    }

    async fn deliver(&self, batch: &[Message]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let result = match tokio::time::timeout(DELIVER_TIMEOUT, self.try_deliver(batch)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {DELIVER_TIMEOUT:?}")),
        };
        if let Err(e) = result {
            if let Some(conn) = self.conn.lock().await.take() {
                // Stop the failed producer now: left to itself it would keep
                // retrying this batch in the background while the stream
                // sends it again from the cursor with a new producer.
                let _ = conn
                    .producer
                    .close_with(CloseOptions::new().timeout(Duration::ZERO))
                    .await;
            }
            return Err(SinkError::Unavailable(format!("Kafka: {e}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // The values Apache Kafka's own UtilsTest.testMurmur2 asserts for
        // the Java implementation.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partitions_are_stable_in_range_and_spread() {
        // "21" hashes negative: the sign bit is masked, not negated.
        assert_eq!(partition_for(b"21", 3), (-973_932_308 & 0x7fff_ffff) % 3);
        let mut seen = [0usize; 3];
        for i in 0..300 {
            let key = format!("web-{i:02}.example.com");
            let p = partition_for(key.as_bytes(), 3);
            assert_eq!(p, partition_for(key.as_bytes(), 3));
            seen[usize::try_from(p).unwrap()] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
        assert_eq!(partition_for(b"anything", 1), 0);
    }

    #[tokio::test]
    async fn connect_checks_the_broker_list_only() {
        let sink = connect(" kafka://a:9092, b:19092 ,").await.unwrap();
        assert_eq!(sink.brokers, ["a:9092", "b:19092"]);
        assert!(connect("").await.is_err());
        assert!(connect("a").await.is_err());
        assert!(connect("a:b").await.is_err());
    }
}
