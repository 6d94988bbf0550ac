//! The PostgreSQL writer: group commit within an instance, one sequencer
//! across instances.
//!
//! Each instance has one writer task. It drains every append waiting in its
//! queue into one transaction, which
//!
//! 1. locks the single `ledger_head` row (`FOR UPDATE`): the one sequencer
//!    every instance shares, so seq stays dense with many writers;
//! 2. looks up every `event_id` of the group in one query, and decides in
//!    memory, request by request, what is a duplicate and what is a
//!    conflict. A request with a conflict is left out whole, so no
//!    savepoints are needed;
//! 3. writes all new events with one binary `COPY`, their keys, the
//!    derived summaries and the new tree hashes, and advances the head
//!    (the seq and the tree's perfect-subtree roots);
//! 4. signs a checkpoint of the new tree and stores it;
//! 5. commits, and only then replies.
//!
//! The seq, the tree and the checkpoint thus share one transaction under
//! one lock: after a crash they never disagree, and no two instances ever
//! sign different roots for the same size.
//!
//! A connection lost mid-way fails the whole group with `Unavailable`;
//! nothing of it was acknowledged, and a retry with the same `event_id`s is
//! safe whether or not the commit reached the server.

use super::{pg_error, to_datetime};
use crate::derived::Derived;
use crate::group::{self, Handle, Known, PlannedRow, Request};
use crate::{tree, Appended, StoreError};
use deadpool_postgres::Pool;
use futures::pin_mut;
use patchaudit_domain::Timestamp;
use patchaudit_proofs::NoteSigner;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

pub(super) fn spawn(
    pool: Pool,
    max_group_events: usize,
    signer: Option<Arc<NoteSigner>>,
) -> Handle {
    let (handle, mut queue) = group::queue("PostgreSQL");
    tokio::spawn(async move {
        while let Some(first) = queue.recv().await {
            let batch = group::fill(first, &mut queue, max_group_events);
            let outcome = match run_group(&pool, &batch, &signer).await {
                // A month with no partition yet (a clock jump, a long-idle
                // instance): create the partitions and try once more.
                Err(e) if is_missing_partition(&e) => {
                    if let Ok(client) = pool.get().await {
                        let _ = super::schema::ensure_partitions(&client, chrono::Utc::now()).await;
                    }
                    run_group(&pool, &batch, &signer).await
                }
                other => other,
            };
            match outcome {
                Ok(results) => group::reply_all(batch, results),
                Err(e) => {
                    let err = pg_error(&e);
                    tracing::warn!(error = %err, requests = batch.len(), "group commit failed; nothing of it was acknowledged");
                    group::fail_all(batch, &err);
                }
            }
        }
    });
    handle
}

