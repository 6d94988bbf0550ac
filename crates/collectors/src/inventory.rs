//! Installed-package inventories: what a host has installed now, as opposed
//! to the events of its logs.
//!
//! The server compares an inventory with advisories (does this host hold an
//! affected version?) and with the ledger (which installed versions does no
//! logged event explain?). Three families are read, each into a
//! [`ParsedInventory`] of [`InstalledPackage`]s:
//!
//! | [`InventorySource`] | input | [`InventoryFormat`] |
//! |---|---|---|
//! | `dpkg-status` | `/var/lib/dpkg/status` ([`dpkg_status`]) | `deb` |
//! | `rpm-qa` | `rpm -qa` output, three forms ([`rpm_qa`]) | `rpm` |
//! | `wmic-qfe`, `systeminfo`, `get-hotfix` | the hotfix lists Windows prints ([`windows_hotfixes`]) | `windows` |
//!
//! Every parser here is pure and never panics. A line or stanza that cannot
//! become a package is a [`Problem`] located by file and line, and the rest
//! of the input is still read. Every package returned has a non-empty name
//! and version, and no name, version or architecture is longer than 256
//! characters or holds whitespace or a control character, so that the
//! server accepts the whole inventory; a deb version is one that dpkg
//! accepts. Packages are sorted by name, architecture and version, without
//! repeats, so the same input always gives the same output.
//!
//! Versions are written as the event parsers write them, so that an
//! inventory entry and the event that installed it share a `patch_id`
//! (`name@version`): dpkg's version as written (`1:2.38.1-5+deb12u3`), rpm's
//! `[epoch:]version-release` with an epoch of 0 left out, and on Windows the
//! constant [`WINDOWS_VERSION`] beside the KB id as the name.
//!
//! [`parse_inventory`] takes a file's raw bytes and decodes them first
//! (gzip, UTF-16, legacy code pages) exactly as [`crate::parse`] does.

use crate::decode::decode;
use crate::event::{clip, Context, Kind, Parsed, Problem, ProblemKind};
use crate::source::Source;
use crate::text::lines;
use crate::version::DebVersion;
use chrono::{DateTime, Utc};
use patchaudit_domain::Status;
use serde::{Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The version every Windows hotfix is given. Windows lists a hotfix as
/// present or not, with no version of its own; the name (the KB id) is what
/// events and catalog entries match, and hotfix versions carry no order.
pub const WINDOWS_VERSION: &str = "installed";

/// The longest name, version or architecture an inventory may hold, in
/// characters: the server's limit.
const MAX_CHARS: usize = 256;

/// The package family of an inventory, which decides how its versions
/// compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InventoryFormat {
    /// Debian packages: versions compare as dpkg compares them.
    Deb,
    /// RPM packages: versions `[epoch:]version-release` compare as rpm does.
    Rpm,
    /// Windows hotfixes: the name is the KB id, and the version is
    /// [`WINDOWS_VERSION`].
    Windows,
}

impl InventoryFormat {
    /// Every format, in a stable order.
    pub const ALL: [InventoryFormat; 3] = [
        InventoryFormat::Deb,
        InventoryFormat::Rpm,
        InventoryFormat::Windows,
    ];

    /// The wire name: `deb`, `rpm` or `windows`, as the server's inventory
    /// endpoint expects it.
    pub fn name(self) -> &'static str {
        match self {
            InventoryFormat::Deb => "deb",
            InventoryFormat::Rpm => "rpm",
            InventoryFormat::Windows => "windows",
        }
    }
}

impl fmt::Display for InventoryFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InventoryFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InventoryFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!("unknown inventory format {s:?}; expected one of deb, rpm, windows")
            })
    }
}

impl Serialize for InventoryFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// An input that lists installed packages, and the parser that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InventorySource {
    /// `/var/lib/dpkg/status` ([`dpkg_status`]).
    DpkgStatus,
    /// `rpm -qa` output in one of its three forms ([`rpm_qa`]).
    RpmQa,
    /// `wmic qfe` output, read by [`crate::wmic`] ([`windows_hotfixes`]).
    WmicQfe,
    /// `systeminfo` output, read by [`crate::systeminfo`]
    /// ([`windows_hotfixes`]).
    Systeminfo,
    /// `Get-HotFix` as CSV or JSON, read by [`crate::hotfix`]
    /// ([`windows_hotfixes`]).
    GetHotFix,
}

impl InventorySource {
    /// Every source, in a stable order.
    pub const ALL: [InventorySource; 5] = [
        InventorySource::DpkgStatus,
        InventorySource::RpmQa,
        InventorySource::WmicQfe,
        InventorySource::Systeminfo,
        InventorySource::GetHotFix,
    ];

