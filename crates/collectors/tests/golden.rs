//! Every parser against the real samples in `shared/samples` (and the
//! synthetic fixtures in `tests/fixtures` for the formats that have no real
//! sample), compared with the golden files in `tests/golden/`.
//!
//! A golden file holds everything the parser produced for one input: the
//! encoding found, the summary, every event with its `event_id` on the
//! system `golden-host`, and every problem. When a parser changes on
//! purpose, regenerate them and review the diff before committing:
//!
//! ```sh
//! PATCHAUDIT_BLESS=1 cargo test -p patchaudit-collectors --test golden
//! git diff crates/collectors/tests/golden
//! ```

mod common;

use common::{assert_valid_for_ledger, check_goldens, fixture, sample, utc};
use patchaudit_collectors::{decode::decode, parse, Context, Source};
use serde_json::{json, Value};
use std::path::Path;

struct Case {
    /// `shared/samples/...` path, or `fixtures/...` for a synthetic input.
    input: &'static str,
    source: Source,
    ctx: Context,
}

fn ctx() -> Context {
    Context::default()
}

fn with_year(year: i32) -> Context {
    Context {
        year: Some(year),
        ..Context::default()
    }
}

/// Inventories without dates need an observation time: the capture date
/// in the file name where there is one, otherwise an arbitrary fixed time.
fn observed(at: &str) -> Context {
    Context {
        observed_at: Some(utc(at)),
        ..Context::default()
    }
}

const NO_DATE: &str = "2025-01-01T00:00:00Z";

fn cases() -> Vec<Case> {
    use Source::*;
    let c = |input, source, ctx| Case { input, source, ctx };
    vec![
        c("debian/dpkg-log/plaso_dpkg.log", Dpkg, ctx()),
        c("debian/dpkg-log/industio-ubuntu20.04-armhf_dpkg_excerpt_L2002-2116.log", Dpkg, ctx()),
        c("debian/dpkg-log/industio-ubuntu20.04-armhf_dpkg_excerpt_L3817-3924.log", Dpkg, ctx()),
        c("debian/dpkg-log/riscv64-debian-sid_dpkg.log", Dpkg, ctx()),
        c("debian/apt-history/plaso_apt_history.log", AptHistory, ctx()),
        c("debian/apt-history/industio-ubuntu20.04-armhf_history.log", AptHistory, ctx()),
        c("debian/apt-history/riscv64-debian-sid_history.log", AptHistory, ctx()),
        c("rpm/yum-log/centos6_ygh_yum.log", YumLog, with_year(2016)),
        c("rpm/yum-log/oraclelinux7_webdns_yum.log", YumLog, with_year(2021)),
        c("windows/wmic-qfe/wesng_10_1803_x64_proforworkstations_en-us_A_20190305_qfe.txt", WmicQfe, observed("2019-03-05T00:00:00Z")),
        c("windows/wmic-qfe/wesng_10_1803_x64_proforworkstations_en-us_B_20190306_qfe.txt", WmicQfe, observed("2019-03-06T00:00:00Z")),
        c("windows/wmic-qfe/wesng_10_1809_x64_education_en-us_20190306_qfe.txt", WmicQfe, observed("2019-03-06T00:00:00Z")),
        c("windows/wmic-qfe/wesng_10_1809_x64_pro_en-us_20190307_qfe.txt", WmicQfe, observed("2019-03-07T00:00:00Z")),
        c("windows/wmic-qfe/wesng_7_sp1_x64_enterprise_en-us_20190305_qfe.txt", WmicQfe, observed("2019-03-05T00:00:00Z")),
        c("windows/wmic-qfe/wesng_srv_2012r2_u1_qfe.txt", WmicQfe, observed(NO_DATE)),
        c("windows/wmic-qfe/wesng_srv_2012r2_x64_standard_ru_qfe.txt", WmicQfe, observed(NO_DATE)),
        c("windows/wmic-qfe/wesng_xp_sp1_x86_qfe.txt", WmicQfe, observed(NO_DATE)),
        c("windows/systeminfo/wesng_10_1803_x64_proforworkstations_en-us_A_20190305_systeminfo.txt", Systeminfo, observed("2019-03-05T00:00:00Z")),
        c("windows/systeminfo/wesng_10_1809_x64_pro_en-us_20190307_systeminfo.txt", Systeminfo, observed("2019-03-07T00:00:00Z")),
        c("windows/systeminfo/wesng_11_24H2_x64_enterprise_systeminfo.txt", Systeminfo, observed(NO_DATE)),
        c("windows/systeminfo/wesng_7_sp1_x64_enterprise_en-us_20190305_systeminfo.txt", Systeminfo, observed("2019-03-05T00:00:00Z")),
        c("windows/systeminfo/wesng_7_sp1_x64_enterprise_fr_systeminfo_powershell.txt", Systeminfo, observed(NO_DATE)),
        c("windows/systeminfo/wesng_srv_2012r2_x64_standard_ru_systeminfo.txt", Systeminfo, observed(NO_DATE)),
        c("windows/systeminfo/wesng_srv_2022_systeminfo.txt", Systeminfo, observed(NO_DATE)),
        c("osquery/beats_osqueryd.results.sample_deb_packages_excerpt.log", Osquery, ctx()),
        // Synthetic: no real sample of these formats exists (see docs/collectors.md).
        c("fixtures/dnf_history_info.txt", DnfHistory, ctx()),
        c("fixtures/get_hotfix.csv", GetHotFix, observed(NO_DATE)),
        c("fixtures/get_hotfix.json", GetHotFix, observed(NO_DATE)),
        c("fixtures/wu_history_queryhistory.csv", WindowsUpdateHistory, ctx()),
        c("fixtures/wu_history_pswindowsupdate.csv", WindowsUpdateHistory, ctx()),
        c("fixtures/osquery_rpm_patches_wu.log", Osquery, ctx()),
    ]
}

