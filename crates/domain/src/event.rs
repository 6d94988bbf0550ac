//! The patch event: what a client sends, how it is validated, and what the
//! ledger records.

use crate::error::{ErrorCode, FieldError, IndexedFieldError};
use crate::time::Timestamp;
use crate::values::{CveId, EventId, PatchId, SystemId, TextLimit};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// The outcome of a patch attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// The patch was applied.
    Success,
    /// The attempt failed; the patch is not applied.
    Failure,
    /// A previously applied patch was removed again.
    RolledBack,
}

impl Status {
    /// Every status, in their stable order.
    pub const ALL: [Status; 3] = [Status::Success, Status::Failure, Status::RolledBack];

    /// The wire name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failure => "failure",
            Status::RolledBack => "rolled_back",
        }
    }

    /// A small stable code, used by storage and by the canonical encoding.
    pub fn code(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::Failure => 1,
            Status::RolledBack => 2,
        }
    }

    /// The inverse of [`Status::code`].
    pub fn from_code(code: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("must be one of success, failure, rolled_back; got {s:?}"))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A loosely typed input value, as an edge found it.
///
/// Edges translate their own formats (JSON, CSV, CLI flags) into this shape
/// without judging it, so that every rule lives in one place: [`NewEvent::parse`].
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// An explicit null; treated as absent.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer, kept as its decimal text so no precision is lost.
    Integer(String),
    /// A number with a fraction or exponent.
    Float(String),
    /// A string.
    Text(String),
    /// A list of values.
    List(Vec<Input>),
    /// A nested object; no event field accepts one.
    Map,
}

impl Input {
    fn kind(&self) -> &'static str {
        match self {
            Input::Null => "null",
            Input::Bool(_) => "a boolean",
            Input::Integer(_) | Input::Float(_) => "a number",
            Input::Text(_) => "a string",
            Input::List(_) => "a list",
            Input::Map => "an object",
        }
    }
}

/// An unvalidated event: its fields in the order the client wrote them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawEvent {
    /// The fields, name and value, duplicates included so they can be reported.
    pub fields: Vec<(String, Input)>,
}

impl RawEvent {
    /// Appends a field.
    pub fn push(&mut self, name: impl Into<String>, value: Input) {
        self.fields.push((name.into(), value));
    }

    /// Builder-style [`RawEvent::push`] for a text value.
    pub fn with_text(mut self, name: &str, value: impl Into<String>) -> Self {
        self.push(name, Input::Text(value.into()));
        self
    }
}

/// What validation needs to know about the world.
#[derive(Debug, Clone, Copy)]
pub struct ValidationContext {
    /// The current time.
    pub now: Timestamp,
    /// How far in the future an `applied_at` may lie, in microseconds, to
    /// allow for clock skew between agents and the server.
    pub max_future_skew_micros: i64,
}

impl ValidationContext {
    /// The default allowed skew: one hour.
    pub const DEFAULT_SKEW_MICROS: i64 = 3_600 * 1_000_000;

    /// A context at the current time with the default skew.
    pub fn now() -> Self {
        ValidationContext {
            now: Timestamp::now(),
            max_future_skew_micros: Self::DEFAULT_SKEW_MICROS,
        }
    }
}

/// The fields a client may send, in canonical order.
pub const FIELDS: [&str; 14] = [
    "event_id",
    "patch_id",
    "system",
    "applied_at",
    "status",
    "package",
    "from_version",
    "to_version",
    "source",
    "actor",
    "detail",
    "cves",
    "reboot_required",
    "change_ref",
];

/// Fields the server assigns; a client that sends them gets a specific error.
const READ_ONLY: [&str; 3] = ["seq", "recorded_at", "recorded_by"];

const PACKAGE: TextLimit = TextLimit {
    max_chars: 256,
    forbid_control: true,
};
const VERSION: TextLimit = PACKAGE;
const SOURCE: TextLimit = TextLimit {
    max_chars: 64,
    forbid_control: true,
};
const ACTOR: TextLimit = PACKAGE;
const CHANGE_REF: TextLimit = PACKAGE;
/// Failure output keeps its newlines and tabs, so control characters other
/// than NUL are allowed; the limit is in bytes because that is what costs.
const DETAIL_MAX_BYTES: usize = 64 * 1024;
const MAX_CVES: usize = 1024;

