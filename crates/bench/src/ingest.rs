//! `ingest`: batch ingest over HTTP against the `sqlite3` shell's bulk import.
//!
//! Both sides write the same rows into the same schema with the same
//! durability (`journal_mode=WAL`, `synchronous=FULL`); the request bodies
//! and the CSV file are generated before any clock starts.

use crate::gen::Generator;
use crate::report::{Report, Row};
use crate::server::{http_client, open_store, RunningServer};
use crate::stats::{alternate, fmt_count, fmt_counts, median};
use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use clap::Args;
use patchaudit_domain::{Timestamp, ValidationContext};
use patchaudit_store::Store;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

/// Options of the `ingest` benchmark.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// How many events to ingest per run.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Events per NDJSON request (the server's default max_batch is 10000).
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
    /// How many times to repeat both measurements; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// The columns of the `events` table, in the order the CSV baseline writes them.
pub const EVENT_TABLE_COLUMNS: [&str; 18] = [
    "seq",
    "event_id",
    "patch_id",
    "system",
    "applied_at",
    "status",
    "package",
    "from_version",
    "to_version",
    "source",
    "actor",
    "detail",
    "cves",
    "reboot_required",
    "change_ref",
    "recorded_at",
    "recorded_by",
    "content_hash",
];

/// The workload, generated once and reused by every run.
struct Workload {
    /// NDJSON request bodies of `batch` events each.
    bodies: Vec<Bytes>,
    /// The same rows as a CSV file with a header, in `events` column order.
    csv_path: PathBuf,
    /// The event_id of the first event, to check the import's column order.
    first_event_id: String,
    ndjson_bytes: usize,
    csv_bytes: usize,
}

fn generate(
    gen: &Generator,
    args: &IngestArgs,
    dir: &Path,
    recorded_at: Timestamp,
) -> anyhow::Result<Workload> {
    let ctx = ValidationContext::now();
    let mut bodies = Vec::new();
    let mut body = Vec::new();
    let mut in_body = 0usize;
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(EVENT_TABLE_COLUMNS)
        .context("writing the CSV header")?;
    for i in 0..args.events {
        let e = gen.event(i);
        serde_json::to_writer(&mut body, &e).context("encoding an event as JSON")?;
        body.push(b'\n');
        in_body += 1;
        if in_body == args.batch {
            bodies.push(Bytes::from(std::mem::take(&mut body)));
            in_body = 0;
        }
        let v = e.validate(&ctx)?;
        let reboot = match v.reboot_required {
            None => String::new(),
            Some(b) => (b as u8).to_string(),
        };
        let cves = v
            .cves
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let opt = |s: &Option<String>| s.clone().unwrap_or_default();
        csv.write_record([
            i.to_string(),
            e.event_id.clone(),
            e.patch_id.clone(),
            e.system.clone(),
            v.applied_at.as_micros().to_string(),
            e.status.to_owned(),
            opt(&v.package),
            opt(&v.from_version),
            opt(&v.to_version),
            opt(&v.source),
            opt(&v.actor),
            opt(&v.detail),
            cves,
            reboot,
            opt(&v.change_ref),
            recorded_at.as_micros().to_string(),
            String::new(),
            hex::encode(v.content_digest()),
        ])
        .context("writing a CSV row")?;
        if (i + 1) % 50_000 == 0 {
            eprintln!("[ingest] generated {} events", fmt_count((i + 1) as f64));
        }
    }
    if in_body > 0 {
        bodies.push(Bytes::from(body));
    }
    let csv = csv.into_inner().context("finishing the CSV")?;
    let csv_path = dir.join("rows.csv");
    std::fs::write(&csv_path, &csv).with_context(|| format!("writing {}", csv_path.display()))?;
    Ok(Workload {
        first_event_id: gen.event_id(0),
        ndjson_bytes: bodies.iter().map(|b| b.len()).sum(),
        csv_bytes: csv.len(),
        bodies,
        csv_path,
    })
}

/// One server measurement: a fresh ledger, every body POSTed in order from
/// one client. Returns events per second.
async fn run_server(work: &Workload, events: u64, parent: &Path) -> anyhow::Result<f64> {
    let dir = tempdir(parent)?;
    let store = open_store(&dir.path().join("ledger.db"))?;
    let server = RunningServer::start(Arc::new(store.clone())).await?;
    let (rate, created) = post_all(&server.base, &work.bodies).await?;
    ensure!(
        created == events,
        "the server created {created} events, expected {events}"
    );
    let len = store.len().await.context("counting the ledger")?;
    ensure!(
        len == events,
        "the ledger holds {len} events, expected {events}"
    );
    server.stop().await?;
    Ok(rate)
}

/// POSTs every body in order from one client, after opening the connection
/// (so the clock sees only the ingest); returns events per second and how
/// many events the server created.
pub async fn post_all(base: &str, bodies: &[Bytes]) -> anyhow::Result<(f64, u64)> {
    let client = http_client(1)?;
    let url = format!("{base}/v1/events");
    client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .context("the server does not answer /healthz")?;
    let mut answers = Vec::with_capacity(bodies.len());
    let start = Instant::now();
    for body in bodies {
        let resp = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
            .context("POST /v1/events")?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("reading the ingest answer")?;
        if status != reqwest::StatusCode::CREATED {
            bail!(
                "POST /v1/events answered {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(2_000)])
            );
        }
        answers.push(bytes);
    }
    let elapsed = start.elapsed();
    let mut created = 0u64;
    for a in &answers {
        let v: serde_json::Value =
            serde_json::from_slice(a).context("decoding an ingest answer")?;
        created += v["created"].as_u64().unwrap_or(0);
    }
    Ok((created as f64 / elapsed.as_secs_f64(), created))
}

