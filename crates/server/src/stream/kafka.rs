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
//! A batch is split by partition, keeping the order of the batch. The
//! partitions are written at the same time, each in order, and the batch
//! succeeds once the broker acknowledged every record (`acks=all`).
//!
//! Delivery is at least once. rskafka, the pure Rust client used here, has
//! no idempotent producer (it never asks for a producer id), so Kafka
//! cannot drop a record that is sent again, as NATS does with
//! `Nats-Msg-Id`. A batch retried after an error, or a restart before the
//! cursor was saved, writes some records twice. Every record carries the
//! header [`MSG_ID_HEADER`] with the message's stable id (`<seq>`,
//! `<seq>:<event_id>` or `alert:<id>`), and consumers drop the repeats by
//! it.
//!
//! [`connect`] does not contact the brokers. The first delivery does, and
//! every delivery after an error connects again from scratch. A broker
//! that is down when the server starts is thus the same as one that goes
//! down later: the sink falls behind and catches up once it is back.

use super::{Message, Sink, SinkError, Source};
use async_trait::async_trait;
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use rskafka::BackoffConfig;
use std::collections::{BTreeMap, HashMap};
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

/// How long rskafka retries a failing request before it gives up. The
/// stream retries the batch itself afterwards, with its own backoff.
const RETRY_DEADLINE: Duration = Duration::from_secs(5);
/// The longest a whole delivery may take. rskafka has no request timeout,
/// so a broker that accepts connections but never answers would otherwise
/// hold the sink forever.
const DELIVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the broker may take to create a topic, in milliseconds.
const CREATE_TIMEOUT_MS: i32 = 5_000;
/// The most record bytes sent in one produce request, well under Kafka's
/// default `message.max.bytes` of about 1 MiB.
const MAX_REQUEST_BYTES: usize = 512 * 1024;

/// Publishes to Kafka.
pub struct KafkaSink {
    brokers: Vec<String>,
    /// The current connection, if any; dropped after an error, with its
    /// partition clients, so the next delivery starts afresh.
    conn: Mutex<Option<Arc<Connection>>>,
}

/// A client with the topics known to exist.
struct Connection {
    client: Client,
    /// The partition count of each topic.
    partitions: HashMap<&'static str, i32>,
    /// The partition clients made so far, by topic and partition.
    cache: Mutex<HashMap<(&'static str, i32), Arc<PartitionClient>>>,
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

/// Connects to the cluster through `brokers`, with the retry settings the
/// sink uses: rskafka gives up on a failing request after
/// [`RETRY_DEADLINE`], and the caller retries with its own backoff.
pub(crate) async fn client(brokers: &[String]) -> Result<Client, String> {
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
        let timestamp = now();
        let mut groups: BTreeMap<(&'static str, i32), Vec<Record>> = BTreeMap::new();
        for m in batch {
            let topic = topic(m.source);
            let partitions = conn
                .partitions
                .get(topic)
                .copied()
                .ok_or_else(|| format!("the topic {topic} is not known"))?;
            let partition = partition_for(m.key.as_bytes(), partitions);
            groups
                .entry((topic, partition))
                .or_default()
                .push(record(m, timestamp));
        }
        let sends = groups.into_iter().map(|((topic, partition), records)| {
            let conn = &conn;
            async move {
                let client = conn.partition(topic, partition).await?;
                for chunk in chunks(records) {
                    let n = chunk.len();
                    client
                        .produce(chunk, Compression::NoCompression)
                        .await
                        .map_err(|e| format!("writing {n} records to {topic}/{partition}: {e}"))?;
                }
                Ok::<_, String>(())
            }
        });
        futures::future::try_join_all(sends).await?;
        Ok(())
    }
}

impl Connection {
    /// Connects to the cluster and makes sure both topics exist.
    async fn open(brokers: &[String]) -> Result<Connection, String> {
        let client = client(brokers).await?;
        let existing = client
            .list_topics()
            .await
            .map_err(|e| format!("listing the topics: {e}"))?;
        let mut partitions = HashMap::new();
        for name in [EVENTS_TOPIC, ALERTS_TOPIC] {
            let count = match existing.iter().find(|t| t.name == name) {
                Some(t) => t.partitions.len(),
                None => create_topic(&client, name).await?,
            };
            let count = i32::try_from(count)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("the topic {name} has {count} partitions"))?;
            partitions.insert(name, count);
        }
        Ok(Connection {
            client,
            partitions,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The client of one partition, made on first use.
    async fn partition(
        &self,
        topic: &'static str,
        partition: i32,
    ) -> Result<Arc<PartitionClient>, String> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.get(&(topic, partition)) {
            return Ok(c.clone());
        }
        let c = Arc::new(
            self.client
                .partition_client(topic, partition, UnknownTopicHandling::Retry)
                .await
                .map_err(|e| format!("finding the leader of {topic}/{partition}: {e}"))?,
        );
        cache.insert((topic, partition), c.clone());
        Ok(c)
    }
}

/// Creates a topic, or finds the one another client created meanwhile;
/// returns its partition count.
pub(crate) async fn create_topic(client: &Client, name: &str) -> Result<usize, String> {
    let controller = client
        .controller_client()
        .map_err(|e| format!("finding the controller: {e}"))?;
    match controller
        .create_topic(name, PARTITIONS, REPLICATION, CREATE_TIMEOUT_MS)
        .await
    {
        Ok(()) => {
            tracing::info!(
                topic = name,
                partitions = PARTITIONS,
                "created the Kafka topic"
            );
            Ok(PARTITIONS as usize)
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

/// The record of a message.
fn record(m: &Message, timestamp: DateTime<Utc>) -> Record {
    Record {
        key: Some(m.key.as_bytes().to_vec()),
        value: Some(m.body.to_vec()),
        headers: BTreeMap::from([
            (MSG_ID_HEADER.to_owned(), m.id.as_bytes().to_vec()),
            ("content-type".to_owned(), b"application/json".to_vec()),
        ]),
        timestamp,
    }
}

/// The current time, to the millisecond, as Kafka keeps it.
pub(crate) fn now() -> DateTime<Utc> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Splits records, in order, into requests of at most
/// [`MAX_REQUEST_BYTES`] (a larger record goes alone).
fn chunks(records: Vec<Record>) -> Vec<Vec<Record>> {
    let mut out: Vec<Vec<Record>> = Vec::new();
    let mut size = 0;
    for r in records {
        let s = r.approximate_size();
        match out.last_mut() {
            Some(last) if size + s <= MAX_REQUEST_BYTES => {
                last.push(r);
                size += s;
            }
            _ => {
                out.push(vec![r]);
                size = s;
            }
        }
    }
    out
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
            *self.conn.lock().await = None;
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

    #[test]
    fn chunks_keep_order_and_size() {
        let rec = |n: usize| Record {
            key: None,
            value: Some(vec![0; n]),
            headers: BTreeMap::new(),
            timestamp: now(),
        };
        let big = MAX_REQUEST_BYTES / 2 + 1;
        let out = chunks(vec![
            rec(1),
            rec(big),
            rec(big),
            rec(2 * MAX_REQUEST_BYTES),
            rec(3),
        ]);
        let sizes: Vec<Vec<usize>> = out
            .iter()
            .map(|c| c.iter().map(Record::approximate_size).collect())
            .collect();
        assert_eq!(
            sizes,
            vec![
                vec![1, big],
                vec![big],
                vec![2 * MAX_REQUEST_BYTES],
                vec![3]
            ]
        );
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
