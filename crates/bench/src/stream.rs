//! `stream`: the real-time stream's delivery latency and its lag under load,
//! against a nats-server of the bench's own (never a shared one).
//!
//! - **A, latency at a steady rate.** Single events are POSTed on an open-loop
//!   schedule (`--rate` per second for `--seconds`), and a JetStream ordered
//!   consumer on `patchaudit.events.>`, subscribed before the first POST,
//!   stamps each message as it arrives. Latency is that stamp minus the
//!   instant the event's POST was sent; messages are matched to POSTs by the
//!   `event_id` in `Nats-Msg-Id`. Baselines, in the same run: the POST round
//!   trips of the same requests (what a client waits for anyway), and a raw
//!   JetStream publish → ordered-consumer latency at the same rate.
//! - **B, lag at top ingest rate.** NDJSON batches are POSTed back to back
//!   from one client while `GET /v1/stream/status` is sampled; the `nats/events`
//!   cursor's lag is tracked during ingest and until it drains to zero.
//!   Baseline: the same ingest on a server without the stream.

use crate::gen::Generator;
use crate::ingest::post_all;
use crate::report::{Report, Row};
use crate::server::{expect_created, http_client, open_store, RunningServer};
use crate::stats::{fmt_count, fmt_duration, median, Latencies};
use anyhow::{bail, ensure, Context};
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use clap::{Args, Parser};
use futures::StreamExt;
use patchaudit_server::stream::alerts::AlertConfig;
use patchaudit_server::stream::nats::{STREAM, SUBJECTS};
use patchaudit_server::stream::StreamConfig;
use patchaudit_store::Store;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Options of the `stream` benchmark.
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// A: events per second, one per POST, on an open-loop schedule.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// A: seconds to send at --rate (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// A: events sent at --rate before the measured ones (not reported).
    #[arg(long, default_value_t = 500)]
    pub warmup: u64,
    /// B: events ingested as fast as one client can, in NDJSON batches.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// B: events per NDJSON request.
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
    /// B: how often `GET /v1/stream/status` is sampled during ingest, in ms.
    #[arg(long, default_value_t = 250)]
    pub sample_ms: u64,
    /// Repetitions of every measurement; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The nats-server binary. The bench starts its own on a free loopback
    /// port with JetStream in a temporary directory, and kills it at the end.
    #[arg(long, value_name = "PATH", default_value = "/usr/sbin/nats-server")]
    pub nats_server: PathBuf,
    /// Skip A's raw JetStream publish → receive baseline.
    #[arg(long)]
    pub no_raw_baseline: bool,
}

impl StreamArgs {
    /// The defaults, as the command line gives them.
    pub fn defaults() -> StreamArgs {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: StreamArgs,
        }
        Wrap::parse_from(["stream"]).args
    }
}

/// The end-to-end target of A.
const P99_TARGET: Duration = Duration::from_millis(50);
/// How long B waits for the stream to drain after ingest before giving up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);
/// The stream and subjects of A's raw baseline.
const RAW_STREAM: &str = "BENCHRAW";
const RAW_SUBJECT: &str = "bench.raw.events";

