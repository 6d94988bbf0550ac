//! Exceptions: a risk that someone with authority accepted, for a patch on a
//! system or a tag scope, until an expiry date.

use crate::tags::{Tag, Tags};
use patchaudit_domain::{ErrorCode, FieldError, PatchId, SystemId, Timestamp};

/// Which systems an exception covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExceptionScope {
    /// One system.
    System(SystemId),
    /// Every system carrying the tag.
    Tag(Tag),
}

impl ExceptionScope {
    /// Whether the scope covers `system`, which carries `tags`.
    pub fn covers(&self, system: &str, tags: &Tags) -> bool {
        match self {
            ExceptionScope::System(s) => s.as_str() == system,
            ExceptionScope::Tag(t) => tags.has(t),
        }
    }
}

/// An exception as an edge received it.
#[derive(Debug, Clone, Default)]
pub struct RawException {
    /// The patch it excuses.
    pub patch_id: Option<String>,
    /// One system...
    pub system: Option<String>,
    /// ...or one tag (`key=value`), not both.
    pub tag: Option<String>,
    /// Why the risk is accepted.
    pub reason: Option<String>,
    /// Who approved it.
    pub approver: Option<String>,
    /// RFC 3339; the exception stops counting at this instant.
    pub expires_at: Option<String>,
}

/// A validated exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    /// Its id, assigned when it is created.
    pub id: String,
    /// The patch it excuses.
    pub patch_id: PatchId,
    /// The systems it covers.
    pub scope: ExceptionScope,
    /// Why the risk is accepted.
    pub reason: String,
    /// Who approved it.
    pub approver: String,
    /// When it was created; it counts from then.
    pub created_at: Timestamp,
    /// When it stops counting.
    pub expires_at: Timestamp,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

