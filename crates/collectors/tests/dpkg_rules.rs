//! The dpkg.log grouping rules of `src/dpkg.rs`, one scenario each, and the
//! same rules across a log rotation.

mod common;

use common::sample;
use patchaudit_collectors::{dpkg, parse_rotated, Context, Kind, Parsed, ProblemKind, Source};
use patchaudit_domain::Status;

fn run(log: &str) -> Parsed {
    dpkg::parse("dpkg.log", log, &Context::default())
}

fn brief(p: &Parsed) -> Vec<String> {
    p.events
        .iter()
        .map(|e| {
            format!(
                "L{} {} {} {} {}",
                e.line,
                e.kind.as_str(),
                e.status.as_str(),
                e.patch_id,
                e.applied_at_rfc3339()
            )
        })
        .collect()
}

const UPGRADE_UNPACK: &str = "\
2024-05-01 10:00:00 startup archives unpack
2024-05-01 10:00:00 upgrade foo:amd64 1.0-1 1.0-2
2024-05-01 10:00:00 status half-configured foo:amd64 1.0-1
2024-05-01 10:00:00 status unpacked foo:amd64 1.0-1
2024-05-01 10:00:00 status half-installed foo:amd64 1.0-1
2024-05-01 10:00:01 status unpacked foo:amd64 1.0-2
";

