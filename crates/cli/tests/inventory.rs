//! End-to-end tests of `patchaudit inventory`: sending a real `rpm -qa`
//! sample and this machine's dpkg status, showing it, on the local
//! database and through a server, and the report's unaccounted changes.

mod common;

use common::{cmd, run, stderr, stdout, Server};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

const RPM_QA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/samples/rpm/rpm-qa/snyk-rpm-parser_centos7_plain.tsv"
);

fn local(dir: &Path, args: &[&str]) -> Output {
    let url = format!("sqlite://{}", dir.join("ledger.db").display());
    cmd(dir)
        .env("PATCHAUDIT_DATABASE_URL", url)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} exited {:?}:\n{}",
        o.status.code(),
        stderr(&o)
    );
    stdout(&o)
}

fn json(o: Output, what: &str) -> Value {
    let out = ok(o, what);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what} printed no JSON ({e}):\n{out}"))
}

/// The rows of the sample: one package per non-empty line.
fn sample_packages() -> usize {
    std::fs::read_to_string(RPM_QA)
        .expect("the rpm -qa sample")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn a_real_rpm_qa_list_is_sent_shown_and_not_written_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = json(
        local(
            d,
            &[
                "inventory",
                "db-01",
                "--source",
                "rpm-qa",
                "--file",
                RPM_QA,
                "--format",
                "json",
            ],
        ),
        "inventory send",
    );
    assert_eq!(first["package_count"], sample_packages() as u64);
    assert_eq!(first["format"], "rpm");
    assert_eq!(first["revision"]["changed"], true);
    assert!(first["revision"]["changed_by"]
        .as_str()
        .unwrap()
        .starts_with("local:"));
    let again = ok(
        local(
            d,
            &["inventory", "db-01", "--source", "rpm-qa", "--file", RPM_QA],
        ),
        "inventory send again",
    );
    assert!(
        again.starts_with(&format!(
            "db-01: {} rpm packages, unchanged since",
            sample_packages()
        )),
        "{again}"
    );
    let shown = json(
        local(d, &["inventory", "db-01", "--format", "json"]),
        "inventory show",
    );
    let pkgs = shown["packages"].as_array().unwrap();
    assert_eq!(pkgs.len(), sample_packages());
    let tzdata = pkgs.iter().find(|p| p["name"] == "tzdata").unwrap();
    assert_eq!(tzdata["version"], "2019b-1.el7");
    let table = ok(local(d, &["inventory", "db-01"]), "inventory table");
    assert!(
        table.contains("tzdata") && table.contains("2019b-1.el7"),
        "{table}"
    );

    // Nothing in the ledger explains any of them: all are unaccounted, and
    // the system, known only by its inventory, is in the report.
    let report = json(local(d, &["report", "--format", "json"]), "report");
    assert_eq!(report["summary"]["systems_with_inventory"], 1);
    assert_eq!(report["summary"]["unaccounted"], sample_packages() as u64);
    let text = ok(local(d, &["report"]), "report table");
    assert!(
        text.contains(&format!(
            "Unaccounted changes: {} installed packages on 1 systems",
            sample_packages()
        )),
        "{text}"
    );
    // A logged install of one of them explains it.
    ok(
        local(
            d,
            &[
                "log",
                "--system",
                "db-01",
                "--patch-id",
                "tzdata@2019b-1.el7",
                "--status",
                "success",
                "--applied-at",
                "2024-01-01T00:00:00Z",
            ],
        ),
        "log",
    );
    let report = json(local(d, &["report", "--format", "json"]), "report");
    assert_eq!(
        report["summary"]["unaccounted"],
        sample_packages() as u64 - 1
    );
}

