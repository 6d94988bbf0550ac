//! The PostgreSQL side of compliance: records, pair facts kept on ingest,
//! and the snapshots reports read.

use super::{db_error, micros, row_to_checkpoint, to_datetime};
use crate::compliance::{FactsSnapshot, Record, RecordChange, RecordKind};
use crate::derived::{self, Derived, FactsRow};
use crate::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use patchaudit_compliance::{EventFact, PairFacts};
use patchaudit_domain::{Status, Timestamp};
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

const FACT_COLUMNS: &str =
    "attempts, failures, first_attempt_at, first_success_at, applied_since, \
     pending_reboot, last_status, last_applied_at, last_seq, last_failure_seq";

fn opt_micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(micros)
}

fn row_to_facts(r: &Row, at: usize) -> FactsRow {
    FactsRow {
        attempts: r.get(at),
        failures: r.get(at + 1),
        first_attempt_at: opt_micros(r.get(at + 2)),
        first_success_at: opt_micros(r.get(at + 3)),
        applied_since: opt_micros(r.get(at + 4)),
        pending_reboot: r.get(at + 5),
        last_status: r.get(at + 6),
        last_applied_at: micros(r.get(at + 7)),
        last_seq: r.get(at + 8),
        last_failure_seq: r.get(at + 9),
    }
}

fn row_to_fact(r: &Row, at: usize) -> Result<EventFact, StoreError> {
    let status: String = r.get(at + 2);
    Ok(EventFact {
        applied_at: Timestamp::from_micros(micros(r.get(at))),
        seq: r.get::<_, i64>(at + 1) as u64,
        status: status
            .parse::<Status>()
            .map_err(|m| StoreError::Corrupt(format!("event status {m}")))?,
        reboot_required: r.get::<_, Option<bool>>(at + 3) == Some(true),
    })
}

/// The facts an append will write: read the touched pairs' stored facts
/// (and, for pairs that received an event from their past, their stored
/// events) and fold the new events in. Runs inside the append's transaction.
pub(super) async fn fold_group(
    tx: &impl GenericClient,
    derived: &Derived,
    first_new_seq: i64,
) -> Result<Vec<(String, String, PairFacts, i64)>, tokio_postgres::Error> {
    let keys: Vec<&(String, String)> = derived.pairs.keys().collect();
    let patches: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let systems: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT f.patch_id, f.system, {FACT_COLUMNS} FROM pair_facts f \
             JOIN unnest($1::text[], $2::text[]) AS k(p, s) ON f.patch_id = k.p AND f.system = k.s"
        ))
        .await?;
    let mut stored: HashMap<(String, String), FactsRow> = HashMap::new();
    for r in tx.query(&stmt, &[&patches, &systems]).await? {
        stored.insert((r.get(0), r.get(1)), row_to_facts(&r, 2));
    }
    let mut out = Vec::with_capacity(keys.len());
    let mut refold: Vec<(&(String, String), Vec<EventFact>)> = Vec::new();
    for key in keys {
        let mut new = derived.pairs[key].facts.clone();
        let updated = max_seq(&new, first_new_seq);
        let prior = match stored.remove(key).map(FactsRow::into_facts).transpose() {
            Ok(p) => p,
            // A corrupt row is folded again from the events rather than trusted.
            Err(_) => {
                refold.push((key, new));
                continue;
            }
        };
        match derived::extend(prior, &mut new) {
            Some(f) => out.push((key.0.clone(), key.1.clone(), f, updated)),
            None => refold.push((key, new)),
        }
    }
    if !refold.is_empty() {
        let patches: Vec<&str> = refold.iter().map(|(k, _)| k.0.as_str()).collect();
        let systems: Vec<&str> = refold.iter().map(|(k, _)| k.1.as_str()).collect();
        let stmt = tx
            .prepare_cached(
                "SELECT e.patch_id, e.system, e.applied_at, e.seq, e.status, e.reboot_required \
                 FROM events e JOIN unnest($1::text[], $2::text[]) AS k(p, s) \
                   ON e.patch_id = k.p AND e.system = k.s WHERE e.seq < $3",
            )
            .await?;
        let mut older: HashMap<(String, String), Vec<EventFact>> = HashMap::new();
        for r in tx
            .query(&stmt, &[&patches, &systems, &first_new_seq])
            .await?
        {
            // Rows this build wrote always carry a valid status.
            if let Ok(f) = row_to_fact(&r, 2) {
                older.entry((r.get(0), r.get(1))).or_default().push(f);
            }
        }
        for (key, new) in refold {
            let old = older.remove(key).unwrap_or_default();
            let updated = max_seq(&new, first_new_seq);
            if let Some(f) = derived::refold(old, &new) {
                out.push((key.0.clone(), key.1.clone(), f, updated));
            }
        }
    }
    Ok(out)
}

