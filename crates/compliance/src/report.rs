//! The compliance report over a fleet, computed from a snapshot of the
//! catalog, the systems, the policy, the exceptions and the pair facts.
//!
//! [`Report::compute`] is pure: the same [`ReportInput`] always gives the
//! same report, which is what lets an auditor derive a report again from
//! the ledger checkpoint it names.

use crate::catalog::{CatalogEntry, Severity};
use crate::exception::Exception;
use crate::facts::PairFacts;
use crate::inventory::Inventory;
use crate::policy::SlaPolicy;
use crate::state::{evaluate_prepared, PairState};
use crate::tags::{Tag, Tags};
use crate::DAY_MICROS;
use patchaudit_domain::Timestamp;
use std::collections::{BTreeMap, HashMap};

/// A system as the report sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemView {
    /// The system's id.
    pub id: String,
    /// Its tags.
    pub tags: Tags,
    /// When the ledger first heard of it.
    pub first_seen: Option<Timestamp>,
    /// When the ledger last heard of it.
    pub last_seen: Option<Timestamp>,
}

/// The ledger checkpoint a report was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRef {
    /// The tree size: the report covers events with seq below it.
    pub size: u64,
    /// The tree's root hash, as lowercase hex.
    pub root_hex: String,
}

/// Everything a report is computed from.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// The instant the report describes.
    pub at: Timestamp,
    /// Whether `at` was asked for (`--as-of`) rather than "now".
    pub as_of: bool,
    /// The checkpoint of the events the facts were folded from.
    pub checkpoint: Option<CheckpointRef>,
    /// The catalog as it stood at `at`.
    pub catalog: Vec<CatalogEntry>,
    /// Every known system, with its tags as they stood at `at`.
    pub systems: Vec<SystemView>,
    /// The SLA policy as it stood at `at`.
    pub policy: SlaPolicy,
    /// Every exception as it stood at `at`, expired ones included.
    pub exceptions: Vec<Exception>,
    /// Pair facts, by patch id then system.
    pub facts: HashMap<String, HashMap<String, PairFacts>>,
    /// The latest installed-package inventory of each system that sent one
    /// by `at`, by system id.
    pub inventories: HashMap<String, Inventory>,
}

/// Which part of the fleet and catalog a report covers. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportFilter {
    /// Only systems carrying all of these tags.
    pub tags: Vec<Tag>,
    /// Only patches of these severities (all when empty).
    pub severities: Vec<Severity>,
    /// Only this system.
    pub system: Option<String>,
    /// Only this patch.
    pub patch_id: Option<String>,
    /// Also list every required pair in [`Report::pairs`] (large for a
    /// big fleet, so only on request).
    pub list_pairs: bool,
}

/// One required pair, as the overdue, failure and pair lists show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairRow {
    /// The system.
    pub system: String,
    /// The patch.
    pub patch_id: String,
    /// The patch's title.
    pub title: String,
    /// The patch's severity.
    pub severity: Severity,
    /// The state at the report's instant.
    pub state: PairState,
    /// Whether it is not applied and past its deadline.
    pub overdue: bool,
    /// When the patch was released.
    pub released_at: Timestamp,
    /// The SLA deadline, if any.
    pub deadline: Option<Timestamp>,
    /// The first install attempt.
    pub first_attempt_at: Option<Timestamp>,
    /// The first success.
    pub first_success_at: Option<Timestamp>,
    /// Install attempts so far.
    pub attempts: u64,
    /// Failed attempts so far.
    pub failures: u64,
    /// From release to the install that stands, in microseconds.
    pub time_to_patch_micros: Option<i64>,
    /// The latest failure's seq, whose detail the edge fills in.
    pub last_failure_seq: Option<u64>,
    /// The latest failure's detail, filled in by the edge that has the events.
    pub detail: Option<String>,
    /// The covering exception, if excepted.
    pub exception: Option<String>,
}

/// Counts of pair states, with the share that is covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Pairs per state, indexed by position in [`PairState::ALL`]
    /// (`not_required` stays 0). An array, not a map: a report adds to it
    /// twice per pair.
    counts: [u64; PairState::ALL.len()],
    /// Pairs flagged overdue (not applied and past the deadline).
    pub overdue: u64,
}

impl StateCounts {
    fn add(&mut self, state: PairState, overdue: bool) {
        self.counts[state as usize] += 1;
        self.overdue += u64::from(overdue);
    }

    fn merge(&mut self, other: &StateCounts) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.overdue += other.overdue;
    }

    /// The states that have pairs, with their counts, in report order.
    pub fn by_state(&self) -> impl Iterator<Item = (PairState, u64)> + '_ {
        PairState::ALL
            .into_iter()
            .zip(self.counts)
            .filter(|(_, n)| *n > 0)
    }

    /// Required pairs.
    pub fn required(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Pairs in `state`.
    pub fn get(&self, state: PairState) -> u64 {
        self.counts[state as usize]
    }

    /// Pairs with the patch applied and confirmed (on time or late).
    pub fn applied(&self) -> u64 {
        self.get(PairState::AppliedOnTime) + self.get(PairState::AppliedLate)
    }

    /// Applied pairs as a percentage of required ones; `None` when nothing is required.
    pub fn coverage_pct(&self) -> Option<f64> {
        pct(self.applied(), self.required())
    }

    /// On-time applications as a percentage of all confirmed applications.
    pub fn on_time_pct(&self) -> Option<f64> {
        pct(self.get(PairState::AppliedOnTime), self.applied())
    }
}

