//! The one HTTP error type, rendered as RFC 9457 `application/problem+json`.
//!
//! A 500 never tells the client why: the cause goes to the log, under an id
//! that the problem document repeats so an operator can find it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use patchaudit_domain::{FieldError, IndexedFieldError};
use patchaudit_store::StoreError;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most field errors one response lists; the rest are counted.
pub const MAX_LISTED_ERRORS: usize = 1_000;

/// One field problem as it appears in a problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemFieldError {
    /// The 0-based position of the event in the batch (absent for query parameters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The field or parameter at fault.
    pub field: String,
    /// A stable machine-readable code such as `required` or `too_long`.
    pub code: String,
    /// What is wrong, for humans.
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened in this case.
    pub detail: String,
    /// Per-field problems (validation errors and bad query parameters).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemFieldError>,
    /// How many further errors were left out of `errors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_omitted: Option<usize>,
    /// For a syntax error: the 1-based line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// For a syntax error: the 1-based column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// For a conflict: the seq already recorded under the event_id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_seq: Option<u64>,
    /// For a conflict: the reused event_id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// For a conflict: the position of the event in the batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// For an internal error: the id under which the cause was logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// One or more events are invalid (422).
    #[error("{} validation error(s)", .0.len())]
    Validation(Vec<IndexedFieldError>),
    /// The body is not syntactically valid JSON, NDJSON or CSV (400).
    #[error("malformed body at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column, 0 when unknown.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// Query or path parameters are invalid (400).
    #[error("invalid parameters")]
    BadParameters(Vec<FieldError>),
    /// The body or batch is over its limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The content type is not one the endpoint reads (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// An event_id was reused with different content (409).
    #[error(
        "event_id {event_id:?} is already recorded as seq {existing_seq} with different content"
    )]
    Conflict {
        /// Position in the batch.
        index: usize,
        /// The reused key.
        event_id: String,
        /// The seq already holding it.
        existing_seq: u64,
    },
    /// A document (catalog entry, policy, exception, tags) breaks a rule (422).
    #[error("invalid document")]
    InvalidDocument(Vec<FieldError>),
    /// The resource does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// No route matches (404), distinguished so tests can tell routes from resources.
    #[error("no route for {0}")]
    NoRoute(String),
    /// The method is not allowed on this route (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No usable credentials: no token, a malformed one, an unknown one or
    /// a revoked one (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The token is valid but may not do this (403). `errors` names the
    /// events a token limited to some systems may not write.
    #[error("{detail}")]
    Forbidden {
        /// What is not allowed.
        detail: String,
        /// Per-event problems, for a batch with events the token may not write.
        errors: Vec<IndexedFieldError>,
    },
    /// The token is over its request rate (429).
    #[error("rate limited; retry after {retry_after_secs} s")]
    RateLimited {
        /// Whole seconds until a request will be accepted again.
        retry_after_secs: u64,
    },
    /// The client took too long to send its request (408).
    #[error("{0}")]
    RequestTimeout(String),
    /// The server is at its cap of concurrent requests (503).
    #[error("{0}")]
    Busy(String),
    /// A downstream the server delivers to (a webhook) refused (502).
    #[error("{0}")]
    BadGateway(String),
    /// The database is unreachable or busy (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (500); the message is logged, never sent.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        metrics::counter!("patchaudit_store_errors_total", "kind" => store_error_kind(&e))
            .increment(1);
        match e {
            StoreError::Conflict {
                index,
                event_id,
                existing_seq,
            } => ApiError::Conflict {
                index,
                event_id,
                existing_seq,
            },
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::NotFound(m) => ApiError::NotFound(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

fn store_error_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::Conflict { .. } => "conflict",
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Corrupt(_) => "corrupt",
        StoreError::Open(_) => "open",
        StoreError::Internal(_) => "internal",
        StoreError::NotFound(_) => "not_found",
    }
}

static ERROR_IDS: AtomicU64 = AtomicU64::new(1);

fn problem(kind: &str, title: &str, status: StatusCode, detail: String) -> Problem {
    Problem {
        kind: format!("urn:patchaudit:problem:{kind}"),
        title: title.into(),
        status: status.as_u16(),
        detail,
        errors: Vec::new(),
        errors_omitted: None,
        line: None,
        column: None,
        existing_seq: None,
        event_id: None,
        index: None,
        error_id: None,
    }
}

/// Lists per-event problems in a problem document, up to
/// [`MAX_LISTED_ERRORS`], and counts the rest.
fn list_indexed(p: &mut Problem, errors: &[IndexedFieldError]) {
    p.errors = errors
        .iter()
        .take(MAX_LISTED_ERRORS)
        .map(|e| ProblemFieldError {
            index: Some(e.index),
            field: e.error.field.clone(),
            code: e.error.code.as_str().into(),
            message: e.error.message.clone(),
        })
        .collect();
    p.errors_omitted = (errors.len() > MAX_LISTED_ERRORS).then(|| errors.len() - MAX_LISTED_ERRORS);
}

