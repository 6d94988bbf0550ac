//! End-to-end tests of the inventory API and what the compliance report
//! reads from it: applicability by installed version, and unaccounted
//! changes. A real server on a loopback port, a fresh SQLite ledger per
//! test, real HTTP via reqwest.

mod common;

use common::{client_with, make_limited_token, Resp, TestServer};
use patchaudit_compliance::DAY_MICROS;
use patchaudit_domain::Timestamp;
use serde_json::{json, Value};

const REPORT: &str = "/v1/reports/compliance";

async fn put_with(srv: &TestServer, client: &reqwest::Client, system: &str, body: &Value) -> Resp {
    let req = client
        .put(srv.url(&format!("/v1/systems/{system}/inventory")))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body).unwrap());
    srv.send(req).await
}

async fn put(srv: &TestServer, system: &str, body: &Value) -> Resp {
    put_with(srv, &srv.client, system, body).await
}

fn deb(pkgs: &[(&str, &str)]) -> Value {
    json!({
        "format": "deb",
        "packages": pkgs.iter().map(|(n, v)| json!({"name": n, "version": v, "arch": "amd64"})).collect::<Vec<_>>(),
    })
}

fn days_ago(d: i64) -> String {
    Timestamp::from_micros(Timestamp::now().as_micros() - d * DAY_MICROS).to_rfc3339()
}

