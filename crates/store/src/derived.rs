//! The summaries every backend derives from the events of an append, in the
//! same transaction: per system, and per (patch, system) pair.
//!
//! Backends aggregate an append in memory first, then upsert one row per
//! key. That keeps the derived tables exact and costs one statement per key
//! instead of one per event.

use patchaudit_compliance::{EventFact, PairFacts};
use patchaudit_domain::{NewEvent, Status};
use std::collections::HashMap;

/// What one append adds to a system's summary.
#[derive(Debug, Clone)]
pub(crate) struct SystemDelta {
    pub first_seq: i64,
    pub last_seq: i64,
    /// Microseconds since the epoch.
    pub last_applied_at: i64,
    /// Counts indexed by [`Status::code`].
    pub counts: [i64; 3],
}

/// What one append says about a (patch, system) pair: its latest event by
/// (applied_at, seq), and how many events it adds.
#[derive(Debug, Clone)]
pub(crate) struct PairDelta {
    pub status: Status,
    /// Microseconds since the epoch.
    pub applied_at: i64,
    pub seq: i64,
    pub attempts: i64,
    /// The pair's new events, for its compliance facts.
    pub facts: Vec<EventFact>,
}

/// The aggregate of the events written by one append.
#[derive(Debug, Default)]
pub(crate) struct Derived {
    pub systems: HashMap<String, SystemDelta>,
    pub pairs: HashMap<(String, String), PairDelta>,
}

impl Derived {
    /// Accounts for one newly written event.
    pub fn add(&mut self, seq: i64, ev: &NewEvent) {
        let applied = ev.applied_at.as_micros();
        let s = self
            .systems
            .entry(ev.system.as_str().to_owned())
            .or_insert(SystemDelta {
                first_seq: seq,
                last_seq: seq,
                last_applied_at: i64::MIN,
                counts: [0; 3],
            });
        s.last_seq = seq;
        s.last_applied_at = s.last_applied_at.max(applied);
        s.counts[ev.status.code() as usize] += 1;

        // The fact that happened last wins, not the one that arrived last:
        // collectors deliver history out of order.
        let p = self
            .pairs
            .entry((
                ev.patch_id.as_str().to_owned(),
                ev.system.as_str().to_owned(),
            ))
            .or_insert(PairDelta {
                status: ev.status,
                applied_at: applied,
                seq,
                attempts: 0,
                facts: Vec::new(),
            });
        p.attempts += 1;
        p.facts.push(EventFact {
            applied_at: ev.applied_at,
            seq: seq as u64,
            status: ev.status,
            reboot_required: ev.reboot_required == Some(true),
        });
        if (applied, seq) >= (p.applied_at, p.seq) {
            p.status = ev.status;
            p.applied_at = applied;
            p.seq = seq;
        }
    }
}

/// Folds a pair's new events into its stored facts. `None` means some new
/// event happened before one already folded, so the caller must fold the
/// pair's stored events again with [`refold`].
pub(crate) fn extend(stored: Option<PairFacts>, new: &mut [EventFact]) -> Option<PairFacts> {
    new.sort_by_key(EventFact::key);
    let (mut facts, rest) = match stored {
        Some(f) => (f, &new[..]),
        None => {
            let (first, rest) = new.split_first()?;
            (PairFacts::first(first), rest)
        }
    };
    for ev in rest {
        if !facts.push(ev) {
            return None;
        }
    }
    Some(facts)
}

/// Folds a pair's stored events and its new ones from scratch.
pub(crate) fn refold(mut older: Vec<EventFact>, new: &[EventFact]) -> Option<PairFacts> {
    older.extend_from_slice(new);
    PairFacts::fold(&mut older)
}

/// A pair's facts as both backends store them: times in microseconds, the
/// status by name.
pub(crate) struct FactsRow {
    pub attempts: i64,
    pub failures: i64,
    pub first_attempt_at: Option<i64>,
    pub first_success_at: Option<i64>,
    pub applied_since: Option<i64>,
    pub pending_reboot: bool,
    pub last_status: String,
    pub last_applied_at: i64,
    pub last_seq: i64,
    pub last_failure_seq: Option<i64>,
}

impl FactsRow {
    pub fn from_facts(f: &PairFacts) -> FactsRow {
        FactsRow {
            attempts: f.attempts as i64,
            failures: f.failures as i64,
            first_attempt_at: f.first_attempt_at.map(|t| t.as_micros()),
            first_success_at: f.first_success_at.map(|t| t.as_micros()),
            applied_since: f.applied_since.map(|t| t.as_micros()),
            pending_reboot: f.pending_reboot,
            last_status: f.last_status.as_str().to_owned(),
            last_applied_at: f.last_applied_at.as_micros(),
            last_seq: f.last_seq as i64,
            last_failure_seq: f.last_failure_seq.map(|s| s as i64),
        }
    }

    pub fn into_facts(self) -> Result<PairFacts, crate::StoreError> {
        use patchaudit_domain::Timestamp as T;
        let status = self
            .last_status
            .parse::<Status>()
            .map_err(|m| crate::StoreError::Corrupt(format!("pair_facts last_status {m}")))?;
        Ok(PairFacts {
            attempts: self.attempts.max(0) as u64,
            failures: self.failures.max(0) as u64,
            first_attempt_at: self.first_attempt_at.map(T::from_micros),
            first_success_at: self.first_success_at.map(T::from_micros),
            applied_since: self.applied_since.map(T::from_micros),
            pending_reboot: self.pending_reboot,
            last_status: status,
            last_applied_at: T::from_micros(self.last_applied_at),
            last_seq: self.last_seq.max(0) as u64,
            last_failure_seq: self.last_failure_seq.map(|s| s.max(0) as u64),
        })
    }
}

/// Folds rows of `(patch_id, system, fact)` in any order into facts per pair.
pub(crate) fn fold_all(
    rows: impl IntoIterator<Item = (String, String, EventFact)>,
) -> HashMap<String, HashMap<String, PairFacts>> {
    let mut grouped: HashMap<String, HashMap<String, Vec<EventFact>>> = HashMap::new();
    for (p, s, f) in rows {
        grouped.entry(p).or_default().entry(s).or_default().push(f);
    }
    grouped
        .into_iter()
        .map(|(p, systems)| {
            let folded = systems
                .into_iter()
                .filter_map(|(s, mut evs)| PairFacts::fold(&mut evs).map(|f| (s, f)))
                .collect();
            (p, folded)
        })
        .collect()
}
