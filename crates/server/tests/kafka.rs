//! The Kafka sink against a real broker: tansu, a Kafka-compatible broker
//! in one binary, which each test starts itself with in-memory storage on a
//! free loopback port. Without tansu the broker tests are skipped loudly,
//! or fail under `PATCHAUDIT_REQUIRE_SERVICES=1`.
//!
//! The records are read back with rskafka, partition by partition, to
//! check what a consumer would see: every message, keyed by its system,
//! with its id in a header, each system on one partition and in order.
//!
//! The consumer (`--consume-kafka`) is driven the other way: records are
//! written with rskafka and read back from the ledger, the dead-letter
//! topic and the stored cursors.

mod common;

use common::{at, TestServer};
use patchaudit_server::stream::consume_kafka::{consume_kafka, cursor_name, DEAD_LETTER_TOPIC};
use patchaudit_server::stream::kafka::{
    self, partition_for, ALERTS_TOPIC, EVENTS_TOPIC, MSG_ID_HEADER, PARTITIONS,
};
use patchaudit_server::stream::{Message, Sink, SinkError, Source};
use patchaudit_store::conformance::service_unavailable;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the broker is away in the outage test, as the issue asks.
const OUTAGE: Duration = Duration::from_secs(60);
/// How long a delivery may take before the test calls it hung.
const DELIVER_LIMIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------- the broker

/// A tansu broker, killed when dropped.
struct Tansu {
    child: Child,
    port: u16,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tansu {
    /// The bootstrap address, `127.0.0.1:<port>`.
    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Where tansu is: `$TANSU`, else on the `PATH`, else `~/.cargo/bin`.
fn tansu_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("tansu"));
    let in_cargo = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu"));
    on_path.chain(in_cargo).find(|p| p.is_file())
}

/// A port nothing listens on, as far as the OS knows right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Starts tansu on `port`, or says why it cannot (a skipped test, unless
/// services are required).
fn start_tansu(port: u16) -> Option<Tansu> {
    start_tansu_advertising(port, port)
}

