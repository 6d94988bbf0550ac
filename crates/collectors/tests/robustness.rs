//! No input makes a parser panic, and every event any input produces would
//! pass the ledger's validation. Each real sample and fixture is mutated
//! many times (bytes flipped, cut, inserted, lines swapped and repeated) and
//! fed to every parser, its own and the others.

mod common;

use common::{assert_valid_for_ledger, fixture, sample, utc};
use patchaudit_collectors::{parse, parse_rotated, Context, Source};

const NASTY: &[&[u8]] = &[
    b"\r",
    b"\n",
    b"\r\r\n",
    b"\0",
    b"\xFF",
    b"\xFE\xFF",
    b"\xC3",
    b"\xE2\x82",
    "é".as_bytes(),
    "Администратор".as_bytes(),
    b" ",
    b"  ",
    b"\t",
    b":",
    b"(",
    b")",
    b",",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b"<none>",
    b"status half-configured ",
    b"startup packages configure\n",
    b"Start-Date: 2024-01-01  00:00:00\n",
    b"End-Date: 9999-99-99  99:99:99\n",
    b"KB",
    b"KB1234567",
    b"~",
    b"^",
    b"1:",
    b"-",
    b"9999999999999999999999",
    b"/Date(-99999999999999999)/",
    b"\x1f\x8b",
];

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = [
        "debian/dpkg-log/riscv64-debian-sid_dpkg.log",
        "debian/dpkg-log/plaso_dpkg.log",
        "debian/apt-history/riscv64-debian-sid_history.log",
        "rpm/yum-log/centos6_ygh_yum.log",
        "windows/wmic-qfe/wesng_10_1809_x64_education_en-us_20190306_qfe.txt",
        "windows/wmic-qfe/wesng_srv_2012r2_x64_standard_ru_qfe.txt",
        "windows/wmic-qfe/wesng_xp_sp1_x86_qfe.txt",
        "windows/systeminfo/wesng_7_sp1_x64_enterprise_fr_systeminfo_powershell.txt",
        "windows/systeminfo/wesng_10_1809_x64_pro_en-us_20190307_systeminfo.txt",
        "osquery/beats_osqueryd.results.sample_deb_packages_excerpt.log",
    ]
    .into_iter()
    .map(|p| (p, sample(p)))
    .collect();
    for f in [
        "dnf_history_info.txt",
        "get_hotfix.csv",
        "get_hotfix.json",
        "wu_history_queryhistory.csv",
        "wu_history_pswindowsupdate.csv",
        "osquery_rpm_patches_wu.log",
    ] {
        v.push((f, fixture(f)));
    }
    v
}

#[test]
fn mutated_inputs_never_panic_and_events_stay_valid() {
    let ctx = Context {
        year: Some(2020),
        observed_at: Some(utc("2024-01-01T00:00:00Z")),
        ..Context::default()
    };
    let mut rng = common::Rng(0x9E37_79B9_7F4A_7C15);
    let mut parsed_events = 0usize;
    for (name, bytes) in inputs() {
        for round in 0..100 {
            let m = common::mutate(&bytes, &mut rng, NASTY);
            for source in Source::ALL {
                let p = parse(source, name, &m, &ctx);
                parsed_events += p.events.len();
                assert_valid_for_ledger(&p, &format!("{name} round {round} as {source}"));
            }
        }
    }
    assert!(
        parsed_events > 1000,
        "the mutations left too little to parse: {parsed_events}"
    );
}

#[test]
fn random_bytes_never_panic() {
    let ctx = Context {
        year: Some(2020),
        observed_at: Some(utc("2024-01-01T00:00:00Z")),
        ..Context::default()
    };
    let mut rng = common::Rng(7);
    for _ in 0..300 {
        let len = rng.below(600);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        for source in Source::ALL {
            let p = parse(source, "random", &bytes, &ctx);
            assert_valid_for_ledger(&p, "random bytes");
        }
        let split = rng.below(bytes.len() + 1);
        let files: [(&str, &[u8]); 2] = [("a", &bytes[..split]), ("b", &bytes[split..])];
        let _ = parse_rotated(Source::Dpkg, &files, &ctx);
    }
}

#[test]
fn extreme_values_are_problems_not_panics() {
    let ctx = Context {
        year: Some(i32::MAX),
        observed_at: Some(utc("2024-01-01T00:00:00Z")),
        utc_offset: chrono::FixedOffset::east_opt(86_399).unwrap(),
        ..Context::default()
    };
    let long = "x".repeat(100_000);
    let cases: Vec<(Source, String)> = vec![
        (Source::Dpkg, format!("9999-12-31 23:59:59 install {long} <none> 1\n9999-12-31 23:59:59 status installed {long} 1\n")),
        (Source::Dpkg, "0000-01-01 00:00:00 install a <none> 1\n0000-01-01 00:00:00 status installed a 1\n".into()),
        (Source::YumLog, "Dec 31 23:59:59 Installed: a-1-1.x86_64\n".into()),
        (Source::AptHistory, format!("Start-Date: 2024-01-01  00:00:00\nInstall: {long} (1)\nEnd-Date: 2024-01-01  00:00:01\n")),
        (Source::GetHotFix, "HotFixID,InstalledOn\nKB1,/Date(9223372036854775807)/\nKB2,ffffffffffffffff\n".into()),
        (Source::WindowsUpdateHistory, "Date,ResultCode,Title\n/Date(-9223372036854775808)/,2,x (KB1234567)\n".into()),
        (Source::Osquery, "{\"counter\":\"1\",\"unixTime\":\"9223372036854775807\",\"columns\":{\"hotfix_id\":\"KB1\"},\"action\":\"added\"}\n".into()),
        (Source::DnfHistory, "Transaction ID : 1\nBegin time : Fri Dec 31 23:59:59 9999\nReturn-Code : Success\nPackages Altered:\n    Install a-1-1.x86_64 @r\n".into()),
    ];
    for (source, text) in cases {
        let p = parse(source, "extreme", text.as_bytes(), &ctx);
        assert_valid_for_ledger(&p, &format!("{source}"));
    }
}
