//! The dispatcher's HTTP server: `/health` (process up), `/ready` (Redis reachable and group
//! present) and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::metrics::DispatcherMetrics;

/// Path of the Prometheus text (the proxy's own Prometheus path lives elsewhere).
pub const METRICS_PATH: &str = "/metrics";
const PROMETHEUS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct HealthState {
    metrics: Arc<DispatcherMetrics>,
    registry: Arc<Registry>,
}

/// The router of the health server.
pub fn router(metrics: Arc<DispatcherMetrics>) -> Router {
    let registry = Arc::new(metrics.registry());
    Router::new()
        .route(llm_proxy_env::HEALTH_PATH, get(health))
        .route(llm_proxy_env::READY_PATH, get(ready))
        .route(METRICS_PATH, get(prometheus))
        .with_state(HealthState { metrics, registry })
}

async fn health() -> impl IntoResponse {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#)
}

async fn ready(State(state): State<HealthState>) -> impl IntoResponse {
    if state.metrics.is_ready() {
        json_response(StatusCode::OK, r#"{"status":"ready"}"#)
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"not ready","reason":"redis unreachable or consumer group missing"}"#,
        )
    }
}

async fn prometheus(State(state): State<HealthState>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(_) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"metrics encoding failed"}"#,
        )
        .into_response(),
    }
}

fn json_response(status: StatusCode, body: &'static str) -> axum::response::Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
