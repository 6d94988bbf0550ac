//! End-to-end tests of `patchaudit collect` on the real samples (and, for
//! the formats without one, the collectors' synthetic fixtures): the state
//! file, idempotency, the spool across a server outage, and the context each
//! source is parsed with.

mod common;

use chrono::{DateTime, Utc};
use common::{run, stderr, stdout, Server};
use patchaudit_collectors::{parse, Context, DateOrder, Parsed, Source};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn sample(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/samples/debian")
        .join(rel)
}

const DPKG: &str = "dpkg-log/riscv64-debian-sid_dpkg.log";
const APT_A: &str = "apt-history/riscv64-debian-sid_history.log";
const APT_B: &str = "apt-history/industio-ubuntu20.04-armhf_history.log";

/// The event_ids the parser gives the sample for `system`.
fn expected_ids(source: Source, rel: &str, system: &str) -> Vec<String> {
    let path = sample(rel);
    let bytes = std::fs::read(&path).expect("the sample exists");
    let parsed = parse(
        source,
        &path.display().to_string(),
        &bytes,
        &Context::default(),
    );
    assert!(!parsed.events.is_empty(), "{rel} has events");
    parsed.event_ids(system)
}

/// Every event_id in the ledger (local, or through `server`), in seq order.
fn ledger_ids(dir: &Path, server: Option<&str>) -> Vec<String> {
    let mut args = vec!["events", "--format", "ndjson"];
    if let Some(url) = server {
        args.extend(["--server", url]);
    }
    let o = run(dir, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("valid NDJSON");
            v["event_id"].as_str().expect("an event_id").to_owned()
        })
        .collect()
}

fn as_set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

#[test]
fn collect_dpkg_locally_sends_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = sample(DPKG);
    let file = file.to_str().unwrap();
    let args = [
        "collect", "--source", "dpkg", "--file", file, "--system", "riscv-01",
    ];
    let expected = expected_ids(Source::Dpkg, DPKG, "riscv-01");
    let n = expected.len();
    assert_eq!(n, 20);

    let o = run(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "dpkg {n} events ({n} new, 0 already sent), 0 problems"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{n} recorded, 0 already recorded")),
        "{err}"
    );
    let ids = ledger_ids(dir.path(), None);
    assert_eq!(ids.len(), n);
    assert_eq!(as_set(&ids), as_set(&expected));
    let state = dir.path().join("patchaudit-collect.state");
    assert!(state.exists(), "the state file is beside the ledger");

    // Again: the state file says everything was sent.
    let o = run(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("dpkg {n} events (0 new, {n} already sent)")),
        "{err}"
    );
    assert!(err.contains("sent 0 to"), "{err}");
    assert_eq!(ledger_ids(dir.path(), None).len(), n);

    // Without the state file everything is sent again, and the ledger
    // recognises every event by its event_id.
    std::fs::remove_file(&state).unwrap();
    let o = run(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("({n} new, 0 already sent)")), "{err}");
    assert!(
        err.contains(&format!("0 recorded, {n} already recorded")),
        "{err}"
    );
    let ids = ledger_ids(dir.path(), None);
    assert_eq!(ids.len(), n, "nothing was recorded twice");
    assert_eq!(as_set(&ids), as_set(&expected));
}

