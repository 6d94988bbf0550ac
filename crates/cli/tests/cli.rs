//! End-to-end tests of the `patchaudit` binary: every subcommand, exit codes,
//! local and remote modes, and configuration layering.

mod common;

use common::{cmd, run, stderr, stdout, Server};
use std::io::Write;
use std::process::Stdio;

fn ndjson_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("valid NDJSON"))
        .collect()
}

fn count(dir: &std::path::Path, extra: &[&str]) -> usize {
    let mut args = vec!["events", "--format", "ndjson"];
    args.extend_from_slice(extra);
    let o = run(dir, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).lines().count()
}

#[test]
fn every_subcommand_has_help_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    for sub in [
        "serve", "log", "import", "collect", "events", "systems", "patch", "config", "verify",
        "prove", "export", "key",
    ] {
        let o = run(dir.path(), &[sub, "--help"]);
        assert!(o.status.success(), "{sub} --help failed");
        let text = stdout(&o);
        assert!(
            text.contains("Examples:"),
            "{sub} --help has no examples:\n{text}"
        );
        assert!(
            text.contains(&format!("patchaudit {sub}")),
            "{sub} --help shows no usage of itself"
        );
    }
    let top = stdout(&run(dir.path(), &["--help"]));
    assert!(top.contains("Exit codes:"));
    // clap's own usage errors exit 2.
    assert_eq!(run(dir.path(), &["log", "--system"]).status.code(), Some(2));
}

#[test]
fn log_then_query_locally() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run(
        d,
        &[
            "log",
            "--system",
            "web-01",
            "--patch-id",
            "KB5034441",
            "--status",
            "failure",
            "--applied-at",
            "2024-05-01T14:00:00+02:00",
            "--event-id",
            "e1",
            "--package",
            "kernel",
            "--from-version",
            "1",
            "--to-version",
            "2",
            "--source",
            "windows-update",
            "--actor",
            "ops",
            "--detail",
            "0x80070643\nretry later",
            "--cve",
            "CVE-2024-20666",
            "--cve",
            "CVE-2024-0001",
            "--reboot-required",
            "--change-ref",
            "CHG-7",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("recorded as seq 0"),
        "{}",
        stdout(&o)
    );
    assert!(
        d.join("patchaudit.db").exists(),
        "the default database is ./patchaudit.db"
    );

    let again = run(
        d,
        &[
            "log",
            "--system",
            "web-01",
            "--patch-id",
            "KB5034441",
            "--status",
            "failure",
            "--applied-at",
            "2024-05-01T12:00:00Z",
            "--event-id",
            "e1",
            "--package",
            "kernel",
            "--from-version",
            "1",
            "--to-version",
            "2",
            "--source",
            "windows-update",
            "--actor",
            "ops",
            "--detail",
            "0x80070643\nretry later",
            "--cve",
            "CVE-2024-20666",
            "--cve",
            "CVE-2024-0001",
            "--reboot-required",
            "--change-ref",
            "CHG-7",
        ],
    );
    assert!(again.status.success());
    assert!(
        stdout(&again).starts_with("already recorded as seq 0"),
        "{}",
        stdout(&again)
    );

    let events = ndjson_lines(&stdout(&run(d, &["events", "--format", "ndjson"])));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["applied_at"], "2024-05-01T12:00:00.000000Z");
    assert_eq!(e["detail"], "0x80070643\nretry later");
    assert_eq!(
        e["cves"],
        serde_json::json!(["CVE-2024-20666", "CVE-2024-0001"])
    );
    assert_eq!(e["reboot_required"], true);
    assert_eq!(e["change_ref"], "CHG-7");

    let table = stdout(&run(d, &["events"]));
    assert!(
        table.contains("KB5034441") && table.contains("1 → 2"),
        "{table}"
    );
}

