//! `concurrent`: many clients each POSTing one event per request.
//!
//! This is the shape of a fleet of agents reporting as they patch: many
//! small requests at once, each of which must be durable before it is
//! acknowledged. The store's group commit is what makes it fast.

use crate::gen::Generator;
use crate::report::{Report, Row};
use crate::server::{expect_created, http_client, open_store, Flavor, RunningServer};
use crate::stats::{fmt_count, fmt_duration, Latencies};
use anyhow::{ensure, Context};
use clap::Args;
use patchaudit_store::Store;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of the `concurrent` benchmark.
#[derive(Debug, Clone, Args)]
pub struct ConcurrentArgs {
    /// How many clients send at once.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// How long to measure, in seconds (ignored with --requests).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Measure this many requests in total instead of a fixed time.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Requests sent before measuring, to open connections and warm caches.
    #[arg(long, default_value_t = 640)]
    pub warmup: u64,
    /// Also measure a diagnostic server variant with TCP_NODELAY set on its
    /// sockets (reported separately, never as the result).
    #[arg(long)]
    pub nodelay_diagnostic: bool,
}

/// What one phase of the clients did.
struct Phase {
    latencies: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

/// When a phase ends.
#[derive(Clone, Copy)]
enum Until {
    /// When this many event indexes have been taken in total.
    Index(u64),
    /// At this instant (requests in flight still finish).
    Time(Instant),
}

async fn phase(
    gen: &Generator,
    client: &reqwest::Client,
    url: &str,
    clients: usize,
    next: &Arc<AtomicU64>,
    until: Until,
) -> Phase {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let gen = gen.clone();
        let client = client.clone();
        let url = url.to_owned();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let i = match until {
                    Until::Index(end) => {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= end {
                            break;
                        }
                        i
                    }
                    Until::Time(t) => {
                        if Instant::now() >= t {
                            break;
                        }
                        next.fetch_add(1, Ordering::Relaxed)
                    }
                };
                // One event per request, built before the clock starts.
                let body = match serde_json::to_vec(&gen.event(i)) {
                    Ok(b) => b,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e.to_string());
                        continue;
                    }
                };
                let t = Instant::now();
                let sent = client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await;
                let outcome = expect_created(sent).await;
                lat.push(t.elapsed().as_nanos() as u64);
                if let Err(e) = outcome {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut out = Phase {
        latencies: Vec::new(),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        match t.await {
            Ok((lat, errors, first)) => {
                out.latencies.extend(lat);
                out.errors += errors;
                if out.first_error.is_none() {
                    out.first_error = first;
                }
            }
            Err(e) => {
                out.errors += 1;
                out.first_error
                    .get_or_insert(format!("a client task failed: {e}"));
            }
        }
    }
    out.elapsed = start.elapsed();
    out
}

/// One measured pass against a fresh ledger.
struct Pass {
    lat: Latencies,
    rps: f64,
    elapsed: Duration,
    errors: u64,
    first_error: Option<String>,
    stored: u64,
}

