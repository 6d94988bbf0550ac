//! `postgres`: the PostgreSQL backend measured beside its baselines.
//!
//! Four measurements, in one run, on one PostgreSQL server and one table
//! definition (every schema is migrated by `PgStore` itself):
//!
//! 1. batch ingest over HTTP against `psql \copy` of the same rows;
//! 2. the same ingest against one autocommitted `INSERT` per event;
//! 3. one system's history read from a large ledger, over HTTP and through
//!    `store.list`;
//! 4. two server instances on one schema against one instance, under the
//!    same client load.
//!
//! Every measurement works in a schema of its own, named `pa_bench_<pid>_<n>`,
//! and every schema created is dropped at the end, also when a measurement
//! fails or the run is interrupted with Ctrl-C.

use crate::gen::{Generator, SYSTEMS};
use crate::history::{page_events, preload, timed_history_get, LOAD_BATCH};
use crate::ingest::{post_all, EVENT_TABLE_COLUMNS};
use crate::report::{Report, Row};
use crate::server::{expect_created, http_client, RunningServer};
use crate::stats::{alternate, fmt_count, fmt_counts, fmt_duration, median, Latencies};
use anyhow::{anyhow, ensure, Context};
use bytes::Bytes;
use clap::Args;
use patchaudit_domain::{EventFilter, ValidationContext};
use patchaudit_store::{PgOptions, PgStore, Store};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of the `postgres` benchmark.
#[derive(Debug, Clone, Args)]
pub struct PgArgs {
    /// The PostgreSQL server (default: PATCHAUDIT_TEST_PG_URL or the local one).
    #[arg(long, value_name = "URL")]
    pub pg_url: Option<String>,
    /// The psql client used for the `\copy` baseline.
    #[arg(long, value_name = "PATH", default_value = "psql")]
    pub psql: PathBuf,
    /// ingest: events per run.
    #[arg(long, default_value_t = 200_000)]
    pub pg_ingest_events: u64,
    /// ingest: events per NDJSON request.
    #[arg(long, default_value_t = 10_000)]
    pub pg_batch: usize,
    /// ingest: repetitions of both sides; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub pg_runs: usize,
    /// insert baseline: events inserted one autocommitted INSERT at a time.
    #[arg(long, default_value_t = 20_000)]
    pub pg_insert_events: u64,
    /// history: events to preload (the issue asks for ten million).
    #[arg(long, alias = "events", default_value_t = 10_000_000)]
    pub pg_history_events: u64,
    /// history: stop preloading once this many seconds have passed (at the
    /// first batch boundary with at least 2,000,000 events), and say so.
    #[arg(long, default_value_t = 720.0)]
    pub pg_history_budget_secs: f64,
    /// history: measured queries (after 200 warm-up queries).
    #[arg(long, default_value_t = 2_000)]
    pub pg_history_requests: usize,
    /// multi: seconds to measure each configuration (after one second of warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub pg_multi_seconds: f64,
    /// multi: clients sending NDJSON batches.
    #[arg(long, default_value_t = 2)]
    pub pg_multi_batch_clients: usize,
    /// multi: events per batch of those clients.
    #[arg(long, default_value_t = 1_000)]
    pub pg_multi_batch: usize,
    /// multi: clients sending one event per POST.
    #[arg(long, default_value_t = 64)]
    pub pg_multi_single_clients: usize,
    /// Run only these parts (comma-separated: ingest, insert, history, multi).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ingest,insert,history,multi"
    )]
    pub pg_only: Vec<String>,
}

impl PgArgs {
    fn url(&self) -> String {
        self.pg_url
            .clone()
            .unwrap_or_else(patchaudit_store::conformance::pg_test_url)
    }

    fn wants(&self, part: &str) -> bool {
        self.pg_only.iter().any(|p| p.trim() == part)
    }
}

/// The smallest history ledger the load budget may stop at.
const MIN_HISTORY_EVENTS: u64 = 2_000_000;
/// The warm-up queries of the history measurement.
const HISTORY_WARMUP: usize = 200;
/// The page size of the history measurement.
const HISTORY_LIMIT: usize = 100;

/// Whether something accepts TCP connections at the host and port of `url`.
pub fn reachable(url: &str) -> bool {
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return false;
    };
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// The schemas this run created, so that every one of them is dropped.
pub(crate) struct Schemas {
    pub(crate) url: String,
    pub(crate) admin: tokio_postgres::Client,
    created: Mutex<Vec<String>>,
    next: AtomicU64,
}

