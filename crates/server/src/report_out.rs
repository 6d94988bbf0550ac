//! The outward forms of a compliance [`Report`]: JSON ([`ReportOut`]), CSV
//! ([`to_csv`], [`systems_csv`], [`patches_csv`]) and a self-contained HTML
//! page ([`to_html`]).
//!
//! [`ReportOut`] is the one wire shape: the server serialises it and the CLI
//! reads it back. The CSV and HTML renderings are made from a [`ReportOut`]
//! rather than from the [`Report`], so a report saved as JSON renders to the
//! same CSV and HTML wherever it is rendered.
//!
//! In every form, timestamps are RFC 3339 in UTC, durations are days as
//! fractional numbers, percentages run from 0 to 100 (null, empty or "n/a"
//! when there is nothing to divide by), and states and severities are their
//! wire names (`applied_late`, `critical`).

use patchaudit_compliance::report::{
    CheckpointRef, CoveragePoint, PairRow, PatchRow, StateCounts, SystemRow, TimeToPatch,
};
use patchaudit_compliance::{PairState, Report, ReportFilter, Severity, DAY_MICROS};
use patchaudit_domain::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use utoipa::ToSchema;

// ---------------------------------------------------------------- JSON

/// A compliance report: where every required (system, patch) pair stood at
/// one instant, computed from one ledger checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportOut {
    /// The instant the report describes.
    #[schema(example = "2024-02-20T00:00:00.000000Z")]
    pub at: String,
    /// True when the instant was asked for (`--as-of`), false when it is the
    /// time the report was requested.
    pub as_of: bool,
    /// The ledger checkpoint the report was computed from; null when it names none.
    pub checkpoint: Option<ReportCheckpoint>,
    /// The part of the fleet and catalog the report covers.
    pub filter: ReportFilterOut,
    /// The headline numbers.
    pub summary: ReportSummary,
    /// Pairs not applied and past their deadline, oldest deadline first.
    pub overdue: Vec<ReportPair>,
    /// Pairs whose latest attempt failed, most recent failure first.
    pub failures: Vec<ReportPair>,
    /// Every required pair, when asked for (`pairs=true`, `format=pairs-csv`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<ReportPair>,
    /// One line per system in the report.
    pub systems: Vec<ReportSystem>,
    /// One line per patch in the report, most severe first, then oldest release.
    pub patches: Vec<ReportPatch>,
    /// Coverage over time, sampled from the earliest release to `at`.
    pub coverage: Vec<ReportCoveragePoint>,
    /// Applied pairs per time-to-patch bucket, shortest bucket first.
    pub time_to_patch_histogram: Vec<ReportHistogramBucket>,
    /// Installed packages that no logged success explains, by system then
    /// package: at most 1,000 unless every pair is asked for
    /// (`summary.unaccounted` counts them all).
    #[serde(default)]
    pub unaccounted: Vec<ReportUnaccounted>,
}

/// An installed package, from a system's inventory, that no logged event
/// explains: no success on that system recorded that version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportUnaccounted {
    /// The system.
    #[schema(example = "web-01")]
    pub system: String,
    /// The package (a KB id on Windows).
    #[schema(example = "openssl")]
    pub package: String,
    /// The installed version.
    #[schema(example = "3.0.11-1~deb12u2")]
    pub version: String,
    /// The architecture, where the format has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

/// The ledger checkpoint a report was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportCheckpoint {
    /// The tree size: the report covers the events with seq below it.
    pub size: u64,
    /// The tree's root hash, as lowercase hex.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub root: String,
}

/// The filter a report was computed with; every set part must match, and an
/// empty list or null matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportFilterOut {
    /// Only systems carrying all of these `key=value` tags.
    #[schema(example = json!(["env=prod"]))]
    pub tags: Vec<String>,
    /// Only patches of these severities.
    #[schema(example = json!(["critical", "high"]))]
    pub severities: Vec<String>,
    /// Only this system.
    pub system: Option<String>,
    /// Only this patch.
    pub patch_id: Option<String>,
}

/// The headline numbers of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportSummary {
    /// Required pairs: released patches that apply to systems in the report.
    pub pairs_required: u64,
    /// Required pairs per state, every state listed (zeros included).
    pub states: ReportStates,
    /// Pairs applied (on time or late) as a percentage of required pairs;
    /// null when no pair is required.
    pub coverage_pct: Option<f64>,
    /// Pairs applied on time as a percentage of applied pairs; null when
    /// none is applied.
    pub on_time_pct: Option<f64>,
    /// Pairs not applied and past their deadline. Unlike `states.overdue`,
    /// this includes failed, rolled-back and unknown pairs past their deadline.
    pub overdue: u64,
    /// The pairs counted in `overdue`, per severity.
    pub overdue_by_severity: ReportSeverityCounts,
    /// Time to patch per severity, most severe first; only severities with
    /// applied pairs are listed.
    pub time_to_patch: Vec<ReportTimeToPatch>,
    /// Install attempts across required pairs.
    pub attempts: u64,
    /// Failed install attempts across required pairs.
    pub failures: u64,
    /// Failed attempts as a percentage of attempts; null when there were none.
    pub failure_rate_pct: Option<f64>,
    /// Systems in the report.
    pub systems: u64,
    /// Systems not heard from within the policy's staleness window, by id.
    /// Nothing is claimed about their pairs, which are `unknown`.
    pub stale_systems: Vec<String>,
    /// Catalog entries in the report.
    pub patches: u64,
    /// Systems in the report that sent an installed-package inventory.
    #[serde(default)]
    pub systems_with_inventory: u64,
    /// Installed packages, on those systems, that no logged success explains.
    #[serde(default)]
    pub unaccounted: u64,
}

/// Required pairs per state. `not_required` is never counted, so it is not listed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportStates {
    /// Not applied and still within the SLA.
    pub missing: u64,
    /// Not applied, never attempted, and past the SLA deadline.
    pub overdue: u64,
    /// Applied by the deadline, or the severity has none.
    pub applied_on_time: u64,
    /// Applied after the deadline.
    pub applied_late: u64,
    /// The latest attempt failed and the patch is not applied.
    pub failed: u64,
    /// Applied, then rolled back.
    pub rolled_back: u64,
    /// Applied, with a requested reboot not yet confirmed.
    pub pending_reboot: u64,
    /// Not applied, but covered by an active exception.
    pub excepted: u64,
    /// On a stale system, so nothing can be claimed.
    pub unknown: u64,
}

