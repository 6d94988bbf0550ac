//! The installed-package inventory parsers (`patchaudit_collectors::inventory`):
//!
//! - golden files for the real `rpm -qa` samples, two `wmic qfe` samples,
//!   one `systeminfo` sample and the hand-written dpkg status fixture, in
//!   `tests/golden/inventory/`. Regenerate after an intended change, then
//!   review the diff:
//!
//!   ```sh
//!   PATCHAUDIT_BLESS=1 cargo test -p patchaudit-collectors --test inventory
//!   git diff crates/collectors/tests/golden/inventory
//!   ```
//! - this machine's `/var/lib/dpkg/status`, against `dpkg-query` (skipped
//!   loudly without dpkg, and failing instead under
//!   `PATCHAUDIT_REQUIRE_SERVICES=1`);
//! - cross-checks of the samples against plain readings of their columns;
//! - mutated inputs and random bytes through every inventory parser: nothing
//!   panics, and every inventory follows the rules the server checks.

mod common;

use common::{check_goldens, fixture, sample};
use patchaudit_collectors::decode::decode;
use patchaudit_collectors::inventory::{
    dpkg_status, parse_inventory, rpm_qa, InstalledPackage, InventoryFormat, InventorySource,
    ParsedInventory, WINDOWS_VERSION,
};
use patchaudit_collectors::version::DebVersion;
use patchaudit_collectors::{Context, ProblemKind};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

// ---------------------------------------------------------------------------
// Invariants

