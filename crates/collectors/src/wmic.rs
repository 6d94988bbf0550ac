//! `wmic qfe` (and `wmic qfe list`) output: the `Win32_QuickFixEngineering`
//! table, the same WMI class `Get-HotFix` reads.
//!
//! The output is a fixed-width table under a header of property names
//! (`Caption CSName Description FixComments HotFixID InstallDate
//! InstalledBy InstalledOn Name ServicePackInEffect Status`; `Caption` and
//! `CSName` only with `list`). It is usually UTF-16LE with CRLF line ends;
//! Windows XP writes `\r\r\n` and prefixes the header with `Please wait
//! while WMIC is being installed.`. Lines before the header line (the one
//! that names `HotFixID`) are reported and skipped.
//!
//! Cells are separated by two or more spaces and placed in the column whose
//! header starts where the cell starts. Some captures are not aligned (the
//! Russian sample's non-ASCII `InstalledBy` shifts the columns after it),
//! so a cell that starts at no column goes to the nearest column to the
//! right of the previous cell's.
//!
//! Each row is one install event: `patch_id` is `HotFixID` (`KB…` or
//! `Q…`), `applied_at` is `InstalledOn` at midnight local time
//! ([`Context::utc_offset`], [`Context::date_order`]) or, when that is
//! empty, [`Context::observed_at`]; `actor` is `InstalledBy`, `detail` the
//! `Description`, `host` the `CSName`. A row whose `HotFixID` is not a KB or
//! Q number (XP's `File 1`) is reported as unsupported.

use crate::event::{clip, CollectedEvent, Context, Kind, Out, Parsed, ProblemKind};
use crate::source::Source;
use crate::text::{at_offset, hotfix_id, lines, utc_at, windows_date, WinDate};
use chrono::{DateTime, FixedOffset};
use patchaudit_domain::Status;

const KNOWN: [&str; 11] = [
    "Caption",
    "CSName",
    "Description",
    "FixComments",
    "HotFixID",
    "InstallDate",
    "InstalledBy",
    "InstalledOn",
    "Name",
    "ServicePackInEffect",
    "Status",
];

/// Parses `wmic qfe` output.
pub fn parse(file_name: &str, text: &str, ctx: &Context) -> Parsed {
    let mut parsed = Parsed::default();
    let mut out = Out::new(file_name, &mut parsed);
    let mut columns: Option<Vec<(usize, String)>> = None;
    for (n, line) in lines(text) {
        let chars: Vec<char> = line.chars().collect();
        let Some(cols) = &columns else {
            if let Some(c) = header(&chars) {
                columns = Some(c);
            } else if !line.trim().is_empty() {
                out.problem(
                    n,
                    ProblemKind::Malformed,
                    format!(
                        "text before the wmic qfe header was skipped: {:?}",
                        clip(line, 120)
                    ),
                );
            }
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        let row = assign(cols, &cells(&chars));
        let get = |name: &str| -> Option<String> {
            cols.iter()
                .position(|(_, c)| c == name)
                .and_then(|i| row[i].clone())
        };
        let raw_id = get("HotFixID").unwrap_or_default();
        let Some(patch_id) = hotfix_id(&raw_id) else {
            out.problem(
                n,
                ProblemKind::Unsupported,
                format!("HotFixID {raw_id:?} is not a KB or Q number; row skipped"),
            );
            continue;
        };
        let Some((applied_at, note)) =
            installed_on(get("InstalledOn").as_deref(), ctx, &mut out, n, &patch_id)
        else {
            continue;
        };
        let detail = match (get("Description"), note) {
            (Some(d), Some(note)) => Some(format!("{d}; {note}")),
            (d, note) => d.or(note),
        };
        out.event(CollectedEvent {
            source: Source::WmicQfe,
            kind: Kind::Install,
            patch_id,
            applied_at,
            status: Status::Success,
            package: None,
            from_version: None,
            to_version: None,
            actor: get("InstalledBy"),
            detail,
            host: get("CSName"),
            line: n,
        });
    }
    if columns.is_none() && !text.trim().is_empty() {
        out.malformed(1, "no wmic qfe header (a line naming HotFixID) was found");
    }
    parsed
}

/// The date of an inventory row, or the observation time when it has none.
/// The second value notes which was used.
pub(crate) fn installed_on(
    value: Option<&str>,
    ctx: &Context,
    out: &mut Out<'_>,
    n: usize,
    patch_id: &str,
) -> Option<(DateTime<FixedOffset>, Option<String>)> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => match windows_date(v, ctx.date_order) {
            Some(WinDate::Local(t)) => at_offset(t, ctx.utc_offset).map(|t| (t, None)),
            Some(WinDate::Absolute(t)) => Some((t, None)),
            None => {
                out.malformed(n, format!("InstalledOn {v:?} of {patch_id} is not a date"));
                None
            }
        },
        None => match ctx.observed_at {
            Some(t) => Some((
                utc_at(t, ctx.utc_offset),
                Some("install date unknown; time is when it was observed installed".into()),
            )),
            None => {
                out.problem(
                    n,
                    ProblemKind::Unsupported,
                    format!("{patch_id} has no install date and Context::observed_at is not set; row skipped"),
                );
                None
            }
        },
    }
}

/// Finds the header in a line: the column names from the first known name
/// on, each with its position relative to the header's start.
fn header(chars: &[char]) -> Option<Vec<(usize, String)>> {
    let line: String = chars.iter().collect();
    if !line.contains("HotFixID") {
        return None;
    }
    let start_byte = KNOWN.iter().filter_map(|k| word_at(&line, k)).min()?;
    let start = line[..start_byte].chars().count();
    let cols = cells(&chars[start..]);
    let ok =
        cols.iter().any(|(_, c)| c == "HotFixID") && cols.iter().all(|(_, c)| !c.contains(' '));
    ok.then_some(cols)
}

/// The byte position of `word` as a whole word in `line`.
fn word_at(line: &str, word: &str) -> Option<usize> {
    line.match_indices(word)
        .find(|(i, _)| {
            let before = line[..*i].chars().next_back();
            let after = line[i + word.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
        .map(|(i, _)| i)
}

/// Cells separated by two or more spaces (or a tab), with their character
/// positions.
pub(crate) fn cells(chars: &[char]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let start = i;
        let mut end = i;
        while i < chars.len() {
            if chars[i] == '\t'
                || (chars[i].is_whitespace() && chars.get(i + 1).is_none_or(|c| c.is_whitespace()))
            {
                break;
            }
            i += 1;
            end = i;
        }
        out.push((start, chars[start..end].iter().collect()));
    }
    out
}

/// Places cells in columns: the column that starts where the cell starts,
/// otherwise the nearest column after the previous cell's.
pub(crate) fn assign(cols: &[(usize, String)], cells: &[(usize, String)]) -> Vec<Option<String>> {
    let mut row: Vec<Option<String>> = vec![None; cols.len()];
    let mut next = 0usize;
    for (pos, text) in cells {
        if next >= cols.len() {
            // More cells than columns: join to the last column.
            if let Some(last) = row.last_mut() {
                let joined = match last.take() {
                    Some(prev) => format!("{prev}  {text}"),
                    None => text.clone(),
                };
                *last = Some(joined);
            }
            continue;
        }
        let exact = cols[next..].iter().position(|(p, _)| p == pos);
        let k = match exact {
            Some(k) => next + k,
            None => {
                next + cols[next..]
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (p, _))| p.abs_diff(*pos))
                    .map_or(0, |(k, _)| k)
            }
        };
        row[k] = Some(text.clone());
        next = k + 1;
    }
    row
}