impl Schemas {
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Schemas> {
        let (admin, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {url}"))?;
        tokio::spawn(conn);
        admin
            .batch_execute("SET lock_timeout = '60s'")
            .await
            .context("configuring the admin connection")?;
        Ok(Schemas {
            url: url.to_owned(),
            admin,
            created: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        })
    }

    /// Creates a fresh, empty schema and remembers it.
    pub(crate) async fn create(&self) -> anyhow::Result<String> {
        let name = format!(
            "pa_bench_{}_{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        self.created
            .lock()
            .map_err(|_| anyhow!("schema list poisoned"))?
            .push(name.clone());
        self.admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .with_context(|| format!("creating schema {name}"))?;
        Ok(name)
    }

    /// A PgStore on `schema`, which migrates it.
    pub(crate) async fn store(&self, schema: &str) -> anyhow::Result<PgStore> {
        PgStore::connect(
            &self.url,
            PgOptions {
                schema: Some(schema.to_owned()),
                signer: Some(crate::server::bench_signer()),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("connecting a PgStore to schema {schema}"))
    }

    /// Drops one schema now (to free its disk space early).
    pub(crate) async fn drop_one(&self, schema: &str) -> anyhow::Result<()> {
        self.admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .with_context(|| format!("dropping schema {schema}"))?;
        if let Ok(mut c) = self.created.lock() {
            c.retain(|s| s != schema);
        }
        Ok(())
    }

    /// Drops every schema still remembered; reports failures on stderr.
    pub(crate) async fn drop_all(&self) {
        let left = self.created.lock().map(|c| c.clone()).unwrap_or_default();
        for s in left {
            match self.drop_one(&s).await {
                Ok(()) => eprintln!("[postgres] dropped schema {s}"),
                Err(e) => eprintln!("[postgres] could not drop schema {s}: {e:#}"),
            }
        }
    }
}

/// Runs the `postgres` benchmark; every schema it creates is dropped before
/// it returns, whatever happened.
pub async fn run(gen: &Generator, args: &PgArgs, work_dir: &Path) -> anyhow::Result<Report> {
    let url = args.url();
    ensure!(
        reachable(&url),
        "nothing accepts connections at {url}; start PostgreSQL or pass --pg-url"
    );
    let schemas = Schemas::connect(&url).await?;
    let version: String = schemas
        .admin
        .query_one("SHOW server_version", &[])
        .await?
        .get(0);
    let settings = schemas
        .admin
        .query_one(
            "SELECT current_setting('shared_buffers'), current_setting('synchronous_commit'), \
             current_setting('fsync'), current_setting('max_wal_size')",
            &[],
        )
        .await?;
    let body = async {
        let mut report = Report::default();
        report.notes.push(format!(
            "postgres: PostgreSQL {version} at {url} on this machine (shared_buffers {}, synchronous_commit {}, fsync {}, max_wal_size {}); \
             every measurement used a fresh schema migrated by PgStore, dropped afterwards.",
            settings.get::<_, String>(0),
            settings.get::<_, String>(1),
            settings.get::<_, String>(2),
            settings.get::<_, String>(3),
        ));
        let mut ingest_rate = None;
        if args.wants("ingest") {
            let (r, rate) = ingest(gen, args, &schemas, work_dir).await?;
            report.extend(r);
            ingest_rate = Some(rate);
        }
        if args.wants("insert") {
            report.extend(insert_baseline(gen, args, &schemas, ingest_rate).await?);
        }
        if args.wants("history") {
            report.extend(history(gen, args, &schemas).await?);
        }
        if args.wants("multi") {
            report.extend(multi(gen, args, &schemas).await?);
        }
        anyhow::Ok(report)
    };
    let result = tokio::select! {
        r = body => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    schemas.drop_all().await;
    result
}

/// The ingest workload: NDJSON bodies and a CSV file in PostgreSQL's format.
struct Workload {
    bodies: Vec<Bytes>,
    csv_path: PathBuf,
    first_event_id: String,
    ndjson_bytes: usize,
    csv_bytes: usize,
}

fn generate(gen: &Generator, events: u64, batch: usize, dir: &Path) -> anyhow::Result<Workload> {
    let ctx = ValidationContext::now();
    // Now, so that the rows land in partitions PgStore has created.
    let recorded_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut bodies = Vec::new();
    let mut body = Vec::new();
    let mut in_body = 0usize;
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(EVENT_TABLE_COLUMNS)
        .context("writing the CSV header")?;
    for i in 0..events {
        let e = gen.event(i);
        serde_json::to_writer(&mut body, &e).context("encoding an event as JSON")?;
        body.push(b'\n');
        in_body += 1;
        if in_body == batch {
            bodies.push(Bytes::from(std::mem::take(&mut body)));
            in_body = 0;
        }
        let v = e.validate(&ctx)?;
        // An unquoted empty field is NULL in PostgreSQL's CSV format.
        let opt = |s: &Option<String>| s.clone().unwrap_or_default();
        let cves = if v.cves.is_empty() {
            String::new()
        } else {
            format!(
                "{{{}}}",
                v.cves
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        csv.write_record([
            i.to_string(),
            e.event_id.clone(),
            e.patch_id.clone(),
            e.system.clone(),
            v.applied_at.to_rfc3339(),
            e.status.to_owned(),
            opt(&v.package),
            opt(&v.from_version),
            opt(&v.to_version),
            opt(&v.source),
            opt(&v.actor),
            opt(&v.detail),
            cves,
            v.reboot_required.map(|b| b.to_string()).unwrap_or_default(),
            opt(&v.change_ref),
            recorded_at.clone(),
            "bench".to_owned(),
            format!("\\x{}", hex::encode(v.content_digest())),
        ])
        .context("writing a CSV row")?;
    }
    if in_body > 0 {
        bodies.push(Bytes::from(body));
    }
    let csv = csv.into_inner().context("finishing the CSV")?;
    let csv_path = dir.join("rows-pg.csv");
    std::fs::write(&csv_path, &csv).with_context(|| format!("writing {}", csv_path.display()))?;
    Ok(Workload {
        first_event_id: gen.event_id(0),
        ndjson_bytes: bodies.iter().map(|b| b.len()).sum(),
        csv_bytes: csv.len(),
        bodies,
        csv_path,
    })
}

async fn ingest_server_once(
    work: &Workload,
    events: u64,
    schemas: &Schemas,
) -> anyhow::Result<f64> {
    let schema = schemas.create().await?;
    let store = schemas.store(&schema).await?;
    let server = RunningServer::start(Arc::new(store.clone())).await?;
    let (rate, created) = post_all(&server.base, &work.bodies).await?;
    server.stop().await?;
    ensure!(
        created == events,
        "the server created {created} events, expected {events}"
    );
    let len = store.len().await.context("counting the ledger")?;
    ensure!(
        len == events,
        "the ledger holds {len} events, expected {events}"
    );
    drop(store);
    schemas.drop_one(&schema).await?;
    Ok(rate)
}

/// The exact `\copy` command of the baseline.
fn copy_command(schema: &str, csv: &Path) -> String {
    format!(
        "\\copy {schema}.events ({}) FROM '{}' WITH (FORMAT csv, HEADER true)",
        EVENT_TABLE_COLUMNS.join(", "),
        csv.display()
    )
}

async fn ingest_copy_once(
    work: &Workload,
    events: u64,
    schemas: &Schemas,
    psql: &Path,
) -> anyhow::Result<f64> {
    let schema = schemas.create().await?;
    // Let PgStore create exactly the same partitioned table, indexes and triggers.
    drop(schemas.store(&schema).await?);
    let cmd = copy_command(&schema, &work.csv_path);
    let url = schemas.url.clone();
    let psql = psql.to_owned();
    let (elapsed, out) = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let out = Command::new(&psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-c", &cmd])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running {}", psql.display()));
        (start.elapsed(), out)
    })
    .await
    .context("the psql task panicked")?;
    let out = out?;
    ensure!(
        out.status.success(),
        "psql \\copy failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
            .chars()
            .take(2_000)
            .collect::<String>()
    );
    let row = schemas
        .admin
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {schema}.events), \
                        (SELECT event_id FROM {schema}.events WHERE seq = 0)"
            ),
            &[],
        )
        .await
        .context("checking the baseline's rows")?;
    let (rows, first): (i64, Option<String>) = (row.get(0), row.get(1));
    ensure!(
        first.as_deref() == Some(work.first_event_id.as_str()),
        "the \\copy columns are misaligned: seq 0 has event_id {first:?}"
    );
    ensure!(
        rows as u64 == events,
        "\\copy imported {rows} rows, expected {events}"
    );
    schemas.drop_one(&schema).await?;
    Ok(events as f64 / elapsed.as_secs_f64())
}