/// Starts tansu listening on `port` and telling clients to connect to
/// `advertised` (a proxy in front of it), or says why it cannot.
fn start_tansu_advertising(port: u16, advertised: u16) -> Option<Tansu> {
    let Some(bin) = tansu_binary() else {
        service_unavailable(
            "tansu (Kafka broker)",
            "no tansu binary in $TANSU, PATH or ~/.cargo/bin",
        );
        return None;
    };
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://127.0.0.1:{advertised}");
    let child = match Command::new(&bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            service_unavailable(
                "tansu (Kafka broker)",
                &format!("cannot run {}: {e}", bin.display()),
            );
            return None;
        }
    };
    let mut tansu = Tansu { child, port };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Some(tansu);
        }
        if let Ok(Some(status)) = tansu.child.try_wait() {
            panic!("tansu exited before listening on {port}: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "tansu did not listen on {port} within 15s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------- messages

fn event(seq: u64, system: &str) -> Message {
    let id = format!("{seq}:evt-{seq}");
    let body = format!(r#"{{"message_id":"{id}","seq":{seq},"system":"{system}"}}"#);
    Message {
        id,
        source: Source::Events,
        position: seq,
        key: system.to_owned(),
        body: Arc::from(body.into_bytes()),
        event: None,
        severity: None,
    }
}

fn alert(id: u64, rule: &str) -> Message {
    let msg_id = format!("alert:{id}");
    let body = format!(r#"{{"message_id":"{msg_id}","alert_id":{id},"rule":"{rule}"}}"#);
    Message {
        id: msg_id,
        source: Source::Alerts,
        position: id,
        key: rule.to_owned(),
        body: Arc::from(body.into_bytes()),
        event: None,
        severity: None,
    }
}

/// Events of several systems, interleaved: seq `from..from + n`.
fn events(from: u64, n: u64) -> Vec<Message> {
    const SYSTEMS: [&str; 7] = [
        "web-01",
        "web-02",
        "db-01",
        "db.example.com",
        "cache-7",
        "ü-host",
        "build-agent-42",
    ];
    (from..from + n)
        .map(|seq| event(seq, SYSTEMS[(seq * 5 % 7) as usize]))
        .collect()
}

// ------------------------------------------------------------- reading back

/// One record as a consumer sees it.
#[derive(Debug)]
struct Fetched {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    id: String,
}

/// Every record of `topic`, partition by partition, in offset order, and
/// the topic's partition count.
async fn fetch_all(brokers: &str, topic: &str) -> (Vec<Fetched>, usize) {
    let client = ClientBuilder::new(vec![brokers.to_owned()])
        .build()
        .await
        .expect("the reader connects");
    let topics = client.list_topics().await.expect("topics are listed");
    let partitions = topics
        .iter()
        .find(|t| t.name == topic)
        .unwrap_or_else(|| panic!("no topic {topic} in {topics:?}"))
        .partitions
        .clone();
    let mut out = Vec::new();
    for &p in &partitions {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let mut offset = pc.get_offset(OffsetAt::Earliest).await.unwrap();
        let end = pc.get_offset(OffsetAt::Latest).await.unwrap();
        while offset < end {
            let (records, _) = pc.fetch_records(offset, 1..10_000_000, 500).await.unwrap();
            assert!(
                !records.is_empty(),
                "{topic}/{p}: nothing at {offset} < {end}"
            );
            for r in records {
                offset = r.offset + 1;
                let id = r
                    .record
                    .headers
                    .get(MSG_ID_HEADER)
                    .map(|h| String::from_utf8(h.clone()).unwrap())
                    .unwrap_or_else(|| panic!("{topic}/{p}@{}: no {MSG_ID_HEADER}", r.offset));
                out.push(Fetched {
                    partition: p,
                    offset: r.offset,
                    key: r.record.key,
                    value: r.record.value.unwrap_or_default(),
                    id,
                });
            }
        }
    }
    (out, partitions.len())
}

/// Checks that `fetched` holds exactly `sent`, keyed and partitioned by
/// key, with each key's messages in order on one partition.
fn assert_delivered(sent: &[Message], fetched: &[Fetched], partitions: usize) {
    assert_eq!(fetched.len(), sent.len(), "{fetched:#?}");
    let by_id: HashMap<&str, &Message> = sent.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut seen = HashSet::new();
    // Per key: (partition, offset, position) as found.
    let mut per_key: BTreeMap<&str, Vec<(i32, i64, u64)>> = BTreeMap::new();
    for f in fetched {
        let m = by_id
            .get(f.id.as_str())
            .unwrap_or_else(|| panic!("unexpected record {f:?}"));
        assert!(seen.insert(f.id.as_str()), "{} arrived twice", f.id);
        assert_eq!(f.key.as_deref(), Some(m.key.as_bytes()), "key of {}", f.id);
        assert_eq!(f.value, &*m.body, "value of {}", f.id);
        per_key
            .entry(m.key.as_str())
            .or_default()
            .push((f.partition, f.offset, m.position));
    }
    for (key, mut found) in per_key {
        let parts: HashSet<i32> = found.iter().map(|f| f.0).collect();
        assert_eq!(parts.len(), 1, "{key} is spread over {parts:?}");
        let want = partition_for(key.as_bytes(), partitions as i32);
        assert_eq!(found[0].0, want, "{key} is not on its murmur2 partition");
        found.sort_by_key(|f| f.1);
        let positions: Vec<u64> = found.iter().map(|f| f.2).collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "{key} is out of order: {positions:?}"
        );
    }
}

async fn deliver(sink: &kafka::KafkaSink, batch: &[Message]) -> Result<(), SinkError> {
    tokio::time::timeout(DELIVER_LIMIT, sink.deliver(batch))
        .await
        .expect("the delivery did not hang")
}

// ------------------------------------------------------------- tests

/// Shows the sink's and rskafka's logs with `RUST_LOG`, e.g.
/// `RUST_LOG=rskafka=info,patchaudit_server=info`.
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_keyed_ordered_records_with_ids() {
    init_tracing();
    let Some(tansu) = start_tansu(free_port()) else {
        return;
    };
    let brokers = tansu.brokers();
    let sink = kafka::connect(&brokers).await.unwrap();
    let other = kafka::connect(&brokers).await.unwrap();
    assert_eq!(sink.name(), "kafka");

    let first = events(0, 40);
    let second = events(40, 25);
    let third = events(65, 10);
    let alerts = vec![
        alert(1, "failed_patch"),
        alert(2, "critical_overdue"),
        alert(3, "failed_patch"),
        alert(4, "failed_patch"),
    ];
    // Two sinks start at once, so both try to create the topics (one of
    // them usually finds they already exist).
    let (a, b) = tokio::join!(deliver(&sink, &first), deliver(&other, &alerts));
    a.unwrap();
    b.unwrap();
    deliver(&sink, &second).await.unwrap();
    // An empty batch is a no-op.
    deliver(&sink, &[]).await.unwrap();
    // The other sink, connected already, writes the same systems next.
    deliver(&other, &third).await.unwrap();

    let sent: Vec<Message> = first.into_iter().chain(second).chain(third).collect();
    let (fetched, partitions) = fetch_all(&brokers, EVENTS_TOPIC).await;
    assert_eq!(
        partitions, PARTITIONS as usize,
        "the events topic was created with 3 partitions"
    );
    assert_delivered(&sent, &fetched, partitions);
    let used: HashSet<i32> = fetched.iter().map(|f| f.partition).collect();
    assert!(used.len() > 1, "seven systems all landed on {used:?}");

    let (fetched, partitions) = fetch_all(&brokers, ALERTS_TOPIC).await;
    assert_eq!(partitions, PARTITIONS as usize);
    assert_delivered(&alerts, &fetched, partitions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_unavailable_then_recovers() {
    init_tracing();
    // Nothing listens on the port: the sink is still made, and a delivery
    // fails promptly as retryable.
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let sink = kafka::connect(&brokers)
        .await
        .expect("connect does not need the broker");
    let batch = events(0, 5);
    let start = Instant::now();
    match deliver(&sink, &batch).await {
        Err(SinkError::Unavailable(why)) => {
            assert!(why.contains("Kafka"), "{why}");
            assert!(why.contains(&brokers), "{why}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "failing took {:?}",
        start.elapsed()
    );

    // The broker comes up on that port: the same sink reconnects.
    let Some(tansu) = start_tansu(port) else {
        return;
    };
    deliver(&sink, &batch)
        .await
        .expect("delivers once the broker is up");
    let (fetched, partitions) = fetch_all(&tansu.brokers(), EVENTS_TOPIC).await;
    assert_delivered(&batch, &fetched, partitions);
}

// ------------------------------------------------------------- idempotence

/// Reads one Kafka frame (a 4-byte big-endian length, then that many
/// bytes), or None at the end of the stream or when it is shorter than
/// `at_least` bytes.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    at_least: usize,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.ok()?;
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut frame).await.ok()?;
    (frame.len() >= at_least).then_some(frame)
}

/// Writes one Kafka frame; false once the other side is gone.
async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> bool {
    use tokio::io::AsyncWriteExt;
    let len = u32::try_from(frame.len()).unwrap().to_be_bytes();
    w.write_all(&len).await.is_ok() && w.write_all(frame).await.is_ok()
}

/// A loopback proxy in front of tansu that can lose the broker's answer to
/// one produce request, as a network fault right after the write would: it
/// passes the request on, so the broker writes the records, then closes
/// the client's connection without passing the answer back.
struct AnswerLosingProxy {
    port: u16,
    armed: Arc<AtomicBool>,
    lost: Arc<AtomicUsize>,
}

impl AnswerLosingProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    async fn start(upstream: u16) -> AnswerLosingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicUsize::new(0));
        let (a, l) = (armed.clone(), lost.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, upstream, a.clone(), l.clone()));
            }
        });
        AnswerLosingProxy { port, armed, lost }
    }

    /// Loses the answer to the next produce request that passes.
    fn lose_next_produce_answer(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// How many answers were lost so far.
    fn answers_lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
}

