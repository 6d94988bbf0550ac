//! `concurrent`: many clients each POSTing one event per request.
//!
//! This is the shape of a fleet of agents reporting as they patch: many
//! small requests at once, each of which must be durable before it is
//! acknowledged. The store's group commit is what makes it fast.

use crate::gen::Generator;
use crate::load::{next_body, Tally, Until};
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
    /// Where the clients run: `process`, a separate single-threaded process
    /// with one keep-alive connection per client (the result); or
    /// `in-process`, tasks on the server's runtime sharing one `reqwest` pool (the
    /// first runs' set-up, for comparison).
    #[arg(long, value_enum, default_value_t = ClientMode::Process)]
    pub client: ClientMode,
}

/// Where the `concurrent` clients run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientMode {
    /// A separate process (`patchaudit-bench load-client`) on one thread.
    Process,
    /// Tasks on the server's own runtime, through one `reqwest` pool.
    InProcess,
}

/// What one phase of the clients did.
struct Phase {
    latencies: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    /// Where the CPU went, when the clients ran in their own process.
    cpu: Option<Cpu>,
}

/// CPU time of the client process and of the server's, for the report.
#[derive(Clone, Copy)]
struct Cpu {
    /// The client process, over the measured phase.
    client: Option<Duration>,
    /// This process (the server) from the client's start to its exit:
    /// warm-up included, so it is divided by `requests`.
    server: Option<Duration>,
    /// Every request the client sent, warm-up included.
    requests: u64,
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
            let mut tally = Tally::default();
            while let Some(body) = next_body(&gen, &next, until, &mut tally) {
                let request = async {
                    let sent = client
                        .post(&url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body)
                        .send()
                        .await;
                    expect_created(sent).await
                };
                tally.time(request).await;
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        match t.await {
            Ok(tally) => all.absorb(tally),
            Err(e) => all.fail(format!("a client task failed: {e}")),
        }
    }
    Phase {
        latencies: all.latencies,
        errors: all.errors,
        first_error: all.first_error,
        elapsed: start.elapsed(),
        cpu: None,
    }
}

/// One measured pass against a fresh ledger.
struct Pass {
    lat: Latencies,
    rps: f64,
    elapsed: Duration,
    errors: u64,
    first_error: Option<String>,
    stored: u64,
    cpu: Option<Cpu>,
}

/// The first runs' set-up: the clients are tasks on this process's runtime,
/// beside the server, sharing one `reqwest` pool.
async fn in_process(
    gen: &Generator,
    args: &ConcurrentArgs,
    base: &str,
    label: &str,
) -> anyhow::Result<Phase> {
    let client = http_client(args.clients)?;
    let url = format!("{base}/v1/events");
    let next = Arc::new(AtomicU64::new(0));
    eprintln!(
        "[concurrent] warming up{label}: {} requests from {} in-process clients",
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
                "[concurrent] measuring {n} requests from {} in-process clients{label}",
                args.clients
            );
            Until::Index(next.load(Ordering::Relaxed) + n)
        }
        None => {
            eprintln!(
                "[concurrent] measuring for {} s with {} in-process clients{label}",
                args.seconds, args.clients
            );
            Until::Time(Instant::now() + Duration::from_secs_f64(args.seconds))
        }
    };
    Ok(phase(gen, &client, &url, args.clients, &next, until).await)
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
    let label = match flavor {
        Flavor::Shipped => "",
        Flavor::NoDelay => " (diagnostic, TCP_NODELAY on the server's sockets)",
    };
    let mut m = match args.client {
        ClientMode::InProcess => in_process(gen, args, &server.base, label).await?,
        ClientMode::Process => {
            eprintln!(
                "[concurrent] load client process{label}: {} clients, {} warm-up requests, then {}",
                args.clients,
                args.warmup,
                match args.requests {
                    Some(n) => format!("{n} requests"),
                    None => format!("{} s", args.seconds),
                }
            );
            let cpu0 = crate::load::process_cpu();
            let r = crate::load::spawn(
                gen.seed(),
                server.addr,
                &crate::server::bench_authorization(),
                args.clients,
                args.warmup,
                args.seconds,
                args.requests,
            )
            .await?;
            let server_cpu = cpu0
                .zip(crate::load::process_cpu())
                .map(|(a, b)| b.saturating_sub(a));
            Phase {
                latencies: r.latencies_ns,
                errors: r.errors,
                first_error: r.first_error,
                elapsed: Duration::from_nanos(r.elapsed_ns),
                cpu: Some(Cpu {
                    client: r.cpu_ns.map(Duration::from_nanos),
                    server: server_cpu,
                    requests: r.sent,
                }),
            }
        }
    };
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
        cpu: m.cpu,
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
    let setup = match args.client {
        ClientMode::Process => format!(
            "The clients ran in a separate process on one thread, one keep-alive HTTP/1.1 connection each; \
             the server ran on this process's runtime ({} worker threads).",
            tokio::runtime::Handle::current().metrics().num_workers()
        ),
        ClientMode::InProcess => {
            "The clients ran on the server's own runtime through one reqwest pool, sharing its worker threads."
                .to_owned()
        }
    };
    report.notes.push(format!(
        "concurrent: {} requests measured in {:.1} s (mean latency {}) after {} warm-up requests; {} failed{}; the ledger ended with {} events. \
         {setup} With a closed loop of {} clients, mean latency ≈ clients ÷ throughput.",
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
    if let Some(cpu) = p.cpu {
        let per = |d: Option<Duration>, n: u64| match d {
            Some(d) if n > 0 => {
                fmt_duration(Duration::from_nanos((d.as_nanos() / u128::from(n)) as u64))
            }
            _ => "n/a".to_owned(),
        };
        let client = per(cpu.client, p.lat.count as u64);
        let server = per(cpu.server, cpu.requests);
        report.rows.push(Row::info(
            b,
            "CPU time per request: server / load client",
            format!("{server} / {client}"),
        ));
        ensure!(
            p.errors > 0 || p.stored == cpu.requests,
            "the client had {} events created but the ledger holds {}",
            cpu.requests,
            p.stored
        );
    }

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
