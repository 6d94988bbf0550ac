//! The SQLite side of compliance: records, pair facts kept on ingest, and
//! the snapshots reports read.

use super::{internal, row_to_checkpoint};
use crate::compliance::{FactsSnapshot, Record, RecordChange, RecordKind};
use crate::derived::{self, Derived, FactsRow};
use crate::StoreError;
use patchaudit_compliance::{EventFact, PairFacts};
use patchaudit_domain::{Status, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

/// The statement [`put_facts`] runs.
fn facts_put() -> String {
    format!(
        "INSERT OR REPLACE INTO pair_facts (patch_id, system, {FACT_COLUMNS}, updated_seq) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
}

const FACT_COLUMNS: &str =
    "attempts, failures, first_attempt_at, first_success_at, applied_since, \
     pending_reboot, last_status, last_applied_at, last_seq, last_failure_seq";

fn row_to_facts(r: &Row<'_>, at: usize) -> rusqlite::Result<FactsRow> {
    Ok(FactsRow {
        attempts: r.get(at)?,
        failures: r.get(at + 1)?,
        first_attempt_at: r.get(at + 2)?,
        first_success_at: r.get(at + 3)?,
        applied_since: r.get(at + 4)?,
        pending_reboot: r.get::<_, i64>(at + 5)? != 0,
        last_status: r.get(at + 6)?,
        last_applied_at: r.get(at + 7)?,
        last_seq: r.get(at + 8)?,
        last_failure_seq: r.get(at + 9)?,
    })
}

fn row_to_fact(r: &Row<'_>, at: usize) -> Result<EventFact, StoreError> {
    let status: String = r.get(at + 2).map_err(internal)?;
    Ok(EventFact {
        applied_at: Timestamp::from_micros(r.get(at).map_err(internal)?),
        seq: r.get::<_, i64>(at + 1).map_err(internal)? as u64,
        status: status
            .parse::<Status>()
            .map_err(|m| StoreError::Corrupt(format!("event status {m}")))?,
        reboot_required: r.get::<_, Option<i64>>(at + 3).map_err(internal)? == Some(1),
    })
}

/// Brings the facts of every pair an append touched up to date, inside the
/// append's transaction. `first_new_seq` is the seq of the append's first event.
pub(super) fn upsert_facts(
    tx: &Transaction<'_>,
    derived: &Derived,
    first_new_seq: i64,
) -> Result<(), StoreError> {
    let mut get = tx
        .prepare_cached(&format!(
            "SELECT {FACT_COLUMNS} FROM pair_facts WHERE patch_id = ? AND system = ?"
        ))
        .map_err(internal)?;
    let mut older = tx
        .prepare_cached(
            "SELECT applied_at, seq, status, reboot_required FROM events \
             WHERE patch_id = ? AND system = ? AND seq < ?",
        )
        .map_err(internal)?;
    let mut put = tx.prepare_cached(&facts_put()).map_err(internal)?;
    for ((patch, system), d) in &derived.pairs {
        let stored = get
            .query_row(params![patch, system], |r| row_to_facts(r, 0))
            .optional()
            .map_err(internal)?
            .map(FactsRow::into_facts)
            .transpose()?;
        let mut new = d.facts.clone();
        let facts = match derived::extend(stored, &mut new) {
            Some(f) => f,
            None => {
                // An event that happened before one already folded: fold
                // the pair's stored events again with the new ones.
                let mut rows = older
                    .query(params![patch, system, first_new_seq])
                    .map_err(internal)?;
                let mut old = Vec::new();
                while let Some(r) = rows.next().map_err(internal)? {
                    old.push(row_to_fact(r, 0)?);
                }
                derived::refold(old, &new)
                    .ok_or_else(|| StoreError::Internal("a pair with no event".into()))?
            }
        };
        let f = FactsRow::from_facts(&facts);
        // The highest seq this append folded into the pair.
        let updated = d
            .facts
            .iter()
            .map(|e| e.seq as i64)
            .max()
            .unwrap_or(first_new_seq);
        put_facts(&mut put, patch, system, &f, updated).map_err(internal)?;
    }
    Ok(())
}

/// Writes one pair's facts with a statement prepared from [`facts_put`].
fn put_facts(
    put: &mut rusqlite::CachedStatement<'_>,
    patch: &str,
    system: &str,
    f: &FactsRow,
    updated_seq: i64,
) -> rusqlite::Result<usize> {
    put.execute(params![
        patch,
        system,
        f.attempts,
        f.failures,
        f.first_attempt_at,
        f.first_success_at,
        f.applied_since,
        f.pending_reboot,
        f.last_status,
        f.last_applied_at,
        f.last_seq,
        f.last_failure_seq,
        updated_seq
    ])
}

/// Folds the facts of every pair from the events already stored; used by
/// the migration that introduced them.
pub(super) fn backfill_facts(tx: &Transaction<'_>) -> Result<(), String> {
    let facts = {
        let mut stmt = tx
            .prepare(
                "SELECT patch_id, system, applied_at, seq, status, reboot_required FROM events",
            )
            .map_err(|e| e.to_string())?;
        let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
        let mut all = Vec::new();
        while let Some(r) = rows.next().map_err(|e| e.to_string())? {
            let p: String = r.get(0).map_err(|e| e.to_string())?;
            let s: String = r.get(1).map_err(|e| e.to_string())?;
            all.push((p, s, row_to_fact(r, 2).map_err(|e| e.to_string())?));
        }
        derived::fold_all(all)
    };
    let mut put = tx.prepare_cached(&facts_put()).map_err(|e| e.to_string())?;
    for (patch, systems) in &facts {
        for (system, facts) in systems {
            put_facts(&mut put, patch, system, &FactsRow::from_facts(facts), 0)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn row_to_record(r: &Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        id: r.get(0)?,
        rev: r.get::<_, i64>(1)? as u64,
        changed_at: Timestamp::from_micros(r.get(2)?),
        changed_by: r.get(3)?,
        body: r.get(4)?,
        changed: false,
    })
}

const LATEST: &str = "SELECT r.id, r.rev, r.changed_at, r.changed_by, r.body FROM records r \
     WHERE r.kind = ?1 AND r.rev = (SELECT MAX(rev) FROM records m \
        WHERE m.kind = ?1 AND m.id = r.id AND m.changed_at <= ?2)";

/// Writes record revisions in one IMMEDIATE transaction on `conn`.
pub(super) fn put_records(
    conn: &mut Connection,
    kind: RecordKind,
    changes: Vec<RecordChange>,
    actor: &str,
) -> Result<Vec<Record>, StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(internal)?;
    // changed_at never goes backwards along rev, even if the clock does, so
    // "the records as of T" is always a prefix of their history.
    let last: Option<i64> = tx
        .query_row("SELECT MAX(changed_at) FROM records", [], |r| r.get(0))
        .map_err(internal)?;
    let now = Timestamp::now().as_micros().max(last.unwrap_or(i64::MIN));
    let mut out = Vec::with_capacity(changes.len());
    {
        let mut current = tx
            .prepare_cached(
                "SELECT id, rev, changed_at, changed_by, body FROM records \
                 WHERE kind = ? AND id = ? ORDER BY rev DESC LIMIT 1",
            )
            .map_err(internal)?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO records (kind, id, changed_at, changed_by, body) VALUES (?, ?, ?, ?, ?)",
            )
            .map_err(internal)?;
        for c in changes {
            let cur = current
                .query_row(params![kind.as_str(), c.id], row_to_record)
                .optional()
                .map_err(internal)?;
            let deleted = cur.as_ref().is_none_or(|r| r.body.is_none());
            match cur {
                // Deleting what does not exist (or no longer does) is an error,
                // not a no-op: the caller named something that is not there.
                _ if c.body.is_none() && deleted => {
                    return Err(StoreError::NotFound(format!(
                        "{} {:?} does not exist",
                        kind.as_str(),
                        c.id
                    )))
                }
                // Writing what is already there changes nothing and leaves no revision.
                Some(cur) if cur.body == c.body => out.push(cur),
                _ => {
                    insert
                        .execute(params![kind.as_str(), c.id, now, actor, c.body])
                        .map_err(internal)?;
                    out.push(Record {
                        id: c.id,
                        rev: tx.last_insert_rowid() as u64,
                        changed_at: Timestamp::from_micros(now),
                        changed_by: actor.to_owned(),
                        body: c.body,
                        changed: true,
                    });
                }
            }
        }
    }
    tx.commit().map_err(internal)?;
    Ok(out)
}

/// The latest revision of every record of `kind` changed by `as_of`, deletions included.
pub(super) fn records(
    conn: &Connection,
    kind: RecordKind,
    as_of: Option<Timestamp>,
) -> Result<Vec<Record>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!("{LATEST} ORDER BY r.id"))
        .map_err(internal)?;
    let at = as_of.map_or(i64::MAX, Timestamp::as_micros);
    let rows = stmt
        .query_map(params![kind.as_str(), at], row_to_record)
        .map_err(internal)?;
    rows.map(|r| r.map_err(internal)).collect()
}

