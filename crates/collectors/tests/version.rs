//! Version comparison against the references.
//!
//! - dpkg: every pair is also compared by this machine's own
//!   `dpkg --compare-versions`. Without dpkg the test fails under
//!   `PATCHAUDIT_REQUIRE_SERVICES=1` and is skipped loudly otherwise.
//! - rpm: the vectors of rpm's own test suite, `tests/rpmvercmp.at` in
//!   rpm-software-management/rpm (the tilde, caret and tilde-and-caret cases
//!   came with rpm 4.15). They are restated below as data.

mod common;

use common::sample;
use patchaudit_collectors::version::{dpkg_cmp, rpm_evr_cmp, rpmvercmp, DebVersion};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::process::Command;

/// Hand-made versions that exercise every rule: epochs, `~` before the
/// end, letters before other characters, leading zeros, missing and empty
/// revisions, hyphens inside the upstream version.
const TRICKY: &[&str] = &[
    "0",
    "1",
    "01",
    "1.0",
    "1.00",
    "1.0-0",
    "1.0-1",
    "1.0~rc1",
    "1.0~rc1-1",
    "1.0~~",
    "1.0~",
    "1.0~~a",
    "1.0a",
    "1.0+",
    "1.0.",
    "1.0+b1",
    "1.0-1+b1",
    "1.0-1~bpo1",
    "1:0.9",
    "0:1.0",
    "2:1",
    "1.0-1ubuntu0.1",
    "1.0-1ubuntu0.10",
    "1.0-a",
    "1.0-A",
    "1.0-+",
    "1.0-~",
    "1.2-3-4",
    "1.2-3-4~x",
    "10",
    "9",
    "1.001",
    "1.01a",
    "1.1a",
    "1.1A",
    "20231231",
    "2.0.8",
    "2.0.2ubuntu0.1",
    "1.0~rc1+git20210101",
    "1.0.0~alpha.1",
    "3.0.13-1",
    "3.0.13-1+deb12u1",
    "7.6.q-26",
    "1.0.0",
    "a",
];

fn sample_versions() -> Vec<String> {
    let mut set = BTreeSet::new();
    for rel in [
        "debian/dpkg-log/industio-ubuntu20.04-armhf_dpkg_excerpt_L2002-2116.log",
        "debian/dpkg-log/industio-ubuntu20.04-armhf_dpkg_excerpt_L3817-3924.log",
        "debian/dpkg-log/riscv64-debian-sid_dpkg.log",
        "debian/dpkg-log/plaso_dpkg.log",
    ] {
        let text = String::from_utf8(sample(rel)).unwrap();
        for line in text.lines() {
            let w: Vec<&str> = line.split(' ').collect();
            if w.len() == 6
                && matches!(
                    w[2],
                    "install" | "upgrade" | "configure" | "remove" | "purge" | "trigproc"
                )
            {
                set.extend(
                    [w[4], w[5]]
                        .into_iter()
                        .filter(|v| *v != "<none>")
                        .map(str::to_owned),
                );
            }
        }
    }
    for rel in [
        "debian/apt-history/plaso_apt_history.log",
        "debian/apt-history/industio-ubuntu20.04-armhf_history.log",
    ] {
        let text = String::from_utf8(sample(rel)).unwrap();
        for inside in text.split(" (").skip(1) {
            let inside = inside.split(')').next().unwrap();
            for v in inside.split(", ") {
                if v != "automatic" && !v.is_empty() {
                    set.insert(v.to_owned());
                }
            }
        }
    }
    set.into_iter().collect()
}

/// A small deterministic generator, so the pairs are the same every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn pairs() -> Vec<(String, String)> {
    let from_samples = sample_versions();
    assert!(
        from_samples.len() > 300,
        "expected many versions in the samples, got {}",
        from_samples.len()
    );
    let mut pairs = Vec::new();
    // Every tricky pair, both ways round.
    for a in TRICKY {
        for b in TRICKY {
            if a < b {
                pairs.push((a.to_string(), b.to_string()));
            }
        }
    }
    // Neighbours in sorted order (they share prefixes), and random pairs.
    for w in from_samples.windows(2) {
        pairs.push((w[0].clone(), w[1].clone()));
    }
    let mut rng = Lcg(42);
    for _ in 0..300 {
        let a = &from_samples[rng.next(from_samples.len())];
        let b = &from_samples[rng.next(from_samples.len())];
        pairs.push((a.clone(), b.clone()));
    }
    // Equal pairs: a version with itself, with an explicit zero epoch, with
    // an explicit empty revision.
    for _ in 0..40 {
        let a = &from_samples[rng.next(from_samples.len())];
        pairs.push((a.clone(), a.clone()));
        if !a.contains(':') {
            pairs.push((a.clone(), format!("0:{a}")));
        }
        if !a.contains('-') {
            pairs.push((a.clone(), format!("{a}-0")));
        }
    }
    // Sample versions against tricky ones.
    for _ in 0..100 {
        let a = &from_samples[rng.next(from_samples.len())];
        let b = TRICKY[rng.next(TRICKY.len())];
        pairs.push((a.clone(), b.to_owned()));
    }
    pairs
}