/// Forwards one client connection, request frame by request frame.
async fn forward(
    mut client: tokio::net::TcpStream,
    upstream: u16,
    armed: Arc<AtomicBool>,
    lost: Arc<AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// Kafka's api key of a produce request.
    const PRODUCE: i16 = 0;
    let Ok(broker) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (mut from_broker, mut to_broker) = broker.into_split();
    let (mut from_client, mut to_client) = client.split();
    let cut = AtomicBool::new(false);
    let answers = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from_broker.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if cut.load(Ordering::SeqCst) || to_client.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let requests = async {
        while let Some(frame) = read_frame(&mut from_client, 2).await {
            let produce = i16::from_be_bytes([frame[0], frame[1]]) == PRODUCE;
            let lose = produce && armed.swap(false, Ordering::SeqCst);
            if lose {
                cut.store(true, Ordering::SeqCst);
            }
            if !write_frame(&mut to_broker, &frame).await {
                return;
            }
            if lose {
                lost.fetch_add(1, Ordering::SeqCst);
                // Give the broker time to write the records, then drop
                // both sides without the answer.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return;
            }
        }
    };
    tokio::join!(answers, requests);
}

/// The issue's point: the producer is idempotent. A produce request whose
/// answer is lost is sent again by the producer on a new connection, and
/// the broker, knowing the producer id and sequence, writes it only once.
/// A plain producer writes those records twice here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_request_sent_again_after_a_lost_answer_is_written_once() {
    init_tracing();
    let listen = free_port();
    let proxy = AnswerLosingProxy::start(listen).await;
    let Some(_tansu) = start_tansu_advertising(listen, proxy.port) else {
        return;
    };
    let brokers = format!("127.0.0.1:{}", proxy.port);
    let sink = kafka::connect(&brokers).await.unwrap();
    // The first delivery creates the topics and starts the producer.
    let first = events(0, 10);
    deliver(&sink, &first).await.unwrap();

    proxy.lose_next_produce_answer();
    let second = events(10, 30);
    deliver(&sink, &second)
        .await
        .expect("the producer sends the request again by itself");
    assert_eq!(proxy.answers_lost(), 1, "an answer was lost on the way");

    let sent: Vec<Message> = first.into_iter().chain(second).collect();
    let (fetched, partitions) = fetch_all(&brokers, EVENTS_TOPIC).await;
    assert_delivered(&sent, &fetched, partitions);
}

