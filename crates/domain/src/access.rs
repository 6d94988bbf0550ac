//! Who may do what: API token scopes, token names, the bearer token format
//! and the system patterns that limit where a token may write.
//!
//! These are pure values. Generating secrets, hashing them and storing
//! tokens happen at the edges (the server and the stores).

use crate::{ErrorCode, FieldError};
use std::fmt;

/// What a token is allowed to do. Scopes do not imply one another: a
/// token that should ingest and read needs both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Post events and collector data.
    Ingest,
    /// Queries, reports and proofs.
    Read,
    /// The catalog, policies, exceptions, system tags and tokens.
    Admin,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Admin];

    /// The scope's name, as written in tokens, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    /// Parses one scope name; `field` names the input in the error.
    pub fn parse(s: &str, field: &str) -> Result<Scope, FieldError> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    ErrorCode::InvalidValue,
                    format!("{s:?} is not a scope; the scopes are ingest, read and admin"),
                )
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-empty set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    fn bit(s: Scope) -> u8 {
        match s {
            Scope::Ingest => 1,
            Scope::Read => 2,
            Scope::Admin => 4,
        }
    }

    /// Parses scope names, each of which may itself be a comma-separated
    /// list (`ingest,read`). At least one scope is required; repeats are
    /// harmless.
    pub fn parse<S: AsRef<str>>(names: &[S], field: &str) -> Result<Scopes, FieldError> {
        let mut bits = 0u8;
        for name in names {
            for part in name.as_ref().split(',') {
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                bits |= Scopes::bit(Scope::parse(part, field)?);
            }
        }
        if bits == 0 {
            return Err(FieldError::new(
                field,
                ErrorCode::Required,
                "at least one scope is required: ingest, read or admin",
            ));
        }
        Ok(Scopes(bits))
    }

    /// The set holding exactly these scopes (empty input gives an empty set,
    /// which grants nothing).
    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |b, s| b | Scopes::bit(*s)))
    }

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & Scopes::bit(scope) != 0
    }

    /// The scopes in the set, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// A token's human name, such as `agent-web-01` or `ci-pipeline`: 1–64
/// characters of ASCII letters, digits and `_ . : @ -`. It shows in
/// `recorded_by`, so it stays short and unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenName(String);