/// What the server's inventory validation demands of every package, and
/// what the parsers promise besides: sorted, without repeats, of the
/// source's format.
fn assert_valid_inventory(inv: &ParsedInventory, source: InventorySource, what: &str) {
    assert_eq!(inv.format, source.format(), "{what}: format");
    for w in inv.packages.windows(2) {
        assert!(
            w[0] < w[1],
            "{what}: packages not sorted or repeated: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    let word = |field: &str, s: &str| {
        assert!(!s.is_empty(), "{what}: empty {field}");
        assert!(
            s.chars().count() <= 256,
            "{what}: {field} longer than 256 characters"
        );
        assert!(
            !s.chars().any(|c| c.is_whitespace() || c.is_control()),
            "{what}: {field} {s:?} holds whitespace or a control character"
        );
    };
    for p in &inv.packages {
        word("name", &p.name);
        word("version", &p.version);
        if let Some(a) = &p.arch {
            word("arch", a);
        }
        match inv.format {
            InventoryFormat::Deb => assert!(
                DebVersion::parse(&p.version).is_ok(),
                "{what}: {:?} is not a dpkg version",
                p.version
            ),
            InventoryFormat::Rpm => assert!(
                !p.version.starts_with("0:"),
                "{what}: rpm epoch 0 must be left out: {:?}",
                p.version
            ),
            InventoryFormat::Windows => {
                assert_eq!(p.version, WINDOWS_VERSION, "{what}");
                assert_eq!(p.arch, None, "{what}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Golden files

struct Case {
    /// `shared/samples/...` path, or `fixtures/...` for a hand-written input.
    input: &'static str,
    source: InventorySource,
}

fn cases() -> Vec<Case> {
    use InventorySource::*;
    let c = |input, source| Case { input, source };
    vec![
        c("rpm/rpm-qa/snyk-rpm-parser_amazonlinux2_plain.tsv", RpmQa),
        c("rpm/rpm-qa/snyk-rpm-parser_centos7_plain.tsv", RpmQa),
        c("rpm/rpm-qa/snyk-rpm-parser_ubi8_plain.tsv", RpmQa),
        c(
            "windows/wmic-qfe/wesng_10_1809_x64_pro_en-us_20190307_qfe.txt",
            WmicQfe,
        ),
        c("windows/wmic-qfe/wesng_xp_sp1_x86_qfe.txt", WmicQfe),
        c(
            "windows/systeminfo/wesng_10_1809_x64_pro_en-us_20190307_systeminfo.txt",
            Systeminfo,
        ),
        c("fixtures/dpkg_status.txt", DpkgStatus),
    ]
}

fn bytes_of(input: &str) -> Vec<u8> {
    match input.strip_prefix("fixtures/") {
        Some(name) => fixture(name),
        None => sample(input),
    }
}

fn base_name(input: &str) -> &str {
    Path::new(input).file_name().unwrap().to_str().unwrap()
}

fn read(case: &Case) -> ParsedInventory {
    let bytes = bytes_of(case.input);
    let inv = parse_inventory(
        case.source,
        base_name(case.input),
        &bytes,
        &Context::default(),
    );
    assert_valid_inventory(&inv, case.source, case.input);
    inv
}

fn render(case: &Case) -> Value {
    let bytes = bytes_of(case.input);
    let ctx = Context::default();
    let inv = read(case);
    let decoded = decode(&bytes, ctx.code_page, ctx.max_decompressed_bytes);
    json!({
        "input": case.input,
        "source": case.source.name(),
        "encoding": format!("{:?}", decoded.encoding),
        "count": { "packages": inv.packages.len(), "problems": inv.problems.len() },
        "format": inv.format,
        "packages": inv.packages,
        "problems": inv.problems,
    })
}

fn golden_path(case: &Case) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/inventory")
        .join(format!("{}.json", base_name(case.input)))
}

#[test]
fn every_case_matches_its_golden_file() {
    check_goldens(
        cases()
            .iter()
            .map(|case| (case.input.to_string(), render(case), golden_path(case))),
    );
}

#[test]
fn every_rpm_qa_sample_has_a_case() {
    let dir = common::samples_dir().join("rpm/rpm-qa");
    let covered: Vec<&str> = cases().iter().map(|c| c.input).collect();
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name();
        let rel = format!("rpm/rpm-qa/{}", name.to_str().unwrap());
        assert!(covered.contains(&rel.as_str()), "no golden case for {rel}");
        n += 1;
    }
    assert!(n >= 3, "only {n} rpm-qa samples");
}

// ---------------------------------------------------------------------------
// Cross-checks on the samples and the fixture

#[test]
fn rpm_qa_samples_give_one_package_per_line() {
    for case in cases()
        .into_iter()
        .filter(|c| c.source == InventorySource::RpmQa)
    {
        let text = String::from_utf8(bytes_of(case.input)).unwrap();
        let inv = read(&case);
        assert_eq!(inv.problems, vec![], "{}", case.input);
        // The text parser and the bytes entry point agree.
        assert_eq!(rpm_qa(base_name(case.input), &text), inv);
        // A plain reading of the columns: name, [epoch:]version-release
        // (the sed already dropped epoch 0), size.
        let want: BTreeSet<InstalledPackage> = text
            .lines()
            .map(|l| {
                let cols: Vec<&str> = l.split('\t').collect();
                assert_eq!(cols.len(), 3, "{l:?}");
                assert!(cols[2].bytes().all(|b| b.is_ascii_digit()), "{l:?}");
                InstalledPackage {
                    name: cols[0].into(),
                    version: cols[1].into(),
                    arch: None,
                }
            })
            .collect();
        assert_eq!(
            want.len(),
            text.lines().count(),
            "{}: repeated lines",
            case.input
        );
        let got: BTreeSet<InstalledPackage> = inv.packages.iter().cloned().collect();
        assert_eq!(got, want, "{}", case.input);
        // Epochs are kept (bind's 32, device-mapper's 7 or 8).
        assert!(
            inv.packages.iter().any(|p| p.version.contains(':')),
            "{}",
            case.input
        );
    }
}

#[test]
fn wmic_and_systeminfo_of_one_host_agree() {
    let by_wmic = read(&Case {
        input: "windows/wmic-qfe/wesng_10_1809_x64_pro_en-us_20190307_qfe.txt",
        source: InventorySource::WmicQfe,
    });
    let by_systeminfo = read(&Case {
        input: "windows/systeminfo/wesng_10_1809_x64_pro_en-us_20190307_systeminfo.txt",
        source: InventorySource::Systeminfo,
    });
    assert_eq!(by_wmic.packages.len(), 5);
    assert_eq!(by_wmic.packages, by_systeminfo.packages);
    assert_eq!(by_wmic.packages[0].name, "KB4470788");
}

#[test]
fn wmic_xp_keeps_kb_and_q_ids_and_reports_the_rest() {
    let inv = read(&Case {
        input: "windows/wmic-qfe/wesng_xp_sp1_x86_qfe.txt",
        source: InventorySource::WmicQfe,
    });
    let names: Vec<&str> = inv.packages.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"Q147222"), "{names:?}");
    assert!(names.contains(&"KB893803v2"), "{names:?}");
    assert!(
        inv.problems
            .iter()
            .any(|p| p.kind == ProblemKind::Unsupported && p.message.contains("File 1")),
        "{:?}",
        inv.problems
    );
}

#[test]
fn dpkg_fixture_covers_each_state() {
    let text = String::from_utf8(fixture("dpkg_status.txt")).unwrap();
    let inv = dpkg_status("dpkg_status.txt", &text);
    assert_valid_inventory(&inv, InventorySource::DpkgStatus, "fixture");
    let got: Vec<(&str, &str, Option<&str>)> = inv
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.arch.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("adduser", "3.134", Some("all")),
            ("bsdutils", "1:2.38.1-5+deb12u3", Some("amd64")),
            ("libuuid1", "2.38.1-5+deb12u3", Some("amd64")),
            ("libuuid1", "2.38.1-5+deb12u3", Some("i386")),
            ("man-db", "2.11.2-2", Some("amd64")),
            ("zlib1g", "1:1.2.13.dfsg-1", Some("amd64")),
        ]
    );
    let problems: Vec<(usize, ProblemKind)> =
        inv.problems.iter().map(|p| (p.line, p.kind)).collect();
    let first_line = |pkg: &str| {
        text.lines()
            .position(|l| l == format!("Package: {pkg}"))
            .unwrap()
            + 1
    };
    assert_eq!(
        problems,
        vec![
            (first_line("base-passwd"), ProblemKind::Incomplete),
            (first_line("libssl3"), ProblemKind::Incomplete),
            (first_line("tzdata"), ProblemKind::Malformed),
        ]
    );
    assert!(inv.problems[2].message.contains("no Version"));
}

