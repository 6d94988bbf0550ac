//! The `proofs` benchmark: what the Merkle tree costs at ingest, how fast a
//! full `patchaudit verify` runs on one core, and how fast proofs are served.

use crate::gen::Generator;
use crate::history::{preload, LOAD_BATCH};
use crate::report::{Report, Row};
use crate::server::{http_client, ledger_signer, RunningServer};
use crate::stats::{fmt_count, fmt_duration, median, Latencies};
use anyhow::{bail, ensure, Context};
use clap::Args;
use patchaudit_store::Store;
use patchaudit_store::{SqliteOptions, SqliteStore};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The options of the `proofs` benchmark.
#[derive(Debug, Args, Clone)]
pub struct ProofArgs {
    /// Events in the ledger.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Full verifications to time; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Proofs of each kind to time over HTTP.
    #[arg(long, default_value_t = 2_000)]
    pub requests: usize,
    /// Keep the ledger in this file (and its signing key beside it, in FILE.key), and
    /// reuse it when it already holds --events events, skipping the preload.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// The `patchaudit` binary whose `verify` is timed [default: beside this one].
    #[arg(long, value_name = "PATH")]
    pub patchaudit: Option<PathBuf>,
}

fn patchaudit_binary(args: &ProofArgs) -> anyhow::Result<PathBuf> {
    let path = match &args.patchaudit {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("patchaudit"),
    };
    ensure!(
        path.exists(),
        "{} does not exist; build it with `cargo build --release --bin patchaudit` or pass --patchaudit",
        path.display()
    );
    Ok(path)
}

