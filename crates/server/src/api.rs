//! Routes and handlers. Each handler carries its OpenAPI declaration.

use crate::error::{ApiError, Problem};
use crate::params::{self, take_filter, Params, FILTER_PARAMS};
use crate::wire::{self, Decoded, EventOut};
use crate::{metrics_layer, AppState, ServerConfig};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use patchaudit_domain::{
    validate_batch, ErrorCode, EventFilter, FieldError, NewEvent, RecordedEvent, Status,
    ValidationContext,
};
use patchaudit_store::{Appended, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "patchaudit",
        description = "A tamper-evident ledger of patches: record every patch applied to every system, and every one that failed; query it for audits."
    ),
    tags(
        (name = "events", description = "Record and query patch events"),
        (name = "fleet", description = "Systems and patches across the fleet"),
        (name = "proofs", description = "Signed checkpoints, and inclusion and consistency proofs of the ledger's Merkle tree"),
        (name = "compliance", description = "The patch catalog, system tags, the SLA policy, exceptions and compliance reports"),
        (name = "tokens", description = "API tokens: create, list and revoke (admin scope)"),
        (name = "stream", description = "The live feed, alerts, and where each sink of the stream stands"),
        (name = "operations", description = "Health, readiness and metrics")
    )
)]
struct ApiDoc;

/// The documented routes. The router and the OpenAPI document both come
/// from this one list.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(post_events, list_events))
        .routes(routes!(get_event))
        .routes(routes!(list_systems))
        .routes(routes!(system_events))
        .routes(routes!(get_patch))
        .routes(routes!(crate::proofs::get_checkpoint))
        .routes(routes!(crate::proofs::inclusion))
        .routes(routes!(crate::proofs::consistency))
        .routes(routes!(crate::proofs::event_proof))
        .merge(crate::compliance::routes())
        .merge(crate::inventory::routes())
        .merge(crate::auth::routes())
        .merge(crate::changes::routes())
        .merge(crate::stream::alerts::routes())
        .merge(crate::stream::sse::routes())
        .merge(crate::stream::status::routes())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The whole application around `state`.
pub fn router(state: AppState) -> Router {
    let (router, mut api) = api_router().split_for_parts();
    crate::auth::document(&mut api);
    let api = Arc::new(api);
    router
        .route(
            "/v1/openapi.json",
            get(move || {
                let api = api.clone();
                async move { Json(api.as_ref().clone()) }
            }),
        )
        // After routing, so the rule is found by the route's template.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require,
        ))
        .fallback(no_route)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::guard,
        ))
        .layer(axum::middleware::from_fn(metrics_layer::track))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn no_route(req: Request) -> ApiError {
    ApiError::NoRoute(format!("{} {}", req.method(), req.uri().path()))
}

// ---------------------------------------------------------------- ingest

/// A patch event as a client submits it (documentation of the accepted shape;
/// the server parses bodies itself to report every problem at once).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct EventIn {
    /// The client's idempotency key, 1–128 characters. Re-sending the same
    /// key with the same content is a no-op; with other content, a 409.
    event_id: Option<String>,
    /// The patch or advisory id, 1–256 characters, or a JSON integer.
    #[schema(schema_with = patch_id_schema)]
    patch_id: serde_json::Value,
    /// The system, 1–255 characters.
    #[schema(example = "web-01")]
    system: String,
    /// RFC 3339 with an offset; stored as UTC with microsecond precision.
    #[schema(example = "2024-05-01T12:00:00Z")]
    applied_at: String,
    /// `success`, `failure` or `rolled_back`.
    #[schema(example = "success")]
    status: String,
    /// The package changed (≤ 256 characters).
    package: Option<String>,
    /// The version before (≤ 256 characters).
    from_version: Option<String>,
    /// The version after (≤ 256 characters).
    to_version: Option<String>,
    /// Where the fact came from: dpkg, apt, dnf, windows-update, ansible, manual… (≤ 64 characters).
    source: Option<String>,
    /// Who applied it (≤ 256 characters).
    actor: Option<String>,
    /// Failure output, up to 64 KiB.
    detail: Option<String>,
    /// CVE ids of the form CVE-YYYY-NNNN.
    cves: Option<Vec<String>>,
    /// Whether a reboot is required.
    reboot_required: Option<bool>,
    /// A change-ticket reference (≤ 256 characters).
    change_ref: Option<String>,
}

