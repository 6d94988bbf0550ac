//! What every parser produces: events, problems, and the context they need.

use crate::decode::CodePage;
use crate::source::Source;
use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, Utc};
use patchaudit_domain::{Input, RawEvent, Status};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// What happened to the package or update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A package or update was installed where none was.
    Install,
    /// A package went to a newer version.
    Upgrade,
    /// A package went to an older version.
    Downgrade,
    /// The same version was installed again.
    Reinstall,
    /// dpkg configured a package whose install or upgrade an earlier run had
    /// left unfinished (no install or upgrade line of its own).
    Configure,
    /// A package or update was removed.
    Remove,
    /// A package was purged: its configuration files were removed too.
    Purge,
}

impl Kind {
    /// The stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Install => "install",
            Kind::Upgrade => "upgrade",
            Kind::Downgrade => "downgrade",
            Kind::Reinstall => "reinstall",
            Kind::Configure => "configure",
            Kind::Remove => "remove",
            Kind::Purge => "purge",
        }
    }

    /// Whether the kind takes something away (remove or purge). A removal
    /// that succeeded is recorded as [`Status::RolledBack`].
    pub fn is_removal(self) -> bool {
        matches!(self, Kind::Remove | Kind::Purge)
    }

    /// The status of a finished action of this kind: success, or
    /// rolled_back for a removal.
    pub(crate) fn done(self) -> Status {
        if self.is_removal() {
            Status::RolledBack
        } else {
            Status::Success
        }
    }
}

/// One patch event found in a log, before it is tied to a system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedEvent {
    /// The format it came from; its [`Source::name`] is the ledger's `source`.
    pub source: Source,
    /// What happened.
    pub kind: Kind,
    /// `package@version` for package managers, the KB id on Windows.
    pub patch_id: String,
    /// When it happened, with the offset the timestamp was read in.
    pub applied_at: DateTime<FixedOffset>,
    /// The outcome: success, failure, or rolled_back for a removal.
    pub status: Status,
    /// The package as the log names it (with `:arch` or `.arch` where logged).
    pub package: Option<String>,
    /// The version before the change.
    pub from_version: Option<String>,
    /// The version after the change.
    pub to_version: Option<String>,
    /// Who asked for it, where the log says.
    pub actor: Option<String>,
    /// Failure output, or a note that the other fields cannot carry.
    pub detail: Option<String>,
    /// The host the record itself names (osquery `hostIdentifier`, Windows
    /// `CSName`/`Source`/`ComputerName`), where it names one. It is not part
    /// of the ledger event; callers that parse a file holding several hosts
    /// use it to pick the `system`.
    pub host: Option<String>,
    /// The 1-based line of the input where the event was decided.
    pub line: usize,
}

impl CollectedEvent {
    /// The deterministic idempotency key of this event on `system`:
    /// `<source>-<hex SHA-256>` over a length-prefixed encoding of the
    /// system, the source, the kind and every ledger field (see
    /// `docs/collectors.md`). `occurrence` tells apart events that are
    /// otherwise identical within one parse; it is 0 for the first.
    /// The file name and line number are not part of it, so a rotated or
    /// re-read log yields the same ids.
    pub fn event_id(&self, system: &str, occurrence: u32) -> String {
        let mut h = Sha256::new();
        let mut put = |s: Option<&str>| match s {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        };
        put(Some("patchaudit-collectors/event-id/v1"));
        put(Some(system));
        put(Some(self.source.name()));
        put(Some(self.kind.as_str()));
        put(Some(&self.patch_id));
        put(Some(&self.applied_at_rfc3339()));
        put(Some(self.status.as_str()));
        put(self.package.as_deref());
        put(self.from_version.as_deref());
        put(self.to_version.as_deref());
        put(self.actor.as_deref());
        put(self.detail.as_deref());
        h.update(occurrence.to_be_bytes());
        format!("{}-{}", self.source.name(), hex::encode(h.finalize()))
    }

