//! Compressed, rotated and re-encoded inputs give the same events as the
//! plain files.

mod common;

use common::{sample, utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use patchaudit_collectors::decode::decode;
use patchaudit_collectors::{parse, parse_rotated, Context, Encoding, Parsed, ProblemKind, Source};
use std::io::Write;

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn utf16le(text: &str, bom: bool) -> Vec<u8> {
    let mut out = if bom { vec![0xFF, 0xFE] } else { Vec::new() };
    for u in text.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

fn utf16be(text: &str) -> Vec<u8> {
    let mut out = vec![0xFE, 0xFF];
    for u in text.encode_utf16() {
        out.extend_from_slice(&u.to_be_bytes());
    }
    out
}

fn same_events(a: &Parsed, b: &Parsed) {
    assert_eq!(a.events, b.events);
    assert_eq!(a.event_ids("h"), b.event_ids("h"));
}

#[test]
fn gzip_is_detected_by_magic_and_parses_the_same() {
    let ctx = Context {
        year: Some(2016),
        ..Context::default()
    };
    for (rel, source) in [
        ("debian/dpkg-log/riscv64-debian-sid_dpkg.log", Source::Dpkg),
        (
            "debian/apt-history/plaso_apt_history.log",
            Source::AptHistory,
        ),
        ("rpm/yum-log/centos6_ygh_yum.log", Source::YumLog),
    ] {
        let plain = sample(rel);
        let packed = gz(&plain);
        let d = decode(&packed, ctx.code_page, ctx.max_decompressed_bytes);
        assert!(d.gzip, "{rel}");
        // The name says nothing: the magic bytes decide.
        let a = parse(source, "log", &plain, &ctx);
        let b = parse(source, "log", &packed, &ctx);
        same_events(&a, &b);
        assert_eq!(a.problems, b.problems);
        assert!(!a.events.is_empty());
    }
}

#[test]
fn a_rotated_set_with_gzip_members_equals_the_whole_log() {
    let text = sample("debian/dpkg-log/riscv64-debian-sid_dpkg.log");
    let whole = parse(Source::Dpkg, "dpkg.log", &text, &Context::default());
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    // Cuts inside actions: after an unpack (line 6) and inside a removal (line 103).
    let oldest: Vec<u8> = lines[..6].concat();
    let middle: Vec<u8> = lines[6..103].concat();
    let newest: Vec<u8> = lines[103..].concat();
    let oldest_gz = gz(&oldest);
    let files: [(&str, &[u8]); 3] = [
        ("dpkg.log.2.gz", &oldest_gz),
        ("dpkg.log.1", &middle),
        ("dpkg.log", &newest),
    ];
    let rotated = parse_rotated(Source::Dpkg, &files, &Context::default());
    assert_eq!(rotated.event_ids("h"), whole.event_ids("h"));
    assert!(rotated.problems.is_empty(), "{:?}", rotated.problems);
    // Events name the file they were decided in.
    let removal = rotated
        .events
        .iter()
        .find(|e| e.patch_id == "rng-tools@5migrate1" && e.kind.is_removal());
    assert!(removal.is_some());
}

#[test]
fn a_damaged_gzip_keeps_what_it_could_read() {
    let text = sample("debian/apt-history/industio-ubuntu20.04-armhf_history.log");
    let packed = gz(&text);
    let cut = &packed[..packed.len() * 2 / 3];
    let p = parse(
        Source::AptHistory,
        "history.log.1.gz",
        cut,
        &Context::default(),
    );
    assert!(p
        .problems
        .iter()
        .any(|x| x.line == 0 && x.kind == ProblemKind::Malformed));
    assert!(
        !p.events.is_empty(),
        "the readable part still yields events"
    );
    let whole = parse(
        Source::AptHistory,
        "history.log",
        &text,
        &Context::default(),
    );
    assert!(p.events.len() < whole.events.len());
}

#[test]
fn utf16_and_legacy_encodings_parse_the_same() {
    let text = String::from_utf8(sample("debian/dpkg-log/riscv64-debian-sid_dpkg.log")).unwrap();
    let plain = parse(
        Source::Dpkg,
        "dpkg.log",
        text.as_bytes(),
        &Context::default(),
    );
    for (bytes, enc) in [
        (utf16le(&text, true), Encoding::Utf16Le { bom: true }),
        (utf16le(&text, false), Encoding::Utf16Le { bom: false }),
        (utf16be(&text), Encoding::Utf16Be { bom: true }),
        (
            [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat(),
            Encoding::Utf8 { bom: true },
        ),
        (
            text.replace('\n', "\r\n").into_bytes(),
            Encoding::Utf8 { bom: false },
        ),
        (
            text.replace('\n', "\r").into_bytes(),
            Encoding::Utf8 { bom: false },
        ),
    ] {
        let d = decode(&bytes, Default::default(), u64::MAX);
        assert_eq!(d.encoding, enc);
        let p = parse(Source::Dpkg, "dpkg.log", &bytes, &Context::default());
        same_events(&plain, &p);
    }
}

#[test]
fn windows_samples_decode_as_provenance_says() {
    let ctx = Context {
        observed_at: Some(utc("2019-03-07T00:00:00Z")),
        ..Context::default()
    };
    let cases = [
        (
            "windows/wmic-qfe/wesng_10_1809_x64_pro_en-us_20190307_qfe.txt",
            Encoding::Utf16Le { bom: true },
        ),
        (
            "windows/wmic-qfe/wesng_srv_2012r2_x64_standard_ru_qfe.txt",
            Encoding::Utf8 { bom: false },
        ),
        (
            "windows/wmic-qfe/wesng_xp_sp1_x86_qfe.txt",
            Encoding::Utf8 { bom: false },
        ),
        (
            "windows/systeminfo/wesng_10_1809_x64_pro_en-us_20190307_systeminfo.txt",
            Encoding::Legacy(Default::default()),
        ),
        (
            "windows/systeminfo/wesng_7_sp1_x64_enterprise_fr_systeminfo_powershell.txt",
            Encoding::Utf16Le { bom: true },
        ),
    ];
    for (rel, enc) in cases {
        let bytes = sample(rel);
        let d = decode(&bytes, ctx.code_page, ctx.max_decompressed_bytes);
        assert_eq!(d.encoding, enc, "{rel}");
    }
    // The OEM file's thousands separator is a no-break space in CP437.
    let oem = sample("windows/systeminfo/wesng_10_1809_x64_pro_en-us_20190307_systeminfo.txt");
    let d = decode(&oem, ctx.code_page, ctx.max_decompressed_bytes);
    assert!(d.text.contains("32\u{A0}503 MB"));
    // Localised text survives: Russian user names, French labels.
    let ru = parse(
        Source::WmicQfe,
        "ru",
        &sample("windows/wmic-qfe/wesng_srv_2012r2_x64_standard_ru_qfe.txt"),
        &ctx,
    );
    assert_eq!(
        ru.events[0].actor.as_deref(),
        Some("TEST_dc\\Администратор")
    );
    assert_eq!(
        ru.events.last().unwrap().applied_at_rfc3339(),
        "2020-04-17T00:00:00Z"
    );
}
