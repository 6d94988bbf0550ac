//! The conformance suite and PostgreSQL-specific guarantees for [`PgStore`],
//! against the real PostgreSQL at 127.0.0.1:5432. Each test works in its
//! own schema and drops it afterwards.

use patchaudit_domain::Status;
use patchaudit_store::conformance::{event, pg_reachable, pg_test_url, Fixture, TestSchema};
use patchaudit_store::{PgOptions, PgStore, Store, StoreError};
use std::collections::HashSet;
use std::sync::Arc;

struct PgFixture {
    schema: TestSchema,
    store: Arc<dyn Store>,
}

impl Fixture for PgFixture {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    async fn teardown(self) {
        // Dropping the guard drops the schema.
        drop(self.store);
        drop(self.schema);
    }
}

fn options(schema: &str) -> PgOptions {
    PgOptions {
        schema: Some(schema.to_owned()),
        pool_size: 4,
        signer: Some(patchaudit_store::conformance::test_signer()),
        ..Default::default()
    }
}

async fn pg_fixture() -> Option<PgFixture> {
    if !pg_reachable() {
        return None;
    }
    let schema = TestSchema::new();
    let store = PgStore::connect(&pg_test_url(), options(schema.name()))
        .await
        .unwrap();
    Some(PgFixture {
        schema,
        store: Arc::new(store),
    })
}

patchaudit_store::conformance_suite!(pg_fixture);

async fn raw_client(schema: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg_test_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("SET search_path = {schema}"))
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn the_database_itself_refuses_updates_deletes_and_truncate() {
    let Some(f) = pg_fixture().await else { return };
    f.store
        .append(vec![event("s", "P", 0, Status::Success)], "")
        .await
        .unwrap();
    f.store.raise_alert("k", "bad_patch", "{}").await.unwrap();
    let c = raw_client(f.schema.name()).await;
    for sql in [
        "UPDATE alerts SET body = 'x'",
        "DELETE FROM alerts",
        "UPDATE events SET status = 'failure'",
        "DELETE FROM events",
        "TRUNCATE events",
        "DELETE FROM event_ids",
    ] {
        let err = c.batch_execute(sql).await.unwrap_err();
        assert!(format!("{err:?}").contains("append-only"), "{sql}: {err:?}");
    }
    assert_eq!(f.store.len().await.unwrap(), 1);
    f.teardown().await;
}

#[tokio::test]
async fn events_are_partitioned_by_month_with_partitions_ahead() {
    let Some(f) = pg_fixture().await else { return };
    let c = raw_client(f.schema.name()).await;
    let rows = c
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace \
             WHERE p.relname = 'events' AND n.nspname = $1 ORDER BY 1",
            &[&f.schema.name()],
        )
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let now = chrono::Utc::now();
    let this_month = format!("events_p{}", now.format("%Y_%m"));
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(names[0], this_month);
    f.store
        .append(vec![event("s", "P", 0, Status::Success)], "")
        .await
        .unwrap();
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM {this_month}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "new events land in the current month's partition");
    f.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_migrate_once() {
    if !pg_reachable() {
        return;
    }
    let guard = TestSchema::new();
    let schema = guard.name().to_owned();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let schema = schema.clone();
            tokio::spawn(async move { PgStore::connect(&pg_test_url(), options(&schema)).await })
        })
        .collect();
    for s in starts {
        s.await.unwrap().unwrap();
    }
    let c = raw_client(&schema).await;
    let versions: Vec<i32> = c
        .query("SELECT version FROM schema_migrations ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        (1..=patchaudit_store::conformance::pg_schema_version()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_dense_ledger() {
    let Some(f) = pg_fixture().await else { return };
    // A second instance on the same schema, as a second server process would be.
    let other: Arc<dyn Store> = Arc::new(
        PgStore::connect(&pg_test_url(), options(f.schema.name()))
            .await
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..60i64 {
        let s = if i % 2 == 0 {
            f.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            // Both instances send the same events under the same keys: each
            // must be recorded once.
            let mut e = event(&format!("h{}", (i / 2) % 7), "KB1", i / 2, Status::Success);
            e.event_id = Some(patchaudit_domain::EventId::parse(format!("k{}", i / 2)).unwrap());
            s.append(vec![e], "").await.unwrap()[0].clone()
        }));
    }
    let mut seqs = HashSet::new();
    for t in tasks {
        seqs.insert(t.await.unwrap().seq);
    }
    assert_eq!(seqs.len(), 30, "30 distinct keys, 30 events");
    assert_eq!(f.store.len().await.unwrap(), 30);
    assert_eq!(seqs, (0..30).collect::<HashSet<u64>>());
    drop(other);
    f.teardown().await;
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_one_clear_line() {
    let err = PgStore::connect("postgres://u:s3cret@127.0.0.1:1/db", PgOptions::default())
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Open(_)));
    assert!(msg.contains("u@127.0.0.1:1/db"), "{msg}");
    assert!(!msg.contains("s3cret"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    let err = PgStore::connect("postgres://[oops", PgOptions::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("invalid PostgreSQL URL"), "{err}");
    if pg_reachable() {
        let err = PgStore::connect(
            &pg_test_url().replace("/postgres", "/patchaudit_no_such_db"),
            PgOptions::default(),
        )
        .await
        .err()
        .unwrap();
        assert!(err.to_string().contains("patchaudit_no_such_db"), "{err}");
    }
}

/// A read-only open changes nothing: it refuses a schema it would have to
/// create or migrate, naming what it found, and a store opened read-only
/// reads the ledger but cannot append to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_open_neither_migrates_nor_writes() {
    if !pg_reachable() {
        return;
    }
    let read_only = |schema: &str| PgOptions {
        read_only: true,
        ..options(schema)
    };
    let guard = TestSchema::create().await;
    let err = PgStore::connect(&pg_test_url(), read_only(guard.name()))
        .await
        .err()
        .expect("an empty schema is refused");
    let msg = err.to_string();
    assert!(msg.contains("no patchaudit schema"), "{msg}");
    assert!(msg.contains("does not migrate"), "{msg}");
    let c = raw_client(guard.name()).await;
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
            &[&guard.name()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "the read-only open created tables");

    // Migrated and holding one event, it opens read-only and reads.
    let writer = PgStore::connect(&pg_test_url(), options(guard.name()))
        .await
        .unwrap();
    writer
        .append(vec![event("s", "P", 0, Status::Success)], "")
        .await
        .unwrap();
    let reader = PgStore::connect(&pg_test_url(), read_only(guard.name()))
        .await
        .unwrap();
    assert_eq!(reader.len().await.unwrap(), 1);
    assert!(reader.checkpoint().await.unwrap().is_some());
    let err = reader
        .append(vec![event("s", "P", 1, Status::Success)], "")
        .await
        .expect_err("no append");
    assert!(
        err.to_string().contains("read-only"),
        "the database refused the write: {err}"
    );
    assert_eq!(writer.len().await.unwrap(), 1);
}
