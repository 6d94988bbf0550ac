//! osquery differential results, as the filesystem logger writes them (one
//! JSON object per line) for the `deb_packages`, `rpm_packages`, `patches`
//! and `windows_update_history` tables.
//!
//! Both result formats are read: the *event* format, one row per line with
//! `"action": "added"` or `"removed"` and the row in `"columns"`, and the
//! *batch* format, one query run per line with `"diffResults": {"added":
//! […], "removed": […]}`. *Snapshot* results (`"snapshot": […]`) are not
//! differential and are reported as unsupported. The table is told by the
//! row's columns (query names are free text):
//!
//! | table | columns that identify it |
//! |---|---|
//! | `patches` | `hotfix_id` |
//! | `windows_update_history` | `result_code`, or `update_id` and `title` |
//! | `rpm_packages` | `name`, `version` and `release` |
//! | `deb_packages` | `name`, `version` and one of `arch`, `revision`, `maintainer`, `status` |
//!
//! Events:
//! - `deb_packages`/`rpm_packages`: within one run of one query on one host
//!   (same `name`, `hostIdentifier`, `epoch` and `counter`), a removed row
//!   and an added row of the same package and architecture are one upgrade
//!   (or downgrade) from the removed version to the added one. An added row
//!   alone is an install, a removed row alone a removal (rolled_back). The
//!   time is the run's `unixTime` (for rpm, `install_time` when the row has
//!   one). On the first run of a query (`counter` 0) osquery reports every
//!   existing row as added: those events say so in `detail`, and their time
//!   is when osquery first saw them, not when they were installed. The
//!   version is deb's `version`, or rpm's `[epoch:]version-release`;
//!   `package` is `name:arch` (deb) or `name.arch` (rpm).
//! - `patches`: an added row is an install of `hotfix_id` at `installed_on`
//!   (else `unixTime`), by `installed_by`; a removed row a removal at
//!   `unixTime`.
//! - `windows_update_history`: an added row is a new history entry,
//!   read as in [`crate::wu_history`] (`date` is seconds since the epoch).
//!   Removed rows only mean the entry aged out of the history, and are
//!   ignored.
//!
//! `host` is the record's `hostIdentifier`.

use crate::event::{clip, CollectedEvent, Context, Kind, Out, Parsed, ProblemKind};
use crate::source::Source;
use crate::text::{at_offset, hotfix_id, lines, windows_date, WinDate};
use crate::version::{dpkg_cmp, rpm_evr_cmp};
use crate::wu_history::{Date, Entry};
use chrono::{DateTime, FixedOffset, Utc};
use patchaudit_domain::Status;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Table {
    Deb,
    Rpm,
    Patches,
    WuHistory,
}

/// One run of one query on one host: `name`, `hostIdentifier`, `epoch`,
/// `counter`.
type Group = (String, String, String, String);

struct Row {
    line: usize,
    group: Group,
    first_run: bool,
    unix_time: Option<i64>,
    host: Option<String>,
    added: bool,
    columns: Map<String, Value>,
}

