//! The patch catalog: what each patch or advisory is, how severe, since when,
//! and which systems must have it.

use crate::tags::{Tag, Tags};
use patchaudit_domain::{CveId, ErrorCode, FieldError, PatchId, SystemId, Timestamp};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// How severe a patch is, from `none` to `critical`. The order is the
/// severity order, so `Severity::Critical > Severity::High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// No security impact, or none known.
    None,
    /// Low.
    Low,
    /// Medium (also "moderate" in several advisory databases).
    Medium,
    /// High (also "important").
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Every severity, most severe first, as reports list them.
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::None,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The qualitative rating of a CVSS v3/v4 base score (FIRST's table).
    pub fn from_cvss_score(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::None,
        }
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a severity; expected one of critical, high, medium, low, none"
                )
            })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One package an advisory affects, and the version that fixes it there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AffectedPackage {
    /// The ecosystem, as OSV names it (`Debian:12`, `AlmaLinux:9`, `PyPI`...).
    pub ecosystem: String,
    /// The package name in that ecosystem.
    pub name: String,
    /// The first fixed version, when one is known.
    pub fixed: Option<String>,
}

/// Which systems a catalog entry applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppliesTo {
    /// Every system.
    All,
    /// The systems that carry every one of these tags.
    Tags(Vec<Tag>),
    /// Exactly these systems.
    Systems(BTreeSet<SystemId>),
}

impl AppliesTo {
    /// Whether the entry applies to `system`, which carries `tags`.
    pub fn matches(&self, system: &str, tags: &Tags) -> bool {
        match self {
            AppliesTo::All => true,
            AppliesTo::Tags(scope) => tags.has_all(scope),
            AppliesTo::Systems(set) => set.contains(system),
        }
    }
}

/// A catalog entry as an edge received it, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawCatalogEntry {
    /// The patch id; the same `patch_id` events use.
    pub id: Option<String>,
    /// A short human title.
    pub title: Option<String>,
    /// `critical`, `high`, `medium`, `low` or `none`.
    pub severity: Option<String>,
    /// RFC 3339; the SLA clock starts here.
    pub released_at: Option<String>,
    /// RFC 3339; when the advisory last changed upstream.
    pub modified_at: Option<String>,
    /// CVE ids.
    pub cves: Vec<String>,
    /// Other ids of the same advisory (GHSA, USN, ...), CVEs excluded.
    pub aliases: Vec<String>,
    /// Affected packages.
    pub packages: Vec<AffectedPackage>,
    /// `all` (the default), or tags, or systems; at most one of the two lists.
    pub applies_to_tags: Option<Vec<String>>,
    /// An explicit list of systems.
    pub applies_to_systems: Option<Vec<String>>,
}

/// A validated catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The patch id; the same `patch_id` events use.
    pub id: PatchId,
    /// A short human title (at most 512 characters).
    pub title: String,
    /// How severe the patch is.
    pub severity: Severity,
    /// When the fix was released; the SLA clock starts here.
    pub released_at: Timestamp,
    /// When the advisory last changed upstream.
    pub modified_at: Option<Timestamp>,
    /// CVE ids, sorted and deduplicated.
    pub cves: Vec<CveId>,
    /// Other ids of the same advisory, sorted and deduplicated.
    pub aliases: Vec<String>,
    /// Affected packages with their fixed versions, sorted.
    pub packages: Vec<AffectedPackage>,
    /// The systems it applies to.
    pub applies_to: AppliesTo,
}

