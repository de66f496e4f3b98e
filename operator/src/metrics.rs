//! Operator metrics (prometheus-client) and the router of `/metrics`, `/healthz` and `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Label set of the per-kind series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The reconciled resource's kind (`LlmProxy`, …).
    pub kind: &'static str,
}

/// Label set of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The reconciled resource's kind.
    pub kind: &'static str,
    /// `Error::category`.
    pub category: &'static str,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    /// Reconciles started, by kind.
    pub reconciles: Family<KindLabel, Counter>,
    /// Reconcile failures by kind and error category.
    pub failures: Family<FailureLabels, Counter>,
    /// Reconcile duration in seconds, by kind.
    pub duration: Family<KindLabel, Histogram>,
    /// 1 while this replica leads (or runs without leader election).
    pub leader: Gauge,
    ready: AtomicBool,
    /// Reconciles finished (any kind), for in-process observers: a reconcile that finds nothing
    /// changed makes no request, so this is how a test or benchmark knows one happened.
    finished: watch::Sender<u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("llm_proxy_operator");
        let reconciles = Family::<KindLabel, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.01, 2.0, 12))) as fn() -> Histogram,
        );
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciles started, by kind",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconcile failures by kind and error category",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration, by kind",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica runs the controller",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            leader,
            ready: AtomicBool::new(false),
            finished: watch::Sender::new(0),
        }
    }
}

impl Metrics {
    /// Starts timing one reconcile of `kind`; the duration is observed when the guard drops.
    pub fn start_reconcile(&self, kind: &'static str) -> ReconcileTimer<'_> {
        self.reconciles.get_or_create(&KindLabel { kind }).inc();
        ReconcileTimer {
            metrics: self,
            kind,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile of `kind` with `category`.
    pub fn failed(&self, kind: &'static str, category: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { kind, category })
            .inc();
    }

    /// The number of reconciles finished so far, updated as each one ends.
    pub fn finished_reconciles(&self) -> watch::Receiver<u64> {
        self.finished.subscribe()
    }

    /// Marks the process ready (`/readyz` returns 200).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `/readyz` reports ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Observes a reconcile's duration on drop.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&KindLabel { kind: self.kind })
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics.finished.send_modify(|count| *count += 1);
    }
}

async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> StatusCode {
    if metrics.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The router of the metrics server.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}