/// Parses an osquery results log.
pub fn parse(file_name: &str, text: &str, ctx: &Context) -> Parsed {
    let mut parsed = Parsed::default();
    let mut out = Out::new(file_name, &mut parsed);
    let mut rows: Vec<Row> = Vec::new();
    for (n, line) in lines(text) {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                out.malformed(n, format!("not a JSON object: {e}"));
                continue;
            }
        };
        let Value::Object(obj) = value else {
            out.malformed(n, "not a JSON object");
            continue;
        };
        read_line(n, obj, &mut rows, &mut out);
    }

    // Pair package rows of one run: removed + added of the same package.
    let mut by_key: HashMap<(&Group, String), Vec<usize>> = HashMap::new();
    let mut tables = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let t = table(&r.columns);
        tables.push(t);
        if matches!(t, Some(Table::Deb | Table::Rpm)) {
            let key = format!(
                "{}\u{0}{}",
                text_col(&r.columns, "name"),
                text_col(&r.columns, "arch")
            );
            by_key.entry((&r.group, key)).or_default().push(i);
        }
    }
    let mut partner: Vec<Option<usize>> = vec![None; rows.len()];
    let mut consumed = vec![false; rows.len()];
    for idxs in by_key.values() {
        let removed: Vec<usize> = idxs.iter().copied().filter(|&i| !rows[i].added).collect();
        let added: Vec<usize> = idxs.iter().copied().filter(|&i| rows[i].added).collect();
        for (a, r) in added.iter().zip(removed.iter()) {
            partner[*a] = Some(*r);
            consumed[*r] = true;
        }
    }

    for (i, row) in rows.iter().enumerate() {
        let Some(table) = tables[i] else {
            out.problem(
                row.line,
                ProblemKind::Unsupported,
                format!(
                    "columns {:?} are not those of deb_packages, rpm_packages, patches or windows_update_history",
                    clip(&row.columns.keys().cloned().collect::<Vec<_>>().join(","), 120)
                ),
            );
            continue;
        };
        match table {
            Table::Deb | Table::Rpm => {
                if consumed[i] {
                    continue;
                }
                package_event(table, row, partner[i].map(|j| &rows[j]), &mut out);
            }
            Table::Patches => patch_event(row, ctx, &mut out),
            Table::WuHistory => {
                if !row.added {
                    continue;
                }
                let c = &row.columns;
                let opt = |k: &str| Some(text_col(c, k)).filter(|s| !s.is_empty());
                Entry {
                    line: row.line,
                    kb: None,
                    title: opt("title"),
                    update_id: opt("update_id"),
                    date: Date::Unix(text_col(c, "date").parse().ok()),
                    operation: opt("operation"),
                    result: opt("result_code"),
                    hresult: opt("hresult"),
                    actor: opt("client_app_id"),
                    host: row.host.clone(),
                }
                .emit(Source::Osquery, ctx, &mut out);
            }
        }
    }
    parsed.events.sort_by_key(|e| e.line);
    parsed.problems.sort_by_key(|p| p.line);
    parsed
}