fn pct(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 * 100.0 / d as f64)
}

/// Time-to-patch statistics for one severity.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeToPatch {
    /// The severity.
    pub severity: Severity,
    /// Applied pairs measured.
    pub count: u64,
    /// Mean days from release to install.
    pub mean_days: f64,
    /// 90th percentile (nearest rank), in days.
    pub p90_days: f64,
}

/// The headline numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Pair counts over the whole report.
    pub counts: StateCounts,
    /// Overdue pairs per severity, most severe first.
    pub overdue_by_severity: Vec<(Severity, u64)>,
    /// Time to patch per severity, most severe first (only severities with data).
    pub time_to_patch: Vec<TimeToPatch>,
    /// Install attempts across required pairs.
    pub attempts: u64,
    /// Failed attempts across required pairs.
    pub failures: u64,
    /// Systems in the report.
    pub systems: u64,
    /// Stale systems, by id.
    pub stale_systems: Vec<String>,
    /// Catalog entries in the report.
    pub patches: u64,
    /// Systems in the report with an inventory.
    pub systems_with_inventory: u64,
    /// Installed packages, across those systems, that no logged success explains.
    pub unaccounted: u64,
}

impl Summary {
    /// Failed attempts as a percentage of all attempts.
    pub fn failure_rate_pct(&self) -> Option<f64> {
        pct(self.failures, self.attempts)
    }
}

/// One system's line.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemRow {
    /// The system.
    pub system: String,
    /// Its tags.
    pub tags: Tags,
    /// When it was last heard from.
    pub last_seen: Option<Timestamp>,
    /// Whether it is stale.
    pub stale: bool,
    /// Its pairs.
    pub counts: StateCounts,
    /// When its latest inventory was taken; `None` if it never sent one.
    pub inventory_at: Option<Timestamp>,
    /// Installed packages no logged success explains; `None` without an inventory.
    pub unaccounted: Option<u64>,
}

/// An installed package that no logged event explains: the inventory shows
/// it, but no success on that system recorded that version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnaccountedRow {
    /// The system whose inventory lists it.
    pub system: String,
    /// The package (a KB id on Windows).
    pub package: String,
    /// The installed version.
    pub version: String,
    /// The architecture, where the format has one.
    pub arch: Option<String>,
}

/// At most this many unaccounted packages are listed in a report unless
/// every pair is asked for; [`Summary::unaccounted`] counts them all.
pub const UNACCOUNTED_LIST_MAX: usize = 1000;

/// One patch's line.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRow {
    /// The patch.
    pub patch_id: String,
    /// Its title.
    pub title: String,
    /// Its severity.
    pub severity: Severity,
    /// When it was released.
    pub released_at: Timestamp,
    /// Its pairs.
    pub counts: StateCounts,
    /// Mean days from release to install, over applied pairs.
    pub mean_time_to_patch_days: Option<f64>,
}

/// One point of the coverage curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoveragePoint {
    /// The instant.
    pub at: Timestamp,
    /// Pairs required then: released by then.
    pub required: u64,
    /// Of those, pairs whose standing install was in place by then.
    pub covered: u64,
}

/// The full report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The instant it describes.
    pub at: Timestamp,
    /// Whether that instant was asked for.
    pub as_of: bool,
    /// The ledger checkpoint it was computed from.
    pub checkpoint: Option<CheckpointRef>,
    /// The filter it was computed with.
    pub filter: ReportFilter,
    /// The headline numbers.
    pub summary: Summary,
    /// Overdue pairs, oldest deadline first.
    pub overdue: Vec<PairRow>,
    /// Pairs whose latest attempt failed, most recent failure first.
    pub failures: Vec<PairRow>,
    /// Every required pair, by patch (most severe first) then system,
    /// when the filter asked for them; empty otherwise.
    pub pairs: Vec<PairRow>,
    /// One line per system, by id.
    pub systems: Vec<SystemRow>,
    /// One line per patch, most severe first, then oldest release.
    pub patches: Vec<PatchRow>,
    /// Coverage over time, for the chart: the share of pairs whose
    /// standing, confirmed install (not since rolled back, no reboot
    /// pending, on a system not stale) was in place at each instant. Its
    /// last point is the headline coverage; earlier points are a lower
    /// bound, since an install later rolled back does not show.
    pub coverage: Vec<CoveragePoint>,
    /// Applied pairs per time-to-patch bucket (upper bound in days, count),
    /// for the histogram.
    pub time_to_patch_histogram: Vec<(u32, u64)>,
    /// Installed packages that no logged event explains, by system then
    /// package; at most [`UNACCOUNTED_LIST_MAX`] unless the filter lists pairs.
    pub unaccounted: Vec<UnaccountedRow>,
}

