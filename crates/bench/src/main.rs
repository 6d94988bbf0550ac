//! `patchaudit-bench`: the benchmark harness of patchaudit.
//!
//! It measures the real server and store on realistic, seeded workloads and
//! puts every number beside a baseline and a target:
//!
//! - `ingest`: NDJSON batch ingest over HTTP, against the `sqlite3` shell
//!   bulk-importing the same rows into the same schema;
//! - `concurrent`: many clients each POSTing single events, for throughput
//!   and tail latency, from a separate load-client process;
//! - `history`: one system's history read from a ledger of a million events,
//!   over HTTP and directly from the store;
//! - `postgres`: the PostgreSQL store: ingest against `psql \copy` and
//!   against one autocommitted INSERT per event, history at ten million
//!   events, and two server instances on one schema against one;
//! - `proofs`: the Merkle tree's share of ingest time, a full `verify` on
//!   one core against `sqlite3` reading the same rows, and proof latency;
//! - `auth`: what authenticating a request costs, against the store's
//!   cheapest round trip;
//! - `compliance`: the fleet compliance report over systems × patches
//!   against a `GROUP BY` over the events, on SQLite and PostgreSQL;
//! - `stream`: the real-time stream to NATS JetStream: POST → consumer
//!   latency at a steady rate beside the POST round trip, and the sink's lag
//!   at top ingest rate beside ingest without the stream, against a
//!   nats-server the bench starts on a free port;
//! - `kafka`: the Kafka sink's delivery rate to a tansu broker the bench
//!   starts, beside a bare krafka producer sending the same records;
//! - `dpkg`: the dpkg.log parser on one thread, on decoded text and from
//!   bytes, against a bare scan of the same text (lines and the words in
//!   them), in MB/s (10^6 bytes) by wall clock and by thread CPU time;
//! - `all`: ingest, concurrent, history, stream and dpkg, with one summary
//!   table (`postgres` only with `--with-postgres`; `stream` is skipped,
//!   with a note, when nats-server is not installed).
//!
//! The workload is a pure function of `--seed` (see [`gen`]), so two runs
//! with the same seed send the same events. Nothing here is part of the test
//! suite's timing: the unit tests only check the generator and the report.
//!
//! Build it with `--release`; debug numbers are meaningless.

