//! The compliance API: the catalog, system tags, the SLA policy,
//! exceptions and the compliance report.
//!
//! Every write is recorded with who made it: the principal of the token
//! that sent it (`name#id`), kept in each record's revision history.

use crate::error::ApiError;
use crate::params::Params;
use crate::report_out::{self, ReportOut};
use crate::wire::Object;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use patchaudit_compliance::report::ReportFilter;
use patchaudit_compliance::{
    AffectedPackage, AppliesTo, CatalogEntry, Exception, PairState, RawCatalogEntry, RawException,
    Report, ScopedSla, Severity, SlaDays, SlaPolicy, Tag, Tags,
};
use patchaudit_domain::{ErrorCode, FieldError, SystemId, Timestamp};
use patchaudit_store::compliance::{self as records, Record, RecordKind};
use patchaudit_store::Store;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{PartialSchema, ToSchema};

/// Reads a JSON body as a `T`; a document type is read as a
/// [`crate::wire::Object`], so that only a JSON object passes for it.
pub(crate) async fn json_body<T: DeserializeOwned>(
    st: &AppState,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = crate::api::read_body(body, st.config.max_body_bytes).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Syntax {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

// ---------------------------------------------------------------- catalog

/// One affected package of a catalog entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PackageWire {
    /// The ecosystem, as OSV names it (`Debian:12`, `AlmaLinux:9`...).
    pub ecosystem: String,
    /// The package name.
    pub name: String,
    /// The first fixed version, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
}

/// Which systems an entry applies to; absent means all of them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppliesToWire {
    /// Systems carrying every one of these `key=value` tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Exactly these systems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systems: Option<Vec<String>>,
}

/// A catalog entry as clients send it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatalogIn {
    /// The patch id (the `patch_id` of events). Required in bulk writes;
    /// in `PUT /v1/catalog/{id}` it may be left out, and must match if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A short title (≤ 512 characters); defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `critical`, `high`, `medium`, `low` or `none`.
    #[schema(example = "critical")]
    pub severity: Option<String>,
    /// When the fix was released (RFC 3339); the SLA clock starts here.
    #[schema(example = "2024-05-14T00:00:00Z")]
    pub released_at: Option<String>,
    /// When the advisory last changed upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<String>,
    /// CVE ids.
    #[serde(default)]
    pub cves: Vec<String>,
    /// Other ids of the same advisory.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Affected packages and their fixed versions.
    #[serde(default, deserialize_with = "crate::wire::objects")]
    pub packages: Vec<PackageWire>,
    /// Which systems need it; absent means all.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::wire::optional_object"
    )]
    pub applies_to: Option<AppliesToWire>,
}

impl CatalogIn {
    /// Validates the entry; `path_id` is the id from the URL, if any.
    pub fn parse(self, path_id: Option<&str>) -> Result<CatalogEntry, Vec<FieldError>> {
        if let (Some(p), Some(b)) = (path_id, self.id.as_deref()) {
            if p != b {
                return Err(vec![FieldError::new(
                    "id",
                    ErrorCode::InvalidValue,
                    format!("the body's id {b:?} differs from the URL's {p:?}"),
                )]);
            }
        }
        let (tags, systems) = match self.applies_to {
            Some(a) => (a.tags, a.systems),
            None => (None, None),
        };
        CatalogEntry::parse(RawCatalogEntry {
            id: self.id.or(path_id.map(str::to_owned)),
            title: self.title,
            severity: self.severity,
            released_at: self.released_at,
            modified_at: self.modified_at,
            cves: self.cves,
            aliases: self.aliases,
            packages: self
                .packages
                .into_iter()
                .map(|p| AffectedPackage {
                    ecosystem: p.ecosystem,
                    name: p.name,
                    fixed: p.fixed,
                })
                .collect(),
            applies_to_tags: tags,
            applies_to_systems: systems,
        })
    }
}

impl From<&CatalogEntry> for CatalogIn {
    fn from(e: &CatalogEntry) -> Self {
        CatalogIn {
            id: Some(e.id.as_str().to_owned()),
            title: Some(e.title.clone()),
            severity: Some(e.severity.as_str().to_owned()),
            released_at: Some(e.released_at.to_rfc3339()),
            modified_at: e.modified_at.map(Timestamp::to_rfc3339),
            cves: e.cves.iter().map(|c| c.as_str().to_owned()).collect(),
            aliases: e.aliases.clone(),
            packages: e
                .packages
                .iter()
                .map(|p| PackageWire {
                    ecosystem: p.ecosystem.clone(),
                    name: p.name.clone(),
                    fixed: p.fixed.clone(),
                })
                .collect(),
            applies_to: applies_wire(&e.applies_to),
        }
    }
}

