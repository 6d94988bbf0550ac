//! The compliance logic of patchaudit, free of I/O.
//!
//! The ledger says what happened; this crate says what it means to an
//! auditor. It holds:
//!
//! - the [`catalog`]: which patches exist, how severe they are, when they
//!   were released and which systems they apply to;
//! - [`tags`] on systems, which scope catalog entries, policies and exceptions;
//! - the SLA [`policy`]: how long each severity may stay unpatched;
//! - [`exception`]s: accepted risks with an approver and an expiry;
//! - [`facts`]: what the ledger says about one (patch, system) pair, folded
//!   event by event so stores can keep it up to date on ingest;
//! - [`inventory`]: a system's installed packages, which decide whether an
//!   advisory with fixed versions applies, and show installs no event explains;
//! - [`state`]: the state of a pair at an instant, from the above;
//! - [`report`]: the audit report over a fleet;
//! - [`osv`]: the import of OSV advisories into catalog entries. It is the one
//!   module that reads a wire format (OSV JSON), since OSV is an import
//!   format in the way the collectors' logs are.
//!
//! Every type validates in a `parse`-style constructor and reports problems
//! as [`patchaudit_domain::FieldError`]s, so the edges show them the same
//! way they show event validation errors.

pub mod catalog;
pub mod exception;
pub mod facts;
pub mod inventory;
pub mod osv;
pub mod policy;
pub mod report;
pub mod state;
pub mod tags;

pub use catalog::{AffectedPackage, AppliesTo, CatalogEntry, RawCatalogEntry, Severity};
pub use exception::{Exception, ExceptionScope, RawException};
pub use facts::{EventFact, PairFacts};
pub use inventory::{InstalledPackage, Inventory, PackageFormat, RawInventory, RawPackage};
pub use policy::{ScopedSla, SlaDays, SlaPolicy};
pub use report::{Report, ReportFilter, ReportInput, SystemView};
pub use state::{evaluate, evaluate_prepared, PairEvaluation, PairState};
pub use tags::{Tag, Tags};

/// Microseconds in a day; SLA clocks count whole days.
pub const DAY_MICROS: i64 = 86_400 * 1_000_000;
