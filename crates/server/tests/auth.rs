//! Authentication, authorisation and limits, end to end over HTTP.
//!
//! The route matrix walks every operation of the served OpenAPI document,
//! so a route added later cannot escape it.

mod common;

use common::{client_with, event, make_limited_token, make_token, Resp, TestServer};
use patchaudit_server::ServerConfig;
use serde_json::{json, Value};
use std::time::Duration;

/// Sends `method path` with an optional Authorization header value and a
/// JSON body for writes, and returns the answer (never a 5xx).
async fn call(srv: &TestServer, method: &str, path: &str, auth: Option<&str>) -> Resp {
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut req = srv.bare.request(m.clone(), srv.url(path));
    if let Some(a) = auth {
        req = req.header(reqwest::header::AUTHORIZATION, a);
    }
    if m == reqwest::Method::POST || m == reqwest::Method::PUT || m == reqwest::Method::PATCH {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body("{}");
    }
    srv.send(req).await
}

/// The scope an operation requires according to the document, or `None`
/// for an open one.
fn required_scope(op: &Value) -> Option<String> {
    let security = op["security"]
        .as_array()
        .expect("every operation declares its security");
    security
        .iter()
        .find_map(|r| r["bearer"].as_array())
        .and_then(|scopes| scopes.first())
        .and_then(|s| s.as_str())
        .map(str::to_owned)
}

#[tokio::test]
async fn every_route_refuses_missing_malformed_revoked_and_wrong_scope_tokens() {
    let srv = TestServer::start().await;
    let doc = srv.get("/v1/openapi.json").await.json();
    let tokens = [
        (
            "ingest",
            make_token(&srv.store, "only-ingest", &["ingest"]).await,
        ),
        ("read", make_token(&srv.store, "only-read", &["read"]).await),
        (
            "admin",
            make_token(&srv.store, "only-admin", &["admin"]).await,
        ),
    ];
    let revoked = make_token(&srv.store, "revoked", &["ingest", "read", "admin"]).await;
    let r = srv
        .send(
            srv.client
                .post(srv.url(&format!("/v1/tokens/{}/revoke", &revoked[3..19]))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let bearer = |t: &str| format!("Bearer {t}");

    let mut secured = 0;
    let mut open = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let concrete = path
                .replace("{seq}", "0")
                .replace("{system}", "web-01")
                .replace("{patch_id}", "KB1")
                .replace("{id}", "0123456789abcdef");
            let what = format!("{method} {path}");
            let Some(scope) = required_scope(op) else {
                open += 1;
                let r = call(&srv, method, &concrete, None).await;
                assert!(r.status != 401 && r.status != 403, "{what} is open: {r:?}");
                if method == "get" {
                    let r = call(&srv, "head", &concrete, None).await;
                    assert_eq!(r.status, 200, "HEAD {path} is open too");
                }
                continue;
            };
            secured += 1;
            // No token, a malformed one, an unknown one, a revoked one: 401.
            let unknown = format!("pa_0123456789abcdef_{}", "A".repeat(43));
            for (label, auth) in [
                ("no token", None),
                ("malformed", Some("Bearer not-a-token".to_owned())),
                ("wrong scheme", Some(format!("Basic {}", &tokens[0].1))),
                ("unknown", Some(bearer(&unknown))),
                ("revoked", Some(bearer(&revoked))),
            ] {
                let r = call(&srv, method, &concrete, auth.as_deref()).await;
                let p = r.problem(401, "unauthorized");
                assert!(!p["detail"].as_str().unwrap().is_empty(), "{what} {label}");
                if label == "revoked" {
                    assert!(
                        p["detail"].as_str().unwrap().contains("revoked"),
                        "{what}: {p}"
                    );
                }
            }
            // Every token without the scope: 403, naming the scope.
            for (has, token) in &tokens {
                let r = call(&srv, method, &concrete, Some(&bearer(token))).await;
                if *has == scope {
                    assert!(
                        r.status != 401 && r.status != 403,
                        "{what} with scope {scope}: {} {}",
                        r.status,
                        r.text()
                    );
                } else {
                    let p = r.problem(403, "forbidden");
                    assert!(
                        p["detail"]
                            .as_str()
                            .unwrap()
                            .contains(&format!("needs {scope}")),
                        "{what} with {has}: {p}"
                    );
                }
            }
            // HEAD is answered by the GET handler, and judged as a GET.
            if method == "get" {
                let r = call(&srv, "head", &concrete, None).await;
                assert_eq!(r.status, 401, "HEAD {path} without a token");
                let right = &tokens.iter().find(|(h, _)| *h == scope).unwrap().1;
                let r = call(&srv, "head", &concrete, Some(&bearer(right))).await;
                assert!(
                    r.status != 401 && r.status != 403,
                    "HEAD {path}: {}",
                    r.status
                );
            }
        }
    }
    assert!(secured >= 25, "only {secured} secured operations walked");
    assert_eq!(open, 2, "open operations: /healthz and /readyz");
    // The document itself is open: schema tools and auditors read it first.
    assert_eq!(
        call(&srv, "get", "/v1/openapi.json", None).await.status,
        200
    );
    // /metrics needs read unless it is configured public.
    call(&srv, "get", "/metrics", None)
        .await
        .problem(401, "unauthorized");
    let r = call(&srv, "get", "/metrics", Some(&bearer(&tokens[1].1))).await;
    assert_eq!(r.status, 200);
    srv.shutdown().await;

    let public = TestServer::with_config(ServerConfig {
        metrics_public: true,
        ..ServerConfig::default()
    })
    .await;
    assert_eq!(call(&public, "get", "/metrics", None).await.status, 200);
    public.shutdown().await;
}

