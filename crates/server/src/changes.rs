//! The tool's own audit trail: every change to the catalog, system tags,
//! the policy, exceptions and tokens, with who made it and when, in the
//! order it was made.
//!
//! It lists what changed, not the content: the content of each revision
//! is one call away (`/v1/catalog/{id}/history` and the like), and a token
//! revision holds a secret's hash, which no API ever returns.

use crate::error::ApiError;
use crate::params::{unsigned, Params};
use crate::AppState;
use axum::extract::{RawQuery, State};
use axum::Json;
use patchaudit_domain::ErrorCode;
use patchaudit_store::compliance::{Record, RecordKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The most changes one page holds.
pub const MAX_PAGE: usize = 1_000;

/// One change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeOut {
    /// Its position in the trail: increasing, never reused.
    pub rev: u64,
    /// `catalog`, `system` (tags), `policy`, `exception` or `token`.
    pub kind: String,
    /// The record: a patch id, a system, `default`, an exception or a token id.
    pub id: String,
    /// `written` or `deleted`; for tokens, `created` or `revoked`.
    pub action: String,
    /// When (RFC 3339, UTC).
    pub changed_at: String,
    /// Who: a token's `name#id`, or `local:USER` for the CLI on the
    /// database.
    pub changed_by: String,
}

/// A page of the trail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangePage {
    /// In `rev` order.
    pub changes: Vec<ChangeOut>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_after: Option<u64>,
}

/// What a revision did.
fn action(kind: RecordKind, r: &Record) -> &'static str {
    match (kind, r.body.as_deref()) {
        (_, None) => "deleted",
        (RecordKind::Token, Some(body)) if patchaudit_store::tokens::is_revocation(body) => {
            "revoked"
        }
        (RecordKind::Token, Some(_)) => "created",
        (_, Some(_)) => "written",
    }
}

/// Every change to the catalog, system tags, the policy, exceptions,
/// tokens and inventories, oldest first, with who made it and when. Token rows need the
/// admin scope; without it they are left out.
#[utoipa::path(get, path = "/v1/changes", tag = "compliance",
    params(
        ("after" = Option<u64>, Query, description = "Only changes with a higher rev (the `next_after` of the previous page)", format = "uint64", maximum = 18446744073709551615usize),
        ("kind" = Option<String>, Query, description = "Only this kind: catalog, system, policy, exception, token or inventory"),
        ("limit" = Option<u64>, Query, description = "At most this many (default 100, at most 1000)", minimum = 1, maximum = 1000)
    ),
    responses(
        (status = 200, description = "A page of changes", body = ChangePage),
        (status = 400, description = "A parameter is invalid", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn list_changes(
    State(st): State<AppState>,
    crate::auth::Caller(who): crate::auth::Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<ChangePage>, ApiError> {
    let mut p = Params::parse(q.as_deref())?;
    let after = p.take_with("after", unsigned).unwrap_or(0);
    let limit = p.take_with("limit", unsigned).unwrap_or(100);
    if !(1..=MAX_PAGE as u64).contains(&limit) && !p.has_error("limit") {
        p.error(
            "limit",
            ErrorCode::Format,
            format!("must be 1 to {MAX_PAGE}, got {limit}"),
        );
    }
    let kind = p.take_with("kind", |v| {
        RecordKind::parse(v).ok_or_else(|| {
            format!(
                "{v:?} is not a kind; the kinds are catalog, system, policy, exception, token and inventory"
            )
        })
    });
    p.finish(&["after", "kind", "limit"])?;
    // Tokens are an admin matter (`/v1/tokens` needs admin), so a caller
    // without admin sees the rest of the trail but not the token rows.
    let admin = who
        .token
        .scopes
        .contains(patchaudit_domain::access::Scope::Admin);
    if kind == Some(RecordKind::Token) && !admin {
        return Err(ApiError::Forbidden {
            detail: format!(
                "token {} has scope {}; the token rows of the trail need admin",
                who.label(),
                who.token.scopes
            ),
            errors: Vec::new(),
        });
    }
    Ok(Json(
        page(st.store.as_ref(), after, kind, limit as usize, admin).await?,
    ))
}

/// One page of the trail: up to `limit` changes after `after`, of `kind`
/// if given, with token rows only if `with_tokens`. Shared with the CLI's
/// local mode.
pub async fn page(
    store: &dyn patchaudit_store::Store,
    after: u64,
    kind: Option<RecordKind>,
    limit: usize,
    with_tokens: bool,
) -> Result<ChangePage, ApiError> {
    // Filtering by kind reads on past other kinds, so read in pages until
    // this page is full or the trail ends.
    let mut out = Vec::new();
    let mut cursor = after;
    let mut more = false;
    loop {
        let batch = store.record_changes(cursor, MAX_PAGE).await?;
        let done = batch.len() < MAX_PAGE;
        for (k, r) in batch {
            cursor = r.rev;
            if kind.is_some_and(|want| want != k) || (k == RecordKind::Token && !with_tokens) {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(ChangeOut {
                rev: r.rev,
                kind: k.as_str().to_owned(),
                id: r.id.clone(),
                action: action(k, &r).to_owned(),
                changed_at: r.changed_at.to_rfc3339(),
                changed_by: r.changed_by.clone(),
            });
        }
        if more || done {
            break;
        }
    }
    let next_after = if more {
        out.last().map(|c| c.rev)
    } else {
        None
    };
    Ok(ChangePage {
        changes: out,
        next_after,
    })
}

/// The route of the trail.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(list_changes))
}
