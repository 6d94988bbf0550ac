//! Instants as the ledger stores them: UTC, microsecond precision.

use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt;

/// An instant in UTC with microsecond precision, stored as microseconds since
/// the Unix epoch.
///
/// Microseconds are what both SQLite (as an integer) and PostgreSQL
/// (`timestamptz`) keep without loss, so every backend round-trips a
/// `Timestamp` exactly and idempotency comparisons never drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Wraps a count of microseconds since the Unix epoch.
    pub fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// The count of microseconds since the Unix epoch.
    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// The current time, truncated to microseconds.
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_micros())
    }

    /// Parses an RFC 3339 timestamp that carries an explicit offset (`Z` or
    /// `±hh:mm`), converts it to UTC and truncates it to microseconds.
    ///
    /// A timestamp without an offset is rejected: guessing a time zone would
    /// silently shift an audit record by hours.
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        let dt = DateTime::parse_from_rfc3339(s).map_err(|e| {
            format!("must be an RFC 3339 timestamp with an offset, like 2024-05-01T12:00:00Z ({e})")
        })?;
        let utc = dt.with_timezone(&Utc);
        // RFC 3339 has four-digit years, so an instant whose UTC year falls
        // outside 0000–9999 (0000-01-01T00:00:00+00:01 is in year -1) could
        // be stored but never written back as RFC 3339.
        if !(0..=9999).contains(&chrono::Datelike::year(&utc)) {
            return Err(format!(
                "{s:?} lies outside the years 0000 to 9999 once converted to UTC"
            ));
        }
        Ok(Timestamp(utc.timestamp_micros()))
    }

    /// Formats as RFC 3339 in UTC with exactly six fractional digits.
    pub fn to_rfc3339(self) -> String {
        match DateTime::<Utc>::from_timestamp_micros(self.0) {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Micros, true),
            // Only reachable for values no parser produced; keep the raw number visible.
            None => format!("@{}us", self.0),
        }
    }

    /// Adds a number of microseconds, saturating at the ends of the range.
    pub fn saturating_add_micros(self, micros: i64) -> Self {
        Timestamp(self.0.saturating_add(micros))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_into_utc() {
        let a = Timestamp::parse_rfc3339("2024-05-01T14:00:00+02:00").unwrap();
        let b = Timestamp::parse_rfc3339("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(b.to_rfc3339(), "2024-05-01T12:00:00.000000Z");
    }

    #[test]
    fn instants_outside_four_digit_utc_years_are_refused() {
        // Found by the ingest_body fuzz target: accepted, then unreadable.
        let e = Timestamp::parse_rfc3339("0000-01-01T00:00:00+00:01").unwrap_err();
        assert!(e.contains("0000 to 9999"), "{e}");
        assert!(Timestamp::parse_rfc3339("9999-12-31T23:59:00-00:01").is_err());
        let lo = Timestamp::parse_rfc3339("0000-01-01T00:00:00Z").unwrap();
        assert_eq!(Timestamp::parse_rfc3339(&lo.to_rfc3339()), Ok(lo));
        let hi = Timestamp::parse_rfc3339("9999-12-31T23:59:59.999999Z").unwrap();
        assert_eq!(Timestamp::parse_rfc3339(&hi.to_rfc3339()), Ok(hi));
    }

    #[test]
    fn truncates_to_microseconds() {
        let t = Timestamp::parse_rfc3339("2024-05-01T12:00:00.123456789Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T12:00:00.123456Z");
    }

    #[test]
    fn rejects_missing_offset_and_garbage() {
        assert!(Timestamp::parse_rfc3339("2024-05-01T12:00:00").is_err());
        assert!(Timestamp::parse_rfc3339("2024-05-01").is_err());
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
        assert!(Timestamp::parse_rfc3339("2024-13-01T12:00:00Z").is_err());
    }

    #[test]
    fn round_trips_through_micros() {
        let t = Timestamp::parse_rfc3339("1999-12-31T23:59:59.999999Z").unwrap();
        assert_eq!(Timestamp::from_micros(t.as_micros()), t);
        assert_eq!(
            Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(),
            t,
            "formatting must be parseable"
        );
    }
}
