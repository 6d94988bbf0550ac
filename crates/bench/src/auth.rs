//! What authentication costs a request: `auth::authenticate` (parse the
//! header, read the token's record, hash the secret, compare) against the
//! cheapest round trip through the same store (`Store::ping`), on SQLite
//! and, with a URL, PostgreSQL. Every API request but `/healthz`,
//! `/readyz` and `/v1/openapi.json` pays it once.

use crate::postgres::{reachable, Schemas};
use crate::report::{Report, Row};
use crate::server::open_store;
use crate::stats::{fmt_duration, Latencies};
use clap::Args;
use patchaudit_server::auth::{authenticate, create_token, TokenIn};
use patchaudit_store::Store;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The options of `auth`.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// Tokens in the ledger (an agent fleet has one per host).
    #[arg(long, default_value_t = 1_000)]
    pub tokens: usize,
    /// Measured calls of each kind.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Also measure PostgreSQL at this URL, in a fresh schema dropped afterwards.
    #[arg(long, value_name = "URL")]
    pub postgres_url: Option<String>,
}

async fn measure(
    backend: &str,
    store: Arc<dyn Store>,
    args: &AuthArgs,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("[auth] {backend}: creating {} tokens", args.tokens);
    let mut headers = Vec::with_capacity(args.tokens);
    for i in 0..args.tokens {
        let input = TokenIn {
            name: format!("agent-{i:05}"),
            scopes: vec!["ingest".into()],
            systems: vec![format!("host-{i:05}")],
            tags: Vec::new(),
        };
        let (_, bearer) = create_token(store.as_ref(), input, "bench")
            .await
            .map_err(|e| anyhow::anyhow!("creating a token: {e}"))?;
        headers.push(format!("Bearer {}", bearer.reveal()));
    }
    // Warm both paths, then alternate them call by call so that neither
    // gets the quieter moments of a shared machine.
    for h in headers.iter().take(200) {
        authenticate(store.as_ref(), Some(h))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        store.ping().await?;
    }
    let (mut auth_ns, mut ping_ns) = (Vec::new(), Vec::new());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..args.requests {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let h = &headers[(x % headers.len() as u64) as usize];
        let t = Instant::now();
        authenticate(store.as_ref(), Some(h))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        auth_ns.push(t.elapsed().as_nanos() as u64);
        let t = Instant::now();
        store.ping().await?;
        ping_ns.push(t.elapsed().as_nanos() as u64);
    }
    let a = Latencies::from_nanos(&mut auth_ns);
    let p = Latencies::from_nanos(&mut ping_ns);
    let ratio = |x: std::time::Duration, y: std::time::Duration| {
        format!("{:.2}×", x.as_secs_f64() / y.as_secs_f64().max(1e-9))
    };
    report.rows.push(
        Row::info(
            "auth",
            format!("{backend}: authenticate p50 ({} tokens)", args.tokens),
            fmt_duration(a.p50),
        )
        .baseline(format!("ping {}", fmt_duration(p.p50)), ratio(a.p50, p.p50)),
    );
    report.rows.push(
        Row::info(
            "auth",
            format!("{backend}: authenticate p99"),
            fmt_duration(a.p99),
        )
        .baseline(format!("ping {}", fmt_duration(p.p99)), ratio(a.p99, p.p99)),
    );
    Ok(())
}

/// Runs the benchmark.
pub async fn run(args: &AuthArgs, work_dir: &Path) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let dir = tempfile::tempdir_in(work_dir)?;
    let store: Arc<dyn Store> = Arc::new(open_store(&dir.path().join("auth.db"))?);
    measure("SQLite", store, args, &mut report).await?;
    if let Some(url) = &args.postgres_url {
        if reachable(url) {
            let schemas = Schemas::connect(url).await?;
            let schema = schemas.create().await?;
            let result = async {
                let store: Arc<dyn Store> = Arc::new(schemas.store(&schema).await?);
                measure("PostgreSQL", store, args, &mut report).await
            }
            .await;
            schemas.drop_one(&schema).await?;
            result?;
        } else {
            report.notes.push(format!(
                "PostgreSQL at {url} is unreachable; measured SQLite only"
            ));
        }
    }
    report.notes.push(format!(
        "auth: {} calls of each, alternating; authenticate = header parse + the token's record read + SHA-256 + constant-time compare; ping = the store's cheapest round trip",
        args.requests
    ));
    Ok(report)
}
