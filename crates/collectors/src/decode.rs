//! From the bytes of a file to text: gzip, then UTF-16, UTF-8 or a legacy
//! code page.
//!
//! [`decode`] never fails. Gzip is recognised by its magic bytes
//! (`1f 8b`), so `dpkg.log.2.gz` needs no hint; concatenated gzip members
//! are all read. A gzip stream that is damaged or larger than the limit
//! keeps what was decompressed and says so in [`Decoded::warnings`].
//!
//! The text encoding is chosen in this order:
//! 1. a byte-order mark: UTF-8 (`EF BB BF`), UTF-16LE (`FF FE`) or
//!    UTF-16BE (`FE FF`);
//! 2. UTF-16 without a mark, when NUL bytes fill the odd (LE) or even (BE)
//!    positions of the first 512 bytes, as they do in ASCII text written
//!    as UTF-16;
//! 3. UTF-8, when all of it is valid UTF-8;
//! 4. otherwise the valid UTF-8 runs are kept and every other byte is read
//!    in the legacy [`CodePage`] the caller chose (default CP437, the OEM
//!    code page of an en-US console). Every byte maps to a character, so
//!    this never fails.
//!
//! Unpaired UTF-16 surrogates become U+FFFD. The mark itself is dropped.

use crate::codepages;
use flate2::read::MultiGzDecoder;
use std::borrow::Cow;
use std::io::Read;

/// A legacy single-byte code page, for bytes that are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CodePage {
    /// OEM United States: `cmd.exe` output on en-US Windows.
    #[default]
    Cp437,
    /// OEM Multilingual Latin 1: `cmd.exe` output in Western Europe.
    Cp850,
    /// OEM Russian: `cmd.exe` output on Russian Windows.
    Cp866,
    /// ANSI Cyrillic.
    Windows1251,
    /// ANSI Western European.
    Windows1252,
    /// ISO 8859-1: each byte is the code point of the same number.
    Latin1,
}

impl CodePage {
    /// The character a byte stands for.
    pub fn char(self, b: u8) -> char {
        if b < 0x80 {
            return char::from(b);
        }
        let i = usize::from(b - 0x80);
        match self {
            CodePage::Cp437 => codepages::CP437[i],
            CodePage::Cp850 => codepages::CP850[i],
            CodePage::Cp866 => codepages::CP866[i],
            CodePage::Windows1251 => codepages::CP1251[i],
            CodePage::Windows1252 => codepages::CP1252[i],
            CodePage::Latin1 => char::from(b),
        }
    }
}

/// The encoding [`decode`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// UTF-8, with or without a byte-order mark.
    Utf8 {
        /// Whether a byte-order mark was present.
        bom: bool,
    },
    /// UTF-16 little-endian.
    Utf16Le {
        /// Whether a byte-order mark was present.
        bom: bool,
    },
    /// UTF-16 big-endian.
    Utf16Be {
        /// Whether a byte-order mark was present.
        bom: bool,
    },
    /// Not valid UTF-8: valid UTF-8 runs were kept and the other bytes read
    /// in this code page.
    Legacy(CodePage),
}

/// Decoded text and how it was found.
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    /// The text, without a byte-order mark.
    pub text: Cow<'a, str>,
    /// The text encoding.
    pub encoding: Encoding,
    /// Whether the bytes were gzip-compressed.
    pub gzip: bool,
    /// What went wrong but was got round: a damaged gzip stream, an odd
    /// trailing byte in UTF-16.
    pub warnings: Vec<String>,
}

/// The gzip magic number.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether the bytes start like gzip.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Decompresses (if gzip) and decodes. Never fails; see the module docs.
/// `max_decompressed` bounds the size of decompressed data.
pub fn decode(bytes: &[u8], code_page: CodePage, max_decompressed: u64) -> Decoded<'_> {
    if !is_gzip(bytes) {
        let (text, encoding, warnings) = decode_text(bytes, code_page);
        return Decoded {
            text,
            encoding,
            gzip: false,
            warnings,
        };
    }
    let (raw, mut warnings) = gunzip(bytes, max_decompressed);
    let (text, encoding, more) = decode_text(&raw, code_page);
    warnings.extend(more);
    Decoded {
        text: Cow::Owned(text.into_owned()),
        encoding,
        gzip: true,
        warnings,
    }
}

