//! Integration tests of the HTTP API: a real server on a loopback port, a
//! fresh SQLite ledger per test, and real HTTP through reqwest.

mod common;

use common::{assert_utc_micros, at, at_out, event, ndjson, seqs, TestServer};
use futures::StreamExt;
use patchaudit_domain::Timestamp;
use patchaudit_server::ServerConfig;
use serde_json::{json, Value};
use std::collections::BTreeSet;

// ------------------------------------------------------------------ ingest

#[tokio::test]
async fn single_event_is_created_and_read_back_exactly() {
    let srv = TestServer::start().await;
    let sent = json!({
        "event_id": "evt-1",
        "patch_id": 5034441,
        "system": "web-01",
        "applied_at": "2024-05-01T14:00:00+02:00",
        "status": "success",
        "package": "openssl",
        "from_version": "3.0.1",
        "to_version": "3.0.2",
        "source": "apt",
        "actor": "unattended-upgrades",
        "detail": "line 1\nline 2\twith a tab, and \"quotes\"",
        "cves": ["CVE-2024-0001", "CVE-2021-44228"],
        "reboot_required": true,
        "change_ref": "CHG-42"
    });
    let r = srv.post_json("/v1/events", &sent).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(
        r.content_type.starts_with("application/json"),
        "{}",
        r.content_type
    );
    let body = r.json();
    assert_eq!(body["created"], 1, "{body}");
    assert_eq!(body["duplicates"], 0, "{body}");
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!(events[0]["seq"], 0);
    assert_eq!(events[0]["event_id"], "evt-1");
    assert_eq!(events[0]["duplicate"], false);
    let recorded_at = events[0]["recorded_at"].as_str().unwrap().to_owned();
    assert_utc_micros(&recorded_at);
    let recorded = Timestamp::parse_rfc3339(&recorded_at).unwrap().as_micros();
    let now = Timestamp::now().as_micros();
    assert!(
        (now - recorded).abs() < 300_000_000,
        "recorded_at {recorded_at} is not about now"
    );

    let got = srv.get("/v1/events/0").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(got.content_type.starts_with("application/json"));
    let expected = json!({
        "seq": 0,
        "event_id": "evt-1",
        "patch_id": "5034441",
        "system": "web-01",
        "applied_at": "2024-05-01T12:00:00.000000Z",
        "status": "success",
        "package": "openssl",
        "from_version": "3.0.1",
        "to_version": "3.0.2",
        "source": "apt",
        "actor": "unattended-upgrades",
        "detail": "line 1\nline 2\twith a tab, and \"quotes\"",
        "cves": ["CVE-2024-0001", "CVE-2021-44228"],
        "reboot_required": true,
        "change_ref": "CHG-42",
        "recorded_at": recorded_at,
        // The token that sent it: its name and id.
        "recorded_by": format!("test-admin#{}", &srv.token[3..19])
    });
    assert_eq!(got.json(), expected);
    srv.shutdown().await;
}

#[tokio::test]
async fn minimal_event_omits_absent_fields_and_truncates_to_microseconds() {
    let srv = TestServer::start().await;
    let sent = json!({
        "patch_id": "KB1",
        "system": "web-01",
        "applied_at": "2024-05-01T07:30:00.123456789-04:30",
        "status": "rolled_back",
        "package": null,
        "cves": null
    });
    let r = srv.post_json("/v1/events", &sent).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let resp = r.json();
    assert!(
        resp["events"][0].get("event_id").is_none(),
        "no event_id was sent: {resp}"
    );

    let got = srv.get("/v1/events/0").await.json();
    let keys: BTreeSet<&str> = got
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let want: BTreeSet<&str> = [
        "seq",
        "patch_id",
        "system",
        "applied_at",
        "status",
        "cves",
        "recorded_at",
        "recorded_by",
    ]
    .into();
    assert_eq!(keys, want, "{got}");
    assert_eq!(got["applied_at"], "2024-05-01T12:00:00.123456Z");
    assert_eq!(got["status"], "rolled_back");
    assert_eq!(got["cves"], json!([]));
    assert_eq!(got["recorded_at"], resp["events"][0]["recorded_at"]);
    srv.shutdown().await;
}

