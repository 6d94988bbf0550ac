//! The state of one (system, patch) pair at an instant.

use crate::catalog::CatalogEntry;
use crate::exception::Exception;
use crate::facts::PairFacts;
use crate::policy::SlaPolicy;
use crate::tags::Tags;
use patchaudit_domain::{Status, Timestamp};
use std::fmt;

/// Where a pair stands. See `docs/compliance.md` for the precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PairState {
    /// The patch does not apply to the system, or was not yet released.
    NotRequired,
    /// Required, not applied, and still within its SLA.
    Missing,
    /// Required, not applied, and past its SLA deadline.
    Overdue,
    /// Applied by the deadline (or the severity has none).
    AppliedOnTime,
    /// Applied after the deadline.
    AppliedLate,
    /// The latest attempt failed and the patch is not applied.
    Failed,
    /// Applied, then rolled back; it counts as missing again, on the
    /// original clock.
    RolledBack,
    /// Applied, but the install asked for a reboot not yet confirmed.
    PendingReboot,
    /// Not applied, but covered by an active exception.
    Excepted,
    /// The system is stale: not heard from within the policy's window, so
    /// nothing can be claimed about it. Never counted as compliant.
    Unknown,
}

impl PairState {
    /// Every state, in report order.
    pub const ALL: [PairState; 10] = [
        PairState::NotRequired,
        PairState::Missing,
        PairState::Overdue,
        PairState::AppliedOnTime,
        PairState::AppliedLate,
        PairState::Failed,
        PairState::RolledBack,
        PairState::PendingReboot,
        PairState::Excepted,
        PairState::Unknown,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PairState::NotRequired => "not_required",
            PairState::Missing => "missing",
            PairState::Overdue => "overdue",
            PairState::AppliedOnTime => "applied_on_time",
            PairState::AppliedLate => "applied_late",
            PairState::Failed => "failed",
            PairState::RolledBack => "rolled_back",
            PairState::PendingReboot => "pending_reboot",
            PairState::Excepted => "excepted",
            PairState::Unknown => "unknown",
        }
    }

    /// Whether the patch is in place (a pending reboot included).
    pub fn is_applied(self) -> bool {
        matches!(
            self,
            PairState::AppliedOnTime | PairState::AppliedLate | PairState::PendingReboot
        )
    }
}

impl fmt::Display for PairState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The evaluation of one pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairEvaluation {
    /// The state.
    pub state: PairState,
    /// Whether the pair is not applied and past its deadline. True for
    /// `overdue`, and also for `failed`, `rolled_back` and `unknown` pairs
    /// whose deadline has passed: those are overdue too.
    pub overdue: bool,
    /// The SLA deadline, if the severity has one for this system.
    pub deadline: Option<Timestamp>,
    /// From release to the install that stands, in microseconds (0 if it
    /// was installed before the release).
    pub time_to_patch_micros: Option<i64>,
    /// The exception that covers the pair, if that is why it is excepted.
    pub exception: Option<String>,
}

/// Evaluates a pair at `at`. `facts` must come from the events the ledger
/// held at `at` (and that happened by then); `last_seen` is when the
/// system was last heard from by then.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    entry: &CatalogEntry,
    system: &str,
    tags: &Tags,
    last_seen: Option<Timestamp>,
    facts: Option<&PairFacts>,
    policy: &SlaPolicy,
    exceptions: &[Exception],
    at: Timestamp,
) -> PairEvaluation {
    let deadline = policy.deadline(entry.severity, tags, entry.released_at);
    let stale = policy.is_stale(last_seen, at);
    let exceptions: Vec<&Exception> = exceptions.iter().collect();
    evaluate_prepared(entry, system, tags, stale, deadline, facts, &exceptions, at)
}

