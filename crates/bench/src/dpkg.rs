//! The `dpkg` benchmark: how fast the dpkg.log parser runs on one thread,
//! beside the barest pass over the same bytes.
//!
//! The input is a synthetic dpkg.log of about `--mb` MB built by repeating
//! the real samples in `shared/samples/debian/dpkg-log` (the hand-picked
//! four-line plaso sample is left out: it ends in a failure on purpose).
//! Each run times, on one dedicated thread and in a rotating order:
//!
//! - the baseline, a bare scan that any parser must at least match: count
//!   the lines of the decoded text and the ASCII-whitespace-separated words
//!   of each (`str::lines` and `split_ascii_whitespace`, nothing else);
//! - `dpkg::parse` on the decoded text;
//! - `parse(Source::Dpkg, …)` on the bytes: gzip sniffing, encoding
//!   detection and UTF-8 validation, then the parser (`patchaudit collect`
//!   takes the same steps through `parse_rotated`).
//!
//! Each is timed by the wall clock and by the thread's CPU time
//! (`/proc/thread-self/schedstat`), which other processes on a busy machine
//! do not inflate. Medians of `--runs` runs are reported, in MB/s with
//! MB = 10^6 bytes, against the target of 200 MB/s.

use crate::report::{Report, Row};
use crate::stats::{fmt_count, median};
use anyhow::{ensure, Context as _};
use clap::Args;
use patchaudit_collectors::{dpkg, parse, Context, Source};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The target: 200 MB/s, MB = 10^6 bytes (about 190.7 MiB/s).
const TARGET_MB_S: f64 = 200.0;

/// The real samples the synthetic log repeats.
const SAMPLES: [&str; 3] = [
    "riscv64-debian-sid_dpkg.log",
    "industio-ubuntu20.04-armhf_dpkg_excerpt_L2002-2116.log",
    "industio-ubuntu20.04-armhf_dpkg_excerpt_L3817-3924.log",
];

/// The options of the `dpkg` benchmark.
#[derive(Debug, Args, Clone)]
pub struct DpkgArgs {
    /// The size of the synthetic dpkg.log, in MB (10^6 bytes).
    #[arg(long, default_value_t = 200)]
    pub mb: usize,
    /// Runs of each measurement; medians are reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// The directory holding the real dpkg.log samples [default:
    /// shared/samples/debian/dpkg-log beside the repository].
    #[arg(long, value_name = "DIR")]
    pub samples: Option<PathBuf>,
}

impl DpkgArgs {
    /// The defaults, for `all`.
    pub fn defaults() -> DpkgArgs {
        DpkgArgs {
            mb: 200,
            runs: 5,
            samples: None,
        }
    }
}

/// This thread's CPU time in seconds, where the kernel tells it.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// The wall-clock and CPU seconds of one timed call.
#[derive(Debug, Clone, Copy)]
struct Timing {
    wall: f64,
    cpu: Option<f64>,
}

/// Runs `f` and times it. What `f` returns is dropped after the clocks
/// stop: freeing the events is not parsing.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Timing) {
    let c0 = cpu_seconds();
    let t = Instant::now();
    let out = black_box(f());
    let wall = t.elapsed().as_secs_f64();
    let cpu = c0.zip(cpu_seconds()).map(|(a, b)| b - a);
    (out, Timing { wall, cpu })
}

/// The baseline: lines, and ASCII-whitespace-separated words in them.
fn bare_scan(text: &str) -> (usize, usize) {
    let mut lines = 0;
    let mut words = 0;
    for line in text.lines() {
        lines += 1;
        words += line.split_ascii_whitespace().count();
    }
    (lines, words)
}

/// The synthetic log: the samples, concatenated, repeated up to `mb` MB.
fn build_log(dir: &Path, mb: usize) -> anyhow::Result<(String, usize)> {
    let mut unit = String::new();
    for name in SAMPLES {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the sample {}", path.display()))?;
        unit.push_str(&text);
        if !unit.ends_with('\n') {
            unit.push('\n');
        }
    }
    let copies = (mb * 1_000_000).div_ceil(unit.len()).max(1);
    Ok((unit.repeat(copies), copies))
}

/// The times of every run of the three measurements.
#[derive(Default)]
struct Runs {
    scan: Vec<Timing>,
    text: Vec<Timing>,
    bytes: Vec<Timing>,
}