/// `patch_id` is a string or a JSON integer (stored as its decimal text).
fn patch_id_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Integer]))
        .description(Some(
            "The patch or advisory id, 1–256 characters, or a JSON integer.",
        ))
        .examples([serde_json::json!("KB5034441")])
        .build()
}

/// One event or a batch of them.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
// Documentation only: never constructed, so its size does not matter.
#[allow(dead_code, clippy::large_enum_variant)]
enum EventsIn {
    One(EventIn),
    Many(Vec<EventIn>),
}

/// What happened to one submitted event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IngestedEvent {
    /// Its position in the ledger.
    pub seq: u64,
    /// Its idempotency key, if it had one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub event_id: Option<String>,
    /// When the ledger recorded it.
    pub recorded_at: String,
    /// True when it was already recorded and nothing new was written.
    pub duplicate: bool,
}

/// The answer to an ingest, in the order the events were sent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IngestResponse {
    /// How many events were newly recorded.
    pub created: usize,
    /// How many were already recorded under their event_id.
    pub duplicates: usize,
    /// One entry per submitted event.
    pub events: Vec<IngestedEvent>,
}

/// Checks the batch size and validates every event, reporting every
/// problem at once.
pub fn validate(config: &ServerConfig, decoded: Vec<Decoded>) -> Result<Vec<NewEvent>, ApiError> {
    if decoded.len() > config.max_batch {
        return Err(ApiError::TooLarge(format!(
            "the batch has {} events; the limit is {} (split it, or raise max_batch)",
            decoded.len(),
            config.max_batch
        )));
    }
    let ctx = ValidationContext {
        now: patchaudit_domain::Timestamp::now(),
        max_future_skew_micros: config.max_future_skew_micros,
    };
    let items = decoded.into_iter().map(|d| match d {
        Decoded::Event(raw) => Ok(raw),
        Decoded::NotAnObject(kind) => Err(FieldError::new(
            "",
            ErrorCode::Type,
            format!("must be a JSON object (a patch event), got {kind}"),
        )),
    });
    validate_batch(items, &ctx).map_err(ApiError::Validation)
}

/// Appends validated events as one all-or-nothing batch, as `recorded_by`.
pub async fn append(
    store: &dyn Store,
    events: Vec<NewEvent>,
    recorded_by: &str,
) -> Result<IngestResponse, ApiError> {
    let ids: Vec<Option<String>> = events
        .iter()
        .map(|e| e.event_id.as_ref().map(|i| i.as_str().to_owned()))
        .collect();
    let appended = store.append(events, recorded_by).await?;
    let created = appended.iter().filter(|a| !a.duplicate).count();
    metrics::counter!("patchaudit_events_ingested_total").increment(created as u64);
    metrics::counter!("patchaudit_events_duplicate_total")
        .increment((appended.len() - created) as u64);
    Ok(IngestResponse {
        created,
        duplicates: appended.len() - created,
        events: appended
            .into_iter()
            .zip(ids)
            .map(
                |(
                    Appended {
                        seq,
                        recorded_at,
                        duplicate,
                    },
                    event_id,
                )| IngestedEvent {
                    seq,
                    event_id,
                    recorded_at: recorded_at.to_rfc3339(),
                    duplicate,
                },
            )
            .collect(),
    })
}

/// How far past the limit we keep reading (and discarding) an oversized body,
/// so the client gets its 413 instead of a reset connection.
const DRAIN_BEYOND_LIMIT: usize = 64 * 1024 * 1024;

pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match crate::limits::is_deadline(&e) {
            Some(limit) => ApiError::RequestTimeout(format!(
                "the request body was not received within {} s; send it faster, or in smaller batches",
                limit.as_secs_f64()
            )),
            None => ApiError::Syntax {
                line: 0,
                column: 0,
                message: format!("the request body could not be read: {e}"),
            },
        })?;
        total += chunk.len();
        if total <= limit {
            buf.extend_from_slice(&chunk);
        } else if total > limit.saturating_add(DRAIN_BEYOND_LIMIT) {
            break;
        }
    }
    if total > limit {
        return Err(ApiError::TooLarge(format!(
            "the request body is {}{} bytes; the limit is {limit} bytes",
            if total > limit.saturating_add(DRAIN_BEYOND_LIMIT) {
                "over "
            } else {
                ""
            },
            total
        )));
    }
    Ok(Bytes::from(buf))
}

