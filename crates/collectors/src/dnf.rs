//! `dnf history info` output (dnf 4; `yum history info` prints the same).
//!
//! No real capture of this output was available, so this parser follows
//! the code that prints it (`historyInfoCmd` in dnf's `dnf/cli/output.py`)
//! and the examples in the Red Hat and Fedora guides; `docs/collectors.md`
//! gives the links. Run dnf with `LC_ALL=C`: the labels are translated.
//!
//! ```text
//! Transaction ID : 7
//! Begin time     : Tue Mar  3 10:13:55 2020
//! End time       :            10:13:57 2020 (2 seconds)
//! User           : admin <admin>
//! Return-Code    : Success
//! Command Line   : upgrade curl
//! Packages Altered:
//!     Upgrade  curl-7.66.0-1.fc31.x86_64 @updates
//!     Upgraded curl-7.65.0-1.fc31.x86_64 @@System
//!  ** Install  foo-1.0-1.fc31.x86_64     @updates
//! Errors:
//!    1 error: unpacking of archive failed
//! ```
//!
//! - Several transactions may follow one another; each starts at
//!   `Transaction ID`. Lines before the first are banners and are ignored.
//! - The times are `time.ctime()` in local time (see
//!   [`Context::utc_offset`]); dnf blanks the leading part of `End time`
//!   that equals `Begin time`, so it is filled back in. The event time is
//!   the end time, or the begin time when there is none.
//! - Each line under `Packages Altered` is one package: `Install`,
//!   `Dep-Install`, `True-Install`, `Obsolete`/`Obsoleting` → install;
//!   `Upgrade`/`Update` → upgrade; `Downgrade` → downgrade; `Reinstall` →
//!   reinstall; `Erase`/`Removed` → remove; `Obsoleted` → remove. The old
//!   side of an upgrade or downgrade (`Upgraded`/`Updated`/`Downgraded`,
//!   next to it) gives `from_version`; `Reinstalled` and `Reason Change`
//!   lines add nothing. dnf may blank the repeated name on the second line
//!   of such a pair; it is taken from the first.
//! - The package name is `name-[epoch:]version-release.arch`; `package` is
//!   `name.arch` and `patch_id` `name@[epoch:]version-release`.
//! - A package is a **failure** when its line is marked ` ** ` (dnf did not
//!   complete it) or when `Return-Code` is not `Success` (`Failure: …` or
//!   `** Aborted **`). The detail is the return code and the `Errors:`
//!   lines.
//! - `actor` is `User`, except `System <unset>` (no login user).

use crate::event::{clip, CollectedEvent, Context, Kind, Out, Parsed};
use crate::source::Source;
use crate::text::{at_offset, digits, hms, lines, month_abbr};
use crate::yum::Nevra;
use chrono::{NaiveDate, NaiveDateTime};
use patchaudit_domain::Status;