fn render(case: &Case) -> Value {
    let bytes = match case.input.strip_prefix("fixtures/") {
        Some(name) => fixture(name),
        None => sample(case.input),
    };
    let name = Path::new(case.input).file_name().unwrap().to_str().unwrap();
    let parsed = parse(case.source, name, &bytes, &case.ctx);
    assert_valid_for_ledger(&parsed, case.input);
    let decoded = decode(&bytes, case.ctx.code_page, case.ctx.max_decompressed_bytes);
    let ids = parsed.event_ids("golden-host");
    let events: Vec<Value> = parsed
        .events
        .iter()
        .zip(ids)
        .map(|(e, id)| {
            let mut v = serde_json::to_value(e).unwrap();
            v.as_object_mut()
                .unwrap()
                .insert("event_id".into(), id.into());
            v
        })
        .collect();
    json!({
        "input": case.input,
        "source": case.source.name(),
        "encoding": format!("{:?}", decoded.encoding),
        "summary": parsed.summary(),
        "events": events,
        "problems": parsed.problems,
    })
}

fn golden_path(case: &Case) -> std::path::PathBuf {
    let base = Path::new(case.input).file_name().unwrap().to_str().unwrap();
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{base}.json"))
}

#[test]
fn every_sample_matches_its_golden_file() {
    check_goldens(
        cases()
            .iter()
            .map(|case| (case.input.to_string(), render(case), golden_path(case))),
    );
}

#[test]
fn every_real_sample_has_a_case() {
    // A new sample of a known format should get a golden file too.
    let dir = common::samples_dir();
    let covered: Vec<&str> = cases().iter().map(|c| c.input).collect();
    for sub in [
        "debian/dpkg-log",
        "debian/apt-history",
        "rpm/yum-log",
        "windows/wmic-qfe",
        "windows/systeminfo",
        "osquery",
    ] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let name = entry.unwrap().file_name();
            let rel = format!("{sub}/{}", name.to_str().unwrap());
            assert!(covered.contains(&rel.as_str()), "no golden case for {rel}");
        }
    }
}
