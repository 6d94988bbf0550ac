//! The PostgreSQL schema, its migrations and its partitions.
//!
//! Migrations run under a session advisory lock, so several instances
//! starting at once apply each migration exactly once; `schema_migrations`
//! records what was applied. The events table is range-partitioned by month
//! of `recorded_at`: since `recorded_at` never decreases, ingest always lands
//! in the newest partition, and old months can be detached and archived
//! without touching live ones.

use chrono::{Datelike, TimeZone, Utc};
use tokio_postgres::Client;

/// The advisory lock key that serialises migrations and partition creation
/// (an arbitrary constant: "patchaud" in ASCII).
const LOCK_KEY: i64 = 0x7061_7463_6861_7564;

/// How many months ahead partitions are created.
pub const MONTHS_AHEAD: u32 = 3;

const MIGRATIONS: &[&str] = &[
    // 1: the ledger, the sequencer row, idempotency keys and derived summaries.
    r#"
CREATE TABLE ledger_head (
    id               boolean PRIMARY KEY DEFAULT true CHECK (id),
    next_seq         bigint NOT NULL,
    last_recorded_at timestamptz
);
INSERT INTO ledger_head (id, next_seq) VALUES (true, 0);

CREATE TABLE events (
    seq             bigint NOT NULL,
    event_id        text,
    patch_id        text NOT NULL,
    system          text NOT NULL,
    applied_at      timestamptz NOT NULL,
    status          text NOT NULL CHECK (status IN ('success', 'failure', 'rolled_back')),
    package         text,
    from_version    text,
    to_version      text,
    source          text,
    actor           text,
    detail          text,
    cves            text[],
    reboot_required boolean,
    change_ref      text,
    recorded_at     timestamptz NOT NULL,
    recorded_by     text NOT NULL DEFAULT '',
    content_hash    bytea NOT NULL,
    PRIMARY KEY (seq, recorded_at)
) PARTITION BY RANGE (recorded_at);

-- Every API filter is served by an index that also orders by seq, so keyset
-- pages are index range scans merged across partitions, never sorts.
CREATE INDEX events_by_system  ON events (system, seq);
CREATE INDEX events_by_patch   ON events (patch_id, seq);
CREATE INDEX events_by_status  ON events (status, seq);
CREATE INDEX events_by_source  ON events (source, seq);
CREATE INDEX events_by_applied ON events (applied_at, seq);

-- A unique index on a partitioned table must include the partition key, so
-- idempotency keys live in their own table, written in the same transaction.
CREATE TABLE event_ids (
    event_id     text PRIMARY KEY,
    seq          bigint NOT NULL,
    content_hash bytea NOT NULL,
    recorded_at  timestamptz NOT NULL
);

CREATE FUNCTION patchaudit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'patchaudit events are append-only';
END
$$;
-- Row triggers are cloned to every partition; statement triggers catch
-- statements on the parent even when they touch no row. TRUNCATE triggers
-- are not cloned, so each partition gets its own when it is created.
CREATE TRIGGER events_no_update_row BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION patchaudit_append_only();
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION patchaudit_append_only();
CREATE TRIGGER event_ids_no_update BEFORE UPDATE OR DELETE OR TRUNCATE ON event_ids
    FOR EACH STATEMENT EXECUTE FUNCTION patchaudit_append_only();

CREATE TABLE systems (
    system          text PRIMARY KEY,
    first_seq       bigint NOT NULL,
    last_seq        bigint NOT NULL,
    last_applied_at timestamptz NOT NULL,
    n_success       bigint NOT NULL,
    n_failure       bigint NOT NULL,
    n_rolled_back   bigint NOT NULL
);

CREATE TABLE patch_state (
    patch_id   text NOT NULL,
    system     text NOT NULL,
    status     text NOT NULL,
    applied_at timestamptz NOT NULL,
    seq        bigint NOT NULL,
    attempts   bigint NOT NULL,
    PRIMARY KEY (patch_id, system)
);
"#,
    // 2: the Merkle tree over the events, its head and its signed checkpoints.
    r#"
-- The head row also holds the roots of the tree's perfect subtrees, largest
-- first, concatenated: the next commit extends the tree from them alone.
ALTER TABLE ledger_head ADD COLUMN subtrees bytea NOT NULL DEFAULT '\x';

-- Every perfect subtree hash, at its position in the append-only layout of
-- patchaudit_proofs::stored_hash_index (level 0 is the leaves).
CREATE TABLE tree_hashes (
    position bigint PRIMARY KEY,
    hash     bytea NOT NULL
);
-- One signed note per commit: C2SP tlog-checkpoint in a C2SP signed note.
CREATE TABLE checkpoints (
    size        bigint PRIMARY KEY,
    root        bytea NOT NULL,
    note        text NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE TRIGGER tree_hashes_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON tree_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION patchaudit_append_only();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION patchaudit_append_only();
"#,
    // 3: compliance records with their history, and the facts of each pair.
    r#"
-- Catalog entries, system tags, the SLA policy and exceptions, as an
-- append-only history of revisions. A record's state is its latest
-- revision; a revision without a body deletes it.
CREATE TABLE records (
    rev        bigserial PRIMARY KEY,
    kind       text NOT NULL,
    id         text NOT NULL,
    changed_at timestamptz NOT NULL,
    changed_by text NOT NULL,
    body       text
);
CREATE INDEX records_by_id ON records (kind, id, rev);
CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION patchaudit_append_only();

-- Derived from events in the same transaction as each append: what the
-- ledger says about each (patch, system) pair (patchaudit_compliance::PairFacts).
CREATE TABLE pair_facts (
    patch_id         text NOT NULL,
    system           text NOT NULL,
    attempts         bigint NOT NULL,
    failures         bigint NOT NULL,
    first_attempt_at timestamptz,
    first_success_at timestamptz,
    applied_since    timestamptz,
    pending_reboot   boolean NOT NULL,
    last_status      text NOT NULL,
    last_applied_at  timestamptz NOT NULL,
    last_seq         bigint NOT NULL,
    last_failure_seq bigint,
    updated_seq      bigint NOT NULL,
    PRIMARY KEY (patch_id, system)
);
CREATE INDEX pair_facts_by_update ON pair_facts (updated_seq);
-- Folding a pair again (an event from its past) reads its events by this.
CREATE INDEX events_by_pair ON events (patch_id, system, seq);
"#,
    // 4: the stream: cursors of the sinks, dead letters and alerts.
    r#"
-- The next position each consumer has not yet delivered. State, not
-- history: a cursor row is updated in place as it moves forward.
CREATE TABLE stream_cursors (
    name       text PRIMARY KEY,
    position   bigint NOT NULL,
    updated_at timestamptz NOT NULL
);
-- Deliveries that failed every retry; removed when replayed.
CREATE TABLE dead_letters (
    id         bigserial PRIMARY KEY,
    sink       text NOT NULL,
    message_id text NOT NULL,
    payload    text NOT NULL,
    attempts   integer NOT NULL,
    error      text NOT NULL,
    failed_at  timestamptz NOT NULL
);
-- Alerts are history: written once, never changed.
CREATE TABLE alerts (
    id        bigserial PRIMARY KEY,
    key       text NOT NULL UNIQUE,
    rule      text NOT NULL,
    raised_at timestamptz NOT NULL,
    body      text NOT NULL
);
CREATE TRIGGER alerts_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON alerts
    FOR EACH STATEMENT EXECUTE FUNCTION patchaudit_append_only();
"#,
];

/// Creates `schema` if it is given and missing, applies pending migrations
/// and creates the partitions needed now, all under the advisory lock.
pub async fn migrate(
    client: &mut Client,
    schema: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = async {
        if let Some(schema) = schema {
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await?;
        }
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    integer PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await?;
        let row = client
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await?;
        let found: i32 = row.get(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = i as i32 + 1;
            let tx = client.transaction().await?;
            tx.batch_execute(sql).await?;
            if version == 2 {
                backfill_tree(&tx).await?;
            }
            if version == 3 {
                super::compliance::backfill_facts(&tx).await?;
            }
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await?;
            tx.commit().await?;
            tracing::info!(version, "applied PostgreSQL migration");
        }
        ensure_partitions_locked(client, Utc::now()).await
    }
    .await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result?;
    unlock.map(|_| ())
}

/// Builds the tree over the events a schema-1 ledger already holds, so that
/// it can be proven like any other. The first signed checkpoint follows
/// when a signing store connects (see `PgStore::connect`).
async fn backfill_tree(tx: &tokio_postgres::Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    use crate::rows::EVENT_COLUMNS;
    let mut tree = patchaudit_proofs::TreeBuilder::new();
    let (mut positions, mut hashes): (Vec<i64>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    loop {
        let rows = tx
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq >= $1 ORDER BY seq LIMIT 10000"
                ),
                &[&(tree.size() as i64)],
            )
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            // A schema-1 ledger was written by patchaudit, so its rows are
            // valid and dense; one that is not stays without a tree, and
            // appends then refuse with a clear "inconsistent" error.
            let Ok(event) = super::row_to_event(row) else {
                return Ok(());
            };
            if event.seq != tree.size() {
                return Ok(());
            }
            tree.append_stored(patchaudit_proofs::leaf_hash(&event.leaf_bytes()), |p, h| {
                positions.push(p as i64);
                hashes.push(h.to_vec());
            });
        }
        tx.execute(
            "INSERT INTO tree_hashes (position, hash) SELECT * FROM unnest($1::int8[], $2::bytea[])",
            &[&positions, &hashes],
        )
        .await?;
        positions.clear();
        hashes.clear();
    }
    tx.execute(
        "UPDATE ledger_head SET subtrees = $1",
        &[&crate::tree::encode_head(&tree)],
    )
    .await?;
    Ok(())
}

