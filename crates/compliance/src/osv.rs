//! The import of OSV advisories into catalog entries.
//!
//! [OSV](https://ossf.github.io/osv-schema/) is the JSON format osv.dev,
//! Debian (DSA/DLA), Ubuntu (USN and `UBUNTU-CVE-…`), Red Hat, AlmaLinux,
//! Rocky Linux, SUSE, GitHub (GHSA) and PyPA publish advisories in. This
//! module turns one OSV record into a [`CatalogEntry`]: it builds a
//! [`RawCatalogEntry`] and hands it to [`CatalogEntry::parse`], so an imported
//! entry passes exactly the checks a hand-written one does. It performs no
//! I/O: the caller reads the file and chooses the scope ([`AppliesTo`]) the
//! imported entries get.
//!
//! # Mapping
//!
//! - **id**: `id` becomes the entry id, as written (`ALSA-2024:5309` keeps
//!   its colon).
//! - **title**: `summary`; else the first non-blank line of `details`;
//!   else nothing, and the catalog uses the id. Control characters and runs
//!   of white space become one space, and a title longer than 512 characters
//!   is cut to 511 and ends with `…` (a cut `summary` is reported in a
//!   warning; a cut line of `details` is not, since cutting is expected there).
//! - **released_at**: `published`; when it is missing, `modified`, with a
//!   warning. **modified_at**: `modified`. Timestamps are RFC 3339; one
//!   without fractional seconds is fine, one without an offset
//!   (`2024-05-01T12:00:00`) or a bare date (`2024-05-01`, read as midnight)
//!   is read as UTC with a warning, and anything else is an error that names
//!   the field. A record with neither `published` nor `modified` is an error:
//!   the SLA clock needs a start.
//! - **cves**: the id itself when it is a CVE id (`CVE-YYYY-NNNN…`); the
//!   CVE ids among `aliases`, `upstream` and `related`; and the CVE ids of
//!   Ubuntu's `affected[].database_specific.cves_map.cves[].id` (see
//!   severity). `related` counts because AlmaLinux, Rocky Linux, SUSE and
//!   some Red Hat records list the CVEs they fix only there. An id such as
//!   `UBUNTU-CVE-2021-3782` is not a CVE id. Duplicates collapse.
//! - **aliases**: the non-CVE ids among `aliases`, other than the record's
//!   own id. Non-CVE ids in `upstream` and `related` (USNs, `GO-…`) are
//!   other records, not aliases, and are not kept; neither are the non-CVE
//!   ids of a `cves_map`.
//! - **severity**, from the first of these sources that gives one:
//!   1. top-level `severity[]`, preferring by type `CVSS_V3`, then
//!      `CVSS_V4`, then `CVSS_V2`, then `Ubuntu`. A CVSS vector is scored
//!      (base score, with the [`cvss`] crate) and rated with
//!      [`Severity::from_cvss_score`], except CVSS v2 whose own bands apply
//!      (below 4 low, below 7 medium, else high); a v3 vector must carry all
//!      eight base metrics. An `Ubuntu` score is a word, read as below. When
//!      several entries of the preferred type disagree the highest wins. A
//!      vector that cannot be scored is skipped with a warning.
//!   2. the vendor words, the highest of which wins: `severity` in
//!      `affected[].ecosystem_specific`, `affected[].database_specific` and
//!      top-level `database_specific`, and Ubuntu's per-CVE ratings in
//!      `affected[].database_specific.cves_map.cves[]`. Each of those
//!      entries has an `id` and a `severity` that is a list of OSV severity
//!      entries, of which the `Ubuntu` scores are read (its CVSS vectors
//!      are not scored); a `severity` that is a plain word, and a
//!      `priority` word, are read too. Words are matched without regard to
//!      case: `critical`; `high` or `important`; `medium` or `moderate`;
//!      `low` or `negligible`; `none`. `unknown` and `untriaged` say
//!      nothing; another word is skipped with a warning.
//!   3. the prefix of `summary` with which Red Hat, AlmaLinux and Rocky
//!      Linux records state their rating: `Critical:`, `Important:` (high),
//!      `Moderate:` (medium) or `Low:`, without regard to case, the word
//!      directly followed by the colon (`Important: kernel security
//!      update`). Only these four words count, so a summary such as
//!      `Red Hat Security Advisory: …` or `Note: …` gives nothing. The
//!      title keeps the prefix.
//!   4. otherwise `none`, with a warning that the record has no usable
//!      severity.
//!
//!   When the sources disagree (two vectors of the preferred type, or the
//!   chosen rating and the best rating of another source), one warning says
//!   where the rating came from and what disagreed; agreement is silent, and
//!   so are vendor words that differ among themselves (the highest is the
//!   rule). So a Rocky record whose CVSS vector scores medium but whose
//!   summary says `Important:` is imported as medium with a warning.
//! - **packages**: one [`AffectedPackage`] per `affected[]` entry that has a
//!   `package` (`ecosystem`, `name`). Its fixed version is the first `fixed`
//!   event of its `ECOSYSTEM` or `SEMVER` ranges (a `GIT` range's fixed
//!   commit is not a version, and other range types are not read); when an
//!   entry lists several different fixed versions, the first is kept and a
//!   warning lists the others. An `affected[]` entry without a `package`
//!   (some have only `GIT` ranges) is skipped with a warning, and a record
//!   with no `affected[]` at all gets a warning too. Duplicates of the same
//!   (ecosystem, name, fixed) collapse into one.
//! - **withdrawn**: a record with `withdrawn` is still imported, with a
//!   warning that says when it was withdrawn.
//!
//! Fields this module does not read are ignored, since OSV grows new ones.
//! A `null` counts as absent. A field the OSV schema defines, read with the
//! wrong JSON type, is an error that names its path, such as
//! `affected[2].ranges[0].events` (this includes `database_specific` and
//! `ecosystem_specific` themselves, which must be objects). What is inside
//! those two objects is the vendor's own and may be anything, so a value
//! read there with an unexpected shape, such as a `severity` that is a
//! number or a `cves_map` that is not an object, is skipped with a warning
//! that names its path instead. In an array given to [`import_many`],
//! paths start with the record's position, as in `[3].published`. Values
//! that [`CatalogEntry::parse`] rejects are reported at the OSV path they
//! came from. No input makes this module panic.

use crate::catalog::{AffectedPackage, AppliesTo, CatalogEntry, RawCatalogEntry, Severity};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use patchaudit_domain::{CveId, FieldError};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::str::FromStr;

/// What importing one OSV record produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsvImport {
    /// The validated catalog entry.
    pub entry: CatalogEntry,
    /// Sentences about what was guessed, defaulted or skipped on the way,
    /// such as a missing severity; empty when the record mapped cleanly.
    pub warnings: Vec<String>,
}

/// Why a record could not be imported. Every variant that concerns a field
/// names it by its JSON path in the input, such as
/// `affected[2].ranges[0].events`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OsvError {
    /// The input is not JSON (or not UTF-8).
    #[error("the input is not valid JSON: {message}")]
    NotJson {
        /// The parser's message, with the line and column.
        message: String,
    },
    /// A field has the wrong JSON type.
    #[error("{path} must be {expected}, but it is {found}")]
    WrongType {
        /// Where the field is; `$` is the whole document.
        path: String,
        /// What OSV puts there, such as `a string`.
        expected: &'static str,
        /// What the input has there, such as `a number`.
        found: &'static str,
    },
    /// A field the import needs is absent.
    #[error("{path} is missing: {message}")]
    Missing {
        /// Where the field should be.
        path: String,
        /// Why it is needed.
        message: String,
    },
    /// A field has the right type but a value that cannot be used.
    #[error("{path} {message}")]
    InvalidValue {
        /// Where the field is.
        path: String,
        /// What is wrong with the value and what is expected.
        message: String,
    },
    /// The values read do not make a valid catalog entry. Each error's
    /// `field` is the OSV path the value came from (or `applies_to…` for
    /// the scope the caller passed).
    #[error("the record is not a valid catalog entry: {}", join_errors(errors))]
    Rejected {
        /// Every problem [`CatalogEntry::parse`] found.
        errors: Vec<FieldError>,
    },
}

fn join_errors(errors: &[FieldError]) -> String {
    let mut out = String::new();
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(out, "{e}");
    }
    out
}

