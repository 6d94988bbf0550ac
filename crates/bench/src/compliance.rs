//! `compliance`: the fleet compliance report at scale, beside a plain
//! `GROUP BY` over the events that answers the same core question without
//! the incremental `pair_facts` table.
//!
//! The ledger holds `--systems` × `--patches` pairs, `--events` events spread
//! over a share of them (the rest have none, so missing and overdue pairs
//! exist), a catalog of `--patches` entries, one tags record per system, a
//! policy with a scoped SLA and a few exceptions. Every part of it is a pure
//! function of the seed, the sizes and the instant the ledger was built
//! (the anchor), which is kept beside a `--ledger` file so a reused ledger
//! is checked to be the one asked for.
//!
//! Each run times, on SQLite and (with `--postgres-url`) PostgreSQL:
//!
//! - the report: `report_input` (the read) then `Report::compute`;
//! - the baseline: `SELECT patch_id, system, count, failures, first success,
//!   last applied_at FROM events GROUP BY patch_id, system`, read whole;
//! - for the split: `Store::pair_facts` alone, a raw scan of `pair_facts`
//!   into a `Vec`, and the server's `compute_report` (which adds failure
//!   details and the JSON shape).

use crate::gen::{GenEvent, SplitMix};
use crate::history::{preload_with, LOAD_BATCH};
use crate::postgres::{reachable, Schemas};
use crate::report::{Report, Row};
use crate::server::ledger_signer;
use crate::stats::{fmt_count, fmt_duration, median, nearest_rank};
use anyhow::{anyhow, bail, ensure, Context};
use clap::Args;
use patchaudit_compliance::{
    CatalogEntry, Exception, PairState, RawCatalogEntry, RawException, Report as FleetReport,
    ReportFilter, ScopedSla, SlaDays, SlaPolicy, Tag, Tags,
};
use patchaudit_domain::Timestamp;
use patchaudit_store::compliance::{
    encode_tags, put_catalog, put_exception, put_policy, report_input, FactsCache, RecordChange,
    RecordKind,
};
use patchaudit_store::{SqliteOptions, SqliteStore, Store};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of the `compliance` benchmark.
#[derive(Debug, Clone, Args)]
pub struct ComplianceArgs {
    /// Systems in the fleet.
    #[arg(long, default_value_t = 10_000)]
    pub systems: u64,
    /// Patches in the catalog.
    #[arg(long, default_value_t = 100)]
    pub patches: u64,
    /// Events in the ledger, spread over the pairs that have any.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// The share of (patch, system) pairs that have at least one event.
    #[arg(long, default_value_t = 0.85)]
    pub coverage: f64,
    /// Measured repetitions of each side (after one warm-up); medians and
    /// nearest-rank p90s are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Keep the SQLite ledger in this file (its key in FILE.key, the workload
    /// in FILE.workload.json) and reuse it when it holds the same workload.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// Also measure PostgreSQL at this URL, in a fresh schema dropped afterwards.
    #[arg(long, value_name = "URL")]
    pub postgres_url: Option<String>,
    /// Skip the server's compute_report (failure details and JSON shape) in each run.
    #[arg(long)]
    pub no_server_path: bool,
}

const DAY: i64 = 86_400 * 1_000_000;
const HOUR: i64 = 3_600 * 1_000_000;
const ACTOR: &str = "bench";

/// What the ledger was built from; kept beside a `--ledger` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Workload {
    seed: u64,
    systems: u64,
    patches: u64,
    events: u64,
    coverage: f64,
    /// The instant the ledger was built; every time in it is relative to it.
    anchor_micros: i64,
}

const ROLES: [&str; 8] = ["web", "api", "db", "cache", "worker", "lb", "mq", "batch"];
/// Environments with their weights in percent.
const ENVS: [(&str, u64); 5] = [
    ("prod", 50),
    ("staging", 20),
    ("dev", 15),
    ("qa", 10),
    ("dr", 5),
];

struct SystemInfo {
    name: String,
    tags: Vec<String>,
}

struct PatchInfo {
    id: String,
    kind: u64,
    severity: &'static str,
    released_at: i64,
    applies_to_tags: Option<Vec<String>>,
    cves: Vec<String>,
}