#[test]
fn postinst_failure_then_later_recovery() {
    let log = format!(
        "{UPGRADE_UNPACK}\
2024-05-01 10:00:01 startup packages configure
2024-05-01 10:00:01 configure foo:amd64 1.0-2 <none>
2024-05-01 10:00:01 status unpacked foo:amd64 1.0-2
2024-05-01 10:00:02 status half-configured foo:amd64 1.0-2
2024-05-02 09:00:00 startup packages configure
2024-05-02 09:00:00 configure foo:amd64 1.0-2 <none>
2024-05-02 09:00:00 status half-configured foo:amd64 1.0-2
2024-05-02 09:00:01 status installed foo:amd64 1.0-2
"
    );
    let p = run(&log);
    assert_eq!(
        brief(&p),
        [
            "L10 upgrade failure foo@1.0-2 2024-05-01T10:00:02Z",
            "L14 configure success foo@1.0-2 2024-05-02T09:00:01Z",
        ]
    );
    assert!(p.events[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("half-configured"));
    assert_eq!(p.events[0].from_version.as_deref(), Some("1.0-1"));
    assert!(p.problems.is_empty(), "{:?}", p.problems);
}

#[test]
fn unpack_rolled_back_to_the_old_version_is_a_failure() {
    let log = "\
2024-05-01 10:00:00 startup archives unpack
2024-05-01 10:00:00 upgrade foo:amd64 1.0-1 1.0-2
2024-05-01 10:00:00 status half-configured foo:amd64 1.0-1
2024-05-01 10:00:00 status half-installed foo:amd64 1.0-1
2024-05-01 10:00:01 status installed foo:amd64 1.0-1
";
    let p = run(log);
    assert_eq!(
        brief(&p),
        ["L5 upgrade failure foo@1.0-2 2024-05-01T10:00:01Z"]
    );
    assert!(p.events[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("rolled back"));
}

#[test]
fn a_new_install_of_an_unfinished_package_replaces_it() {
    let log = format!(
        "{UPGRADE_UNPACK}\
2024-05-03 10:00:00 startup archives unpack
2024-05-03 10:00:00 upgrade foo:amd64 1.0-2 1.0-3
2024-05-03 10:00:00 status unpacked foo:amd64 1.0-3
2024-05-03 10:00:00 startup packages configure
2024-05-03 10:00:01 configure foo:amd64 1.0-3 <none>
2024-05-03 10:00:01 status installed foo:amd64 1.0-3
"
    );
    let p = run(&log);
    assert_eq!(
        brief(&p),
        ["L12 upgrade success foo@1.0-3 2024-05-03T10:00:01Z"]
    );
    assert_eq!(p.problems.len(), 1);
    assert_eq!(
        (p.problems[0].line, p.problems[0].kind),
        (2, ProblemKind::Incomplete)
    );
}

#[test]
fn a_half_way_package_replaced_by_a_new_action_failed() {
    let log = "\
2024-05-01 10:00:00 upgrade foo:amd64 1.0-1 1.0-2
2024-05-01 10:00:00 status half-installed foo:amd64 1.0-1
2024-05-01 10:00:05 remove foo:amd64 1.0-1 <none>
2024-05-01 10:00:05 status config-files foo:amd64 1.0-1
";
    let p = run(log);
    assert_eq!(
        brief(&p),
        [
            "L2 upgrade failure foo@1.0-2 2024-05-01T10:00:00Z",
            "L4 remove rolled_back foo@1.0-1 2024-05-01T10:00:05Z",
        ]
    );
}

#[test]
fn triggers_awaited_at_the_new_version_is_configured() {
    let log = "\
2024-05-01 10:00:00 install bar:all <none> 2.0
2024-05-01 10:00:00 status half-installed bar:all 2.0
2024-05-01 10:00:00 status unpacked bar:all 2.0
2024-05-01 10:00:01 configure bar:all 2.0 <none>
2024-05-01 10:00:01 status half-configured bar:all 2.0
2024-05-01 10:00:02 status triggers-awaited bar:all 2.0
2024-05-01 10:00:03 status installed bar:all 2.0
";
    let p = run(log);
    assert_eq!(
        brief(&p),
        ["L6 install success bar@2.0 2024-05-01T10:00:02Z"]
    );
}

#[test]
fn kinds_from_versions() {
    let log = "\
2024-05-01 10:00:00 upgrade a:amd64 2.0 1.0
2024-05-01 10:00:00 status installed a:amd64 1.0
2024-05-01 10:00:00 upgrade b:amd64 1.0 1.0
2024-05-01 10:00:00 status installed b:amd64 1.0
2024-05-01 10:00:00 upgrade c:amd64 1.0~rc1 1.0
2024-05-01 10:00:00 status installed c:amd64 1.0
2024-05-01 10:00:00 install d <none> 1:2.0
2024-05-01 10:00:00 status installed d 1:2.0
2024-05-01 10:00:00 disappear e:amd64 3.0 <none>
";
    let p = run(log);
    let kinds: Vec<(Kind, &str, Status)> = p
        .events
        .iter()
        .map(|e| (e.kind, e.patch_id.as_str(), e.status))
        .collect();
    assert_eq!(
        kinds,
        [
            (Kind::Downgrade, "a@1.0", Status::Success),
            (Kind::Reinstall, "b@1.0", Status::Success),
            (Kind::Upgrade, "c@1.0", Status::Success),
            (Kind::Install, "d@1:2.0", Status::Success),
            (Kind::Remove, "e@3.0", Status::RolledBack),
        ]
    );
    assert_eq!(p.events[3].package.as_deref(), Some("d"));
}

#[test]
fn a_removal_stopped_half_way_fails_and_an_unfinished_one_is_incomplete() {
    let log = "\
2024-05-01 10:00:00 startup packages remove
2024-05-01 10:00:00 status installed foo:amd64 1.0
2024-05-01 10:00:00 remove foo:amd64 1.0 <none>
2024-05-01 10:00:00 status half-configured foo:amd64 1.0
2024-05-01 10:00:01 status half-installed foo:amd64 1.0
2024-05-01 10:00:02 startup packages configure
2024-05-01 10:00:03 install late:amd64 <none> 9
2024-05-01 10:00:03 status unpacked late:amd64 9
";
    let p = run(log);
    assert_eq!(
        brief(&p),
        ["L5 remove failure foo@1.0 2024-05-01T10:00:01Z"]
    );
    assert_eq!(p.problems.len(), 1);
    assert_eq!(
        (p.problems[0].line, p.problems[0].kind),
        (7, ProblemKind::Incomplete)
    );
    assert!(
        p.problems[0].message.contains("last state unpacked"),
        "{}",
        p.problems[0].message
    );
}

#[test]
fn local_time_takes_the_context_offset() {
    let ctx = Context {
        utc_offset: chrono::FixedOffset::east_opt(2 * 3600).unwrap(),
        ..Context::default()
    };
    let p = dpkg::parse(
        "dpkg.log",
        "2024-05-01 10:00:00 install x <none> 1\n2024-05-01 10:00:00 status installed x 1\n",
        &ctx,
    );
    assert_eq!(
        p.events[0].applied_at_rfc3339(),
        "2024-05-01T10:00:00+02:00"
    );
    assert_eq!(p.events[0].applied_at.timestamp(), 1_714_550_400);
}

/// Every install/upgrade/remove/purge line ends as exactly one event or one
/// incomplete problem.
pub fn assert_one_outcome_per_action(text: &str, p: &Parsed, what: &str) {
    let actions = text
        .lines()
        .filter(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            w.len() == 6 && matches!(w[2], "install" | "upgrade" | "remove" | "purge")
        })
        .count();
    let events = p
        .events
        .iter()
        .filter(|e| e.kind != Kind::Configure)
        .count();
    let incomplete = p
        .problems
        .iter()
        .filter(|x| x.kind == ProblemKind::Incomplete && !x.message.starts_with("configure "))
        .count();
    assert_eq!(
        events + incomplete,
        actions,
        "{what}: events {events} + incomplete {incomplete}"
    );
}

#[test]
fn samples_have_one_outcome_per_action() {
    for rel in [
        "debian/dpkg-log/plaso_dpkg.log",
        "debian/dpkg-log/industio-ubuntu20.04-armhf_dpkg_excerpt_L2002-2116.log",
        "debian/dpkg-log/industio-ubuntu20.04-armhf_dpkg_excerpt_L3817-3924.log",
        "debian/dpkg-log/riscv64-debian-sid_dpkg.log",
    ] {
        let text = String::from_utf8(sample(rel)).unwrap();
        let p = dpkg::parse(rel, &text, &Context::default());
        assert_one_outcome_per_action(&text, &p, rel);
    }
}

#[test]
fn rotation_in_the_middle_of_an_action_is_followed_across_files() {
    let text = String::from_utf8(sample("debian/dpkg-log/riscv64-debian-sid_dpkg.log")).unwrap();
    let whole = dpkg::parse("dpkg.log", &text, &Context::default());
    // Cut after line 6: debconf's upgrade is unpacked but not yet configured.
    let cut: usize = text.split_inclusive('\n').take(6).map(str::len).sum();
    let (older, newer) = text.split_at(cut);
    let files: [(&str, &[u8]); 2] = [
        ("dpkg.log.1", older.as_bytes()),
        ("dpkg.log", newer.as_bytes()),
    ];
    let rotated = parse_rotated(Source::Dpkg, &files, &Context::default());
    let strip = |p: &Parsed| -> Vec<(Kind, String, Status, String)> {
        p.events
            .iter()
            .map(|e| (e.kind, e.patch_id.clone(), e.status, e.applied_at_rfc3339()))
            .collect()
    };
    assert_eq!(strip(&rotated), strip(&whole));
    assert!(rotated.problems.is_empty(), "{:?}", rotated.problems);
    assert_eq!(
        rotated.event_ids("h"),
        whole.event_ids("h"),
        "ids do not depend on files or lines"
    );

    // Parsed one at a time, the older file reports the upgrade as
    // incomplete and the newer one records the finishing configure.
    let alone = dpkg::parse("dpkg.log.1", older, &Context::default());
    assert!(alone.events.is_empty());
    assert_eq!(alone.problems[0].kind, ProblemKind::Incomplete);
    let rest = dpkg::parse("dpkg.log", newer, &Context::default());
    assert_eq!(rest.events[0].kind, Kind::Configure);
    assert_eq!(rest.events[0].patch_id, "debconf@1.5.79");
}