fn dpkg_says(a: &str, b: &str) -> Ordering {
    let run = |op: &str| {
        Command::new("dpkg")
            .args(["--compare-versions", a, op, b])
            .output()
            .expect("dpkg runs")
    };
    let lt = run("lt");
    match lt.status.code() {
        Some(0) => Ordering::Less,
        Some(1) => {
            if run("eq").status.code() == Some(0) {
                Ordering::Equal
            } else {
                Ordering::Greater
            }
        }
        other => panic!(
            "dpkg --compare-versions {a:?} lt {b:?} exited {other:?}: {}",
            String::from_utf8_lossy(&lt.stderr)
        ),
    }
}

fn dpkg_available() -> bool {
    let found = Command::new("dpkg")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("PATCHAUDIT_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            panic!("dpkg is required (PATCHAUDIT_REQUIRE_SERVICES=1) but was not found");
        }
        eprintln!("\n!!!!!!!! SKIPPED: dpkg is not installed; the dpkg version comparison was NOT checked against dpkg --compare-versions !!!!!!!!\n");
    }
    found
}

#[test]
fn dpkg_comparison_matches_dpkg_compare_versions() {
    if !dpkg_available() {
        return;
    }
    let pairs = pairs();
    assert!(pairs.len() >= 500, "only {} pairs", pairs.len());
    let mut mismatches = Vec::new();
    let mut seen = [0usize; 3];
    for (a, b) in &pairs {
        let ours = dpkg_cmp(a, b).unwrap_or_else(|e| panic!("{a:?} vs {b:?}: {e}"));
        let theirs = dpkg_says(a, b);
        seen[(theirs as i8 + 1) as usize] += 1;
        if ours != theirs {
            mismatches.push(format!("{a} vs {b}: ours {ours:?}, dpkg {theirs:?}"));
        }
        assert_eq!(
            dpkg_cmp(b, a).unwrap(),
            ours.reverse(),
            "{a} vs {b} is not antisymmetric"
        );
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} pairs differ:\n{}",
        mismatches.len(),
        pairs.len(),
        mismatches.join("\n")
    );
    // The pairs must exercise all three answers.
    assert!(
        seen.iter().all(|&n| n > 20),
        "answers seen (lt, eq, gt): {seen:?}"
    );
    eprintln!(
        "dpkg comparison agreed with dpkg --compare-versions on {} pairs (lt/eq/gt: {seen:?})",
        pairs.len()
    );
}

