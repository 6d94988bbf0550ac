//! The summaries every backend derives from the events of an append, in the
//! same transaction: per system, and per (patch, system) pair.
//!
//! Backends aggregate an append in memory first, then upsert one row per
//! key. That keeps the derived tables exact and costs one statement per key
//! instead of one per event.

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
            });
        p.attempts += 1;
        if (applied, seq) >= (p.applied_at, p.seq) {
            p.status = ev.status;
            p.applied_at = applied;
            p.seq = seq;
        }
    }
}
