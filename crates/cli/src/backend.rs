//! Where client commands send their work: the local database, or a running
//! server's API. Both give the same answers; the commands cannot tell which
//! they are using.

use crate::exit::Failure;
use anyhow::{Context, Result};
use futures::StreamExt;
use patchaudit_domain::{EventFilter, NewEvent};
use patchaudit_server::wire::{self, EventOut};
use patchaudit_server::{IngestResponse, IngestedEvent, PatchOut, SystemOut, SystemPage};
use patchaudit_store::{Store, StoreError};
use std::sync::Arc;

/// A ledger to talk to.
pub enum Backend {
    /// The database itself.
    Local(Arc<dyn Store>),
    /// A server, through its HTTP API.
    Remote {
        /// The shared HTTP client.
        client: reqwest::Client,
        /// The server's base URL without a trailing slash.
        base: String,
    },
}

/// Turns a store error into a failure with the right exit code.
pub fn store_failure(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Conflict { .. } => Failure::conflict(e.to_string()).into(),
        StoreError::Unavailable(_) => Failure::unavailable(e.to_string()).into(),
        other => anyhow::Error::new(other),
    }
}

const PAGE: usize = 1_000;

/// Whether an http(s) URL names this host (a loopback address or
/// `localhost`), where a token in clear text does not cross a network.
fn loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Who events written straight to the database are recorded by: no token
/// is involved, so the operating-system user who ran the command, as the
/// system knows it (not `$USER`, which anyone can set); `$USER` only if the
/// system will not say.
pub fn local_principal() -> String {
    let user = whoami::username()
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    format!("local:{user}")
}

impl Backend {
    /// Connects to a server at `url`, sending the configured token and
    /// trusting the configured CA certificate besides the operating system's
    /// trust store and Mozilla's roots.
    pub fn remote(url: &str, config: &crate::config::Config) -> Result<Backend> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::usage(format!(
                "--server {url:?} is not an http:// or https:// URL"
            ))
            .into());
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("patchaudit/", env!("CARGO_PKG_VERSION")));
        if config.token.value.is_some() && base.starts_with("http://") && !loopback(&base) {
            tracing::warn!(
                server = %base,
                "sending the API token over plain HTTP to a host that is not this one; use https://"
            );
        }
        if let Some(token) = &config.token.value {
            let mut v =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| {
                        Failure::usage(format!(
                            "the token ({}) contains characters a header cannot carry",
                            config.token.source
                        ))
                    })?;
            // Marked sensitive so that reqwest and hyper never log it.
            v.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, v);
            builder = builder.default_headers(headers);
        }
        if let Some(path) = &config.ca_cert.value {
            let pem = std::fs::read(path).map_err(|e| {
                Failure::usage(format!(
                    "cannot read the CA certificate {} ({}): {e}",
                    path.display(),
                    config.ca_cert.source
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "{} ({}) holds no PEM certificate",
                        path.display(),
                        config.ca_cert.source
                    ))
                })?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build().context("building the HTTP client")?;
        Ok(Backend::Remote { client, base })
    }

    /// GETs `path` (such as `/v1/checkpoint`) from the server, as text.
    pub async fn get_text(&self, path: &str) -> Result<String> {
        self.get(path)
            .await?
            .text()
            .await
            .context("reading the server's answer")
    }

    /// GETs `path` from the server and reads the JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        json_or_problem(self.get(path).await?).await
    }

    /// GETs `path` from the server; a problem document is a failure.
    async fn get(&self, path: &str) -> Result<reqwest::Response> {
        let Backend::Remote { client, base } = self else {
            return Err(Failure::usage(format!(
                "{path} can only be asked of a server; pass --server"
            ))
            .into());
        };
        let resp = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .map_err(|e| unreachable(base, e))?;
        check(resp).await
    }

    /// Appends validated events as one all-or-nothing batch.
    pub async fn ingest(&self, events: Vec<NewEvent>) -> Result<IngestResponse> {
        match self {
            Backend::Local(store) => {
                let ids: Vec<_> = events
                    .iter()
                    .map(|e| e.event_id.as_ref().map(|i| i.as_str().to_owned()))
                    .collect();
                let out = store
                    .append(events, &local_principal())
                    .await
                    .map_err(store_failure)?;
                let created = out.iter().filter(|a| !a.duplicate).count();
                Ok(IngestResponse {
                    created,
                    duplicates: out.len() - created,
                    events: out
                        .into_iter()
                        .zip(ids)
                        .map(|(a, event_id)| IngestedEvent {
                            seq: a.seq,
                            event_id,
                            recorded_at: a.recorded_at.to_rfc3339(),
                            duplicate: a.duplicate,
                        })
                        .collect(),
                })
            }
            Backend::Remote { client, base } => {
                let mut body = Vec::new();
                wire::write_new_event_ndjson(&mut body, &events);
                let resp = client
                    .post(format!("{base}/v1/events"))
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| unreachable(base, e))?;
                json_or_problem(resp).await
            }
        }
    }

    /// Calls `each` for every event matching `filter`, up to `limit`, in seq order.
    pub async fn events(
        &self,
        filter: &EventFilter,
        limit: Option<usize>,
        mut each: impl FnMut(EventOut) -> Result<()>,
    ) -> Result<()> {
        let mut remaining = limit.unwrap_or(usize::MAX);
        match self {
            Backend::Local(store) => {
                let mut f = filter.clone();
                while remaining > 0 {
                    let page = store
                        .list(&f, remaining.min(PAGE))
                        .await
                        .map_err(store_failure)?;
                    let Some(last) = page.last().map(|e| e.seq) else {
                        break;
                    };
                    remaining -= page.len();
                    let short = page.len() < PAGE;
                    for e in &page {
                        each(EventOut::from(e))?;
                    }
                    if short {
                        break;
                    }
                    f = filter.after(last);
                }
                Ok(())
            }
            Backend::Remote { client, base } => {
                let mut q = filter_query(filter);
                q.push(("format", "ndjson".into()));
                if let Some(n) = limit {
                    q.push(("limit", n.to_string()));
                }
                let resp = client
                    .get(format!("{base}/v1/events"))
                    .query(&q)
                    .send()
                    .await
                    .map_err(|e| unreachable(base, e))?;
                let resp = check(resp).await?;
                let mut stream = resp.bytes_stream();
                let mut buf: Vec<u8> = Vec::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.context("reading the server's answer")?;
                    buf.extend_from_slice(&chunk);
                    while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=nl).collect();
                        let e: EventOut = serde_json::from_slice(&line)
                            .context("the server sent an event this client cannot read")?;
                        each(e)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Every system, ordered by id.
    pub async fn systems(&self) -> Result<Vec<SystemOut>> {
        let mut out = Vec::new();
        match self {
            Backend::Local(store) => {
                let mut after: Option<String> = None;
                loop {
                    let page = store
                        .systems(after.as_deref(), PAGE)
                        .await
                        .map_err(store_failure)?;
                    let done = page.len() < PAGE;
                    after = page.last().map(|s| s.system.clone());
                    out.extend(page.into_iter().map(SystemOut::from));
                    if done {
                        break;
                    }
                }
            }
            Backend::Remote { client, base } => {
                let mut cursor: Option<String> = None;
                loop {
                    let mut req = client
                        .get(format!("{base}/v1/systems"))
                        .query(&[("limit", PAGE)]);
                    if let Some(c) = &cursor {
                        req = req.query(&[("cursor", c)]);
                    }
                    let resp = req.send().await.map_err(|e| unreachable(base, e))?;
                    let page: SystemPage = json_or_problem(resp).await?;
                    out.extend(page.systems);
                    match page.next_cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
            }
        }
        Ok(out)
    }

    /// Where a patch stands; a not-found failure when the ledger never saw it.
    pub async fn patch(&self, patch_id: &str) -> Result<PatchOut> {
        match self {
            Backend::Local(store) => {
                let p = store.patch(patch_id).await.map_err(store_failure)?;
                if p.systems.is_empty() {
                    return Err(Failure::not_found(format!(
                        "the ledger has no event for patch {patch_id:?}"
                    ))
                    .into());
                }
                Ok(PatchOut::from(p))
            }
            Backend::Remote { client, base } => {
                let url = format!("{base}/v1/patches/{}", encode_segment(patch_id));
                let resp = client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| unreachable(base, e))?;
                json_or_problem(resp).await
            }
        }
    }
}

impl Backend {
    /// Sends a request to the server and reads the JSON answer. The server
    /// records changes under the token that makes them.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        json_or_problem(self.send(method, path, query, body).await?).await
    }

    /// Sends a request whose answer has no body.
    pub async fn call_empty(&self, method: reqwest::Method, path: &str) -> Result<()> {
        self.send(method, path, &[], None).await.map(drop)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response> {
        let Backend::Remote { client, base } = self else {
            return Err(Failure::usage(format!("{path} can only be asked of a server")).into());
        };
        let mut req = client.request(method, format!("{base}{path}")).query(query);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| unreachable(base, e))?;
        check(resp).await
    }
}