/// The fleet of one workload: systems, patches and events by index.
#[derive(Debug, Clone)]
struct Fleet {
    w: Workload,
    pairs: u64,
    /// Pairs with at least one event (when there are that many events).
    covered: u64,
    /// `pair(k) = (k * mult + offset) mod pairs`, a bijection of `0..pairs`.
    mult: u64,
    offset: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Fleet {
    fn new(w: Workload) -> Fleet {
        let pairs = w.systems * w.patches;
        let covered = ((pairs as f64 * w.coverage).round() as u64).clamp(1, pairs);
        let mut mult = ((pairs as f64 * 0.618_034) as u64) | 1;
        while gcd(mult, pairs) != 1 {
            mult += 2;
        }
        let offset = SplitMix::new(w.seed, &[0xC0]).below(pairs);
        Fleet {
            w,
            pairs,
            covered,
            mult: mult % pairs.max(1),
            offset,
        }
    }

    fn system(&self, s: u64) -> SystemInfo {
        let mut r = SplitMix::new(self.w.seed, &[0xC1, s]);
        let role = *r.pick(&ROLES);
        let mut w = r.below(100);
        let mut env = ENVS[0].0;
        for (name, weight) in ENVS {
            if w < weight {
                env = name;
                break;
            }
            w -= weight;
        }
        let mut tags = vec![format!("env={env}"), format!("role={role}")];
        if env == "prod" && r.chance(0.3) {
            tags.push("pci=in-scope".into());
        }
        SystemInfo {
            name: format!("{role}-{s:05}.{env}.example.com"),
            tags,
        }
    }

    fn patch(&self, p: u64) -> PatchInfo {
        let mut r = SplitMix::new(self.w.seed, &[0xC2, p]);
        let kind = p % 3;
        let id = match kind {
            0 => format!("KB{}", 5_040_000 + p),
            1 => format!("DSA-{}-1", 5_600 + p),
            _ => format!("RHSA-2026:{}", 10_000 + p),
        };
        let severity = match r.below(100) {
            0..=9 => "critical",
            10..=39 => "high",
            40..=79 => "medium",
            80..=94 => "low",
            _ => "none",
        };
        let anchor = self.w.anchor_micros;
        // Most were released over the last 120 days; a few are announced
        // for the coming two weeks and so not required yet.
        let released_at = if r.chance(0.02) {
            anchor + (1 + r.below(14) as i64) * DAY
        } else {
            anchor - r.below(120 * DAY as u64) as i64
        };
        let applies_to_tags = match r.below(100) {
            0..=84 => None,
            85..=94 => Some(vec!["env=prod".to_owned()]),
            _ => Some(vec!["role=web".to_owned()]),
        };
        let cves = if matches!(severity, "critical" | "high") {
            vec![format!("CVE-2026-{}", 10_000 + p)]
        } else {
            Vec::new()
        };
        PatchInfo {
            id,
            kind,
            severity,
            released_at,
            applies_to_tags,
            cves,
        }
    }

    fn catalog(&self) -> anyhow::Result<Vec<CatalogEntry>> {
        (0..self.w.patches)
            .map(|p| {
                let i = self.patch(p);
                CatalogEntry::parse(RawCatalogEntry {
                    id: Some(i.id.clone()),
                    title: Some(format!("{} ({} update {p})", i.id, i.severity)),
                    severity: Some(i.severity.to_owned()),
                    released_at: Some(Timestamp::from_micros(i.released_at).to_rfc3339()),
                    cves: i.cves,
                    applies_to_tags: i.applies_to_tags,
                    ..Default::default()
                })
                .map_err(|e| anyhow!("catalog entry {}: {e:?}", i.id))
            })
            .collect()
    }

    /// Event `i`: the `i / covered`-th event of pair `i mod covered`.
    fn event(&self, i: u64) -> GenEvent {
        let k = i % self.covered;
        let round = i / self.covered;
        let q = ((k as u128 * self.mult as u128 + self.offset as u128) % self.pairs as u128) as u64;
        let (s, p) = (q % self.w.systems, q / self.w.systems);
        let patch = self.patch(p);
        let system = self.system(s).name;
        let mut r = SplitMix::new(self.w.seed, &[0xC3, i]);
        let roll = r.unit();
        let status = match (round, roll) {
            (0, x) if x < 0.04 => "failure",
            (0, _) => "success",
            (_, x) if x < 0.07 => "failure",
            (_, x) if x < 0.10 => "rolled_back",
            _ => "success",
        };
        let anchor = self.w.anchor_micros;
        let start = if patch.released_at > anchor {
            anchor - 10 * DAY
        } else {
            patch.released_at
        };
        // Most installs land within days of the release, some weeks later.
        // A pair's later events come later (by 1 to 7 days each), so the
        // store folds them in with a push, never a refold; the cap keeps
        // them in order too.
        let mut pr = SplitMix::new(self.w.seed, &[0xC4, q]);
        let first = (pr.unit().powi(2) * 45.0 * DAY as f64) as i64;
        let gap = (1 + pr.below(7) as i64) * DAY;
        let nth = round.min(1_000) as i64;
        let applied_at = (start + first + nth * gap + r.below(HOUR as u64) as i64)
            .min(anchor - 1 - (1_000 - nth) * 1_000_000);
        let (package, source) = match patch.kind {
            0 => (
                "Cumulative Update for Windows Server 2022",
                "windows-update",
            ),
            1 => ("openssl", "apt"),
            _ => ("kernel", "dnf"),
        };
        let (from_version, to_version) = (format!("1.{p}.0"), format!("1.{p}.1"));
        let detail = match status {
            "failure" => Some(format!(
                "Setting up {package} ({to_version}) ...\n\
                 post-installation script subprocess returned error exit status 1\n\
                 Errors were encountered while processing {} on {system}",
                patch.id
            )),
            "rolled_back" => Some(format!(
                "Rolled back {} on {system} after the health check failed.",
                patch.id
            )),
            _ => None,
        };
        GenEvent {
            event_id: format!(
                "{:08x}-c0c0-4{:03x}-8000-{:012x}",
                self.w.seed & 0xffff_ffff,
                round.min(0xfff),
                i
            ),
            patch_id: patch.id,
            system,
            applied_at: crate::gen::rfc3339_micros(applied_at),
            applied_at_micros: applied_at,
            status,
            package: package.to_owned(),
            from_version,
            to_version,
            source,
            actor: "ansible",
            detail,
            cves: patch.cves,
            reboot_required: (status == "success").then(|| r.chance(0.03)),
            change_ref: None,
        }
    }
}

/// Writes the records (tags, policy, catalog, exceptions) and the events.
/// Returns the load's wall time.
async fn build(fleet: &Fleet, store: &dyn Store, tag: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let changes = (0..fleet.w.systems)
        .map(|s| {
            let i = fleet.system(s);
            let tags = Tags::parse(i.tags.iter().map(String::as_str), "tags")
                .map_err(|e| anyhow!("tags of {}: {e:?}", i.name))?;
            Ok(RecordChange {
                id: i.name,
                body: Some(encode_tags(&tags)),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    store
        .put_records(RecordKind::System, changes, ACTOR)
        .await
        .context("writing the tags records")?;
    let pci = Tag::parse("pci=in-scope", "tag").map_err(|e| anyhow!("{e:?}"))?;
    let policy = SlaPolicy {
        scoped: vec![ScopedSla {
            tag: pci,
            days: SlaDays {
                critical: Some(7),
                high: Some(14),
                medium: Some(30),
                low: Some(90),
            },
        }],
        ..SlaPolicy::default()
    };
    put_policy(store, &policy, ACTOR)
        .await
        .context("writing the policy")?;
    let catalog = fleet.catalog()?;
    put_catalog(store, &catalog, ACTOR)
        .await
        .context("writing the catalog")?;
    let now = Timestamp::now();
    let expires = Timestamp::from_micros(now.as_micros().max(fleet.w.anchor_micros) + 60 * DAY);
    let mut exceptions = 0;
    for p in (0..fleet.w.patches).filter(|p| p % 20 == 7) {
        let x = Exception::parse(
            RawException {
                patch_id: Some(fleet.patch(p).id),
                tag: Some("env=dev".into()),
                reason: Some("dev hosts are rebuilt weekly from patched images".into()),
                approver: Some("ciso@example.com".into()),
                expires_at: Some(expires.to_rfc3339()),
                ..Default::default()
            },
            format!("exc-{p}"),
            now,
        )
        .map_err(|e| anyhow!("exception for patch {p}: {e:?}"))?;
        put_exception(store, &x, ACTOR)
            .await
            .context("writing an exception")?;
        exceptions += 1;
    }
    eprintln!(
        "[{tag}] wrote {} tags records, the policy, {} catalog entries and {exceptions} exception(s) ({:.1} s)",
        fmt_count(fleet.w.systems as f64),
        fmt_count(fleet.w.patches as f64),
        t.elapsed().as_secs_f64()
    );
    eprintln!(
        "[{tag}] preloading {} events over {} of {} pairs via Store::append in batches of {}",
        fmt_count(fleet.w.events as f64),
        fmt_count(fleet.covered.min(fleet.w.events) as f64),
        fmt_count(fleet.pairs as f64),
        fmt_count(LOAD_BATCH as f64)
    );
    let f = fleet.clone();
    preload_with(move |i| f.event(i), store, fleet.w.events, tag, None).await?;
    Ok(t.elapsed())
}

/// The baseline's rows: patch, system, events, failures, first success, last applied_at.
type GroupRow = (String, String, i64, i64, Option<i64>, i64);

/// The GROUP BY baseline and the raw `pair_facts` scan on one backend.
enum Baseline<'a> {
    Sqlite(rusqlite::Connection),
    Postgres {
        client: &'a tokio_postgres::Client,
        schema: String,
    },
}

const SQLITE_GROUP_BY: &str = "SELECT patch_id, system, COUNT(*), SUM(status = 'failure'), \
     MIN(CASE WHEN status = 'success' THEN applied_at END), MAX(applied_at) \
     FROM events GROUP BY patch_id, system";

const FACT_SCAN: &str = "SELECT patch_id, system, attempts, failures, first_attempt_at, \
     first_success_at, applied_since, pending_reboot, last_status, last_applied_at, last_seq, \
     last_failure_seq FROM";

fn pg_micros(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_micros())
}

impl Baseline<'_> {
    fn sqlite(db: &Path) -> anyhow::Result<Baseline<'static>> {
        // Opened as the store opens its readers.
        let c = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {} for the baseline", db.display()))?;
        c.pragma_update(None, "query_only", true)?;
        c.pragma_update(None, "mmap_size", 1i64 << 30)?;
        Ok(Baseline::Sqlite(c))
    }

    fn group_by_sql(&self) -> String {
        match self {
            Baseline::Sqlite(_) => SQLITE_GROUP_BY.to_owned(),
            Baseline::Postgres { schema, .. } => format!(
                "SELECT patch_id, system, count(*), count(*) FILTER (WHERE status = 'failure'), \
                 min(applied_at) FILTER (WHERE status = 'success'), max(applied_at) \
                 FROM {schema}.events GROUP BY patch_id, system"
            ),
        }
    }

    /// Runs the GROUP BY and reads every row into memory.
    async fn group_by(&self) -> anyhow::Result<Vec<GroupRow>> {
        let sql = self.group_by_sql();
        match self {
            Baseline::Sqlite(c) => {
                let mut stmt = c.prepare_cached(&sql)?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
            Baseline::Postgres { client, .. } => Ok(client
                .query(&sql, &[])
                .await
                .context("the GROUP BY baseline")?
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        pg_micros(r.get(4)),
                        pg_micros(Some(r.get(5))).unwrap_or(0),
                    )
                })
                .collect()),
        }
    }

    /// Reads every `pair_facts` row into a `Vec`, with no map built: the
    /// floor of the store's read. Returns the row count.
    async fn scan_facts(&self) -> anyhow::Result<usize> {
        type FactRow = (
            String,
            String,
            i64,
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            bool,
            String,
            i64,
            i64,
            Option<i64>,
        );
        let rows: Vec<FactRow> = match self {
            Baseline::Sqlite(c) => {
                let mut stmt = c.prepare_cached(&format!("{FACT_SCAN} pair_facts"))?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get::<_, i64>(7)? != 0,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                        r.get(11)?,
                    ))
                })?;
                rows.collect::<Result<_, _>>()?
            }
            Baseline::Postgres { client, schema } => client
                .query(&format!("{FACT_SCAN} {schema}.pair_facts"), &[])
                .await
                .context("scanning pair_facts")?
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        pg_micros(r.get(4)),
                        pg_micros(r.get(5)),
                        pg_micros(r.get(6)),
                        r.get(7),
                        r.get(8),
                        pg_micros(Some(r.get(9))).unwrap_or(0),
                        r.get(10),
                        r.get(11),
                    )
                })
                .collect(),
        };
        Ok(rows.len())
    }
}

