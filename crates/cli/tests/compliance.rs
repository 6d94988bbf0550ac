//! End-to-end tests of the compliance commands of the `patchaudit` binary:
//! `catalog`, `tags`, `policy`, `exception` and `report`, on the local
//! database and through a server, with their exit codes and output formats.

mod common;

use common::{cmd, stderr, stdout, Server};
use patchaudit_compliance::DAY_MICROS;
use patchaudit_domain::Timestamp;
use patchaudit_server::report_out::{PAIRS_CSV_COLUMNS, PATCHES_CSV_COLUMNS, SYSTEMS_CSV_COLUMNS};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// A `USER` every child is given: changes must still be recorded under the
/// user the system says runs the command ([`actor`]), not this claim.
const USER: &str = "pa-tester";

/// Who local changes are recorded as.
fn actor() -> String {
    let who = format!(
        "local:{}",
        whoami::username().expect("the OS names this user")
    );
    assert_ne!(
        who,
        format!("local:{USER}"),
        "the test must not run as {USER}"
    );
    who
}
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/samples/osv");

// ------------------------------------------------------------------ helpers

/// A temporary directory with a SQLite ledger named by `PATCHAUDIT_DATABASE_URL`.
struct Ledger {
    dir: tempfile::TempDir,
    url: String,
}

impl Ledger {
    fn new() -> Self {
        Self::named("ledger.db")
    }

    fn named(db: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join(db).display());
        Ledger { dir, url }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the binary in the directory, as [`USER`], on the ledger.
    fn run(&self, args: &[&str]) -> Output {
        cmd(self.path())
            .env("USER", USER)
            .env("PATCHAUDIT_DATABASE_URL", &self.url)
            .args(args)
            .output()
            .expect("the binary runs")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "patchaudit {args:?} exited {:?}:\n{}",
            o.status.code(),
            stderr(&o)
        );
        stdout(&o)
    }

    /// Runs and parses stdout as JSON.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("patchaudit {args:?} printed no JSON ({e}):\n{out}"))
    }

    /// Runs and expects exit `code`; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "patchaudit {args:?}: stdout:\n{}\nstderr:\n{}",
            stdout(&o),
            stderr(&o)
        );
        stderr(&o)
    }

    /// Writes a file in the directory and returns its path.
    fn write(&self, name: &str, content: &str) -> String {
        let p = self.path().join(name);
        std::fs::write(&p, content).expect("write a test file");
        p.display().to_string()
    }

    /// Records one event with `log`.
    fn log(&self, extra: &[&str], system: &str, patch: &str, status: &str, at: &str) {
        let mut args = vec![
            "log",
            "--system",
            system,
            "--patch-id",
            patch,
            "--status",
            status,
            "--applied-at",
            at,
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
    }
}

/// `days` days before `now`, as RFC 3339.
fn ago(now: Timestamp, days: i64) -> String {
    Timestamp::from_micros(now.as_micros() - days * DAY_MICROS).to_rfc3339()
}

/// `days` days after `now`, as RFC 3339.
fn ahead(now: Timestamp, days: i64) -> String {
    Timestamp::from_micros(now.as_micros() + days * DAY_MICROS).to_rfc3339()
}

/// An instant strictly between what was written before and what is written
/// after the call.
fn instant_between() -> Timestamp {
    std::thread::sleep(Duration::from_millis(20));
    let t = Timestamp::now();
    std::thread::sleep(Duration::from_millis(20));
    t
}

/// Every OSV record file under the samples, the schema left out, sorted.
fn osv_samples() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = e.expect("a directory entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "schema") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|x| x == "json") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(Path::new(SAMPLES), &mut files);
    files.sort();
    files
}

fn sample(rel: &str) -> String {
    Path::new(SAMPLES).join(rel).display().to_string()
}

/// The ids of a `catalog list --format json` answer, sorted.
fn ids(page: &Value) -> Vec<String> {
    let mut v: Vec<String> = page["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries in {page}"))
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_owned())
        .collect();
    v.sort();
    v
}

/// (system, patch_id, state) of a report's pair list, sorted.
fn pairs(list: &Value) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|p| {
            (
                p["system"].as_str().unwrap().to_owned(),
                p["patch_id"].as_str().unwrap().to_owned(),
                p["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn triple(s: &str, p: &str, st: &str) -> (String, String, String) {
    (s.into(), p.into(), st.into())
}

/// Every state count, zeros included, as the report's JSON has them.
#[allow(clippy::too_many_arguments)]
fn states(
    missing: u64,
    overdue: u64,
    on_time: u64,
    late: u64,
    failed: u64,
    excepted: u64,
    unknown: u64,
) -> Value {
    json!({
        "missing": missing,
        "overdue": overdue,
        "applied_on_time": on_time,
        "applied_late": late,
        "failed": failed,
        "rolled_back": 0,
        "pending_reboot": 0,
        "excepted": excepted,
        "unknown": unknown,
    })
}

/// The row of `key` = `id` in a list of objects.
fn row<'a>(list: &'a Value, key: &str, id: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|r| r[key] == id)
        .unwrap_or_else(|| panic!("no {key} {id} in {list}"))
}

/// The ids the OSV samples give, with the four that have no usable severity.
const OSV_IDS: [&str; 17] = [
    "ALBA-2020:5502",
    "ALSA-2023:2340",
    "ALSA-2024:5309",
    "ALSA-2026:54178",
    "CVE-2018-5407",
    "DSA-3029-1",
    "PYSEC-2023-74",
    "RHSA-2022:0216",
    "RHSA-2024:4546",
    "RLSA-2021:3891",
    "RLSA-2023:3220",
    "RLSA-2024:3671",
    "SUSE-FU-2022:0444-1",
    "UBUNTU-CVE-2021-3782",
    "UBUNTU-CVE-2022-24823",
    "UBUNTU-CVE-2025-38094",
    "USN-5614-1",
];
const OSV_NO_SEVERITY: [&str; 4] = [
    "ALBA-2020:5502",
    "DSA-3029-1",
    "PYSEC-2023-74",
    "SUSE-FU-2022:0444-1",
];