#[tokio::test]
async fn tokens_are_created_shown_once_listed_without_secrets_and_revoked_at_once() {
    let srv = TestServer::start().await;
    let r = srv
        .post_json(
            "/v1/tokens",
            &json!({"name": "agent-web-01", "scopes": ["ingest", "read"], "systems": ["web-*"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(
        token.starts_with("pa_") && token.len() == 3 + 16 + 1 + 43,
        "{token}"
    );
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(&token[3..19], id);
    assert_eq!(created["scopes"], json!(["ingest", "read"]));
    assert_eq!(created["systems"], json!(["web-*"]));
    assert_eq!(created["principal"], format!("agent-web-01#{id}"));
    assert!(created["created_by"]
        .as_str()
        .unwrap()
        .starts_with("test-admin#"));

    // It works, and what it records carries its name.
    let agent = client_with(&token);
    let r = srv
        .send(agent.post(srv.url("/v1/events")).json(&event(
            "KB1",
            "web-01",
            "2024-05-01T12:00:00Z",
            "success",
        )))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let seq = r.json()["events"][0]["seq"].as_u64().unwrap();
    let e = srv.get(&format!("/v1/events/{seq}")).await.json();
    assert_eq!(e["recorded_by"], format!("agent-web-01#{id}"));

    // Listing and reading never show the secret or its hash.
    let secret = &token[20..];
    for path in ["/v1/tokens".to_owned(), format!("/v1/tokens/{id}")] {
        let r = srv.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(!r.text().contains(secret), "{path} shows the secret");
        assert!(!r.text().contains("sha256"), "{path} shows the hash");
    }
    let list = srv.get("/v1/tokens").await.json();
    assert!(list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id));

    // Revoked: refused from the very next request, and the revocation is
    // recorded with who did it and when.
    let r = srv
        .post_json(&format!("/v1/tokens/{id}/revoke"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.json();
    assert!(
        t["revoked_by"].as_str().unwrap().starts_with("test-admin#"),
        "{t}"
    );
    assert!(t["revoked_at"].is_string(), "{t}");
    let r = srv.send(agent.get(srv.url("/v1/events"))).await;
    let p = r.problem(401, "unauthorized");
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
    // Revoking again changes nothing.
    let again = srv
        .post_json(&format!("/v1/tokens/{id}/revoke"), &json!({}))
        .await
        .json();
    assert_eq!(again["revoked_at"], t["revoked_at"]);
    srv.post_json("/v1/tokens/ffffffffffffffff/revoke", &json!({}))
        .await
        .problem(404, "not-found");

    // Every rule of a token request is checked, all at once.
    let r = srv
        .post_json(
            "/v1/tokens",
            &json!({"name": "bad name", "scopes": ["write"], "systems": [""], "tags": ["noequals"]}),
        )
        .await;
    let p = r.problem(422, "invalid-document");
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "scopes", "systems[0]", "tags[0]"], "{p}");
    srv.post_json("/v1/tokens", &json!({"name": "x", "scopes": []}))
        .await
        .problem(422, "invalid-document");
    srv.post_json(
        "/v1/tokens",
        &json!({"name": "x", "scopes": ["read"], "admin": true}),
    )
    .await
    .problem(400, "malformed-body");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_token_limited_to_some_systems_cannot_write_others_and_nothing_is_recorded() {
    let srv = TestServer::start().await;
    // db-01 carries the tag the token may write; mail-01 matches nothing.
    let r = srv
        .send(
            srv.client
                .put(srv.url("/v1/systems/db-01/tags"))
                .json(&json!({"tags": ["env=prod"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token =
        make_limited_token(&srv.store, "agent", &["ingest"], &["web-*"], &["env=prod"]).await;
    let agent = client_with(&token);
    let at = "2024-05-01T12:00:00Z";
    let batch = json!([
        event("KB1", "web-01", at, "success"),
        event("KB1", "db-01", at, "success"),
        event("KB1", "mail-01", at, "success"),
        event("KB1", "web", at, "success"),
    ]);
    let r = srv
        .send(agent.post(srv.url("/v1/events")).json(&batch))
        .await;
    let p = r.problem(403, "forbidden");
    let errors = p["errors"].as_array().unwrap();
    let at_index: Vec<(u64, &str, &str)> = errors
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap(),
                e["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        at_index,
        [(2, "system", "forbidden"), (3, "system", "forbidden")],
        "{p}"
    );
    assert!(
        errors[0]["message"].as_str().unwrap().contains("mail-01"),
        "{p}"
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was recorded"),
        "{p}"
    );
    assert!(
        srv.all_events().await.is_empty(),
        "a refused batch writes nothing"
    );

    // The systems it may write are accepted, by pattern and by tag.
    let ok = json!([
        event("KB1", "web-01", at, "success"),
        event("KB1", "db-01", at, "success")
    ]);
    let r = srv.send(agent.post(srv.url("/v1/events")).json(&ok)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Untagging db-01 takes its right away at once.
    srv.send(
        srv.client
            .put(srv.url("/v1/systems/db-01/tags"))
            .json(&json!({"tags": []})),
    )
    .await;
    let again = json!([event("KB2", "db-01", at, "success")]);
    srv.send(agent.post(srv.url("/v1/events")).json(&again))
        .await
        .problem(403, "forbidden");
    // A batch naming many systems is judged by their tags all the same
    // (read in one go rather than one system at a time).
    for i in 0..20 {
        let r = srv
            .send(
                srv.client
                    .put(srv.url(&format!("/v1/systems/fleet-{i:02}/tags")))
                    .json(&json!({"tags": ["env=prod"]})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let many: Vec<Value> = (0..21)
        .map(|i| event("KB3", &format!("fleet-{i:02}"), at, "success"))
        .collect();
    let r = srv
        .send(agent.post(srv.url("/v1/events")).json(&many))
        .await;
    let p = r.problem(403, "forbidden");
    let refused: Vec<u64> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(refused, [20], "only the untagged fleet-20: {p}");
    let r = srv
        .send(agent.post(srv.url("/v1/events")).json(&many[..20]))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // An unrestricted ingest token writes any system.
    let any = client_with(&make_token(&srv.store, "any", &["ingest"]).await);
    let r = srv.send(any.post(srv.url("/v1/events")).json(&again)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    srv.shutdown().await;
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let srv = TestServer::with_config(ServerConfig {
        rate_limit_per_second: 1,
        rate_limit_burst: 3,
        ..ServerConfig::default()
    })
    .await;
    let a = client_with(&make_token(&srv.store, "a", &["read"]).await);
    let b = client_with(&make_token(&srv.store, "b", &["read"]).await);
    for _ in 0..3 {
        let r = srv.send(a.get(srv.url("/v1/systems"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let resp = a.get(srv.url("/v1/systems")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["type"], "urn:patchaudit:problem:rate-limited");
    // Another token has its own bucket; open routes are not limited.
    assert_eq!(srv.send(b.get(srv.url("/v1/systems"))).await.status, 200);
    assert_eq!(srv.send(a.get(srv.url("/healthz"))).await.status, 200);
    // After Retry-After, the token is served again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(srv.send(a.get(srv.url("/v1/systems"))).await.status, 200);
    srv.shutdown().await;
}

/// A request body that sends `first`, then waits for `release` before ending.
fn held_body(first: &'static str) -> (reqwest::Body, tokio::sync::oneshot::Sender<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stream =
        futures::stream::once(async move { Ok::<_, std::io::Error>(first.as_bytes().to_vec()) })
            .chain(futures::stream::once(async move {
                let _ = rx.await;
                Ok::<_, std::io::Error>(b"]".to_vec())
            }));
    (reqwest::Body::wrap_stream(stream), tx)
}

use futures::StreamExt;

#[tokio::test]
async fn requests_past_the_concurrency_cap_get_503_busy() {
    let srv = TestServer::with_config(ServerConfig {
        max_concurrent_requests: 1,
        rate_limit_per_second: 0,
        ..ServerConfig::default()
    })
    .await;
    let (body, release) = held_body("[");
    let slow = {
        let req = srv
            .client
            .post(srv.url("/v1/events"))
            .header("content-type", "application/json")
            .body(body);
        tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
    };
    // Wait until the slow request holds the one permit.
    let mut busy = None;
    for _ in 0..100 {
        let resp = srv.client.get(srv.url("/v1/systems")).send().await.unwrap();
        if resp.status() == 503 {
            busy = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy = busy.expect("a second request while one is in flight must be refused");
    assert_eq!(busy.headers()["retry-after"], "1");
    let p: Value = busy.json().await.unwrap();
    assert_eq!(p["type"], "urn:patchaudit:problem:busy");
    assert!(
        p["detail"].as_str().unwrap().contains("1 concurrent"),
        "{p}"
    );
    // Probes are not counted: a busy server is not a dead one.
    assert_eq!(srv.get("/healthz").await.status, 200);
    release.send(()).unwrap();
    // The held request completes normally ("[]" is an empty batch: 200).
    let status = slow.await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        srv.get("/healthz").await.status,
        200,
        "the permit is returned"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_body_slower_than_the_body_timeout_gets_408_and_writes_nothing() {
    let srv = TestServer::with_config(ServerConfig {
        body_timeout: Duration::from_millis(300),
        rate_limit_per_second: 0,
        ..ServerConfig::default()
    })
    .await;
    let (body, _release) = held_body(
        r#"[{"patch_id":"KB1","system":"s","applied_at":"2024-05-01T12:00:00Z","status":"success"}"#,
    );
    let started = std::time::Instant::now();
    let resp = srv
        .client
        .post(srv.url("/v1/events"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 408);
    assert!(started.elapsed() >= Duration::from_millis(250));
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["type"], "urn:patchaudit:problem:request-timeout");
    assert!(srv.all_events().await.is_empty());
    srv.shutdown().await;
}

/// A writer the test's log subscriber appends to.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread, so the server's tasks log through this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn no_token_or_secret_appears_in_the_logs_at_any_level() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let srv = TestServer::start().await;
    let mut secrets = vec![srv.token.clone()];
    // A token made through the API: its secret is in the response only.
    let created = srv
        .post_json("/v1/tokens", &json!({"name": "logged", "scopes": ["read"]}))
        .await
        .json();
    let token = created["token"].as_str().unwrap().to_owned();
    secrets.push(token.clone());
    let reader = client_with(&token);
    assert_eq!(
        srv.send(reader.get(srv.url("/v1/systems"))).await.status,
        200
    );
    // Wrong and malformed tokens are refused without echoing them.
    let wrong = format!("{}{}", &token[..20], "B".repeat(43));
    secrets.push(wrong.clone());
    let malformed = "pa_secret-looking-garbage-value-123456";
    secrets.push(malformed.to_owned());
    for t in [wrong.as_str(), malformed] {
        let r = srv
            .send(srv.bare.get(srv.url("/v1/systems")).bearer_auth(t))
            .await;
        assert_eq!(r.status, 401);
        assert!(!r.text().contains(t), "the answer echoes the token");
    }
    // Revoking and a 500-free error path (an unknown route) log too.
    srv.post_json(&format!("/v1/tokens/{}/revoke", &token[3..19]), &json!({}))
        .await;
    srv.get("/v1/nowhere").await;
    srv.shutdown().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("token created"),
        "the logs were captured: {text}"
    );
    assert!(text.contains("token revoked"), "{text}");
    for s in &secrets {
        let secret_part = s.get(20..).unwrap_or(s);
        assert!(
            !text.contains(secret_part),
            "a secret reached the logs:\n{text}"
        );
    }
}

#[tokio::test]
async fn the_changes_trail_says_who_changed_what_and_when_in_order() {
    let srv = TestServer::start().await;
    let alice = client_with(&make_token(&srv.store, "alice", &["admin"]).await);
    let put = |c: &reqwest::Client, path: &str, body: Value| c.put(srv.url(path)).json(&body);
    let r = srv
        .send(put(
            &alice,
            "/v1/catalog/KB1",
            json!({"severity": "high", "released_at": "2024-01-01T00:00:00Z"}),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = srv
        .send(put(
            &alice,
            "/v1/systems/web-01/tags",
            json!({"tags": ["env=prod"]}),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let created = srv
        .send(
            alice
                .post(srv.url("/v1/tokens"))
                .json(&json!({"name": "agent", "scopes": ["ingest"]})),
        )
        .await
        .json();
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["token"].as_str().unwrap()[20..].to_owned();
    srv.send(alice.post(srv.url(&format!("/v1/tokens/{id}/revoke"))))
        .await;
    let r = srv.send(alice.delete(srv.url("/v1/catalog/KB1"))).await;
    assert_eq!(r.status, 204, "{}", r.text());

    let page = srv.get("/v1/changes").await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(!page.text().contains(&secret) && !page.text().contains("sha256"));
    let page = page.json();
    // The server's own token came first (made on the store, as local:test).
    let seen: Vec<(String, String, String, String)> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let by = c["changed_by"].as_str().unwrap();
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["id"].as_str().unwrap().to_owned(),
                c["action"].as_str().unwrap().to_owned(),
                by.split('#').next().unwrap().to_owned(),
            )
        })
        .collect();
    let s = |a: &str, b: &str, c: &str, d: &str| {
        (a.to_owned(), b.to_owned(), c.to_owned(), d.to_owned())
    };
    assert_eq!(
        seen[seen.len() - 5..],
        [
            s("catalog", "KB1", "written", "alice"),
            s("system", "web-01", "written", "alice"),
            s("token", &id, "created", "alice"),
            s("token", &id, "revoked", "alice"),
            s("catalog", "KB1", "deleted", "alice"),
        ],
        "{page}"
    );
    assert!(page.get("next_after").is_none(), "{page}");

    // Paged, and filtered by kind.
    let first = srv.get_query("/v1/changes", &[("limit", "2")]).await.json();
    assert_eq!(first["changes"].as_array().unwrap().len(), 2);
    let after = first["next_after"].as_u64().unwrap().to_string();
    let rest = srv
        .get_query("/v1/changes", &[("after", &after)])
        .await
        .json();
    assert_eq!(
        first["changes"].as_array().unwrap().len() + rest["changes"].as_array().unwrap().len(),
        seen.len()
    );
    let tokens = srv
        .get_query("/v1/changes", &[("kind", "token"), ("limit", "1")])
        .await
        .json();
    assert_eq!(tokens["changes"][0]["kind"], "token");
    assert!(tokens["next_after"].is_u64(), "{tokens}");
    for (k, v) in [
        ("kind", "users"),
        ("limit", "0"),
        ("limit", "1001"),
        ("after", "-1"),
        ("since", "1"),
    ] {
        let r = srv.get_query("/v1/changes", &[(k, v)]).await;
        let errors = r.param_errors();
        assert_eq!(errors.len(), 1, "{k}={v}: {errors:?}");
        assert_eq!(errors[0].0, k, "{k}={v}");
    }
    // A read token sees the trail without the token rows, which need
    // admin; an ingest token does not see it at all.
    let reader = client_with(&make_token(&srv.store, "auditor", &["read"]).await);
    let r = srv.send(reader.get(srv.url("/v1/changes"))).await;
    assert_eq!(r.status, 200);
    let kinds: Vec<String> = r.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !kinds.is_empty() && !kinds.iter().any(|k| k == "token"),
        "{kinds:?}"
    );
    srv.send(reader.get(srv.url("/v1/changes?kind=token")))
        .await
        .problem(403, "forbidden");
    let ingester = client_with(&make_token(&srv.store, "agent-2", &["ingest"]).await);
    srv.send(ingester.get(srv.url("/v1/changes")))
        .await
        .problem(403, "forbidden");
    srv.shutdown().await;
}