/// A validated patch event, as a client submitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The client's idempotency key.
    pub event_id: Option<EventId>,
    /// The patch or advisory applied.
    pub patch_id: PatchId,
    /// The system it was applied to.
    pub system: SystemId,
    /// When it was applied, as the system reported it.
    pub applied_at: Timestamp,
    /// The outcome.
    pub status: Status,
    /// The package changed, if any.
    pub package: Option<String>,
    /// The version before the change.
    pub from_version: Option<String>,
    /// The version after the change.
    pub to_version: Option<String>,
    /// Where the fact came from: dpkg, apt, dnf, windows-update, ansible, manual…
    pub source: Option<String>,
    /// Who or what applied the patch.
    pub actor: Option<String>,
    /// Failure output, up to 64 KiB.
    pub detail: Option<String>,
    /// CVEs the patch fixes; empty when none were given.
    pub cves: Vec<CveId>,
    /// Whether the system must reboot for the patch to take effect.
    pub reboot_required: Option<bool>,
    /// A change-ticket reference.
    pub change_ref: Option<String>,
}

/// Collects field errors while parsing one event.
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: &str, code: ErrorCode, message: impl Into<String>) {
        self.0.push(FieldError::new(field, code, message));
    }

    fn type_error(&mut self, field: &str, expected: &str, got: &Input) {
        self.add(
            field,
            ErrorCode::Type,
            format!("must be {expected}, got {}", got.kind()),
        );
    }
}

impl NewEvent {
    /// Validates a raw event, reporting every problem with every field at once.
    pub fn parse(raw: RawEvent, ctx: &ValidationContext) -> Result<NewEvent, Vec<FieldError>> {
        let mut p = Problems(Vec::new());
        // Slots follow FIELDS; `seen` catches duplicates before values are judged.
        let mut slots: [Option<Input>; FIELDS.len()] = Default::default();
        let mut seen = [false; FIELDS.len()];

        for (name, value) in raw.fields {
            match FIELDS.iter().position(|f| *f == name) {
                Some(i) if seen[i] => p.add(
                    &name,
                    ErrorCode::DuplicateField,
                    "appears more than once in the event",
                ),
                Some(i) => {
                    seen[i] = true;
                    if value != Input::Null {
                        slots[i] = Some(value);
                    }
                }
                None if READ_ONLY.contains(&name.as_str()) => p.add(
                    &name,
                    ErrorCode::ReadOnly,
                    "is assigned by the server and cannot be sent",
                ),
                None => p.add(
                    &name,
                    ErrorCode::UnknownField,
                    format!(
                        "is not a field of a patch event (accepted: {})",
                        FIELDS.join(", ")
                    ),
                ),
            }
        }
        let mut take = |name: &str| {
            let i = FIELDS.iter().position(|f| *f == name).unwrap_or(0);
            slots[i].take()
        };

        let event_id = take("event_id").and_then(|v| match v {
            Input::Text(s) => check(&mut p, "event_id", EventId::parse(s)),
            other => {
                p.type_error("event_id", "a string", &other);
                None
            }
        });
        let patch_id = match take("patch_id") {
            None => {
                p.add("patch_id", ErrorCode::Required, "is required");
                None
            }
            Some(Input::Text(s)) | Some(Input::Integer(s)) => {
                check(&mut p, "patch_id", PatchId::parse(s))
            }
            Some(other) => {
                p.type_error("patch_id", "a string or an integer", &other);
                None
            }
        };
        let system = required_text(&mut p, take("system"), "system")
            .and_then(|s| check(&mut p, "system", SystemId::parse(s)));
        let applied_at = required_text(&mut p, take("applied_at"), "applied_at").and_then(|s| {
            match Timestamp::parse_rfc3339(&s) {
                Err(msg) => {
                    p.add("applied_at", ErrorCode::Format, msg);
                    None
                }
                Ok(t) if t > ctx.now.saturating_add_micros(ctx.max_future_skew_micros) => {
                    p.add(
                        "applied_at",
                        ErrorCode::Future,
                        format!(
                            "{} is more than {}s ahead of the server's clock ({})",
                            t,
                            ctx.max_future_skew_micros / 1_000_000,
                            ctx.now
                        ),
                    );
                    None
                }
                Ok(t) => Some(t),
            }
        });
        let status = required_text(&mut p, take("status"), "status").and_then(|s| {
            s.parse::<Status>()
                .map_err(|m| p.add("status", ErrorCode::InvalidValue, m))
                .ok()
        });
        let package = optional_text(&mut p, take("package"), "package", PACKAGE);
        let from_version = optional_text(&mut p, take("from_version"), "from_version", VERSION);
        let to_version = optional_text(&mut p, take("to_version"), "to_version", VERSION);
        let source = optional_text(&mut p, take("source"), "source", SOURCE);
        let actor = optional_text(&mut p, take("actor"), "actor", ACTOR);
        let detail = match take("detail") {
            None => None,
            Some(Input::Text(s)) if s.len() > DETAIL_MAX_BYTES => {
                p.add(
                    "detail",
                    ErrorCode::TooLong,
                    format!("must be at most {DETAIL_MAX_BYTES} bytes, got {}", s.len()),
                );
                None
            }
            Some(Input::Text(s)) => {
                let lenient = TextLimit {
                    max_chars: DETAIL_MAX_BYTES,
                    forbid_control: false,
                };
                check(&mut p, "detail", lenient.check(&s).map(|()| s))
            }
            Some(other) => {
                p.type_error("detail", "a string", &other);
                None
            }
        };
        let cves = match take("cves") {
            None => Vec::new(),
            Some(Input::List(items)) if items.len() > MAX_CVES => {
                p.add(
                    "cves",
                    ErrorCode::TooLong,
                    format!("must list at most {MAX_CVES} ids, got {}", items.len()),
                );
                Vec::new()
            }
            Some(Input::List(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let field = format!("cves[{i}]");
                    match item {
                        Input::Text(s) => match CveId::parse(&s) {
                            Ok(c) => out.push(c),
                            Err(m) => p.add(&field, ErrorCode::Format, m),
                        },
                        other => p.type_error(&field, "a string", &other),
                    }
                }
                out
            }
            Some(other) => {
                p.type_error("cves", "a list of CVE ids", &other);
                Vec::new()
            }
        };
        let reboot_required = match take("reboot_required") {
            None => None,
            Some(Input::Bool(b)) => Some(b),
            Some(other) => {
                p.type_error("reboot_required", "true or false", &other);
                None
            }
        };
        let change_ref = optional_text(&mut p, take("change_ref"), "change_ref", CHANGE_REF);

        match (patch_id, system, applied_at, status) {
            (Some(patch_id), Some(system), Some(applied_at), Some(status)) if p.0.is_empty() => {
                Ok(NewEvent {
                    event_id,
                    patch_id,
                    system,
                    applied_at,
                    status,
                    package,
                    from_version,
                    to_version,
                    source,
                    actor,
                    detail,
                    cves,
                    reboot_required,
                    change_ref,
                })
            }
            _ => Err(p.0),
        }
    }