/// Seconds per run of each measured step on one backend.
#[derive(Debug, Default)]
struct Timings {
    /// `report_input`: the records and the pair facts.
    read: Vec<f64>,
    /// `Report::compute`.
    compute: Vec<f64>,
    /// `ReportOut::from(&report)`: the server's JSON shape, not in `report`.
    shape: Vec<f64>,
    /// `read + compute`: the report.
    report: Vec<f64>,
    /// `Store::pair_facts(None)` alone.
    facts: Vec<f64>,
    /// The raw scan of `pair_facts` into a `Vec`.
    scan: Vec<f64>,
    /// The server's `compute_report` without a cache.
    server: Vec<f64>,
    /// The server's `compute_report` through a warm `FactsCache`, nothing changed since.
    server_cached: Vec<f64>,
    /// The GROUP BY baseline, read whole.
    group_by: Vec<f64>,
}

/// What the report covered, from the first measured run.
#[derive(Debug, Default, Clone)]
struct Shape {
    systems: u64,
    patches: u64,
    pairs_with_facts: u64,
    group_rows: u64,
    required: u64,
    by_state: Vec<(PairState, u64)>,
    overdue: u64,
    overdue_rows: u64,
    failure_rows: u64,
    checkpoint_size: u64,
    /// `/proc/loadavg` before and after the runs: the machine is shared.
    load_before: String,
    load_after: String,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn measure(
    tag: &str,
    store: &dyn Store,
    baseline: &Baseline<'_>,
    runs: usize,
    server_path: bool,
) -> anyhow::Result<(Timings, Shape)> {
    let mut t = Timings::default();
    let mut shape = Shape::default();
    let cache = FactsCache::default();
    shape.load_before = load_average();
    for run in 0..=runs {
        let warm = run == 0;
        let label = if warm {
            "warm-up".to_owned()
        } else {
            format!("run {run}/{runs}")
        };
        // Alternate which side goes first so neither always has the warmer cache.
        let mut report_s = (0.0, 0.0);
        let mut shape_s = 0.0;
        let mut gb_s = 0.0;
        for side in if run % 2 == 0 { [0, 1] } else { [1, 0] } {
            if side == 0 {
                let t0 = Instant::now();
                let input = report_input(store, None).await.context("report_input")?;
                let t1 = Instant::now();
                let report = FleetReport::compute(&input, &ReportFilter::default());
                let t2 = Instant::now();
                report_s = ((t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64());
                // The server's JSON shape of the same report, timed on its own.
                let t3 = Instant::now();
                let out = patchaudit_server::report_out::ReportOut::from(&report);
                shape_s = t3.elapsed().as_secs_f64();
                drop(out);
                if run == 1 {
                    let c = &report.summary.counts;
                    shape.systems = report.summary.systems;
                    shape.patches = report.summary.patches;
                    shape.pairs_with_facts = input.facts.values().map(|m| m.len() as u64).sum();
                    shape.required = c.required();
                    shape.by_state = c.by_state().collect();
                    shape.overdue = c.overdue;
                    shape.overdue_rows = report.overdue.len() as u64;
                    shape.failure_rows = report.failures.len() as u64;
                    shape.checkpoint_size = input.checkpoint.as_ref().map_or(0, |c| c.size);
                }
                drop(report);
                drop(input);
            } else {
                let t0 = Instant::now();
                let rows = baseline.group_by().await?;
                gb_s = t0.elapsed().as_secs_f64();
                if run == 1 {
                    shape.group_rows = rows.len() as u64;
                }
                drop(rows);
            }
        }
        let t0 = Instant::now();
        let snap = store.pair_facts(None).await.context("pair_facts")?;
        let facts_s = t0.elapsed().as_secs_f64();
        drop(snap);
        let t0 = Instant::now();
        let scanned = baseline.scan_facts().await?;
        let scan_s = t0.elapsed().as_secs_f64();
        // The server's path: without a cache (as the CLI's local mode and a
        // server's first report), then through a FactsCache that the
        // warm-up filled and nothing has changed since (a long-running
        // server's best case).
        let mut server_s = None;
        if server_path {
            let mut timed = Vec::new();
            for c in [None, Some(&cache)] {
                let t0 = Instant::now();
                let out = patchaudit_server::compliance::compute_report(
                    store,
                    c,
                    None,
                    ReportFilter::default(),
                )
                .await
                .map_err(|e| anyhow!("compute_report: {e}"))?;
                timed.push(t0.elapsed().as_secs_f64());
                drop(out);
            }
            server_s = Some((timed[0], timed[1]));
        }
        eprintln!(
            "[{tag}] {label}: report {} (read {}, compute {}; then ReportOut::from {}); GROUP BY {}; pair_facts {}; raw scan {} ({} rows){}",
            secs(report_s.0 + report_s.1),
            secs(report_s.0),
            secs(report_s.1),
            secs(shape_s),
            secs(gb_s),
            secs(facts_s),
            secs(scan_s),
            fmt_count(scanned as f64),
            server_s.map_or(String::new(), |(cold, cached)| format!(
                "; server compute_report {} without a cache, {} through the FactsCache{}",
                secs(cold),
                secs(cached),
                if warm { " (filling it)" } else { "" }
            ))
        );
        if !warm {
            t.read.push(report_s.0);
            t.compute.push(report_s.1);
            t.shape.push(shape_s);
            t.report.push(report_s.0 + report_s.1);
            t.group_by.push(gb_s);
            t.facts.push(facts_s);
            t.scan.push(scan_s);
            if let Some((cold, cached)) = server_s {
                t.server.push(cold);
                t.server_cached.push(cached);
            }
        }
    }
    shape.load_after = load_average();
    ensure!(
        shape.group_rows == shape.pairs_with_facts,
        "[{tag}] the GROUP BY returned {} pairs, but the report read facts of {}",
        shape.group_rows,
        shape.pairs_with_facts
    );
    Ok((t, shape))
}

fn secs(s: f64) -> String {
    fmt_duration(Duration::from_secs_f64(s))
}

fn med_p90(v: &[f64]) -> String {
    format!("{} / {}", secs(median(v)), secs(nearest_rank(v, 0.9)))
}

/// One backend's results.
struct Measured {
    backend: String,
    timings: Timings,
    shape: Shape,
    load: Option<Duration>,
}

fn sqlite_workload_file(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}.workload.json", db.display()))
}

/// Runs the `compliance` benchmark.
pub async fn run(seed: u64, args: &ComplianceArgs, work_dir: &Path) -> anyhow::Result<Report> {
    ensure!(
        args.systems > 0 && args.patches > 0 && args.events > 0 && args.runs > 0,
        "--systems, --patches, --events and --runs must be positive"
    );
    ensure!(
        args.coverage > 0.0 && args.coverage <= 1.0,
        "--coverage must be in (0, 1]"
    );
    if let Some(url) = &args.postgres_url {
        ensure!(
            reachable(url),
            "nothing accepts connections at {url}; start PostgreSQL or leave out --postgres-url"
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("patchaudit-bench-")
        .tempdir_in(work_dir)
        .with_context(|| format!("creating a temporary directory in {}", work_dir.display()))?;
    let db = match &args.ledger {
        Some(p) => p.clone(),
        None => dir.path().join("ledger.db"),
    };
    let signer = ledger_signer(&db, args.ledger.is_some())?;
    let store = SqliteStore::open(
        &db,
        SqliteOptions {
            signer: Some(signer),
            ..SqliteOptions::default()
        },
    )
    .with_context(|| format!("opening the ledger at {}", db.display()))?;
    let wanted = |anchor_micros| Workload {
        seed,
        systems: args.systems,
        patches: args.patches,
        events: args.events,
        coverage: args.coverage,
        anchor_micros,
    };
    let meta_file = sqlite_workload_file(&db);
    let held = store.len().await?;
    let (workload, sqlite_load) = if held > 0 {
        ensure!(
            args.ledger.is_some(),
            "a fresh temporary ledger holds events"
        );
        let text = std::fs::read_to_string(&meta_file).with_context(|| {
            format!(
                "{} holds {held} events but {} cannot be read; remove the ledger or pick another file",
                db.display(),
                meta_file.display()
            )
        })?;
        let w: Workload = serde_json::from_str(&text)
            .with_context(|| format!("reading {}", meta_file.display()))?;
        if w != wanted(w.anchor_micros) || held != args.events {
            bail!(
                "{} holds another workload ({held} events, {text}); remove it or pick another file",
                db.display()
            );
        }
        eprintln!(
            "[compliance] reusing the {} events of {} (built {})",
            fmt_count(held as f64),
            db.display(),
            Timestamp::from_micros(w.anchor_micros).to_rfc3339()
        );
        (w, None)
    } else {
        let w = wanted(Timestamp::now().as_micros());
        let load = build(&Fleet::new(w.clone()), &store, "compliance").await?;
        if args.ledger.is_some() {
            std::fs::write(&meta_file, serde_json::to_string_pretty(&w)?)
                .with_context(|| format!("writing {}", meta_file.display()))?;
        }
        (w, Some(load))
    };
    let fleet = Fleet::new(workload.clone());

    let mut measured = Vec::new();
    {
        let baseline = Baseline::sqlite(&db)?;
        let (timings, shape) = measure(
            "compliance sqlite",
            &store,
            &baseline,
            args.runs,
            !args.no_server_path,
        )
        .await?;
        measured.push(Measured {
            backend: "SQLite".into(),
            timings,
            shape,
            load: sqlite_load,
        });
    }
    drop(store);

    let mut notes = Vec::new();
    if let Some(url) = &args.postgres_url {
        let schemas = Schemas::connect(url).await?;
        let body = async {
            let settings = schemas
                .admin
                .query_one(
                    "SELECT current_setting('server_version'), current_setting('shared_buffers'), \
                     current_setting('work_mem'), current_setting('max_parallel_workers_per_gather')",
                    &[],
                )
                .await?;
            notes.push(format!(
                "compliance: PostgreSQL {} at {url} on this machine (shared_buffers {}, work_mem {}, max_parallel_workers_per_gather {}); \
                 the ledger was loaded into a fresh schema migrated by PgStore, VACUUM ANALYZEd, measured, and dropped.",
                settings.get::<_, String>(0),
                settings.get::<_, String>(1),
                settings.get::<_, String>(2),
                settings.get::<_, String>(3),
            ));
            let schema = schemas.create().await?;
            let store = schemas.store(&schema).await?;
            let load = build(&fleet, &store, "compliance pg").await?;
            let t = Instant::now();
            schemas
                .admin
                .batch_execute(&format!(
                    "VACUUM (ANALYZE) {schema}.events, {schema}.pair_facts, {schema}.systems, {schema}.records"
                ))
                .await
                .context("VACUUM ANALYZE")?;
            eprintln!(
                "[compliance pg] VACUUM ANALYZE took {:.1} s",
                t.elapsed().as_secs_f64()
            );
            let baseline = Baseline::Postgres {
                client: &schemas.admin,
                schema: schema.clone(),
            };
            let (timings, shape) = measure(
                "compliance pg",
                &store,
                &baseline,
                args.runs,
                !args.no_server_path,
            )
            .await?;
            drop(store);
            schemas.drop_one(&schema).await?;
            anyhow::Ok(Measured {
                backend: "PostgreSQL".into(),
                timings,
                shape,
                load: Some(load),
            })
        };
        let result = tokio::select! {
            r = body => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        };
        schemas.drop_all().await;
        measured.push(result?);
    }

    Ok(summarise(&fleet, args, &measured, notes))
}

fn summarise(fleet: &Fleet, args: &ComplianceArgs, all: &[Measured], notes: Vec<String>) -> Report {
    let w = &fleet.w;
    let b = "compliance";
    let size = format!(
        "{} systems × {} patches, {} events",
        fmt_count(w.systems as f64),
        fmt_count(w.patches as f64),
        fmt_count(w.events as f64)
    );
    let mut report = Report::default();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "Compliance report, {size} (median / p90 of {} runs after one warm-up):\n",
        args.runs
    );
    table.push_str(
        "| backend | pairs | pairs with events | required pairs | events | report median | report p90 | GROUP BY median | GROUP BY p90 | GROUP BY / report |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut split = String::from(
        "Where the report's time goes (medians):\n\n\
         | backend | report_input (read) | Store::pair_facts alone | raw pair_facts scan into a Vec | Report::compute | ReportOut::from (JSON shape) | server compute_report, no cache (report + failure details + JSON shape) | server compute_report, warm FactsCache, nothing changed |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for m in all {
        let t = &m.timings;
        let (rep, gb) = (median(&t.report), median(&t.group_by));
        let ratio = gb / rep;
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2}× |",
            m.backend,
            fmt_count(fleet.pairs as f64),
            fmt_count(m.shape.pairs_with_facts as f64),
            fmt_count(m.shape.required as f64),
            fmt_count(m.shape.checkpoint_size as f64),
            secs(rep),
            secs(nearest_rank(&t.report, 0.9)),
            secs(gb),
            secs(nearest_rank(&t.group_by, 0.9)),
            ratio
        );
        let server = |v: &[f64]| {
            if v.is_empty() {
                "not measured".to_owned()
            } else {
                secs(median(v))
            }
        };
        let _ = writeln!(
            split,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            m.backend,
            secs(median(&t.read)),
            secs(median(&t.facts)),
            secs(median(&t.scan)),
            secs(median(&t.compute)),
            secs(median(&t.shape)),
            server(&t.server),
            server(&t.server_cached)
        );
        report.rows.push(
            Row::info(
                b,
                format!(
                    "{}: report (report_input + Report::compute), {size}, median / p90",
                    m.backend
                ),
                med_p90(&t.report),
            )
            .baseline(
                format!("GROUP BY over events: {}", med_p90(&t.group_by)),
                format!("{ratio:.2}×"),
            )
            .target("≤ 1 s", rep <= 1.0),
        );
        report.rows.push(
            Row::info(
                b,
                format!("{}: GROUP BY / report (median)", m.backend),
                format!("{ratio:.2}×"),
            )
            .target("≥ 5×", ratio >= 5.0),
        );
        for (what, v) in [
            ("server compute_report without a cache", &t.server),
            (
                "server compute_report through a warm FactsCache, nothing changed since (best case)",
                &t.server_cached,
            ),
        ] {
            if !v.is_empty() {
                report.rows.push(
                    Row::info(b, format!("{}: {what}, median / p90", m.backend), med_p90(v))
                        .baseline(
                            format!("GROUP BY over events: {}", secs(gb)),
                            format!("{:.2}×", gb / median(v)),
                        ),
                );
            }
        }
        if let Some(load) = m.load {
            report.rows.push(Row::info(
                b,
                format!(
                    "{}: build the ledger (records, then events via Store::append, 10k/batch)",
                    m.backend
                ),
                format!(
                    "{:.1} s ({} events/s)",
                    load.as_secs_f64(),
                    fmt_count(w.events as f64 / load.as_secs_f64())
                ),
            ));
        }
    }
    report.sections.push(table);
    report.sections.push(split);
    report.notes.push(format!(
        "compliance: {} systems (tags env/role, 15% pci=in-scope among prod) × {} catalog entries (10% critical, 30% high, 40% medium, 15% low, 5% none; \
         released over the 120 days before the build, 2% in the coming two weeks; 85% apply to all systems, 15% to a tag), \
         a policy with a stricter SLA for pci=in-scope, and {} exception(s) scoped to env=dev. {} events over the first {} of {} pairs in a seeded permutation \
         (round 0 is 96% success; later events of a pair 90% success, 7% failure, 3% rollback; the first applied_at of a pair within 45 days of the release, each later one 1 to 7 days after the previous, all before the build instant, so ingest never refolds a pair).",
        fmt_count(w.systems as f64),
        fmt_count(w.patches as f64),
        (w.patches + 12) / 20,
        fmt_count(w.events as f64),
        fmt_count(fleet.covered.min(w.events) as f64),
        fmt_count(fleet.pairs as f64),
    ));
    for m in all {
        let s = &m.shape;
        let states = s
            .by_state
            .iter()
            .map(|(st, n)| format!("{st} {}", fmt_count(*n as f64)))
            .collect::<Vec<_>>()
            .join(", ");
        let t = &m.timings;
        let list = |v: &[f64]| v.iter().map(|x| secs(*x)).collect::<Vec<_>>().join(", ");
        report.notes.push(format!(
            "compliance {}: {} systems, {} patches, {} required pairs ({states}; {} overdue), {} overdue rows and {} failure rows listed. \
             Per run: report {}; GROUP BY {}; read {}; compute {}{}. Load average (1/5/15 min) {} before the runs, {} after.",
            m.backend,
            fmt_count(s.systems as f64),
            fmt_count(s.patches as f64),
            fmt_count(s.required as f64),
            fmt_count(s.overdue as f64),
            fmt_count(s.overdue_rows as f64),
            fmt_count(s.failure_rows as f64),
            list(&t.report),
            list(&t.group_by),
            list(&t.read),
            list(&t.compute),
            if t.server.is_empty() {
                String::new()
            } else {
                format!(
                    "; server compute_report {} without a cache, {} through a warm FactsCache",
                    list(&t.server),
                    list(&t.server_cached)
                )
            },
            s.load_before,
            s.load_after
        ));
    }
    report.notes.push(
        "compliance: the report is patchaudit_store::compliance::report_input(store, None) then patchaudit_compliance::Report::compute(&input, &ReportFilter::default()), \
         as the server computes it; the baseline reads SELECT patch_id, system, COUNT(*), failures, first success, MAX(applied_at) FROM events GROUP BY patch_id, system \
         into a Vec on a connection opened like the store's readers (SQLite: read-only, mmap 1 GiB; PostgreSQL: one tokio-postgres client, FILTER (WHERE ...)). \
         The two sides alternate which goes first; the split columns come from separate calls in the same runs. Values drop after the clock stops."
            .to_owned(),
    );
    report.notes.extend(notes);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchaudit_domain::ValidationContext;
    use std::collections::HashSet;