/// Runs `cmd` pinned to CPU 0 and returns its wall time and stdout.
fn timed_on_one_core(program: &Path, args: &[&str]) -> anyhow::Result<(Duration, String)> {
    let t = Instant::now();
    let out = Command::new("taskset")
        .arg("-c")
        .arg("0")
        .arg(program)
        .args(args)
        .output()
        .with_context(|| format!("running taskset -c 0 {}", program.display()))?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!(
            "{} {:?} failed: {}",
            program.display(),
            args,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
}

async fn timed_get(client: &reqwest::Client, url: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let resp = client.get(url).send().await.context("GET a proof")?;
    let status = resp.status();
    let body = resp.bytes().await.context("reading a proof")?;
    let took = t.elapsed();
    if status != reqwest::StatusCode::OK {
        bail!(
            "GET {url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(took)
}

/// Runs the `proofs` benchmark.
pub async fn run(
    gen: &Generator,
    args: &ProofArgs,
    sqlite3: &Path,
    work_dir: &Path,
) -> anyhow::Result<Report> {
    ensure!(
        args.events > 1 && args.runs > 0 && args.requests > 0,
        "--events must be at least 2, --runs and --requests positive"
    );
    let patchaudit = patchaudit_binary(args)?;
    let dir = tempfile::Builder::new()
        .prefix("patchaudit-bench-")
        .tempdir_in(work_dir)
        .with_context(|| format!("creating a temporary directory in {}", work_dir.display()))?;
    let db = match &args.ledger {
        Some(p) => p.clone(),
        None => dir.path().join("ledger.db"),
    };
    let signer = ledger_signer(&db, args.ledger.is_some())?;
    let store = SqliteStore::open(
        &db,
        SqliteOptions {
            signer: Some(signer.clone()),
            ..SqliteOptions::default()
        },
    )?;
    let n = args.events;
    let ev = fmt_count(n as f64);

    let reuse = store.len().await? == n && args.ledger.is_some();
    let tree_before = patchaudit_store::tree::time_spent();
    let (load_wall, load_append) = if reuse {
        eprintln!("[proofs] reusing the {ev} events of {}", db.display());
        (Duration::ZERO, Duration::ZERO)
    } else {
        ensure!(
            store.len().await? == 0,
            "{} holds events, but not {ev}",
            db.display()
        );
        eprintln!(
            "[proofs] preloading {ev} events via Store::append in batches of {}",
            fmt_count(LOAD_BATCH as f64)
        );
        let (wall, append, _) = preload(gen, &store, n, "proofs", None).await?;
        (wall, append)
    };
    let tree = patchaudit_store::tree::time_spent() - tree_before;
    let size = store.checkpoint().await?.map(|c| c.size).unwrap_or(0);
    ensure!(
        size == n,
        "the latest checkpoint covers {size} events, expected {n}"
    );

    // Proofs over HTTP, and the same proofs straight from the store.
    let mut rng = rand::rngs::StdRng::seed_from_u64(gen.seed() ^ 0x7072);
    let picks: Vec<u64> = (0..args.requests + 200)
        .map(|_| rng.gen_range(1..n))
        .collect();
    let server = RunningServer::start(Arc::new(store.clone())).await?;
    let client = http_client(1)?;
    let mut inclusion = Vec::new();
    let mut consistency = Vec::new();
    for (i, &k) in picks.iter().enumerate() {
        let a = timed_get(
            &client,
            &format!("{}/v1/proofs/inclusion?seq={k}&size={n}", server.base),
        )
        .await?;
        let b = timed_get(
            &client,
            &format!("{}/v1/proofs/consistency?from={k}&to={n}", server.base),
        )
        .await?;
        if i >= 200 {
            inclusion.push(a.as_nanos() as u64);
            consistency.push(b.as_nanos() as u64);
        }
    }
    server.stop().await?;
    let mut direct = Vec::new();
    for &k in &picks[200..] {
        let t = Instant::now();
        patchaudit_store::tree::inclusion_proof(&store, k, n).await?;
        direct.push(t.elapsed().as_nanos() as u64);
    }
    let inclusion = Latencies::from_nanos(&mut inclusion);
    let consistency = Latencies::from_nanos(&mut consistency);
    let direct = Latencies::from_nanos(&mut direct);
    drop(store);

    // Full verification on one core, against reading the same rows with sqlite3.
    let key = signer.verifier().to_string();
    let url = format!("sqlite://{}", db.display());
    let mut verify_secs = Vec::new();
    let mut scan_secs = Vec::new();
    for run in 0..args.runs {
        eprintln!(
            "[proofs] run {}/{}: patchaudit verify, then sqlite3 reading every event",
            run + 1,
            args.runs
        );
        let (took, out) = timed_on_one_core(
            &patchaudit,
            &[
                "verify",
                "--database-url",
                &url,
                "--key",
                &key,
                "--quiet",
                "--json",
            ],
        )?;
        let report: serde_json::Value = serde_json::from_str(&out).context("verify --json")?;
        ensure!(
            report["ok"] == true && report["events"] == n,
            "verify did not verify {n} events: {out}"
        );
        verify_secs.push(took.as_secs_f64());
        let db_path = db.display().to_string();
        let (took, _) = timed_on_one_core(sqlite3, &[&db_path, "SELECT * FROM events"])?;
        scan_secs.push(took.as_secs_f64());
    }
    eprintln!("[proofs] once more with --check-tree");
    let (check_tree, out) = timed_on_one_core(
        &patchaudit,
        &[
            "verify",
            "--database-url",
            &url,
            "--key",
            &key,
            "--quiet",
            "--json",
            "--check-tree",
        ],
    )?;
    let checked: serde_json::Value = serde_json::from_str(&out).context("verify --json")?;
    ensure!(checked["ok"] == true, "verify --check-tree failed: {out}");
    let verify = median(&verify_secs);
    let scan = median(&scan_secs);
    let rate = n as f64 / verify;

    let b = "proofs";
    let share = tree.as_secs_f64() / load_append.as_secs_f64();
    let mut report = Report::default();
    if !reuse {
        report.rows.push(
        Row::info(
            b,
            format!("share of Store::append time spent on the tree and checkpoints ({ev} events, 10k/batch)"),
            format!("{:.1}% ({:.2} s of {:.2} s)", share * 100.0, tree.as_secs_f64(), load_append.as_secs_f64()),
        )
        .baseline(
            format!(
                "{} events/s with the tree, ≈{} without",
                fmt_count(n as f64 / load_append.as_secs_f64()),
                fmt_count(n as f64 / (load_append - tree).as_secs_f64())
            ),
            format!("{:.2}×", (load_append - tree).as_secs_f64() / load_append.as_secs_f64()),
        )
        .target("≤ 20% of ingest", share <= 0.20),
        );
    }
    report.rows.push(
        Row::info(
            b,
            format!(
                "full verify of {ev} events on one core (median of {})",
                args.runs
            ),
            format!("{:.2} s ({} events/s)", verify, fmt_count(rate)),
        )
        .baseline(
            format!("sqlite3 reading every event: {:.2} s", scan),
            format!("{:.2}×", verify / scan),
        )
        .target("≥ 1M events/s", rate >= 1_000_000.0),
    );
    report.rows.push(Row::info(
        b,
        format!("verify --check-tree of {ev} events on one core (also every stored tree hash)"),
        format!(
            "{:.2} s ({} events/s, {} hashes compared)",
            check_tree.as_secs_f64(),
            fmt_count(n as f64 / check_tree.as_secs_f64()),
            fmt_count(checked["stored_hashes_compared"].as_f64().unwrap_or(0.0))
        ),
    ));
    for (name, l) in [("inclusion", inclusion), ("consistency", consistency)] {
        report.rows.push(
            Row::info(
                b,
                format!("p50 / p99 GET /v1/proofs/{name} at {ev} events"),
                format!("{} / {}", fmt_duration(l.p50), fmt_duration(l.p99)),
            )
            .baseline(
                format!("store inclusion proof p99: {}", fmt_duration(direct.p99)),
                format!("{:.1}×", l.p99.as_secs_f64() / direct.p99.as_secs_f64()),
            )
            .target("p99 ≤ 5 ms", l.p99 <= Duration::from_millis(5)),
        );
    }
    report.notes.push(format!(
        "proofs: the tree's share is the time the writer spent hashing leaves and nodes, writing tree hashes and the head, and signing and storing \
         checkpoints (patchaudit_store::tree::time_spent), over the time inside Store::append; the commit's fsync is not in it. \
         Preload wall {:.1} s. verify and sqlite3 run pinned to CPU 0 with taskset; verify's time includes process start and its checks of {} checkpoints. \
         {} random proofs of each kind after 200 warm-up ones, sequential, one client.",
        load_wall.as_secs_f64(),
        fmt_count((n / LOAD_BATCH) as f64),
        fmt_count(args.requests as f64)
    ));
    Ok(report)
}