    /// The name [`InventorySource::from_str`] accepts: `dpkg-status`,
    /// `rpm-qa`, `wmic-qfe`, `systeminfo` or `get-hotfix`.
    pub fn name(self) -> &'static str {
        match self {
            InventorySource::DpkgStatus => "dpkg-status",
            InventorySource::RpmQa => "rpm-qa",
            InventorySource::WmicQfe => "wmic-qfe",
            InventorySource::Systeminfo => "systeminfo",
            InventorySource::GetHotFix => "get-hotfix",
        }
    }

    /// The package family of the inventory this source gives.
    pub fn format(self) -> InventoryFormat {
        match self {
            InventorySource::DpkgStatus => InventoryFormat::Deb,
            InventorySource::RpmQa => InventoryFormat::Rpm,
            InventorySource::WmicQfe | InventorySource::Systeminfo | InventorySource::GetHotFix => {
                InventoryFormat::Windows
            }
        }
    }

    /// The event parser that reads a Windows source; `None` for the package
    /// managers, whose inventories have parsers of their own.
    pub fn event_source(self) -> Option<Source> {
        match self {
            InventorySource::DpkgStatus | InventorySource::RpmQa => None,
            InventorySource::WmicQfe => Some(Source::WmicQfe),
            InventorySource::Systeminfo => Some(Source::Systeminfo),
            InventorySource::GetHotFix => Some(Source::GetHotFix),
        }
    }

    /// Parses already decoded text of this source. The context matters only
    /// to the Windows sources (see [`parse_inventory`]).
    pub fn parse_text(self, file_name: &str, text: &str, ctx: &Context) -> ParsedInventory {
        match self {
            InventorySource::DpkgStatus => dpkg_status(file_name, text),
            InventorySource::RpmQa => rpm_qa(file_name, text),
            InventorySource::WmicQfe | InventorySource::Systeminfo | InventorySource::GetHotFix => {
                let source = self.event_source().unwrap_or(Source::WmicQfe);
                let parsed = source.parse_text(file_name, text, &windows_context(ctx));
                windows_hotfixes(file_name, &parsed)
            }
        }
    }
}

impl fmt::Display for InventorySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InventorySource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InventorySource::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = InventorySource::ALL.iter().map(|x| x.name()).collect();
                format!(
                    "unknown inventory source {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// One installed package.
///
/// Packages order by name, then architecture (none first), then version as
/// text; this is the order of [`ParsedInventory::packages`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct InstalledPackage {
    /// The package name; on Windows the hotfix id (`KB5034441`).
    pub name: String,
    /// The installed version: dpkg's as written, rpm's
    /// `[epoch:]version-release`, or [`WINDOWS_VERSION`].
    pub version: String,
    /// The architecture, where the input names one.
    pub arch: Option<String>,
}

impl Ord for InstalledPackage {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.name, &self.arch, &self.version).cmp(&(&other.name, &other.arch, &other.version))
    }
}

