//! Version comparison as dpkg and rpm do it.
//!
//! **dpkg** (Debian Policy §5.6.12): a version is `[epoch:]upstream[-revision]`.
//! Epochs compare as numbers. Upstream and revision compare left to right
//! in alternating runs: a run of non-digits compares character by character,
//! where `~` sorts before everything (even the end of the string), then the
//! end, then letters, then all other characters in ASCII order; a run of
//! digits compares as a number. A missing revision equals `0`. The tests run
//! this against the real `dpkg --compare-versions`.
//!
//! **rpm** (`rpmvercmp`): each string is split into runs of digits and runs
//! of letters; every other character only separates. Runs compare pairwise:
//! numbers as numbers (leading zeros ignored), letters as strings, and a
//! number is newer than letters. `~` sorts before everything, even the end;
//! `^` sorts after the end but before any other run. [`rpm_evr_cmp`] adds
//! the epoch (missing is 0) and compares version, then release. The tests
//! run this against the vectors of rpm's own `tests/rpmvercmp.at`.

use std::cmp::Ordering;

/// A parsed Debian version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebVersion<'a> {
    /// The epoch; 0 when absent.
    pub epoch: u32,
    /// The upstream version.
    pub upstream: &'a str,
    /// The Debian revision; empty when absent.
    pub revision: &'a str,
}

/// Why a string is not a valid Debian version. These are the cases where
/// `dpkg --compare-versions` refuses to compare (it only warns about an
/// upstream version that does not start with a digit or holds an unusual
/// character, and compares anyway; so does [`DebVersion::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The string is empty or only spaces.
    #[error("version string is empty")]
    Empty,
    /// It contains a space inside.
    #[error("version string has embedded spaces")]
    EmbeddedSpace,
    /// The epoch is empty, not a number, or too large.
    #[error("epoch in version is empty, not a number or too large")]
    BadEpoch,
    /// The upstream version is empty.
    #[error("version number is empty")]
    EmptyUpstream,
    /// There is a `-` but nothing after it.
    #[error("revision number is empty")]
    EmptyRevision,
}

impl<'a> DebVersion<'a> {
    /// Splits `[epoch:]upstream[-revision]`: the epoch ends at the first
    /// colon, the revision starts after the last hyphen. Leading and
    /// trailing spaces are ignored, as dpkg does.
    pub fn parse(s: &'a str) -> Result<DebVersion<'a>, VersionError> {
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        if s.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(VersionError::EmbeddedSpace);
        }
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VersionError::BadEpoch);
                }
                let n: u32 = e.parse().map_err(|_| VersionError::BadEpoch)?;
                if n > i32::MAX as u32 {
                    return Err(VersionError::BadEpoch);
                }
                (n, rest)
            }
            None => (0, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((_, "")) => return Err(VersionError::EmptyRevision),
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(VersionError::EmptyUpstream);
        }
        Ok(DebVersion {
            epoch,
            upstream,
            revision,
        })
    }
}

impl Ord for DebVersion<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream, other.upstream))
            .then_with(|| verrevcmp(self.revision, other.revision))
    }
}

impl PartialOrd for DebVersion<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two Debian version strings.
pub fn dpkg_cmp(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(DebVersion::parse(a)?.cmp(&DebVersion::parse(b)?))
}

/// The weight of one character in a non-digit run; `None` is the end of the
/// run (or string).
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// rpm's `rpmvercmp`: compares two version (or release) strings.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        // A tilde sorts before everything, even the end.
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        // A caret sorts after the end, but before any other run.
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = ca.is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let (sa, sb) = (i, j);
        while i < a.len() && class(&a[i]) {
            i += 1;
        }
        while j < b.len() && class(&b[j]) {
            j += 1;
        }
        let (mut ra, mut rb) = (&a[sa..i], &b[sb..j]);
        if rb.is_empty() {
            // Different kinds of run: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        if numeric {
            while ra.first() == Some(&b'0') {
                ra = &ra[1..];
            }
            while rb.first() == Some(&b'0') {
                rb = &rb[1..];
            }
            match ra.len().cmp(&rb.len()) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        match ra.cmp(rb) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    match (i < a.len(), j < b.len()) {
        (false, false) => Ordering::Equal,
        (true, _) => Ordering::Greater,
        (false, true) => Ordering::Less,
    }
}

/// An rpm `[epoch:]version[-release]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evr<'a> {
    /// The epoch; 0 when absent or not a number.
    pub epoch: u64,
    /// The version.
    pub version: &'a str,
    /// The release; empty when absent.
    pub release: &'a str,
}

impl<'a> Evr<'a> {
    /// Splits at the first colon (epoch) and the last hyphen (release).
    pub fn parse(s: &'a str) -> Evr<'a> {
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
                (e.parse().unwrap_or(u64::MAX), rest)
            }
            _ => (0, s),
        };
        let (version, release) = rest.rsplit_once('-').unwrap_or((rest, ""));
        Evr {
            epoch,
            version,
            release,
        }
    }
}

impl Ord for Evr<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| rpmvercmp(self.version, other.version))
            .then_with(|| rpmvercmp(self.release, other.release))
    }
}

impl PartialOrd for Evr<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two rpm `[epoch:]version[-release]` strings.
pub fn rpm_evr_cmp(a: &str, b: &str) -> Ordering {
    Evr::parse(a).cmp(&Evr::parse(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn dpkg_basics() {
        let c = |a, b| dpkg_cmp(a, b).unwrap();
        assert_eq!(c("1.0", "1.0"), Equal);
        assert_eq!(c("1.0~rc1", "1.0"), Less);
        assert_eq!(c("1.0", "1.0-0"), Equal);
        assert_eq!(c("1:0.1", "2.0"), Greater);
        assert_eq!(c("1.0a", "1.0+"), Less);
        assert_eq!(c("1.0~~", "1.0~"), Less);
        assert_eq!(c("1.0", "1.00"), Equal);
        assert_eq!(c("2.0.2ubuntu0.1", "2.0.8"), Less);
        assert_eq!(c("245.4-4ubuntu3.2", "245.4-4ubuntu3.17"), Less);
        assert_eq!(c("3.1-3", "3.1-3+b1"), Less);
        assert_eq!(
            dpkg_cmp("1.0-", "1"),
            Err(VersionError::EmptyRevision),
            "as dpkg refuses"
        );
        assert_eq!(dpkg_cmp("x:1", "1"), Err(VersionError::BadEpoch));
        assert_eq!(dpkg_cmp("", "1"), Err(VersionError::Empty));
        assert_eq!(dpkg_cmp("1 2", "1"), Err(VersionError::EmbeddedSpace));
        assert_eq!(dpkg_cmp(":1", "1"), Err(VersionError::BadEpoch));
        assert_eq!(dpkg_cmp("1:-1", "1"), Err(VersionError::EmptyUpstream));
        assert_eq!(
            DebVersion::parse("1:2.3-4-5").unwrap(),
            DebVersion {
                epoch: 1,
                upstream: "2.3-4",
                revision: "5"
            }
        );
    }

    #[test]
    fn rpm_evr() {
        assert_eq!(rpm_evr_cmp("1:1.0-1", "2.0-1"), Greater);
        assert_eq!(rpm_evr_cmp("0:1.0-1", "1.0-1"), Equal);
        assert_eq!(rpm_evr_cmp("1.0-1.el7", "1.0-1.el7_9"), Less);
        assert_eq!(
            rpm_evr_cmp("4.2.6p5-1.el6.centos", "4.2.6p5-10.el6.centos.1"),
            Less
        );
        assert_eq!(rpm_evr_cmp("1.0", "1.0-1"), Less);
    }
}
