//! What the ledger says about one (patch, system) pair, folded event by event.
//!
//! Events of a pair are folded in the order they happened, by
//! `(applied_at, seq)`: collectors deliver history late and out of order,
//! and the fact that happened last must win, not the one that arrived last.
//! A store keeps one [`PairFacts`] per pair up to date on ingest: an event
//! that sorts after everything folded so far is pushed
//! ([`PairFacts::push`]); one that sorts earlier makes the store fold the
//! pair's events again ([`PairFacts::fold`]). A property test checks that
//! both paths agree on random ledgers.

use patchaudit_domain::{Status, Timestamp};

/// The part of an event that compliance needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFact {
    /// When it happened.
    pub applied_at: Timestamp,
    /// Its position in the ledger; breaks ties of `applied_at`.
    pub seq: u64,
    /// What happened.
    pub status: Status,
    /// Whether the install said a reboot is needed.
    pub reboot_required: bool,
}

impl EventFact {
    /// The order in which facts are folded.
    pub fn key(&self) -> (Timestamp, u64) {
        (self.applied_at, self.seq)
    }
}

/// The folded history of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairFacts {
    /// Install attempts: successes and failures (a rollback is not an attempt).
    pub attempts: u64,
    /// How many attempts failed.
    pub failures: u64,
    /// The earliest attempt, if any.
    pub first_attempt_at: Option<Timestamp>,
    /// The earliest success, if any.
    pub first_success_at: Option<Timestamp>,
    /// Since when the patch has been applied without a later rollback:
    /// the first success after the latest rollback. `None` if not applied.
    pub applied_since: Option<Timestamp>,
    /// Whether the latest success asked for a reboot and no later success
    /// confirmed the system without one.
    pub pending_reboot: bool,
    /// The latest event's status.
    pub last_status: Status,
    /// The latest event's `applied_at`.
    pub last_applied_at: Timestamp,
    /// The latest event's seq.
    pub last_seq: u64,
    /// The seq of the latest failure, whose detail a report shows.
    pub last_failure_seq: Option<u64>,
}

impl PairFacts {
    /// The facts of a pair with this one event.
    pub fn first(ev: &EventFact) -> PairFacts {
        let mut f = PairFacts {
            attempts: 0,
            failures: 0,
            first_attempt_at: None,
            first_success_at: None,
            applied_since: None,
            pending_reboot: false,
            last_status: ev.status,
            last_applied_at: ev.applied_at,
            last_seq: ev.seq,
            last_failure_seq: None,
        };
        f.apply(ev);
        f
    }

    /// Whether `ev` sorts after every event folded so far, so that
    /// [`PairFacts::push`] may take it.
    pub fn is_before(&self, ev: &EventFact) -> bool {
        (self.last_applied_at, self.last_seq) < ev.key()
    }

    /// Folds in an event that sorts after every event folded so far.
    /// Returns false, changing nothing, if it does not: the caller must then
    /// fold the pair's events again with [`PairFacts::fold`].
    #[must_use]
    pub fn push(&mut self, ev: &EventFact) -> bool {
        if !self.is_before(ev) {
            return false;
        }
        self.apply(ev);
        true
    }

    fn apply(&mut self, ev: &EventFact) {
        self.last_status = ev.status;
        self.last_applied_at = ev.applied_at;
        self.last_seq = ev.seq;
        match ev.status {
            Status::Success => {
                self.attempts += 1;
                self.first_attempt_at.get_or_insert(ev.applied_at);
                self.first_success_at.get_or_insert(ev.applied_at);
                self.applied_since.get_or_insert(ev.applied_at);
                self.pending_reboot = ev.reboot_required;
            }
            Status::Failure => {
                // A failed reinstall does not remove what an earlier success applied.
                self.attempts += 1;
                self.failures += 1;
                self.first_attempt_at.get_or_insert(ev.applied_at);
                self.last_failure_seq = Some(ev.seq);
            }
            Status::RolledBack => {
                self.applied_since = None;
                self.pending_reboot = false;
            }
        }
    }