/// Times the three measurements `runs` times on this thread, rotating which
/// goes first so that none always runs on the warmest cache.
fn measure(log: &str, runs: usize) -> anyhow::Result<(Runs, usize, usize)> {
    let ctx = Context::default();
    let mut r = Runs::default();
    let (mut lines, mut events) = (0, None);
    for run in 0..runs {
        for k in 0..3 {
            match (run + k) % 3 {
                0 => {
                    let ((n, _words), t) = timed(|| bare_scan(log));
                    lines = n;
                    r.scan.push(t);
                }
                1 => {
                    let (p, t) = timed(|| dpkg::parse("dpkg.log", log, &ctx));
                    ensure!(
                        p.problems.is_empty(),
                        "the synthetic log has problems: {:?}",
                        &p.problems[..p.problems.len().min(3)]
                    );
                    ensure!(
                        *events.get_or_insert(p.events.len()) == p.events.len(),
                        "dpkg::parse found a different number of events"
                    );
                    r.text.push(t);
                }
                _ => {
                    let (p, t) = timed(|| parse(Source::Dpkg, "dpkg.log", log.as_bytes(), &ctx));
                    ensure!(
                        p.problems.is_empty()
                            && *events.get_or_insert(p.events.len()) == p.events.len(),
                        "parse(Source::Dpkg, bytes) disagrees with dpkg::parse"
                    );
                    r.bytes.push(t);
                }
            }
        }
        eprintln!(
            "[dpkg] run {}/{runs}: scan {:.0} MB/s, text {:.0} MB/s, bytes {:.0} MB/s (CPU time)",
            run + 1,
            mb_s(log.len(), r.scan[run].cpu.unwrap_or(r.scan[run].wall)),
            mb_s(log.len(), r.text[run].cpu.unwrap_or(r.text[run].wall)),
            mb_s(log.len(), r.bytes[run].cpu.unwrap_or(r.bytes[run].wall)),
        );
    }
    Ok((r, lines, events.unwrap_or(0)))
}

/// Bytes per second in MB/s (10^6 bytes).
fn mb_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

/// Runs the `dpkg` benchmark.
pub fn run(args: &DpkgArgs) -> anyhow::Result<Report> {
    ensure!(
        args.mb > 0 && args.runs > 0,
        "--mb and --runs must be positive"
    );
    let dir = args.samples.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples/debian/dpkg-log")
    });
    let (log, copies) = build_log(&dir, args.mb)?;
    let size = log.len();
    eprintln!(
        "[dpkg] synthetic dpkg.log: {:.1} MB ({:.1} MiB), {copies} copies of the samples; {} runs",
        size as f64 / 1e6,
        size as f64 / f64::from(1 << 20),
        args.runs
    );
    // One fresh thread does all the work, so its CPU time is the parser's.
    let runs = args.runs;
    let (r, lines, events) = std::thread::scope(|s| {
        s.spawn(|| measure(&log, runs))
            .join()
            .map_err(|_| anyhow::anyhow!("the measuring thread panicked"))
    })??;
    let has_cpu = r.scan.iter().all(|t| t.cpu.is_some());

    let rate = |ts: &[Timing], cpu: bool| -> Vec<f64> {
        ts.iter()
            .map(|t| mb_s(size, if cpu { t.cpu.unwrap_or(t.wall) } else { t.wall }))
            .collect()
    };
    let b = "dpkg";
    let mut report = Report::default();
    let clocks: &[(bool, &str)] = if has_cpu {
        &[(true, "CPU time"), (false, "wall clock")]
    } else {
        &[(false, "wall clock")]
    };
    for &(cpu, clock) in clocks {
        let scan = median(&rate(&r.scan, cpu));
        for (what, ts) in [
            ("dpkg::parse on decoded text", &r.text),
            ("parse(Source::Dpkg, bytes)", &r.bytes),
        ] {
            let m = median(&rate(ts, cpu));
            report.rows.push(
                Row::info(
                    b,
                    format!("{what}, MB/s by {clock}, one thread (median of {runs})"),
                    format!("{m:.0} MB/s"),
                )
                .baseline(
                    format!("bare scan: {scan:.0} MB/s"),
                    format!("{:.2}×", m / scan),
                )
                .target("≥ 200 MB/s", m >= TARGET_MB_S),
            );
        }
    }
    let per_run = |ts: &[Timing]| {
        rate(ts, has_cpu)
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.notes.push(format!(
        "dpkg: a synthetic dpkg.log of {} bytes ({:.1} MB, {:.1} MiB; {} lines, {} events) made of {copies} copies of \
         the real samples {}. MB = 10^6 bytes; 200 MB/s is 190.7 MiB/s. The bare scan counts lines (str::lines) and \
         the words of each (split_ascii_whitespace) of the decoded text; bytes = decoding (gzip sniffing, encoding \
         detection, UTF-8 validation) and the parser. Per-run {} MB/s: scan {}; text {}; bytes {}.",
        fmt_count(size as f64),
        size as f64 / 1e6,
        size as f64 / f64::from(1 << 20),
        fmt_count(lines as f64),
        fmt_count(events as f64),
        SAMPLES.join(", "),
        if has_cpu { "CPU-time" } else { "wall-clock" },
        per_run(&r.scan),
        per_run(&r.text),
        per_run(&r.bytes),
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bare_scan_counts_lines_and_words() {
        let text = "2024-05-01 10:00:00 startup archives unpack\n\n  a\tb  \r\nlast";
        assert_eq!(bare_scan(text), (4, 5 + 2 + 1));
    }

    #[test]
    fn rates_are_decimal_megabytes() {
        assert_eq!(mb_s(200_000_000, 1.0), 200.0);
        assert!((mb_s(200 << 20, 1.0) - 209.7152).abs() < 1e-9);
    }
}