// ---------------------------------------------------------------------------
// This machine's dpkg database

fn require_services() -> bool {
    std::env::var("PATCHAUDIT_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn skip_or_fail(why: &str) {
    if require_services() {
        panic!("{why} (PATCHAUDIT_REQUIRE_SERVICES=1)");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {why}; the dpkg status parser was NOT checked against this machine's dpkg-query !!!!!!!!\n"
    );
}

fn dpkg_query(format: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", format])
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "dpkg-query -W -f {format:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("dpkg-query prints UTF-8"))
}

#[test]
fn this_machines_dpkg_status_matches_dpkg_query() {
    let Some(abbrevs) = dpkg_query("${db:Status-Abbrev}\n") else {
        skip_or_fail("dpkg-query is not installed");
        return;
    };
    let path = "/var/lib/dpkg/status";
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            skip_or_fail(&format!("cannot read {path}: {e}"));
            return;
        }
    };
    // `dpkg-query -W -f='${db:Status-Abbrev}\n' | grep -c '^ii'`
    let ii = abbrevs.lines().filter(|l| l.starts_with("ii")).count();

    let rows = dpkg_query("${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\n")
        .expect("dpkg-query ran a moment ago");
    // The parser counts the states installed (i), triggers-pending (t) and
    // triggers-awaited (W), whatever the want (install, hold, ...): the
    // second letter of the abbreviation.
    let mut want = BTreeSet::new();
    let mut counted_not_ii = 0usize;
    for row in rows.lines() {
        let cols: Vec<&str> = row.split('\t').collect();
        assert_eq!(cols.len(), 4, "{row:?}");
        let abbrev = cols[3].as_bytes();
        if !matches!(abbrev.get(1), Some(b'i' | b't' | b'W')) {
            continue;
        }
        if !cols[3].starts_with("ii") {
            counted_not_ii += 1;
        }
        want.insert(InstalledPackage {
            name: cols[0].into(),
            version: cols[1].into(),
            arch: Some(cols[2].to_owned()).filter(|a| !a.is_empty()),
        });
    }
    assert_eq!(
        rows.lines().filter(|r| r.ends_with("\tii ")).count(),
        ii,
        "the two dpkg-query runs disagree on the ii count"
    );

    let inv = parse_inventory(
        InventorySource::DpkgStatus,
        path,
        &bytes,
        &Context::default(),
    );
    assert_valid_inventory(&inv, InventorySource::DpkgStatus, path);
    assert!(
        inv.problems
            .iter()
            .all(|p| p.kind == ProblemKind::Incomplete),
        "{:?}",
        inv.problems
    );
    eprintln!(
        "{path}: {} packages; dpkg-query: {ii} ii, {counted_not_ii} other installed states",
        inv.packages.len()
    );
    assert_eq!(inv.packages.len(), ii + counted_not_ii);
    let got: BTreeSet<InstalledPackage> = inv.packages.into_iter().collect();
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "dpkg-query lists but the parser does not: {missing:?}; the parser lists but dpkg-query does not: {extra:?}"
    );
}