/// A text field: present if `required`, non-empty, at most `max`
/// characters, and free of control characters.
pub(crate) fn text(
    field: &str,
    v: Option<String>,
    max: usize,
    required: bool,
) -> Result<Option<String>, FieldError> {
    let Some(v) = v else {
        return if required {
            Err(FieldError::new(
                field,
                ErrorCode::Required,
                format!("{field} is required"),
            ))
        } else {
            Ok(None)
        };
    };
    if v.is_empty() {
        return Err(FieldError::new(
            field,
            ErrorCode::Empty,
            format!("{field} must not be empty"),
        ));
    }
    if v.chars().count() > max {
        return Err(FieldError::new(
            field,
            ErrorCode::TooLong,
            format!("{field} is longer than {max} characters"),
        ));
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(FieldError::new(
            field,
            ErrorCode::ControlCharacter,
            format!(
                "{field} must not contain control characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(Some(v))
}

fn time(field: &str, v: Option<String>) -> Result<Option<Timestamp>, FieldError> {
    v.map(|s| {
        Timestamp::parse_rfc3339(&s)
            .map_err(|m| FieldError::new(field, ErrorCode::Format, format!("{field} {m}")))
    })
    .transpose()
}

impl CatalogEntry {
    /// At most this many packages, CVEs or aliases per entry.
    pub const MAX_LIST: usize = 10_000;

    /// Validates a raw entry, reporting every problem at once.
    pub fn parse(raw: RawCatalogEntry) -> Result<CatalogEntry, Vec<FieldError>> {
        let mut errors = Vec::new();
        let id = match raw.id {
            None => {
                errors.push(FieldError::new("id", ErrorCode::Required, "id is required"));
                None
            }
            Some(s) => PatchId::parse(s)
                .map_err(|(code, m)| errors.push(FieldError::new("id", code, format!("id {m}"))))
                .ok(),
        };
        let title = text("title", raw.title, 512, false).unwrap_or_else(|e| {
            errors.push(e);
            None
        });
        let severity = match raw.severity {
            None => {
                errors.push(FieldError::new(
                    "severity",
                    ErrorCode::Required,
                    "severity is required",
                ));
                None
            }
            Some(s) => s
                .parse::<Severity>()
                .map_err(|m| errors.push(FieldError::new("severity", ErrorCode::InvalidValue, m)))
                .ok(),
        };
        let released_at = match raw.released_at {
            None => {
                errors.push(FieldError::new(
                    "released_at",
                    ErrorCode::Required,
                    "released_at is required: the SLA clock starts there",
                ));
                None
            }
            Some(s) => time("released_at", Some(s)).unwrap_or_else(|e| {
                errors.push(e);
                None
            }),
        };
        let modified_at = time("modified_at", raw.modified_at).unwrap_or_else(|e| {
            errors.push(e);
            None
        });
        let mut cves = BTreeSet::new();
        for (i, c) in raw.cves.iter().enumerate() {
            match CveId::parse(c) {
                Ok(c) => {
                    cves.insert(c);
                }
                Err(m) => errors.push(FieldError::new(format!("cves[{i}]"), ErrorCode::Format, m)),
            }
        }
        let mut aliases = BTreeSet::new();
        for (i, a) in raw.aliases.into_iter().enumerate() {
            match text(&format!("aliases[{i}]"), Some(a), 256, true) {
                Ok(Some(a)) => {
                    aliases.insert(a);
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        let mut packages = BTreeSet::new();
        for (i, p) in raw.packages.into_iter().enumerate() {
            let f = |part: &str| format!("packages[{i}].{part}");
            let eco = text(&f("ecosystem"), Some(p.ecosystem), 128, true);
            let name = text(&f("name"), Some(p.name), 256, true);
            let fixed = text(&f("fixed"), p.fixed, 256, false);
            match (eco, name, fixed) {
                (Ok(Some(ecosystem)), Ok(Some(name)), Ok(fixed)) => {
                    packages.insert(AffectedPackage {
                        ecosystem,
                        name,
                        fixed,
                    });
                }
                (e, n, x) => errors.extend([e.err(), n.err(), x.err()].into_iter().flatten()),
            }
        }
        for (field, n) in [
            ("cves", cves.len()),
            ("aliases", aliases.len()),
            ("packages", packages.len()),
        ] {
            if n > Self::MAX_LIST {
                errors.push(FieldError::new(
                    field,
                    ErrorCode::TooLong,
                    format!("{field} has more than {} items", Self::MAX_LIST),
                ));
            }
        }
        let applies_to = match (raw.applies_to_tags, raw.applies_to_systems) {
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "applies_to",
                    ErrorCode::InvalidValue,
                    "applies_to takes tags or systems, not both",
                ));
                None
            }
            (None, None) => Some(AppliesTo::All),
            (Some(tags), None) => {
                let mut scope = Vec::new();
                for (i, t) in tags.iter().enumerate() {
                    match Tag::parse(t, &format!("applies_to.tags[{i}]")) {
                        Ok(t) => scope.push(t),
                        Err(e) => errors.push(e),
                    }
                }
                if tags.is_empty() {
                    errors.push(FieldError::new(
                        "applies_to.tags",
                        ErrorCode::Empty,
                        "applies_to.tags needs at least one tag; omit applies_to for all systems",
                    ));
                }
                scope.sort();
                scope.dedup();
                Some(AppliesTo::Tags(scope))
            }
            (None, Some(systems)) => {
                let mut set = BTreeSet::new();
                for (i, s) in systems.into_iter().enumerate() {
                    match SystemId::parse(s) {
                        Ok(s) => {
                            set.insert(s);
                        }
                        Err((code, m)) => errors.push(FieldError::new(
                            format!("applies_to.systems[{i}]"),
                            code,
                            format!("system {m}"),
                        )),
                    }
                }
                if set.is_empty() {
                    errors.push(FieldError::new(
                        "applies_to.systems",
                        ErrorCode::Empty,
                        "applies_to.systems needs at least one system; omit applies_to for all systems",
                    ));
                }
                if set.len() > Self::MAX_LIST {
                    errors.push(FieldError::new(
                        "applies_to.systems",
                        ErrorCode::TooLong,
                        format!("at most {} systems", Self::MAX_LIST),
                    ));
                }
                Some(AppliesTo::Systems(set))
            }
        };
        match (id, severity, released_at, applies_to) {
            (Some(id), Some(severity), Some(released_at), Some(applies_to))
                if errors.is_empty() =>
            {
                Ok(CatalogEntry {
                    title: title.unwrap_or_else(|| id.as_str().to_owned()),
                    id,
                    severity,
                    released_at,
                    modified_at,
                    cves: cves.into_iter().collect(),
                    aliases: aliases.into_iter().collect(),
                    packages: packages.into_iter().collect(),
                    applies_to,
                })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawCatalogEntry {
        RawCatalogEntry {
            id: Some("KB5034441".into()),
            title: Some("Windows RE update".into()),
            severity: Some("critical".into()),
            released_at: Some("2024-01-09T00:00:00+01:00".into()),
            cves: vec!["CVE-2024-20666".into(), "CVE-2024-20666".into()],
            ..Default::default()
        }
    }

    fn codes(r: RawCatalogEntry) -> Vec<(String, ErrorCode)> {
        CatalogEntry::parse(r)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn parses_a_minimal_entry() {
        let e = CatalogEntry::parse(raw()).unwrap();
        assert_eq!(e.id.as_str(), "KB5034441");
        assert_eq!(e.severity, Severity::Critical);
        assert_eq!(e.released_at.to_rfc3339(), "2024-01-08T23:00:00.000000Z");
        assert_eq!(e.cves.len(), 1, "CVEs are deduplicated");
        assert_eq!(e.applies_to, AppliesTo::All);
        let untitled = CatalogEntry::parse(RawCatalogEntry {
            title: None,
            ..raw()
        })
        .unwrap();
        assert_eq!(untitled.title, "KB5034441", "the title defaults to the id");
    }

    #[test]
    fn every_required_field_is_named() {
        let got = codes(RawCatalogEntry::default());
        assert_eq!(
            got,
            vec![
                ("id".into(), ErrorCode::Required),
                ("severity".into(), ErrorCode::Required),
                ("released_at".into(), ErrorCode::Required)
            ]
        );
    }

    #[test]
    fn every_rule_reports_its_field() {
        let cases: Vec<(RawCatalogEntry, &str, ErrorCode)> = vec![
            (
                RawCatalogEntry {
                    id: Some(String::new()),
                    ..raw()
                },
                "id",
                ErrorCode::Empty,
            ),
            (
                RawCatalogEntry {
                    id: Some("a".repeat(257)),
                    ..raw()
                },
                "id",
                ErrorCode::TooLong,
            ),
            (
                RawCatalogEntry {
                    title: Some("a\u{7}".into()),
                    ..raw()
                },
                "title",
                ErrorCode::ControlCharacter,
            ),
            (
                RawCatalogEntry {
                    title: Some("t".repeat(513)),
                    ..raw()
                },
                "title",
                ErrorCode::TooLong,
            ),
            (
                RawCatalogEntry {
                    severity: Some("urgent".into()),
                    ..raw()
                },
                "severity",
                ErrorCode::InvalidValue,
            ),
            (
                RawCatalogEntry {
                    released_at: Some("2024-01-09".into()),
                    ..raw()
                },
                "released_at",
                ErrorCode::Format,
            ),
            (
                RawCatalogEntry {
                    modified_at: Some("yesterday".into()),
                    ..raw()
                },
                "modified_at",
                ErrorCode::Format,
            ),
            (
                RawCatalogEntry {
                    cves: vec!["CVE-24-1".into()],
                    ..raw()
                },
                "cves[0]",
                ErrorCode::Format,
            ),
            (
                RawCatalogEntry {
                    aliases: vec![String::new()],
                    ..raw()
                },
                "aliases[0]",
                ErrorCode::Empty,
            ),
            (
                RawCatalogEntry {
                    packages: vec![AffectedPackage {
                        ecosystem: "Debian:12".into(),
                        name: String::new(),
                        fixed: None,
                    }],
                    ..raw()
                },
                "packages[0].name",
                ErrorCode::Empty,
            ),
            (
                RawCatalogEntry {
                    applies_to_tags: Some(vec![]),
                    applies_to_systems: Some(vec![]),
                    ..raw()
                },
                "applies_to",
                ErrorCode::InvalidValue,
            ),
            (
                RawCatalogEntry {
                    applies_to_tags: Some(vec![]),
                    ..raw()
                },
                "applies_to.tags",
                ErrorCode::Empty,
            ),
            (
                RawCatalogEntry {
                    applies_to_systems: Some(vec![]),
                    ..raw()
                },
                "applies_to.systems",
                ErrorCode::Empty,
            ),
            (
                RawCatalogEntry {
                    applies_to_tags: Some(vec!["prod".into()]),
                    ..raw()
                },
                "applies_to.tags[0]",
                ErrorCode::Format,
            ),
            (
                RawCatalogEntry {
                    applies_to_systems: Some(vec!["ok".into(), "x\ny".into()]),
                    ..raw()
                },
                "applies_to.systems[1]",
                ErrorCode::ControlCharacter,
            ),
        ];
        for (r, field, code) in cases {
            let got = codes(r);
            assert_eq!(
                got,
                vec![(field.to_owned(), code)],
                "expected {field} {code}"
            );
        }
    }

    #[test]
    fn scopes_match_tags_or_listed_systems() {
        let tags = Tags::parse(["env=prod", "pci=in-scope"], "tags").unwrap();
        let e = CatalogEntry::parse(RawCatalogEntry {
            applies_to_tags: Some(vec!["pci=in-scope".into()]),
            ..raw()
        })
        .unwrap();
        assert!(e.applies_to.matches("web-1", &tags));
        assert!(!e.applies_to.matches("web-1", &Tags::default()));
        let e = CatalogEntry::parse(RawCatalogEntry {
            applies_to_systems: Some(vec!["db-1".into()]),
            ..raw()
        })
        .unwrap();
        assert!(e.applies_to.matches("db-1", &Tags::default()));
        assert!(!e.applies_to.matches("db-2", &tags));
    }

    #[test]
    fn cvss_scores_map_to_first_ratings() {
        assert_eq!(Severity::from_cvss_score(9.8), Severity::Critical);
        assert_eq!(Severity::from_cvss_score(7.0), Severity::High);
        assert_eq!(Severity::from_cvss_score(6.9), Severity::Medium);
        assert_eq!(Severity::from_cvss_score(0.1), Severity::Low);
        assert_eq!(Severity::from_cvss_score(0.0), Severity::None);
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::None);
    }
}
