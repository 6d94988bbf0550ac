//! Pure parsers that turn package-manager and Windows logs into patch events.
//!
//! Every parser is a pure function from text to a [`Parsed`]: the events it
//! found, and every problem it met, each located by file and line. A parser
//! never panics and never stops at a bad line: it reports the line and goes
//! on. [`parse`] takes raw bytes instead. It decompresses gzip (rotated logs)
//! and decodes UTF-8, UTF-16 or a legacy code page (see [`decode`]), then
//! dispatches on the [`Source`].
//!
//! One module per format:
//!
//! | module | input |
//! |---|---|
//! | [`dpkg`] | `/var/log/dpkg.log` |
//! | [`apt`] | `/var/log/apt/history.log` |
//! | [`yum`] | `/var/log/yum.log` (no year in its lines: see [`Context::year`]) |
//! | [`dnf`] | `dnf history info` (and `yum history info`) output |
//! | [`wmic`] | `wmic qfe` output |
//! | [`systeminfo`] | the Hotfix(s) list in `systeminfo` output |
//! | [`hotfix`] | `Get-HotFix` exported as CSV or JSON |
//! | [`wu_history`] | Windows Update history (`QueryHistory`, `Get-WUHistory`) as CSV |
//! | [`osquery`] | osquery differential results for `deb_packages`, `rpm_packages`, `patches` and `windows_update_history` |
//! | [`inventory`] | installed packages, not events: `/var/lib/dpkg/status`, `rpm -qa`, and the hotfixes of `wmic qfe`, `systeminfo` and `Get-HotFix` |
//!
//! [`version`] compares dpkg and rpm versions. `docs/collectors.md` says, per
//! source, what counts as an event, which fields are filled, what is a
//! failure, and how `event_id` is derived.
//!
//! ```
//! use patchaudit_collectors::{parse, Context, Source};
//!
//! let log = b"2024-05-01 10:00:00 startup archives unpack\n\
//! 2024-05-01 10:00:00 upgrade bash:amd64 5.2-1 5.2-2\n\
//! 2024-05-01 10:00:01 status unpacked bash:amd64 5.2-2\n\
//! 2024-05-01 10:00:01 startup packages configure\n\
//! 2024-05-01 10:00:01 configure bash:amd64 5.2-2 <none>\n\
//! 2024-05-01 10:00:02 status installed bash:amd64 5.2-2\n";
//! let parsed = parse(Source::Dpkg, "dpkg.log", log, &Context::default());
//! assert_eq!(parsed.events.len(), 1);
//! assert_eq!(parsed.events[0].patch_id, "bash@5.2-2");
//! let raw = parsed.to_raw_events("web-01");
//! assert_eq!(raw.len(), 1);
//! ```

mod codepages;
pub mod decode;
mod event;
mod source;
mod text;

pub mod apt;
pub mod dnf;
pub mod dpkg;
pub mod hotfix;
pub mod inventory;
pub mod osquery;
pub mod systeminfo;
pub mod wmic;
pub mod wu_history;
pub mod yum;

pub use decode::{CodePage, Decoded, Encoding};
pub use event::{CollectedEvent, Context, DateOrder, Kind, Parsed, Problem, ProblemKind, Summary};
/// dpkg and rpm version comparison, which lives in the domain because
/// compliance compares installed versions with fixed ones too.
pub use patchaudit_domain::version;
pub use source::{parse, parse_rotated, Source};