/// Every revision of one record, oldest first.
pub(super) fn record_history(
    conn: &Connection,
    kind: RecordKind,
    id: &str,
) -> Result<Vec<Record>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, rev, changed_at, changed_by, body FROM records \
             WHERE kind = ? AND id = ? ORDER BY rev",
        )
        .map_err(internal)?;
    let rows = stmt
        .query_map(params![kind.as_str(), id], row_to_record)
        .map_err(internal)?;
    rows.map(|r| r.map_err(internal)).collect()
}

pub(super) fn record_changes(
    conn: &Connection,
    after_rev: u64,
    limit: usize,
) -> Result<Vec<(RecordKind, Record)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT kind, id, rev, changed_at, changed_by, body FROM records \
             WHERE rev > ? ORDER BY rev LIMIT ?",
        )
        .map_err(internal)?;
    let after = i64::try_from(after_rev).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(params![after, limit], |r| {
            let kind: String = r.get(0)?;
            Ok((
                kind,
                Record {
                    id: r.get(1)?,
                    rev: r.get::<_, i64>(2)? as u64,
                    changed_at: Timestamp::from_micros(r.get(3)?),
                    changed_by: r.get(4)?,
                    body: r.get(5)?,
                    changed: false,
                },
            ))
        })
        .map_err(internal)?;
    rows.map(|r| {
        let (kind, rec) = r.map_err(internal)?;
        let kind = RecordKind::parse(&kind).ok_or_else(|| {
            StoreError::Corrupt(format!("record rev {} has unknown kind {kind:?}", rec.rev))
        })?;
        Ok((kind, rec))
    })
    .collect()
}