#[tokio::test]
async fn put_get_and_an_unchanged_list_writes_nothing() {
    let srv = TestServer::start().await;
    srv.get("/v1/systems/web-01/inventory")
        .await
        .problem(404, "not-found");
    let r = put(
        &srv,
        "web-01",
        &deb(&[("openssl", "3.0.11-1"), ("bash", "5.2.15-2")]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.json();
    assert_eq!(first["package_count"], 2);
    assert_eq!(first["format"], "deb");
    assert_eq!(first["revision"]["changed"], true);
    assert!(
        first.get("packages").is_none(),
        "a PUT answers without the list"
    );

    // The same list in another order: nothing written, the first time kept.
    let again = put(
        &srv,
        "web-01",
        &deb(&[("bash", "5.2.15-2"), ("openssl", "3.0.11-1")]),
    )
    .await
    .json();
    assert_eq!(again["revision"]["changed"], false);
    assert_eq!(again["revision"]["rev"], first["revision"]["rev"]);
    assert_eq!(again["recorded_at"], first["recorded_at"]);

    let got = srv.get("/v1/systems/web-01/inventory").await.json();
    assert_eq!(
        got["packages"],
        json!([
            {"name": "bash", "version": "5.2.15-2", "arch": "amd64"},
            {"name": "openssl", "version": "3.0.11-1", "arch": "amd64"},
        ])
    );
    assert_eq!(got["recorded_at"], first["recorded_at"]);

    // A changed list is a new revision, and the trail shows both.
    let changed = put(&srv, "web-01", &deb(&[("openssl", "3.0.13-1")]))
        .await
        .json();
    assert_eq!(changed["revision"]["changed"], true);
    let trail = srv
        .get_query("/v1/changes", &[("kind", "inventory")])
        .await
        .json();
    assert_eq!(trail["changes"].as_array().unwrap().len(), 2, "{trail}");
    srv.shutdown().await;
}

#[tokio::test]
async fn every_problem_is_named_and_nothing_is_written() {
    let srv = TestServer::start().await;
    let bad = json!({
        "format": "deb",
        "packages": [
            {"name": "ok", "version": "1.0-1"},
            {"name": "two words", "version": "1.0"},
            {"name": "bad-version", "version": "a:1"},
            {"version": "1"},
            {"name": "x", "version": "1", "arch": ""},
        ]
    });
    let p = put(&srv, "web-01", &bad)
        .await
        .problem(422, "invalid-document");
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "packages[1].name",
            "packages[2].version",
            "packages[3].name",
            "packages[4].arch"
        ],
        "{p}"
    );
    let p = put(&srv, "web-01", &json!({"packages": []}))
        .await
        .problem(422, "invalid-document");
    assert_eq!(p["errors"][0]["field"], "format", "{p}");
    let p = put(&srv, "web-01", &json!({"format": "msi", "packages": []}))
        .await
        .problem(422, "invalid-document");
    assert_eq!(p["errors"][0]["code"], "invalid_value", "{p}");
    // Unknown fields, and a package that is not an object, are syntax errors.
    put(&srv, "web-01", &json!({"format": "deb", "taken_at": "x"}))
        .await
        .problem(400, "malformed-body");
    put(
        &srv,
        "web-01",
        &json!({"format": "deb", "packages": [["bash", "1"]]}),
    )
    .await
    .problem(400, "malformed-body");
    // A system id the ledger refuses is named too.
    let long = "s".repeat(256);
    let p = put(&srv, &long, &deb(&[]))
        .await
        .problem(422, "invalid-document");
    assert_eq!(p["errors"][0]["field"], "system", "{p}");
    srv.get("/v1/systems/web-01/inventory")
        .await
        .problem(404, "not-found");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_token_limited_to_some_systems_sends_only_theirs() {
    let srv = TestServer::start().await;
    let web =
        client_with(&make_limited_token(&srv.store, "agent", &["ingest"], &["web-*"], &[]).await);
    let r = put_with(&srv, &web, "web-01", &deb(&[("bash", "5.2-1")])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    put_with(&srv, &web, "db-01", &deb(&[("bash", "5.2-1")]))
        .await
        .problem(403, "forbidden");
    srv.get("/v1/systems/db-01/inventory")
        .await
        .problem(404, "not-found");
    // Reading needs the read scope, which an ingest-only token lacks.
    let r = srv
        .send(web.get(srv.url("/v1/systems/web-01/inventory")))
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    srv.shutdown().await;
}

#[tokio::test]
async fn the_report_applies_advisories_by_installed_version_and_lists_unaccounted_changes() {
    let srv = TestServer::start().await;
    let entry = json!({
        "severity": "critical",
        "released_at": days_ago(40),
        "title": "openssl fix",
        "packages": [{"ecosystem": "Debian:12", "name": "openssl", "fixed": "3.0.13-1~deb12u1"}],
    });
    let r = srv
        .send(
            srv.client
                .put(srv.url("/v1/catalog/DSA-5678-1"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&entry).unwrap()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // web-01 runs an affected openssl; web-02 the fixed one, installed by
    // a logged upgrade; db-01 sent no inventory.
    srv.ingest(&[
        json!({"patch_id": "openssl@3.0.13-1~deb12u1", "system": "web-02", "applied_at": days_ago(3), "status": "success", "package": "openssl", "to_version": "3.0.13-1~deb12u1"}),
        json!({"patch_id": "bash@5.2.15-2", "system": "web-01", "applied_at": days_ago(3), "status": "success"}),
        json!({"patch_id": "KB1", "system": "db-01", "applied_at": days_ago(3), "status": "success"}),
    ])
    .await;
    assert_eq!(
        put(
            &srv,
            "web-01",
            &deb(&[("openssl", "3.0.11-1~deb12u2"), ("bash", "5.2.15-2")])
        )
        .await
        .status,
        200
    );
    assert_eq!(
        put(
            &srv,
            "web-02",
            &deb(&[("openssl", "3.0.13-1~deb12u1"), ("curl", "7.88.1-10")])
        )
        .await
        .status,
        200
    );

    let r = srv.get(REPORT).await.json();
    let systems: Vec<(&str, u64, Value)> = r["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["system"].as_str().unwrap(),
                s["required"].as_u64().unwrap(),
                s["unaccounted"].clone(),
            )
        })
        .collect();
    assert_eq!(
        systems,
        [
            ("db-01", 1, Value::Null),
            ("web-01", 1, json!(1)),
            ("web-02", 0, json!(1)),
        ],
        "{r}"
    );
    // Past the 30-day SLA: web-01, which is affected, and db-01, about
    // which no inventory says otherwise, are overdue; web-02 is not.
    let overdue: Vec<&str> = r["overdue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["system"].as_str().unwrap())
        .collect();
    assert_eq!(overdue, ["db-01", "web-01"], "{r}");
    assert_eq!(r["summary"]["systems_with_inventory"], 2);
    assert_eq!(r["summary"]["unaccounted"], 2);
    assert_eq!(
        r["unaccounted"],
        json!([
            {"system": "web-01", "package": "openssl", "version": "3.0.11-1~deb12u2", "arch": "amd64"},
            {"system": "web-02", "package": "curl", "version": "7.88.1-10", "arch": "amd64"},
        ])
    );
    let csv = srv
        .get_query(REPORT, &[("format", "systems-csv")])
        .await
        .text();
    let web02 = csv.lines().find(|l| l.starts_with("web-02,")).unwrap();
    assert!(web02.ends_with(",1"), "{web02}");
    let html = srv.get_query(REPORT, &[("format", "html")]).await.text();
    assert!(html.contains("<h2>Unaccounted changes (2)</h2>"), "{html}");
    srv.shutdown().await;
}