impl ReportStates {
    /// The counts with their state's wire name, in report order.
    pub fn entries(&self) -> [(&'static str, u64); 9] {
        [
            (PairState::Missing.as_str(), self.missing),
            (PairState::Overdue.as_str(), self.overdue),
            (PairState::AppliedOnTime.as_str(), self.applied_on_time),
            (PairState::AppliedLate.as_str(), self.applied_late),
            (PairState::Failed.as_str(), self.failed),
            (PairState::RolledBack.as_str(), self.rolled_back),
            (PairState::PendingReboot.as_str(), self.pending_reboot),
            (PairState::Excepted.as_str(), self.excepted),
            (PairState::Unknown.as_str(), self.unknown),
        ]
    }
}

impl From<&StateCounts> for ReportStates {
    fn from(c: &StateCounts) -> Self {
        let mut s = ReportStates::default();
        for state in PairState::ALL {
            let n = c.get(state);
            // Exhaustive on purpose: a new state must get a field here.
            match state {
                PairState::NotRequired => {}
                PairState::Missing => s.missing = n,
                PairState::Overdue => s.overdue = n,
                PairState::AppliedOnTime => s.applied_on_time = n,
                PairState::AppliedLate => s.applied_late = n,
                PairState::Failed => s.failed = n,
                PairState::RolledBack => s.rolled_back = n,
                PairState::PendingReboot => s.pending_reboot = n,
                PairState::Excepted => s.excepted = n,
                PairState::Unknown => s.unknown = n,
            }
        }
        s
    }
}

/// A count per severity, every severity listed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportSeverityCounts {
    /// Critical.
    pub critical: u64,
    /// High.
    pub high: u64,
    /// Medium.
    pub medium: u64,
    /// Low.
    pub low: u64,
    /// No known security impact.
    pub none: u64,
}

impl ReportSeverityCounts {
    /// The counts with their severity's wire name, most severe first.
    pub fn entries(&self) -> [(&'static str, u64); 5] {
        [
            (Severity::Critical.as_str(), self.critical),
            (Severity::High.as_str(), self.high),
            (Severity::Medium.as_str(), self.medium),
            (Severity::Low.as_str(), self.low),
            (Severity::None.as_str(), self.none),
        ]
    }
}

impl From<&[(Severity, u64)]> for ReportSeverityCounts {
    fn from(v: &[(Severity, u64)]) -> Self {
        let mut c = ReportSeverityCounts::default();
        for (sev, n) in v {
            let slot = match sev {
                Severity::Critical => &mut c.critical,
                Severity::High => &mut c.high,
                Severity::Medium => &mut c.medium,
                Severity::Low => &mut c.low,
                Severity::None => &mut c.none,
            };
            *slot += n;
        }
        c
    }
}

/// Time to patch for one severity, over its applied pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportTimeToPatch {
    /// The severity.
    #[schema(example = "critical")]
    pub severity: String,
    /// Applied pairs measured.
    pub count: u64,
    /// Mean days from release to the install that stands.
    pub mean_days: f64,
    /// The 90th percentile (nearest rank) of the same, in days.
    pub p90_days: f64,
}

impl From<&TimeToPatch> for ReportTimeToPatch {
    fn from(t: &TimeToPatch) -> Self {
        ReportTimeToPatch {
            severity: t.severity.as_str().to_owned(),
            count: t.count,
            mean_days: t.mean_days,
            p90_days: t.p90_days,
        }
    }
}

/// One required (system, patch) pair, as the overdue and failure lists show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportPair {
    /// The system.
    #[schema(example = "web-01")]
    pub system: String,
    /// The patch.
    #[schema(example = "KB5034441")]
    pub patch_id: String,
    /// The patch's title.
    pub title: String,
    /// The patch's severity.
    #[schema(example = "critical")]
    pub severity: String,
    /// The pair's state at the report's instant.
    #[schema(example = "failed")]
    pub state: String,
    /// Whether the pair is not applied and past its deadline.
    pub overdue: bool,
    /// When the patch was released; the SLA clock starts there.
    pub released_at: String,
    /// The SLA deadline; null when the severity has none for this system.
    pub deadline: Option<String>,
    /// The first install attempt.
    pub first_attempt_at: Option<String>,
    /// The first successful install.
    pub first_success_at: Option<String>,
    /// Install attempts so far.
    pub attempts: u64,
    /// Failed attempts so far.
    pub failures: u64,
    /// Days from release to the install that stands; null when not applied.
    pub time_to_patch_days: Option<f64>,
    /// The seq of the latest failure, if any.
    pub last_failure_seq: Option<u64>,
    /// The latest failure's detail, when the ledger has one.
    pub detail: Option<String>,
    /// The id of the exception covering the pair, if it is excepted.
    pub exception: Option<String>,
}

impl From<&PairRow> for ReportPair {
    fn from(r: &PairRow) -> Self {
        ReportPair {
            system: r.system.clone(),
            patch_id: r.patch_id.clone(),
            title: r.title.clone(),
            severity: r.severity.as_str().to_owned(),
            state: r.state.as_str().to_owned(),
            overdue: r.overdue,
            released_at: r.released_at.to_rfc3339(),
            deadline: r.deadline.map(Timestamp::to_rfc3339),
            first_attempt_at: r.first_attempt_at.map(Timestamp::to_rfc3339),
            first_success_at: r.first_success_at.map(Timestamp::to_rfc3339),
            attempts: r.attempts,
            failures: r.failures,
            time_to_patch_days: r.time_to_patch_micros.map(micros_to_days),
            last_failure_seq: r.last_failure_seq,
            detail: r.detail.clone(),
            exception: r.exception.clone(),
        }
    }
}

/// One system's line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportSystem {
    /// The system.
    #[schema(example = "web-01")]
    pub system: String,
    /// Its tags, as `key=value` strings in key order.
    #[schema(example = json!(["env=prod", "pci=in-scope"]))]
    pub tags: Vec<String>,
    /// When the ledger last heard from it; null when never.
    pub last_seen: Option<String>,
    /// Whether it is stale, so that nothing is claimed about its pairs.
    pub stale: bool,
    /// Its required pairs.
    pub required: u64,
    /// Of those, pairs applied on time or late.
    pub applied: u64,
    /// Pairs not applied and past their deadline.
    pub overdue: u64,
    /// Pairs whose latest attempt failed.
    pub failed: u64,
    /// Pairs covered by an exception.
    pub excepted: u64,
    /// Pairs whose state is unknown because the system is stale.
    pub unknown: u64,
    /// `applied` as a percentage of `required`; null when nothing is required.
    pub coverage_pct: Option<f64>,
    /// When the server recorded its current inventory; null without one.
    #[serde(default)]
    pub inventory_at: Option<String>,
    /// Installed packages no logged success explains; null without an inventory.
    #[serde(default)]
    pub unaccounted: Option<u64>,
}

