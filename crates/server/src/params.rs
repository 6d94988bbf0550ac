//! Strict parsing of query parameters: unknown or repeated parameters and
//! malformed values are errors that name the parameter, never ignored.

use crate::error::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use patchaudit_domain::{ErrorCode, EventFilter, FieldError, Status, Timestamp};

/// Query parameters being consumed one by one.
pub struct Params {
    pairs: Vec<(String, String)>,
    errors: Vec<FieldError>,
}

impl Params {
    /// Splits a raw query string.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| {
                ApiError::BadParameters(vec![FieldError::new(
                    "query",
                    ErrorCode::Format,
                    format!("the query string cannot be decoded: {e}"),
                )])
            })?;
        Ok(Params {
            pairs,
            errors: Vec::new(),
        })
    }

    /// Removes and returns a parameter; a repeated one is an error.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let mut found: Vec<String> = Vec::new();
        self.pairs.retain(|(k, v)| {
            if k == name {
                found.push(v.clone());
                false
            } else {
                true
            }
        });
        if found.len() > 1 {
            self.error(name, ErrorCode::DuplicateField, "is given more than once");
        }
        found.pop()
    }

    /// Records a problem with a parameter.
    pub fn error(&mut self, name: &str, code: ErrorCode, message: impl Into<String>) {
        self.errors.push(FieldError::new(name, code, message));
    }

    /// Whether a problem was already recorded for `name`.
    pub fn has_error(&self, name: &str) -> bool {
        self.errors.iter().any(|e| e.field == name)
    }

    /// Takes a parameter and converts it, recording a problem on failure.
    pub fn take_with<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let v = self.take(name)?;
        match f(&v) {
            Ok(t) => Some(t),
            Err(m) => {
                self.error(name, ErrorCode::Format, m);
                None
            }
        }
    }

    /// Finishes: any parameter not taken is unknown, and every problem found
    /// so far is returned at once.
    pub fn finish(mut self, accepted: &[&str]) -> Result<(), ApiError> {
        let leftover: Vec<String> = self.pairs.iter().map(|(k, _)| k.clone()).collect();
        for k in leftover {
            self.error(
                &k,
                ErrorCode::UnknownField,
                format!(
                    "is not a parameter of this endpoint (accepted: {})",
                    accepted.join(", ")
                ),
            );
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::BadParameters(self.errors))
        }
    }
}

fn nonempty(v: &str) -> Result<String, String> {
    if v.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(v.to_owned())
    }
}

fn timestamp(v: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(v)
}

/// Parses a non-negative integer parameter.
pub fn unsigned(v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("must be a non-negative integer, got {v:?}"))
}

/// The filter parameters shared by every event listing.
pub const FILTER_PARAMS: [&str; 8] = [
    "system",
    "patch_id",
    "status",
    "source",
    "applied_from",
    "applied_to",
    "seq_from",
    "seq_to",
];

/// Reads the filter parameters; `system` is skipped when the path fixes it.
pub fn take_filter(p: &mut Params, with_system: bool) -> EventFilter {
    EventFilter {
        system: if with_system {
            p.take_with("system", nonempty)
        } else {
            None
        },
        patch_id: p.take_with("patch_id", nonempty),
        status: p.take_with("status", |v| v.parse::<Status>()),
        source: p.take_with("source", nonempty),
        applied_from: p.take_with("applied_from", timestamp),
        applied_to: p.take_with("applied_to", timestamp),
        seq_from: p.take_with("seq_from", unsigned),
        seq_to: p.take_with("seq_to", unsigned),
    }
}

const CURSOR_PREFIX: &str = "c1:";

/// Encodes an opaque cursor that resumes a listing after `key`.
pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{key}"))
}

/// Decodes a cursor made by [`encode_cursor`].
pub fn decode_cursor(cursor: &str) -> Result<String, String> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix(CURSOR_PREFIX).map(str::to_owned))
        .ok_or_else(|| "is not a cursor returned by this API".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor("41");
        assert_eq!(decode_cursor(&c).unwrap(), "41");
        assert!(decode_cursor("41").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("x:41")).is_err());
    }

    #[test]
    fn unknown_repeated_and_malformed_parameters_are_all_reported() {
        let mut p =
            Params::parse(Some("status=ok&seq_from=-1&system=a&system=b&colour=red")).unwrap();
        let _ = take_filter(&mut p, true);
        let Err(ApiError::BadParameters(errs)) = p.finish(&FILTER_PARAMS) else {
            panic!("expected errors")
        };
        let fields: Vec<_> = errs.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert!(fields.contains(&("status", ErrorCode::Format)));
        assert!(fields.contains(&("seq_from", ErrorCode::Format)));
        assert!(fields.contains(&("system", ErrorCode::DuplicateField)));
        assert!(fields.contains(&("colour", ErrorCode::UnknownField)));
    }
}
