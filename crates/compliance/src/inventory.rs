//! A system's installed-package inventory, and what the report reads from it.
//!
//! A collector sends the packages a host has installed (dpkg's status file,
//! `rpm -qa`, or the hotfixes Windows lists). The server keeps the latest
//! snapshot per system. Two questions are answered from it:
//!
//! - **Applicability by version.** A catalog entry that lists affected
//!   packages with fixed versions applies to a system whose inventory holds
//!   an affected version (a package of the same family and name, installed
//!   below the fixed one as dpkg or rpm compares versions), and not to one
//!   whose inventory shows it fixed. Where the inventory cannot tell, the
//!   entry's `applies_to` decides, as without one ([`Inventory::verdict`]).
//! - **Unaccounted changes.** An installed version that no logged success
//!   explains: no event for that system recorded that package at that
//!   version ([`Inventory::explained_by`]).

use crate::catalog::AffectedPackage;
use patchaudit_domain::version::{dpkg_cmp, rpm_evr_cmp};
use patchaudit_domain::{ErrorCode, FieldError, Timestamp};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The package family of an inventory, which decides how versions compare
/// and which advisories' ecosystems it can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PackageFormat {
    /// Debian packages (dpkg); versions compare as dpkg compares them.
    Deb,
    /// RPM packages; versions `[epoch:]version-release` compare as rpm does.
    Rpm,
    /// Windows hotfixes: the name is the KB id and the version carries no order.
    Windows,
}

impl PackageFormat {
    /// Every format, in a stable order.
    pub const ALL: [PackageFormat; 3] = [
        PackageFormat::Deb,
        PackageFormat::Rpm,
        PackageFormat::Windows,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PackageFormat::Deb => "deb",
            PackageFormat::Rpm => "rpm",
            PackageFormat::Windows => "windows",
        }
    }

    /// The format of the packages of an OSV ecosystem such as `Debian:12`,
    /// `Ubuntu:22.04:LTS` or `Red Hat:enterprise_linux:9::appstream`; `None`
    /// for ecosystems whose packages no inventory lists (PyPI, npm, ...).
    pub fn of_ecosystem(ecosystem: &str) -> Option<PackageFormat> {
        let family = ecosystem.split(':').next().unwrap_or("").trim();
        const DEB: [&str; 2] = ["Debian", "Ubuntu"];
        const RPM: [&str; 10] = [
            "Red Hat",
            "Rocky Linux",
            "AlmaLinux",
            "CentOS",
            "Fedora",
            "Oracle",
            "SUSE",
            "openSUSE",
            "openEuler",
            "Mageia",
        ];
        if DEB.contains(&family) {
            Some(PackageFormat::Deb)
        } else if RPM.contains(&family) {
            Some(PackageFormat::Rpm)
        } else {
            None
        }
    }

    /// Orders two versions of this format; `None` when either is not a
    /// version of the format (a dpkg version with a space, say) or the
    /// format has no order.
    pub fn compare(self, a: &str, b: &str) -> Option<Ordering> {
        match self {
            PackageFormat::Deb => dpkg_cmp(a, b).ok(),
            PackageFormat::Rpm => Some(rpm_evr_cmp(a, b)),
            PackageFormat::Windows => None,
        }
    }
}

impl FromStr for PackageFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PackageFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!("{s:?} is not a package format; expected one of deb, rpm, windows")
            })
    }
}

impl fmt::Display for PackageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstalledPackage {
    /// The package name (a KB id such as `KB5031234` on Windows).
    pub name: String,
    /// The installed version, as the package manager writes it.
    pub version: String,
    /// The architecture, where the format has one.
    pub arch: Option<String>,
}

/// A package as an edge received it, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawPackage {
    /// The name.
    pub name: Option<String>,
    /// The version.
    pub version: Option<String>,
    /// The architecture.
    pub arch: Option<String>,
}

/// An inventory as an edge received it, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawInventory {
    /// `deb`, `rpm` or `windows`.
    pub format: Option<String>,
    /// The installed packages.
    pub packages: Vec<RawPackage>,
}