/// A nats-server of the bench's own, killed (and its store removed) on drop.
struct NatsServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    async fn start(bin: &Path, work_dir: &Path) -> anyhow::Result<NatsServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free loopback port for nats-server")?
            .port();
        ensure!(port != 4222, "refusing the shared NATS port 4222");
        let dir = tempfile::Builder::new()
            .prefix("patchaudit-bench-nats-")
            .tempdir_in(work_dir)
            .context("creating nats-server's store directory")?;
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        };
        for _ in 0..200 {
            if let Some(status) = server.child.try_wait()? {
                bail!("{} exited at start: {status}", bin.display());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                eprintln!(
                    "[stream] nats-server (pid {}) listening on {}",
                    server.child.id(),
                    server.url
                );
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("nats-server did not listen on port {port} within 10 s")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deletes `name` if it exists and creates it afresh (JetStream would drop
/// a run's messages as duplicates of the previous run's otherwise: the
/// message ids repeat with the seed). Retries while JetStream starts up.
async fn reset_stream(
    js: &jetstream::Context,
    name: &str,
    subjects: &[&str],
) -> anyhow::Result<jetstream::stream::Stream> {
    let mut last = String::new();
    for _ in 0..50 {
        let _ = js.delete_stream(name).await;
        match js
            .create_stream(jetstream::stream::Config {
                name: name.to_owned(),
                subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
                // The sink's own setting (see patchaudit_server::stream::nats).
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
        {
            Ok(s) => return Ok(s),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("creating the JetStream stream {name}: {last}")
}

/// An ordered consumer stamping each message on arrival.
struct Collector {
    received: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Collected>,
}

#[derive(Default)]
struct Collected {
    /// (Nats-Msg-Id, nanoseconds since t0) of every message, in arrival order.
    messages: Vec<(String, u64)>,
    errors: u64,
    first_error: Option<String>,
}

impl Collector {
    /// Subscribes before anything is sent: the consumer exists on the server
    /// when this returns.
    async fn subscribe(
        stream: &jetstream::stream::Stream,
        filter: &str,
        t0: Instant,
    ) -> anyhow::Result<Collector> {
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: filter.to_owned(),
                ..Default::default()
            })
            .await
            .context("creating the ordered consumer")?;
        let mut messages = consumer
            .messages()
            .await
            .context("subscribing the ordered consumer")?;
        let received = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = watch::channel(false);
        let count = received.clone();
        let task = tokio::spawn(async move {
            let mut out = Collected::default();
            loop {
                tokio::select! {
                    biased;
                    m = messages.next() => match m {
                        Some(Ok(m)) => {
                            let at = t0.elapsed().as_nanos() as u64;
                            let id = m
                                .headers
                                .as_ref()
                                .and_then(|h| h.get("Nats-Msg-Id"))
                                .map(|v| v.as_str().to_owned())
                                .unwrap_or_default();
                            out.messages.push((id, at));
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Err(e)) => {
                            out.errors += 1;
                            out.first_error.get_or_insert(e.to_string());
                        }
                        None => break,
                    },
                    _ = stopped.changed() => break,
                }
            }
            out
        });
        Ok(Collector {
            received,
            stop,
            task,
        })
    }

    /// Waits until `expect` messages arrived or `timeout` passed, then stops.
    async fn finish(self, expect: u64, timeout: Duration) -> anyhow::Result<Collected> {
        let deadline = Instant::now() + timeout;
        while self.received.load(Ordering::Relaxed) < expect && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.stop.send(true);
        self.task.await.context("the consumer task panicked")
    }
}

/// What an open-loop sender did, per event index.
struct Sent {
    /// Nanoseconds since t0 at which each send started (u64::MAX: never).
    send_ns: Vec<u64>,
    /// Each request's round trip (POST answered, or publish acked).
    rtt_ns: Vec<u64>,
    /// How late each send started against its schedule.
    late_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    /// From the first scheduled send to the last answer.
    elapsed: Duration,
}

/// Sends `n` items at `rate` per second on an open-loop schedule: item `i`
/// is due at `start + i / rate` and is sent then on its own task, whatever
/// the earlier ones are still waiting for.
async fn open_loop<F, Fut>(n: u64, rate: f64, t0: Instant, send: F) -> Sent
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let send_ns: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(u64::MAX)).collect());
    let rtt_ns: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let late_ns: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let errors = Arc::new(Mutex::new((0u64, None::<String>)));
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(5);
    let mut tasks = Vec::with_capacity(n as usize);
    let mut next = 0u64;
    while next < n {
        let now = Instant::now();
        while next < n && start + period.mul_f64(next as f64) <= now {
            let due = start + period.mul_f64(next as f64);
            let fut = send(next);
            let (send_ns, rtt_ns, late_ns, errors) = (
                send_ns.clone(),
                rtt_ns.clone(),
                late_ns.clone(),
                errors.clone(),
            );
            let i = next as usize;
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                send_ns[i].store(t.duration_since(t0).as_nanos() as u64, Ordering::Relaxed);
                late_ns[i].store(
                    t.saturating_duration_since(due).as_nanos() as u64,
                    Ordering::Relaxed,
                );
                let outcome = fut.await;
                rtt_ns[i].store(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                if let Err(e) = outcome {
                    let mut g = errors.lock().unwrap_or_else(|p| p.into_inner());
                    g.0 += 1;
                    g.1.get_or_insert(e);
                }
            }));
            next += 1;
        }
        if next < n {
            tokio::time::sleep_until((start + period.mul_f64(next as f64)).into()).await;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let take = |v: Arc<Vec<AtomicU64>>| v.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let (errors, first_error) = {
        let g = errors.lock().unwrap_or_else(|p| p.into_inner());
        (g.0, g.1.clone())
    };
    Sent {
        send_ns: take(send_ns),
        rtt_ns: take(rtt_ns),
        late_ns: take(late_ns),
        errors,
        first_error,
        elapsed,
    }
}

/// One pass of A.
struct LatencyPass {
    /// Send → consumer receipt, measured events only.
    e2e: Latencies,
    /// The request's own round trip (POST answered, or publish acked).
    rtt: Latencies,
    /// How late sends started against the schedule.
    late: Latencies,
    /// Measured events sent / received by the consumer.
    sent: u64,
    received: u64,
    /// Achieved send rate over the whole schedule (events/s).
    rate: f64,
    errors: u64,
    first_error: Option<String>,
}

/// Matches receipts to sends; `index_of` maps a Nats-Msg-Id to the index.
fn summarise(
    sent: &Sent,
    got: &Collected,
    warmup: u64,
    index_of: impl Fn(&str) -> Option<u64>,
) -> LatencyPass {
    let n = sent.send_ns.len();
    let mut recv = vec![u64::MAX; n];
    for (id, at) in &got.messages {
        if let Some(i) = index_of(id).filter(|&i| (i as usize) < n) {
            let r = &mut recv[i as usize];
            *r = (*r).min(*at);
        }
    }
    let measured = (warmup as usize).min(n)..n;
    let mut e2e = Vec::new();
    let mut rtt = Vec::new();
    let mut late = Vec::new();
    for i in measured.clone() {
        rtt.push(sent.rtt_ns[i]);
        late.push(sent.late_ns[i]);
        if recv[i] != u64::MAX && sent.send_ns[i] != u64::MAX {
            e2e.push(recv[i].saturating_sub(sent.send_ns[i]));
        }
    }
    LatencyPass {
        received: e2e.len() as u64,
        e2e: Latencies::from_nanos(&mut e2e),
        rtt: Latencies::from_nanos(&mut rtt),
        late: Latencies::from_nanos(&mut late),
        sent: measured.len() as u64,
        rate: n as f64 / sent.elapsed.as_secs_f64(),
        errors: sent.errors + got.errors,
        first_error: sent.first_error.clone().or(got.first_error.clone()),
    }
}

fn stream_config(nats_url: &str) -> StreamConfig {
    StreamConfig {
        nats_url: Some(nats_url.to_owned()),
        alerts: AlertConfig {
            overdue_every: Duration::ZERO,
            ..AlertConfig::default()
        },
        ..StreamConfig::default()
    }
}

fn tempdir(parent: &Path) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("patchaudit-bench-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))
}

/// A, through the product: POST → ledger → NATS sink → JetStream → consumer.
async fn latency_stream(
    gen: &Generator,
    args: &StreamArgs,
    bodies: &[Bytes],
    nats: &NatsServer,
    work_dir: &Path,
) -> anyhow::Result<LatencyPass> {
    let n = bodies.len() as u64;
    let index: Arc<HashMap<String, u64>> = Arc::new((0..n).map(|i| (gen.event_id(i), i)).collect());
    let client = async_nats::connect(&nats.url)
        .await
        .context("connecting to nats-server")?;
    let js = jetstream::new(client);
    let stream = reset_stream(&js, STREAM, &SUBJECTS).await?;
    let t0 = Instant::now();
    let collector = Collector::subscribe(&stream, "patchaudit.events.>", t0).await?;

    let dir = tempdir(work_dir)?;
    let store = open_store(&dir.path().join("ledger.db"))?;
    let server =
        RunningServer::start_with_stream(Arc::new(store.clone()), &stream_config(&nats.url))
            .await?;
    let http = http_client(64)?;
    let url = format!("{}/v1/events", server.base);
    http.get(format!("{}/healthz", server.base))
        .send()
        .await
        .context("the server does not answer /healthz")?;
    eprintln!(
        "[stream] A: POSTing {} + {} warm-up events at {} ev/s; consumer on patchaudit.events.>",
        fmt_count((n - args.warmup) as f64),
        args.warmup,
        fmt_count(args.rate)
    );
    let bodies: Arc<Vec<Bytes>> = Arc::new(bodies.to_vec());
    let sent = open_loop(n, args.rate, t0, |i| {
        let req = http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bodies[i as usize].clone());
        async move { expect_created(req.send().await).await }
    })
    .await;
    let got = collector.finish(n, Duration::from_secs(60)).await?;
    let stored = store.len().await.context("counting the ledger")?;
    server.stop().await?;
    ensure!(
        stored == n,
        "the ledger holds {stored} events, expected {n}"
    );
    Ok(summarise(&sent, &got, args.warmup, |id| {
        id.split_once(':').and_then(|(_, e)| index.get(e).copied())
    }))
}

/// A's raw baseline: JetStream publish → the same kind of consumer, at the
/// same rate and with the same bodies, without patchaudit in between.
async fn latency_raw(
    args: &StreamArgs,
    bodies: &[Bytes],
    nats: &NatsServer,
) -> anyhow::Result<LatencyPass> {
    let n = bodies.len() as u64;
    let client = async_nats::connect(&nats.url)
        .await
        .context("connecting to nats-server")?;
    let js = jetstream::new(client);
    let stream = reset_stream(&js, RAW_STREAM, &["bench.raw.>"]).await?;
    let t0 = Instant::now();
    let collector = Collector::subscribe(&stream, "bench.raw.>", t0).await?;
    eprintln!(
        "[stream] A baseline: publishing {} events to JetStream at {} ev/s",
        fmt_count(n as f64),
        fmt_count(args.rate)
    );
    let bodies: Arc<Vec<Bytes>> = Arc::new(bodies.to_vec());
    let sent = open_loop(n, args.rate, t0, |i| {
        let js = js.clone();
        let publish = PublishMessage::build()
            .payload(bodies[i as usize].clone())
            .message_id(i.to_string())
            .header("Content-Type", "application/json");
        async move {
            let ack = js
                .send_publish(RAW_SUBJECT, publish)
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map(|_| ()).map_err(|e| e.to_string())
        }
    })
    .await;
    let got = collector.finish(n, Duration::from_secs(60)).await?;
    let _ = js.delete_stream(RAW_STREAM).await;
    Ok(summarise(&sent, &got, args.warmup, |id| id.parse().ok()))
}

/// One status sample of B.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    ledger_len: u64,
    /// The `nats/events` cursor's saved position (0 before its first save).
    position: u64,
    /// The largest lag of any other cursor (the alert rules').
    other_lag: u64,
}