    /// The canonical bytes of the client-supplied content, `event_id` excluded.
    ///
    /// Two submissions with the same `event_id` are the same event exactly
    /// when these bytes are equal. Every field is written in a fixed order,
    /// length-prefixed, with an explicit marker for absence, so no two
    /// different events share an encoding. `docs/log-format.md` specifies it.
    pub fn canonical_content(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(1); // encoding version
        self.write_content(&mut out);
        out
    }

    /// Writes the content fields, from `patch_id` to `change_ref`, in the
    /// encoding shared by the canonical content and the Merkle leaf.
    fn write_content(&self, out: &mut Vec<u8>) {
        let cves: Vec<&[u8]> = self.cves.iter().map(|c| c.as_str().as_bytes()).collect();
        self.view(&cves).write_content(out);
    }

    /// This event's fields, borrowed, as [`LeafView`] encodes them.
    fn view<'a>(&'a self, cves: &'a [&'a [u8]]) -> LeafView<'a> {
        let opt = |s: &'a Option<String>| s.as_deref().map(str::as_bytes);
        LeafView {
            seq: 0,
            recorded_at: 0,
            recorded_by: b"",
            event_id: self.event_id.as_ref().map(|i| i.as_str().as_bytes()),
            patch_id: self.patch_id.as_str().as_bytes(),
            system: self.system.as_str().as_bytes(),
            applied_at: self.applied_at.as_micros(),
            status: self.status,
            package: opt(&self.package),
            from_version: opt(&self.from_version),
            to_version: opt(&self.to_version),
            source: opt(&self.source),
            actor: opt(&self.actor),
            detail: opt(&self.detail),
            cves,
            reboot_required: self.reboot_required,
            change_ref: opt(&self.change_ref),
        }
    }

    /// SHA-256 of [`NewEvent::canonical_content`]: what idempotency compares.
    pub fn content_digest(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_content()).into()
    }

    /// Appends to `out` the leaf this event has once recorded at `seq`, at
    /// `recorded_at`, by `recorded_by`: the bytes of
    /// [`RecordedEvent::leaf_bytes`], without building a [`RecordedEvent`].
    /// The writer of a store hashes every new event this way.
    pub fn write_leaf(
        &self,
        seq: u64,
        recorded_at: Timestamp,
        recorded_by: &str,
        out: &mut Vec<u8>,
    ) {
        let cves: Vec<&[u8]> = self.cves.iter().map(|c| c.as_str().as_bytes()).collect();
        LeafView {
            seq,
            recorded_at: recorded_at.as_micros(),
            recorded_by: recorded_by.as_bytes(),
            ..self.view(&cves)
        }
        .write_leaf(out);
    }
}

