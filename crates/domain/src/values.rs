//! Validated value types. Each one can only be built through `parse`, so a
//! value of the type is proof that the rules held.

use crate::error::ErrorCode;
use std::fmt;

/// The rules for a bounded piece of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimit {
    /// The most characters (Unicode scalar values) allowed.
    pub max_chars: usize,
    /// Whether control characters (C0, DEL, C1) are rejected.
    pub forbid_control: bool,
}

impl TextLimit {
    /// Checks `s` against the limit, returning the code and a message on failure.
    ///
    /// NUL is always rejected, even where other control characters are allowed,
    /// because PostgreSQL cannot store it in text and the two backends must
    /// accept exactly the same events.
    pub fn check(self, s: &str) -> Result<(), (ErrorCode, String)> {
        if s.is_empty() {
            return Err((ErrorCode::Empty, "must not be empty".into()));
        }
        let n = s.chars().count();
        if n > self.max_chars {
            return Err((
                ErrorCode::TooLong,
                format!("must be at most {} characters, got {n}", self.max_chars),
            ));
        }
        if let Some((pos, c)) = s
            .chars()
            .enumerate()
            .find(|&(_, c)| c == '\0' || (self.forbid_control && c.is_control()))
        {
            return Err((
                ErrorCode::ControlCharacter,
                format!(
                    "must not contain control characters (found U+{:04X} at character {pos})",
                    c as u32
                ),
            ));
        }
        Ok(())
    }
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The rules this type enforces.
            pub const LIMIT: TextLimit = TextLimit { max_chars: $max, forbid_control: true };

            /// Validates `s` and wraps it.
            pub fn parse(s: impl Into<String>) -> Result<Self, (ErrorCode, String)> {
                let s = s.into();
                Self::LIMIT.check(&s)?;
                Ok($name(s))
            }

            /// The text itself.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the text.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Eq, Ord and Hash are the inner string's, so sets and maps of the
        // newtype can be searched with a plain `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

text_newtype!(
    /// The identifier of a patch or advisory: 1–256 characters, no control characters.
    PatchId,
    256
);
text_newtype!(
    /// The identifier of a system (host, VM, container image): 1–255 characters,
    /// no control characters.
    SystemId,
    255
);
text_newtype!(
    /// The client's idempotency key: 1–128 characters, no control characters.
    EventId,
    128
);

/// A CVE identifier of the form `CVE-YYYY-NNNN…` (four or more digits in the
/// sequence part, as MITRE has allowed since 2014).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CveId(String);

impl CveId {
    /// The longest sequence part accepted; far beyond any real id, it only
    /// bounds storage.
    const MAX_SEQUENCE_DIGITS: usize = 19;

    /// Validates `s` as a CVE id. Case matters: ids are written upper-case.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a CVE id of the form CVE-YYYY-NNNN");
        let rest = s.strip_prefix("CVE-").ok_or_else(bad)?;
        let (year, seq) = rest.split_once('-').ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if year.len() != 4 || !digits(year) {
            return Err(bad());
        }
        if seq.len() < 4 || seq.len() > Self::MAX_SEQUENCE_DIGITS || !digits(seq) {
            return Err(bad());
        }
        Ok(CveId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_id_boundaries() {
        assert!(PatchId::parse("a").is_ok());
        assert!(PatchId::parse("x".repeat(256)).is_ok());
        assert_eq!(
            PatchId::parse("x".repeat(257)).unwrap_err().0,
            ErrorCode::TooLong
        );
        assert_eq!(PatchId::parse("").unwrap_err().0, ErrorCode::Empty);
        // Characters, not bytes: 256 three-byte characters are fine.
        assert!(PatchId::parse("€".repeat(256)).is_ok());
        assert_eq!(
            PatchId::parse("KB1\n").unwrap_err().0,
            ErrorCode::ControlCharacter
        );
    }

    #[test]
    fn system_id_boundaries() {
        assert!(SystemId::parse("s".repeat(255)).is_ok());
        assert_eq!(
            SystemId::parse("s".repeat(256)).unwrap_err().0,
            ErrorCode::TooLong
        );
        assert_eq!(SystemId::parse("").unwrap_err().0, ErrorCode::Empty);
        assert_eq!(
            SystemId::parse("web\u{7f}01").unwrap_err().0,
            ErrorCode::ControlCharacter
        );
        assert_eq!(
            SystemId::parse("web\u{85}01").unwrap_err().0,
            ErrorCode::ControlCharacter,
            "C1 controls count too"
        );
    }

    #[test]
    fn event_id_boundaries() {
        assert!(EventId::parse("e".repeat(128)).is_ok());
        assert_eq!(
            EventId::parse("e".repeat(129)).unwrap_err().0,
            ErrorCode::TooLong
        );
        assert_eq!(EventId::parse("").unwrap_err().0, ErrorCode::Empty);
        assert_eq!(
            EventId::parse("a\tb").unwrap_err().0,
            ErrorCode::ControlCharacter
        );
    }

    #[test]
    fn nul_is_rejected_even_where_controls_are_allowed() {
        let lenient = TextLimit {
            max_chars: 10,
            forbid_control: false,
        };
        assert!(lenient.check("a\nb\tc").is_ok());
        assert_eq!(
            lenient.check("a\0b").unwrap_err().0,
            ErrorCode::ControlCharacter
        );
    }

    #[test]
    fn cve_ids() {
        for ok in ["CVE-2024-1234", "CVE-2021-44228", "CVE-1999-0001234"] {
            assert!(CveId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "cve-2024-1234",
            "CVE-24-1234",
            "CVE-2024-123",
            "CVE-2024-12a4",
            "CVE-2024",
            "CVE-2024-",
            "GHSA-xxxx-yyyy-zzzz",
            " CVE-2024-1234",
            "CVE-2024-12345678901234567890",
        ] {
            assert!(CveId::parse(bad).is_err(), "{bad}");
        }
    }
}