/// Decompresses gzip data, reading every member. On a damaged stream, or
/// past `max` bytes, it returns what it had and a warning.
pub fn gunzip(bytes: &[u8], max: u64) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(64 << 20));
    let mut warnings = Vec::new();
    let mut reader = MultiGzDecoder::new(bytes).take(max.saturating_add(1));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warnings.push(format!(
                    "gzip data is damaged after {} decompressed bytes ({e}); the rest of the file was not read",
                    out.len()
                ));
                break;
            }
        }
    }
    if out.len() as u64 > max {
        out.truncate(max as usize);
        warnings.push(format!(
            "gzip data decompresses to more than {max} bytes; only the first {max} were read"
        ));
    }
    (out, warnings)
}

/// Decodes uncompressed bytes to text. See the module docs for the order.
pub fn decode_text(bytes: &[u8], code_page: CodePage) -> (Cow<'_, str>, Encoding, Vec<String>) {
    let mut warnings = Vec::new();
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        let (text, enc) = utf8_or_legacy(rest, code_page, true);
        return (text, enc, warnings);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        let text = utf16(rest, u16::from_le_bytes, &mut warnings);
        return (Cow::Owned(text), Encoding::Utf16Le { bom: true }, warnings);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        let text = utf16(rest, u16::from_be_bytes, &mut warnings);
        return (Cow::Owned(text), Encoding::Utf16Be { bom: true }, warnings);
    }
    match sniff_utf16(bytes) {
        Some(true) => {
            let text = utf16(bytes, u16::from_le_bytes, &mut warnings);
            (Cow::Owned(text), Encoding::Utf16Le { bom: false }, warnings)
        }
        Some(false) => {
            let text = utf16(bytes, u16::from_be_bytes, &mut warnings);
            (Cow::Owned(text), Encoding::Utf16Be { bom: false }, warnings)
        }
        None => {
            let (text, enc) = utf8_or_legacy(bytes, code_page, false);
            (text, enc, warnings)
        }
    }
}

/// `Some(true)` for UTF-16LE, `Some(false)` for UTF-16BE, by where the NUL
/// bytes fall in the first 512 bytes.
fn sniff_utf16(bytes: &[u8]) -> Option<bool> {
    let head = &bytes[..bytes.len().min(512)];
    let pairs = head.len() / 2;
    if pairs < 2 {
        return None;
    }
    let (mut even, mut odd) = (0usize, 0usize);
    for pair in head.chunks_exact(2) {
        even += usize::from(pair[0] == 0);
        odd += usize::from(pair[1] == 0);
    }
    if odd * 4 >= pairs && even * 16 < pairs {
        Some(true)
    } else if even * 4 >= pairs && odd * 16 < pairs {
        Some(false)
    } else {
        None
    }
}

fn utf16(bytes: &[u8], word: fn([u8; 2]) -> u16, warnings: &mut Vec<String>) -> String {
    if bytes.len() % 2 == 1 {
        warnings.push("UTF-16 text has an odd number of bytes; the last byte was ignored".into());
    }
    let units = bytes.chunks_exact(2).map(|c| word([c[0], c[1]]));
    let mut s: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if s.starts_with('\u{FEFF}') {
        s.remove(0);
    }
    s
}

fn utf8_or_legacy(bytes: &[u8], code_page: CodePage, bom: bool) -> (Cow<'_, str>, Encoding) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Cow::Borrowed(s), Encoding::Utf8 { bom }),
        Err(_) => (
            Cow::Owned(mixed(bytes, code_page)),
            Encoding::Legacy(code_page),
        ),
    }
}

