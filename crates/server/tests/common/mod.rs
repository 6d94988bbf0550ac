//! A real server on a loopback port over a fresh SQLite ledger, and a small
//! client around reqwest that refuses to see a 5xx.
//!
//! Every server has an `ingest,read,admin` token made on its store before
//! it starts (as `patchaudit token create` does on a fresh database), and
//! the client sends it with every request; tests of authentication itself
//! use [`TestServer::bare`], a client without it.

#![allow(dead_code)]

use patchaudit_server::{run, AppState, ServerConfig};
use patchaudit_store::{SqliteOptions, SqliteStore};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server; call [`TestServer::shutdown`] at the end of a test.
pub struct TestServer {
    pub base: String,
    /// Sends the all-scopes token with every request.
    pub client: reqwest::Client,
    /// Sends no token.
    pub bare: reqwest::Client,
    /// The all-scopes token.
    pub token: String,
    /// The ledger, for tests that make tokens of their own.
    pub store: Arc<dyn patchaudit_store::Store>,
    /// The server's state, for tests that drive the stream directly.
    pub state: AppState,
    /// The stream's tasks, when the server was started with a stream.
    stream: Option<patchaudit_server::stream::Running>,
    shutdown: oneshot::Sender<()>,
    handle: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// A fully read response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }

    /// Asserts an RFC 9457 problem of the given status and kind, and returns it.
    pub fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        assert_eq!(
            self.content_type,
            "application/problem+json",
            "a problem must be served as application/problem+json; body: {}",
            self.text()
        );
        let p = self.json();
        assert_eq!(
            p["type"],
            format!("urn:patchaudit:problem:{kind}"),
            "problem: {p}"
        );
        assert_eq!(p["status"], status, "problem: {p}");
        assert!(
            p["title"].as_str().is_some_and(|t| !t.is_empty()),
            "problem: {p}"
        );
        assert!(
            p["detail"].as_str().is_some_and(|t| !t.is_empty()),
            "problem: {p}"
        );
        p
    }

    /// The `(field, code)` pairs of a bad-parameters problem.
    pub fn param_errors(&self) -> Vec<(String, String)> {
        let p = self.problem(400, "bad-parameters");
        p["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors in {p}"))
            .iter()
            .map(|e| {
                assert!(
                    e.get("index").is_none(),
                    "parameter errors have no index: {e}"
                );
                (
                    e["field"].as_str().unwrap().to_owned(),
                    e["code"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

impl TestServer {
    /// A server with the default limits, but no rate limit: a test may
    /// send requests faster than any client should.
    pub async fn start() -> Self {
        Self::with_config(ServerConfig {
            rate_limit_per_second: 0,
            ..ServerConfig::default()
        })
        .await
    }

    pub async fn with_config(config: ServerConfig) -> Self {
        Self::with_stream(config, None).await
    }

    /// A server that also runs the stream of `stream` (its sinks, alert
    /// rules and consumers), stopped at [`TestServer::shutdown`].
    pub async fn with_stream(
        config: ServerConfig,
        stream: Option<patchaudit_server::stream::StreamConfig>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(
            dir.path().join("ledger.db"),
            SqliteOptions {
                signer: Some(patchaudit_store::conformance::test_signer()),
                ..SqliteOptions::default()
            },
        )
        .expect("open the SQLite ledger");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let store: Arc<dyn patchaudit_store::Store> = Arc::new(store);
        let token = make_token(&store, "test-admin", &["ingest", "read", "admin"]).await;
        let mut state = AppState::new(store.clone(), config);
        let mut running = None;
        if let Some(sc) = &stream {
            state = state.with_webhooks(sc);
            running = Some(
                patchaudit_server::stream::start_for(&state, sc)
                    .await
                    .expect("start the stream"),
            );
        }
        let handle = tokio::spawn(run(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            client: client_with(&token),
            bare: reqwest::Client::new(),
            token,
            store,
            state,
            stream: running,
            shutdown: tx,
            handle,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request, reads the whole answer, and fails the test on any 5xx.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.expect("the request must get an answer");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        // A live feed (Server-Sent Events) never ends: its headers are the
        // answer, and tests that read its events do so themselves.
        let body = if content_type.starts_with("text/event-stream") {
            Vec::new()
        } else {
            resp.bytes().await.expect("read the body").to_vec()
        };
        let r = Resp {
            status,
            content_type,
            body,
        };
        assert!(
            r.status < 500,
            "the server answered {}: {}",
            r.status,
            r.text()
        );
        r
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn get_query(&self, path: &str, query: &[(&str, &str)]) -> Resp {
        self.send(self.client.get(self.url(path)).query(query))
            .await
    }

    pub async fn get_accept(&self, path: &str, query: &[(&str, &str)], accept: &str) -> Resp {
        self.send(
            self.client
                .get(self.url(path))
                .query(query)
                .header(reqwest::header::ACCEPT, accept),
        )
        .await
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        self.send(
            self.client
                .post(self.url(path))
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.post(path, "application/json", serde_json::to_vec(body).unwrap())
            .await
    }

    /// Posts events that must all be created; returns their seqs.
    pub async fn ingest(&self, events: &[Value]) -> Vec<u64> {
        let r = self
            .post_json("/v1/events", &Value::Array(events.to_vec()))
            .await;
        assert_eq!(r.status, 201, "ingest failed: {}", r.text());
        let body = r.json();
        assert_eq!(body["created"], events.len(), "{body}");
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    }

    /// Every event in the ledger, streamed as NDJSON.
    pub async fn all_events(&self) -> Vec<Value> {
        let r = self.get_query("/v1/events", &[("format", "ndjson")]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        ndjson(&r.body)
    }

    /// Stops the server and checks that it stopped cleanly.
    pub async fn shutdown(self) {
        let TestServer {
            client,
            bare,
            shutdown,
            handle,
            stream,
            _dir,
            ..
        } = self;
        if let Some(s) = stream {
            s.stop().await;
        }
        drop(client);
        drop(bare);
        shutdown.send(()).expect("the server is still running");
        let res = tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("the server must stop after the shutdown signal")
            .expect("the server task must not panic");
        res.expect("the server must stop without an I/O error");
    }
}

/// Makes a token directly on the store, as the CLI does locally; returns
/// the bearer token.
pub async fn make_token(
    store: &Arc<dyn patchaudit_store::Store>,
    name: &str,
    scopes: &[&str],
) -> String {
    make_limited_token(store, name, scopes, &[], &[]).await
}

/// Makes a token limited to systems matching `systems` or tagged `tags`.
pub async fn make_limited_token(
    store: &Arc<dyn patchaudit_store::Store>,
    name: &str,
    scopes: &[&str],
    systems: &[&str],
    tags: &[&str],
) -> String {
    let input = patchaudit_server::auth::TokenIn {
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        systems: systems.iter().map(|s| s.to_string()).collect(),
        tags: tags.iter().map(|s| s.to_string()).collect(),
    };
    let (_, bearer) = patchaudit_server::auth::create_token(store.as_ref(), input, "local:test")
        .await
        .expect("create a token");
    bearer.reveal()
}

/// A client that sends `token` with every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    v.set_sensitive(true);
    h.insert(reqwest::header::AUTHORIZATION, v);
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .expect("build a client")
}

/// Parses an NDJSON body.
pub fn ndjson(body: &[u8]) -> Vec<Value> {
    std::str::from_utf8(body)
        .expect("NDJSON is UTF-8")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line {l:?}: {e}")))
        .collect()
}

/// The seqs of a list of events.
pub fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// A minimal valid event.
pub fn event(patch_id: &str, system: &str, applied_at: &str, status: &str) -> Value {
    serde_json::json!({
        "patch_id": patch_id,
        "system": system,
        "applied_at": applied_at,
        "status": status,
    })
}

/// `2024-01-01T<hour>:00:00Z`, as a client would write it.
pub fn at(hour: u32) -> String {
    format!("2024-01-01T{hour:02}:00:00Z")
}

/// [`at`] as the server writes it back.
pub fn at_out(hour: u32) -> String {
    format!("2024-01-01T{hour:02}:00:00.000000Z")
}

/// Asserts the server's timestamp shape: UTC with exactly six fractional digits.
pub fn assert_utc_micros(s: &str) {
    let b = s.as_bytes();
    let ok = b.len() == 27
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[26] == b'Z'
        && b[20..26].iter().all(u8::is_ascii_digit);
    assert!(ok, "{s:?} is not RFC 3339 UTC with microseconds");
}
