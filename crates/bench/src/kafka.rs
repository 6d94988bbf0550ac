//! `kafka`: how fast the Kafka sink delivers, against a tansu broker the
//! bench starts on a free loopback port.
//!
//! Each run starts a fresh tansu (in-memory storage) and sends --events
//! messages through [`KafkaSink::deliver`] in batches of 500, the stream's
//! batch, one after another as `run_sink` does, after one warm-up message
//! that creates the topics and starts the idempotent producer. The baseline,
//! on its own fresh tansu in the same run, is a bare krafka producer (also
//! idempotent, `acks=all`) enqueueing the records the sink would write, to the same
//! partitions, then awaiting them all: the client library without the sink
//! around it. The two alternate which goes first. Afterwards each topic is
//! read back with rskafka, and the run fails unless it holds every message
//! exactly once.

use crate::report::{Report, Row};
use crate::stats::{fmt_count, median};
use anyhow::{bail, ensure, Context};
use clap::Args;
use krafka::admin::{CreateTopicsOptions, NewTopic};
use krafka::producer::Acks;
use krafka::Kafka;
use patchaudit_server::stream::kafka::{self, partition_for, EVENTS_TOPIC, MSG_ID_HEADER};
use patchaudit_server::stream::{Message, Sink, Source};
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The stream's batch: `run_sink` reads and delivers at most this many.
const BATCH: u64 = 500;

/// Options of `patchaudit-bench kafka`.
#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Messages each side sends per run.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Runs of each side; the medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The tansu binary [default: $TANSU, then the PATH, then ~/.cargo/bin].
    #[arg(long, value_name = "PATH")]
    pub tansu: Option<PathBuf>,
}

