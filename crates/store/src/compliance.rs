//! What the stores keep for compliance, beside the ledger.
//!
//! Two kinds of data:
//!
//! - **Records**: the catalog, system tags, the SLA policy and exceptions.
//!   They are kept as an append-only history of revisions (who changed
//!   what, and when) in one `records` table; the current state of a record
//!   is its latest revision, and its state at an instant T is its latest
//!   revision changed by T. A revision's body is JSON in the format of this
//!   module's codecs; a deleted record's last revision has no body.
//! - **Pair facts**: one [`PairFacts`] per (patch, system), kept up to date
//!   by every append in the same transaction, so a report reads them
//!   instead of every event. [`Store::pair_facts`] with an instant folds
//!   them again from the events the ledger held then.
//!
//! The functions at the bottom ([`report_input`], [`put_catalog`], ...) are
//! the typed API the server and the CLI use over any [`Store`].

use crate::{Store, StoreError, StoredCheckpoint};
use patchaudit_compliance::report::CheckpointRef;
use patchaudit_compliance::{
    AffectedPackage, AppliesTo, CatalogEntry, Exception, ExceptionScope, Inventory, PairFacts,
    RawInventory, RawPackage, ReportInput, ScopedSla, SlaDays, SlaPolicy, SystemView, Tag, Tags,
};
use patchaudit_domain::{CveId, PatchId, SystemId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// The kinds of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// Catalog entries, by patch id.
    Catalog,
    /// System tags, by system id.
    System,
    /// The SLA policy; its one id is `default`.
    Policy,
    /// Exceptions, by exception id.
    Exception,
    /// API tokens, by token id (see [`crate::tokens`]).
    Token,
    /// Installed-package inventories, by system id: the latest is the
    /// system's snapshot, and the earlier ones its history.
    Inventory,
}

impl RecordKind {
    /// Every kind, in a stable order.
    pub const ALL: [RecordKind; 6] = [
        RecordKind::Catalog,
        RecordKind::System,
        RecordKind::Policy,
        RecordKind::Exception,
        RecordKind::Token,
        RecordKind::Inventory,
    ];

    /// The kind stored under `name`, if any.
    pub fn parse(name: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Catalog => "catalog",
            RecordKind::System => "system",
            RecordKind::Policy => "policy",
            RecordKind::Exception => "exception",
            RecordKind::Token => "token",
            RecordKind::Inventory => "inventory",
        }
    }
}

/// The id of the one policy record.
pub const POLICY_ID: &str = "default";

/// A change to write: a new body for a record, or `None` to delete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordChange {
    /// The record's id within its kind.
    pub id: String,
    /// The new body, or `None` to delete.
    pub body: Option<String>,
}

/// One revision of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's id within its kind.
    pub id: String,
    /// The revision number: increasing across all records of a store.
    pub rev: u64,
    /// When the revision was written.
    pub changed_at: Timestamp,
    /// Who wrote it.
    pub changed_by: String,
    /// The body; `None` for a deletion.
    pub body: Option<String>,
    /// For [`Store::put_records`]: whether this call wrote the revision
    /// (false when the body equalled the current one, so nothing changed).
    pub changed: bool,
}

/// Pair facts and what they were computed from, read in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct FactsSnapshot {
    /// The checkpoint of the events the facts cover.
    pub checkpoint: Option<StoredCheckpoint>,
    /// Facts by patch id, then system.
    pub facts: HashMap<String, HashMap<String, PairFacts>>,
    /// Every system with events: (id, first seen, last seen), by the
    /// `recorded_at` of its first and last events.
    pub systems: Vec<(String, Timestamp, Timestamp)>,
}

// ---- codecs: the JSON stored in a record's body ----

#[derive(Serialize, Deserialize)]
struct CatalogDoc {
    title: String,
    severity: String,
    released_at: i64,
    modified_at: Option<i64>,
    cves: Vec<String>,
    aliases: Vec<String>,
    packages: Vec<(String, String, Option<String>)>,
    applies_to: AppliesDoc,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AppliesDoc {
    All,
    Tags(Vec<String>),
    Systems(Vec<String>),
}

fn corrupt(what: &str, id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("stored {what} record {id:?}: {e}"))
}

