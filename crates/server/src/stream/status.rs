//! `GET /v1/stream/status`, and the dead letters of the webhooks:
//! `GET /v1/stream/dead-letters` and `POST /v1/stream/dead-letters/{id}/replay`.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Where one sink stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CursorOut {
    /// The cursor: the sink and what it carries, such as `nats/events`.
    pub name: String,
    /// The next position not yet delivered (a seq, or an alert id).
    pub position: u64,
    /// How many positions are recorded but not yet delivered. Absent for
    /// a broker consumer's cursor, whose position is a broker offset (see
    /// `patchaudit_consume_lag` in `/metrics`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lag: Option<u64>,
    /// When the cursor last moved (RFC 3339, UTC).
    pub updated_at: String,
}

/// The stream's state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamStatus {
    /// The ledger's length: the next seq.
    pub ledger_len: u64,
    /// The id of the latest alert (0 when none).
    pub last_alert: u64,
    /// Every stored cursor, by name.
    pub cursors: Vec<CursorOut>,
    /// Dead letters waiting for a replay.
    pub dead_letters: usize,
}

/// Reads the stream's state from the store; shared with the CLI's local mode.
pub async fn status(store: &dyn patchaudit_store::Store) -> Result<StreamStatus, ApiError> {
    let (len, cursors, letters, last_alert) = futures::try_join!(
        store.len(),
        store.cursors(),
        store.dead_letters(None),
        last_alert(store)
    )?;
    Ok(StreamStatus {
        ledger_len: len,
        last_alert,
        cursors: cursors
            .into_iter()
            .map(|c| {
                let head = if c.name.starts_with("kafka-consume/") {
                    None
                } else if c.name.ends_with("/alerts") {
                    Some(last_alert + 1)
                } else {
                    Some(len)
                };
                CursorOut {
                    lag: head.map(|h| h.saturating_sub(c.position)),
                    name: c.name,
                    position: c.position,
                    updated_at: c.updated_at.to_rfc3339(),
                }
            })
            .collect(),
        dead_letters: letters.len(),
    })
}

async fn last_alert(
    store: &dyn patchaudit_store::Store,
) -> Result<u64, patchaudit_store::StoreError> {
    // Alerts are few; walk pages to the last one.
    let mut after = 0;
    loop {
        let page = store.alerts(after, 1000).await?;
        match page.last() {
            Some(a) => after = a.id,
            None => return Ok(after),
        }
        if page.len() < 1000 {
            return Ok(after);
        }
    }
}

/// Where every sink of the stream stands, and its lag.
#[utoipa::path(get, path = "/v1/stream/status", tag = "stream",
    responses((status = 200, description = "The cursors and their lag", body = StreamStatus))
)]
async fn get_status(State(st): State<AppState>) -> Result<Json<StreamStatus>, ApiError> {
    Ok(Json(status(st.store.as_ref()).await?))
}

/// A webhook delivery that gave up.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterOut {
    /// Its id, for a replay.
    pub id: u64,
    /// The webhook (`webhook:<hash of its URL>`).
    pub sink: String,
    /// The message's stable id.
    pub message_id: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The last attempt's error.
    pub error: String,
    /// When it gave up (RFC 3339, UTC).
    pub failed_at: String,
    /// The message body as it was sent.
    pub payload: String,
}

impl From<patchaudit_store::stream::DeadLetter> for DeadLetterOut {
    fn from(l: patchaudit_store::stream::DeadLetter) -> Self {
        DeadLetterOut {
            id: l.id,
            sink: l.sink,
            message_id: l.message_id,
            attempts: l.attempts,
            error: l.error,
            failed_at: l.failed_at.to_rfc3339(),
            payload: l.payload,
        }
    }
}

/// List the webhook deliveries that gave up, oldest first.
#[utoipa::path(get, path = "/v1/stream/dead-letters", tag = "stream",
    params(("sink" = Option<String>, Query, description = "Only this webhook's")),
    responses(
        (status = 200, description = "The dead letters", body = [DeadLetterOut]),
        (status = 400, description = "A parameter is invalid", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn list_dead_letters(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<DeadLetterOut>>, ApiError> {
    let mut p = crate::params::Params::parse(q.as_deref())?;
    let sink = p.take("sink");
    p.finish(&["sink"])?;
    let letters = st.store.dead_letters(sink.as_deref()).await?;
    Ok(Json(letters.into_iter().map(DeadLetterOut::from).collect()))
}

/// The outcome of a replay.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Replayed {
    /// The dead letter delivered and removed.
    pub id: u64,
    /// The webhook it went to.
    pub sink: String,
}

/// Deliver a dead letter again, to the webhook it was meant for; on
/// success it is removed.
#[utoipa::path(post, path = "/v1/stream/dead-letters/{id}/replay", tag = "stream",
    params(("id" = u64, Path, description = "The dead letter's id")),
    responses(
        (status = 200, description = "Delivered and removed", body = Replayed),
        (status = 404, description = "No such dead letter, or its webhook is no longer configured", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The webhook refused it again; it stays", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn replay(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Replayed>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::NotFound(format!("dead letter {id:?}: ids are non-negative integers"))
    })?;
    let letter = st
        .store
        .dead_letters(None)
        .await?
        .into_iter()
        .find(|l| l.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("dead letter {id}")))?;
    let hook = st
        .webhooks
        .iter()
        .find(|w| crate::stream::Sink::name(w.as_ref()) == letter.sink)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "dead letter {id} is for {}, which this server does not have configured",
                letter.sink
            ))
        })?;
    hook.replay(&letter).await.map_err(|e| match e {
        crate::stream::SinkError::Store(s) => ApiError::from(s),
        crate::stream::SinkError::Unavailable(m) => ApiError::BadGateway(m),
    })?;
    Ok(Json(Replayed {
        id,
        sink: letter.sink,
    }))
}

/// The status and dead-letter routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_status))
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay))
}