/// Parses `dnf history info` output, one or more transactions.
pub fn parse(file_name: &str, text: &str, ctx: &Context) -> Parsed {
    let mut parsed = Parsed::default();
    let mut out = Out::new(file_name, &mut parsed);
    let mut tx: Option<Tx> = None;
    let mut section = Section::None;
    for (n, raw) in lines(text) {
        let line = raw.trim_end();
        if line.trim().is_empty() {
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        if !indented {
            let Some((key, value)) = line.split_once(':') else {
                if tx.is_some() {
                    out.malformed(
                        n,
                        format!("expected \"Key : value\", got {:?}", clip(line, 120)),
                    );
                }
                continue;
            };
            let key = key.trim();
            let value = value.trim();
            if key == "Transaction ID" {
                if let Some(t) = tx.take() {
                    t.finish(&mut out, ctx);
                }
                tx = Some(Tx::new(n, value));
                section = Section::None;
                continue;
            }
            let Some(t) = tx.as_mut() else {
                continue; // a banner before the first transaction
            };
            section = Section::None;
            match key {
                "Begin time" => t.begin = Some((value.to_owned(), n)),
                "End time" => t.end = Some((value.to_owned(), n)),
                "User" => t.user = Some(value.to_owned()),
                "Return-Code" => t.return_code = Some(value.to_owned()),
                "Packages Altered" => section = Section::Altered,
                "Errors" => section = Section::Errors,
                _ => section = Section::Other,
            }
            continue;
        }
        let Some(t) = tx.as_mut() else {
            continue;
        };
        match section {
            Section::Altered => t.altered(n, line, &mut out),
            Section::Errors => {
                let text = line.trim();
                // "   1 error: …": drop the line number dnf adds.
                let text = text
                    .split_once(' ')
                    .filter(|(num, _)| num.bytes().all(|b| b.is_ascii_digit()))
                    .map_or(text, |(_, rest)| rest);
                t.errors.push(text.to_owned());
            }
            Section::Other | Section::None => {}
        }
    }
    if let Some(t) = tx.take() {
        t.finish(&mut out, ctx);
    }
    parsed.problems.sort_by_key(|p| p.line);
    parsed
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Altered,
    Errors,
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    /// The package that is there afterwards.
    New(Kind),
    /// The old side of an upgrade (`Upgraded`) or downgrade (`Downgraded`).
    OldOf(Kind),
    /// Adds nothing (`Reinstalled`).
    Ignore,
}

struct Item {
    side: Side,
    nevra: Nevra,
    done: bool,
    obsoleted: bool,
    line: usize,
}

struct Tx {
    line: usize,
    id: String,
    begin: Option<(String, usize)>,
    end: Option<(String, usize)>,
    user: Option<String>,
    return_code: Option<String>,
    items: Vec<Item>,
    errors: Vec<String>,
}

impl Tx {
    fn new(line: usize, id: &str) -> Self {
        Tx {
            line,
            id: id.to_owned(),
            begin: None,
            end: None,
            user: None,
            return_code: None,
            items: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn altered(&mut self, n: usize, line: &str, out: &mut Out<'_>) {
        let (done, body) = match line.strip_prefix(" ** ") {
            Some(body) => (false, body),
            None => (true, line.trim_start()),
        };
        let body = body.trim();
        if body.starts_with("Reason Change") {
            return;
        }
        let mut words = body.split_whitespace();
        let (Some(action), Some(pkg)) = (words.next(), words.next()) else {
            out.malformed(
                n,
                format!(
                    "expected \"<action> <package> [repo]\", got {:?}",
                    clip(body, 120)
                ),
            );
            return;
        };
        let (side, obsoleted) = match action {
            "Install" | "Dep-Install" | "True-Install" | "Obsolete" | "Obsoleting" => {
                (Side::New(Kind::Install), false)
            }
            "Upgrade" | "Update" => (Side::New(Kind::Upgrade), false),
            "Downgrade" => (Side::New(Kind::Downgrade), false),
            "Reinstall" => (Side::New(Kind::Reinstall), false),
            "Erase" | "Removed" | "Remove" => (Side::New(Kind::Remove), false),
            "Obsoleted" => (Side::New(Kind::Remove), true),
            "Upgraded" | "Updated" => (Side::OldOf(Kind::Upgrade), false),
            "Downgraded" => (Side::OldOf(Kind::Downgrade), false),
            "Reinstalled" => (Side::Ignore, false),
            other => {
                out.malformed(n, format!("unknown dnf action {other:?}"));
                return;
            }
        };
        let mut nevra = Nevra::parse(pkg);
        if nevra.evr.is_none() {
            // dnf blanks a name repeated from the line above.
            if let Some(prev) = self.items.last() {
                let joined = Nevra::parse(&format!("{}-{pkg}", prev.nevra.name));
                if joined.evr.is_some() && joined.name == prev.nevra.name {
                    nevra = joined;
                }
            }
        }
        if nevra.evr.is_none() {
            out.malformed(
                n,
                format!("expected name-[epoch:]version-release.arch, got {pkg:?}"),
            );
            return;
        }
        self.items.push(Item {
            side,
            nevra,
            done,
            obsoleted,
            line: n,
        });
    }

    fn finish(self, out: &mut Out<'_>, ctx: &Context) {
        if self.items.is_empty() {
            return;
        }
        let begin = self.begin.as_ref().and_then(|(v, _)| ctime(v, None));
        let end = self
            .end
            .as_ref()
            .and_then(|(v, _)| ctime(v, self.begin.as_ref().map(|(b, _)| b.as_str())));
        if let (Some((v, n)), None) = (&self.end, end) {
            out.malformed(*n, format!("End time {v:?} is not a date dnf writes"));
        }
        let Some(at) = end.or(begin) else {
            let n = self.begin.as_ref().map_or(self.line, |(_, n)| *n);
            out.malformed(
                n,
                format!(
                    "transaction {} has no valid Begin time or End time; its {} package(s) were skipped",
                    self.id,
                    self.items.len()
                ),
            );
            return;
        };
        let Some(applied_at) = at_offset(at, ctx.utc_offset) else {
            out.malformed(
                self.line,
                "time cannot be placed at the context's UTC offset",
            );
            return;
        };
        let rc = self.return_code.as_deref().unwrap_or("");
        let tx_failed = rc != "Success";
        let mut tx_detail = format!(
            "Return-Code: {}",
            if rc.is_empty() {
                "(missing: the outcome is unknown)"
            } else {
                rc
            }
        );
        for e in &self.errors {
            tx_detail.push('\n');
            tx_detail.push_str(e);
        }
        let actor = self
            .user
            .as_deref()
            .filter(|u| !u.is_empty() && !u.starts_with("System <unset>"))
            .map(str::to_owned);
        let mut used = vec![false; self.items.len()];
        for i in 0..self.items.len() {
            let item = &self.items[i];
            let Side::New(kind) = item.side else {
                continue;
            };
            let mut from = None;
            if matches!(kind, Kind::Upgrade | Kind::Downgrade) {
                for j in [i + 1, i.wrapping_sub(1)] {
                    let Some(other) = self.items.get(j) else {
                        continue;
                    };
                    if !used[j]
                        && other.side == Side::OldOf(kind)
                        && other.nevra.name == item.nevra.name
                    {
                        used[j] = true;
                        from = other.nevra.evr.clone();
                        break;
                    }
                }
            }
            if kind == Kind::Reinstall {
                from = item.nevra.evr.clone();
            }
            let (from, to) = if kind.is_removal() {
                (item.nevra.evr.clone(), None)
            } else {
                (from, item.nevra.evr.clone())
            };
            let version = if kind.is_removal() { &from } else { &to };
            let patch_id = match version {
                Some(v) => format!("{}@{v}", item.nevra.name),
                None => item.nevra.name.clone(),
            };
            let (status, detail) = if tx_failed {
                (Status::Failure, Some(tx_detail.clone()))
            } else if !item.done {
                (
                    Status::Failure,
                    Some(format!(
                        "dnf did not complete this package (marked **)\n{tx_detail}"
                    )),
                )
            } else {
                (kind.done(), item.obsoleted.then(|| "obsoleted".to_owned()))
            };
            out.event(CollectedEvent {
                source: Source::DnfHistory,
                kind,
                patch_id,
                applied_at,
                status,
                package: Some(item.nevra.package()),
                from_version: from,
                to_version: to,
                actor: actor.clone(),
                detail,
                host: None,
                line: item.line,
            });
        }
    }
}

/// `Tue Mar  3 10:13:55 2020` (Python's `time.ctime`), or the same with its
/// leading words blanked, filled from `begin`. Also accepts
/// `Tue 03 Mar 2020 10:13:55 AM EST` (`%c` in the C locale of newer
/// Pythons) and `YYYY-MM-DD HH:MM[:SS]`. A trailing `(N seconds)` is
/// ignored.
fn ctime(value: &str, begin: Option<&str>) -> Option<NaiveDateTime> {
    let value = value.split(" (").next()?.trim();
    let mut words: Vec<&str> = value.split_whitespace().collect();
    if words.len() == 2 && words[0].contains('-') {
        let mut p = words[0].split('-');
        let (y, m, d) = (p.next()?, p.next()?, p.next()?);
        let date = NaiveDate::from_ymd_opt(digits(y, 4)? as i32, digits(m, 2)?, digits(d, 2)?)?;
        return Some(date.and_time(hms(words[1])?));
    }
    if words.len() < 5 {
        let begin: Vec<&str> = begin?.split(" (").next()?.split_whitespace().collect();
        if begin.len() != 5 {
            return None;
        }
        let missing = 5 - words.len();
        let mut filled = begin[..missing].to_vec();
        filled.extend(words);
        words = filled;
    }
    match words.as_slice() {
        [_, mon, day, time, year] if month_abbr(mon).is_some() => {
            let date = NaiveDate::from_ymd_opt(
                digits(year, 4)? as i32,
                month_abbr(mon)?,
                digits(day, 2)?,
            )?;
            Some(date.and_time(hms(time)?))
        }
        [_, day, mon, year, time, ampm, ..] => {
            let date = NaiveDate::from_ymd_opt(
                digits(year, 4)? as i32,
                month_abbr(mon)?,
                digits(day, 2)?,
            )?;
            let t = hms(time)?;
            let h = chrono::Timelike::hour(&t);
            let h24 = match (ampm.to_ascii_uppercase().as_str(), h) {
                ("AM", 12) => 0,
                ("AM", h) if h < 12 => h,
                ("PM", 12) => 12,
                ("PM", h) if h < 12 => h + 12,
                _ => return None,
            };
            Some(date.and_time(chrono::Timelike::with_hour(&t, h24)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_forms() {
        let t = |v, b| ctime(v, b).map(|t| t.to_string());
        assert_eq!(
            t("Tue Mar  3 10:13:55 2020", None).as_deref(),
            Some("2020-03-03 10:13:55")
        );
        assert_eq!(
            t(
                "           10:13:57 2020 (2 seconds)",
                Some("Tue Mar  3 10:13:55 2020")
            )
            .as_deref(),
            Some("2020-03-03 10:13:57")
        );
        assert_eq!(
            t(
                "Wed Mar  4 00:01:02 2020 (14 hours)",
                Some("Tue Mar  3 10:13:55 2020")
            )
            .as_deref(),
            Some("2020-03-04 00:01:02")
        );
        assert_eq!(
            t("Tue 03 Mar 2020 10:13:55 PM EST", None).as_deref(),
            Some("2020-03-03 22:13:55")
        );
        assert_eq!(
            t("2020-03-03 10:13", None).as_deref(),
            Some("2020-03-03 10:13:00")
        );
        assert_eq!(t("10:13:57 2020", None), None);
        assert_eq!(t("Tue Foo  3 10:13:55 2020", None), None);
    }
}