    /// `applied_at` as RFC 3339, the form the ledger accepts.
    pub fn applied_at_rfc3339(&self) -> String {
        self.applied_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// The event as the ledger's loosely typed input, for `system`, with
    /// the `event_id` of its first occurrence. Use
    /// [`Parsed::to_raw_events`] to number repeated identical events.
    pub fn to_raw(&self, system: &str) -> RawEvent {
        self.to_raw_with(system, 0)
    }

    fn to_raw_with(&self, system: &str, occurrence: u32) -> RawEvent {
        let mut r = RawEvent::default();
        let mut text = |name: &str, v: Option<&str>| {
            if let Some(v) = v {
                r.push(name, Input::Text(v.to_owned()));
            }
        };
        text("event_id", Some(&self.event_id(system, occurrence)));
        text("patch_id", Some(&self.patch_id));
        text("system", Some(system));
        text("applied_at", Some(&self.applied_at_rfc3339()));
        text("status", Some(self.status.as_str()));
        text("package", self.package.as_deref());
        text("from_version", self.from_version.as_deref());
        text("to_version", self.to_version.as_deref());
        text("source", Some(self.source.name()));
        text("actor", self.actor.as_deref());
        text("detail", self.detail.as_deref());
        r
    }
}

impl Serialize for CollectedEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("CollectedEvent", 12)?;
        st.serialize_field("source", self.source.name())?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("patch_id", &self.patch_id)?;
        st.serialize_field("applied_at", &self.applied_at_rfc3339())?;
        st.serialize_field("status", self.status.as_str())?;
        st.serialize_field("package", &self.package)?;
        st.serialize_field("from_version", &self.from_version)?;
        st.serialize_field("to_version", &self.to_version)?;
        st.serialize_field("actor", &self.actor)?;
        st.serialize_field("detail", &self.detail)?;
        st.serialize_field("host", &self.host)?;
        st.serialize_field("line", &self.line)?;
        st.end()
    }
}

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The line or record does not have the format's syntax, or a value in
    /// it is out of range. It produced no event.
    Malformed,
    /// The record is well formed but cannot become an event: a hotfix id
    /// that is not a KB number, an update that has not finished, a
    /// snapshot that is not differential, a missing context value.
    Unsupported,
    /// An action started but the input ended (or a later action replaced
    /// it) before its outcome was logged, so no event was recorded. It may
    /// finish in a later file.
    Incomplete,
}

/// A line the parser could not turn into an event, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file name the caller gave.
    pub file: String,
    /// The 1-based line number; 0 for the file as a whole (decoding).
    pub line: usize,
    /// How serious it is.
    pub kind: ProblemKind,
    /// What is wrong, for a person.
    pub message: String,
}

/// The result of parsing one or more files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Parsed {
    /// The events, in the order the input decided them.
    pub events: Vec<CollectedEvent>,
    /// Every problem met, in input order.
    pub problems: Vec<Problem>,
}

/// Counts over a [`Parsed`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Events found.
    pub events: usize,
    /// Events with status success.
    pub success: usize,
    /// Events with status failure.
    pub failure: usize,
    /// Events with status rolled_back (removals).
    pub rolled_back: usize,
    /// All problems.
    pub problems: usize,
    /// Problems of kind malformed.
    pub malformed: usize,
    /// Problems of kind unsupported.
    pub unsupported: usize,
    /// Problems of kind incomplete.
    pub incomplete: usize,
}

impl Parsed {
    /// Counts events by status and problems by kind.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            events: self.events.len(),
            problems: self.problems.len(),
            ..Summary::default()
        };
        for e in &self.events {
            match e.status {
                Status::Success => s.success += 1,
                Status::Failure => s.failure += 1,
                Status::RolledBack => s.rolled_back += 1,
            }
        }
        for p in &self.problems {
            match p.kind {
                ProblemKind::Malformed => s.malformed += 1,
                ProblemKind::Unsupported => s.unsupported += 1,
                ProblemKind::Incomplete => s.incomplete += 1,
            }
        }
        s
    }

    /// Appends another result.
    pub fn extend(&mut self, other: Parsed) {
        self.events.extend(other.events);
        self.problems.extend(other.problems);
    }

    /// The `event_id` of every event on `system`, in order. Events that are
    /// identical in every ledger field get occurrence numbers 0, 1, 2, … in
    /// input order, so they stay distinct.
    pub fn event_ids(&self, system: &str) -> Vec<String> {
        let mut seen: HashMap<String, u32> = HashMap::new();
        self.events
            .iter()
            .map(|e| {
                let first = e.event_id(system, 0);
                let n = seen.entry(first.clone()).or_insert(0);
                let id = if *n == 0 {
                    first
                } else {
                    e.event_id(system, *n)
                };
                *n += 1;
                id
            })
            .collect()
    }

    /// Every event as the ledger's input for `system`, with the
    /// occurrence-numbered ids of [`Parsed::event_ids`].
    pub fn to_raw_events(&self, system: &str) -> Vec<RawEvent> {
        let mut seen: HashMap<String, u32> = HashMap::new();
        self.events
            .iter()
            .map(|e| {
                let n = seen.entry(e.event_id(system, 0)).or_insert(0);
                let r = e.to_raw_with(system, *n);
                *n += 1;
                r
            })
            .collect()
    }
}

/// The order of day and month in a slash-separated date such as `3/2/2019`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DateOrder {
    /// `M/D/YYYY`, as WMI's `InstalledOn` and en-US output write it.
    #[default]
    MonthFirst,
    /// `D/M/YYYY`, as many other locales write it.
    DayFirst,
}

