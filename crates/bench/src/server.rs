//! The real patchaudit server, started in-process on a loopback port.

use anyhow::Context;
use patchaudit_server::{AppState, ServerConfig};
use patchaudit_store::{SqliteOptions, SqliteStore, Store};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Opens a ledger at `path` with the default (production) options:
/// WAL mode and `synchronous=FULL`.
pub fn open_store(path: &Path) -> anyhow::Result<SqliteStore> {
    SqliteStore::open(
        path,
        SqliteOptions {
            signer: Some(bench_signer()),
            ..SqliteOptions::default()
        },
    )
    .with_context(|| format!("opening the ledger at {}", path.display()))
}

/// The checkpoint signing key of this bench run, shared by every store it
/// opens (as several server instances share one): the benches sign every
/// commit, as production does.
pub fn bench_signer() -> std::sync::Arc<patchaudit_proofs::NoteSigner> {
    static KEY: std::sync::OnceLock<std::sync::Arc<patchaudit_proofs::NoteSigner>> =
        std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        std::sync::Arc::new(
            patchaudit_proofs::NoteSigner::generate("patchaudit.bench/ledger")
                .expect("a valid key name"),
        )
    })
    .clone()
}

/// The signing key of a ledger kept at `db`: the one in `db.key` when that
/// file exists, else this run's key, written to `db.key` (mode 0600) when
/// `keep` is set so that a later run reusing the ledger signs with it too.
pub fn ledger_signer(db: &Path, keep: bool) -> anyhow::Result<Arc<patchaudit_proofs::NoteSigner>> {
    let key_file = std::path::PathBuf::from(format!("{}.key", db.display()));
    if key_file.exists() {
        let text = std::fs::read_to_string(&key_file)
            .with_context(|| format!("reading {}", key_file.display()))?;
        return Ok(Arc::new(
            patchaudit_proofs::NoteSigner::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", key_file.display()))?,
        ));
    }
    if keep {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_file)
            .and_then(|mut f| f.write_all(bench_signer().to_text().as_bytes()))
            .with_context(|| format!("writing {}", key_file.display()))?;
    }
    Ok(bench_signer())
}

/// How the server is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Exactly as shipped: `patchaudit_server::run` on a plain listener.
    Shipped,
    /// A diagnostic variant: the same router, served the same way, but with
    /// `TCP_NODELAY` set on every accepted connection. It isolates the cost
    /// of Nagle's algorithm on the server's sockets and is never reported as
    /// the product's result.
    NoDelay,
}

/// A server running on a task of the current runtime.
pub struct RunningServer {
    /// The base URL, such as `http://127.0.0.1:41234`.
    pub base: String,
    /// The address the server listens on.
    pub addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    /// The real-time stream's tasks, when started with
    /// [`RunningServer::start_with_stream`]; stopped after the server.
    stream: Option<patchaudit_server::stream::Running>,
}

impl RunningServer {
    /// Serves `store` with the default configuration on `127.0.0.1:0`, via
    /// `patchaudit_server::run`, exactly as `patchaudit serve` does.
    pub async fn start(store: Arc<dyn Store>) -> anyhow::Result<RunningServer> {
        Self::start_flavor(store, Flavor::Shipped).await
    }

    /// Serves `store` on `127.0.0.1:0` in the given [`Flavor`].
    pub async fn start_flavor(
        store: Arc<dyn Store>,
        flavor: Flavor,
    ) -> anyhow::Result<RunningServer> {
        Self::start_inner(store, flavor, None).await
    }

    /// Serves `store` like [`RunningServer::start`], and also runs the
    /// real-time stream of `stream` (its sinks and alert rules) the way
    /// `patchaudit serve` does: started before the first request, stopped
    /// (every cursor saved) after the server stopped.
    pub async fn start_with_stream(
        store: Arc<dyn Store>,
        stream: &patchaudit_server::stream::StreamConfig,
    ) -> anyhow::Result<RunningServer> {
        Self::start_inner(store, Flavor::Shipped, Some(stream)).await
    }

