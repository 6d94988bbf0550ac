//! A description of the machine the benchmarks ran on, so numbers are never
//! quoted without their context.

use crate::stats::{fmt_duration, Latencies};
use anyhow::Context;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// What the results depend on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// When the run started (RFC 3339, UTC).
    pub date: String,
    /// The CPU model, from `/proc/cpuinfo`.
    pub cpu: String,
    /// The number of CPUs available, from `nproc`.
    pub cores: String,
    /// Total memory, from `/proc/meminfo`.
    pub memory: String,
    /// The kernel release, from `uname -r`.
    pub kernel: String,
    /// The version of the `sqlite3` shell used as the ingest baseline.
    pub sqlite3_shell: String,
    /// The version of the SQLite library the store is built with.
    pub sqlite_library: String,
    /// Release or debug build of this harness.
    pub build: String,
    /// The measured cost of one `fdatasync` in the work directory.
    pub fsync: String,
    /// The directory the temporary ledgers live in.
    pub work_dir: String,
    /// The commit of the source tree and whether it had uncommitted changes.
    pub source: String,
}

impl Machine {
    /// Describes this machine, probing fsync latency in `work_dir`.
    pub fn describe(work_dir: &Path, sqlite3: &Path) -> anyhow::Result<Machine> {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = command_output("nproc", &[]).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "unknown".into())
        });
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".into());
        let kernel = command_output("uname", &["-r"]).unwrap_or_else(|| "unknown".into());
        let sqlite3_shell = command_output(&sqlite3.to_string_lossy(), &["--version"])
            .map(|v| {
                // "3.40.1 2022-12-28 14:03:47 <hash>": the hash is noise.
                v.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
            })
            .map(|v| format!("{} {v}", sqlite3.display()))
            .unwrap_or_else(|| format!("{} (not found)", sqlite3.display()));
        let fsync = probe_fsync(work_dir, 64)
            .map(|l| {
                format!(
                    "p50 {}, p99 {}, max {} (4 KiB append + fdatasync, {} samples)",
                    fmt_duration(l.p50),
                    fmt_duration(l.p99),
                    fmt_duration(l.max),
                    l.count
                )
            })
            .context("probing fsync latency")?;
        Ok(Machine {
            date: patchaudit_domain::Timestamp::now().to_rfc3339()[..19].to_owned() + "Z",
            cpu,
            cores,
            memory,
            kernel,
            sqlite3_shell,
            sqlite_library: format!("{} (bundled with rusqlite)", rusqlite::version()),
            build: if cfg!(debug_assertions) {
                "debug (numbers are meaningless; use --release)".into()
            } else {
                "release".into()
            },
            fsync,
            work_dir: work_dir.display().to_string(),
            source: source_tree(),
        })
    }

    /// The description as labelled lines, in display order.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        vec![
            ("date", self.date.clone()),
            ("cpu", self.cpu.clone()),
            ("cores (nproc)", self.cores.clone()),
            ("memory", self.memory.clone()),
            ("kernel", self.kernel.clone()),
            ("sqlite3 shell", self.sqlite3_shell.clone()),
            ("store's SQLite", self.sqlite_library.clone()),
            ("build", self.build.clone()),
            ("fsync", self.fsync.clone()),
            ("work dir", self.work_dir.clone()),
            ("source tree", self.source.clone()),
        ]
    }

    /// A fixed description for unit tests.
    #[cfg(test)]
    pub fn for_tests() -> Machine {
        Machine {
            date: "2026-01-01T00:00:00Z".into(),
            cpu: "test".into(),
            cores: "2".into(),
            memory: "1 GiB".into(),
            kernel: "6".into(),
            sqlite3_shell: "3".into(),
            sqlite_library: "3".into(),
            build: "test".into(),
            fsync: "1 ms".into(),
            work_dir: "/tmp".into(),
            source: "abc1234".into(),
        }
    }
}

/// The commit the harness was built from (read from the tree at run time),
/// and which crates had uncommitted changes.
fn source_tree() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let Some(commit) = command_output("git", &["-C", dir, "rev-parse", "--short", "HEAD"]) else {
        return "unknown (not a git checkout)".into();
    };
    // Not trimmed: porcelain lines start with a two-letter status and a space.
    let changed = Command::new("git")
        .args(["-C", dir, "status", "--porcelain", "--", "../.."])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut dirty: Vec<String> = changed
        .lines()
        .filter_map(|l| l.get(3..))
        .map(|p| p.split('/').take(2).collect::<Vec<_>>().join("/"))
        .collect();
    dirty.sort();
    dirty.dedup();
    if dirty.is_empty() {
        format!("commit {commit}, clean")
    } else {
        format!(
            "commit {commit} with uncommitted changes in {}",
            dirty.join(", ")
        )
    }
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Times `samples` appends of 4 KiB each followed by `fdatasync`, which is
/// what a SQLite commit in WAL mode with `synchronous=FULL` costs at least.
fn probe_fsync(dir: &Path, samples: usize) -> anyhow::Result<Latencies> {
    let path = dir.join("fsync-probe.bin");
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let block = [0x5au8; 4096];
    let mut nanos = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        f.write_all(&block)
            .with_context(|| format!("writing {}", path.display()))?;
        f.sync_data()
            .with_context(|| format!("syncing {}", path.display()))?;
        nanos.push(t.elapsed().as_nanos() as u64);
    }
    drop(f);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(Latencies::from_nanos(&mut nanos))
}