/// Valid UTF-8 runs as they are, every other byte through the code page.
fn mixed(mut bytes: &[u8], code_page: CodePage) -> String {
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 8);
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (valid, after) = bytes.split_at(e.valid_up_to());
                if let Ok(s) = std::str::from_utf8(valid) {
                    out.push_str(s);
                }
                let bad = e.error_len().unwrap_or(after.len()).max(1).min(after.len());
                for &b in &after[..bad] {
                    out.push(code_page.char(b));
                }
                bytes = &after[bad..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn boms_and_utf16() {
        let (t, e, _) = decode_text(b"\xEF\xBB\xBFhi", CodePage::Cp437);
        assert_eq!((t.as_ref(), e), ("hi", Encoding::Utf8 { bom: true }));
        let (t, e, _) = decode_text(b"\xFF\xFEh\0i\0", CodePage::Cp437);
        assert_eq!((t.as_ref(), e), ("hi", Encoding::Utf16Le { bom: true }));
        let (t, e, _) = decode_text(b"\xFE\xFF\0h\0i", CodePage::Cp437);
        assert_eq!((t.as_ref(), e), ("hi", Encoding::Utf16Be { bom: true }));
        let (t, e, _) = decode_text(b"h\0e\0l\0l\0o\0", CodePage::Cp437);
        assert_eq!((t.as_ref(), e), ("hello", Encoding::Utf16Le { bom: false }));
        let (t, e, _) = decode_text(b"\0h\0e\0l\0l\0o", CodePage::Cp437);
        assert_eq!((t.as_ref(), e), ("hello", Encoding::Utf16Be { bom: false }));
        // An unpaired surrogate and an odd byte.
        let (t, _, w) = decode_text(b"\xFF\xFE\x00\xD8a\0x", CodePage::Cp437);
        assert_eq!(t.as_ref(), "\u{FFFD}a");
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn legacy_fallback_keeps_valid_utf8() {
        // 0xFF is NBSP in CP437 (the thousands separator of a Swedish
        // systeminfo); the Cyrillic stays.
        let (t, e, _) = decode_text("32\u{0}".as_bytes(), CodePage::Cp437);
        assert_eq!(e, Encoding::Utf8 { bom: false });
        assert_eq!(t.as_ref(), "32\u{0}");
        let mut b = b"32\xff503 ".to_vec();
        b.extend_from_slice("Администратор".as_bytes());
        let (t, e, _) = decode_text(&b, CodePage::Cp437);
        assert_eq!(e, Encoding::Legacy(CodePage::Cp437));
        assert_eq!(t.as_ref(), "32\u{A0}503 Администратор");
        let (t, _, _) = decode_text(b"caf\xe9", CodePage::Windows1252);
        assert_eq!(t.as_ref(), "café");
        let (t, _, _) = decode_text(b"\x80\x81", CodePage::Cp866);
        assert_eq!(t.as_ref(), "АБ");
        let (t, _, _) = decode_text(b"\xc3", CodePage::Latin1);
        assert_eq!(t.as_ref(), "Ã");
        // Every byte value decodes in every code page.
        let all: Vec<u8> = (0..=255).collect();
        for cp in [
            CodePage::Cp437,
            CodePage::Cp850,
            CodePage::Cp866,
            CodePage::Windows1251,
            CodePage::Windows1252,
            CodePage::Latin1,
        ] {
            let (t, _, _) = decode_text(&all, cp);
            assert!(t.chars().count() >= 128, "{cp:?}");
        }
    }

    #[test]
    fn gzip_members_damage_and_limits() {
        let mut two = gz(b"one\n");
        two.extend(gz(b"two\n"));
        let d = decode(&two, CodePage::Cp437, 1 << 20);
        assert!(d.gzip);
        assert_eq!(d.text.as_ref(), "one\ntwo\n");
        assert!(d.warnings.is_empty());

        let full = gz(&b"line\n".repeat(10_000));
        let cut = &full[..full.len() / 2];
        let d = decode(cut, CodePage::Cp437, 1 << 20);
        assert!(d.gzip);
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);

        let d = decode(&full, CodePage::Cp437, 100);
        assert_eq!(d.text.len(), 100);
        assert_eq!(d.warnings.len(), 1);

        // Only the magic: not a panic, just a warning.
        let d = decode(&[0x1f, 0x8b], CodePage::Cp437, 100);
        assert_eq!(d.text.as_ref(), "");
        assert_eq!(d.warnings.len(), 1);
    }
}
