//! Malformed input: every parser reports each bad line with its file and
//! line number, keeps going, and counts the problems.

mod common;

use chrono::Datelike;
use common::utc;
use patchaudit_collectors::{parse, Context, Parsed, ProblemKind, Source};

fn lines_of(p: &Parsed, kind: ProblemKind) -> Vec<usize> {
    p.problems
        .iter()
        .filter(|x| x.kind == kind)
        .map(|x| x.line)
        .collect()
}

fn check(p: &Parsed, file: &str) {
    for x in &p.problems {
        assert_eq!(x.file, file);
        assert!(!x.message.is_empty());
    }
    let s = p.summary();
    assert_eq!(s.problems, p.problems.len());
    assert_eq!(s.malformed + s.unsupported + s.incomplete, s.problems);
    assert_eq!(s.success + s.failure + s.rolled_back, s.events);
}

#[test]
fn dpkg() {
    let log = "\
2024-05-01 10:00:00 startup archives unpack
garbage
2024-13-01 10:00:00 startup archives unpack
2024-05-01 10:00:00 install foo:amd64 <none>
2024-05-01 10:00:00 install foo:amd64 <none> 1.0
2024-05-01 10:00:00 status exploded foo:amd64 1.0

2024-05-01 10:00:00 status installed foo:amd64 1.0
2024-05-01 10:00:00 frobnicate foo:amd64 1.0 2.0
2024-05-01 10:00:00 status installed foo:amd64
2024-05-01 10:00:00 startup
2024-05-01 10:00:0
2024-05-01 10:00:00\tinstall x <none> 1
";
    let p = parse(
        Source::Dpkg,
        "dpkg.log",
        log.as_bytes(),
        &Context::default(),
    );
    check(&p, "dpkg.log");
    assert_eq!(
        lines_of(&p, ProblemKind::Malformed),
        [2, 3, 4, 6, 9, 10, 11, 12, 13]
    );
    assert_eq!(p.events.len(), 1, "the good lines still make their event");
    assert_eq!(p.events[0].line, 8);
}

#[test]
fn apt_history() {
    let log = "\
Start-Date: 2024-05-01  10:00:00
Commandline: apt install foo bar
this line is not a field
Install: foo:amd64 (1.0), bar:amd64, baz:amd64 (2.0, automatic)
Upgrade: qux:amd64 (1.0)
End-Date: 2024-05-01  10:00:05

Start-Date: yesterday
Install: lost:amd64 (1.0)

Start-Date: 2024-05-02  10:00:00
Remove: gone:amd64 (3.0
End-Date: 2024-05-02  10:00:01

Start-Date: 2024-05-03  10:00:00
Install: pending:amd64 (1.0)
";
    let p = parse(
        Source::AptHistory,
        "history.log",
        log.as_bytes(),
        &Context::default(),
    );
    check(&p, "history.log");
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [3, 4, 5, 8, 8, 12]);
    assert_eq!(lines_of(&p, ProblemKind::Incomplete), [15]);
    let ids: Vec<&str> = p.events.iter().map(|e| e.patch_id.as_str()).collect();
    assert_eq!(ids, ["foo@1.0", "baz@2.0"]);
}

#[test]
fn apt_history_interrupted_block_is_a_failure() {
    let log = "\
Start-Date: 2024-05-01  10:00:00
Install: foo:amd64 (1.0)

Start-Date: 2024-05-01  11:00:00
Install: bar:amd64 (1.0)
End-Date: 2024-05-01  11:00:05
";
    let p = parse(
        Source::AptHistory,
        "history.log",
        log.as_bytes(),
        &Context::default(),
    );
    assert_eq!(p.events.len(), 2);
    assert_eq!(p.events[0].status.as_str(), "failure");
    assert_eq!(p.events[0].applied_at_rfc3339(), "2024-05-01T10:00:00Z");
    assert_eq!(p.events[1].status.as_str(), "success");
}