// ------------------------------------------------------------------ help

#[test]
fn every_compliance_command_has_help_with_examples() {
    let l = Ledger::new();
    for sub in ["catalog", "tags", "policy", "exception", "report"] {
        let text = l.ok(&[sub, "--help"]);
        assert!(
            text.contains("Examples:"),
            "{sub} --help has no examples:\n{text}"
        );
        assert!(
            text.contains(&format!("patchaudit {sub}")),
            "{sub} --help shows no usage of itself:\n{text}"
        );
    }
    // The report's help names the exit code of --fail-on-overdue.
    assert!(l.ok(&["report", "--help"]).contains("exit 8"));
    // Nothing was created by asking for help.
    assert!(!l.path().join("ledger.db").exists());
}

// ------------------------------------------------------------------ catalog

#[test]
fn osv_samples_import_once_and_are_listed() {
    let l = Ledger::new();
    let files = osv_samples();
    assert!(
        files
            .iter()
            .all(|f| !f.to_string_lossy().contains("schema")),
        "the schema is no record"
    );
    let n = files.len();
    assert_eq!(n, OSV_IDS.len(), "one record per sample file: {files:?}");
    let mut args = vec!["catalog".to_owned(), "import-osv".to_owned()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let o = l.run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!("{n} entries written, 0 already current, 0 records rejected")
    );
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.contains("entries have no usable severity"))
        .unwrap_or_else(|| panic!("no list of entries without severity:\n{err}"));
    assert!(
        line.contains(&format!("{} entries", OSV_NO_SEVERITY.len())),
        "{line}"
    );
    // Each also has its own warning, naming its file.
    for (file, id) in [
        ("DSA-3029-1.json", "DSA-3029-1"),
        ("ALBA-2020_5502.json", "ALBA-2020:5502"),
    ] {
        assert!(
            err.lines().any(|l| l.starts_with("warning: ")
                && l.contains(file)
                && l.contains(&format!("{id}: the record has no usable severity"))),
            "no warning for {file}:\n{err}"
        );
    }
    for id in OSV_NO_SEVERITY {
        assert!(
            line.contains(id),
            "{id} is not listed as without severity: {line}"
        );
    }
    for id in ["RLSA-2023:3220", "USN-5614-1", "RHSA-2024:4546"] {
        assert!(
            !line.contains(id),
            "{id} has a severity but is listed: {line}"
        );
    }

    // Again: nothing changes, and it says so.
    let o = l.run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!("0 entries written, {n} already current, 0 records rejected")
    );

    let page = l.json(&["catalog", "list", "--format", "json"]);
    assert_eq!(ids(&page), OSV_IDS);
    let dsa = row(&page["entries"], "id", "DSA-3029-1");
    assert_eq!(dsa["severity"], "none");
    assert_eq!(dsa["cves"], json!(["CVE-2014-3616"]));
    assert!(dsa.get("applies_to").is_none(), "{dsa}");

    let e = l.json(&["catalog", "get", "RLSA-2023:3220", "--format", "json"]);
    assert_eq!(e["id"], "RLSA-2023:3220");
    assert_eq!(e["severity"], "high");
    assert_eq!(e["title"], "Important: firefox security update");
    assert_eq!(
        e["cves"],
        json!([
            "CVE-2023-32205",
            "CVE-2023-32206",
            "CVE-2023-32207",
            "CVE-2023-32211",
            "CVE-2023-32212",
            "CVE-2023-32213",
            "CVE-2023-32215"
        ])
    );
    assert!(
        e["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "firefox" && p["fixed"] == "0:102.11.0-2.el8_7"),
        "{e}"
    );
    assert_eq!(e["revision"]["changed_by"], actor());
    let table = l.ok(&["catalog", "get", "RLSA-2023:3220"]);
    assert!(
        table.contains("firefox") && table.contains("CVE-2023-32215"),
        "{table}"
    );

    // Filters.
    let high = l.json(&["catalog", "list", "--severity", "high", "--format", "json"]);
    assert_eq!(
        ids(&high),
        ["RHSA-2022:0216", "RHSA-2024:4546", "RLSA-2023:3220"]
    );
    let cve = l.json(&[
        "catalog",
        "list",
        "--cve",
        "CVE-2014-3616",
        "--format",
        "json",
    ]);
    assert_eq!(ids(&cve), ["DSA-3029-1"]);
    assert!(l
        .fails(&["catalog", "list", "--severity", "urgent"], 2)
        .contains("--severity"));

    // A re-import scoped to a tag is a new revision; the old one stays.
    let t = instant_between();
    let o = l.run(&[
        "catalog",
        "import-osv",
        &sample("rocky/RLSA-2023_3220.json"),
        "--applies-to-tag",
        "os=rocky",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "1 entries written, 0 already current, 0 records rejected"
    );
    let e = l.json(&["catalog", "get", "RLSA-2023:3220", "--format", "json"]);
    assert_eq!(e["applies_to"], json!({"tags": ["os=rocky"]}));
    let then = l.json(&[
        "catalog",
        "get",
        "RLSA-2023:3220",
        "--as-of",
        &t.to_rfc3339(),
        "--format",
        "json",
    ]);
    assert!(then.get("applies_to").is_none(), "{then}");
    let h = l.json(&["catalog", "history", "RLSA-2023:3220"]);
    let revs = h["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 2, "{h}");
    assert!(revs.iter().all(|r| r["changed_by"] == actor()), "{h}");
    assert!(revs[0]["content"].get("applies_to").is_none(), "{h}");
    assert_eq!(
        revs[1]["content"]["applies_to"]["tags"],
        json!(["os=rocky"])
    );
    assert!(revs[0]["rev"].as_u64() < revs[1]["rev"].as_u64(), "{h}");
    // The catalog as it stood at t had every entry already.
    let then = l.json(&[
        "catalog",
        "list",
        "--as-of",
        &t.to_rfc3339(),
        "--format",
        "json",
    ]);
    assert_eq!(ids(&then), OSV_IDS);

    // Tag and system scopes are exclusive, and tags must be key=value.
    l.fails(
        &[
            "catalog",
            "import-osv",
            &sample("debian/DSA-3029-1.json"),
            "--applies-to-tag",
            "os=debian",
            "--applies-to-system",
            "web-01",
        ],
        2,
    );
    l.fails(
        &[
            "catalog",
            "import-osv",
            &sample("debian/DSA-3029-1.json"),
            "--applies-to-tag",
            "debian",
        ],
        2,
    );
    // Not an OSV record: exit 3, and the other files are imported all the same.
    let schema = sample("schema/osv-schema.json");
    let o = l.run(&[
        "catalog",
        "import-osv",
        &schema,
        &sample("debian/DSA-3029-1.json"),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "0 entries written, 1 already current, 1 records rejected"
    );
    assert!(stderr(&o).contains("osv-schema.json"), "{}", stderr(&o));
    assert_eq!(
        ids(&l.json(&["catalog", "list", "--format", "json"])),
        OSV_IDS
    );
}

#[test]
fn a_bad_catalog_file_writes_nothing_and_missing_entries_are_not_found() {
    let l = Ledger::new();
    let now = Timestamp::now();
    let good = l.write(
        "good.json",
        &json!({"id": "KB-1", "severity": "critical", "released_at": ago(now, 3),
                "title": "First", "cves": ["CVE-2024-0001"]})
        .to_string(),
    );
    assert_eq!(
        l.ok(&["catalog", "put", &good]).trim(),
        "1 entries written, 0 already current"
    );
    assert_eq!(
        l.ok(&["catalog", "put", &good]).trim(),
        "0 entries written, 1 already current"
    );
    let before = l.json(&["catalog", "list", "--format", "json"]);
    assert_eq!(ids(&before), ["KB-1"]);

    // One good entry among bad ones: every problem is named, nothing written.
    let bad = l.write(
        "bad.json",
        &json!([
            {"id": "KB-BAD-1", "severity": "urgent", "released_at": ago(now, 1)},
            {"id": "KB-2", "severity": "low", "released_at": ago(now, 1)},
            {"id": "KB-BAD-2", "severity": "high", "released_at": "yesterday"},
            {"id": "KB-1", "severity": "low", "released_at": ago(now, 1), "cves": ["CVE-1"]}
        ])
        .to_string(),
    );
    let err = l.fails(&["catalog", "put", &bad], 3);
    for field in ["[0].severity", "[2].released_at", "[3].cves[0]"] {
        assert!(err.contains(field), "{field} is not named:\n{err}");
    }
    assert!(
        !err.contains("[1]."),
        "the good entry has no problem:\n{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(l.json(&["catalog", "list", "--format", "json"]), before);
    l.fails(&["catalog", "get", "KB-2"], 5);
    let h = l.json(&["catalog", "history", "KB-1"]);
    assert_eq!(h["revisions"].as_array().unwrap().len(), 1, "{h}");

    // Not JSON, an unknown field, a missing id: invalid too.
    let not_json = l.write("nope.json", "{ this is not json");
    l.fails(&["catalog", "put", &not_json], 3);
    let unknown = l.write(
        "unknown.json",
        &json!({"id": "KB-3", "severity": "low", "released_at": ago(now, 1), "sevrity": "x"})
            .to_string(),
    );
    assert!(l
        .fails(&["catalog", "put", &unknown], 3)
        .contains("sevrity"));
    let no_id = l.write(
        "noid.json",
        &json!([{"severity": "low", "released_at": ago(now, 1)}]).to_string(),
    );
    assert!(l.fails(&["catalog", "put", &no_id], 3).contains("[0].id"));
    assert_eq!(l.json(&["catalog", "list", "--format", "json"]), before);

    // Not found: exit 5.
    assert!(l.fails(&["catalog", "get", "NOPE"], 5).contains("NOPE"));
    l.fails(&["catalog", "get", "NOPE", "--format", "json"], 5);
    l.fails(&["catalog", "history", "NOPE"], 5);
    l.fails(&["catalog", "delete", "NOPE"], 5);

    // From stdin, then deleted: gone now, still in the history and as of before.
    let mut child = cmd(l.path())
        .env("USER", USER)
        .env("PATCHAUDIT_DATABASE_URL", &l.url)
        .args(["catalog", "put", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(
                json!({"id": "KB-2", "severity": "low", "released_at": ago(now, 1)})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "1 entries written, 0 already current");
    let t = instant_between();
    assert_eq!(l.ok(&["catalog", "delete", "KB-2"]).trim(), "deleted KB-2");
    l.fails(&["catalog", "get", "KB-2"], 5);
    assert_eq!(
        l.json(&[
            "catalog",
            "get",
            "KB-2",
            "--as-of",
            &t.to_rfc3339(),
            "--format",
            "json"
        ])["severity"],
        "low"
    );
    let h = l.json(&["catalog", "history", "KB-2"]);
    let revs = h["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 2, "{h}");
    assert!(revs[1].get("content").is_none(), "a deletion: {h}");
    assert_eq!(
        ids(&l.json(&["catalog", "list", "--format", "json"])),
        ["KB-1"]
    );
}

#[test]
fn deleting_a_deleted_entry_is_not_found_locally_as_through_a_server() {
    let l = Ledger::new();
    let entry = l.write(
        "e.json",
        &json!({"id": "KB-1", "severity": "low", "released_at": "2024-01-01T00:00:00Z"})
            .to_string(),
    );
    // Through a server (on a ledger of its own): the second delete is 404, exit 5.
    let srv = Server::start(l.path(), &l.path().join("server.db"), &[]);
    l.ok(&["catalog", "--server", &srv.url, "put", &entry]);
    l.ok(&["catalog", "--server", &srv.url, "delete", "KB-1"]);
    let err = l.fails(&["catalog", "--server", &srv.url, "delete", "KB-1"], 5);
    assert!(err.contains("KB-1"), "{err}");

    // The local database must give the same answer.
    l.ok(&["catalog", "put", &entry]);
    assert_eq!(l.ok(&["catalog", "delete", "KB-1"]).trim(), "deleted KB-1");
    let err = l.fails(&["catalog", "delete", "KB-1"], 5);
    assert!(err.contains("KB-1"), "{err}");
    let h = l.json(&["catalog", "history", "KB-1"]);
    assert_eq!(h["revisions"].as_array().unwrap().len(), 2, "{h}");
}

// ------------------------------------------------------------------ policy

#[test]
fn an_invalid_policy_is_refused_naming_the_field() {
    let l = Ledger::new();
    let stale0 = l.write(
        "stale0.json",
        &json!({"default": {"critical": 30, "high": 30, "medium": 90, "low": 180},
                "stale_after_days": 0})
        .to_string(),
    );
    let err = l.fails(&["policy", "--set", &stale0], 3);
    assert!(err.contains("stale_after_days"), "{err}");
    // The defaults still apply, and were never replaced.
    let p = l.json(&["policy"]);
    assert_eq!(p["stale_after_days"], 7);
    assert_eq!(p["default"]["critical"], 30);
    assert!(p.get("revision").is_none(), "{p}");

    let good = l.write(
        "good.json",
        &json!({"default": {"critical": 15, "high": 30, "medium": 90, "low": null},
                "scoped": [{"tag": "pci=in-scope",
                            "days": {"critical": 7, "high": 14, "medium": 30, "low": 90}}],
                "stale_after_days": 3})
        .to_string(),
    );
    let set = l.json(&["policy", "--set", &good]);
    assert_eq!(set["default"]["critical"], 15);
    assert_eq!(set["revision"]["changed_by"], actor());
    let shown = l.json(&["policy"]);
    assert_eq!(shown["default"], set["default"]);
    assert_eq!(shown["scoped"], set["scoped"]);
    assert_eq!(shown["stale_after_days"], 3);

    // More broken policies: each names its field, and nothing changes.
    let too_long = l.write(
        "long.json",
        &json!({"default": {"critical": 4000, "high": 30, "medium": 90, "low": 180},
                "scoped": [{"tag": "no-equals", "days": {"critical": 1, "high": 1, "medium": 1, "low": 1}}],
                "stale_after_days": 7})
        .to_string(),
    );
    let err = l.fails(&["policy", "--set", &too_long], 3);
    assert!(err.contains("default.critical"), "{err}");
    assert!(err.contains("scoped[0].tag"), "{err}");
    let typo = l.write(
        "typo.json",
        &json!({"default": {"critical": 30, "high": 30, "medium": 90, "low": 180},
                "stale_days": 7})
        .to_string(),
    );
    l.fails(&["policy", "--set", &typo], 3);
    let again = l.json(&["policy"]);
    assert_eq!(again["stale_after_days"], 3);
    assert_eq!(again["default"], set["default"]);
}

// ------------------------------------------------------------------ scenario

/// A small fleet on the local database, every number worked out by hand.
///
/// Default policy (critical and high: 30 days; stale after 7 days).
/// CRIT-1: critical, released 40 days ago (deadline 10 days ago), all systems.
/// HIGH-1: high, released 10 days ago (deadline in 20 days), env=prod only.
///
/// | system | tags     | CRIT-1                    | HIGH-1            |
/// |--------|----------|---------------------------|-------------------|
/// | web-01 | env=prod | applied 35 days ago: on time | applied 2 days ago: on time |
/// | web-02 | env=prod | nothing: overdue          | failed yesterday  |
/// | db-01  | env=dev  | applied 5 days ago: late  | -                 |
/// | db-02  | env=dev  | exception: excepted       | -                 |
/// | old-01 | env=dev  | never heard from: unknown (and overdue) | -   |
#[test]
fn a_fleet_report_locally_with_exceptions_formats_and_as_of() {
    let l = Ledger::new();
    let now = Timestamp::now();
    let catalog = l.write(
        "catalog.json",
        &json!([
            {"id": "CRIT-1", "title": "Critical fix", "severity": "critical",
             "released_at": ago(now, 40), "cves": ["CVE-2024-1111"]},
            {"id": "HIGH-1", "title": "High fix", "severity": "high",
             "released_at": ago(now, 10), "applies_to": {"tags": ["env=prod"]}}
        ])
        .to_string(),
    );
    assert_eq!(
        l.ok(&["catalog", "put", &catalog]).trim(),
        "2 entries written, 0 already current"
    );
    for (system, tag) in [
        ("web-01", "env=prod"),
        ("web-02", "env=prod"),
        ("db-01", "env=dev"),
        ("db-02", "env=dev"),
        ("old-01", "env=dev"),
    ] {
        assert_eq!(
            l.ok(&["tags", system, tag, "team=ops"]).trim(),
            format!("{system}: {tag} team=ops")
        );
    }
    assert_eq!(
        l.ok(&["tags", "web-01"]).trim(),
        "web-01: env=prod team=ops"
    );
    assert_eq!(
        l.ok(&["tags", "never-tagged"]).trim(),
        "never-tagged: no tags"
    );
    l.fails(&["tags", "web-01", "not-a-tag"], 3);
    assert_eq!(
        l.ok(&["tags", "web-01"]).trim(),
        "web-01: env=prod team=ops"
    );

    l.log(&[], "web-01", "CRIT-1", "success", &ago(now, 35));
    l.log(&[], "web-01", "HIGH-1", "success", &ago(now, 2));
    l.log(
        &["--detail", "dpkg: error processing package high-fix"],
        "web-02",
        "HIGH-1",
        "failure",
        &ago(now, 1),
    );
    l.log(&[], "db-01", "CRIT-1", "success", &ago(now, 5));
    l.log(&[], "db-02", "UNLISTED-9", "success", &ago(now, 1));

    let exc_db02 = l
        .ok(&[
            "exception",
            "add",
            "--patch-id",
            "CRIT-1",
            "--system",
            "db-02",
            "--reason",
            "vendor certification pending",
            "--approver",
            "ciso@example.com",
            "--expires-at",
            &ahead(now, 30),
        ])
        .trim()
        .to_owned();
    assert!(exc_db02.starts_with("exc-"), "{exc_db02}");
    // Exceptions must expire in the future, and need a scope.
    let err = l.fails(
        &[
            "exception",
            "add",
            "--patch-id",
            "CRIT-1",
            "--system",
            "db-01",
            "--reason",
            "r",
            "--approver",
            "a",
            "--expires-at",
            &ago(now, 1),
        ],
        3,
    );
    assert!(err.contains("expires_at"), "{err}");
    l.fails(
        &[
            "exception",
            "add",
            "--patch-id",
            "CRIT-1",
            "--reason",
            "r",
            "--approver",
            "a",
            "--expires-at",
            &ahead(now, 1),
        ],
        2,
    );

    // ---- JSON
    let r = l.json(&["report", "--format", "json"]);
    assert_eq!(r["as_of"], false);
    assert_eq!(r["checkpoint"]["size"], 5, "{}", r["checkpoint"]);
    let s = &r["summary"];
    assert_eq!(s["pairs_required"], 7);
    assert_eq!(s["states"], states(0, 1, 2, 1, 1, 1, 1), "{s}");
    // web-02's CRIT-1, and old-01's: unknown, but past its deadline.
    assert_eq!(s["overdue"], 2);
    assert_eq!(s["overdue_by_severity"]["critical"], 2);
    assert_eq!(s["stale_systems"], json!(["old-01"]));
    assert_eq!(s["systems"], 5);
    assert_eq!(s["patches"], 2);
    assert_eq!(
        pairs(&r["overdue"]),
        [
            triple("old-01", "CRIT-1", "unknown"),
            triple("web-02", "CRIT-1", "overdue")
        ]
    );
    assert_eq!(
        pairs(&r["failures"]),
        [triple("web-02", "HIGH-1", "failed")]
    );
    assert_eq!(
        r["failures"][0]["detail"],
        "dpkg: error processing package high-fix"
    );
    let crit = row(&r["patches"], "patch_id", "CRIT-1");
    assert_eq!(
        (&crit["required"], &crit["applied"], &crit["overdue"]),
        (&json!(5), &json!(2), &json!(2))
    );
    assert_eq!(crit["excepted"], 1);
    let high = row(&r["patches"], "patch_id", "HIGH-1");
    assert_eq!(
        (&high["required"], &high["applied"], &high["failed"]),
        (&json!(2), &json!(1), &json!(1))
    );
    let web01 = row(&r["systems"], "system", "web-01");
    assert_eq!(web01["coverage_pct"], 100.0);
    assert_eq!(web01["tags"], json!(["env=prod", "team=ops"]));
    let old = row(&r["systems"], "system", "old-01");
    assert_eq!(old["stale"], true);
    assert!(old["last_seen"].is_null(), "{old}");

    // ---- filters
    let f = l.json(&["report", "--format", "json", "--severity", "high"]);
    assert_eq!(f["summary"]["pairs_required"], 2);
    assert_eq!(f["filter"]["severities"], json!(["high"]));
    let f = l.json(&["report", "--format", "json", "--tag", "env=prod"]);
    assert_eq!(f["summary"]["pairs_required"], 4);
    assert_eq!(f["summary"]["overdue"], 1);
    let f = l.json(&["report", "--format", "json", "--system", "db-01"]);
    assert_eq!(f["summary"]["states"], states(0, 0, 0, 1, 0, 0, 0));
    let f = l.json(&["report", "--format", "json", "--patch-id", "HIGH-1"]);
    assert_eq!(f["summary"]["pairs_required"], 2);
    l.fails(&["report", "--severity", "urgent"], 2);
    l.fails(&["report", "--tag", "env"], 2);
    l.fails(&["report", "--as-of", "yesterday"], 2);

    // ---- table
    let table = l.ok(&["report"]);
    assert!(table.contains("Compliance report at"), "{table}");
    assert!(
        table.contains("Computed from ledger checkpoint: size 5"),
        "{table}"
    );
    assert!(
        table.contains("web-02") && table.contains("old-01"),
        "{table}"
    );

    // ---- CSV
    let out = l.ok(&["report", "--format", "csv"]);
    let mut rd = csv::Reader::from_reader(out.as_bytes());
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, PAIRS_CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    let mut kinds: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r[0].to_owned(), r[1].to_owned(), r[2].to_owned()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            triple("failure", "web-02", "HIGH-1"),
            triple("overdue", "old-01", "CRIT-1"),
            triple("overdue", "web-02", "CRIT-1"),
        ]
    );
    let detail = rows.iter().find(|r| &r[0] == "failure").unwrap();
    assert_eq!(&detail[15], "dpkg: error processing package high-fix");
    let out = l.ok(&["report", "--format", "systems-csv"]);
    let mut rd = csv::Reader::from_reader(out.as_bytes());
    assert_eq!(rd.headers().unwrap(), SYSTEMS_CSV_COLUMNS.as_slice());
    assert_eq!(rd.records().count(), 5);
    let out = l.ok(&["report", "--format", "patches-csv"]);
    let mut rd = csv::Reader::from_reader(out.as_bytes());
    assert_eq!(rd.headers().unwrap(), PATCHES_CSV_COLUMNS.as_slice());
    let first = rd.records().next().unwrap().unwrap();
    assert_eq!(&first[0], "CRIT-1", "most severe first");

    // ---- HTML to a file
    let printed = l.ok(&["report", "--format", "html", "--output", "r.html"]);
    assert!(printed.is_empty(), "--output prints nothing: {printed}");
    let html = std::fs::read_to_string(l.path().join("r.html")).expect("r.html was written");
    assert!(html.contains("<svg"), "no chart in the HTML");
    assert!(html.contains("CRIT-1") && html.contains("web-02"));

    // ---- --fail-on-overdue: exit 8 while anything is overdue
    let err = l.fails(&["report", "--fail-on-overdue"], 8);
    assert!(
        err.contains("2 required (system, patch) pairs are overdue"),
        "{err}"
    );
    l.fails(&["report", "--fail-on-overdue", "--tag", "env=prod"], 8);
    // The report is still written before the exit code says so.
    let o = l.run(&[
        "report",
        "--fail-on-overdue",
        "--format",
        "json",
        "--output",
        "gate.json",
    ]);
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    let gate: Value =
        serde_json::from_slice(&std::fs::read(l.path().join("gate.json")).unwrap()).unwrap();
    assert_eq!(gate["summary"]["overdue"], 2);
    l.ok(&[
        "report",
        "--fail-on-overdue",
        "--tag",
        "env=dev",
        "--system",
        "db-01",
    ]);

    // ---- the report as of t, then more changes after t
    let t = instant_between();
    let t_s = t.to_rfc3339();
    let before = l.json(&["report", "--as-of", &t_s, "--format", "json"]);
    assert_eq!(before["as_of"], true);
    assert_eq!(before["at"], t_s.as_str());
    assert_eq!(before["summary"], r["summary"], "nothing changed before t");
    assert_eq!(before["checkpoint"], r["checkpoint"]);
    let before_csv = l.ok(&["report", "--as-of", &t_s, "--format", "csv"]);

    let exc_web02 = l
        .ok(&[
            "exception",
            "add",
            "--patch-id",
            "CRIT-1",
            "--system",
            "web-02",
            "--reason",
            "maintenance window next week",
            "--approver",
            "ciso@example.com",
            "--expires-at",
            &ahead(now, 7),
        ])
        .trim()
        .to_owned();
    // The prod gate passes once the exception covers web-02.
    l.ok(&["report", "--fail-on-overdue", "--tag", "env=prod"]);
    // old-01 still holds the whole fleet back until it reports.
    l.fails(&["report", "--fail-on-overdue"], 8);
    l.log(&[], "old-01", "CRIT-1", "success", &now.to_rfc3339());
    // A backdated event, recorded after t: not in the report as of t.
    let an_hour_before_t = Timestamp::from_micros(t.as_micros() - 3_600_000_000).to_rfc3339();
    l.log(&[], "web-02", "HIGH-1", "success", &an_hour_before_t);
    l.ok(&["tags", "db-01", "env=prod"]);
    let new = l.write(
        "new.json",
        &json!({"id": "NEW-1", "severity": "medium", "released_at": ago(now, 20),
                "applies_to": {"systems": ["db-02"]}})
        .to_string(),
    );
    l.ok(&["catalog", "put", &new]);
    l.ok(&["report", "--fail-on-overdue"]);

    let current = l.json(&["report", "--format", "json"]);
    let cs = &current["summary"];
    // db-01 now needs HIGH-1 (missing), db-02 needs NEW-1 (missing), old-01
    // applied CRIT-1 late, web-02's CRIT-1 is excepted and its HIGH-1 applied.
    assert_eq!(cs["pairs_required"], 9);
    assert_eq!(cs["states"], states(2, 0, 3, 2, 0, 2, 0), "{cs}");
    assert_eq!(current["failures"], json!([]));
    assert_eq!(cs["overdue"], 0);
    assert_eq!(current["checkpoint"]["size"], 7);

    let after = l.json(&["report", "--as-of", &t_s, "--format", "json"]);
    assert_eq!(after, before, "the report as of t changed after t");
    assert_eq!(
        l.ok(&["report", "--as-of", &t_s, "--format", "csv"]),
        before_csv
    );
    assert_eq!(
        ids(&l.json(&["catalog", "list", "--as-of", &t_s, "--format", "json"])),
        ["CRIT-1", "HIGH-1"]
    );
    l.fails(&["catalog", "get", "NEW-1", "--as-of", &t_s], 5);

    // ---- exceptions: list, revoke, and the gate fails again
    let list = l.json(&["exception", "list", "--format", "json"]);
    let xs = list["exceptions"].as_array().unwrap();
    assert_eq!(xs.len(), 2, "{list}");
    let x = row(&list["exceptions"], "id", &exc_db02);
    assert_eq!(
        (&x["patch_id"], &x["system"], &x["active"]),
        (&json!("CRIT-1"), &json!("db-02"), &json!(true))
    );
    assert_eq!(x["approver"], "ciso@example.com");
    let out = l.ok(&["exception", "revoke", &exc_web02]);
    assert!(
        out.starts_with(&format!("revoked {exc_web02} at ")),
        "{out}"
    );
    let active = l.json(&["exception", "list", "--active", "--format", "json"]);
    assert_eq!(
        active["exceptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [exc_db02.as_str()]
    );
    let all = l.json(&["exception", "list", "--format", "json"]);
    let revoked = row(&all["exceptions"], "id", &exc_web02);
    assert_eq!(revoked["active"], false);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let table = l.ok(&["exception", "list"]);
    assert!(
        table.contains(&exc_db02) && table.contains(&exc_web02),
        "{table}"
    );
    l.fails(&["exception", "revoke", "exc-000000000000"], 5);
    let err = l.fails(&["report", "--fail-on-overdue", "--tag", "env=prod"], 8);
    assert!(err.contains("1 required"), "{err}");
    let r = l.json(&["report", "--format", "json", "--tag", "env=prod"]);
    assert_eq!(
        pairs(&r["overdue"]),
        [triple("web-02", "CRIT-1", "overdue")]
    );
    // And still, as of t, nothing moved.
    assert_eq!(
        l.json(&["report", "--as-of", &t_s, "--format", "json"]),
        before
    );
}

// ------------------------------------------------------------------ server

/// The same commands through a server, with the token's principal kept as
/// the actor; the local database is never touched, and the answers match
/// local mode.
#[test]
fn through_a_server_with_the_actor_recorded() {
    // The CLI's own database URL names a file that must never be created.
    let l = Ledger::named("unused.db");
    let db = l.path().join("server.db");
    let srv = Server::start(l.path(), &db, &[]);
    let s = srv.url.as_str();
    // Through a server, changes are recorded under the token that made them.
    let remote_actor = format!("test-admin#{}", &srv.token[3..19]);
    let now = Timestamp::now();

    // ---- catalog
    let entries = l.write(
        "entries.json",
        &json!([
            {"id": "KB-S1", "title": "Remote critical", "severity": "critical",
             "released_at": ago(now, 40)},
            {"id": "KB-S2", "severity": "high", "released_at": ago(now, 10),
             "applies_to": {"tags": ["env=prod"]}}
        ])
        .to_string(),
    );
    assert_eq!(
        l.ok(&["catalog", "--server", s, "put", &entries]).trim(),
        "2 entries written, 0 already current"
    );
    assert_eq!(
        l.ok(&["catalog", "--server", s, "put", &entries]).trim(),
        "0 entries written, 2 already current"
    );
    let e = l.json(&["catalog", "--server", s, "get", "KB-S1", "--format", "json"]);
    assert_eq!(e["severity"], "critical");
    assert_eq!(e["title"], "Remote critical");
    assert_eq!(e["revision"]["changed_by"], remote_actor);
    let page = l.json(&["catalog", "--server", s, "list", "--format", "json"]);
    assert_eq!(ids(&page), ["KB-S1", "KB-S2"]);
    let page = l.json(&[
        "catalog",
        "--server",
        s,
        "list",
        "--severity",
        "high",
        "--format",
        "json",
    ]);
    assert_eq!(ids(&page), ["KB-S2"]);
    l.fails(&["catalog", "--server", s, "get", "NOPE"], 5);
    l.fails(&["catalog", "--server", s, "history", "NOPE"], 5);
    let bad = l.write(
        "bad.json",
        &json!([{"id": "KB-S9", "severity": "urgent", "released_at": ago(now, 1)}]).to_string(),
    );
    let err = l.fails(&["catalog", "--server", s, "put", &bad], 3);
    assert!(err.contains("[0].severity"), "{err}");
    l.fails(&["catalog", "--server", s, "get", "KB-S9"], 5);

    let o = l.run(&[
        "catalog",
        "--server",
        s,
        "import-osv",
        &sample("rocky/RLSA-2023_3220.json"),
        "--applies-to-system",
        "rocky-01",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "1 entries written, 0 already current, 0 records rejected"
    );
    let e = l.json(&[
        "catalog",
        "--server",
        s,
        "get",
        "RLSA-2023:3220",
        "--format",
        "json",
    ]);
    assert_eq!(e["severity"], "high");
    assert_eq!(e["cves"].as_array().unwrap().len(), 7);
    assert_eq!(e["applies_to"], json!({"systems": ["rocky-01"]}));

    let changed = l.write(
        "changed.json",
        &json!({"id": "KB-S1", "title": "Remote critical, revised", "severity": "critical",
                "released_at": ago(now, 40)})
        .to_string(),
    );
    l.ok(&["catalog", "--server", s, "put", &changed]);
    let h = l.json(&["catalog", "--server", s, "history", "KB-S1"]);
    let revs = h["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 2, "{h}");
    for r in revs {
        assert_eq!(r["changed_by"], remote_actor, "{h}");
    }
    assert_eq!(revs[1]["content"]["title"], "Remote critical, revised");

    // ---- tags
    assert_eq!(
        l.ok(&["tags", "--server", s, "web-01", "pci=in-scope", "env=prod"])
            .trim(),
        "web-01: env=prod pci=in-scope"
    );
    assert_eq!(
        l.ok(&["tags", "web-02", "env=prod", "--server", s]).trim(),
        "web-02: env=prod"
    );
    assert_eq!(
        l.ok(&["tags", "--server", s, "web-01"]).trim(),
        "web-01: env=prod pci=in-scope"
    );
    l.fails(&["tags", "--server", s, "web-01", "bad-tag"], 3);
    assert_eq!(
        l.ok(&["tags", "--server", s, "web-02", "--clear"]).trim(),
        "web-02: no tags"
    );
    assert_eq!(
        l.ok(&["tags", "--server", s, "web-02"]).trim(),
        "web-02: no tags"
    );
    assert_eq!(
        l.ok(&["tags", "--server", s, "web-02", "env=prod"]).trim(),
        "web-02: env=prod"
    );

    // ---- policy
    let p = l.json(&["policy", "--server", s]);
    assert_eq!(p["default"]["critical"], 30);
    assert_eq!(p["stale_after_days"], 7);
    assert!(p.get("revision").is_none(), "{p}");
    let pci = l.write(
        "policy.json",
        &json!({"default": {"critical": 30, "high": 30, "medium": 90, "low": 180},
                "scoped": [{"tag": "pci=in-scope",
                            "days": {"critical": 14, "high": 30, "medium": 90, "low": 180}}],
                "stale_after_days": 7})
        .to_string(),
    );
    let set = l.json(&["policy", "--server", s, "--set", &pci]);
    assert_eq!(set["revision"]["changed_by"], remote_actor);
    assert_eq!(set["scoped"][0]["tag"], "pci=in-scope");
    let stale0 = l.write(
        "stale0.json",
        &json!({"default": {"critical": 30, "high": 30, "medium": 90, "low": 180},
                "stale_after_days": 0})
        .to_string(),
    );
    let err = l.fails(&["policy", "--server", s, "--set", &stale0], 3);
    assert!(err.contains("stale_after_days"), "{err}");
    let shown = l.json(&["policy", "--server", s]);
    assert_eq!(shown["scoped"], set["scoped"]);
    assert_eq!(shown["revision"]["changed_by"], remote_actor);

    // ---- events, an exception, the report
    let lg = |system: &str, patch: &str, status: &str, at: &str| {
        l.log(&["--server", s], system, patch, status, at)
    };
    // web-01 is PCI: KB-S1's deadline was 26 days ago, so 20 days ago is late.
    lg("web-01", "KB-S1", "success", &ago(now, 20));
    lg("web-01", "KB-S2", "success", &ago(now, 1));
    lg("web-02", "KB-S2", "failure", &ago(now, 1));
    let err = l.fails(&["report", "--server", s, "--fail-on-overdue"], 8);
    assert!(err.contains("1 required"), "{err}");

    let exc = l
        .ok(&[
            "exception",
            "--server",
            s,
            "add",
            "--patch-id",
            "KB-S1",
            "--system",
            "web-02",
            "--reason",
            "decommissioned next month",
            "--approver",
            "ciso@example.com",
            "--expires-at",
            &ahead(now, 30),
        ])
        .trim()
        .to_owned();
    assert!(exc.starts_with("exc-"), "{exc}");
    let list = l.json(&["exception", "--server", s, "list", "--format", "json"]);
    let x = row(&list["exceptions"], "id", &exc);
    assert_eq!(x["active"], true);
    assert_eq!(x["reason"], "decommissioned next month");

    let r = l.json(&["report", "--server", s, "--format", "json"]);
    assert_eq!(r["checkpoint"]["size"], 3);
    assert_eq!(r["summary"]["pairs_required"], 4);
    assert_eq!(r["summary"]["states"], states(0, 0, 1, 1, 1, 1, 0));
    assert_eq!(r["summary"]["overdue"], 0);
    assert_eq!(pairs(&r["failures"]), [triple("web-02", "KB-S2", "failed")]);
    l.ok(&["report", "--server", s, "--fail-on-overdue"]);
    let f = l.json(&[
        "report",
        "--server",
        s,
        "--format",
        "json",
        "--tag",
        "pci=in-scope",
        "--severity",
        "critical",
    ]);
    assert_eq!(f["summary"]["states"], states(0, 0, 0, 1, 0, 0, 0));
    let html = l.ok(&["report", "--server", s, "--format", "html"]);
    assert!(html.contains("<svg"), "no chart in the HTML");

    let out = l.ok(&["exception", "--server", s, "revoke", &exc]);
    assert!(out.starts_with(&format!("revoked {exc} at ")), "{out}");
    let active = l.json(&[
        "exception",
        "--server",
        s,
        "list",
        "--active",
        "--format",
        "json",
    ]);
    assert_eq!(active["exceptions"], json!([]));
    let all = l.json(&["exception", "--server", s, "list", "--format", "json"]);
    assert_eq!(row(&all["exceptions"], "id", &exc)["active"], false);
    l.fails(
        &["exception", "--server", s, "revoke", "exc-000000000000"],
        5,
    );
    l.fails(&["report", "--server", s, "--fail-on-overdue"], 8);

    // ---- delete
    l.ok(&["catalog", "--server", s, "delete", "RLSA-2023:3220"]);
    l.fails(&["catalog", "--server", s, "get", "RLSA-2023:3220"], 5);
    let h = l.json(&["catalog", "--server", s, "history", "RLSA-2023:3220"]);
    let revs = h["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 2, "{h}");
    assert_eq!(revs[1]["changed_by"], remote_actor);
    assert!(revs[1].get("content").is_none(), "{h}");

    // ---- the same answers from the server's database, read locally
    let t = instant_between();
    let t_s = t.to_rfc3339();
    let db_flag = format!("sqlite://{}", db.display());
    let remote = l.json(&["report", "--server", s, "--as-of", &t_s, "--format", "json"]);
    let local = l.json(&[
        "--database-url",
        &db_flag,
        "report",
        "--as-of",
        &t_s,
        "--format",
        "json",
    ]);
    assert_eq!(remote, local);
    assert_eq!(remote["summary"]["overdue"], 1);
    let local_h = l.json(&["--database-url", &db_flag, "catalog", "history", "KB-S1"]);
    let remote_h = l.json(&["catalog", "--server", s, "history", "KB-S1"]);
    assert_eq!(local_h, remote_h);
    assert_eq!(
        l.json(&["--database-url", &db_flag, "policy"])["scoped"],
        shown["scoped"]
    );
    assert_eq!(
        l.json(&[
            "--database-url",
            &db_flag,
            "exception",
            "list",
            "--format",
            "json"
        ]),
        all
    );

    assert!(
        !l.path().join("unused.db").exists(),
        "remote mode touched the local database"
    );
}

/// `policy` shows the revision of the policy in force through a server; the
/// local database must give the same answer (who set it, and when).
#[test]
fn policy_shows_its_revision_locally_as_through_a_server() {
    let l = Ledger::new();
    let db = l.path().join("ledger.db");
    let policy = l.write(
        "policy.json",
        &json!({"default": {"critical": 10, "high": 30, "medium": 90, "low": 180},
                "stale_after_days": 5})
        .to_string(),
    );
    let set = l.json(&["policy", "--set", &policy]);
    assert_eq!(set["revision"]["changed_by"], actor());
    let srv = Server::start(l.path(), &db, &[]);
    let remote = l.json(&["policy", "--server", &srv.url]);
    for k in ["rev", "changed_at", "changed_by"] {
        assert_eq!(remote["revision"][k], set["revision"][k], "{k}");
    }
    let local = l.json(&["policy"]);
    assert_eq!(local, remote, "local and remote `policy` differ");
}