/// Forwards one client connection, hiding `InitProducerId` in the broker's
/// `ApiVersions` answers (its api key is rewritten to one no client knows),
/// as a broker without idempotent producers would answer. Counts the
/// answers it changed in `hidden`.
async fn forward_hiding_init_producer_id(
    mut client: tokio::net::TcpStream,
    upstream: u16,
    hidden: Arc<AtomicUsize>,
) {
    const API_VERSIONS: i16 = 18;
    const INIT_PRODUCER_ID: i16 = 22;
    let Ok(broker) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (mut from_broker, mut to_broker) = broker.into_split();
    let (mut from_client, mut to_client) = client.split();
    // The ApiVersions requests in flight: correlation id to version.
    let asked = std::sync::Mutex::new(HashMap::<i32, i16>::new());
    let requests = async {
        while let Some(frame) = read_frame(&mut from_client, 8).await {
            if i16::from_be_bytes([frame[0], frame[1]]) == API_VERSIONS {
                let version = i16::from_be_bytes([frame[2], frame[3]]);
                let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
                asked.lock().unwrap().insert(correlation, version);
            }
            if !write_frame(&mut to_broker, &frame).await {
                return;
            }
        }
    };
    let answers = async {
        while let Some(mut frame) = read_frame(&mut from_broker, 4).await {
            let correlation = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            let version = asked.lock().unwrap().remove(&correlation);
            if let Some(version) = version {
                if hide_api_key(&mut frame, version, INIT_PRODUCER_ID) {
                    hidden.fetch_add(1, Ordering::SeqCst);
                }
            }
            if !write_frame(&mut to_client, &frame).await {
                return;
            }
        }
    };
    tokio::join!(requests, answers);
}

