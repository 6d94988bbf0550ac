//! Helpers shared by the integration tests.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use patchaudit_collectors::{Context, Parsed};
use patchaudit_domain::{validate_batch, Timestamp, ValidationContext};
use std::path::{Path, PathBuf};

/// `shared/samples`, beside the repository. Panics loudly when it is missing:
/// the sample-based tests are the point of this crate's test suite.
pub fn samples_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples");
    assert!(
        dir.join("PROVENANCE.md").is_file(),
        "the real samples are missing: expected {} (shared/samples beside the repository)",
        dir.display()
    );
    dir
}

/// The bytes of a sample, by its path under `shared/samples`.
pub fn sample(rel: &str) -> Vec<u8> {
    let path = samples_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read sample {}: {e}", path.display()))
}

/// The bytes of a fixture under `tests/fixtures`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn ctx() -> Context {
    Context::default()
}

/// Every event must pass the domain's validation, as the server would run
/// it (with the clock at the end of year 9999, so no date is "in the future").
pub fn assert_valid_for_ledger(parsed: &Parsed, what: &str) {
    let ctx = ValidationContext {
        now: Timestamp::from_micros(253_402_300_799_000_000), // 9999-12-31T23:59:59Z
        max_future_skew_micros: ValidationContext::DEFAULT_SKEW_MICROS,
    };
    let raw = parsed.to_raw_events("golden-host");
    if raw.is_empty() {
        return;
    }
    if let Err(errs) = validate_batch(
        raw.into_iter().map(Ok::<_, patchaudit_domain::FieldError>),
        &ctx,
    ) {
        panic!("{what}: events the ledger would reject: {errs:?}");
    }
    let ids = parsed.event_ids("golden-host");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{what}: event ids must be unique");
}

/// A small seeded generator (xorshift64*), so a failing case can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `input` after one to four random edits: a byte changed, a cut, one of
/// `nasty` inserted, two lines swapped, a line repeated, or a range removed.
pub fn mutate(input: &[u8], rng: &mut Rng, nasty: &[&[u8]]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 if !v.is_empty() => {
                let cut = rng.below(v.len());
                v.truncate(cut);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let ins = nasty[rng.below(nasty.len())];
                v.splice(i..i, ins.iter().copied());
            }
            3 => {
                // Swap two lines.
                let mut lines: Vec<Vec<u8>> =
                    v.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                if lines.len() > 2 {
                    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                    lines.swap(a, b);
                }
                v = lines.join(&b'\n');
            }
            4 => {
                // Repeat a line.
                let lines: Vec<&[u8]> = v.split(|&b| b == b'\n').collect();
                if !lines.is_empty() {
                    let l = lines[rng.below(lines.len())].to_vec();
                    let at = rng.below(v.len() + 1);
                    let mut ins = l;
                    ins.push(b'\n');
                    v.splice(at..at, ins);
                }
            }
            _ => {
                // Remove a range.
                if !v.is_empty() {
                    let a = rng.below(v.len());
                    let b = (a + rng.below(64)).min(v.len());
                    v.drain(a..b);
                }
            }
        }
    }
    v
}

/// Compares each rendered case with its golden JSON file, reporting every
/// mismatch at once. With `PATCHAUDIT_BLESS=1` it rewrites the golden files
/// instead. Each case is its label (the input's name), what the parser gives
/// now, and its golden file.
pub fn check_goldens(cases: impl IntoIterator<Item = (String, serde_json::Value, PathBuf)>) {
    let bless = std::env::var("PATCHAUDIT_BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for (label, got, path) in cases {
        if bless {
            let mut text = serde_json::to_string_pretty(&got).unwrap();
            text.push('\n');
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let want: serde_json::Value = match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t).unwrap(),
            Err(e) => {
                failures.push(format!("{label}: no golden file {} ({e})", path.display()));
                continue;
            }
        };
        if got != want {
            failures.push(format!(
                "{label}: differs from {}\n{}",
                path.display(),
                first_difference(&want, &got)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended, regenerate with PATCHAUDIT_BLESS=1 and review the diff.",
        failures.join("\n\n")
    );
}

/// A short description of where two JSON values first differ.
fn first_difference(want: &serde_json::Value, got: &serde_json::Value) -> String {
    use serde_json::Value;
    fn walk(path: String, a: &Value, b: &Value) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => x.keys().chain(y.keys()).find_map(|k| {
                walk(
                    format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                )
            }),
            (Value::Array(x), Value::Array(y)) => (0..x.len().max(y.len())).find_map(|i| {
                walk(
                    format!("{path}[{i}]"),
                    x.get(i).unwrap_or(&Value::Null),
                    y.get(i).unwrap_or(&Value::Null),
                )
            }),
            _ if a == b => None,
            _ => Some(format!("at {path}:\n  golden: {a}\n  now:    {b}")),
        }
    }
    walk(String::new(), want, got).unwrap_or_else(|| "(no difference found)".into())
}
