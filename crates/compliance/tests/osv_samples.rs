//! Every OSV record under `shared/samples/osv` (see section 5 of
//! `shared/samples/PROVENANCE.md`) imports, and gives the facts checked by
//! hand against the file. The schema (`schema/osv-schema.json`) is not a
//! record and is left out.

use patchaudit_compliance::osv::{import, import_many, OsvError, OsvImport};
use patchaudit_compliance::{AffectedPackage, AppliesTo, Severity};
use std::path::{Path, PathBuf};

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/samples/osv");
const SCHEMA: &str = "schema/osv-schema.json";
const NO_SEVERITY: &str = "the record has no usable severity";
const NO_PACKAGES: &str = "the record lists no affected packages";

/// What one sample must give.
struct Expect {
    /// The path under `shared/samples/osv`.
    file: &'static str,
    id: &'static str,
    /// The whole title, or its start when `cut` (then it is 512 characters
    /// ending in an ellipsis).
    title: &'static str,
    cut: bool,
    released_at: &'static str,
    modified_at: &'static str,
    severity: Severity,
    cves: &'static [&'static str],
    aliases: &'static [&'static str],
    packages: usize,
    /// Packages that must be among them: ecosystem, name, fixed version.
    has: &'static [(&'static str, &'static str, Option<&'static str>)],
    /// One fragment per expected warning; the count must match too.
    warnings: &'static [&'static str],
}

