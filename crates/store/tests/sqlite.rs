//! The conformance suite and SQLite-specific guarantees for [`SqliteStore`].

use patchaudit_domain::Status;
use patchaudit_store::conformance::{event, test_signer, Fixture};
use patchaudit_store::{SqliteOptions, SqliteStore, Store};
use std::sync::Arc;

fn opts() -> SqliteOptions {
    SqliteOptions {
        signer: Some(test_signer()),
        ..SqliteOptions::default()
    }
}

struct SqliteFixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
}

impl Fixture for SqliteFixture {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    async fn teardown(self) {}
}

async fn sqlite_fixture() -> Option<SqliteFixture> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("ledger.db"), opts()).unwrap();
    Some(SqliteFixture {
        _dir: dir,
        store: Arc::new(store),
    })
}

patchaudit_store::conformance_suite!(sqlite_fixture);

#[tokio::test]
async fn the_database_itself_refuses_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store = SqliteStore::open(&path, opts()).unwrap();
    store
        .append(vec![event("s", "P", 0, Status::Success)], "")
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let upd = conn.execute("UPDATE events SET status = 'failure' WHERE seq = 0", []);
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    let del = conn.execute("DELETE FROM events", []);
    assert!(del.unwrap_err().to_string().contains("append-only"));
    assert_eq!(store.len().await.unwrap(), 1);
    store.raise_alert("k", "bad_patch", "{}").await.unwrap();
    for sql in ["UPDATE alerts SET body = 'x'", "DELETE FROM alerts"] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

#[tokio::test]
async fn reopening_keeps_the_ledger_and_continues_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let store = SqliteStore::open(&path, opts()).unwrap();
        store
            .append(vec![event("s", "P", 0, Status::Success)], "")
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path, opts()).unwrap();
    let out = store
        .append(vec![event("s", "P", 1, Status::Success)], "")
        .await
        .unwrap();
    assert_eq!(out[0].seq, 1);
}

#[tokio::test]
async fn two_handles_on_one_file_never_collide() {
    // A CLI writing beside a running server opens its own writer on the same
    // file; seq is read under the write lock, so both stay dense together.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let a = SqliteStore::open(&path, opts()).unwrap();
    let b = SqliteStore::open(&path, opts()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.append(vec![event("s", "P", i, Status::Success)], "")
                .await
                .unwrap()[0]
                .seq
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (0..40).collect::<Vec<u64>>());
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path, opts()).err().unwrap();
    assert!(err.to_string().contains("schema version 999"), "{err}");
}

#[test]
fn an_unwritable_path_is_a_clear_open_error() {
    let err = SqliteStore::open("/nonexistent-dir/x/ledger.db", opts())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("/nonexistent-dir/x/ledger.db"),
        "{err}"
    );
}

#[tokio::test]
async fn the_wal_is_checkpointed_in_the_background() {
    // The writer's own checkpoint only starts past 256 MiB of WAL (when the
    // checkpointer asks) or 1 GiB (the backstop), far more than this test
    // writes, so the database file grows only if the background
    // checkpointer copies the WAL into it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store = SqliteStore::open(&path, opts()).unwrap();
    let empty = std::fs::metadata(&path).unwrap().len();
    for b in 0..20 {
        let batch = (0..250)
            .map(|i| {
                let mut e = event(&format!("host-{i}"), "KB1", b * 250 + i, Status::Success);
                e.detail = Some("x".repeat(200));
                e
            })
            .collect();
        store.append(batch, "").await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let size = std::fs::metadata(&path).unwrap().len();
        if size > empty + 1_000_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {size} bytes: nothing checkpointed the WAL"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(store.len().await.unwrap(), 5000);
}

/// Under appends that never pause, the WAL starts again from its beginning
/// once it is past `wal_restart_pages`, instead of growing until the
/// writer's backstop checkpoint (which, in the benchmarks, stalled every
/// append for tens of milliseconds several times a second).
#[tokio::test]
async fn the_wal_restarts_under_appends_that_never_pause() {
    const RESTART_PAGES: i64 = 256; // 1 MiB
    const EVENTS: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store = Arc::new(
        SqliteStore::open(
            &path,
            SqliteOptions {
                wal_restart_pages: RESTART_PAGES,
                wal_backstop_pages: 10_000_000,
                ..opts()
            },
        )
        .unwrap(),
    );
    let wal = dir.path().join("ledger.db-wal");
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let (store, next) = (store.clone(), next.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(10, std::sync::atomic::Ordering::Relaxed);
                if first >= EVENTS {
                    break;
                }
                let batch = (first..first + 10)
                    .map(|i| {
                        let mut e = event(
                            &format!("host-{}", i % 97),
                            "KB1",
                            i as i64,
                            Status::Failure,
                        );
                        // Two or three pages of failure output per event:
                        // 160 MB in all, several times what the WAL may hold.
                        e.detail = Some("x".repeat(8_000));
                        e
                    })
                    .collect();
                store.append(batch, "").await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(store.len().await.unwrap(), EVENTS);
    let db = std::fs::metadata(&path).unwrap().len();
    // While the store is open the WAL file never shrinks (a restart writes
    // over it from the start), so its size now is the most it ever held.
    let largest = std::fs::metadata(&wal).unwrap().len();
    assert!(
        db > 120_000_000,
        "the test wrote too little to show anything: the database holds {db} bytes"
    );
    assert!(
        largest < 48 << 20,
        "the WAL grew to {largest} bytes although the writer is asked to restart it past {RESTART_PAGES} pages; the database holds {db} bytes"
    );
}

/// A ledger written before the compliance migration gets the facts of every
/// pair folded from its events when it is opened, and those equal a full
/// fold; later appends keep them up to date.
#[tokio::test]
async fn the_compliance_migration_backfills_pair_facts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let store = SqliteStore::open(&path, opts()).unwrap();
        let mut batch = Vec::new();
        for i in 0..40 {
            // Late events too: the backfill folds by applied_at, not arrival.
            let t = (40 - i) * 60;
            batch.push(event(
                &format!("s{}", i % 5),
                &format!("KB{}", i % 3),
                t,
                Status::ALL[(i % 3) as usize],
            ));
        }
        store.append(batch, "").await.unwrap();
    }
    // Take the database back to schema 2, as a build before migration 3 left
    // it (so without migration 4's tables either).
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE stream_cursors; DROP TABLE dead_letters; DROP TABLE alerts; \
             DROP TABLE records; DROP TABLE pair_facts; DROP INDEX events_by_pair; PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, opts()).unwrap();
    let kept = store.pair_facts(None).await.unwrap();
    let folded = store
        .pair_facts(Some(patchaudit_domain::Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(kept.facts.values().map(|m| m.len()).sum::<usize>(), 15);
    assert_eq!(kept.facts, folded.facts, "the backfill equals a full fold");
    // Every backfilled pair counts as changed at seq 0, so a cache reads them all.
    assert_eq!(store.pair_facts_since(1).await.unwrap().facts.len(), 0);
    store
        .append(vec![event("s0", "KB0", 10_000, Status::RolledBack)], "")
        .await
        .unwrap();
    let kept = store.pair_facts(None).await.unwrap();
    let folded = store
        .pair_facts(Some(patchaudit_domain::Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(kept.facts, folded.facts);
    assert_eq!(store.pair_facts_since(40).await.unwrap().facts.len(), 1);
}