mod auth;
mod compliance;
mod concurrent;
mod dpkg;
mod gen;
mod history;
mod ingest;
mod kafka;
mod load;
mod machine;
mod postgres;
mod proofs;
mod report;
mod server;
mod stats;
mod stream;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Benchmarks the patchaudit server and store on realistic seeded workloads
/// and reports each result beside its baseline and target.
#[derive(Debug, Parser)]
#[command(
    name = "patchaudit-bench",
    version,
    after_help = "Examples:\n  patchaudit-bench all --markdown docs/benchmarks-run.md\n  patchaudit-bench ingest --events 200000 --runs 3\n  patchaudit-bench --seed 7 history --events 100000"
)]
struct Cli {
    /// The seed every event is generated from.
    #[arg(long, global = true, default_value_t = 42)]
    seed: u64,
    /// Also write the results as a Markdown section to this file.
    #[arg(long, global = true, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Where the temporary ledgers are created (default: the system's temporary directory).
    #[arg(long, global = true, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// The sqlite3 command-line shell used as the ingest baseline.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "/usr/bin/sqlite3"
    )]
    sqlite3: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Batch ingest over HTTP (NDJSON, one client) against `sqlite3 .import`
    /// of the same rows into the same schema.
    ///
    /// Starts the real server in-process on a fresh ledger (WAL,
    /// synchronous=FULL), POSTs pre-generated NDJSON bodies in order, and
    /// times it; then times the sqlite3 shell importing the same rows as CSV
    /// into a fresh database with the store's schema and the same pragmas.
    /// Repeats --runs times and reports medians and their ratio (target ≥ 0.5×).
    #[command(
        after_help = "Example:\n  patchaudit-bench ingest --events 200000 --batch 10000 --runs 3"
    )]
    Ingest(ingest::IngestArgs),
    /// Many clients, one event per POST: throughput and p50/p99/max latency.
    ///
    /// Each client sends single-event JSON requests with unique event_ids,
    /// for --seconds or --requests. By default the clients run in a separate
    /// process on one thread, each with its own keep-alive connection;
    /// --client in-process runs them on the server's runtime instead.
    /// Reports the CPU time per request of the server and of the client.
    /// Target: p99 ≤ 10 ms.
    #[command(after_help = "Example:\n  patchaudit-bench concurrent --clients 64 --seconds 10")]
    Concurrent(concurrent::ConcurrentArgs),
    /// One system's history at a million events: HTTP and store latency.
    ///
    /// Preloads --events events through Store::append in batches of 10000,
    /// then GETs /v1/systems/{system}/events?limit=100 for random systems,
    /// sequentially, and times the same query directly against the store.
    /// Target: p99 ≤ 2 ms over HTTP.
    #[command(
        after_help = "Example:\n  patchaudit-bench history --events 1000000 --requests 2000"
    )]
    History(history::HistoryArgs),
    /// The PostgreSQL store: ingest, history, and several instances.
    ///
    /// Needs a PostgreSQL server (default: PATCHAUDIT_TEST_PG_URL or
    /// postgres://postgres@127.0.0.1:5432/postgres). Each part works in a
    /// fresh schema migrated by PgStore and dropped afterwards, also on error
    /// or Ctrl-C. Parts: `ingest` (NDJSON over HTTP against psql \copy of the
    /// same rows, target ≥ 0.5×), `insert` (against one autocommitted INSERT
    /// per event, target ≥ 10×), `history` (GET one system's events at
    /// --pg-history-events, target p99 ≤ 5 ms; the preload stops at
    /// --pg-history-budget-secs if it must, and the report says so) and
    /// `multi` (two server instances on one schema against one, same load).
    #[command(
        after_help = "Examples:\n  patchaudit-bench postgres\n  patchaudit-bench postgres --pg-history-events 2000000 --pg-multi-seconds 10\n  patchaudit-bench postgres --pg-only ingest,insert --pg-runs 5"
    )]
    Postgres(postgres::PgArgs),
    /// The Merkle tree: its share of ingest time, a full verify on one core,
    /// and proof latency.
    ///
    /// Preloads --events events through Store::append, times inclusion and
    /// consistency proofs over HTTP (target p99 ≤ 5 ms), then times
    /// `patchaudit verify` on the ledger pinned to one core (target ≥ 1M
    /// events/s) against the sqlite3 shell reading every event. Needs the
    /// release `patchaudit` binary beside this one.
    #[command(after_help = "Example:\n  patchaudit-bench proofs --events 1000000 --runs 3")]
    Proofs(proofs::ProofArgs),
    /// The compliance report over a fleet against a GROUP BY over the events.
    ///
    /// Builds (or, with --ledger, reuses) a ledger of --systems × --patches
    /// pairs with --events events over --coverage of them, a catalog of --patches
    /// entries and one tags record per system; then times, --runs times each
    /// after a warm-up, the report (report_input + Report::compute) against
    /// `SELECT ... FROM events GROUP BY patch_id, system` read whole, and
    /// prints where the report's time goes. With --postgres-url, the same in
    /// a fresh PostgreSQL schema, dropped afterwards. Targets: ≤ 1 s and ≥ 5×
    /// the GROUP BY (the issue sets them at 10k systems × 1k patches, 10M events).
    #[command(
        after_help = "Examples:\n  patchaudit-bench compliance --systems 10000 --patches 100 --events 1000000 --runs 3\n  patchaudit-bench compliance --ledger /tmp/c.db --postgres-url postgres://postgres@127.0.0.1:5432/postgres"
    )]
    Compliance(compliance::ComplianceArgs),
    /// What authentication costs each request, against the store's cheapest
    /// round trip.
    ///
    /// Creates --tokens tokens, then alternates --requests calls of
    /// `auth::authenticate` with random tokens and of `Store::ping`, and
    /// reports p50 and p99 of each. With --postgres-url, the same in a fresh
    /// PostgreSQL schema, dropped afterwards.
    #[command(
        after_help = "Example:\n  patchaudit-bench auth --tokens 1000 --requests 20000 --postgres-url postgres://postgres@127.0.0.1:5432/postgres"
    )]
    Auth(auth::AuthArgs),
    /// The real-time stream to NATS JetStream: latency and lag.
    ///
    /// Starts its own nats-server (JetStream, temporary store) on a free
    /// loopback port, never a shared one, and kills it at the end. A: POSTs
    /// single events at --rate per second (open loop) to a server running
    /// the stream, and times each from its POST to its arrival at an ordered
    /// JetStream consumer on patchaudit.events.> (target p99 ≤ 50 ms),
    /// beside the POST round trip and raw JetStream publish → receive at the
    /// same rate. B: ingests --events as fast as one client can in NDJSON
    /// batches, samples GET /v1/stream/status every --sample-ms, and reports
    /// the nats/events cursor's lag, the time to drain it, and the ingest
    /// rate beside the same ingest without the stream.
    #[command(
        after_help = "Examples:\n  patchaudit-bench stream\n  patchaudit-bench stream --rate 1000 --seconds 10 --events 200000 --runs 3"
    )]
    Stream(stream::StreamArgs),
    /// The dpkg.log parser on one thread against a bare scan of the same text.
    ///
    /// Builds a synthetic dpkg.log of --mb MB (10^6 bytes) from the real
    /// samples in shared/samples/debian/dpkg-log, then times on one thread,
    /// --runs times each in a rotating order: the baseline (counting the
    /// lines and the whitespace-separated words of each), `dpkg::parse` on
    /// the decoded text, and `parse(Source::Dpkg, bytes)` (decoding, UTF-8
    /// validation, then the parser). Reports medians by wall clock and by
    /// the thread's CPU time. Target: ≥ 200 MB/s.
    #[command(
        after_help = "Examples:\n  patchaudit-bench dpkg\n  patchaudit-bench dpkg --mb 500 --runs 9"
    )]
    Dpkg(dpkg::DpkgArgs),
    /// The Kafka sink's delivery rate against a bare krafka producer.
    ///
    /// Each run starts a fresh tansu broker on a free loopback port and
    /// delivers --events messages through the sink in the stream's batches
    /// of 500; the baseline sends the same records with a bare idempotent
    /// krafka producer. Every topic is read back and must hold each message
    /// once. Needs tansu (`cargo install tansu --locked --features dynostore`).
    #[command(
        after_help = "Examples:\n  patchaudit-bench kafka\n  patchaudit-bench kafka --events 200000 --runs 5"
    )]
    Kafka(kafka::KafkaArgs),
    /// Every benchmark in turn, with one summary table.
    ///
    /// Runs ingest, concurrent, history, stream and dpkg (with its
    /// defaults). The PostgreSQL benchmarks are included only with
    /// --with-postgres; `stream` is skipped, with a note, when nats-server
    /// is not installed.
    #[command(
        after_help = "Examples:\n  patchaudit-bench all --markdown docs/benchmarks-run.md\n  patchaudit-bench all --with-postgres --pg-history-events 2000000"
    )]
    All(AllArgs),
    /// The `concurrent` benchmark's load generator, which `concurrent`
    /// starts as a child process; not for direct use.
    #[command(hide = true)]
    LoadClient(load::LoadArgs),
}