/// Turns a request body into decoded events, or names where its syntax breaks.
type Decoder = fn(&[u8]) -> Result<Vec<Decoded>, wire::SyntaxError>;

fn body_decoder(headers: &HeaderMap) -> Result<Decoder, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "" | "application/json" => Ok(wire::decode_json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/jsonlines" => {
            Ok(wire::decode_ndjson)
        }
        "text/csv" => Ok(wire::decode_csv),
        m if m.ends_with("+json") => Ok(wire::decode_json),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "content type {other:?} is not accepted; send application/json, application/x-ndjson or text/csv"
        ))),
    }
}

/// Record one event, a JSON array of events, NDJSON or CSV.
///
/// The batch is all-or-nothing: if any event is invalid, every problem is
/// reported and nothing is recorded. Events re-sent with the same `event_id`
/// and content are returned as duplicates, not recorded twice.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body(
        description = "One event object, a JSON array of them, NDJSON (one object per line) or CSV with a header row.",
        content(
            (EventsIn = "application/json"),
            (EventIn = "application/x-ndjson"),
            (String = "text/csv")
        )
    ),
    responses(
        (status = 201, description = "At least one event was recorded", body = IngestResponse),
        (status = 200, description = "Every event was already recorded (idempotent retry)", body = IngestResponse),
        (status = 400, description = "The body is not well-formed; the problem names the line and column", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks the ingest scope, or is limited to some systems and the batch names others; `errors` lists each such event", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received within the body timeout", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An event_id is already recorded with different content", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body or the batch is over its limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported content type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; `errors` lists every problem with its index and field", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; retry with the same event_id", body = Problem, content_type = "application/problem+json")
    )
)]
async fn post_events(
    State(st): State<AppState>,
    crate::auth::Caller(who): crate::auth::Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let decode = body_decoder(&headers)?;
    let bytes = read_body(body, st.config.max_body_bytes).await?;
    let decoded = decode(&bytes).map_err(|e| ApiError::Syntax {
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    let events = validate(&st.config, decoded)?;
    crate::auth::check_systems(st.store.as_ref(), &who.token, &events).await?;
    let out = append(st.store.as_ref(), events, &who.label()).await?;
    if let Some(max) = out.events.iter().map(|e| e.seq).max() {
        st.hub.appended(max + 1);
    }
    let status = if out.created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)).into_response())
}

// ---------------------------------------------------------------- listing

/// Output formats of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListFormat {
    Json,
    Ndjson,
    Csv,
}

impl ListFormat {
    fn parse(v: &str) -> Result<Self, String> {
        match v {
            "json" => Ok(ListFormat::Json),
            "ndjson" => Ok(ListFormat::Ndjson),
            "csv" => Ok(ListFormat::Csv),
            _ => Err(format!("must be json, ndjson or csv; got {v:?}")),
        }
    }

    /// Picks the format the client prefers among those offered, by the
    /// q-values of its Accept header (RFC 9110 §12.5.1); JSON when nothing
    /// offered is acceptable or the header is absent.
    fn from_accept(headers: &HeaderMap) -> Self {
        negotiate(
            headers,
            &[
                ("application/x-ndjson", ListFormat::Ndjson),
                ("application/ndjson", ListFormat::Ndjson),
                ("text/csv", ListFormat::Csv),
                ("application/json", ListFormat::Json),
            ],
            ListFormat::Json,
        )
    }

    fn content_type(self) -> &'static str {
        match self {
            ListFormat::Json => "application/json",
            ListFormat::Ndjson => "application/x-ndjson",
            ListFormat::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// Picks the representation the client prefers among `offers`, by the
/// q-values of its Accept header (RFC 9110 §12.5.1): the highest q wins,
/// and on a tie the range listed first. `default` when nothing offered is
/// acceptable or the header is absent.
pub(crate) fn negotiate<T: Copy>(headers: &HeaderMap, offers: &[(&str, T)], default: T) -> T {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut best: Option<(f32, T)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let Some(offer) = offers.iter().find(|(m, _)| *m == media).map(|o| o.1) else {
            continue;
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, offer));
        }
    }
    best.map_or(default, |(_, f)| f)
}