    /// Folds a pair's events from scratch, in any order. `None` if there are none.
    pub fn fold(events: &mut [EventFact]) -> Option<PairFacts> {
        events.sort_by_key(EventFact::key);
        let (first, rest) = events.split_first()?;
        let mut f = PairFacts::first(first);
        for ev in rest {
            // Equal keys only come from the same event twice; skip it.
            let _ = f.push(ev);
        }
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn ev(day: i64, seq: u64, status: Status, reboot: bool) -> EventFact {
        EventFact {
            applied_at: Timestamp::from_micros(day * crate::DAY_MICROS),
            seq,
            status,
            reboot_required: reboot,
        }
    }

    #[test]
    fn success_failure_rollback_reapply() {
        let mut evs = vec![
            ev(1, 0, Status::Failure, false),
            ev(2, 1, Status::Success, true),
            ev(3, 2, Status::RolledBack, false),
            ev(5, 3, Status::Success, false),
            ev(6, 4, Status::Failure, false),
        ];
        let f = PairFacts::fold(&mut evs).unwrap();
        assert_eq!(f.attempts, 4);
        assert_eq!(f.failures, 2);
        assert_eq!(
            f.first_attempt_at,
            Some(Timestamp::from_micros(crate::DAY_MICROS))
        );
        assert_eq!(
            f.first_success_at,
            Some(Timestamp::from_micros(2 * crate::DAY_MICROS))
        );
        assert_eq!(
            f.applied_since,
            Some(Timestamp::from_micros(5 * crate::DAY_MICROS)),
            "the first success after the rollback"
        );
        assert!(
            !f.pending_reboot,
            "the later success confirmed the system without a reboot"
        );
        assert_eq!(
            (f.last_status, f.last_seq, f.last_failure_seq),
            (Status::Failure, 4, Some(4))
        );
    }

    #[test]
    fn a_late_event_is_refused_by_push_and_placed_by_fold() {
        let mut f = PairFacts::first(&ev(5, 0, Status::Success, false));
        assert!(!f.push(&ev(4, 1, Status::RolledBack, false)));
        assert_eq!(
            f.applied_since,
            Some(Timestamp::from_micros(5 * crate::DAY_MICROS)),
            "push changed nothing"
        );
        let mut evs = vec![
            ev(5, 0, Status::Success, false),
            ev(4, 1, Status::RolledBack, false),
        ];
        let f = PairFacts::fold(&mut evs).unwrap();
        assert_eq!(
            f.applied_since,
            Some(Timestamp::from_micros(5 * crate::DAY_MICROS)),
            "the rollback happened before the install"
        );
        assert_eq!(f.last_status, Status::Success);
    }

    /// The store's incremental path (push in arrival order, refold when an
    /// event arrives late) equals a fold of everything, on random ledgers.
    #[test]
    fn incremental_equals_full_fold_on_random_histories() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for _ in 0..2000 {
            let n = rng.gen_range(1..12);
            let arrivals: Vec<EventFact> = (0..n)
                .map(|seq| {
                    let status = Status::ALL[rng.gen_range(0..3)];
                    ev(rng.gen_range(0..6), seq, status, rng.gen_bool(0.3))
                })
                .collect();
            let mut seen: Vec<EventFact> = Vec::new();
            let mut inc: Option<PairFacts> = None;
            for e in &arrivals {
                seen.push(*e);
                inc = Some(match inc {
                    None => PairFacts::first(e),
                    Some(mut f) => {
                        if f.push(e) {
                            f
                        } else {
                            PairFacts::fold(&mut seen.clone()).unwrap()
                        }
                    }
                });
            }
            assert_eq!(inc, PairFacts::fold(&mut arrivals.clone()), "{arrivals:?}");
        }
    }
}