fn filter_query(f: &EventFilter) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(v) = &f.system {
        q.push(("system", v.clone()));
    }
    if let Some(v) = &f.patch_id {
        q.push(("patch_id", v.clone()));
    }
    if let Some(v) = f.status {
        q.push(("status", v.as_str().to_owned()));
    }
    if let Some(v) = &f.source {
        q.push(("source", v.clone()));
    }
    if let Some(v) = f.applied_from {
        q.push(("applied_from", v.to_rfc3339()));
    }
    if let Some(v) = f.applied_to {
        q.push(("applied_to", v.to_rfc3339()));
    }
    if let Some(v) = f.seq_from {
        q.push(("seq_from", v.to_string()));
    }
    if let Some(v) = f.seq_to {
        q.push(("seq_to", v.to_string()));
    }
    q
}

/// Percent-encodes a path segment (ids may hold `/`, `?`, `#`, spaces…).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unreachable(base: &str, e: reqwest::Error) -> anyhow::Error {
    Failure::unavailable(format!("cannot reach the server at {base}: {e}")).into()
}

/// Passes a success through; turns a problem document into a failure.
async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    Err(Failure::from_problem(status.as_u16(), &body).into())
}

async fn json_or_problem<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
    let resp = check(resp).await?;
    resp.json::<T>()
        .await
        .context("the server's answer is not what this client expects")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_recognised() {
        assert!(loopback("http://127.0.0.1:8080"));
        assert!(loopback("http://localhost:8080/x"));
        assert!(loopback("http://[::1]:8080"));
        assert!(!loopback("http://10.0.0.5:8080"));
        assert!(!loopback("http://pa.example"));
        assert!(!loopback("http://[2001:db8::1]:80"));
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("KB5034441"), "KB5034441");
        assert_eq!(encode_segment("openssl@3.0/x y"), "openssl@3.0%2Fx%20y");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