/// Why a group failed before anything was committed.
pub(super) enum GroupError {
    Pool(deadpool_postgres::PoolError),
    Db(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for GroupError {
    fn from(e: tokio_postgres::Error) -> Self {
        GroupError::Db(e)
    }
}

fn is_missing_partition(e: &GroupError) -> bool {
    match e {
        GroupError::Db(e) => e
            .as_db_error()
            .is_some_and(|d| d.message().contains("no partition of relation")),
        GroupError::Pool(_) | GroupError::Store(_) => false,
    }
}

const COPY_TYPES: [Type; 18] = [
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT_ARRAY,
    Type::BOOL,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::BYTEA,
];

async fn run_group(
    pool: &Pool,
    group: &[Request],
    signer: &Option<Arc<NoteSigner>>,
) -> Result<Vec<Result<Vec<Appended>, StoreError>>, GroupError> {
    let mut client = pool.get().await.map_err(GroupError::Pool)?;
    let tx = client.transaction().await?;
    let head = tx
        .query_one(
            "SELECT next_seq, last_recorded_at, subtrees FROM ledger_head FOR UPDATE",
            &[],
        )
        .await?;
    let start: i64 = head.get(0);
    let last: Option<chrono::DateTime<chrono::Utc>> = head.get(1);
    let subtrees: Vec<u8> = head.get(2);
    let tree_head = tree::decode_head(start, &subtrees).map_err(GroupError::Store)?;
    // recorded_at never goes backwards along seq, even across instances whose clocks differ.
    let now = Timestamp::from_micros(
        Timestamp::now()
            .as_micros()
            .max(last.map_or(i64::MIN, |t| t.timestamp_micros())),
    );

    // Every key of the group in one query, looked up under the head lock so
    // that keys committed by other instances are visible.
    let ids: Vec<&str> = group
        .iter()
        .flat_map(|r| {
            r.batch
                .iter()
                .filter_map(|e| e.event_id.as_ref().map(|i| i.as_str()))
        })
        .collect();
    let (signed_stmt, ids_stmt) = futures::try_join!(
        // A statement of its own: under READ COMMITTED it sees what the
        // instance that held the lock before us committed, which a subquery
        // of the locking statement (evaluated on that statement's older
        // snapshot) would not.
        tx.prepare_cached("SELECT MAX(size) FROM checkpoints"),
        // A join against unnest() keeps the planner on index probes: with
        // `event_id = ANY($1)` and thousands of keys it chose a parallel
        // scan of the whole table once it held a million keys, which made
        // every batch slower than the last.
        tx.prepare_cached(
            "SELECT e.event_id, e.seq, e.content_hash, e.recorded_at \
             FROM unnest($1::text[]) AS k(id) JOIN event_ids e ON e.event_id = k.id"
        ),
    )?;
    // Both queries go out together: tokio-postgres pipelines the queries
    // of one connection that are awaited at once.
    let (signed, found) = futures::try_join!(tx.query_one(&signed_stmt, &[]), async {
        if ids.is_empty() {
            Ok(Vec::new())
        } else {
            tx.query(&ids_stmt, &[&ids]).await
        }
    })?;
    let signed: Option<i64> = signed.get(0);
    tree::check_head_is_signed(tree_head.size(), signed.map(|s| s as u64))
        .map_err(GroupError::Store)?;
    let mut known: HashMap<String, Known> = HashMap::new();
    for row in found {
        let t: chrono::DateTime<chrono::Utc> = row.get(3);
        known.insert(
            row.get(0),
            Known {
                seq: row.get(1),
                hash: row.get(2),
                recorded_at: Timestamp::from_micros(t.timestamp_micros()),
            },
        );
    }
    let plan = group::plan(group, start, now, |id| Ok(known.get(id).cloned()))
        .map_err(GroupError::Store)?;

    if !plan.rows.is_empty() {
        let signer = tree::signer_or_read_only(signer).map_err(GroupError::Store)?;
        let tree_work = std::time::Instant::now();
        let growth = tree::grow(tree_head, &plan.rows, now).map_err(GroupError::Store)?;
        tree::account(tree_work);
        // Read before the COPY, which holds the connection until it ends.
        let facts = super::compliance::fold_group(&tx, &plan.derived, start).await?;
        write_rows(&tx, &plan.rows, now).await?;
        let tree_work = std::time::Instant::now();
        let size = growth.tree.size();
        let root = growth.tree.root();
        // The head row lock makes this instance the only signer of this
        // size. The note is written in this transaction; if it aborts, the
        // note goes with it and is never visible.
        let note = signer.sign_checkpoint(size, &root);
        let positions: Vec<i64> = growth.hashes.iter().map(|(p, _)| *p).collect();
        let hashes: Vec<&[u8]> = growth.hashes.iter().map(|(_, h)| h.as_slice()).collect();
        let subtrees = tree::encode_head(&growth.tree);
        let recorded_at = to_datetime(now);
        // Binary COPY is the cheapest way in for two small rows per event.
        let sink = tx
            .copy_in("COPY tree_hashes (position, hash) FROM STDIN BINARY")
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::BYTEA]);
        pin_mut!(writer);
        for (position, hash) in positions.iter().zip(&hashes) {
            writer.as_mut().write(&[position, hash]).await?;
        }
        writer.finish().await?;
        let (head_stmt, cp_stmt) = futures::try_join!(
            tx.prepare_cached(
                "UPDATE ledger_head SET next_seq = $1, last_recorded_at = $2, subtrees = $3"
            ),
            tx.prepare_cached(
                "INSERT INTO checkpoints (size, root, note, recorded_at) VALUES ($1, $2, $3, $4)"
            ),
        )?;
        tree::account(tree_work);
        // Everything after the COPY is independent, so it all goes out at
        // once and costs about one round trip instead of one per statement.
        let size_i64 = size as i64;
        let root_bytes = root.as_slice();
        let head_params: [&(dyn ToSql + Sync); 3] = [&plan.next_seq, &recorded_at, &subtrees];
        let cp_params: [&(dyn ToSql + Sync); 4] = [&size_i64, &root_bytes, &note, &recorded_at];
        futures::try_join!(
            write_keys(&tx, &plan.rows, now),
            write_derived(&tx, &plan.derived),
            super::compliance::write_facts(&tx, &facts),
            tx.execute(&head_stmt, &head_params),
            tx.execute(&cp_stmt, &cp_params),
        )?;
    }
    tx.commit().await?;
    Ok(plan.results)
}