    fn fleet(systems: u64, patches: u64, events: u64) -> Fleet {
        Fleet::new(Workload {
            seed: 42,
            systems,
            patches,
            events,
            coverage: 0.85,
            anchor_micros: Timestamp::now().as_micros() - HOUR,
        })
    }

    #[test]
    fn events_cover_the_chosen_share_of_pairs_once_per_round() {
        let f = fleet(50, 40, 3_000);
        assert_eq!(f.covered, 1_700);
        let ctx = ValidationContext::now();
        let mut pairs = HashSet::new();
        let mut ids = HashSet::new();
        for i in 0..f.covered {
            let e = f.event(i);
            e.validate(&ctx).unwrap();
            assert!(e.applied_at_micros < f.w.anchor_micros);
            assert!(
                pairs.insert((e.patch_id.clone(), e.system.clone())),
                "pair repeated at {i}"
            );
            assert!(ids.insert(e.event_id));
        }
        // The next round revisits the same pairs in the same order, later.
        for k in 0..f.covered {
            let (a, b) = (f.event(k), f.event(k + f.covered));
            assert_eq!((&a.patch_id, &a.system), (&b.patch_id, &b.system));
            assert!(a.applied_at_micros < b.applied_at_micros, "pair {k}");
        }
        assert!(f.event(f.covered + 5).event_id != f.event(5).event_id);
        assert_eq!(f.catalog().unwrap().len(), 40);
    }

    #[test]
    fn the_permutation_is_a_bijection() {
        for (s, p) in [(10_000, 100), (2_000, 500), (7, 3)] {
            let f = fleet(s, p, 1);
            assert_eq!(gcd(f.mult, f.pairs), 1, "{s}×{p}");
        }
        let f = fleet(12, 10, 1);
        let all: HashSet<u64> = (0..f.pairs)
            .map(|k| (k * f.mult + f.offset) % f.pairs)
            .collect();
        assert_eq!(all.len() as u64, f.pairs);
    }
}