impl TokenName {
    /// Parses a name; `field` names the input in the error.
    pub fn parse(s: &str, field: &str) -> Result<TokenName, FieldError> {
        if s.is_empty() {
            return Err(FieldError::new(
                field,
                ErrorCode::Empty,
                "a token needs a name of 1 to 64 characters",
            ));
        }
        if s.chars().count() > 64 {
            return Err(FieldError::new(
                field,
                ErrorCode::TooLong,
                format!("is {} characters; the limit is 64", s.chars().count()),
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '@' | '-')))
        {
            return Err(FieldError::new(
                field,
                ErrorCode::Format,
                format!("contains {c:?}; token names use ASCII letters, digits and _ . : @ -"),
            ));
        }
        Ok(TokenName(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pattern over system ids: `*` matches any run of characters
/// (including none) and `?` exactly one; every other character matches
/// itself, case-sensitively, as system ids are compared everywhere else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SystemPattern(String);

impl SystemPattern {
    /// Parses a pattern of 1–255 characters with no control characters.
    pub fn parse(s: &str, field: &str) -> Result<SystemPattern, FieldError> {
        if s.is_empty() {
            return Err(FieldError::new(
                field,
                ErrorCode::Empty,
                "a system pattern needs 1 to 255 characters, like web-* or db-0?",
            ));
        }
        if s.chars().count() > 255 {
            return Err(FieldError::new(
                field,
                ErrorCode::TooLong,
                "a system pattern is at most 255 characters",
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                ErrorCode::ControlCharacter,
                "a system pattern must not contain control characters",
            ));
        }
        Ok(SystemPattern(s.to_owned()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `system` matches the whole pattern.
    pub fn matches(&self, system: &str) -> bool {
        // The classic two-pointer wildcard match: on a mismatch, let the
        // last `*` swallow one more character. Linear in practice and never
        // exponential, whatever the pattern.
        let p: Vec<char> = self.0.chars().collect();
        let s: Vec<char> = system.chars().collect();
        let (mut pi, mut si) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            // A `*` is a wildcard even where the system has a literal `*`,
            // so it is tested first (the fuzzer found "**" vs "**r").
            if pi < p.len() && p[pi] == '*' {
                star = Some((pi, si));
                pi += 1;
            } else if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
                pi += 1;
                si += 1;
            } else if let Some((sp, ss)) = star {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

impl fmt::Display for SystemPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The prefix of every token, so secret scanners and people can tell a
/// patchaudit token when they see one.
pub const TOKEN_PREFIX: &str = "pa_";

/// The length of a token id: 16 lowercase hex digits (64 bits).
pub const TOKEN_ID_LEN: usize = 16;

/// The length of a token secret: 32 random bytes in unpadded base64url.
pub const TOKEN_SECRET_LEN: usize = 43;

/// A bearer token as a client presents it: `pa_<id>_<secret>`.
///
/// The id is public (it names the token in lists, logs and `recorded_by`);
/// the secret is 256 random bits and is only ever stored as a hash.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    id: String,
    secret: String,
}

impl BearerToken {
    /// Splits a presented token into its id and secret, or says why it is
    /// not a patchaudit token. The message never repeats the secret.
    pub fn parse(s: &str) -> Result<BearerToken, &'static str> {
        let rest = s
            .strip_prefix(TOKEN_PREFIX)
            .ok_or("a patchaudit token starts with pa_")?;
        if rest.len() != TOKEN_ID_LEN + 1 + TOKEN_SECRET_LEN || !rest.is_char_boundary(TOKEN_ID_LEN)
        {
            return Err("the token has the wrong length");
        }
        let (id, secret) = rest.split_at(TOKEN_ID_LEN);
        let secret = secret
            .strip_prefix('_')
            .ok_or("the token's id must be followed by _")?;
        if !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("the token's id must be 16 lowercase hex digits");
        }
        if !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("the token's secret must be base64url");
        }
        Ok(BearerToken {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// Builds a token from an id and a secret made elsewhere, checking both.
    pub fn from_parts(id: &str, secret: &str) -> Result<BearerToken, &'static str> {
        BearerToken::parse(&format!("{TOKEN_PREFIX}{id}_{secret}"))
    }

    /// The public id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret part. Only hash it or hand it to the user once.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The whole token, as the user must present it.
    pub fn reveal(&self) -> String {
        format!("{TOKEN_PREFIX}{}_{}", self.id, self.secret)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A token in a debug log must not be usable.
        write!(f, "BearerToken({TOKEN_PREFIX}{}_<redacted>)", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_lists_and_reject_unknown_names() {
        let s = Scopes::parse(&["ingest,read"], "scope").unwrap();
        assert!(s.contains(Scope::Ingest) && s.contains(Scope::Read));
        assert!(!s.contains(Scope::Admin));
        assert_eq!(s.to_string(), "ingest,read");
        assert_eq!(
            Scopes::parse(&["admin", "admin"], "scope")
                .unwrap()
                .to_string(),
            "admin"
        );
        let e = Scopes::parse(&["write"], "scope").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.code),
            ("scope", ErrorCode::InvalidValue)
        );
        assert!(e.message.contains("\"write\""), "{}", e.message);
        let e = Scopes::parse::<&str>(&[], "scope").unwrap_err();
        assert_eq!(e.code, ErrorCode::Required);
        assert_eq!(
            Scopes::parse(&[" , "], "scope").unwrap_err().code,
            ErrorCode::Required
        );
    }

    #[test]
    fn token_names_are_short_and_plain() {
        assert_eq!(
            TokenName::parse("agent-web-01@dc1", "name")
                .unwrap()
                .as_str(),
            "agent-web-01@dc1"
        );
        assert_eq!(
            TokenName::parse("", "name").unwrap_err().code,
            ErrorCode::Empty
        );
        assert_eq!(
            TokenName::parse(&"a".repeat(65), "name").unwrap_err().code,
            ErrorCode::TooLong
        );
        let e = TokenName::parse("two words", "name").unwrap_err();
        assert_eq!((e.field.as_str(), e.code), ("name", ErrorCode::Format));
        assert!(e.message.contains("' '"), "{}", e.message);
    }

    #[test]
    fn system_patterns_match_whole_ids() {
        let m = |p: &str, s: &str| SystemPattern::parse(p, "p").unwrap().matches(s);
        assert!(m("web-*", "web-01"));
        assert!(m("web-*", "web-"));
        assert!(!m("web-*", "db-web-01"));
        assert!(m("*-01", "web-01"));
        assert!(m("db-0?", "db-07"));
        assert!(!m("db-0?", "db-0"));
        assert!(!m("db-0?", "db-071"));
        assert!(m("*", "anything at all"));
        assert!(m("a*b*c", "a-b-b-c"));
        assert!(!m("a*b*c", "a-b-b-cd"));
        assert!(m("host", "host"));
        assert!(!m("host", "Host"), "matching is case-sensitive");
        assert!(m("ünï*", "ünïcode"), "characters, not bytes");
        // A star stays a wildcard where the system holds a literal star.
        assert!(m("**", "**r"));
        assert!(m("a*", "a*b"));
        // Many stars against a long non-match stays fast (no backtracking blow-up).
        let p = SystemPattern::parse(&"*a".repeat(100), "p").unwrap();
        assert!(!p.matches(&"a".repeat(99)));
    }

    #[test]
    fn system_patterns_reject_empty_long_and_control() {
        assert_eq!(
            SystemPattern::parse("", "systems[0]").unwrap_err().code,
            ErrorCode::Empty
        );
        assert_eq!(
            SystemPattern::parse(&"x".repeat(256), "p")
                .unwrap_err()
                .code,
            ErrorCode::TooLong
        );
        let e = SystemPattern::parse("web\n*", "systems[1]").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.code),
            ("systems[1]", ErrorCode::ControlCharacter)
        );
    }

    #[test]
    fn bearer_tokens_round_trip_and_hide_their_secret() {
        let secret = "A".repeat(42) + "-";
        let t = BearerToken::from_parts("0123456789abcdef", &secret).unwrap();
        let shown = t.reveal();
        assert_eq!(shown, format!("pa_0123456789abcdef_{secret}"));
        assert_eq!(BearerToken::parse(&shown).unwrap(), t);
        assert_eq!(t.id(), "0123456789abcdef");
        let dbg = format!("{t:?}");
        assert!(!dbg.contains(&secret), "{dbg}");
        assert!(dbg.contains("0123456789abcdef"));
    }

    #[test]
    fn bearer_tokens_reject_malformed_input() {
        let good = format!("pa_0123456789abcdef_{}", "x".repeat(43));
        assert!(BearerToken::parse(&good).is_ok());
        for bad in [
            "",
            "Bearer x",
            &good[..good.len() - 1],
            &format!("{good}x"),
            &good.replace("pa_", "pb_"),
            &good.replace("0123456789abcdef", "0123456789ABCDEF"),
            &good.replace("cdef_", "cdefx"),
            &format!("pa_0123456789abcdef_{}!", "x".repeat(42)),
            &format!("pa_0123456789abcdeé{}", "x".repeat(43)),
        ] {
            let e = BearerToken::parse(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad:?}");
        }
    }
}
