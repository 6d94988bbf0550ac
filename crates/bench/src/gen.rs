//! The seeded generator of realistic patch events.
//!
//! Every event is a pure function of the seed and its index: there is no
//! hidden state, no clock and no shared random number generator, so any
//! event of any workload can be regenerated on its own, in any order and on
//! any thread, and two runs with the same seed send byte-identical bodies.
//!
//! The fleet has [`SYSTEMS`] systems in three families (Windows servers,
//! Debian/Ubuntu hosts and RHEL hosts) and [`PATCHES`] patches split the same
//! way, so a Windows KB is only ever applied to a Windows server. Events are
//! laid out in rounds of [`SYSTEMS`] indexes: within one round every system
//! appears exactly once (in a seed-dependent order), and the systems of a
//! family together cover every patch of their family. Any aligned block of
//! [`SYSTEMS`] events therefore touches every system and every patch.

use patchaudit_domain::{Input, NewEvent, RawEvent, ValidationContext};
use serde::Serialize;

/// How many distinct systems the fleet has.
pub const SYSTEMS: u64 = 10_000;
/// How many distinct patches exist.
pub const PATCHES: u64 = 1_000;
/// The end of the window in which events are applied: 2026-01-01T00:00:00Z.
///
/// It is a fixed instant rather than "now" so that the events stay a pure
/// function of the seed and index; it lies in the past, so the server's
/// future-skew check never rejects a generated event.
pub const WINDOW_END_MICROS: i64 = 1_767_225_600_000_000;
/// The length of the window: 730 days, about two years.
pub const WINDOW_MICROS: i64 = 730 * 86_400 * 1_000_000;
/// The probability that an event is a failure.
pub const FAILURE_RATE: f64 = 0.03;
/// The probability that an event is a rollback.
pub const ROLLBACK_RATE: f64 = 0.005;

/// The operating-system family of a system or a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Windows Server, patched by Windows Update.
    Windows,
    /// Debian and Ubuntu, patched with apt or dpkg.
    Debian,
    /// Red Hat Enterprise Linux, patched with dnf.
    RedHat,
}

impl Family {
    /// The first system index and the number of systems of the family.
    fn systems(self) -> (u64, u64) {
        match self {
            Family::Windows => (0, 4_000),
            Family::Debian => (4_000, 4_000),
            Family::RedHat => (8_000, 2_000),
        }
    }

    /// The first patch index and the number of patches of the family.
    fn patches(self) -> (u64, u64) {
        match self {
            Family::Windows => (0, 400),
            Family::Debian => (400, 400),
            Family::RedHat => (800, 200),
        }
    }

    fn of_system(s: u64) -> Family {
        match s {
            0..=3_999 => Family::Windows,
            4_000..=7_999 => Family::Debian,
            _ => Family::RedHat,
        }
    }

    fn of_patch(p: u64) -> Family {
        match p {
            0..=399 => Family::Windows,
            400..=799 => Family::Debian,
            _ => Family::RedHat,
        }
    }
}

/// A small, fast and version-stable pseudo-random stream (SplitMix64).
///
/// `rand`'s `StdRng` does not promise the same output across releases; this
/// does, so a seed names the same workload forever.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A stream derived from a seed and any number of further keys.
    pub fn new(seed: u64, keys: &[u64]) -> Self {
        let mut s = SplitMix(seed ^ 0x5DEE_CE66_D1CE_4E5B);
        for &k in keys {
            s.0 = s.next_u64() ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        s
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0); the bias is negligible for the small n used here.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A number uniformly distributed in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A patch as the fleet knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// The family the patch belongs to.
    pub family: Family,
    /// Its id, such as `KB5034441` or `openssl@3.0.2-0ubuntu1.15`.
    pub id: String,
    /// The package or product it changes.
    pub package: String,
    /// The version before.
    pub from_version: String,
    /// The version after.
    pub to_version: String,
    /// The CVEs it fixes; often none.
    pub cves: Vec<String>,
    /// Whether applying it needs a reboot, when the source says so.
    pub reboot_required: Option<bool>,
}

