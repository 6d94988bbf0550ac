//! The rules of the formats that have no real sample, stated as assertions
//! on the synthetic fixtures (the golden files hold the full output).

mod common;

use common::{fixture, utc};
use patchaudit_collectors::{parse, Context, Kind, Source};
use patchaudit_domain::Status;

fn observed() -> Context {
    Context {
        observed_at: Some(utc("2025-01-01T00:00:00Z")),
        ..Context::default()
    }
}

#[test]
fn dnf_pairs_upgrades_fills_blanked_names_and_fails_whole_transactions() {
    let p = parse(
        Source::DnfHistory,
        "dnf.txt",
        &fixture("dnf_history_info.txt"),
        &Context::default(),
    );
    let libcurl = p
        .events
        .iter()
        .find(|e| e.patch_id == "libcurl@7.66.0-1.fc31")
        .unwrap();
    assert_eq!(
        libcurl.from_version.as_deref(),
        Some("7.65.0-1.fc31"),
        "name blanked by dnf"
    );
    assert_eq!(libcurl.kind, Kind::Upgrade);
    // End time "           10:13:57 2020" takes its date from Begin time.
    assert_eq!(libcurl.applied_at_rfc3339(), "2020-03-03T10:13:57Z");
    let nm = p
        .events
        .iter()
        .find(|e| e.patch_id.starts_with("NetworkManager@"))
        .unwrap();
    assert_eq!(
        nm.to_version.as_deref(),
        Some("1:1.20.10-1.fc31"),
        "epoch inside name-E:V-R.A"
    );
    let telnet = p
        .events
        .iter()
        .find(|e| e.patch_id.starts_with("telnet@"))
        .unwrap();
    assert_eq!(telnet.status, Status::RolledBack);
    // Return-Code: Failure: 1 makes every package of that transaction fail.
    let failed: Vec<&str> = p
        .events
        .iter()
        .filter(|e| e.status == Status::Failure)
        .map(|e| e.patch_id.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "kernel-core@5.5.7-200.fc31",
            "kernel-modules@5.5.7-200.fc31",
            "openssl-libs@1:1.1.1c-1.fc31",
            "vim-enhanced@2:8.2.348-1.fc31"
        ]
    );
    let kernel = &p
        .events
        .iter()
        .find(|e| e.patch_id.starts_with("kernel-core"))
        .unwrap();
    assert!(kernel
        .detail
        .as_deref()
        .unwrap()
        .contains("cpio: rename failed"));
    assert_eq!(kernel.actor, None, "System <unset> is no user");
    let openssl = p
        .events
        .iter()
        .find(|e| e.patch_id.starts_with("openssl-libs"))
        .unwrap();
    assert_eq!(
        (openssl.kind, openssl.from_version.as_deref()),
        (Kind::Downgrade, Some("1:1.1.1d-2.fc31"))
    );
}

#[test]
fn get_hotfix_reads_powershell_dates_in_csv_and_json() {
    for f in ["get_hotfix.csv", "get_hotfix.json"] {
        let p = parse(Source::GetHotFix, f, &fixture(f), &observed());
        let at: Vec<(String, String)> = p
            .events
            .iter()
            .map(|e| (e.patch_id.clone(), e.applied_at_rfc3339()))
            .collect();
        assert_eq!(
            at,
            [
                ("KB4495590".to_owned(), "2019-05-16T00:00:00Z".to_owned()),
                ("KB4470788".to_owned(), "2019-01-22T00:00:00Z".to_owned()),
                ("KB4480056".to_owned(), "2019-01-24T00:00:00Z".to_owned()),
                ("KB4103721".to_owned(), "2025-01-01T00:00:00Z".to_owned()),
            ],
            "{f}"
        );
        assert!(p
            .events
            .iter()
            .all(|e| e.host.as_deref() == Some("SERVER01")));
        assert_eq!(p.events[0].actor.as_deref(), Some("NT AUTHORITY\\SYSTEM"));
    }
}