/// The upper bounds of the time-to-patch histogram, in days; the last bucket is open.
pub const HISTOGRAM_DAYS: [u32; 9] = [1, 3, 7, 14, 30, 60, 90, 180, u32::MAX];

impl Report {
    /// Computes the report of `input`, restricted to `filter`.
    pub fn compute(input: &ReportInput, filter: &ReportFilter) -> Report {
        let at = input.at;
        let entries: Vec<&CatalogEntry> = input
            .catalog
            .iter()
            .filter(|e| {
                filter
                    .patch_id
                    .as_deref()
                    .is_none_or(|p| e.id.as_str() == p)
            })
            .filter(|e| filter.severities.is_empty() || filter.severities.contains(&e.severity))
            .collect();
        let systems: Vec<&SystemView> = input
            .systems
            .iter()
            .filter(|s| filter.system.as_deref().is_none_or(|id| s.id == id))
            .filter(|s| s.tags.has_all(&filter.tags))
            .collect();
        let mut by_patch: HashMap<&str, Vec<&Exception>> = HashMap::new();
        for x in &input.exceptions {
            by_patch.entry(x.patch_id.as_str()).or_default().push(x);
        }
        let stale: Vec<bool> = systems
            .iter()
            .map(|s| input.policy.is_stale(s.last_seen, at))
            .collect();
        let days: Vec<[Option<u32>; 5]> = systems
            .iter()
            .map(|s| {
                let mut d = [None; 5];
                for sev in Severity::ALL {
                    d[sev as usize] = input.policy.days_for(sev, &s.tags);
                }
                d
            })
            .collect();
        let samples = sample_instants(&entries, at);
        let inventories: Vec<Option<&Inventory>> = systems
            .iter()
            .map(|s| input.inventories.get(&s.id))
            .collect();
        let system_index: rustc_hash::FxHashMap<&str, usize> = systems
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let ctx = Scan {
            at,
            systems: &systems,
            stale: &stale,
            input,
            by_patch: &by_patch,
            list_pairs: filter.list_pairs,
            days: &days,
            samples: &samples,
            system_index: &system_index,
            inventories: &inventories,
        };
        // Entries are independent, so they are split across threads; the
        // partial results add up in entry order, so the report does not
        // depend on the number of threads.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let chunk = entries.len().div_ceil(threads).max(1);
        let partials: Vec<Partial> = if threads == 1 || entries.len() < 2 {
            vec![ctx.scan(&entries)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = entries
                    .chunks(chunk)
                    .map(|part| scope.spawn(|| ctx.scan(part)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a report thread panicked"))
                    .collect()
            })
        };
        let mut total = StateCounts::default();
        let mut overdue_sev: BTreeMap<Severity, u64> = BTreeMap::new();
        let mut ttp: BTreeMap<Severity, Vec<i64>> = BTreeMap::new();
        let mut histogram = vec![0u64; HISTOGRAM_DAYS.len()];
        let (mut attempts, mut failures) = (0u64, 0u64);
        let mut overdue = Vec::new();
        let mut failed = Vec::new();
        let mut pairs = Vec::new();
        let mut system_counts = vec![StateCounts::default(); systems.len()];
        let mut curve_required = vec![0u64; samples.len()];
        let mut curve_covered = vec![0u64; samples.len()];
        let mut patch_rows = Vec::with_capacity(entries.len());
        for p in partials {
            total.merge(&p.total);
            for (s, n) in p.overdue_sev {
                *overdue_sev.entry(s).or_default() += n;
            }
            for (s, v) in p.ttp {
                ttp.entry(s).or_default().extend(v);
            }
            for (h, n) in histogram.iter_mut().zip(p.histogram) {
                *h += n;
            }
            attempts += p.attempts;
            failures += p.failures;
            overdue.extend(p.overdue);
            failed.extend(p.failed);
            pairs.extend(p.pairs);
            for (c, n) in system_counts.iter_mut().zip(&p.system_counts) {
                c.merge(n);
            }
            for (a, b) in curve_required.iter_mut().zip(&p.curve_required) {
                *a += b;
            }
            for (a, b) in curve_covered.iter_mut().zip(&p.curve_covered) {
                *a += b;
            }
            patch_rows.extend(p.patch_rows);
        }
        let mut unaccounted = Vec::new();
        let mut unaccounted_total = 0u64;
        let system_rows: Vec<SystemRow> = systems
            .iter()
            .zip(stale)
            .zip(system_counts)
            .zip(&inventories)
            .map(|(((s, stale), counts), inv)| {
                let left = inv.map(|inv| {
                    inv.explained_by(|id| {
                        input
                            .facts
                            .get(id)
                            .and_then(|by_system| by_system.get(&s.id))
                            .is_some_and(|f| f.applied_since.is_some())
                    })
                });
                if let Some(left) = &left {
                    unaccounted_total += left.len() as u64;
                    let room = if filter.list_pairs {
                        usize::MAX
                    } else {
                        UNACCOUNTED_LIST_MAX.saturating_sub(unaccounted.len())
                    };
                    unaccounted.extend(left.iter().take(room).map(|p| UnaccountedRow {
                        system: s.id.clone(),
                        package: p.name.clone(),
                        version: p.version.clone(),
                        arch: p.arch.clone(),
                    }));
                }
                SystemRow {
                    system: s.id.clone(),
                    tags: s.tags.clone(),
                    last_seen: s.last_seen,
                    stale,
                    counts,
                    inventory_at: inv.map(|i| i.recorded_at),
                    unaccounted: left.map(|l| l.len() as u64),
                }
            })
            .collect();

        overdue.sort_by(|a, b| {
            (a.deadline, &a.system, &a.patch_id).cmp(&(b.deadline, &b.system, &b.patch_id))
        });
        failed.sort_by(|a, b| {
            (b.last_failure_seq, &a.system, &a.patch_id).cmp(&(
                a.last_failure_seq,
                &b.system,
                &b.patch_id,
            ))
        });
        pairs.sort_by(|a, b| {
            (b.severity, a.released_at, &a.patch_id, &a.system).cmp(&(
                a.severity,
                b.released_at,
                &b.patch_id,
                &b.system,
            ))
        });
        patch_rows.sort_by(|a, b| {
            (b.severity, a.released_at, &a.patch_id).cmp(&(a.severity, b.released_at, &b.patch_id))
        });

        let time_to_patch = Severity::ALL
            .into_iter()
            .filter_map(|sev| {
                let mut v = ttp.remove(&sev)?;
                let n = v.len();
                let mean = v.iter().map(|t| *t as f64).sum::<f64>() / n as f64 / DAY_MICROS as f64;
                let rank = (n * 90).div_ceil(100).max(1) - 1;
                // The nearest-rank p90 needs one order statistic, not a sort.
                let (_, p90, _) = v.select_nth_unstable(rank);
                Some(TimeToPatch {
                    severity: sev,
                    count: n as u64,
                    mean_days: mean,
                    p90_days: *p90 as f64 / DAY_MICROS as f64,
                })
            })
            .collect();
        let overdue_by_severity = Severity::ALL
            .into_iter()
            .map(|s| (s, overdue_sev.get(&s).copied().unwrap_or(0)))
            .collect();
        let stale_systems = system_rows
            .iter()
            .filter(|r| r.stale)
            .map(|r| r.system.clone())
            .collect();

        Report {
            at,
            as_of: input.as_of,
            checkpoint: input.checkpoint.clone(),
            filter: filter.clone(),
            summary: Summary {
                counts: total,
                overdue_by_severity,
                time_to_patch,
                attempts,
                failures,
                systems: system_rows.len() as u64,
                stale_systems,
                patches: entries.len() as u64,
                systems_with_inventory: inventories.iter().flatten().count() as u64,
                unaccounted: unaccounted_total,
            },
            overdue,
            failures: failed,
            pairs,
            systems: system_rows,
            patches: patch_rows,
            coverage: coverage_curve(&samples, &curve_required, &curve_covered),
            time_to_patch_histogram: HISTOGRAM_DAYS.iter().copied().zip(histogram).collect(),
            unaccounted,
        }
    }
}

/// What every thread of a report shares.
struct Scan<'a> {
    at: Timestamp,
    systems: &'a [&'a SystemView],
    stale: &'a [bool],
    input: &'a ReportInput,
    by_patch: &'a HashMap<&'a str, Vec<&'a Exception>>,
    list_pairs: bool,
    /// Each system's SLA days, by `Severity as usize`: worked out once per
    /// system rather than once per pair.
    days: &'a [[Option<u32>; 5]],
    /// The instants the coverage curve samples.
    samples: &'a [i64],
    /// Each system's position in `systems`. Probed once per pair with events,
    /// so with rustc-hash's fast hasher: SipHash was a fifth of a report.
    system_index: &'a rustc_hash::FxHashMap<&'a str, usize>,
    /// Each system's inventory, by position in `systems`.
    inventories: &'a [Option<&'a Inventory>],
}

