//! Alert rules that find patch problems early, and `GET /v1/alerts`.
//!
//! The rules read the ledger like a sink, from a cursor of their own
//! (`alerts/events`), so each event is judged once even across restarts.
//! Each alert has a key, and the store records a key once, so judging an
//! event again raises nothing new:
//!
//! - `severe_failure`: a failed install of a patch the catalog rates
//!   critical or high. Key `severe_failure:<seq>`.
//! - `bad_patch`: the same patch failed on at least N systems within T
//!   (by `applied_at`). Key `bad_patch:<patch>`, once per patch.
//! - `overdue`: a (system, patch) pair went past its SLA deadline without
//!   the patch applied. Checked every `overdue_every`, from the compliance
//!   report. Key `overdue:<patch>:<system>:<deadline>`.
//!
//! New alerts go to every sink like events do (`patchaudit.alerts.<rule>`
//! on NATS).

use super::{Hub, Message, Sink, SinkError, Source};
use crate::error::ApiError;
use crate::params::{unsigned, Params};
use crate::AppState;
use async_trait::async_trait;
use axum::extract::{RawQuery, State};
use axum::Json;
use patchaudit_compliance::{Report, ReportFilter, Severity};
use patchaudit_domain::{ErrorCode, EventFilter, Status};
use patchaudit_store::stream::Alert;
use patchaudit_store::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The thresholds of the rules.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// `bad_patch` fires when a patch failed on this many systems...
    pub bad_patch_systems: usize,
    /// ...within this window.
    pub bad_patch_window: Duration,
    /// How often overdue pairs are looked for; zero turns the rule off.
    pub overdue_every: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            bad_patch_systems: 3,
            bad_patch_window: Duration::from_secs(3600),
            overdue_every: Duration::from_secs(60),
        }
    }
}

/// The event rules, as a sink of the ledger's events.
pub struct AlertRules {
    store: Arc<dyn Store>,
    hub: Hub,
    config: AlertConfig,
}

impl AlertRules {
    /// The rules over `store`, waking sinks through `hub` when they raise.
    pub fn new(store: Arc<dyn Store>, hub: Hub, config: AlertConfig) -> Self {
        AlertRules { store, hub, config }
    }

    async fn raise(&self, key: &str, rule: &str, body: serde_json::Value) -> Result<(), SinkError> {
        if let Some(a) = self.store.raise_alert(key, rule, &body.to_string()).await? {
            tracing::warn!(alert = a.id, rule, key, "alert raised");
            metrics::counter!("patchaudit_alerts_total", "rule" => rule.to_owned()).increment(1);
            self.hub.alerted(a.id);
        }
        Ok(())
    }

    /// Looks for pairs past their deadline now, and raises each once.
    pub async fn check_overdue(&self, state: &AppState) -> Result<usize, SinkError> {
        let overdue = state
            .facts
            .compute(self.store.as_ref(), |input| {
                Report::compute(input, &ReportFilter::default()).overdue
            })
            .await?;
        let mut n = 0;
        for row in overdue {
            let Some(deadline) = row.deadline else {
                continue;
            };
            let key = format!(
                "overdue:{}:{}:{}",
                row.patch_id,
                row.system,
                deadline.as_micros()
            );
            self.raise(
                &key,
                "overdue",
                serde_json::json!({
                    "system": row.system,
                    "patch_id": row.patch_id,
                    "severity": row.severity.as_str(),
                    "state": row.state.as_str(),
                    "deadline": deadline.to_rfc3339(),
                }),
            )
            .await?;
            n += 1;
        }
        Ok(n)
    }
}

#[async_trait]
impl Sink for AlertRules {
    fn name(&self) -> &str {
        "alerts"
    }

