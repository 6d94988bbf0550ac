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
        tx.pragma_update(None, "user_version", version as u32)
            .map_err(|e| e.to_string())?;
        tx.commit()
            .map_err(|e| format!("committing migration {version}: {e}"))?;
        tracing::info!(version, "applied SQLite migration");
    }
    Ok(())
}
