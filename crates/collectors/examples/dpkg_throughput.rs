//! Measures the dpkg.log parser on a large synthetic log built by repeating
//! the real samples.
//!
//! ```sh
//! cargo run --release -p patchaudit-collectors --example dpkg_throughput [MB]
//! ```
//!
//! It reports MB/s for the parser on decoded text (`dpkg::parse`) and for
//! the whole path from bytes (`parse`, which also validates UTF-8), each the
//! best of three runs on one thread, by wall-clock time and, on Linux, by
//! the thread's CPU time (`/proc/thread-self/schedstat`), which other
//! processes on a busy machine do not inflate.

use patchaudit_collectors::{dpkg, parse, Context, Source};
use std::path::Path;
use std::time::Instant;

/// This thread's CPU time in seconds, where the kernel tells it.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// Runs `f`, returning its wall and CPU seconds.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, Option<f64>) {
    let c0 = cpu_seconds();
    let t = Instant::now();
    let out = f();
    let wall = t.elapsed().as_secs_f64();
    let cpu = c0.zip(cpu_seconds()).map(|(a, b)| b - a);
    (out, wall, cpu)
}

fn main() {
    let target_mb: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples/debian/dpkg-log");
    let mut unit = String::new();
    for name in [
        "riscv64-debian-sid_dpkg.log",
        "industio-ubuntu20.04-armhf_dpkg_excerpt_L2002-2116.log",
        "industio-ubuntu20.04-armhf_dpkg_excerpt_L3817-3924.log",
    ] {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read sample {}: {e}", path.display()));
        unit.push_str(&text);
    }
    let copies = (target_mb << 20) / unit.len() + 1;
    let log = unit.repeat(copies);
    let mb = log.len() as f64 / (1 << 20) as f64;
    let lines = log.lines().count();
    println!(
        "synthetic dpkg.log: {mb:.1} MiB, {lines} lines ({copies} copies of the {} real sample lines)",
        unit.lines().count()
    );

    let ctx = Context::default();
    let (mut wall_text, mut cpu_text) = (f64::INFINITY, f64::INFINITY);
    let (mut wall_bytes, mut cpu_bytes) = (f64::INFINITY, f64::INFINITY);
    let mut events = 0;
    for _ in 0..3 {
        let (p, wall, cpu) = timed(|| dpkg::parse("dpkg.log", &log, &ctx));
        wall_text = wall_text.min(wall);
        cpu_text = cpu_text.min(cpu.unwrap_or(f64::INFINITY));
        events = p.events.len();
        assert!(
            p.problems.is_empty(),
            "{:?}",
            &p.problems[..p.problems.len().min(3)]
        );
        drop(p);

        let (p, wall, cpu) = timed(|| parse(Source::Dpkg, "dpkg.log", log.as_bytes(), &ctx));
        wall_bytes = wall_bytes.min(wall);
        cpu_bytes = cpu_bytes.min(cpu.unwrap_or(f64::INFINITY));
        assert_eq!(p.events.len(), events);
    }
    println!("events: {events}");
    let show = |what: &str, wall: f64, cpu: f64| {
        let cpu = if cpu.is_finite() {
            format!("; CPU {cpu:.3} s, {:.1} MiB/s", mb / cpu)
        } else {
            String::new()
        };
        println!(
            "{what:28} wall {wall:.3} s, {:.1} MiB/s, {:.2} M lines/s{cpu}",
            mb / wall,
            lines as f64 / wall / 1e6
        );
    };
    show("dpkg::parse (text):", wall_text, cpu_text);
    show("parse(Source::Dpkg, bytes):", wall_bytes, cpu_bytes);
}