#[test]
fn yum() {
    let ctx = Context {
        year: Some(2024),
        ..Context::default()
    };
    let log = "\
Feb 28 10:00:00 Installed: a-1.0-1.el9.x86_64
Feb 30 10:00:00 Installed: b-1.0-1.el9.x86_64
Foo 01 10:00:00 Installed: c-1.0-1.el9.x86_64
Mar 01 25:00:00 Installed: d-1.0-1.el9.x86_64
Mar 01 10:00:00 Exploded: e-1.0-1.el9.x86_64
Mar 01 10:00:00 Installed:
Mar 01 10:00:00 Erased: f
Mar  2 10:00:00 Installed: g-2.0-1.el9.noarch
";
    let p = parse(Source::YumLog, "yum.log", log.as_bytes(), &ctx);
    check(&p, "yum.log");
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [2, 3, 4, 5, 6]);
    let ids: Vec<&str> = p.events.iter().map(|e| e.patch_id.as_str()).collect();
    assert_eq!(ids, ["a@1.0-1.el9", "f", "g@2.0-1.el9"]);
    // Without a year nothing can be dated.
    let p = parse(
        Source::YumLog,
        "yum.log",
        log.as_bytes(),
        &Context::default(),
    );
    assert!(p.events.is_empty());
    assert_eq!(lines_of(&p, ProblemKind::Unsupported), [0]);
    // Feb 29 exists only in leap years.
    let ctx = Context {
        year: Some(2023),
        ..Context::default()
    };
    let p = parse(
        Source::YumLog,
        "yum.log",
        b"Feb 29 10:00:00 Installed: a-1-1.x86_64\n",
        &ctx,
    );
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [1]);
    let ctx = Context {
        year: Some(2024),
        ..Context::default()
    };
    let p = parse(
        Source::YumLog,
        "yum.log",
        b"Feb 29 10:00:00 Installed: a-1-1.x86_64\n",
        &ctx,
    );
    assert_eq!(p.events[0].applied_at.year(), 2024);
}

#[test]
fn dnf_history() {
    let text = "\
Transaction ID : 1
Begin time     : not a time
User           : root <root>
Return-Code    : Success
Packages Altered:
    Install  good-1.0-1.fc40.x86_64 @fedora
    Explode  bad-1.0-1.fc40.x86_64 @fedora
    Install  no-version @fedora
    Install
this line has no colon

Transaction ID : 2
Begin time     : Tue Mar  3 10:13:55 2020
Packages Altered:
    Install  ok-1.0-1.fc31.x86_64 @fedora
";
    let p = parse(
        Source::DnfHistory,
        "dnf.txt",
        text.as_bytes(),
        &Context::default(),
    );
    check(&p, "dnf.txt");
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [2, 7, 8, 9, 10]);
    let ids: Vec<&str> = p.events.iter().map(|e| e.patch_id.as_str()).collect();
    assert_eq!(ids, ["ok@1.0-1.fc31"]);
    // Transaction 2 has no Return-Code: not known to have succeeded.
    assert_eq!(p.events[0].status.as_str(), "failure");
}

#[test]
fn wmic_qfe() {
    let ctx = Context {
        observed_at: Some(utc("2024-01-01T00:00:00Z")),
        ..Context::default()
    };
    let text = "\
junk before the header\r
Description      HotFixID   InstalledBy          InstalledOn  \r
Update           KB1000001  NT AUTHORITY\\SYSTEM  3/2/2019     \r
Update           File 1     NT AUTHORITY\\SYSTEM  3/2/2019     \r
Update           KB1000002  NT AUTHORITY\\SYSTEM  31/31/2019   \r
Update           KB1000003                                    \r
";
    let p = parse(Source::WmicQfe, "qfe.txt", text.as_bytes(), &ctx);
    check(&p, "qfe.txt");
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [1, 5]);
    assert_eq!(lines_of(&p, ProblemKind::Unsupported), [4]);
    let ids: Vec<&str> = p.events.iter().map(|e| e.patch_id.as_str()).collect();
    assert_eq!(ids, ["KB1000001", "KB1000003"]);
    // Without observed_at, a dateless row cannot be placed.
    let p = parse(
        Source::WmicQfe,
        "qfe.txt",
        text.as_bytes(),
        &Context::default(),
    );
    assert_eq!(lines_of(&p, ProblemKind::Unsupported), [4, 6]);
    // No header at all.
    let p = parse(Source::WmicQfe, "qfe.txt", b"hello\nworld\n", &ctx);
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [1, 2, 1]);
}

#[test]
fn systeminfo() {
    let ctx = Context {
        observed_at: Some(utc("2024-01-01T00:00:00Z")),
        ..Context::default()
    };
    let text = "\
Host Name:                 H1
Hotfix(s):                 3 Hotfix(s) Installed.
                           [01]: KB1000001
                           [02]: File 1
Network Card(s):           1 NIC(s) Installed.
                           [01]: Some NIC
";
    let p = parse(Source::Systeminfo, "si.txt", text.as_bytes(), &ctx);
    check(&p, "si.txt");
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [2]);
    assert_eq!(lines_of(&p, ProblemKind::Unsupported), [4]);
    assert_eq!(p.events.len(), 1);
    assert_eq!(p.events[0].host.as_deref(), Some("H1"));
    let p = parse(
        Source::Systeminfo,
        "si.txt",
        text.as_bytes(),
        &Context::default(),
    );
    assert_eq!(lines_of(&p, ProblemKind::Unsupported), [2]);
    let p = parse(Source::Systeminfo, "si.txt", b"Host Name: x\n", &ctx);
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [1]);
}

