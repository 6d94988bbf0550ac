//! Windows Update history: `IUpdateSearcher.QueryHistory` entries or
//! PSWindowsUpdate's `Get-WUHistory`, exported as CSV (JSON is accepted
//! too, as for [`crate::hotfix`]).
//!
//! No real export was available, so this parser follows the documentation
//! of `IUpdateHistoryEntry` (properties `Operation`, `ResultCode`,
//! `HResult`, `Date`, `UpdateIdentity`, `Title`, `Description`,
//! `ClientApplicationID`, …), of the `OperationResultCode` enumeration
//! (0 NotStarted, 1 InProgress, 2 Succeeded, 3 SucceededWithErrors,
//! 4 Failed, 5 Aborted) and of `UpdateOperation` (1 Installation,
//! 2 Uninstallation). `Get-WUHistory` adds `ComputerName`, `OperationName`,
//! `Result` (the result as a name) and `KB`. Column names are matched
//! without regard to case; codes may be numbers or names
//! (`Succeeded`, `orcFailed`, `Succeeded With Errors`, …).
//!
//! - `patch_id`: the `KB` column, else the first `KB` number in `Title`,
//!   else the `UpdateID` (a GUID, from `UpdateID` or `UpdateIdentity`).
//! - `applied_at`: `Date`. Without an offset it is read at
//!   [`Context::windows_update_offset`] (default UTC, because the
//!   Windows Update Agent reports history dates in UTC).
//! - `status`: Succeeded or SucceededWithErrors → success (rolled_back for
//!   an uninstallation); Failed or Aborted → failure, with the result,
//!   `HResult` (as `0x…`) and title as detail. NotStarted and InProgress
//!   entries are not outcomes: they are reported as unsupported.
//! - `kind`: install, or remove for an uninstallation.
//! - `actor`: `ClientApplicationID` (`AutomaticUpdates`,
//!   `UpdateOrchestrator`, …); `detail`: the title (and the failure);
//!   `host`: `ComputerName`.

use crate::event::{CollectedEvent, Context, Kind, Out, Parsed, ProblemKind};
use crate::hotfix::{csv_rows, is_json, json_rows};
use crate::source::Source;
use crate::text::{at_offset, find_kb, hotfix_id, windows_date, WinDate};
use chrono::{DateTime, FixedOffset, Utc};
use patchaudit_domain::Status;

/// Parses a Windows Update history export.
pub fn parse(file_name: &str, text: &str, ctx: &Context) -> Parsed {
    let mut parsed = Parsed::default();
    let mut out = Out::new(file_name, &mut parsed);
    let rows = if is_json(text) {
        json_rows(text, &mut out)
    } else {
        csv_rows(text, &mut out)
    };
    for row in rows {
        let entry = Entry {
            line: row.line,
            kb: row.get(&["kb", "kbarticleids"]),
            title: row.get(&["title"]),
            update_id: row.get(&["updateid", "update_id", "updateidentity"]),
            date: Date::Text(row.get(&["date"])),
            operation: row.get(&["operation", "operationname"]),
            result: row.get(&["resultcode", "result", "result_code"]),
            hresult: row.get(&["hresult"]),
            actor: row.get(&["clientapplicationid", "client_app_id"]),
            host: row.get(&["computername", "pscomputername"]),
        };
        entry.emit(Source::WindowsUpdateHistory, ctx, &mut out);
    }
    parsed.problems.sort_by_key(|p| p.line);
    parsed
}

/// A history entry's date: text from an export, or seconds since the epoch
/// from osquery.
pub(crate) enum Date {
    Text(Option<String>),
    Unix(Option<i64>),
}

/// One history entry, from CSV, JSON or osquery.
pub(crate) struct Entry {
    pub(crate) line: usize,
    pub(crate) kb: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) update_id: Option<String>,
    pub(crate) date: Date,
    pub(crate) operation: Option<String>,
    pub(crate) result: Option<String>,
    pub(crate) hresult: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) host: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    NotStarted,
    InProgress,
    Succeeded,
    SucceededWithErrors,
    Failed,
    Aborted,
}

