//! Validation errors, shaped so that every edge can report them the same way.

use std::fmt;

/// A machine-readable reason why a field was rejected.
///
/// The string forms are part of the public API (they appear as `code` in
/// problem documents), so they must never change once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A required field is absent or null.
    Required,
    /// The field is not one the event accepts.
    UnknownField,
    /// The field is set by the server and cannot be supplied.
    ReadOnly,
    /// The same field appears twice in one event.
    DuplicateField,
    /// The value has the wrong type (for example a number where a string is expected).
    Type,
    /// A string is empty where at least one character is required.
    Empty,
    /// A string or list is longer than allowed.
    TooLong,
    /// A string contains a control character where none is allowed.
    ControlCharacter,
    /// The value does not have the required shape (timestamp, CVE id, ...).
    Format,
    /// The value is not one of an enumerated set.
    InvalidValue,
    /// A timestamp lies further in the future than the configured clock skew allows.
    Future,
    /// The same `event_id` is used twice in one batch with different content.
    Conflict,
    /// The caller's token may not write this value (a token limited to
    /// some systems sent an event for another).
    Forbidden,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::Required,
        ErrorCode::UnknownField,
        ErrorCode::ReadOnly,
        ErrorCode::DuplicateField,
        ErrorCode::Type,
        ErrorCode::Empty,
        ErrorCode::TooLong,
        ErrorCode::ControlCharacter,
        ErrorCode::Format,
        ErrorCode::InvalidValue,
        ErrorCode::Future,
        ErrorCode::Conflict,
        ErrorCode::Forbidden,
    ];

    /// The stable snake_case name of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Required => "required",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::DuplicateField => "duplicate_field",
            ErrorCode::Type => "type",
            ErrorCode::Empty => "empty",
            ErrorCode::TooLong => "too_long",
            ErrorCode::ControlCharacter => "control_character",
            ErrorCode::Format => "format",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::Future => "future",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Forbidden => "forbidden",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one field of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name as the client wrote it.
    pub field: String,
    /// Why it was rejected.
    pub code: ErrorCode,
    /// A sentence for humans that says what is wrong and what is expected.
    pub message: String,
}

impl FieldError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.field, self.message, self.code)
    }
}

/// A [`FieldError`] located in a batch by the 0-based position of its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedFieldError {
    /// The 0-based position of the event in the batch.
    pub index: usize,
    /// The problem itself.
    pub error: FieldError,
}

impl fmt::Display for IndexedFieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {}: {}", self.index, self.error)
    }
}
