//! The Hotfix(s) list in `systeminfo` output.
//!
//! ```text
//! Hotfix(s):                 4 Hotfix(s) Installed.
//!                            [01]: KB4462930
//!                            [02]: KB4485449
//! ```
//!
//! `systeminfo` is localised: the label is `Hotfix(s)` in English,
//! `Correctif(s)` in French, `Исправление(я)` in Russian, and so on. The
//! list is found by its label when the label is one of those known here,
//! and otherwise as the one top-level field whose `[NN]:` items are KB
//! numbers. The count in the field's value (`4 Hotfix(s) Installed.`,
//! `Число установленных исправлений - 7.`) is checked against the items.
//!
//! `systeminfo` gives no install dates, so every hotfix is an install event
//! at [`Context::observed_at`] (required), with a detail saying so. Items
//! that are not KB or Q numbers (old systems list `File 1`) are reported as
//! unsupported. `host` is the `Host Name` (the first field).

use crate::event::{clip, CollectedEvent, Context, Kind, Out, Parsed, ProblemKind};
use crate::source::Source;
use crate::text::{hotfix_id, lines, utc_at};
use patchaudit_domain::Status;

/// Hotfix labels in the languages seen so far, lower case.
const LABELS: [&str; 8] = [
    "hotfix(s)",
    "hotfix(es)",
    "correctif(s)",
    "исправление(я)",
    "revisiones",
    "aggiornamenti rapidi",
    "hotfixes",
    "hotfix",
];

struct Field<'a> {
    line: usize,
    label: &'a str,
    value: &'a str,
    items: Vec<(usize, &'a str)>,
}

/// Parses `systeminfo` output.
pub fn parse(file_name: &str, text: &str, ctx: &Context) -> Parsed {
    let mut parsed = Parsed::default();
    let mut out = Out::new(file_name, &mut parsed);
    let mut fields: Vec<Field<'_>> = Vec::new();
    for (n, line) in lines(text) {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            if let Some((label, value)) = line.split_once(':') {
                fields.push(Field {
                    line: n,
                    label: label.trim(),
                    value: value.trim(),
                    items: Vec::new(),
                });
            }
            continue;
        }
        let t = line.trim();
        if let Some(rest) = t.strip_prefix('[') {
            if let Some((num, item)) = rest.split_once(']') {
                if num.bytes().all(|b| b.is_ascii_digit()) {
                    let item = item.trim_start().strip_prefix(':').unwrap_or(item).trim();
                    if let Some(f) = fields.last_mut() {
                        f.items.push((n, item));
                    }
                }
            }
        }
    }
    let host = fields
        .first()
        .map(|f| f.value.to_owned())
        .filter(|h| !h.is_empty());
    let by_label = fields
        .iter()
        .position(|f| LABELS.contains(&f.label.to_lowercase().as_str()));
    let by_items = || {
        fields.iter().position(|f| {
            !f.items.is_empty() && f.items.iter().all(|(_, i)| hotfix_id(i).is_some())
        })
    };
    let Some(idx) = by_label.or_else(by_items) else {
        if text.trim().is_empty() {
            return parsed;
        }
        out.malformed(
            1,
            "no hotfix list was found (a field such as \"Hotfix(s):\" followed by [NN]: KB… lines)",
        );
        return parsed;
    };
    let field = &fields[idx];
    let declared: Option<usize> = field
        .value
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok());
    match declared {
        Some(d) if d != field.items.len() => out.malformed(
            field.line,
            format!(
                "{} declares {d} hotfix(es) but lists {} (systeminfo cuts long lists short; \
                 wmic qfe or Get-HotFix give them all)",
                clip(field.label, 40),
                field.items.len()
            ),
        ),
        None if !field.value.is_empty() => out.malformed(
            field.line,
            format!("no hotfix count in {:?}", clip(field.value, 80)),
        ),
        _ => {}
    }
    let Some(observed) = ctx.observed_at else {
        out.problem(
            field.line,
            ProblemKind::Unsupported,
            format!(
                "systeminfo gives no install dates and Context::observed_at is not set; {} hotfix(es) skipped",
                field.items.len()
            ),
        );
        return parsed;
    };
    for &(n, item) in &field.items {
        if item.is_empty() {
            out.malformed(n, "empty hotfix item: systeminfo cut the list short here");
            continue;
        }
        let Some(patch_id) = hotfix_id(item) else {
            out.problem(
                n,
                ProblemKind::Unsupported,
                format!("{item:?} is not a KB or Q number; item skipped"),
            );
            continue;
        };
        out.event(CollectedEvent {
            source: Source::Systeminfo,
            kind: Kind::Install,
            patch_id,
            applied_at: utc_at(observed, ctx.utc_offset),
            status: Status::Success,
            package: None,
            from_version: None,
            to_version: None,
            actor: None,
            detail: Some(
                "listed by systeminfo, which gives no install date; time is when it was observed installed"
                    .into(),
            ),
            host: host.clone(),
            line: n,
        });
    }
    parsed
}