async fn pass(
    gen: &Generator,
    args: &ConcurrentArgs,
    work_dir: &Path,
    flavor: Flavor,
) -> anyhow::Result<Pass> {
    let dir = tempfile::Builder::new()
        .prefix("patchaudit-bench-")
        .tempdir_in(work_dir)
        .with_context(|| format!("creating a temporary directory in {}", work_dir.display()))?;
    let store = open_store(&dir.path().join("ledger.db"))?;
    let server = RunningServer::start_flavor(Arc::new(store.clone()), flavor).await?;
    let client = http_client(args.clients)?;
    let url = format!("{}/v1/events", server.base);
    let next = Arc::new(AtomicU64::new(0));
    let label = match flavor {
        Flavor::Shipped => "",
        Flavor::NoDelay => " (diagnostic, TCP_NODELAY on the server's sockets)",
    };

    eprintln!(
        "[concurrent] warming up{label}: {} requests from {} clients",
        args.warmup, args.clients
    );
    let warm = phase(
        gen,
        &client,
        &url,
        args.clients,
        &next,
        Until::Index(args.warmup),
    )
    .await;
    ensure!(
        warm.errors == 0,
        "{} warm-up requests failed; first: {}",
        warm.errors,
        warm.first_error.unwrap_or_default()
    );
    let until = match args.requests {
        Some(n) => {
            eprintln!(
                "[concurrent] measuring {n} requests from {} clients{label}",
                args.clients
            );
            Until::Index(next.load(Ordering::Relaxed) + n)
        }
        None => {
            eprintln!(
                "[concurrent] measuring for {} s with {} clients{label}",
                args.seconds, args.clients
            );
            Until::Time(Instant::now() + Duration::from_secs_f64(args.seconds))
        }
    };
    let mut m = phase(gen, &client, &url, args.clients, &next, until).await;
    let stored = store.len().await.context("counting the ledger")?;
    server.stop().await?;

    let lat = Latencies::from_nanos(&mut m.latencies);
    let rps = lat.count as f64 / m.elapsed.as_secs_f64();
    eprintln!(
        "[concurrent] {} requests in {:.1} s: {} req/s, p50 {}, p99 {}, max {}, {} errors",
        lat.count,
        m.elapsed.as_secs_f64(),
        fmt_count(rps),
        fmt_duration(lat.p50),
        fmt_duration(lat.p99),
        fmt_duration(lat.max),
        m.errors
    );
    Ok(Pass {
        lat,
        rps,
        elapsed: m.elapsed,
        errors: m.errors,
        first_error: m.first_error,
        stored,
    })
}

/// Runs the `concurrent` benchmark.
pub async fn run(
    gen: &Generator,
    args: &ConcurrentArgs,
    work_dir: &Path,
) -> anyhow::Result<Report> {
    ensure!(args.clients > 0, "--clients must be positive");
    ensure!(
        args.requests.is_some() || args.seconds > 0.0,
        "--seconds must be positive"
    );
    let p = pass(gen, args, work_dir, Flavor::Shipped).await?;

    let b = "concurrent";
    let what = format!("{} clients, 1 event per POST", args.clients);
    let mut report = Report::default();
    report.rows.push(Row::info(
        b,
        format!("throughput, {what} (req/s)"),
        fmt_count(p.rps),
    ));
    report
        .rows
        .push(Row::info(b, "p50 latency", fmt_duration(p.lat.p50)));
    report
        .rows
        .push(Row::info(b, "p99 latency", fmt_duration(p.lat.p99)).target(
            "≤ 10 ms",
            p.lat.p99 <= Duration::from_millis(10) && p.errors == 0,
        ));
    report
        .rows
        .push(Row::info(b, "max latency", fmt_duration(p.lat.max)));
    report.notes.push(format!(
        "concurrent: {} requests measured in {:.1} s (mean latency {}) after {} warm-up requests; {} failed{}; the ledger ended with {} events. \
         Client and server share one process and the machine's cores; with a closed loop of {} clients, mean latency ≈ clients ÷ throughput.",
        fmt_count(p.lat.count as f64),
        p.elapsed.as_secs_f64(),
        fmt_duration(p.lat.mean),
        args.warmup,
        p.errors,
        p.first_error
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        fmt_count(p.stored as f64),
        args.clients
    ));

    if args.nodelay_diagnostic {
        let d = pass(gen, args, work_dir, Flavor::NoDelay).await?;
        report.rows.push(Row::info(
            b,
            "diagnostic: req/s and p50 / p99 / max with TCP_NODELAY on the server's sockets",
            format!(
                "{} req/s; {} / {} / {}",
                fmt_count(d.rps),
                fmt_duration(d.lat.p50),
                fmt_duration(d.lat.p99),
                fmt_duration(d.lat.max)
            ),
        ));
    }
    Ok(report)
}