fn read_line(n: usize, obj: Map<String, Value>, rows: &mut Vec<Row>, out: &mut Out<'_>) {
    let s = |k: &str| obj.get(k).map(value_text).unwrap_or_default();
    let group = (s("name"), s("hostIdentifier"), s("epoch"), s("counter"));
    let first_run = s("counter") == "0";
    let unix_time = s("unixTime").parse::<i64>().ok();
    let host = Some(s("hostIdentifier")).filter(|h| !h.is_empty());
    let mut bad_rows = 0usize;
    let mut push = |added: bool, columns: &Value| match columns {
        Value::Object(c) => rows.push(Row {
            line: n,
            group: group.clone(),
            first_run,
            unix_time,
            host: host.clone(),
            added,
            columns: c.clone(),
        }),
        _ => bad_rows += 1,
    };
    if let Some(diff) = obj.get("diffResults") {
        let mut bad_lists = Vec::new();
        for (key, added) in [("removed", false), ("added", true)] {
            match diff.get(key) {
                Some(Value::Array(list)) => list.iter().for_each(|c| push(added, c)),
                None | Some(Value::Null) => {}
                Some(_) => bad_lists.push(key),
            }
        }
        for key in bad_lists {
            out.malformed(n, format!("diffResults.{key} is not a list"));
        }
        if bad_rows > 0 {
            out.malformed(n, format!("{bad_rows} result row(s) are not objects"));
        }
        return;
    }
    if obj.contains_key("snapshot") || s("action") == "snapshot" {
        out.problem(
            n,
            ProblemKind::Unsupported,
            "snapshot results are not differential; use a differential query",
        );
        return;
    }
    match (s("action").as_str(), obj.get("columns")) {
        ("added", Some(c)) => push(true, c),
        ("removed", Some(c)) => push(false, c),
        (action, Some(_)) => {
            out.malformed(n, format!("unknown action {action:?}"));
            return;
        }
        (_, None) => {
            out.malformed(n, "no \"columns\" and no \"diffResults\"");
            return;
        }
    }
    if bad_rows > 0 {
        out.malformed(n, "the result row is not an object");
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn text_col(c: &Map<String, Value>, k: &str) -> String {
    c.get(k).map(value_text).unwrap_or_default()
}

fn table(c: &Map<String, Value>) -> Option<Table> {
    let has = |k: &str| c.contains_key(k);
    if has("hotfix_id") {
        Some(Table::Patches)
    } else if has("result_code") || (has("update_id") && has("title")) {
        Some(Table::WuHistory)
    } else if has("name") && has("version") && has("release") {
        Some(Table::Rpm)
    } else if has("name")
        && has("version")
        && (has("arch") || has("revision") || has("maintainer") || has("status"))
    {
        Some(Table::Deb)
    } else {
        None
    }
}

fn unix(t: Option<i64>) -> Option<DateTime<FixedOffset>> {
    DateTime::<Utc>::from_timestamp(t?, 0).map(|t| t.fixed_offset())
}

/// Version and package name of a deb or rpm row.
fn version_of(table: Table, c: &Map<String, Value>) -> (String, String) {
    let name = text_col(c, "name");
    let arch = text_col(c, "arch");
    match table {
        Table::Rpm => {
            let epoch = text_col(c, "epoch");
            let vr = format!("{}-{}", text_col(c, "version"), text_col(c, "release"));
            let v = if epoch.is_empty() || epoch == "0" {
                vr
            } else {
                format!("{epoch}:{vr}")
            };
            let pkg = if arch.is_empty() {
                name
            } else {
                format!("{name}.{arch}")
            };
            (v, pkg)
        }
        _ => {
            let pkg = if arch.is_empty() {
                name
            } else {
                format!("{name}:{arch}")
            };
            (text_col(c, "version"), pkg)
        }
    }
}

fn package_event(table: Table, row: &Row, removed: Option<&Row>, out: &mut Out<'_>) {
    let name = text_col(&row.columns, "name");
    if name.is_empty() || text_col(&row.columns, "version").is_empty() {
        out.malformed(row.line, "package row without name or version");
        return;
    }
    let (version, package) = version_of(table, &row.columns);
    let (kind, from, to) = match (row.added, removed) {
        (true, Some(old)) => {
            let (old_v, _) = version_of(table, &old.columns);
            let order = match table {
                Table::Rpm => rpm_evr_cmp(&old_v, &version),
                _ => dpkg_cmp(&old_v, &version).unwrap_or(Ordering::Less),
            };
            let kind = match order {
                Ordering::Greater => Kind::Downgrade,
                Ordering::Equal => Kind::Reinstall,
                Ordering::Less => Kind::Upgrade,
            };
            (kind, Some(old_v), Some(version.clone()))
        }
        (true, None) => (Kind::Install, None, Some(version.clone())),
        (false, _) => (Kind::Remove, Some(version.clone()), None),
    };
    let install_time = (table == Table::Rpm && row.added)
        .then(|| text_col(&row.columns, "install_time").parse::<i64>().ok())
        .flatten()
        .filter(|t| *t > 0);
    let Some(applied_at) = unix(install_time.or(row.unix_time)) else {
        out.malformed(row.line, "no valid unixTime");
        return;
    };
    let detail = (row.first_run && row.added).then(|| {
        "initial inventory: osquery reports every existing row as added on a query's first run (counter 0); the install time is unknown"
            .to_owned()
    });
    out.event(CollectedEvent {
        source: Source::Osquery,
        kind,
        patch_id: format!("{name}@{version}"),
        applied_at,
        status: kind.done(),
        package: Some(package),
        from_version: from,
        to_version: to,
        actor: None,
        detail,
        host: row.host.clone(),
        line: row.line,
    });
}

fn patch_event(row: &Row, ctx: &Context, out: &mut Out<'_>) {
    let c = &row.columns;
    let raw = text_col(c, "hotfix_id");
    let Some(patch_id) = hotfix_id(&raw) else {
        out.problem(
            row.line,
            ProblemKind::Unsupported,
            format!("hotfix_id {raw:?} is not a KB or Q number; row skipped"),
        );
        return;
    };
    let installed_on = text_col(c, "installed_on");
    let dated = if row.added && !installed_on.trim().is_empty() {
        match windows_date(&installed_on, ctx.date_order) {
            Some(WinDate::Local(t)) => at_offset(t, ctx.utc_offset),
            Some(WinDate::Absolute(t)) => Some(t),
            None => {
                out.malformed(
                    row.line,
                    format!("installed_on {installed_on:?} is not a date"),
                );
                return;
            }
        }
    } else {
        None
    };
    let Some(applied_at) = dated.or_else(|| unix(row.unix_time)) else {
        out.malformed(row.line, "no valid unixTime");
        return;
    };
    let kind = if row.added {
        Kind::Install
    } else {
        Kind::Remove
    };
    let description = Some(text_col(c, "description")).filter(|d| !d.is_empty());
    out.event(CollectedEvent {
        source: Source::Osquery,
        kind,
        patch_id,
        applied_at,
        status: if row.added {
            Status::Success
        } else {
            Status::RolledBack
        },
        package: None,
        from_version: None,
        to_version: None,
        actor: Some(text_col(c, "installed_by")).filter(|s| !s.is_empty()),
        detail: description,
        host: row.host.clone(),
        line: row.line,
    });
}
