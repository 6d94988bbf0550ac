//! What the server reads from an `Authorization` header and a token request
//! takes any input without panicking, and keeps its promises:
//!
//! - `BearerToken::parse` accepts exactly `pa_` + 16 lowercase hex digits +
//!   `_` + 43 base64url characters, and an accepted token reveals itself as
//!   the same string; its `Debug` output never contains the secret;
//! - `SystemPattern::matches` agrees with a textbook dynamic-programming
//!   wildcard matcher written here, and a pattern matches itself when it
//!   has no `?`;
//! - `Scopes::parse` either fails or gives a non-empty set whose display
//!   parses back to the same set.
//!
//! The input is split at the first 0xff byte: the part before is the header
//! value or pattern, the part after the system id.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patchaudit_domain::access::{BearerToken, Scopes, SystemPattern};

/// The textbook dynamic-programming wildcard match: `m[i][j]` says whether
/// the first `i` pattern characters match the first `j` of the system.
fn reference(p: &[char], s: &[char]) -> bool {
    let mut m = vec![vec![false; s.len() + 1]; p.len() + 1];
    m[0][0] = true;
    for i in 1..=p.len() {
        for j in 0..=s.len() {
            m[i][j] = match p[i - 1] {
                '*' => m[i - 1][j] || (j > 0 && m[i][j - 1]),
                '?' => j > 0 && m[i - 1][j - 1],
                c => j > 0 && s[j - 1] == c && m[i - 1][j - 1],
            };
        }
    }
    m[p.len()][s.len()]
}

fuzz_target!(|data: &[u8]| {
    let (left, right) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    let Ok(text) = std::str::from_utf8(left) else {
        return;
    };

    if let Ok(t) = BearerToken::parse(text) {
        assert_eq!(t.reveal(), text);
        let rest = &text[3..];
        assert_eq!(rest.len(), 16 + 1 + 43);
        assert!(rest[..16].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(!format!("{t:?}").contains(t.secret()));
    } else {
        assert!(
            !(text.len() == 63
                && text.starts_with("pa_")
                && text.as_bytes()[19] == b'_'
                && text.as_bytes()[3..19]
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                && text.as_bytes()[20..]
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')),
            "a well-formed token was refused: {text:?}"
        );
    }

    if let Ok(p) = SystemPattern::parse(text, "p") {
        if let Ok(system) = std::str::from_utf8(right) {
            let pc: Vec<char> = text.chars().collect();
            let sc: Vec<char> = system.chars().collect();
            if pc.len() <= 64 && sc.len() <= 256 {
                assert_eq!(p.matches(system), reference(&pc, &sc), "{text:?} vs {system:?}");
            }
        }
        if !text.contains('?') {
            assert!(p.matches(text), "{text:?} must match itself");
        }
    }

    if let Ok(s) = Scopes::parse(&[text], "scopes") {
        assert!(s.iter().next().is_some());
        assert_eq!(Scopes::parse(&[s.to_string()], "scopes"), Ok(s));
    }
});