async fn write_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &[PlannedRow<'_>],
    now: Timestamp,
) -> Result<(), tokio_postgres::Error> {
    let sink = tx
        .copy_in(
            "COPY events (seq, event_id, patch_id, system, applied_at, status, package, from_version, \
             to_version, source, actor, detail, cves, reboot_required, change_ref, recorded_at, \
             recorded_by, content_hash) FROM STDIN BINARY",
        )
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    pin_mut!(writer);
    let recorded_at = to_datetime(now);
    for PlannedRow {
        seq,
        event: ev,
        digest,
        recorded_by: by,
    } in rows
    {
        let cves: Option<Vec<&str>> =
            (!ev.cves.is_empty()).then(|| ev.cves.iter().map(|c| c.as_str()).collect());
        let applied = to_datetime(ev.applied_at);
        let event_id = ev.event_id.as_ref().map(|i| i.as_str());
        let values: [&(dyn ToSql + Sync); 18] = [
            seq,
            &event_id,
            &ev.patch_id.as_str(),
            &ev.system.as_str(),
            &applied,
            &ev.status.as_str(),
            &ev.package,
            &ev.from_version,
            &ev.to_version,
            &ev.source,
            &ev.actor,
            &ev.detail,
            &cves,
            &ev.reboot_required,
            &ev.change_ref,
            &recorded_at,
            by,
            &digest.as_slice(),
        ];
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Records the idempotency keys of the new events.
async fn write_keys(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &[PlannedRow<'_>],
    now: Timestamp,
) -> Result<u64, tokio_postgres::Error> {
    let keyed: Vec<_> = rows.iter().filter(|r| r.event.event_id.is_some()).collect();
    if keyed.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = keyed
        .iter()
        .filter_map(|r| r.event.event_id.as_ref().map(|i| i.as_str()))
        .collect();
    let seqs: Vec<i64> = keyed.iter().map(|r| r.seq).collect();
    let hashes: Vec<&[u8]> = keyed.iter().map(|r| r.digest.as_slice()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO event_ids (event_id, seq, content_hash, recorded_at) \
             SELECT i, s, h, $4 FROM unnest($1::text[], $2::int8[], $3::bytea[]) AS u(i, s, h)",
        )
        .await?;
    tx.execute(&stmt, &[&ids, &seqs, &hashes, &to_datetime(now)])
        .await
}

/// Upserts the per-system summaries of a group.
const SYSTEMS_UPSERT: &str = "INSERT INTO systems (system, first_seq, last_seq, last_applied_at, n_success, n_failure, n_rolled_back) \
     SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::timestamptz[], $5::int8[], $6::int8[], $7::int8[]) \
     ON CONFLICT (system) DO UPDATE SET \
       last_seq = EXCLUDED.last_seq, \
       last_applied_at = GREATEST(systems.last_applied_at, EXCLUDED.last_applied_at), \
       n_success = systems.n_success + EXCLUDED.n_success, \
       n_failure = systems.n_failure + EXCLUDED.n_failure, \
       n_rolled_back = systems.n_rolled_back + EXCLUDED.n_rolled_back";

/// Upserts the latest state of each (patch, system) pair of a group: the
/// event with the greatest (applied_at, seq) wins.
const PAIRS_UPSERT: &str = "INSERT INTO patch_state (patch_id, system, status, applied_at, seq, attempts) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int8[], $6::int8[]) \
     ON CONFLICT (patch_id, system) DO UPDATE SET \
       status = CASE WHEN (EXCLUDED.applied_at, EXCLUDED.seq) > (patch_state.applied_at, patch_state.seq) \
                THEN EXCLUDED.status ELSE patch_state.status END, \
       seq = CASE WHEN (EXCLUDED.applied_at, EXCLUDED.seq) > (patch_state.applied_at, patch_state.seq) \
             THEN EXCLUDED.seq ELSE patch_state.seq END, \
       applied_at = GREATEST(patch_state.applied_at, EXCLUDED.applied_at), \
       attempts = patch_state.attempts + EXCLUDED.attempts";

async fn write_derived(
    tx: &deadpool_postgres::Transaction<'_>,
    d: &Derived,
) -> Result<(), tokio_postgres::Error> {
    let micros = |m: i64| to_datetime(Timestamp::from_micros(m));
    let names: Vec<&str> = d.systems.keys().map(String::as_str).collect();
    let sys: Vec<_> = names.iter().map(|n| &d.systems[*n]).collect();
    let first_seq: Vec<i64> = sys.iter().map(|s| s.first_seq).collect();
    let last_seq: Vec<i64> = sys.iter().map(|s| s.last_seq).collect();
    let last_applied: Vec<_> = sys.iter().map(|s| micros(s.last_applied_at)).collect();
    let counts: [Vec<i64>; 3] = std::array::from_fn(|i| sys.iter().map(|s| s.counts[i]).collect());

    let keys: Vec<&(String, String)> = d.pairs.keys().collect();
    let pairs: Vec<_> = keys.iter().map(|k| &d.pairs[*k]).collect();
    let patch_ids: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let systems: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let statuses: Vec<&str> = pairs.iter().map(|p| p.status.as_str()).collect();
    let applied: Vec<_> = pairs.iter().map(|p| micros(p.applied_at)).collect();
    let seqs: Vec<i64> = pairs.iter().map(|p| p.seq).collect();
    let attempts: Vec<i64> = pairs.iter().map(|p| p.attempts).collect();

    let (systems_stmt, pairs_stmt) = futures::try_join!(
        tx.prepare_cached(SYSTEMS_UPSERT),
        tx.prepare_cached(PAIRS_UPSERT)
    )?;
    let system_params: [&(dyn ToSql + Sync); 7] = [
        &names,
        &first_seq,
        &last_seq,
        &last_applied,
        &counts[0],
        &counts[1],
        &counts[2],
    ];
    let pair_params: [&(dyn ToSql + Sync); 6] =
        [&patch_ids, &systems, &statuses, &applied, &seqs, &attempts];
    futures::try_join!(
        tx.execute(&systems_stmt, &system_params),
        tx.execute(&pairs_stmt, &pair_params),
    )?;
    Ok(())
}