#[test]
fn bad_invocations_exit_with_the_codes_scripts_rely_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No ledger yet: not found (5), saying so.
    let o = local(d, &["inventory", "web-01"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("no ledger"), "{}", stderr(&o));
    ok(
        local(
            d,
            &["inventory", "db-01", "--source", "rpm-qa", "--file", RPM_QA],
        ),
        "inventory send",
    );
    // A system that never sent one: not found (5).
    let o = local(d, &["inventory", "web-01"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has not sent an inventory"),
        "{}",
        stderr(&o)
    );
    // --file needs --source, and the source must be known: usage (2).
    let o = local(d, &["inventory", "web-01", "--file", RPM_QA]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = local(
        d,
        &["inventory", "web-01", "--source", "msi", "--file", RPM_QA],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("msi"), "{}", stderr(&o));
    // A file that cannot be read: usage (2), naming it.
    let o = local(
        d,
        &[
            "inventory",
            "web-01",
            "--source",
            "rpm-qa",
            "--file",
            "/nonexistent/list",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/list"), "{}", stderr(&o));
    // An invalid system id: usage (2), and nothing written.
    let long = "s".repeat(300);
    let o = local(
        d,
        &["inventory", &long, "--source", "rpm-qa", "--file", RPM_QA],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn this_machines_dpkg_status_goes_through_a_server() {
    let status = Path::new("/var/lib/dpkg/status");
    if !status.exists() {
        assert!(
            std::env::var("PATCHAUDIT_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "/var/lib/dpkg/status is missing, and PATCHAUDIT_REQUIRE_SERVICES=1"
        );
        eprintln!("SKIPPED: /var/lib/dpkg/status does not exist on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let srv = Server::start(d, &d.join("server.db"), &[]);
    let sent = json(
        run(
            d,
            &[
                "inventory",
                "host-1",
                "--source",
                "dpkg-status",
                "--file",
                "/var/lib/dpkg/status",
                "--server",
                &srv.url,
                "--format",
                "json",
            ],
        ),
        "inventory send",
    );
    // dpkg-query lists what is installed; the inventory holds the same count.
    let q = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}\n"])
        .output()
        .expect("dpkg-query runs where dpkg's status file exists");
    let installed = String::from_utf8_lossy(&q.stdout)
        .lines()
        .filter(|l| l.starts_with("ii") || l.starts_with("hi"))
        .count();
    assert_eq!(sent["package_count"], installed as u64, "{sent}");
    assert!(sent["revision"]["changed_by"]
        .as_str()
        .unwrap()
        .starts_with("test-admin#"));
    let shown = json(
        run(
            d,
            &[
                "inventory",
                "host-1",
                "--server",
                &srv.url,
                "--format",
                "json",
            ],
        ),
        "inventory show",
    );
    assert_eq!(shown["package_count"], installed as u64);
    assert_eq!(
        shown["packages"].as_array().unwrap().len(),
        installed,
        "the list comes back whole"
    );
}

const DPKG_LOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/samples/debian/dpkg-log/riscv64-debian-sid_dpkg.log"
);

/// `collect` of the dpkg sample for web-01, with the rpm sample as its inventory.
fn collect_dpkg_with_rpm_inventory(d: &Path) -> Output {
    let args = [
        "collect",
        "--source",
        "dpkg",
        "--file",
        DPKG_LOG,
        "--system",
        "web-01",
        "--inventory",
        RPM_QA,
        "--inventory-source",
        "rpm-qa",
    ];
    local(d, &args)
}

#[test]
fn collect_sends_the_inventory_it_is_given_after_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = collect_dpkg_with_rpm_inventory(d);
    ok(o.clone(), "collect");
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "; inventory {} packages (rpm), recorded\n",
            sample_packages()
        )),
        "{err}"
    );
    let shown = json(
        local(d, &["inventory", "web-01", "--format", "json"]),
        "inventory show",
    );
    assert_eq!(shown["package_count"], sample_packages() as u64);
    // Run again: no new events, and the unchanged list writes nothing.
    let o = collect_dpkg_with_rpm_inventory(d);
    assert!(
        stderr(&o).contains("packages (rpm), unchanged"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        stderr(&o).lines().count(),
        1,
        "one summary line: {}",
        stderr(&o)
    );
    let again = json(
        local(d, &["inventory", "web-01", "--format", "json"]),
        "inventory show",
    );
    assert_eq!(again["revision"]["rev"], shown["revision"]["rev"]);
    // --inventory-source alone is a usage error, not silently ignored.
    let o = local(
        d,
        &[
            "collect",
            "--source",
            "dpkg",
            "--file",
            DPKG_LOG,
            "--inventory-source",
            "rpm-qa",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // --inventory needs its format.
    let o = local(
        d,
        &[
            "collect",
            "--source",
            "dpkg",
            "--file",
            DPKG_LOG,
            "--inventory",
            RPM_QA,
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn collect_on_this_host_sends_its_own_package_list_unless_told_not_to() {
    if !Path::new("/var/lib/dpkg/status").exists() {
        assert!(
            std::env::var("PATCHAUDIT_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "/var/lib/dpkg/status is missing, and PATCHAUDIT_REQUIRE_SERVICES=1"
        );
        eprintln!("SKIPPED: /var/lib/dpkg/status does not exist on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = local(d, &["collect", "--system", "this-host", "--no-inventory"]);
    ok(o.clone(), "collect --no-inventory");
    assert!(!stderr(&o).contains("inventory"), "{}", stderr(&o));
    // The ledger may hold no events if this machine has no logs; the
    // inventory is what this test is about.
    let o = local(d, &["collect", "--system", "this-host"]);
    ok(o.clone(), "collect");
    assert!(stderr(&o).contains("packages (deb), "), "{}", stderr(&o));
    let shown = json(
        local(d, &["inventory", "this-host", "--format", "json"]),
        "inventory show",
    );
    assert_eq!(shown["format"], "deb");
    assert!(shown["package_count"].as_u64().unwrap() > 0, "{shown}");
}