impl PartialOrd for InstalledPackage {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The result of reading one inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParsedInventory {
    /// The package family.
    pub format: InventoryFormat,
    /// The installed packages, sorted by name, architecture and version,
    /// without repeats.
    pub packages: Vec<InstalledPackage>,
    /// Every problem met, by line (0 for the file as a whole).
    pub problems: Vec<Problem>,
}

impl ParsedInventory {
    /// An inventory with no packages and no problems.
    pub fn new(format: InventoryFormat) -> Self {
        ParsedInventory {
            format,
            packages: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, file: &str, line: usize, kind: ProblemKind, message: impl Into<String>) {
        self.problems.push(Problem {
            file: file.to_owned(),
            line,
            kind,
            message: message.into(),
        });
    }

    fn malformed(&mut self, file: &str, line: usize, message: impl Into<String>) {
        self.problem(file, line, ProblemKind::Malformed, message);
    }

    /// Sorts and de-duplicates the packages, and orders the problems by line
    /// (stably, so problems of one line keep their order).
    fn finish(mut self) -> Self {
        self.packages.sort();
        self.packages.dedup();
        self.problems.sort_by_key(|p| p.line);
        self
    }
}

/// Whether a name, version or architecture would pass the server's rules:
/// not empty, at most 256 characters, no whitespace or control character.
fn check_word(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    let n = s.chars().count();
    if n > MAX_CHARS {
        return Err(format!(
            "{what} is {n} characters long; an inventory accepts at most {MAX_CHARS}"
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{what} {:?} contains whitespace or a control character (U+{:04X})",
            clip(s, 80),
            u32::from(c)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// dpkg

/// The dpkg states in which a package counts as installed: configured, or
/// configured and waiting only for trigger processing.
const DEB_COUNTED: [&str; 3] = ["installed", "triggers-pending", "triggers-awaited"];
/// The dpkg states of a package that dpkg has started but not finished
/// installing, upgrading or removing.
const DEB_UNFINISHED: [&str; 3] = ["half-installed", "unpacked", "half-configured"];
/// The dpkg states of a package whose files are gone (but perhaps its
/// configuration files).
const DEB_ABSENT: [&str; 2] = ["not-installed", "config-files"];
/// The wants dpkg knows (the first word of `Status`).
const DEB_WANT: [&str; 5] = ["unknown", "install", "hold", "deinstall", "purge"];
/// The error flags dpkg knows (the second word of `Status`).
const DEB_FLAG: [&str; 4] = ["ok", "reinstreq", "hold", "hold-reinstreq"];

/// One field of a stanza that the inventory reads.
#[derive(Default)]
struct DebField {
    value: Option<String>,
    line: usize,
}

/// What one stanza said so far.
#[derive(Default)]
struct Stanza {
    /// The line of the stanza's first line; 0 while the stanza is empty.
    first: usize,
    /// Whether any `Field: value` line was seen.
    any_field: bool,
    /// Package, Version, Architecture, Status.
    fields: [DebField; 4],
    /// Which of the four the last field line was, for continuation lines.
    current: Option<usize>,
    /// Set when the stanza cannot be trusted (a repeated or multi-line
    /// field of the four); it is then skipped, reported once already.
    broken: bool,
}

/// The fields read, in the order of [`Stanza::fields`].
const DEB_FIELDS: [&str; 4] = ["Package", "Version", "Architecture", "Status"];

/// Parses dpkg's database of package states, `/var/lib/dpkg/status`.
///
/// The file is a series of stanzas separated by blank lines. Each line of a
/// stanza is `Field: value`, or continues the previous field when it starts
/// with a space or tab. Field names are matched without regard to case.
/// Only `Package` (the name), `Version` (kept as written, epoch included),
/// `Architecture` and `Status` are read.
///
/// `Status` is `want flag state`. A package counts as installed when its
/// state is `installed`, `triggers-pending` or `triggers-awaited` (its
/// files are unpacked and configured; `dpkg -l` shows `ii`, `it` or `iW`
/// for a package wanted installed), whatever the want (`hold` and
/// `deinstall` packages are still on disk) and the error flag. A package
/// that is `half-installed`, `unpacked` or `half-configured` is not counted:
/// dpkg has not finished with it, and it is reported as
/// [`ProblemKind::Incomplete`]. `not-installed` and `config-files`
/// packages are skipped silently.
///
/// Problems, all [`ProblemKind::Malformed`] unless said otherwise: a line
/// that is neither a field nor a continuation; a stanza without `Package`
/// or (when it counts) without `Version`, at the stanza's first line; a
/// `Status` that is not three known words; a version dpkg would reject, or
/// a name or architecture the server would reject, at that field's line; a
/// field of the four given twice or continued onto a second line, which
/// skips the stanza.
pub fn dpkg_status(file_name: &str, text: &str) -> ParsedInventory {
    let mut inv = ParsedInventory::new(InventoryFormat::Deb);
    let mut st = Stanza::default();
    for (n, line) in lines(text) {
        if line.trim().is_empty() {
            if st.first != 0 {
                deb_stanza(file_name, std::mem::take(&mut st), &mut inv);
            }
            continue;
        }
        if st.first == 0 {
            st.first = n;
        }
        if line.starts_with([' ', '\t']) {
            if !st.any_field {
                inv.malformed(
                    file_name,
                    n,
                    "continuation line (starting with a space) before any field",
                );
            } else if let Some(i) = st.current {
                if !st.broken {
                    inv.malformed(
                        file_name,
                        n,
                        format!(
                            "field {} continues onto a second line; stanza skipped",
                            DEB_FIELDS[i]
                        ),
                    );
                }
                st.broken = true;
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            inv.malformed(
                file_name,
                n,
                format!("not a \"Field: value\" line: {:?}", clip(line, 120)),
            );
            st.current = None;
            continue;
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            inv.malformed(
                file_name,
                n,
                format!("not a field name: {:?}", clip(name, 80)),
            );
            st.current = None;
            continue;
        }
        st.any_field = true;
        st.current = DEB_FIELDS.iter().position(|f| f.eq_ignore_ascii_case(name));
        let Some(i) = st.current else { continue };
        let field = &mut st.fields[i];
        if field.value.is_some() {
            if !st.broken {
                inv.malformed(
                    file_name,
                    n,
                    format!("field {} is given twice; stanza skipped", DEB_FIELDS[i]),
                );
            }
            st.broken = true;
            continue;
        }
        field.value = Some(value.trim().to_owned());
        field.line = n;
    }
    if st.first != 0 {
        deb_stanza(file_name, st, &mut inv);
    }
    inv.finish()
}

/// Decides one stanza: a package, a problem, or nothing.
fn deb_stanza(file: &str, st: Stanza, inv: &mut ParsedInventory) {
    if st.broken || !st.any_field {
        return;
    }
    let [package, version, arch, status] = st.fields;
    let Some(name) = package.value else {
        inv.malformed(file, st.first, "stanza has no Package field");
        return;
    };
    if let Err(e) = check_word("Package", &name) {
        inv.malformed(file, package.line, e);
        return;
    }
    let Some(status_value) = status.value else {
        inv.malformed(
            file,
            st.first,
            format!("package {name} has no Status field"),
        );
        return;
    };
    let words: Vec<&str> = status_value.split_whitespace().collect();
    let [want, flag, state] = words[..] else {
        inv.malformed(
            file,
            status.line,
            format!(
                "Status of {name} is {:?}, not \"want flag state\"",
                clip(&status_value, 80)
            ),
        );
        return;
    };
    if !DEB_WANT.contains(&want) || !DEB_FLAG.contains(&flag) {
        inv.malformed(
            file,
            status.line,
            format!(
                "Status of {name} is {:?}: unknown want or error flag",
                clip(&status_value, 80)
            ),
        );
        return;
    }
    if DEB_ABSENT.contains(&state) {
        return;
    }
    if DEB_UNFINISHED.contains(&state) {
        let at = version
            .value
            .as_deref()
            .map(|v| format!(" at {}", clip(v, 80)))
            .unwrap_or_default();
        inv.problem(
            file,
            st.first,
            ProblemKind::Incomplete,
            format!(
                "package {name}{at} is {state}: dpkg has not finished with it, so it is not counted as installed"
            ),
        );
        return;
    }
    if !DEB_COUNTED.contains(&state) {
        inv.malformed(
            file,
            status.line,
            format!(
                "Status of {name} has the unknown state {:?}",
                clip(state, 40)
            ),
        );
        return;
    }
    let Some(version_value) = version.value else {
        inv.malformed(
            file,
            st.first,
            format!("package {name} is {state} but has no Version field"),
        );
        return;
    };
    if let Err(e) = check_word("Version", &version_value) {
        inv.malformed(file, version.line, e);
        return;
    }
    if let Err(e) = DebVersion::parse(&version_value) {
        inv.malformed(
            file,
            version.line,
            format!(
                "Version {:?} of {name} is not a dpkg version: {e}",
                clip(&version_value, 80)
            ),
        );
        return;
    }
    let arch = match arch.value.filter(|a| !a.is_empty()) {
        Some(a) => match check_word("Architecture", &a) {
            Ok(()) => Some(a),
            Err(e) => {
                inv.malformed(file, arch.line, e);
                return;
            }
        },
        None => None,
    };
    inv.packages.push(InstalledPackage {
        name,
        version: version_value,
        arch,
    });
}

// ---------------------------------------------------------------------------
// rpm

/// Parses `rpm -qa` output. Each non-blank line is read by its number of
/// tab-separated fields (each trimmed of spaces):
///
/// - **3 fields, the third all digits**: `NAME<TAB>[EPOCH:]VERSION-RELEASE<TAB>SIZE`,
///   the output of `rpm -qa --qf '%{NAME}\t%{EPOCH}:%{VERSION}-%{RELEASE}\t%{SIZE}\n'`
///   with `(none):` and `0:` removed by `sed` (the form of the real samples
///   in `shared/samples/rpm/rpm-qa`). The size is ignored and there is no
///   architecture.
/// - **3 fields otherwise**: `NAME<TAB>EPOCH:VERSION-RELEASE<TAB>ARCH`, the
///   output of `rpm -qa --qf '%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\n'`,
///   the form the collector runs. An architecture of `(none)` (as rpm
///   prints for `gpg-pubkey`) or empty is no architecture.
/// - **1 field**: a plain `rpm -qa` line, `NAME-VERSION-RELEASE.ARCH`
///   (`openssl-libs-1.0.2k-19.el7.x86_64`), split from the right: the
///   architecture follows the last `.` when that `.` comes after the last
///   `-` (`gpg-pubkey-c87f5b1a-593863f8` has none), the release follows the
///   last `-`, the version the one before, and the name (which may hold
///   `-`) is the rest. An epoch is accepted before the name (`1:name-…`, as
///   yum writes) or before the version (`name-1:…`).
/// - any other number of fields is malformed.
///
/// The version is `[epoch:]version-release`: an epoch of `0`, `(none)` or
/// none at all is left out, and leading zeros are dropped, so it matches
/// the `to_version` of the yum, dnf and osquery events. A version or
/// release that is empty, or an epoch that is not a number, is malformed.
pub fn rpm_qa(file_name: &str, text: &str) -> ParsedInventory {
    let mut inv = ParsedInventory::new(InventoryFormat::Rpm);
    for (n, line) in lines(text) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').map(|f| f.trim_matches(' ')).collect();
        let result = match fields[..] {
            [nevra] => split_nevra(nevra),
            [name, evr, third] => rpm_fields(name, evr, third),
            _ => Err(format!(
                "{} tab-separated fields; expected 1 (name-version-release.arch) or 3 \
                 (name, [epoch:]version-release, size or arch): {:?}",
                fields.len(),
                clip(line, 120)
            )),
        };
        match result {
            Ok(p) => inv.packages.push(p),
            Err(e) => inv.malformed(file_name, n, e),
        }
    }
    inv.finish()
}

/// A three-field line: name, `[epoch:]version-release`, and size or arch.
fn rpm_fields(name: &str, evr: &str, third: &str) -> Result<InstalledPackage, String> {
    check_word("name", name)?;
    let version = rpm_evr(evr)?;
    // A size (all digits), rpm's `(none)`, or nothing: no architecture.
    let arch = if third.bytes().all(|b| b.is_ascii_digit()) || third == "(none)" {
        None
    } else {
        check_word("arch", third)?;
        Some(third.to_owned())
    };
    Ok(InstalledPackage {
        name: name.to_owned(),
        version,
        arch,
    })
}

/// Normalises `[epoch:]version-release` (see [`rpm_qa`]).
fn rpm_evr(evr: &str) -> Result<String, String> {
    let (epoch, vr) = match evr.split_once(':') {
        Some((e, vr)) => (Some(e), vr),
        None => (None, evr),
    };
    let epoch = match epoch {
        None | Some("(none)") => None,
        Some(e) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            Some(e.trim_start_matches('0')).filter(|e| !e.is_empty())
        }
        Some(e) => {
            return Err(format!(
                "epoch {:?} of {:?} is not a number",
                clip(e, 40),
                clip(evr, 80)
            ))
        }
    };
    let Some((version, release)) = vr.rsplit_once('-') else {
        return Err(format!(
            "{:?} is not [epoch:]version-release: no release",
            clip(evr, 80)
        ));
    };
    if version.is_empty() || release.is_empty() || version.contains(':') {
        return Err(format!(
            "{:?} is not [epoch:]version-release",
            clip(evr, 80)
        ));
    }
    let out = match epoch {
        Some(e) => format!("{e}:{version}-{release}"),
        None => format!("{version}-{release}"),
    };
    check_word("version", &out)?;
    Ok(out)
}

/// Splits a plain `rpm -qa` line (see [`rpm_qa`]).
fn split_nevra(spec: &str) -> Result<InstalledPackage, String> {
    check_word("package", spec)?;
    let bad = || format!("{:?} is not name-version-release[.arch]", clip(spec, 120));
    // An epoch before the name, as yum writes: `1:telnet-0.17-48.el6.x86_64`.
    let (lead_epoch, rest) = match spec.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (Some(e), rest)
        }
        _ => (None, spec),
    };
    let last_dash = rest.rfind('-').ok_or_else(bad)?;
    let (nvr, arch) = match rest.rfind('.') {
        Some(dot) if dot > last_dash => {
            let arch = &rest[dot + 1..];
            if arch.is_empty() || !arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "{:?}: {:?} after the last '.' is not an architecture",
                    clip(spec, 120),
                    clip(arch, 40)
                ));
            }
            (&rest[..dot], Some(arch))
        }
        _ => (rest, None),
    };
    let mut it = nvr.rsplitn(3, '-');
    let (Some(release), Some(version), Some(name)) = (it.next(), it.next(), it.next()) else {
        return Err(bad());
    };
    if name.is_empty() || version.is_empty() || release.is_empty() {
        return Err(bad());
    }
    let evr = match (lead_epoch, version.contains(':')) {
        (Some(_), true) => return Err(format!("{:?} has two epochs", clip(spec, 120))),
        (Some(e), false) => format!("{e}:{version}-{release}"),
        (None, _) => format!("{version}-{release}"),
    };
    Ok(InstalledPackage {
        name: name.to_owned(),
        version: rpm_evr(&evr)?,
        arch: arch.map(str::to_owned),
    })
}

