//! `/health`, `/live`, `/ready` and the metrics endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use llm_proxy_events::EventPublisher;
use llm_proxy_store::Store;
use serde_json::json;

use crate::proxy_state::ProxyState;
use crate::redis_link::FeatureHealth;
use crate::revocation::RevocationChannel;

/// Longest wait for the database ping of `/ready`.
const READY_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health`: the process answers.
pub async fn health() -> Response {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
    .into_response()
}

/// `GET /live`: always 200 while the process runs.
pub async fn live() -> Response {
    Json(json!({"status": "alive"})).into_response()
}

/// What `/ready` checks.
#[derive(Clone)]
pub struct Readiness {
    pub store: Arc<dyn Store>,
    /// The event bus, when observability is on.
    pub events: Option<EventPublisher>,
    /// Redis-backed features other than the bus (cache, rate limits); each degrades on its own.
    pub redis_features: Vec<Arc<FeatureHealth>>,
    /// The invalidation channel ([`crate::revocation`]); `None` on SQLite.
    pub revocation: Option<Arc<RevocationChannel>>,
}

/// `GET /ready`: 200 only when the database answers. Redis-backed dependencies (event bus, cache,
/// rate limits) are reported one by one as `ok` or `degraded` but never make the proxy unready:
/// each has its own fallback (buffered events, cache bypass, the rate-limit failure policy). So is
/// `revocation`, the invalidation channel on PostgreSQL (`not_applicable` on SQLite): while it is
/// `degraded`, other replicas' revocations apply within the cache TTL instead of at once.
pub async fn ready(State(readiness): State<Readiness>) -> Response {
    let database = match tokio::time::timeout(READY_PING_TIMEOUT, readiness.store.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness check: database unavailable");
            false
        }
        Err(_) => {
            tracing::warn!("readiness check: database ping timed out");
            false
        }
    };
    let event_bus = readiness.events.as_ref().map(|events| {
        if events.health().connected {
            "ok"
        } else {
            "degraded"
        }
    });
    let mut checks = serde_json::Map::new();
    checks.insert(
        "database".to_owned(),
        json!(if database { "ok" } else { "unavailable" }),
    );
    checks.insert(
        "event_bus".to_owned(),
        json!(event_bus.unwrap_or("disabled")),
    );
    let revocation = match &readiness.revocation {
        None => "not_applicable",
        Some(channel) if channel.is_up() => "ok",
        Some(_) => "degraded",
    };
    checks.insert("revocation".to_owned(), json!(revocation));
    for feature in &readiness.redis_features {
        let state = if feature.is_degraded() {
            "degraded"
        } else {
            "ok"
        };
        checks.insert(feature.name().to_owned(), json!(state));
    }
    if database {
        Json(json!({"status": "ready", "checks": checks})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "error": "Database unavailable",
                "code": "database_unavailable",
                "checks": checks,
            })),
        )
            .into_response()
    }
}

/// `GET METRICS_PATH`: the JSON summary.
pub async fn metrics_summary(State(state): State<Arc<ProxyState>>) -> Response {
    Json(state.metrics.summary()).into_response()
}

/// `GET METRICS_PATH/prometheus`: the Prometheus text exposition.
pub async fn metrics_prometheus(State(state): State<Arc<ProxyState>>) -> Response {
    // Breakers close by time alone; count the open ones at scrape time.
    state.metrics.set_circuits_open(state.breakers.open_count());
    match state.metrics.encode() {
        Ok(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
