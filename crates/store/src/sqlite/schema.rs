//! The SQLite schema and its migrations.
//!
//! Migrations are numbered from 1 and applied in order inside one
//! transaction each; `PRAGMA user_version` records the last one applied. A
//! database written by a newer build (a higher version than we know) is
//! refused rather than guessed at.

use rusqlite::Connection;

/// Each entry is one migration; its version is its 1-based position.
const MIGRATIONS: &[&str] = &[
    // 1: the ledger and its derived summaries.
    r#"
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,          -- dense from 0, assigned by the writer
    event_id        TEXT UNIQUE,                  -- the client's idempotency key
    patch_id        TEXT NOT NULL,
    system          TEXT NOT NULL,
    applied_at      INTEGER NOT NULL,             -- microseconds since the epoch, UTC
    status          TEXT NOT NULL CHECK (status IN ('success', 'failure', 'rolled_back')),
    package         TEXT,
    from_version    TEXT,
    to_version      TEXT,
    source          TEXT,
    actor           TEXT,
    detail          TEXT,
    cves            TEXT,                         -- space-separated CVE ids, NULL when none
    reboot_required INTEGER,                      -- 0, 1 or NULL
    change_ref      TEXT,
    recorded_at     INTEGER NOT NULL,             -- microseconds since the epoch, UTC
    recorded_by     TEXT NOT NULL DEFAULT '',
    content_hash    BLOB NOT NULL                 -- SHA-256 of the canonical content
);
-- Each secondary index ends implicitly in the rowid (= seq), so every
-- filter below is a range scan already in seq order: keyset pages need no sort.
CREATE INDEX events_by_system  ON events (system);
CREATE INDEX events_by_patch   ON events (patch_id);
CREATE INDEX events_by_status  ON events (status);
CREATE INDEX events_by_source  ON events (source);
CREATE INDEX events_by_applied ON events (applied_at);

-- The ledger is append-only: no code path updates or deletes an event, and
-- the database itself refuses to.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'patchaudit events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'patchaudit events are append-only'); END;

-- Derived from events in the same transaction as each append.
CREATE TABLE systems (
    system          TEXT PRIMARY KEY,
    first_seq       INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL,
    last_applied_at INTEGER NOT NULL,
    n_success       INTEGER NOT NULL,
    n_failure       INTEGER NOT NULL,
    n_rolled_back   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE patch_state (
    patch_id        TEXT NOT NULL,
    system          TEXT NOT NULL,
    status          TEXT NOT NULL,                -- of the latest event by (applied_at, seq)
    applied_at      INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    PRIMARY KEY (patch_id, system)
) WITHOUT ROWID;
"#,
    // 2: the Merkle tree over the events, its head and its signed checkpoints.
    r#"
-- Every perfect subtree hash, at its position in the append-only layout of
-- patchaudit_proofs::stored_hash_index (level 0 is the leaves).
CREATE TABLE tree_hashes (
    position INTEGER PRIMARY KEY,
    hash     BLOB NOT NULL
);
-- The one head row: the tree's size and the roots of its perfect subtrees,
-- largest first, concatenated. Rewritten by every commit, in the same
-- transaction as the events and hashes it covers.
CREATE TABLE ledger_head (
    id               INTEGER PRIMARY KEY CHECK (id = 0),
    size             INTEGER NOT NULL,
    subtrees         BLOB NOT NULL,
    last_recorded_at INTEGER
);
INSERT INTO ledger_head (id, size, subtrees) VALUES (0, 0, x'');
-- One signed note per commit: C2SP tlog-checkpoint in a C2SP signed note.
CREATE TABLE checkpoints (
    size        INTEGER PRIMARY KEY,
    root        BLOB NOT NULL,
    note        TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
);
CREATE TRIGGER tree_hashes_no_update BEFORE UPDATE ON tree_hashes
BEGIN SELECT RAISE(ABORT, 'patchaudit tree hashes are append-only'); END;
CREATE TRIGGER tree_hashes_no_delete BEFORE DELETE ON tree_hashes
BEGIN SELECT RAISE(ABORT, 'patchaudit tree hashes are append-only'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'patchaudit checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'patchaudit checkpoints are append-only'); END;
"#,
    // 3: compliance records with their history, and the facts of each pair.
    r#"
-- Catalog entries, system tags, the SLA policy and exceptions, as an
-- append-only history of revisions. A record's state is its latest
-- revision; a revision without a body deletes it.
CREATE TABLE records (
    rev        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    changed_at INTEGER NOT NULL,              -- microseconds since the epoch, UTC
    changed_by TEXT NOT NULL,
    body       TEXT                           -- JSON; NULL for a deletion
);
CREATE INDEX records_by_id ON records (kind, id, rev);
CREATE TRIGGER records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'patchaudit records are append-only'); END;
CREATE TRIGGER records_no_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'patchaudit records are append-only'); END;