/// [`evaluate`] with the per-system parts worked out by the caller, which a
/// report does once per system instead of once per pair. `exceptions` may
/// hold any exceptions; only active ones for this patch and system count.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_prepared(
    entry: &CatalogEntry,
    system: &str,
    tags: &Tags,
    stale: bool,
    deadline: Option<Timestamp>,
    facts: Option<&PairFacts>,
    exceptions: &[&Exception],
    at: Timestamp,
) -> PairEvaluation {
    let mut ev = PairEvaluation {
        state: PairState::NotRequired,
        overdue: false,
        deadline,
        time_to_patch_micros: None,
        exception: None,
    };
    if !entry.applies_to.matches(system, tags) || at < entry.released_at {
        return ev;
    }
    let applied_since = facts.and_then(|f| f.applied_since);
    ev.time_to_patch_micros =
        applied_since.map(|t| (t.as_micros() - entry.released_at.as_micros()).max(0));
    let past_deadline = deadline.is_some_and(|d| at > d);
    // An active exception clears the overdue flag whatever the state, a
    // stale system's included.
    let exception = exceptions
        .iter()
        .find(|x| x.patch_id == entry.id && x.active_at(at) && x.scope.covers(system, tags));
    ev.state = if stale {
        PairState::Unknown
    } else if let Some(since) = applied_since {
        if facts.is_some_and(|f| f.pending_reboot) {
            PairState::PendingReboot
        } else if deadline.is_none_or(|d| since <= d) {
            PairState::AppliedOnTime
        } else {
            PairState::AppliedLate
        }
    } else if let Some(x) = exception {
        ev.exception = Some(x.id.clone());
        PairState::Excepted
    } else {
        match facts.map(|f| f.last_status) {
            Some(Status::Failure) => PairState::Failed,
            Some(Status::RolledBack) => PairState::RolledBack,
            // A success always sets applied_since, so only "no event" is left.
            _ if past_deadline => PairState::Overdue,
            _ => PairState::Missing,
        }
    };
    ev.overdue = applied_since.is_none() && past_deadline && exception.is_none();
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RawCatalogEntry;
    use crate::exception::{ExceptionScope, RawException};
    use crate::facts::EventFact;
    use crate::DAY_MICROS;

    const REL: i64 = 19_723; // 2024-01-01 in days since the epoch

    fn day(d: i64) -> Timestamp {
        Timestamp::from_micros((REL + d) * DAY_MICROS)
    }

    fn entry(severity: &str) -> CatalogEntry {
        CatalogEntry::parse(RawCatalogEntry {
            id: Some("KB1".into()),
            severity: Some(severity.into()),
            released_at: Some(day(0).to_rfc3339()),
            ..Default::default()
        })
        .unwrap()
    }

    fn facts(events: &[(i64, Status, bool)]) -> PairFacts {
        let mut evs: Vec<EventFact> = events
            .iter()
            .enumerate()
            .map(|(i, (d, s, r))| EventFact {
                applied_at: day(*d),
                seq: i as u64,
                status: *s,
                reboot_required: *r,
            })
            .collect();
        PairFacts::fold(&mut evs).unwrap()
    }

    /// Evaluates KB1 (critical, released day 0, SLA 30 days) on a system
    /// last seen `seen` days after release.
    fn eval(
        events: &[(i64, Status, bool)],
        exceptions: &[Exception],
        seen: i64,
        at: i64,
    ) -> PairEvaluation {
        let f = (!events.is_empty()).then(|| facts(events));
        evaluate(
            &entry("critical"),
            "web-1",
            &Tags::default(),
            Some(day(seen)),
            f.as_ref(),
            &SlaPolicy::default(),
            exceptions,
            day(at),
        )
    }

    #[test]
    fn discriminants_follow_all() {
        // Reports index their counts by `state as usize`.
        for (i, s) in PairState::ALL.into_iter().enumerate() {
            assert_eq!(s as usize, i, "{s}");
        }
    }

    #[test]
    fn missing_then_overdue_as_the_clock_runs() {
        let e = eval(&[], &[], 10, 10);
        assert_eq!((e.state, e.overdue), (PairState::Missing, false));
        assert_eq!(e.deadline, Some(day(30)));
        let e = eval(&[], &[], 30, 30);
        assert_eq!(
            e.state,
            PairState::Missing,
            "the deadline day itself is still on time"
        );
        let e = eval(&[], &[], 31, 31);
        assert_eq!((e.state, e.overdue), (PairState::Overdue, true));
    }

    #[test]
    fn applied_on_time_and_late() {
        let e = eval(&[(12, Status::Success, false)], &[], 40, 40);
        assert_eq!(
            (e.state, e.time_to_patch_micros),
            (PairState::AppliedOnTime, Some(12 * DAY_MICROS))
        );
        let e = eval(&[(45, Status::Success, false)], &[], 45, 50);
        assert_eq!((e.state, e.overdue), (PairState::AppliedLate, false));
        let e = eval(&[(-3, Status::Success, false)], &[], 1, 2);
        assert_eq!(
            (e.state, e.time_to_patch_micros),
            (PairState::AppliedOnTime, Some(0)),
            "installed before release"
        );
    }

    #[test]
    fn failed_counts_overdue_after_the_deadline() {
        let e = eval(&[(5, Status::Failure, false)], &[], 5, 6);
        assert_eq!((e.state, e.overdue), (PairState::Failed, false));
        let e = eval(&[(5, Status::Failure, false)], &[], 35, 35);
        assert_eq!((e.state, e.overdue), (PairState::Failed, true));
        let e = eval(
            &[(5, Status::Success, false), (6, Status::Failure, false)],
            &[],
            6,
            7,
        );
        assert_eq!(
            e.state,
            PairState::AppliedOnTime,
            "a failed reinstall leaves the patch applied"
        );
    }

    #[test]
    fn rollback_reopens_the_pair_on_the_original_clock() {
        let hist = [(5, Status::Success, false), (20, Status::RolledBack, false)];
        let e = eval(&hist, &[], 20, 25);
        assert_eq!(
            (e.state, e.overdue, e.time_to_patch_micros),
            (PairState::RolledBack, false, None)
        );
        let e = eval(&hist, &[], 31, 31);
        assert_eq!(
            (e.state, e.overdue),
            (PairState::RolledBack, true),
            "the clock did not restart at the rollback"
        );
        let e = eval(
            &[
                (5, Status::Success, false),
                (20, Status::RolledBack, false),
                (40, Status::Success, false),
            ],
            &[],
            40,
            41,
        );
        assert_eq!(
            (e.state, e.time_to_patch_micros),
            (PairState::AppliedLate, Some(40 * DAY_MICROS))
        );
    }

    #[test]
    fn pending_reboot_until_confirmed() {
        let e = eval(&[(3, Status::Success, true)], &[], 3, 4);
        assert_eq!(e.state, PairState::PendingReboot);
        let e = eval(
            &[(3, Status::Success, true), (4, Status::Success, false)],
            &[],
            4,
            5,
        );
        assert_eq!(
            (e.state, e.time_to_patch_micros),
            (PairState::AppliedOnTime, Some(3 * DAY_MICROS))
        );
    }

    #[test]
    fn an_exception_counts_until_it_expires() {
        let x = Exception::parse(
            RawException {
                patch_id: Some("KB1".into()),
                system: Some("web-1".into()),
                reason: Some("r".into()),
                approver: Some("a".into()),
                expires_at: Some(day(60).to_rfc3339()),
                ..Default::default()
            },
            "exc-1".into(),
            day(10),
        )
        .unwrap();
        let e = eval(&[], std::slice::from_ref(&x), 40, 40);
        assert_eq!(
            (e.state, e.overdue, e.exception.as_deref()),
            (PairState::Excepted, false, Some("exc-1"))
        );
        let e = eval(&[], std::slice::from_ref(&x), 5, 5);
        assert_eq!(e.state, PairState::Missing, "not yet created");
        let e = eval(&[], std::slice::from_ref(&x), 60, 60);
        assert_eq!(
            (e.state, e.overdue),
            (PairState::Overdue, true),
            "expired: it stops counting"
        );
        let other = Exception {
            scope: ExceptionScope::System(patchaudit_domain::SystemId::parse("db-9").unwrap()),
            ..x.clone()
        };
        assert_eq!(eval(&[], &[other], 40, 40).state, PairState::Overdue);
        let e = eval(&[(12, Status::Success, false)], &[x], 40, 40);
        assert_eq!(
            e.state,
            PairState::AppliedOnTime,
            "an applied patch needs no exception"
        );
    }

    #[test]
    fn stale_systems_are_unknown_never_compliant() {
        let e = eval(&[(3, Status::Success, false)], &[], 3, 11);
        assert_eq!((e.state, e.overdue), (PairState::Unknown, false));
        let e = eval(&[], &[], 3, 40);
        assert_eq!((e.state, e.overdue), (PairState::Unknown, true));
        let x = Exception::parse(
            RawException {
                patch_id: Some("KB1".into()),
                system: Some("web-1".into()),
                reason: Some("r".into()),
                approver: Some("a".into()),
                expires_at: Some(day(90).to_rfc3339()),
                ..Default::default()
            },
            "exc-1".into(),
            day(1),
        )
        .unwrap();
        let e = eval(&[], &[x], 3, 40);
        assert_eq!(
            (e.state, e.overdue),
            (PairState::Unknown, false),
            "an accepted risk is not overdue, even on a stale system"
        );
        let e = evaluate(
            &entry("critical"),
            "web-1",
            &Tags::default(),
            None,
            None,
            &SlaPolicy::default(),
            &[],
            day(1),
        );
        assert_eq!(e.state, PairState::Unknown, "never heard from");
    }

    #[test]
    fn not_required_before_release_or_out_of_scope() {
        assert_eq!(eval(&[], &[], -1, -1).state, PairState::NotRequired);
        let scoped = CatalogEntry::parse(RawCatalogEntry {
            applies_to_tags: Some(vec!["env=prod".into()]),
            id: Some("KB1".into()),
            severity: Some("critical".into()),
            released_at: Some(day(0).to_rfc3339()),
            ..Default::default()
        })
        .unwrap();
        let e = evaluate(
            &scoped,
            "web-1",
            &Tags::default(),
            Some(day(5)),
            None,
            &SlaPolicy::default(),
            &[],
            day(5),
        );
        assert_eq!(e.state, PairState::NotRequired);
    }

    #[test]
    fn severity_none_is_never_overdue() {
        let e = evaluate(
            &entry("none"),
            "web-1",
            &Tags::default(),
            Some(day(400)),
            None,
            &SlaPolicy::default(),
            &[],
            day(400),
        );
        assert_eq!(
            (e.state, e.overdue, e.deadline),
            (PairState::Missing, false, None)
        );
    }
}