/// Parses one OSV record. `applies_to` is the scope the caller chose for
/// imported entries. A JSON array is refused here; [`import_many`] takes those.
pub fn import(json: &[u8], applies_to: AppliesTo) -> Result<OsvImport, OsvError> {
    let value = parse_json(json)?;
    record(&value, "", &applies_to)
}

/// Parses a file that holds either one OSV record or a JSON array of them
/// (osv.dev's `all.zip` members are single records; some feeds are arrays).
/// Returns one result per record, in order, so a bad record doesn't stop the
/// others; the outer error is for input that is not JSON, or is neither an
/// object nor an array.
pub fn import_many(
    json: &[u8],
    applies_to: AppliesTo,
) -> Result<Vec<Result<OsvImport, OsvError>>, OsvError> {
    let value = parse_json(json)?;
    match &value {
        Value::Array(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, item)| record(item, &format!("[{i}]"), &applies_to))
            .collect()),
        Value::Object(_) => Ok(vec![record(&value, "", &applies_to)]),
        other => Err(OsvError::WrongType {
            path: "$".into(),
            expected: "an OSV record (an object) or an array of them",
            found: kind(other),
        }),
    }
}

fn parse_json(json: &[u8]) -> Result<Value, OsvError> {
    // A byte-order mark is unambiguous; some tools write one.
    let json = json.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(json);
    serde_json::from_slice(json).map_err(|e| OsvError::NotJson {
        message: e.to_string(),
    })
}

// ---------------------------------------------------------------------------
// Typed access to JSON with paths.

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `base.key`, or `key` at the top of a single record.
fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

fn wrong(path: String, expected: &'static str, found: &Value) -> OsvError {
    OsvError::WrongType {
        path,
        expected,
        found: kind(found),
    }
}

/// The value at `key`, with `null` read as absent.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    base: &str,
) -> Result<Option<&'a str>, OsvError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(wrong(join(base, key), "a string", v)),
    }
}

fn req_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    base: &str,
    why: &str,
) -> Result<&'a str, OsvError> {
    opt_str(obj, key, base)?.ok_or_else(|| OsvError::Missing {
        path: join(base, key),
        message: why.to_owned(),
    })
}

fn opt_array<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    base: &str,
) -> Result<&'a [Value], OsvError> {
    match field(obj, key) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(wrong(join(base, key), "an array", v)),
    }
}

fn opt_object<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    base: &str,
) -> Result<Option<&'a Map<String, Value>>, OsvError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => Err(wrong(join(base, key), "an object", v)),
    }
}

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, OsvError> {
    v.as_object()
        .ok_or_else(|| wrong(path.to_owned(), "an object", v))
}

