//! Small text helpers shared by the parsers: line splitting, dates, KB ids.

use crate::event::DateOrder;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// Splits text into numbered lines (1-based), whatever the line endings:
/// `\n`, `\r\n`, a run of `\r` before `\n` (as `wmic` on Windows XP writes,
/// `\r\r\n`), or a lone `\r` (old Mac style). Trailing `\r`s never reach a
/// line. A final line without a line break is still a line; a final line
/// break does not start an empty one.
pub(crate) struct Lines<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

pub(crate) fn lines(text: &str) -> Lines<'_> {
    Lines {
        text,
        pos: 0,
        line: 0,
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        let bytes = self.text.as_bytes();
        if self.pos >= bytes.len() {
            return None;
        }
        let rest = &bytes[self.pos..];
        let end = find_line_break(rest).unwrap_or(rest.len());
        let line = &self.text[self.pos..self.pos + end];
        let mut next = self.pos + end;
        if next < bytes.len() {
            if bytes[next] == b'\n' {
                next += 1;
            } else {
                // A run of CRs followed by LF is one break; a CR not followed
                // (after more CRs) by LF is a break of its own.
                let mut k = next;
                while k < bytes.len() && bytes[k] == b'\r' {
                    k += 1;
                }
                next = if k < bytes.len() && bytes[k] == b'\n' {
                    k + 1
                } else {
                    next + 1
                };
            }
        }
        self.pos = next;
        self.line += 1;
        Some((self.line, line))
    }
}

/// Eight copies of a byte, one per byte of a `u64`.
const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// The high bit of every byte of `w` that equals `b`, and no other bit.
/// The sum never carries from one byte into the next (at most 0x7F +
/// 0x7F), so unlike the shorter `(x - 0x01…) & !x` trick every flag is
/// exact, not only the lowest.
#[inline]
pub(crate) fn byte_mask(w: u64, b: u8) -> u64 {
    let x = w ^ splat(b);
    !(((x & splat(0x7f)) + splat(0x7f)) | x | splat(0x7f))
}

/// The bytes of `b` from `at`, as a little-endian word: byte `at + k` is
/// byte `k` of the word.
#[inline]
pub(crate) fn le_word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The position of the first `\n` or `\r` in `b`. It tests eight bytes at
/// a time: this search runs over every byte of every input, and a byte
/// loop made it the largest single cost of parsing a dpkg.log.
#[inline]
pub(crate) fn find_line_break(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + 8 <= b.len() {
        let w = le_word(b, at);
        // Cheap first: does any byte lie below 0x0E? Text rarely has such
        // bytes but the line breaks. The test has no false negatives (the
        // lowest such byte always borrows into its high bit); the exact
        // masks decide.
        if w.wrapping_sub(splat(0x0e)) & !w & splat(0x80) != 0 {
            let m = byte_mask(w, b'\n') | byte_mask(w, b'\r');
            if m != 0 {
                return Some(at + (m.trailing_zeros() / 8) as usize);
            }
        }
        at += 8;
    }
    b[at..]
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .map(|p| at + p)
}

/// Two ASCII digits as a number.
#[inline]
pub(crate) fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [a @ b'0'..=b'9', c @ b'0'..=b'9'] => Some(u32::from(a - b'0') * 10 + u32::from(c - b'0')),
        _ => None,
    }
}