/// The options of `all`: those of each benchmark, prefixed where they clash.
#[derive(Debug, Args)]
struct AllArgs {
    /// ingest: events per run.
    #[arg(long, default_value_t = 200_000)]
    ingest_events: u64,
    /// ingest: events per request.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// ingest: repetitions; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// concurrent: clients sending at once.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// concurrent: seconds to measure.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// concurrent: measure this many requests instead of a fixed time.
    #[arg(long)]
    concurrent_requests: Option<u64>,
    /// concurrent: also measure the diagnostic TCP_NODELAY server variant.
    #[arg(long)]
    nodelay_diagnostic: bool,
    /// history: events to preload.
    #[arg(long, default_value_t = 1_000_000)]
    history_events: u64,
    /// history: measured queries.
    #[arg(long, default_value_t = 2_000)]
    history_requests: usize,
    /// stream: events per second of the latency measurement.
    #[arg(long, default_value_t = 1_000.0)]
    stream_rate: f64,
    /// stream: seconds of the latency measurement.
    #[arg(long, default_value_t = 10.0)]
    stream_seconds: f64,
    /// stream: events of the lag measurement.
    #[arg(long, default_value_t = 200_000)]
    stream_events: u64,
    /// stream: the nats-server binary (skipped, with a note, when missing).
    #[arg(long, value_name = "PATH", default_value = "/usr/sbin/nats-server")]
    nats_server: PathBuf,
    /// Also run the `postgres` benchmark (needs a PostgreSQL server).
    #[arg(long)]
    with_postgres: bool,
    /// The options of the `postgres` benchmark, used with --with-postgres.
    #[command(flatten)]
    postgres: postgres::PgArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::LoadClient(a) = &cli.command {
        // Its own runtime on one thread: see the `load` module.
        return load::main(&gen::Generator::new(cli.seed), a);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let work_dir = cli.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating the work directory {}", work_dir.display()))?;
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; build with --release for meaningful numbers");
    }
    let machine = machine::Machine::describe(&work_dir, &cli.sqlite3)?;
    let gen = gen::Generator::new(cli.seed);