const FACTS_UPSERT: &str = "INSERT INTO pair_facts (patch_id, system, attempts, failures, \
     first_attempt_at, first_success_at, applied_since, pending_reboot, last_status, \
     last_applied_at, last_seq, last_failure_seq, updated_seq) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::timestamptz[], \
       $6::timestamptz[], $7::timestamptz[], $8::bool[], $9::text[], $10::timestamptz[], \
       $11::int8[], $12::int8[], $13::int8[]) \
     ON CONFLICT (patch_id, system) DO UPDATE SET \
       attempts = EXCLUDED.attempts, failures = EXCLUDED.failures, \
       first_attempt_at = EXCLUDED.first_attempt_at, first_success_at = EXCLUDED.first_success_at, \
       applied_since = EXCLUDED.applied_since, pending_reboot = EXCLUDED.pending_reboot, \
       last_status = EXCLUDED.last_status, last_applied_at = EXCLUDED.last_applied_at, \
       last_seq = EXCLUDED.last_seq, last_failure_seq = EXCLUDED.last_failure_seq, \
       updated_seq = EXCLUDED.updated_seq";

/// Folded facts as the column arrays of [`FACTS_UPSERT`].
struct FactArrays<'a> {
    patches: Vec<&'a str>,
    systems: Vec<&'a str>,
    attempts: Vec<i64>,
    failures: Vec<i64>,
    first_attempt: Vec<Option<DateTime<Utc>>>,
    first_success: Vec<Option<DateTime<Utc>>>,
    since: Vec<Option<DateTime<Utc>>>,
    reboot: Vec<bool>,
    status: Vec<&'static str>,
    last_applied: Vec<DateTime<Utc>>,
    last_seq: Vec<i64>,
    last_failure: Vec<Option<i64>>,
    updated: Vec<i64>,
}

impl<'a> FactArrays<'a> {
    /// `updated` is each pair's highest new seq (0 for a backfill).
    fn new(facts: &'a [(String, String, PairFacts, i64)]) -> Self {
        let ts = |t: Option<Timestamp>| t.map(to_datetime);
        FactArrays {
            patches: facts.iter().map(|f| f.0.as_str()).collect(),
            systems: facts.iter().map(|f| f.1.as_str()).collect(),
            attempts: facts.iter().map(|f| f.2.attempts as i64).collect(),
            failures: facts.iter().map(|f| f.2.failures as i64).collect(),
            first_attempt: facts.iter().map(|f| ts(f.2.first_attempt_at)).collect(),
            first_success: facts.iter().map(|f| ts(f.2.first_success_at)).collect(),
            since: facts.iter().map(|f| ts(f.2.applied_since)).collect(),
            reboot: facts.iter().map(|f| f.2.pending_reboot).collect(),
            status: facts.iter().map(|f| f.2.last_status.as_str()).collect(),
            last_applied: facts
                .iter()
                .map(|f| to_datetime(f.2.last_applied_at))
                .collect(),
            last_seq: facts.iter().map(|f| f.2.last_seq as i64).collect(),
            last_failure: facts
                .iter()
                .map(|f| f.2.last_failure_seq.map(|s| s as i64))
                .collect(),
            updated: facts.iter().map(|f| f.3).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 13] {
        [
            &self.patches,
            &self.systems,
            &self.attempts,
            &self.failures,
            &self.first_attempt,
            &self.first_success,
            &self.since,
            &self.reboot,
            &self.status,
            &self.last_applied,
            &self.last_seq,
            &self.last_failure,
            &self.updated,
        ]
    }
}

/// Writes folded facts, replacing what was stored.
pub(super) async fn write_facts(
    tx: &deadpool_postgres::Transaction<'_>,
    facts: &[(String, String, PairFacts, i64)],
) -> Result<u64, tokio_postgres::Error> {
    if facts.is_empty() {
        return Ok(0);
    }
    let stmt = tx.prepare_cached(FACTS_UPSERT).await?;
    let arrays = FactArrays::new(facts);
    tx.execute(&stmt, &arrays.params()).await
}

/// Folds the facts of every pair from the events already stored; used by
/// the migration that introduced them.
pub(super) async fn backfill_facts(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<(), tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT patch_id, system, applied_at, seq, status, reboot_required FROM events",
            &[],
        )
        .await?;
    let all = rows
        .iter()
        .filter_map(|r| Some((r.get(0), r.get(1), row_to_fact(r, 2).ok()?)));
    // Every backfilled pair counts as changed at seq 0: a reader that
    // caches facts reads them all once.
    let folded: Vec<(String, String, PairFacts, i64)> = derived::fold_all(all)
        .into_iter()
        .flat_map(|(p, systems)| systems.into_iter().map(move |(s, f)| (p.clone(), s, f, 0)))
        .collect();
    for chunk in folded.chunks(10_000) {
        let arrays = FactArrays::new(chunk);
        tx.execute(FACTS_UPSERT, &arrays.params()).await?;
    }
    Ok(())
}