// ---------------------------------------------------------------------------
// Robustness

const NASTY: &[&[u8]] = &[
    b"\r",
    b"\n",
    b"\n\n",
    b"\r\r\n",
    b"\0",
    b"\xFF",
    b"\xFE\xFF",
    b"\xC3",
    "é".as_bytes(),
    "\u{a0}".as_bytes(),
    b" ",
    b"\t",
    b":",
    b"-",
    b".",
    b"(none)",
    b"0:",
    b"1:",
    b"Package: x\n",
    b"Status: install ok installed\n",
    b"Status: install ok half-configured\n",
    b"Version: 1:\n",
    b"Version: 1.0 beta\n",
    b"Architecture: \n",
    b" continued\n",
    b"x\t1-1\tx86_64\n",
    b"gpg-pubkey-1-2\n",
    b"KB1234567",
    b"Q1",
    b"\x1f\x8b",
];

#[test]
fn mutated_inputs_never_panic_and_inventories_stay_valid() {
    let ctx = Context::default();
    let mut rng = common::Rng(0x51_7CC1_B727_220A);
    let mut packages = 0usize;
    for case in cases() {
        let bytes = bytes_of(case.input);
        for round in 0..100 {
            let m = common::mutate(&bytes, &mut rng, NASTY);
            for source in InventorySource::ALL {
                let inv = parse_inventory(source, "mutated", &m, &ctx);
                packages += inv.packages.len();
                let what = format!("{} round {round} as {source}", case.input);
                assert_valid_inventory(&inv, source, &what);
                assert!(inv.problems.iter().all(|p| p.file == "mutated"), "{what}");
            }
        }
    }
    assert!(
        packages > 10_000,
        "the mutations left too little to parse: {packages}"
    );
}

#[test]
fn random_bytes_never_panic() {
    let ctx = Context::default();
    let mut rng = common::Rng(11);
    for _ in 0..300 {
        let len = rng.below(600);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        for source in InventorySource::ALL {
            let inv = parse_inventory(source, "random", &bytes, &ctx);
            assert_valid_inventory(&inv, source, "random bytes");
        }
    }
}

#[test]
fn extreme_inputs_are_problems_not_panics() {
    let long = "x".repeat(100_000);
    let cases: Vec<(InventorySource, String)> = vec![
        (
            InventorySource::DpkgStatus,
            format!("Package: {long}\nStatus: install ok installed\nVersion: 1\n"),
        ),
        (
            InventorySource::DpkgStatus,
            format!("Package: a\nStatus: install ok installed\nVersion: 1.{long}\n"),
        ),
        (InventorySource::DpkgStatus, "Package: a\n".repeat(10_000)),
        (
            InventorySource::DpkgStatus,
            "Status: install ok installed\nVersion: 1\n\n".repeat(1_000),
        ),
        (InventorySource::RpmQa, format!("{long}-1-1.x86_64\n")),
        (
            InventorySource::RpmQa,
            format!("a\t99999999999999999999999999:1-1\t{long}\n"),
        ),
        (InventorySource::RpmQa, "\tx\t\n".repeat(1_000)),
        (
            InventorySource::GetHotFix,
            format!("HotFixID,InstalledOn,Source\nKB1{long},,A\nKB2,,B\n"),
        ),
    ];
    for (source, text) in cases {
        let inv = parse_inventory(source, "extreme", text.as_bytes(), &Context::default());
        assert_valid_inventory(&inv, source, &format!("{source}"));
        assert!(!inv.problems.is_empty(), "{source}: no problem reported");
    }
}