impl Outcome {
    fn parse(s: &str) -> Option<Outcome> {
        let norm: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        let norm = norm.strip_prefix("orc").unwrap_or(&norm);
        Some(match norm {
            "0" | "notstarted" => Outcome::NotStarted,
            "1" | "inprogress" => Outcome::InProgress,
            "2" | "succeeded" => Outcome::Succeeded,
            "3" | "succeededwitherrors" => Outcome::SucceededWithErrors,
            "4" | "failed" => Outcome::Failed,
            "5" | "aborted" => Outcome::Aborted,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Outcome::NotStarted => "NotStarted",
            Outcome::InProgress => "InProgress",
            Outcome::Succeeded => "Succeeded",
            Outcome::SucceededWithErrors => "SucceededWithErrors",
            Outcome::Failed => "Failed",
            Outcome::Aborted => "Aborted",
        }
    }
}

/// `Installation`/`1` → install, `Uninstallation`/`2` → remove.
fn operation(s: Option<&str>) -> Option<Kind> {
    let Some(s) = s else {
        return Some(Kind::Install);
    };
    let norm: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    match norm.strip_prefix("uo").unwrap_or(&norm) {
        "1" | "installation" | "install" => Some(Kind::Install),
        "2" | "uninstallation" | "uninstall" => Some(Kind::Remove),
        _ => None,
    }
}

/// An HRESULT as `0x8007000E`, from decimal (signed or not) or hex.
fn hresult(s: &str) -> String {
    let s = s.trim();
    let parsed = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else {
        s.parse::<i64>().ok().map(|v| v as u32)
    };
    parsed.map_or_else(|| s.to_owned(), |v| format!("0x{v:08X}"))
}

fn is_guid(s: &str) -> bool {
    let s = s.trim_matches(['{', '}']);
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

impl Entry {
    pub(crate) fn emit(self, source: Source, ctx: &Context, out: &mut Out<'_>) {
        let n = self.line;
        let patch_id = self
            .kb
            .as_deref()
            .and_then(|k| {
                hotfix_id(k).or_else(|| {
                    k.bytes()
                        .all(|b| b.is_ascii_digit())
                        .then(|| format!("KB{k}"))
                })
            })
            .or_else(|| self.title.as_deref().and_then(find_kb))
            .or_else(|| {
                self.update_id
                    .as_deref()
                    .filter(|u| is_guid(u))
                    .map(|u| u.trim_matches(['{', '}']).to_ascii_lowercase())
            });
        let Some(patch_id) = patch_id else {
            out.problem(
                n,
                ProblemKind::Unsupported,
                format!(
                    "no KB number and no update id in {:?}; entry skipped",
                    self.title.as_deref().unwrap_or("")
                ),
            );
            return;
        };
        let Some(kind) = operation(self.operation.as_deref()) else {
            out.malformed(
                n,
                format!(
                    "unknown operation {:?}",
                    self.operation.as_deref().unwrap_or("")
                ),
            );
            return;
        };
        let Some(raw_result) = self.result.as_deref() else {
            out.malformed(n, format!("{patch_id}: no ResultCode or Result"));
            return;
        };
        let Some(outcome) = Outcome::parse(raw_result) else {
            out.malformed(n, format!("{patch_id}: unknown result {raw_result:?}"));
            return;
        };
        let applied_at = match self.date {
            Date::Text(Some(d)) => match windows_date(&d, ctx.date_order) {
                Some(WinDate::Local(t)) => at_offset(t, ctx.windows_update_offset),
                Some(WinDate::Absolute(t)) => Some(t),
                None => {
                    out.malformed(n, format!("{patch_id}: Date {d:?} is not a date"));
                    return;
                }
            },
            Date::Unix(Some(secs)) => DateTime::<Utc>::from_timestamp(secs, 0)
                .map(|t| t.with_timezone(&FixedOffset::east_opt(0).expect("zero offset"))),
            Date::Text(None) | Date::Unix(None) => None,
        };
        let Some(applied_at) = applied_at else {
            out.malformed(n, format!("{patch_id}: no valid Date"));
            return;
        };
        let hr = self
            .hresult
            .as_deref()
            .map(hresult)
            .filter(|h| h != "0x00000000");
        let title = self.title.clone().unwrap_or_default();
        let (status, detail) = match outcome {
            Outcome::NotStarted | Outcome::InProgress => {
                out.problem(
                    n,
                    ProblemKind::Unsupported,
                    format!(
                        "{patch_id}: result {} is not an outcome; entry skipped",
                        outcome.name()
                    ),
                );
                return;
            }
            Outcome::Succeeded => (kind.done(), Some(title)),
            Outcome::SucceededWithErrors => (
                kind.done(),
                Some(match &hr {
                    Some(h) => format!("SucceededWithErrors (HResult {h}): {title}"),
                    None => format!("SucceededWithErrors: {title}"),
                }),
            ),
            Outcome::Failed | Outcome::Aborted => (
                Status::Failure,
                Some(match &hr {
                    Some(h) => format!("{} (HResult {h}): {title}", outcome.name()),
                    None => format!("{}: {title}", outcome.name()),
                }),
            ),
        };
        out.event(CollectedEvent {
            source,
            kind,
            patch_id,
            applied_at,
            status,
            package: None,
            from_version: None,
            to_version: None,
            actor: self.actor,
            detail,
            host: self.host,
            line: n,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_hresults() {
        assert!(Outcome::parse("2") == Some(Outcome::Succeeded));
        assert!(Outcome::parse("orcFailed") == Some(Outcome::Failed));
        assert!(Outcome::parse("Succeeded With Errors") == Some(Outcome::SucceededWithErrors));
        assert!(Outcome::parse("7").is_none());
        assert_eq!(hresult("-2145124329"), "0x80240017");
        assert_eq!(hresult("0x80070643"), "0x80070643");
        assert_eq!(hresult("2147944003"), "0x80070643");
        assert_eq!(hresult("weird"), "weird");
        assert_eq!(operation(Some("Uninstallation")), Some(Kind::Remove));
        assert_eq!(operation(Some("1")), Some(Kind::Install));
        assert_eq!(operation(None), Some(Kind::Install));
        assert_eq!(operation(Some("Other")), None);
        assert!(is_guid("{4a3e1b0c-5d2f-4e6a-9b7c-1d2e3f4a5b6c}"));
        assert!(!is_guid("System.__ComObject"));
    }
}