impl Sample {
    fn lag(&self) -> u64 {
        self.ledger_len.saturating_sub(self.position)
    }
}

async fn sample(client: &reqwest::Client, base: &str, t0: Instant) -> anyhow::Result<Sample> {
    let v: serde_json::Value = client
        .get(format!("{base}/v1/stream/status"))
        .send()
        .await
        .context("GET /v1/stream/status")?
        .error_for_status()
        .context("GET /v1/stream/status")?
        .json()
        .await
        .context("decoding /v1/stream/status")?;
    let at = t0.elapsed();
    let ledger_len = v["ledger_len"].as_u64().unwrap_or(0);
    let mut position = 0;
    let mut other_lag = 0;
    for c in v["cursors"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("");
        if name == "nats/events" {
            position = c["position"].as_u64().unwrap_or(0);
        } else if name.ends_with("/events") {
            other_lag = other_lag.max(c["lag"].as_u64().unwrap_or(0));
        }
    }
    Ok(Sample {
        at,
        ledger_len,
        position,
        other_lag,
    })
}

/// One pass of B with the stream.
struct LagPass {
    ingest_rate: f64,
    ingest_time: Duration,
    max_lag: u64,
    mid_lag: u64,
    end_lag: u64,
    /// From the end of ingest to the cursor at the ledger's end.
    drain: Option<Duration>,
    /// Events ÷ time from the first POST to lag 0.
    delivery_rate: f64,
    /// The end-of-ingest lag ÷ drain time: the stream's rate with ingest idle.
    drain_rate: f64,
    /// The alert rules' largest lag, for the notes.
    other_max_lag: u64,
    samples: usize,
}