/// The schema version this build writes.
pub fn current_version() -> i32 {
    MIGRATIONS.len() as i32
}

/// Creates the partitions for the month of `now` and [`MONTHS_AHEAD`]
/// months after it, under the advisory lock.
pub async fn ensure_partitions(
    client: &Client,
    now: chrono::DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = ensure_partitions_locked(client, now).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result?;
    unlock.map(|_| ())
}

async fn ensure_partitions_locked(
    client: &Client,
    now: chrono::DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let (mut y, mut m) = (now.year(), now.month());
    for _ in 0..=MONTHS_AHEAD {
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let from = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single();
        let to = Utc.with_ymd_and_hms(ny, nm, 1, 0, 0, 0).single();
        if let (Some(from), Some(to)) = (from, to) {
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS events_p{y:04}_{m:02} PARTITION OF events \
                 FOR VALUES FROM ('{}') TO ('{}')",
                from.to_rfc3339(),
                to.to_rfc3339()
            );
            client.batch_execute(&sql).await?;
            client
                .batch_execute(&format!(
                    "CREATE OR REPLACE TRIGGER no_truncate BEFORE TRUNCATE ON events_p{y:04}_{m:02} \
                     FOR EACH STATEMENT EXECUTE FUNCTION patchaudit_append_only()"
                ))
                .await?;
        }
        (y, m) = (ny, nm);
    }
    Ok(())
}
