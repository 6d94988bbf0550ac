//! What the stream keeps in the database beside the ledger: where each
//! consumer of the ledger stands, the deliveries that gave up, and the
//! alerts raised.
//!
//! The ledger itself is the outbox: an event is in it once its append
//! committed, in seq order, and it never changes. So a sink needs no copy of
//! the event, only a cursor, the next seq it has not yet delivered. Cursors
//! move only forward and may lag what was delivered, which makes delivery
//! at least once; each message carries a stable id so consumers drop the
//! repeats.
//!
//! Unlike events, cursors are state, not history, and dead letters are
//! removed when replayed. Alerts are history: written once, never changed.

use patchaudit_domain::Timestamp;

/// Where one consumer stands in a sequence (the events by seq, or the
/// alerts by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The consumer's name, such as `nats/events`.
    pub name: String,
    /// The next position it has not yet consumed: every position below was
    /// delivered.
    pub position: u64,
    /// When the cursor last moved.
    pub updated_at: Timestamp,
}

/// A delivery that failed every retry and was set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead letter's id, increasing.
    pub id: u64,
    /// The sink that gave up, such as `webhook:1`.
    pub sink: String,
    /// The stable message id of what was being delivered.
    pub message_id: String,
    /// The message body, exactly as it was sent.
    pub payload: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The error of the last attempt.
    pub error: String,
    /// When the sink gave up.
    pub failed_at: Timestamp,
}

/// A new dead letter to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    /// The sink that gave up.
    pub sink: String,
    /// The stable message id.
    pub message_id: String,
    /// The message body.
    pub payload: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The error of the last attempt.
    pub error: String,
}

/// An alert the rules raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Increasing from 1 in the order alerts were raised (with gaps: an
    /// id may be spent on a key already raised).
    pub id: u64,
    /// What makes the alert unique: raising the same key twice records it
    /// once, so a rule evaluated again after a restart raises nothing new.
    pub key: String,
    /// The rule that raised it, such as `bad_patch`.
    pub rule: String,
    /// When it was raised.
    pub raised_at: Timestamp,
    /// The alert's content as JSON.
    pub body: String,
}