/// The query parameters of an event listing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct EventQuery {
    /// Only this system's events.
    system: Option<String>,
    /// Only this patch's events.
    patch_id: Option<String>,
    /// Only events with this outcome: success, failure or rolled_back.
    status: Option<String>,
    /// Only events from this source.
    source: Option<String>,
    /// Only events applied at or after this RFC 3339 instant.
    #[param(format = DateTime)]
    applied_from: Option<String>,
    /// Only events applied before this RFC 3339 instant.
    #[param(format = DateTime)]
    applied_to: Option<String>,
    /// Only events with seq ≥ this.
    #[param(format = "uint64", maximum = 18446744073709551615usize)]
    seq_from: Option<u64>,
    /// Only events with seq < this.
    #[param(format = "uint64", maximum = 18446744073709551615usize)]
    seq_to: Option<u64>,
    /// The most events to return. JSON: default 100, at most 10000. NDJSON and CSV: unlimited by default.
    #[param(format = "uint64", maximum = 18446744073709551615usize)]
    limit: Option<u64>,
    /// Resume after the page that returned this `next_cursor`.
    cursor: Option<String>,
    /// json, ndjson or csv; by default chosen from the Accept header, else json.
    format: Option<String>,
}

/// The same parameters without `system`, for a system's own history.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct SystemEventQuery {
    /// Only this patch's events.
    patch_id: Option<String>,
    /// Only events with this outcome: success, failure or rolled_back.
    status: Option<String>,
    /// Only events from this source.
    source: Option<String>,
    /// Only events applied at or after this RFC 3339 instant.
    #[param(format = DateTime)]
    applied_from: Option<String>,
    /// Only events applied before this RFC 3339 instant.
    #[param(format = DateTime)]
    applied_to: Option<String>,
    /// Only events with seq ≥ this.
    #[param(format = "uint64", maximum = 18446744073709551615usize)]
    seq_from: Option<u64>,
    /// Only events with seq < this.
    #[param(format = "uint64", maximum = 18446744073709551615usize)]
    seq_to: Option<u64>,
    /// The most events to return. JSON: default 100, at most 10000. NDJSON and CSV: unlimited by default.
    #[param(format = "uint64", maximum = 18446744073709551615usize)]
    limit: Option<u64>,
    /// Resume after the page that returned this `next_cursor`.
    cursor: Option<String>,
    /// json, ndjson or csv; by default chosen from the Accept header, else json.
    format: Option<String>,
}

/// A page of events in JSON.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// The events, in seq order.
    pub events: Vec<EventOut>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

const JSON_DEFAULT_LIMIT: usize = 100;
const JSON_MAX_LIMIT: usize = 10_000;
/// Rows fetched per round trip while streaming: small enough that a page of
/// maximal `detail`s stays a few MiB, large enough to amortise the query.
const STREAM_PAGE: usize = 500;

struct ListRequest {
    filter: EventFilter,
    limit: Option<usize>,
    format: ListFormat,
}

impl ListRequest {
    /// How many events the first page holds.
    fn first_page(&self) -> usize {
        self.limit.unwrap_or(usize::MAX).min(STREAM_PAGE)
    }
}

fn parse_list(
    raw: Option<&str>,
    headers: &HeaderMap,
    with_system: bool,
) -> Result<ListRequest, ApiError> {
    let mut p = Params::parse(raw)?;
    let mut filter = take_filter(&mut p, with_system);
    let limit = p.take_with("limit", params::unsigned);
    let cursor = p.take_with("cursor", |c| {
        params::decode_cursor(c).and_then(|s| {
            s.parse::<u64>()
                .map_err(|_| "is not a cursor returned by this API".into())
        })
    });
    let format = p
        .take_with("format", ListFormat::parse)
        .unwrap_or_else(|| ListFormat::from_accept(headers));
    let limit = match (format, limit) {
        (ListFormat::Json, None) => Some(JSON_DEFAULT_LIMIT),
        (ListFormat::Json, Some(n)) if n as usize > JSON_MAX_LIMIT || n == 0 => {
            p.error(
                "limit",
                ErrorCode::InvalidValue,
                format!("must be between 1 and {JSON_MAX_LIMIT} for JSON (use format=ndjson or csv to stream more)"),
            );
            None
        }
        (_, n) => n.map(|n| n as usize),
    };
    let mut accepted: Vec<&str> = FILTER_PARAMS
        .iter()
        .copied()
        .filter(|f| with_system || *f != "system")
        .collect();
    accepted.extend(["limit", "cursor", "format"]);
    p.finish(&accepted)?;
    if let Some(after) = cursor {
        filter = filter.after(after);
    }
    Ok(ListRequest {
        filter,
        limit,
        format,
    })
}

