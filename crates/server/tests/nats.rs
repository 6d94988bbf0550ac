//! The NATS JetStream sink and consumer against a real nats-server that
//! each test starts on a free port (never the shared one): delivery in
//! order with `Nats-Msg-Id`, a broker outage of a minute, a restart that
//! resumes from the stored cursor, and ingest from a subject.

mod common;

use async_nats::jetstream;
use common::{at, event, TestServer};
use futures::StreamExt;
use patchaudit_server::stream::alerts::AlertConfig;
use patchaudit_server::stream::StreamConfig;
use patchaudit_server::ServerConfig;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A nats-server of the test's own, killed on drop.
struct Nats {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nats {
    /// Starts nats-server with JetStream, or `None` (after the loud skip
    /// message) when it is not installed.
    async fn start() -> Option<Nats> {
        if !std::path::Path::new(NATS_SERVER).exists() {
            patchaudit_store::conformance::service_unavailable(
                "nats-server",
                &format!("{NATS_SERVER} is not installed"),
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut nats = Nats {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        nats.restart().await;
        Some(nats)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        self.stop();
        let child = Command::new(NATS_SERVER)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stream_config(nats: &Nats) -> StreamConfig {
    StreamConfig {
        nats_url: Some(nats.url()),
        alerts: AlertConfig {
            overdue_every: Duration::ZERO,
            ..AlertConfig::default()
        },
        ..StreamConfig::default()
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        rate_limit_per_second: 0,
        ..ServerConfig::default()
    }
}

/// Every message in the PATCHAUDIT stream on `events_subject`, in stream
/// order, once `n` are there: (subject, Nats-Msg-Id, body).
async fn published(url: &str, subjects: &str, n: usize) -> Vec<(String, String, Value)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = read_all(&js, subjects).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} messages on {subjects} arrived",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn read_all(js: &jetstream::Context, subjects: &str) -> Vec<(String, String, Value)> {
    let Ok(mut stream) = js.get_stream("PATCHAUDIT").await else {
        return Vec::new();
    };
    let total = stream.info().await.unwrap().state.messages as usize;
    if total == 0 {
        return Vec::new();
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: subjects.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), messages.next()).await
    {
        let m = m.unwrap();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        out.push((
            m.subject.to_string(),
            id,
            serde_json::from_slice(&m.payload).unwrap(),
        ));
    }
    out
}

#[tokio::test]
async fn events_and_alerts_reach_jetstream_in_order_with_message_ids() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let srv = TestServer::with_stream(config(), Some(stream_config(&nats))).await;
    let mut batch = Vec::new();
    for i in 0..30 {
        let mut e = event(
            "KB1",
            &format!("web-{}.example.com", i % 3),
            &at(1),
            "failure",
        );
        e["event_id"] = format!("e-{i}").into();
        batch.push(e);
    }
    srv.ingest(&batch).await;
    let got = published(&nats.url(), "patchaudit.events.>", 30).await;
    assert_eq!(got.len(), 30, "each event once");
    for (i, (subject, id, body)) in got.iter().enumerate() {
        assert_eq!(body["seq"], i as u64, "in seq order");
        assert_eq!(id, &format!("{i}:e-{i}"), "Nats-Msg-Id is seq:event_id");
        assert_eq!(body["message_id"], id.as_str());
        assert_eq!(
            subject,
            &format!("patchaudit.events.web-{}_2Eexample_2Ecom", i % 3)
        );
    }
    // Three systems failing KB1 within the hour: a bad-patch alert.
    let alerts = published(&nats.url(), "patchaudit.alerts.>", 1).await;
    assert_eq!(alerts[0].0, "patchaudit.alerts.bad_patch");
    assert!(alerts[0].1.starts_with("alert:"));
    assert_eq!(alerts[0].2["rule"], "bad_patch");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_minute_long_broker_outage_loses_nothing_and_keeps_order() {
    let Some(mut nats) = Nats::start().await else {
        return;
    };
    let srv = TestServer::with_stream(config(), Some(stream_config(&nats))).await;
    srv.ingest(&[event("P0", "web-1", &at(1), "success")]).await;
    published(&nats.url(), "patchaudit.events.>", 1).await;

    // The broker goes away for 60 s while events keep arriving; ingest
    // neither fails nor waits for it.
    nats.stop();
    let outage = std::time::Instant::now();
    let mut sent = 1;
    while outage.elapsed() < Duration::from_secs(60) {
        let started = std::time::Instant::now();
        srv.ingest(&[
            event("P1", "web-1", &at(2), "success"),
            event("P1", "web-2", &at(2), "success"),
        ])
        .await;
        sent += 2;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "ingest must not wait for the broker"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = srv.get("/v1/stream/status").await.json();
    let lag = status["cursors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "nats/events")
        .map(|c| c["lag"].as_u64().unwrap())
        .unwrap_or(sent);
    assert!(
        lag > 0,
        "the sink falls behind while the broker is down: {status}"
    );
    nats.restart().await;

    let got = published(&nats.url(), "patchaudit.events.>", sent as usize).await;
    let seqs: Vec<u64> = got.iter().map(|g| g.2["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..sent).collect::<Vec<_>>(),
        "every event, once, in seq order"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_restart_resumes_from_the_stored_cursor() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let open = || {
        let store = patchaudit_store::SqliteStore::open(
            &path,
            patchaudit_store::SqliteOptions {
                signer: Some(patchaudit_store::conformance::test_signer()),
                ..Default::default()
            },
        )
        .unwrap();
        std::sync::Arc::new(store) as std::sync::Arc<dyn patchaudit_store::Store>
    };
    let store = open();
    let state = patchaudit_server::AppState::new(store.clone(), config());
    let running = patchaudit_server::stream::start_for(&state, &stream_config(&nats))
        .await
        .unwrap();
    let batch = |from: usize, n: usize| {
        (from..from + n)
            .map(|i| {
                patchaudit_store::conformance::event(
                    "web-1",
                    &format!("P{i}"),
                    i as i64,
                    patchaudit_domain::Status::Success,
                )
            })
            .collect::<Vec<_>>()
    };
    store.append(batch(0, 5), "test").await.unwrap();
    published(&nats.url(), "patchaudit.events.>", 5).await;
    running.stop().await;
    let saved = store.cursors().await.unwrap();
    let nats_cursor = saved.iter().find(|c| c.name == "nats/events").unwrap();
    assert_eq!(nats_cursor.position, 5, "stop saves the cursor");

    // While it is down, more is recorded. A new broker starts empty, so
    // what it receives after the restart shows where the sink resumed.
    store.append(batch(5, 3), "test").await.unwrap();
    drop(state);
    drop(store);
    let fresh = Nats::start().await.unwrap();
    let store = open();
    let state = patchaudit_server::AppState::new(store.clone(), config());
    let running = patchaudit_server::stream::start_for(&state, &stream_config(&fresh))
        .await
        .unwrap();
    let got = published(&fresh.url(), "patchaudit.events.>", 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_all = published(&fresh.url(), "patchaudit.events.>", 3).await;
    assert_eq!(got.len(), 3);
    let seqs: Vec<u64> = got_all
        .iter()
        .map(|g| g.2["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [5, 6, 7], "resumed at the cursor, not from 0");
    running.stop().await;
}

#[tokio::test]
async fn events_published_to_a_subject_are_recorded_once_and_bad_ones_dead_lettered() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let mut sc = stream_config(&nats);
    sc.consume_nats = Some("agents.events".into());
    let srv = TestServer::with_stream(config(), Some(sc)).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    // The consumer creates the ingest stream; wait until it exists.
    for _ in 0..100 {
        if js.stream_by_subject("agents.events").await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let good = serde_json::to_vec(&event("KB9", "web-9", &at(1), "success")).unwrap();
    js.publish("agents.events", good.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut keyed = event("KB9", "web-8", &at(1), "success");
    keyed["event_id"] = "agent-1".into();
    let keyed = serde_json::to_vec(&keyed).unwrap();
    // The same keyed event twice: recorded once.
    for _ in 0..2 {
        js.publish("agents.events", keyed.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let bad = br#"{"patch_id": "", "system": "web-9", "applied_at": "yesterday", "status": "ok"}"#;
    js.publish("agents.events", bad.to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish("agents.events", b"not json".to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();

    let mut events = Vec::new();
    for _ in 0..100 {
        events = srv.all_events().await;
        if events.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = if events.len() == 2 {
        srv.all_events().await
    } else {
        events
    };
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["system"], "web-9");
    assert!(events[0]["event_id"].as_str().unwrap().starts_with("nats:"));
    assert_eq!(events[0]["recorded_by"], "nats:agents.events");
    assert_eq!(events[1]["event_id"], "agent-1");

    // Both bad messages wait on the dead-letter subject with their errors.
    let dl = js.get_stream("PATCHAUDIT_DEADLETTER").await.unwrap();
    let consumer = dl
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut letters = Vec::new();
    while letters.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("two dead letters")
            .unwrap()
            .unwrap();
        letters.push(serde_json::from_slice::<Value>(&m.payload).unwrap());
    }
    assert_eq!(letters[0]["error"]["kind"], "validation");
    let fields: Vec<&str> = letters[0]["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"patch_id")
            && fields.contains(&"applied_at")
            && fields.contains(&"status"),
        "{fields:?}"
    );
    assert_eq!(letters[0]["payload"], String::from_utf8_lossy(bad).as_ref());
    assert_eq!(letters[1]["error"]["kind"], "syntax");
    srv.shutdown().await;
}
