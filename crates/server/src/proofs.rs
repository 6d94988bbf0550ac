//! The tamper-evidence endpoints: the latest signed checkpoint, and
//! inclusion and consistency proofs served from the stored tree.
//!
//! Hashes travel as standard base64, as in the checkpoint itself, so a
//! client compares them with the checkpoint's root line as they are.

use crate::error::{ApiError, Problem};
use crate::params::{self, Params};
use crate::wire::EventOut;
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use patchaudit_domain::{ErrorCode, FieldError};
use patchaudit_store::tree::{self, TreeError};
use patchaudit_store::Hash;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The media type of a signed note (C2SP signed-note).
pub const NOTE_MEDIA_TYPE: &str = "text/plain; charset=utf-8";

fn b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

impl From<TreeError> for ApiError {
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::BeyondLedger { .. } => ApiError::NotFound(e.to_string()),
            TreeError::Invalid(m) => {
                ApiError::BadParameters(vec![FieldError::new("size", ErrorCode::InvalidValue, m)])
            }
            TreeError::Store(s) => s.into(),
        }
    }
}

/// The latest signed checkpoint: a C2SP tlog-checkpoint (origin, tree size,
/// base64 root) in a C2SP signed note with an Ed25519 signature. It covers
/// every event recorded so far.
#[utoipa::path(
    get,
    path = "/v1/checkpoint",
    tag = "proofs",
    responses(
        (status = 200, description = "The signed note", body = String, content_type = "text/plain"),
        (status = 404, description = "Nothing was recorded yet, so nothing was signed", body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn get_checkpoint(State(st): State<AppState>) -> Result<Response, ApiError> {
    match st.store.checkpoint().await? {
        Some(cp) => Ok(([(header::CONTENT_TYPE, NOTE_MEDIA_TYPE)], cp.note).into_response()),
        None => Err(ApiError::NotFound(
            "the ledger is empty, so no checkpoint was signed yet".into(),
        )),
    }
}

/// An inclusion proof.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InclusionProofOut {
    /// The leaf index, which is the event's seq.
    pub seq: u64,
    /// The size of the tree the proof is for.
    pub size: u64,
    /// The leaf hash, `SHA-256(0x00 || leaf bytes)`, base64.
    pub leaf_hash: String,
    /// The audit path from the leaf to the root, base64 hashes, leaf end first.
    pub proof: Vec<String>,
}

/// The parameters of an inclusion proof.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct InclusionQuery {
    /// The event's seq (the leaf index).
    #[param(format = "uint64", maximum = 18446744073709551615usize)]
    seq: u64,
    /// The tree size, at most the latest checkpoint's; default: the latest checkpoint's.
    #[param(format = "uint64", maximum = 18446744073709551615usize)]
    size: Option<u64>,
}

async fn latest_size(st: &AppState) -> Result<u64, ApiError> {
    Ok(st.store.checkpoint().await?.map_or(0, |c| c.size))
}

