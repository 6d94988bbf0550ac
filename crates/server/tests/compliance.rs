//! End-to-end tests of the compliance API: the catalog and its history,
//! system tags, the SLA policy, exceptions, and the compliance report over
//! a small fleet whose every number is worked out by hand. A real server on
//! a loopback port, a fresh SQLite ledger per test, real HTTP via reqwest.

mod common;

use common::{client_with, event, make_token, Resp, TestServer};
use patchaudit_compliance::DAY_MICROS;
use patchaudit_domain::Timestamp;
use patchaudit_proofs::open_checkpoint;
use patchaudit_server::report_out::{PAIRS_CSV_COLUMNS, PATCHES_CSV_COLUMNS, SYSTEMS_CSV_COLUMNS};
use patchaudit_store::conformance::test_signer;
use serde_json::{json, Value};
use std::time::Duration;

const REPORT: &str = "/v1/reports/compliance";

// ------------------------------------------------------------------ helpers

/// `days` days before `now`.
fn ago(now: Timestamp, days: i64) -> Timestamp {
    Timestamp::from_micros(now.as_micros() - days * DAY_MICROS)
}

/// `days` days after `now`.
fn ahead(now: Timestamp, days: i64) -> Timestamp {
    Timestamp::from_micros(now.as_micros() + days * DAY_MICROS)
}

fn rfc(t: Timestamp) -> String {
    t.to_rfc3339()
}

fn parse_ts(v: &Value) -> Timestamp {
    Timestamp::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// Waits long enough for the next instant to be distinct from the last.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// The token name in a `changed_by` principal (`name#id`).
fn by(v: &Value) -> &str {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("changed_by is not a string: {v}"));
    s.split_once('#')
        .unwrap_or_else(|| panic!("changed_by {s:?} is not name#id"))
        .0
}

/// The server's own admin client, or a client with a fresh admin token
/// named `actor`: changes are recorded under the token that made them.
async fn as_actor(srv: &TestServer, actor: Option<&str>) -> reqwest::Client {
    match actor {
        None => srv.client.clone(),
        Some(a) => client_with(&make_token(&srv.store, a, &["admin", "read"]).await),
    }
}

/// Sends a JSON body with `method`, as `actor` if given.
async fn send_json(
    srv: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: &Value,
    actor: Option<&str>,
) -> Resp {
    let req = as_actor(srv, actor)
        .await
        .request(method, srv.url(path))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body).unwrap());
    srv.send(req).await
}

async fn put(srv: &TestServer, path: &str, body: &Value, actor: Option<&str>) -> Resp {
    send_json(srv, reqwest::Method::PUT, path, body, actor).await
}

async fn post(srv: &TestServer, path: &str, body: &Value, actor: Option<&str>) -> Resp {
    send_json(srv, reqwest::Method::POST, path, body, actor).await
}

async fn put_raw(srv: &TestServer, path: &str, body: &str) -> Resp {
    srv.send(
        srv.client
            .put(srv.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned()),
    )
    .await
}

async fn delete(srv: &TestServer, path: &str, actor: Option<&str>) -> Resp {
    let req = as_actor(srv, actor).await.delete(srv.url(path));
    srv.send(req).await
}

fn ok(r: Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.content_type.starts_with("application/json"),
        "{}",
        r.content_type
    );
    r.json()
}

/// The `(field, code)` pairs of a 422 invalid-document problem.
fn doc_errors(r: &Resp) -> Vec<(String, String)> {
    let p = r.problem(422, "invalid-document");
    p["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {p}"))
        .iter()
        .map(|e| {
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "every error has a message: {e}"
            );
            (
                e["field"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn fe(field: &str, code: &str) -> (String, String) {
    (field.to_owned(), code.to_owned())
}

/// Asserts a rejected body that names `field` as unknown, either as a 400
/// malformed-body problem or as a 422 problem listing it.
fn assert_unknown_field(r: &Resp, field: &str) {
    let p = match r.status {
        400 => r.problem(400, "malformed-body"),
        422 => r.problem(422, "invalid-document"),
        s => panic!(
            "an unknown field must be a 400 or 422, got {s}: {}",
            r.text()
        ),
    };
    let listed = p["errors"]
        .as_array()
        .is_some_and(|es| es.iter().any(|e| e["field"] == field));
    let told = p["detail"]
        .as_str()
        .is_some_and(|d| d.contains(&format!("unknown field `{field}`")));
    assert!(listed || told, "the problem must name {field:?}: {p}");
}

/// Asserts that every key of `want` has that value in `got`.
fn assert_fields(got: &Value, want: &Value) {
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&got[k], v, "field {k:?} of {got}");
    }
}

fn assert_close(v: &Value, want: f64) {
    let got = v
        .as_f64()
        .unwrap_or_else(|| panic!("{v} is not a number, expected {want}"));
    assert!((got - want).abs() < 1e-9, "{got} != {want}");
}

fn ids(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries in {page}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The row of `list` whose `key` is `id`.
fn row<'a>(list: &'a Value, key: &str, id: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|r| r[key] == id)
        .unwrap_or_else(|| panic!("no {key} {id:?} in {list}"))
}

async fn report(srv: &TestServer, query: &[(&str, &str)]) -> Value {
    let r = srv.get_query(REPORT, query).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.content_type.starts_with("application/json"),
        "{}",
        r.content_type
    );
    r.json()
}

fn states(n: [u64; 9]) -> Value {
    json!({
        "missing": n[0],
        "overdue": n[1],
        "applied_on_time": n[2],
        "applied_late": n[3],
        "failed": n[4],
        "rolled_back": n[5],
        "pending_reboot": n[6],
        "excepted": n[7],
        "unknown": n[8],
    })
}

fn ev(patch: &str, system: &str, at: Timestamp, status: &str) -> Value {
    event(patch, system, &rfc(at), status)
}

fn exception(patch: &str, scope: (&str, &str), expires: Timestamp) -> Value {
    let mut x = json!({
        "patch_id": patch,
        "reason": "vendor freeze until the next maintenance window",
        "approver": "ciso@example.com",
        "expires_at": rfc(expires),
    });
    x[scope.0] = json!(scope.1);
    x
}

async fn set_tags(srv: &TestServer, system: &str, tags: &[&str]) {
    let r = put(
        srv,
        &format!("/v1/systems/{system}/tags"),
        &json!({ "tags": tags }),
        None,
    )
    .await;
    ok(r);
}

// ------------------------------------------------------------------ catalog

/// A catalog entry with every field set, as a client might write it.
fn full_entry() -> Value {
    json!({
        "title": "OpenSSL 3.0.13",
        "severity": "high",
        "released_at": "2024-05-14T02:00:00+02:00",
        "modified_at": "2024-05-20T00:00:00Z",
        "cves": ["CVE-2024-0002", "CVE-2024-0001", "CVE-2024-0002"],
        "aliases": ["USN-6700-1", "GHSA-xxxx-yyyy-zzzz"],
        "packages": [
            {"ecosystem": "Debian:12", "name": "openssl", "fixed": "3.0.13-1~deb12u1"},
            {"ecosystem": "AlmaLinux:9", "name": "openssl"}
        ],
        "applies_to": {"tags": ["role=web", "env=prod"]}
    })
}

/// [`full_entry`] as the server shows it: canonical timestamps, sorted and
/// deduplicated lists.
fn full_entry_out(id: &str) -> Value {
    json!({
        "id": id,
        "title": "OpenSSL 3.0.13",
        "severity": "high",
        "released_at": "2024-05-14T00:00:00.000000Z",
        "modified_at": "2024-05-20T00:00:00.000000Z",
        "cves": ["CVE-2024-0001", "CVE-2024-0002"],
        "aliases": ["GHSA-xxxx-yyyy-zzzz", "USN-6700-1"],
        "packages": [
            {"ecosystem": "AlmaLinux:9", "name": "openssl"},
            {"ecosystem": "Debian:12", "name": "openssl", "fixed": "3.0.13-1~deb12u1"}
        ],
        "applies_to": {"tags": ["env=prod", "role=web"]}
    })
}

fn without_revision(v: &Value) -> Value {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove("revision");
    v
}

