//! `Get-HotFix` exported as CSV (`Export-Csv`, `ConvertTo-Csv`) or JSON
//! (`ConvertTo-Json`).
//!
//! No real export was available, so this parser follows the cmdlet's
//! documentation: `Get-HotFix` returns `Win32_QuickFixEngineering` objects,
//! whose properties include `Source`/`CSName`, `Description`, `HotFixID`,
//! `InstalledBy` and `InstalledOn` (a `DateTime`). The format is told by the
//! first character: `[` or `{` is JSON, anything else CSV.
//!
//! - CSV: a `#TYPE …` first line (Windows PowerShell without
//!   `-NoTypeInformation`) is skipped; the header names the columns, in any
//!   order and case; only `HotFixID` is required. `InstalledOn` is the
//!   culture's date and time (`3/2/2019 12:00:00 AM`), read as local time
//!   ([`Context::utc_offset`], [`Context::date_order`]).
//! - JSON: an array of objects, or one object. Windows PowerShell writes
//!   `InstalledOn` as `{"value": "/Date(1551484800000)/", "DateTime": …}` or
//!   as the bare `/Date(…)/` string (milliseconds since the epoch, UTC);
//!   PowerShell 7 writes ISO 8601. Problems are located at the line where
//!   the object starts.
//!
//! Each row is an install event, filled as for [`crate::wmic`]: `patch_id`
//! from `HotFixID`, `applied_at` from `InstalledOn` (or
//! [`Context::observed_at`]), `actor` from `InstalledBy`, `detail` from
//! `Description`, `host` from `Source`, `CSName` or `PSComputerName`.

use crate::event::{clip, CollectedEvent, Context, Kind, Out, Parsed, ProblemKind};
use crate::source::Source;
use crate::text::hotfix_id;
use crate::wmic::installed_on;
use patchaudit_domain::Status;
use serde_json::Value;

/// One row, whatever the format, with the names lower-cased.
pub(crate) struct Row {
    pub(crate) line: usize,
    pub(crate) fields: Vec<(String, String)>,
}

impl Row {
    pub(crate) fn get(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| {
            self.fields
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
    }
}

/// Parses a `Get-HotFix` export.
pub fn parse(file_name: &str, text: &str, ctx: &Context) -> Parsed {
    let mut parsed = Parsed::default();
    let mut out = Out::new(file_name, &mut parsed);
    let rows = if is_json(text) {
        json_rows(text, &mut out)
    } else {
        csv_rows(text, &mut out)
    };
    for row in rows {
        let raw_id = row.get(&["hotfixid"]).unwrap_or_default();
        let Some(patch_id) = hotfix_id(&raw_id) else {
            out.problem(
                row.line,
                ProblemKind::Unsupported,
                format!("HotFixID {raw_id:?} is not a KB or Q number; row skipped"),
            );
            continue;
        };
        let Some((applied_at, note)) = installed_on(
            row.get(&["installedon"]).as_deref(),
            ctx,
            &mut out,
            row.line,
            &patch_id,
        ) else {
            continue;
        };
        let detail = match (row.get(&["description"]), note) {
            (Some(d), Some(note)) => Some(format!("{d}; {note}")),
            (d, note) => d.or(note),
        };
        out.event(CollectedEvent {
            source: Source::GetHotFix,
            kind: Kind::Install,
            patch_id,
            applied_at,
            status: Status::Success,
            package: None,
            from_version: None,
            to_version: None,
            actor: row.get(&["installedby"]),
            detail,
            host: row.get(&["source", "csname", "pscomputername"]),
            line: row.line,
        });
    }
    parsed.problems.sort_by_key(|p| p.line);
    parsed
}

pub(crate) fn is_json(text: &str) -> bool {
    matches!(text.trim_start().chars().next(), Some('[' | '{'))
}

/// CSV rows, with `#TYPE` lines skipped; line numbers are the record's
/// first line.
pub(crate) fn csv_rows(text: &str, out: &mut Out<'_>) -> Vec<Row> {
    let mut skipped = 0usize;
    let mut body = text;
    while let Some(first) = body.lines().next() {
        let t = first.trim_start_matches('\u{FEFF}').trim();
        if t.starts_with("#TYPE") || t.starts_with("#type") || t.is_empty() {
            body = body.get(first.len()..).unwrap_or("");
            body = body
                .strip_prefix("\r\n")
                .or_else(|| body.strip_prefix('\n'))
                .or_else(|| body.strip_prefix('\r'))
                .unwrap_or(body);
            skipped += 1;
        } else {
            break;
        }
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(body.as_bytes());
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_ascii_lowercase()).collect(),
        Err(e) => {
            out.malformed(skipped + 1, format!("CSV header cannot be read: {e}"));
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record
                    .position()
                    .map_or(0, |p| line_of(body, p.byte() as usize))
                    + skipped;
                if record.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                if record.len() != headers.len() {
                    out.malformed(
                        line,
                        format!(
                            "row has {} fields but the header has {}",
                            record.len(),
                            headers.len()
                        ),
                    );
                    continue;
                }
                rows.push(Row {
                    line,
                    fields: headers
                        .iter()
                        .cloned()
                        .zip(record.iter().map(str::to_owned))
                        .collect(),
                });
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| line_of(body, p.byte() as usize)) + skipped;
                out.malformed(line, format!("CSV cannot be read: {e}"));
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
            }
        }
    }
    rows
}