/// Encodes a catalog entry as a record body.
pub fn encode_catalog(e: &CatalogEntry) -> String {
    let doc = CatalogDoc {
        title: e.title.clone(),
        severity: e.severity.as_str().to_owned(),
        released_at: e.released_at.as_micros(),
        modified_at: e.modified_at.map(Timestamp::as_micros),
        cves: e.cves.iter().map(|c| c.as_str().to_owned()).collect(),
        aliases: e.aliases.clone(),
        packages: e
            .packages
            .iter()
            .map(|p| (p.ecosystem.clone(), p.name.clone(), p.fixed.clone()))
            .collect(),
        applies_to: match &e.applies_to {
            AppliesTo::All => AppliesDoc::All,
            AppliesTo::Tags(t) => AppliesDoc::Tags(t.iter().map(Tag::to_string).collect()),
            AppliesTo::Systems(s) => {
                AppliesDoc::Systems(s.iter().map(|s| s.as_str().to_owned()).collect())
            }
        },
    };
    serde_json::to_string(&doc).expect("a catalog document always serialises")
}

/// Decodes a catalog record body.
pub fn decode_catalog(id: &str, body: &str) -> Result<CatalogEntry, StoreError> {
    let bad = |e: &dyn std::fmt::Display| corrupt("catalog", id, e);
    let d: CatalogDoc = serde_json::from_str(body).map_err(|e| bad(&e))?;
    let cves = d
        .cves
        .iter()
        .map(|c| CveId::parse(c).map_err(|e| bad(&e)))
        .collect::<Result<_, _>>()?;
    let applies_to = match d.applies_to {
        AppliesDoc::All => AppliesTo::All,
        AppliesDoc::Tags(t) => AppliesTo::Tags(
            t.iter()
                .map(|t| Tag::parse(t, "applies_to").map_err(|e| bad(&e)))
                .collect::<Result<_, _>>()?,
        ),
        AppliesDoc::Systems(s) => AppliesTo::Systems(
            s.into_iter()
                .map(|s| SystemId::parse(s).map_err(|e| bad(&e.1)))
                .collect::<Result<BTreeSet<_>, _>>()?,
        ),
    };
    Ok(CatalogEntry {
        id: PatchId::parse(id).map_err(|e| bad(&e.1))?,
        title: d.title,
        severity: d.severity.parse().map_err(|e: String| bad(&e))?,
        released_at: Timestamp::from_micros(d.released_at),
        modified_at: d.modified_at.map(Timestamp::from_micros),
        cves,
        aliases: d.aliases,
        packages: d
            .packages
            .into_iter()
            .map(|(ecosystem, name, fixed)| AffectedPackage {
                ecosystem,
                name,
                fixed,
            })
            .collect(),
        applies_to,
    })
}

/// Encodes a system's tags as a record body.
pub fn encode_tags(t: &Tags) -> String {
    serde_json::to_string(&t.to_strings()).expect("strings always serialise")
}

/// Decodes a system record body.
pub fn decode_tags(id: &str, body: &str) -> Result<Tags, StoreError> {
    let v: Vec<String> = serde_json::from_str(body).map_err(|e| corrupt("system", id, e))?;
    Tags::parse(v.iter().map(String::as_str), "tags").map_err(|e| corrupt("system", id, e))
}

#[derive(Serialize, Deserialize)]
struct DaysDoc([Option<u32>; 4]);

impl From<&SlaDays> for DaysDoc {
    fn from(d: &SlaDays) -> Self {
        DaysDoc([d.critical, d.high, d.medium, d.low])
    }
}