/// An event's fields as borrowed bytes, in the units the leaf encodes:
/// what a store reads from a row, without building (or re-validating) a
/// [`RecordedEvent`]. Text fields are their UTF-8 bytes as stored.
///
/// `patchaudit verify` rebuilds every leaf through it. The values are not
/// checked: a field edited to anything at all still encodes, and its leaf
/// then differs from the one that was signed, which is the point.
#[derive(Debug, Clone, Copy)]
pub struct LeafView<'a> {
    /// The event's seq.
    pub seq: u64,
    /// `recorded_at`, in microseconds since the epoch.
    pub recorded_at: i64,
    /// The principal that recorded it.
    pub recorded_by: &'a [u8],
    /// The idempotency key.
    pub event_id: Option<&'a [u8]>,
    /// The patch.
    pub patch_id: &'a [u8],
    /// The system.
    pub system: &'a [u8],
    /// `applied_at`, in microseconds since the epoch.
    pub applied_at: i64,
    /// The status.
    pub status: Status,
    /// The package.
    pub package: Option<&'a [u8]>,
    /// The version before.
    pub from_version: Option<&'a [u8]>,
    /// The version after.
    pub to_version: Option<&'a [u8]>,
    /// Where the fact came from.
    pub source: Option<&'a [u8]>,
    /// Who applied it.
    pub actor: Option<&'a [u8]>,
    /// Failure output.
    pub detail: Option<&'a [u8]>,
    /// The CVE ids, in order.
    pub cves: &'a [&'a [u8]],
    /// Whether a reboot is required.
    pub reboot_required: Option<bool>,
    /// A change-ticket reference.
    pub change_ref: Option<&'a [u8]>,
}

impl LeafView<'_> {
    /// Appends the leaf bytes (`docs/log-format.md`, leaf format version 1).
    pub fn write_leaf(&self, out: &mut Vec<u8>) {
        out.push(RecordedEvent::LEAF_FORMAT_VERSION);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.recorded_at.to_be_bytes());
        put_bytes(out, self.recorded_by);
        put_opt_bytes(out, self.event_id);
        self.write_content(out);
    }

    fn write_content(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.patch_id);
        put_bytes(out, self.system);
        out.extend_from_slice(&self.applied_at.to_be_bytes());
        out.push(self.status.code());
        put_opt_bytes(out, self.package);
        put_opt_bytes(out, self.from_version);
        put_opt_bytes(out, self.to_version);
        put_opt_bytes(out, self.source);
        put_opt_bytes(out, self.actor);
        put_opt_bytes(out, self.detail);
        out.extend_from_slice(&(self.cves.len() as u32).to_be_bytes());
        for c in self.cves {
            put_bytes(out, c);
        }
        out.push(match self.reboot_required {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        });
        put_opt_bytes(out, self.change_ref);
    }
}

/// A string: its length in bytes as a big-endian u32, then its UTF-8 bytes.
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// An optional string: 0x00 when absent, else 0x01 and the string.
fn put_opt_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

fn check<T>(p: &mut Problems, field: &str, r: Result<T, (ErrorCode, String)>) -> Option<T> {
    r.map_err(|(code, msg)| p.add(field, code, msg)).ok()
}

fn required_text(p: &mut Problems, v: Option<Input>, field: &str) -> Option<String> {
    match v {
        None => {
            p.add(field, ErrorCode::Required, "is required");
            None
        }
        Some(Input::Text(s)) => Some(s),
        Some(other) => {
            p.type_error(field, "a string", &other);
            None
        }
    }
}

fn optional_text(
    p: &mut Problems,
    v: Option<Input>,
    field: &str,
    limit: TextLimit,
) -> Option<String> {
    match v {
        None => None,
        Some(Input::Text(s)) => check(p, field, limit.check(&s).map(|()| s)),
        Some(other) => {
            p.type_error(field, "a string", &other);
            None
        }
    }
}

/// Validates a batch. It is all-or-nothing: either every event is valid, or
/// every problem of every event is returned, located by index.
///
/// An item that an edge could not even read as an event (say, a number in a
/// JSON array) arrives as `Err` with its problem, so that it is reported at
/// its index alongside the problems of the other events.
pub fn validate_batch(
    items: impl IntoIterator<Item = Result<RawEvent, FieldError>>,
    ctx: &ValidationContext,
) -> Result<Vec<NewEvent>, Vec<IndexedFieldError>> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    // A batch that contradicts itself is invalid whatever the ledger holds:
    // the same event_id twice with different content.
    let mut ids: HashMap<EventId, (usize, [u8; 32])> = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let parsed = item
            .map_err(|e| vec![e])
            .and_then(|raw| NewEvent::parse(raw, ctx))
            .and_then(|e| {
                let Some(id) = e.event_id.clone() else {
                    return Ok(e);
                };
                let digest = e.content_digest();
                match ids.get(&id) {
                    Some(&(first, d)) if d != digest => Err(vec![FieldError::new(
                        "event_id",
                        ErrorCode::Conflict,
                        format!(
                            "{:?} is also used by event {first} of this batch, with different content",
                            id.as_str()
                        ),
                    )]),
                    Some(_) => Ok(e),
                    None => {
                        ids.insert(id, (index, digest));
                        Ok(e)
                    }
                }
            });
        match parsed {
            Ok(e) if errors.is_empty() => ok.push(e),
            Ok(_) => {}
            Err(es) => errors.extend(
                es.into_iter()
                    .map(|error| IndexedFieldError { index, error }),
            ),
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        Err(errors)
    }
}