/// What one thread found over its share of the entries.
#[derive(Default)]
struct Partial {
    total: StateCounts,
    overdue_sev: BTreeMap<Severity, u64>,
    ttp: BTreeMap<Severity, Vec<i64>>,
    histogram: Vec<u64>,
    attempts: u64,
    failures: u64,
    overdue: Vec<PairRow>,
    failed: Vec<PairRow>,
    pairs: Vec<PairRow>,
    system_counts: Vec<StateCounts>,
    /// Pairs first required, and first covered, at each sample instant.
    curve_required: Vec<u64>,
    curve_covered: Vec<u64>,
    patch_rows: Vec<PatchRow>,
}

impl Scan<'_> {
    /// Evaluates every pair of `entries` with every system.
    fn scan(&self, entries: &[&CatalogEntry]) -> Partial {
        // The facts of one entry, copied by system position while its
        // facts table is walked in table order. A hash probe per pair, or
        // reading the facts in place in system order, missed the cache on
        // nearly every pair; the scan below then reads the slots in order.
        let mut slots: Vec<Option<PairFacts>> = vec![None; self.systems.len()];
        let mut out = Partial {
            histogram: vec![0; HISTOGRAM_DAYS.len()],
            system_counts: vec![StateCounts::default(); self.systems.len()],
            curve_required: vec![0; self.samples.len()],
            curve_covered: vec![0; self.samples.len()],
            ..Partial::default()
        };
        for entry in entries {
            slots.fill(None);
            if let Some(facts) = self.input.facts.get(entry.id.as_str()) {
                for (system, f) in facts {
                    if let Some(&i) = self.system_index.get(system.as_str()) {
                        slots[i] = Some(*f);
                    }
                }
            }
            let exceptions = self
                .by_patch
                .get(entry.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let mut counts = StateCounts::default();
            // Summed in i128: thousands of pairs of an old entry overflow i64 µs.
            let mut ttp_sum = (0i128, 0u64);
            for (i, sys) in self.systems.iter().enumerate() {
                let f = slots[i].as_ref();
                // An inventory that shows the system unaffected takes it out,
                // unless the ledger already has events for the pair, which
                // keep their evidence.
                if let (Some(inv), None) = (self.inventories[i], f) {
                    if !entry.packages.is_empty() && inv.verdict(&entry.packages) == Some(false) {
                        continue;
                    }
                }
                let deadline = self.days[i][entry.severity as usize].map(|d| {
                    entry
                        .released_at
                        .saturating_add_micros(i64::from(d) * DAY_MICROS)
                });
                let ev = evaluate_prepared(
                    entry,
                    &sys.id,
                    &sys.tags,
                    self.stale[i],
                    deadline,
                    f,
                    exceptions,
                    self.at,
                );
                if ev.state == PairState::NotRequired {
                    continue;
                }
                counts.add(ev.state, ev.overdue);
                out.system_counts[i].add(ev.state, ev.overdue);
                if let Some(f) = f {
                    out.attempts += f.attempts;
                    out.failures += f.failures;
                }
                // Only confirmed installs count, as in coverage_pct, so the
                // curve ends at the headline number.
                let confirmed =
                    matches!(ev.state, PairState::AppliedOnTime | PairState::AppliedLate);
                let covered_from = f
                    .and_then(|f| f.applied_since)
                    .filter(|_| confirmed)
                    .map(|t| t.max(entry.released_at).min(self.at));
                // Counted at the first sample instant by which the pair was
                // required (and covered); prefix sums give the curve.
                let first = |t: i64| self.samples.partition_point(|s| *s < t);
                if let Some(c) = out
                    .curve_required
                    .get_mut(first(entry.released_at.as_micros()))
                {
                    *c += 1;
                }
                if let Some(t) = covered_from {
                    if let Some(c) = out.curve_covered.get_mut(first(t.as_micros())) {
                        *c += 1;
                    }
                }
                // Time to patch counts confirmed installs, as coverage does.
                if let (Some(t), true) = (ev.time_to_patch_micros, confirmed) {
                    out.ttp.entry(entry.severity).or_default().push(t);
                    ttp_sum = (ttp_sum.0 + i128::from(t), ttp_sum.1 + 1);
                    // A pair 30.5 days after release belongs past "≤ 30 days".
                    let bucket = HISTOGRAM_DAYS
                        .iter()
                        .position(|b| i128::from(*b) * i128::from(DAY_MICROS) >= i128::from(t))
                        .unwrap_or(HISTOGRAM_DAYS.len() - 1);
                    out.histogram[bucket] += 1;
                }
                if ev.overdue {
                    *out.overdue_sev.entry(entry.severity).or_default() += 1;
                }
                if ev.overdue || ev.state == PairState::Failed || self.list_pairs {
                    let row = PairRow {
                        system: sys.id.clone(),
                        patch_id: entry.id.as_str().to_owned(),
                        title: entry.title.clone(),
                        severity: entry.severity,
                        state: ev.state,
                        overdue: ev.overdue,
                        released_at: entry.released_at,
                        deadline: ev.deadline,
                        first_attempt_at: f.and_then(|f| f.first_attempt_at),
                        first_success_at: f.and_then(|f| f.first_success_at),
                        attempts: f.map_or(0, |f| f.attempts),
                        failures: f.map_or(0, |f| f.failures),
                        time_to_patch_micros: ev.time_to_patch_micros,
                        last_failure_seq: f.and_then(|f| f.last_failure_seq),
                        detail: None,
                        exception: ev.exception,
                    };
                    if row.state == PairState::Failed {
                        out.failed.push(row.clone());
                    }
                    if row.overdue {
                        out.overdue.push(row.clone());
                    }
                    if self.list_pairs {
                        out.pairs.push(row);
                    }
                }
            }
            out.total.merge(&counts);
            out.patch_rows.push(PatchRow {
                patch_id: entry.id.as_str().to_owned(),
                title: entry.title.clone(),
                severity: entry.severity,
                released_at: entry.released_at,
                counts,
                mean_time_to_patch_days: (ttp_sum.1 > 0)
                    .then(|| ttp_sum.0 as f64 / ttp_sum.1 as f64 / DAY_MICROS as f64),
            });
        }
        out
    }
}