/// Proves that the event at `seq` is in the tree of `size` events.
#[utoipa::path(
    get,
    path = "/v1/proofs/inclusion",
    tag = "proofs",
    params(InclusionQuery),
    responses(
        (status = 200, description = "The proof", body = InclusionProofOut),
        (status = 400, description = "A parameter is missing, unknown or malformed, or seq is not below size", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "size is beyond the latest checkpoint", body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn inclusion(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<InclusionProofOut>, ApiError> {
    let mut p = Params::parse(q.as_deref())?;
    let seq = p.take_with("seq", params::unsigned);
    let size = p.take_with("size", params::unsigned);
    if seq.is_none() && !p.has_error("seq") {
        p.error("seq", ErrorCode::Required, "is required");
    }
    p.finish(&["seq", "size"])?;
    let seq = seq.unwrap_or_default();
    let signed = latest_size(&st).await?;
    let size = size.unwrap_or(signed);
    if seq >= size {
        return Err(ApiError::BadParameters(vec![FieldError::new(
            "seq",
            ErrorCode::InvalidValue,
            format!("must be below the tree size {size}"),
        )]));
    }
    let (leaf, proof) = tree::leaf_and_inclusion_proof(&*st.store, seq, size, Some(signed)).await?;
    Ok(Json(InclusionProofOut {
        seq,
        size,
        leaf_hash: B64.encode(leaf),
        proof: b64(&proof),
    }))
}

/// A consistency proof.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProofOut {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
    /// The proof (RFC 6962 §2.1.2), base64 hashes.
    pub proof: Vec<String>,
}

/// The parameters of a consistency proof.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ConsistencyQuery {
    /// The older tree size, at least 1.
    #[param(format = "uint64", minimum = 1, maximum = 18446744073709551615usize)]
    from: u64,
    /// The newer tree size, at most the latest checkpoint's; default: the latest checkpoint's.
    #[param(format = "uint64", maximum = 18446744073709551615usize)]
    to: Option<u64>,
}

/// Proves that the tree of `from` events is a prefix of the tree of `to`
/// events: nothing recorded before was changed, removed or reordered.
#[utoipa::path(
    get,
    path = "/v1/proofs/consistency",
    tag = "proofs",
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProofOut),
        (status = 400, description = "A parameter is missing, unknown or malformed, or from is 0 or above to", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "to is beyond the latest checkpoint", body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn consistency(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<ConsistencyProofOut>, ApiError> {
    let mut p = Params::parse(q.as_deref())?;
    let from = p.take_with("from", params::unsigned);
    let to = p.take_with("to", params::unsigned);
    if from.is_none() && !p.has_error("from") {
        p.error("from", ErrorCode::Required, "is required");
    }
    p.finish(&["from", "to"])?;
    let from = from.unwrap_or_default();
    let to = match to {
        Some(t) => t,
        None => latest_size(&st).await?,
    };
    if from == 0 || from > to {
        return Err(ApiError::BadParameters(vec![FieldError::new(
            "from",
            ErrorCode::InvalidValue,
            format!("must be between 1 and to ({to})"),
        )]));
    }
    let proof = tree::consistency_proof(&*st.store, from, to).await?;
    Ok(Json(ConsistencyProofOut {
        from,
        to,
        proof: b64(&proof),
    }))
}

/// An event with everything needed to check it offline: its inclusion
/// proof in the latest checkpoint, and that checkpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventProofOut {
    /// The event, with every field its leaf covers.
    pub event: EventOut,
    /// Its leaf hash, base64.
    pub leaf_hash: String,
    /// The size of the checkpoint the proof leads to.
    pub size: u64,
    /// The audit path, base64 hashes, leaf end first.
    pub proof: Vec<String>,
    /// The latest signed checkpoint (a signed note).
    pub checkpoint: String,
}

/// One event, its inclusion proof and the signed checkpoint it leads to.
#[utoipa::path(
    get,
    path = "/v1/events/{seq}/proof",
    tag = "proofs",
    params(("seq" = u64, Path, description = "The event's position in the ledger", format = "uint64", maximum = 18446744073709551615usize)),
    responses(
        (status = 200, description = "The event and its proof", body = EventProofOut),
        (status = 400, description = "seq is not a non-negative integer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No event with that seq", body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn event_proof(
    State(st): State<AppState>,
    Path(seq): Path<String>,
) -> Result<Json<EventProofOut>, ApiError> {
    let seq = params::unsigned(&seq)
        .map_err(|m| ApiError::BadParameters(vec![FieldError::new("seq", ErrorCode::Format, m)]))?;
    // The checkpoint first: every event below its size is in the store.
    let checkpoint = st.store.checkpoint().await?;
    let Some(checkpoint) = checkpoint.filter(|c| seq < c.size) else {
        return Err(ApiError::NotFound(format!("no event with seq {seq}")));
    };
    let event = st.store.get(seq).await?.ok_or_else(|| {
        ApiError::Internal(format!("seq {seq} is below the checkpoint but not stored"))
    })?;
    let (leaf, proof) =
        tree::leaf_and_inclusion_proof(&*st.store, seq, checkpoint.size, Some(checkpoint.size))
            .await?;
    Ok(Json(EventProofOut {
        event: EventOut::from(&event),
        leaf_hash: B64.encode(leaf),
        size: checkpoint.size,
        proof: b64(&proof),
        checkpoint: checkpoint.note,
    }))
}
