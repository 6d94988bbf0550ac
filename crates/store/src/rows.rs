//! Rebuilding domain events from stored rows, shared by every backend.

use crate::StoreError;
use patchaudit_domain::{
    CveId, EventId, NewEvent, PatchId, RecordedEvent, Status, SystemId, Timestamp,
};

/// The columns every event query selects, in the order [`EventRow`] is read.
pub(crate) const EVENT_COLUMNS: &str =
    "seq, event_id, patch_id, system, applied_at, status, package, \
     from_version, to_version, source, actor, detail, cves, reboot_required, change_ref, \
     recorded_at, recorded_by";

/// An event's columns as a backend read them, before they are trusted.
pub(crate) struct EventRow {
    pub seq: i64,
    pub event_id: Option<String>,
    pub patch_id: String,
    pub system: String,
    /// Microseconds since the epoch.
    pub applied_at: i64,
    pub status: String,
    pub package: Option<String>,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    pub source: Option<String>,
    pub actor: Option<String>,
    pub detail: Option<String>,
    pub cves: Vec<String>,
    pub reboot_required: Option<bool>,
    pub change_ref: Option<String>,
    /// Microseconds since the epoch.
    pub recorded_at: i64,
    pub recorded_by: String,
}

impl EventRow {
    /// Validates the values again on the way out: a row edited behind the
    /// ledger's back is reported as corrupt, not served.
    pub fn into_event(self) -> Result<RecordedEvent, StoreError> {
        let seq = self.seq;
        let corrupt = |what: String| StoreError::Corrupt(format!("event seq {seq}: {what}"));
        let event_id = self
            .event_id
            .map(EventId::parse)
            .transpose()
            .map_err(|(_, m)| corrupt(format!("event_id {m}")))?;
        let patch_id =
            PatchId::parse(self.patch_id).map_err(|(_, m)| corrupt(format!("patch_id {m}")))?;
        let system =
            SystemId::parse(self.system).map_err(|(_, m)| corrupt(format!("system {m}")))?;
        let status: Status = self
            .status
            .parse()
            .map_err(|m| corrupt(format!("status {m}")))?;
        let cves = self
            .cves
            .iter()
            .map(|c| CveId::parse(c))
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;
        Ok(RecordedEvent {
            seq: u64::try_from(seq).map_err(|_| corrupt("negative seq".into()))?,
            recorded_at: Timestamp::from_micros(self.recorded_at),
            recorded_by: self.recorded_by,
            event: NewEvent {
                event_id,
                patch_id,
                system,
                applied_at: Timestamp::from_micros(self.applied_at),
                status,
                package: self.package,
                from_version: self.from_version,
                to_version: self.to_version,
                source: self.source,
                actor: self.actor,
                detail: self.detail,
                cves,
                reboot_required: self.reboot_required,
                change_ref: self.change_ref,
            },
        })
    }
}

/// A filter value, before a backend binds it in its own types.
pub(crate) enum FilterValue {
    Text(String),
    Int(i64),
    /// Microseconds since the epoch.
    Micros(i64),
}

/// Converts a count or seq for SQL, saturating (no ledger reaches 2^63).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The conditions of a filter, as `column operator` fragments with their
/// values; a backend appends its placeholder to each fragment and joins them
/// with AND.
pub(crate) fn filter_clauses(
    f: &patchaudit_domain::EventFilter,
) -> Vec<(&'static str, FilterValue)> {
    let mut out = Vec::new();
    if let Some(s) = &f.system {
        out.push(("system =", FilterValue::Text(s.clone())));
    }
    if let Some(s) = &f.patch_id {
        out.push(("patch_id =", FilterValue::Text(s.clone())));
    }
    if let Some(s) = f.status {
        out.push(("status =", FilterValue::Text(s.as_str().to_owned())));
    }
    if let Some(s) = &f.source {
        out.push(("source =", FilterValue::Text(s.clone())));
    }
    if let Some(t) = f.applied_from {
        out.push(("applied_at >=", FilterValue::Micros(t.as_micros())));
    }
    if let Some(t) = f.applied_to {
        out.push(("applied_at <", FilterValue::Micros(t.as_micros())));
    }
    if let Some(s) = f.seq_from {
        out.push(("seq >=", FilterValue::Int(to_i64(s))));
    }
    if let Some(s) = f.seq_to {
        out.push(("seq <", FilterValue::Int(to_i64(s))));
    }
    out
}

/// Joins rendered conditions into a WHERE clause (empty when there are none).
pub(crate) fn where_clause(conditions: Vec<String>) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

/// Hashes a leaf from borrowed row values, reusing `buf`.
pub(crate) fn leaf_hash_of(
    view: &patchaudit_domain::LeafView<'_>,
    buf: &mut Vec<u8>,
) -> crate::Hash {
    buf.clear();
    view.write_leaf(buf);
    patchaudit_proofs::leaf_hash(buf)
}

/// A status read back from a row, for a leaf.
pub(crate) fn leaf_status(seq: i64, s: &str) -> Result<Status, StoreError> {
    s.parse()
        .map_err(|m| StoreError::Corrupt(format!("event seq {seq}: status {m}")))
}

/// A stored tree hash read back, checked to be 32 bytes.
pub(crate) fn stored_hash(position: i64, bytes: &[u8]) -> Result<(u64, crate::Hash), StoreError> {
    let hash = crate::Hash::try_from(bytes).map_err(|_| {
        StoreError::Corrupt(format!(
            "the tree hash at position {position} has {} bytes",
            bytes.len()
        ))
    })?;
    Ok((position as u64, hash))
}

/// A checkpoint row read back, its root checked to be 32 bytes.
pub(crate) fn stored_checkpoint(
    size: i64,
    root: &[u8],
    note: String,
    recorded_at: Timestamp,
) -> Result<crate::StoredCheckpoint, StoreError> {
    Ok(crate::StoredCheckpoint {
        size: size as u64,
        root: crate::Hash::try_from(root).map_err(|_| {
            StoreError::Corrupt(format!(
                "the checkpoint of size {size} has a root of {} bytes",
                root.len()
            ))
        })?,
        note,
        recorded_at,
    })
}