/// A generated event, in the shape a client sends it (`POST /v1/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenEvent {
    /// The idempotency key; unique per seed and index.
    pub event_id: String,
    /// The patch.
    pub patch_id: String,
    /// The system.
    pub system: String,
    /// RFC 3339, UTC, microseconds.
    pub applied_at: String,
    /// The same instant as microseconds since the epoch.
    #[serde(skip)]
    pub applied_at_micros: i64,
    /// `success`, `failure` or `rolled_back`.
    pub status: &'static str,
    /// The package changed.
    pub package: String,
    /// The version before.
    pub from_version: String,
    /// The version after.
    pub to_version: String,
    /// Where the fact came from.
    pub source: &'static str,
    /// Who applied it.
    pub actor: &'static str,
    /// Multi-line failure output, or a rollback note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// CVEs fixed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cves: Vec<String>,
    /// Whether a reboot is required, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reboot_required: Option<bool>,
    /// A change ticket, for some events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_ref: Option<String>,
}

impl GenEvent {
    /// The event as the domain's loosely typed input, exactly as a JSON
    /// decoder would produce it, without going through JSON.
    pub fn to_raw(&self) -> RawEvent {
        let mut r = RawEvent::default();
        let text = |s: &str| Input::Text(s.to_owned());
        r.push("event_id", text(&self.event_id));
        r.push("patch_id", text(&self.patch_id));
        r.push("system", text(&self.system));
        r.push("applied_at", text(&self.applied_at));
        r.push("status", text(self.status));
        r.push("package", text(&self.package));
        r.push("from_version", text(&self.from_version));
        r.push("to_version", text(&self.to_version));
        r.push("source", text(self.source));
        r.push("actor", text(self.actor));
        if let Some(d) = &self.detail {
            r.push("detail", text(d));
        }
        if !self.cves.is_empty() {
            r.push(
                "cves",
                Input::List(self.cves.iter().map(|c| text(c)).collect()),
            );
        }
        if let Some(b) = self.reboot_required {
            r.push("reboot_required", Input::Bool(b));
        }
        if let Some(c) = &self.change_ref {
            r.push("change_ref", text(c));
        }
        r
    }

