//! `/var/log/yum.log`.
//!
//! Each line is `Mon DD HH:MM:SS Action: package`, for example
//! `Dec 01 14:37:39 Installed: 1:telnet-0.17-48.el6.x86_64` or, in older yum,
//! `Nov 29 10:37:18 Erased: tree` (a bare name). The time is local, without
//! offset ([`Context::utc_offset`]).
//!
//! **The year.** yum.log lines have no year. The caller gives the year of
//! the *last* line in [`Context::year`], usually the year of the file's
//! modification time (yum's logrotate rule rotates yum.log once a year, so
//! a file seldom spans more than one New Year). Walking back from the last
//! line, each time the month goes *down* from one line to the next, the
//! earlier lines belong to the year before. Without a year the file is not
//! parsed (one problem at line 0).
//!
//! Actions: `Installed`/`Dep-Installed` → install, `Updated` → upgrade,
//! `Reinstalled` → reinstall, `Downgraded` → downgrade, `Erased` →
//! remove, `Obsoleted` → remove (detail `obsoleted`). yum.log records no
//! failures: every event is a success (rolled_back for removals).
//!
//! The package is `[epoch:]name-version-release.arch`: `package` is
//! `name.arch`, the version is `[epoch:]version-release`, and `patch_id` is
//! `name@version`. yum.log gives only the new version; `from_version` is the
//! version an earlier line of the same file installed, when there is one.
//! The same goes for the version of a bare `Erased: name`; without it the
//! `patch_id` is the bare name.

use crate::event::{clip, CollectedEvent, Context, Kind, Out, Parsed, ProblemKind};
use crate::source::Source;
use crate::text::{at_offset, digits, hms, lines, month_abbr};
use chrono::{NaiveDate, NaiveTime};
use std::collections::HashMap;

/// A package spec split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nevra {
    /// The name.
    pub name: String,
    /// `[epoch:]version-release`, when the spec had one.
    pub evr: Option<String>,
    /// The architecture, when the spec had a version.
    pub arch: Option<String>,
}

impl Nevra {
    /// Splits `[E:]N-V-R.A` (yum.log) or `N-[E:]V-R.A` (`yum`/`dnf history
    /// info`). A spec whose version does not start with a digit or whose
    /// release has no digit is taken as a bare name.
    pub fn parse(spec: &str) -> Nevra {
        let bare = || Nevra {
            name: spec.to_owned(),
            evr: None,
            arch: None,
        };
        let (lead_epoch, rest) = match spec.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
                (Some(e), rest)
            }
            _ => (None, spec),
        };
        let Some((nvr, arch)) = rest.rsplit_once('.') else {
            return bare();
        };
        let mut it = nvr.rsplitn(3, '-');
        let (Some(release), Some(version), Some(name)) = (it.next(), it.next(), it.next()) else {
            return bare();
        };
        let (mid_epoch, version) = match version.split_once(':') {
            Some((e, v)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => (Some(e), v),
            _ => (None, version),
        };
        let epoch = lead_epoch.or(mid_epoch);
        if name.is_empty()
            || !version.starts_with(|c: char| c.is_ascii_digit())
            || !release.bytes().any(|b| b.is_ascii_digit())
            || arch.is_empty()
            || !arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return bare();
        }
        let evr = match epoch {
            Some(e) if e != "0" => format!("{e}:{version}-{release}"),
            _ => format!("{version}-{release}"),
        };
        Nevra {
            name: name.to_owned(),
            evr: Some(evr),
            arch: Some(arch.to_owned()),
        }
    }

    /// `name.arch`, or the name alone.
    pub fn package(&self) -> String {
        match &self.arch {
            Some(a) => format!("{}.{a}", self.name),
            None => self.name.clone(),
        }
    }
}

struct Record<'a> {
    line: usize,
    month: u32,
    day: u32,
    time: NaiveTime,
    action: &'a str,
    spec: &'a str,
}