/// Reads the facts, the checkpoint and the systems in one read transaction.
pub(super) fn pair_facts(
    conn: &Connection,
    as_of: Option<Timestamp>,
    changed_since: u64,
    size: Option<u64>,
) -> Result<FactsSnapshot, StoreError> {
    // A deferred transaction on a WAL reader: every statement below sees
    // the same snapshot, so the facts match the checkpoint exactly.
    conn.execute_batch("BEGIN").map_err(internal)?;
    let result = snapshot(conn, as_of, changed_since, size);
    let _ = conn.execute_batch("COMMIT");
    result
}

fn snapshot(
    conn: &Connection,
    as_of: Option<Timestamp>,
    changed_since: u64,
    size: Option<u64>,
) -> Result<FactsSnapshot, StoreError> {
    let checkpoint = match size {
        Some(size) => conn
            .prepare_cached("SELECT size, root, note, recorded_at FROM checkpoints WHERE size = ?")
            .map_err(internal)?
            .query_row([size as i64], row_to_checkpoint)
            .optional()
            .map_err(internal)?
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("no checkpoint of size {size}")))
            .map(Some)?,
        None => {
            let at = as_of.map_or(i64::MAX, Timestamp::as_micros);
            conn.prepare_cached(
                "SELECT size, root, note, recorded_at FROM checkpoints \
                 WHERE recorded_at <= ? ORDER BY size DESC LIMIT 1",
            )
            .map_err(internal)?
            .query_row([at], row_to_checkpoint)
            .optional()
            .map_err(internal)?
            .transpose()?
        }
    };
    let mut snap = FactsSnapshot {
        checkpoint,
        ..Default::default()
    };
    if as_of.is_none() && size.is_none() {
        // The full read walks the primary key; a read of what changed uses
        // the updated_seq index.
        let sql = if changed_since == 0 {
            format!("SELECT patch_id, system, {FACT_COLUMNS} FROM pair_facts")
        } else {
            format!(
                "SELECT patch_id, system, {FACT_COLUMNS} FROM pair_facts WHERE updated_seq >= ?"
            )
        };
        let mut stmt = conn.prepare_cached(&sql).map_err(internal)?;
        let mut rows = if changed_since == 0 {
            stmt.query([])
        } else {
            stmt.query([changed_since as i64])
        }
        .map_err(internal)?;
        while let Some(r) = rows.next().map_err(internal)? {
            let p: String = r.get(0).map_err(internal)?;
            let s: String = r.get(1).map_err(internal)?;
            let f: PairFacts = row_to_facts(r, 2).map_err(internal)?.into_facts()?;
            snap.facts.entry(p).or_default().insert(s, f);
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT s.system, f.recorded_at, l.recorded_at FROM systems s \
                 JOIN events f ON f.seq = s.first_seq JOIN events l ON l.seq = s.last_seq",
            )
            .map_err(internal)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    Timestamp::from_micros(r.get(1)?),
                    Timestamp::from_micros(r.get(2)?),
                ))
            })
            .map_err(internal)?;
        snap.systems = rows.collect::<Result<_, _>>().map_err(internal)?;
    } else {
        let size = snap.checkpoint.as_ref().map_or(0, |c| c.size as i64);
        let mut stmt = conn
            .prepare_cached(
                "SELECT patch_id, system, applied_at, seq, status, reboot_required, recorded_at \
                 FROM events WHERE seq < ?",
            )
            .map_err(internal)?;
        let mut rows = stmt.query([size]).map_err(internal)?;
        let mut all = Vec::new();
        let mut seen: std::collections::HashMap<String, (i64, i64)> = Default::default();
        while let Some(r) = rows.next().map_err(internal)? {
            let p: String = r.get(0).map_err(internal)?;
            let s: String = r.get(1).map_err(internal)?;
            let recorded: i64 = r.get(6).map_err(internal)?;
            let e = seen.entry(s.clone()).or_insert((recorded, recorded));
            e.0 = e.0.min(recorded);
            e.1 = e.1.max(recorded);
            all.push((p, s, row_to_fact(r, 2)?));
        }
        snap.facts = derived::fold_all(all);
        snap.systems = seen
            .into_iter()
            .map(|(s, (f, l))| (s, Timestamp::from_micros(f), Timestamp::from_micros(l)))
            .collect();
    }
    Ok(snap)
}
