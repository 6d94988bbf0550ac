//! The stream end to end: the live feed, webhooks with their signature,
//! retries and dead letters, and the alert rules.
//! The NATS sink and consumer have their own file (`nats.rs`).

mod common;

use common::{at, event, TestServer};
use futures::StreamExt;
use patchaudit_server::stream::alerts::AlertConfig;
use patchaudit_server::stream::webhook::{self, WebhookConfig, WebhookSecret};
use patchaudit_server::stream::StreamConfig;
use patchaudit_server::ServerConfig;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn config() -> ServerConfig {
    ServerConfig {
        rate_limit_per_second: 0,
        ..ServerConfig::default()
    }
}

/// Reads SSE events from a response until `n` arrived: (id, event, data).
async fn read_sse(resp: reqwest::Response, n: usize) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut body = resp.bytes_stream();
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    while out.len() < n {
        let chunk = tokio::select! {
            c = body.next() => c.expect("the feed ended early").expect("read the feed"),
            _ = &mut deadline => panic!("only {} of {n} SSE events arrived: {out:?}", out.len()),
        };
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut ev, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    ev = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                out.push((id, ev, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_live_feed_filters_and_resumes_from_last_event_id() {
    let srv = TestServer::start().await;
    let r = srv
        .send(
            srv.client
                .put(srv.url("/v1/systems/db-1/tags"))
                .json(&json!({"tags": ["env=prod"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    srv.ingest(&[
        event("P1", "web-1", &at(1), "success"),
        event("P1", "db-1", &at(1), "failure"),
        event("P2", "web-1", &at(2), "failure"),
    ])
    .await;
    // From the start of the ledger: everything, with ids = seqs.
    let resp = srv
        .client
        .get(srv.url("/v1/stream?from_seq=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let got = read_sse(resp, 3).await;
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    assert!(got.iter().all(|g| g.1 == "event"));
    assert_eq!(got[1].2["system"], "db-1");
    assert_eq!(got[1].2["tags"], json!(["env=prod"]));
    assert_eq!(got[1].2["message_id"], "1");

    // A reconnecting client resumes after the last id it saw, and sees
    // events recorded while it was away, then new ones live.
    let resp = srv
        .client
        .get(srv.url("/v1/stream"))
        .header("Last-Event-ID", "1")
        .send()
        .await
        .unwrap();
    let live = tokio::spawn(read_sse(resp, 2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.ingest(&[event("P3", "web-2", &at(3), "success")]).await;
    let got = live.await.unwrap();
    assert_eq!(got[0].0, "2");
    assert_eq!(got[1].0, "3");
    assert_eq!(got[1].2["patch_id"], "P3");

    // Filters: status, system and tag.
    let failures = srv
        .client
        .get(srv.url("/v1/stream?from_seq=0&status=failure"))
        .send()
        .await
        .unwrap();
    let got = read_sse(failures, 2).await;
    assert_eq!(got[0].0, "1");
    assert_eq!(got[1].0, "2");
    let tagged = srv
        .client
        .get(srv.url("/v1/stream?from_seq=0&tag=env%3Dprod"))
        .send()
        .await
        .unwrap();
    let tagged = tokio::spawn(read_sse(tagged, 2));
    srv.ingest(&[
        event("P4", "web-1", &at(4), "success"),
        event("P4", "db-1", &at(4), "success"),
    ])
    .await;
    let got = tagged.await.unwrap();
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        ["1", "5"],
        "only db-1 carries env=prod"
    );

    // Bad parameters name themselves.
    let r = srv
        .send(
            srv.client
                .get(srv.url("/v1/stream?status=broken&tag=nokey")),
        )
        .await;
    let mut fields: Vec<String> = r.param_errors().into_iter().map(|e| e.0).collect();
    fields.sort();
    assert_eq!(fields, ["status", "tag"]);
    let r = srv
        .send(
            srv.client
                .get(srv.url("/v1/stream"))
                .header("Last-Event-ID", "abc"),
        )
        .await;
    assert_eq!(r.param_errors()[0].0, "Last-Event-ID");
    // The feed needs a token with read.
    let r = srv.send(srv.bare.get(srv.url("/v1/stream"))).await;
    assert_eq!(r.status, 401);
    // An open feed does not hold up the shutdown.
    let _open = srv.client.get(srv.url("/v1/stream")).send().await.unwrap();
    srv.shutdown().await;
}

/// What a webhook receiver saw: (message id, signature, body).
type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A receiver on a loopback port that answers 500 to messages whose body
/// contains `refuse` while `refusing` is set, and records everything.
async fn receiver(refuse: &'static str) -> (String, Seen, Arc<Mutex<bool>>) {
    use axum::http::{HeaderMap, StatusCode};
    let seen: Seen = Arc::default();
    let refusing = Arc::new(Mutex::new(true));
    let (s, r) = (seen.clone(), refusing.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (s, r) = (s.clone(), r.clone());
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                s.lock().unwrap().push((
                    h("patchaudit-message-id"),
                    h("patchaudit-signature"),
                    body.to_vec(),
                ));
                let text = String::from_utf8_lossy(&body);
                if *r.lock().unwrap() && text.contains(refuse) {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen, refusing)
}

async fn eventually<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn webhooks_are_signed_retried_dead_lettered_and_replayed() {
    let (url, seen, refusing) = receiver("BADPATCH").await;
    let secret = WebhookSecret::new("hook-secret");
    let stream = StreamConfig {
        webhooks: vec![WebhookConfig {
            url: url.clone(),
            secret: secret.clone(),
            max_attempts: 3,
            first_backoff: Duration::from_millis(20),
        }],
        alerts: AlertConfig {
            overdue_every: Duration::ZERO,
            ..AlertConfig::default()
        },
        ..StreamConfig::default()
    };
    let srv = TestServer::with_stream(config(), Some(stream)).await;
    srv.ingest(&[
        event("P1", "web-1", &at(1), "success"),
        event("BADPATCH", "web-1", &at(2), "success"),
        event("P3", "web-1", &at(3), "success"),
    ])
    .await;
    // P1 and P3 arrive once each; BADPATCH is tried 3 times, then set aside
    // without stopping the messages after it.
    eventually("three deliveries and three attempts", || {
        seen.lock().unwrap().len() >= 5
    })
    .await;
    let got = seen.lock().unwrap().clone();
    let ids: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(ids, ["0", "1", "1", "1", "2"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (_, sig, body) in &got {
        assert!(webhook::verify(&secret, sig, body, now, 300), "{sig}");
        assert!(!webhook::verify(
            &WebhookSecret::new("x"),
            sig,
            body,
            now,
            300
        ));
    }
    let body: Value = serde_json::from_slice(&got[0].2).unwrap();
    assert_eq!(body["patch_id"], "P1");
    assert_eq!(body["seq"], 0);

    let letters = srv.get("/v1/stream/dead-letters").await.json();
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["message_id"], "1");
    assert_eq!(letters[0]["attempts"], 3);
    assert!(letters[0]["error"].as_str().unwrap().contains("500"));
    let id = letters[0]["id"].as_u64().unwrap();

    // A replay while the receiver still refuses keeps the letter (502).
    // (Read directly: the harness's `send` refuses every 5xx.)
    let r = srv
        .client
        .post(srv.url(&format!("/v1/stream/dead-letters/{id}/replay")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:patchaudit:problem:bad-gateway");
    assert!(p["detail"].as_str().unwrap().contains("HTTP 500"), "{p}");
    assert_eq!(
        srv.get("/v1/stream/dead-letters")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Once it accepts, the replay delivers the same message and removes it.
    *refusing.lock().unwrap() = false;
    let r = srv
        .send(
            srv.client
                .post(srv.url(&format!("/v1/stream/dead-letters/{id}/replay"))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(srv
        .get("/v1/stream/dead-letters")
        .await
        .json()
        .as_array()
        .unwrap()
        .is_empty());
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.0, "1");
    assert_eq!(last.2, got[1].2, "the replay sends the same body");
    srv.send(
        srv.client
            .post(srv.url(&format!("/v1/stream/dead-letters/{id}/replay"))),
    )
    .await
    .problem(404, "not-found");

    // The status shows the webhook's cursor caught up.
    let mut status = Value::Null;
    for _ in 0..100 {
        status = srv.get("/v1/stream/status").await.json();
        let caught_up = status["cursors"].as_array().unwrap().iter().any(|c| {
            c["name"].as_str().unwrap().ends_with("/events")
                && c["name"].as_str().unwrap().starts_with("webhook:")
                && c["lag"] == 0
        });
        if caught_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["ledger_len"], 3);
    assert!(
        status["cursors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"].as_str().unwrap().starts_with("webhook:") && c["lag"] == 0),
        "{status}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn alert_rules_catch_severe_failures_bad_patches_and_overdue_pairs() {
    let stream = StreamConfig {
        alerts: AlertConfig {
            bad_patch_systems: 3,
            bad_patch_window: Duration::from_secs(3600),
            overdue_every: Duration::ZERO,
        },
        ..StreamConfig::default()
    };
    let srv = TestServer::with_stream(config(), Some(stream)).await;
    let r = srv
        .post_json(
            "/v1/catalog",
            &json!([
                {"id": "CRIT-1", "title": "c", "severity": "critical", "released_at": "2024-01-01T00:00:00Z"},
                {"id": "LOW-1", "title": "l", "severity": "low", "released_at": "2024-01-01T00:00:00Z"}
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    srv.ingest(&[
        event("CRIT-1", "web-1", &at(1), "failure"),
        event("LOW-1", "web-1", &at(1), "failure"),
        event("LOW-1", "web-2", &at(1), "failure"),
        event("LOW-1", "web-2", &at(1), "failure"),
    ])
    .await;
    let wait_for = |n: usize| {
        let srv = &srv;
        async move {
            for _ in 0..200 {
                let page = srv.get("/v1/alerts").await.json();
                if page["alerts"].as_array().unwrap().len() >= n {
                    return page;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!(
                "fewer than {n} alerts: {}",
                srv.get("/v1/alerts").await.text()
            );
        }
    };
    let page = wait_for(1).await;
    let alerts = page["alerts"].as_array().unwrap();
    assert_eq!(alerts[0]["rule"], "severe_failure");
    assert_eq!(alerts[0]["detail"]["patch_id"], "CRIT-1");
    assert_eq!(alerts[0]["detail"]["severity"], "critical");
    // A low patch failing on two systems is neither severe nor (yet) bad.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        srv.get("/v1/alerts").await.json()["alerts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A third system within the hour makes it a bad patch; a fourth
    // raises nothing new (one alert per patch).
    srv.ingest(&[event("LOW-1", "web-3", &at(1), "failure")])
        .await;
    let page = wait_for(2).await;
    let bad = &page["alerts"][1];
    assert_eq!(bad["rule"], "bad_patch");
    assert_eq!(bad["detail"]["systems"], json!(["web-1", "web-2", "web-3"]));
    srv.ingest(&[event("LOW-1", "web-4", &at(1), "failure")])
        .await;
    // Failures far apart in time are not a burst.
    srv.ingest(&[
        event("LOW-2", "a", "2024-01-01T00:00:00Z", "failure"),
        event("LOW-2", "b", "2024-01-02T00:00:00Z", "failure"),
        event("LOW-2", "c", "2024-01-03T00:00:00Z", "failure"),
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let page = srv.get("/v1/alerts").await.json();
    assert_eq!(page["alerts"].as_array().unwrap().len(), 2, "{page}");

    // Overdue: CRIT-1 (released 2024) is long past any SLA on web-1.
    let rules = patchaudit_server::stream::alerts::AlertRules::new(
        srv.store.clone(),
        srv.state.hub.clone(),
        AlertConfig::default(),
    );
    let n = rules.check_overdue(&srv.state).await.unwrap();
    assert!(n >= 1);
    let again = rules.check_overdue(&srv.state).await.unwrap();
    assert_eq!(n, again);
    let overdue = srv
        .get_query("/v1/alerts", &[("rule", "overdue")])
        .await
        .json();
    let overdue = overdue["alerts"].as_array().unwrap();
    assert_eq!(overdue.len(), n, "each overdue pair is raised once");
    assert!(overdue
        .iter()
        .any(|a| a["detail"]["system"] == "web-1" && a["detail"]["patch_id"] == "CRIT-1"));

    // Paging and bad parameters.
    let first = srv.get_query("/v1/alerts", &[("limit", "1")]).await.json();
    assert_eq!(first["alerts"].as_array().unwrap().len(), 1);
    let after = first["next_after"].as_u64().unwrap().to_string();
    let rest = srv
        .get_query(
            "/v1/alerts",
            &[("after", after.as_str()), ("limit", "1000")],
        )
        .await
        .json();
    assert_eq!(rest["alerts"][0]["rule"], "bad_patch");
    let r = srv
        .get_query("/v1/alerts", &[("limit", "0"), ("rule", "nope")])
        .await;
    let mut fields: Vec<String> = r.param_errors().into_iter().map(|e| e.0).collect();
    fields.sort();
    assert_eq!(fields, ["limit", "rule"]);
    srv.shutdown().await;
}