const EXPECT: &[Expect] = &[
    Expect {
        file: "almalinux/ALBA-2020_5502.json",
        id: "ALBA-2020:5502",
        title: "icedtea-web bug fix update",
        cut: false,
        released_at: "2020-12-15T16:03:58.000000Z",
        modified_at: "2021-11-12T10:20:56.000000Z",
        severity: Severity::None,
        cves: &[],
        aliases: &[],
        packages: 1,
        has: &[("AlmaLinux:8", "icedtea-web", Some("1.7.1-18.el8_3"))],
        warnings: &[NO_SEVERITY],
    },
    Expect {
        file: "almalinux/ALSA-2023_2340.json",
        id: "ALSA-2023:2340",
        title: "Moderate: libtiff security update",
        cut: false,
        released_at: "2023-05-09T00:00:00.000000Z",
        modified_at: "2023-05-12T06:12:08.000000Z",
        // "Moderate:" is only in the summary; its 10 CVEs are in `related`.
        severity: Severity::Medium,
        cves: &[
            "CVE-2022-3570",
            "CVE-2022-3597",
            "CVE-2022-3598",
            "CVE-2022-3599",
            "CVE-2022-3626",
            "CVE-2022-3627",
            "CVE-2022-3970",
            "CVE-2022-4645",
            "CVE-2023-30774",
            "CVE-2023-30775",
        ],
        aliases: &[],
        packages: 3,
        has: &[
            ("AlmaLinux:9", "libtiff", Some("4.4.0-7.el9")),
            ("AlmaLinux:9", "libtiff-tools", Some("4.4.0-7.el9")),
        ],
        warnings: &[],
    },
    Expect {
        file: "almalinux/ALSA-2024_5309.json",
        id: "ALSA-2024:5309",
        title: "Moderate: python-urllib3 security update",
        cut: false,
        released_at: "2024-08-13T00:00:00.000000Z",
        modified_at: "2024-08-21T12:12:11.000000Z",
        // The summary's "Moderate:"; the CVE is in `related`.
        severity: Severity::Medium,
        cves: &["CVE-2024-37891"],
        aliases: &[],
        packages: 1,
        has: &[("AlmaLinux:8", "python3-urllib3", Some("1.24.2-8.el8_10"))],
        warnings: &[],
    },
    Expect {
        file: "almalinux/ALSA-2026_54178.json",
        id: "ALSA-2026:54178",
        title: "Moderate: grafana security, bug fix, and enhancement update",
        cut: false,
        released_at: "2026-08-12T00:00:00.000000Z",
        modified_at: "2026-08-13T08:05:33.000000Z",
        // The summary's "Moderate:"; `related` lists the CVEs unsorted.
        severity: Severity::Medium,
        cves: &[
            "CVE-2026-33376",
            "CVE-2026-33377",
            "CVE-2026-33382",
            "CVE-2026-8609",
        ],
        aliases: &[],
        packages: 2,
        has: &[
            ("AlmaLinux:10", "grafana", Some("10.2.6-28.el10_2.4")),
            ("AlmaLinux:10", "grafana-selinux", Some("10.2.6-28.el10_2.4")),
        ],
        warnings: &[],
    },
    Expect {
        file: "debian/DSA-3029-1.json",
        id: "DSA-3029-1",
        title: "nginx - security update",
        cut: false,
        released_at: "2014-09-20T00:00:00.000000Z",
        modified_at: "2014-09-20T08:18:07.000000Z",
        severity: Severity::None,
        cves: &["CVE-2014-3616"],
        aliases: &[],
        packages: 1,
        has: &[("Debian:7", "nginx", Some("1.2.1-2.2+wheezy3"))],
        warnings: &[NO_SEVERITY],
    },
    Expect {
        file: "other/CVE-2018-5407_alpine.json",
        id: "CVE-2018-5407",
        // No summary: the first line of details.
        title: "Simultaneous Multi-threading (SMT) in processors can enable local users to exploit software vulnerable to timing attacks via a side-channel timing attack on 'port contention'.",
        cut: false,
        released_at: "2018-11-15T21:29:00.000000Z",
        modified_at: "2024-05-29T23:34:56.000000Z",
        // CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:N/A:N is 4.7.
        severity: Severity::Medium,
        cves: &["CVE-2018-5407"],
        aliases: &[],
        packages: 6,
        has: &[
            ("Alpine:v3.3", "openssl", Some("1.0.2q-r0")),
            ("Alpine:v3.8", "openssl", Some("1.0.2q-r0")),
        ],
        // affected[6] has only a GIT range (of nodejs/node).
        warnings: &["affected[6] names no package (only ranges); it is skipped"],
    },
    Expect {
        file: "other/PYSEC-2023-74.json",
        id: "PYSEC-2023-74",
        title: "Requests is a HTTP library. Since Requests 2.3.0, Requests has been leaking Proxy-Authorization headers",
        cut: true,
        released_at: "2023-05-26T18:15:00.000000Z",
        modified_at: "2023-06-05T01:13:00.534973Z",
        severity: Severity::None,
        cves: &["CVE-2023-32681"],
        aliases: &["GHSA-j8r2-6x86-q33q"],
        packages: 1,
        // The GIT range's fixed commit comes first and is not a version.
        has: &[("PyPI", "requests", Some("2.31.0"))],
        warnings: &[NO_SEVERITY],
    },
    Expect {
        file: "other/SUSE-FU-2022_0444-1.json",
        id: "SUSE-FU-2022:0444-1",
        title: "Feature update for venv-salt-minion",
        cut: false,
        released_at: "2022-02-16T15:20:54.000000Z",
        modified_at: "2022-02-16T15:20:54.000000Z",
        // A feature update: no rating anywhere, and no summary prefix. Its
        // 51 CVEs are all in `related`.
        severity: Severity::None,
        cves: &[
            "CVE-2011-3389",
            "CVE-2011-4944",
            "CVE-2012-0845",
            "CVE-2012-1150",
            "CVE-2013-1752",
            "CVE-2013-4238",
            "CVE-2013-4314",
            "CVE-2014-0012",
            "CVE-2014-1829",
            "CVE-2014-1830",
            "CVE-2014-2667",
            "CVE-2014-4650",
            "CVE-2014-7202",
            "CVE-2014-7203",
            "CVE-2014-9721",
            "CVE-2015-2296",
            "CVE-2016-10745",
            "CVE-2016-9015",
            "CVE-2017-18342",
            "CVE-2018-18074",
            "CVE-2018-20060",
            "CVE-2018-7750",
            "CVE-2019-10906",
            "CVE-2019-11236",
            "CVE-2019-11324",
            "CVE-2019-13132",
            "CVE-2019-20907",
            "CVE-2019-20916",
            "CVE-2019-5010",
            "CVE-2019-6250",
            "CVE-2019-8341",
            "CVE-2019-9740",
            "CVE-2019-9947",
            "CVE-2020-14343",
            "CVE-2020-15166",
            "CVE-2020-15523",
            "CVE-2020-15801",
            "CVE-2020-1747",
            "CVE-2020-25659",
            "CVE-2020-26137",
            "CVE-2020-27783",
            "CVE-2020-28493",
            "CVE-2020-29651",
            "CVE-2020-36242",
            "CVE-2020-8492",
            "CVE-2021-23336",
            "CVE-2021-28957",
            "CVE-2021-29921",
            "CVE-2021-3177",
            "CVE-2021-33503",
            "CVE-2021-3426",
        ],
        aliases: &[],
        packages: 0,
        has: &[],
        warnings: &[NO_PACKAGES, NO_SEVERITY],
    },
    Expect {
        file: "redhat/RHSA-2022_0216.json",
        id: "RHSA-2022:0216",
        title: "Red Hat Security Advisory: Red Hat JBoss Enterprise Application Platform 7.4 security update",
        cut: false,
        released_at: "2024-09-01T17:42:35.000000Z",
        modified_at: "2024-09-01T17:42:35.000000Z",
        // CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H is 8.1; "Red Hat
        // Security Advisory:" is not a rating. The CVEs are in `related`.
        severity: Severity::High,
        cves: &["CVE-2021-44832", "CVE-2021-45046", "CVE-2021-45105"],
        aliases: &[],
        packages: 0,
        has: &[],
        warnings: &[NO_PACKAGES],
    },
    Expect {
        file: "redhat/RHSA-2024_4546.json",
        id: "RHSA-2024:4546",
        title: "Red Hat Security Advisory: git-lfs security update",
        cut: false,
        released_at: "2024-09-02T14:30:00.000000Z",
        modified_at: "2024-09-02T14:30:00.000000Z",
        // CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H is 7.5. The CVE is
        // in `upstream`; `related` has only GO-2024-2687, not an alias.
        severity: Severity::High,
        cves: &["CVE-2023-45288"],
        aliases: &[],
        packages: 9,
        has: &[
            ("Red Hat:rhel_aus:8.6::appstream", "git-lfs", Some("0:2.13.3-3.el8_6.1")),
            ("Red Hat:rhel_tus:8.6::appstream", "git-lfs-debugsource", Some("0:2.13.3-3.el8_6.1")),
        ],
        warnings: &[],
    },
    Expect {
        file: "rocky/RLSA-2021_3891.json",
        id: "RLSA-2021:3891",
        title: "Important: java-11-openjdk security update",
        cut: false,
        released_at: "2021-10-20T12:41:00.000000Z",
        modified_at: "2023-02-02T14:11:02.724098Z",
        // CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:H/I:N/A:N is 6.8 and wins,
        // though the summary says Important; the disagreement is named.
        severity: Severity::Medium,
        cves: &[
            "CVE-2021-35550",
            "CVE-2021-35556",
            "CVE-2021-35559",
            "CVE-2021-35561",
            "CVE-2021-35564",
            "CVE-2021-35565",
            "CVE-2021-35567",
            "CVE-2021-35578",
            "CVE-2021-35586",
            "CVE-2021-35603",
        ],
        aliases: &[],
        packages: 1,
        has: &[("Rocky Linux:8", "java-11-openjdk", Some("1:11.0.13.0.8-1.el8_4"))],
        warnings: &["severity medium is taken from severity[0].score (CVSS_V3 base score 6.8), but summary (prefix \"Important:\") says high"],
    },
    Expect {
        file: "rocky/RLSA-2023_3220.json",
        id: "RLSA-2023:3220",
        title: "Important: firefox security update",
        cut: false,
        released_at: "2023-05-18T19:52:18.288616Z",
        modified_at: "2023-05-18T19:53:57.454316Z",
        // The summary's "Important:"; the CVEs are in `related`.
        severity: Severity::High,
        cves: &[
            "CVE-2023-32205",
            "CVE-2023-32206",
            "CVE-2023-32207",
            "CVE-2023-32211",
            "CVE-2023-32212",
            "CVE-2023-32213",
            "CVE-2023-32215",
        ],
        aliases: &[],
        packages: 1,
        has: &[("Rocky Linux:8", "firefox", Some("0:102.11.0-2.el8_7"))],
        warnings: &[],
    },
    Expect {
        file: "rocky/RLSA-2024_3671.json",
        id: "RLSA-2024:3671",
        title: "Moderate: ruby:3.3 security, bug fix, and enhancement update",
        cut: false,
        released_at: "2024-06-14T14:00:40.182624Z",
        modified_at: "2024-06-14T14:02:44.124064Z",
        // The summary's "Moderate:"; the CVEs are in `related`.
        severity: Severity::Medium,
        cves: &["CVE-2024-27280", "CVE-2024-27281", "CVE-2024-27282"],
        aliases: &[],
        packages: 3,
        has: &[
            ("Rocky Linux:9", "ruby", Some("0:3.3.1-2.module+el9.4.0+20787+4c237fd3")),
            ("Rocky Linux:9", "rubygem-pg", Some("0:1.5.4-1.module+el9.4.0+20787+4c237fd3")),
        ],
        warnings: &[],
    },
    Expect {
        file: "ubuntu/UBUNTU-CVE-2021-3782.json",
        id: "UBUNTU-CVE-2021-3782",
        title: "An internal reference count is held on the buffer pool, incremented every time a new buffer is created from the pool.",
        cut: true,
        released_at: "2022-08-30T20:51:00.000000Z",
        modified_at: "2026-04-22T07:39:49.000000Z",
        // Two identical CVSS 3.1 vectors (6.6) and Ubuntu "medium" agree.
        // The CVE is in `upstream`; `related` has only USNs.
        severity: Severity::Medium,
        cves: &["CVE-2021-3782"],
        aliases: &[],
        packages: 4,
        has: &[
            ("Ubuntu:Pro:16.04:LTS", "wayland", Some("1.12.0-1~ubuntu16.04.3+esm1")),
            ("Ubuntu:22.04:LTS", "wayland", Some("1.20.0-1ubuntu0.1")),
        ],
        warnings: &[],
    },
    Expect {
        file: "ubuntu/UBUNTU-CVE-2022-24823.json",
        id: "UBUNTU-CVE-2022-24823",
        title: "Netty is an open-source, asynchronous event-driven network application framework.",
        cut: true,
        released_at: "2022-05-06T12:15:00.000000Z",
        modified_at: "2026-06-08T16:11:47.000000Z",
        // CVSS 3.1 says 5.5 (medium), Ubuntu's priority says low.
        severity: Severity::Medium,
        cves: &["CVE-2022-24823"],
        aliases: &[],
        packages: 8,
        has: &[
            ("Ubuntu:Pro:22.04:LTS", "netty", Some("1:4.1.48-4+deb11u2ubuntu0.1~esm1")),
            ("Ubuntu:Pro:14.04:LTS", "netty", None),
            ("Ubuntu:25.10", "netty", None),
        ],
        warnings: &["severity medium is taken from severity[0].score (CVSS_V3 base score 5.5), but severity[2].score (Ubuntu priority low) says low"],
    },
    Expect {
        file: "ubuntu/UBUNTU-CVE-2025-38094.json",
        id: "UBUNTU-CVE-2025-38094",
        title: "In the Linux kernel, the following vulnerability has been resolved: net: cadence: macb: Fix a possible deadlock in macb_halt_tx.",
        cut: false,
        released_at: "2025-07-04T00:00:00.000000Z",
        modified_at: "2025-07-04T00:00:00.000000Z",
        // Only an Ubuntu priority.
        severity: Severity::Medium,
        cves: &["CVE-2025-38094"],
        aliases: &[],
        packages: 1,
        has: &[("Ubuntu:Pro:14.04:LTS", "linux", None)],
        warnings: &[],
    },
    Expect {
        file: "ubuntu/USN-5614-1.json",
        id: "USN-5614-1",
        title: "wayland vulnerability",
        cut: false,
        released_at: "2022-09-15T16:43:06.000000Z",
        modified_at: "2026-04-22T07:37:02.000000Z",
        // Each of affected[0..3].database_specific.cves_map rates
        // CVE-2021-3782 Ubuntu "medium" (its CVSS vectors there are not
        // scored), and names the CVE; its upstream UBUNTU-CVE-2021-3782 is
        // not a CVE id.
        severity: Severity::Medium,
        cves: &["CVE-2021-3782"],
        aliases: &[],
        packages: 3,
        has: &[
            ("Ubuntu:18.04:LTS", "wayland", Some("1.16.0-1ubuntu1.1~18.04.4")),
            ("Ubuntu:20.04:LTS", "wayland", Some("1.18.0-1ubuntu0.1")),
            ("Ubuntu:22.04:LTS", "wayland", Some("1.20.0-1ubuntu0.1")),
        ],
        warnings: &[],
    },
];