fn encode_page(format: ListFormat, page: &[RecordedEvent], first: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(page.len() * 256);
    match format {
        ListFormat::Json => {
            for (i, e) in page.iter().enumerate() {
                if !(first && i == 0) {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut out, &EventOut::from(e));
            }
        }
        ListFormat::Ndjson => wire::write_ndjson_rows(&mut out, page),
        ListFormat::Csv => wire::write_csv_rows(&mut out, page),
    }
    out
}

/// One page of at most `want` events, and whether more match after it. The
/// page is asked for with one extra row, so no separate probe is needed.
async fn fetch_page(
    store: &dyn Store,
    filter: &EventFilter,
    want: usize,
) -> Result<(Vec<RecordedEvent>, bool), patchaudit_store::StoreError> {
    let mut page = store.list(filter, want.saturating_add(1)).await?;
    let more = page.len() > want;
    page.truncate(want);
    Ok((page, more))
}

fn json_tail(next_cursor: Option<String>) -> Vec<u8> {
    format!(
        "],\"next_cursor\":{}}}",
        serde_json::to_string(&next_cursor).unwrap_or_else(|_| "null".into())
    )
    .into_bytes()
}

/// Answers a listing whose first page the caller fetched (so a database
/// failure is still a proper 503). A result that fits in that page is sent
/// as one body; a longer one streams in constant memory, page by page with
/// keyset pagination, while the client reads.
fn list_response(
    store: Arc<dyn Store>,
    req: ListRequest,
    first: (Vec<RecordedEvent>, bool),
) -> Response {
    let ListRequest {
        filter,
        limit,
        format,
    } = req;
    let mut remaining = limit.unwrap_or(usize::MAX);
    let (page, mut more) = first;
    remaining -= page.len();
    let mut last = page.last().map(|e| e.seq);
    let mut body = match format {
        ListFormat::Json => b"{\"events\":[".to_vec(),
        ListFormat::Csv => wire::csv_header(),
        ListFormat::Ndjson => Vec::new(),
    };
    body.extend(encode_page(format, &page, true));
    let cursor = |last: Option<u64>, more: bool, remaining: usize| {
        // A cursor is offered only when the limit cut off events that exist.
        match last {
            Some(seq) if more && remaining == 0 => Some(params::encode_cursor(&seq.to_string())),
            _ => None,
        }
    };

    let body = if !more || remaining == 0 {
        if format == ListFormat::Json {
            body.extend(json_tail(cursor(last, more, remaining)));
        }
        Body::from(body)
    } else {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        tokio::spawn(async move {
            let mut chunk = body;
            loop {
                if tx
                    .send(Ok(Bytes::from(std::mem::take(&mut chunk))))
                    .await
                    .is_err()
                {
                    return; // the client went away
                }
                let Some(seq) = last.filter(|_| more && remaining > 0) else {
                    break;
                };
                match fetch_page(
                    store.as_ref(),
                    &filter.after(seq),
                    remaining.min(STREAM_PAGE),
                )
                .await
                {
                    Ok((page, m)) => {
                        remaining -= page.len();
                        more = m;
                        last = page.last().map(|e| e.seq).or(last);
                        chunk = encode_page(format, &page, false);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "listing failed mid-stream; aborting the response");
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                }
            }
            if format == ListFormat::Json {
                let _ = tx
                    .send(Ok(Bytes::from(json_tail(cursor(last, more, remaining)))))
                    .await;
            }
        });
        Body::from_stream(ReceiverStream::new(rx))
    };
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
}