// ---------------------------------------------------------------------------
// Windows

/// The inventory of installed hotfixes in what the `wmic qfe`
/// ([`crate::wmic`]), `systeminfo` ([`crate::systeminfo`]) and `Get-HotFix`
/// ([`crate::hotfix`]) parsers found in one file.
///
/// Each successful install event of those three sources is one package:
/// the name is the hotfix id as the event's `patch_id` has it (`KB5034441`,
/// `Q147222`), the version is [`WINDOWS_VERSION`], and there is no
/// architecture. The events' times are not used. Events of other sources
/// (Windows Update history, osquery) are history rather than a list of
/// what is installed, and are left out, as is any event that is not a
/// successful install; so are rows the parser skipped (ids that are not KB
/// or Q numbers, dates it could not read), which its problems, copied into
/// the result, report.
///
/// An inventory is one host's. When the events name more than one host
/// (a `Get-HotFix -ComputerName a,b` export), all their hotfixes are kept
/// and an [`ProblemKind::Unsupported`] problem at line 0 names the hosts:
/// split the events by [`crate::CollectedEvent::host`] first.
pub fn windows_hotfixes(file_name: &str, parsed: &Parsed) -> ParsedInventory {
    let mut inv = ParsedInventory::new(InventoryFormat::Windows);
    inv.problems.extend(parsed.problems.iter().cloned());
    let mut hosts: Vec<String> = Vec::new();
    for e in &parsed.events {
        let counted = matches!(
            e.source,
            Source::WmicQfe | Source::Systeminfo | Source::GetHotFix
        ) && e.kind == Kind::Install
            && e.status == Status::Success;
        if !counted {
            continue;
        }
        if let Err(msg) = check_word("hotfix id", &e.patch_id) {
            inv.malformed(file_name, e.line, msg);
            continue;
        }
        if let Some(h) = e.host.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
            if !hosts.iter().any(|k| k.eq_ignore_ascii_case(h)) {
                hosts.push(h.to_owned());
            }
        }
        inv.packages.push(InstalledPackage {
            name: e.patch_id.clone(),
            version: WINDOWS_VERSION.to_owned(),
            arch: None,
        });
    }
    if hosts.len() > 1 {
        let names: Vec<String> = hosts.iter().map(|h| clip(h, 60)).collect();
        inv.problem(
            file_name,
            0,
            ProblemKind::Unsupported,
            format!(
                "hotfixes of {} hosts ({}) were merged into one inventory; \
                 split the events by host to get one inventory per host",
                hosts.len(),
                names.join(", ")
            ),
        );
    }
    inv.finish()
}

