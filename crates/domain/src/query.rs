//! What can be asked of the ledger, and the shapes of the answers.

use crate::event::Status;
use crate::time::Timestamp;

/// A filter over the ledger's events. Every set field must match; ranges
/// are half-open (`from` inclusive, `to` exclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events of this system.
    pub system: Option<String>,
    /// Only events of this patch.
    pub patch_id: Option<String>,
    /// Only events with this outcome.
    pub status: Option<Status>,
    /// Only events from this source.
    pub source: Option<String>,
    /// Only events applied at or after this instant.
    pub applied_from: Option<Timestamp>,
    /// Only events applied before this instant.
    pub applied_to: Option<Timestamp>,
    /// Only events with `seq` at or above this.
    pub seq_from: Option<u64>,
    /// Only events with `seq` below this.
    pub seq_to: Option<u64>,
}

impl EventFilter {
    /// Narrows the filter to events strictly after `seq`, which is how a
    /// cursor resumes a listing without an OFFSET scan.
    pub fn after(&self, seq: u64) -> EventFilter {
        let from = seq.saturating_add(1);
        EventFilter {
            seq_from: Some(self.seq_from.map_or(from, |f| f.max(from))),
            ..self.clone()
        }
    }

    /// Whether the filter can match nothing, so a store can skip the query.
    pub fn is_empty_range(&self) -> bool {
        matches!((self.seq_from, self.seq_to), (Some(a), Some(b)) if a >= b)
            || matches!((self.applied_from, self.applied_to), (Some(a), Some(b)) if a >= b)
    }
}

/// One system as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemSummary {
    /// The system's id.
    pub system: String,
    /// The latest `applied_at` among its events.
    pub last_applied_at: Timestamp,
    /// The `seq` of its most recently recorded event.
    pub last_seq: u64,
    /// How many of its events succeeded.
    pub success: u64,
    /// How many failed.
    pub failure: u64,
    /// How many were rollbacks.
    pub rolled_back: u64,
}

/// The latest known state of one patch on one system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchSystemState {
    /// The system.
    pub system: String,
    /// The status of the latest event (by `applied_at`, then `seq`).
    pub status: Status,
    /// When that latest event was applied.
    pub applied_at: Timestamp,
    /// The `seq` of that latest event.
    pub seq: u64,
    /// How many events this pair has in all.
    pub attempts: u64,
}

/// Where one patch stands across the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchSystems {
    /// The patch.
    pub patch_id: String,
    /// Each system that has any event for the patch, ordered by system id.
    pub systems: Vec<PatchSystemState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_never_moves_a_cursor_backwards() {
        let f = EventFilter {
            seq_from: Some(10),
            ..Default::default()
        };
        assert_eq!(f.after(3).seq_from, Some(10));
        assert_eq!(f.after(10).seq_from, Some(11));
        assert_eq!(EventFilter::default().after(0).seq_from, Some(1));
        assert_eq!(
            EventFilter::default().after(u64::MAX).seq_from,
            Some(u64::MAX)
        );
    }

    #[test]
    fn empty_ranges_are_detected() {
        let seq = |a, b| EventFilter {
            seq_from: Some(a),
            seq_to: Some(b),
            ..Default::default()
        };
        assert!(seq(5, 5).is_empty_range());
        assert!(!seq(5, 6).is_empty_range());
        let t = Timestamp::from_micros;
        let at = EventFilter {
            applied_from: Some(t(2)),
            applied_to: Some(t(1)),
            ..Default::default()
        };
        assert!(at.is_empty_range());
        assert!(!EventFilter::default().is_empty_range());
    }
}