/// Query the ledger's events.
///
/// Filters combine with AND; ranges are half-open. JSON answers a page with a
/// stable `next_cursor` (keyset pagination on seq, never OFFSET); NDJSON and
/// CSV stream every match in constant memory.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(EventQuery),
    responses(
        (status = 200, description = "The matching events in seq order", content(
            (EventPage = "application/json"),
            (EventOut = "application/x-ndjson"),
            (String = "text/csv")
        )),
        (status = 400, description = "A parameter is unknown, repeated or malformed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
async fn list_events(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let req = parse_list(q.as_deref(), &headers, true)?;
    let first = fetch_page(st.store.as_ref(), &req.filter, req.first_page()).await?;
    Ok(list_response(st.store.clone(), req, first))
}

/// One system's history.
#[utoipa::path(
    get,
    path = "/v1/systems/{system}/events",
    tag = "fleet",
    params(("system" = String, Path, description = "The system id (percent-encode `/`)"), SystemEventQuery),
    responses(
        (status = 200, description = "The system's events in seq order", content(
            (EventPage = "application/json"),
            (EventOut = "application/x-ndjson"),
            (String = "text/csv")
        )),
        (status = 400, description = "A parameter is unknown, repeated or malformed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The ledger has no event for this system", body = Problem, content_type = "application/problem+json")
    )
)]
async fn system_events(
    State(st): State<AppState>,
    Path(system): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut req = parse_list(q.as_deref(), &headers, false)?;
    req.filter.system = Some(system.clone());
    let first = fetch_page(st.store.as_ref(), &req.filter, req.first_page()).await?;
    // Only an empty answer needs to know whether the system exists at all.
    if first.0.is_empty() {
        let exists = EventFilter {
            system: Some(system.clone()),
            ..Default::default()
        };
        if st.store.list(&exists, 1).await?.is_empty() {
            return Err(ApiError::NotFound(format!(
                "the ledger has no event for system {system:?}"
            )));
        }
    }
    Ok(list_response(st.store.clone(), req, first))
}

/// One event by its seq.
#[utoipa::path(
    get,
    path = "/v1/events/{seq}",
    tag = "events",
    params(("seq" = u64, Path, description = "The event's position in the ledger", format = "uint64", maximum = 18446744073709551615usize)),
    responses(
        (status = 200, description = "The event", body = EventOut),
        (status = 400, description = "seq is not a non-negative integer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The ledger is shorter than seq", body = Problem, content_type = "application/problem+json")
    )
)]
async fn get_event(
    State(st): State<AppState>,
    Path(seq): Path<String>,
) -> Result<Json<EventOut>, ApiError> {
    let seq = params::unsigned(&seq)
        .map_err(|m| ApiError::BadParameters(vec![FieldError::new("seq", ErrorCode::Format, m)]))?;
    match st.store.get(seq).await? {
        Some(e) => Ok(Json(EventOut::from(&e))),
        None => Err(ApiError::NotFound(format!("no event with seq {seq}"))),
    }
}

// ---------------------------------------------------------------- fleet

/// Event counts by status.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct StatusCounts {
    /// Successful applications.
    pub success: u64,
    /// Failed attempts.
    pub failure: u64,
    /// Rollbacks.
    pub rolled_back: u64,
    /// All events.
    pub total: u64,
}

/// A system and its activity.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SystemOut {
    /// The system id.
    pub system: String,
    /// The latest applied_at among its events.
    pub last_event_at: String,
    /// The seq of its most recently recorded event.
    pub last_seq: u64,
    /// Its events by status.
    pub events: StatusCounts,
}

/// A page of systems.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SystemPage {
    /// Systems ordered by id.
    pub systems: Vec<SystemOut>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct PageQuery {
    /// The most systems to return: default 1000, at most 10000.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u64>,
    /// Resume after the page that returned this `next_cursor`.
    cursor: Option<String>,
}

/// Every system with its last event time and its event counts by status.
#[utoipa::path(
    get,
    path = "/v1/systems",
    tag = "fleet",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of systems", body = SystemPage),
        (status = 400, description = "A parameter is unknown or malformed", body = Problem, content_type = "application/problem+json")
    )
)]
async fn list_systems(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<SystemPage>, ApiError> {
    let mut p = Params::parse(q.as_deref())?;
    let limit = p.take_with("limit", params::unsigned).unwrap_or(1000) as usize;
    if limit == 0 || limit > JSON_MAX_LIMIT {
        p.error(
            "limit",
            ErrorCode::InvalidValue,
            format!("must be between 1 and {JSON_MAX_LIMIT}"),
        );
    }
    let after = p.take_with("cursor", params::decode_cursor);
    p.finish(&["limit", "cursor"])?;
    let mut rows = st.store.systems(after.as_deref(), limit + 1).await?;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|s| params::encode_cursor(&s.system))
    } else {
        None
    };
    Ok(Json(SystemPage {
        systems: rows.into_iter().map(SystemOut::from).collect(),
        next_cursor,
    }))
}

/// The latest state of a patch on one system.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PatchSystemOut {
    /// The system.
    pub system: String,
    /// applied_at of the latest event for the pair.
    pub applied_at: String,
    /// seq of that event.
    pub seq: u64,
    /// How many events the pair has.
    pub attempts: u64,
}

