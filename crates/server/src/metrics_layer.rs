//! Request metrics by route: counts by status, and latency.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// Records `patchaudit_http_requests_total` and
/// `patchaudit_http_request_duration_seconds`, labelled by the route
/// template (not the raw path, which would explode the label space).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    let status = resp.status().as_u16().to_string();
    metrics::counter!(
        "patchaudit_http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "patchaudit_http_request_duration_seconds",
        "method" => method,
        "route" => route
    )
    .record(elapsed);
    resp
}