/// What a parser needs to know that the input does not say.
#[derive(Debug, Clone)]
pub struct Context {
    /// The UTC offset of timestamps written in local time without one:
    /// dpkg.log, apt history.log, yum.log, `dnf history info`, and the
    /// dates of `wmic qfe` and `Get-HotFix`. Default UTC.
    pub utc_offset: FixedOffset,
    /// The year of the last line of a yum.log, whose lines have no year:
    /// usually the year of the file's modification time. Earlier lines
    /// take one year less for each time the month goes down from one line
    /// to the next. yum.log cannot be parsed without it.
    pub year: Option<i32>,
    /// When the input was collected. It is the `applied_at` of inventory
    /// entries that carry no date of their own: every `systeminfo` hotfix,
    /// and `wmic qfe`/`Get-HotFix` rows with an empty `InstalledOn`.
    pub observed_at: Option<DateTime<Utc>>,
    /// The code page of bytes that are not UTF-8 or UTF-16. Default CP437,
    /// the OEM code page of an en-US console.
    pub code_page: CodePage,
    /// How to read slash-separated Windows dates. Default month first.
    pub date_order: DateOrder,
    /// The UTC offset of Windows Update history dates written without one.
    /// Default UTC, because `IUpdateHistoryEntry.Date` is in UTC; set it
    /// when the exporting script converted dates to local time.
    pub windows_update_offset: FixedOffset,
    /// The largest decompressed size accepted from a gzip file. Default
    /// 4 GiB.
    pub max_decompressed_bytes: u64,
}

impl Default for Context {
    fn default() -> Self {
        let utc = FixedOffset::east_opt(0).expect("zero is a valid offset");
        Context {
            utc_offset: utc,
            year: None,
            observed_at: None,
            code_page: CodePage::Cp437,
            date_order: DateOrder::MonthFirst,
            windows_update_offset: utc,
            max_decompressed_bytes: 4 << 30,
        }
    }
}

/// The domain's limits on optional text fields.
const FIELD_MAX_CHARS: usize = 256;
/// The domain's limit on `detail`, in bytes.
const DETAIL_MAX_BYTES: usize = 64 * 1024;

/// Collects events and problems for one file, and makes sure every event
/// would pass the domain's validation.
pub(crate) struct Out<'a> {
    pub(crate) file: &'a str,
    pub(crate) parsed: &'a mut Parsed,
}

impl<'a> Out<'a> {
    pub(crate) fn new(file: &'a str, parsed: &'a mut Parsed) -> Self {
        Out { file, parsed }
    }

    pub(crate) fn problem(&mut self, line: usize, kind: ProblemKind, message: impl Into<String>) {
        self.parsed.problems.push(Problem {
            file: self.file.to_owned(),
            line,
            kind,
            message: message.into(),
        });
    }

    pub(crate) fn malformed(&mut self, line: usize, message: impl Into<String>) {
        self.problem(line, ProblemKind::Malformed, message);
    }

    /// Records the event, or a malformed problem if one of its fields would
    /// break the domain's rules (too long, control characters).
    pub(crate) fn event(&mut self, mut e: CollectedEvent) {
        match sanitize(&mut e) {
            Ok(()) => self.parsed.events.push(e),
            Err(msg) => {
                let line = e.line;
                self.malformed(line, msg);
            }
        }
    }
}

fn sanitize(e: &mut CollectedEvent) -> Result<(), String> {
    let utc_year = e.applied_at.naive_utc().year();
    if !(0..=9999).contains(&e.applied_at.year())
        || !(0..=9999).contains(&utc_year)
        || e.applied_at.offset().local_minus_utc() % 60 != 0
    {
        return Err(format!(
            "time {} is outside what RFC 3339 and the ledger accept (years 0000-9999, whole-minute offsets)",
            e.applied_at_rfc3339()
        ));
    }
    check_text("patch_id", &e.patch_id)?;
    if e.patch_id.is_empty() {
        return Err("patch_id would be empty".into());
    }
    for (name, v) in [
        ("package", &mut e.package),
        ("from_version", &mut e.from_version),
        ("to_version", &mut e.to_version),
        ("actor", &mut e.actor),
        ("host", &mut e.host),
    ] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        }
        if let Some(s) = v.as_deref() {
            check_text(name, s)?;
        }
    }
    if let Some(d) = e.detail.as_mut() {
        if d.contains('\0') {
            *d = d.replace('\0', "\u{FFFD}");
        }
        if d.len() > DETAIL_MAX_BYTES {
            let mut cut = DETAIL_MAX_BYTES - 3;
            while !d.is_char_boundary(cut) {
                cut -= 1;
            }
            d.truncate(cut);
            d.push('…');
        }
        if d.trim().is_empty() {
            e.detail = None;
        }
    }
    Ok(())
}

fn check_text(name: &str, s: &str) -> Result<(), String> {
    if s.len() <= FIELD_MAX_CHARS && s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(()); // printable ASCII within the limit: the common case
    }
    let n = s.chars().count();
    if n > FIELD_MAX_CHARS {
        return Err(format!(
            "{name} would be {n} characters long; the ledger accepts at most {FIELD_MAX_CHARS}"
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{name} {s:?} contains a control character"));
    }
    Ok(())
}

/// Keeps at most `max` bytes of `s` for a problem message, on a character
/// boundary.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}