/// A tansu broker on a free loopback port, killed when dropped.
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
    async fn start(bin: &PathBuf) -> anyhow::Result<Tansu> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free loopback port for tansu")?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
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
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut tansu = Tansu { child, port };
        for _ in 0..300 {
            if let Some(status) = tansu.child.try_wait()? {
                bail!("{} exited at start: {status}", bin.display());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(tansu);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("tansu did not listen on {port} within 15 s")
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Where tansu is, as the tests look for it.
fn tansu_binary(args: &KafkaArgs) -> Option<PathBuf> {
    if let Some(p) = &args.tansu {
        return Some(p.clone());
    }
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

/// Message `seq`: an event of one of 10,000 systems, about 260 bytes of
/// JSON, as the stream would publish it.
fn message(seq: u64) -> Message {
    let system = format!("host-{:05}.example.com", seq % 10_000);
    let id = format!("{seq}:evt-{seq}");
    let body = format!(
        r#"{{"message_id":"{id}","seq":{seq},"system":"{system}","patch_id":"DSA-{}-1","status":"success","applied_at":"2026-11-01T00:00:00Z","package":"openssl","from_version":"3.0.14-1~deb12u2","to_version":"3.0.15-1~deb12u1","source":"dpkg","tags":{{"env":"prod"}},"severity":"high"}}"#,
        5000 + seq % 1000
    );
    Message {
        id,
        source: Source::Events,
        position: seq,
        key: system,
        body: Arc::from(body.into_bytes()),
        event: None,
        severity: None,
    }
}

/// The sink: a warm-up message, then every message in stream-sized batches.
async fn time_sink(brokers: &str, n: u64) -> anyhow::Result<f64> {
    let sink = kafka::connect(brokers).await.map_err(anyhow::Error::msg)?;
    sink.deliver(&[message(0)]).await?;
    let start = Instant::now();
    let mut seq = 1;
    while seq <= n {
        let batch: Vec<Message> = (seq..(seq + BATCH).min(n + 1)).map(message).collect();
        sink.deliver(&batch).await?;
        seq += BATCH;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The baseline: a bare idempotent krafka producer, the same records to
/// the same partitions, all enqueued and then awaited.
async fn time_bare(brokers: &str, n: u64) -> anyhow::Result<f64> {
    let client = Kafka::builder(brokers).client_id("bench").connect().await?;
    client
        .admin()
        .create_topics(
            [NewTopic::new(
                EVENTS_TOPIC,
                kafka::PARTITIONS,
                kafka::REPLICATION,
            )?],
            CreateTopicsOptions::default(),
        )
        .await?
        .remove(EVENTS_TOPIC)
        .context("no answer for the topic")??;
    let producer = client.producer().acks(Acks::All).build().await?;
    // The very records the sink writes, to the same partitions.
    let timestamp = kafka::now_millis();
    let record = |m: &Message| {
        let partition = partition_for(m.key.as_bytes(), kafka::PARTITIONS);
        kafka::record(m, EVENTS_TOPIC, partition, timestamp)
    };
    ensure!(
        producer.send(record(&message(0))).await?.is_persisted(),
        "the warm-up record was not acknowledged"
    );
    let start = Instant::now();
    let mut pending = Vec::with_capacity(n as usize);
    for seq in 1..=n {
        pending.push(producer.enqueue(record(&message(seq))).await?);
    }
    for p in pending {
        ensure!(p.await?.is_persisted(), "a record was not acknowledged");
    }
    let took = start.elapsed().as_secs_f64();
    producer.close().await?;
    Ok(took)
}

/// Reads the events topic back and checks it holds messages 0..=n once each.
async fn check_topic(brokers: &str, n: u64) -> anyhow::Result<()> {
    let client = ClientBuilder::new(vec![brokers.to_owned()]).build().await?;
    let mut ids = HashSet::new();
    let mut records = 0u64;
    for p in 0..kafka::PARTITIONS {
        let pc = client
            .partition_client(EVENTS_TOPIC, p, UnknownTopicHandling::Retry)
            .await?;
        let mut offset = pc.get_offset(OffsetAt::Earliest).await?;
        let end = pc.get_offset(OffsetAt::Latest).await?;
        while offset < end {
            let (batch, _) = pc.fetch_records(offset, 1..10_000_000, 500).await?;
            ensure!(
                !batch.is_empty(),
                "{EVENTS_TOPIC}/{p}: nothing at {offset} < {end}"
            );
            for r in batch {
                offset = r.offset + 1;
                records += 1;
                let id = r
                    .record
                    .headers
                    .get(MSG_ID_HEADER)
                    .cloned()
                    .unwrap_or_default();
                ids.insert(id);
            }
        }
    }
    ensure!(
        records == n + 1 && ids.len() as u64 == n + 1,
        "the topic holds {records} records with {} ids, not {} messages once each",
        ids.len(),
        n + 1
    );
    Ok(())
}

/// Runs the benchmark.
pub async fn run(args: &KafkaArgs) -> anyhow::Result<Report> {
    ensure!(
        args.events > 0 && args.runs > 0,
        "--events and --runs must be positive"
    );
    let mut report = Report::default();
    let Some(bin) = tansu_binary(args) else {
        report.notes.push(
            "kafka: skipped, no tansu binary (--tansu, $TANSU, PATH or ~/.cargo/bin); install it with \
             `cargo install tansu --locked --features dynostore`"
                .to_owned(),
        );
        return Ok(report);
    };
    let n = args.events;
    let (mut sink, mut bare) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        for side in if run % 2 == 0 {
            ["sink", "bare"]
        } else {
            ["bare", "sink"]
        } {
            let tansu = Tansu::start(&bin).await?;
            let brokers = tansu.brokers();
            let secs = if side == "sink" {
                time_sink(&brokers, n).await?
            } else {
                time_bare(&brokers, n).await?
            };
            check_topic(&brokers, n)
                .await
                .with_context(|| format!("run {}, {side}", run + 1))?;
            eprintln!(
                "[kafka] run {}/{}: {side}: {n} messages in {secs:.2} s ({} /s), each once in the topic",
                run + 1,
                args.runs,
                fmt_count(n as f64 / secs)
            );
            if side == "sink" { &mut sink } else { &mut bare }.push(n as f64 / secs);
        }
    }
    let (s, b) = (median(&sink), median(&bare));
    report.rows.push(
        Row::info(
            "kafka",
            format!(
                "KafkaSink::deliver to tansu, {} messages in batches of {BATCH}, idempotent producer (messages/s, median of {})",
                fmt_count(n as f64),
                args.runs
            ),
            fmt_count(s),
        )
        .baseline(format!("bare krafka producer: {}", fmt_count(b)), format!("{:.2}×", s / b)),
    );
    report.notes.push(format!(
        "kafka: per run, sink {} and bare producer {} messages/s; each run on a fresh tansu ({}), \
         its topic read back with rskafka and holding every message once.",
        sink.iter()
            .map(|v| fmt_count(*v))
            .collect::<Vec<_>>()
            .join(", "),
        bare.iter()
            .map(|v| fmt_count(*v))
            .collect::<Vec<_>>()
            .join(", "),
        bin.display()
    ));
    Ok(report)
}
