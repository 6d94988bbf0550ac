//! SLA policy: how many days each severity may stay unpatched after its
//! release, and after how long a silent system counts as stale.

use crate::catalog::Severity;
use crate::tags::{Tag, Tags};
use crate::DAY_MICROS;
use patchaudit_domain::{ErrorCode, FieldError, Timestamp};

/// Days allowed per severity; `None` means no deadline. `none`-severity
/// patches never have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaDays {
    /// Days for critical patches.
    pub critical: Option<u32>,
    /// Days for high patches.
    pub high: Option<u32>,
    /// Days for medium patches.
    pub medium: Option<u32>,
    /// Days for low patches.
    pub low: Option<u32>,
}

impl SlaDays {
    /// The defaults: critical 30 days (PCI DSS 6.3.3), high 30, medium 90, low 180.
    pub const DEFAULT: SlaDays = SlaDays {
        critical: Some(30),
        high: Some(30),
        medium: Some(90),
        low: Some(180),
    };

    /// The days allowed for `severity`.
    pub fn days(&self, severity: Severity) -> Option<u32> {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::None => None,
        }
    }
}

/// Days that apply to the systems carrying one tag instead of the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedSla {
    /// The systems this applies to.
    pub tag: Tag,
    /// Their days.
    pub days: SlaDays,
}

/// The whole SLA policy, which is one document with its own history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaPolicy {
    /// Days for systems no scope matches.
    pub default: SlaDays,
    /// Overrides for tagged systems. When several match a system, the
    /// strictest (fewest days) wins per severity: an auditor never gets a
    /// longer deadline because a system happens to carry two tags.
    pub scoped: Vec<ScopedSla>,
    /// A system not heard from for this many days is stale.
    pub stale_after_days: u32,
}

impl Default for SlaPolicy {
    fn default() -> Self {
        SlaPolicy {
            default: SlaDays::DEFAULT,
            scoped: Vec::new(),
            stale_after_days: 7,
        }
    }
}

impl SlaPolicy {
    /// The longest SLA or staleness window accepted, in days (ten years).
    pub const MAX_DAYS: u32 = 3650;

    /// Checks the limits every field must respect.
    pub fn validate(self) -> Result<SlaPolicy, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut check = |field: String, d: &SlaDays| {
            for (name, v) in [
                ("critical", d.critical),
                ("high", d.high),
                ("medium", d.medium),
                ("low", d.low),
            ] {
                if v.is_some_and(|v| v > Self::MAX_DAYS) {
                    errors.push(FieldError::new(
                        format!("{field}.{name}"),
                        ErrorCode::InvalidValue,
                        format!("{field}.{name} must be at most {} days", Self::MAX_DAYS),
                    ));
                }
            }
        };
        check("default".into(), &self.default);
        for (i, s) in self.scoped.iter().enumerate() {
            check(format!("scoped[{i}].days"), &s.days);
        }
        if self.stale_after_days == 0 || self.stale_after_days > Self::MAX_DAYS {
            errors.push(FieldError::new(
                "stale_after_days",
                ErrorCode::InvalidValue,
                format!("stale_after_days must be between 1 and {}", Self::MAX_DAYS),
            ));
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(errors)
        }
    }

    /// The days allowed for a patch of `severity` on a system with `tags`.
    pub fn days_for(&self, severity: Severity, tags: &Tags) -> Option<u32> {
        let mut scoped = self
            .scoped
            .iter()
            .filter(|s| tags.has(&s.tag))
            .map(|s| s.days.days(severity))
            .peekable();
        if scoped.peek().is_none() {
            return self.default.days(severity);
        }
        // The strictest defined deadline; "no deadline" only if no scope sets one.
        scoped.flatten().min()
    }

    /// The deadline of a patch released at `released_at`, or `None` if its
    /// severity has no SLA for this system.
    pub fn deadline(
        &self,
        severity: Severity,
        tags: &Tags,
        released_at: Timestamp,
    ) -> Option<Timestamp> {
        self.days_for(severity, tags)
            .map(|d| released_at.saturating_add_micros(i64::from(d) * DAY_MICROS))
    }

    /// Whether a system last seen at `last_seen` is stale at `at`.
    pub fn is_stale(&self, last_seen: Option<Timestamp>, at: Timestamp) -> bool {
        match last_seen {
            None => true,
            Some(seen) => {
                at.as_micros().saturating_sub(seen.as_micros())
                    > i64::from(self.stale_after_days) * DAY_MICROS
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(v: &[&str]) -> Tags {
        Tags::parse(v.iter().copied(), "tags").unwrap()
    }

    #[test]
    fn defaults_follow_pci_dss() {
        let p = SlaPolicy::default();
        assert_eq!(p.days_for(Severity::Critical, &Tags::default()), Some(30));
        assert_eq!(p.days_for(Severity::High, &Tags::default()), Some(30));
        assert_eq!(p.days_for(Severity::Medium, &Tags::default()), Some(90));
        assert_eq!(p.days_for(Severity::Low, &Tags::default()), Some(180));
        assert_eq!(p.days_for(Severity::None, &Tags::default()), None);
        let r = Timestamp::parse_rfc3339("2024-01-01T00:00:00Z").unwrap();
        assert_eq!(
            p.deadline(Severity::Critical, &Tags::default(), r)
                .unwrap()
                .to_rfc3339(),
            "2024-01-31T00:00:00.000000Z"
        );
    }

    #[test]
    fn the_strictest_matching_scope_wins() {
        let p = SlaPolicy {
            scoped: vec![
                ScopedSla {
                    tag: Tag::parse("pci=in-scope", "t").unwrap(),
                    days: SlaDays {
                        critical: Some(14),
                        high: None,
                        ..SlaDays::DEFAULT
                    },
                },
                ScopedSla {
                    tag: Tag::parse("env=prod", "t").unwrap(),
                    days: SlaDays {
                        critical: Some(21),
                        high: Some(20),
                        ..SlaDays::DEFAULT
                    },
                },
            ],
            ..SlaPolicy::default()
        };
        let both = tags(&["pci=in-scope", "env=prod"]);
        assert_eq!(p.days_for(Severity::Critical, &both), Some(14));
        assert_eq!(
            p.days_for(Severity::High, &both),
            Some(20),
            "a scope without a deadline does not lift another's"
        );
        assert_eq!(p.days_for(Severity::High, &tags(&["pci=in-scope"])), None);
        assert_eq!(
            p.days_for(Severity::Critical, &tags(&["env=dev"])),
            Some(30),
            "unscoped systems get the default"
        );
    }

    #[test]
    fn staleness_counts_whole_windows() {
        let p = SlaPolicy::default();
        let seen = Timestamp::parse_rfc3339("2024-01-01T00:00:00Z").unwrap();
        let at = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        assert!(!p.is_stale(Some(seen), at("2024-01-08T00:00:00Z")));
        assert!(p.is_stale(Some(seen), at("2024-01-08T00:00:01Z")));
        assert!(p.is_stale(None, seen), "a system never heard from is stale");
    }

    #[test]
    fn validation_names_the_field() {
        let e = SlaPolicy {
            stale_after_days: 0,
            ..SlaPolicy::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e[0].field, "stale_after_days");
        let e = SlaPolicy {
            scoped: vec![ScopedSla {
                tag: Tag::parse("a=b", "t").unwrap(),
                days: SlaDays {
                    low: Some(4000),
                    ..SlaDays::DEFAULT
                },
            }],
            ..SlaPolicy::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            (e[0].field.as_str(), e[0].code),
            ("scoped[0].days.low", ErrorCode::InvalidValue)
        );
    }
}
