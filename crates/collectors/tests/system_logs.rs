//! This machine's own `/var/log/dpkg.log` (with its rotated files) and
//! `/var/log/apt/history.log`, when they exist, cross-checked against a
//! plain count of the lines that start actions.

mod common;

use common::assert_valid_for_ledger;
use patchaudit_collectors::decode::decode;
use patchaudit_collectors::{parse_rotated, Context, Kind, ProblemKind, Source};
use std::path::{Path, PathBuf};

/// `base`, `base.1`, `base.2.gz`, … that exist, oldest first.
fn rotated_set(base: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for n in (1..=20).rev() {
        for name in [format!("{base}.{n}.gz"), format!("{base}.{n}")] {
            if Path::new(&name).is_file() {
                files.push(PathBuf::from(name));
            }
        }
    }
    if Path::new(base).is_file() {
        files.push(PathBuf::from(base));
    }
    files
}

fn read_all(files: &[PathBuf]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for f in files {
        match std::fs::read(f) {
            Ok(b) => out.push((f.display().to_string(), b)),
            Err(e) => {
                eprintln!(
                    "!!!!!!!! SKIPPED: cannot read {}: {e} !!!!!!!!",
                    f.display()
                );
                return None;
            }
        }
    }
    Some(out)
}

#[test]
fn this_machines_dpkg_log() {
    let files = rotated_set("/var/log/dpkg.log");
    if files.is_empty() {
        eprintln!("!!!!!!!! SKIPPED: no /var/log/dpkg.log on this machine !!!!!!!!");
        return;
    }
    let Some(data) = read_all(&files) else { return };
    let refs: Vec<(&str, &[u8])> = data
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let ctx = Context::default();
    let p = parse_rotated(Source::Dpkg, &refs, &ctx);

    let mut actions = 0usize;
    for (_, bytes) in &data {
        let d = decode(bytes, ctx.code_page, ctx.max_decompressed_bytes);
        actions += d
            .text
            .lines()
            .filter(|l| {
                let w: Vec<&str> = l.split(' ').collect();
                w.len() == 6 && matches!(w[2], "install" | "upgrade" | "remove" | "purge")
            })
            .count();
    }
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
    let malformed: Vec<_> = p
        .problems
        .iter()
        .filter(|x| x.kind == ProblemKind::Malformed)
        .collect();
    assert!(
        malformed.is_empty(),
        "a real dpkg.log has lines the parser rejects: {malformed:?}"
    );
    assert_eq!(
        events + incomplete,
        actions,
        "every install/upgrade/remove/purge line must end as one event or one incomplete problem"
    );
    assert_valid_for_ledger(&p, "/var/log/dpkg.log");
    eprintln!(
        "{} file(s), {actions} action lines: {} events ({:?}), {incomplete} incomplete",
        files.len(),
        p.events.len(),
        p.summary()
    );
}

#[test]
fn this_machines_apt_history() {
    let files = rotated_set("/var/log/apt/history.log");
    if files.is_empty() {
        eprintln!("!!!!!!!! SKIPPED: no /var/log/apt/history.log on this machine !!!!!!!!");
        return;
    }
    let Some(data) = read_all(&files) else { return };
    let refs: Vec<(&str, &[u8])> = data
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let ctx = Context::default();
    let p = parse_rotated(Source::AptHistory, &refs, &ctx);

    let mut entries = 0usize;
    for (_, bytes) in &data {
        let d = decode(bytes, ctx.code_page, ctx.max_decompressed_bytes);
        for line in d.text.lines() {
            let is_list = [
                "Install: ",
                "Reinstall: ",
                "Upgrade: ",
                "Downgrade: ",
                "Remove: ",
                "Purge: ",
            ]
            .iter()
            .any(|k| line.starts_with(k));
            if is_list {
                entries += line.matches(" (").count();
            }
        }
    }
    let malformed: Vec<_> = p
        .problems
        .iter()
        .filter(|x| x.kind == ProblemKind::Malformed)
        .collect();
    assert!(malformed.is_empty(), "{malformed:?}");
    // The last block may still be open (apt running): its packages are not recorded.
    let pending: usize = p
        .problems
        .iter()
        .filter(|x| x.kind == ProblemKind::Incomplete)
        .map(|x| {
            x.message
                .split("its ")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(p.events.len() + pending, entries);
    assert_valid_for_ledger(&p, "/var/log/apt/history.log");
    eprintln!("{entries} package entries: {:?}", p.summary());
}
