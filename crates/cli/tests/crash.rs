//! Crash safety: kill -9 the server while clients stream events, restart it,
//! and check that every acknowledged event is there exactly once, seqs are
//! dense, and retrying everything creates no duplicate.

mod common;

use common::Server;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

const CLIENTS: usize = 8;

fn event_body(client: usize, i: usize) -> serde_json::Value {
    // Mix single events and small batches so both paths are interrupted.
    serde_json::json!({
        "event_id": format!("c{client}-{i}"),
        "patch_id": format!("KB{}", i % 13),
        "system": format!("host-{client}"),
        "applied_at": "2024-06-01T00:00:00Z",
        "status": if i.is_multiple_of(17) { "failure" } else { "success" },
        "detail": "x".repeat(1 + i % 200),
    })
}

async fn fetch_all(http: &reqwest::Client, url: &str) -> Vec<serde_json::Value> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_streaming_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let server = Server::start(dir.path(), &db, &[]);
    let url = server.url.clone();
    let http = server.client();

    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let sent: Arc<Mutex<HashMap<String, serde_json::Value>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, url, acked, sent) = (http.clone(), url.clone(), acked.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            loop {
                let n = if i % 5 == 0 { 3 } else { 1 };
                let batch: Vec<_> = (i..i + n).map(|j| event_body(c, j)).collect();
                for e in &batch {
                    sent.lock()
                        .unwrap()
                        .insert(e["event_id"].as_str().unwrap().to_owned(), e.clone());
                }
                i += n;
                let resp = http
                    .post(format!("{url}/v1/events"))
                    .json(&batch)
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        let body: serde_json::Value = r.json().await.unwrap();
                        let mut a = acked.lock().unwrap();
                        for e in body["events"].as_array().unwrap() {
                            a.insert(e["event_id"].as_str().unwrap().to_owned());
                        }
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the server is gone
                }
                if i > 100_000 {
                    panic!("the server was never killed");
                }
            }
        }));
    }
    // Let the clients get well going, then kill the server mid-stream.
    while acked.lock().unwrap().len() < 400 {
        assert!(
            !tasks.iter().all(|t| t.is_finished()),
            "every client stopped before the kill"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(
        acked.len() >= 400,
        "the kill came after 400 acknowledgements"
    );

    let server = Server::start(dir.path(), &db, &[]);
    let events = fetch_all(&http, &server.url).await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..events.len() as u64).collect::<Vec<_>>(),
        "seqs must be dense from 0"
    );
    let ids: Vec<String> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "no event may be recorded twice");
    let missing: Vec<_> = acked.difference(&unique).collect();
    assert!(missing.is_empty(), "acknowledged events lost: {missing:?}");

    // Every client now retries everything it ever sent: nothing is doubled.
    let all: Vec<_> = sent.values().cloned().collect();
    for chunk in all.chunks(500) {
        let r = http
            .post(format!("{}/v1/events", server.url))
            .json(&chunk)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "retry failed: {}", r.status());
    }
    let after = fetch_all(&http, &server.url).await;
    assert_eq!(
        after.len(),
        sent.len(),
        "each sent event exactly once after retries"
    );
    let seqs: Vec<u64> = after.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..after.len() as u64).collect::<Vec<_>>());
    for e in &after {
        let id = e["event_id"].as_str().unwrap();
        let orig = &sent[id];
        assert_eq!(e["system"], orig["system"]);
        assert_eq!(e["patch_id"], orig["patch_id"]);
        assert_eq!(e["status"], orig["status"]);
    }

    // The kill left no disagreement between the events, the tree and the
    // signed checkpoints.
    let o = common::run(
        dir.path(),
        &[
            "verify",
            "--database-url",
            &format!("sqlite://{}", db.display()),
            "--check-tree",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["events"], sent.len() as u64, "{report}");
}
