//! Exit codes that scripts can rely on, and the failures that carry them.

use patchaudit_domain::IndexedFieldError;
use std::fmt;

/// The process exit codes. They are part of the CLI's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Something unexpected went wrong.
    Error = 1,
    /// The command line itself is wrong (also clap's own code).
    Usage = 2,
    /// The input events are invalid or malformed; nothing was recorded.
    Invalid = 3,
    /// An event_id is already recorded with different content; nothing was recorded.
    Conflict = 4,
    /// The thing asked for does not exist.
    NotFound = 5,
    /// The server or database is unreachable; retrying is safe.
    Unavailable = 6,
    /// Verification failed: the ledger, a proof or a checkpoint does not
    /// check out (tampering, a fork, or the wrong key).
    Unverified = 7,
    /// `report --fail-on-overdue` found overdue (system, patch) pairs.
    Overdue = 8,
    /// The server refused the credentials: no token, an unknown or revoked
    /// one, or one without the scope or the right to write that system.
    Denied = 9,
}

/// A failure with a message, optional detail lines, and an exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: Code,
    /// One line saying what went wrong.
    pub message: String,
    /// Further lines, such as one per invalid field.
    pub details: Vec<String>,
}

impl Failure {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// An unexpected error.
    pub fn error(m: impl Into<String>) -> Self {
        Self::new(Code::Error, m)
    }

    /// A failed verification.
    pub fn unverified(m: impl Into<String>) -> Self {
        Self::new(Code::Unverified, m)
    }

    /// A command-line mistake.
    pub fn usage(m: impl Into<String>) -> Self {
        Self::new(Code::Usage, m)
    }

    /// Invalid input.
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(Code::Invalid, m)
    }

    /// An idempotency conflict.
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(Code::Conflict, m)
    }

    /// Something that does not exist.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(Code::NotFound, m)
    }

    /// Overdue pairs, for `report --fail-on-overdue`.
    pub fn overdue(m: impl Into<String>) -> Self {
        Self::new(Code::Overdue, m)
    }

    /// An unreachable server or database.
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, m)
    }

    /// Validation errors, one detail line each; `locate` turns an event index
    /// into a human position such as "line 7".
    pub fn validation(errors: &[IndexedFieldError], locate: &dyn Fn(usize) -> String) -> Self {
        let mut f = Self::invalid(format!(
            "{} problem(s) in the events; nothing was recorded",
            errors.len()
        ));
        f.details = errors
            .iter()
            .map(|e| {
                let field = if e.error.field.is_empty() {
                    "(event)"
                } else {
                    &e.error.field
                };
                format!(
                    "{}: {field}: {} [{}]",
                    locate(e.index),
                    e.error.message,
                    e.error.code
                )
            })
            .collect();
        f
    }

    /// Translates a server's problem document.
    pub fn from_problem(status: u16, body: &[u8]) -> Self {
        let code = match status {
            400 | 413 | 415 | 422 => Code::Invalid,
            409 => Code::Conflict,
            404 => Code::NotFound,
            401 | 403 => Code::Denied,
            408 | 429 | 502..=504 => Code::Unavailable,
            _ => Code::Error,
        };
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let detail = v["detail"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        let mut f = Self::new(code, format!("the server answered {status}: {detail}"));
        if let Some(errors) = v["errors"].as_array() {
            f.details = errors
                .iter()
                .map(|e| {
                    let at = e["index"]
                        .as_u64()
                        .map(|i| format!("event {i}: "))
                        .unwrap_or_default();
                    format!(
                        "{at}{}: {} [{}]",
                        e["field"].as_str().unwrap_or(""),
                        e["message"].as_str().unwrap_or(""),
                        e["code"].as_str().unwrap_or("")
                    )
                })
                .collect();
        }
        f
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for d in &self.details {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_map_to_exit_codes_and_list_errors() {
        let body = br#"{"detail":"2 problem(s)","errors":[{"index":1,"field":"system","code":"required","message":"is required"}]}"#;
        let f = Failure::from_problem(422, body);
        assert_eq!(f.code, Code::Invalid);
        assert_eq!(f.details, vec!["event 1: system: is required [required]"]);
        assert_eq!(Failure::from_problem(409, b"{}").code, Code::Conflict);
        assert_eq!(Failure::from_problem(503, b"{}").code, Code::Unavailable);
        assert_eq!(Failure::from_problem(500, b"oops").code, Code::Error);
    }
}
