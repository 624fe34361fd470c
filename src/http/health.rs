//! `/healthz` (the process answers), `/readyz` (its dependencies answer) and `/metrics`.

use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use sqlx::PgPool;

/// How long each readiness probe may take; a probe must answer fast even when a dependency hangs.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the probes look at.
#[derive(Clone)]
pub struct HealthState {
    pub db: PgPool,
    pub nats: async_nats::Client,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    HealthState: FromRef<S>,
{
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `/metrics`, served on the internal listener when there is one.
pub fn metrics_router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    HealthState: FromRef<S>,
{
    Router::new().route("/metrics", get(metrics))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// 200 when PostgreSQL answers a query and NATS is connected and answers a flush; 503 otherwise,
/// naming which dependency failed (not why: causes are logged, not shown).
#[tracing::instrument(skip_all)]
async fn readyz(State(state): State<HealthState>) -> impl IntoResponse {
    let postgres = tokio::time::timeout(
        PROBE_TIMEOUT,
        sqlx::query_scalar::<_, i32>("select 1").fetch_one(&state.db),
    )
    .await;
    let postgres_ok = match postgres {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: PostgreSQL query failed");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: PostgreSQL timed out");
            false
        }
    };
    let nats_ok = state.nats.connection_state() == async_nats::connection::State::Connected
        && matches!(
            tokio::time::timeout(PROBE_TIMEOUT, state.nats.flush()).await,
            Ok(Ok(()))
        );
    if !nats_ok {
        tracing::warn!("readiness: NATS is not connected");
    }
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let status = if postgres_ok && nats_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
        "checks": { "postgres": word(postgres_ok), "nats": word(nats_ok) },
    });
    (status, Json(body))
}

async fn metrics(State(state): State<HealthState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render(&state.metrics),
    )
}
