//! `/var/log/apt/history.log`.
//!
//! The log is a series of blocks separated by blank lines, one per apt run:
//!
//! ```text
//! Start-Date: 2021-11-02  16:11:18
//! Commandline: apt upgrade
//! Requested-By: debian (1000)
//! Upgrade: libselinux1:riscv64 (3.1-3, 3.1-3+b1), debconf:riscv64 (1.5.78, 1.5.79)
//! Error: Sub-process /usr/bin/dpkg returned an error code (1)
//! End-Date: 2021-11-02  16:11:24
//! ```
//!
//! `Install`, `Reinstall`, `Remove` and `Purge` list `pkg:arch (version)`
//! (with `, automatic` for dependencies), `Upgrade` and `Downgrade` list
//! `pkg:arch (old, new)`. Each package is one event:
//!
//! - its time is the block's `End-Date`, or its `Start-Date` when there is
//!   no End-Date (local time without offset: see [`Context::utc_offset`]);
//! - `actor` is `Requested-By` (absent when root ran apt directly);
//! - an `Error` line makes every event of the block a failure, with the
//!   error as detail (apt does not say which package failed; dpkg.log does);
//! - a block that has no `End-Date` but is followed by another block was
//!   interrupted: its events are failures. If it is the last block, apt may
//!   still be running: it is reported as incomplete and records nothing.
//!
//! Unknown `Key: value` fields are ignored; a line that is not a field is
//! malformed.

use crate::event::{clip, CollectedEvent, Context, Kind, Out, Parsed, ProblemKind};
use crate::source::Source;
use crate::text::{at_offset, digits, hms, lines};
use chrono::{NaiveDate, NaiveDateTime};
use patchaudit_domain::Status;

/// Parses one history.log.
pub fn parse(file_name: &str, text: &str, ctx: &Context) -> Parsed {
    let mut parsed = Parsed::default();
    let mut out = Out::new(file_name, &mut parsed);
    let mut block: Option<Block> = None;
    for (n, line) in lines(text) {
        let line = line.trim_end();
        if line.trim().is_empty() {
            if let Some(b) = block.take() {
                b.finish(&mut out, ctx, false);
            }
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            out.malformed(
                n,
                format!("expected \"Key: value\", got {:?}", clip(line, 120)),
            );
            continue;
        };
        let value = value.trim();
        if key == "Start-Date" {
            if let Some(b) = block.take() {
                b.finish(&mut out, ctx, false);
            }
        }
        let b = block.get_or_insert_with(|| Block::new(n));
        match key {
            "Start-Date" | "End-Date" => match date(value) {
                Some(t) if key == "Start-Date" => b.start = Some(t),
                Some(t) => b.end = Some(t),
                None => out.malformed(
                    n,
                    format!("{key} must be \"YYYY-MM-DD  HH:MM:SS\", got {value:?}"),
                ),
            },
            "Requested-By" => b.actor = Some(value.to_owned()),
            "Error" => b.errors.push(value.to_owned()),
            "Install" | "Reinstall" | "Upgrade" | "Downgrade" | "Remove" | "Purge" => {
                let kind = match key {
                    "Install" => Kind::Install,
                    "Reinstall" => Kind::Reinstall,
                    "Upgrade" => Kind::Upgrade,
                    "Downgrade" => Kind::Downgrade,
                    "Remove" => Kind::Remove,
                    _ => Kind::Purge,
                };
                entries(value, kind, n, &mut b.entries, &mut out);
            }
            _ => {} // Commandline, and fields apt may add later.
        }
    }
    if let Some(b) = block.take() {
        b.finish(&mut out, ctx, true);
    }
    parsed
}

/// `2019-07-10  16:38:08` (apt writes two spaces).
fn date(s: &str) -> Option<NaiveDateTime> {
    let mut it = s.split_whitespace();
    let d = it.next()?;
    let t = hms(it.next()?)?;
    if it.next().is_some() {
        return None;
    }
    let mut p = d.split('-');
    let y = digits(p.next()?, 4)?;
    let m = digits(p.next()?, 2)?;
    let day = digits(p.next()?, 2)?;
    if p.next().is_some() {
        return None;
    }
    Some(NaiveDate::from_ymd_opt(y as i32, m, day)?.and_time(t))
}

struct Entry {
    kind: Kind,
    package: String,
    from: Option<String>,
    to: Option<String>,
    line: usize,
}

struct Block {
    line: usize,
    start: Option<NaiveDateTime>,
    end: Option<NaiveDateTime>,
    actor: Option<String>,
    errors: Vec<String>,
    entries: Vec<Entry>,
}

