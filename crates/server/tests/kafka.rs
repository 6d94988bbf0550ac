//! The Kafka sink against a real broker: tansu, a Kafka-compatible broker
//! in one binary, which each test starts itself with in-memory storage on a
//! free loopback port. Without tansu the broker tests are skipped loudly,
//! or fail under `PATCHAUDIT_REQUIRE_SERVICES=1`.
//!
//! The records are read back with rskafka, partition by partition, to
//! check what a consumer would see: every message, keyed by its system,
//! with its id in a header, each system on one partition and in order.

use patchaudit_server::stream::kafka::{
    self, partition_for, ALERTS_TOPIC, EVENTS_TOPIC, MSG_ID_HEADER, PARTITIONS,
};
use patchaudit_server::stream::{Message, Sink, SinkError, Source};
use patchaudit_store::conformance::service_unavailable;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let Some(bin) = tansu_binary() else {
        service_unavailable(
            "tansu (Kafka broker)",
            "no tansu binary in $TANSU, PATH or ~/.cargo/bin",
        );
        return None;
    };
    let url = format!("tcp://127.0.0.1:{port}");
    let child = match Command::new(&bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_keyed_ordered_records_with_ids() {
    let Some(tansu) = start_tansu(free_port()) else {
        return;
    };
    let brokers = tansu.brokers();
    let sink = kafka::connect(&brokers).await.unwrap();
    assert_eq!(sink.name(), "kafka");

    // Three batches, the way the stream hands them over.
    let first = events(0, 40);
    let second = events(40, 25);
    let alerts = vec![
        alert(1, "failed_patch"),
        alert(2, "critical_overdue"),
        alert(3, "failed_patch"),
        alert(4, "failed_patch"),
    ];
    deliver(&sink, &first).await.unwrap();
    deliver(&sink, &second).await.unwrap();
    deliver(&sink, &alerts).await.unwrap();
    // An empty batch is a no-op.
    deliver(&sink, &[]).await.unwrap();

    // A second sink finds the topics that exist and uses them as they are.
    let again = kafka::connect(&brokers).await.unwrap();
    let third = events(65, 10);
    deliver(&again, &third).await.unwrap();

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