/// Every `.json` file under `dir`, as paths relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            let rel = path.strip_prefix(root).expect("under the root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn samples() -> Vec<String> {
    let root = PathBuf::from(SAMPLES);
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files.sort();
    files
}

fn read(rel: &str) -> Vec<u8> {
    let path = Path::new(SAMPLES).join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_sample_record_has_hand_checked_facts() {
    let found = samples();
    assert!(
        found.iter().any(|f| f == SCHEMA),
        "the schema is where PROVENANCE.md says: {found:?}"
    );
    let records: Vec<&str> = found
        .iter()
        .map(String::as_str)
        .filter(|f| *f != SCHEMA)
        .collect();
    let mut expected: Vec<&str> = EXPECT.iter().map(|e| e.file).collect();
    expected.sort();
    assert_eq!(
        records, expected,
        "a sample was added or removed: give it facts below"
    );
    assert_eq!(records.len(), 17);
}

fn check(e: &Expect, got: &OsvImport) {
    let f = e.file;
    let entry = &got.entry;
    assert_eq!(entry.id.as_str(), e.id, "{f}: id");
    if e.cut {
        assert!(
            entry.title.starts_with(e.title),
            "{f}: title {:?}",
            entry.title
        );
        assert_eq!(
            entry.title.chars().count(),
            512,
            "{f}: a cut title fills the limit"
        );
        assert!(
            entry.title.ends_with('…'),
            "{f}: a cut title ends with an ellipsis"
        );
    } else if f.contains("2025-38094") {
        // Long, but under the limit: the whole first line of details.
        assert!(
            entry.title.starts_with(e.title),
            "{f}: title {:?}",
            entry.title
        );
        assert!(
            entry.title.ends_with("we do not have a deadlock anymore."),
            "{f}: title {:?}",
            entry.title
        );
    } else {
        assert_eq!(entry.title, e.title, "{f}: title");
    }
    assert_eq!(
        entry.released_at.to_rfc3339(),
        e.released_at,
        "{f}: released_at"
    );
    assert_eq!(
        entry.modified_at.map(|t| t.to_rfc3339()).as_deref(),
        Some(e.modified_at),
        "{f}: modified_at"
    );
    assert_eq!(entry.severity, e.severity, "{f}: severity");
    let cves: Vec<&str> = entry.cves.iter().map(|c| c.as_str()).collect();
    assert_eq!(cves, e.cves, "{f}: cves");
    assert_eq!(entry.aliases, e.aliases, "{f}: aliases");
    assert_eq!(
        entry.packages.len(),
        e.packages,
        "{f}: package count: {:?}",
        entry.packages
    );
    for (ecosystem, name, fixed) in e.has {
        let want = AffectedPackage {
            ecosystem: (*ecosystem).into(),
            name: (*name).into(),
            fixed: fixed.map(Into::into),
        };
        assert!(
            entry.packages.contains(&want),
            "{f}: no {want:?} in {:?}",
            entry.packages
        );
    }
    assert_eq!(
        got.warnings.len(),
        e.warnings.len(),
        "{f}: warnings {:?}",
        got.warnings
    );
    for w in e.warnings {
        assert!(
            got.warnings.iter().any(|g| g.contains(w)),
            "{f}: no warning like {w:?} in {:?}",
            got.warnings
        );
    }
    assert_eq!(
        got.warnings.iter().any(|w| w.contains(NO_SEVERITY)),
        e.warnings.contains(&NO_SEVERITY)
    );
    assert_eq!(entry.applies_to, AppliesTo::All);
}

#[test]
fn every_sample_record_imports_as_checked_by_hand() {
    for e in EXPECT {
        let bytes = read(e.file);
        let got = import(&bytes, AppliesTo::All).unwrap_or_else(|err| panic!("{}: {err}", e.file));
        check(e, &got);
        // The same file through import_many: one record, the same result.
        let many =
            import_many(&bytes, AppliesTo::All).unwrap_or_else(|err| panic!("{}: {err}", e.file));
        assert_eq!(many.len(), 1, "{}", e.file);
        assert_eq!(many[0].as_ref().ok(), Some(&got), "{}", e.file);
    }
}

#[test]
fn the_samples_concatenated_into_an_array_import_one_by_one() {
    let values: Vec<serde_json::Value> = EXPECT
        .iter()
        .map(|e| serde_json::from_slice(&read(e.file)).expect("a sample is JSON"))
        .collect();
    let array = serde_json::to_vec(&values).expect("serialises");
    let results = import_many(&array, AppliesTo::All).expect("an array of records");
    assert_eq!(results.len(), EXPECT.len());
    for (i, (e, r)) in EXPECT.iter().zip(&results).enumerate() {
        let got = r.as_ref().unwrap_or_else(|err| panic!("{}: {err}", e.file));
        let alone = import(&read(e.file), AppliesTo::All).expect("imports alone");
        assert_eq!(got.entry, alone.entry, "{}", e.file);
        // Paths in warnings start with the record's position in the array.
        let unprefixed: Vec<String> = got
            .warnings
            .iter()
            .map(|w| w.replace(&format!("[{i}]."), ""))
            .collect();
        assert_eq!(unprefixed, alone.warnings, "{}", e.file);
    }
    assert!(results[14]
        .as_ref()
        .is_ok_and(|r| r.warnings[0].contains("from [14].severity[0].score")));
    assert!(results[10]
        .as_ref()
        .is_ok_and(|r| r.warnings[0].contains("but [10].summary (prefix")));
}

#[test]
fn the_schema_is_not_a_record() {
    let err = import(&read(SCHEMA), AppliesTo::All).unwrap_err();
    assert!(
        matches!(&err, OsvError::Missing { path, .. } if path == "id"),
        "{err:?}"
    );
}