fn applies_wire(a: &AppliesTo) -> Option<AppliesToWire> {
    match a {
        AppliesTo::All => None,
        AppliesTo::Tags(t) => Some(AppliesToWire {
            tags: Some(t.iter().map(Tag::to_string).collect()),
            systems: None,
        }),
        AppliesTo::Systems(s) => Some(AppliesToWire {
            tags: None,
            systems: Some(s.iter().map(|s| s.as_str().to_owned()).collect()),
        }),
    }
}

/// Which revision of a record an answer shows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RevisionOut {
    /// The revision number.
    pub rev: u64,
    /// When it was written.
    pub changed_at: String,
    /// Who wrote it.
    pub changed_by: String,
    /// Whether this request wrote it (false: the same content was already current).
    #[serde(default)]
    pub changed: bool,
}

impl From<&Record> for RevisionOut {
    fn from(r: &Record) -> Self {
        RevisionOut {
            rev: r.rev,
            changed_at: r.changed_at.to_rfc3339(),
            changed_by: r.changed_by.clone(),
            changed: r.changed,
        }
    }
}

/// A catalog entry as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CatalogOut {
    /// The entry.
    #[serde(flatten)]
    pub entry: CatalogIn,
    /// Its current revision, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<RevisionOut>,
}

/// The schema of an answer that shows an input document `T` with its
/// `revision` beside the document's own fields (`#[serde(flatten)]`).
/// Derived, it would be an `allOf` of `T`'s schema, which forbids unknown
/// fields as the request does, so no answer carrying a `revision` could
/// match it. This is `T`'s object with `revision` added to its properties.
fn with_revision<T: PartialSchema>(
    description: &str,
    revision: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::{Ref, RefOr};
    let RefOr::T(Schema::Object(mut object)) = T::schema() else {
        unreachable!("an input document's schema is an inline object")
    };
    object.description = Some(description.to_owned());
    let mut revision_ref = Ref::from_schema_name(RevisionOut::name());
    revision_ref.description = revision.to_owned();
    object
        .properties
        .insert("revision".to_owned(), revision_ref.into());
    RefOr::T(Schema::Object(object))
}

impl PartialSchema for CatalogOut {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        with_revision::<CatalogIn>(
            "A catalog entry as the API shows it.",
            "Its current revision, when known.",
        )
    }
}

impl ToSchema for CatalogOut {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <CatalogIn as ToSchema>::schemas(schemas);
        schemas.push((RevisionOut::name().into(), RevisionOut::schema()));
        <RevisionOut as ToSchema>::schemas(schemas);
    }
}

/// A page of catalog entries.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogPage {
    /// The entries, by id.
    pub entries: Vec<CatalogOut>,
}

/// What a bulk catalog write did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogWriteOut {
    /// Entries written (new or changed).
    pub changed: usize,
    /// Entries already current, left as they were.
    pub unchanged: usize,
}

fn invalid_indexed(errors: Vec<(usize, Vec<FieldError>)>) -> ApiError {
    ApiError::InvalidDocument(
        errors
            .into_iter()
            .flat_map(|(i, errs)| {
                errs.into_iter()
                    .map(move |e| FieldError::new(format!("[{i}].{}", e.field), e.code, e.message))
            })
            .collect(),
    )
}