impl From<&SystemRow> for ReportSystem {
    fn from(r: &SystemRow) -> Self {
        let c = &r.counts;
        ReportSystem {
            system: r.system.clone(),
            tags: r.tags.to_strings(),
            last_seen: r.last_seen.map(Timestamp::to_rfc3339),
            stale: r.stale,
            required: c.required(),
            applied: c.applied(),
            overdue: c.overdue,
            failed: c.get(PairState::Failed),
            excepted: c.get(PairState::Excepted),
            unknown: c.get(PairState::Unknown),
            coverage_pct: c.coverage_pct(),
            inventory_at: r.inventory_at.map(Timestamp::to_rfc3339),
            unaccounted: r.unaccounted,
        }
    }
}

/// One patch's line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportPatch {
    /// The patch.
    #[schema(example = "KB5034441")]
    pub patch_id: String,
    /// Its title.
    pub title: String,
    /// Its severity.
    #[schema(example = "critical")]
    pub severity: String,
    /// When it was released.
    pub released_at: String,
    /// Its required pairs.
    pub required: u64,
    /// Of those, pairs applied on time or late.
    pub applied: u64,
    /// Pairs not applied and past their deadline.
    pub overdue: u64,
    /// Pairs whose latest attempt failed.
    pub failed: u64,
    /// Pairs covered by an exception.
    pub excepted: u64,
    /// Pairs on stale systems.
    pub unknown: u64,
    /// `applied` as a percentage of `required`; null when nothing is required.
    pub coverage_pct: Option<f64>,
    /// Mean days from release to install over its applied pairs; null when none is applied.
    pub mean_time_to_patch_days: Option<f64>,
}

impl From<&PatchRow> for ReportPatch {
    fn from(r: &PatchRow) -> Self {
        let c = &r.counts;
        ReportPatch {
            patch_id: r.patch_id.clone(),
            title: r.title.clone(),
            severity: r.severity.as_str().to_owned(),
            released_at: r.released_at.to_rfc3339(),
            required: c.required(),
            applied: c.applied(),
            overdue: c.overdue,
            failed: c.get(PairState::Failed),
            excepted: c.get(PairState::Excepted),
            unknown: c.get(PairState::Unknown),
            coverage_pct: c.coverage_pct(),
            mean_time_to_patch_days: r.mean_time_to_patch_days,
        }
    }
}

/// One point of the coverage curve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportCoveragePoint {
    /// The instant.
    pub at: String,
    /// Pairs required then: patches released by then.
    pub required: u64,
    /// Of those, pairs whose standing install was in place by then.
    pub covered: u64,
}

impl From<&CoveragePoint> for ReportCoveragePoint {
    fn from(p: &CoveragePoint) -> Self {
        ReportCoveragePoint {
            at: p.at.to_rfc3339(),
            required: p.required,
            covered: p.covered,
        }
    }
}

/// One bucket of the time-to-patch histogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportHistogramBucket {
    /// The bucket's upper bound in whole days, inclusive; null for the last,
    /// open bucket (longer than the previous bound).
    pub max_days: Option<u32>,
    /// Applied pairs in the bucket.
    pub count: u64,
}

impl From<&CheckpointRef> for ReportCheckpoint {
    fn from(c: &CheckpointRef) -> Self {
        ReportCheckpoint {
            size: c.size,
            root: c.root_hex.clone(),
        }
    }
}

impl From<&ReportFilter> for ReportFilterOut {
    fn from(f: &ReportFilter) -> Self {
        ReportFilterOut {
            tags: f.tags.iter().map(ToString::to_string).collect(),
            severities: f.severities.iter().map(|s| s.as_str().to_owned()).collect(),
            system: f.system.clone(),
            patch_id: f.patch_id.clone(),
        }
    }
}

impl From<&Report> for ReportOut {
    fn from(r: &Report) -> Self {
        let s = &r.summary;
        ReportOut {
            at: r.at.to_rfc3339(),
            as_of: r.as_of,
            checkpoint: r.checkpoint.as_ref().map(ReportCheckpoint::from),
            filter: ReportFilterOut::from(&r.filter),
            summary: ReportSummary {
                pairs_required: s.counts.required(),
                states: ReportStates::from(&s.counts),
                coverage_pct: s.counts.coverage_pct(),
                on_time_pct: s.counts.on_time_pct(),
                overdue: s.counts.overdue,
                overdue_by_severity: ReportSeverityCounts::from(s.overdue_by_severity.as_slice()),
                time_to_patch: s
                    .time_to_patch
                    .iter()
                    .map(ReportTimeToPatch::from)
                    .collect(),
                attempts: s.attempts,
                failures: s.failures,
                failure_rate_pct: s.failure_rate_pct(),
                systems: s.systems,
                stale_systems: s.stale_systems.clone(),
                patches: s.patches,
                systems_with_inventory: s.systems_with_inventory,
                unaccounted: s.unaccounted,
            },
            overdue: r.overdue.iter().map(ReportPair::from).collect(),
            failures: r.failures.iter().map(ReportPair::from).collect(),
            pairs: r.pairs.iter().map(ReportPair::from).collect(),
            systems: r.systems.iter().map(ReportSystem::from).collect(),
            patches: r.patches.iter().map(ReportPatch::from).collect(),
            coverage: r.coverage.iter().map(ReportCoveragePoint::from).collect(),
            time_to_patch_histogram: r
                .time_to_patch_histogram
                .iter()
                .map(|&(max, count)| ReportHistogramBucket {
                    max_days: (max != u32::MAX).then_some(max),
                    count,
                })
                .collect(),
            unaccounted: r
                .unaccounted
                .iter()
                .map(|u| ReportUnaccounted {
                    system: u.system.clone(),
                    package: u.package.clone(),
                    version: u.version.clone(),
                    arch: u.arch.clone(),
                })
                .collect(),
        }
    }
}

fn micros_to_days(micros: i64) -> f64 {
    micros as f64 / DAY_MICROS as f64
}

// ---------------------------------------------------------------- CSV

