//! The formats, and dispatch from bytes to the right parser.

use crate::decode::decode;
use crate::event::{Context, Parsed, Problem, ProblemKind};
use std::fmt;
use std::str::FromStr;

/// A log or report format that a parser understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// `/var/log/dpkg.log` ([`crate::dpkg`]).
    Dpkg,
    /// `/var/log/apt/history.log` ([`crate::apt`]).
    AptHistory,
    /// `/var/log/yum.log` ([`crate::yum`]).
    YumLog,
    /// `dnf history info` or `yum history info` output ([`crate::dnf`]).
    DnfHistory,
    /// `wmic qfe` output ([`crate::wmic`]).
    WmicQfe,
    /// `systeminfo` output ([`crate::systeminfo`]).
    Systeminfo,
    /// `Get-HotFix` as CSV or JSON ([`crate::hotfix`]).
    GetHotFix,
    /// Windows Update history as CSV ([`crate::wu_history`]).
    WindowsUpdateHistory,
    /// osquery differential results ([`crate::osquery`]).
    Osquery,
}

impl Source {
    /// Every source, in a stable order.
    pub const ALL: [Source; 9] = [
        Source::Dpkg,
        Source::AptHistory,
        Source::YumLog,
        Source::DnfHistory,
        Source::WmicQfe,
        Source::Systeminfo,
        Source::GetHotFix,
        Source::WindowsUpdateHistory,
        Source::Osquery,
    ];

    /// The ledger's `source` field for events of this format, and the name
    /// [`Source::from_str`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            Source::Dpkg => "dpkg",
            Source::AptHistory => "apt",
            Source::YumLog => "yum",
            Source::DnfHistory => "dnf",
            Source::WmicQfe => "wmic-qfe",
            Source::Systeminfo => "systeminfo",
            Source::GetHotFix => "get-hotfix",
            Source::WindowsUpdateHistory => "windows-update",
            Source::Osquery => "osquery",
        }
    }

    /// Parses already decoded text of this format.
    pub fn parse_text(self, file_name: &str, text: &str, ctx: &Context) -> Parsed {
        match self {
            Source::Dpkg => crate::dpkg::parse(file_name, text, ctx),
            Source::AptHistory => crate::apt::parse(file_name, text, ctx),
            Source::YumLog => crate::yum::parse(file_name, text, ctx),
            Source::DnfHistory => crate::dnf::parse(file_name, text, ctx),
            Source::WmicQfe => crate::wmic::parse(file_name, text, ctx),
            Source::Systeminfo => crate::systeminfo::parse(file_name, text, ctx),
            Source::GetHotFix => crate::hotfix::parse(file_name, text, ctx),
            Source::WindowsUpdateHistory => crate::wu_history::parse(file_name, text, ctx),
            Source::Osquery => crate::osquery::parse(file_name, text, ctx),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Source::ALL.iter().map(|x| x.name()).collect();
                format!("unknown source {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// Parses one file's bytes: decompresses gzip, decodes the text (see
/// [`crate::decode`]), and runs the parser of `source`. Decoding problems
/// are reported at line 0.
pub fn parse(source: Source, file_name: &str, bytes: &[u8], ctx: &Context) -> Parsed {
    let decoded = decode(bytes, ctx.code_page, ctx.max_decompressed_bytes);
    let mut parsed = source.parse_text(file_name, &decoded.text, ctx);
    // The decoding warnings come first. They are put in front of the
    // parser's problems rather than the parser's result being appended to
    // an empty one: that append copied every event into a new vector, a
    // tenth of the time of parsing a large dpkg.log.
    if !decoded.warnings.is_empty() {
        let mut problems = Parsed::default();
        push_warnings(&mut problems, file_name, &decoded.warnings);
        problems.problems.append(&mut parsed.problems);
        parsed.problems = problems.problems;
    }
    parsed
}

/// Parses a set of rotated files of one log, oldest first (for example
/// `dpkg.log.2.gz`, `dpkg.log.1`, `dpkg.log`). For dpkg.log an action that
/// starts in one file and finishes in the next is followed across the
/// boundary; the other formats have no state that spans files, so each file
/// is parsed on its own with the same context.
pub fn parse_rotated(source: Source, files: &[(&str, &[u8])], ctx: &Context) -> Parsed {
    if source == Source::Dpkg {
        let mut p = crate::dpkg::DpkgParser::new(ctx);
        for (name, bytes) in files {
            let decoded = decode(bytes, ctx.code_page, ctx.max_decompressed_bytes);
            p.warnings(name, &decoded.warnings);
            p.feed(name, &decoded.text);
        }
        return p.finish();
    }
    let mut all = Parsed::default();
    for (name, bytes) in files {
        all.extend(parse(source, name, bytes, ctx));
    }
    all
}

pub(crate) fn push_warnings(parsed: &mut Parsed, file: &str, warnings: &[String]) {
    for w in warnings {
        parsed.problems.push(Problem {
            file: file.to_owned(),
            line: 0,
            kind: ProblemKind::Malformed,
            message: w.clone(),
        });
    }
}