    async fn start_inner(
        store: Arc<dyn Store>,
        flavor: Flavor,
        stream: Option<&patchaudit_server::stream::StreamConfig>,
    ) -> anyhow::Result<RunningServer> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a loopback port for the server")?;
        let addr = listener
            .local_addr()
            .context("reading the server's address")?;
        let (tx, rx) = oneshot::channel::<()>();
        ensure_bench_token(store.as_ref()).await?;
        // The benches measure the ledger, not the per-token rate limiter:
        // every request uses one token, far above any real client's rate.
        let config = ServerConfig {
            rate_limit_per_second: 0,
            ..ServerConfig::default()
        };
        let mut state = AppState::new(store, config);
        let mut running = None;
        if let Some(stream) = stream {
            state = state.with_webhooks(stream);
            running = Some(
                patchaudit_server::stream::start_for(&state, stream)
                    .await
                    .map_err(|e| anyhow::anyhow!("starting the stream: {e}"))?,
            );
        }
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = match flavor {
            Flavor::Shipped => tokio::spawn(patchaudit_server::run(listener, state, shutdown)),
            Flavor::NoDelay => {
                use axum::serve::ListenerExt;
                let listener = listener.tap_io(|tcp| {
                    // Best effort: a socket that refuses it just keeps Nagle.
                    let _ = tcp.set_nodelay(true);
                });
                let app = patchaudit_server::router(state);
                tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                })
            }
        };
        Ok(RunningServer {
            base: format!("http://{addr}"),
            addr,
            shutdown: Some(tx),
            task,
            stream: running,
        })
    }

    /// Asks the server to finish its requests in flight and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let served = tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .context("the server did not stop within 30 s")?
            .context("the server task panicked")?
            .context("the server failed");
        if let Some(stream) = self.stream.take() {
            stream.stop().await;
        }
        served
    }
}

/// The id of the benches' token.
const BENCH_TOKEN_ID: &str = "00000000000bec4e";

/// The benches' token secret. It is fixed so that every client the benches
/// build can send it whichever store the server runs on; it only ever
/// exists in throwaway bench ledgers.
const BENCH_TOKEN_SECRET: &str = "benchbenchbenchbenchbenchbenchbenchbenchben";

/// Records the benches' `ingest,read,admin` token in `store` unless it is
/// there already (several servers may share one database). Every request
/// of every bench is authenticated, as in production.
pub async fn ensure_bench_token(store: &dyn Store) -> anyhow::Result<()> {
    use patchaudit_domain::access::{Scopes, TokenName};
    use patchaudit_store::tokens::{self, Token};
    if tokens::get(store, BENCH_TOKEN_ID).await?.is_some() {
        return Ok(());
    }
    let token = Token {
        id: BENCH_TOKEN_ID.into(),
        name: TokenName::parse("bench", "name").map_err(|e| anyhow::anyhow!("{e}"))?,
        scopes: Scopes::parse(&["ingest,read,admin"], "scopes")
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        systems: Vec::new(),
        tags: Vec::new(),
        secret_sha256: patchaudit_server::auth::secret_hash(BENCH_TOKEN_SECRET),
        created_at: patchaudit_domain::Timestamp::now(),
        created_by: "bench".into(),
        revoked: None,
    };
    tokens::create(store, &token).await?;
    Ok(())
}

/// The `Authorization` header value of the benches' token.
pub fn bench_authorization() -> String {
    format!("Bearer pa_{BENCH_TOKEN_ID}_{BENCH_TOKEN_SECRET}")
}

/// An HTTP client for the benchmarks: no proxy, keep-alive, an idle pool
/// large enough for `connections` concurrent requests, and the benches'
/// token on every request.
pub fn http_client(connections: usize) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&bench_authorization())
            .context("the bench token is a valid header")?,
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .pool_max_idle_per_host(connections.max(1))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()
        .context("building the HTTP client")
}

/// Reads a POST's answer: `Ok` when the server created the events, else a
/// short description of what it answered (or why nothing came back).
pub async fn expect_created(sent: reqwest::Result<reqwest::Response>) -> Result<(), String> {
    let resp = sent.map_err(|e| e.to_string())?;
    let status = resp.status();
    match resp.bytes().await {
        Ok(_) if status == reqwest::StatusCode::CREATED => Ok(()),
        Ok(b) => Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&b[..b.len().min(500)])
        )),
        Err(e) => Err(e.to_string()),
    }
}