fn row_to_record(r: &Row) -> Record {
    Record {
        id: r.get(0),
        rev: r.get::<_, i64>(1) as u64,
        changed_at: Timestamp::from_micros(micros(r.get(2))),
        changed_by: r.get(3),
        body: r.get(4),
        changed: false,
    }
}

/// Writes record revisions in one transaction. A transaction-scoped
/// advisory lock orders concurrent writers, so "equal to the current body"
/// is decided against what is really current.
pub(super) async fn put_records(
    client: &mut deadpool_postgres::Object,
    kind: RecordKind,
    changes: Vec<RecordChange>,
    actor: &str,
) -> Result<Vec<Record>, StoreError> {
    let tx = client.transaction().await.map_err(|e| db_error(&e))?;
    // One lock for every kind: revisions then commit in rev order, and
    // changed_at can be kept from going backwards across instances.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('patchaudit.records'))",
        &[],
    )
    .await
    .map_err(|e| db_error(&e))?;
    let last: Option<DateTime<Utc>> = tx
        .query_one("SELECT MAX(changed_at) FROM records", &[])
        .await
        .map_err(|e| db_error(&e))?
        .get(0);
    let current = tx
        .prepare_cached(
            "SELECT id, rev, changed_at, changed_by, body FROM records \
             WHERE kind = $1 AND id = $2 ORDER BY rev DESC LIMIT 1",
        )
        .await
        .map_err(|e| db_error(&e))?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO records (kind, id, changed_at, changed_by, body) \
             VALUES ($1, $2, $3, $4, $5) RETURNING rev",
        )
        .await
        .map_err(|e| db_error(&e))?;
    let now = Timestamp::from_micros(
        Timestamp::now()
            .as_micros()
            .max(last.map_or(i64::MIN, micros)),
    );
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        let cur = tx
            .query_opt(&current, &[&kind.as_str(), &c.id])
            .await
            .map_err(|e| db_error(&e))?
            .as_ref()
            .map(row_to_record);
        let deleted = cur.as_ref().is_none_or(|r| r.body.is_none());
        match cur {
            _ if c.body.is_none() && deleted => {
                return Err(StoreError::NotFound(format!(
                    "{} {:?} does not exist",
                    kind.as_str(),
                    c.id
                )))
            }
            Some(cur) if cur.body == c.body => out.push(cur),
            _ => {
                let row = tx
                    .query_one(
                        &insert,
                        &[&kind.as_str(), &c.id, &to_datetime(now), &actor, &c.body],
                    )
                    .await
                    .map_err(|e| db_error(&e))?;
                out.push(Record {
                    id: c.id,
                    rev: row.get::<_, i64>(0) as u64,
                    changed_at: now,
                    changed_by: actor.to_owned(),
                    body: c.body,
                    changed: true,
                });
            }
        }
    }
    tx.commit().await.map_err(|e| db_error(&e))?;
    Ok(out)
}

/// The latest revision of every record of `kind` changed by `as_of`.
pub(super) async fn records(
    client: &impl GenericClient,
    kind: RecordKind,
    as_of: Option<Timestamp>,
) -> Result<Vec<Record>, StoreError> {
    let at = to_datetime(as_of.unwrap_or(Timestamp::from_micros(i64::MAX / 2)));
    let stmt = client
        .prepare_cached(
            "SELECT DISTINCT ON (id) id, rev, changed_at, changed_by, body FROM records \
             WHERE kind = $1 AND changed_at <= $2 ORDER BY id, rev DESC",
        )
        .await
        .map_err(|e| db_error(&e))?;
    let rows = client
        .query(&stmt, &[&kind.as_str(), &at])
        .await
        .map_err(|e| db_error(&e))?;
    Ok(rows.iter().map(row_to_record).collect())
}

/// Every revision of one record, oldest first.
pub(super) async fn record_history(
    client: &impl GenericClient,
    kind: RecordKind,
    id: &str,
) -> Result<Vec<Record>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT id, rev, changed_at, changed_by, body FROM records \
             WHERE kind = $1 AND id = $2 ORDER BY rev",
        )
        .await
        .map_err(|e| db_error(&e))?;
    let rows = client
        .query(&stmt, &[&kind.as_str(), &id])
        .await
        .map_err(|e| db_error(&e))?;
    Ok(rows.iter().map(row_to_record).collect())
}