    fn sources(&self) -> &'static [Source] {
        &[Source::Events]
    }

    async fn deliver(&self, batch: &[Message]) -> Result<(), SinkError> {
        for m in batch {
            let Some(e) = &m.event else { continue };
            if e.event.status != Status::Failure {
                continue;
            }
            let patch = e.event.patch_id.as_str();
            let system = e.event.system.as_str();
            if let Some(sev @ (Severity::Critical | Severity::High)) = m.severity {
                self.raise(
                    &format!("severe_failure:{}", e.seq),
                    "severe_failure",
                    serde_json::json!({
                        "seq": e.seq,
                        "system": system,
                        "patch_id": patch,
                        "severity": sev.as_str(),
                        "applied_at": e.event.applied_at.to_rfc3339(),
                        "detail": e.event.detail,
                    }),
                )
                .await?;
            }
            let window =
                i64::try_from(self.config.bad_patch_window.as_micros()).unwrap_or(i64::MAX);
            let at = e.event.applied_at;
            let filter = EventFilter {
                patch_id: Some(patch.to_owned()),
                status: Some(Status::Failure),
                applied_from: Some(at.saturating_add_micros(-window)),
                applied_to: Some(at.saturating_add_micros(1)),
                ..EventFilter::default()
            };
            // Enough rows to find N distinct systems in all but a pathological
            // case of one system failing thousands of times in the window.
            let failures = self.store.list(&filter, 10_000).await?;
            let systems: BTreeSet<&str> =
                failures.iter().map(|f| f.event.system.as_str()).collect();
            if systems.len() >= self.config.bad_patch_systems.max(1) {
                self.raise(
                    &format!("bad_patch:{patch}"),
                    "bad_patch",
                    serde_json::json!({
                        "patch_id": patch,
                        "systems": systems,
                        "window_seconds": self.config.bad_patch_window.as_secs(),
                        "threshold": self.config.bad_patch_systems,
                        "last_failure_seq": e.seq,
                    }),
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// Runs the overdue rule every `every` until the task is aborted.
pub async fn run_overdue(rules: Arc<AlertRules>, state: AppState, every: Duration) {
    if every.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = rules.check_overdue(&state).await {
            tracing::warn!(error = %e, "the overdue alert check failed; trying again later");
        }
    }
}

// ---------------------------------------------------------------- API

/// One alert.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertOut {
    /// Increasing in the order alerts were raised.
    pub id: u64,
    /// `severe_failure`, `bad_patch` or `overdue`.
    pub rule: String,
    /// What makes it unique.
    pub key: String,
    /// When it was raised (RFC 3339, UTC).
    pub raised_at: String,
    /// What the rule found.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<&Alert> for AlertOut {
    fn from(a: &Alert) -> Self {
        AlertOut {
            id: a.id,
            rule: a.rule.clone(),
            key: a.key.clone(),
            raised_at: a.raised_at.to_rfc3339(),
            detail: serde_json::from_str(&a.body).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// A page of alerts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertPage {
    /// The alerts, oldest first.
    pub alerts: Vec<AlertOut>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

const RULES: [&str; 3] = ["severe_failure", "bad_patch", "overdue"];
const MAX_PAGE: u64 = 1000;

/// List raised alerts, oldest first.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "stream",
    params(
        ("after" = Option<u64>, Query, description = "Only alerts with a higher id (the `next_after` of the previous page)", format = "uint64", maximum = 18446744073709551615usize),
        ("rule" = Option<String>, Query, description = "Only this rule: severe_failure, bad_patch or overdue"),
        ("limit" = Option<u64>, Query, description = "At most this many (default 100, at most 1000)", minimum = 1, maximum = 1000)
    ),
    responses(
        (status = 200, description = "A page of alerts", body = AlertPage),
        (status = 400, description = "A parameter is invalid; the problem names it", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn list_alerts(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<AlertPage>, ApiError> {
    let mut p = Params::parse(q.as_deref())?;
    let mut after = p.take_with("after", unsigned).unwrap_or(0);
    let limit = p.take_with("limit", unsigned).unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) && !p.has_error("limit") {
        p.error(
            "limit",
            ErrorCode::Format,
            format!("must be 1 to {MAX_PAGE}, got {limit}"),
        );
    }
    let rule = p.take_with("rule", |v| {
        RULES
            .contains(&v)
            .then(|| v.to_owned())
            .ok_or_else(|| format!("{v:?} is not a rule; the rules are {}", RULES.join(", ")))
    });
    p.finish(&["after", "limit", "rule"])?;
    let limit = limit as usize;
    let mut out = Vec::new();
    // A rule filter may skip whole pages; read on until the page is full.
    loop {
        let page = st.store.alerts(after, limit).await?;
        let full = page.len() == limit;
        for a in &page {
            if out.len() == limit {
                break;
            }
            after = a.id;
            if rule.as_deref().is_none_or(|r| r == a.rule) {
                out.push(AlertOut::from(a));
            }
        }
        if !full || out.len() == limit {
            break;
        }
    }
    let next_after = (out.len() == limit).then_some(after);
    Ok(Json(AlertPage {
        alerts: out,
        next_after,
    }))
}

/// The alert routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_alerts))
}