#[tokio::test]
async fn json_array_ndjson_and_csv_batches_get_dense_ordered_seqs() {
    let srv = TestServer::start().await;

    let array = json!([
        event("KB-A1", "web-01", &at(1), "success"),
        event("KB-A2", "web-02", &at(2), "failure"),
        event("KB-A3", "web-03", &at(3), "rolled_back"),
    ]);
    let r = srv
        .post(
            "/v1/events",
            "application/json; charset=utf-8",
            serde_json::to_vec(&array).unwrap(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let b = r.json();
    assert_eq!(
        (b["created"].clone(), b["duplicates"].clone()),
        (json!(3), json!(0))
    );
    assert_eq!(seqs(b["events"].as_array().unwrap()), vec![0, 1, 2]);

    let nd = format!(
        "{}\n\n{}\r\n{}\n",
        event("KB-N1", "nd-01", &at(4), "success"),
        event("KB-N2", "nd-02", &at(5), "failure"),
        event("KB-N3", "nd-03", &at(6), "success"),
    );
    let r = srv.post("/v1/events", "application/x-ndjson", nd).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let b = r.json();
    assert_eq!(b["created"], 3);
    assert_eq!(seqs(b["events"].as_array().unwrap()), vec![3, 4, 5]);

    let csv = "patch_id,system,applied_at,status,cves,reboot_required,package,detail\n\
               12345,csv-01,2024-01-01T07:00:00Z,success,CVE-2024-0001;CVE-2024-0002,yes,openssl,\n\
               KB-C2,csv-02,2024-01-01T08:00:00+01:00,failure,,,,\"exit 1\nsee log, line 2\"\n\
               \"KB-C3, quoted\",csv-03,2024-01-01T09:00:00Z,rolled_back,,no,,\n";
    let r = srv.post("/v1/events", "text/csv", csv).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let b = r.json();
    assert_eq!(b["created"], 3);
    assert_eq!(seqs(b["events"].as_array().unwrap()), vec![6, 7, 8]);

    let page = srv.get("/v1/events").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    let events = page["events"].as_array().unwrap();
    assert_eq!(seqs(events), (0..9).collect::<Vec<_>>());
    let patch_ids: Vec<&str> = events
        .iter()
        .map(|e| e["patch_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        patch_ids,
        [
            "KB-A1",
            "KB-A2",
            "KB-A3",
            "KB-N1",
            "KB-N2",
            "KB-N3",
            "12345",
            "KB-C2",
            "KB-C3, quoted"
        ]
    );
    assert_eq!(page["next_cursor"], Value::Null);

    // CSV cells were typed as documented.
    assert_eq!(events[6]["cves"], json!(["CVE-2024-0001", "CVE-2024-0002"]));
    assert_eq!(events[6]["reboot_required"], true);
    assert_eq!(events[6]["package"], "openssl");
    assert_eq!(events[7]["applied_at"], at_out(7));
    assert_eq!(events[7]["detail"], "exit 1\nsee log, line 2");
    assert!(events[7].get("package").is_none(), "empty cell is absent");
    assert!(events[7].get("reboot_required").is_none());
    assert_eq!(events[7]["cves"], json!([]));
    assert_eq!(events[8]["reboot_required"], false);
    assert_eq!(events[3]["system"], "nd-01");
    assert_eq!(events[4]["status"], "failure");
    srv.shutdown().await;
}

#[tokio::test]
async fn validation_reports_every_problem_of_the_batch_and_writes_nothing() {
    let srv = TestServer::start().await;
    srv.ingest(&[event("KB0", "web-00", &at(0), "success")])
        .await;

    let mut bad_values = event("KB2", "web-02", &at(2), "done");
    bad_values["colour"] = json!("blue");
    bad_values["cves"] = json!(["CVE-2024-0001", "CVE-24-1"]);
    let batch = json!([
        event("KB-ok-1", "web-01", &at(1), "success"),
        {},
        bad_values,
        42,
        event("KB-ok-2", "web-04", &at(4), "failure"),
    ]);
    let r = srv.post_json("/v1/events", &batch).await;
    let p = r.problem(422, "validation");
    let errors = p["errors"].as_array().unwrap();
    let got: BTreeSet<(u64, String, String)> = errors
        .iter()
        .map(|e| {
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "every error explains itself: {e}"
            );
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(u64, String, String)> = [
        (1, "patch_id", "required"),
        (1, "system", "required"),
        (1, "applied_at", "required"),
        (1, "status", "required"),
        (2, "colour", "unknown_field"),
        (2, "status", "invalid_value"),
        (2, "cves[1]", "format"),
        (3, "", "type"),
    ]
    .into_iter()
    .map(|(i, f, c)| (i, f.to_owned(), c.to_owned()))
    .collect();
    assert_eq!(got, want, "{p}");
    assert_eq!(errors.len(), want.len(), "no error is listed twice: {p}");
    assert!(p.get("errors_omitted").is_none(), "{p}");

    let all = srv.all_events().await;
    assert_eq!(
        seqs(&all),
        vec![0],
        "nothing of the rejected batch was written"
    );
    let page = srv.get("/v1/events").await.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);

    // The ledger continues densely after a rejected batch.
    assert_eq!(
        srv.ingest(&[event("KB-after", "web-01", &at(5), "success")])
            .await,
        vec![1]
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn ndjson_and_csv_validation_errors_are_indexed_by_record() {
    let srv = TestServer::start().await;
    let nd = format!(
        "{}\n{}\n{}\n",
        event("KB1", "a", &at(1), "success"),
        json!({"patch_id": "KB2", "system": "", "applied_at": "2024-01-01 02:00", "status": "success", "seq": 7}),
        event("KB3", "c", &at(3), "success"),
    );
    let r = srv.post("/v1/events", "application/x-ndjson", nd).await;
    let p = r.problem(422, "validation");
    let got: BTreeSet<(u64, String, String)> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(u64, String, String)> = [
        (1, "system", "empty"),
        (1, "applied_at", "format"),
        (1, "seq", "read_only"),
    ]
    .into_iter()
    .map(|(i, f, c)| (i, f.to_owned(), c.to_owned()))
    .collect();
    assert_eq!(got, want, "{p}");

    let csv = "patch_id,system,applied_at,status,flavour\n\
               KB1,a,2024-01-01T01:00:00Z,success,\n\
               KB2,b,2024-01-01T02:00:00Z,success,vanilla\n\
               KB3,c,2024-01-01T03:00:00Z,maybe,\n";
    let r = srv.post("/v1/events", "text/csv", csv).await;
    let p = r.problem(422, "validation");
    let got: Vec<(u64, String, String)> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "flavour".to_owned(), "unknown_field".to_owned()),
            (2, "status".to_owned(), "invalid_value".to_owned()),
        ],
        "{p}"
    );
    assert!(srv.all_events().await.is_empty());
    srv.shutdown().await;
}

fn future_by(micros: i64) -> String {
    Timestamp::now().saturating_add_micros(micros).to_rfc3339()
}

const MINUTE: i64 = 60_000_000;

#[tokio::test]
async fn applied_at_too_far_in_the_future_is_rejected_per_configured_skew() {
    let srv = TestServer::start().await;
    for ahead in [120 * MINUTE, 90 * MINUTE] {
        let r = srv
            .post_json(
                "/v1/events",
                &event("KB1", "web-01", &future_by(ahead), "success"),
            )
            .await;
        let p = r.problem(422, "validation");
        assert_eq!(p["errors"].as_array().unwrap().len(), 1, "{p}");
        assert_eq!(p["errors"][0]["index"], 0);
        assert_eq!(p["errors"][0]["field"], "applied_at");
        assert_eq!(p["errors"][0]["code"], "future");
    }
    // Within the default hour of skew is fine.
    srv.ingest(&[event("KB1", "web-01", &future_by(30 * MINUTE), "success")])
        .await;
    srv.shutdown().await;

    let lax = TestServer::with_config(ServerConfig {
        max_future_skew_micros: 120 * MINUTE,
        ..ServerConfig::default()
    })
    .await;
    let ahead = future_by(90 * MINUTE);
    assert_eq!(
        lax.ingest(&[event("KB1", "web-01", &ahead, "success")])
            .await,
        vec![0]
    );
    let stored = lax.get("/v1/events/0").await.json();
    assert_eq!(
        Timestamp::parse_rfc3339(stored["applied_at"].as_str().unwrap()).unwrap(),
        Timestamp::parse_rfc3339(&ahead).unwrap()
    );
    let r = lax
        .post_json(
            "/v1/events",
            &event("KB1", "web-01", &future_by(180 * MINUTE), "success"),
        )
        .await;
    let p = r.problem(422, "validation");
    assert_eq!(p["errors"][0]["code"], "future", "{p}");
    lax.shutdown().await;
}

#[tokio::test]
async fn resending_an_event_id_is_idempotent_and_reuse_with_other_content_conflicts() {
    let srv = TestServer::start().await;
    let mut e1 = event("KB1", "web-01", "2024-05-01T12:00:00Z", "success");
    e1["event_id"] = json!("e1");
    e1["cves"] = json!(["CVE-2024-0001"]);
    let mut e2 = event("KB2", "web-01", &at(2), "failure");
    e2["event_id"] = json!("e2");

    let first = srv.post_json("/v1/events", &e1).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let first = first.json();
    assert_eq!(srv.ingest(&[e2.clone()]).await, vec![1]);

    // Same id, same content: 200, the original seq and recorded_at.
    let again = srv.post_json("/v1/events", &e1).await;
    assert_eq!(again.status, 200, "{}", again.text());
    let again = again.json();
    assert_eq!(again["created"], 0);
    assert_eq!(again["duplicates"], 1);
    assert_eq!(again["events"][0]["seq"], 0);
    assert_eq!(again["events"][0]["duplicate"], true);
    assert_eq!(again["events"][0]["event_id"], "e1");
    assert_eq!(
        again["events"][0]["recorded_at"],
        first["events"][0]["recorded_at"]
    );

    // The same instant written in another offset is the same content.
    let mut e1_offset = e1.clone();
    e1_offset["applied_at"] = json!("2024-05-01T14:00:00+02:00");
    let r = srv.post_json("/v1/events", &e1_offset).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["events"][0]["duplicate"], true);
    assert_eq!(srv.all_events().await.len(), 2, "ledger length unchanged");

    // A mixed batch: new events are created, the duplicate is reported.
    let mut e3 = event("KB3", "web-02", &at(3), "success");
    e3["event_id"] = json!("e3");
    let r = srv.post_json("/v1/events", &json!([e3, e1.clone()])).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let b = r.json();
    assert_eq!(
        (b["created"].clone(), b["duplicates"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(seqs(b["events"].as_array().unwrap()), vec![2, 0]);
    let dup_flags: Vec<bool> = b["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["duplicate"].as_bool().unwrap())
        .collect();
    assert_eq!(dup_flags, vec![false, true]);

    // Same id, different content: 409, and nothing of that batch is written.
    let mut e4 = event("KB4", "web-03", &at(4), "success");
    e4["event_id"] = json!("e4");
    let mut e1_changed = e1.clone();
    e1_changed["status"] = json!("failure");
    let r = srv.post_json("/v1/events", &json!([e4, e1_changed])).await;
    let p = r.problem(409, "conflict");
    assert_eq!(p["existing_seq"], 0, "{p}");
    assert_eq!(p["event_id"], "e1", "{p}");
    assert_eq!(p["index"], 1, "{p}");

    let all = srv.all_events().await;
    assert_eq!(seqs(&all), vec![0, 1, 2]);
    assert!(
        all.iter().all(|e| e["event_id"] != "e4"),
        "the conflicting batch must not be partly written"
    );
    assert_eq!(all[0]["status"], "success", "the original stays as it was");
    srv.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_are_400_with_their_line_and_column() {
    let srv = TestServer::start().await;

    let body = "[\n{\"patch_id\": 1},\n{\"system\": }\n]";
    let r = srv.post("/v1/events", "application/json", body).await;
    let p = r.problem(400, "malformed-body");
    assert_eq!(
        (p["line"].clone(), p["column"].clone()),
        (json!(3), json!(12)),
        "{p}"
    );

    let body = "{\"patch_id\": \"KB1\", \"system\": \"a\" \"status\": 1}";
    let r = srv.post("/v1/events", "application/json", body).await;
    let p = r.problem(400, "malformed-body");
    assert_eq!(
        (p["line"].clone(), p["column"].clone()),
        (json!(1), json!(35)),
        "{p}"
    );

    let nd = format!(
        "{}\n{}\n{{oops}}\n{}\n",
        event("KB1", "a", &at(1), "success"),
        event("KB2", "b", &at(2), "success"),
        event("KB3", "c", &at(3), "success"),
    );
    let r = srv.post("/v1/events", "application/x-ndjson", nd).await;
    let p = r.problem(400, "malformed-body");
    assert_eq!(p["line"], 3, "{p}");
    assert_eq!(p["column"], 2, "{p}");

    let r = srv.post("/v1/events", "application/json", "   ").await;
    r.problem(400, "malformed-body");

    let r = srv
        .post("/v1/events", "text/csv", "patch_id,system\nKB1,web\nKB2\n")
        .await;
    let p = r.problem(400, "malformed-body");
    assert_eq!(p["line"], 3, "{p}");

    assert!(srv.all_events().await.is_empty());
    srv.shutdown().await;
}

// ------------------------------------------------------------------ limits

#[tokio::test]
async fn a_batch_over_max_batch_is_413() {
    let srv = TestServer::with_config(ServerConfig {
        max_batch: 5,
        ..ServerConfig::default()
    })
    .await;
    let six: Vec<Value> = (0..6)
        .map(|i| event(&format!("KB{i}"), "web-01", &at(i), "success"))
        .collect();
    let r = srv
        .post_json("/v1/events", &Value::Array(six.clone()))
        .await;
    let p = r.problem(413, "too-large");
    assert!(p["detail"].as_str().unwrap().contains('5'), "{p}");

    let nd: String = six.iter().map(|e| format!("{e}\n")).collect();
    let r = srv.post("/v1/events", "application/x-ndjson", nd).await;
    r.problem(413, "too-large");
    assert!(srv.all_events().await.is_empty());

    assert_eq!(srv.ingest(&six[..5]).await, vec![0, 1, 2, 3, 4]);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_body_over_max_body_bytes_is_a_413_the_client_receives() {
    let limit = 1024;
    let srv = TestServer::with_config(ServerConfig {
        max_body_bytes: limit,
        ..ServerConfig::default()
    })
    .await;

    let big: Vec<Value> = (0..100)
        .map(|i| {
            let mut e = event(&format!("KB{i}"), "web-01", &at(1), "failure");
            e["detail"] = json!("x".repeat(2000));
            e
        })
        .collect();
    let big = serde_json::to_vec(&big).unwrap();
    assert!(big.len() > 200_000);

    // With a Content-Length.
    let r = srv
        .post("/v1/events", "application/json", big.clone())
        .await;
    let p = r.problem(413, "too-large");
    assert!(p["detail"].as_str().unwrap().contains("1024"), "{p}");

    // Chunked, without a Content-Length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(8 * 1024).map(|c| Ok(c.to_vec())).collect();
    let r = srv
        .post(
            "/v1/events",
            "application/json",
            reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        )
        .await;
    r.problem(413, "too-large");

    // Exactly at the limit is accepted; one byte more is not.
    let one = serde_json::to_string(&event("KB-edge", "web-01", &at(1), "success")).unwrap();
    let at_limit = format!("{one}{}", " ".repeat(limit - one.len()));
    assert_eq!(at_limit.len(), limit);
    let over = format!("{at_limit} ");
    let r = srv.post("/v1/events", "application/json", over).await;
    r.problem(413, "too-large");
    assert!(
        srv.all_events().await.is_empty(),
        "nothing oversized was written"
    );
    let r = srv.post("/v1/events", "application/json", at_limit).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(seqs(&srv.all_events().await), vec![0]);
    srv.shutdown().await;
}

#[tokio::test]
async fn an_unsupported_content_type_is_415() {
    let srv = TestServer::start().await;
    let body = serde_json::to_vec(&event("KB1", "web-01", &at(1), "success")).unwrap();
    for ct in ["text/plain", "application/xml", "multipart/form-data"] {
        let r = srv.post("/v1/events", ct, body.clone()).await;
        let p = r.problem(415, "unsupported-media-type");
        assert!(p["detail"].as_str().unwrap().contains(ct), "{p}");
    }
    assert!(srv.all_events().await.is_empty());
    // Media type parameters and case do not matter.
    let r = srv
        .post("/v1/events", "Application/JSON; charset=utf-8", body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    srv.shutdown().await;
}

// ------------------------------------------------------------------ listing

struct Seed {
    patch_id: String,
    system: String,
    hour: u32,
    status: &'static str,
    source: &'static str,
}

fn seeds() -> Vec<Seed> {
    let statuses = ["success", "failure", "rolled_back"];
    (0..12u32)
        .map(|i| Seed {
            patch_id: format!("KB{}", i % 2 + 1),
            system: ["alpha", "beta", "gamma"][(i % 3) as usize].to_owned(),
            // A permutation of 0..12, so applied_at is not in seq order.
            hour: (i * 7) % 12,
            status: statuses[((i / 2) % 3) as usize],
            source: ["apt", "dnf"][((i / 3) % 2) as usize],
        })
        .collect()
}

async fn seeded() -> (TestServer, Vec<Seed>) {
    let srv = TestServer::start().await;
    let seeds = seeds();
    let events: Vec<Value> = seeds
        .iter()
        .map(|s| {
            let mut e = event(&s.patch_id, &s.system, &at(s.hour), s.status);
            e["source"] = json!(s.source);
            e
        })
        .collect();
    assert_eq!(srv.ingest(&events).await, (0..12).collect::<Vec<u64>>());
    (srv, seeds)
}

async fn json_page(srv: &TestServer, path: &str, query: &[(&str, &str)]) -> Value {
    let r = srv.get_query(path, query).await;
    assert_eq!(r.status, 200, "{query:?}: {}", r.text());
    assert!(
        r.content_type.starts_with("application/json"),
        "{}",
        r.content_type
    );
    r.json()
}

#[tokio::test]
async fn event_filters_match_exactly_the_expected_events() {
    let (srv, seeds) = seeded().await;
    type Pred = Box<dyn Fn(u64, &Seed) -> bool>;
    let cases: Vec<(Vec<(&str, &str)>, Pred)> = vec![
        (
            vec![("system", "beta")],
            Box::new(|_, s| s.system == "beta"),
        ),
        (
            vec![("patch_id", "KB2")],
            Box::new(|_, s| s.patch_id == "KB2"),
        ),
        (
            vec![("status", "failure")],
            Box::new(|_, s| s.status == "failure"),
        ),
        (
            vec![("status", "rolled_back")],
            Box::new(|_, s| s.status == "rolled_back"),
        ),
        (vec![("source", "dnf")], Box::new(|_, s| s.source == "dnf")),
        (
            vec![
                ("applied_from", "2024-01-01T03:00:00Z"),
                ("applied_to", "2024-01-01T07:00:00Z"),
            ],
            Box::new(|_, s| (3..7).contains(&s.hour)),
        ),
        (
            // The same instants in another offset.
            vec![
                ("applied_from", "2024-01-01T05:00:00+02:00"),
                ("applied_to", "2024-01-01T06:00:00-01:00"),
            ],
            Box::new(|_, s| (3..7).contains(&s.hour)),
        ),
        (
            vec![("applied_from", "2024-01-01T09:00:00Z")],
            Box::new(|_, s| s.hour >= 9),
        ),
        (
            vec![("applied_to", "2024-01-01T02:00:00Z")],
            Box::new(|_, s| s.hour < 2),
        ),
        (
            vec![("seq_from", "3"), ("seq_to", "7")],
            Box::new(|q, _| (3..7).contains(&q)),
        ),
        (vec![("seq_from", "10")], Box::new(|q, _| q >= 10)),
        (vec![("seq_to", "2")], Box::new(|q, _| q < 2)),
        (
            vec![("system", "alpha"), ("patch_id", "KB1"), ("source", "apt")],
            Box::new(|_, s| s.system == "alpha" && s.patch_id == "KB1" && s.source == "apt"),
        ),
        (
            vec![("status", "success"), ("seq_from", "1")],
            Box::new(|q, s| s.status == "success" && q >= 1),
        ),
    ];
    for (query, pred) in &cases {
        let want: Vec<u64> = seeds
            .iter()
            .enumerate()
            .filter(|(i, s)| pred(*i as u64, s))
            .map(|(i, _)| i as u64)
            .collect();
        assert!(
            !want.is_empty() && want.len() < seeds.len(),
            "{query:?} must be a discriminating case"
        );
        let page = json_page(&srv, "/v1/events", query).await;
        assert_eq!(
            seqs(page["events"].as_array().unwrap()),
            want,
            "filter {query:?}"
        );
        assert_eq!(page["next_cursor"], Value::Null, "{query:?}");
    }

    // The half-open range includes its start and excludes its end.
    let page = json_page(
        &srv,
        "/v1/events",
        &[
            ("applied_from", "2024-01-01T03:00:00Z"),
            ("applied_to", "2024-01-01T07:00:00Z"),
        ],
    )
    .await;
    let hours: BTreeSet<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["applied_at"].as_str().unwrap())
        .collect();
    assert!(hours.contains(at_out(3).as_str()), "{hours:?}");
    assert!(!hours.contains(at_out(7).as_str()), "{hours:?}");

    // Filters that match nothing answer an empty page, not an error.
    for query in [
        vec![("system", "nope")],
        vec![("seq_from", "5"), ("seq_to", "5")],
        vec![("seq_from", "100")],
    ] {
        let page = json_page(&srv, "/v1/events", &query).await;
        assert_eq!(page["events"], json!([]), "{query:?}");
        assert_eq!(page["next_cursor"], Value::Null, "{query:?}");
    }
    srv.shutdown().await;
}

/// Follows `next_cursor` to the end and returns every page's seqs.
async fn paginate(srv: &TestServer, path: &str, query: &[(&str, &str)]) -> Vec<Vec<u64>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let page = json_page(srv, path, &q).await;
        pages.push(seqs(page["events"].as_array().unwrap()));
        match &page["next_cursor"] {
            Value::Null => break,
            Value::String(c) => cursor = Some(c.clone()),
            other => panic!("next_cursor must be a string or null, got {other}"),
        }
        assert!(pages.len() <= 100, "pagination does not end");
    }
    pages
}

#[tokio::test]
async fn cursor_pagination_visits_every_event_exactly_once() {
    let (srv, seeds) = seeded().await;

    let pages = paginate(&srv, "/v1/events", &[("limit", "5")]).await;
    assert_eq!(
        pages,
        vec![vec![0, 1, 2, 3, 4], vec![5, 6, 7, 8, 9], vec![10, 11]]
    );

    // When the last page is full, there is no empty page after it.
    let pages = paginate(&srv, "/v1/events", &[("limit", "4")]).await;
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(pages.concat(), (0..12).collect::<Vec<u64>>());

    let pages = paginate(&srv, "/v1/events", &[("limit", "12")]).await;
    assert_eq!(pages, vec![(0..12).collect::<Vec<u64>>()]);

    // With a filter, every matching event exactly once.
    let want: Vec<u64> = seeds
        .iter()
        .enumerate()
        .filter(|(_, s)| s.system == "alpha")
        .map(|(i, _)| i as u64)
        .collect();
    let pages = paginate(&srv, "/v1/events", &[("system", "alpha"), ("limit", "1")]).await;
    assert_eq!(pages.len(), want.len());
    assert!(pages.iter().all(|p| p.len() == 1));
    assert_eq!(pages.concat(), want);

    // A cursor combines with seq_from without going backwards.
    let pages = paginate(&srv, "/v1/events", &[("seq_from", "8"), ("limit", "3")]).await;
    assert_eq!(pages, vec![vec![8, 9, 10], vec![11]]);
    srv.shutdown().await;
}

#[tokio::test]
async fn bad_listing_parameters_are_400_problems_naming_them() {
    let (srv, _) = seeded().await;
    // (query, expected (field, code) errors)
    type Pairs = Vec<(&'static str, &'static str)>;
    let cases: Vec<(Pairs, Pairs)> = vec![
        (vec![("colour", "red")], vec![("colour", "unknown_field")]),
        (vec![("limit", "0")], vec![("limit", "invalid_value")]),
        (vec![("limit", "10001")], vec![("limit", "invalid_value")]),
        (vec![("limit", "ten")], vec![("limit", "format")]),
        (vec![("status", "done")], vec![("status", "format")]),
        (
            vec![("applied_from", "yesterday")],
            vec![("applied_from", "format")],
        ),
        (
            vec![("applied_to", "2024-01-01T00:00:00")],
            vec![("applied_to", "format")],
        ),
        (vec![("seq_from", "-1")], vec![("seq_from", "format")]),
        (vec![("cursor", "not-a-cursor")], vec![("cursor", "format")]),
        (vec![("format", "xml")], vec![("format", "format")]),
        (vec![("system", "")], vec![("system", "format")]),
        (
            vec![("system", "a"), ("system", "b")],
            vec![("system", "duplicate_field")],
        ),
        (
            vec![("status", "done"), ("seq_to", "x"), ("colour", "red")],
            vec![
                ("status", "format"),
                ("seq_to", "format"),
                ("colour", "unknown_field"),
            ],
        ),
    ];
    for (query, want) in cases {
        let r = srv.get_query("/v1/events", &query).await;
        let got: BTreeSet<(String, String)> = r.param_errors().into_iter().collect();
        let want: BTreeSet<(String, String)> = want
            .iter()
            .map(|(f, c)| (f.to_string(), c.to_string()))
            .collect();
        assert_eq!(got, want, "{query:?}");
    }
    let r = srv.get_query("/v1/events", &[("colour", "red")]).await;
    let p = r.problem(400, "bad-parameters");
    assert!(p["detail"].as_str().unwrap().contains("colour"), "{p}");

    // Outside JSON the limit is not capped.
    for format in ["ndjson", "csv"] {
        let r = srv
            .get_query("/v1/events", &[("format", format), ("limit", "10001")])
            .await;
        assert_eq!(r.status, 200, "{format}: {}", r.text());
    }
    let r = srv
        .get_query("/v1/events", &[("format", "ndjson"), ("limit", "0")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(ndjson(&r.body).is_empty());
    srv.shutdown().await;
}

fn parse_csv(body: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let headers = rdr
        .headers()
        .expect("a header row")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = rdr
        .records()
        .map(|r| r.expect("a CSV record").iter().map(str::to_owned).collect())
        .collect();
    (headers, rows)
}

#[tokio::test]
async fn listings_come_as_json_ndjson_or_csv_by_parameter_or_accept() {
    let srv = TestServer::start().await;
    let mut rich = event("KB1", "web-01", &at(1), "failure");
    rich["event_id"] = json!("rich-1");
    rich["cves"] = json!(["CVE-2024-0001", "CVE-2024-0002"]);
    rich["detail"] = json!("exit 1,\n\"oops\"");
    rich["reboot_required"] = json!(false);
    rich["package"] = json!("openssl");
    srv.ingest(&[
        rich,
        event("KB2", "web-02", &at(2), "success"),
        event("KB3", "web-03", &at(3), "rolled_back"),
    ])
    .await;

    let json_events = json_page(&srv, "/v1/events", &[]).await["events"].clone();
    let json_events = json_events.as_array().unwrap().clone();
    assert_eq!(json_events.len(), 3);

    // NDJSON: the same objects, one per line.
    let by_param = srv.get_query("/v1/events", &[("format", "ndjson")]).await;
    let by_accept = srv
        .get_accept("/v1/events", &[], "application/x-ndjson")
        .await;
    for r in [&by_param, &by_accept] {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.content_type, "application/x-ndjson");
        assert!(r.body.ends_with(b"\n"));
        assert_eq!(ndjson(&r.body), json_events);
    }

    // CSV: a header of CSV_COLUMNS, then one record per event.
    let by_param = srv.get_query("/v1/events", &[("format", "csv")]).await;
    let by_accept = srv.get_accept("/v1/events", &[], "text/csv").await;
    for r in [&by_param, &by_accept] {
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.content_type.starts_with("text/csv"), "{}", r.content_type);
        let (headers, rows) = parse_csv(&r.body);
        assert_eq!(headers, patchaudit_server::wire::CSV_COLUMNS.to_vec());
        assert_eq!(rows.len(), 3);
        let col = |name: &str| {
            patchaudit_server::wire::CSV_COLUMNS
                .iter()
                .position(|c| *c == name)
                .unwrap()
        };
        let first = &rows[0];
        assert_eq!(first[col("seq")], "0");
        assert_eq!(first[col("event_id")], "rich-1");
        assert_eq!(first[col("patch_id")], "KB1");
        assert_eq!(first[col("system")], "web-01");
        assert_eq!(first[col("applied_at")], at_out(1));
        assert_eq!(first[col("status")], "failure");
        assert_eq!(first[col("package")], "openssl");
        assert_eq!(first[col("detail")], "exit 1,\n\"oops\"");
        assert_eq!(first[col("cves")], "CVE-2024-0001;CVE-2024-0002");
        assert_eq!(first[col("reboot_required")], "false");
        assert_eq!(first[col("recorded_at")], json_events[0]["recorded_at"]);
        assert_eq!(rows[1][col("event_id")], "");
        assert_eq!(rows[2][col("status")], "rolled_back");
        let seq_col: Vec<&str> = rows.iter().map(|r| r[col("seq")].as_str()).collect();
        assert_eq!(seq_col, ["0", "1", "2"]);
    }

    // An explicit format wins over Accept; an empty CSV still has its header.
    let r = srv
        .get_accept("/v1/events", &[("format", "json")], "text/csv")
        .await;
    assert!(r.content_type.starts_with("application/json"));
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 3);
    let r = srv
        .get_query("/v1/events", &[("format", "csv"), ("system", "none")])
        .await;
    let (headers, rows) = parse_csv(&r.body);
    assert_eq!(headers.len(), patchaudit_server::wire::CSV_COLUMNS.len());
    assert!(rows.is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn thousands_of_events_stream_completely() {
    let srv = TestServer::start().await;
    const N: u64 = 3_210;
    let events: Vec<Value> = (0..N)
        .map(|i| {
            let mut e = event(
                &format!("KB{}", i % 7),
                &format!("host-{:03}", i % 100),
                &format!("2024-02-01T00:00:{:02}.{:06}Z", i % 60, i),
                ["success", "failure"][(i % 2) as usize],
            );
            e["event_id"] = json!(format!("bulk-{i}"));
            e
        })
        .collect();
    assert_eq!(srv.ingest(&events).await, (0..N).collect::<Vec<u64>>());

    // Read the NDJSON stream chunk by chunk as it arrives.
    let resp = srv
        .client
        .get(srv.url("/v1/events?format=ndjson"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.expect("the stream must not break"));
    }
    let rows = ndjson(&buf);
    assert_eq!(seqs(&rows), (0..N).collect::<Vec<u64>>());
    assert_eq!(rows[1234]["event_id"], "bulk-1234");
    assert_eq!(
        rows[(N - 1) as usize]["event_id"],
        format!("bulk-{}", N - 1)
    );

    let r = srv.get_query("/v1/events", &[("format", "csv")]).await;
    let (_, csv_rows) = parse_csv(&r.body);
    assert_eq!(csv_rows.len() as u64, N);
    assert_eq!(csv_rows[(N - 1) as usize][0], (N - 1).to_string());

    // Limits across the streaming page size, and with filters.
    for limit in [1u64, 499, 500, 501, 1000, 1234, N, N + 1] {
        let r = srv
            .get_query(
                "/v1/events",
                &[("format", "ndjson"), ("limit", &limit.to_string())],
            )
            .await;
        let got = seqs(&ndjson(&r.body));
        assert_eq!(
            got,
            (0..limit.min(N)).collect::<Vec<u64>>(),
            "limit {limit}"
        );
    }
    let r = srv
        .get_query(
            "/v1/events",
            &[("format", "ndjson"), ("system", "host-042")],
        )
        .await;
    let got = seqs(&ndjson(&r.body));
    let want: Vec<u64> = (0..N).filter(|i| i % 100 == 42).collect();
    assert_eq!(got, want);

    // JSON at its maximum page size.
    let page = json_page(&srv, "/v1/events", &[("limit", "10000")]).await;
    assert_eq!(page["events"].as_array().unwrap().len() as u64, N);
    assert_eq!(page["next_cursor"], Value::Null);
    let pages = paginate(&srv, "/v1/events", &[("limit", "1000")]).await;
    assert_eq!(pages.len(), 4);
    assert_eq!(pages.concat(), (0..N).collect::<Vec<u64>>());
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_are_each_contiguous_and_the_ledger_stays_dense() {
    let srv = TestServer::start().await;
    const BATCHES: u32 = 8;
    const SIZE: u32 = 25;
    let posts = (0..BATCHES).map(|b| {
        let events: Vec<Value> = (0..SIZE)
            .map(|i| {
                let mut e = event(
                    &format!("KB{b}"),
                    &format!("host-{i}"),
                    &at(i % 24),
                    "success",
                );
                e["event_id"] = json!(format!("b{b}-e{i}"));
                e
            })
            .collect();
        let srv = &srv;
        async move { (b, srv.ingest(&events).await) }
    });
    let reads = (0..BATCHES).map(|_| srv.get_query("/v1/events", &[("format", "ndjson")]));
    let (written, read) = futures::join!(
        futures::future::join_all(posts),
        futures::future::join_all(reads)
    );
    let mut all_seqs: Vec<u64> = Vec::new();
    for (b, seqs_of_batch) in &written {
        let first = seqs_of_batch[0];
        assert_eq!(
            seqs_of_batch,
            &(first..first + u64::from(SIZE)).collect::<Vec<u64>>(),
            "batch {b} must be contiguous and in order"
        );
        all_seqs.extend(seqs_of_batch);
    }
    all_seqs.sort_unstable();
    let total = u64::from(BATCHES * SIZE);
    assert_eq!(all_seqs, (0..total).collect::<Vec<u64>>());
    // Concurrent readers saw a dense prefix of the ledger, never a hole.
    for r in read {
        assert_eq!(r.status, 200);
        let got = seqs(&ndjson(&r.body));
        assert_eq!(got, (0..got.len() as u64).collect::<Vec<u64>>());
        assert_eq!(
            got.len() % SIZE as usize,
            0,
            "a batch is visible whole or not at all"
        );
    }
    let all = srv.all_events().await;
    assert_eq!(seqs(&all), (0..total).collect::<Vec<u64>>());
    for (b, seqs_of_batch) in &written {
        for (i, seq) in seqs_of_batch.iter().enumerate() {
            assert_eq!(all[*seq as usize]["event_id"], format!("b{b}-e{i}"));
        }
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn get_event_by_seq_answers_404_and_400_problems() {
    let srv = TestServer::start().await;
    srv.ingest(&[event("KB1", "web-01", &at(1), "success")])
        .await;
    assert_eq!(srv.get("/v1/events/0").await.json()["patch_id"], "KB1");

    for seq in ["1", "42", "18446744073709551615"] {
        let r = srv.get(&format!("/v1/events/{seq}")).await;
        r.problem(404, "not-found");
    }
    for seq in ["abc", "-1", "1.5", "18446744073709551616", "%20"] {
        let r = srv.get(&format!("/v1/events/{seq}")).await;
        assert_eq!(
            r.param_errors(),
            vec![("seq".to_owned(), "format".to_owned())],
            "{seq}"
        );
    }
    srv.shutdown().await;
}

// ------------------------------------------------------------------ fleet

#[tokio::test]
async fn systems_are_counted_by_status_and_paginated() {
    let srv = TestServer::start().await;
    srv.ingest(&[
        event("KB1", "web-01", &at(5), "success"),
        event("KB2", "web-01", &at(9), "failure"),
        event("KB1", "web-02", &at(4), "rolled_back"),
        event("KB1", "db/01", &at(1), "success"),
    ])
    .await;
    // An older event arriving later: last_event_at stays the latest applied_at,
    // last_seq moves to the most recently recorded event.
    srv.ingest(&[event("KB3", "web-01", &at(2), "success")])
        .await;

    let page = json_page(&srv, "/v1/systems", &[]).await;
    assert_eq!(page["next_cursor"], Value::Null);
    let want = json!([
        {
            "system": "db/01",
            "last_event_at": at_out(1),
            "last_seq": 3,
            "events": {"success": 1, "failure": 0, "rolled_back": 0, "total": 1}
        },
        {
            "system": "web-01",
            "last_event_at": at_out(9),
            "last_seq": 4,
            "events": {"success": 2, "failure": 1, "rolled_back": 0, "total": 3}
        },
        {
            "system": "web-02",
            "last_event_at": at_out(4),
            "last_seq": 2,
            "events": {"success": 0, "failure": 0, "rolled_back": 1, "total": 1}
        }
    ]);
    assert_eq!(page["systems"], want);

    // Pagination by cursor.
    let p1 = json_page(&srv, "/v1/systems", &[("limit", "2")]).await;
    let names = |p: &Value| -> Vec<String> {
        p["systems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["system"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&p1), ["db/01", "web-01"]);
    let cursor = p1["next_cursor"].as_str().expect("a next page").to_owned();
    let p2 = json_page(&srv, "/v1/systems", &[("limit", "2"), ("cursor", &cursor)]).await;
    assert_eq!(names(&p2), ["web-02"]);
    assert_eq!(p2["next_cursor"], Value::Null);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![("limit", "1")];
        if let Some(c) = &cursor {
            q.push(("cursor", c.as_str()));
        }
        let p = json_page(&srv, "/v1/systems", &q).await;
        seen.extend(names(&p));
        match p["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["db/01", "web-01", "web-02"]);

    for (query, field, code) in [
        (vec![("limit", "0")], "limit", "invalid_value"),
        (vec![("limit", "10001")], "limit", "invalid_value"),
        (vec![("cursor", "zzz")], "cursor", "format"),
        (vec![("system", "web-01")], "system", "unknown_field"),
    ] {
        let r = srv.get_query("/v1/systems", &query).await;
        assert_eq!(
            r.param_errors(),
            vec![(field.to_owned(), code.to_owned())],
            "{query:?}"
        );
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn a_systems_history_is_its_events_only_and_404_when_unknown() {
    let srv = TestServer::start().await;
    srv.ingest(&[
        event("KB1", "web-01", &at(1), "success"),
        event("KB1", "db/01", &at(2), "failure"),
        event("KB2", "web-01", &at(3), "failure"),
        event("KB2", "db/01", &at(4), "success"),
        event("KB3", "web-01", &at(5), "rolled_back"),
        event("KB1", "a b%c", &at(6), "success"),
        event("KB1", "wéb/ü", &at(7), "success"),
    ])
    .await;

    let page = json_page(&srv, "/v1/systems/web-01/events", &[]).await;
    assert_eq!(seqs(page["events"].as_array().unwrap()), vec![0, 2, 4]);
    assert!(page["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["system"] == "web-01"));
    assert_eq!(page["next_cursor"], Value::Null);

    let page = json_page(&srv, "/v1/systems/db%2F01/events", &[]).await;
    assert_eq!(seqs(page["events"].as_array().unwrap()), vec![1, 3]);
    assert_eq!(page["events"][0]["system"], "db/01");

    let page = json_page(&srv, "/v1/systems/a%20b%25c/events", &[]).await;
    assert_eq!(seqs(page["events"].as_array().unwrap()), vec![5]);
    let page = json_page(&srv, "/v1/systems/w%C3%A9b%2F%C3%BC/events", &[]).await;
    assert_eq!(seqs(page["events"].as_array().unwrap()), vec![6]);
    assert_eq!(page["events"][0]["system"], "wéb/ü");

    // Filters, formats and pagination work on a system's history too.
    let page = json_page(&srv, "/v1/systems/web-01/events", &[("status", "failure")]).await;
    assert_eq!(seqs(page["events"].as_array().unwrap()), vec![2]);
    let r = srv
        .get_query("/v1/systems/web-01/events", &[("format", "ndjson")])
        .await;
    assert_eq!(r.content_type, "application/x-ndjson");
    assert_eq!(seqs(&ndjson(&r.body)), vec![0, 2, 4]);
    let pages = paginate(&srv, "/v1/systems/web-01/events", &[("limit", "2")]).await;
    assert_eq!(pages, vec![vec![0, 2], vec![4]]);

    let r = srv.get("/v1/systems/nope/events").await;
    let p = r.problem(404, "not-found");
    assert!(p["detail"].as_str().unwrap().contains("nope"), "{p}");
    // "db/01" unencoded is another path entirely, not this system.
    let r = srv.get("/v1/systems/db/01/events").await;
    assert_eq!(r.status, 404, "{}", r.text());

    let r = srv
        .get_query("/v1/systems/web-01/events", &[("system", "db/01")])
        .await;
    assert_eq!(
        r.param_errors(),
        vec![("system".to_owned(), "unknown_field".to_owned())]
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_patch_is_judged_by_the_latest_event_per_system() {
    let srv = TestServer::start().await;
    srv.ingest(&[
        event("KB1", "sys-a", &at(10), "success"), // 0
        event("KB1", "sys-b", &at(10), "failure"), // 1
        event("KB1", "sys-c", &at(10), "success"), // 2
        event("KB2", "sys-a", &at(11), "failure"), // 3: another patch
        event("KB1", "sys-e", &at(8), "failure"),  // 4
        event("KB1", "sys-e", &at(7), "success"),  // 5: older, same batch
    ])
    .await;
    srv.ingest(&[
        event("KB1", "sys-a", &at(5), "failure"), // 6: older, arrives later
        event("KB1", "sys-b", &at(12), "success"), // 7: newer
        event("KB1", "sys-c", &at(11), "rolled_back"), // 8: newer
        event("KB1", "sys-d", &at(1), "failure"), // 9
    ])
    .await;
    // Equal applied_at: the later seq is the later fact.
    srv.ingest(&[event("KB1", "sys-d", &at(1), "success")])
        .await; // 10
    srv.ingest(&[event("KB1", "sys-a", &at(9), "rolled_back")])
        .await; // 11: still older

    let r = srv.get("/v1/patches/KB1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let row = |system: &str, hour: u32, seq: u64, attempts: u64| json!({"system": system, "applied_at": at_out(hour), "seq": seq, "attempts": attempts});
    let want = json!({
        "patch_id": "KB1",
        "applied": [row("sys-a", 10, 0, 3), row("sys-b", 12, 7, 2), row("sys-d", 1, 10, 2)],
        "failed": [row("sys-e", 8, 4, 2)],
        "rolled_back": [row("sys-c", 11, 8, 2)],
    });
    assert_eq!(r.json(), want);

    let kb2 = srv.get("/v1/patches/KB2").await.json();
    assert_eq!(kb2["failed"], json!([row("sys-a", 11, 3, 1)]));
    assert_eq!(kb2["applied"], json!([]));
    assert_eq!(kb2["rolled_back"], json!([]));

    // Integer and slash-bearing patch ids.
    srv.ingest(&[
        json!({"patch_id": 5034441, "system": "sys-a", "applied_at": at(1), "status": "success"}),
        event("RHSA-2024:1234/1", "sys-a", &at(1), "success"),
    ])
    .await;
    let p = srv.get("/v1/patches/5034441").await.json();
    assert_eq!(p["patch_id"], "5034441");
    assert_eq!(p["applied"][0]["system"], "sys-a");
    let p = srv.get("/v1/patches/RHSA-2024:1234%2F1").await.json();
    assert_eq!(p["patch_id"], "RHSA-2024:1234/1");
    assert_eq!(p["applied"].as_array().unwrap().len(), 1);

    let r = srv.get("/v1/patches/KB-none").await;
    let p = r.problem(404, "not-found");
    assert!(p["detail"].as_str().unwrap().contains("KB-none"), "{p}");
    srv.shutdown().await;
}

// ------------------------------------------------------------------ operations

#[tokio::test]
async fn health_readiness_and_metrics() {
    let srv = TestServer::start().await;
    for path in ["/healthz", "/readyz"] {
        let r = srv.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json(), json!({"status": "ok"}), "{path}");
    }
    srv.ingest(&[event("KB1", "web-01", &at(1), "success")])
        .await;
    let r = srv.get("/v1/events").await;
    assert_eq!(r.status, 200);
    let r = srv.get("/v1/events/0").await;
    assert_eq!(r.status, 200);

    let m = srv.get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(
        m.content_type.starts_with("text/plain"),
        "{}",
        m.content_type
    );
    let text = m.text();
    let has = |metric: &str, labels: &[&str]| {
        text.lines().any(|l| {
            l.starts_with(metric)
                && l[metric.len()..].starts_with('{')
                && labels.iter().all(|lab| l.contains(lab))
        })
    };
    assert!(
        has(
            "patchaudit_http_requests_total",
            &["route=\"/v1/events\"", "method=\"POST\"", "status=\"201\""]
        ),
        "{text}"
    );
    assert!(
        has(
            "patchaudit_http_requests_total",
            &["route=\"/v1/events\"", "method=\"GET\"", "status=\"200\""]
        ),
        "{text}"
    );
    assert!(
        has(
            "patchaudit_http_requests_total",
            &["route=\"/v1/events/{seq}\""]
        ),
        "route labels are templates, not raw paths: {text}"
    );
    assert!(
        !text.contains("route=\"/v1/events/0\""),
        "raw paths must not become labels"
    );
    let ingested = text
        .lines()
        .find(|l| l.starts_with("patchaudit_events_ingested_total"))
        .unwrap_or_else(|| panic!("no patchaudit_events_ingested_total in {text}"));
    let n: f64 = ingested
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .expect("a counter value");
    assert!(n >= 1.0, "{ingested}");
    // Store errors are exposed from the start, at zero, so alerts can tell
    // "no errors" from "not reporting".
    for kind in ["conflict", "unavailable", "internal"] {
        let series = format!("patchaudit_store_errors_total{{kind=\"{kind}\"}}");
        assert!(text.contains(&series), "no {series} in {text}");
    }
    assert!(
        text.contains("# HELP patchaudit_store_errors_total"),
        "{text}"
    );
    srv.shutdown().await;
}

// ------------------------------------------------------------------ OpenAPI and routing

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let srv = TestServer::start().await;
    srv.ingest(&[event("KB1", "web-01", &at(1), "success")])
        .await;

    let r = srv.get("/v1/openapi.json").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.content_type.starts_with("application/json"));
    let doc = r.json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "openapi: {}",
        doc["openapi"]
    );
    assert_eq!(
        doc,
        serde_json::to_value(patchaudit_server::openapi()).unwrap(),
        "the served document is openapi()"
    );

    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in [
            "get", "post", "put", "patch", "delete", "head", "options", "trace",
        ] {
            if item.get(method).is_some() {
                operations.push((method.to_owned(), path.clone()));
            }
        }
    }
    for expected in [
        ("post", "/v1/events"),
        ("get", "/v1/events"),
        ("get", "/v1/events/{seq}"),
        ("get", "/v1/systems"),
        ("get", "/v1/systems/{system}/events"),
        ("get", "/v1/patches/{patch_id}"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/v1/checkpoint"),
        ("get", "/v1/proofs/inclusion"),
        ("get", "/v1/proofs/consistency"),
        ("get", "/v1/events/{seq}/proof"),
        ("get", "/v1/catalog"),
        ("post", "/v1/catalog"),
        ("get", "/v1/catalog/{id}"),
        ("put", "/v1/catalog/{id}"),
        ("delete", "/v1/catalog/{id}"),
        ("get", "/v1/catalog/{id}/history"),
        ("get", "/v1/systems/{system}/tags"),
        ("put", "/v1/systems/{system}/tags"),
        ("get", "/v1/policy"),
        ("put", "/v1/policy"),
        ("get", "/v1/exceptions"),
        ("post", "/v1/exceptions"),
        ("post", "/v1/exceptions/{id}/revoke"),
        ("get", "/v1/reports/compliance"),
        ("get", "/v1/changes"),
        ("get", "/v1/tokens"),
        ("post", "/v1/tokens"),
        ("get", "/v1/tokens/{id}"),
        ("post", "/v1/tokens/{id}/revoke"),
        ("get", "/v1/stream"),
        ("get", "/v1/alerts"),
        ("get", "/v1/stream/status"),
        ("get", "/v1/stream/dead-letters"),
        ("post", "/v1/stream/dead-letters/{id}/replay"),
    ] {
        assert!(
            operations
                .iter()
                .any(|(m, p)| m == expected.0 && p == expected.1),
            "{expected:?} is not documented; documented: {operations:?}"
        );
    }

    // The compliance operations need something to act on: a catalog entry
    // and an exception. Deletions run last, so they do not remove what other
    // operations use.
    let entry = serde_json::json!({"severity": "high", "released_at": at(1)});
    let r = srv
        .send(srv.client.put(srv.url("/v1/catalog/KB1")).json(&entry))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = srv
        .send(
            srv.client
                .post(srv.url("/v1/exceptions"))
                .json(&serde_json::json!({
            "patch_id": "KB1", "system": "web-01", "reason": "r", "approver": "a",
            "expires_at": "2999-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let exception_id = r.json()["id"].as_str().unwrap().to_owned();
    // A token to read and revoke (not the one the client uses).
    let spare = common::make_token(&srv.store, "spare", &["read"]).await;
    let token_id = spare[3..19].to_owned();
    // An inventory to read.
    let r = srv
        .send(
            srv.client
                .put(srv.url("/v1/systems/web-01/inventory"))
                .json(&serde_json::json!({"format": "rpm", "packages": []})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    operations.sort_by_key(|(m, _)| m == "delete");

    for (method, path) in &operations {
        let id = if path.starts_with("/v1/exceptions") {
            exception_id.as_str()
        } else if path.starts_with("/v1/tokens") {
            token_id.as_str()
        } else {
            "KB1"
        };
        let concrete = path
            .replace("{seq}", "0")
            .replace("{system}", "web-01")
            .replace("{patch_id}", "KB1")
            .replace("{id}", id);
        assert!(!concrete.contains('{'), "unknown parameter in {path}");
        // Required query parameters, with sample values.
        let concrete = match concrete.as_str() {
            "/v1/proofs/inclusion" => format!("{concrete}?seq=0"),
            "/v1/proofs/consistency" => format!("{concrete}?from=1"),
            _ => concrete,
        };
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = srv.client.request(m, srv.url(&concrete));
        let body = match (method.as_str(), path.as_str()) {
            ("post", "/v1/events") => {
                Some(serde_json::to_value(event("KB9", "web-09", &at(2), "success")).unwrap())
            }
            ("post", "/v1/catalog") => {
                Some(serde_json::json!([{"id": "KB2", "severity": "low", "released_at": at(1)}]))
            }
            ("put", "/v1/catalog/{id}") => Some(entry.clone()),
            ("put", "/v1/systems/{system}/tags") => Some(serde_json::json!({"tags": ["env=prod"]})),
            ("put", "/v1/systems/{system}/inventory") => Some(serde_json::json!({
                "format": "deb", "packages": [{"name": "bash", "version": "5.2-1"}]})),
            ("put", "/v1/policy") => Some(serde_json::json!({
                "default": {"critical": 30, "high": 30, "medium": 90, "low": 180},
                "stale_after_days": 7})),
            ("post", "/v1/tokens") => {
                Some(serde_json::json!({"name": "agent-1", "scopes": ["ingest"]}))
            }
            ("post", "/v1/exceptions") => Some(serde_json::json!({
                "patch_id": "KB1", "tag": "env=prod", "reason": "r", "approver": "a",
                "expires_at": "2999-01-01T00:00:00Z"})),
            _ => None,
        };
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap());
        }
        let r = srv.send(req).await;
        assert_ne!(
            r.status, 405,
            "{method} {path} is documented but not allowed"
        );
        if r.status == 404 {
            let p = r.json();
            assert_ne!(
                p["type"], "urn:patchaudit:problem:no-route",
                "{method} {path} is documented but not routed"
            );
        }
        if path == "/v1/stream/dead-letters/{id}/replay" {
            // No webhook ever failed here, so there is nothing to replay.
            r.problem(404, "not-found");
            continue;
        }
        assert!(
            r.status < 400,
            "{method} {concrete} with sample values should succeed: {} {}",
            r.status,
            r.text()
        );
    }

    // An unknown path and a wrong method are problems too.
    for path in ["/v1/nope", "/v2/events", "/v1/events/0/extra", "/"] {
        let r = srv.get(path).await;
        let p = r.problem(404, "no-route");
        assert!(p["detail"].as_str().unwrap().contains(path), "{p}");
    }
    let r = srv.send(srv.client.delete(srv.url("/v1/events"))).await;
    r.problem(405, "method-not-allowed");
    let r = srv.send(srv.client.post(srv.url("/v1/systems"))).await;
    r.problem(405, "method-not-allowed");
    srv.shutdown().await;
}

/// A token request must be a JSON object: serde would also take an array
/// of its fields in order, which the API does not document.
#[tokio::test]
async fn a_token_request_must_be_a_json_object() {
    let srv = TestServer::start().await;
    let r = srv
        .post_json("/v1/tokens", &json!(["agent", ["admin"], [], []]))
        .await;
    let p = r.problem(400, "malformed-body");
    assert!(
        p["detail"].as_str().unwrap().contains("a JSON object"),
        "{p}"
    );
    let tokens = srv.get("/v1/tokens").await.json();
    assert!(
        tokens["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"] != "agent"),
        "no token was created: {tokens}"
    );
    let r = srv
        .post_json("/v1/tokens", &json!({"name": "agent", "scopes": ["read"]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    srv.shutdown().await;
}

/// The OpenAPI document names every answer the server gives: a body it
/// cannot read (400) or that is too large (413) wherever a body is read, a
/// bad query parameter (400) wherever parameters are read, and the whole
/// range of the u64 parameters the server accepts.
#[tokio::test]
async fn the_document_names_the_errors_and_ranges_the_server_answers_with() {
    let srv = TestServer::start().await;
    let doc = srv.get("/v1/openapi.json").await.json();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            if op.get("requestBody").is_some() {
                for status in ["400", "413"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} reads a body but does not document {status}"
                    );
                }
            }
            let params = op["parameters"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if params.iter().any(|p| p["in"] == "query") {
                assert!(
                    responses.contains_key("400"),
                    "{method} {path} reads query parameters but does not document 400"
                );
            }
            for p in params {
                if p["schema"]["format"] == "uint64" {
                    assert_eq!(
                        p["schema"]["maximum"],
                        json!(u64::MAX),
                        "{method} {path} {}",
                        p["name"]
                    );
                }
            }
        }
    }
    let seq_to = &doc["paths"]["/v1/events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "seq_to")
        .unwrap()["schema"];
    assert_eq!(seq_to["format"], "uint64", "{seq_to}");
    let r = srv
        .get_query("/v1/events", &[("seq_to", "18446744073709551615")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = srv
        .get_query("/v1/events", &[("seq_to", "18446744073709551616")])
        .await;
    assert_eq!(r.param_errors(), vec![("seq_to".into(), "format".into())]);
    srv.shutdown().await;
}