pub(super) async fn record_changes(
    client: &impl GenericClient,
    after_rev: u64,
    limit: usize,
) -> Result<Vec<(RecordKind, Record)>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT id, rev, changed_at, changed_by, body, kind FROM records \
             WHERE rev > $1 ORDER BY rev LIMIT $2",
        )
        .await
        .map_err(|e| db_error(&e))?;
    let after = i64::try_from(after_rev).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(&stmt, &[&after, &limit])
        .await
        .map_err(|e| db_error(&e))?;
    rows.iter()
        .map(|r| {
            let rec = row_to_record(r);
            let kind: String = r.get(5);
            let kind = RecordKind::parse(&kind).ok_or_else(|| {
                StoreError::Corrupt(format!("record rev {} has unknown kind {kind:?}", rec.rev))
            })?;
            Ok((kind, rec))
        })
        .collect()
}

/// Reads the facts, the checkpoint and the systems in one REPEATABLE READ
/// transaction, so the facts match the checkpoint exactly.
pub(super) async fn pair_facts(
    client: &mut deadpool_postgres::Object,
    as_of: Option<Timestamp>,
    changed_since: u64,
    size: Option<u64>,
) -> Result<FactsSnapshot, StoreError> {
    let e = |e: tokio_postgres::Error| db_error(&e);
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(e)?;
    let at = to_datetime(as_of.unwrap_or(Timestamp::from_micros(i64::MAX / 2)));
    let row = match size {
        Some(size) => tx
            .query_opt(
                "SELECT size, root, note, recorded_at FROM checkpoints WHERE size = $1",
                &[&(size as i64)],
            )
            .await
            .map_err(e)?
            .ok_or_else(|| StoreError::NotFound(format!("no checkpoint of size {size}")))
            .map(Some)?,
        None => tx
            .query_opt(
                "SELECT size, root, note, recorded_at FROM checkpoints \
                 WHERE recorded_at <= $1 ORDER BY size DESC LIMIT 1",
                &[&at],
            )
            .await
            .map_err(e)?,
    };
    let checkpoint = row.as_ref().map(row_to_checkpoint).transpose()?;
    let mut snap = FactsSnapshot {
        checkpoint,
        ..Default::default()
    };
    if as_of.is_none() && size.is_none() {
        let since = changed_since as i64;
        for r in tx
            .query(
                &format!(
                    "SELECT patch_id, system, {FACT_COLUMNS} FROM pair_facts WHERE updated_seq >= $1"
                ),
                &[&since],
            )
            .await
            .map_err(e)?
        {
            let f = row_to_facts(&r, 2).into_facts()?;
            snap.facts.entry(r.get(0)).or_default().insert(r.get(1), f);
        }
        let rows = tx
            .query(
                "SELECT s.system, f.recorded_at, l.recorded_at FROM systems s \
                 JOIN events f ON f.seq = s.first_seq JOIN events l ON l.seq = s.last_seq",
                &[],
            )
            .await
            .map_err(e)?;
        snap.systems = rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    Timestamp::from_micros(micros(r.get(1))),
                    Timestamp::from_micros(micros(r.get(2))),
                )
            })
            .collect();
    } else {
        let size = snap.checkpoint.as_ref().map_or(0, |c| c.size as i64);
        let rows = tx
            .query(
                "SELECT patch_id, system, applied_at, seq, status, reboot_required, recorded_at \
                 FROM events WHERE seq < $1",
                &[&size],
            )
            .await
            .map_err(e)?;
        let mut seen: HashMap<String, (i64, i64)> = HashMap::new();
        let mut all = Vec::with_capacity(rows.len());
        for r in &rows {
            let s: String = r.get(1);
            let recorded = micros(r.get(6));
            let e = seen.entry(s.clone()).or_insert((recorded, recorded));
            e.0 = e.0.min(recorded);
            e.1 = e.1.max(recorded);
            all.push((r.get(0), s, row_to_fact(r, 2)?));
        }
        snap.facts = derived::fold_all(all);
        snap.systems = seen
            .into_iter()
            .map(|(s, (f, l))| (s, Timestamp::from_micros(f), Timestamp::from_micros(l)))
            .collect();
    }
    tx.commit().await.map_err(e)?;
    Ok(snap)
}

/// The highest seq among a pair's new events.
fn max_seq(new: &[EventFact], first_new_seq: i64) -> i64 {
    new.iter()
        .map(|e| e.seq as i64)
        .max()
        .unwrap_or(first_new_seq)
}