-- Derived from events in the same transaction as each append: what the
-- ledger says about each (patch, system) pair (patchaudit_compliance::PairFacts).
CREATE TABLE pair_facts (
    patch_id         TEXT NOT NULL,
    system           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    failures         INTEGER NOT NULL,
    first_attempt_at INTEGER,
    first_success_at INTEGER,
    applied_since    INTEGER,
    pending_reboot   INTEGER NOT NULL,
    last_status      TEXT NOT NULL,
    last_applied_at  INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL,
    last_failure_seq INTEGER,
    updated_seq      INTEGER NOT NULL,            -- the highest seq folded in
    PRIMARY KEY (patch_id, system)
) WITHOUT ROWID;
-- A server keeps the facts in memory and reads only what changed since.
CREATE INDEX pair_facts_by_update ON pair_facts (updated_seq);
-- Folding a pair again (an event from its past) reads its events by this.
CREATE INDEX events_by_pair ON events (patch_id, system);
"#,
    // 4: the stream: cursors of the sinks, dead letters and alerts.
    r#"
-- The next position each consumer has not yet delivered. State, not
-- history: a cursor row is updated in place as it moves forward.
CREATE TABLE stream_cursors (
    name       TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
-- Deliveries that failed every retry; removed when replayed.
CREATE TABLE dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    sink       TEXT NOT NULL,
    message_id TEXT NOT NULL,
    payload    TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    error      TEXT NOT NULL,
    failed_at  INTEGER NOT NULL
);
-- Alerts are history: written once, never changed.
CREATE TABLE alerts (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    key       TEXT NOT NULL UNIQUE,
    rule      TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    body      TEXT NOT NULL
);
CREATE TRIGGER alerts_no_update BEFORE UPDATE ON alerts
BEGIN SELECT RAISE(ABORT, 'patchaudit alerts are append-only'); END;
CREATE TRIGGER alerts_no_delete BEFORE DELETE ON alerts
BEGIN SELECT RAISE(ABORT, 'patchaudit alerts are append-only'); END;
"#,
];

/// The schema version this build writes.
pub const CURRENT_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database up to [`CURRENT_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let found: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| format!("reading the schema version: {e}"))?;
    if found > CURRENT_VERSION {
        return Err(format!(
            "the database has schema version {found}, but this build only knows up to {CURRENT_VERSION}; upgrade patchaudit"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i + 1;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| format!("starting migration {version}: {e}"))?;
        // Another process may have migrated while we waited for the lock.
        let now: u32 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if now as usize > i {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| format!("applying migration {version}: {e}"))?;
        if version == 2 {
            backfill_tree(&tx).map_err(|e| format!("applying migration {version}: {e}"))?;
        }
        if version == 3 {
            super::compliance::backfill_facts(&tx)
                .map_err(|e| format!("applying migration {version}: {e}"))?;
        }
        tx.pragma_update(None, "user_version", version as u32)
            .map_err(|e| e.to_string())?;
        tx.commit()
            .map_err(|e| format!("committing migration {version}: {e}"))?;
        tracing::info!(version, "applied SQLite migration");
    }
    Ok(())
}

/// Builds the tree over the events a schema-1 ledger already holds, so that
/// it can be proven like any other. The first signed checkpoint follows
/// when a signing store opens it (see `SqliteStore::open`).
fn backfill_tree(tx: &rusqlite::Transaction<'_>) -> Result<(), String> {
    use crate::rows::EVENT_COLUMNS;
    let mut stmt = tx
        .prepare(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY seq"))
        .map_err(|e| e.to_string())?;
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    let mut insert = tx
        .prepare("INSERT INTO tree_hashes (position, hash) VALUES (?, ?)")
        .map_err(|e| e.to_string())?;
    let mut tree = patchaudit_proofs::TreeBuilder::new();
    let mut last = None;
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let event = super::row_to_event(row).map_err(|e| e.to_string())?;
        if event.seq != tree.size() {
            return Err(format!(
                "event seq {} follows {} events: seq is not dense",
                event.seq,
                tree.size()
            ));
        }
        last = Some(event.recorded_at.as_micros());
        let mut failed = None;
        tree.append_stored(patchaudit_proofs::leaf_hash(&event.leaf_bytes()), |p, h| {
            if let Err(e) = insert.execute(rusqlite::params![p as i64, &h[..]]) {
                failed.get_or_insert(e.to_string());
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
    }
    tx.execute(
        "UPDATE ledger_head SET size = ?, subtrees = ?, last_recorded_at = ?",
        rusqlite::params![tree.size() as i64, crate::tree::encode_head(&tree), last],
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}