/// One baseline measurement: a fresh database with the store's schema, and
/// the `sqlite3` shell importing the CSV into `events`. Returns rows per second.
fn run_baseline(
    work: &Workload,
    events: u64,
    sqlite3: &Path,
    parent: &Path,
) -> anyhow::Result<f64> {
    let dir = tempdir(parent)?;
    let db = dir.path().join("baseline.db");
    // Let the store's own migrations create exactly the same tables,
    // indexes and triggers, then close it.
    drop(open_store(&db)?);
    let script = dir.path().join("import.sql");
    std::fs::write(
        &script,
        format!(
            ".bail on\n.timeout 5000\nPRAGMA journal_mode=WAL;\nPRAGMA synchronous=FULL;\n.import --csv --skip 1 {} events\n",
            work.csv_path.display()
        ),
    )
    .with_context(|| format!("writing {}", script.display()))?;
    let stdin =
        std::fs::File::open(&script).with_context(|| format!("opening {}", script.display()))?;

    let start = Instant::now();
    let out = Command::new(sqlite3)
        .arg(&db)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", sqlite3.display()))?;
    let elapsed = start.elapsed();

    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && stderr.trim().is_empty(),
        "{} failed ({}): {}",
        sqlite3.display(),
        out.status,
        stderr.chars().take(2_000).collect::<String>()
    );
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", db.display()))?;
    let (rows, journal, first_id, typed): (u64, String, String, bool) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM events), \
                    (SELECT journal_mode FROM pragma_journal_mode), \
                    (SELECT event_id FROM events WHERE seq = 0), \
                    (SELECT typeof(applied_at) = 'integer' AND typeof(recorded_at) = 'integer' \
                       FROM events WHERE seq = 0)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .with_context(|| format!("checking the rows of {}", db.display()))?;
    ensure!(
        first_id == work.first_event_id && typed,
        "the baseline's columns are misaligned: seq 0 has event_id {first_id:?}, expected {:?}",
        work.first_event_id
    );
    ensure!(
        rows == events,
        "the baseline imported {rows} rows, expected {events}"
    );
    ensure!(
        journal.eq_ignore_ascii_case("wal"),
        "the baseline database is in {journal} mode, not WAL"
    );
    Ok(events as f64 / elapsed.as_secs_f64())
}

fn tempdir(parent: &Path) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("patchaudit-bench-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))
}

/// Runs the `ingest` benchmark.
pub async fn run(
    gen: &Generator,
    args: &IngestArgs,
    sqlite3: &Path,
    work_dir: &Path,
) -> anyhow::Result<Report> {
    ensure!(
        args.events > 0 && args.batch > 0 && args.runs > 0,
        "--events, --batch and --runs must be positive"
    );
    let shared = tempdir(work_dir)?;
    eprintln!(
        "[ingest] generating {} events (seed {}) as NDJSON batches of {} and as CSV",
        fmt_count(args.events as f64),
        gen.seed(),
        args.batch
    );
    let work = generate(gen, args, shared.path(), Timestamp::now())?;

    let work = &work;
    let (server_rates, baseline_rates) = alternate(
        "ingest",
        args.runs,
        ("server", "sqlite3 .import"),
        || run_server(work, args.events, work_dir),
        || async move {
            tokio::task::block_in_place(|| run_baseline(work, args.events, sqlite3, work_dir))
        },
    )
    .await?;
    let server = median(&server_rates);
    let baseline = median(&baseline_rates);
    let ratio = server / baseline;

    let mut report = Report::default();
    report.rows.push(
        Row::info(
            "ingest",
            format!(
                "POST /v1/events NDJSON, {} events in batches of {} (events/s, median of {})",
                fmt_count(args.events as f64),
                fmt_count(args.batch as f64),
                args.runs
            ),
            fmt_count(server),
        )
        .baseline(
            format!("sqlite3 .import: {}", fmt_count(baseline)),
            format!("{ratio:.2}×"),
        )
        .target("≥ 0.5× baseline", ratio >= 0.5),
    );
    report.notes.push(format!(
        "ingest: per run, server {} events/s; sqlite3 .import {} rows/s. Bodies: {:.1} MB NDJSON, {:.1} MB CSV, generated before timing.",
        fmt_counts(&server_rates),
        fmt_counts(&baseline_rates),
        work.ndjson_bytes as f64 / 1e6,
        work.csv_bytes as f64 / 1e6
    ));
    report.notes.push(
        "ingest: the baseline imports into the same schema (indexes, UNIQUE event_id, triggers) with WAL and synchronous=FULL, in one transaction; \
         it does not maintain the derived `systems` and `patch_state` tables, validate events or compute digests, \
         stores empty strings instead of NULLs, and stores content_hash as hex text (the sqlite3 shell cannot import blobs)."
            .to_owned(),
    );
    Ok(report)
}