#[test]
fn get_hotfix_csv_and_json() {
    let ctx = Context {
        observed_at: Some(utc("2024-01-01T00:00:00Z")),
        ..Context::default()
    };
    let csv = "\"HotFixID\",\"InstalledOn\"\n\"KB1\",\"1/2/2024\"\n\"KB2\",\"bad\"\n\"KB3\"\n\"\",\"\"\n\"KB4\",\"\"\n";
    let p = parse(Source::GetHotFix, "h.csv", csv.as_bytes(), &ctx);
    check(&p, "h.csv");
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [3, 4]);
    assert_eq!(p.events.len(), 2);
    let json = "[\n {\"HotFixID\": \"KB1\", \"InstalledOn\": \"1/2/2024\"},\n 7,\n {\"HotFixID\": \"x\"}\n]";
    let p = parse(Source::GetHotFix, "h.json", json.as_bytes(), &ctx);
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [3]);
    assert_eq!(lines_of(&p, ProblemKind::Unsupported), [4]);
    let p = parse(Source::GetHotFix, "h.json", b"[\n{\"HotFixID\": \n", &ctx);
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [3]);
}

#[test]
fn windows_update_history() {
    let csv = "\
Date,Operation,ResultCode,HResult,Title
2024-01-02 03:04:05,1,4,-2145124329,Update (KB111111)
2024-01-02 03:04:05,9,2,0,Update (KB222222)
2024-01-02 03:04:05,1,,0,Update (KB333333)
2024-01-02 03:04:05,1,2,0,No id here
2024-01-02 03:04:05,1,1,0,Update (KB444444)
,1,2,0,Update (KB555555)
";
    let p = parse(
        Source::WindowsUpdateHistory,
        "wu.csv",
        csv.as_bytes(),
        &Context::default(),
    );
    check(&p, "wu.csv");
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [3, 4, 7]);
    assert_eq!(lines_of(&p, ProblemKind::Unsupported), [5, 6]);
    assert_eq!(p.events.len(), 1);
    assert_eq!(p.events[0].status.as_str(), "failure");
    assert!(p.events[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("0x80240017"));
}

#[test]
fn osquery() {
    let log = "\
{\"name\":\"q\",\"hostIdentifier\":\"h\",\"unixTime\":\"1700000000\",\"epoch\":\"0\",\"counter\":\"1\",\"columns\":{\"name\":\"a\",\"version\":\"1\",\"arch\":\"amd64\"},\"action\":\"added\"}
not json
[1,2]
{\"name\":\"q\",\"action\":\"added\"}
{\"name\":\"q\",\"columns\":{},\"action\":\"exploded\"}
{\"name\":\"q\",\"unixTime\":\"x\",\"columns\":{\"name\":\"b\",\"version\":\"1\",\"arch\":\"amd64\"},\"action\":\"added\"}
{\"name\":\"q\",\"diffResults\":{\"added\":[1],\"removed\":\"no\"}}
";
    let p = parse(
        Source::Osquery,
        "osq.log",
        log.as_bytes(),
        &Context::default(),
    );
    check(&p, "osq.log");
    assert_eq!(lines_of(&p, ProblemKind::Malformed), [2, 3, 4, 5, 6, 7, 7]);
    assert_eq!(p.events.len(), 1);
    assert_eq!(p.events[0].host.as_deref(), Some("h"));
}

#[test]
fn empty_and_whitespace_inputs_are_quiet() {
    let ctx = Context {
        year: Some(2024),
        observed_at: Some(utc("2024-01-01T00:00:00Z")),
        ..Context::default()
    };
    for source in Source::ALL {
        for input in [&b""[..], b"\n\n", b"\r\n", b"\xFF\xFE"] {
            let p = parse(source, "empty", input, &ctx);
            assert!(p.events.is_empty(), "{source}");
            assert!(
                p.problems.iter().all(|x| x.kind != ProblemKind::Incomplete),
                "{source}: {:?}",
                p.problems
            );
        }
    }
}