    let mut report = report::Report::default();
    match &cli.command {
        Command::Ingest(a) => report.extend(ingest::run(&gen, a, &cli.sqlite3, &work_dir).await?),
        Command::Concurrent(a) => report.extend(concurrent::run(&gen, a, &work_dir).await?),
        Command::History(a) => report.extend(history::run(&gen, a, &work_dir).await?),
        Command::Postgres(a) => report.extend(postgres::run(&gen, a, &work_dir).await?),
        Command::Proofs(a) => report.extend(proofs::run(&gen, a, &cli.sqlite3, &work_dir).await?),
        Command::Compliance(a) => report.extend(compliance::run(cli.seed, a, &work_dir).await?),
        Command::Auth(a) => report.extend(auth::run(a, &work_dir).await?),
        Command::Stream(a) => report.extend(stream::run(&gen, a, &work_dir).await?),
        Command::Dpkg(a) => report.extend(dpkg::run(a)?),
        Command::Kafka(a) => report.extend(kafka::run(a).await?),
        Command::LoadClient(_) => anyhow::bail!("load-client runs before the runtime starts"),
        Command::All(a) => {
            let ingest = ingest::IngestArgs {
                events: a.ingest_events,
                batch: a.batch,
                runs: a.runs,
            };
            let concurrent = concurrent::ConcurrentArgs {
                clients: a.clients,
                seconds: a.seconds,
                requests: a.concurrent_requests,
                warmup: 640,
                nodelay_diagnostic: a.nodelay_diagnostic,
                client: concurrent::ClientMode::Process,
            };
            let history = history::HistoryArgs {
                events: a.history_events,
                requests: a.history_requests,
                warmup: 200,
                limit: 100,
            };
            report.extend(ingest::run(&gen, &ingest, &cli.sqlite3, &work_dir).await?);
            report.extend(concurrent::run(&gen, &concurrent, &work_dir).await?);
            report.extend(history::run(&gen, &history, &work_dir).await?);
            let stream = stream::StreamArgs {
                rate: a.stream_rate,
                seconds: a.stream_seconds,
                events: a.stream_events,
                runs: a.runs,
                nats_server: a.nats_server.clone(),
                ..stream::StreamArgs::defaults()
            };
            report.extend(stream::run(&gen, &stream, &work_dir).await?);
            // Seconds, and no server: cheap enough to run every time.
            report.extend(dpkg::run(&dpkg::DpkgArgs::defaults())?);
            if a.with_postgres {
                report.extend(postgres::run(&gen, &a.postgres, &work_dir).await?);
            }
        }
    }
    report.notes.push(format!("workload seed: {}", cli.seed));

    println!("{}", report.to_text(&machine));
    if let Some(path) = &cli.markdown {
        let command = std::iter::once("patchaudit-bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" ");
        report.write_markdown(path, &machine, &command)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