#[test]
fn dpkg_rejects_what_dpkg_rejects() {
    for bad in ["", "1.0-", "x:1", ":1", "1:-1", "1 0"] {
        assert!(DebVersion::parse(bad).is_err(), "{bad:?}");
    }
    if !dpkg_available() {
        return;
    }
    for bad in ["1.0-", "x:1", ":1"] {
        let out = Command::new("dpkg")
            .args(["--compare-versions", bad, "lt", "1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "dpkg accepted {bad:?}");
    }
}

/// `(a, b, rpmvercmp(a, b))`, from rpm's tests/rpmvercmp.at.
const RPM_VECTORS: &[(&str, &str, i8)] = &[
    ("1.0", "1.0", 0),
    ("1.0", "2.0", -1),
    ("2.0", "1.0", 1),
    ("2.0.1", "2.0.1", 0),
    ("2.0", "2.0.1", -1),
    ("2.0.1", "2.0", 1),
    ("2.0.1a", "2.0.1a", 0),
    ("2.0.1a", "2.0.1", 1),
    ("2.0.1", "2.0.1a", -1),
    ("5.5p1", "5.5p1", 0),
    ("5.5p1", "5.5p2", -1),
    ("5.5p2", "5.5p1", 1),
    ("5.5p10", "5.5p10", 0),
    ("5.5p1", "5.5p10", -1),
    ("5.5p10", "5.5p1", 1),
    ("10xyz", "10.1xyz", -1),
    ("10.1xyz", "10xyz", 1),
    ("xyz10", "xyz10", 0),
    ("xyz10", "xyz10.1", -1),
    ("xyz10.1", "xyz10", 1),
    ("xyz.4", "xyz.4", 0),
    ("xyz.4", "8", -1),
    ("8", "xyz.4", 1),
    ("xyz.4", "2", -1),
    ("2", "xyz.4", 1),
    ("5.5p2", "5.6p1", -1),
    ("5.6p1", "5.5p2", 1),
    ("5.6p1", "6.5p1", -1),
    ("6.5p1", "5.6p1", 1),
    ("6.0.rc1", "6.0", 1),
    ("6.0", "6.0.rc1", -1),
    ("10b2", "10a1", 1),
    ("10a2", "10b2", -1),
    ("1.0aa", "1.0aa", 0),
    ("1.0a", "1.0aa", -1),
    ("1.0aa", "1.0a", 1),
    ("10.0001", "10.0001", 0),
    ("10.0001", "10.1", 0),
    ("10.1", "10.0001", 0),
    ("10.0001", "10.0039", -1),
    ("10.0039", "10.0001", 1),
    ("4.999.9", "5.0", -1),
    ("5.0", "4.999.9", 1),
    ("20101121", "20101121", 0),
    ("20101121", "20101122", -1),
    ("20101122", "20101121", 1),
    ("2_0", "2_0", 0),
    ("2.0", "2_0", 0),
    ("2_0", "2.0", 0),
    // RhBug:178798
    ("a", "a", 0),
    ("a+", "a+", 0),
    ("a+", "a_", 0),
    ("a_", "a+", 0),
    ("+a", "+a", 0),
    ("+a", "_a", 0),
    ("_a", "+a", 0),
    ("+_", "+_", 0),
    ("_+", "+_", 0),
    ("_+", "_+", 0),
    ("+", "_", 0),
    ("_", "+", 0),
    // Tilde
    ("1.0~rc1", "1.0~rc1", 0),
    ("1.0~rc1", "1.0", -1),
    ("1.0", "1.0~rc1", 1),
    ("1.0~rc1", "1.0~rc2", -1),
    ("1.0~rc2", "1.0~rc1", 1),
    ("1.0~rc1~git123", "1.0~rc1~git123", 0),
    ("1.0~rc1~git123", "1.0~rc1", -1),
    ("1.0~rc1", "1.0~rc1~git123", 1),
    // Caret
    ("1.0^", "1.0^", 0),
    ("1.0^", "1.0", 1),
    ("1.0", "1.0^", -1),
    ("1.0^git1", "1.0^git1", 0),
    ("1.0^git1", "1.0", 1),
    ("1.0", "1.0^git1", -1),
    ("1.0^git1", "1.0^git2", -1),
    ("1.0^git2", "1.0^git1", 1),
    ("1.0^git1", "1.01", -1),
    ("1.01", "1.0^git1", 1),
    ("1.0^20160101", "1.0^20160101", 0),
    ("1.0^20160101", "1.0.1", -1),
    ("1.0.1", "1.0^20160101", 1),
    ("1.0^20160101^git1", "1.0^20160101^git1", 0),
    ("1.0^20160102", "1.0^20160101^git1", 1),
    ("1.0^20160101^git1", "1.0^20160102", -1),
    // Tilde and caret
    ("1.0~rc1^git1", "1.0~rc1^git1", 0),
    ("1.0~rc1^git1", "1.0~rc1", 1),
    ("1.0~rc1", "1.0~rc1^git1", -1),
    ("1.0^git1~pre", "1.0^git1~pre", 0),
    ("1.0^git1", "1.0^git1~pre", 1),
    ("1.0^git1~pre", "1.0^git1", -1),
];

#[test]
fn rpmvercmp_matches_rpms_test_vectors() {
    let mut bad = Vec::new();
    for &(a, b, want) in RPM_VECTORS {
        let got = rpmvercmp(a, b) as i8;
        if got != want {
            bad.push(format!("rpmvercmp({a}, {b}) = {got}, rpm says {want}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // Every RPMVERCMP line of the file, tilde and caret cases included.
    assert_eq!(RPM_VECTORS.len(), 91);
}

#[test]
fn rpm_evr_orders_epoch_then_version_then_release() {
    assert_eq!(rpm_evr_cmp("1:1.0-1", "9.9-9"), Ordering::Greater);
    assert_eq!(
        rpm_evr_cmp("4.2.6p5-1.el6.centos", "4.2.6p5-10.el6.centos.1"),
        Ordering::Less
    );
    assert_eq!(
        rpm_evr_cmp("1:1.0.2k-21.el7_9", "1:1.0.2k-21.0.3.el7_9"),
        Ordering::Less
    );
    assert_eq!(
        rpm_evr_cmp("7.29.0-59.0.1.el7_9.1", "7.29.0-59.0.3.el7_9.1"),
        Ordering::Less
    );
    assert_eq!(rpm_evr_cmp("1.0-1", "1.0-1"), Ordering::Equal);
}
