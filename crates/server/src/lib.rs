//! The patchaudit HTTP API.
//!
//! [`router`] builds the axum application around any [`Store`]; [`run`]
//! serves it on a listener the caller bound, until a shutdown future
//! resolves. Tests bind `127.0.0.1:0` and call `run` directly; the
//! `patchaudit serve` command is a thin wrapper around it.
//!
//! Every route, its parameters and its responses are declared once, with
//! utoipa, next to the handler; the OpenAPI document at `/v1/openapi.json`
//! is generated from those declarations and the router is built from the
//! same list, so the two cannot drift apart.

mod api;
pub mod auth;
pub mod changes;
pub mod compliance;
pub mod error;
pub mod inventory;
pub mod limits;
mod metrics_layer;
// Public only so that the fuzz targets (fuzz/) can reach the query parser.
#[doc(hidden)]
pub mod params;
pub mod proofs;
pub mod report_out;
pub mod serve;
pub mod stream;
pub mod wire;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use patchaudit_store::Store;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;

pub use api::{
    EventPage, Health, IngestResponse, IngestedEvent, PatchOut, PatchSystemOut, StatusCounts,
    SystemOut, SystemPage,
};
pub use params::{decode_cursor, encode_cursor};

/// Limits and policies of the API.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The most events one POST may carry.
    pub max_batch: usize,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How far in the future an `applied_at` may lie, in microseconds.
    pub max_future_skew_micros: i64,
    /// Whether `/metrics` answers without a token.
    pub metrics_public: bool,
    /// Requests per second each token may make; 0 turns rate limiting off.
    pub rate_limit_per_second: u32,
    /// How many requests a token may make at once above its rate.
    pub rate_limit_burst: u32,
    /// Requests in flight beyond which new ones get a 503; 0 means no cap.
    pub max_concurrent_requests: usize,
    /// How long a client may take to send a request body; zero means no
    /// deadline.
    pub body_timeout: std::time::Duration,
    /// How long a client may take to send a request's headers (and finish
    /// its TLS handshake).
    pub header_timeout: std::time::Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_batch: 10_000,
            max_body_bytes: 64 * 1024 * 1024,
            max_future_skew_micros: patchaudit_domain::ValidationContext::DEFAULT_SKEW_MICROS,
            metrics_public: false,
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            max_concurrent_requests: 512,
            body_timeout: std::time::Duration::from_secs(60),
            header_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The ledger.
    pub store: Arc<dyn Store>,
    /// The API's limits.
    pub config: Arc<ServerConfig>,
    /// The pair facts of the latest compliance report, so the next one
    /// reads only what changed.
    pub facts: Arc<patchaudit_store::compliance::FactsCache>,
    /// The per-token rate limiter.
    pub limiter: Arc<auth::Limiter>,
    /// Permits for requests in flight, when they are capped.
    pub in_flight: Option<Arc<tokio::sync::Semaphore>>,
    /// Wakes the stream's sinks and live feeds when the ledger grows.
    pub hub: stream::Hub,
    /// The configured webhooks, for replaying their dead letters.
    pub webhooks: Arc<Vec<Arc<stream::webhook::WebhookSink>>>,
    metrics: PrometheusHandle,
}

impl AppState {
    /// Builds the state for a store and configuration.
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> Self {
        AppState {
            store,
            limiter: Arc::new(auth::Limiter::new(
                config.rate_limit_per_second,
                config.rate_limit_burst,
            )),
            in_flight: (config.max_concurrent_requests > 0)
                .then(|| Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_requests))),
            config: Arc::new(config),
            facts: Arc::default(),
            hub: stream::Hub::default(),
            webhooks: Arc::default(),
            metrics: metrics_handle(),
        }
    }

    /// The same state with the webhooks of `config` (see [`stream::webhooks`]).
    pub fn with_webhooks(mut self, config: &stream::StreamConfig) -> Self {
        self.webhooks = Arc::new(stream::webhooks(&self.store, config));
        self
    }
}

/// The process-wide Prometheus recorder. The `metrics` facade has a single
/// global recorder, so several servers in one process (as in tests) share it.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "patchaudit_http_request_duration_seconds".into(),
                    ),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .expect("static bucket list is non-empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            describe_metrics();
            handle
        })
        .clone()
}

/// Describes every metric and shows the counters at zero from the start, so
/// a dashboard or alert can tell "no errors" from "not reporting".
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "patchaudit_http_requests_total",
        "HTTP requests by method, route template and status."
    );
    describe_histogram!(
        "patchaudit_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route template."
    );
    describe_counter!(
        "patchaudit_events_ingested_total",
        "Events newly recorded in the ledger."
    );
    describe_counter!(
        "patchaudit_events_duplicate_total",
        "Events re-sent with a known event_id and identical content (not recorded again)."
    );
    describe_counter!("patchaudit_store_errors_total", "Storage errors by kind.");
    describe_gauge!(
        "patchaudit_ledger_events",
        "Events in the ledger (its length)."
    );
    describe_gauge!(
        "patchaudit_stream_lag",
        "Positions recorded but not yet delivered, by stream cursor (sink/events, sink/alerts)."
    );
    describe_counter!(
        "patchaudit_stream_delivered_total",
        "Messages delivered, by stream cursor."
    );
    describe_counter!(
        "patchaudit_stream_errors_total",
        "Failed deliveries (each retried), by stream cursor."
    );
    describe_counter!(
        "patchaudit_webhook_dead_letters_total",
        "Webhook messages set aside after every retry failed."
    );
    describe_counter!("patchaudit_alerts_total", "Alerts raised, by rule.");
    describe_counter!(
        "patchaudit_consume_dead_letters_total",
        "Messages consumed from a broker that were invalid and dead-lettered."
    );
    metrics::counter!("patchaudit_events_ingested_total").absolute(0);
    metrics::counter!("patchaudit_events_duplicate_total").absolute(0);
    for kind in ["conflict", "unavailable", "corrupt", "open", "internal"] {
        metrics::counter!("patchaudit_store_errors_total", "kind" => kind).absolute(0);
    }
}

/// Builds the application: every route, the OpenAPI document, metrics and
/// problem+json fallbacks.
pub fn router(state: AppState) -> Router {
    api::router(state)
}

/// The OpenAPI document of the API, as served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api::api_router().split_for_parts().1;
    auth::document(&mut doc);
    doc
}

/// Serves the API on `listener`, in plain HTTP, until `shutdown` resolves,
/// then finishes the requests in flight and returns.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(listener, state, None, shutdown).await
}

/// Like [`run`], with TLS when `tls` is given (see [`serve::load_tls`]).
pub async fn run_with(
    listener: TcpListener,
    state: AppState,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let opts = serve::ServeOptions {
        tls,
        header_read_timeout: state.config.header_timeout,
    };
    // Live feeds never end by themselves; they are told to when shutdown
    // begins, so the graceful shutdown can finish.
    let hub = state.hub.clone();
    let shutdown = async move {
        shutdown.await;
        hub.close();
    };
    serve::serve(listener, router(state), opts, shutdown).await
}