fn text(field: &str, v: Option<String>, max: usize) -> Result<String, FieldError> {
    let v = v.ok_or_else(|| {
        FieldError::new(field, ErrorCode::Required, format!("{field} is required"))
    })?;
    if v.trim().is_empty() {
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
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(FieldError::new(
            field,
            ErrorCode::ControlCharacter,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(v)
}

impl Exception {
    /// Validates a new exception created at `now` under `id`. The expiry
    /// must lie after `now`: an exception that never counted is a mistake.
    pub fn parse(
        raw: RawException,
        id: String,
        now: Timestamp,
    ) -> Result<Exception, Vec<FieldError>> {
        let mut errors = Vec::new();
        let patch_id = match raw.patch_id {
            None => {
                errors.push(FieldError::new(
                    "patch_id",
                    ErrorCode::Required,
                    "patch_id is required",
                ));
                None
            }
            Some(p) => PatchId::parse(p)
                .map_err(|(c, m)| {
                    errors.push(FieldError::new("patch_id", c, format!("patch_id {m}")))
                })
                .ok(),
        };
        let scope = match (raw.system, raw.tag) {
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "scope",
                    ErrorCode::InvalidValue,
                    "give system or tag, not both",
                ));
                None
            }
            (None, None) => {
                errors.push(FieldError::new(
                    "scope",
                    ErrorCode::Required,
                    "an exception needs a system or a tag",
                ));
                None
            }
            (Some(s), None) => SystemId::parse(s)
                .map(ExceptionScope::System)
                .map_err(|(c, m)| errors.push(FieldError::new("system", c, format!("system {m}"))))
                .ok(),
            (None, Some(t)) => Tag::parse(&t, "tag")
                .map(ExceptionScope::Tag)
                .map_err(|e| errors.push(e))
                .ok(),
        };
        let reason = text("reason", raw.reason, 4096)
            .map_err(|e| errors.push(e))
            .ok();
        let approver = text("approver", raw.approver, 256)
            .map_err(|e| errors.push(e))
            .ok();
        let expires_at = match raw.expires_at {
            None => {
                errors.push(FieldError::new(
                    "expires_at",
                    ErrorCode::Required,
                    "expires_at is required: exceptions always expire",
                ));
                None
            }
            Some(s) => match Timestamp::parse_rfc3339(&s) {
                Err(m) => {
                    errors.push(FieldError::new(
                        "expires_at",
                        ErrorCode::Format,
                        format!("expires_at {m}"),
                    ));
                    None
                }
                Ok(t) if t <= now => {
                    errors.push(FieldError::new(
                        "expires_at",
                        ErrorCode::InvalidValue,
                        format!("expires_at {t} is not in the future"),
                    ));
                    None
                }
                Ok(t) => Some(t),
            },
        };
        match (patch_id, scope, reason, approver, expires_at) {
            (Some(patch_id), Some(scope), Some(reason), Some(approver), Some(expires_at))
                if errors.is_empty() =>
            {
                Ok(Exception {
                    id,
                    patch_id,
                    scope,
                    reason,
                    approver,
                    created_at: now,
                    expires_at,
                    revoked_at: None,
                })
            }
            _ => Err(errors),
        }
    }

    /// Whether the exception counts at `at`: created, not yet expired, not revoked.
    pub fn active_at(&self, at: Timestamp) -> bool {
        self.created_at <= at && at < self.expires_at && self.revoked_at.is_none_or(|r| at < r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn raw() -> RawException {
        RawException {
            patch_id: Some("KB1".into()),
            system: Some("db-1".into()),
            reason: Some("vendor support contract forbids it until Q3".into()),
            approver: Some("ciso@example.com".into()),
            expires_at: Some("2024-03-01T00:00:00Z".into()),
            ..Default::default()
        }
    }

    #[test]
    fn counts_only_between_creation_and_expiry_or_revocation() {
        let mut e = Exception::parse(raw(), "exc-1".into(), t("2024-01-01T00:00:00Z")).unwrap();
        assert!(!e.active_at(t("2023-12-31T23:59:59Z")));
        assert!(e.active_at(t("2024-01-01T00:00:00Z")));
        assert!(e.active_at(t("2024-02-29T23:59:59Z")));
        assert!(
            !e.active_at(t("2024-03-01T00:00:00Z")),
            "an expired exception stops counting"
        );
        e.revoked_at = Some(t("2024-02-01T00:00:00Z"));
        assert!(e.active_at(t("2024-01-31T00:00:00Z")));
        assert!(!e.active_at(t("2024-02-01T00:00:00Z")));
    }

    #[test]
    fn scopes_cover_a_system_or_a_tag() {
        let tags = Tags::parse(["env=prod"], "tags").unwrap();
        let e = Exception::parse(raw(), "x".into(), t("2024-01-01T00:00:00Z")).unwrap();
        assert!(e.scope.covers("db-1", &Tags::default()));
        assert!(!e.scope.covers("db-2", &tags));
        let e = Exception::parse(
            RawException {
                system: None,
                tag: Some("env=prod".into()),
                ..raw()
            },
            "x".into(),
            t("2024-01-01T00:00:00Z"),
        )
        .unwrap();
        assert!(e.scope.covers("db-2", &tags));
    }

    #[test]
    fn every_rule_names_its_field() {
        let now = t("2024-01-01T00:00:00Z");
        let cases: Vec<(RawException, &str, ErrorCode)> = vec![
            (
                RawException {
                    patch_id: None,
                    ..raw()
                },
                "patch_id",
                ErrorCode::Required,
            ),
            (
                RawException {
                    tag: Some("a=b".into()),
                    ..raw()
                },
                "scope",
                ErrorCode::InvalidValue,
            ),
            (
                RawException {
                    system: None,
                    ..raw()
                },
                "scope",
                ErrorCode::Required,
            ),
            (
                RawException {
                    system: None,
                    tag: Some("nokey".into()),
                    ..raw()
                },
                "tag",
                ErrorCode::Format,
            ),
            (
                RawException {
                    system: Some(String::new()),
                    ..raw()
                },
                "system",
                ErrorCode::Empty,
            ),
            (
                RawException {
                    reason: Some("  ".into()),
                    ..raw()
                },
                "reason",
                ErrorCode::Empty,
            ),
            (
                RawException {
                    approver: None,
                    ..raw()
                },
                "approver",
                ErrorCode::Required,
            ),
            (
                RawException {
                    approver: Some("a\u{1b}b".into()),
                    ..raw()
                },
                "approver",
                ErrorCode::ControlCharacter,
            ),
            (
                RawException {
                    expires_at: None,
                    ..raw()
                },
                "expires_at",
                ErrorCode::Required,
            ),
            (
                RawException {
                    expires_at: Some("March".into()),
                    ..raw()
                },
                "expires_at",
                ErrorCode::Format,
            ),
            (
                RawException {
                    expires_at: Some("2023-01-01T00:00:00Z".into()),
                    ..raw()
                },
                "expires_at",
                ErrorCode::InvalidValue,
            ),
        ];
        for (r, field, code) in cases {
            let got: Vec<_> = Exception::parse(r, "x".into(), now)
                .unwrap_err()
                .into_iter()
                .map(|e| (e.field, e.code))
                .collect();
            assert_eq!(
                got,
                vec![(field.to_owned(), code)],
                "expected {field} {code}"
            );
        }
    }
}
