//! End-to-end tests of `patchaudit collect` on the real Debian samples:
//! the state file, idempotency, and the spool across a server outage.

mod common;

use common::{run, stderr, stdout, Server};
use patchaudit_collectors::{parse, Context, Source};
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