/// Part 1. Returns the report and the median server rate.
async fn ingest(
    gen: &Generator,
    args: &PgArgs,
    schemas: &Schemas,
    work_dir: &Path,
) -> anyhow::Result<(Report, f64)> {
    ensure!(
        args.pg_ingest_events > 0 && args.pg_batch > 0 && args.pg_runs > 0,
        "--pg-ingest-events, --pg-batch and --pg-runs must be positive"
    );
    let dir = tempfile::Builder::new()
        .prefix("patchaudit-bench-")
        .tempdir_in(work_dir)
        .with_context(|| format!("creating a temporary directory in {}", work_dir.display()))?;
    eprintln!(
        "[pg-ingest] generating {} events as NDJSON batches of {} and as PostgreSQL CSV",
        fmt_count(args.pg_ingest_events as f64),
        args.pg_batch
    );
    let work = generate(gen, args.pg_ingest_events, args.pg_batch, dir.path())?;
    let work = &work;
    let (server_rates, copy_rates) = alternate(
        "pg-ingest",
        args.pg_runs,
        ("server", "psql \\copy"),
        || ingest_server_once(work, args.pg_ingest_events, schemas),
        || ingest_copy_once(work, args.pg_ingest_events, schemas, &args.psql),
    )
    .await?;
    let server = median(&server_rates);
    let copy = median(&copy_rates);
    let ratio = server / copy;
    let mut report = Report::default();
    report.rows.push(
        Row::info(
            "pg-ingest",
            format!(
                "POST /v1/events NDJSON on PgStore, {} events in batches of {} (events/s, median of {})",
                fmt_count(args.pg_ingest_events as f64),
                fmt_count(args.pg_batch as f64),
                args.pg_runs
            ),
            fmt_count(server),
        )
        .baseline(format!("psql \\copy: {}", fmt_count(copy)), format!("{ratio:.2}×"))
        .target("≥ 0.5× baseline", ratio >= 0.5),
    );
    report.notes.push(format!(
        "pg-ingest: per run, server {} events/s; psql \\copy {} rows/s. Bodies {:.1} MB NDJSON, CSV {:.1} MB, generated before timing. \
         Baseline command: psql -X -q -v ON_ERROR_STOP=1 -d <url> -c \"{}\".",
        fmt_counts(&server_rates),
        fmt_counts(&copy_rates),
        work.ndjson_bytes as f64 / 1e6,
        work.csv_bytes as f64 / 1e6,
        copy_command("<schema>", Path::new("rows-pg.csv"))
    ));
    report.notes.push(
        "pg-ingest: the \\copy baseline writes the same rows into the same partitioned `events` table (same indexes and triggers, \
         one transaction, durable commit); it does not write `event_ids`, `systems` or `patch_state`, validate events, \
         compute digests or serialise on `ledger_head`, all of which the server does."
            .to_owned(),
    );
    Ok((report, server))
}

