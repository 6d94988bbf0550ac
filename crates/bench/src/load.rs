//! The `concurrent` benchmark's load generator, run as a separate process.
//!
//! On a two-core machine, a load generator that shares the server's process
//! and runtime competes with the server for the same worker threads, and its
//! CPU use cannot be told apart from the server's. Real agents run on other
//! machines. (Measured on 2026-11-25, the client turned out to cost about a
//! tenth of the server's CPU per request and was not what made the tail; see
//! `docs/benchmarks.md`.)
//!
//! So `concurrent` re-executes this binary as `patchaudit-bench load-client`.
//! The child runs every client on one thread (a current-thread runtime), so
//! it can never use more than one core, and each client is what an agent
//! is: one keep-alive HTTP/1.1 connection (hyper's client connection, no
//! pool) sending one event per request and waiting for the answer. The child
//! prints its measurements as one JSON document on stdout.

use crate::gen::Generator;
use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The options of the hidden `load-client` subcommand. The parent sets them;
/// nobody types them.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The server's address, such as `127.0.0.1:41234`.
    #[arg(long)]
    pub addr: SocketAddr,
    /// The `Authorization` header value sent with every request.
    #[arg(long, env = "PATCHAUDIT_BENCH_AUTHORIZATION", hide_env_values = true)]
    pub authorization: String,
    /// How many clients (connections) send at once.
    #[arg(long)]
    pub clients: usize,
    /// Requests sent before measuring.
    #[arg(long)]
    pub warmup: u64,
    /// How long to measure, in seconds (ignored with --requests).
    #[arg(long)]
    pub seconds: f64,
    /// Measure this many requests in total instead of a fixed time.
    #[arg(long)]
    pub requests: Option<u64>,
}

/// What the child measured, as it prints it.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoadResult {
    /// The latency of every measured request, in nanoseconds, from just
    /// before it was sent to the last byte of its answer.
    pub latencies_ns: Vec<u64>,
    /// Measured requests that failed or were not answered `201 Created`.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Wall time of the measured phase.
    pub elapsed_ns: u64,
    /// CPU time (user + system) the child used in the measured phase, when
    /// `/proc/self/stat` could be read.
    pub cpu_ns: Option<u64>,
    /// Every request sent, warm-up included: the events the server must
    /// hold afterwards when none failed.
    pub sent: u64,
}

/// When a phase of the `concurrent` clients ends.
#[derive(Clone, Copy)]
pub(crate) enum Until {
    /// When this many event indexes have been taken in total.
    Index(u64),
    /// At this instant (requests in flight still finish).
    Time(Instant),
}

impl Until {
    /// Takes the index of a client's next event from `next`, or `None`
    /// once the phase is over.
    fn take(self, next: &AtomicU64) -> Option<u64> {
        match self {
            Until::Index(end) => Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&i| i < end),
            Until::Time(t) => (Instant::now() < t).then(|| next.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

/// One client: a connection that sends events until `until`.
struct Client {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Client {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .context("the HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            // The connection ends when the client is dropped; a failure
            // surfaces as the next request's error.
            let _ = conn.await;
        });
        Ok(Client {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends one body and reads the whole answer; `Ok` only for `201`.
    async fn post(&mut self, authorization: &str, body: Vec<u8>) -> Result<(), String> {
        let req = hyper::Request::post("/v1/events")
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::AUTHORIZATION, authorization)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status == hyper::StatusCode::CREATED {
            Ok(())
        } else {
            Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            ))
        }
    }
}

/// What one client, or all of them, did in one phase.
#[derive(Default)]
pub(crate) struct Tally {
    /// The latency of every request, in nanoseconds.
    pub(crate) latencies: Vec<u64>,
    /// Requests that failed or were not answered `201 Created`.
    pub(crate) errors: u64,
    /// The first failure, for the report.
    pub(crate) first_error: Option<String>,
}

impl Tally {
    /// Counts one failure, keeping the first one's message.
    pub(crate) fn fail(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }

    /// Adds another client's tally to this one.
    pub(crate) fn absorb(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Sends one request and counts it: its latency from just before
    /// `request` starts to the end of the answer, and its failure if any.
    pub(crate) async fn time(&mut self, request: impl Future<Output = Result<(), String>>) {
        let t = Instant::now();
        let outcome = request.await;
        self.latencies.push(t.elapsed().as_nanos() as u64);
        if let Err(e) = outcome {
            self.fail(e);
        }
    }
}

/// The body of a client's next event, built before its clock starts, or
/// `None` once the phase is over. An event that cannot be encoded counts as
/// a failure and is skipped.
pub(crate) fn next_body(
    gen: &Generator,
    next: &AtomicU64,
    until: Until,
    tally: &mut Tally,
) -> Option<Vec<u8>> {
    while let Some(i) = until.take(next) {
        match serde_json::to_vec(&gen.event(i)) {
            Ok(body) => return Some(body),
            Err(e) => tally.fail(e.to_string()),
        }
    }
    None
}

async fn drive(
    mut client: Client,
    gen: Generator,
    authorization: Arc<str>,
    next: Arc<AtomicU64>,
    until: Until,
) -> (Client, Tally) {
    let mut tally = Tally::default();
    while let Some(body) = next_body(&gen, &next, until, &mut tally) {
        tally.time(client.post(&authorization, body)).await;
    }
    (client, tally)
}

/// Runs every client through one phase and gathers what they did.
async fn phase(
    clients: Vec<Client>,
    gen: &Generator,
    authorization: &Arc<str>,
    next: &Arc<AtomicU64>,
    until: Until,
) -> anyhow::Result<(Vec<Client>, Tally)> {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| {
            tokio::spawn(drive(
                c,
                gen.clone(),
                authorization.clone(),
                next.clone(),
                until,
            ))
        })
        .collect();
    let mut back = Vec::with_capacity(tasks.len());
    let mut all = Tally::default();
    for t in tasks {
        let (c, tally) = t.await.context("a client task failed")?;
        back.push(c);
        all.absorb(tally);
    }
    Ok((back, all))
}

/// The process's CPU time so far (user + system), from `/proc/self/stat`:
/// the child's own, and in the parent the server's.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it do not.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13
    // after the pid and command name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports them in USER_HZ, which is 100 on every architecture
    // Linux exposes to user space.
    Some(Duration::from_millis(ticks * 10))
}

/// The body of the `load-client` subcommand: connects every client, warms
/// up, measures, and prints a [`LoadResult`] as JSON on stdout.
pub fn main(gen: &Generator, args: &LoadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients > 0, "--clients must be positive");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the client's runtime")?;
    let result = rt.block_on(run_clients(gen, args))?;
    let out = serde_json::to_string(&result).context("encoding the result")?;
    println!("{out}");
    Ok(())
}