impl From<DaysDoc> for SlaDays {
    fn from(d: DaysDoc) -> Self {
        let [critical, high, medium, low] = d.0;
        SlaDays {
            critical,
            high,
            medium,
            low,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PolicyDoc {
    default: DaysDoc,
    scoped: Vec<(String, DaysDoc)>,
    stale_after_days: u32,
}

/// Encodes the SLA policy as a record body.
pub fn encode_policy(p: &SlaPolicy) -> String {
    let doc = PolicyDoc {
        default: (&p.default).into(),
        scoped: p
            .scoped
            .iter()
            .map(|s| (s.tag.to_string(), (&s.days).into()))
            .collect(),
        stale_after_days: p.stale_after_days,
    };
    serde_json::to_string(&doc).expect("a policy document always serialises")
}

/// Decodes the policy record body.
pub fn decode_policy(body: &str) -> Result<SlaPolicy, StoreError> {
    let bad = |e: &dyn std::fmt::Display| corrupt("policy", POLICY_ID, e);
    let d: PolicyDoc = serde_json::from_str(body).map_err(|e| bad(&e))?;
    Ok(SlaPolicy {
        default: d.default.into(),
        scoped: d
            .scoped
            .into_iter()
            .map(|(t, days)| {
                Ok(ScopedSla {
                    tag: Tag::parse(&t, "scoped").map_err(|e| bad(&e))?,
                    days: days.into(),
                })
            })
            .collect::<Result<_, StoreError>>()?,
        stale_after_days: d.stale_after_days,
    })
}

#[derive(Serialize, Deserialize)]
struct ExceptionDoc {
    patch_id: String,
    system: Option<String>,
    tag: Option<String>,
    reason: String,
    approver: String,
    created_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
}

/// Encodes an exception as a record body.
pub fn encode_exception(x: &Exception) -> String {
    let (system, tag) = match &x.scope {
        ExceptionScope::System(s) => (Some(s.as_str().to_owned()), None),
        ExceptionScope::Tag(t) => (None, Some(t.to_string())),
    };
    let doc = ExceptionDoc {
        patch_id: x.patch_id.as_str().to_owned(),
        system,
        tag,
        reason: x.reason.clone(),
        approver: x.approver.clone(),
        created_at: x.created_at.as_micros(),
        expires_at: x.expires_at.as_micros(),
        revoked_at: x.revoked_at.map(Timestamp::as_micros),
    };
    serde_json::to_string(&doc).expect("an exception document always serialises")
}

/// Decodes an exception record body.
pub fn decode_exception(id: &str, body: &str) -> Result<Exception, StoreError> {
    let bad = |e: &dyn std::fmt::Display| corrupt("exception", id, e);
    let d: ExceptionDoc = serde_json::from_str(body).map_err(|e| bad(&e))?;
    let scope = match (d.system, d.tag) {
        (Some(s), None) => ExceptionScope::System(SystemId::parse(s).map_err(|e| bad(&e.1))?),
        (None, Some(t)) => ExceptionScope::Tag(Tag::parse(&t, "tag").map_err(|e| bad(&e))?),
        _ => return Err(bad(&"the scope must be one system or one tag")),
    };
    Ok(Exception {
        id: id.to_owned(),
        patch_id: PatchId::parse(d.patch_id).map_err(|e| bad(&e.1))?,
        scope,
        reason: d.reason,
        approver: d.approver,
        created_at: Timestamp::from_micros(d.created_at),
        expires_at: Timestamp::from_micros(d.expires_at),
        revoked_at: d.revoked_at.map(Timestamp::from_micros),
    })
}

#[derive(Serialize, Deserialize)]
struct InventoryDoc {
    format: String,
    /// `(name, version, arch)`: tuples, since an inventory holds thousands.
    packages: Vec<(String, String, Option<String>)>,
}

/// Encodes an inventory as a record body. The time is not part of it: the
/// record's `changed_at` is when this package list was first recorded, and
/// a host that re-sends an unchanged list writes nothing.
pub fn encode_inventory(inv: &Inventory) -> String {
    let doc = InventoryDoc {
        format: inv.format.as_str().to_owned(),
        packages: inv
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone(), p.arch.clone()))
            .collect(),
    };
    serde_json::to_string(&doc).expect("an inventory document always serialises")
}

/// Decodes an inventory record body written at `changed_at`.
pub fn decode_inventory(
    id: &str,
    body: &str,
    changed_at: Timestamp,
) -> Result<Inventory, StoreError> {
    let d: InventoryDoc = serde_json::from_str(body).map_err(|e| corrupt("inventory", id, e))?;
    let raw = RawInventory {
        format: Some(d.format),
        packages: d
            .packages
            .into_iter()
            .map(|(name, version, arch)| RawPackage {
                name: Some(name),
                version: Some(version),
                arch,
            })
            .collect(),
    };
    Inventory::parse(raw, changed_at).map_err(|errors| {
        let first = errors.first().map_or(String::new(), |e| e.message.clone());
        corrupt("inventory", id, first)
    })
}

// ---- the typed API over any store ----

fn live(records: Vec<Record>) -> impl Iterator<Item = (String, String)> {
    records
        .into_iter()
        .filter_map(|r| r.body.map(|b| (r.id, b)))
}

/// The catalog as it stands, or as it stood at `as_of`, by id.
pub async fn catalog(
    store: &dyn Store,
    as_of: Option<Timestamp>,
) -> Result<Vec<CatalogEntry>, StoreError> {
    live(store.records(RecordKind::Catalog, as_of).await?)
        .map(|(id, b)| decode_catalog(&id, &b))
        .collect()
}

/// Writes catalog entries in one transaction. An entry equal to the
/// current one is not written again; the result says which changed.
pub async fn put_catalog(
    store: &dyn Store,
    entries: &[CatalogEntry],
    actor: &str,
) -> Result<Vec<Record>, StoreError> {
    let changes = entries
        .iter()
        .map(|e| RecordChange {
            id: e.id.as_str().to_owned(),
            body: Some(encode_catalog(e)),
        })
        .collect();
    store.put_records(RecordKind::Catalog, changes, actor).await
}

/// Every system's tags as they stand, or stood at `as_of`.
pub async fn system_tags(
    store: &dyn Store,
    as_of: Option<Timestamp>,
) -> Result<HashMap<String, Tags>, StoreError> {
    live(store.records(RecordKind::System, as_of).await?)
        .map(|(id, b)| {
            let t = decode_tags(&id, &b)?;
            Ok((id, t))
        })
        .collect()
}

/// The current tags of one system (none if it has never been tagged).
pub async fn tags_of(store: &dyn Store, system: &str) -> Result<Tags, StoreError> {
    let history = store.record_history(RecordKind::System, system).await?;
    match history.last().and_then(|r| r.body.as_deref()) {
        Some(body) => decode_tags(system, body),
        None => Ok(Tags::default()),
    }
}

/// Replaces a system's tags.
pub async fn set_system_tags(
    store: &dyn Store,
    system: &SystemId,
    tags: &Tags,
    actor: &str,
) -> Result<Record, StoreError> {
    let change = RecordChange {
        id: system.as_str().to_owned(),
        body: Some(encode_tags(tags)),
    };
    let mut r = store
        .put_records(RecordKind::System, vec![change], actor)
        .await?;
    r.pop()
        .ok_or_else(|| StoreError::Internal("put_records returned nothing".into()))
}

/// The SLA policy as it stands, or stood at `as_of`; the defaults if never set.
pub async fn policy(store: &dyn Store, as_of: Option<Timestamp>) -> Result<SlaPolicy, StoreError> {
    match live(store.records(RecordKind::Policy, as_of).await?).next() {
        Some((_, b)) => decode_policy(&b),
        None => Ok(SlaPolicy::default()),
    }
}

/// Replaces the SLA policy.
pub async fn put_policy(
    store: &dyn Store,
    policy: &SlaPolicy,
    actor: &str,
) -> Result<Record, StoreError> {
    let change = RecordChange {
        id: POLICY_ID.to_owned(),
        body: Some(encode_policy(policy)),
    };
    let mut r = store
        .put_records(RecordKind::Policy, vec![change], actor)
        .await?;
    r.pop()
        .ok_or_else(|| StoreError::Internal("put_records returned nothing".into()))
}

/// Every exception as it stands, or stood at `as_of`, expired and revoked ones included.
pub async fn exceptions(
    store: &dyn Store,
    as_of: Option<Timestamp>,
) -> Result<Vec<Exception>, StoreError> {
    live(store.records(RecordKind::Exception, as_of).await?)
        .map(|(id, b)| decode_exception(&id, &b))
        .collect()
}

/// Writes an exception (a new one, or a revision such as its revocation).
pub async fn put_exception(
    store: &dyn Store,
    x: &Exception,
    actor: &str,
) -> Result<Record, StoreError> {
    let change = RecordChange {
        id: x.id.clone(),
        body: Some(encode_exception(x)),
    };
    let mut r = store
        .put_records(RecordKind::Exception, vec![change], actor)
        .await?;
    r.pop()
        .ok_or_else(|| StoreError::Internal("put_records returned nothing".into()))
}

/// Replaces a system's inventory. An unchanged package list writes nothing
/// (`changed` is false on the result), so a collector that runs every few
/// minutes adds a revision only when the host's packages changed.
pub async fn put_inventory(
    store: &dyn Store,
    system: &SystemId,
    inventory: &Inventory,
    actor: &str,
) -> Result<Record, StoreError> {
    let change = RecordChange {
        id: system.as_str().to_owned(),
        body: Some(encode_inventory(inventory)),
    };
    let mut r = store
        .put_records(RecordKind::Inventory, vec![change], actor)
        .await?;
    r.pop()
        .ok_or_else(|| StoreError::Internal("put_records returned nothing".into()))
}

/// One system's current inventory, with the revision that wrote it; `None`
/// if it never sent one.
pub async fn inventory_of(
    store: &dyn Store,
    system: &str,
) -> Result<Option<(Inventory, Record)>, StoreError> {
    let mut history = store.record_history(RecordKind::Inventory, system).await?;
    match history.pop() {
        Some(r) => match r.body.as_deref() {
            Some(body) => Ok(Some((decode_inventory(system, body, r.changed_at)?, r))),
            None => Ok(None),
        },
        None => Ok(None),
    }
}

/// Every system's inventory as it stands, or stood at `as_of`.
pub async fn inventories(
    store: &dyn Store,
    as_of: Option<Timestamp>,
) -> Result<HashMap<String, Inventory>, StoreError> {
    store
        .records(RecordKind::Inventory, as_of)
        .await?
        .into_iter()
        .filter_map(|r| {
            let body = r.body?;
            Some(decode_inventory(&r.id, &body, r.changed_at).map(|i| (r.id, i)))
        })
        .collect()
}

/// Reads everything a report needs, as the ledger and the records stand
/// now, or as they stood at `as_of`.
///
/// The pair facts and the checkpoint come from one snapshot, so the report
/// covers exactly the events below the checkpoint's size. Systems are those
/// with events, those with tags and those with an inventory; a system known
/// only by its tags or its inventory was never heard from and so is stale.
pub async fn report_input(
    store: &dyn Store,
    as_of: Option<Timestamp>,
) -> Result<ReportInput, StoreError> {
    let at = as_of.unwrap_or_else(Timestamp::now);
    // Records are read as of `at` in both cases, so a report "now" and a
    // later report "as of" that instant see the same catalog and policy.
    let (snapshot, records) = futures::try_join!(store.pair_facts(as_of), read_records(store, at))?;
    Ok(assemble(at, as_of.is_some(), snapshot, records))
}

/// Reads what a report at instant `at` over exactly the events below the
/// checkpoint of `size` needs: how a report that names its instant and its
/// checkpoint is derived again, whatever was recorded since.
pub async fn report_input_at(
    store: &dyn Store,
    at: Timestamp,
    size: u64,
) -> Result<ReportInput, StoreError> {
    let (snapshot, records) =
        futures::try_join!(store.pair_facts_at_size(size), read_records(store, at))?;
    Ok(assemble(at, true, snapshot, records))
}

/// The records a report reads, as they stood at one instant.
struct Records {
    catalog: Vec<CatalogEntry>,
    tags: HashMap<String, Tags>,
    policy: SlaPolicy,
    exceptions: Vec<Exception>,
    inventories: HashMap<String, Inventory>,
}

async fn read_records(store: &dyn Store, at: Timestamp) -> Result<Records, StoreError> {
    let (catalog, tags, policy, exceptions, inventories) = futures::try_join!(
        catalog(store, Some(at)),
        system_tags(store, Some(at)),
        policy(store, Some(at)),
        exceptions(store, Some(at)),
        inventories(store, Some(at)),
    )?;
    Ok(Records {
        catalog,
        tags,
        policy,
        exceptions,
        inventories,
    })
}

fn assemble(at: Timestamp, as_of: bool, snapshot: FactsSnapshot, r: Records) -> ReportInput {
    let mut seen: HashMap<String, (Timestamp, Timestamp)> = snapshot
        .systems
        .into_iter()
        .map(|(id, first, last)| (id, (first, last)))
        .collect();
    let mut systems: Vec<SystemView> = r
        .tags
        .into_iter()
        .map(|(id, tags)| {
            let s = seen.remove(&id);
            SystemView {
                id,
                tags,
                first_seen: s.map(|s| s.0),
                last_seen: s.map(|s| s.1),
            }
        })
        .collect();
    systems.extend(seen.into_iter().map(|(id, (first, last))| SystemView {
        id,
        tags: Tags::default(),
        first_seen: Some(first),
        last_seen: Some(last),
    }));
    systems.sort_by(|a, b| a.id.cmp(&b.id));
    // A system known only by its inventory has no events, so, like one
    // known only by its tags, it was never heard from as the ledger counts.
    let mut extra: Vec<SystemView> = r
        .inventories
        .keys()
        .filter(|id| systems.binary_search_by(|s| s.id.as_str().cmp(id)).is_err())
        .map(|id| SystemView {
            id: id.clone(),
            tags: Tags::default(),
            first_seen: None,
            last_seen: None,
        })
        .collect();
    systems.append(&mut extra);
    systems.sort_by(|a, b| a.id.cmp(&b.id));
    ReportInput {
        at,
        as_of,
        checkpoint: snapshot.checkpoint.map(|c| CheckpointRef {
            size: c.size,
            root_hex: hex_lower(&c.root),
        }),
        catalog: r.catalog,
        systems,
        policy: r.policy,
        exceptions: r.exceptions,
        facts: snapshot.facts,
        inventories: r.inventories,
    }
}

/// The pair facts of the latest report, kept in memory by a long-running
/// server, so that the next report reads only the pairs that changed since
/// (`Store::pair_facts_since`) instead of all of them.
///
/// Reports through one cache run one at a time: the facts are lent to the
/// computation and put back after it.
#[derive(Default)]
pub struct FactsCache {
    state: tokio::sync::Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// Whether `facts` holds every pair of the checkpoint of `size`.
    loaded: bool,
    size: u64,
    facts: HashMap<String, HashMap<String, PairFacts>>,
}

impl FactsCache {
    /// Reads the report input as the ledger and the records stand now,
    /// bringing the cached facts up to date first, and runs `f` over it on
    /// the blocking pool.
    pub async fn compute<R, F>(&self, store: &dyn Store, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&ReportInput) -> R + Send + 'static,
    {
        let mut cached = self.state.lock().await;
        let at = Timestamp::now();
        let (snapshot, records) = loop {
            let since = if cached.loaded { cached.size } else { 0 };
            let (snapshot, records) =
                futures::try_join!(store.pair_facts_since(since), read_records(store, at))?;
            let size = snapshot.checkpoint.as_ref().map_or(0, |c| c.size);
            if cached.loaded && size < cached.size {
                // The ledger shrank: another database behind the same
                // store. Start again from a full read.
                cached.loaded = false;
                continue;
            }
            break (snapshot, records);
        };
        let size = snapshot.checkpoint.as_ref().map_or(0, |c| c.size);
        let mut facts = std::mem::take(&mut cached.facts);
        let mut snapshot = snapshot;
        if cached.loaded {
            for (patch, changed) in std::mem::take(&mut snapshot.facts) {
                facts.entry(patch).or_default().extend(changed);
            }
        } else {
            facts = std::mem::take(&mut snapshot.facts);
        }
        snapshot.facts = facts;
        // Until the facts are back, the cache holds nothing.
        cached.loaded = false;
        let input = assemble(at, false, snapshot, records);
        let (input, out) = tokio::task::spawn_blocking(move || {
            let out = f(&input);
            (input, out)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("report task failed: {e}")))?;
        cached.facts = input.facts;
        cached.size = size;
        cached.loaded = true;
        Ok(out)
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchaudit_compliance::{RawCatalogEntry, RawException};

    #[test]
    fn codecs_round_trip() {
        let e = CatalogEntry::parse(RawCatalogEntry {
            id: Some("DSA-1".into()),
            title: Some("nginx".into()),
            severity: Some("high".into()),
            released_at: Some("2024-01-01T00:00:00Z".into()),
            modified_at: Some("2024-01-02T00:00:00Z".into()),
            cves: vec!["CVE-2024-0001".into()],
            aliases: vec!["GHSA-x".into()],
            packages: vec![AffectedPackage {
                ecosystem: "Debian:12".into(),
                name: "nginx".into(),
                fixed: Some("1.2-3".into()),
            }],
            applies_to_tags: Some(vec!["env=prod".into()]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(decode_catalog("DSA-1", &encode_catalog(&e)).unwrap(), e);
        let t = Tags::parse(["env=prod", "pci=in-scope"], "t").unwrap();
        assert_eq!(decode_tags("s", &encode_tags(&t)).unwrap(), t);
        let p = SlaPolicy {
            scoped: vec![ScopedSla {
                tag: Tag::parse("pci=in-scope", "t").unwrap(),
                days: SlaDays {
                    critical: Some(7),
                    high: None,
                    ..SlaDays::DEFAULT
                },
            }],
            ..SlaPolicy::default()
        };
        assert_eq!(decode_policy(&encode_policy(&p)).unwrap(), p);
        let x = Exception::parse(
            RawException {
                patch_id: Some("DSA-1".into()),
                tag: Some("env=prod".into()),
                reason: Some("r".into()),
                approver: Some("a".into()),
                expires_at: Some("2030-01-01T00:00:00Z".into()),
                ..Default::default()
            },
            "exc-1".into(),
            Timestamp::from_micros(0),
        )
        .unwrap();
        assert_eq!(decode_exception("exc-1", &encode_exception(&x)).unwrap(), x);
        assert!(matches!(
            decode_catalog("x", "{}"),
            Err(StoreError::Corrupt(m)) if m.contains("catalog record \"x\"")
        ));
    }
}