impl ApiError {
    /// The status code and problem document for this error.
    pub fn to_problem(&self) -> (StatusCode, Problem) {
        use StatusCode as S;
        match self {
            ApiError::Validation(errors) => {
                let mut p = problem(
                    "validation",
                    "Invalid patch events",
                    S::UNPROCESSABLE_ENTITY,
                    format!(
                        "{} problem(s) in the submitted events; nothing was recorded",
                        errors.len()
                    ),
                );
                list_indexed(&mut p, errors);
                (S::UNPROCESSABLE_ENTITY, p)
            }
            ApiError::Syntax {
                line,
                column,
                message,
            } => {
                let mut p = problem(
                    "malformed-body",
                    "Malformed request body",
                    S::BAD_REQUEST,
                    format!("line {line}, column {column}: {message}"),
                );
                p.line = Some(*line);
                p.column = Some(*column);
                (S::BAD_REQUEST, p)
            }
            ApiError::BadParameters(errors) => {
                let mut p = problem(
                    "bad-parameters",
                    "Invalid parameters",
                    S::BAD_REQUEST,
                    errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                p.errors = errors
                    .iter()
                    .map(|e| ProblemFieldError {
                        index: None,
                        field: e.field.clone(),
                        code: e.code.as_str().into(),
                        message: e.message.clone(),
                    })
                    .collect();
                (S::BAD_REQUEST, p)
            }
            ApiError::TooLarge(m) => (
                S::PAYLOAD_TOO_LARGE,
                problem(
                    "too-large",
                    "Request too large",
                    S::PAYLOAD_TOO_LARGE,
                    m.clone(),
                ),
            ),
            ApiError::UnsupportedMediaType(m) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                problem(
                    "unsupported-media-type",
                    "Unsupported media type",
                    S::UNSUPPORTED_MEDIA_TYPE,
                    m.clone(),
                ),
            ),
            ApiError::Conflict {
                index,
                event_id,
                existing_seq,
            } => {
                let mut p = problem(
                    "conflict",
                    "event_id already used for different content",
                    S::CONFLICT,
                    format!(
                        "event {index} of the batch reuses event_id {event_id:?}, already recorded as seq {existing_seq} with different content; nothing was recorded"
                    ),
                );
                p.existing_seq = Some(*existing_seq);
                p.event_id = Some(event_id.clone());
                p.index = Some(*index);
                (S::CONFLICT, p)
            }
            ApiError::InvalidDocument(errors) => {
                let mut p = problem(
                    "invalid-document",
                    "Invalid document",
                    S::UNPROCESSABLE_ENTITY,
                    match errors.as_slice() {
                        [one] => format!("{}: {}; nothing was written", one.field, one.message),
                        _ => format!("{} problems; nothing was written", errors.len()),
                    },
                );
                p.errors = errors
                    .iter()
                    .take(MAX_LISTED_ERRORS)
                    .map(|e| ProblemFieldError {
                        index: None,
                        field: e.field.clone(),
                        code: e.code.as_str().into(),
                        message: e.message.clone(),
                    })
                    .collect();
                p.errors_omitted =
                    (errors.len() > MAX_LISTED_ERRORS).then(|| errors.len() - MAX_LISTED_ERRORS);
                (S::UNPROCESSABLE_ENTITY, p)
            }
            ApiError::NotFound(m) => (
                S::NOT_FOUND,
                problem("not-found", "Not found", S::NOT_FOUND, m.clone()),
            ),
            ApiError::NoRoute(m) => (
                S::NOT_FOUND,
                problem(
                    "no-route",
                    "No such endpoint",
                    S::NOT_FOUND,
                    format!("no route for {m}; see /v1/openapi.json"),
                ),
            ),
            ApiError::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                problem(
                    "method-not-allowed",
                    "Method not allowed",
                    S::METHOD_NOT_ALLOWED,
                    "this endpoint does not accept that method; see /v1/openapi.json".into(),
                ),
            ),
            ApiError::Unauthorized(m) => (
                S::UNAUTHORIZED,
                problem("unauthorized", "Unauthorized", S::UNAUTHORIZED, m.clone()),
            ),
            ApiError::Forbidden { detail, errors } => {
                let mut p = problem("forbidden", "Forbidden", S::FORBIDDEN, detail.clone());
                list_indexed(&mut p, errors);
                (S::FORBIDDEN, p)
            }
            ApiError::RateLimited { retry_after_secs } => (
                S::TOO_MANY_REQUESTS,
                problem(
                    "rate-limited",
                    "Too many requests",
                    S::TOO_MANY_REQUESTS,
                    format!(
                        "this token is over its request rate; retry after {retry_after_secs} s"
                    ),
                ),
            ),
            ApiError::RequestTimeout(m) => (
                S::REQUEST_TIMEOUT,
                problem(
                    "request-timeout",
                    "Request timeout",
                    S::REQUEST_TIMEOUT,
                    m.clone(),
                ),
            ),
            ApiError::BadGateway(m) => (
                S::BAD_GATEWAY,
                problem("bad-gateway", "Bad gateway", S::BAD_GATEWAY, m.clone()),
            ),
            ApiError::Busy(m) => (
                S::SERVICE_UNAVAILABLE,
                problem("busy", "Server busy", S::SERVICE_UNAVAILABLE, m.clone()),
            ),
            ApiError::Unavailable(m) => {
                tracing::warn!(error = %m, "store unavailable");
                (
                    S::SERVICE_UNAVAILABLE,
                    problem(
                        "unavailable",
                        "Service unavailable",
                        S::SERVICE_UNAVAILABLE,
                        "the ledger's database is unavailable; retry later (with the same event_id, retries are safe)".into(),
                    ),
                )
            }
            ApiError::Internal(m) => {
                let id = format!("E{:08}", ERROR_IDS.fetch_add(1, Ordering::Relaxed));
                tracing::error!(error_id = %id, error = %m, "internal error");
                let mut p = problem(
                    "internal",
                    "Internal server error",
                    S::INTERNAL_SERVER_ERROR,
                    format!("an internal error occurred; it was logged as {id}"),
                );
                p.error_id = Some(id);
                (S::INTERNAL_SERVER_ERROR, p)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        let unauthorized = matches!(self, ApiError::Unauthorized(_));
        let (status, body) = self.to_problem();
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (status, bytes).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if unauthorized {
            // RFC 6750: tell the client which scheme the endpoint wants.
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"patchaudit\""),
            );
        }
        resp
    }
}
