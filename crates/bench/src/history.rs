//! `history`: one system's history, read from a large ledger.
//!
//! The ledger is preloaded directly through `Store::append` (the fastest
//! honest way to fill it), then random systems' histories are read over
//! HTTP one request at a time, and the same query is timed directly against
//! the store so the HTTP overhead is visible.

use crate::gen::{GenEvent, Generator, SYSTEMS};
use crate::report::{Report, Row};
use crate::server::{http_client, open_store, Flavor, RunningServer};
use crate::stats::{fmt_count, fmt_duration, Latencies};
use anyhow::{bail, ensure, Context};
use clap::Args;
use patchaudit_domain::{EventFilter, NewEvent, ValidationContext};
use patchaudit_store::Store;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of the `history` benchmark.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// How many events to preload into the ledger.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// How many measured queries (after the warm-up).
    #[arg(long, default_value_t = 2_000)]
    pub requests: usize,
    /// Queries sent before measuring.
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// The page size asked for (`limit`).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// Events per `Store::append` while preloading.
pub const LOAD_BATCH: u64 = 10_000;

/// Fills the store with events `0..n`, generating batches on a separate
/// thread while the previous batch is written. Returns the wall time and
/// the time spent inside `append` and the number of events loaded. Progress
/// goes to stderr under `tag`. With a `budget`, loading stops after the first
/// batch that ends past it, provided at least `min_events` are loaded.
pub async fn preload<S: Store + ?Sized>(
    gen: &Generator,
    store: &S,
    n: u64,
    tag: &str,
    budget: Option<(Duration, u64)>,
) -> anyhow::Result<(Duration, Duration, u64)> {
    let g = gen.clone();
    preload_with(move |i| g.event(i), store, n, tag, budget).await
}

/// [`preload`] of events `make(0..n)` from any pure function of the index.
pub async fn preload_with<S, F>(
    make: F,
    store: &S,
    n: u64,
    tag: &str,
    budget: Option<(Duration, u64)>,
) -> anyhow::Result<(Duration, Duration, u64)>
where
    S: Store + ?Sized,
    F: Fn(u64) -> GenEvent + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Vec<NewEvent>>>(2);
    let producer = std::thread::Builder::new()
        .name("bench-generator".into())
        .spawn(move || {
            let ctx = ValidationContext::now();
            let mut start = 0;
            while start < n {
                let end = (start + LOAD_BATCH).min(n);
                let batch = (start..end)
                    .map(|i| make(i).validate(&ctx))
                    .collect::<anyhow::Result<Vec<_>>>();
                let failed = batch.is_err();
                if tx.blocking_send(batch).is_err() || failed {
                    return;
                }
                start = end;
            }
        })
        .context("starting the generator thread")?;

    let wall = Instant::now();
    let mut in_append = Duration::ZERO;
    let mut loaded = 0u64;
    let mut next_report = 100_000u64;
    while let Some(batch) = rx.recv().await {
        let batch = batch?;
        let len = batch.len() as u64;
        let t = Instant::now();
        let appended = store
            .append(batch, "bench")
            .await
            .context("appending a preload batch")?;
        in_append += t.elapsed();
        ensure!(
            appended.len() as u64 == len && appended.iter().all(|a| !a.duplicate),
            "a preload batch was not appended whole"
        );
        loaded += len;
        if loaded >= next_report || loaded == n {
            eprintln!(
                "[{tag}] loaded {} / {} events ({:.0} s)",
                fmt_count(loaded as f64),
                fmt_count(n as f64),
                wall.elapsed().as_secs_f64()
            );
            next_report += 100_000;
        }
        if budget.is_some_and(|(b, min)| loaded >= min && loaded < n && wall.elapsed() >= b) {
            eprintln!(
                "[{tag}] stopping the preload at {} events: the {:.0} s load budget is spent",
                fmt_count(loaded as f64),
                wall.elapsed().as_secs_f64()
            );
            break;
        }
    }
    let wall = wall.elapsed();
    // Closing the channel stops the generator after its current batch.
    drop(rx);
    if producer.join().is_err() {
        bail!("the generator thread panicked");
    }
    ensure!(
        loaded == n || budget.is_some(),
        "loaded {loaded} events, expected {n}"
    );
    Ok((wall, in_append, loaded))
}

