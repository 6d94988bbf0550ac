//! Limits that protect the server from slow or greedy clients: a cap on
//! requests in flight and a deadline for reading a request's body. (The
//! header read timeout lives in the accept loop, [`crate::serve`]; body
//! size and batch size are checked where bodies are read.)

use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use std::time::Duration;

/// The error a body stream yields once its deadline passes. `read_body`
/// recognises it and answers 408 instead of "malformed body".
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0:?}")]
pub struct BodyDeadline(pub Duration);

/// Refuses a request with 503 (and `Retry-After`) when the server already
/// has its configured number of requests in flight, rather than queueing
/// it behind them; then gives the body a deadline. A request stays in
/// flight until its response body has been sent, so a streamed download
/// counts for as long as it streams. Liveness and readiness probes are not
/// counted: a busy server is not a dead one.
pub async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let probe = matches!(req.uri().path(), "/healthz" | "/readyz");
    let permit = match &st.in_flight {
        _ if probe => None,
        Some(sem) => match sem.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                return axum::response::IntoResponse::into_response(ApiError::Busy(format!(
                    "the server is at its limit of {} concurrent requests; retry shortly",
                    st.config.max_concurrent_requests
                )))
            }
        },
        None => None,
    };
    let deadline = st.config.body_timeout;
    let req = if deadline.is_zero() {
        req
    } else {
        req.map(|body| with_deadline(body, deadline))
    };
    let resp = next.run(req).await;
    match permit {
        Some(permit) => resp.map(|body| {
            Body::new(Permitted {
                inner: body,
                _permit: permit,
            })
        }),
        None => resp,
    }
}

/// A response body that holds its request's place among those in flight
/// until it is dropped: when it has been sent, or the client went away.
struct Permitted {
    inner: Body,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl axum::body::HttpBody for Permitted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps a body so that reading it fails once `limit` has passed since the
/// request arrived: a total deadline, so a client trickling one byte at a
/// time cannot hold a request open forever.
fn with_deadline(body: Body, limit: Duration) -> Body {
    let deadline = tokio::time::Instant::now() + limit;
    let stream = body.into_data_stream();
    let timed = futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(axum::BoxError::from(e)), None)),
            Ok(None) => None,
            Err(_) => Some((Err(axum::BoxError::from(BodyDeadline(limit))), None)),
        }
    });
    Body::from_stream(timed)
}

/// Whether a body read error is the body deadline this module sets.
pub fn is_deadline(e: &axum::Error) -> Option<Duration> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(d) = err.downcast_ref::<BodyDeadline>() {
            return Some(d.0);
        }
        cur = err.source();
    }
    None
}
