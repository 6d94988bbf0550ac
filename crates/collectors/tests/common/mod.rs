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