/// The columns of [`to_csv`].
pub const PAIRS_CSV_COLUMNS: [&str; 16] = [
    "kind",
    "system",
    "patch_id",
    "title",
    "severity",
    "state",
    "overdue",
    "released_at",
    "deadline",
    "first_attempt_at",
    "first_success_at",
    "attempts",
    "failures",
    "time_to_patch_days",
    "exception",
    "detail",
];

/// The columns of [`systems_csv`].
pub const SYSTEMS_CSV_COLUMNS: [&str; 13] = [
    "system",
    "tags",
    "last_seen",
    "stale",
    "required",
    "applied",
    "overdue",
    "failed",
    "excepted",
    "unknown",
    "coverage_pct",
    "inventory_at",
    "unaccounted",
];

/// The columns of [`patches_csv`].
pub const PATCHES_CSV_COLUMNS: [&str; 12] = [
    "patch_id",
    "title",
    "severity",
    "released_at",
    "required",
    "applied",
    "overdue",
    "failed",
    "excepted",
    "unknown",
    "coverage_pct",
    "mean_time_to_patch_days",
];

/// The pairs that need attention, as one CSV table with a header line
/// ([`PAIRS_CSV_COLUMNS`]): the overdue list (`kind` = `overdue`, oldest
/// deadline first) then the failures list (`kind` = `failure`, most recent
/// first). A failed pair past its deadline is in both lists, so it has a row
/// of each kind.
///
/// Null values are empty cells, booleans are `true`/`false`, days are full
/// precision. A CSV file holds one table, so the per-system and per-patch
/// tables are separate: [`systems_csv`] and [`patches_csv`]. The headline
/// numbers, the coverage curve and the histogram are in the JSON and HTML
/// forms only.
pub fn to_csv(report: &ReportOut) -> Vec<u8> {
    let rows = (report.overdue.iter().map(|p| ("overdue", p)))
        .chain(report.failures.iter().map(|p| ("failure", p)))
        .map(|(kind, p)| pair_record(kind, p));
    csv_table(PAIRS_CSV_COLUMNS, rows)
}

/// Every required pair, one row each ([`PAIRS_CSV_COLUMNS`], kind `pair`),
/// with a header line; the report must have been computed with its pairs.
pub fn pairs_csv(report: &ReportOut) -> Vec<u8> {
    let rows = report.pairs.iter().map(|p| pair_record("pair", p));
    csv_table(PAIRS_CSV_COLUMNS, rows)
}

fn pair_record(kind: &str, p: &ReportPair) -> [String; 16] {
    [
        kind.to_owned(),
        p.system.clone(),
        p.patch_id.clone(),
        p.title.clone(),
        p.severity.clone(),
        p.state.clone(),
        p.overdue.to_string(),
        p.released_at.clone(),
        opt(&p.deadline),
        opt(&p.first_attempt_at),
        opt(&p.first_success_at),
        p.attempts.to_string(),
        p.failures.to_string(),
        num(p.time_to_patch_days),
        opt(&p.exception),
        opt(&p.detail),
    ]
}

/// One row per system ([`SYSTEMS_CSV_COLUMNS`]), with a header line. `tags`
/// holds the system's `key=value` tags joined by commas, as filters take them.
pub fn systems_csv(report: &ReportOut) -> Vec<u8> {
    let rows = report.systems.iter().map(|s| {
        [
            s.system.clone(),
            s.tags.join(","),
            opt(&s.last_seen),
            s.stale.to_string(),
            s.required.to_string(),
            s.applied.to_string(),
            s.overdue.to_string(),
            s.failed.to_string(),
            s.excepted.to_string(),
            s.unknown.to_string(),
            num(s.coverage_pct),
            opt(&s.inventory_at),
            s.unaccounted.map(|n| n.to_string()).unwrap_or_default(),
        ]
    });
    csv_table(SYSTEMS_CSV_COLUMNS, rows)
}

/// One row per patch ([`PATCHES_CSV_COLUMNS`]), with a header line, most
/// severe first.
pub fn patches_csv(report: &ReportOut) -> Vec<u8> {
    let rows = report.patches.iter().map(|p| {
        [
            p.patch_id.clone(),
            p.title.clone(),
            p.severity.clone(),
            p.released_at.clone(),
            p.required.to_string(),
            p.applied.to_string(),
            p.overdue.to_string(),
            p.failed.to_string(),
            p.excepted.to_string(),
            p.unknown.to_string(),
            num(p.coverage_pct),
            num(p.mean_time_to_patch_days),
        ]
    });
    csv_table(PATCHES_CSV_COLUMNS, rows)
}

fn csv_table<const N: usize>(
    columns: [&str; N],
    rows: impl Iterator<Item = [String; N]>,
) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.write_record(columns);
    for row in rows {
        let _ = w.write_record(row.iter().map(|c| defuse(c).into_owned()));
    }
    w.into_inner().unwrap_or_default()
}

/// Keeps a spreadsheet from running a cell as a formula: system ids,
/// titles and details come from agents and advisories, and a cell that
/// starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a
/// leading `'` (OWASP's advice for CSV injection). Numbers this module
/// writes are never negative, so no number is changed.
fn defuse(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn num(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

// ---------------------------------------------------------------- HTML

/// Escapes text for HTML: safe in element content and in quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The longest failure detail the HTML shows, in characters; the JSON has it in full.
pub const HTML_DETAIL_MAX_CHARS: usize = 2000;

/// Writes into a `String`, which cannot fail.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        let _ = write!($dst, $($arg)*);
    }};
}

