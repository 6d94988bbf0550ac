//! Storage for the patchaudit ledger.
//!
//! The [`Store`] trait is the only thing the server and the CLI know about
//! storage. Each backend owns its schema and migrations and must pass the
//! [`conformance`] suite unchanged. The embedded default is [`SqliteStore`].
//!
//! Every backend upholds the ledger's invariants (see `ARCHITECTURE.md`):
//! events are only ever appended; `seq` is dense from 0; a batch is written
//! whole or not at all; an `event_id` names at most one event; and an append
//! is durable before it is acknowledged. Each commit also extends the
//! ledger's Merkle tree and stores a signed checkpoint of it, in the same
//! transaction (see [`tree`]).

pub mod compliance;
pub mod conformance;
mod derived;
mod group;
mod postgres;
mod rows;
mod sqlite;
pub mod stream;
pub mod tokens;
pub mod tree;

use async_trait::async_trait;
use compliance::{FactsSnapshot, Record, RecordChange, RecordKind};
use patchaudit_domain::{
    EventFilter, NewEvent, PatchSystems, RecordedEvent, SystemSummary, Timestamp,
};

pub use patchaudit_proofs::Hash;
pub use postgres::{PgOptions, PgStore};
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};
pub use tree::StoredCheckpoint;

/// What an append did with one event of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The event's position in the ledger.
    pub seq: u64,
    /// When the ledger recorded it (for a duplicate: when it first did).
    pub recorded_at: Timestamp,
    /// True when the event was already recorded under its `event_id` with
    /// identical content, so nothing new was written.
    pub duplicate: bool,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An `event_id` is already recorded with different content. Nothing of
    /// the batch was written.
    #[error("event_id {event_id:?} (event {index} of the batch) is already recorded as seq {existing_seq} with different content")]
    Conflict {
        /// The position of the offending event in the batch.
        index: usize,
        /// The reused idempotency key.
        event_id: String,
        /// The seq of the event already recorded under that key.
        existing_seq: u64,
    },
    /// The database cannot be reached or is busy; the caller may retry.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database holds data this build cannot read or that breaks an invariant.
    #[error("the database is inconsistent: {0}")]
    Corrupt(String),
    /// The database cannot be opened or migrated (bad path, newer schema, permissions).
    #[error("cannot open the database: {0}")]
    Open(String),
    /// A record to delete or revise does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Any other backend failure.
    #[error("storage error: {0}")]
    Internal(String),
}