    /// Validates the event with the domain's rules.
    pub fn validate(&self, ctx: &ValidationContext) -> anyhow::Result<NewEvent> {
        NewEvent::parse(self.to_raw(), ctx).map_err(|errs| {
            anyhow::anyhow!(
                "generated event {} is invalid: {}",
                self.event_id,
                errs.iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
    }
}

const WINDOWS_ROLES: [&str; 5] = ["dc", "sql", "iis", "rds", "file"];
const DEBIAN_ROLES: [&str; 6] = ["web", "api", "cache", "lb", "worker", "mq"];
const REDHAT_ROLES: [&str; 4] = ["db", "kafka", "build", "batch"];
/// Environments with their weights in percent.
const ENVS: [(&str, u64); 5] = [
    ("prod", 50),
    ("staging", 20),
    ("dev", 15),
    ("qa", 10),
    ("dr", 5),
];

/// Windows products: name and the build prefix of its OS version.
const WINDOWS_PRODUCTS: [(&str, &str); 5] = [
    ("Windows Server 2022", "10.0.20348"),
    ("Windows Server 2019", "10.0.17763"),
    ("Windows Server 2016", "10.0.14393"),
    ("Windows Server 2025", "10.0.26100"),
    (".NET Framework 4.8.1 for Windows Server 2022", "4.8.9032"),
];

/// Debian and Ubuntu packages: name, upstream version, revision prefix.
const DEBIAN_PACKAGES: [(&str, &str, &str); 20] = [
    ("openssl", "3.0.2", "0ubuntu1."),
    ("libssl3", "3.0.2", "0ubuntu1."),
    ("curl", "7.81.0", "1ubuntu1."),
    ("libcurl4", "7.81.0", "1ubuntu1."),
    ("openssh-server", "1:8.9p1", "3ubuntu0."),
    ("sudo", "1.9.9", "1ubuntu2."),
    ("bash", "5.1", "6ubuntu1."),
    ("libc6", "2.35", "0ubuntu3."),
    ("systemd", "249.11", "0ubuntu3."),
    ("linux-image-generic", "5.15.0", "1ubuntu0."),
    ("nginx", "1.18.0", "6ubuntu14."),
    ("python3.10", "3.10.12", "1~22.04."),
    ("git", "1:2.34.1", "1ubuntu1."),
    ("libxml2", "2.9.13", "1ubuntu0."),
    ("tzdata", "2024a", "0ubuntu0.22.04."),
    ("vim", "2:8.2.3995", "1ubuntu2."),
    ("openssl", "3.0.11", "1~deb12u"),
    ("libc6", "2.36", "9+deb12u"),
    ("postgresql-15", "15.6", "0+deb12u"),
    ("linux-image-amd64", "6.1.76", "1+deb12u"),
];

/// RHEL packages: name, upstream version, release suffix.
const REDHAT_PACKAGES: [(&str, &str, &str); 10] = [
    ("openssl", "3.0.7", ".el9"),
    ("kernel", "5.14.0", ".el9_3"),
    ("glibc", "2.34", ".el9"),
    ("openssh-server", "8.7p1", ".el9"),
    ("sudo", "1.9.5p2", ".el9"),
    ("curl", "7.76.1", ".el9"),
    ("java-17-openjdk", "17.0.10.0.7", ".el9"),
    ("python3", "3.9.18", ".el9"),
    ("systemd", "252", ".el9"),
    ("postgresql", "13.14", ".el9"),
];

/// Generates the events, systems and patches of one seed.
#[derive(Debug, Clone)]
pub struct Generator {
    seed: u64,
    system_offset: u64,
    patch_offset: u64,
}

impl Generator {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut r = SplitMix::new(seed, &[0xF1EE7]);
        Generator {
            seed,
            system_offset: r.below(SYSTEMS),
            patch_offset: r.below(PATCHES),
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The name of system `s` (in `0..SYSTEMS`), such as
    /// `web-00042.prod.example.com`. Names are unique: the number is `s`.
    pub fn system_name(&self, s: u64) -> String {
        let mut r = SplitMix::new(self.seed, &[1, s]);
        let role = match Family::of_system(s) {
            Family::Windows => r.pick(&WINDOWS_ROLES),
            Family::Debian => r.pick(&DEBIAN_ROLES),
            Family::RedHat => r.pick(&REDHAT_ROLES),
        };
        let mut w = r.below(100);
        let mut env = ENVS[0].0;
        for (name, weight) in ENVS {
            if w < weight {
                env = name;
                break;
            }
            w -= weight;
        }
        format!("{role}-{s:05}.{env}.example.com")
    }

    /// Patch `p` (in `0..PATCHES`).
    pub fn patch(&self, p: u64) -> Patch {
        let family = Family::of_patch(p);
        let (first, _) = family.patches();
        let k = p - first;
        let mut r = SplitMix::new(self.seed, &[2, p]);
        let cves = {
            let n = match family {
                Family::Windows => r.below(5),
                _ if r.chance(0.5) => 0,
                _ => 1 + r.below(3),
            };
            (0..n)
                .map(|_| format!("CVE-{}-{}", 2022 + r.below(4), 1_000 + r.below(49_000)))
                .collect()
        };
        match family {
            Family::Windows => {
                let (product, build) = WINDOWS_PRODUCTS[(k % 5) as usize];
                let kb = 5_000_000 + k * 83 + r.below(83);
                let month = k % 24;
                let base = 2_000 + (k / 5) * 17;
                Patch {
                    family,
                    id: format!("KB{kb}"),
                    package: format!(
                        "{}-{:02} Cumulative Update for {product} for x64-based Systems",
                        2024 + month / 12,
                        1 + month % 12
                    ),
                    from_version: format!("{build}.{base}"),
                    to_version: format!("{build}.{}", base + 1 + r.below(16)),
                    cves,
                    reboot_required: Some(!r.chance(0.1)),
                }
            }
            Family::Debian => {
                let (pkg, upstream, rev) = DEBIAN_PACKAGES[(k % 20) as usize];
                let n = 1 + k / 20;
                let kernel = pkg.starts_with("linux-image");
                Patch {
                    family,
                    id: format!("{pkg}@{upstream}-{rev}{n}"),
                    package: pkg.to_owned(),
                    from_version: format!("{upstream}-{rev}{}", n - 1),
                    to_version: format!("{upstream}-{rev}{n}"),
                    cves,
                    reboot_required: if kernel {
                        Some(true)
                    } else if r.chance(0.3) {
                        None
                    } else {
                        Some(false)
                    },
                }
            }
            Family::RedHat => {
                let (pkg, upstream, suffix) = REDHAT_PACKAGES[(k % 10) as usize];
                let n = 10 + k / 10;
                Patch {
                    family,
                    id: format!("{pkg}@{upstream}-{n}{suffix}"),
                    package: pkg.to_owned(),
                    from_version: format!("{upstream}-{}{suffix}", n - 1),
                    to_version: format!("{upstream}-{n}{suffix}"),
                    cves,
                    reboot_required: Some(pkg == "kernel" || pkg == "glibc"),
                }
            }
        }
    }

    /// The system index of event `index`.
    ///
    /// Within each round of [`SYSTEMS`] events the index is permuted by a
    /// multiplier coprime with [`SYSTEMS`], so every system appears once.
    pub fn system_of(&self, index: u64) -> u64 {
        let pos = index % SYSTEMS;
        (pos * 7_919 + self.system_offset) % SYSTEMS
    }

    /// The patch index of event `index`.
    ///
    /// The n-th system of a family gets, in round `r`, the patch
    /// `(n + 7r + offset) mod family_patches` of its family; since every
    /// family has at least as many systems as patches, each round covers
    /// every patch.
    pub fn patch_of(&self, index: u64) -> u64 {
        let s = self.system_of(index);
        let family = Family::of_system(s);
        let (sys_first, _) = family.systems();
        let (patch_first, patch_count) = family.patches();
        let round = index / SYSTEMS;
        patch_first + (s - sys_first + round * 7 + self.patch_offset) % patch_count
    }

    /// Event `index`: a pure function of the seed and the index.
    pub fn event(&self, index: u64) -> GenEvent {
        let s = self.system_of(index);
        let patch = self.patch(self.patch_of(index));
        let mut r = SplitMix::new(self.seed, &[3, index]);

        let applied_at_micros = WINDOW_END_MICROS - 1 - r.below(WINDOW_MICROS as u64) as i64;
        let roll = r.unit();
        let status = if roll < FAILURE_RATE {
            "failure"
        } else if roll < FAILURE_RATE + ROLLBACK_RATE {
            "rolled_back"
        } else {
            "success"
        };
        let (source, actor): (&'static str, &'static str) = match patch.family {
            Family::Windows => (
                "windows-update",
                *r.pick(&["NT AUTHORITY\\SYSTEM", "NT AUTHORITY\\SYSTEM", "svc-wsus"]),
            ),
            Family::Debian => {
                if r.chance(0.7) {
                    (
                        "apt",
                        *r.pick(&[
                            "unattended-upgrades",
                            "unattended-upgrades",
                            "ansible",
                            "root",
                        ]),
                    )
                } else {
                    ("dpkg", *r.pick(&["root", "ansible"]))
                }
            }
            Family::RedHat => ("dnf", *r.pick(&["dnf-automatic", "ansible", "root"])),
        };
        let system = self.system_name(s);
        let (from_version, to_version) = if status == "rolled_back" {
            (patch.to_version.clone(), patch.from_version.clone())
        } else {
            (patch.from_version.clone(), patch.to_version.clone())
        };
        let detail = match status {
            "failure" => Some(failure_detail(&patch, &system, &mut r)),
            "rolled_back" => Some(format!(
                "Rolled back {} to {} on {system} after the post-patch health check failed.\nTicket owner notified; the patch stays blocked until reviewed.",
                patch.package, patch.from_version
            )),
            _ => None,
        };
        let change_ref = r
            .chance(0.3)
            .then(|| format!("CHG{:07}", r.below(10_000_000)));
        GenEvent {
            event_id: self.event_id(index),
            patch_id: patch.id,
            system,
            applied_at: rfc3339_micros(applied_at_micros),
            applied_at_micros,
            status,
            package: patch.package,
            from_version,
            to_version,
            source,
            actor,
            detail,
            cves: patch.cves,
            reboot_required: if status == "success" {
                patch.reboot_required
            } else {
                None
            },
            change_ref,
        }
    }

    /// The idempotency key of event `index`, shaped like a UUID. The last 64
    /// bits are the index XOR a seed-derived constant, so keys never repeat
    /// within a seed.
    pub fn event_id(&self, index: u64) -> String {
        let hi = SplitMix::new(self.seed, &[4, index]).next_u64();
        let lo = index ^ SplitMix::new(self.seed, &[5]).next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xfff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }
}

fn failure_detail(patch: &Patch, system: &str, r: &mut SplitMix) -> String {
    match patch.family {
        Family::Windows => {
            let code = *r.pick(&["0x800f0922", "0x80070643", "0x8024200B", "0x800f081f"]);
            format!(
                "Installation Failure: Windows failed to install the following update with error {code}: {} ({}).\n\
                 Host: {system}\n\
                 CBS: Failed to resolve execution package [HRESULT = {code}]\n\
                 WindowsUpdateAgent: Reverting changes; a restart may be pending.",
                patch.package, patch.id
            )
        }
        Family::Debian => format!(
            "Setting up {pkg} ({to}) ...\n\
             dpkg: error processing package {pkg} (--configure):\n \
             installed {pkg} package post-installation script subprocess returned error exit status {code}\n\
             Errors were encountered while processing:\n {pkg}\n\
             E: Sub-process /usr/bin/dpkg returned an error code (1)",
            pkg = patch.package,
            to = patch.to_version,
            code = 1 + r.below(3)
        ),
        Family::RedHat => format!(
            "Running transaction check\n\
             Error: Transaction test error:\n  \
             file /usr/lib/.build-id/{:02x}/{:012x} conflicts between attempted installs of {pkg}-{to}.x86_64 and {pkg}-{from}.x86_64\n\
             Error Summary\n-------------",
            r.below(256),
            r.below(1 << 48),
            pkg = patch.package,
            to = patch.to_version,
            from = patch.from_version
        ),
    }
}

/// Formats microseconds since the epoch as RFC 3339 in UTC with six
/// fractional digits, exactly as the domain does.
pub fn rfc3339_micros(micros: i64) -> String {
    patchaudit_domain::Timestamp::from_micros(micros).to_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchaudit_server::wire::{decode_json, decode_ndjson, Decoded};
    use std::collections::HashSet;

    fn parse_all(decoded: Vec<Decoded>) -> Vec<NewEvent> {
        let ctx = ValidationContext::now();
        decoded
            .into_iter()
            .map(|d| match d {
                Decoded::Event(raw) => NewEvent::parse(raw, &ctx)
                    .unwrap_or_else(|e| panic!("generated event is invalid: {e:?}")),
                Decoded::NotAnObject(k) => panic!("generated {k}, not an object"),
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let a = Generator::new(42);
        let b = Generator::new(42);
        for i in (0..50_000).step_by(97) {
            assert_eq!(a.event(i), b.event(i), "event {i}");
        }
        // Order does not matter: an event depends on its index only.
        let forward: Vec<_> = (0..100).map(|i| a.event(i)).collect();
        let backward: Vec<_> = (0..100).rev().map(|i| b.event(i)).collect();
        assert!(forward.iter().eq(backward.iter().rev()));
        let c = Generator::new(43);
        assert_ne!(a.event(0), c.event(0), "another seed, other events");
    }

    #[test]
    fn every_event_passes_validation_through_json_and_ndjson() {
        let g = Generator::new(42);
        let events: Vec<GenEvent> = (0..10_000).map(|i| g.event(i)).collect();

        let mut ndjson = Vec::new();
        for e in &events {
            serde_json::to_writer(&mut ndjson, e).unwrap();
            ndjson.push(b'\n');
        }
        let from_ndjson = parse_all(decode_ndjson(&ndjson).unwrap());
        assert_eq!(from_ndjson.len(), events.len());

        let json = serde_json::to_vec(&events[..500]).unwrap();
        let from_json = parse_all(decode_json(&json).unwrap());
        assert_eq!(from_json.len(), 500);
        for e in &events[..20] {
            let single = parse_all(decode_json(&serde_json::to_vec(e).unwrap()).unwrap());
            assert_eq!(single.len(), 1);
        }

        // The direct path (used to preload the store) agrees with JSON.
        let ctx = ValidationContext::now();
        for (e, parsed) in events.iter().zip(&from_ndjson).take(1_000) {
            assert_eq!(&e.validate(&ctx).unwrap(), parsed);
        }
    }

    #[test]
    fn failures_are_about_three_percent_and_have_multi_line_details() {
        let g = Generator::new(42);
        let events: Vec<GenEvent> = (0..10_000).map(|i| g.event(i)).collect();
        let failures: Vec<_> = events.iter().filter(|e| e.status == "failure").collect();
        let ratio = failures.len() as f64 / events.len() as f64;
        assert!((0.02..=0.04).contains(&ratio), "failure ratio {ratio}");
        assert!(failures
            .iter()
            .all(|e| e.detail.as_deref().is_some_and(|d| d.lines().count() >= 3)));
        let rollbacks = events.iter().filter(|e| e.status == "rolled_back").count();
        assert!((1..200).contains(&rollbacks), "{rollbacks} rollbacks");
        let sources: HashSet<_> = events.iter().map(|e| e.source).collect();
        for s in ["dpkg", "apt", "dnf", "windows-update"] {
            assert!(sources.contains(s), "no event from {s}");
        }
        assert!(events.iter().any(|e| !e.cves.is_empty()));
        assert!(events.iter().any(|e| e.cves.is_empty()));
    }

    #[test]
    fn all_systems_and_patches_are_reachable() {
        let g = Generator::new(42);
        let mut systems = HashSet::new();
        let mut patches = HashSet::new();
        let mut ids = HashSet::new();
        for i in 0..SYSTEMS {
            let e = g.event(i);
            systems.insert(e.system);
            patches.insert(e.patch_id);
            assert!(ids.insert(e.event_id), "event_id repeated at {i}");
        }
        assert_eq!(systems.len() as u64, SYSTEMS);
        assert_eq!(patches.len() as u64, PATCHES);
        let names: HashSet<_> = (0..SYSTEMS).map(|s| g.system_name(s)).collect();
        assert_eq!(names, systems);
        assert!(patches.iter().any(|p| p.starts_with("KB50")));
        assert!(patches
            .iter()
            .any(|p| p.starts_with("openssl@3.0.2-0ubuntu1.")));
    }

    #[test]
    fn applied_at_lies_in_the_past_two_years() {
        let g = Generator::new(7);
        let now = patchaudit_domain::Timestamp::now().as_micros();
        for i in (0..100_000).step_by(13) {
            let e = g.event(i);
            assert!(e.applied_at_micros < WINDOW_END_MICROS && e.applied_at_micros < now);
            assert!(e.applied_at_micros >= WINDOW_END_MICROS - WINDOW_MICROS);
            assert_eq!(rfc3339_micros(e.applied_at_micros), e.applied_at);
        }
    }
}