async fn run_clients(gen: &Generator, args: &LoadArgs) -> anyhow::Result<LoadResult> {
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        clients.push(Client::connect(args.addr).await?);
    }
    let authorization: Arc<str> = args.authorization.as_str().into();
    let next = Arc::new(AtomicU64::new(0));

    let (clients, warm) = phase(
        clients,
        gen,
        &authorization,
        &next,
        Until::Index(args.warmup),
    )
    .await?;
    anyhow::ensure!(
        warm.errors == 0,
        "{} warm-up requests failed; first: {}",
        warm.errors,
        warm.first_error.unwrap_or_default()
    );

    let until = match args.requests {
        Some(n) => Until::Index(next.load(Ordering::Relaxed) + n),
        None => Until::Time(Instant::now() + Duration::from_secs_f64(args.seconds)),
    };
    let cpu0 = process_cpu();
    let start = Instant::now();
    let (clients, m) = phase(clients, gen, &authorization, &next, until).await?;
    let elapsed = start.elapsed();
    let cpu = cpu0.zip(process_cpu()).map(|(a, b)| b.saturating_sub(a));
    drop(clients);
    let sent = (warm.latencies.len() + m.latencies.len()) as u64;
    Ok(LoadResult {
        latencies_ns: m.latencies,
        errors: m.errors,
        first_error: m.first_error,
        elapsed_ns: elapsed.as_nanos() as u64,
        cpu_ns: cpu.map(|c| c.as_nanos() as u64),
        sent,
    })
}

/// Starts this binary as a `load-client` child against `addr` and waits for
/// its measurements.
pub async fn spawn(
    seed: u64,
    addr: SocketAddr,
    authorization: &str,
    clients: usize,
    warmup: u64,
    seconds: f64,
    requests: Option<u64>,
) -> anyhow::Result<LoadResult> {
    let exe = std::env::current_exe().context("finding this binary to run the load client")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--seed")
        .arg(seed.to_string())
        .arg("load-client")
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--clients")
        .arg(clients.to_string())
        .arg("--warmup")
        .arg(warmup.to_string())
        .arg("--seconds")
        .arg(seconds.to_string())
        // The token goes by environment, not argv, so that `ps` does not
        // show it.
        .env("PATCHAUDIT_BENCH_AUTHORIZATION", authorization)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    if let Some(n) = requests {
        cmd.arg("--requests").arg(n.to_string());
    }
    let out = cmd.output().await.context("running the load client")?;
    anyhow::ensure!(
        out.status.success(),
        "the load client failed ({}); its error is above",
        out.status
    );
    serde_json::from_slice(&out.stdout).context("reading the load client's measurements")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_cpu_time_is_read_and_grows() {
        let a = process_cpu().expect("/proc/self/stat is readable on Linux");
        // Spin until the kernel has charged at least one more tick; on a
        // busy machine that can take longer than the tick itself.
        let t = Instant::now();
        let mut x = 0u64;
        let b = loop {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            let b = process_cpu().expect("still readable");
            assert!(b >= a, "CPU time went back: {a:?} then {b:?}");
            if b > a {
                break b;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "30 s of spinning added no CPU time to {a:?}"
            );
        };
        assert!(b - a < Duration::from_secs(60), "{a:?} then {b:?}");
    }
}