/// Part 2: one autocommitted INSERT per event, from one tokio-postgres client.
async fn insert_baseline(
    gen: &Generator,
    args: &PgArgs,
    schemas: &Schemas,
    ingest_rate: Option<f64>,
) -> anyhow::Result<Report> {
    let n = args.pg_insert_events;
    ensure!(n > 0, "--pg-insert-events must be positive");
    let ctx = ValidationContext::now();
    let events = (0..n)
        .map(|i| {
            let e = gen.event(i);
            let v = e.validate(&ctx)?;
            Ok((e, v))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let schema = schemas.create().await?;
    drop(schemas.store(&schema).await?);
    let mut config: tokio_postgres::Config = schemas.url.parse().context("parsing the URL")?;
    config.options(format!("-c search_path={schema}"));
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting the INSERT client")?;
    tokio::spawn(conn);
    let stmt = client
        .prepare(&format!(
            "INSERT INTO events ({}) VALUES ({})",
            EVENT_TABLE_COLUMNS.join(", "),
            (1..=18)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .await
        .context("preparing the INSERT")?;
    let to_dt = |m: i64| chrono::DateTime::<chrono::Utc>::from_timestamp_micros(m);
    eprintln!(
        "[pg-insert] {} events, one autocommitted INSERT each",
        fmt_count(n as f64)
    );
    let start = Instant::now();
    for (i, (e, v)) in events.iter().enumerate() {
        let seq = i as i64;
        let applied = to_dt(v.applied_at.as_micros()).context("applied_at out of range")?;
        // recorded_at is read at each insert, as the original design did.
        let recorded = chrono::Utc::now();
        let cves: Option<Vec<&str>> =
            (!v.cves.is_empty()).then(|| v.cves.iter().map(|c| c.as_str()).collect());
        let digest = v.content_digest();
        client
            .execute(
                &stmt,
                &[
                    &seq,
                    &e.event_id,
                    &e.patch_id,
                    &e.system,
                    &applied,
                    &e.status,
                    &v.package,
                    &v.from_version,
                    &v.to_version,
                    &v.source,
                    &v.actor,
                    &v.detail,
                    &cves,
                    &v.reboot_required,
                    &v.change_ref,
                    &recorded,
                    &"bench",
                    &digest.as_slice(),
                ],
            )
            .await
            .context("INSERT of one event")?;
    }
    let elapsed = start.elapsed();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await?
        .get(0);
    ensure!(rows as u64 == n, "inserted {rows} rows, expected {n}");
    drop(client);
    schemas.drop_one(&schema).await?;
    let rate = n as f64 / elapsed.as_secs_f64();
    let mut report = Report::default();
    let mut row = Row::info(
        "pg-insert",
        format!(
            "one INSERT per event, autocommit, 1 client, {} events (events/s)",
            fmt_count(n as f64)
        ),
        fmt_count(rate),
    );
    if let Some(ours) = ingest_rate {
        let ratio = ours / rate;
        row = Row::info(
            "pg-insert",
            format!(
                "POST /v1/events NDJSON on PgStore (median above) vs one autocommitted INSERT per event ({} events)",
                fmt_count(n as f64)
            ),
            fmt_count(ours),
        )
        .baseline(format!("INSERT/event: {}", fmt_count(rate)), format!("{ratio:.1}×"))
        .target("≥ 10× baseline", ratio >= 10.0);
    }
    report.rows.push(row);
    report.notes.push(format!(
        "pg-insert: one tokio-postgres connection, a prepared INSERT INTO events (18 columns) per event, no explicit transaction, \
         so one commit (one WAL flush) per event; {} events in {:.1} s. It writes only `events`.",
        fmt_count(n as f64),
        elapsed.as_secs_f64()
    ));
    Ok(report)
}

/// Part 3: one system's history at millions of events.
async fn history(gen: &Generator, args: &PgArgs, schemas: &Schemas) -> anyhow::Result<Report> {
    let wanted = args.pg_history_events;
    ensure!(
        wanted > 0 && args.pg_history_requests > 0,
        "--pg-history-events and --pg-history-requests must be positive"
    );
    let schema = schemas.create().await?;
    let store = schemas.store(&schema).await?;
    eprintln!(
        "[pg-history] preloading {} events via Store::append in batches of {} (budget {:.0} s)",
        fmt_count(wanted as f64),
        fmt_count(LOAD_BATCH as f64),
        args.pg_history_budget_secs
    );
    let budget = (
        Duration::from_secs_f64(args.pg_history_budget_secs.max(0.0)),
        MIN_HISTORY_EVENTS.min(wanted),
    );
    let (load_wall, load_append, loaded) =
        preload(gen, &store, wanted, "pg-history", Some(budget)).await?;
    let analyze = Instant::now();
    schemas
        .admin
        .batch_execute(&format!(
            "ANALYZE {schema}.events; ANALYZE {schema}.event_ids; ANALYZE {schema}.systems; ANALYZE {schema}.patch_state"
        ))
        .await
        .context("ANALYZE")?;
    let analyze = analyze.elapsed();
    let size: i64 = schemas
        .admin
        .query_one(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
            &[&schema],
        )
        .await?
        .get(0);
    eprintln!(
        "[pg-history] loaded {} events in {:.1} s; ANALYZE {:.1} s; schema size {:.2} GB",
        fmt_count(loaded as f64),
        load_wall.as_secs_f64(),
        analyze.as_secs_f64(),
        size as f64 / 1e9
    );

    let names = {
        let mut rng = rand::rngs::StdRng::seed_from_u64(gen.seed() ^ 0x4157);
        let in_ledger = loaded.min(SYSTEMS);
        (0..HISTORY_WARMUP + args.pg_history_requests)
            .map(|_| gen.system_name(gen.system_of(rng.gen_range(0..in_ledger))))
            .collect::<Vec<_>>()
    };
    let server = RunningServer::start(Arc::new(store.clone())).await?;
    let client = http_client(1)?;
    let mut samples = Vec::with_capacity(args.pg_history_requests);
    eprintln!(
        "[pg-history] HTTP: {HISTORY_WARMUP} warm-up + {} measured GET /v1/systems/{{system}}/events?limit={HISTORY_LIMIT}",
        args.pg_history_requests
    );
    for (n, name) in names.iter().enumerate() {
        let (url, took, body) =
            timed_history_get(&client, &server.base, name, HISTORY_LIMIT).await?;
        if n == 0 {
            let events = page_events(&body)?;
            ensure!(
                events.len() == HISTORY_LIMIT.min((loaded / SYSTEMS) as usize).max(1)
                    || !events.is_empty(),
                "{url} returned no events"
            );
            ensure!(
                events
                    .iter()
                    .all(|e| e["system"].as_str() == Some(name.as_str())),
                "{url} returned events of other systems"
            );
        }
        if n >= HISTORY_WARMUP {
            samples.push(took.as_nanos() as u64);
        }
    }
    server.stop().await?;
    let http = Latencies::from_nanos(&mut samples);

    eprintln!("[pg-history] store: the same queries through store.list directly");
    let mut direct = Vec::with_capacity(args.pg_history_requests);
    for (n, name) in names.iter().enumerate() {
        let filter = EventFilter {
            system: Some(name.clone()),
            ..Default::default()
        };
        let t = Instant::now();
        let page = store
            .list(&filter, HISTORY_LIMIT)
            .await
            .context("store.list of a system")?;
        let took = t.elapsed();
        ensure!(!page.is_empty(), "store.list returned nothing for {name}");
        if n >= HISTORY_WARMUP {
            direct.push(took.as_nanos() as u64);
        }
    }
    let direct = Latencies::from_nanos(&mut direct);
    drop(store);
    schemas.drop_one(&schema).await?;

    let ev = fmt_count(loaded as f64);
    let b = "pg-history";
    let ratio = |a: Duration, b: Duration| format!("{:.1}×", a.as_secs_f64() / b.as_secs_f64());
    let mut report = Report::default();
    report.rows.push(Row::info(
        b,
        format!("preload {ev} events via PgStore::append, 10k/batch (wall)"),
        format!(
            "{:.1} s ({} events/s)",
            load_wall.as_secs_f64(),
            fmt_count(loaded as f64 / load_wall.as_secs_f64())
        ),
    ));
    for (name, h, d, target) in [
        ("p50", http.p50, direct.p50, None),
        ("p99", http.p99, direct.p99, Some(Duration::from_millis(5))),
        ("max", http.max, direct.max, None),
    ] {
        let mut row = Row::info(
            b,
            format!("{name} GET /v1/systems/{{s}}/events?limit={HISTORY_LIMIT} at {ev} events"),
            fmt_duration(h),
        )
        .baseline(format!("store.list: {}", fmt_duration(d)), ratio(h, d));
        if let Some(t) = target {
            row = row.target(format!("≤ {}", fmt_duration(t)), h <= t);
        }
        report.rows.push(row);
    }
    if loaded < wanted {
        report.notes.push(format!(
            "pg-history: NOT the requested size. {} events were asked for, but the load budget of {:.0} s was spent after {} events, \
             so the history was measured at {} events.",
            fmt_count(wanted as f64),
            args.pg_history_budget_secs,
            ev,
            ev
        ));
    }
    report.notes.push(format!(
        "pg-history: {} random systems queried sequentially from one client after {HISTORY_WARMUP} warm-up queries; about {} events per system. \
         Preload {:.1} s wall, {:.1} s inside Store::append; ANALYZE {:.1} s; schema size {:.2} GB.",
        fmt_count(args.pg_history_requests as f64),
        fmt_count((loaded / SYSTEMS.min(loaded)) as f64),
        load_wall.as_secs_f64(),
        load_append.as_secs_f64(),
        analyze.as_secs_f64(),
        size as f64 / 1e9
    ));
    Ok(report)
}

/// What the clients of one multi-instance configuration achieved.
struct Load {
    events_per_s: f64,
    single: Latencies,
    batch: Latencies,
    errors: u64,
    first_error: Option<String>,
}

/// Part 4 for one configuration: `instances` servers on one fresh schema.
async fn multi_once(
    gen: &Generator,
    args: &PgArgs,
    schemas: &Schemas,
    instances: usize,
) -> anyhow::Result<Load> {
    let schema = schemas.create().await?;
    let mut stores = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..instances {
        let store = schemas.store(&schema).await?;
        servers.push(RunningServer::start(Arc::new(store.clone())).await?);
        stores.push(store);
    }
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let client = http_client(args.pg_multi_single_clients + args.pg_multi_batch_clients)?;
    let next = Arc::new(AtomicU64::new(0));
    let warmup = Duration::from_secs(1);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + Duration::from_secs_f64(args.pg_multi_seconds);
    let mut tasks = Vec::new();
    let clients = args.pg_multi_batch_clients + args.pg_multi_single_clients;
    for c in 0..clients {
        let is_batch = c < args.pg_multi_batch_clients;
        let per = if is_batch {
            args.pg_multi_batch as u64
        } else {
            1
        };
        let url = format!("{}/v1/events", bases[c % bases.len()]);
        let (gen, client, next) = (gen.clone(), client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut counted, mut lat, mut errors, mut first) = (0u64, Vec::new(), 0u64, None);
            while Instant::now() < end {
                let first_index = next.fetch_add(per, Ordering::Relaxed);
                let mut body = Vec::new();
                for i in first_index..first_index + per {
                    if serde_json::to_writer(&mut body, &gen.event(i)).is_err() {
                        errors += 1;
                    }
                    body.push(b'\n');
                }
                let t = Instant::now();
                let sent = client
                    .post(&url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        if is_batch {
                            "application/x-ndjson"
                        } else {
                            "application/json"
                        },
                    )
                    .body(body)
                    .send()
                    .await;
                let ok = expect_created(sent).await;
                let done = Instant::now();
                match ok {
                    Ok(()) if t >= measure_from && done <= end => {
                        counted += per;
                        lat.push((done - t).as_nanos() as u64);
                    }
                    Ok(()) => {}
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert(e);
                    }
                }
            }
            (is_batch, counted, lat, errors, first)
        }));
    }
    let (mut counted, mut single, mut batch, mut errors, mut first_error) =
        (0u64, Vec::new(), Vec::new(), 0u64, None);
    for t in tasks {
        let (is_batch, c, lat, e, f) = t.await.context("a client task panicked")?;
        counted += c;
        if is_batch {
            batch.extend(lat);
        } else {
            single.extend(lat);
        }
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    for s in servers {
        s.stop().await?;
    }
    // The ledger must still be dense and whole.
    let row = schemas
        .admin
        .query_one(
            &format!(
                "SELECT count(*), COALESCE(max(seq) + 1, 0), (SELECT next_seq FROM {schema}.ledger_head) FROM {schema}.events"
            ),
            &[],
        )
        .await?;
    let (rows, dense, head): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    ensure!(
        rows == dense && dense == head,
        "the ledger is not dense after the multi-instance run: {rows} rows, max seq + 1 = {dense}, head {head}"
    );
    drop(stores);
    schemas.drop_one(&schema).await?;
    Ok(Load {
        events_per_s: counted as f64 / args.pg_multi_seconds,
        single: Latencies::from_nanos(&mut single),
        batch: Latencies::from_nanos(&mut batch),
        errors,
        first_error,
    })
}

/// Part 4: two instances on one schema against one, same total client load.
async fn multi(gen: &Generator, args: &PgArgs, schemas: &Schemas) -> anyhow::Result<Report> {
    ensure!(
        args.pg_multi_seconds > 0.0
            && args.pg_multi_batch > 0
            && args.pg_multi_batch_clients + args.pg_multi_single_clients > 0,
        "the multi-instance load must not be empty"
    );
    let mut loads = Vec::new();
    for instances in [1, 2] {
        eprintln!(
            "[pg-multi] {instances} instance(s): {} batch clients ({} events/POST) + {} single-event clients for {:.0} s",
            args.pg_multi_batch_clients,
            args.pg_multi_batch,
            args.pg_multi_single_clients,
            args.pg_multi_seconds
        );
        let l = multi_once(gen, args, schemas, instances).await?;
        eprintln!(
            "[pg-multi] {instances} instance(s): {} events/s, single p99 {}, errors {}",
            fmt_count(l.events_per_s),
            fmt_duration(l.single.p99),
            l.errors
        );
        loads.push(l);
    }
    let (one, two) = (&loads[0], &loads[1]);
    let b = "pg-multi";
    let mut report = Report::default();
    report.rows.push(
        Row::info(
            b,
            format!(
                "2 instances on one schema: events/s ({}×{} NDJSON + {} single-event clients)",
                args.pg_multi_batch_clients, args.pg_multi_batch, args.pg_multi_single_clients
            ),
            fmt_count(two.events_per_s),
        )
        .baseline(
            format!("1 instance: {}", fmt_count(one.events_per_s)),
            format!("{:.2}×", two.events_per_s / one.events_per_s),
        ),
    );
    report.rows.push(
        Row::info(
            b,
            "2 instances: single-event POST p50 / p99",
            format!(
                "{} / {}",
                fmt_duration(two.single.p50),
                fmt_duration(two.single.p99)
            ),
        )
        .baseline(
            format!(
                "1 instance: {} / {}",
                fmt_duration(one.single.p50),
                fmt_duration(one.single.p99)
            ),
            format!(
                "{:.2}×",
                two.single.p99.as_secs_f64() / one.single.p99.as_secs_f64().max(1e-9)
            ),
        ),
    );
    report.rows.push(
        Row::info(
            b,
            format!(
                "2 instances: NDJSON {}-event POST p50 / p99",
                args.pg_multi_batch
            ),
            format!(
                "{} / {}",
                fmt_duration(two.batch.p50),
                fmt_duration(two.batch.p99)
            ),
        )
        .baseline(
            format!(
                "1 instance: {} / {}",
                fmt_duration(one.batch.p50),
                fmt_duration(one.batch.p99)
            ),
            format!(
                "{:.2}×",
                two.batch.p99.as_secs_f64() / one.batch.p99.as_secs_f64().max(1e-9)
            ),
        ),
    );
    for (n, l) in [(1, one), (2, two)] {
        if l.errors > 0 {
            report.notes.push(format!(
                "pg-multi: {n} instance(s) had {} failed requests; first: {}",
                l.errors,
                l.first_error.as_deref().unwrap_or("?")
            ));
        }
    }
    report.notes.push(format!(
        "pg-multi: the same clients in both configurations, spread round-robin over the instances, {:.0} s measured after 1 s of warm-up, \
         counting events acknowledged inside the window; every client, server and PostgreSQL share this machine's CPUs. \
         Each instance's writer locks the one `ledger_head` row for its whole group transaction, so appends from both instances are serialised; \
         the ledger was checked to be dense afterwards.",
        args.pg_multi_seconds
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_command_lists_every_column() {
        let c = copy_command("pa_bench_1_0", Path::new("/tmp/rows.csv"));
        assert!(c.starts_with("\\copy pa_bench_1_0.events (seq, event_id,"));
        assert!(c.ends_with("content_hash) FROM '/tmp/rows.csv' WITH (FORMAT csv, HEADER true)"));
    }

    #[test]
    fn csv_rows_use_postgres_literals() {
        let dir = tempfile::tempdir().unwrap();
        let w = generate(&Generator::new(1), 300, 100, dir.path()).unwrap();
        assert_eq!(w.bodies.len(), 3);
        let text = std::fs::read_to_string(&w.csv_path).unwrap();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let mut saw_cves = false;
        for rec in r.records() {
            let rec = rec.unwrap();
            assert!(rec[17].starts_with("\\x") && rec[17].len() == 66);
            assert!(rec[4].ends_with('Z') && rec[15].ends_with('Z'));
            if !rec[12].is_empty() {
                assert!(rec[12].starts_with('{') && rec[12].ends_with('}'));
                saw_cves = true;
            }
        }
        assert!(saw_cves);
    }
}