/// The 1-based line of a byte offset, counting `\n`, `\r\n` and lone `\r`
/// line ends as [`crate::text::lines`] does.
fn line_of(text: &str, byte: usize) -> usize {
    let head = &text.as_bytes()[..byte.min(text.len())];
    let mut n = 1;
    let mut i = 0;
    while i < head.len() {
        match head[i] {
            b'\n' => n += 1,
            b'\r' if head.get(i + 1) != Some(&b'\n') && head.get(i + 1) != Some(&b'\r') => n += 1,
            _ => {}
        }
        i += 1;
    }
    n
}

/// JSON rows: an array of objects, or one object. Nested values are
/// flattened the way the parsers need: an object with a `value` (a
/// PowerShell-wrapped `DateTime`) gives its `value`; other objects and
/// arrays are ignored.
pub(crate) fn json_rows(text: &str, out: &mut Out<'_>) -> Vec<Row> {
    let value: Value = match serde_json::from_str(text.trim_start_matches('\u{FEFF}')) {
        Ok(v) => v,
        Err(e) => {
            out.malformed(e.line(), format!("JSON cannot be read: {e}"));
            return Vec::new();
        }
    };
    let starts = element_lines(text);
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut rows = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let line = starts.get(i).copied().unwrap_or(1);
        let Value::Object(map) = item else {
            out.malformed(
                line,
                format!("expected an object, got {}", clip(&item.to_string(), 80)),
            );
            continue;
        };
        let fields = map
            .into_iter()
            .filter_map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Object(o) => match o.get("value") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Number(n)) => n.to_string(),
                        _ => return None,
                    },
                    Value::Null | Value::Array(_) => return None,
                };
                Some((k.to_ascii_lowercase(), v))
            })
            .collect();
        rows.push(Row { line, fields });
    }
    rows
}

/// The 1-based line where each element of a top-level array starts (or
/// the line of a lone top-level value).
fn element_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let (mut depth, mut line) = (0i32, 1usize);
    let (mut in_str, mut escaped) = (false, false);
    let top_array = text.trim_start().starts_with('[');
    let mut expecting = !top_array;
    for c in text.chars() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            if c == '\n' {
                line += 1;
            }
            continue;
        }
        if c == '\n' {
            line += 1;
        }
        if c.is_whitespace() {
            continue;
        }
        let at_element_depth = depth == i32::from(top_array);
        if expecting && at_element_depth && c != ',' && c != ']' {
            lines.push(line);
            expecting = false;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' => {
                depth += 1;
                if top_array && depth == 1 {
                    expecting = true;
                }
            }
            '}' | ']' => depth -= 1,
            ',' if top_array && depth == 1 => expecting = true,
            _ => {}
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_start_lines() {
        let t = "[\n  {\"a\": \"{\"},\n  \"x\",\n  {\n \"b\": [1, {\"c\": 2}]\n  }\n]";
        assert_eq!(element_lines(t), vec![2, 3, 4]);
        assert_eq!(element_lines("\n{\"a\": 1}"), vec![2]);
        assert_eq!(element_lines("[1,\n2]"), vec![1, 2]);
        assert_eq!(element_lines("[]"), Vec::<usize>::new());
    }

    #[test]
    fn byte_offsets_to_lines() {
        assert_eq!(line_of("a\r\nb\r\nc", 6), 3);
        assert_eq!(line_of("a\nb", 0), 1);
        assert_eq!(line_of("a\rb", 2), 2);
    }
}