/// Rewrites the api key `key` in an `ApiVersions` answer of `version`
/// (after the 4-byte response header) to 32767; true if it was there.
fn hide_api_key(frame: &mut [u8], version: i16, key: i16) -> bool {
    fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = *b.get(*at)?;
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut at = 4 + 2; // the header, then error_code
    let flexible = version >= 3;
    let count = if flexible {
        match varint(frame, &mut at) {
            Some(n) if n > 0 => n - 1,
            _ => return false,
        }
    } else {
        let Some(n) = frame.get(at..at + 4) else {
            return false;
        };
        at += 4;
        u64::from(u32::from_be_bytes([n[0], n[1], n[2], n[3]]))
    };
    for _ in 0..count {
        let Some(k) = frame.get(at..at + 2) else {
            return false;
        };
        if i16::from_be_bytes([k[0], k[1]]) == key {
            frame[at..at + 2].copy_from_slice(&i16::MAX.to_be_bytes());
            return true;
        }
        at += 6;
        if flexible {
            // Tagged fields: a count, then (tag, size, bytes) each.
            let Some(tags) = varint(frame, &mut at) else {
                return false;
            };
            for _ in 0..tags {
                let (Some(_), Some(size)) = (varint(frame, &mut at), varint(frame, &mut at)) else {
                    return false;
                };
                at += size as usize;
            }
        }
    }
    false
}

/// A cluster that gives no producer id still gets every record, from a
/// plain producer (with a warning in the log), rather than a sink that
/// never delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_producer_ids_gets_a_plain_producer() {
    init_tracing();
    let listen = free_port();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let hidden = Arc::new(AtomicUsize::new(0));
    let h = hidden.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(forward_hiding_init_producer_id(client, listen, h.clone()));
        }
    });
    let Some(_tansu) = start_tansu_advertising(listen, proxy_port) else {
        return;
    };
    let brokers = format!("127.0.0.1:{proxy_port}");
    let sink = kafka::connect(&brokers).await.unwrap();
    let sent = events(0, 25);
    deliver(&sink, &sent)
        .await
        .expect("a plain producer delivers");
    assert!(
        hidden.load(Ordering::SeqCst) > 0,
        "the proxy hid InitProducerId from the producer"
    );
    let (fetched, partitions) = fetch_all(&brokers, EVENTS_TOPIC).await;
    assert_delivered(&sent, &fetched, partitions);
}

// ------------------------------------------------------------- the consumer

/// How long the consumer may take to catch up before the test calls it hung.
const CONSUME_LIMIT: Duration = Duration::from_secs(60);
/// The topic the consumer test reads.
const INGEST_TOPIC: &str = "agents.events";

/// Writes one record with `key` and `value` to `topic`/`partition`.
async fn produce(client: &Client, topic: &str, partition: i32, key: &str, value: &[u8]) -> i64 {
    let pc = client
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let record = Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.to_vec()),
        headers: BTreeMap::from([("content-type".to_owned(), b"application/json".to_vec())]),
        timestamp: rskafka::chrono::DateTime::from_timestamp_millis(ms as i64).unwrap(),
    };
    let offsets = tokio::time::timeout(
        DELIVER_LIMIT,
        pc.produce(vec![record], Compression::NoCompression),
    )
    .await
    .expect("the produce did not hang")
    .unwrap();
    offsets[0]
}

