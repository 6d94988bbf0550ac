//! The single writer and its group commit.
//!
//! Appends are queued to one thread that owns the write connection. Each
//! turn it takes everything waiting (up to a cap) and commits it in one
//! IMMEDIATE transaction: `group::plan` first decides, request by request,
//! what is new, what is a duplicate and which requests conflict (those are
//! left out whole), then the new events are inserted and the summaries
//! upserted once for the whole group. The same transaction extends the
//! Merkle tree (its new hashes and the head row) and stores a checkpoint of
//! the new tree, signed last. Replies are sent only after the commit
//! returned, so an acknowledgement always means "durable".
//!
//! The writer leaves copying the WAL into the database file to the
//! checkpointer thread, so a commit costs its WAL append and fsync. When the
//! checkpointer asks, the writer copies, between two groups, only the few
//! frames appended since the checkpointer's last pass, so that the WAL can
//! start again from its beginning (see `spawn_checkpointer`).

use super::internal;
use crate::derived::Derived;
use crate::group::{self, Handle, Known, PlannedRow, Request};
use crate::{tree, Appended, StoreError};
use patchaudit_domain::Timestamp;
use patchaudit_proofs::NoteSigner;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::sync::Arc;

pub(super) fn spawn(
    conn: Connection,
    max_group_events: usize,
    signer: Option<Arc<NoteSigner>>,
    restart: Arc<std::sync::atomic::AtomicBool>,
) -> Result<Handle, StoreError> {
    let (handle, mut queue) = group::queue("SQLite");
    std::thread::Builder::new()
        .name("patchaudit-sqlite-writer".into())
        .spawn(move || {
            let mut conn = conn;
            while let Some(first) = queue.blocking_recv() {
                let batch = group::fill(first, &mut queue, max_group_events);
                match run_group(&mut conn, &batch, &signer) {
                    Ok(results) => group::reply_all(batch, results),
                    Err(e) => {
                        tracing::error!(error = %e, requests = batch.len(), "group commit failed; nothing of it was written");
                        group::fail_all(batch, &e);
                    }
                }
                if restart.swap(false, std::sync::atomic::Ordering::Acquire) {
                    // After the replies: no append waits for it but the next
                    // group. It fails harmlessly (busy) while the checkpointer
                    // is itself mid-pass; the next pass asks again.
                    if let Err(e) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(error = %e, "the writer's WAL checkpoint did not run");
                    }
                }
            }
        })
        .map_err(|e| StoreError::Open(format!("starting the writer thread: {e}")))?;
    Ok(handle)
}

/// Runs a group in one transaction; the outer error means nothing committed.
fn run_group(
    conn: &mut Connection,
    group: &[Request],
    signer: &Option<Arc<NoteSigner>>,
) -> Result<Vec<Result<Vec<Appended>, StoreError>>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(internal)?;
    // Read the head inside the write lock, so another process appending to
    // the same file (a CLI beside a server) can never make seq collide.
    let (size, subtrees, last_recorded): (i64, Vec<u8>, Option<i64>) = tx
        .query_row(
            "SELECT size, subtrees, last_recorded_at FROM ledger_head",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(internal)?;
    let head = tree::decode_head(size, &subtrees)?;
    let signed: Option<i64> = tx
        .query_row("SELECT MAX(size) FROM checkpoints", [], |r| r.get(0))
        .map_err(internal)?;
    tree::check_head_is_signed(head.size(), signed.map(|s| s as u64))?;
    let next_seq = size;
    // recorded_at never goes backwards along seq, even if the clock does, so
    // "the ledger as of T" is always a prefix of it.
    let now = Timestamp::from_micros(
        Timestamp::now()
            .as_micros()
            .max(last_recorded.unwrap_or(i64::MIN)),
    );

    let mut lookup = tx
        .prepare_cached("SELECT seq, content_hash, recorded_at FROM events WHERE event_id = ?")
        .map_err(internal)?;
    let plan = group::plan(group, next_seq, now, |id| {
        lookup
            .query_row([id], |r| {
                Ok(Known {
                    seq: r.get(0)?,
                    hash: r.get(1)?,
                    recorded_at: Timestamp::from_micros(r.get(2)?),
                })
            })
            .optional()
            .map_err(internal)
    })?;
    drop(lookup);
    if !plan.rows.is_empty() {
        let signer = tree::signer_or_read_only(signer)?;
        insert_rows(&tx, &plan.rows, now)?;
        upsert_derived(&tx, &plan.derived)?;
        super::compliance::upsert_facts(&tx, &plan.derived, next_seq)?;
        let tree_work = std::time::Instant::now();
        let growth = tree::grow(head, &plan.rows, now)?;
        let mut insert = tx
            .prepare_cached("INSERT INTO tree_hashes (position, hash) VALUES (?, ?)")
            .map_err(internal)?;
        for (position, hash) in &growth.hashes {
            insert
                .execute(params![position, &hash[..]])
                .map_err(internal)?;
        }
        let size = growth.tree.size();
        let root = growth.tree.root();
        tx.execute(
            "UPDATE ledger_head SET size = ?, subtrees = ?, last_recorded_at = ?",
            params![
                size as i64,
                tree::encode_head(&growth.tree),
                now.as_micros()
            ],
        )
        .map_err(internal)?;
        // Signed last, once every write of the transaction succeeded; a note
        // whose commit then fails is dropped and never leaves this process.
        let note = signer.sign_checkpoint(size, &root);
        tx.execute(
            "INSERT INTO checkpoints (size, root, note, recorded_at) VALUES (?, ?, ?, ?)",
            params![size as i64, &root[..], note, now.as_micros()],
        )
        .map_err(internal)?;
        tree::account(tree_work);
    }
    tx.commit().map_err(internal)?;
    Ok(plan.results)
}

fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    rows: &[PlannedRow<'_>],
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO events (seq, event_id, patch_id, system, applied_at, status, package, \
             from_version, to_version, source, actor, detail, cves, reboot_required, change_ref, \
             recorded_at, recorded_by, content_hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )
        .map_err(internal)?;
    for row in rows {
        let ev = row.event;
        let cves = (!ev.cves.is_empty()).then(|| {
            ev.cves
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        });
        insert
            .execute(params![
                row.seq,
                ev.event_id.as_ref().map(|e| e.as_str()),
                ev.patch_id.as_str(),
                ev.system.as_str(),
                ev.applied_at.as_micros(),
                ev.status.as_str(),
                ev.package,
                ev.from_version,
                ev.to_version,
                ev.source,
                ev.actor,
                ev.detail,
                cves,
                ev.reboot_required,
                ev.change_ref,
                now.as_micros(),
                row.recorded_by,
                &row.digest[..],
            ])
            .map_err(internal)?;
    }
    Ok(())
}

fn upsert_derived(tx: &rusqlite::Transaction<'_>, derived: &Derived) -> Result<(), StoreError> {
    let mut up_sys = tx
        .prepare_cached(
            "INSERT INTO systems (system, first_seq, last_seq, last_applied_at, n_success, n_failure, n_rolled_back) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (system) DO UPDATE SET \
               last_seq = excluded.last_seq, \
               last_applied_at = MAX(last_applied_at, excluded.last_applied_at), \
               n_success = n_success + excluded.n_success, \
               n_failure = n_failure + excluded.n_failure, \
               n_rolled_back = n_rolled_back + excluded.n_rolled_back",
        )
        .map_err(internal)?;
    for (system, a) in &derived.systems {
        up_sys
            .execute(params![
                system,
                a.first_seq,
                a.last_seq,
                a.last_applied_at,
                a.counts[0],
                a.counts[1],
                a.counts[2]
            ])
            .map_err(internal)?;
    }
    // The latest event of a pair is the one with the greatest (applied_at,
    // seq): collectors deliver history out of order, and the fact that
    // happened last must win, not the one that arrived last.
    let mut up_pair = tx
        .prepare_cached(
            "INSERT INTO patch_state (patch_id, system, status, applied_at, seq, attempts) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (patch_id, system) DO UPDATE SET \
               status = CASE WHEN (excluded.applied_at, excluded.seq) > (applied_at, seq) \
                        THEN excluded.status ELSE status END, \
               seq = CASE WHEN (excluded.applied_at, excluded.seq) > (applied_at, seq) \
                     THEN excluded.seq ELSE seq END, \
               applied_at = MAX(applied_at, excluded.applied_at), \
               attempts = attempts + excluded.attempts",
        )
        .map_err(internal)?;
    for ((patch, system), a) in &derived.pairs {
        up_pair
            .execute(params![
                patch,
                system,
                a.status.as_str(),
                a.applied_at,
                a.seq,
                a.attempts
            ])
            .map_err(internal)?;
    }
    Ok(())
}