const CSS: &str = r#"
:root { --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --soft: #f6f8fa;
  --bad: #b42318; --warn: #b54708; --good: #1a7f37; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: var(--fg); margin: 0 auto; padding: 24px; max-width: 1200px; line-height: 1.45; font-size: 14px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 16px 0 6px; }
p { margin: 6px 0; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px;
  background: var(--soft); padding: 1px 4px; border-radius: 3px; overflow-wrap: anywhere; }
.meta { color: var(--muted); }
nav { margin: 12px 0; font-size: 13px; }
nav a { margin-right: 12px; color: var(--accent); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 26px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .sub { color: var(--muted); font-size: 12px; }
.card.alert .value { color: var(--bad); }
.side { display: flex; flex-wrap: wrap; gap: 32px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td { overflow-wrap: anywhere; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.detail td { border-bottom: 1px solid var(--line); padding-top: 0; }
pre { margin: 4px 0; padding: 6px 8px; background: var(--soft); border-radius: 4px;
  white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px; max-height: 24em; overflow: auto; }
.note { color: var(--muted); font-size: 12px; font-style: italic; }
.sev { font-weight: 600; }
.sev-critical { color: var(--bad); }
.sev-high { color: var(--warn); }
.bad { color: var(--bad); font-weight: 600; }
.empty { color: var(--muted); }
figure { margin: 8px 0 16px; }
figcaption { color: var(--muted); font-size: 12px; }
svg.chart { width: 100%; max-width: 760px; height: auto; display: block; }
svg.chart text { font-size: 11px; fill: var(--muted); font-family: inherit; }
svg.chart .grid { stroke: var(--line); stroke-width: 1; }
svg.chart .axis { stroke: var(--muted); stroke-width: 1; }
svg.chart .line { fill: none; stroke: var(--accent); stroke-width: 2; }
svg.chart .dot { fill: var(--accent); }
svg.chart .bar { fill: var(--accent); }
svg.chart .count { fill: var(--fg); }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 8px; }
@page { margin: 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 9pt; color: #000; }
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .card, figure, tr, pre { break-inside: avoid; page-break-inside: avoid; }
  thead { display: table-header-group; }
  pre { max-height: none; overflow: visible; }
  a { color: inherit; text-decoration: none; }
  .card, th, td, pre, code { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"#;

/// Renders a report as one self-contained HTML5 page an auditor can open
/// offline: inline CSS, charts as inline SVG, no script and no external
/// resource of any kind (a Content-Security-Policy forbids them too). Every
/// piece of text from the report is escaped with [`escape`]; failure details
/// longer than [`HTML_DETAIL_MAX_CHARS`] are cut, with a note.
pub fn to_html(report: &ReportOut) -> String {
    let r = report;
    let s = &r.summary;
    let mut h = String::with_capacity(64 * 1024 + 1024 * (r.systems.len() + r.patches.len()));
    w!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"patchaudit\">\n\
         <title>patchaudit compliance report — {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        escape(&r.at)
    );

    // Header: the instant.
    h.push_str("<header>\n<h1>patchaudit compliance report</h1>\n");
    if r.as_of {
        w!(
            h,
            "<p class=\"meta\">The fleet as of {} (an instant asked for with <code>--as-of</code>).</p>\n",
            time(&r.at)
        );
    } else {
        w!(
            h,
            "<p class=\"meta\">The fleet at {}, when the report was requested.</p>\n",
            time(&r.at)
        );
    }
    h.push_str(
        "</header>\n<nav><a href=\"#provenance\">Provenance</a><a href=\"#summary\">Summary</a>\
         <a href=\"#charts\">Charts</a><a href=\"#overdue\">Overdue</a><a href=\"#failures\">Failures</a>\
         <a href=\"#systems\">Systems</a><a href=\"#patches\">Patches</a></nav>\n",
    );

    // Provenance: checkpoint and filter.
    h.push_str("<section id=\"provenance\">\n<h2>Provenance</h2>\n");
    match &r.checkpoint {
        Some(c) => {
            w!(
                h,
                "<table class=\"kv\"><tbody>\
                 <tr><th>Ledger checkpoint size</th><td class=\"num\">{}</td></tr>\
                 <tr><th>Ledger root hash</th><td><code>{}</code></td></tr></tbody></table>\n",
                c.size,
                escape(&c.root)
            );
            w!(
                h,
                "<p>This report was computed from the first {} events of the ledger \
                 (the events with seq below {}), whose Merkle tree has the root above. \
                 It can be derived again: <code>patchaudit report --as-of {} --checkpoint {}</code>, \
                 with the same filter, computes the same report from the same events. \
                 <code>patchaudit verify</code> checks that the ledger is intact and \
                 consistent with its signed checkpoints, so that the numbers here rest on \
                 an untampered history.</p>\n",
                c.size,
                c.size,
                escape(&r.at),
                c.size
            );
        }
        None => {
            w!(
                h,
                "<p>This report names no ledger checkpoint, so it cannot be tied to a \
                 verified state of the ledger. It can still be computed again with \
                 <code>patchaudit report --as-of {}</code>; run <code>patchaudit verify</code> \
                 to check the ledger itself.</p>\n",
                escape(&r.at)
            );
        }
    }
    filter_html(&mut h, &r.filter);
    h.push_str("</section>\n");

    // Summary cards.
    let applied = s.states.applied_on_time + s.states.applied_late;
    h.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"cards\">\n");
    card(
        &mut h,
        "Pairs required",
        &s.pairs_required.to_string(),
        &format!("{} systems, {} patches", s.systems, s.patches),
        false,
    );
    card(
        &mut h,
        "Coverage",
        &pct(s.coverage_pct),
        &format!("{applied} of {} applied", s.pairs_required),
        false,
    );
    card(
        &mut h,
        "On time",
        &pct(s.on_time_pct),
        &format!("{} of {applied} applied pairs", s.states.applied_on_time),
        false,
    );
    card(
        &mut h,
        "Overdue",
        &s.overdue.to_string(),
        "not applied, past the deadline",
        s.overdue > 0,
    );
    card(
        &mut h,
        "Failure rate",
        &pct(s.failure_rate_pct),
        &format!("{} of {} attempts failed", s.failures, s.attempts),
        false,
    );
    card(
        &mut h,
        "Stale systems",
        &s.stale_systems.len().to_string(),
        "not heard from recently",
        !s.stale_systems.is_empty(),
    );
    h.push_str("</div>\n");
    if !s.stale_systems.is_empty() {
        w!(
            h,
            "<p>Stale systems, about which nothing is claimed (their pairs are <code>unknown</code>): {}.</p>\n",
            s.stale_systems
                .iter()
                .map(|id| format!("<code>{}</code>", escape(id)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // States, overdue by severity, time to patch.
    h.push_str("<div class=\"side\">\n<div>\n<h3>Required pairs by state</h3>\n");
    table(
        &mut h,
        &[("State", false), ("Pairs", true)],
        s.states
            .entries()
            .iter()
            .map(|(name, n)| Row::new(vec![escape(name), n.to_string()]))
            .collect(),
        "No required pairs.",
    );
    h.push_str("</div>\n<div>\n<h3>Overdue pairs by severity</h3>\n");
    let mut sev_rows: Vec<Row> = s
        .overdue_by_severity
        .entries()
        .iter()
        .map(|(sev, n)| Row::new(vec![severity(sev), count_cell(*n)]))
        .collect();
    sev_rows.push(Row::new(vec![
        "<strong>Total</strong>".to_owned(),
        count_cell(s.overdue),
    ]));
    table(
        &mut h,
        &[("Severity", false), ("Overdue", true)],
        sev_rows,
        "",
    );
    h.push_str("</div>\n<div>\n<h3>Time to patch</h3>\n");
    table(
        &mut h,
        &[
            ("Severity", false),
            ("Applied pairs", true),
            ("Mean", true),
            ("90th percentile", true),
        ],
        s.time_to_patch
            .iter()
            .map(|t| {
                Row::new(vec![
                    severity(&t.severity),
                    t.count.to_string(),
                    days(Some(t.mean_days)),
                    days(Some(t.p90_days)),
                ])
            })
            .collect(),
        "No applied pairs yet, so no time to patch.",
    );
    h.push_str("<p class=\"note\">From release to the install that stands.</p>\n</div>\n</div>\n</section>\n");

    // Charts.
    h.push_str("<section id=\"charts\">\n<h2>Charts</h2>\n<h3>Coverage over time</h3>\n");
    coverage_chart(&mut h, &r.coverage);
    h.push_str("<h3>Time to patch distribution</h3>\n");
    histogram_chart(&mut h, &r.time_to_patch_histogram);
    h.push_str("</section>\n");

    // Overdue list.
    w!(
        h,
        "<section id=\"overdue\">\n<h2>Overdue pairs ({})</h2>\n\
         <p class=\"meta\">Not applied and past the SLA deadline, oldest deadline first.</p>\n",
        r.overdue.len()
    );
    table(
        &mut h,
        &[
            ("System", false),
            ("Patch", false),
            ("Title", false),
            ("Severity", false),
            ("State", false),
            ("Released", false),
            ("Deadline", false),
            ("Past deadline by", true),
            ("Attempts", true),
            ("Failures", true),
        ],
        r.overdue
            .iter()
            .map(|p| {
                let late = p.deadline.as_deref().and_then(|d| days_between(d, &r.at));
                Row::new(vec![
                    format!("<code>{}</code>", escape(&p.system)),
                    format!("<code>{}</code>", escape(&p.patch_id)),
                    escape(&p.title),
                    severity(&p.severity),
                    escape(&p.state),
                    time(&p.released_at),
                    opt_time(p.deadline.as_deref()),
                    days(late),
                    p.attempts.to_string(),
                    p.failures.to_string(),
                ])
            })
            .collect(),
        "No pair is overdue.",
    );
    h.push_str("</section>\n");

    // Failures list.
    w!(
        h,
        "<section id=\"failures\">\n<h2>Failed pairs ({})</h2>\n\
         <p class=\"meta\">The latest attempt failed and the patch is not applied; most recent failure first.</p>\n",
        r.failures.len()
    );
    let fail_cols = [
        ("System", false),
        ("Patch", false),
        ("Title", false),
        ("Severity", false),
        ("Overdue", false),
        ("First attempt", false),
        ("Attempts", true),
        ("Failures", true),
        ("Failure seq", true),
    ];
    table(
        &mut h,
        &fail_cols,
        r.failures
            .iter()
            .map(|p| Row {
                cells: vec![
                    format!("<code>{}</code>", escape(&p.system)),
                    format!("<code>{}</code>", escape(&p.patch_id)),
                    escape(&p.title),
                    severity(&p.severity),
                    if p.overdue {
                        "<span class=\"bad\">yes</span>".to_owned()
                    } else {
                        "no".to_owned()
                    },
                    opt_time(p.first_attempt_at.as_deref()),
                    p.attempts.to_string(),
                    p.failures.to_string(),
                    p.last_failure_seq
                        .map_or_else(|| "n/a".to_owned(), |q| q.to_string()),
                ],
                detail: Some(detail_html(p.detail.as_deref())),
            })
            .collect(),
        "No pair has failed.",
    );
    h.push_str("</section>\n");

    // Systems.
    w!(
        h,
        "<section id=\"systems\">\n<h2>Systems ({})</h2>\n",
        r.systems.len()
    );
    table(
        &mut h,
        &[
            ("System", false),
            ("Tags", false),
            ("Last seen", false),
            ("Stale", false),
            ("Required", true),
            ("Applied", true),
            ("Overdue", true),
            ("Failed", true),
            ("Excepted", true),
            ("Unknown", true),
            ("Coverage", true),
        ],
        r.systems
            .iter()
            .map(|x| {
                Row::new(vec![
                    format!("<code>{}</code>", escape(&x.system)),
                    x.tags
                        .iter()
                        .map(|t| format!("<code>{}</code>", escape(t)))
                        .collect::<Vec<_>>()
                        .join(" "),
                    opt_time(x.last_seen.as_deref()),
                    if x.stale {
                        "<span class=\"bad\">stale</span>".to_owned()
                    } else {
                        "no".to_owned()
                    },
                    x.required.to_string(),
                    x.applied.to_string(),
                    count_cell(x.overdue),
                    count_cell(x.failed),
                    x.excepted.to_string(),
                    x.unknown.to_string(),
                    pct(x.coverage_pct),
                ])
            })
            .collect(),
        "No system is in the report.",
    );
    h.push_str("</section>\n");

    // Unaccounted changes, when some system sent an inventory.
    if s.systems_with_inventory > 0 {
        w!(
            h,
            "<section id=\"unaccounted\">\n<h2>Unaccounted changes ({})</h2>\n\
             <p>Installed packages, from the inventories of {} systems, that no logged \
             success explains: no event on that system recorded that version.{}</p>\n",
            s.unaccounted,
            s.systems_with_inventory,
            if (r.unaccounted.len() as u64) < s.unaccounted {
                format!(" The first {} are listed.", r.unaccounted.len())
            } else {
                String::new()
            }
        );
        table(
            &mut h,
            &[
                ("System", false),
                ("Package", false),
                ("Version", false),
                ("Arch", false),
            ],
            r.unaccounted
                .iter()
                .map(|u| {
                    Row::new(vec![
                        format!("<code>{}</code>", escape(&u.system)),
                        format!("<code>{}</code>", escape(&u.package)),
                        format!("<code>{}</code>", escape(&u.version)),
                        escape(u.arch.as_deref().unwrap_or("")),
                    ])
                })
                .collect(),
            "Every installed package is explained by a logged event.",
        );
        h.push_str("</section>\n");
    }

    // Patches.
    w!(
        h,
        "<section id=\"patches\">\n<h2>Patches ({})</h2>\n",
        r.patches.len()
    );
    table(
        &mut h,
        &[
            ("Patch", false),
            ("Title", false),
            ("Severity", false),
            ("Released", false),
            ("Required", true),
            ("Applied", true),
            ("Overdue", true),
            ("Failed", true),
            ("Excepted", true),
            ("Unknown", true),
            ("Coverage", true),
            ("Mean time to patch", true),
        ],
        r.patches
            .iter()
            .map(|p| {
                Row::new(vec![
                    format!("<code>{}</code>", escape(&p.patch_id)),
                    escape(&p.title),
                    severity(&p.severity),
                    time(&p.released_at),
                    p.required.to_string(),
                    p.applied.to_string(),
                    count_cell(p.overdue),
                    count_cell(p.failed),
                    p.excepted.to_string(),
                    p.unknown.to_string(),
                    pct(p.coverage_pct),
                    days(p.mean_time_to_patch_days),
                ])
            })
            .collect(),
        "No patch is in the report.",
    );
    h.push_str("</section>\n");

    w!(
        h,
        "<footer>Generated by patchaudit. Percentages and days are rounded to one decimal; \
         the JSON form of this report holds the exact values and every failure detail in full. \
         Times are UTC.</footer>\n</body>\n</html>\n"
    );
    h
}

fn filter_html(h: &mut String, f: &ReportFilterOut) {
    if f.tags.is_empty() && f.severities.is_empty() && f.system.is_none() && f.patch_id.is_none() {
        h.push_str("<p><strong>Filter:</strong> none; the report covers every system and every catalog entry.</p>\n");
        return;
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "any".to_owned()
        } else {
            v.iter()
                .map(|x| format!("<code>{}</code>", escape(x)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let one = |v: &Option<String>| {
        v.as_deref().map_or_else(
            || "any".to_owned(),
            |x| format!("<code>{}</code>", escape(x)),
        )
    };
    w!(
        h,
        "<h3>Filter</h3>\n<table class=\"kv\"><tbody>\
         <tr><th>Systems with all tags</th><td>{}</td></tr>\
         <tr><th>Severities</th><td>{}</td></tr>\
         <tr><th>System</th><td>{}</td></tr>\
         <tr><th>Patch</th><td>{}</td></tr></tbody></table>\n",
        list(&f.tags),
        list(&f.severities),
        one(&f.system),
        one(&f.patch_id)
    );
}

fn card(h: &mut String, label: &str, value: &str, sub: &str, alert: bool) {
    w!(
        h,
        "<div class=\"card{}\"><div class=\"label\">{}</div><div class=\"value\">{}</div>\
         <div class=\"sub\">{}</div></div>\n",
        if alert { " alert" } else { "" },
        escape(label),
        escape(value),
        escape(sub)
    );
}

/// One table row of HTML cells, with an optional full-width row below it.
struct Row {
    cells: Vec<String>,
    detail: Option<String>,
}

impl Row {
    fn new(cells: Vec<String>) -> Row {
        Row {
            cells,
            detail: None,
        }
    }
}

/// Writes a table. Cells are HTML already escaped; `empty` is shown instead
/// of a table without rows when it is not empty.
fn table(h: &mut String, cols: &[(&str, bool)], rows: Vec<Row>, empty: &str) {
    if rows.is_empty() && !empty.is_empty() {
        w!(h, "<p class=\"empty\">{}</p>\n", escape(empty));
        return;
    }
    let class = |num: bool| if num { " class=\"num\"" } else { "" };
    h.push_str("<table>\n<thead><tr>");
    for (name, num) in cols {
        w!(h, "<th{}>{}</th>", class(*num), escape(name));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        h.push_str("<tr>");
        for (i, cell) in row.cells.iter().enumerate() {
            let num = cols.get(i).is_some_and(|c| c.1);
            w!(h, "<td{}>{}</td>", class(num), cell);
        }
        h.push_str("</tr>\n");
        if let Some(d) = row.detail {
            w!(
                h,
                "<tr class=\"detail\"><td colspan=\"{}\">{}</td></tr>\n",
                cols.len(),
                d
            );
        }
    }
    h.push_str("</tbody>\n</table>\n");
}

fn detail_html(detail: Option<&str>) -> String {
    let Some(d) = detail else {
        return "<span class=\"note\">No failure detail recorded.</span>".to_owned();
    };
    let total = d.chars().count();
    if total <= HTML_DETAIL_MAX_CHARS {
        return format!("<pre>{}</pre>", escape(d));
    }
    let cut: String = d.chars().take(HTML_DETAIL_MAX_CHARS).collect();
    format!(
        "<pre>{}…</pre><p class=\"note\">… truncated: {} more characters not shown \
         (the first {} of {}); the JSON report holds the full detail.</p>",
        escape(&cut),
        total - HTML_DETAIL_MAX_CHARS,
        HTML_DETAIL_MAX_CHARS,
        total
    )
}

fn severity(s: &str) -> String {
    let e = escape(s);
    format!("<span class=\"sev sev-{e}\">{e}</span>")
}

fn count_cell(n: u64) -> String {
    if n > 0 {
        format!("<span class=\"bad\">{n}</span>")
    } else {
        "0".to_owned()
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}%"))
}

fn days(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1} d"))
}

/// A timestamp as a `<time>` element: shortened to the second for reading,
/// exact in its `datetime` attribute.
fn time(s: &str) -> String {
    let b = s.as_bytes();
    let short = if s.is_ascii() && b.len() >= 20 && b[10] == b'T' && s.ends_with('Z') {
        format!("{} {} UTC", &s[..10], &s[11..19])
    } else {
        s.to_owned()
    };
    format!("<time datetime=\"{}\">{}</time>", escape(s), escape(&short))
}

fn opt_time(s: Option<&str>) -> String {
    s.map_or_else(|| "n/a".to_owned(), time)
}

fn micros(s: &str) -> Option<i64> {
    Timestamp::parse_rfc3339(s).ok().map(Timestamp::as_micros)
}

/// Days from `from` to `to`, when both parse.
fn days_between(from: &str, to: &str) -> Option<f64> {
    Some(micros_to_days(micros(to)? - micros(from)?))
}

/// The date part of a timestamp, for axis labels.
fn date(s: &str) -> String {
    escape(s.get(..10).unwrap_or(s))
}

// Chart geometry, in SVG user units.
const CW: f64 = 720.0;
const CH: f64 = 260.0;
const ML: f64 = 48.0;
const MR: f64 = 16.0;
const MT: f64 = 16.0;
const MB: f64 = 40.0;

fn svg_open(h: &mut String, id: &str, title: &str, desc: &str) {
    w!(
        h,
        "<figure>\n<svg class=\"chart\" viewBox=\"0 0 {CW} {CH}\" role=\"img\" \
         aria-labelledby=\"{id}-title {id}-desc\">\n<title id=\"{id}-title\">{}</title>\n\
         <desc id=\"{id}-desc\">{}</desc>\n",
        escape(title),
        escape(desc)
    );
}

fn no_data(h: &mut String, message: &str) {
    w!(
        h,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
        CW / 2.0,
        CH / 2.0,
        escape(message)
    );
}

/// The coverage curve: covered pairs as a percentage of required pairs over time.
fn coverage_chart(h: &mut String, points: &[ReportCoveragePoint]) {
    let (pw, ph) = (CW - ML - MR, CH - MT - MB);
    svg_open(
        h,
        "coverage",
        "Coverage over time",
        "Covered pairs as a percentage of the pairs required at each instant.",
    );
    for v in [0u32, 25, 50, 75, 100] {
        let y = MT + ph * (1.0 - f64::from(v) / 100.0);
        w!(
            h,
            "<line class=\"grid\" x1=\"{ML:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v}%</text>\n",
            ML + pw,
            ML - 6.0,
            y + 4.0
        );
    }
    w!(
        h,
        "<line class=\"axis\" x1=\"{ML:.1}\" y1=\"{MT:.1}\" x2=\"{ML:.1}\" y2=\"{:.1}\"/>\
         <line class=\"axis\" x1=\"{ML:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>\n",
        MT + ph,
        MT + ph,
        ML + pw,
        MT + ph
    );
    // Position by time when every instant parses, by index otherwise.
    let times: Option<Vec<i64>> = points.iter().map(|p| micros(&p.at)).collect();
    let xs: Vec<f64> = match times {
        Some(t) if t.len() > 1 => {
            let (t0, t1) = (t[0], t[t.len() - 1]);
            let span = (t1 - t0).max(1) as f64;
            t.iter().map(|v| (v - t0) as f64 / span).collect()
        }
        _ => {
            let n = points.len().saturating_sub(1).max(1) as f64;
            (0..points.len()).map(|i| i as f64 / n).collect()
        }
    };
    let plotted: Vec<(f64, f64, &ReportCoveragePoint)> = points
        .iter()
        .zip(&xs)
        .filter(|(p, _)| p.required > 0)
        .map(|(p, x)| {
            let share = (p.covered as f64 / p.required as f64).clamp(0.0, 1.0);
            (ML + pw * x, MT + ph * (1.0 - share), p)
        })
        .collect();
    if plotted.is_empty() {
        no_data(h, "No required pairs: nothing to chart.");
    } else {
        if let (Some(first), Some(last)) = (points.first(), points.last()) {
            w!(
                h,
                "<text x=\"{ML:.1}\" y=\"{:.1}\" text-anchor=\"start\">{}</text>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                MT + ph + 18.0,
                date(&first.at),
                ML + pw,
                MT + ph + 18.0,
                date(&last.at)
            );
            if points.len() > 2 {
                let mid = &points[points.len() / 2];
                let x = ML + pw * xs[points.len() / 2];
                w!(
                    h,
                    "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                    MT + ph + 18.0,
                    date(&mid.at)
                );
            }
        }
        h.push_str("<polyline class=\"line\" points=\"");
        for (i, (x, y, _)) in plotted.iter().enumerate() {
            w!(h, "{}{x:.1},{y:.1}", if i == 0 { "" } else { " " });
        }
        h.push_str("\"/>\n");
        for (x, y, p) in &plotted {
            w!(
                h,
                "<circle class=\"dot\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\"><title>{}: {} of {} covered ({})</title></circle>\n",
                escape(&p.at),
                p.covered,
                p.required,
                pct(Some(p.covered as f64 * 100.0 / p.required as f64))
            );
        }
    }
    h.push_str("</svg>\n");
    match points.last() {
        Some(p) => w!(
            h,
            "<figcaption>Share of required pairs whose standing install was in place, from {} to {}. \
             At the end: {} of {} covered ({}). An install later rolled back does not count.</figcaption>\n",
            time(&points[0].at),
            time(&p.at),
            p.covered,
            p.required,
            pct((p.required > 0).then(|| p.covered as f64 * 100.0 / p.required as f64))
        ),
        None => h.push_str("<figcaption>No patch in the report was released yet.</figcaption>\n"),
    }
    h.push_str("</figure>\n");
}

/// The time-to-patch histogram as bars, one per bucket.
fn histogram_chart(h: &mut String, buckets: &[ReportHistogramBucket]) {
    let (pw, ph) = (CW - ML - MR, CH - MT - MB);
    svg_open(
        h,
        "ttp",
        "Time to patch distribution",
        "Applied pairs per bucket of days from release to install.",
    );
    w!(
        h,
        "<line class=\"axis\" x1=\"{ML:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>\n",
        MT + ph,
        ML + pw,
        MT + ph
    );
    let total: u64 = buckets.iter().map(|b| b.count).sum();
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let band = pw / buckets.len().max(1) as f64;
    let mut previous: Option<u32> = None;
    for (i, b) in buckets.iter().enumerate() {
        let label = match (b.max_days, previous) {
            (Some(d), _) => format!("≤{d}d"),
            (None, Some(p)) => format!(">{p}d"),
            (None, None) => "all".to_owned(),
        };
        previous = b.max_days.or(previous);
        let bh = ph * b.count as f64 / max;
        let x = ML + band * i as f64 + band * 0.15;
        let cx = ML + band * (i as f64 + 0.5);
        w!(
            h,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\">\
             <title>{}: {} applied pairs</title></rect>\
             <text class=\"count\" x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            MT + ph - bh,
            band * 0.7,
            escape(&label),
            b.count,
            MT + ph - bh - 4.0,
            b.count,
            MT + ph + 18.0,
            escape(&label)
        );
    }
    if total == 0 {
        no_data(h, "No applied pairs yet.");
    }
    h.push_str("</svg>\n");
    w!(
        h,
        "<figcaption>{total} applied pairs by days from release to the install that stands \
         (whole days, upper bound inclusive).</figcaption>\n</figure>\n"
    );
}