/// Waits until `done` holds, polling; fails after [`CONSUME_LIMIT`].
async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < CONSUME_LIMIT,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The stored position of each of the consumer's cursors.
async fn consumer_cursors(srv: &TestServer) -> BTreeMap<String, u64> {
    srv.store
        .cursors()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.name.starts_with("kafka-consume/"))
        .map(|c| (c.name, c.position))
        .collect()
}

/// A running consumer and what stops it.
struct Consumer {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Consumer {
    fn start(brokers: &str, srv: &TestServer) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(consume_kafka(
            brokers.to_owned(),
            INGEST_TOPIC.to_owned(),
            srv.state.clone(),
            stopped,
        ));
        Consumer { stop, task }
    }

    /// Stops the consumer and waits until it saved its cursors.
    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the consumer stops promptly")
            .expect("the consumer did not panic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_a_topic_are_recorded_once_and_bad_ones_dead_lettered() {
    init_tracing();
    let Some(tansu) = start_tansu(free_port()) else {
        return;
    };
    let brokers = tansu.brokers();
    let srv = TestServer::start().await;
    let consumer = Consumer::start(&brokers, &srv);

    // The consumer creates both topics; wait until they exist.
    let client = ClientBuilder::new(vec![brokers.clone()])
        .build()
        .await
        .expect("the test client connects");
    wait_until("the consumer's topics", || async {
        let topics = client.list_topics().await.unwrap_or_default();
        [INGEST_TOPIC, DEAD_LETTER_TOPIC].iter().all(|name| {
            topics
                .iter()
                .any(|t| t.name == *name && t.partitions.len() == 3)
        })
    })
    .await;

    let good = serde_json::to_vec(&common::event("KB9", "web-9", &at(1), "success")).unwrap();
    let mut keyed = common::event("KB9", "web-8", &at(1), "success");
    keyed["event_id"] = "agent-1".into();
    let keyed = serde_json::to_vec(&keyed).unwrap();
    let bad = br#"{"patch_id":"","system":"x","applied_at":"yesterday","status":"ok"}"#;
    assert_eq!(produce(&client, INGEST_TOPIC, 0, "web-9", &good).await, 0);
    // The same keyed event twice: recorded once.
    assert_eq!(produce(&client, INGEST_TOPIC, 1, "web-8", &keyed).await, 0);
    assert_eq!(produce(&client, INGEST_TOPIC, 1, "web-8", &keyed).await, 1);
    assert_eq!(produce(&client, INGEST_TOPIC, 2, "x", bad).await, 0);
    assert_eq!(
        produce(&client, INGEST_TOPIC, 0, "junk", b"not json").await,
        1
    );

    wait_until("every record consumed", || async {
        let c = consumer_cursors(&srv).await;
        [(0, 2), (1, 2), (2, 1)]
            .iter()
            .all(|&(p, end)| c.get(&cursor_name(INGEST_TOPIC, p)) == Some(&end))
    })
    .await;
    let events = srv.all_events().await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let by_system = |system: &str| -> Value {
        events
            .iter()
            .find(|e| e["system"] == system)
            .unwrap_or_else(|| panic!("no event of {system} in {events:#?}"))
            .clone()
    };
    let unkeyed = by_system("web-9");
    assert_eq!(unkeyed["event_id"], "kafka:agents.events:0:0:0");
    assert!(unkeyed["event_id"].as_str().unwrap().starts_with("kafka:"));
    assert_eq!(unkeyed["recorded_by"], "kafka:agents.events");
    let keyed = by_system("web-8");
    assert_eq!(keyed["event_id"], "agent-1");
    assert_eq!(keyed["recorded_by"], "kafka:agents.events");

    // Both bad records wait on the dead-letter topic, under their keys.
    let (letters, _) = fetch_all(&brokers, DEAD_LETTER_TOPIC).await;
    assert_eq!(letters.len(), 2, "{letters:#?}");
    let mut envelopes: Vec<(Option<Vec<u8>>, String, Value)> = letters
        .into_iter()
        .map(|f| (f.key, f.id, serde_json::from_slice(&f.value).unwrap()))
        .collect();
    envelopes.sort_by_key(|(_, _, e)| e["partition"].as_i64());
    let (key, id, invalid) = &envelopes[0];
    assert_eq!(key.as_deref(), Some(&b"junk"[..]));
    assert_eq!(id, "kafka:agents.events:0:1");
    assert_eq!(invalid["error"]["kind"], "syntax", "{invalid}");
    assert_eq!(invalid["topic"], INGEST_TOPIC);
    assert_eq!(invalid["partition"], 0);
    assert_eq!(invalid["offset"], 1);
    assert_eq!(invalid["message"], "kafka:agents.events:0:1");
    assert_eq!(invalid["payload"], "not json");
    let (key, _, invalid) = &envelopes[1];
    assert_eq!(key.as_deref(), Some(&b"x"[..]));
    assert_eq!(invalid["error"]["kind"], "validation", "{invalid}");
    assert_eq!(
        (invalid["partition"].as_i64(), invalid["offset"].as_i64()),
        (Some(2), Some(0))
    );
    assert_eq!(invalid["payload"], String::from_utf8_lossy(bad).as_ref());
    let fields: Vec<&str> = invalid["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"patch_id")
            && fields.contains(&"applied_at")
            && fields.contains(&"status"),
        "{fields:?}"
    );

    // Stopped, then started again: the new consumer resumes at the stored
    // cursors. Had it read partition 0 from the start, `not json` (before
    // the new record there) would have been dead-lettered a second time.
    consumer.stop().await;
    let later = serde_json::to_vec(&common::event("KB9", "web-7", &at(2), "success")).unwrap();
    assert_eq!(produce(&client, INGEST_TOPIC, 0, "web-7", &later).await, 2);
    let consumer = Consumer::start(&brokers, &srv);
    wait_until("the new record", || async {
        consumer_cursors(&srv)
            .await
            .get(&cursor_name(INGEST_TOPIC, 0))
            == Some(&3)
    })
    .await;
    let events = srv.all_events().await;
    assert_eq!(events.len(), 3, "{events:#?}");
    let new = events.iter().find(|e| e["system"] == "web-7").unwrap();
    assert_eq!(new["event_id"], "kafka:agents.events:0:2:0");
    assert_eq!(new["recorded_by"], "kafka:agents.events");
    let (letters, _) = fetch_all(&brokers, DEAD_LETTER_TOPIC).await;
    assert_eq!(
        letters.len(),
        2,
        "nothing was dead-lettered twice: {letters:#?}"
    );
    consumer.stop().await;
    let cursors = consumer_cursors(&srv).await;
    assert_eq!(
        cursors,
        BTreeMap::from([
            (cursor_name(INGEST_TOPIC, 0), 3),
            (cursor_name(INGEST_TOPIC, 1), 2),
            (cursor_name(INGEST_TOPIC, 2), 1),
        ])
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_waits_for_a_broker_that_is_down_then_catches_up() {
    init_tracing();
    // Nothing listens on the port yet: the consumer keeps retrying, and
    // can be stopped meanwhile.
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let srv = TestServer::start().await;
    let early = Consumer::start(&brokers, &srv);
    tokio::time::sleep(Duration::from_millis(500)).await;
    early.stop().await;
    let consumer = Consumer::start(&brokers, &srv);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The broker comes up on that port: the consumer connects, makes the
    // topic and records what is written to it.
    let Some(tansu) = start_tansu(port) else {
        return;
    };
    let client = ClientBuilder::new(vec![tansu.brokers()])
        .build()
        .await
        .expect("the test client connects");
    wait_until("the consumer's topic", || async {
        let topics = client.list_topics().await.unwrap_or_default();
        topics.iter().any(|t| t.name == INGEST_TOPIC)
    })
    .await;
    let good = serde_json::to_vec(&common::event("KB1", "web-1", &at(3), "success")).unwrap();
    assert_eq!(produce(&client, INGEST_TOPIC, 2, "web-1", &good).await, 0);
    wait_until("the event", || async { srv.all_events().await.len() == 1 }).await;
    let events = srv.all_events().await;
    assert_eq!(events[0]["event_id"], "kafka:agents.events:2:0:0");
    consumer.stop().await;
    srv.shutdown().await;
}

// ------------------------------------------------ the server end to end

/// The whole path (POST, ledger, cursor, sink, broker) with the broker
/// away for the issue's 60 s: events keep arriving while nothing listens
/// on its port, ingest is not slowed, and once tansu starts every event
/// arrives once, keyed by system, each system's events in seq order on its
/// partition. (tansu keeps its topics in memory, so the outage is before
/// its first start: a restarted tansu would have lost what it had.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_posted_while_the_broker_is_down_all_arrive_in_order_once_it_is_up() {
    if tansu_binary().is_none() {
        service_unavailable("tansu", "the tansu binary is not installed");
        return;
    }
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let stream = patchaudit_server::stream::StreamConfig {
        kafka_brokers: Some(brokers.clone()),
        alerts: patchaudit_server::stream::alerts::AlertConfig {
            overdue_every: Duration::ZERO,
            ..Default::default()
        },
        ..Default::default()
    };
    let srv = TestServer::with_stream(
        patchaudit_server::ServerConfig {
            rate_limit_per_second: 0,
            ..Default::default()
        },
        Some(stream),
    )
    .await;
    let outage = Instant::now();
    let mut sent = 0u64;
    while outage.elapsed() < OUTAGE {
        let started = Instant::now();
        let batch: Vec<Value> = (0..3)
            .map(|i| common::event("KB1", &format!("web-{i}"), &at(1), "success"))
            .collect();
        srv.ingest(&batch).await;
        sent += 3;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "ingest must not wait for the broker"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _tansu = start_tansu(port).expect("tansu starts");
    let deadline = Instant::now() + DELIVER_LIMIT;
    let fetched = loop {
        let client = ClientBuilder::new(vec![brokers.clone()]).build().await;
        if let Ok(client) = client {
            let known = client
                .list_topics()
                .await
                .map(|t| t.iter().any(|t| t.name == EVENTS_TOPIC))
                .unwrap_or(false);
            if known {
                let (fetched, _) = fetch_all(&brokers, EVENTS_TOPIC).await;
                if fetched.len() as u64 >= sent {
                    break fetched;
                }
            }
        }
        assert!(Instant::now() < deadline, "not every event arrived in time");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(fetched.len() as u64, sent, "each event once");
    let mut per_system: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, HashSet<i32>> = BTreeMap::new();
    let mut sorted = fetched;
    sorted.sort_by_key(|f| (f.partition, f.offset));
    for f in &sorted {
        let body: Value = serde_json::from_slice(&f.value).unwrap();
        let system = body["system"].as_str().unwrap().to_owned();
        assert_eq!(f.key.as_deref(), Some(system.as_bytes()));
        assert_eq!(f.id, body["message_id"].as_str().unwrap());
        per_system
            .entry(system.clone())
            .or_default()
            .push(body["seq"].as_u64().unwrap());
        partition_of.entry(system).or_default().insert(f.partition);
    }
    let mut all: Vec<u64> = per_system.values().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..sent).collect::<Vec<_>>(), "every seq, once");
    for (system, seqs) in &per_system {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{system}: {seqs:?}");
        assert_eq!(partition_of[system].len(), 1, "{system} on one partition");
    }
    srv.shutdown().await;
}
