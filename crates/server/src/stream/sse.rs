//! `GET /v1/stream`: the live feed for dashboards, as Server-Sent Events.
//!
//! Each event is an SSE event with `id: <seq>`, `event: event` and the same
//! JSON body the sinks send. A client that reconnects sends the last id it
//! saw in `Last-Event-ID` (browsers' `EventSource` does so by itself) and
//! the feed resumes right after it, so a dashboard misses nothing. A new
//! client starts at the end of the ledger, or at `from_seq`.

use super::{event_message, Context, Message, POLL};
use crate::error::ApiError;
use crate::params::{unsigned, Params};
use crate::AppState;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use patchaudit_compliance::Tag;
use patchaudit_domain::{ErrorCode, EventFilter, Status};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const PAGE: usize = 500;

struct Feed {
    state: AppState,
    filter: EventFilter,
    tag: Option<Tag>,
    position: u64,
    context: Context,
    ready: VecDeque<Message>,
    wake: tokio::sync::watch::Receiver<u64>,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Feed {
    /// The next message, waiting for one; `None` when the feed ends (the
    /// server is shutting down, or the ledger cannot be read).
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Some(m);
            }
            if *self.closing.borrow() {
                return None;
            }
            let len = match self.state.store.len().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "the live feed cannot read the ledger; closing it");
                    return None;
                }
            };
            self.state.hub.appended(len);
            if self.position >= len {
                tokio::select! {
                    _ = self.wake.changed() => {}
                    _ = self.closing.changed() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
                continue;
            }
            let filter = EventFilter {
                seq_from: Some(self.position),
                seq_to: Some(len),
                ..self.filter.clone()
            };
            let page = match self.state.store.list(&filter, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "the live feed cannot read the ledger; closing it");
                    return None;
                }
            };
            // A short page means every match below `len` was read.
            self.position = if page.len() < PAGE {
                len
            } else {
                page.last().map_or(len, |e| e.seq + 1)
            };
            if self.tag.is_some() {
                if let Err(e) = self.context.refresh(self.state.store.as_ref()).await {
                    tracing::warn!(error = %e, "the live feed cannot read the tags; closing it");
                    return None;
                }
            } else if !page.is_empty() {
                let _ = self.context.refresh(self.state.store.as_ref()).await;
            }
            for e in page {
                let keep = self.tag.as_ref().is_none_or(|t| {
                    self.context
                        .tags(e.event.system.as_str())
                        .iter()
                        .any(|s| s.as_str() == t.to_string())
                });
                if keep {
                    self.ready.push_back(event_message(e, &self.context));
                }
            }
        }
    }
}

/// Follow the ledger live, as Server-Sent Events.
///
/// Each SSE event has `id` = the event's seq, `event: event`, and as
/// `data` the event as JSON with the system's tags and the catalog's
/// severity. Reconnect with `Last-Event-ID` to resume right after the last
/// event seen. Comments (`:`) keep the connection alive every 15 seconds.
#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "stream",
    params(
        ("system" = Option<String>, Query, description = "Only this system's events"),
        ("tag" = Option<String>, Query, description = "Only events of systems with this tag (key=value)"),
        ("status" = Option<String>, Query, description = "Only events with this outcome: success, failure or rolled_back"),
        ("from_seq" = Option<u64>, Query, description = "Start at this seq instead of the end of the ledger (ignored when Last-Event-ID is sent)", format = "uint64", maximum = 18446744073709551615usize),
        ("Last-Event-ID" = Option<String>, Header, description = "The seq of the last event received; the feed resumes after it")
    ),
    responses(
        (status = 200, description = "The live feed", content_type = "text/event-stream", body = String),
        (status = 400, description = "A parameter is invalid; the problem names it", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn stream(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut p = Params::parse(q.as_deref())?;
    let system = p.take("system");
    let status = p.take_with("status", |v| v.parse::<Status>());
    let tag = p.take_with("tag", |v| {
        Tag::parse(v, "tag").map_err(|e| e.message.clone())
    });
    let from_seq = p.take_with("from_seq", unsigned);
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()));
    if let Some(None) = last {
        p.error(
            "Last-Event-ID",
            ErrorCode::Format,
            "must be the seq of an event (a non-negative integer)",
        );
    }
    p.finish(&["system", "status", "tag", "from_seq"])?;
    let position = match (last.flatten(), from_seq) {
        (Some(id), _) => id.saturating_add(1),
        (None, Some(seq)) => seq,
        (None, None) => st.store.len().await?,
    };
    let feed = Feed {
        filter: EventFilter {
            system,
            status,
            ..EventFilter::default()
        },
        tag,
        position,
        context: Context::default(),
        ready: VecDeque::new(),
        wake: st.hub.watch(super::Source::Events),
        closing: st.hub.closing(),
        state: st,
    };
    let events = futures::stream::unfold(feed, |mut feed| async move {
        let m = feed.next().await?;
        let event = Event::default()
            .id(m.position.to_string())
            .event("event")
            .data(String::from_utf8_lossy(&m.body));
        Some((Ok(event), feed))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The live feed's route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}