#[test]
fn collect_spools_while_the_server_is_down_and_delivers_later() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let state = dir.path().join("collect.state");
    let spool = dir.path().join("spool");
    let system = "apt-01";
    let collect = |file: &str, url: &str| {
        let path = sample(file);
        run(
            dir.path(),
            &[
                "collect",
                "--source",
                "apt",
                "--file",
                path.to_str().unwrap(),
                "--system",
                system,
                "--server",
                url,
                "--state",
                state.to_str().unwrap(),
                "--spool",
                spool.to_str().unwrap(),
                "--batch-size",
                "100",
            ],
        )
    };
    let ids_a = expected_ids(Source::AptHistory, APT_A, system);
    let ids_b = expected_ids(Source::AptHistory, APT_B, system);

    // Part A while the server runs.
    let server = Server::start(dir.path(), &db, &[]);
    let url = server.url.clone();
    let o = collect(APT_A, &url);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{} recorded", ids_a.len())),
        "{}",
        stderr(&o)
    );
    drop(server);

    // Part B while it is down: spooled, exit 6.
    let o = collect(APT_B, &url);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("spool"), "{err}");
    assert!(
        err.contains(&format!("{} waiting in the spool", ids_b.len())),
        "{err}"
    );
    let spooled = std::fs::read_to_string(spool.join("spool.ndjson")).expect("the spool exists");
    let spooled_ids: Vec<String> = spooled
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["event_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(spooled_ids, ids_b, "the spool holds part B, in order");

    // A second run during the outage keeps the spool as it is: part B is
    // already covered by the state file, so nothing is added twice.
    let o = collect(APT_B, &url);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let again = std::fs::read_to_string(spool.join("spool.ndjson")).unwrap();
    assert_eq!(again.lines().count(), ids_b.len());

    // Restart on the same database: the spool is delivered, then removed.
    let server = Server::start(dir.path(), &db, &[]);
    let o = collect(APT_B, &server.url);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "apt {} events (0 new, {} already sent)",
            ids_b.len(),
            ids_b.len()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("({} from the spool)", ids_b.len())),
        "{err}"
    );
    assert!(!spool.join("spool.ndjson").exists(), "the spool is removed");

    // Every event exactly once.
    let ids = ledger_ids(dir.path(), Some(&server.url));
    assert_eq!(ids.len(), ids_a.len() + ids_b.len());
    let mut expected = as_set(&ids_a);
    expected.extend(ids_b.iter().cloned());
    assert_eq!(expected.len(), ids.len(), "the two samples share no id");
    assert_eq!(as_set(&ids), expected);

    // Part A again, without any state: all duplicates, nothing new.
    std::fs::remove_file(&state).unwrap();
    let o = collect(APT_A, &server.url);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("0 recorded, {} already recorded", ids_a.len())),
        "{}",
        stderr(&o)
    );
    assert_eq!(ledger_ids(dir.path(), Some(&server.url)).len(), ids.len());
}