/// B with the stream: top-rate ingest, status sampled, then drained.
async fn lag_with_stream(
    args: &StreamArgs,
    bodies: &Arc<Vec<Bytes>>,
    nats: &NatsServer,
    work_dir: &Path,
) -> anyhow::Result<LagPass> {
    let n = args.events;
    let client = async_nats::connect(&nats.url)
        .await
        .context("connecting to nats-server")?;
    let js = jetstream::new(client);
    let stream = reset_stream(&js, STREAM, &SUBJECTS).await?;
    let dir = tempdir(work_dir)?;
    let store = open_store(&dir.path().join("ledger.db"))?;
    let server =
        RunningServer::start_with_stream(Arc::new(store.clone()), &stream_config(&nats.url))
            .await?;
    let status = http_client(2)?;
    let t0 = Instant::now();
    let mut samples = vec![sample(&status, &server.base, t0).await?];
    let (base, b) = (server.base.clone(), bodies.clone());
    let mut ingest = tokio::spawn(async move { post_all(&base, &b).await });
    let mut tick = tokio::time::interval(Duration::from_millis(args.sample_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let (rate, created) = loop {
        tokio::select! {
            r = &mut ingest => break r.context("the ingest task panicked")??,
            _ = tick.tick() => samples.push(sample(&status, &server.base, t0).await?),
        }
    };
    let ingest_end = t0.elapsed();
    ensure!(
        created == n,
        "the server created {created} events, expected {n}"
    );
    let end = sample(&status, &server.base, t0).await?;
    samples.push(end);
    let mut drained = None;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut last = end;
    while Instant::now() < deadline {
        if last.ledger_len >= n && last.lag() == 0 {
            drained = Some(last.at);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        last = sample(&status, &server.base, t0).await?;
        samples.push(last);
    }
    // Let the alert rules finish too, so that stopping has nothing to wait on.
    let info = stream
        .get_info()
        .await
        .context("reading the PATCHAUDIT stream's state")?;
    server.stop().await?;
    if drained.is_some() {
        ensure!(
            info.state.messages >= n,
            "the PATCHAUDIT stream holds {} messages, expected at least {n}",
            info.state.messages
        );
    }
    let during: Vec<&Sample> = samples.iter().filter(|s| s.at <= ingest_end).collect();
    let mid_lag = during
        .iter()
        .min_by_key(|s| s.at.abs_diff(ingest_end / 2))
        .map_or(0, |s| s.lag());
    let drain = drained.map(|t| t.saturating_sub(ingest_end));
    Ok(LagPass {
        ingest_rate: rate,
        ingest_time: ingest_end,
        max_lag: samples.iter().map(Sample::lag).max().unwrap_or(0),
        mid_lag,
        end_lag: end.lag(),
        drain,
        delivery_rate: drained.map_or(0.0, |t| n as f64 / t.as_secs_f64()),
        drain_rate: drain.map_or(0.0, |d| end.lag() as f64 / d.as_secs_f64().max(1e-3)),
        other_max_lag: samples.iter().map(|s| s.other_lag).max().unwrap_or(0),
        samples: samples.len(),
    })
}

/// B's baseline: the same ingest on a server without the stream.
async fn ingest_without_stream(
    args: &StreamArgs,
    bodies: &[Bytes],
    work_dir: &Path,
) -> anyhow::Result<f64> {
    let dir = tempdir(work_dir)?;
    let store = open_store(&dir.path().join("ledger.db"))?;
    let server = RunningServer::start(Arc::new(store.clone())).await?;
    let (rate, created) = post_all(&server.base, bodies).await?;
    server.stop().await?;
    ensure!(
        created == args.events,
        "the server created {created} events, expected {}",
        args.events
    );
    Ok(rate)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn med_ms(v: &[Duration]) -> Duration {
    Duration::from_secs_f64(median(
        &v.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>(),
    ))
}

/// Runs the `stream` benchmark. Without nats-server, reports that it was
/// skipped instead of failing (so `all` runs on).
pub async fn run(gen: &Generator, args: &StreamArgs, work_dir: &Path) -> anyhow::Result<Report> {
    ensure!(
        args.rate > 0.0 && args.seconds > 0.0 && args.runs > 0 && args.events > 0 && args.batch > 0,
        "--rate, --seconds, --runs, --events and --batch must be positive"
    );
    let mut report = Report::default();
    if !args.nats_server.exists() {
        eprintln!(
            "[stream] skipped: {} is not installed",
            args.nats_server.display()
        );
        report.notes.push(format!(
            "stream: SKIPPED — nats-server is not available at {} (install it or pass --nats-server PATH)",
            args.nats_server.display()
        ));
        return Ok(report);
    }
    let nats = NatsServer::start(&args.nats_server, work_dir).await?;

    let measured = (args.rate * args.seconds).round() as u64;
    let total = measured + args.warmup;
    let singles: Vec<Bytes> = (0..total)
        .map(|i| serde_json::to_vec(&gen.event(i)).map(Bytes::from))
        .collect::<Result<_, _>>()
        .context("encoding an event as JSON")?;
    eprintln!(
        "[stream] generating {} events (seed {}) as NDJSON batches of {}",
        fmt_count(args.events as f64),
        gen.seed(),
        args.batch
    );
    let mut batches = Vec::new();
    let mut body = Vec::new();
    for i in 0..args.events {
        serde_json::to_writer(&mut body, &gen.event(i)).context("encoding an event as JSON")?;
        body.push(b'\n');
        if (i + 1) % args.batch as u64 == 0 {
            batches.push(Bytes::from(std::mem::take(&mut body)));
        }
    }
    if !body.is_empty() {
        batches.push(Bytes::from(body));
    }
    let batches = Arc::new(batches);

    let mut stream_a = Vec::new();
    let mut raw_a = Vec::new();
    let mut lag_b = Vec::new();
    let mut base_b = Vec::new();
    for run in 0..args.runs {
        let first = run % 2 == 0;
        eprintln!("[stream] run {}/{}", run + 1, args.runs);
        // A: the product and, alternating which goes first, raw JetStream.
        for side in if first { [0, 1] } else { [1, 0] } {
            if side == 0 {
                let p = latency_stream(gen, args, &singles, &nats, work_dir).await?;
                eprintln!(
                    "[stream] A: e2e p50 {} p99 {} max {}; POST p50 {} p99 {}; {} of {} received; {} errors",
                    fmt_duration(p.e2e.p50),
                    fmt_duration(p.e2e.p99),
                    fmt_duration(p.e2e.max),
                    fmt_duration(p.rtt.p50),
                    fmt_duration(p.rtt.p99),
                    p.received,
                    p.sent,
                    p.errors
                );
                stream_a.push(p);
            } else if !args.no_raw_baseline {
                let p = latency_raw(args, &singles, &nats).await?;
                eprintln!(
                    "[stream] A baseline: raw JetStream p50 {} p99 {} max {}; {} of {} received",
                    fmt_duration(p.e2e.p50),
                    fmt_duration(p.e2e.p99),
                    fmt_duration(p.e2e.max),
                    p.received,
                    p.sent
                );
                raw_a.push(p);
            }
        }
        // B: with and without the stream, alternating which goes first.
        for side in if first { [0, 1] } else { [1, 0] } {
            if side == 0 {
                let p = lag_with_stream(args, &batches, &nats, work_dir).await?;
                eprintln!(
                    "[stream] B: ingest {} ev/s in {:.1} s; nats/events lag max {}, at end {}, drained {} after ingest; delivery {} ev/s",
                    fmt_count(p.ingest_rate),
                    p.ingest_time.as_secs_f64(),
                    fmt_count(p.max_lag as f64),
                    fmt_count(p.end_lag as f64),
                    p.drain.map_or("never".into(), fmt_duration),
                    fmt_count(p.delivery_rate)
                );
                lag_b.push(p);
            } else {
                let r = ingest_without_stream(args, &batches, work_dir).await?;
                eprintln!(
                    "[stream] B baseline: ingest without the stream {} ev/s",
                    fmt_count(r)
                );
                base_b.push(r);
            }
        }
    }
    drop(nats);

    let b = "stream";
    let runs = args.runs;
    // A.
    let e2e50 = med_ms(&stream_a.iter().map(|p| p.e2e.p50).collect::<Vec<_>>());
    let e2e99 = med_ms(&stream_a.iter().map(|p| p.e2e.p99).collect::<Vec<_>>());
    let e2emax = med_ms(&stream_a.iter().map(|p| p.e2e.max).collect::<Vec<_>>());
    let rtt50 = med_ms(&stream_a.iter().map(|p| p.rtt.p50).collect::<Vec<_>>());
    let rtt99 = med_ms(&stream_a.iter().map(|p| p.rtt.p99).collect::<Vec<_>>());
    let lost: u64 = stream_a.iter().map(|p| p.sent - p.received).sum();
    let errors: u64 = stream_a.iter().map(|p| p.errors).sum();
    let ratio = |x: Duration, y: Duration| format!("{:.1}×", ms(x) / ms(y).max(1e-6));
    report.rows.push(
        Row::info(
            b,
            format!(
                "A: POST → JetStream consumer p50, {} ev/s × {} s (median of {runs})",
                fmt_count(args.rate),
                args.seconds
            ),
            fmt_duration(e2e50),
        )
        .baseline(
            format!("POST round trip {}", fmt_duration(rtt50)),
            ratio(e2e50, rtt50),
        ),
    );
    report.rows.push(
        Row::info(b, "A: POST → JetStream consumer p99", fmt_duration(e2e99))
            .baseline(
                format!("POST round trip {}", fmt_duration(rtt99)),
                ratio(e2e99, rtt99),
            )
            .target("≤ 50 ms", e2e99 <= P99_TARGET && lost == 0 && errors == 0),
    );
    report.rows.push(Row::info(
        b,
        "A: POST → JetStream consumer max",
        fmt_duration(e2emax),
    ));
    if !raw_a.is_empty() {
        let r50 = med_ms(&raw_a.iter().map(|p| p.e2e.p50).collect::<Vec<_>>());
        let r99 = med_ms(&raw_a.iter().map(|p| p.e2e.p99).collect::<Vec<_>>());
        let rmax = med_ms(&raw_a.iter().map(|p| p.e2e.max).collect::<Vec<_>>());
        report.rows.push(Row::info(
            b,
            "A baseline: raw JetStream publish → consumer, p50 / p99 / max",
            format!(
                "{} / {} / {}",
                fmt_duration(r50),
                fmt_duration(r99),
                fmt_duration(rmax)
            ),
        ));
    }
    // B.
    let ing = median(&lag_b.iter().map(|p| p.ingest_rate).collect::<Vec<_>>());
    let base = median(&base_b);
    let max_lag = median(&lag_b.iter().map(|p| p.max_lag as f64).collect::<Vec<_>>());
    let mid_lag = median(&lag_b.iter().map(|p| p.mid_lag as f64).collect::<Vec<_>>());
    let end_lag = median(&lag_b.iter().map(|p| p.end_lag as f64).collect::<Vec<_>>());
    let all_drained = lag_b.iter().all(|p| p.drain.is_some());
    let drain = med_ms(
        &lag_b
            .iter()
            .map(|p| p.drain.unwrap_or(DRAIN_TIMEOUT))
            .collect::<Vec<_>>(),
    );
    let delivery = median(&lag_b.iter().map(|p| p.delivery_rate).collect::<Vec<_>>());
    let drain_rate = median(&lag_b.iter().map(|p| p.drain_rate).collect::<Vec<_>>());
    report.rows.push(
        Row::info(
            b,
            format!(
                "B: ingest with the stream, {} events in NDJSON batches of {} (events/s)",
                fmt_count(args.events as f64),
                fmt_count(args.batch as f64)
            ),
            fmt_count(ing),
        )
        .baseline(
            format!("without the stream {}", fmt_count(base)),
            format!("{:.2}×", ing / base.max(1e-9)),
        ),
    );
    report.rows.push(Row::info(
        b,
        "B: nats/events lag at mid-ingest / at end of ingest / max (events)",
        format!(
            "{} / {} / {}",
            fmt_count(mid_lag),
            fmt_count(end_lag),
            fmt_count(max_lag)
        ),
    ));
    report.rows.push(Row::info(
        b,
        "B: time to drain to lag 0 after ingest ends",
        if all_drained {
            fmt_duration(drain)
        } else {
            format!("not drained in {} s in some run", DRAIN_TIMEOUT.as_secs())
        },
    ));
    report.rows.push(Row::info(
        b,
        "B: stream delivery rate, first POST → lag 0 / during the drain (events/s)",
        format!("{} / {}", fmt_count(delivery), fmt_count(drain_rate)),
    ));

    let per_run = |f: &dyn Fn(&LatencyPass) -> String, v: &[LatencyPass]| {
        v.iter().map(f).collect::<Vec<_>>().join("; ")
    };
    report.notes.push(format!(
        "stream A: per run (e2e p50/p99/max, POST p50/p99): {}. {} measured events per run after {} warm-up; {} not received and {} errors in all runs{}. \
         Send-schedule lateness p99 per run: {}; achieved rate per run: {} ev/s.",
        per_run(
            &|p| format!(
                "{}/{}/{}, {}/{}",
                fmt_duration(p.e2e.p50),
                fmt_duration(p.e2e.p99),
                fmt_duration(p.e2e.max),
                fmt_duration(p.rtt.p50),
                fmt_duration(p.rtt.p99)
            ),
            &stream_a
        ),
        fmt_count(measured as f64),
        args.warmup,
        lost,
        errors,
        stream_a
            .iter()
            .find_map(|p| p.first_error.clone())
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        per_run(&|p| fmt_duration(p.late.p99), &stream_a),
        per_run(&|p| fmt_count(p.rate), &stream_a),
    ));
    if !raw_a.is_empty() {
        report.notes.push(format!(
            "stream A baseline: raw JetStream (publish with Nats-Msg-Id, same bodies, same rate, same kind of ordered pull consumer) per run p50/p99/max: {}; publish-ack round trip p50/p99: {}.",
            per_run(
                &|p| format!(
                    "{}/{}/{}",
                    fmt_duration(p.e2e.p50),
                    fmt_duration(p.e2e.p99),
                    fmt_duration(p.e2e.max)
                ),
                &raw_a
            ),
            per_run(
                &|p| format!("{}/{}", fmt_duration(p.rtt.p50), fmt_duration(p.rtt.p99)),
                &raw_a
            ),
        ));
    }
    report.notes.push(format!(
        "stream B: per run, ingest with the stream {} ev/s, without {} ev/s; nats/events lag mid/end/max {}; drain {}; alert-rule cursor max lag {}; {} status samples per run (every {} ms during ingest, every 20 ms while draining). \
         Lag is the ledger length minus the cursor as saved in the store, which the sink saves at least every 250 ms while busy.",
        lag_b.iter().map(|p| fmt_count(p.ingest_rate)).collect::<Vec<_>>().join(", "),
        base_b.iter().map(|r| fmt_count(*r)).collect::<Vec<_>>().join(", "),
        lag_b
            .iter()
            .map(|p| format!("{}/{}/{}", fmt_count(p.mid_lag as f64), fmt_count(p.end_lag as f64), fmt_count(p.max_lag as f64)))
            .collect::<Vec<_>>()
            .join(", "),
        lag_b
            .iter()
            .map(|p| p.drain.map_or("never".into(), fmt_duration))
            .collect::<Vec<_>>()
            .join(", "),
        lag_b.iter().map(|p| fmt_count(p.other_max_lag as f64)).collect::<Vec<_>>().join(", "),
        lag_b.iter().map(|p| p.samples.to_string()).collect::<Vec<_>>().join(", "),
        args.sample_ms
    ));
    report.notes.push(
        "stream: the server, its stream sinks, the HTTP client and the JetStream consumer share one process and the machine's cores; nats-server (JetStream, file store in the work directory) is a separate process started by the bench on a free port and killed at the end."
            .to_owned(),
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_command_lines() {
        let a = StreamArgs::defaults();
        assert_eq!(a.rate, 1_000.0);
        assert_eq!(a.seconds, 10.0);
        assert_eq!(a.events, 200_000);
        assert_eq!(a.runs, 3);
        assert_eq!(a.nats_server, PathBuf::from("/usr/sbin/nats-server"));
    }

    #[test]
    fn receipts_match_sends_by_id_and_skip_the_warm_up() {
        let sent = Sent {
            send_ns: vec![0, 1_000, 2_000, u64::MAX],
            rtt_ns: vec![10, 20, 30, 40],
            late_ns: vec![0; 4],
            errors: 0,
            first_error: None,
            elapsed: Duration::from_secs(1),
        };
        let got = Collected {
            messages: vec![
                ("0".into(), 5_000),
                ("2".into(), 2_500),
                ("1".into(), 4_000),
                ("1".into(), 9_000),
                ("x".into(), 1),
            ],
            errors: 0,
            first_error: None,
        };
        let p = summarise(&sent, &got, 1, |id| id.parse().ok());
        assert_eq!(p.sent, 3);
        assert_eq!(p.received, 2, "index 3 was never sent");
        assert_eq!(
            p.e2e.max,
            Duration::from_nanos(3_000),
            "first receipt counts"
        );
        assert_eq!(p.e2e.p50, Duration::from_nanos(500));
    }
}
