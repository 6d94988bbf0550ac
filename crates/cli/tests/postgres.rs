//! The PostgreSQL backend through real `patchaudit serve` processes:
//! several instances on one ledger, and a database outage under load.

mod common;

use common::{Server, ThrowawayPg};
use patchaudit_store::conformance::{pg_reachable, pg_test_url, TestSchema};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn event(client: usize, i: usize) -> serde_json::Value {
    serde_json::json!({
        "event_id": format!("c{client}-e{i}"),
        "patch_id": format!("KB{}", i % 11),
        "system": format!("host-{}", (client * 7 + i) % 40),
        "applied_at": "2024-06-01T00:00:00Z",
        "status": if i.is_multiple_of(9) { "failure" } else { "success" },
    })
}

async fn all_events(http: &reqwest::Client, url: &str) -> Vec<serde_json::Value> {
    let text = http
        .get(format!("{url}/v1/events?format=ndjson"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn assert_dense_and_unique(events: &[serde_json::Value], expected: usize) {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..expected as u64).collect::<Vec<_>>(),
        "seq must be dense from 0"
    );
    let ids: BTreeSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), expected, "no event may be recorded twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_write_one_correct_ledger() {
    if !pg_reachable() {
        return;
    }
    let guard = TestSchema::create().await;
    let schema = guard.name();
    let url = format!("{}?options=-c%20search_path%3D{schema}", pg_test_url());

    let dir = tempfile::tempdir().unwrap();
    // Both start at once: migrations must serialise on the advisory lock.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Server::start_url(dir.path(), &url, &[]));
        let b = s.spawn(|| Server::start_url(dir.path(), &url, &[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let urls = [a.url.clone(), b.url.clone()];
    // One database, so each server knows the other's token too.
    let http = a.client();

    const CLIENTS: usize = 12;
    const PER_CLIENT: usize = 60;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, urls) = (http.clone(), urls.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_CLIENT {
                // Each event goes to one instance, then is retried on the
                // other: idempotency must hold across instances.
                let first = &urls[(c + i) % 2];
                let second = &urls[(c + i + 1) % 2];
                let body = if i.is_multiple_of(4) {
                    serde_json::json!([event(c, i)])
                } else {
                    event(c, i)
                };
                let r1: serde_json::Value = http
                    .post(format!("{first}/v1/events"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .error_for_status()
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let r2: serde_json::Value = http
                    .post(format!("{second}/v1/events"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .error_for_status()
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(
                    r2["events"][0]["duplicate"], true,
                    "the retry on the other instance is a duplicate"
                );
                assert_eq!(r1["events"][0]["seq"], r2["events"][0]["seq"]);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let via_a = all_events(&http, &urls[0]).await;
    let via_b = all_events(&http, &urls[1]).await;
    assert_dense_and_unique(&via_a, CLIENTS * PER_CLIENT);
    assert_eq!(via_a, via_b, "both instances serve the same ledger");
    // Conflicts are detected across instances too.
    let mut changed = event(0, 0);
    changed["status"] = "rolled_back".into();
    let r = http
        .post(format!("{}/v1/events", urls[1]))
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // Both instances signed with the one key they share, into one tree:
    // every leaf, every checkpoint and every stored hash check out.
    let o = common::run(
        dir.path(),
        &["verify", "--database-url", &url, "--check-tree", "--json"],
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(report["events"], (CLIENTS * PER_CLIENT) as u64, "{report}");

    // Stop the servers before the guard drops the schema.
    drop((a, b));
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_503_then_recovers_with_nothing_lost_or_doubled() {
    let Some(pg) = ThrowawayPg::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_url(dir.path(), &pg.url(), &[]);
    let url = server.url.clone();
    let http = server
        .client_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 150;
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, url, acked) = (http.clone(), url.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut unavailable = 0usize;
            for i in 0..PER_CLIENT {
                let deadline = Instant::now() + Duration::from_secs(90);
                // A client retries with the same event_id until it is acknowledged.
                loop {
                    let r = http
                        .post(format!("{url}/v1/events"))
                        .json(&event(c, i))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status();
                    if status.is_success() {
                        acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        break;
                    }
                    assert_eq!(
                        status,
                        503,
                        "an outage must be a 503, got {status}: {}",
                        r.text().await.unwrap()
                    );
                    assert_eq!(
                        r.headers()["content-type"],
                        "application/problem+json",
                        "a 503 is a problem document"
                    );
                    unavailable += 1;
                    assert!(Instant::now() < deadline, "the server never recovered");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            unavailable
        }));
    }
    // Stop PostgreSQL in the middle of the load, keep it down, bring it back.
    while acked.load(std::sync::atomic::Ordering::Relaxed) < 150 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pg.ctl_stop();
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready while the database is down");
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.ctl_start();

    let mut unavailable = 0;
    for t in tasks {
        unavailable += t.await.unwrap();
    }
    assert!(unavailable > 0, "the outage was observed by clients");
    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let events = all_events(&http, &url).await;
    assert_dense_and_unique(&events, CLIENTS * PER_CLIENT);
    drop(server);
}
