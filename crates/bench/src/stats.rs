//! Small statistics helpers: medians, percentiles and human-readable units.

use std::time::Duration;

/// The median of some rates; 0 for none. An even count averages the middle two.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The nearest-rank percentile `p` (in `0..=1`) of some values; 0 for none.
/// With three values, p90 is the largest.
pub fn nearest_rank(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let r = (p * v.len() as f64).ceil() as usize;
    v[r.clamp(1, v.len()) - 1]
}

/// Latencies summarised by nearest-rank percentiles.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latencies {
    /// How many samples there were.
    pub count: usize,
    /// The 50th percentile.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The slowest sample.
    pub max: Duration,
    /// The arithmetic mean.
    pub mean: Duration,
}

impl Latencies {
    /// Summarises samples given in nanoseconds (the slice is sorted in place).
    pub fn from_nanos(samples: &mut [u64]) -> Latencies {
        if samples.is_empty() {
            return Latencies::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |p: f64| {
            let r = (p * n as f64).ceil() as usize;
            Duration::from_nanos(samples[r.clamp(1, n) - 1])
        };
        let sum: u128 = samples.iter().map(|&s| s as u128).sum();
        Latencies {
            count: n,
            p50: rank(0.50),
            p99: rank(0.99),
            max: Duration::from_nanos(samples[n - 1]),
            mean: Duration::from_nanos((sum / n as u128) as u64),
        }
    }
}

/// Formats a duration in the most readable unit: `812 µs`, `3.41 ms`, `12.3 s`.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.1} s", us / 1e6)
    }
}

/// Formats a count with thousands separators: `1,234,567`.
pub fn fmt_count(n: f64) -> String {
    let s = (n.round() as u64).to_string();
    let head = match s.len() % 3 {
        0 => 3.min(s.len()),
        r => r,
    };
    let mut out = s[..head].to_owned();
    for group in s.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.push_str(&String::from_utf8_lossy(group));
    }
    out
}

/// Rates as a comma-separated list, for the notes under a table.
pub fn fmt_counts(values: &[f64]) -> String {
    values
        .iter()
        .map(|r| fmt_count(*r))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs a measurement and its baseline `runs` times each, alternating which
/// goes first so that neither always runs on the warmer cache, and returns
/// both lists of rates. Each run is reported on stderr as
/// `[tag] run i/n: <name> <rate> <unit>`.
pub async fn alternate<M, MF, B, BF>(
    tag: &str,
    runs: usize,
    (measured_name, baseline_name): (&str, &str),
    mut measured: M,
    mut baseline: B,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)>
where
    M: FnMut() -> MF,
    MF: std::future::Future<Output = anyhow::Result<f64>>,
    B: FnMut() -> BF,
    BF: std::future::Future<Output = anyhow::Result<f64>>,
{
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 0..runs {
        for side in if run % 2 == 0 { [0, 1] } else { [1, 0] } {
            let (r, name, unit) = if side == 0 {
                (measured().await?, measured_name, "events/s")
            } else {
                (baseline().await?, baseline_name, "rows/s")
            };
            eprintln!(
                "[{tag}] run {}/{runs}: {name} {} {unit}",
                run + 1,
                fmt_count(r)
            );
            if side == 0 { &mut ours } else { &mut theirs }.push(r);
        }
    }
    Ok((ours, theirs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn nearest_rank_of_values() {
        assert_eq!(nearest_rank(&[3.0, 1.0, 2.0], 0.9), 3.0);
        assert_eq!(nearest_rank(&[3.0, 1.0, 2.0], 0.5), 2.0);
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.9), 9.0);
        assert_eq!(nearest_rank(&[], 0.9), 0.0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut s: Vec<u64> = (1..=100).rev().collect();
        let l = Latencies::from_nanos(&mut s);
        assert_eq!(l.p50, Duration::from_nanos(50));
        assert_eq!(l.p99, Duration::from_nanos(99));
        assert_eq!(l.max, Duration::from_nanos(100));
        assert_eq!(l.count, 100);
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_count(1_234_567.0), "1,234,567");
        assert_eq!(fmt_count(999.0), "999");
        assert_eq!(fmt_count(100_000.0), "100,000");
        assert_eq!(fmt_count(0.0), "0");
        assert_eq!(fmt_duration(Duration::from_micros(812)), "812 µs");
        assert_eq!(fmt_duration(Duration::from_micros(3_410)), "3.41 ms");
    }
}