#[tokio::test]
async fn catalog_entry_round_trips_keeps_revisions_and_answers_as_of() {
    let srv = TestServer::start().await;
    let path = "/v1/catalog/DSA-5678-1";

    // Create: every field comes back, normalised, with a first revision.
    let before = Timestamp::now();
    let first = ok(put(&srv, path, &full_entry(), Some("alice")).await);
    let after = Timestamp::now();
    assert_eq!(without_revision(&first), full_entry_out("DSA-5678-1"));
    let rev1 = first["revision"].clone();
    assert_eq!(rev1["changed"], true, "{first}");
    assert_eq!(by(&rev1["changed_by"]), "alice", "{first}");
    let changed1 = parse_ts(&rev1["changed_at"]);
    assert!(before <= changed1 && changed1 <= after, "{rev1}");

    let got = ok(srv.get(path).await);
    assert_eq!(without_revision(&got), full_entry_out("DSA-5678-1"));
    assert_eq!(got["revision"]["rev"], rev1["rev"]);
    assert_eq!(by(&got["revision"]["changed_by"]), "alice");
    assert_eq!(got["revision"]["changed_at"], rev1["changed_at"]);
    assert_eq!(got["revision"]["changed"], false, "a GET writes nothing");

    // The same content, written differently (offset, order, duplicates,
    // id repeated in the body): nothing changes, and no revision is added.
    let mut same = full_entry();
    same["id"] = json!("DSA-5678-1");
    same["released_at"] = json!("2024-05-14T00:00:00Z");
    same["cves"] = json!(["CVE-2024-0001", "CVE-2024-0002"]);
    same["applies_to"] = json!({"tags": ["env=prod", "role=web"]});
    let again = ok(put(&srv, path, &same, Some("bob")).await);
    assert_eq!(without_revision(&again), full_entry_out("DSA-5678-1"));
    assert_eq!(again["revision"]["changed"], false, "{again}");
    assert_eq!(again["revision"]["rev"], rev1["rev"], "{again}");
    assert_eq!(by(&again["revision"]["changed_by"]), "alice", "{again}");
    assert_eq!(again["revision"]["changed_at"], rev1["changed_at"]);

    // A real change by the server's own admin token: a new revision by it.
    tick().await;
    let mut changed = full_entry();
    changed["severity"] = json!("critical");
    changed["title"] = json!("OpenSSL 3.0.13 (re-rated)");
    let second = ok(put(&srv, path, &changed, None).await);
    let rev2 = second["revision"].clone();
    assert_eq!(rev2["changed"], true, "{second}");
    assert_eq!(by(&rev2["changed_by"]), "test-admin", "{second}");
    assert!(
        rev2["rev"].as_u64().unwrap() > rev1["rev"].as_u64().unwrap(),
        "{rev1} then {rev2}"
    );
    let changed2 = parse_ts(&rev2["changed_at"]);
    assert!(changed2 > changed1, "{rev1} then {rev2}");
    let now = ok(srv.get(path).await);
    assert_eq!(now["severity"], "critical");
    assert_eq!(now["revision"]["rev"], rev2["rev"]);

    // As of an instant between the two revisions: the first one.
    let between = Timestamp::from_micros((changed1.as_micros() + changed2.as_micros()) / 2);
    for t in [between, changed1] {
        let old = ok(srv.get_query(path, &[("as_of", rfc(t).as_str())]).await);
        assert_eq!(without_revision(&old), full_entry_out("DSA-5678-1"));
        assert_eq!(old["revision"]["rev"], rev1["rev"], "as of {t}");
    }
    let at2 = ok(srv
        .get_query(path, &[("as_of", rfc(changed2).as_str())])
        .await);
    assert_eq!(at2["severity"], "critical");
    // Before it existed: not found.
    let never = Timestamp::from_micros(changed1.as_micros() - 1);
    srv.get_query(path, &[("as_of", rfc(never).as_str())])
        .await
        .problem(404, "not-found");

    // History: both revisions, oldest first, with who and what.
    let h = ok(srv.get(&format!("{path}/history")).await);
    let revs = h["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 2, "{h}");
    assert_eq!(revs[0]["rev"], rev1["rev"]);
    assert_eq!(by(&revs[0]["changed_by"]), "alice");
    assert_eq!(revs[0]["changed_at"], rev1["changed_at"]);
    assert_eq!(revs[0]["content"], full_entry_out("DSA-5678-1"));
    assert_eq!(revs[1]["rev"], rev2["rev"]);
    assert_eq!(by(&revs[1]["changed_by"]), "test-admin");
    assert_eq!(revs[1]["content"]["severity"], "critical");
    assert_eq!(revs[1]["content"]["title"], "OpenSSL 3.0.13 (re-rated)");

    // Delete: 204, then gone, but the history stays and grows.
    tick().await;
    let d = delete(&srv, path, Some("carol")).await;
    assert_eq!(d.status, 204, "{}", d.text());
    assert!(d.body.is_empty(), "{}", d.text());
    srv.get(path).await.problem(404, "not-found");
    delete(&srv, path, None).await.problem(404, "not-found");
    assert_eq!(ids(&ok(srv.get("/v1/catalog").await)), Vec::<String>::new());
    let h = ok(srv.get(&format!("{path}/history")).await);
    let revs = h["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 3, "{h}");
    assert_eq!(by(&revs[2]["changed_by"]), "carol");
    assert!(
        revs[2].get("content").is_none(),
        "a deletion has no content: {h}"
    );
    assert!(revs[2]["rev"].as_u64() > revs[1]["rev"].as_u64(), "{h}");
    // As of before the deletion, the entry still answers.
    let old = ok(srv
        .get_query(path, &[("as_of", rfc(changed2).as_str())])
        .await);
    assert_eq!(old["severity"], "critical");
    assert_eq!(
        ids(&ok(srv
            .get_query("/v1/catalog", &[("as_of", rfc(between).as_str())])
            .await)),
        ["DSA-5678-1"]
    );

    // Written again after the deletion: back, as a new revision.
    let back = ok(put(&srv, path, &full_entry(), None).await);
    assert_eq!(back["revision"]["changed"], true, "{back}");
    assert_eq!(
        without_revision(&ok(srv.get(path).await)),
        full_entry_out("DSA-5678-1")
    );
    let h = ok(srv.get(&format!("{path}/history")).await);
    assert_eq!(h["revisions"].as_array().unwrap().len(), 4, "{h}");

    // An entry that never existed has no history.
    srv.get("/v1/catalog/never-there/history")
        .await
        .problem(404, "not-found");
    srv.shutdown().await;
}

#[tokio::test]
async fn catalog_entry_without_optional_fields_gets_defaults() {
    let srv = TestServer::start().await;
    let r = ok(put(
        &srv,
        "/v1/catalog/KB5034441",
        &json!({"severity": "none", "released_at": "2024-01-09T00:00:00Z"}),
        None,
    )
    .await);
    assert_eq!(
        without_revision(&r),
        json!({
            "id": "KB5034441",
            "title": "KB5034441",
            "severity": "none",
            "released_at": "2024-01-09T00:00:00.000000Z",
            "cves": [],
            "aliases": [],
            "packages": []
        }),
        "the title defaults to the id; no applies_to means every system"
    );
    let systems = ok(put(
        &srv,
        "/v1/catalog/KB2",
        &json!({
            "severity": "low",
            "released_at": "2024-01-09T00:00:00Z",
            "applies_to": {"systems": ["db-2", "db-1", "db-2"]}
        }),
        None,
    )
    .await);
    assert_eq!(systems["applies_to"], json!({"systems": ["db-1", "db-2"]}));
    srv.shutdown().await;
}

fn dated(id: &str, severity: &str, released: &str, cves: &[&str]) -> Value {
    json!({
        "id": id,
        "severity": severity,
        "released_at": released,
        "cves": cves,
    })
}

#[tokio::test]
async fn catalog_list_filters_by_severity_cve_release_and_as_of() {
    let srv = TestServer::start().await;
    let batch = json!([
        dated("adv-d", "low", "2024-04-10T00:00:00Z", &["CVE-2024-4000"]),
        dated(
            "adv-a",
            "critical",
            "2024-01-10T00:00:00Z",
            &["CVE-2024-1000"]
        ),
        dated(
            "adv-b",
            "high",
            "2024-02-10T00:00:00Z",
            &["CVE-2024-2000", "CVE-2024-1000"]
        ),
        dated("adv-c", "medium", "2024-03-10T00:00:00Z", &[]),
    ]);
    let w = ok(post(&srv, "/v1/catalog", &batch, Some("feed")).await);
    assert_eq!(w, json!({"changed": 4, "unchanged": 0}));
    let w = ok(post(&srv, "/v1/catalog", &batch, Some("feed")).await);
    assert_eq!(w, json!({"changed": 0, "unchanged": 4}));
    let h = ok(srv.get("/v1/catalog/adv-b/history").await);
    assert_eq!(h["revisions"].as_array().unwrap().len(), 1, "{h}");
    assert_eq!(by(&h["revisions"][0]["changed_by"]), "feed");

    tick().await;
    let t = Timestamp::now();
    tick().await;
    let mut batch2 = batch.clone();
    batch2[1]["severity"] = json!("medium");
    let w = ok(post(&srv, "/v1/catalog", &batch2, None).await);
    assert_eq!(w, json!({"changed": 1, "unchanged": 3}));

    let list = |q: Vec<(&'static str, String)>| {
        let srv = &srv;
        async move {
            let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let page = ok(srv.get_query("/v1/catalog", &q).await);
            for e in page["entries"].as_array().unwrap() {
                assert!(e.get("revision").is_none(), "{e}");
            }
            ids(&page)
        }
    };
    let s = |v: &str| v.to_owned();
    assert_eq!(list(vec![]).await, ["adv-a", "adv-b", "adv-c", "adv-d"]);
    assert_eq!(
        list(vec![("severity", s("critical,high"))]).await,
        ["adv-b"],
        "adv-a is medium now"
    );
    assert_eq!(
        list(vec![("severity", s("critical,high")), ("as_of", rfc(t))]).await,
        ["adv-a", "adv-b"],
        "adv-a was critical then"
    );
    assert_eq!(
        list(vec![("severity", s("medium,low"))]).await,
        ["adv-a", "adv-c", "adv-d"]
    );
    assert_eq!(
        list(vec![("cve", s("CVE-2024-1000"))]).await,
        ["adv-a", "adv-b"]
    );
    assert_eq!(
        list(vec![("cve", s("CVE-2024-9999"))]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        list(vec![("released_from", s("2024-02-10T00:00:00Z"))]).await,
        ["adv-b", "adv-c", "adv-d"],
        "released_from is inclusive"
    );
    assert_eq!(
        list(vec![("released_to", s("2024-03-10T00:00:00Z"))]).await,
        ["adv-a", "adv-b"],
        "released_to is exclusive"
    );
    assert_eq!(
        list(vec![
            ("released_from", s("2024-02-01T00:00:00Z")),
            ("released_to", s("2024-04-01T00:00:00+00:00")),
            ("cve", s("CVE-2024-1000")),
        ])
        .await,
        ["adv-b"]
    );
    let as_of_then = ok(srv
        .get_query("/v1/catalog", &[("as_of", rfc(t).as_str())])
        .await);
    assert_eq!(as_of_then["entries"][0]["severity"], "critical");

    // Bad parameters are named.
    for (q, field, code) in [
        (vec![("severity", "urgent")], "severity", "format"),
        (
            vec![("released_from", "yesterday")],
            "released_from",
            "format",
        ),
        (
            vec![("released_to", "2024-13-01T00:00:00Z")],
            "released_to",
            "format",
        ),
        (vec![("as_of", "now")], "as_of", "format"),
        (vec![("colour", "red")], "colour", "unknown_field"),
        (
            vec![("cve", "CVE-2024-1000"), ("cve", "CVE-2024-2000")],
            "cve",
            "duplicate_field",
        ),
    ] {
        let r = srv.get_query("/v1/catalog", &q).await;
        assert_eq!(r.param_errors(), vec![fe(field, code)], "{q:?}");
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn bulk_catalog_writes_are_all_or_nothing() {
    let srv = TestServer::start().await;
    let batch = json!([
        dated("ok-1", "high", "2024-01-01T00:00:00Z", &[]),
        dated("bad-sev", "urgent", "2024-01-01T00:00:00Z", &[]),
        {"id": "bad-2", "severity": "low", "cves": ["CVE-24-1"]},
        {"severity": "low", "released_at": "2024-01-01T00:00:00Z"},
        dated("ok-2", "low", "2024-01-01T00:00:00Z", &[]),
    ]);
    let r = post(&srv, "/v1/catalog", &batch, None).await;
    let mut errs = doc_errors(&r);
    errs.sort();
    assert_eq!(
        errs,
        vec![
            fe("[1].severity", "invalid_value"),
            fe("[2].cves[0]", "format"),
            fe("[2].released_at", "required"),
            fe("[3].id", "required"),
        ]
    );
    // Nothing was written, not even the valid entries.
    assert_eq!(ids(&ok(srv.get("/v1/catalog").await)), Vec::<String>::new());
    srv.get("/v1/catalog/ok-1").await.problem(404, "not-found");
    srv.get("/v1/catalog/ok-1/history")
        .await
        .problem(404, "not-found");

    // A body that is not a list, and an unknown field in one entry.
    let r = post(&srv, "/v1/catalog", &batch[0], None).await;
    r.problem(400, "malformed-body");
    let mut bad = batch[0].clone();
    bad["colour"] = json!("red");
    let r = post(&srv, "/v1/catalog", &json!([batch[4], bad]), None).await;
    assert_unknown_field(&r, "colour");
    assert_eq!(ids(&ok(srv.get("/v1/catalog").await)), Vec::<String>::new());

    // The valid entries alone go in.
    let w = ok(post(&srv, "/v1/catalog", &json!([batch[0], batch[4]]), None).await);
    assert_eq!(w, json!({"changed": 2, "unchanged": 0}));
    assert_eq!(ids(&ok(srv.get("/v1/catalog").await)), ["ok-1", "ok-2"]);
    srv.shutdown().await;
}

fn valid() -> Value {
    json!({"severity": "critical", "released_at": "2024-01-01T00:00:00Z"})
}

#[tokio::test]
async fn catalog_validation_names_every_field() {
    let srv = TestServer::start().await;
    let path = "/v1/catalog/KB1";
    let with = |k: &str, v: Value| {
        let mut b = valid();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = valid();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases: Vec<(Value, Vec<(String, String)>)> = vec![
        (without("severity"), vec![fe("severity", "required")]),
        (without("released_at"), vec![fe("released_at", "required")]),
        (
            json!({}),
            vec![fe("severity", "required"), fe("released_at", "required")],
        ),
        (
            with("severity", json!("urgent")),
            vec![fe("severity", "invalid_value")],
        ),
        (
            with("severity", json!("Critical")),
            vec![fe("severity", "invalid_value")],
        ),
        (
            with("released_at", json!("2024-13-01T00:00:00Z")),
            vec![fe("released_at", "format")],
        ),
        (
            with("released_at", json!("yesterday")),
            vec![fe("released_at", "format")],
        ),
        (
            with("modified_at", json!("2024-01-01")),
            vec![fe("modified_at", "format")],
        ),
        (
            with("cves", json!(["CVE-2024-0001", "cve-2024-0002"])),
            vec![fe("cves[1]", "format")],
        ),
        (with("title", json!("")), vec![fe("title", "empty")]),
        (
            with("title", json!("x".repeat(513))),
            vec![fe("title", "too_long")],
        ),
        (
            with("aliases", json!([""])),
            vec![fe("aliases[0]", "empty")],
        ),
        (
            with("packages", json!([{"ecosystem": "Debian:12", "name": ""}])),
            vec![fe("packages[0].name", "empty")],
        ),
        (
            with("applies_to", json!({"tags": ["env=prod", "prod"]})),
            vec![fe("applies_to.tags[1]", "format")],
        ),
        (
            with("applies_to", json!({"tags": []})),
            vec![fe("applies_to.tags", "empty")],
        ),
        (
            with(
                "applies_to",
                json!({"tags": ["env=prod"], "systems": ["web-1"]}),
            ),
            vec![fe("applies_to", "invalid_value")],
        ),
        (with("id", json!("KB2")), vec![fe("id", "invalid_value")]),
    ];
    for (body, want) in cases {
        let r = put(&srv, path, &body, None).await;
        assert_eq!(doc_errors(&r), want, "{body}");
    }
    // A bad id in the URL is named too.
    let long = format!("/v1/catalog/{}", "k".repeat(300));
    let r = put(&srv, &long, &valid(), None).await;
    let errs = doc_errors(&r);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "id");

    // Unknown fields, at the top and nested, are named.
    for (body, field) in [
        (with("colour", json!("red")), "colour"),
        (with("applies_to", json!({"tag": ["env=prod"]})), "tag"),
        (
            with(
                "packages",
                json!([{"ecosystem": "PyPI", "name": "x", "version": "1"}]),
            ),
            "version",
        ),
        (with("revision", json!({"rev": 1})), "revision"),
    ] {
        let r = put(&srv, path, &body, None).await;
        assert_unknown_field(&r, field);
    }

    // Wrong types and malformed JSON are 400s, never 500s.
    for body in [
        with("severity", json!(5)),
        with("cves", json!("CVE-2024-0001")),
        with("applies_to", json!(["env=prod"])),
        json!([]),
    ] {
        put(&srv, path, &body, None)
            .await
            .problem(400, "malformed-body");
    }
    let r = put_raw(
        &srv,
        path,
        "{\n  \"severity\": \"high\",\n  \"released_at\": ,\n}",
    )
    .await;
    let p = r.problem(400, "malformed-body");
    assert_eq!(p["line"], 3, "{p}");
    assert_eq!(p["column"], 18, "{p}");
    put_raw(&srv, path, "").await.problem(400, "malformed-body");

    // Nothing above was written.
    srv.get(path).await.problem(404, "not-found");
    srv.get(&format!("{path}/history"))
        .await
        .problem(404, "not-found");

    // GET parameters are checked.
    ok(put(&srv, path, &valid(), None).await);
    for (q, field, code) in [
        (vec![("colour", "red")], "colour", "unknown_field"),
        (vec![("as_of", "2024-01-01")], "as_of", "format"),
        (vec![("as_of", "tomorrow")], "as_of", "format"),
        (
            vec![
                ("as_of", "2024-01-01T00:00:00Z"),
                ("as_of", "2024-01-02T00:00:00Z"),
            ],
            "as_of",
            "duplicate_field",
        ),
    ] {
        let r = srv.get_query(path, &q).await;
        assert_eq!(r.param_errors(), vec![fe(field, code)], "{q:?}");
    }
    srv.shutdown().await;
}

// ------------------------------------------------------------------ tags

#[tokio::test]
async fn system_tags_are_replaced_read_back_and_validated() {
    let srv = TestServer::start().await;
    let path = "/v1/systems/web-1/tags";
    let none = ok(srv.get(path).await);
    assert_eq!(none, json!({"system": "web-1", "tags": []}));

    let r = ok(put(
        &srv,
        path,
        &json!({"tags": ["role=web", "env=prod", "pci="]}),
        Some("ops"),
    )
    .await);
    assert_eq!(r["system"], "web-1");
    assert_eq!(r["tags"], json!(["env=prod", "pci=", "role=web"]), "by key");
    assert_eq!(r["revision"]["changed"], true);
    assert_eq!(by(&r["revision"]["changed_by"]), "ops");
    let got = ok(srv.get(path).await);
    assert_eq!(got["tags"], r["tags"]);
    assert_eq!(got["revision"]["rev"], r["revision"]["rev"]);
    assert_eq!(by(&got["revision"]["changed_by"]), "ops");

    let same = ok(put(
        &srv,
        path,
        &json!({"tags": ["pci=", "env=prod", "role=web"]}),
        None,
    )
    .await);
    assert_eq!(same["revision"]["changed"], false, "{same}");
    assert_eq!(same["revision"]["rev"], r["revision"]["rev"]);

    for (tags, want) in [
        (
            json!(["env=prod", "env=dev"]),
            fe("tags[1]", "duplicate_field"),
        ),
        (json!(["prod"]), fe("tags[0]", "format")),
        (
            json!(["env=prod", "role=web", "a b=c"]),
            fe("tags[2]", "format"),
        ),
        (json!(["=x"]), fe("tags[0]", "empty")),
        (json!(["env=a,b"]), fe("tags[0]", "format")),
        (json!(["env=a\nb"]), fe("tags[0]", "control_character")),
    ] {
        let r = put(&srv, path, &json!({ "tags": tags }), None).await;
        assert_eq!(doc_errors(&r), vec![want], "{tags}");
    }
    let r = put(&srv, path, &json!({"tags": [], "owner": "me"}), None).await;
    assert_unknown_field(&r, "owner");
    put(&srv, path, &json!({"tag": ["env=prod"]}), None)
        .await
        .problem(400, "malformed-body");
    assert_eq!(ok(srv.get(path).await)["tags"], got["tags"]);

    // An empty list clears the tags, as a new revision.
    let cleared = ok(put(&srv, path, &json!({"tags": []}), None).await);
    assert_eq!(cleared["tags"], json!([]));
    assert_eq!(cleared["revision"]["changed"], true);
    assert_eq!(ok(srv.get(path).await)["tags"], json!([]));
    srv.shutdown().await;
}

// ------------------------------------------------------------------ policy

fn default_policy() -> Value {
    json!({
        "default": {"critical": 30, "high": 30, "medium": 90, "low": 180},
        "scoped": [],
        "stale_after_days": 7
    })
}

fn scoped_policy() -> Value {
    json!({
        "default": {"critical": 15, "high": 30, "medium": 60, "low": null},
        "scoped": [
            {"tag": "pci=in-scope", "days": {"critical": 7, "high": 14, "medium": 30, "low": 90}},
            {"tag": "env=lab", "days": {"critical": null, "high": null, "medium": null, "low": null}}
        ],
        "stale_after_days": 3
    })
}

#[tokio::test]
async fn policy_defaults_then_a_scoped_policy_read_back() {
    let srv = TestServer::start().await;
    let got = ok(srv.get("/v1/policy").await);
    assert_eq!(got, default_policy(), "the defaults, with no revision");

    let r = ok(put(&srv, "/v1/policy", &scoped_policy(), Some("grc")).await);
    assert_eq!(without_revision(&r), scoped_policy());
    assert_eq!(r["revision"]["changed"], true);
    assert_eq!(by(&r["revision"]["changed_by"]), "grc");
    let got = ok(srv.get("/v1/policy").await);
    assert_eq!(without_revision(&got), scoped_policy());
    assert_eq!(got["revision"]["rev"], r["revision"]["rev"]);
    assert_eq!(by(&got["revision"]["changed_by"]), "grc");

    let same = ok(put(&srv, "/v1/policy", &scoped_policy(), None).await);
    assert_eq!(same["revision"]["changed"], false);
    assert_eq!(same["revision"]["rev"], r["revision"]["rev"]);
    srv.shutdown().await;
}

#[tokio::test]
async fn invalid_policies_name_the_field_and_change_nothing() {
    let srv = TestServer::start().await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut p = default_policy();
        f(&mut p);
        p
    };
    let cases: Vec<(Value, Vec<(String, String)>)> = vec![
        (
            with(&|p| p["stale_after_days"] = json!(0)),
            vec![fe("stale_after_days", "invalid_value")],
        ),
        (
            with(&|p| p["stale_after_days"] = json!(3651)),
            vec![fe("stale_after_days", "invalid_value")],
        ),
        (
            with(&|p| p["default"]["critical"] = json!(3651)),
            vec![fe("default.critical", "invalid_value")],
        ),
        (
            with(&|p| p["default"]["low"] = json!(100_000)),
            vec![fe("default.low", "invalid_value")],
        ),
        (
            with(&|p| {
                p["scoped"] = json!([
                    {"tag": "pci=in-scope", "days": {"critical": 7, "high": 7, "medium": 7, "low": 7}},
                    {"tag": "pci", "days": {"critical": 7, "high": 7, "medium": 7, "low": 7}}
                ])
            }),
            vec![fe("scoped[1].tag", "format")],
        ),
    ];
    for (body, want) in cases {
        let r = put(&srv, "/v1/policy", &body, None).await;
        assert_eq!(doc_errors(&r), want, "{body}");
    }
    // 3650 days is the limit itself, and accepted.
    let edge = with(&|p| {
        p["default"]["low"] = json!(3650);
        p["stale_after_days"] = json!(3650);
    });
    let r = ok(put(&srv, "/v1/policy", &edge, None).await);
    assert_eq!(without_revision(&r), edge);
    ok(put(&srv, "/v1/policy", &default_policy(), None).await);

    // Missing or unknown fields and wrong types are rejected, never a 500.
    let mut missing = default_policy();
    missing.as_object_mut().unwrap().remove("stale_after_days");
    put(&srv, "/v1/policy", &missing, None)
        .await
        .problem(400, "malformed-body");
    put(
        &srv,
        "/v1/policy",
        &with(&|p| p["stale_after_days"] = json!(-1)),
        None,
    )
    .await
    .problem(400, "malformed-body");
    let r = put(
        &srv,
        "/v1/policy",
        &with(&|p| p["default"]["urgent"] = json!(1)),
        None,
    )
    .await;
    assert_unknown_field(&r, "urgent");
    let r = put(
        &srv,
        "/v1/policy",
        &with(&|p| p["grace_days"] = json!(1)),
        None,
    )
    .await;
    assert_unknown_field(&r, "grace_days");

    assert_eq!(
        without_revision(&ok(srv.get("/v1/policy").await)),
        default_policy()
    );
    srv.shutdown().await;
}

/// The days of a scoped entry sit at `scoped[i].days.<severity>` in the
/// document; the problem must name that path, as it does for
/// `scoped[i].tag` and `default.<severity>`.
#[tokio::test]
async fn scoped_policy_day_limits_name_the_field_as_sent() {
    let srv = TestServer::start().await;
    let mut body = default_policy();
    body["scoped"] = json!([
        {"tag": "pci=in-scope", "days": {"critical": 7, "high": 7, "medium": 7, "low": 4000}}
    ]);
    let r = put(&srv, "/v1/policy", &body, None).await;
    assert_eq!(
        doc_errors(&r),
        vec![fe("scoped[0].days.low", "invalid_value")]
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn scoped_policy_sets_deadlines_in_the_report() {
    let srv = TestServer::start().await;
    let now = Timestamp::now();
    set_tags(&srv, "pci-1", &["pci=in-scope"]).await;
    set_tags(&srv, "dev-1", &["env=dev"]).await;
    srv.ingest(&[
        ev("noise", "pci-1", ago(now, 1), "success"),
        ev("noise", "dev-1", ago(now, 1), "success"),
    ])
    .await;
    let released = ago(now, 10);
    ok(put(
        &srv,
        "/v1/catalog/KB-10",
        &json!({"severity": "critical", "released_at": rfc(released)}),
        None,
    )
    .await);

    let r = report(&srv, &[]).await;
    assert_eq!(r["summary"]["states"], states([2, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(r["overdue"], json!([]));

    tick().await;
    let before_policy = Timestamp::now();
    tick().await;
    let mut p = default_policy();
    p["scoped"] = json!([
        {"tag": "pci=in-scope", "days": {"critical": 7, "high": 30, "medium": 90, "low": 180}}
    ]);
    ok(put(&srv, "/v1/policy", &p, None).await);

    let r = report(&srv, &[]).await;
    assert_eq!(r["summary"]["states"], states([1, 1, 0, 0, 0, 0, 0, 0, 0]));
    let overdue = r["overdue"].as_array().unwrap();
    assert_eq!(overdue.len(), 1, "{r}");
    assert_eq!(overdue[0]["system"], "pci-1");
    assert_eq!(overdue[0]["state"], "overdue");
    assert_eq!(overdue[0]["deadline"], rfc(ahead(released, 7)));
    assert_eq!(r["summary"]["overdue_by_severity"]["critical"], 1);

    // As of before the policy changed, the defaults still apply.
    let then = report(&srv, &[("as_of", rfc(before_policy).as_str())]).await;
    assert_eq!(
        then["summary"]["states"],
        states([2, 0, 0, 0, 0, 0, 0, 0, 0])
    );
    srv.shutdown().await;
}

// ------------------------------------------------------------------ exceptions

#[tokio::test]
async fn exceptions_are_created_listed_and_revoked_once() {
    let srv = TestServer::start().await;
    let now = Timestamp::now();
    let expires = ahead(now, 30);

    let before = Timestamp::now();
    let r = post(
        &srv,
        "/v1/exceptions",
        &exception("KB1", ("system", "db-1"), expires),
        Some("alice"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let sys = r.json();
    let after = Timestamp::now();
    let sys_id = sys["id"].as_str().unwrap().to_owned();
    assert!(sys_id.starts_with("exc-"), "{sys}");
    assert_eq!(
        without(&sys, &["id", "created_at"]),
        json!({
            "patch_id": "KB1",
            "system": "db-1",
            "reason": "vendor freeze until the next maintenance window",
            "approver": "ciso@example.com",
            "expires_at": rfc(expires),
            "active": true
        })
    );
    let created = parse_ts(&sys["created_at"]);
    assert!(before <= created && created <= after, "{sys}");

    let r = post(
        &srv,
        "/v1/exceptions",
        &exception("KB2", ("tag", "env=prod"), expires),
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let tag = r.json();
    let tag_id = tag["id"].as_str().unwrap().to_owned();
    assert_ne!(tag_id, sys_id);
    assert_eq!(tag["tag"], "env=prod");
    assert!(tag.get("system").is_none(), "{tag}");
    assert_eq!(tag["active"], true);

    let list_ids = |q: &'static [(&'static str, &'static str)]| {
        let srv = &srv;
        async move {
            let l = ok(srv.get_query("/v1/exceptions", q).await);
            let mut v: Vec<String> = l["exceptions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_str().unwrap().to_owned())
                .collect();
            v.sort();
            v
        }
    };
    let mut both = vec![sys_id.clone(), tag_id.clone()];
    both.sort();
    assert_eq!(list_ids(&[]).await, both);
    assert_eq!(list_ids(&[("active", "true")]).await, both);
    assert_eq!(list_ids(&[("active", "false")]).await, Vec::<String>::new());
    let listed = ok(srv.get("/v1/exceptions").await);
    assert_eq!(row(&listed["exceptions"], "id", &sys_id), &sys);

    // Revoke: it stops counting now, and stays listed.
    let before = Timestamp::now();
    let rv = ok(post(
        &srv,
        &format!("/v1/exceptions/{sys_id}/revoke"),
        &json!(null),
        Some("bob"),
    )
    .await);
    let after = Timestamp::now();
    assert_eq!(rv["id"], sys_id.as_str());
    assert_eq!(rv["active"], false, "{rv}");
    let revoked = parse_ts(&rv["revoked_at"]);
    assert!(before <= revoked && revoked <= after, "{rv}");
    assert_eq!(rv["created_at"], sys["created_at"]);
    assert_eq!(list_ids(&[("active", "true")]).await, vec![tag_id.clone()]);
    assert_eq!(list_ids(&[("active", "false")]).await, vec![sys_id.clone()]);
    let listed = ok(srv.get("/v1/exceptions").await);
    assert_eq!(row(&listed["exceptions"], "id", &sys_id), &rv);

    // Revoking again keeps the first revocation.
    tick().await;
    let again = ok(post(
        &srv,
        &format!("/v1/exceptions/{sys_id}/revoke"),
        &json!(null),
        None,
    )
    .await);
    assert_eq!(again["revoked_at"], rv["revoked_at"], "{again}");
    assert_eq!(again["active"], false);

    post(
        &srv,
        "/v1/exceptions/exc-000000000000/revoke",
        &json!(null),
        None,
    )
    .await
    .problem(404, "not-found");

    for (q, field, code) in [
        (vec![("active", "yes")], "active", "format"),
        (vec![("colour", "red")], "colour", "unknown_field"),
    ] {
        let r = srv.get_query("/v1/exceptions", &q).await;
        assert_eq!(r.param_errors(), vec![fe(field, code)], "{q:?}");
    }
    srv.shutdown().await;
}

fn without(v: &Value, keys: &[&str]) -> Value {
    let mut v = v.clone();
    for k in keys {
        v.as_object_mut().unwrap().remove(*k);
    }
    v
}

#[tokio::test]
async fn invalid_exceptions_name_the_field() {
    let srv = TestServer::start().await;
    let now = Timestamp::now();
    let good = exception("KB1", ("system", "db-1"), ahead(now, 10));
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(Value, Vec<(String, String)>)> = vec![
        (
            with("expires_at", json!(rfc(ago(now, 1)))),
            vec![fe("expires_at", "invalid_value")],
        ),
        (
            with("expires_at", json!("soon")),
            vec![fe("expires_at", "format")],
        ),
        (
            without(&good, &["expires_at"]),
            vec![fe("expires_at", "required")],
        ),
        (
            with("tag", json!("env=prod")),
            vec![fe("scope", "invalid_value")],
        ),
        (without(&good, &["system"]), vec![fe("scope", "required")]),
        (with("system", json!("")), vec![fe("system", "empty")]),
        (
            {
                let mut b = without(&good, &["system"]);
                b["tag"] = json!("prod");
                b
            },
            vec![fe("tag", "format")],
        ),
        (
            without(&good, &["approver"]),
            vec![fe("approver", "required")],
        ),
        (with("approver", json!("")), vec![fe("approver", "empty")]),
        (with("reason", json!("   ")), vec![fe("reason", "empty")]),
        (
            without(&good, &["patch_id"]),
            vec![fe("patch_id", "required")],
        ),
    ];
    for (body, want) in cases {
        let r = post(&srv, "/v1/exceptions", &body, None).await;
        assert_eq!(doc_errors(&r), want, "{body}");
    }
    let r = post(
        &srv,
        "/v1/exceptions",
        &with("revoked_at", json!(rfc(now))),
        None,
    )
    .await;
    assert_unknown_field(&r, "revoked_at");
    post(
        &srv,
        "/v1/exceptions",
        &with("patch_id", json!(["KB1"])),
        None,
    )
    .await
    .problem(400, "malformed-body");
    let l = ok(srv.get("/v1/exceptions").await);
    assert_eq!(l, json!({"exceptions": []}), "nothing was recorded");
    srv.shutdown().await;
}

// ------------------------------------------------------------------ report

/// The fleet of [`compliance_report_states_hand_computed`], at `now`:
///
/// - P-CRIT (critical, released 40 days ago, deadline 10 days ago), on
///   every system:
///   - s-ontime: applied 35 days ago (day 5) → applied_on_time
///   - s-late: applied 5 days ago (day 35) → applied_late
///   - s-overdue: never attempted → overdue
///   - s-failed: failed 3 and 2 days ago → failed, and overdue
///   - s-rolled: applied day 5, rolled back day 25 → rolled_back, overdue
///   - s-reboot: applied day 5, reboot required → pending_reboot
///   - s-except: never attempted, excepted → excepted
///   - s-stale: tags only, never heard from → unknown (and overdue)
/// - P-PROD (high, released 5 days ago, applies to env=prod): s-ontime
///   missing, s-stale unknown; not required on the six env=dev systems.
///
/// s-overdue and s-except report one event for a patch not in the catalog,
/// so that they are not stale. 9 events in all.
struct Fleet {
    now: Timestamp,
    seqs: Vec<u64>,
    exception: String,
}

const SYSTEMS: [&str; 8] = [
    "s-except",
    "s-failed",
    "s-late",
    "s-ontime",
    "s-overdue",
    "s-reboot",
    "s-rolled",
    "s-stale",
];

async fn fleet(srv: &TestServer) -> Fleet {
    let now = Timestamp::now();
    for s in SYSTEMS {
        let env = if matches!(s, "s-ontime" | "s-stale") {
            "env=prod"
        } else {
            "env=dev"
        };
        set_tags(srv, s, &[env]).await;
    }
    let w = ok(post(
        srv,
        "/v1/catalog",
        &json!([
            {"id": "P-CRIT", "title": "Critical fix", "severity": "critical",
             "released_at": rfc(ago(now, 40))},
            {"id": "P-PROD", "title": "Prod-only fix", "severity": "high",
             "released_at": rfc(ago(now, 5)), "applies_to": {"tags": ["env=prod"]}},
        ]),
        None,
    )
    .await);
    assert_eq!(w["changed"], 2);
    let mut first_failure = ev("P-CRIT", "s-failed", ago(now, 3), "failure");
    first_failure["detail"] = json!("first try: mirror unreachable");
    let mut last_failure = ev("P-CRIT", "s-failed", ago(now, 2), "failure");
    last_failure["detail"] = json!("exit 100: dpkg lock held");
    let mut reboot = ev("P-CRIT", "s-reboot", ago(now, 35), "success");
    reboot["reboot_required"] = json!(true);
    let seqs = srv
        .ingest(&[
            ev("P-CRIT", "s-ontime", ago(now, 35), "success"),
            ev("P-CRIT", "s-late", ago(now, 5), "success"),
            ev("noise-1", "s-overdue", ago(now, 1), "success"),
            first_failure,
            last_failure,
            ev("P-CRIT", "s-rolled", ago(now, 35), "success"),
            ev("P-CRIT", "s-rolled", ago(now, 15), "rolled_back"),
            reboot,
            ev("noise-1", "s-except", ago(now, 1), "success"),
        ])
        .await;
    assert_eq!(seqs.len(), 9);
    let r = post(
        srv,
        "/v1/exceptions",
        &exception("P-CRIT", ("system", "s-except"), ahead(now, 30)),
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    Fleet {
        now,
        seqs,
        exception: r.json()["id"].as_str().unwrap().to_owned(),
    }
}

async fn checkpoint_root_hex(srv: &TestServer) -> (u64, String) {
    let r = srv.get("/v1/checkpoint").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cp = open_checkpoint(&r.text(), &test_signer().verifier()).expect("a signed checkpoint");
    let hex = cp.root.iter().map(|b| format!("{b:02x}")).collect();
    (cp.size, hex)
}

#[tokio::test]
async fn compliance_report_states_hand_computed() {
    let srv = TestServer::start().await;
    let f = fleet(&srv).await;
    let now = f.now;

    let before = Timestamp::now();
    let r = report(&srv, &[]).await;
    let after = Timestamp::now();
    let at = parse_ts(&r["at"]);
    assert!(before <= at && at <= after, "at {at}");
    assert_eq!(r["as_of"], false);
    let (size, root) = checkpoint_root_hex(&srv).await;
    assert_eq!(size, 9);
    assert_eq!(
        r["checkpoint"],
        json!({"size": 9, "root": root}),
        "the report names the checkpoint of the events it covers"
    );
    assert_eq!(
        r["filter"],
        json!({"tags": [], "severities": [], "system": null, "patch_id": null})
    );

    let s = &r["summary"];
    assert_eq!(s["pairs_required"], 10, "{s}");
    assert_eq!(s["states"], states([1, 1, 1, 1, 1, 1, 1, 1, 2]), "{s}");
    assert_eq!(s["overdue"], 4, "overdue, failed, rolled back and unknown");
    assert_eq!(
        s["overdue_by_severity"],
        json!({"critical": 4, "high": 0, "medium": 0, "low": 0, "none": 0})
    );
    assert_close(&s["coverage_pct"], 20.0);
    assert_close(&s["on_time_pct"], 50.0);
    assert_eq!(s["attempts"], 6, "rollbacks are not attempts: {s}");
    assert_eq!(s["failures"], 2);
    assert_close(&s["failure_rate_pct"], 100.0 * 2.0 / 6.0);
    assert_eq!(s["systems"], 8);
    assert_eq!(s["stale_systems"], json!(["s-stale"]));
    assert_eq!(s["patches"], 2, "noise-1 is not in the catalog");
    let ttp = s["time_to_patch"].as_array().unwrap();
    assert_eq!(ttp.len(), 1, "{s}");
    assert_eq!(ttp[0]["severity"], "critical");
    assert_eq!(
        ttp[0]["count"], 2,
        "on time and late; a pending reboot is not a confirmed install"
    );
    assert_close(&ttp[0]["mean_days"], (5.0 + 35.0) / 2.0);
    assert_close(&ttp[0]["p90_days"], 35.0);
    let hist: u64 = r["time_to_patch_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(hist, 2);
    let last = r["coverage"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["required"], 10);
    assert_eq!(
        last["covered"], 2,
        "the curve ends at the headline coverage (20%)"
    );

    // The overdue list: oldest deadline first, then by system.
    let overdue = r["overdue"].as_array().unwrap();
    let got: Vec<(&str, &str, &str)> = overdue
        .iter()
        .map(|p| {
            (
                p["system"].as_str().unwrap(),
                p["patch_id"].as_str().unwrap(),
                p["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("s-failed", "P-CRIT", "failed"),
            ("s-overdue", "P-CRIT", "overdue"),
            ("s-rolled", "P-CRIT", "rolled_back"),
            ("s-stale", "P-CRIT", "unknown"),
        ]
    );
    for p in overdue {
        assert_fields(
            p,
            &json!({
                "title": "Critical fix",
                "severity": "critical",
                "overdue": true,
                "released_at": rfc(ago(now, 40)),
                "deadline": rfc(ago(now, 10)),
                "time_to_patch_days": null,
                "exception": null,
            }),
        );
    }
    assert_fields(
        row(&r["overdue"], "system", "s-rolled"),
        &json!({
            "first_attempt_at": rfc(ago(now, 35)),
            "first_success_at": rfc(ago(now, 35)),
            "attempts": 1,
            "failures": 0,
            "last_failure_seq": null,
        }),
    );
    assert_fields(
        row(&r["overdue"], "system", "s-overdue"),
        &json!({"first_attempt_at": null, "attempts": 0}),
    );

    // The failures list, with the latest failure's detail.
    assert_eq!(r["failures"].as_array().unwrap().len(), 1, "{r}");
    assert_fields(
        &r["failures"][0],
        &json!({
            "system": "s-failed",
            "patch_id": "P-CRIT",
            "state": "failed",
            "overdue": true,
            "attempts": 2,
            "failures": 2,
            "first_attempt_at": rfc(ago(now, 3)),
            "first_success_at": null,
            "last_failure_seq": f.seqs[4],
            "detail": "exit 100: dpkg lock held",
        }),
    );

    // One line per system, by id.
    let systems: Vec<&str> = r["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["system"].as_str().unwrap())
        .collect();
    assert_eq!(systems, SYSTEMS);
    let sys = |id: &str, want: Value| assert_fields(row(&r["systems"], "system", id), &want);
    let counts = |req: u64, app: u64, ovd: u64, fail: u64, exc: u64, unk: u64| {
        json!({"required": req, "applied": app, "overdue": ovd, "failed": fail,
               "excepted": exc, "unknown": unk})
    };
    sys("s-ontime", counts(2, 1, 0, 0, 0, 0));
    sys(
        "s-ontime",
        json!({"tags": ["env=prod"], "stale": false, "coverage_pct": 50.0}),
    );
    sys("s-late", counts(1, 1, 0, 0, 0, 0));
    sys(
        "s-late",
        json!({"tags": ["env=dev"], "coverage_pct": 100.0}),
    );
    sys("s-overdue", counts(1, 0, 1, 0, 0, 0));
    sys("s-failed", counts(1, 0, 1, 1, 0, 0));
    sys("s-rolled", counts(1, 0, 1, 0, 0, 0));
    sys("s-reboot", counts(1, 0, 0, 0, 0, 0));
    sys("s-except", counts(1, 0, 0, 0, 1, 0));
    sys("s-stale", counts(2, 0, 1, 0, 0, 2));
    sys(
        "s-stale",
        json!({"stale": true, "last_seen": null, "tags": ["env=prod"], "coverage_pct": 0.0}),
    );
    for s in SYSTEMS.iter().filter(|s| **s != "s-stale") {
        let seen = parse_ts(&row(&r["systems"], "system", s)["last_seen"]);
        assert!(
            seen >= now && seen <= after,
            "last_seen is when the ledger heard from {s}, not when the patch was applied"
        );
    }

    // One line per patch, most severe first.
    let patches = r["patches"].as_array().unwrap();
    assert_eq!(patches.len(), 2, "{r}");
    assert_fields(
        &patches[0],
        &json!({"patch_id": "P-CRIT", "title": "Critical fix", "severity": "critical",
                "released_at": rfc(ago(now, 40)), "required": 8, "applied": 2,
                "overdue": 4, "failed": 1, "excepted": 1, "unknown": 1, "coverage_pct": 25.0}),
    );
    assert_close(&patches[0]["mean_time_to_patch_days"], 20.0);
    assert_fields(
        &patches[1],
        &json!({"patch_id": "P-PROD", "severity": "high", "required": 2, "applied": 0,
                "overdue": 0, "failed": 0, "excepted": 0, "unknown": 1, "coverage_pct": 0.0,
                "mean_time_to_patch_days": null}),
    );

    // Revoking the exception: the pair is overdue again.
    ok(post(
        &srv,
        &format!("/v1/exceptions/{}/revoke", f.exception),
        &json!(null),
        None,
    )
    .await);
    let r = report(&srv, &[]).await;
    assert_eq!(r["summary"]["states"], states([1, 2, 1, 1, 1, 1, 1, 0, 2]));
    assert_eq!(r["summary"]["overdue"], 5);
    let first = &r["overdue"][0];
    assert_fields(
        first,
        &json!({"system": "s-except", "patch_id": "P-CRIT", "state": "overdue",
                "overdue": true, "exception": null}),
    );

    // A tag-scoped exception covers the env=prod systems, but a stale
    // system stays unknown.
    let x = post(
        &srv,
        "/v1/exceptions",
        &exception("P-PROD", ("tag", "env=prod"), ahead(now, 30)),
        None,
    )
    .await;
    assert_eq!(x.status, 201, "{}", x.text());
    let r = report(&srv, &[]).await;
    assert_eq!(r["summary"]["states"], states([0, 2, 1, 1, 1, 1, 1, 1, 2]));
    assert_fields(
        row(&r["systems"], "system", "s-ontime"),
        &json!({"excepted": 1, "required": 2}),
    );
    assert_fields(
        row(&r["systems"], "system", "s-stale"),
        &json!({"excepted": 0, "unknown": 2}),
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn report_filters_narrow_systems_and_patches() {
    let srv = TestServer::start().await;
    fleet(&srv).await;

    let r = report(&srv, &[("tag", "env=prod")]).await;
    assert_eq!(r["filter"]["tags"], json!(["env=prod"]));
    assert_eq!(r["summary"]["systems"], 2);
    assert_eq!(r["summary"]["pairs_required"], 4);
    assert_eq!(r["summary"]["states"], states([1, 0, 1, 0, 0, 0, 0, 0, 2]));
    let ids: Vec<&str> = r["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["system"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s-ontime", "s-stale"]);

    let r = report(&srv, &[("tag", "env=prod,role=web")]).await;
    assert_eq!(r["summary"]["systems"], 0, "every tag must match");
    assert_eq!(r["summary"]["pairs_required"], 0);
    assert_eq!(r["summary"]["coverage_pct"], Value::Null);

    let r = report(&srv, &[("severity", "high")]).await;
    assert_eq!(r["filter"]["severities"], json!(["high"]));
    assert_eq!(r["summary"]["patches"], 1);
    assert_eq!(r["summary"]["pairs_required"], 2);
    assert_eq!(r["patches"][0]["patch_id"], "P-PROD");
    assert_eq!(r["overdue"], json!([]));

    let r = report(&srv, &[("severity", "critical,high")]).await;
    assert_eq!(r["summary"]["pairs_required"], 10);
    let r = report(&srv, &[("severity", "low")]).await;
    assert_eq!(r["summary"]["patches"], 0);
    assert_eq!(r["summary"]["pairs_required"], 0);

    let r = report(&srv, &[("system", "s-failed")]).await;
    assert_eq!(r["filter"]["system"], "s-failed");
    assert_eq!(r["summary"]["systems"], 1);
    assert_eq!(r["summary"]["pairs_required"], 1);
    assert_eq!(r["summary"]["states"], states([0, 0, 0, 0, 1, 0, 0, 0, 0]));
    assert_eq!(r["failures"][0]["detail"], "exit 100: dpkg lock held");

    let r = report(&srv, &[("patch_id", "P-PROD")]).await;
    assert_eq!(r["filter"]["patch_id"], "P-PROD");
    assert_eq!(r["summary"]["patches"], 1);
    assert_eq!(r["summary"]["pairs_required"], 2);
    assert_eq!(r["summary"]["systems"], 8, "systems are not narrowed");

    let r = report(
        &srv,
        &[
            ("tag", "env=dev"),
            ("severity", "critical"),
            ("patch_id", "P-CRIT"),
        ],
    )
    .await;
    assert_eq!(r["summary"]["systems"], 6);
    assert_eq!(r["summary"]["pairs_required"], 6);
    assert_eq!(r["summary"]["states"], states([0, 1, 0, 1, 1, 1, 1, 1, 0]));

    for (q, field, code) in [
        (vec![("tag", "prod")], "tag", "format"),
        (vec![("severity", "urgent")], "severity", "format"),
        (vec![("format", "pdf")], "format", "format"),
        (vec![("as_of", "yesterday")], "as_of", "format"),
        (vec![("colour", "red")], "colour", "unknown_field"),
        (
            vec![("system", "a"), ("system", "b")],
            "system",
            "duplicate_field",
        ),
    ] {
        let r = srv.get_query(REPORT, &q).await;
        assert_eq!(r.param_errors(), vec![fe(field, code)], "{q:?}");
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn report_renders_as_csv_and_html() {
    let srv = TestServer::start().await;
    fleet(&srv).await;

    // The pairs that need attention: 4 overdue rows, then 1 failure row.
    let r = srv.get_query(REPORT, &[("format", "csv")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.content_type.starts_with("text/csv"), "{}", r.content_type);
    let mut rd = csv::Reader::from_reader(r.body.as_slice());
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, PAIRS_CSV_COLUMNS);
    let col = |name: &str| PAIRS_CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (&r[col("kind")], &r[col("system")], &r[col("state")]))
        .collect();
    assert_eq!(
        got,
        [
            ("overdue", "s-failed", "failed"),
            ("overdue", "s-overdue", "overdue"),
            ("overdue", "s-rolled", "rolled_back"),
            ("overdue", "s-stale", "unknown"),
            ("failure", "s-failed", "failed"),
        ]
    );
    assert_eq!(&rows[4][col("detail")], "exit 100: dpkg lock held");
    assert_eq!(&rows[4][col("attempts")], "2");
    assert_eq!(
        &rows[1][col("first_attempt_at")],
        "",
        "null is an empty cell"
    );
    let accept = srv.get_accept(REPORT, &[], "text/csv").await;
    assert_eq!(accept.status, 200);
    assert!(accept.content_type.starts_with("text/csv"));
    assert_eq!(accept.body, r.body);

    let r = srv.get_query(REPORT, &[("format", "systems-csv")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.content_type.starts_with("text/csv"), "{}", r.content_type);
    let mut rd = csv::Reader::from_reader(r.body.as_slice());
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, SYSTEMS_CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 8);
    let stale = rows.iter().find(|r| &r[0] == "s-stale").unwrap();
    assert_eq!(
        stale.iter().collect::<Vec<_>>(),
        // No inventory: empty inventory_at and unaccounted cells.
        ["s-stale", "env=prod", "", "true", "2", "0", "1", "0", "0", "2", "0", "", ""]
    );

    let r = srv.get_query(REPORT, &[("format", "patches-csv")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut rd = csv::Reader::from_reader(r.body.as_slice());
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, PATCHES_CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    let ids: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(ids, ["P-CRIT", "P-PROD"]);
    assert_eq!(&rows[0][4], "8", "required");
    assert_eq!(&rows[0][5], "2", "applied");

    for r in [
        srv.get_query(REPORT, &[("format", "html")]).await,
        srv.get_accept(REPORT, &[], "text/html").await,
        srv.get_accept(
            REPORT,
            &[],
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .await,
    ] {
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.content_type.starts_with("text/html"),
            "{}",
            r.content_type
        );
        let page = r.text();
        assert!(page.contains("<svg"), "a chart is drawn");
        assert!(page.contains("s-failed") && page.contains("P-CRIT"));
        assert!(page.contains("exit 100: dpkg lock held"));
    }
    // format= wins over Accept.
    let r = srv
        .get_accept(REPORT, &[("format", "json")], "text/html")
        .await;
    assert!(r.content_type.starts_with("application/json"));
    assert_eq!(r.json()["summary"]["pairs_required"], 10);
    srv.shutdown().await;
}

/// A client that prefers JSON and would take HTML or CSV only as a last
/// resort must get JSON, as the event listings already negotiate.
#[tokio::test]
async fn report_accept_header_honours_q_values() {
    let srv = TestServer::start().await;
    for accept in [
        "application/json, text/html;q=0.1",
        "application/json, text/csv;q=0.1",
        "text/html;q=0, application/json",
    ] {
        let r = srv.get_accept(REPORT, &[], accept).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.content_type.starts_with("application/json"),
            "Accept {accept:?} gave {}",
            r.content_type
        );
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn report_as_of_is_reproducible_across_later_writes() {
    let srv = TestServer::start().await;
    let f = fleet(&srv).await;
    let now_report = report(&srv, &[]).await;

    tick().await;
    let t = Timestamp::now();
    tick().await;
    let first = srv.get_query(REPORT, &[("as_of", rfc(t).as_str())]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let a = first.json();
    assert_eq!(a["as_of"], true);
    assert_eq!(a["at"], rfc(t), "at is the instant asked for");
    assert_eq!(a["checkpoint"]["size"], 9);
    // The same pairs as the live report just before: the as-of path folds
    // the events again, and must agree with the facts kept on ingest.
    for k in ["summary", "overdue", "failures", "systems", "patches"] {
        assert_eq!(a[k], now_report[k], "{k}");
    }

    // Later writes of every kind.
    ok(post(
        &srv,
        &format!("/v1/exceptions/{}/revoke", f.exception),
        &json!(null),
        None,
    )
    .await);
    let x = post(
        &srv,
        "/v1/exceptions",
        &exception("P-PROD", ("tag", "env=prod"), ahead(f.now, 30)),
        None,
    )
    .await;
    assert_eq!(x.status, 201, "{}", x.text());
    srv.ingest(&[
        ev("P-CRIT", "s-overdue", ago(f.now, 0), "success"),
        ev("P-CRIT", "s-new", ago(f.now, 0), "success"),
    ])
    .await;
    set_tags(&srv, "s-stale", &["env=prod", "role=db"]).await;
    set_tags(&srv, "s-newtag", &["env=prod"]).await;
    ok(put(
        &srv,
        "/v1/catalog/P-PROD",
        &json!({"title": "Prod-only fix, v2", "severity": "medium",
                "released_at": rfc(ago(f.now, 5)), "applies_to": {"tags": ["env=prod"]}}),
        None,
    )
    .await);
    ok(put(
        &srv,
        "/v1/catalog/P-NEW",
        &json!({"severity": "low", "released_at": rfc(ago(f.now, 1))}),
        None,
    )
    .await);
    let mut p = default_policy();
    p["stale_after_days"] = json!(30);
    p["default"]["critical"] = json!(60);
    ok(put(&srv, "/v1/policy", &p, None).await);

    // The live report sees them...
    let live = report(&srv, &[]).await;
    assert_eq!(live["checkpoint"]["size"], 11);
    assert_eq!(live["summary"]["systems"], 10);
    assert_eq!(live["summary"]["patches"], 3);
    assert_eq!(live["patches"][0]["severity"], "critical");
    assert_eq!(
        row(&live["patches"], "patch_id", "P-PROD")["title"],
        "Prod-only fix, v2"
    );

    // ...the report as of T does not: byte for byte the same answer.
    let second = srv.get_query(REPORT, &[("as_of", rfc(t).as_str())]).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(
        second.text(),
        first.text(),
        "a report as of an instant must not change when the ledger grows"
    );
    srv.shutdown().await;
}

/// Every required pair, with its first attempt, first success, attempts
/// and time to patch, is listed on request: `pairs=true` in JSON, or
/// `format=pairs-csv`.
#[tokio::test]
async fn every_required_pair_is_listed_on_request() {
    let srv = TestServer::start().await;
    fleet(&srv).await;
    let plain = report(&srv, &[]).await;
    assert!(plain.get("pairs").is_none(), "not listed unless asked");
    let all = report(&srv, &[("pairs", "true")]).await;
    let pairs = all["pairs"].as_array().unwrap();
    assert_eq!(
        pairs.len() as u64,
        all["summary"]["pairs_required"].as_u64().unwrap()
    );
    let failed = pairs
        .iter()
        .find(|p| p["system"] == "s-failed")
        .expect("the failed pair is listed");
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["attempts"], 2);
    assert!(failed["first_attempt_at"].is_string());

    let r = srv.get_query(REPORT, &[("format", "pairs-csv")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut rd = csv::Reader::from_reader(r.body.as_slice());
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), pairs.len());
    assert!(rows.iter().all(|row| &row[0] == "pair"));

    let r = srv.get_query(REPORT, &[("pairs", "yes")]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("pairs"), "{}", r.text());
}

/// A report as of a future instant would change as events arrive, so it is
/// refused; a bulk write over max_batch entries is refused whole.
#[tokio::test]
async fn future_as_of_and_oversized_bulk_writes_are_refused() {
    let srv = TestServer::start().await;
    let future = rfc(ahead(Timestamp::now(), 1));
    let r = srv.get_query(REPORT, &[("as_of", future.as_str())]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("as_of"), "{}", r.text());
    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({"id": format!("KB{i}"), "severity": "low", "released_at": "2024-01-01T00:00:00Z"}))
        .collect();
    let r = post(&srv, "/v1/catalog", &json!(many), None).await;
    assert_eq!(r.status, 413, "{}", r.text());
    let page = ok(srv.get("/v1/catalog").await);
    assert_eq!(
        page["entries"].as_array().unwrap().len(),
        0,
        "nothing was written"
    );
}

/// Serde would take a document, or an object inside one, as a JSON array
/// of its fields in order; the API documents objects and reads only
/// objects, so each such array is a 400 and nothing is written.
#[tokio::test]
async fn documents_and_the_objects_in_them_must_be_json_objects() {
    let srv = TestServer::start().await;
    let entry = json!({"severity": "high", "released_at": "2024-01-01T00:00:00Z"});
    let with = |field: &str, value: Value| {
        let mut e = entry.clone();
        e[field] = value;
        e
    };
    let not_objects = [
        (
            "/v1/catalog/KB1",
            json!(["KB1", "t", "high", "2024-01-01T00:00:00Z"]),
        ),
        ("/v1/catalog/KB1", with("applies_to", json!([null, null]))),
        (
            "/v1/catalog/KB1",
            with("packages", json!([["Debian:12", "openssl", null]])),
        ),
        ("/v1/systems/web-01/tags", json!([["env=prod"]])),
        (
            "/v1/policy",
            json!({"default": [1, 2, 3, 4], "stale_after_days": 30}),
        ),
        (
            "/v1/policy",
            json!({"default": {}, "scoped": [["env=prod", {}]], "stale_after_days": 30}),
        ),
        (
            "/v1/policy",
            json!({"default": {}, "scoped": [{"tag": "env=prod", "days": [1, 2, 3, 4]}], "stale_after_days": 30}),
        ),
    ];
    for (path, body) in not_objects {
        let r = put(&srv, path, &body, None).await;
        let p = r.problem(400, "malformed-body");
        assert!(
            p["detail"].as_str().unwrap().contains("a JSON object"),
            "{path} {body}: {p}"
        );
    }
    for (path, body) in [
        (
            "/v1/catalog",
            json!([["KB1", "t", "high", "2024-01-01T00:00:00Z"]]),
        ),
        (
            "/v1/exceptions",
            json!(["KB1", "web-01", null, "r", "a", "2999-01-01T00:00:00Z"]),
        ),
    ] {
        let r = post(&srv, path, &body, None).await;
        r.problem(400, "malformed-body");
    }
    assert_eq!(ok(srv.get("/v1/catalog").await)["entries"], json!([]));
    assert_eq!(
        ok(srv.get("/v1/systems/web-01/tags").await)["tags"],
        json!([])
    );
    assert_eq!(ok(srv.get("/v1/exceptions").await)["exceptions"], json!([]));
    assert!(ok(srv.get("/v1/policy").await).get("revision").is_none());

    // The same documents as objects are accepted.
    let r = put(
        &srv,
        "/v1/catalog/KB1",
        &with("applies_to", json!({"systems": ["web-01"]})),
        None,
    )
    .await;
    assert_eq!(ok(r)["applies_to"], json!({"systems": ["web-01"]}));
    let policy = json!({"default": {"critical": 7}, "scoped": [{"tag": "env=prod", "days": {"critical": 1}}], "stale_after_days": 30});
    ok(put(&srv, "/v1/policy", &policy, None).await);
}

/// An answer that shows a document with its revision matches the schema
/// the OpenAPI document gives it: an object whose properties name every
/// field the answer has, `revision` included, and whose required fields
/// the answer has. (Derived, it was an `allOf` with the input document's
/// schema, which forbids unknown fields and so refused every `revision`.)
#[tokio::test]
async fn answers_with_a_revision_match_their_documented_schemas() {
    let srv = TestServer::start().await;
    let doc = srv.get("/v1/openapi.json").await.json();
    let catalog = ok(put(&srv, "/v1/catalog/KB1", &full_entry(), None).await);
    let policy = ok(put(
        &srv,
        "/v1/policy",
        &json!({"default": {"critical": 7}, "stale_after_days": 30}),
        None,
    )
    .await);
    for (name, answer) in [("CatalogOut", catalog), ("PolicyOut", policy)] {
        assert!(answer["revision"].is_object(), "{answer}");
        let schema = &doc["components"]["schemas"][name];
        assert_eq!(schema["type"], "object", "{name}: {schema}");
        let properties = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has no properties: {schema}"));
        for key in answer.as_object().unwrap().keys() {
            assert!(
                properties.contains_key(key),
                "{name} does not document {key:?}: {schema}"
            );
        }
        for key in schema["required"].as_array().into_iter().flatten() {
            assert!(answer.get(key.as_str().unwrap()).is_some(), "{name} {key}");
        }
        assert_eq!(
            properties["revision"]["$ref"], "#/components/schemas/RevisionOut",
            "{name}"
        );
    }
}