/// The ledger's storage.
///
/// Implementations are shared between request handlers, so they are cheap to
/// call concurrently; they do their own pooling and batching.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends a batch atomically, in order, and returns one [`Appended`] per
    /// event. Events whose `event_id` is already recorded with identical
    /// content are returned as duplicates and not written again. If any
    /// `event_id` is recorded with different content, nothing is written and
    /// [`StoreError::Conflict`] names it. The batch is durable on return.
    async fn append(
        &self,
        batch: Vec<NewEvent>,
        recorded_by: &str,
    ) -> Result<Vec<Appended>, StoreError>;

    /// The event at `seq`, if the ledger is that long.
    async fn get(&self, seq: u64) -> Result<Option<RecordedEvent>, StoreError>;

    /// Up to `limit` events matching `filter`, in ascending `seq` order.
    async fn list(
        &self,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` systems ordered by id, starting strictly after `after`.
    async fn systems(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SystemSummary>, StoreError>;

    /// Where one patch stands on every system that has an event for it.
    async fn patch(&self, patch_id: &str) -> Result<PatchSystems, StoreError>;

    /// The number of events in the ledger, which is also the next `seq`.
    async fn len(&self) -> Result<u64, StoreError>;

    /// Whether the ledger has no event yet.
    async fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len().await? == 0)
    }

    /// The latest signed checkpoint, if any event was ever recorded. It
    /// always covers the whole ledger: it is written in the same
    /// transaction as the events it commits to.
    async fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// Up to `limit` checkpoints of size at least `from_size`, by ascending size.
    async fn checkpoints(
        &self,
        from_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError>;

    /// The stored subtree hashes at `positions` (see
    /// [`patchaudit_proofs::stored_hash_index`]) that exist, with their positions.
    async fn tree_hashes(&self, positions: &[u64]) -> Result<Vec<(u64, Hash)>, StoreError>;

    /// Up to `limit` stored subtree hashes from position `from` on, in order.
    async fn tree_hash_range(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Hash)>, StoreError>;

    /// The leaf hash of up to `limit` events from seq `from` on, rebuilt
    /// from each event's stored fields (not read from the stored tree), in
    /// seq order. This is what `patchaudit verify` replays; it does not
    /// re-validate the fields, since any change shows in the leaf.
    async fn leaf_hashes(&self, from: u64, limit: usize) -> Result<Vec<(u64, Hash)>, StoreError>;

    /// Appends revisions of records of `kind` in one transaction, as
    /// `actor`, and returns the current revision of each. A change whose
    /// body equals the current one writes nothing (`changed` is false).
    /// Deleting a record that does not exist is [`StoreError::NotFound`].
    async fn put_records(
        &self,
        kind: RecordKind,
        changes: Vec<RecordChange>,
        actor: &str,
    ) -> Result<Vec<Record>, StoreError>;

    /// The latest revision of every record of `kind`, or the latest changed
    /// by `as_of`; deleted records show with no body. Ordered by id.
    async fn records(
        &self,
        kind: RecordKind,
        as_of: Option<Timestamp>,
    ) -> Result<Vec<Record>, StoreError>;

    /// Every revision of one record, oldest first.
    async fn record_history(&self, kind: RecordKind, id: &str) -> Result<Vec<Record>, StoreError>;

    /// Up to `limit` revisions of every kind with `rev` above `after_rev`,
    /// in `rev` order: the tool's own audit trail, read page by page.
    async fn record_changes(
        &self,
        after_rev: u64,
        limit: usize,
    ) -> Result<Vec<(RecordKind, Record)>, StoreError>;

    /// The facts of every (patch, system) pair, with the checkpoint and the
    /// systems, from one snapshot. Without `as_of` they are the facts kept
    /// up to date on ingest; with it they are folded again from the events
    /// of the latest checkpoint recorded by then.
    async fn pair_facts(&self, as_of: Option<Timestamp>) -> Result<FactsSnapshot, StoreError>;

    /// Like `pair_facts(None)`, but only the pairs an append at or after
    /// seq `changed_since` touched (all of them for 0). The checkpoint and
    /// the systems are complete. A reader that keeps the facts of the
    /// checkpoint of size N in memory stays exact by merging in
    /// `pair_facts_since(N)`.
    async fn pair_facts_since(&self, changed_since: u64) -> Result<FactsSnapshot, StoreError>;

    /// The facts folded again from the events below exactly `size`, with
    /// the checkpoint of that size ([`StoreError::NotFound`] if no commit
    /// ended there). This is how a report that names its checkpoint is
    /// derived again exactly, whatever was recorded since.
    async fn pair_facts_at_size(&self, size: u64) -> Result<FactsSnapshot, StoreError>;

    /// The `detail` of each event at `seqs` that has one, read in batches;
    /// a report shows the latest failure of thousands of pairs at once.
    async fn details(
        &self,
        seqs: &[u64],
    ) -> Result<std::collections::HashMap<u64, String>, StoreError>;

    /// Every stream cursor, by name.
    async fn cursors(&self) -> Result<Vec<stream::Cursor>, StoreError>;

    /// Moves the cursor `name` to `position`, creating it if needed. A
    /// cursor never moves back: a lower position than the stored one is
    /// ignored, so a slow writer cannot undo a faster one's progress.
    async fn save_cursor(&self, name: &str, position: u64) -> Result<(), StoreError>;

    /// Keeps a delivery that gave up, and returns its id.
    async fn add_dead_letter(&self, letter: stream::NewDeadLetter) -> Result<u64, StoreError>;

    /// The dead letters of `sink` (of every sink without one), oldest first.
    async fn dead_letters(&self, sink: Option<&str>)
        -> Result<Vec<stream::DeadLetter>, StoreError>;

    /// Removes a dead letter once it was delivered again; false if there
    /// was none with that id.
    async fn remove_dead_letter(&self, id: u64) -> Result<bool, StoreError>;

    /// Records an alert unless one with the same `key` exists; returns the
    /// new alert, or `None` when the key was already raised.
    async fn raise_alert(
        &self,
        key: &str,
        rule: &str,
        body: &str,
    ) -> Result<Option<stream::Alert>, StoreError>;

    /// Up to `limit` alerts with an id above `after`, oldest first.
    async fn alerts(&self, after: u64, limit: usize) -> Result<Vec<stream::Alert>, StoreError>;

    /// Checks that the database answers; used by `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// A short name of the backend for logs and metrics, such as `sqlite`.
    fn backend(&self) -> &'static str;
}