/// The strings of an array field, each with its path.
fn str_list<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    base: &str,
) -> Result<Vec<(String, &'a str)>, OsvError> {
    let path = join(base, key);
    opt_array(obj, key, base)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let p = format!("{path}[{i}]");
            match v {
                Value::String(s) => Ok((p, s.as_str())),
                other => Err(wrong(p, "a string", other)),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// One record.

/// Where each value handed to the catalog came from, to report the catalog's
/// errors at OSV paths.
#[derive(Default)]
struct Origins {
    id: String,
    title: String,
    released_at: String,
    modified_at: String,
    affected: String,
    aliases: Vec<String>,
    cves: Vec<String>,
    packages: Vec<PackageOrigin>,
}

struct PackageOrigin {
    ecosystem: String,
    name: String,
    fixed: String,
}

fn record(value: &Value, base: &str, applies_to: &AppliesTo) -> Result<OsvImport, OsvError> {
    let here = if base.is_empty() { "$" } else { base };
    let obj = value
        .as_object()
        .ok_or_else(|| wrong(here.to_owned(), "an object (one OSV record)", value))?;
    let mut warnings = Vec::new();
    let mut origins = Origins {
        id: join(base, "id"),
        affected: join(base, "affected"),
        ..Origins::default()
    };

    let id = req_str(obj, "id", base, "every OSV record has an id")?;

    // Title.
    let mut title = None;
    let summary = opt_str(obj, "summary", base)?;
    if let Some(summary) = summary {
        let clean = clean_line(summary);
        if !clean.is_empty() {
            let (t, cut) = truncate_title(clean);
            if cut {
                warnings.push(format!(
                    "{} is longer than {TITLE_MAX} characters; the title keeps its start",
                    join(base, "summary")
                ));
            }
            origins.title = join(base, "summary");
            title = Some(t);
        }
    }
    let details = opt_str(obj, "details", base)?;
    if title.is_none() {
        if let Some(line) = details.and_then(|d| d.lines().map(clean_line).find(|l| !l.is_empty()))
        {
            origins.title = join(base, "details");
            title = Some(truncate_title(line).0);
        }
    }

    // Times.
    let published = opt_str(obj, "published", base)?
        .map(|s| timestamp(s, &join(base, "published"), &mut warnings))
        .transpose()?;
    let modified = opt_str(obj, "modified", base)?
        .map(|s| timestamp(s, &join(base, "modified"), &mut warnings))
        .transpose()?;
    origins.modified_at = join(base, "modified");
    let released_at = match (&published, &modified) {
        (Some(p), _) => {
            origins.released_at = join(base, "published");
            p.clone()
        }
        (None, Some(m)) => {
            origins.released_at = join(base, "modified");
            warnings.push(format!(
                "{} is missing; released_at is taken from {}",
                join(base, "published"),
                join(base, "modified")
            ));
            m.clone()
        }
        (None, None) => return Err(OsvError::Missing {
            path: join(base, "published"),
            message:
                "neither published nor modified is given, and the SLA clock needs a release time"
                    .into(),
        }),
    };
    if let Some(w) = opt_str(obj, "withdrawn", base)? {
        let at = timestamp(w, &join(base, "withdrawn"), &mut warnings)?;
        warnings.push(format!(
            "the record was withdrawn at {at}; it is imported all the same"
        ));
    }

    // CVEs and aliases.
    let mut cves = Vec::new();
    let mut aliases = Vec::new();
    if CveId::parse(id).is_ok() {
        cves.push(id.to_owned());
        origins.cves.push(join(base, "id"));
    }
    for (path, alias) in str_list(obj, "aliases", base)? {
        if CveId::parse(alias).is_ok() {
            cves.push(alias.to_owned());
            origins.cves.push(path);
        } else if alias != id {
            aliases.push(alias.to_owned());
            origins.aliases.push(path);
        }
    }
    // `upstream` and `related` may name other kinds of record (USNs, GO
    // ids); only their CVE ids are kept.
    for key in ["upstream", "related"] {
        for (path, other) in str_list(obj, key, base)? {
            if CveId::parse(other).is_ok() {
                cves.push(other.to_owned());
                origins.cves.push(path);
            }
        }
    }

    // Packages, and the per-package severities on the way.
    let mut words = Vec::new();
    let mut packages = Vec::new();
    let affected = opt_array(obj, "affected", base)?;
    if affected.is_empty() {
        warnings.push("the record lists no affected packages".into());
    }
    for (i, a) in affected.iter().enumerate() {
        let path = format!("{}[{i}]", origins.affected);
        let a = as_object(a, &path)?;
        for key in ["ecosystem_specific", "database_specific"] {
            let sub = join(&path, key);
            if let Some(o) = opt_object(a, key, &path)? {
                vendor_word(o, "severity", &sub, &mut words, &mut warnings);
                if key == "database_specific" {
                    let mut found = Vec::new();
                    cves_map(o, &sub, &mut found, &mut words, &mut warnings);
                    for (path, cve) in found {
                        cves.push(cve.to_owned());
                        origins.cves.push(path);
                    }
                }
            }
        }
        let Some((package, origin)) = affected_package(a, &path, &mut warnings)? else {
            continue;
        };
        packages.push(package);
        origins.packages.push(origin);
    }
    if let Some(o) = opt_object(obj, "database_specific", base)? {
        let sub = join(base, "database_specific");
        vendor_word(o, "severity", &sub, &mut words, &mut warnings);
    }
    let prefix = summary
        .and_then(summary_prefix)
        .map(|(severity, word)| Rating {
            rank: 5,
            severity,
            path: join(base, "summary"),
            how: format!("prefix \"{word}:\""),
        });
    let severity = severity(obj, base, &words, prefix, &mut warnings)?;

    let (applies_to_tags, applies_to_systems) = match applies_to {
        AppliesTo::All => (None, None),
        AppliesTo::Tags(tags) => (Some(tags.iter().map(ToString::to_string).collect()), None),
        AppliesTo::Systems(systems) => (
            None,
            Some(systems.iter().map(|s| s.as_str().to_owned()).collect()),
        ),
    };
    let raw = RawCatalogEntry {
        id: Some(id.to_owned()),
        title,
        severity: Some(severity.as_str().to_owned()),
        released_at: Some(released_at),
        modified_at: modified,
        cves,
        aliases,
        packages,
        applies_to_tags,
        applies_to_systems,
    };
    match CatalogEntry::parse(raw) {
        Ok(entry) => Ok(OsvImport { entry, warnings }),
        Err(errors) => Err(OsvError::Rejected {
            errors: errors
                .into_iter()
                .map(|mut e| {
                    e.field = origins.locate(&e.field);
                    e
                })
                .collect(),
        }),
    }
}

impl Origins {
    /// The OSV path of a catalog field such as `packages[3].name`.
    fn locate(&self, field: &str) -> String {
        let indexed = |list: &str| -> Option<(usize, &str)> {
            let rest = field.strip_prefix(list)?.strip_prefix('[')?;
            let (i, rest) = rest.split_once(']')?;
            Some((i.parse().ok()?, rest.strip_prefix('.').unwrap_or(rest)))
        };
        let found = match field {
            "id" => Some(self.id.clone()),
            "title" => Some(self.title.clone()),
            "released_at" => Some(self.released_at.clone()),
            "modified_at" => Some(self.modified_at.clone()),
            "packages" => Some(self.affected.clone()),
            _ => None,
        };
        if let Some(p) = found.filter(|p| !p.is_empty()) {
            return p;
        }
        if let Some((i, _)) = indexed("aliases") {
            if let Some(p) = self.aliases.get(i) {
                return p.clone();
            }
        }
        if let Some((i, _)) = indexed("cves") {
            if let Some(p) = self.cves.get(i) {
                return p.clone();
            }
        }
        if let Some((i, part)) = indexed("packages") {
            if let Some(p) = self.packages.get(i) {
                return match part {
                    "ecosystem" => p.ecosystem.clone(),
                    "name" => p.name.clone(),
                    "fixed" => p.fixed.clone(),
                    _ => field.to_owned(),
                };
            }
        }
        field.to_owned()
    }
}

const TITLE_MAX: usize = 512;

/// Control characters and runs of white space become one space.
fn clean_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn truncate_title(s: String) -> (String, bool) {
    if s.chars().count() <= TITLE_MAX {
        return (s, false);
    }
    let mut t: String = s.chars().take(TITLE_MAX - 1).collect();
    t.push('…');
    (t, true)
}

/// Normalises an OSV timestamp to RFC 3339 in UTC.
fn timestamp(s: &str, path: &str, warnings: &mut Vec<String>) -> Result<String, OsvError> {
    let utc = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.with_timezone(&Utc)
    } else if let Some(t) = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    {
        warnings.push(format!("{path} {s:?} has no UTC offset; it is read as UTC"));
        t.and_utc()
    } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        warnings.push(format!(
            "{path} {s:?} is a date without a time; it is read as midnight UTC"
        ));
        d.and_time(chrono::NaiveTime::MIN).and_utc()
    } else {
        return Err(OsvError::InvalidValue {
            path: path.to_owned(),
            message: format!("{s:?} is not an RFC 3339 timestamp like 2024-05-01T12:00:00Z"),
        });
    };
    Ok(utc.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// The package of one `affected[]` entry and its first fixed version.
fn affected_package(
    a: &Map<String, Value>,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<(AffectedPackage, PackageOrigin)>, OsvError> {
    let package = opt_object(a, "package", path)?;
    let ranges = opt_array(a, "ranges", path)?;
    let ranges_path = join(path, "ranges");
    // Read the ranges even when there is no package, so a malformed one is
    // reported the same way either way.
    let mut fixes: Vec<(String, &str)> = Vec::new();
    for (j, r) in ranges.iter().enumerate() {
        let rpath = format!("{ranges_path}[{j}]");
        let r = as_object(r, &rpath)?;
        let kind = opt_str(r, "type", &rpath)?;
        let epath = join(&rpath, "events");
        let events = match field(r, "events") {
            None => {
                return Err(OsvError::Missing {
                    path: epath,
                    message: "every OSV range lists its events".into(),
                })
            }
            Some(Value::Array(e)) => e,
            Some(v) => return Err(wrong(epath, "an array of events", v)),
        };
        let versioned = matches!(kind, Some("ECOSYSTEM" | "SEMVER"));
        for (k, e) in events.iter().enumerate() {
            let evpath = format!("{epath}[{k}]");
            let e = as_object(e, &evpath)?;
            if versioned {
                if let Some(f) = opt_str(e, "fixed", &evpath)? {
                    fixes.push((join(&evpath, "fixed"), f));
                }
            }
        }
    }
    let Some(package) = package else {
        warnings.push(format!(
            "{path} names no package (only ranges); it is skipped"
        ));
        return Ok(None);
    };
    let ppath = join(path, "package");
    let ecosystem = req_str(
        package,
        "ecosystem",
        &ppath,
        "an affected package names its ecosystem",
    )?;
    let name = req_str(package, "name", &ppath, "an affected package has a name")?;
    let first = fixes.first().cloned();
    if let Some((_, kept)) = &first {
        let mut others: Vec<&str> = fixes
            .iter()
            .map(|(_, f)| *f)
            .filter(|f| f != kept)
            .collect();
        others.dedup();
        if !others.is_empty() {
            warnings.push(format!(
                "{path} ({ecosystem} {name}) lists several fixed versions; {kept} is kept and {} is not",
                others.join(", ")
            ));
        }
    }
    let (fixed_path, fixed) = match first {
        Some((p, f)) => (p, Some(f.to_owned())),
        None => (String::new(), None),
    };
    Ok(Some((
        AffectedPackage {
            ecosystem: ecosystem.to_owned(),
            name: name.to_owned(),
            fixed,
        },
        PackageOrigin {
            ecosystem: join(&ppath, "ecosystem"),
            name: join(&ppath, "name"),
            fixed: fixed_path,
        },
    )))
}

// ---------------------------------------------------------------------------
// Severity.

/// One rating found in the record.
struct Rating {
    /// Lower is preferred: 0 CVSS_V3, 1 CVSS_V4, 2 CVSS_V2, 3 Ubuntu,
    /// 4 words of `ecosystem_specific`/`database_specific` (with the Ubuntu
    /// `cves_map`), 5 the summary's prefix.
    rank: u8,
    severity: Severity,
    path: String,
    /// How it was read, such as `CVSS_V3 base score 7.5`.
    how: String,
}

/// The severity of a record, from `severity[]` first, the words in
/// `ecosystem_specific`/`database_specific` second and the summary's prefix
/// (`prefix`, already rated) last.
fn severity(
    obj: &Map<String, Value>,
    base: &str,
    words: &[(String, &str)],
    prefix: Option<Rating>,
    warnings: &mut Vec<String>,
) -> Result<Severity, OsvError> {
    let mut ratings = Vec::new();
    let spath = join(base, "severity");
    for (i, s) in opt_array(obj, "severity", base)?.iter().enumerate() {
        let path = format!("{spath}[{i}]");
        let s = as_object(s, &path)?;
        let ty = req_str(s, "type", &path, "a severity entry names its type")?;
        let score = req_str(s, "score", &path, "a severity entry has a score")?;
        let spath = join(&path, "score");
        let rated = match ty {
            "CVSS_V3" => cvss_v3(score).map(|(s, v)| (0, s, format!("CVSS_V3 base score {v:.1}"))),
            "CVSS_V4" => cvss_v4(score).map(|(s, v)| (1, s, format!("CVSS_V4 score {v:.1}"))),
            "CVSS_V2" => cvss_v2(score).map(|(s, v)| (2, s, format!("CVSS_V2 base score {v:.1}"))),
            "Ubuntu" => match word(score) {
                Word::Rated(s) => Ok((3, s, format!("Ubuntu priority {score}"))),
                Word::Silent => continue,
                Word::Unknown => Err(format!(
                    "{score:?} is not a severity word this import knows"
                )),
            },
            other => {
                warnings.push(format!(
                    "{path} has type {other:?}, which this import does not read"
                ));
                continue;
            }
        };
        match rated {
            Ok((rank, severity, how)) => ratings.push(Rating {
                rank,
                severity,
                path: spath,
                how,
            }),
            Err(why) => warnings.push(format!("{spath} is skipped: {why}")),
        }
    }
    for (path, w) in words {
        match word(w) {
            Word::Rated(severity) => ratings.push(Rating {
                rank: 4,
                severity,
                path: path.clone(),
                how: format!("{w:?}"),
            }),
            Word::Silent => {}
            Word::Unknown => warnings.push(format!(
                "{path} {w:?} is not a severity word this import knows; it is skipped"
            )),
        }
    }
    ratings.extend(prefix);

    let Some(rank) = ratings.iter().map(|r| r.rank).min() else {
        warnings.push(
            "the record has no usable severity (no CVSS vector, Ubuntu priority, severity word or summary prefix); it is imported as none"
                .into(),
        );
        return Ok(Severity::None);
    };
    // The highest of the preferred kind; the first of equals, to name it.
    let Some(chosen) = ratings.iter().filter(|r| r.rank == rank).fold(
        None,
        |best: Option<&Rating>, r| match best {
            Some(b) if b.severity >= r.severity => Some(b),
            _ => Some(r),
        },
    ) else {
        return Ok(Severity::None);
    };
    // Ambiguous: another entry of the chosen kind disagrees (words of
    // several packages may differ, and the highest is the rule), or the best
    // rating of another kind differs.
    let mut disagree: Vec<&Rating> = Vec::new();
    for r in &ratings {
        let differs = r.severity != chosen.severity;
        let counted = if r.rank == rank {
            rank < 4 && differs
        } else {
            let best = ratings
                .iter()
                .filter(|o| o.rank == r.rank)
                .map(|o| o.severity)
                .max();
            differs && best == Some(r.severity)
        };
        if counted
            && !disagree
                .iter()
                .any(|d| d.rank == r.rank && d.severity == r.severity)
        {
            disagree.push(r);
        }
    }
    if !disagree.is_empty() {
        let listed: Vec<String> = disagree
            .iter()
            .take(3)
            .map(|d| format!("{} ({}) says {}", d.path, d.how, d.severity))
            .collect();
        let more = disagree.len().saturating_sub(3);
        warnings.push(format!(
            "severity {} is taken from {} ({}), but {}{}",
            chosen.severity,
            chosen.path,
            chosen.how,
            listed.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    Ok(chosen.severity)
}

/// The rating a Red Hat–style summary starts with, such as
/// `Important: kernel security update`, and the word as written.
fn summary_prefix(summary: &str) -> Option<(Severity, &str)> {
    let (head, _) = summary.trim_start().split_once(':')?;
    let severity = match head.to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "important" => Severity::High,
        "moderate" => Severity::Medium,
        "low" => Severity::Low,
        _ => return None,
    };
    Some((severity, head))
}

/// The warning for a value of a vendor object (`ecosystem_specific`,
/// `database_specific`) that has an unexpected shape: OSV lets those hold
/// anything, so it is skipped rather than refused.
fn odd_vendor_value(path: &str, expected: &str, found: &Value) -> String {
    format!("{path} is {}, not {expected}; it is skipped", kind(found))
}

/// The severity word at `obj.key` of a vendor object, if it is one.
fn vendor_word<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    base: &str,
    words: &mut Vec<(String, &'a str)>,
    warnings: &mut Vec<String>,
) {
    let path = join(base, key);
    match field(obj, key) {
        None => {}
        Some(Value::String(w)) => words.push((path, w)),
        Some(v) => warnings.push(odd_vendor_value(&path, "a severity word", v)),
    }
}

/// Ubuntu's per-CVE ratings in `affected[].database_specific.cves_map`:
/// `{"ecosystem": …, "cves": [{"id": "CVE-…", "severity": …}]}`, where
/// `severity` is a list of OSV severity entries (of which the `Ubuntu`
/// words are read) or a word, and `priority`, when present, is a word.
/// Pushes the CVE ids to `cves` and the words to `words`, each with its
/// path; any other shape is skipped with a warning.
fn cves_map<'a>(
    ds: &'a Map<String, Value>,
    base: &str,
    cves: &mut Vec<(String, &'a str)>,
    words: &mut Vec<(String, &'a str)>,
    warnings: &mut Vec<String>,
) {
    let path = join(base, "cves_map");
    let map = match field(ds, "cves_map") {
        None => return,
        Some(Value::Object(m)) => m,
        Some(v) => return warnings.push(odd_vendor_value(&path, "an object", v)),
    };
    let list_path = join(&path, "cves");
    let list = match field(map, "cves") {
        None => return,
        Some(Value::Array(l)) => l,
        Some(v) => return warnings.push(odd_vendor_value(&list_path, "an array", v)),
    };
    for (j, c) in list.iter().enumerate() {
        let cpath = format!("{list_path}[{j}]");
        let Value::Object(c) = c else {
            warnings.push(odd_vendor_value(&cpath, "an object", c));
            continue;
        };
        let id_path = join(&cpath, "id");
        match field(c, "id") {
            None => {}
            Some(Value::String(id)) if CveId::parse(id).is_ok() => cves.push((id_path, id)),
            // Another kind of id is another record, not an alias.
            Some(Value::String(_)) => {}
            Some(v) => warnings.push(odd_vendor_value(&id_path, "a string", v)),
        }
        let spath = join(&cpath, "severity");
        match field(c, "severity") {
            None => {}
            Some(Value::String(w)) => words.push((spath, w)),
            Some(Value::Array(entries)) => {
                for (k, e) in entries.iter().enumerate() {
                    let epath = format!("{spath}[{k}]");
                    let Value::Object(e) = e else {
                        warnings.push(odd_vendor_value(&epath, "an object", e));
                        continue;
                    };
                    // Only the words: this map is a vendor source, ranked
                    // with the other words, and its vectors are not scored.
                    if field(e, "type").and_then(Value::as_str) != Some("Ubuntu") {
                        continue;
                    }
                    vendor_word(e, "score", &epath, words, warnings);
                }
            }
            Some(v) => warnings.push(odd_vendor_value(
                &spath,
                "a severity word or an array of severity entries",
                v,
            )),
        }
        vendor_word(c, "priority", &cpath, words, warnings);
    }
}

enum Word {
    Rated(Severity),
    /// `unknown`, `untriaged` or empty: the source says it does not know.
    Silent,
    Unknown,
}

fn word(w: &str) -> Word {
    match w.trim().to_ascii_lowercase().as_str() {
        "critical" => Word::Rated(Severity::Critical),
        "high" | "important" => Word::Rated(Severity::High),
        "medium" | "moderate" => Word::Rated(Severity::Medium),
        "low" | "negligible" => Word::Rated(Severity::Low),
        "none" => Word::Rated(Severity::None),
        "" | "unknown" | "untriaged" => Word::Silent,
        _ => Word::Unknown,
    }
}

fn cvss_v3(vector: &str) -> Result<(Severity, f64), String> {
    let v = cvss::v3::Vector::from_str(vector)
        .map_err(|e| format!("{vector:?} is not a CVSS v3 vector ({e})"))?;
    let complete = v.av.is_some()
        && v.ac.is_some()
        && v.pr.is_some()
        && v.ui.is_some()
        && v.s.is_some()
        && v.c.is_some()
        && v.i.is_some()
        && v.a.is_some();
    if !complete {
        return Err(format!(
            "{vector:?} lacks some of the eight CVSS v3 base metrics"
        ));
    }
    let score = v.base_score().value();
    Ok((Severity::from_cvss_score(score), score))
}

fn cvss_v4(vector: &str) -> Result<(Severity, f64), String> {
    let v = cvss::v4::Vector::from_str(vector)
        .map_err(|e| format!("{vector:?} is not a CVSS v4 vector ({e})"))?;
    let score = v.score().value();
    Ok((Severity::from_cvss_score(score), score))
}

fn cvss_v2(vector: &str) -> Result<(Severity, f64), String> {
    let v = cvss::v2::Vector::from_str(vector)
        .map_err(|e| format!("{vector:?} is not a CVSS v2 vector ({e})"))?;
    let score = v.score().value();
    // CVSS v2's own bands (NVD): 0.0–3.9 low, 4.0–6.9 medium, 7.0–10.0 high.
    let severity = if score < 4.0 {
        Severity::Low
    } else if score < 7.0 {
        Severity::Medium
    } else {
        Severity::High
    };
    Ok((severity, score))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::Tag;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "id": "GHSA-aaaa-bbbb-cccc",
            "summary": "A test advisory",
            "published": "2024-05-01T12:00:00Z",
            "modified": "2024-05-02T12:00:00.5Z",
            "aliases": ["CVE-2024-1234"],
            "affected": [{
                "package": {"ecosystem": "PyPI", "name": "demo"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.3"}]}]
            }]
        })
    }

    fn run(v: &Value) -> Result<OsvImport, OsvError> {
        import(v.to_string().as_bytes(), AppliesTo::All)
    }

    fn with(mut v: Value, key: &str, field: Value) -> Value {
        v[key] = field;
        v
    }

    fn with_severity(vectors: &[(&str, &str)]) -> Value {
        let list: Vec<Value> = vectors
            .iter()
            .map(|(t, s)| json!({"type": t, "score": s}))
            .collect();
        with(base(), "severity", Value::Array(list))
    }

    fn no_usable(w: &[String]) -> bool {
        w.iter().any(|w| w.contains("no usable severity"))
    }

    #[test]
    fn maps_a_plain_record() {
        let i = run(&base()).unwrap();
        let e = &i.entry;
        assert_eq!(e.id.as_str(), "GHSA-aaaa-bbbb-cccc");
        assert_eq!(e.title, "A test advisory");
        assert_eq!(e.released_at.to_rfc3339(), "2024-05-01T12:00:00.000000Z");
        assert_eq!(
            e.modified_at.unwrap().to_rfc3339(),
            "2024-05-02T12:00:00.500000Z"
        );
        assert_eq!(
            e.cves.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            ["CVE-2024-1234"]
        );
        assert!(e.aliases.is_empty());
        assert_eq!(
            e.packages,
            vec![AffectedPackage {
                ecosystem: "PyPI".into(),
                name: "demo".into(),
                fixed: Some("1.2.3".into())
            }]
        );
        assert_eq!(e.severity, Severity::None);
        assert_eq!(i.warnings.len(), 1, "{:?}", i.warnings);
        assert!(no_usable(&i.warnings));
    }

    #[test]
    fn cvss_v3_vectors_are_scored() {
        for (vector, want) in [
            (
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                Severity::Critical,
            ), // 9.8
            (
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
                Severity::High,
            ), // 7.5
            (
                "CVSS:3.0/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:N/A:N",
                Severity::Medium,
            ), // 4.7
            (
                "CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:H/I:N/A:N",
                Severity::Medium,
            ), // 6.8
            (
                "CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N",
                Severity::Low,
            ), // 1.6
            (
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N",
                Severity::None,
            ), // 0.0
        ] {
            let i = run(&with_severity(&[("CVSS_V3", vector)])).unwrap();
            assert_eq!(i.entry.severity, want, "{vector}");
            assert!(i.warnings.is_empty(), "{vector}: {:?}", i.warnings);
        }
        assert_eq!(
            cvss_v3("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H")
                .unwrap()
                .1,
            7.5
        );
    }

    #[test]
    fn incomplete_or_garbage_vectors_fall_through_with_a_warning() {
        let i = run(&with_severity(&[("CVSS_V3", "CVSS:3.1/AV:N/AC:L")])).unwrap();
        assert_eq!(i.entry.severity, Severity::None);
        assert!(i
            .warnings
            .iter()
            .any(|w| w.starts_with("severity[0].score is skipped") && w.contains("base metrics")));
        assert!(no_usable(&i.warnings));

        let i = run(&with_severity(&[("CVSS_V3", "banana"), ("Ubuntu", "high")])).unwrap();
        assert_eq!(i.entry.severity, Severity::High, "the next source is used");
        assert!(i
            .warnings
            .iter()
            .any(|w| w.contains("\"banana\" is not a CVSS v3 vector")));
        assert!(!no_usable(&i.warnings));
    }

    #[test]
    fn cvss_v2_uses_its_own_bands_and_v4_is_scored() {
        for (vector, want) in [
            ("AV:N/AC:L/Au:N/C:C/I:C/A:C", Severity::High), // 10.0, which v2 calls high
            ("AV:N/AC:L/Au:N/C:P/I:P/A:P", Severity::High), // 7.5
            ("AV:N/AC:M/Au:N/C:P/I:N/A:N", Severity::Medium), // 4.3
            ("AV:L/AC:H/Au:N/C:P/I:N/A:N", Severity::Low),  // 1.2
        ] {
            let i = run(&with_severity(&[("CVSS_V2", vector)])).unwrap();
            assert_eq!(i.entry.severity, want, "{vector}");
        }
        let v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"; // 9.3
        let i = run(&with_severity(&[("CVSS_V4", v4)])).unwrap();
        assert_eq!(i.entry.severity, Severity::Critical);
        assert!(i.warnings.is_empty(), "{:?}", i.warnings);
    }

    #[test]
    fn v3_is_preferred_and_disagreement_is_reported_once() {
        let v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N";
        let v3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H";
        let i = run(&with_severity(&[
            ("CVSS_V4", v4),
            ("CVSS_V3", v3),
            ("Ubuntu", "high"),
        ]))
        .unwrap();
        assert_eq!(i.entry.severity, Severity::High);
        assert_eq!(i.warnings.len(), 1, "{:?}", i.warnings);
        assert!(
            i.warnings[0].contains("severity[1].score (CVSS_V3 base score 7.5)"),
            "{}",
            i.warnings[0]
        );
        assert!(
            i.warnings[0].contains("severity[0].score (CVSS_V4 score 9.3) says critical"),
            "{}",
            i.warnings[0]
        );

        // Agreeing sources say nothing.
        let i = run(&with_severity(&[
            ("CVSS_V3", v3),
            ("CVSS_V3", v3),
            ("Ubuntu", "HIGH"),
        ]))
        .unwrap();
        assert_eq!(i.entry.severity, Severity::High);
        assert!(i.warnings.is_empty(), "{:?}", i.warnings);
    }

    #[test]
    fn word_severities() {
        for (w, want) in [
            ("Critical", Some(Severity::Critical)),
            ("Important", Some(Severity::High)),
            ("HIGH", Some(Severity::High)),
            ("Moderate", Some(Severity::Medium)),
            ("medium", Some(Severity::Medium)),
            ("Low", Some(Severity::Low)),
            ("negligible", Some(Severity::Low)),
            ("none", Some(Severity::None)),
            ("unknown", None),
            ("untriaged", None),
        ] {
            let mut v = base();
            v["database_specific"] = json!({"severity": w});
            let i = run(&v).unwrap();
            assert_eq!(i.entry.severity, want.unwrap_or(Severity::None), "{w}");
            assert_eq!(
                no_usable(&i.warnings),
                want.is_none(),
                "{w}: {:?}",
                i.warnings
            );
        }
        let mut v = base();
        v["database_specific"] = json!({"severity": "urgent"});
        let i = run(&v).unwrap();
        assert!(i
            .warnings
            .iter()
            .any(|w| w.contains("database_specific.severity \"urgent\" is not a severity word")));
        assert!(no_usable(&i.warnings));
    }

    #[test]
    fn the_highest_word_across_affected_entries_wins_quietly() {
        let mut v = base();
        v["affected"] = json!([
            {"package": {"ecosystem": "Debian:11", "name": "a"}, "ecosystem_specific": {"severity": "low"}},
            {"package": {"ecosystem": "Debian:12", "name": "a"}, "database_specific": {"severity": "Important"}},
            {"package": {"ecosystem": "Debian:13", "name": "a"}, "ecosystem_specific": {"severity": "medium"}}
        ]);
        let i = run(&v).unwrap();
        assert_eq!(i.entry.severity, Severity::High);
        assert!(i.warnings.is_empty(), "{:?}", i.warnings);
        assert_eq!(i.entry.packages.len(), 3);
        assert!(i.entry.packages.iter().all(|p| p.fixed.is_none()));
        // A CVSS vector outranks them, and the disagreement is named.
        v["severity"] =
            json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:N/A:N"}]);
        let i = run(&v).unwrap();
        assert_eq!(i.entry.severity, Severity::Medium);
        assert_eq!(i.warnings.len(), 1, "{:?}", i.warnings);
        assert!(
            i.warnings[0]
                .contains("affected[1].database_specific.severity (\"Important\") says high"),
            "{}",
            i.warnings[0]
        );
    }

    #[test]
    fn the_summary_prefix_is_the_last_severity_source() {
        for (summary, want) in [
            ("Important: kernel security update", Some(Severity::High)),
            ("Moderate: libtiff security update", Some(Severity::Medium)),
            ("  low: tzdata enhancement update", Some(Severity::Low)),
            (
                "CRITICAL: firefox security update",
                Some(Severity::Critical),
            ),
            // Not one of the four words, or not followed by a colon.
            ("Red Hat Security Advisory: git-lfs security update", None),
            ("High: openssl security update", None),
            ("Important kernel security update", None),
            ("Important : kernel security update", None),
            ("kernel: Important fix", None),
        ] {
            let mut v = with(base(), "summary", json!(summary));
            v["id"] = json!("RLSA-2024:0001");
            let i = run(&v).unwrap();
            assert_eq!(
                i.entry.severity,
                want.unwrap_or(Severity::None),
                "{summary}"
            );
            assert_eq!(no_usable(&i.warnings), want.is_none(), "{summary}");
            assert_eq!(i.warnings.len(), 1 - usize::from(want.is_some()));
            assert_eq!(i.entry.title, summary.trim(), "the title keeps it");
        }

        // Below a CVSS vector, which wins; the disagreement is named.
        let mut v = with_severity(&[("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:H/I:N/A:N")]);
        v["summary"] = json!("Important: java-11-openjdk security update");
        let i = run(&v).unwrap();
        assert_eq!(i.entry.severity, Severity::Medium);
        assert_eq!(
            i.warnings,
            ["severity medium is taken from severity[0].score (CVSS_V3 base score 6.8), but summary (prefix \"Important:\") says high"]
        );
        // Agreement is silent.
        v["summary"] = json!("moderate: java-11-openjdk security update");
        let i = run(&v).unwrap();
        assert_eq!(i.entry.severity, Severity::Medium);
        assert!(i.warnings.is_empty(), "{:?}", i.warnings);

        // Below a vendor word too.
        let mut v = with(base(), "summary", json!("Low: x update"));
        v["database_specific"] = json!({"severity": "critical"});
        let i = run(&v).unwrap();
        assert_eq!(i.entry.severity, Severity::Critical);
        assert_eq!(
            i.warnings,
            ["severity critical is taken from database_specific.severity (\"critical\"), but summary (prefix \"Low:\") says low"]
        );
        // A details line is not a summary.
        let mut v = base();
        v.as_object_mut().unwrap().remove("summary");
        v["details"] = json!("Critical: read this");
        let i = run(&v).unwrap();
        assert_eq!(i.entry.severity, Severity::None);
        assert!(no_usable(&i.warnings));
    }

    #[test]
    fn cve_ids_in_related_are_cves_and_the_rest_is_ignored() {
        let mut v = base();
        v["id"] = json!("ALSA-2024:5309");
        v["aliases"] = json!([]);
        v["related"] = json!([
            "CVE-2024-37891",
            "GO-2024-2687",
            "USN-5614-1",
            "cve-2024-1111",
            "CVE-2023-0001"
        ]);
        let i = run(&v).unwrap();
        assert_eq!(
            i.entry.cves.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            ["CVE-2023-0001", "CVE-2024-37891"]
        );
        assert!(i.entry.aliases.is_empty(), "{:?}", i.entry.aliases);
        assert_eq!(i.warnings.len(), 1, "{:?}", i.warnings);
        assert!(no_usable(&i.warnings));
        // The same CVE in aliases and related is one CVE.
        v["aliases"] = json!(["CVE-2024-37891"]);
        let i = run(&v).unwrap();
        assert_eq!(i.entry.cves.len(), 2);
    }

    #[test]
    fn ubuntu_cves_map_gives_cves_and_a_vendor_severity() {
        // The shape of USN-5614-1, with two packages that disagree.
        let entry = |id: &str, word: &str| {
            json!({"id": id, "severity": [
                {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
                {"type": "Ubuntu", "score": word}
            ]})
        };
        let mut v = base();
        v["id"] = json!("USN-5614-1");
        v["aliases"] = json!([]);
        v["upstream"] = json!(["UBUNTU-CVE-2021-3782"]);
        v["affected"] = json!([
            {"package": {"ecosystem": "Ubuntu:18.04:LTS", "name": "wayland"},
             "database_specific": {"cves_map": {"ecosystem": "Ubuntu:18.04:LTS", "cves": [
                 entry("CVE-2021-3782", "medium"),
                 entry("CVE-2021-0002", "low"),
                 {"id": "https://launchpad.net/bugs/1", "severity": "negligible"}
             ]}}},
            {"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "wayland"},
             "database_specific": {"cves_map": {"ecosystem": "Ubuntu:22.04:LTS", "cves": [
                 entry("CVE-2021-3782", "high")
             ]}}}
        ]);
        let i = run(&v).unwrap();
        assert_eq!(
            i.entry.cves.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            ["CVE-2021-0002", "CVE-2021-3782"]
        );
        assert!(i.entry.aliases.is_empty(), "{:?}", i.entry.aliases);
        // The highest word, quietly; the 9.8 vectors are not scored.
        assert_eq!(i.entry.severity, Severity::High);
        assert!(i.warnings.is_empty(), "{:?}", i.warnings);

        // A `priority` word and a plain `severity` word count as well.
        v["affected"][1]["database_specific"]["cves_map"]["cves"] =
            json!([{"id": "CVE-2021-3782", "priority": "Critical"}]);
        assert_eq!(run(&v).unwrap().entry.severity, Severity::Critical);
        v["affected"][1]["database_specific"]["cves_map"]["cves"] =
            json!([{"id": "CVE-2021-3782", "severity": "untriaged"}]);
        assert_eq!(run(&v).unwrap().entry.severity, Severity::Medium);

        // It ranks below the record's own Ubuntu priority, with the
        // disagreement named at the cves_map path.
        v["severity"] = json!([{"type": "Ubuntu", "score": "low"}]);
        let i = run(&v).unwrap();
        assert_eq!(i.entry.severity, Severity::Low);
        assert_eq!(
            i.warnings,
            ["severity low is taken from severity[0].score (Ubuntu priority low), but affected[0].database_specific.cves_map.cves[0].severity[1].score (\"medium\") says medium"]
        );
        // And above the summary's prefix.
        v.as_object_mut().unwrap().remove("severity");
        v["summary"] = json!("Low: wayland vulnerability");
        let i = run(&v).unwrap();
        assert_eq!(i.entry.severity, Severity::Medium);
        assert_eq!(i.warnings.len(), 1, "{:?}", i.warnings);
        assert!(i.warnings[0].contains("summary (prefix \"Low:\") says low"));

        // An unknown word is skipped with a warning.
        v["affected"][0]["database_specific"]["cves_map"]["cves"] =
            json!([{"id": "CVE-2021-3782", "severity": [{"type": "Ubuntu", "score": "urgent"}]}]);
        let i = run(&v).unwrap();
        assert!(i.warnings.iter().any(|w| w
            == "affected[0].database_specific.cves_map.cves[0].severity[0].score \"urgent\" is not a severity word this import knows; it is skipped"));
        // cves_map is read in database_specific only.
        let mut v = base();
        v["affected"][0]["ecosystem_specific"] =
            json!({"cves_map": {"cves": [entry("CVE-2021-3782", "high")]}});
        let i = run(&v).unwrap();
        assert_eq!(i.entry.severity, Severity::None);
        assert_eq!(i.entry.cves.len(), 1);
    }

    #[test]
    fn vendor_values_of_odd_shape_are_warnings() {
        let mut v = base();
        v["database_specific"] = json!({"severity": 3});
        v["affected"] = json!([
            {"package": {"ecosystem": "Debian:12", "name": "a"},
             "ecosystem_specific": {"severity": {"level": "high"}},
             "database_specific": {"severity": ["high"]}},
            {"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "b"},
             "database_specific": {"cves_map": ["CVE-2024-0001"]}},
            {"package": {"ecosystem": "Ubuntu:24.04:LTS", "name": "c"},
             "database_specific": {"cves_map": {"cves": {"id": "CVE-2024-0001"}}}},
            {"package": {"ecosystem": "Ubuntu:24.10", "name": "d"},
             "database_specific": {"cves_map": {"cves": [
                 "CVE-2024-0002",
                 {"id": 7, "severity": 5, "priority": true},
                 {"id": "CVE-2024-0003", "severity": ["medium", {"type": "Ubuntu", "score": 2}, {"type": "Ubuntu", "score": "low"}]}
             ]}}}
        ]);
        let i = run(&v).unwrap();
        assert_eq!(
            i.warnings,
            [
                "affected[0].ecosystem_specific.severity is an object, not a severity word; it is skipped",
                "affected[0].database_specific.severity is an array, not a severity word; it is skipped",
                "affected[1].database_specific.cves_map is an array, not an object; it is skipped",
                "affected[2].database_specific.cves_map.cves is an object, not an array; it is skipped",
                "affected[3].database_specific.cves_map.cves[0] is a string, not an object; it is skipped",
                "affected[3].database_specific.cves_map.cves[1].id is a number, not a string; it is skipped",
                "affected[3].database_specific.cves_map.cves[1].severity is a number, not a severity word or an array of severity entries; it is skipped",
                "affected[3].database_specific.cves_map.cves[1].priority is a boolean, not a severity word; it is skipped",
                "affected[3].database_specific.cves_map.cves[2].severity[0] is a string, not an object; it is skipped",
                "affected[3].database_specific.cves_map.cves[2].severity[1].score is a number, not a severity word; it is skipped",
                "database_specific.severity is a number, not a severity word; it is skipped",
            ]
        );
        // What was well-formed is still read.
        assert_eq!(i.entry.severity, Severity::Low);
        assert_eq!(
            i.entry.cves.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            ["CVE-2024-0003", "CVE-2024-1234"]
        );
        assert_eq!(i.entry.packages.len(), 4);

        // Nothing usable left: none, with both kinds of warning.
        let mut v = base();
        v["affected"][0]["database_specific"] = json!({"severity": null, "cves_map": null});
        v["database_specific"] = json!({"severity": false});
        let i = run(&v).unwrap();
        assert_eq!(i.entry.severity, Severity::None);
        assert_eq!(i.warnings.len(), 2, "{:?}", i.warnings);
        assert!(i.warnings[0].starts_with("database_specific.severity is a boolean"));
        assert!(no_usable(&i.warnings));

        // In an array of records the paths carry the position.
        let input = json!([
            base(),
            with(base(), "database_specific", json!({"severity": 3}))
        ]);
        let results = import_many(input.to_string().as_bytes(), AppliesTo::All).unwrap();
        assert!(results[1].as_ref().unwrap().warnings.iter().any(|w| w
            == "[1].database_specific.severity is a number, not a severity word; it is skipped"));
    }

    #[test]
    fn missing_severity_is_none_with_a_warning() {
        let i = run(&base()).unwrap();
        assert_eq!(i.entry.severity, Severity::None);
        assert_eq!(
            i.warnings,
            vec!["the record has no usable severity (no CVSS vector, Ubuntu priority, severity word or summary prefix); it is imported as none"]
        );
    }

    #[test]
    fn bad_published_is_an_error_naming_the_field() {
        for bad in [
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-05-01T25:00:00Z",
            "",
        ] {
            let err = run(&with(base(), "published", json!(bad))).unwrap_err();
            match &err {
                OsvError::InvalidValue { path, .. } => assert_eq!(path, "published", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
            assert!(err.to_string().starts_with("published "), "{err}");
        }
        let err = run(&with(base(), "modified", json!("soon"))).unwrap_err();
        assert!(
            matches!(&err, OsvError::InvalidValue { path, .. } if path == "modified"),
            "{err:?}"
        );
    }

    #[test]
    fn unambiguous_timestamps_are_normalised() {
        let i = run(&with(base(), "published", json!("2024-05-01T12:00:00"))).unwrap();
        assert_eq!(
            i.entry.released_at.to_rfc3339(),
            "2024-05-01T12:00:00.000000Z"
        );
        assert!(i
            .warnings
            .iter()
            .any(|w| w.contains("published \"2024-05-01T12:00:00\" has no UTC offset")));
        let i = run(&with(base(), "published", json!("2024-05-01"))).unwrap();
        assert_eq!(
            i.entry.released_at.to_rfc3339(),
            "2024-05-01T00:00:00.000000Z"
        );
        let i = run(&with(
            base(),
            "published",
            json!("2024-05-01T14:00:00.1234567+02:00"),
        ))
        .unwrap();
        assert_eq!(
            i.entry.released_at.to_rfc3339(),
            "2024-05-01T12:00:00.123456Z"
        );
        assert!(
            no_usable(&i.warnings) && i.warnings.len() == 1,
            "{:?}",
            i.warnings
        );

        let mut v = base();
        v.as_object_mut().unwrap().remove("published");
        let i = run(&v).unwrap();
        assert_eq!(
            i.entry.released_at.to_rfc3339(),
            "2024-05-02T12:00:00.500000Z"
        );
        assert!(i
            .warnings
            .iter()
            .any(|w| w == "published is missing; released_at is taken from modified"));
        v.as_object_mut().unwrap().remove("modified");
        assert!(
            matches!(run(&v).unwrap_err(), OsvError::Missing { path, .. } if path == "published")
        );
    }

    #[test]
    fn wrong_types_name_the_path() {
        let mut v = base();
        v["affected"] = json!([
            {"package": {"ecosystem": "PyPI", "name": "a"}},
            {"package": {"ecosystem": "PyPI", "name": "b"}},
            {"package": {"ecosystem": "PyPI", "name": "c"}, "ranges": [{"type": "ECOSYSTEM", "events": "fixed 1.0"}]}
        ]);
        let err = run(&v).unwrap_err();
        assert_eq!(
            err,
            OsvError::WrongType {
                path: "affected[2].ranges[0].events".into(),
                expected: "an array of events",
                found: "a string"
            }
        );
        assert_eq!(
            err.to_string(),
            "affected[2].ranges[0].events must be an array of events, but it is a string"
        );

        let cases = [
            (with(base(), "id", json!(7)), "id"),
            (with(base(), "aliases", json!(["GHSA-x", 3])), "aliases[1]"),
            (with(base(), "aliases", json!("CVE-2024-1234")), "aliases"),
            (with(base(), "affected", json!({})), "affected"),
            (
                with(
                    base(),
                    "severity",
                    json!([{"type": "CVSS_V3", "score": 9.8}]),
                ),
                "severity[0].score",
            ),
            // The vendor objects themselves are the schema's; what they
            // hold is not (see vendor_values_of_odd_shape_are_warnings).
            (
                with(base(), "database_specific", json!("high")),
                "database_specific",
            ),
            (
                with(
                    base(),
                    "affected",
                    json!([{"package": {"ecosystem": "PyPI", "name": "a"}, "ecosystem_specific": ["high"]}]),
                ),
                "affected[0].ecosystem_specific",
            ),
            (
                with(base(), "related", json!(["CVE-2024-1", 5])),
                "related[1]",
            ),
            (with(base(), "upstream", json!({})), "upstream"),
            (with(base(), "summary", json!(["x"])), "summary"),
            (
                with(
                    base(),
                    "affected",
                    json!([{"package": {"ecosystem": "PyPI", "name": "a"}, "ranges": [{"type": "SEMVER", "events": [{"fixed": 1}]}]}]),
                ),
                "affected[0].ranges[0].events[0].fixed",
            ),
            (
                with(base(), "affected", json!([{"package": "PyPI/demo"}])),
                "affected[0].package",
            ),
        ];
        for (v, want) in cases {
            match run(&v).unwrap_err() {
                OsvError::WrongType { path, .. } => assert_eq!(path, want),
                other => panic!("{want}: {other:?}"),
            }
        }
        assert!(matches!(
            import(b"[]", AppliesTo::All).unwrap_err(),
            OsvError::WrongType { path, found: "an array", .. } if path == "$"
        ));
        assert!(matches!(
            import(b"{\"id\":", AppliesTo::All).unwrap_err(),
            OsvError::NotJson { .. }
        ));
        let missing = with(
            base(),
            "affected",
            json!([{"package": {"ecosystem": "PyPI"}}]),
        );
        assert!(
            matches!(run(&missing).unwrap_err(), OsvError::Missing { path, .. } if path == "affected[0].package.name")
        );
    }

    #[test]
    fn catalog_rejections_point_at_the_osv_field() {
        let v = with(
            base(),
            "affected",
            json!([
                {"package": {"ecosystem": "PyPI", "name": "ok"}},
                {"package": {"ecosystem": "PyPI", "name": "bad\u{7}"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"fixed": ""}]}]}
            ]),
        );
        let OsvError::Rejected { errors } = run(&v).unwrap_err() else {
            panic!("expected a rejection")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "affected[1].package.name",
                "affected[1].ranges[0].events[0].fixed"
            ]
        );
        let err = run(&with(base(), "aliases", json!(["x".repeat(300)]))).unwrap_err();
        assert!(
            err.to_string()
                .contains("aliases[0]: aliases[0] is longer than 256 characters"),
            "{err}"
        );
    }

    #[test]
    fn cves_aliases_and_packages() {
        let mut v = base();
        v["id"] = json!("UBUNTU-CVE-2021-3782");
        v["aliases"] = json!(["UBUNTU-CVE-2021-3782", "GHSA-1", "USN-1-1", "CVE-2021-0001"]);
        v["upstream"] = json!(["CVE-2021-3782", "UBUNTU-CVE-1999-0001"]);
        v["related"] = json!(["CVE-2020-9999", "USN-9-1", "GO-2024-1"]);
        v["affected"] = json!([
            {"ranges": [{"type": "GIT", "repo": "https://example.org/r", "events": [{"introduced": "0"}, {"fixed": "abc123"}]}]},
            {"package": {"ecosystem": "PyPI", "name": "requests"}, "ranges": [
                {"type": "GIT", "repo": "https://example.org/r", "events": [{"fixed": "abc123"}]},
                {"type": "ECOSYSTEM", "events": [{"introduced": "2.3.0"}, {"fixed": "2.31.0"}]},
                {"type": "ECOSYSTEM", "events": [{"introduced": "3.0"}, {"fixed": "3.1"}]}
            ]},
            {"package": {"ecosystem": "PyPI", "name": "requests"}, "ranges": [{"type": "SEMVER", "events": [{"fixed": "2.31.0"}]}]}
        ]);
        let i = run(&v).unwrap();
        let e = &i.entry;
        assert_eq!(
            e.cves.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            ["CVE-2020-9999", "CVE-2021-0001", "CVE-2021-3782"]
        );
        // Related non-CVE ids are other records, not aliases.
        assert_eq!(e.aliases, ["GHSA-1", "USN-1-1"]);
        assert_eq!(
            e.packages,
            vec![AffectedPackage {
                ecosystem: "PyPI".into(),
                name: "requests".into(),
                fixed: Some("2.31.0".into())
            }],
            "duplicates collapse and GIT commits are not versions"
        );
        assert!(i
            .warnings
            .iter()
            .any(|w| w == "affected[0] names no package (only ranges); it is skipped"));
        assert!(i.warnings.iter().any(|w| w.contains("affected[1] (PyPI requests) lists several fixed versions; 2.31.0 is kept and 3.1 is not")));
    }

    #[test]
    fn titles_fall_back_and_are_cut() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("summary");
        v["details"] = json!("\n\n  First\tline  here \nsecond line");
        assert_eq!(run(&v).unwrap().entry.title, "First line here");
        v["details"] = json!("d".repeat(600));
        let t = run(&v).unwrap().entry.title;
        assert_eq!(t.chars().count(), 512);
        assert!(t.ends_with('…'));
        v["details"] = json!("   ");
        assert_eq!(run(&v).unwrap().entry.title, "GHSA-aaaa-bbbb-cccc");
        v["summary"] = json!("s".repeat(513));
        let i = run(&v).unwrap();
        assert_eq!(i.entry.title.chars().count(), 512);
        assert!(i
            .warnings
            .iter()
            .any(|w| w.starts_with("summary is longer than 512")));
    }

    #[test]
    fn the_callers_scope_is_applied() {
        let tag = Tag::parse("pci=in-scope", "t").unwrap();
        let i = import(
            base().to_string().as_bytes(),
            AppliesTo::Tags(vec![tag.clone()]),
        )
        .unwrap();
        assert_eq!(i.entry.applies_to, AppliesTo::Tags(vec![tag]));
        let err = import(base().to_string().as_bytes(), AppliesTo::Tags(vec![])).unwrap_err();
        assert!(
            matches!(&err, OsvError::Rejected { errors } if errors[0].field == "applies_to.tags"),
            "{err:?}"
        );
    }

    #[test]
    fn withdrawn_records_are_flagged() {
        let i = run(&with(base(), "withdrawn", json!("2024-06-01T00:00:00Z"))).unwrap();
        assert!(i
            .warnings
            .iter()
            .any(|w| w.contains("withdrawn at 2024-06-01T00:00:00.000000Z")));
    }

    #[test]
    fn an_array_with_one_bad_record_keeps_the_others() {
        let good = base();
        let bad = with(base(), "published", json!("not a date"));
        let mut other = base();
        other["id"] = json!("PYSEC-2024-1");
        let input = json!([good, bad, other, 5]).to_string();
        let results = import_many(input.as_bytes(), AppliesTo::All).unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(
            results[0].as_ref().unwrap().entry.id.as_str(),
            "GHSA-aaaa-bbbb-cccc"
        );
        assert!(
            matches!(&results[1], Err(OsvError::InvalidValue { path, .. }) if path == "[1].published"),
            "{:?}",
            results[1]
        );
        assert_eq!(
            results[2].as_ref().unwrap().entry.id.as_str(),
            "PYSEC-2024-1"
        );
        assert!(
            matches!(&results[3], Err(OsvError::WrongType { path, found: "a number", .. }) if path == "[3]")
        );

        let one = import_many(base().to_string().as_bytes(), AppliesTo::All).unwrap();
        assert_eq!(one.len(), 1);
        assert!(one[0].is_ok());
        assert!(
            matches!(import_many(b"\"x\"", AppliesTo::All), Err(OsvError::WrongType { path, .. }) if path == "$")
        );
        assert!(matches!(
            import_many(b"nope", AppliesTo::All),
            Err(OsvError::NotJson { .. })
        ));
        assert_eq!(
            import_many(b"\xEF\xBB\xBF[]", AppliesTo::All)
                .unwrap()
                .len(),
            0
        );
    }

    /// A cheap stand-in for the fuzz target: mangled records and vectors
    /// must give a result, never a panic.
    #[test]
    fn mangled_input_never_panics() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(0x05f);
        let mut seed = base();
        seed["severity"] = json!([
            {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
            {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"},
            {"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}
        ]);
        let text = seed.to_string().into_bytes();
        let mut outcomes = [0usize; 2];
        for _ in 0..3000 {
            let mut b = text.clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..b.len());
                match rng.gen_range(0..3) {
                    0 => b[at] = rng.gen(),
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, b"\"{}[]:,0aZ/\\"[rng.gen_range(0..12)]),
                }
            }
            outcomes[usize::from(import(&b, AppliesTo::All).is_ok())] += 1;
            let _ = import_many(&b, AppliesTo::All);
        }
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");

        let parts = [
            "CVSS:4.0", "CVSS:3.1", "AV:N", "AV:X", "AC:L", "AT:N", "PR:N", "UI:N", "UI:P", "VC:H",
            "VI:H", "VA:H", "SC:N", "SI:S", "SA:N", "S:U", "C:H", "I:L", "A:N", "E:P", "MSI:S",
            "MSA:S", "CR:H", "Au:N", "",
        ];
        for _ in 0..3000 {
            let n = rng.gen_range(0..14);
            let v: Vec<&str> = (0..n)
                .map(|_| parts[rng.gen_range(0..parts.len())])
                .collect();
            let v = v.join("/");
            // Mostly errors; what matters is that each call returns.
            let _ = (cvss_v2(&v), cvss_v3(&v), cvss_v4(&v));
        }
        let mut scored = 0;
        // Full v4 vectors with every value, including the environmental ones.
        let values = |m: &str| -> &'static [&'static str] {
            match m {
                "AV" | "MAV" => &["N", "A", "L", "P"],
                "AC" | "MAC" => &["L", "H"],
                "AT" | "MAT" => &["N", "P"],
                "PR" | "MPR" => &["N", "L", "H"],
                "UI" | "MUI" => &["N", "P", "A"],
                "MSI" | "MSA" => &["N", "L", "H", "S"],
                "E" => &["X", "A", "P", "U"],
                _ => &["N", "L", "H"],
            }
        };
        for _ in 0..3000 {
            let mut v = String::from("CVSS:4.0");
            for m in [
                "AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA", "E", "MAV",
                "MAC", "MAT", "MPR", "MUI", "MVC", "MSI", "MSA",
            ] {
                let opts = values(m);
                let _ = write!(v, "/{m}:{}", opts[rng.gen_range(0..opts.len())]);
            }
            let (s, score) = cvss_v4(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert!(
                (0.0..=10.0).contains(&score) && s == Severity::from_cvss_score(score),
                "{v}"
            );
            scored += 1;
        }
        assert_eq!(scored, 3000);
    }
}