/// Parses one yum.log; see the module docs for the year rule.
pub fn parse(file_name: &str, text: &str, ctx: &Context) -> Parsed {
    let mut parsed = Parsed::default();
    let mut out = Out::new(file_name, &mut parsed);
    let Some(last_year) = ctx.year else {
        out.problem(
            0,
            ProblemKind::Unsupported,
            "yum.log lines have no year: set Context::year to the year of the last line (e.g. the file's modification year)",
        );
        return parsed;
    };
    let mut records = Vec::new();
    for (n, line) in lines(text) {
        if line.trim().is_empty() {
            continue;
        }
        match record(n, line) {
            Some(r) => records.push(r),
            None => out.malformed(
                n,
                format!(
                    "expected \"Mon DD HH:MM:SS Action: package\", got {:?}",
                    clip(line, 120)
                ),
            ),
        }
    }
    // Years, from the last line backwards.
    let mut years = vec![last_year; records.len()];
    let mut year = last_year;
    for i in (0..records.len()).rev() {
        years[i] = year;
        if i > 0 && records[i].month < records[i - 1].month {
            year = year.saturating_sub(1);
        }
    }
    let mut installed: HashMap<String, String> = HashMap::new();
    for (r, year) in records.iter().zip(years) {
        let Some(date) = NaiveDate::from_ymd_opt(year, r.month, r.day) else {
            out.malformed(
                r.line,
                format!(
                    "{year}-{:02}-{:02} is not a date (year from Context::year)",
                    r.month, r.day
                ),
            );
            continue;
        };
        let Some(applied_at) = at_offset(date.and_time(r.time), ctx.utc_offset) else {
            out.malformed(r.line, "time cannot be placed at the context's UTC offset");
            continue;
        };
        let (kind, detail) = match r.action {
            "Installed" | "Dep-Installed" => (Kind::Install, None),
            "Updated" => (Kind::Upgrade, None),
            "Reinstalled" => (Kind::Reinstall, None),
            "Downgraded" => (Kind::Downgrade, None),
            "Erased" => (Kind::Remove, None),
            "Obsoleted" => (Kind::Remove, Some("obsoleted".to_owned())),
            other => {
                out.malformed(r.line, format!("unknown yum action {other:?}"));
                continue;
            }
        };
        let nevra = Nevra::parse(r.spec);
        let key = nevra.name.clone();
        let known = installed.get(&key).cloned();
        let (from, to) = match kind {
            Kind::Remove => (nevra.evr.clone().or(known), None),
            Kind::Install => (None, nevra.evr.clone()),
            _ => (known, nevra.evr.clone()),
        };
        if kind.is_removal() {
            installed.remove(&key);
        } else if let Some(v) = &nevra.evr {
            installed.insert(key, v.clone());
        }
        let version = if kind.is_removal() { &from } else { &to };
        let patch_id = match version {
            Some(v) => format!("{}@{v}", nevra.name),
            None => nevra.name.clone(),
        };
        out.event(CollectedEvent {
            source: Source::YumLog,
            kind,
            patch_id,
            applied_at,
            status: kind.done(),
            package: Some(nevra.package()),
            from_version: from,
            to_version: to,
            actor: None,
            detail,
            host: None,
            line: r.line,
        });
    }
    parsed.problems.sort_by_key(|p| p.line);
    parsed
}

fn record(n: usize, line: &str) -> Option<Record<'_>> {
    let month = month_abbr(line.get(..3)?)?;
    let rest = line.get(3..)?;
    if !rest.starts_with(' ') {
        return None;
    }
    // A syslog-style space-padded day ("Dec  8") is accepted too.
    let (day, rest) = rest.trim_start().split_once(' ')?;
    let day = digits(day, 2)?;
    let (time, rest) = rest.trim_start().split_once(' ')?;
    let time = hms(time)?;
    let (action, spec) = rest.trim().split_once(": ")?;
    let spec = spec.trim();
    if action.is_empty() || action.contains(' ') || spec.is_empty() || spec.contains(' ') {
        return None;
    }
    if !(1..=31).contains(&day) {
        return None;
    }
    Some(Record {
        line: n,
        month,
        day,
        time,
        action,
        spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nevra_forms() {
        let n = Nevra::parse("1:telnet-0.17-48.el6.x86_64");
        assert_eq!(n.name, "telnet");
        assert_eq!(n.evr.as_deref(), Some("1:0.17-48.el6"));
        assert_eq!(n.package(), "telnet.x86_64");
        let n = Nevra::parse("NetworkManager-1:1.26.0-12.el8_3.x86_64");
        assert_eq!(n.name, "NetworkManager");
        assert_eq!(n.evr.as_deref(), Some("1:1.26.0-12.el8_3"));
        let n = Nevra::parse("perl-Git-1.7.1-4.el6_7.1.noarch");
        assert_eq!(
            (n.name.as_str(), n.evr.as_deref()),
            ("perl-Git", Some("1.7.1-4.el6_7.1"))
        );
        assert_eq!(Nevra::parse("tree").evr, None);
        assert_eq!(Nevra::parse("perl-Git").name, "perl-Git");
        assert_eq!(Nevra::parse("python-dateutil-extra").evr, None);
        assert_eq!(Nevra::parse("python3.11").evr, None);
        assert_eq!(
            Nevra::parse("0:bash-4.2.46-34.el7.x86_64").evr.as_deref(),
            Some("4.2.46-34.el7")
        );
    }

    #[test]
    fn year_walks_back_over_new_year() {
        let log = "Dec 30 10:00:00 Installed: a-1.0-1.x86_64\n\
                   Jan 02 10:00:00 Installed: b-1.0-1.x86_64\n\
                   Feb 03 10:00:00 Updated: a-1.1-1.x86_64\n";
        let ctx = Context {
            year: Some(2024),
            ..Context::default()
        };
        let p = parse("yum.log", log, &ctx);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let at: Vec<String> = p.events.iter().map(|e| e.applied_at_rfc3339()).collect();
        assert_eq!(
            at,
            [
                "2023-12-30T10:00:00Z",
                "2024-01-02T10:00:00Z",
                "2024-02-03T10:00:00Z"
            ]
        );
        assert_eq!(p.events[2].from_version.as_deref(), Some("1.0-1"));
        assert_eq!(p.events[2].patch_id, "a@1.1-1");
    }
}