impl Block {
    fn new(line: usize) -> Self {
        Block {
            line,
            start: None,
            end: None,
            actor: None,
            errors: Vec::new(),
            entries: Vec::new(),
        }
    }

    fn finish(self, out: &mut Out<'_>, ctx: &Context, last: bool) {
        if self.entries.is_empty() {
            return;
        }
        let Some(at) = self.end.or(self.start) else {
            out.malformed(
                self.line,
                format!(
                    "block has no valid Start-Date or End-Date; its {} package(s) were skipped",
                    self.entries.len()
                ),
            );
            return;
        };
        if self.end.is_none() && last && self.errors.is_empty() {
            out.problem(
                self.line,
                ProblemKind::Incomplete,
                format!(
                    "the last block has no End-Date (apt may still be running); its {} package(s) were not recorded",
                    self.entries.len()
                ),
            );
            return;
        }
        let Some(applied_at) = at_offset(at, ctx.utc_offset) else {
            out.malformed(
                self.line,
                "date cannot be placed at the context's UTC offset",
            );
            return;
        };
        let failure = if !self.errors.is_empty() {
            Some(self.errors.join("\n"))
        } else if self.end.is_none() {
            Some("apt run was interrupted: the block has no End-Date".to_owned())
        } else {
            None
        };
        for e in self.entries {
            let name = e.package.split(':').next().unwrap_or(&e.package);
            let version = if e.kind.is_removal() {
                e.from.as_deref()
            } else {
                e.to.as_deref()
            };
            let patch_id = match version {
                Some(v) => format!("{name}@{v}"),
                None => name.to_owned(),
            };
            let (status, detail) = match &failure {
                Some(err) => (Status::Failure, Some(err.clone())),
                None => (
                    e.kind.done(),
                    (e.kind == Kind::Purge).then(|| "purge".to_owned()),
                ),
            };
            out.event(CollectedEvent {
                source: Source::AptHistory,
                kind: e.kind,
                patch_id,
                applied_at,
                status,
                package: Some(e.package),
                from_version: e.from,
                to_version: e.to,
                actor: self.actor.clone(),
                detail,
                host: None,
                line: e.line,
            });
        }
    }
}

/// `a:amd64 (1.0), b:amd64 (2.0, automatic)` or `a (1.0, 1.1)`.
fn entries(value: &str, kind: Kind, line: usize, into: &mut Vec<Entry>, out: &mut Out<'_>) {
    let mut rest = value.trim();
    while !rest.is_empty() {
        let open = rest.find(" (");
        let comma = rest.find(", ");
        // A name followed by ", " before any " (" has no version.
        if let (Some(c), o) = (comma, open) {
            if o.is_none_or(|o| c < o) {
                out.malformed(
                    line,
                    format!(
                        "expected \"package (version)\", got {:?}",
                        clip(&rest[..c], 120)
                    ),
                );
                rest = rest[c + 2..].trim_start();
                continue;
            }
        }
        let Some(open) = open else {
            out.malformed(
                line,
                format!("expected \"package (version)\", got {:?}", clip(rest, 120)),
            );
            return;
        };
        let Some(close) = rest[open..].find(')').map(|i| open + i) else {
            out.malformed(
                line,
                format!("unclosed parenthesis in {:?}", clip(rest, 120)),
            );
            return;
        };
        let package = rest[..open].trim();
        let inside: Vec<&str> = rest[open + 2..close].split(',').map(str::trim).collect();
        rest = rest[close + 1..].trim_start_matches([',', ' ']);
        let versions: Vec<&str> = inside
            .iter()
            .copied()
            .filter(|v| *v != "automatic" && !v.is_empty())
            .collect();
        let pair = matches!(kind, Kind::Upgrade | Kind::Downgrade);
        let ok = !package.is_empty()
            && !package.contains(char::is_whitespace)
            && if pair {
                versions.len() == 2
            } else {
                versions.len() == 1
            };
        if !ok {
            out.malformed(
                line,
                format!(
                    "expected \"{}\", got {:?}",
                    if pair {
                        "package (old, new)"
                    } else {
                        "package (version)"
                    },
                    clip(&format!("{package} ({})", inside.join(", ")), 120)
                ),
            );
            continue;
        }
        let (from, to) = match kind {
            Kind::Upgrade | Kind::Downgrade => (Some(versions[0]), Some(versions[1])),
            Kind::Remove | Kind::Purge => (Some(versions[0]), None),
            Kind::Reinstall => (Some(versions[0]), Some(versions[0])),
            _ => (None, Some(versions[0])),
        };
        into.push(Entry {
            kind,
            package: package.to_owned(),
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            line,
        });
    }
}