/// The 31 instants the coverage curve samples, from the earliest release
/// among `entries` (released by `at`) to `at`; none if nothing is released.
fn sample_instants(entries: &[&CatalogEntry], at: Timestamp) -> Vec<i64> {
    const POINTS: i64 = 30;
    let Some(start) = entries
        .iter()
        .map(|e| e.released_at.as_micros())
        .filter(|r| *r <= at.as_micros())
        .min()
    else {
        return Vec::new();
    };
    let end = at.as_micros();
    (0..=POINTS)
        .map(|i| {
            if i == POINTS {
                end
            } else {
                start + (end - start) / POINTS * i
            }
        })
        .collect()
}

/// Turns per-instant counts of pairs first required and first covered into
/// the curve, by prefix sums; empty when no pair is required.
fn coverage_curve(samples: &[i64], required: &[u64], covered: &[u64]) -> Vec<CoveragePoint> {
    if required.iter().sum::<u64>() == 0 {
        return Vec::new();
    }
    let (mut r, mut c) = (0, 0);
    samples
        .iter()
        .zip(required.iter().zip(covered))
        .map(|(t, (dr, dc))| {
            r += dr;
            c += dc;
            CoveragePoint {
                at: Timestamp::from_micros(*t),
                required: r,
                covered: c,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RawCatalogEntry;
    use crate::facts::EventFact;
    use patchaudit_domain::Status;

    const REL: i64 = 19_723; // 2024-01-01

    fn day(d: i64) -> Timestamp {
        Timestamp::from_micros((REL + d) * DAY_MICROS)
    }

    fn entry(id: &str, severity: &str, released: i64) -> CatalogEntry {
        CatalogEntry::parse(RawCatalogEntry {
            id: Some(id.into()),
            severity: Some(severity.into()),
            released_at: Some(day(released).to_rfc3339()),
            ..Default::default()
        })
        .unwrap()
    }

    fn system(id: &str, seen: i64, tags: &[&str]) -> SystemView {
        SystemView {
            id: id.into(),
            tags: Tags::parse(tags.iter().copied(), "t").unwrap(),
            first_seen: Some(day(0)),
            last_seen: Some(day(seen)),
        }
    }

    fn facts(evs: &[(i64, Status)]) -> PairFacts {
        let mut v: Vec<EventFact> = evs
            .iter()
            .enumerate()
            .map(|(i, (d, s))| EventFact {
                applied_at: day(*d),
                seq: i as u64,
                status: *s,
                reboot_required: false,
            })
            .collect();
        PairFacts::fold(&mut v).unwrap()
    }

    /// Two systems and three patches, every number worked out by hand.
    fn input() -> ReportInput {
        let mut f: HashMap<String, HashMap<String, PairFacts>> = HashMap::new();
        f.entry("A".into())
            .or_default()
            .insert("web-1".into(), facts(&[(10, Status::Success)]));
        f.entry("A".into())
            .or_default()
            .insert("web-2".into(), facts(&[(40, Status::Success)]));
        f.entry("B".into()).or_default().insert(
            "web-1".into(),
            facts(&[(5, Status::Failure), (6, Status::Failure)]),
        );
        ReportInput {
            at: day(50),
            as_of: false,
            checkpoint: Some(CheckpointRef {
                size: 5,
                root_hex: "ab".into(),
            }),
            catalog: vec![
                entry("A", "critical", 0),
                entry("B", "high", 0),
                entry("C", "low", 45),
            ],
            systems: vec![
                system("web-1", 49, &["env=prod"]),
                system("web-2", 48, &["env=dev"]),
            ],
            policy: SlaPolicy::default(),
            exceptions: vec![],
            facts: f,
            inventories: HashMap::new(),
        }
    }

    fn inventory(format: &str, pkgs: &[(&str, &str)]) -> Inventory {
        Inventory::parse(
            crate::inventory::RawInventory {
                format: Some(format.into()),
                packages: pkgs
                    .iter()
                    .map(|(n, v)| crate::inventory::RawPackage {
                        name: Some((*n).into()),
                        version: Some((*v).into()),
                        arch: None,
                    })
                    .collect(),
            },
            day(49),
        )
        .unwrap()
    }

    /// An advisory for openssl fixed in 3.0.13-1, on three systems: one
    /// with an affected version, one with the fix, and one without an
    /// inventory.
    fn versioned_input() -> ReportInput {
        let mut i = input();
        let mut e = entry("DSA-1", "critical", 0);
        e.packages = vec![crate::catalog::AffectedPackage {
            ecosystem: "Debian:12".into(),
            name: "openssl".into(),
            fixed: Some("3.0.13-1".into()),
        }];
        i.catalog = vec![e];
        i.facts.clear();
        i.systems.push(system("db-1", 49, &[]));
        i.inventories.insert(
            "web-1".into(),
            inventory(
                "deb",
                &[("openssl", "3.0.11-1~deb12u2"), ("bash", "5.2.15-2")],
            ),
        );
        i.inventories
            .insert("web-2".into(), inventory("deb", &[("openssl", "3.0.13-1")]));
        i
    }

    #[test]
    fn an_advisory_with_fixed_versions_applies_where_the_inventory_is_affected() {
        let r = Report::compute(&versioned_input(), &ReportFilter::default());
        let required: Vec<(&str, u64)> = r
            .systems
            .iter()
            .map(|s| (s.system.as_str(), s.counts.required()))
            .collect();
        // web-1 holds an affected version; web-2 holds the fix; db-1 sent no
        // inventory, so the entry's `applies_to` (all) decides.
        assert_eq!(required, [("web-1", 1), ("web-2", 0), ("db-1", 1)]);
        assert_eq!(r.summary.systems_with_inventory, 2);
    }

    #[test]
    fn a_pair_with_events_stays_required_whatever_the_inventory_says() {
        let mut i = versioned_input();
        i.facts
            .entry("DSA-1".into())
            .or_default()
            .insert("web-2".into(), facts(&[(3, Status::Success)]));
        let r = Report::compute(&i, &ReportFilter::default());
        let web2 = r.systems.iter().find(|s| s.system == "web-2").unwrap();
        assert_eq!(web2.counts.get(PairState::AppliedOnTime), 1);
    }

    #[test]
    fn an_inventory_of_another_family_or_an_entry_without_fixes_decides_nothing() {
        let mut i = versioned_input();
        // web-2 is fixed by its deb inventory, so the entry is not required there.
        let r = Report::compute(&i, &ReportFilter::default());
        assert_eq!(r.summary.counts.required(), 2);
        // An rpm inventory says nothing about a Debian advisory: `applies_to` decides.
        let deb = i
            .inventories
            .insert("web-2".into(), inventory("rpm", &[("openssl", "1.0-1")]))
            .unwrap();
        let r = Report::compute(&i, &ReportFilter::default());
        let web2 = r.systems.iter().find(|s| s.system == "web-2").unwrap();
        assert_eq!(web2.counts.required(), 1);
        // Nor does an entry whose packages have no fixed version.
        i.inventories.insert("web-2".into(), deb);
        i.catalog[0].packages[0].fixed = None;
        let r = Report::compute(&i, &ReportFilter::default());
        assert_eq!(r.summary.counts.required(), 3);
    }

    #[test]
    fn unaccounted_packages_are_those_no_success_explains() {
        let mut i = versioned_input();
        i.facts
            .entry("bash@5.2.15-2".into())
            .or_default()
            .insert("web-1".into(), facts(&[(3, Status::Success)]));
        // A success on another system explains nothing here, and a
        // rolled-back install no longer explains the version.
        i.facts
            .entry("openssl@3.0.13-1".into())
            .or_default()
            .insert("web-1".into(), facts(&[(3, Status::Success)]));
        i.facts
            .entry("openssl@3.0.13-1".into())
            .or_default()
            .insert(
                "web-2".into(),
                facts(&[(3, Status::Success), (4, Status::RolledBack)]),
            );
        let r = Report::compute(&i, &ReportFilter::default());
        let rows: Vec<(&str, &str, &str)> = r
            .unaccounted
            .iter()
            .map(|u| (u.system.as_str(), u.package.as_str(), u.version.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("web-1", "openssl", "3.0.11-1~deb12u2"),
                ("web-2", "openssl", "3.0.13-1")
            ]
        );
        assert_eq!(r.summary.unaccounted, 2);
        let counts: Vec<Option<u64>> = r.systems.iter().map(|s| s.unaccounted).collect();
        assert_eq!(counts, [Some(1), Some(1), None]);
        let only_web2 = Report::compute(
            &i,
            &ReportFilter {
                system: Some("web-2".into()),
                ..ReportFilter::default()
            },
        );
        assert_eq!(only_web2.summary.unaccounted, 1);
    }

    #[test]
    fn the_unaccounted_list_is_capped_unless_pairs_are_listed() {
        let mut i = versioned_input();
        let many: Vec<(String, String)> = (0..UNACCOUNTED_LIST_MAX + 5)
            .map(|n| (format!("pkg{n:05}"), "1.0-1".to_string()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        i.inventories.insert("db-1".into(), inventory("deb", &many));
        let r = Report::compute(&i, &ReportFilter::default());
        assert_eq!(r.unaccounted.len(), UNACCOUNTED_LIST_MAX);
        // db-1's packages, web-1's bash and openssl, and web-2's openssl.
        assert_eq!(r.summary.unaccounted, (UNACCOUNTED_LIST_MAX + 5 + 3) as u64);
        let all = Report::compute(
            &i,
            &ReportFilter {
                list_pairs: true,
                ..ReportFilter::default()
            },
        );
        assert_eq!(all.unaccounted.len() as u64, all.summary.unaccounted);
    }

    #[test]
    fn a_hand_computed_fleet() {
        let r = Report::compute(&input(), &ReportFilter::default());
        let c = &r.summary.counts;
        // A: web-1 on time (day 10), web-2 late (day 40 > 30).
        // B: web-1 failed and overdue (deadline day 30), web-2 overdue.
        // C: released day 45, low (180 days): missing on both.
        assert_eq!(c.required(), 6);
        assert_eq!(c.get(PairState::AppliedOnTime), 1);
        assert_eq!(c.get(PairState::AppliedLate), 1);
        assert_eq!(c.get(PairState::Failed), 1);
        assert_eq!(c.get(PairState::Overdue), 1);
        assert_eq!(c.get(PairState::Missing), 2);
        assert_eq!(c.overdue, 2);
        assert_eq!(c.coverage_pct(), Some(100.0 * 2.0 / 6.0));
        assert_eq!(c.on_time_pct(), Some(50.0));
        assert_eq!(r.summary.overdue_by_severity[1], (Severity::High, 2));
        assert_eq!((r.summary.attempts, r.summary.failures), (4, 2));
        assert_eq!(r.summary.failure_rate_pct(), Some(50.0));
        let crit = &r.summary.time_to_patch[0];
        assert_eq!(
            (crit.severity, crit.count, crit.mean_days, crit.p90_days),
            (Severity::Critical, 2, 25.0, 40.0)
        );
        assert_eq!(r.overdue.len(), 2);
        assert!(r.overdue.iter().all(|p| p.patch_id == "B"));
        assert_eq!(r.failures.len(), 1);
        assert_eq!(
            (
                r.failures[0].system.as_str(),
                r.failures[0].last_failure_seq
            ),
            ("web-1", Some(1))
        );
        assert_eq!(
            r.patches
                .iter()
                .map(|p| p.patch_id.as_str())
                .collect::<Vec<_>>(),
            ["A", "B", "C"]
        );
        assert_eq!(r.patches[0].mean_time_to_patch_days, Some(25.0));
        assert_eq!(r.systems[0].counts.required(), 3);
        assert!(r.summary.stale_systems.is_empty());
        let last = r.coverage.last().unwrap();
        assert_eq!((last.required, last.covered), (6, 2));
        assert_eq!(
            last.covered,
            c.applied(),
            "the curve ends at the headline coverage"
        );
        assert_eq!(r.coverage[0].covered, 0);
        assert_eq!(
            r.time_to_patch_histogram.iter().map(|b| b.1).sum::<u64>(),
            2
        );
    }

    #[test]
    fn histogram_buckets_round_days_up() {
        let mut i = input();
        // web-1 applied A 10.5 days after release: past the "≤ 7" and into "≤ 14".
        i.facts.get_mut("A").unwrap().insert(
            "web-1".into(),
            PairFacts::fold(&mut [EventFact {
                applied_at: Timestamp::from_micros(day(10).as_micros() + DAY_MICROS / 2),
                seq: 0,
                status: Status::Success,
                reboot_required: false,
            }])
            .unwrap(),
        );
        let r = Report::compute(&i, &ReportFilter::default());
        let bucket = |d: u32| {
            r.time_to_patch_histogram
                .iter()
                .find(|b| b.0 == d)
                .unwrap()
                .1
        };
        assert_eq!((bucket(7), bucket(14)), (0, 1));
    }

    #[test]
    fn every_pair_is_listed_only_on_request() {
        let r = Report::compute(&input(), &ReportFilter::default());
        assert!(r.pairs.is_empty());
        let all = ReportFilter {
            list_pairs: true,
            ..Default::default()
        };
        let r = Report::compute(&input(), &all);
        assert_eq!(r.pairs.len() as u64, r.summary.counts.required());
        let a1 = r
            .pairs
            .iter()
            .find(|p| p.patch_id == "A" && p.system == "web-1")
            .unwrap();
        assert_eq!(a1.state, PairState::AppliedOnTime);
        assert_eq!((a1.attempts, a1.first_success_at), (1, Some(day(10))));
        assert_eq!(a1.time_to_patch_micros, Some(10 * DAY_MICROS));
        let order: Vec<_> = r
            .pairs
            .iter()
            .map(|p| (p.patch_id.as_str(), p.system.as_str()))
            .collect();
        assert_eq!(order[0], ("A", "web-1"), "most severe patch first");
    }

    #[test]
    fn filters_narrow_systems_and_patches() {
        let prod = ReportFilter {
            tags: vec![Tag::parse("env=prod", "t").unwrap()],
            ..Default::default()
        };
        let r = Report::compute(&input(), &prod);
        assert_eq!(r.summary.systems, 1);
        assert_eq!(r.summary.counts.required(), 3);
        let high = ReportFilter {
            severities: vec![Severity::High],
            ..Default::default()
        };
        let r = Report::compute(&input(), &high);
        assert_eq!((r.summary.patches, r.summary.counts.required()), (1, 2));
        let one = ReportFilter {
            system: Some("web-2".into()),
            patch_id: Some("A".into()),
            ..Default::default()
        };
        let r = Report::compute(&input(), &one);
        assert_eq!(r.summary.counts.get(PairState::AppliedLate), 1);
        assert_eq!(r.summary.counts.required(), 1);
    }

    #[test]
    fn stale_systems_are_listed_and_unknown() {
        let mut i = input();
        i.at = day(60);
        let r = Report::compute(&i, &ReportFilter::default());
        assert_eq!(r.summary.stale_systems, ["web-1", "web-2"]);
        assert_eq!(r.summary.counts.get(PairState::Unknown), 6);
        assert_eq!(
            r.summary.counts.coverage_pct(),
            Some(0.0),
            "stale systems are never compliant"
        );
    }
}