/// A validated snapshot of one system's installed packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The package family.
    pub format: PackageFormat,
    /// When the server recorded this package list. A host re-sending the
    /// same list changes nothing, so this is since when the system's
    /// packages have been as listed, as far as the ledger knows.
    pub recorded_at: Timestamp,
    /// The packages, sorted by name, architecture and version, without repeats.
    pub packages: Vec<InstalledPackage>,
}

/// The longest package name, version or architecture accepted.
const MAX_TEXT: usize = 256;

fn word(field: &str, v: Option<String>, required: bool) -> Result<Option<String>, FieldError> {
    let v = crate::catalog::text(field, v, MAX_TEXT, required)?;
    // Names and versions are matched byte for byte against event fields and
    // catalog entries, so whitespace in them could only ever be a mistake.
    if let Some(c) = v
        .as_deref()
        .and_then(|v| v.chars().find(|c| c.is_whitespace()))
    {
        return Err(FieldError::new(
            field,
            ErrorCode::Format,
            format!(
                "{field} must not contain whitespace (found U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(v)
}

impl Inventory {
    /// At most this many packages per inventory; a large server holds a few thousand.
    pub const MAX_PACKAGES: usize = 100_000;

    /// Validates a raw inventory recorded at `recorded_at`, reporting every
    /// problem at once.
    pub fn parse(raw: RawInventory, recorded_at: Timestamp) -> Result<Inventory, Vec<FieldError>> {
        let mut errors = Vec::new();
        let format = match raw.format {
            None => {
                errors.push(FieldError::new(
                    "format",
                    ErrorCode::Required,
                    "format is required",
                ));
                None
            }
            Some(s) => s
                .parse::<PackageFormat>()
                .map_err(|m| errors.push(FieldError::new("format", ErrorCode::InvalidValue, m)))
                .ok(),
        };
        if raw.packages.len() > Self::MAX_PACKAGES {
            errors.push(FieldError::new(
                "packages",
                ErrorCode::TooLong,
                format!("packages has more than {} items", Self::MAX_PACKAGES),
            ));
            return Err(errors);
        }
        let mut packages = Vec::with_capacity(raw.packages.len());
        for (i, p) in raw.packages.into_iter().enumerate() {
            let f = |part: &str| format!("packages[{i}].{part}");
            let name = word(&f("name"), p.name, true);
            let version = word(&f("version"), p.version, true).and_then(|v| match (format, v) {
                (Some(PackageFormat::Deb), Some(v)) => {
                    match patchaudit_domain::version::DebVersion::parse(&v) {
                        Ok(_) => Ok(Some(v)),
                        Err(e) => Err(FieldError::new(
                            f("version"),
                            ErrorCode::Format,
                            format!("packages[{i}].version {v:?} is not a dpkg version: {e}"),
                        )),
                    }
                }
                (_, v) => Ok(v),
            });
            let arch = word(&f("arch"), p.arch, false);
            match (name, version, arch) {
                (Ok(Some(name)), Ok(Some(version)), Ok(arch)) => {
                    packages.push(InstalledPackage {
                        name,
                        version,
                        arch,
                    });
                }
                (n, v, a) => errors.extend([n.err(), v.err(), a.err()].into_iter().flatten()),
            }
        }
        match format {
            Some(format) if errors.is_empty() => {
                packages.sort_by(|a, b| {
                    (&a.name, &a.arch, &a.version).cmp(&(&b.name, &b.arch, &b.version))
                });
                packages.dedup();
                Ok(Inventory {
                    format,
                    recorded_at,
                    packages,
                })
            }
            _ => Err(errors),
        }
    }

    /// The installed packages named `name` (one per architecture, or more
    /// when several versions are installed side by side, as kernels are).
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a InstalledPackage> + 'a {
        let start = self.packages.partition_point(|p| p.name.as_str() < name);
        self.packages[start..]
            .iter()
            .take_while(move |p| p.name == name)
    }

    /// What this inventory says about an entry with these affected
    /// packages: `Some(true)` if the system holds an affected version,
    /// `Some(false)` if it does not, `None` if the inventory cannot tell
    /// (and the entry's `applies_to` alone decides).
    ///
    /// Only the entry's packages of this inventory's family count, and only
    /// when they name fixed versions of one ecosystem: an advisory that fixes
    /// `Ubuntu:20.04` and `Ubuntu:24.04` at different versions cannot be
    /// judged without the host's release, which an inventory does not carry.
    /// An installed package of an affected name is affected if it is below
    /// the fix, if the package has no fix, or if the versions cannot be
    /// compared. A deb advisory may name a source package (`glibc`) that no
    /// binary package (`libc6`) is called, so for deb the absence of every
    /// named package decides nothing; rpm advisories name binary packages,
    /// and there absence means not affected.
    pub fn verdict(&self, packages: &[AffectedPackage]) -> Option<bool> {
        let relevant: Vec<&AffectedPackage> = packages
            .iter()
            .filter(|p| PackageFormat::of_ecosystem(&p.ecosystem) == Some(self.format))
            .collect();
        let mut fixed = relevant.iter().filter(|p| p.fixed.is_some());
        let first = fixed.next()?;
        if fixed.any(|p| p.ecosystem != first.ecosystem) {
            return None;
        }
        let mut installed_any = false;
        for a in &relevant {
            for p in self.named(&a.name) {
                installed_any = true;
                let safe = a.fixed.as_deref().is_some_and(|fix| {
                    matches!(
                        self.format.compare(&p.version, fix),
                        Some(Ordering::Greater | Ordering::Equal)
                    )
                });
                if !safe {
                    return Some(true);
                }
            }
        }
        match (installed_any, self.format) {
            (false, PackageFormat::Deb) => None,
            _ => Some(false),
        }
    }

    /// The patch ids under which a collector records an install of `p`:
    /// `name@version` for packages (for rpm also without the epoch, as
    /// sources that do not report an epoch write it), the KB id on Windows.
    pub fn patch_ids(&self, p: &InstalledPackage) -> Vec<String> {
        match self.format {
            PackageFormat::Windows => vec![p.name.clone()],
            PackageFormat::Deb => vec![format!("{}@{}", p.name, p.version)],
            PackageFormat::Rpm => {
                let mut ids = vec![format!("{}@{}", p.name, p.version)];
                if let Some((epoch, rest)) = p.version.split_once(':') {
                    if epoch.bytes().all(|b| b.is_ascii_digit()) {
                        ids.push(format!("{}@{rest}", p.name));
                    }
                }
                ids
            }
        }
    }

    /// The installed packages that no logged success explains. `explained`
    /// answers whether the ledger holds an applied install under a patch id.
    pub fn explained_by(&self, mut explained: impl FnMut(&str) -> bool) -> Vec<&InstalledPackage> {
        self.packages
            .iter()
            .filter(|p| !self.patch_ids(p).iter().any(|id| explained(id)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(format: &str, pkgs: &[(&str, &str, Option<&str>)]) -> RawInventory {
        RawInventory {
            format: Some(format.into()),
            packages: pkgs
                .iter()
                .map(|(n, v, a)| RawPackage {
                    name: Some((*n).into()),
                    version: Some((*v).into()),
                    arch: a.map(Into::into),
                })
                .collect(),
        }
    }

    fn affected(eco: &str, name: &str, fixed: Option<&str>) -> AffectedPackage {
        AffectedPackage {
            ecosystem: eco.into(),
            name: name.into(),
            fixed: fixed.map(Into::into),
        }
    }

    impl Inventory {
        fn parse_at(raw: RawInventory) -> Result<Inventory, Vec<FieldError>> {
            Inventory::parse(raw, when())
        }
    }

    fn when() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-01T10:00:00Z").unwrap()
    }

    fn codes(r: Result<Inventory, Vec<FieldError>>) -> Vec<(String, ErrorCode)> {
        r.unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn parses_sorts_and_dedups() {
        let inv = Inventory::parse_at(raw(
            "deb",
            &[
                ("zlib1g", "1:1.2.13", Some("amd64")),
                ("bash", "5.2-1", None),
                ("bash", "5.2-1", None),
            ],
        ))
        .unwrap();
        assert_eq!(inv.format, PackageFormat::Deb);
        assert_eq!(inv.packages.len(), 2);
        assert_eq!(inv.packages[0].name, "bash");
        assert_eq!(inv.recorded_at, when());
    }

    #[test]
    fn the_format_is_required_and_checked() {
        let mut r = raw("deb", &[]);
        r.format = None;
        assert_eq!(
            codes(Inventory::parse_at(r)),
            vec![("format".into(), ErrorCode::Required)]
        );
        assert_eq!(
            codes(Inventory::parse_at(raw("msi", &[]))),
            vec![("format".into(), ErrorCode::InvalidValue)]
        );
        // An empty list is a valid inventory: a host with nothing installed
        // is unusual, but not malformed.
        assert!(Inventory::parse_at(raw("windows", &[]))
            .unwrap()
            .packages
            .is_empty());
    }

    #[test]
    fn every_package_problem_is_reported_with_its_index() {
        let long = "a".repeat(MAX_TEXT + 1);
        let mut r = raw(
            "rpm",
            &[
                ("ok", "1.0-1", None),
                ("", "1", None),
                ("x", &long, None),
                ("y y", "1", Some("x86 64")),
            ],
        );
        r.packages.push(RawPackage::default());
        assert_eq!(
            codes(Inventory::parse_at(r)),
            vec![
                ("packages[1].name".into(), ErrorCode::Empty),
                ("packages[2].version".into(), ErrorCode::TooLong),
                ("packages[3].name".into(), ErrorCode::Format),
                ("packages[3].arch".into(), ErrorCode::Format),
                ("packages[4].name".into(), ErrorCode::Required),
                ("packages[4].version".into(), ErrorCode::Required),
            ]
        );
    }

    #[test]
    fn a_deb_version_must_be_one_dpkg_accepts() {
        assert_eq!(
            codes(Inventory::parse_at(raw("deb", &[("bash", "a:1", None)]))),
            vec![("packages[0].version".into(), ErrorCode::Format)]
        );
        // rpm accepts any string as a version, so the same text is fine there.
        assert!(Inventory::parse_at(raw("rpm", &[("bash", "a:1", None)])).is_ok());
    }

    #[test]
    fn too_many_packages() {
        let mut r = raw("windows", &[]);
        r.packages = vec![RawPackage::default(); Inventory::MAX_PACKAGES + 1];
        assert_eq!(
            codes(Inventory::parse_at(r)),
            vec![("packages".into(), ErrorCode::TooLong)]
        );
    }

    #[test]
    fn ecosystems_map_to_formats() {
        assert_eq!(
            PackageFormat::of_ecosystem("Debian:12"),
            Some(PackageFormat::Deb)
        );
        assert_eq!(
            PackageFormat::of_ecosystem("Ubuntu:22.04:LTS"),
            Some(PackageFormat::Deb)
        );
        assert_eq!(
            PackageFormat::of_ecosystem("Red Hat:enterprise_linux:9::appstream"),
            Some(PackageFormat::Rpm)
        );
        assert_eq!(
            PackageFormat::of_ecosystem("AlmaLinux:9"),
            Some(PackageFormat::Rpm)
        );
        assert_eq!(
            PackageFormat::of_ecosystem("Rocky Linux:8"),
            Some(PackageFormat::Rpm)
        );
        assert_eq!(PackageFormat::of_ecosystem("PyPI"), None);
        assert_eq!(PackageFormat::of_ecosystem("Alpine:v3.18"), None);
    }

    #[test]
    fn affected_only_below_the_fix_of_the_same_family() {
        let inv = Inventory::parse_at(raw(
            "deb",
            &[
                ("openssl", "3.0.11-1~deb12u1", Some("amd64")),
                ("bash", "5.2.15-2", Some("amd64")),
            ],
        ))
        .unwrap();
        let deb = |name: &str, fixed: Option<&str>| [affected("Debian:12", name, fixed)];
        assert_eq!(
            inv.verdict(&deb("openssl", Some("3.0.11-1~deb12u2"))),
            Some(true)
        );
        // At the fixed version, or above it, the system is not affected.
        for fixed in ["3.0.11-1~deb12u1", "3.0.11-1~deb12u0", "3.0.10-1"] {
            assert_eq!(
                inv.verdict(&deb("openssl", Some(fixed))),
                Some(false),
                "{fixed}"
            );
        }
        // `~` sorts before the end, so 3.0.11-1~deb12u1 < 3.0.11-1.
        assert_eq!(inv.verdict(&deb("openssl", Some("3.0.11-1"))), Some(true));
        // A fix dpkg cannot compare leaves the installed package affected.
        assert_eq!(
            inv.verdict(&deb("openssl", Some("not a version"))),
            Some(true)
        );
        // Another family's advisory, or one without any fix, decides nothing.
        assert_eq!(
            inv.verdict(&[affected("AlmaLinux:9", "openssl", Some("9.9"))]),
            None
        );
        assert_eq!(inv.verdict(&deb("openssl", None)), None);
        // A deb advisory naming only packages that are not installed (perhaps
        // a source package) decides nothing either.
        assert_eq!(inv.verdict(&deb("glibc", Some("9"))), None);
    }

    #[test]
    fn an_unfixed_package_of_a_fixed_advisory_is_affected() {
        let inv = Inventory::parse_at(raw("deb", &[("libfoo1", "1.0-1", None)])).unwrap();
        let entry = [
            affected("Debian:12", "libbar", Some("2.0-1")),
            affected("Debian:12", "libfoo1", None),
        ];
        assert_eq!(inv.verdict(&entry), Some(true));
    }

    #[test]
    fn fixes_of_several_releases_decide_nothing() {
        let inv = Inventory::parse_at(raw("deb", &[("curl", "7.68.0-1ubuntu2.20", None)])).unwrap();
        let entry = [
            affected("Ubuntu:20.04:LTS", "curl", Some("7.68.0-1ubuntu2.20")),
            affected("Ubuntu:24.04:LTS", "curl", Some("8.5.0-2ubuntu10.4")),
        ];
        assert_eq!(inv.verdict(&entry), None);
        assert_eq!(inv.verdict(&entry[..1]), Some(false));
    }

    #[test]
    fn rpm_versions_compare_with_epochs_and_absence_means_not_affected() {
        let inv = Inventory::parse_at(raw(
            "rpm",
            &[("openssl-libs", "1:3.0.7-24.el9", Some("x86_64"))],
        ))
        .unwrap();
        let alma = |name: &str, fixed: &str| [affected("AlmaLinux:9", name, Some(fixed))];
        assert_eq!(
            inv.verdict(&alma("openssl-libs", "1:3.0.7-25.el9")),
            Some(true)
        );
        // A missing epoch is 0, which the installed epoch 1 is above.
        assert_eq!(
            inv.verdict(&alma("openssl-libs", "3.0.9-1.el9")),
            Some(false)
        );
        // rpm advisories name binary packages: not installed, not affected.
        assert_eq!(inv.verdict(&alma("nginx", "1.0-1")), Some(false));
    }

    #[test]
    fn explained_by_matches_collector_patch_ids() {
        let inv = Inventory::parse_at(raw(
            "rpm",
            &[
                ("tree", "1.5.3-3.el6", None),
                ("bind", "32:9.11.4-26.el7", None),
                ("curl", "7.1-1", None),
            ],
        ))
        .unwrap();
        let logged = ["tree@1.5.3-3.el6", "bind@9.11.4-26.el7"];
        let left = inv.explained_by(|id| logged.contains(&id));
        assert_eq!(
            left.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["curl"]
        );
        let win = Inventory::parse_at(raw("windows", &[("KB5031234", "installed", None)])).unwrap();
        assert_eq!(win.patch_ids(&win.packages[0]), ["KB5031234"]);
        assert!(win.explained_by(|id| id == "KB5031234").is_empty());
    }
}
