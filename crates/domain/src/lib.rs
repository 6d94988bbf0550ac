//! The pure domain of patchaudit: what a patch event is, and what makes one valid.
//!
//! Nothing in this crate performs I/O or knows about JSON, SQL or HTTP. The
//! edges (the HTTP server, the CLI and the stores) turn their own formats into
//! a [`RawEvent`] and call [`NewEvent::parse`], which reports every problem at
//! once so that a client can fix a whole batch in one round trip.

pub mod access;
mod error;
mod event;
mod query;
mod time;
mod values;
pub mod version;

pub use error::{ErrorCode, FieldError, IndexedFieldError};
pub use event::{
    validate_batch, Input, LeafView, NewEvent, RawEvent, RecordedEvent, Status, ValidationContext,
    FIELDS,
};
pub use query::{EventFilter, PatchSystemState, PatchSystems, SystemSummary};
pub use time::Timestamp;
pub use values::{CveId, EventId, PatchId, SystemId, TextLimit};