/// The context for reading a Windows inventory: the caller's, with an
/// observation time filled in when it has none. The event parsers need one
/// for rows without a date, and the inventory does not use the times.
fn windows_context(ctx: &Context) -> Context {
    let mut c = ctx.clone();
    if c.observed_at.is_none() {
        c.observed_at = Some(DateTime::<Utc>::UNIX_EPOCH);
    }
    c
}

/// Reads one file's bytes as an inventory of `source`: decompresses gzip
/// and decodes the text as [`crate::parse`] does (decoding problems are
/// reported at line 0), then runs the source's parser.
///
/// Of the context, only the decoding fields (`code_page`,
/// `max_decompressed_bytes`) matter to dpkg and rpm. The Windows sources go
/// through their event parsers with it (`date_order`, `utc_offset`);
/// `observed_at` is filled in when unset, since an inventory keeps no
/// times.
pub fn parse_inventory(
    source: InventorySource,
    file_name: &str,
    bytes: &[u8],
    ctx: &Context,
) -> ParsedInventory {
    let decoded = decode(bytes, ctx.code_page, ctx.max_decompressed_bytes);
    let mut inv = source.parse_text(file_name, &decoded.text, ctx);
    if !decoded.warnings.is_empty() {
        let mut problems: Vec<Problem> = decoded
            .warnings
            .iter()
            .map(|w| Problem {
                file: file_name.to_owned(),
                line: 0,
                kind: ProblemKind::Malformed,
                message: w.clone(),
            })
            .collect();
        problems.append(&mut inv.problems);
        inv.problems = problems;
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, arch: Option<&str>) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            version: version.into(),
            arch: arch.map(Into::into),
        }
    }

    fn lines_of(inv: &ParsedInventory) -> Vec<(usize, ProblemKind)> {
        inv.problems.iter().map(|p| (p.line, p.kind)).collect()
    }

    #[test]
    fn names_round_trip() {
        for f in InventoryFormat::ALL {
            assert_eq!(f.name().parse::<InventoryFormat>(), Ok(f));
            assert_eq!(f.to_string(), f.name());
        }
        assert!("msi".parse::<InventoryFormat>().is_err());
        for s in InventorySource::ALL {
            assert_eq!(s.name().parse::<InventorySource>(), Ok(s));
            assert_eq!(
                s.event_source().is_some(),
                s.format() == InventoryFormat::Windows
            );
        }
        let err = "dpkg".parse::<InventorySource>().unwrap_err();
        assert!(err.contains("dpkg-status"), "{err}");
    }

    #[test]
    fn packages_sort_by_name_arch_version_and_dedup() {
        let mut inv = ParsedInventory::new(InventoryFormat::Rpm);
        inv.packages = vec![
            pkg("b", "1-1", Some("x86_64")),
            pkg("a", "2-1", Some("x86_64")),
            pkg("a", "1-1", Some("x86_64")),
            pkg("a", "3-1", None),
            pkg("a", "1-1", Some("x86_64")),
            pkg("a", "1-1", Some("i686")),
        ];
        let inv = inv.finish();
        assert_eq!(
            inv.packages,
            vec![
                pkg("a", "3-1", None),
                pkg("a", "1-1", Some("i686")),
                pkg("a", "1-1", Some("x86_64")),
                pkg("a", "2-1", Some("x86_64")),
                pkg("b", "1-1", Some("x86_64")),
            ]
        );
    }

    #[test]
    fn words_follow_the_servers_rules() {
        assert!(check_word("v", "1:2.3-4").is_ok());
        assert!(check_word("v", "").is_err());
        assert!(check_word("v", "a b").is_err());
        assert!(check_word("v", "a\u{7f}").is_err());
        assert!(check_word("v", "a\u{a0}b").is_err());
        assert!(check_word("v", &"é".repeat(MAX_CHARS)).is_ok());
        assert!(check_word("v", &"é".repeat(MAX_CHARS + 1)).is_err());
    }

    #[test]
    fn dpkg_counts_configured_states_only() {
        let text = "\
Package: a
Status: install ok installed
Architecture: amd64
Version: 1:2.3-4

Package: held
Status: hold ok installed
Architecture: all
Version: 1.0

Package: trig
Status: install ok triggers-pending
Architecture: amd64
Version: 2

Package: await
Status: install ok triggers-awaited
Architecture: amd64
Version: 3

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: purged
Status: purge ok not-installed

Package: broken
Status: install reinstreq half-installed
Architecture: amd64
Version: 1.0

Package: unpacked
Status: install ok unpacked
Version: 1.0

Package: halfconf
Status: install ok half-configured
Version: 1.0
";
        let inv = dpkg_status("status", text);
        assert_eq!(
            inv.packages,
            vec![
                pkg("a", "1:2.3-4", Some("amd64")),
                pkg("await", "3", Some("amd64")),
                pkg("held", "1.0", Some("all")),
                pkg("trig", "2", Some("amd64")),
            ]
        );
        assert_eq!(
            lines_of(&inv),
            vec![
                (29, ProblemKind::Incomplete),
                (34, ProblemKind::Incomplete),
                (38, ProblemKind::Incomplete),
            ]
        );
        assert!(inv.problems[0]
            .message
            .contains("broken at 1.0 is half-installed"));
    }

    #[test]
    fn dpkg_continuations_case_and_line_ends() {
        let text = "package: x\r\nstatus: install ok installed\r\nDescription: one\r\n two\r\n .\r\n three\r\nversion: 1.0-1\r\nConffiles:\r\n /etc/x abc\r\n\r\n\r\n \r\nPackage: y\r\nStatus: install ok installed\r\nVersion: 2\r\n";
        let inv = dpkg_status("status", text);
        assert_eq!(inv.problems, vec![]);
        assert_eq!(
            inv.packages,
            vec![pkg("x", "1.0-1", None), pkg("y", "2", None)]
        );
    }

    #[test]
    fn dpkg_missing_fields_are_problems_at_the_stanza_start() {
        let text = "\n\nPackage: noversion\nStatus: install ok installed\n\nVersion: 1\nStatus: install ok installed\n\nPackage: nostatus\nVersion: 1\n";
        let inv = dpkg_status("status", text);
        assert!(inv.packages.is_empty());
        assert_eq!(
            lines_of(&inv),
            vec![
                (3, ProblemKind::Malformed),
                (6, ProblemKind::Malformed),
                (9, ProblemKind::Malformed),
            ]
        );
        assert!(inv.problems[0].message.contains("no Version"));
        assert!(inv.problems[1].message.contains("no Package"));
        assert!(inv.problems[2].message.contains("no Status"));
    }

    #[test]
    fn dpkg_bad_values_are_problems_at_their_line() {
        let text = "\
Package: badver
Status: install ok installed
Version: 1:
Architecture: amd64

Package: spacey
Status: install ok installed
Version: 1.0 beta

Package: badstatus
Status: install ok
Version: 1

Package: weird
Status: install ok exploded
Version: 1

Package: want
Status: maybe ok installed
Version: 1

Package: twice
Package: twice
Status: install ok installed
Version: 1

Package: multi
Status: install ok installed
Version: 1
 2

 orphan
garbage line
Package: ok
Status: install ok installed
Version: 1
";
        let inv = dpkg_status("status", text);
        assert_eq!(inv.packages, vec![pkg("ok", "1", None)]);
        assert_eq!(
            inv.problems
                .iter()
                .map(|p| (p.line, p.message.split_whitespace().next().unwrap_or("")))
                .collect::<Vec<_>>(),
            vec![
                (3, "Version"),
                (8, "Version"),
                (11, "Status"),
                (15, "Status"),
                (19, "Status"),
                (23, "field"),
                (30, "field"),
                (32, "continuation"),
                (33, "not"),
            ]
        );
    }

    #[test]
    fn rpm_three_field_forms() {
        let text = "\
system-release\t1:2-11.amzn2\t26653
gpg-pubkey\tc87f5b1a-593863f8\t0
openssl-libs\t1:1.0.2k-19.el7\tx86_64
bash\t0:4.2.46-34.el7\tx86_64
gpg-pubkey\t0:fd431d51-4ae0493b\t(none)
zlib\t(none):1.2.7-18.el7\ti686
kernel \t 00:3.10.0-1160.el7 \t x86_64
";
        let inv = rpm_qa("qa", text);
        assert_eq!(inv.problems, vec![]);
        assert_eq!(
            inv.packages,
            vec![
                pkg("bash", "4.2.46-34.el7", Some("x86_64")),
                pkg("gpg-pubkey", "c87f5b1a-593863f8", None),
                pkg("gpg-pubkey", "fd431d51-4ae0493b", None),
                pkg("kernel", "3.10.0-1160.el7", Some("x86_64")),
                pkg("openssl-libs", "1:1.0.2k-19.el7", Some("x86_64")),
                pkg("system-release", "1:2-11.amzn2", None),
                pkg("zlib", "1.2.7-18.el7", Some("i686")),
            ]
        );
    }

    #[test]
    fn rpm_nevra_lines_split_from_the_right() {
        let text = "\
openssl-libs-1.0.2k-19.el7.x86_64
gpg-pubkey-c87f5b1a-593863f8
perl-Git-1.7.1-4.el6_7.1.noarch
1:telnet-0.17-48.el6.x86_64
NetworkManager-1:1.26.0-12.el8_3.x86_64
bash-0:4.2.46-34.el7.x86_64
python3.11-3.11.2-2.el9.x86_64
";
        let inv = rpm_qa("qa", text);
        assert_eq!(inv.problems, vec![]);
        assert_eq!(
            inv.packages,
            vec![
                pkg("NetworkManager", "1:1.26.0-12.el8_3", Some("x86_64")),
                pkg("bash", "4.2.46-34.el7", Some("x86_64")),
                pkg("gpg-pubkey", "c87f5b1a-593863f8", None),
                pkg("openssl-libs", "1.0.2k-19.el7", Some("x86_64")),
                pkg("perl-Git", "1.7.1-4.el6_7.1", Some("noarch")),
                pkg("python3.11", "3.11.2-2.el9", Some("x86_64")),
                pkg("telnet", "1:0.17-48.el6", Some("x86_64")),
            ]
        );
    }

    #[test]
    fn rpm_malformed_lines() {
        let text = "\
tree
foo-1.x86_64
a\tb
a\tb\tc\td
x\t1.0\tx86_64
x\ta:1.0-1\tx86_64
x\t1:2:3-4\tx86_64
x\t-1\t5
-1-1.x86_64
foo-1-1.x86+64
1:foo-2:1-1.x86_64
x\t1.0-1\tx86 64
bash-4.2-1.x86_64   Mon 01 Jan 2024
";
        let inv = rpm_qa("qa", text);
        assert!(inv.packages.is_empty(), "{:?}", inv.packages);
        assert_eq!(
            inv.problems.iter().map(|p| p.line).collect::<Vec<_>>(),
            (1..=13).collect::<Vec<_>>()
        );
        assert!(inv
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::Malformed && p.file == "qa"));
    }

    #[test]
    fn rpm_epochs_normalise() {
        assert_eq!(rpm_evr("0:1-2").unwrap(), "1-2");
        assert_eq!(rpm_evr("000:1-2").unwrap(), "1-2");
        assert_eq!(rpm_evr("007:1-2").unwrap(), "7:1-2");
        assert_eq!(rpm_evr("(none):1-2").unwrap(), "1-2");
        assert_eq!(
            rpm_evr("32:9.9.4-74.el7_6.2").unwrap(),
            "32:9.9.4-74.el7_6.2"
        );
        assert_eq!(rpm_evr("1.2-3-4").unwrap(), "1.2-3-4");
        assert!(rpm_evr(":1-2").is_err());
        assert!(rpm_evr("1-").is_err());
        assert!(rpm_evr("-1").is_err());
    }

    fn event(
        source: Source,
        id: &str,
        kind: Kind,
        status: Status,
        host: Option<&str>,
    ) -> crate::CollectedEvent {
        crate::CollectedEvent {
            source,
            kind,
            patch_id: id.into(),
            applied_at: DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap(),
            status,
            package: None,
            from_version: None,
            to_version: None,
            actor: None,
            detail: None,
            host: host.map(Into::into),
            line: 7,
        }
    }

    #[test]
    fn windows_counts_successful_installs_of_inventory_sources() {
        let mut parsed = Parsed {
            events: vec![
                event(
                    Source::WmicQfe,
                    "KB2",
                    Kind::Install,
                    Status::Success,
                    Some("PC"),
                ),
                event(
                    Source::Systeminfo,
                    "KB1",
                    Kind::Install,
                    Status::Success,
                    Some("pc"),
                ),
                event(
                    Source::GetHotFix,
                    "KB2",
                    Kind::Install,
                    Status::Success,
                    None,
                ),
                event(
                    Source::GetHotFix,
                    "KB3",
                    Kind::Remove,
                    Status::RolledBack,
                    None,
                ),
                event(
                    Source::WindowsUpdateHistory,
                    "KB4",
                    Kind::Install,
                    Status::Success,
                    None,
                ),
                event(Source::Osquery, "KB5", Kind::Install, Status::Success, None),
            ],
            problems: Vec::new(),
        };
        parsed.problems.push(Problem {
            file: "qfe".into(),
            line: 3,
            kind: ProblemKind::Unsupported,
            message: "File 1".into(),
        });
        let inv = windows_hotfixes("qfe", &parsed);
        assert_eq!(inv.format, InventoryFormat::Windows);
        assert_eq!(
            inv.packages,
            vec![
                pkg("KB1", WINDOWS_VERSION, None),
                pkg("KB2", WINDOWS_VERSION, None)
            ]
        );
        // The parser's problems are kept; PC and pc are one host.
        assert_eq!(inv.problems, parsed.problems);
    }

    #[test]
    fn windows_several_hosts_are_reported() {
        let parsed = Parsed {
            events: vec![
                event(
                    Source::GetHotFix,
                    "KB1",
                    Kind::Install,
                    Status::Success,
                    Some("A"),
                ),
                event(
                    Source::GetHotFix,
                    "KB2",
                    Kind::Install,
                    Status::Success,
                    Some("B"),
                ),
            ],
            problems: Vec::new(),
        };
        let inv = windows_hotfixes("hf.csv", &parsed);
        assert_eq!(inv.packages.len(), 2);
        assert_eq!(lines_of(&inv), vec![(0, ProblemKind::Unsupported)]);
        assert!(inv.problems[0].message.contains("2 hosts (A, B)"));
    }

    #[test]
    fn windows_sources_need_no_observation_time() {
        let text = "Host Name:  PC\nHotfix(s):  2 Hotfix(s) Installed.\n            [01]: KB1\n            [02]: KB2\n";
        let inv = parse_inventory(
            InventorySource::Systeminfo,
            "si.txt",
            text.as_bytes(),
            &Context::default(),
        );
        assert_eq!(inv.problems, vec![]);
        assert_eq!(inv.packages.len(), 2);
    }

    #[test]
    fn bytes_are_decoded_and_warnings_come_first() {
        let mut utf16 = vec![0xFF, 0xFE];
        for u in "bash\t0:5.2-1\tx86_64\nbad\n".encode_utf16() {
            utf16.extend(u.to_le_bytes());
        }
        utf16.push(b'x'); // an odd trailing byte: a decoding warning
        let inv = parse_inventory(InventorySource::RpmQa, "qa", &utf16, &Context::default());
        assert_eq!(inv.packages, vec![pkg("bash", "5.2-1", Some("x86_64"))]);
        assert_eq!(
            lines_of(&inv),
            vec![(0, ProblemKind::Malformed), (2, ProblemKind::Malformed)]
        );
    }
}