#[test]
fn collect_rejects_an_unknown_source_and_a_file_without_source() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["collect", "--source", "rpm", "--system", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("rpm"), "{}", stderr(&o));

    let file = sample(DPKG);
    let o = run(
        dir.path(),
        &["collect", "--file", file.to_str().unwrap(), "--system", "x"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--source"), "{}", stderr(&o));

    let o = run(
        dir.path(),
        &[
            "collect",
            "--source",
            "dpkg",
            "--file",
            file.to_str().unwrap(),
            "--system",
            "x",
            "--utc-offset",
            "CEST",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("CEST"), "{}", stderr(&o));
    assert!(
        !dir.path().join("patchaudit.db").exists(),
        "nothing was recorded"
    );
}

// The other sources: dnf, the Windows outputs and osquery, each collected
// from a real sample where one exists and from the collectors' synthetic
// fixtures otherwise, with the context `collect` gives each source.

const SYSTEM: &str = "host-01";

/// A real sample under `shared/samples`, or (`fixtures/NAME`) a synthetic
/// fixture of the collectors crate.
fn input(rel: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    match rel.strip_prefix("fixtures/") {
        Some(name) => manifest.join("../collectors/tests/fixtures").join(name),
        None => manifest.join("../../../shared/samples").join(rel),
    }
}

/// A file's modification time to the second: what `collect` takes as the
/// observation time of a Windows snapshot.
fn mtime(path: &Path) -> DateTime<Utc> {
    let t = std::fs::metadata(path).unwrap().modified().unwrap();
    DateTime::from_timestamp(DateTime::<Utc>::from(t).timestamp(), 0).unwrap()
}

/// The context `collect` parses a file of `source` with (UTC, month first),
/// derived here from the documented rule rather than from its code.
fn context_of(source: Source, path: &Path) -> Context {
    match source {
        Source::WmicQfe | Source::Systeminfo | Source::GetHotFix => Context {
            observed_at: Some(mtime(path)),
            ..Context::default()
        },
        _ => Context::default(),
    }
}

/// The event_ids the parser gives `files` (one log, oldest first) on SYSTEM.
fn ids_of(source: Source, files: &[PathBuf], ctx: impl Fn(&Path) -> Context) -> Vec<String> {
    let mut all = Parsed::default();
    for f in files {
        let bytes = std::fs::read(f).expect("the input exists");
        all.extend(parse(source, &f.display().to_string(), &bytes, &ctx(f)));
    }
    all.event_ids(SYSTEM)
}

/// Collects `files` as `source` three times, into the local ledger or
/// through a server: the first run records exactly the parser's events,
/// the second (same state file) sends nothing, and the third, after the
/// state file was deleted, sends everything again and the ledger records
/// nothing twice.
fn collect_three_times(
    source: Source,
    files: &[PathBuf],
    extra: &[&str],
    expected: &[String],
    via_server: bool,
) {
    assert!(!expected.is_empty(), "{source}: the input has events");
    let dir = tempfile::tempdir().unwrap();
    let server = via_server.then(|| Server::start(dir.path(), &dir.path().join("ledger.db"), &[]));
    let url = server.as_ref().map(|s| s.url.clone());
    let mut args: Vec<String> = ["collect", "--source", source.name(), "--system", SYSTEM]
        .map(String::from)
        .to_vec();
    for f in files {
        args.push("--file".into());
        args.push(f.display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    if let Some(url) = &url {
        args.extend(["--server".to_owned(), url.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let n = expected.len();

    let o = run(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{source} {n} events ({n} new, 0 already sent)")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{n} recorded, 0 already recorded")),
        "{err}"
    );
    let ids = ledger_ids(dir.path(), url.as_deref());
    assert_eq!(ids.len(), n, "{source}: one record per parsed event");
    assert_eq!(as_set(&ids), as_set(expected));
    let state = dir.path().join("patchaudit-collect.state");
    assert!(state.exists(), "the state file is in the working directory");

    let o = run(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{source} {n} events (0 new, {n} already sent)")),
        "{err}"
    );
    assert!(err.contains("sent 0 to"), "{err}");
    assert_eq!(ledger_ids(dir.path(), url.as_deref()).len(), n);

    std::fs::remove_file(&state).unwrap();
    let o = run(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("({n} new, 0 already sent)")), "{err}");
    assert!(
        err.contains(&format!("0 recorded, {n} already recorded")),
        "{err}"
    );
    let ids = ledger_ids(dir.path(), url.as_deref());
    assert_eq!(ids.len(), n, "{source}: nothing was recorded twice");
    assert_eq!(as_set(&ids), as_set(expected));
}

#[test]
fn collect_wmic_qfe_from_a_utf16_sample_locally() {
    let file = input("windows/wmic-qfe/wesng_7_sp1_x64_enterprise_en-us_20190305_qfe.txt");
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(&[0xFF, 0xFE]), "UTF-16LE with a BOM");
    let files = [file];
    let expected = ids_of(Source::WmicQfe, &files, |f| context_of(Source::WmicQfe, f));
    assert_eq!(expected.len(), 276);
    // Three batches, the last one partial.
    collect_three_times(
        Source::WmicQfe,
        &files,
        &["--batch-size", "100"],
        &expected,
        false,
    );
}

#[test]
fn collect_systeminfo_from_a_utf16_sample_through_a_server() {
    let file = input("windows/systeminfo/wesng_7_sp1_x64_enterprise_fr_systeminfo_powershell.txt");
    assert!(std::fs::read(&file).unwrap().starts_with(&[0xFF, 0xFE]));
    let files = [file];
    let expected = ids_of(Source::Systeminfo, &files, |f| {
        context_of(Source::Systeminfo, f)
    });
    assert_eq!(expected.len(), 93);
    // Without an observation time systeminfo gives no events at all: the
    // file's modification time is what makes them.
    let bare = ids_of(Source::Systeminfo, &files, |_| Context::default());
    assert!(bare.is_empty());
    collect_three_times(Source::Systeminfo, &files, &[], &expected, true);
}

#[test]
fn collect_get_hotfix_csv_with_day_first_dates_locally() {
    let files = [input("fixtures/get_hotfix.csv")];
    let day_first = |f: &Path| Context {
        date_order: DateOrder::DayFirst,
        ..context_of(Source::GetHotFix, f)
    };
    let expected = ids_of(Source::GetHotFix, &files, day_first);
    let month_first = ids_of(Source::GetHotFix, &files, |f| {
        context_of(Source::GetHotFix, f)
    });
    assert_ne!(
        as_set(&expected),
        as_set(&month_first),
        "the date order changes what the fixture gives"
    );
    collect_three_times(
        Source::GetHotFix,
        &files,
        &["--date-order", "day-first"],
        &expected,
        false,
    );
}

#[test]
fn collect_windows_update_history_through_a_server() {
    let files = [input("fixtures/wu_history_queryhistory.csv")];
    let expected = ids_of(Source::WindowsUpdateHistory, &files, |_| Context::default());
    assert_eq!(expected.len(), 6);
    // --utc-offset is about local log times; history dates stay UTC.
    collect_three_times(
        Source::WindowsUpdateHistory,
        &files,
        &["--utc-offset", "+02:00"],
        &expected,
        true,
    );
}

#[test]
fn collect_dnf_history_info_locally() {
    let files = [input("fixtures/dnf_history_info.txt")];
    let expected = ids_of(Source::DnfHistory, &files, |_| Context::default());
    assert_eq!(expected.len(), 8);
    collect_three_times(Source::DnfHistory, &files, &[], &expected, false);
}

#[test]
fn collect_osquery_sample_and_fixture_as_one_log_through_a_server() {
    // The real deb_packages excerpt, then the synthetic rpm_packages,
    // patches and windows_update_history results, as one rotated set.
    let files = [
        input("osquery/beats_osqueryd.results.sample_deb_packages_excerpt.log"),
        input("fixtures/osquery_rpm_patches_wu.log"),
    ];
    let expected = ids_of(Source::Osquery, &files, |_| Context::default());
    assert_eq!(expected.len(), 20 + 7);
    collect_three_times(Source::Osquery, &files, &[], &expected, true);
}

#[test]
fn collect_records_each_kb_of_a_snapshot_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hotfix.csv");
    std::fs::copy(input("fixtures/get_hotfix.csv"), &file).unwrap();
    let set_mtime = |secs: i64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    let day1 = 1_750_000_000;
    set_mtime(day1);
    let files = [file.clone()];
    let first = ids_of(Source::GetHotFix, &files, |f| {
        context_of(Source::GetHotFix, f)
    });
    assert_eq!(first.len(), 4);
    let f = file.to_str().unwrap();
    let args = [
        "collect",
        "--source",
        "get-hotfix",
        "--file",
        f,
        "--system",
        SYSTEM,
    ];
    let o = run(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("4 recorded"), "{}", stderr(&o));

    // The next day's snapshot lists the same KBs. The one without a date
    // takes the new snapshot's time and so a new event_id, but its KB was
    // already recorded: nothing is sent.
    set_mtime(day1 + 86_400);
    let second = ids_of(Source::GetHotFix, &files, |f| {
        context_of(Source::GetHotFix, f)
    });
    assert_eq!(as_set(&first).intersection(&as_set(&second)).count(), 3);
    let o = run(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("get-hotfix 4 events (0 new, 4 already sent)"),
        "{err}"
    );
    assert_eq!(ledger_ids(dir.path(), None).len(), 4);

    // A snapshot with one more KB sends that KB only.
    let mut csv = std::fs::read_to_string(&file).unwrap();
    csv.push_str("\"SERVER01\",\"Security Update\",\"KB5000001\",\"\",\"\"\r\n");
    std::fs::write(&file, csv).unwrap();
    set_mtime(day1 + 2 * 86_400);
    let o = run(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("get-hotfix 5 events (1 new, 4 already sent)"),
        "{err}"
    );
    assert!(err.contains("1 recorded, 0 already recorded"), "{err}");
    let o = run(
        dir.path(),
        &["events", "--format", "ndjson", "--patch-id", "KB5000001"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1);
    assert_eq!(ledger_ids(dir.path(), None).len(), 5);
}

#[test]
fn collect_asks_for_a_file_for_saved_output_and_lists_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &["collect", "--source", "systeminfo", "--system", "x"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("--file"), "{err}");
    assert!(err.contains("systeminfo > systeminfo.txt"), "{err}");

    let o = run(dir.path(), &["collect", "--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let help = stdout(&o);
    for source in Source::ALL {
        assert!(
            help.contains(&format!("\n  {:<16}", source.name())),
            "--help lists {source}: {help}"
        );
    }
    for family in ["Debian", "RHEL", "Windows", "osquery"] {
        assert!(help.contains(&format!("  # {family}")), "{family}: {help}");
    }
}