#[test]
fn exit_codes_scripts_can_trust() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Reading a ledger that does not exist is "not found", and creates nothing.
    let o = run(d, &["events"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(!d.join("patchaudit.db").exists());

    let bad = run(
        d,
        &[
            "log",
            "--system",
            "",
            "--patch-id",
            "KB1",
            "--status",
            "failed",
            "--applied-at",
            "yesterday",
        ],
    );
    assert_eq!(bad.status.code(), Some(3));
    let err = stderr(&bad);
    assert!(err.contains("--system: must not be empty"), "{err}");
    assert!(
        err.contains("--status: must be one of success, failure, rolled_back"),
        "{err}"
    );
    assert!(err.contains("--applied-at:"), "{err}");
    assert!(
        !d.join("patchaudit.db").exists(),
        "invalid input must not even create the ledger"
    );

    let ok = run(
        d,
        &[
            "log",
            "--system",
            "a",
            "--patch-id",
            "KB1",
            "--status",
            "success",
            "--event-id",
            "k",
        ],
    );
    assert!(ok.status.success());
    let conflict = run(
        d,
        &[
            "log",
            "--system",
            "a",
            "--patch-id",
            "KB1",
            "--status",
            "failure",
            "--event-id",
            "k",
        ],
    );
    assert_eq!(conflict.status.code(), Some(4));
    assert!(stderr(&conflict).contains("seq 0"), "{}", stderr(&conflict));

    assert_eq!(run(d, &["patch", "KB-unknown"]).status.code(), Some(5));
    let unreachable = run(d, &["events", "--server", "http://127.0.0.1:9"]);
    assert_eq!(
        unreachable.status.code(),
        Some(6),
        "{}",
        stderr(&unreachable)
    );
    assert_eq!(
        run(d, &["events", "--status", "nope"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(d, &["events", "--server", "ftp://x"]).status.code(),
        Some(2)
    );
}

#[test]
fn import_is_all_or_nothing_and_safe_to_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = "{\"patch_id\":\"KB1\",\"system\":\"a\",\"applied_at\":\"2024-01-01T00:00:00Z\",\"status\":\"success\"}\n";
    let bad = format!("{good}\n{{\"patch_id\":\"KB2\",\"system\":\"b\",\"applied_at\":\"2024-01-01\",\"status\":\"success\",\"x\":1}}\n");
    std::fs::write(d.join("bad.ndjson"), &bad).unwrap();
    let o = run(d, &["import", "bad.ndjson"]);
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(err.contains("bad.ndjson: line 3: applied_at:"), "{err}");
    assert!(
        err.contains("bad.ndjson: line 3: x: is not a field"),
        "{err}"
    );
    assert!(!d.join("patchaudit.db").exists(), "nothing may be written");

    let many: String = (0..2500)
        .map(|i| format!("{{\"patch_id\":\"KB{}\",\"system\":\"s{}\",\"applied_at\":\"2024-01-01T00:00:00Z\",\"status\":\"success\"}}\n", i % 7, i))
        .collect();
    std::fs::write(d.join("many.ndjson"), &many).unwrap();
    let o = run(d, &["import", "many.ndjson", "--batch-size", "300"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2500 events: 2500 recorded, 0 already recorded"),
        "{}",
        stderr(&o)
    );
    let o = run(d, &["import", "many.ndjson"]);
    assert!(
        stderr(&o).contains("0 recorded, 2500 already recorded"),
        "{}",
        stderr(&o)
    );
    assert_eq!(count(d, &[]), 2500);

    // --dry-run validates and records nothing.
    std::fs::write(d.join("one.json"), format!("[{}]", good.trim())).unwrap();
    let o = run(
        d,
        &["import", "one.json", "--dry-run", "--no-derive-event-id"],
    );
    assert!(o.status.success());
    assert_eq!(count(d, &[]), 2500);
}

#[test]
fn import_csv_json_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("e.csv"),
        "patch_id,system,applied_at,status,cves,reboot_required,detail\n\
         KB1,web-01,2024-01-01T00:00:00Z,failure,CVE-2024-0001;CVE-2024-0002,yes,\"multi\nline\"\n\
         KB1,web-02,2024-01-02T00:00:00Z,success,,,\n",
    )
    .unwrap();
    let o = run(d, &["import", "e.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(
        d.join("e.json"),
        r#"[{"patch_id": 42, "system": "db", "applied_at": "2024-02-01T00:00:00Z", "status": "rolled_back"}]"#,
    )
    .unwrap();
    assert!(run(d, &["import", "e.json"]).status.success());

    let mut child = cmd(d)
        .args(["import", "-", "--format", "ndjson"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"patch_id\":\"KB9\",\"system\":\"x\",\"applied_at\":\"2024-03-01T00:00:00Z\",\"status\":\"success\"}\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());

    let events = ndjson_lines(&stdout(&run(d, &["events", "--format", "ndjson"])));
    assert_eq!(events.len(), 4);
    assert_eq!(
        events[0]["cves"],
        serde_json::json!(["CVE-2024-0001", "CVE-2024-0002"])
    );
    assert_eq!(events[0]["detail"], "multi\nline");
    assert_eq!(events[0]["reboot_required"], true);
    assert_eq!(events[2]["patch_id"], "42");

    // CSV output parses back with the same columns and values.
    let csv_out = stdout(&run(d, &["events", "--format", "csv"]));
    let mut rdr = csv::Reader::from_reader(csv_out.as_bytes());
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        patchaudit_server::wire::CSV_COLUMNS
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(&rows[0][11], "multi\nline");
    assert_eq!(&rows[0][12], "CVE-2024-0001;CVE-2024-0002");

    // JSON output is one array.
    let json: serde_json::Value = serde_json::from_str(&stdout(&run(
        d,
        &["events", "--format", "json", "--status", "success"],
    )))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);

    // Filters.
    assert_eq!(count(d, &["--system", "web-01"]), 1);
    assert_eq!(
        count(
            d,
            &[
                "--applied-from",
                "2024-01-02T00:00:00Z",
                "--applied-to",
                "2024-02-01T00:00:00Z"
            ]
        ),
        1
    );
    assert_eq!(count(d, &["--seq-from", "1", "--seq-to", "3"]), 2);
    assert_eq!(count(d, &["--limit", "3"]), 3);
}

#[test]
fn remote_mode_gives_the_same_answers_as_local() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_db = d.join("server.db");
    let server = Server::start(d, &server_db, &[]);
    let url = server.url.clone();
    let many: String = (0..1200)
        .map(|i| {
            let status = if i % 10 == 0 { "failure" } else { "success" };
            // Distinct applied_at per row: identical rows would rightly share one derived event_id.
            let (h, m, sec) = (i / 3600, (i / 60) % 60, i % 60);
            format!("{{\"patch_id\":\"KB{}\",\"system\":\"s{}\",\"applied_at\":\"2024-01-01T{h:02}:{m:02}:{sec:02}Z\",\"status\":\"{status}\"}}\n", i % 3, i % 50)
        })
        .collect();
    std::fs::write(d.join("many.ndjson"), &many).unwrap();
    let o = run(d, &["import", "many.ndjson", "--server", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        d,
        &[
            "log",
            "--server",
            &url,
            "--system",
            "s1",
            "--patch-id",
            "KB1",
            "--status",
            "rolled_back",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("recorded as seq 1200"),
        "{}",
        stdout(&o)
    );

    // The same file imported locally must give identical query answers.
    let local_db = format!("sqlite://{}", d.join("local.db").display());
    assert!(
        run(d, &["import", "many.ndjson", "--database-url", &local_db])
            .status
            .success()
    );
    assert!(run(
        d,
        &[
            "log",
            "--database-url",
            &local_db,
            "--system",
            "s1",
            "--patch-id",
            "KB1",
            "--status",
            "rolled_back"
        ]
    )
    .status
    .success());

    // Who recorded them differs, and says how: the server's token, or the
    // local user for events written straight to the database.
    let by = |args: &[&str]| -> Vec<String> {
        ndjson_lines(&stdout(&run(d, args)))
            .iter()
            .map(|e| e["recorded_by"].as_str().unwrap().to_owned())
            .collect()
    };
    let remote_by = by(&["events", "--server", &url, "--format", "ndjson"]);
    assert!(
        !remote_by.is_empty() && remote_by.iter().all(|b| b.starts_with("test-admin#")),
        "{remote_by:?}"
    );
    let local_by = by(&["events", "--database-url", &local_db, "--format", "ndjson"]);
    assert!(
        !local_by.is_empty() && local_by.iter().all(|b| b.starts_with("local:")),
        "{local_by:?}"
    );

    let strip = |v: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        v.into_iter()
            .map(|mut e| {
                e.as_object_mut().unwrap().remove("recorded_at");
                e.as_object_mut().unwrap().remove("recorded_by");
                e
            })
            .collect()
    };
    let remote = strip(ndjson_lines(&stdout(&run(
        d,
        &[
            "events", "--server", &url, "--format", "ndjson", "--status", "failure",
        ],
    ))));
    let local = strip(ndjson_lines(&stdout(&run(
        d,
        &[
            "events",
            "--database-url",
            &local_db,
            "--format",
            "ndjson",
            "--status",
            "failure",
        ],
    ))));
    assert_eq!(remote.len(), 120);
    assert_eq!(remote, local);

    let sys_remote: serde_json::Value = serde_json::from_str(&stdout(&run(
        d,
        &["systems", "--server", &url, "--format", "json"],
    )))
    .unwrap();
    let sys_local: serde_json::Value = serde_json::from_str(&stdout(&run(
        d,
        &["systems", "--database-url", &local_db, "--format", "json"],
    )))
    .unwrap();
    assert_eq!(sys_remote.as_array().unwrap().len(), 50);
    let counts = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| (s["system"].clone(), s["events"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&sys_remote), counts(&sys_local));

    let p_remote: serde_json::Value = serde_json::from_str(&stdout(&run(
        d,
        &["patch", "KB1", "--server", &url, "--format", "json"],
    )))
    .unwrap();
    assert_eq!(p_remote["rolled_back"][0]["system"], "s1");
    assert_eq!(
        run(d, &["patch", "nope", "--server", &url]).status.code(),
        Some(5)
    );

    let bad = run(
        d,
        &[
            "log",
            "--server",
            &url,
            "--system",
            "s1",
            "--patch-id",
            "KB1",
            "--status",
            "success",
            "--applied-at",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert_eq!(bad.status.code(), Some(3));
    assert!(stderr(&bad).contains("--applied-at"), "{}", stderr(&bad));
}

#[test]
fn config_layers_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("patchaudit.toml"),
        "max_batch = 5\nfuture_skew = \"10m\"\n",
    )
    .unwrap();
    let o = cmd(d)
        .args(["config", "--max-batch", "7"])
        .env("PATCHAUDIT_FUTURE_SKEW", "2h")
        .env(
            "PATCHAUDIT_DATABASE_URL",
            "postgres://audit:hunter2@db/ledger",
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("max_batch = 7  # flag --max-batch"), "{text}");
    assert!(
        text.contains("future_skew = \"2h\"  # env PATCHAUDIT_FUTURE_SKEW"),
        "{text}"
    );
    assert!(text.contains("config file: patchaudit.toml"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("audit:****@db"), "{text}");

    std::fs::write(d.join("patchaudit.toml"), "max_batch = \"many\"\n").unwrap();
    let o = run(d, &["config"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("max_batch"), "{}", stderr(&o));
}

#[test]
fn serve_applies_configured_limits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Server::start(d, &d.join("l.db"), &["--max-batch", "2"]);
    let three: String = (0..3)
        .map(|i| format!("{{\"patch_id\":\"KB1\",\"system\":\"s{i}\",\"applied_at\":\"2024-01-01T00:00:00Z\",\"status\":\"success\"}}\n"))
        .collect();
    std::fs::write(d.join("three.ndjson"), three).unwrap();
    let o = run(
        d,
        &[
            "import",
            "three.ndjson",
            "--server",
            &server.url,
            "--batch-size",
            "3",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("limit is 2"), "{}", stderr(&o));
    let o = run(
        d,
        &[
            "import",
            "three.ndjson",
            "--server",
            &server.url,
            "--batch-size",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}