/// Runs the `history` benchmark.
pub async fn run(gen: &Generator, args: &HistoryArgs, work_dir: &Path) -> anyhow::Result<Report> {
    ensure!(
        args.events > 0 && args.requests > 0 && args.limit > 0,
        "--events, --requests and --limit must be positive"
    );
    let dir = tempfile::Builder::new()
        .prefix("patchaudit-bench-")
        .tempdir_in(work_dir)
        .with_context(|| format!("creating a temporary directory in {}", work_dir.display()))?;
    let store = open_store(&dir.path().join("ledger.db"))?;

    eprintln!(
        "[history] preloading {} events via Store::append in batches of {}",
        fmt_count(args.events as f64),
        fmt_count(LOAD_BATCH as f64)
    );
    let (load_wall, load_append, _) = preload(gen, &store, args.events, "history", None).await?;
    // Every aligned block of SYSTEMS events holds each system once.
    let per_system = (args.events / SYSTEMS, args.events.div_ceil(SYSTEMS));
    let expected_page = |n: usize| {
        let n = n as u64;
        n >= per_system.0.min(args.limit as u64).max(1) && n <= per_system.1.min(args.limit as u64)
    };

    // Each measurement sees the same sequence of systems.
    let names = {
        let mut rng = rand::rngs::StdRng::seed_from_u64(gen.seed() ^ 0x4157);
        let systems_in_ledger = args.events.min(SYSTEMS);
        (0..args.warmup + args.requests)
            .map(|_| {
                let k = rng.gen_range(0..systems_in_ledger);
                gen.system_name(gen.system_of(k))
            })
            .collect::<Vec<_>>()
    };

    let mut http = Vec::new();
    for flavor in [Flavor::Shipped, Flavor::NoDelay] {
        eprintln!(
            "[history] HTTP ({}): {} warm-up + {} measured GET /v1/systems/{{system}}/events?limit={}",
            match flavor {
                Flavor::Shipped => "as shipped",
                Flavor::NoDelay => "diagnostic, TCP_NODELAY on the server's sockets",
            },
            args.warmup,
            args.requests,
            args.limit
        );
        let server = RunningServer::start_flavor(Arc::new(store.clone()), flavor).await?;
        let client = http_client(1)?;
        let mut samples = Vec::with_capacity(args.requests);
        for (n, name) in names.iter().enumerate() {
            let (url, took, body) =
                timed_history_get(&client, &server.base, name, args.limit).await?;
            if n == 0 {
                let events = page_events(&body)?;
                ensure!(
                    expected_page(events.len())
                        && events
                            .iter()
                            .all(|e| e["system"].as_str() == Some(name.as_str())),
                    "{url} returned {} events, expected {:?} of that system",
                    events.len(),
                    per_system
                );
            }
            if n >= args.warmup {
                samples.push(took.as_nanos() as u64);
            }
        }
        server.stop().await?;
        http.push(Latencies::from_nanos(&mut samples));
    }
    let (http, http_nodelay) = (http[0], http[1]);

    eprintln!("[history] store: the same queries through store.list directly");
    let mut direct = Vec::with_capacity(args.requests);
    // What the HTTP handler asks the store for one page: does the system
    // exist, the page itself, and whether a next page exists.
    let mut handler_queries = Vec::with_capacity(args.requests);
    for (n, name) in names.iter().enumerate() {
        let filter = EventFilter {
            system: Some(name.clone()),
            ..Default::default()
        };
        let t = Instant::now();
        let page = store
            .list(&filter, args.limit)
            .await
            .context("store.list of a system")?;
        let took = t.elapsed();
        ensure!(
            expected_page(page.len()),
            "store.list returned {} events for {name}, expected {:?}",
            page.len(),
            per_system
        );

        let t = Instant::now();
        store.list(&filter, 1).await.context("store.list probe")?;
        let page = store
            .list(&filter, args.limit)
            .await
            .context("store.list")?;
        if page.len() == args.limit {
            if let Some(last) = page.last() {
                store
                    .list(&filter.after(last.seq), 1)
                    .await
                    .context("store.list next-page probe")?;
            }
        }
        let took3 = t.elapsed();
        if n >= args.warmup {
            direct.push(took.as_nanos() as u64);
            handler_queries.push(took3.as_nanos() as u64);
        }
    }

    let direct = Latencies::from_nanos(&mut direct);
    let three = Latencies::from_nanos(&mut handler_queries);
    let ratio = |a: Duration, b: Duration| format!("{:.1}×", a.as_secs_f64() / b.as_secs_f64());
    let b = "history";
    let ev = fmt_count(args.events as f64);
    let mut report = Report::default();
    report.rows.push(Row::info(
        b,
        format!("preload {ev} events via Store::append, 10k/batch (wall)"),
        format!(
            "{:.1} s ({} events/s)",
            load_wall.as_secs_f64(),
            fmt_count(args.events as f64 / load_wall.as_secs_f64())
        ),
    ));
    for (name, h, d, target) in [
        ("p50", http.p50, direct.p50, None),
        ("p99", http.p99, direct.p99, Some(Duration::from_millis(2))),
        ("max", http.max, direct.max, None),
    ] {
        let mut row = Row::info(
            b,
            format!(
                "{name} GET /v1/systems/{{s}}/events?limit={} at {ev} events",
                args.limit
            ),
            fmt_duration(h),
        )
        .baseline(format!("store.list: {}", fmt_duration(d)), ratio(h, d));
        if let Some(t) = target {
            row = row.target(format!("≤ {}", fmt_duration(t)), h <= t);
        }
        report.rows.push(row);
    }
    report.rows.push(
        Row::info(
            b,
            "cross-check: p50 / p99 / max with the harness setting TCP_NODELAY itself",
            format!(
                "{} / {} / {}",
                fmt_duration(http_nodelay.p50),
                fmt_duration(http_nodelay.p99),
                fmt_duration(http_nodelay.max)
            ),
        )
        .baseline(
            format!("store.list p99: {}", fmt_duration(direct.p99)),
            ratio(http_nodelay.p99, direct.p99),
        ),
    );
    report.rows.push(Row::info(
        b,
        "p50 / p99 of 3 store queries in a row (the handler needs 1; 2 when the page is empty)",
        format!("{} / {}", fmt_duration(three.p50), fmt_duration(three.p99)),
    ));
    report.notes.push(format!(
        "history: {} random systems queried sequentially from one client after {} warm-up queries; each system has {} events in the ledger. \
         Preload: {:.1} s wall, of which {:.1} s inside Store::append (generation and validation run on another thread).",
        fmt_count(args.requests as f64),
        args.warmup,
        if per_system.0 == per_system.1 {
            per_system.0.to_string()
        } else {
            format!("{} or {}", per_system.0, per_system.1)
        },
        load_wall.as_secs_f64(),
        load_append.as_secs_f64()
    ));
    report.notes.push(
        "history: the cross-check row serves the same router from the harness's own accept loop with TCP_NODELAY set; \
         patchaudit_server::run sets TCP_NODELAY too (without it, p50 was 44 ms: Nagle's algorithm against delayed ACKs), \
         so the two rows should agree."
            .to_owned(),
    );
    Ok(report)
}

/// One timed `GET /v1/systems/{system}/events?limit=N`: the URL, how long the
/// whole answer took to arrive, and its body. Anything but a 200 is an error.
pub async fn timed_history_get(
    client: &reqwest::Client,
    base: &str,
    system: &str,
    limit: usize,
) -> anyhow::Result<(String, Duration, bytes::Bytes)> {
    let url = format!("{base}/v1/systems/{system}/events?limit={limit}");
    let t = Instant::now();
    let resp = client
        .get(&url)
        .send()
        .await
        .context("GET a system's events")?;
    let status = resp.status();
    let body = resp.bytes().await.context("reading a system's events")?;
    let took = t.elapsed();
    if status != reqwest::StatusCode::OK {
        bail!(
            "GET {url} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(1_000)])
        );
    }
    Ok((url, took, body))
}

/// The events of a JSON page.
pub fn page_events(body: &[u8]) -> anyhow::Result<Vec<serde_json::Value>> {
    let page: serde_json::Value =
        serde_json::from_slice(body).context("decoding a page of events")?;
    Ok(page["events"].as_array().cloned().unwrap_or_default())
}