/// Creates or replaces one catalog entry.
#[utoipa::path(put, path = "/v1/catalog/{id}", tag = "compliance",
    params(("id" = String, Path, description = "The patch id")),
    request_body = CatalogIn,
    responses(
        (status = 200, description = "The entry as stored", body = CatalogOut),
        (status = 400, description = "The body is not well-formed JSON of the documented shape; the problem names the line and column", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received within the body timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over its limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The entry breaks a rule", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn put_catalog_entry(
    State(st): State<AppState>,
    Path(id): Path<String>,
    crate::auth::Caller(caller): crate::auth::Caller,
    body: Body,
) -> Result<Json<CatalogOut>, ApiError> {
    let who = caller.label();
    let Object(input) = json_body::<Object<CatalogIn>>(&st, body).await?;
    let entry = input.parse(Some(&id)).map_err(ApiError::InvalidDocument)?;
    let rec = records::put_catalog(&*st.store, std::slice::from_ref(&entry), &who).await?;
    Ok(Json(CatalogOut {
        entry: CatalogIn::from(&entry),
        revision: rec.first().map(RevisionOut::from),
    }))
}

/// Creates or replaces many catalog entries at once, all or nothing.
#[utoipa::path(post, path = "/v1/catalog", tag = "compliance",
    request_body = Vec<CatalogIn>,
    responses(
        (status = 200, description = "What was written", body = CatalogWriteOut),
        (status = 400, description = "The body is not well-formed JSON of the documented shape; the problem names the line and column", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received within the body timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over its limit, or holds more entries than max_batch", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Some entry breaks a rule; nothing was written", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn post_catalog(
    State(st): State<AppState>,
    crate::auth::Caller(caller): crate::auth::Caller,
    body: Body,
) -> Result<Json<CatalogWriteOut>, ApiError> {
    let who = caller.label();
    let input: Vec<CatalogIn> = json_body::<Vec<Object<CatalogIn>>>(&st, body)
        .await?
        .into_iter()
        .map(|o| o.0)
        .collect();
    if input.len() > st.config.max_batch {
        return Err(ApiError::TooLarge(format!(
            "{} catalog entries in one request; the limit is {} (max_batch)",
            input.len(),
            st.config.max_batch
        )));
    }
    let mut entries = Vec::with_capacity(input.len());
    let mut errors = Vec::new();
    for (i, e) in input.into_iter().enumerate() {
        if e.id.is_none() {
            errors.push((
                i,
                vec![FieldError::new(
                    "id",
                    ErrorCode::Required,
                    "id is required in a bulk write",
                )],
            ));
            continue;
        }
        match e.parse(None) {
            Ok(e) => entries.push(e),
            Err(errs) => errors.push((i, errs)),
        }
    }
    if !errors.is_empty() {
        return Err(invalid_indexed(errors));
    }
    let recs = records::put_catalog(&*st.store, &entries, &who).await?;
    let changed = recs.iter().filter(|r| r.changed).count();
    Ok(Json(CatalogWriteOut {
        changed,
        unchanged: recs.len() - changed,
    }))
}

/// Reads `as_of`. An instant in the future is refused: a report "as of"
/// it would change as events arrive, which an as-of report never does.
fn take_as_of(p: &mut Params) -> Option<Timestamp> {
    p.take_with("as_of", |v| {
        let t = Timestamp::parse_rfc3339(v)?;
        if t > Timestamp::now() {
            return Err(format!(
                "{t} is in the future; as_of must be a past instant"
            ));
        }
        Ok(t)
    })
}

/// One catalog entry, now or as it stood at `as_of`.
#[utoipa::path(get, path = "/v1/catalog/{id}", tag = "compliance",
    params(("id" = String, Path, description = "The patch id"),
           ("as_of" = Option<String>, Query, description = "RFC 3339: the entry as it stood then", format = DateTime)),
    responses(
        (status = 200, description = "The entry", body = CatalogOut),
        (status = 400, description = "A parameter is unknown, repeated or malformed", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn get_catalog_entry(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<CatalogOut>, ApiError> {
    let mut p = Params::parse(q.as_deref())?;
    let as_of = take_as_of(&mut p);
    p.finish(&["as_of"])?;
    Ok(Json(catalog_entry_out(&*st.store, &id, as_of).await?))
}

/// One catalog entry with its revision, now or as it stood at `as_of`;
/// shared with the CLI's local mode.
pub async fn catalog_entry_out(
    store: &dyn Store,
    id: &str,
    as_of: Option<Timestamp>,
) -> Result<CatalogOut, ApiError> {
    let history = store.record_history(RecordKind::Catalog, id).await?;
    let current = history
        .iter()
        .rev()
        .find(|r| as_of.is_none_or(|t| r.changed_at <= t))
        .filter(|r| r.body.is_some())
        .ok_or_else(|| ApiError::NotFound(format!("the catalog has no entry {id:?}")))?;
    let entry = records::decode_catalog(id, current.body.as_deref().unwrap_or_default())?;
    Ok(CatalogOut {
        entry: CatalogIn::from(&entry),
        revision: Some(RevisionOut::from(current)),
    })
}

/// Deletes a catalog entry; its history stays.
#[utoipa::path(delete, path = "/v1/catalog/{id}", tag = "compliance",
    params(("id" = String, Path, description = "The patch id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such entry", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn delete_catalog_entry(
    State(st): State<AppState>,
    Path(id): Path<String>,
    crate::auth::Caller(caller): crate::auth::Caller,
) -> Result<StatusCode, ApiError> {
    let who = caller.label();
    // The store refuses, as not found, to delete what does not exist.
    st.store
        .put_records(
            RecordKind::Catalog,
            vec![records::RecordChange { id, body: None }],
            &who,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every revision of a catalog entry, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryOut {
    /// The revisions; `entry` is absent for a deletion.
    pub revisions: Vec<HistoryItem>,
}

/// One revision in a history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryItem {
    /// Which revision, when and by whom.
    #[serde(flatten)]
    pub revision: RevisionOut,
    /// The content then, as JSON; absent for a deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Value>,
}

fn history_out(
    records: Vec<Record>,
    render: impl Fn(&str, &str) -> Result<serde_json::Value, ApiError>,
) -> Result<HistoryOut, ApiError> {
    let revisions = records
        .iter()
        .map(|r| {
            Ok(HistoryItem {
                revision: RevisionOut {
                    changed: false,
                    ..RevisionOut::from(r)
                },
                content: r.body.as_deref().map(|b| render(&r.id, b)).transpose()?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(HistoryOut { revisions })
}

fn to_value<T: Serialize>(t: T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(t).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Who changed a catalog entry, what, and when.
#[utoipa::path(get, path = "/v1/catalog/{id}/history", tag = "compliance",
    params(("id" = String, Path, description = "The patch id")),
    responses(
        (status = 200, description = "Every revision, oldest first", body = HistoryOut),
        (status = 404, description = "The entry never existed", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn catalog_history(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HistoryOut>, ApiError> {
    Ok(Json(catalog_history_out(&*st.store, &id).await?))
}

/// Every revision of a catalog entry; shared with the CLI's local mode.
pub async fn catalog_history_out(store: &dyn Store, id: &str) -> Result<HistoryOut, ApiError> {
    let h = store.record_history(RecordKind::Catalog, id).await?;
    if h.is_empty() {
        return Err(ApiError::NotFound(format!(
            "the catalog never had an entry {id:?}"
        )));
    }
    history_out(h, |id, b| {
        to_value(CatalogIn::from(&records::decode_catalog(id, b)?))
    })
}

/// The catalog, filtered.
#[utoipa::path(get, path = "/v1/catalog", tag = "compliance",
    params(
        ("severity" = Option<String>, Query, description = "Comma-separated severities"),
        ("cve" = Option<String>, Query, description = "Only entries fixing this CVE"),
        ("released_from" = Option<String>, Query, description = "Released at or after (RFC 3339)", format = DateTime),
        ("released_to" = Option<String>, Query, description = "Released before (RFC 3339)", format = DateTime),
        ("as_of" = Option<String>, Query, description = "The catalog as it stood then", format = DateTime)
    ),
    responses(
        (status = 200, description = "Matching entries, by id", body = CatalogPage),
        (status = 400, description = "A parameter is unknown, repeated or malformed", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn list_catalog(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<CatalogPage>, ApiError> {
    let mut p = Params::parse(q.as_deref())?;
    let severities = p
        .take_with("severity", parse_severities)
        .unwrap_or_default();
    let cve = p.take("cve");
    let from = p.take_with("released_from", Timestamp::parse_rfc3339);
    let to = p.take_with("released_to", Timestamp::parse_rfc3339);
    let as_of = take_as_of(&mut p);
    p.finish(&["severity", "cve", "released_from", "released_to", "as_of"])?;
    let entries = records::catalog(&*st.store, as_of).await?;
    let entries = entries
        .iter()
        .filter(|e| severities.is_empty() || severities.contains(&e.severity))
        .filter(|e| {
            cve.as_deref()
                .is_none_or(|c| e.cves.iter().any(|x| x.as_str() == c))
        })
        .filter(|e| from.is_none_or(|f| e.released_at >= f))
        .filter(|e| to.is_none_or(|t| e.released_at < t))
        .map(|e| CatalogOut {
            entry: CatalogIn::from(e),
            revision: None,
        })
        .collect();
    Ok(Json(CatalogPage { entries }))
}

/// Parses a comma-separated list of severities.
pub fn parse_severities(v: &str) -> Result<Vec<Severity>, String> {
    v.split(',').map(|s| s.trim().parse::<Severity>()).collect()
}

// ---------------------------------------------------------------- systems

/// A system's tags.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TagsIn {
    /// `key=value` tags; they replace the system's current tags.
    #[schema(example = json!(["env=prod", "pci=in-scope"]))]
    pub tags: Vec<String>,
}

/// A system's tags with their revision.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TagsOut {
    /// The system.
    pub system: String,
    /// Its tags, by key.
    pub tags: Vec<String>,
    /// The revision, if the tags were ever set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<RevisionOut>,
}

/// Replaces a system's tags. The system need not have events yet: tagging
/// it registers it, so it counts (as stale) until it reports.
#[utoipa::path(put, path = "/v1/systems/{system}/tags", tag = "compliance",
    params(("system" = String, Path, description = "The system id")),
    request_body = TagsIn,
    responses(
        (status = 200, description = "The tags as stored", body = TagsOut),
        (status = 400, description = "The body is not well-formed JSON of the documented shape; the problem names the line and column", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received within the body timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over its limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A tag breaks a rule", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn put_tags(
    State(st): State<AppState>,
    Path(system): Path<String>,
    crate::auth::Caller(caller): crate::auth::Caller,
    body: Body,
) -> Result<Json<TagsOut>, ApiError> {
    let who = caller.label();
    let Object(input) = json_body::<Object<TagsIn>>(&st, body).await?;
    let id = SystemId::parse(system.clone()).map_err(|(c, m)| {
        ApiError::InvalidDocument(vec![FieldError::new("system", c, format!("system {m}"))])
    })?;
    let tags = Tags::parse(input.tags.iter().map(String::as_str), "tags")
        .map_err(|e| ApiError::InvalidDocument(vec![e]))?;
    let rec = records::set_system_tags(&*st.store, &id, &tags, &who).await?;
    Ok(Json(TagsOut {
        system,
        tags: tags.to_strings(),
        revision: Some(RevisionOut::from(&rec)),
    }))
}

/// A system's tags (empty if never set).
#[utoipa::path(get, path = "/v1/systems/{system}/tags", tag = "compliance",
    params(("system" = String, Path, description = "The system id")),
    responses((status = 200, description = "The tags", body = TagsOut))
)]
async fn get_tags(
    State(st): State<AppState>,
    Path(system): Path<String>,
) -> Result<Json<TagsOut>, ApiError> {
    let h = st.store.record_history(RecordKind::System, &system).await?;
    let (tags, revision) = match h.last() {
        Some(r) => match &r.body {
            Some(b) => (
                records::decode_tags(&system, b)?.to_strings(),
                Some(RevisionOut::from(r)),
            ),
            None => (Vec::new(), Some(RevisionOut::from(r))),
        },
        None => (Vec::new(), None),
    };
    Ok(Json(TagsOut {
        system,
        tags,
        revision,
    }))
}

// ---------------------------------------------------------------- policy

/// Days per severity; null means no deadline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlaDaysWire {
    /// Days for critical patches.
    pub critical: Option<u32>,
    /// Days for high patches.
    pub high: Option<u32>,
    /// Days for medium patches.
    pub medium: Option<u32>,
    /// Days for low patches.
    pub low: Option<u32>,
}

/// Days for the systems carrying one tag.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScopedSlaWire {
    /// The `key=value` tag.
    pub tag: String,
    /// Its days.
    #[serde(deserialize_with = "crate::wire::object")]
    pub days: SlaDaysWire,
}

/// The SLA policy document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyWire {
    /// Days for systems no scope matches.
    #[serde(deserialize_with = "crate::wire::object")]
    pub default: SlaDaysWire,
    /// Overrides for tagged systems; the strictest matching one wins.
    #[serde(default, deserialize_with = "crate::wire::objects")]
    pub scoped: Vec<ScopedSlaWire>,
    /// A system not heard from for this many days is stale.
    pub stale_after_days: u32,
}

impl From<&SlaDays> for SlaDaysWire {
    fn from(d: &SlaDays) -> Self {
        SlaDaysWire {
            critical: d.critical,
            high: d.high,
            medium: d.medium,
            low: d.low,
        }
    }
}

impl From<&SlaPolicy> for PolicyWire {
    fn from(p: &SlaPolicy) -> Self {
        PolicyWire {
            default: (&p.default).into(),
            scoped: p
                .scoped
                .iter()
                .map(|s| ScopedSlaWire {
                    tag: s.tag.to_string(),
                    days: (&s.days).into(),
                })
                .collect(),
            stale_after_days: p.stale_after_days,
        }
    }
}

impl PolicyWire {
    /// Validates the document.
    pub fn parse(self) -> Result<SlaPolicy, Vec<FieldError>> {
        let days = |d: SlaDaysWire| SlaDays {
            critical: d.critical,
            high: d.high,
            medium: d.medium,
            low: d.low,
        };
        let mut errors = Vec::new();
        let mut scoped = Vec::new();
        for (i, s) in self.scoped.into_iter().enumerate() {
            match Tag::parse(&s.tag, &format!("scoped[{i}].tag")) {
                Ok(tag) => scoped.push(ScopedSla {
                    tag,
                    days: days(s.days),
                }),
                Err(e) => errors.push(e),
            }
        }
        let policy = SlaPolicy {
            default: days(self.default),
            scoped,
            stale_after_days: self.stale_after_days,
        };
        match policy.validate() {
            Ok(p) if errors.is_empty() => Ok(p),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }
}

/// The SLA policy, with its revision if it was ever set.
#[derive(Debug, Serialize, Deserialize)]
pub struct PolicyOut {
    /// The policy.
    #[serde(flatten)]
    pub policy: PolicyWire,
    /// Its revision; absent while the defaults apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<RevisionOut>,
}

impl PartialSchema for PolicyOut {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        with_revision::<PolicyWire>(
            "The SLA policy, with its revision if it was ever set.",
            "Its revision; absent while the defaults apply.",
        )
    }
}

impl ToSchema for PolicyOut {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <PolicyWire as ToSchema>::schemas(schemas);
        schemas.push((RevisionOut::name().into(), RevisionOut::schema()));
        <RevisionOut as ToSchema>::schemas(schemas);
    }
}

/// The SLA policy in force.
#[utoipa::path(get, path = "/v1/policy", tag = "compliance",
    responses((status = 200, description = "The policy", body = PolicyOut)))]
async fn get_policy(State(st): State<AppState>) -> Result<Json<PolicyOut>, ApiError> {
    Ok(Json(policy_out(&*st.store).await?))
}

/// The SLA policy in force with its revision (none while the defaults
/// apply); shared with the CLI's local mode.
pub async fn policy_out(store: &dyn Store) -> Result<PolicyOut, ApiError> {
    let h = store
        .record_history(RecordKind::Policy, records::POLICY_ID)
        .await?;
    let (policy, revision) = match h.last() {
        Some(r) => (
            records::decode_policy(r.body.as_deref().unwrap_or_default())?,
            Some(RevisionOut::from(r)),
        ),
        None => (SlaPolicy::default(), None),
    };
    Ok(PolicyOut {
        policy: PolicyWire::from(&policy),
        revision,
    })
}

/// Replaces the SLA policy.
#[utoipa::path(put, path = "/v1/policy", tag = "compliance",
    request_body = PolicyWire,
    responses(
        (status = 200, description = "The policy as stored", body = PolicyOut),
        (status = 400, description = "The body is not well-formed JSON of the documented shape; the problem names the line and column", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received within the body timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over its limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The policy breaks a rule", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn put_policy(
    State(st): State<AppState>,
    crate::auth::Caller(caller): crate::auth::Caller,
    body: Body,
) -> Result<Json<PolicyOut>, ApiError> {
    let who = caller.label();
    let Object(input) = json_body::<Object<PolicyWire>>(&st, body).await?;
    let policy = input.parse().map_err(ApiError::InvalidDocument)?;
    let rec = records::put_policy(&*st.store, &policy, &who).await?;
    Ok(Json(PolicyOut {
        policy: PolicyWire::from(&policy),
        revision: Some(RevisionOut::from(&rec)),
    }))
}

// ---------------------------------------------------------------- exceptions

/// A new exception.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExceptionIn {
    /// The patch it excuses.
    pub patch_id: Option<String>,
    /// One system...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// ...or one `key=value` tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Why the risk is accepted.
    pub reason: Option<String>,
    /// Who approved it.
    pub approver: Option<String>,
    /// When it stops counting (RFC 3339, in the future).
    pub expires_at: Option<String>,
}

/// An exception as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ExceptionOut {
    /// Its id.
    pub id: String,
    /// The patch it excuses.
    pub patch_id: String,
    /// The system it covers, if scoped to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The tag it covers, if scoped to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Why the risk is accepted.
    pub reason: String,
    /// Who approved it.
    pub approver: String,
    /// When it was created.
    pub created_at: String,
    /// When it stops counting.
    pub expires_at: String,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Whether it counts now.
    pub active: bool,
}

impl ExceptionOut {
    /// Shows an exception as it counts at `now`.
    pub fn new(x: &Exception, now: Timestamp) -> Self {
        use patchaudit_compliance::ExceptionScope as S;
        let (system, tag) = match &x.scope {
            S::System(s) => (Some(s.as_str().to_owned()), None),
            S::Tag(t) => (None, Some(t.to_string())),
        };
        ExceptionOut {
            id: x.id.clone(),
            patch_id: x.patch_id.as_str().to_owned(),
            system,
            tag,
            reason: x.reason.clone(),
            approver: x.approver.clone(),
            created_at: x.created_at.to_rfc3339(),
            expires_at: x.expires_at.to_rfc3339(),
            revoked_at: x.revoked_at.map(Timestamp::to_rfc3339),
            active: x.active_at(now),
        }
    }
}

/// Exceptions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExceptionList {
    /// By id.
    pub exceptions: Vec<ExceptionOut>,
}

/// Records a new exception.
#[utoipa::path(post, path = "/v1/exceptions", tag = "compliance",
    request_body = ExceptionIn,
    responses(
        (status = 201, description = "The exception", body = ExceptionOut),
        (status = 400, description = "The body is not well-formed JSON of the documented shape; the problem names the line and column", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received within the body timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over its limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "It breaks a rule", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn post_exception(
    State(st): State<AppState>,
    crate::auth::Caller(caller): crate::auth::Caller,
    body: Body,
) -> Result<(StatusCode, Json<ExceptionOut>), ApiError> {
    let who = caller.label();
    let Object(input) = json_body::<Object<ExceptionIn>>(&st, body).await?;
    let x = create_exception(&*st.store, input, &who).await?;
    Ok((
        StatusCode::CREATED,
        Json(ExceptionOut::new(&x, Timestamp::now())),
    ))
}

/// Validates and records a new exception; shared with the CLI's local mode.
pub async fn create_exception(
    store: &dyn Store,
    input: ExceptionIn,
    actor: &str,
) -> Result<Exception, ApiError> {
    let now = Timestamp::now();
    let id = format!("exc-{}", new_id());
    let x = Exception::parse(
        RawException {
            patch_id: input.patch_id,
            system: input.system,
            tag: input.tag,
            reason: input.reason,
            approver: input.approver,
            expires_at: input.expires_at,
        },
        id,
        now,
    )
    .map_err(ApiError::InvalidDocument)?;
    records::put_exception(store, &x, actor).await?;
    Ok(x)
}

/// A random id of 12 hex digits: unguessable enough to never collide in one ledger.
fn new_id() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Revokes an exception now; shared with the CLI's local mode.
pub async fn revoke_exception(
    store: &dyn Store,
    id: &str,
    actor: &str,
) -> Result<Exception, ApiError> {
    let h = store.record_history(RecordKind::Exception, id).await?;
    let Some(body) = h.last().and_then(|r| r.body.clone()) else {
        return Err(ApiError::NotFound(format!("no exception {id:?}")));
    };
    let mut x = records::decode_exception(id, &body)?;
    if x.revoked_at.is_none() {
        x.revoked_at = Some(Timestamp::now());
        records::put_exception(store, &x, actor).await?;
    }
    Ok(x)
}

/// Every exception, expired and revoked ones included.
#[utoipa::path(get, path = "/v1/exceptions", tag = "compliance",
    params(("active" = Option<bool>, Query, description = "Only those that count now (true) or not (false)")),
    responses(
        (status = 200, description = "Exceptions", body = ExceptionList),
        (status = 400, description = "A parameter is unknown, repeated or malformed", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn list_exceptions(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<ExceptionList>, ApiError> {
    let mut p = Params::parse(q.as_deref())?;
    let active = p.take_with("active", |v| match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("must be true or false, got {v:?}")),
    });
    p.finish(&["active"])?;
    let now = Timestamp::now();
    let exceptions = records::exceptions(&*st.store, None)
        .await?
        .iter()
        .map(|x| ExceptionOut::new(x, now))
        .filter(|x| active.is_none_or(|a| x.active == a))
        .collect();
    Ok(Json(ExceptionList { exceptions }))
}

/// Revokes an exception; it stops counting now and stays in the history.
#[utoipa::path(post, path = "/v1/exceptions/{id}/revoke", tag = "compliance",
    params(("id" = String, Path, description = "The exception id")),
    responses(
        (status = 200, description = "The revoked exception", body = ExceptionOut),
        (status = 404, description = "No such exception", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn post_revoke(
    State(st): State<AppState>,
    Path(id): Path<String>,
    crate::auth::Caller(caller): crate::auth::Caller,
) -> Result<Json<ExceptionOut>, ApiError> {
    let who = caller.label();
    let x = revoke_exception(&*st.store, &id, &who).await?;
    Ok(Json(ExceptionOut::new(&x, Timestamp::now())))
}

// ---------------------------------------------------------------- report

/// The report's output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// JSON ([`ReportOut`]).
    Json,
    /// The overdue and failure lists as one CSV table.
    Csv,
    /// The per-system table as CSV.
    SystemsCsv,
    /// The per-patch table as CSV.
    PatchesCsv,
    /// Every required pair as CSV.
    PairsCsv,
    /// A self-contained HTML page.
    Html,
}

impl ReportFormat {
    /// Parses a `format` value.
    pub fn parse(v: &str) -> Result<Self, String> {
        Ok(match v {
            "json" => ReportFormat::Json,
            "csv" => ReportFormat::Csv,
            "systems-csv" => ReportFormat::SystemsCsv,
            "patches-csv" => ReportFormat::PatchesCsv,
            "pairs-csv" => ReportFormat::PairsCsv,
            "html" => ReportFormat::Html,
            _ => {
                return Err(format!(
                    "{v:?} is not a format; expected json, csv, systems-csv, patches-csv, pairs-csv or html"
                ))
            }
        })
    }
}

/// Computes a report over `store`, with failure details filled in.
/// Shared with the CLI's local mode. A report "now" goes through `cache`
/// when one is given, which reads only the pairs changed since the last one.
pub async fn compute_report(
    store: &dyn Store,
    cache: Option<&records::FactsCache>,
    as_of: Option<Timestamp>,
    filter: ReportFilter,
) -> Result<ReportOut, ApiError> {
    let report = match (cache, as_of) {
        (Some(cache), None) => {
            cache
                .compute(store, move |input| Report::compute(input, &filter))
                .await?
        }
        _ => {
            let input = records::report_input(store, as_of).await?;
            tokio::task::spawn_blocking(move || Report::compute(&input, &filter))
                .await
                .map_err(|e| ApiError::Internal(format!("report task failed: {e}")))?
        }
    };
    finish_report(store, report).await
}

/// Computes the report at instant `at` over exactly the events below the
/// checkpoint of `size`: how a report that names both is derived again.
pub async fn compute_report_at(
    store: &dyn Store,
    at: Timestamp,
    size: u64,
    filter: ReportFilter,
) -> Result<ReportOut, ApiError> {
    let input = records::report_input_at(store, at, size).await?;
    let report = tokio::task::spawn_blocking(move || Report::compute(&input, &filter))
        .await
        .map_err(|e| ApiError::Internal(format!("report task failed: {e}")))?;
    finish_report(store, report).await
}

/// Fills in failure details and shapes the report for the wire.
async fn finish_report(store: &dyn Store, mut report: Report) -> Result<ReportOut, ApiError> {
    let seqs: Vec<u64> = report
        .failures
        .iter()
        .filter_map(|r| r.last_failure_seq)
        .collect();
    let details = store.details(&seqs).await?;
    for row in &mut report.failures {
        row.detail = row.last_failure_seq.and_then(|s| details.get(&s).cloned());
    }
    for row in report
        .pairs
        .iter_mut()
        .filter(|r| r.state == PairState::Failed)
    {
        row.detail = row.last_failure_seq.and_then(|s| details.get(&s).cloned());
    }
    Ok(ReportOut::from(&report))
}

/// Renders a report in a format: (content type, body).
pub fn render_report(report: &ReportOut, format: ReportFormat) -> (&'static str, Vec<u8>) {
    match format {
        ReportFormat::Json => (
            "application/json",
            serde_json::to_vec_pretty(report).unwrap_or_default(),
        ),
        ReportFormat::Csv => ("text/csv; charset=utf-8", report_out::to_csv(report)),
        ReportFormat::SystemsCsv => ("text/csv; charset=utf-8", report_out::systems_csv(report)),
        ReportFormat::PatchesCsv => ("text/csv; charset=utf-8", report_out::patches_csv(report)),
        ReportFormat::PairsCsv => ("text/csv; charset=utf-8", report_out::pairs_csv(report)),
        ReportFormat::Html => (
            "text/html; charset=utf-8",
            report_out::to_html(report).into_bytes(),
        ),
    }
}

/// Parses the report filter parameters shared by the API and the CLI.
pub fn take_report_filter(p: &mut Params) -> ReportFilter {
    let tags = p
        .take_with("tag", |v| {
            v.split(',')
                .map(|t| Tag::parse(t, "tag").map_err(|e| e.message))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_default();
    ReportFilter {
        tags,
        severities: p
            .take_with("severity", parse_severities)
            .unwrap_or_default(),
        system: p.take("system"),
        patch_id: p.take("patch_id"),
        list_pairs: p
            .take_with("pairs", |v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(format!("must be true or false, got {v:?}")),
            })
            .unwrap_or(false),
    }
}

/// The compliance report: which required (system, patch) pairs are
/// applied, on time or late, missing, overdue, failed, excepted or unknown.
#[utoipa::path(get, path = "/v1/reports/compliance", tag = "compliance",
    params(
        ("as_of" = Option<String>, Query, description = "RFC 3339: the report as the ledger stood then", format = DateTime),
        ("checkpoint" = Option<u64>, Query, description = "With as_of: derive the report from exactly the events below this checkpoint size, as a report names it", format = "uint64", maximum = 18446744073709551615usize),
        ("tag" = Option<String>, Query, description = "Only systems with these comma-separated key=value tags"),
        ("severity" = Option<String>, Query, description = "Only patches of these comma-separated severities"),
        ("system" = Option<String>, Query, description = "Only this system"),
        ("patch_id" = Option<String>, Query, description = "Only this patch"),
        ("pairs" = Option<bool>, Query, description = "Also list every required pair (JSON `pairs`)"),
        ("format" = Option<String>, Query, description = "json (default), csv, systems-csv, patches-csv, pairs-csv or html; or use Accept")
    ),
    responses(
        (status = 200, description = "The report: JSON, CSV or HTML by `format` or Accept", content(
            (ReportOut = "application/json"),
            (String = "text/csv"),
            (String = "text/html")
        )),
        (status = 400, description = "A bad parameter", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "With checkpoint: the ledger has no checkpoint of that size", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn get_report(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let mut p = Params::parse(q.as_deref())?;
    let as_of = take_as_of(&mut p);
    let mut filter = take_report_filter(&mut p);
    let format = p.take_with("format", ReportFormat::parse);
    let checkpoint = p.take_with("checkpoint", crate::params::unsigned);
    if checkpoint.is_some() && as_of.is_none() && !p.has_error("as_of") {
        p.error(
            "checkpoint",
            ErrorCode::Required,
            "checkpoint needs as_of: the report's instant and its checkpoint together name it",
        );
    }
    p.finish(&[
        "as_of",
        "checkpoint",
        "tag",
        "severity",
        "system",
        "patch_id",
        "pairs",
        "format",
    ])?;
    filter.list_pairs |= format == Some(ReportFormat::PairsCsv);
    let format = format.unwrap_or_else(|| {
        crate::api::negotiate(
            &headers,
            &[
                ("application/json", ReportFormat::Json),
                ("text/html", ReportFormat::Html),
                ("text/csv", ReportFormat::Csv),
            ],
            ReportFormat::Json,
        )
    });
    let report = match (as_of, checkpoint) {
        (Some(at), Some(size)) => compute_report_at(&*st.store, at, size, filter).await?,
        _ => compute_report(&*st.store, Some(&st.facts), as_of, filter).await?,
    };
    let (ctype, body) = render_report(&report, format);
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(resp)
}

/// The compliance routes.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(list_catalog, post_catalog))
        .routes(routes!(
            get_catalog_entry,
            put_catalog_entry,
            delete_catalog_entry
        ))
        .routes(routes!(catalog_history))
        .routes(routes!(get_tags, put_tags))
        .routes(routes!(get_policy, put_policy))
        .routes(routes!(list_exceptions, post_exception))
        .routes(routes!(post_revoke))
        .routes(routes!(get_report))
}