/// All-ASCII-digit text as a number, with at most `max_len` digits.
pub(crate) fn digits(s: &str, max_len: usize) -> Option<u32> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM-DD HH:MM:SS` at the start of `b` (19 bytes).
#[inline]
pub(crate) fn iso_datetime(b: &[u8]) -> Option<NaiveDateTime> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[10] != b' ' && b[10] != b'T' {
        return None;
    }
    let y = two_digits(&b[0..2])? * 100 + two_digits(&b[2..4])?;
    let date = NaiveDate::from_ymd_opt(y as i32, two_digits(&b[5..7])?, two_digits(&b[8..10])?)?;
    let time = NaiveTime::from_hms_opt(
        two_digits(&b[11..13])?,
        two_digits(&b[14..16])?,
        two_digits(&b[17..19])?,
    )?;
    Some(date.and_time(time))
}

/// A local time at a fixed offset.
pub(crate) fn at_offset(t: NaiveDateTime, offset: FixedOffset) -> Option<DateTime<FixedOffset>> {
    offset.from_local_datetime(&t).single()
}

/// A UTC instant shown at `offset`.
pub(crate) fn utc_at(t: DateTime<Utc>, offset: FixedOffset) -> DateTime<FixedOffset> {
    t.with_timezone(&offset)
}

/// The number of an English month abbreviation (`Jan` … `Dec`), any case.
pub(crate) fn month_abbr(s: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    if s.len() != 3 {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == lower)
        .map(|i| i as u32 + 1)
}

/// `HH:MM:SS` or `HH:MM`.
pub(crate) fn hms(s: &str) -> Option<NaiveTime> {
    let mut it = s.split(':');
    let h = digits(it.next()?, 2)?;
    let m = digits(it.next()?, 2)?;
    let sec = match it.next() {
        Some(x) => digits(x.split('.').next()?, 2)?,
        None => 0,
    };
    if it.next().is_some() {
        return None;
    }
    NaiveTime::from_hms_opt(h, m, sec)
}

/// A date as Windows tools write it: either a local time without offset,
/// or an absolute instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WinDate {
    Local(NaiveDateTime),
    Absolute(DateTime<FixedOffset>),
}

/// Parses the dates that `wmic`, `Get-HotFix`, `Export-Csv` and
/// `ConvertTo-Json` write:
/// - `M/D/YYYY` or `D/M/YYYY` (by `order`), `DD.MM.YYYY`, `YYYY-MM-DD`,
///   `YYYY/MM/DD`, `YYYYMMDD`, each optionally followed by a time
///   `HH:MM[:SS]` and `AM`/`PM`;
/// - RFC 3339 / ISO 8601 with `T`, with or without an offset or `Z`;
/// - `/Date(1551484800000)/`, optionally with `+hhmm` (milliseconds since
///   the Unix epoch, UTC);
/// - 16 hex digits: a FILETIME, as old systems store `InstalledOn`.
pub(crate) fn windows_date(s: &str, order: DateOrder) -> Option<WinDate> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s
        .strip_prefix("/Date(")
        .or_else(|| s.strip_prefix("\\/Date("))
    {
        let inner = rest.split(')').next()?;
        let digits_end = inner
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map_or(inner.len(), |(i, _)| i);
        let ms: i64 = inner[..digits_end].parse().ok()?;
        let t = DateTime::<Utc>::from_timestamp_millis(ms)?;
        return Some(WinDate::Absolute(t.fixed_offset()));
    }
    if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        // FILETIME: 100 ns ticks since 1601-01-01 UTC.
        let ticks = u64::from_str_radix(s, 16).ok()?;
        let secs = (ticks / 10_000_000) as i64 - 11_644_473_600;
        let t = DateTime::<Utc>::from_timestamp(secs, 0)?;
        return Some(WinDate::Absolute(t.fixed_offset()));
    }
    if s.contains('T') {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Some(WinDate::Absolute(t));
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
            return Some(WinDate::Local(t));
        }
        return None;
    }
    let mut parts = s.split_whitespace();
    let date = date_part(parts.next()?, order)?;
    let mut time = NaiveTime::MIN;
    if let Some(t) = parts.next() {
        time = hms(t)?;
        match parts.next().map(|x| x.to_ascii_uppercase()) {
            None => {}
            Some(ampm) if ampm == "AM" || ampm == "PM" => {
                let h = chrono::Timelike::hour(&time);
                if h == 0 || h > 12 {
                    return None;
                }
                let h24 = match (ampm.as_str(), h) {
                    ("AM", 12) => 0,
                    ("AM", h) => h,
                    ("PM", 12) => 12,
                    (_, h) => h + 12,
                };
                time = chrono::Timelike::with_hour(&time, h24)?;
            }
            Some(_) => return None,
        }
        if parts.next().is_some() {
            return None;
        }
    }
    Some(WinDate::Local(date.and_time(time)))
}

fn date_part(s: &str, order: DateOrder) -> Option<NaiveDate> {
    let s = s.trim_end_matches(',');
    let ymd = |y: u32, m: u32, d: u32| NaiveDate::from_ymd_opt(y as i32, m, d);
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        return ymd(
            digits(&s[0..4], 4)?,
            digits(&s[4..6], 2)?,
            digits(&s[6..8], 2)?,
        );
    }
    for sep in ['/', '.', '-'] {
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.len() != 3 {
            continue;
        }
        let n: Vec<u32> = parts
            .iter()
            .map(|p| digits(p, 4))
            .collect::<Option<Vec<u32>>>()?;
        if parts[0].len() == 4 {
            return ymd(n[0], n[1], n[2]);
        }
        if parts[2].len() != 4 {
            return None;
        }
        return match (sep, order) {
            ('.', _) | ('-', _) => ymd(n[2], n[1], n[0]),
            (_, DateOrder::MonthFirst) => ymd(n[2], n[0], n[1]),
            (_, DateOrder::DayFirst) => ymd(n[2], n[1], n[0]),
        };
    }
    None
}

/// Normalises a Windows hotfix id: `KB` or `Q` (any case) followed by a
/// digit, then letters and digits (`KB893803v2`). Anything else (`File 1`,
/// an empty cell) is not a hotfix id.
pub(crate) fn hotfix_id(s: &str) -> Option<String> {
    let s = s.trim();
    let (prefix, rest) = if s.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("kb")) {
        ("KB", &s[2..])
    } else if s.get(..1).is_some_and(|p| p.eq_ignore_ascii_case("q")) {
        ("Q", &s[1..])
    } else {
        return None;
    };
    if !rest.starts_with(|c: char| c.is_ascii_digit())
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    Some(format!("{prefix}{rest}"))
}

/// The first `KB` number in free text such as an update title:
/// `… (KB5034441)` gives `KB5034441`. `KB` must not follow a letter or
/// digit, and must be followed by at least four digits.
pub(crate) fn find_kb(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 2 < b.len() {
        if b[i].eq_ignore_ascii_case(&b'k')
            && b[i + 1].eq_ignore_ascii_case(&b'b')
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
        {
            let d = b[i + 2..].iter().take_while(|c| c.is_ascii_digit()).count();
            if d >= 4 && !b.get(i + 2 + d).is_some_and(|c| c.is_ascii_alphabetic()) {
                return Some(format!("KB{}", &s[i + 2..i + 2 + d]));
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(s: &str) -> Vec<(usize, &str)> {
        lines(s).collect()
    }

    #[test]
    fn line_endings() {
        assert_eq!(collect("a\nb\n"), vec![(1, "a"), (2, "b")]);
        assert_eq!(collect("a\r\nb"), vec![(1, "a"), (2, "b")]);
        assert_eq!(collect("a\r\r\nb\r\r\n"), vec![(1, "a"), (2, "b")]);
        assert_eq!(collect("a\rb\r"), vec![(1, "a"), (2, "b")]);
        assert_eq!(collect("a\n\nb"), vec![(1, "a"), (2, ""), (3, "b")]);
        assert_eq!(collect("a\r\n\r\nb"), vec![(1, "a"), (2, ""), (3, "b")]);
        assert_eq!(collect(""), vec![]);
        assert_eq!(collect("\n"), vec![(1, "")]);
    }

    /// The line splitter against a byte-by-byte reference, on every string
    /// of up to 11 bytes over an alphabet of the line breaks and two other
    /// bytes, so that breaks fall at every position of an 8-byte word and
    /// across words.
    #[test]
    fn line_breaks_are_found_as_a_byte_loop_finds_them() {
        let alphabet = [b'a', b'\n', b'\r', b' '];
        for len in 0..=11u32 {
            for code in 0..4usize.pow(len) {
                let mut c = code;
                let s: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[c % 4];
                        c /= 4;
                        b
                    })
                    .collect();
                let expected = s.iter().position(|&b| b == b'\n' || b == b'\r');
                assert_eq!(find_line_break(&s), expected, "{s:?}");
            }
        }
        // Every byte value, at every position of a word.
        for pos in 0..16 {
            for v in 0..=255u8 {
                let mut s = vec![b'x'; 16];
                s[pos] = v;
                let expected = s.iter().position(|&b| b == b'\n' || b == b'\r');
                assert_eq!(find_line_break(&s), expected, "{v} at {pos}");
            }
        }
    }

    #[test]
    fn byte_masks_flag_exactly_the_equal_bytes() {
        for v in 0..=255u8 {
            for b in [0u8, b' ', b'\n', 0x80, 0xff] {
                for pos in 0..8 {
                    let mut bytes = [v.wrapping_add(1); 8];
                    bytes[pos] = v;
                    // A neighbour that differs by one bit, the case that
                    // fools the carrying version of the trick.
                    bytes[(pos + 1) % 8] = b ^ 1;
                    let m = byte_mask(u64::from_le_bytes(bytes), b);
                    for (k, &x) in bytes.iter().enumerate() {
                        assert_eq!(m >> (8 * k + 7) & 1 == 1, x == b, "{bytes:?} {b}");
                    }
                    assert_eq!(m & !splat(0x80), 0);
                }
            }
        }
    }

    #[test]
    fn iso_datetimes() {
        let t = iso_datetime(b"2020-07-31 17:05:19 x").unwrap();
        assert_eq!(t.to_string(), "2020-07-31 17:05:19");
        assert!(iso_datetime(b"2020-02-30 17:05:19").is_none());
        assert!(iso_datetime(b"2020-07-31 25:05:19").is_none());
        assert!(iso_datetime(b"2020-07-3").is_none());
        assert!(iso_datetime("2020-07-31 17:05:1é".as_bytes()).is_none());
    }

    #[test]
    fn windows_dates() {
        let local = |s: &str, o| match windows_date(s, o) {
            Some(WinDate::Local(t)) => t.to_string(),
            other => format!("{other:?}"),
        };
        let mf = DateOrder::MonthFirst;
        assert_eq!(local("3/2/2019", mf), "2019-03-02 00:00:00");
        assert_eq!(
            local("3/2/2019", DateOrder::DayFirst),
            "2019-02-03 00:00:00"
        );
        assert_eq!(local("18.03.2014", mf), "2014-03-18 00:00:00");
        assert_eq!(local("2014-03-18", mf), "2014-03-18 00:00:00");
        assert_eq!(local("20140318", mf), "2014-03-18 00:00:00");
        assert_eq!(local("5/16/2019 12:00:00 AM", mf), "2019-05-16 00:00:00");
        assert_eq!(local("5/16/2019 1:05:09 PM", mf), "2019-05-16 13:05:09");
        assert_eq!(local("5/16/2019 00:00:00", mf), "2019-05-16 00:00:00");
        assert_eq!(local("2019-03-02T10:05:12", mf), "2019-03-02 10:05:12");
        assert_eq!(local("13/2/2019", mf), "None");
        assert_eq!(local("3/2/19", mf), "None");
        assert_eq!(local("5/16/2019 13:00:00 PM", mf), "None");
        match windows_date("/Date(1551484800000)/", mf) {
            Some(WinDate::Absolute(t)) => assert_eq!(t.to_rfc3339(), "2019-03-02T00:00:00+00:00"),
            other => panic!("{other:?}"),
        }
        match windows_date("2019-03-02T10:05:12+02:00", mf) {
            Some(WinDate::Absolute(t)) => assert_eq!(t.to_rfc3339(), "2019-03-02T10:05:12+02:00"),
            other => panic!("{other:?}"),
        }
        // 2019-03-02T00:00:00Z as a FILETIME.
        let ft = format!("{:016x}", (1_551_484_800u64 + 11_644_473_600) * 10_000_000);
        match windows_date(&ft, mf) {
            Some(WinDate::Absolute(t)) => assert_eq!(t.to_rfc3339(), "2019-03-02T00:00:00+00:00"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hotfix_ids() {
        assert_eq!(hotfix_id(" kb4462930 ").as_deref(), Some("KB4462930"));
        assert_eq!(hotfix_id("KB893803v2").as_deref(), Some("KB893803v2"));
        assert_eq!(hotfix_id("Q147222").as_deref(), Some("Q147222"));
        assert_eq!(hotfix_id("File 1"), None);
        assert_eq!(hotfix_id("KB"), None);
        assert_eq!(hotfix_id(""), None);
        assert_eq!(hotfix_id("KBx"), None);
        assert_eq!(hotfix_id("\u{fffe}x"), None);
        assert_eq!(hotfix_id("Kб1"), None);
    }

    #[test]
    fn kb_in_titles() {
        assert_eq!(
            find_kb("2024-01 Cumulative Update for Windows 11 (KB5034123)").as_deref(),
            Some("KB5034123")
        );
        assert_eq!(
            find_kb("Security Intelligence Update - KB2267602 (Version 1.403.1)").as_deref(),
            Some("KB2267602")
        );
        assert_eq!(find_kb("Intel - Display - 27.20.100.8681"), None);
        assert_eq!(find_kb("XKB1234567"), None);
        assert_eq!(find_kb("KB12"), None);
    }
}