#[test]
fn windows_update_history_outcomes() {
    let p = parse(
        Source::WindowsUpdateHistory,
        "wu.csv",
        &fixture("wu_history_queryhistory.csv"),
        &Context::default(),
    );
    let row = |kb: &str, status: Status| {
        p.events
            .iter()
            .find(|e| e.patch_id == kb && e.status == status)
            .unwrap_or_else(|| panic!("{kb} {status}"))
    };
    let failed = row("KB5035853", Status::Failure);
    assert!(failed
        .detail
        .as_deref()
        .unwrap()
        .starts_with("Failed (HResult 0x80240017)"));
    assert_eq!(
        failed.applied_at_rfc3339(),
        "2024-03-11T23:02:10Z",
        "UTC by default"
    );
    assert_eq!(
        row("KB5035853", Status::Success).actor.as_deref(),
        Some("UpdateOrchestrator")
    );
    assert_eq!(row("KB5034765", Status::RolledBack).kind, Kind::Remove);
    assert!(row("KB5034467", Status::Failure)
        .detail
        .as_deref()
        .unwrap()
        .starts_with("Aborted"));
    assert!(row("KB5034848", Status::Success)
        .detail
        .as_deref()
        .unwrap()
        .starts_with("SucceededWithErrors"));
    assert!(
        p.events.iter().all(|e| e.patch_id != "KB5034204"),
        "NotStarted is no outcome"
    );

    // An exporting script that converted to local time: say so.
    let ctx = Context {
        windows_update_offset: chrono::FixedOffset::east_opt(3600).unwrap(),
        ..Context::default()
    };
    let p = parse(
        Source::WindowsUpdateHistory,
        "wu.csv",
        &fixture("wu_history_pswindowsupdate.csv"),
        &ctx,
    );
    assert_eq!(
        p.events[0].applied_at_rfc3339(),
        "2024-03-12T02:15:33+01:00"
    );
    assert_eq!(p.events[0].host.as_deref(), Some("WS01"));
}

#[test]
fn osquery_pairs_removed_and_added_rows_of_one_run() {
    let p = parse(
        Source::Osquery,
        "osq.log",
        &fixture("osquery_rpm_patches_wu.log"),
        &Context::default(),
    );
    let up = p.events.iter().find(|e| e.kind == Kind::Upgrade).unwrap();
    assert_eq!(up.patch_id, "openssl-libs@1:1.1.1k-12.el8_9");
    assert_eq!(up.from_version.as_deref(), Some("1:1.1.1k-9.el8_7"));
    assert_eq!(up.package.as_deref(), Some("openssl-libs.x86_64"));
    assert_eq!(up.host.as_deref(), Some("web-07"));
    let first = &p.events[0];
    assert!(first
        .detail
        .as_deref()
        .unwrap()
        .starts_with("initial inventory"));
    let removed = p
        .events
        .iter()
        .find(|e| e.patch_id == "telnet@1:0.17-76.el8")
        .unwrap();
    assert_eq!(removed.status, Status::RolledBack);
    let patch = p
        .events
        .iter()
        .find(|e| e.patch_id == "KB5035857" && e.actor.as_deref() == Some("NT AUTHORITY\\SYSTEM"))
        .unwrap();
    assert_eq!(
        patch.applied_at_rfc3339(),
        "2024-03-12T00:00:00Z",
        "installed_on, not unixTime"
    );
    let wu: Vec<Status> = p
        .events
        .iter()
        .filter(|e| e.actor.as_deref() == Some("UpdateOrchestrator"))
        .map(|e| e.status)
        .collect();
    assert_eq!(wu, [Status::Failure, Status::Success]);
}

#[test]
fn event_ids_are_stable_distinct_and_short() {
    let p = parse(
        Source::DnfHistory,
        "a",
        &fixture("dnf_history_info.txt"),
        &Context::default(),
    );
    let again = parse(
        Source::DnfHistory,
        "b",
        &fixture("dnf_history_info.txt"),
        &Context::default(),
    );
    assert_eq!(
        p.event_ids("host-1"),
        again.event_ids("host-1"),
        "file names do not matter"
    );
    assert_ne!(
        p.event_ids("host-1"),
        p.event_ids("host-2"),
        "the system does"
    );
    for id in p.event_ids("host-1") {
        assert!(id.starts_with("dnf-") && id.len() <= 128, "{id}");
    }
    // Identical events in one parse get distinct ids.
    let log = b"2024-01-01 00:00:00 install a <none> 1\n2024-01-01 00:00:00 status installed a 1\n\
2024-01-01 00:00:00 install a <none> 1\n2024-01-01 00:00:00 status installed a 1\n";
    let p = parse(Source::Dpkg, "dpkg.log", log, &Context::default());
    let ids = p.event_ids("h");
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert_eq!(ids[0], p.events[0].event_id("h", 0));
    let raw = p.to_raw_events("h");
    assert_eq!(
        raw[1].fields[0],
        (
            "event_id".to_owned(),
            patchaudit_domain::Input::Text(ids[1].clone())
        )
    );
}