/// Where a patch stands across the fleet, by the latest event per system.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PatchOut {
    /// The patch.
    pub patch_id: String,
    /// Systems whose latest event for the patch is a success.
    pub applied: Vec<PatchSystemOut>,
    /// Systems whose latest event for the patch is a failure.
    pub failed: Vec<PatchSystemOut>,
    /// Systems whose latest event for the patch is a rollback.
    pub rolled_back: Vec<PatchSystemOut>,
}

impl From<patchaudit_domain::SystemSummary> for SystemOut {
    fn from(s: patchaudit_domain::SystemSummary) -> Self {
        SystemOut {
            last_event_at: s.last_applied_at.to_rfc3339(),
            last_seq: s.last_seq,
            events: StatusCounts {
                success: s.success,
                failure: s.failure,
                rolled_back: s.rolled_back,
                total: s.success + s.failure + s.rolled_back,
            },
            system: s.system,
        }
    }
}

impl From<patchaudit_domain::PatchSystems> for PatchOut {
    fn from(p: patchaudit_domain::PatchSystems) -> Self {
        let mut out = PatchOut {
            patch_id: p.patch_id,
            applied: Vec::new(),
            failed: Vec::new(),
            rolled_back: Vec::new(),
        };
        for s in p.systems {
            let row = PatchSystemOut {
                system: s.system,
                applied_at: s.applied_at.to_rfc3339(),
                seq: s.seq,
                attempts: s.attempts,
            };
            match s.status {
                Status::Success => out.applied.push(row),
                Status::Failure => out.failed.push(row),
                Status::RolledBack => out.rolled_back.push(row),
            }
        }
        out
    }
}

/// Which systems have a patch, which failed it and which rolled it back.
#[utoipa::path(
    get,
    path = "/v1/patches/{patch_id}",
    tag = "fleet",
    params(("patch_id" = String, Path, description = "The patch id")),
    responses(
        (status = 200, description = "The patch across the fleet", body = PatchOut),
        (status = 404, description = "The ledger has no event for this patch", body = Problem, content_type = "application/problem+json")
    )
)]
async fn get_patch(
    State(st): State<AppState>,
    Path(patch_id): Path<String>,
) -> Result<Json<PatchOut>, ApiError> {
    let p = st.store.patch(&patch_id).await?;
    if p.systems.is_empty() {
        return Err(ApiError::NotFound(format!(
            "the ledger has no event for patch {patch_id:?}"
        )));
    }
    Ok(Json(PatchOut::from(p)))
}

// ---------------------------------------------------------------- operations

/// The body of health answers.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, body = Health),
        (status = 503, description = "The database does not answer", body = Problem, content_type = "application/problem+json")
    )
)]
async fn readyz(State(st): State<AppState>) -> Result<Json<Health>, ApiError> {
    st.store.ping().await.map_err(|e| match e {
        patchaudit_store::StoreError::Unavailable(m) => ApiError::Unavailable(m),
        other => ApiError::Unavailable(other.to_string()),
    })?;
    Ok(Json(Health {
        status: "ok".into(),
    }))
}

/// Prometheus metrics: requests and latency by route, events ingested, store errors.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"))
)]
async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    if let Ok(n) = st.store.len().await {
        metrics::gauge!("patchaudit_ledger_events", "backend" => st.store.backend()).set(n as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: &str) -> ListFormat {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        ListFormat::from_accept(&h)
    }

    #[test]
    fn accept_honours_q_values() {
        assert_eq!(pick("text/csv"), ListFormat::Csv);
        assert_eq!(pick("application/x-ndjson"), ListFormat::Ndjson);
        assert_eq!(pick("application/json, text/csv;q=0.1"), ListFormat::Json);
        assert_eq!(
            pick("text/csv;q=0"),
            ListFormat::Json,
            "q=0 means not acceptable"
        );
        assert_eq!(
            pick("application/json;q=0.5, text/csv;q=0.9"),
            ListFormat::Csv
        );
        assert_eq!(
            pick("text/csv, application/x-ndjson"),
            ListFormat::Csv,
            "ties go to the first"
        );
        assert_eq!(pick("TEXT/CSV ; q=1"), ListFormat::Csv);
        assert_eq!(pick("*/*"), ListFormat::Json);
        assert_eq!(pick("text/html"), ListFormat::Json);
    }
}