/// An event as the ledger holds it: the client's content plus what the
/// server assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The event's 0-based position in the ledger; dense and never reused.
    pub seq: u64,
    /// When the server recorded it.
    pub recorded_at: Timestamp,
    /// The authenticated principal that submitted it; empty without authentication.
    pub recorded_by: String,
    /// The submitted content.
    pub event: NewEvent,
}

impl RecordedEvent {
    /// The version of the leaf encoding [`RecordedEvent::leaf_bytes`] writes.
    pub const LEAF_FORMAT_VERSION: u8 = 1;

    /// The event's leaf in the ledger's Merkle tree: every field, the
    /// server-assigned ones included, in the encoding `docs/log-format.md`
    /// specifies, so that another implementation can recompute it byte for
    /// byte. The tree hashes it as an RFC 6962 leaf (`SHA-256(0x00 || leaf)`).
    pub fn leaf_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        self.event
            .write_leaf(self.seq, self.recorded_at, &self.recorded_by, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ValidationContext {
        ValidationContext {
            now: Timestamp::parse_rfc3339("2025-01-01T00:00:00Z").unwrap(),
            max_future_skew_micros: ValidationContext::DEFAULT_SKEW_MICROS,
        }
    }

    fn minimal() -> RawEvent {
        RawEvent::default()
            .with_text("patch_id", "KB5034441")
            .with_text("system", "web-01")
            .with_text("applied_at", "2024-12-31T10:00:00Z")
            .with_text("status", "success")
    }

    fn errors_of(raw: RawEvent) -> Vec<(String, ErrorCode)> {
        NewEvent::parse(raw, &ctx())
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    fn with(name: &str, v: Input) -> RawEvent {
        let mut r = minimal();
        r.push(name, v);
        r
    }

    fn text(s: &str) -> Input {
        Input::Text(s.to_owned())
    }

    #[test]
    fn minimal_event_is_valid() {
        let e = NewEvent::parse(minimal(), &ctx()).unwrap();
        assert_eq!(e.patch_id.as_str(), "KB5034441");
        assert_eq!(e.status, Status::Success);
        assert!(e.cves.is_empty() && e.event_id.is_none());
    }

    #[test]
    fn full_event_is_valid() {
        let mut r = minimal();
        for (k, v) in [
            ("event_id", "e-1"),
            ("package", "openssl"),
            ("from_version", "3.0.1"),
            ("to_version", "3.0.2"),
            ("source", "apt"),
            ("actor", "unattended-upgrades"),
            ("detail", "line 1\nline 2\t\x1b[31mred\x1b[0m"),
            ("change_ref", "CHG-42"),
        ] {
            r.push(k, text(k).clone());
            r.fields.last_mut().unwrap().1 = text(v);
        }
        r.push("cves", Input::List(vec![text("CVE-2024-0001")]));
        r.push("reboot_required", Input::Bool(true));
        let e = NewEvent::parse(r, &ctx()).unwrap();
        assert_eq!(e.event_id.unwrap().as_str(), "e-1");
        assert_eq!(e.cves.len(), 1);
        assert_eq!(e.reboot_required, Some(true));
        assert!(e.detail.unwrap().contains('\x1b'));
    }

    #[test]
    fn every_required_field_is_reported_at_once() {
        let errs = errors_of(RawEvent::default());
        for f in ["patch_id", "system", "applied_at", "status"] {
            assert!(
                errs.contains(&(f.to_owned(), ErrorCode::Required)),
                "{f} missing from {errs:?}"
            );
        }
        assert_eq!(errs.len(), 4);
    }

    #[test]
    fn null_counts_as_absent() {
        let mut r = minimal();
        r.fields.retain(|(k, _)| k != "system");
        r.push("system", Input::Null);
        r.push("package", Input::Null);
        assert_eq!(
            errors_of(r),
            vec![("system".to_owned(), ErrorCode::Required)]
        );
    }

    #[test]
    fn integer_patch_id_is_stored_as_decimal_text() {
        let mut r = minimal();
        r.fields.retain(|(k, _)| k != "patch_id");
        r.push("patch_id", Input::Integer("5034441".into()));
        let e = NewEvent::parse(r, &ctx()).unwrap();
        assert_eq!(e.patch_id.as_str(), "5034441");
    }

    #[test]
    fn float_or_bool_patch_id_is_a_type_error() {
        for v in [Input::Float("1.5".into()), Input::Bool(true), Input::Map] {
            let mut r = minimal();
            r.fields.retain(|(k, _)| k != "patch_id");
            r.push("patch_id", v);
            assert_eq!(errors_of(r), vec![("patch_id".into(), ErrorCode::Type)]);
        }
    }

    #[test]
    fn unknown_read_only_and_duplicate_fields() {
        let mut r = minimal();
        r.push("colour", text("blue"));
        r.push("seq", Input::Integer("3".into()));
        r.push("recorded_at", text("2024-01-01T00:00:00Z"));
        r.push("system", text("web-02"));
        let errs = errors_of(r);
        assert!(errs.contains(&("colour".into(), ErrorCode::UnknownField)));
        assert!(errs.contains(&("seq".into(), ErrorCode::ReadOnly)));
        assert!(errs.contains(&("recorded_at".into(), ErrorCode::ReadOnly)));
        assert!(errs.contains(&("system".into(), ErrorCode::DuplicateField)));
        assert_eq!(errs.len(), 4);
    }

    #[test]
    fn applied_at_rules() {
        let set = |v: &str| {
            let mut r = minimal();
            r.fields.retain(|(k, _)| k != "applied_at");
            r.push("applied_at", text(v));
            r
        };
        assert_eq!(
            errors_of(set("2024-12-31 10:00")),
            vec![("applied_at".into(), ErrorCode::Format)]
        );
        assert_eq!(
            errors_of(set("2024-12-31T10:00:00")),
            vec![("applied_at".into(), ErrorCode::Format)]
        );
        // Exactly at the skew boundary is accepted; one microsecond past is not.
        assert!(NewEvent::parse(set("2025-01-01T01:00:00Z"), &ctx()).is_ok());
        assert_eq!(
            errors_of(set("2025-01-01T01:00:00.000001Z")),
            vec![("applied_at".into(), ErrorCode::Future)]
        );
        let lax = ValidationContext {
            max_future_skew_micros: 2 * 3_600_000_000,
            ..ctx()
        };
        assert!(NewEvent::parse(set("2025-01-01T01:30:00Z"), &lax).is_ok());
    }

    #[test]
    fn status_rules() {
        for ok in ["success", "failure", "rolled_back"] {
            let mut r = minimal();
            r.fields.retain(|(k, _)| k != "status");
            r.push("status", text(ok));
            assert!(NewEvent::parse(r, &ctx()).is_ok(), "{ok}");
        }
        for bad in ["Success", "failed", "", "rolledback"] {
            let mut r = minimal();
            r.fields.retain(|(k, _)| k != "status");
            r.push("status", text(bad));
            assert_eq!(
                errors_of(r),
                vec![("status".into(), ErrorCode::InvalidValue)],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn optional_text_limits() {
        for (field, max) in [
            ("package", 256),
            ("from_version", 256),
            ("to_version", 256),
            ("source", 64),
            ("actor", 256),
            ("change_ref", 256),
        ] {
            assert!(
                NewEvent::parse(with(field, text(&"a".repeat(max))), &ctx()).is_ok(),
                "{field} at {max}"
            );
            assert_eq!(
                errors_of(with(field, text(&"a".repeat(max + 1)))),
                vec![(field.into(), ErrorCode::TooLong)]
            );
            assert_eq!(
                errors_of(with(field, text(""))),
                vec![(field.into(), ErrorCode::Empty)]
            );
            assert_eq!(
                errors_of(with(field, text("a\u{1}b"))),
                vec![(field.into(), ErrorCode::ControlCharacter)]
            );
            assert_eq!(
                errors_of(with(field, Input::Integer("1".into()))),
                vec![(field.into(), ErrorCode::Type)]
            );
        }
    }

    #[test]
    fn event_id_rules() {
        assert!(NewEvent::parse(with("event_id", text(&"e".repeat(128))), &ctx()).is_ok());
        assert_eq!(
            errors_of(with("event_id", text(&"e".repeat(129)))),
            vec![("event_id".into(), ErrorCode::TooLong)]
        );
        assert_eq!(
            errors_of(with("event_id", Input::Integer("7".into()))),
            vec![("event_id".into(), ErrorCode::Type)]
        );
    }

    #[test]
    fn detail_is_limited_in_bytes_and_rejects_only_nul() {
        assert!(NewEvent::parse(with("detail", text(&"x".repeat(65_536))), &ctx()).is_ok());
        assert_eq!(
            errors_of(with("detail", text(&"x".repeat(65_537)))),
            vec![("detail".into(), ErrorCode::TooLong)]
        );
        // 21,846 three-byte characters are 65,538 bytes: over, though few characters.
        assert_eq!(
            errors_of(with("detail", text(&"€".repeat(21_846)))),
            vec![("detail".into(), ErrorCode::TooLong)]
        );
        assert_eq!(
            errors_of(with("detail", text("a\0b"))),
            vec![("detail".into(), ErrorCode::ControlCharacter)]
        );
        assert_eq!(
            errors_of(with("detail", text(""))),
            vec![("detail".into(), ErrorCode::Empty)]
        );
    }

    #[test]
    fn cve_rules() {
        let list = |xs: Vec<Input>| with("cves", Input::List(xs));
        assert!(NewEvent::parse(list(vec![]), &ctx()).is_ok());
        assert_eq!(
            errors_of(list(vec![
                text("CVE-2024-1"),
                Input::Bool(true),
                text("CVE-2024-12345")
            ])),
            vec![
                ("cves[0]".into(), ErrorCode::Format),
                ("cves[1]".into(), ErrorCode::Type)
            ]
        );
        assert_eq!(
            errors_of(with("cves", text("CVE-2024-1234"))),
            vec![("cves".into(), ErrorCode::Type)]
        );
        let many = (0..1025)
            .map(|i| text(&format!("CVE-2024-{i:05}")))
            .collect();
        assert_eq!(
            errors_of(list(many)),
            vec![("cves".into(), ErrorCode::TooLong)]
        );
        let max = (0..1024)
            .map(|i| text(&format!("CVE-2024-{i:05}")))
            .collect();
        assert!(NewEvent::parse(list(max), &ctx()).is_ok());
    }

    #[test]
    fn reboot_required_must_be_bool() {
        assert!(NewEvent::parse(with("reboot_required", Input::Bool(false)), &ctx()).is_ok());
        assert_eq!(
            errors_of(with("reboot_required", text("yes"))),
            vec![("reboot_required".into(), ErrorCode::Type)]
        );
    }

    /// Pins both encodings byte for byte: a change here breaks every stored
    /// digest and every Merkle root, so it must be a new format version.
    #[test]
    fn encodings_are_pinned() {
        let mut e = NewEvent::parse(minimal(), &ctx()).unwrap();
        e.event_id = Some(EventId::parse("e1").unwrap());
        e.package = Some("kernel".into());
        e.cves = vec![CveId::parse("CVE-2024-0001").unwrap()];
        e.reboot_required = Some(true);
        let mut want = vec![1u8];
        let body = |w: &mut Vec<u8>| {
            w.extend_from_slice(&[0, 0, 0, 9]);
            w.extend_from_slice(b"KB5034441");
            w.extend_from_slice(&[0, 0, 0, 6]);
            w.extend_from_slice(b"web-01");
            // 2024-12-31T10:00:00Z = 1735639200 s
            w.extend_from_slice(&1_735_639_200_000_000i64.to_be_bytes());
            w.push(0); // success
            w.extend_from_slice(&[1, 0, 0, 0, 6]);
            w.extend_from_slice(b"kernel");
            w.extend_from_slice(&[0, 0, 0, 0, 0]); // from_version .. detail absent
            w.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 13]);
            w.extend_from_slice(b"CVE-2024-0001");
            w.push(2); // reboot_required = true
            w.push(0); // change_ref absent
        };
        body(&mut want);
        assert_eq!(e.canonical_content(), want);

        let r = RecordedEvent {
            seq: 7,
            recorded_at: Timestamp::from_micros(1_735_640_000_000_001),
            recorded_by: "agent".into(),
            event: e,
        };
        let mut leaf = vec![1u8];
        leaf.extend_from_slice(&7u64.to_be_bytes());
        leaf.extend_from_slice(&1_735_640_000_000_001i64.to_be_bytes());
        leaf.extend_from_slice(&[0, 0, 0, 5]);
        leaf.extend_from_slice(b"agent");
        leaf.extend_from_slice(&[1, 0, 0, 0, 2]);
        leaf.extend_from_slice(b"e1");
        body(&mut leaf);
        assert_eq!(r.leaf_bytes(), leaf);
    }

    /// The worked example in docs/log-format.md is this very leaf, so the
    /// specification cannot drift from the code.
    #[test]
    fn the_documented_example_is_the_real_leaf() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/log-format.md"
        ))
        .expect("docs/log-format.md exists");
        let example = doc
            .split("## Example")
            .nth(1)
            .and_then(|s| s.split("```").nth(1))
            .expect("an example block");
        let hex: String = example
            .lines()
            .flat_map(|l| {
                l.split_whitespace()
                    .take_while(|w| w.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .collect();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut e = NewEvent::parse(minimal(), &ctx()).unwrap();
        e.event_id = Some(EventId::parse("e1").unwrap());
        e.package = Some("kernel".into());
        e.cves = vec![CveId::parse("CVE-2024-0001").unwrap()];
        e.reboot_required = Some(true);
        let r = RecordedEvent {
            seq: 7,
            recorded_at: Timestamp::from_micros(1_735_640_000_000_001),
            recorded_by: "agent".into(),
            event: e,
        };
        assert_eq!(bytes, r.leaf_bytes());
    }

    #[test]
    fn leaves_differ_in_every_server_assigned_field() {
        let r = RecordedEvent {
            seq: 1,
            recorded_at: Timestamp::from_micros(5),
            recorded_by: String::new(),
            event: NewEvent::parse(minimal(), &ctx()).unwrap(),
        };
        let mut seen = std::collections::HashSet::new();
        seen.insert(r.leaf_bytes());
        let mut a = r.clone();
        a.seq = 2;
        let mut b = r.clone();
        b.recorded_at = Timestamp::from_micros(6);
        let mut c = r.clone();
        c.recorded_by = "x".into();
        let mut d = r.clone();
        d.event.event_id = Some(EventId::parse("x").unwrap());
        for v in [a, b, c, d] {
            assert!(seen.insert(v.leaf_bytes()));
        }
    }

    #[test]
    fn digest_ignores_event_id_and_sees_every_field() {
        let base = NewEvent::parse(minimal(), &ctx()).unwrap();
        let mut with_id = base.clone();
        with_id.event_id = Some(EventId::parse("x").unwrap());
        assert_eq!(base.content_digest(), with_id.content_digest());

        type Mutation = Box<dyn Fn(&mut NewEvent)>;
        let variants: Vec<Mutation> = vec![
            Box::new(|e| e.patch_id = PatchId::parse("other").unwrap()),
            Box::new(|e| e.system = SystemId::parse("other").unwrap()),
            Box::new(|e| e.applied_at = e.applied_at.saturating_add_micros(1)),
            Box::new(|e| e.status = Status::Failure),
            Box::new(|e| e.package = Some(String::new())),
            Box::new(|e| e.from_version = Some("1".into())),
            Box::new(|e| e.to_version = Some("1".into())),
            Box::new(|e| e.source = Some("1".into())),
            Box::new(|e| e.actor = Some("1".into())),
            Box::new(|e| e.detail = Some("1".into())),
            Box::new(|e| e.cves = vec![CveId::parse("CVE-2024-1234").unwrap()]),
            Box::new(|e| e.reboot_required = Some(false)),
            Box::new(|e| e.change_ref = Some("1".into())),
        ];
        let mut seen = std::collections::HashSet::new();
        seen.insert(base.content_digest());
        for v in variants {
            let mut e = base.clone();
            v(&mut e);
            assert!(
                seen.insert(e.content_digest()),
                "a field change kept the digest"
            );
        }
        // Moving text between adjacent fields must change the encoding.
        let mut a = base.clone();
        a.package = Some("ab".into());
        let mut b = base.clone();
        b.package = Some("a".into());
        b.from_version = Some("b".into());
        assert_ne!(a.content_digest(), b.content_digest());
    }

    #[test]
    fn batch_is_all_or_nothing_and_indexes_errors() {
        let bad = RawEvent::default().with_text("patch_id", "x");
        let not_an_event = FieldError::new("", ErrorCode::Type, "must be an object");
        let res = validate_batch(
            vec![
                Ok(minimal()),
                Ok(bad),
                Ok(minimal()),
                Ok(RawEvent::default()),
                Err(not_an_event),
            ],
            &ctx(),
        );
        let errs = res.unwrap_err();
        assert!(errs.iter().all(|e| [1, 3, 4].contains(&e.index)));
        assert!(errs
            .iter()
            .any(|e| e.index == 1 && e.error.field == "system"));
        assert_eq!(errs.iter().filter(|e| e.index == 3).count(), 4);
        assert_eq!(errs.iter().filter(|e| e.index == 4).count(), 1);
        assert_eq!(
            validate_batch(vec![Ok(minimal()), Ok(minimal())], &ctx())
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn an_event_id_reused_inside_a_batch_with_other_content_is_a_conflict() {
        let with_id = |status: &str| {
            let mut r = minimal().with_text("event_id", "k");
            r.fields.retain(|(k, _)| k != "status");
            r.push("status", text(status));
            Ok(r)
        };
        let errs = validate_batch(
            vec![with_id("success"), with_id("success"), with_id("failure")],
            &ctx(),
        )
        .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            (errs[0].index, errs[0].error.code),
            (2, ErrorCode::Conflict)
        );
        assert!(
            errs[0].error.message.contains("event 0"),
            "{}",
            errs[0].error.message
        );
        // Identical copies are fine: the store records the second as a duplicate of the first.
        assert_eq!(
            validate_batch(vec![with_id("success"), with_id("success")], &ctx())
                .unwrap()
                .len(),
            2
        );
    }
}
