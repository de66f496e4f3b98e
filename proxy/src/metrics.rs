//! Process metrics of the data plane: a Prometheus registry and the JSON summary of `METRICS_PATH`.
//!
//! Label values come from closed sets (status class, method, allowed endpoint, error code, rejection
//! reason), so cardinality stays bounded whatever clients send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: Arc<str>,
    pub status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Every metric of the proxy.
pub struct Metrics {
    started: Instant,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// The counters of `requests` already created: the family hashes its labels with SipHash under
    /// its own lock on every increment; this front looks them up with foldhash.
    request_counters: RwLock<HashMap<RequestLabels, Counter, foldhash::fast::RandomState>>,
    errors: Family<CodeLabels, Counter>,
    token_rejections: Family<ReasonLabels, Counter>,
    request_duration: Histogram,
    upstream_duration: Histogram,
    usage_dropped: Counter,
    circuit_open: Gauge,
    circuit_opens: Family<RouteLabels, Counter>,
    in_flight: Gauge<i64, AtomicI64>,
    uptime: Gauge<f64, AtomicU64>,
    request_count: Counter,
    error_count: Counter,
    cache: CacheCounters,
    connections: ConnectionGauges,
}

/// Client connections (served by the `connections` module).
#[derive(Default)]
struct ConnectionGauges {
    open: Gauge,
    refused: Counter,
}

/// Counters of the HTTP response cache (the `cache` module).
#[derive(Default)]
struct CacheCounters {
    hits: Counter,
    misses: Counter,
    bypasses: Family<ReasonLabels, Counter>,
    bypass_total: Counter,
    stores: Counter,
    stores_skipped: Family<ReasonLabels, Counter>,
}

/// JSON summary served at `METRICS_PATH` (upstream's keys).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub uptime_seconds: f64,
    pub request_count: u64,
    pub error_count: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bypass: u64,
    pub cache_stores: u64,
}

impl Metrics {
    pub fn new() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("llm_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<CodeLabels, Counter>::default();
        let token_rejections = Family::<ReasonLabels, Counter>::default();
        let request_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let upstream_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let usage_dropped = Counter::default();
        let circuit_open = Gauge::default();
        let circuit_opens = Family::<RouteLabels, Counter>::default();
        let in_flight = Gauge::<i64, AtomicI64>::default();
        let uptime = Gauge::<f64, AtomicU64>::default();
        let request_count = Counter::default();
        let error_count = Counter::default();
        let cache = CacheCounters::default();
        let connections = ConnectionGauges::default();
        registry.register(
            "client_connections",
            "Client connections being served",
            connections.open.clone(),
        );
        registry.register(
            "client_connections_refused",
            "Client connections refused beyond LLM_PROXY_MAX_CONNECTIONS",
            connections.refused.clone(),
        );
        registry.register(
            "cache_hits",
            "HTTP cache lookups answered from the cache (conditional hits included)",
            cache.hits.clone(),
        );
        registry.register(
            "cache_misses",
            "HTTP cache lookups that found nothing",
            cache.misses.clone(),
        );
        registry.register(
            "cache_bypasses",
            "Cacheable requests that skipped the cache, by reason",
            cache.bypasses.clone(),
        );
        registry.register(
            "cache_stores",
            "Responses written to the HTTP cache",
            cache.stores.clone(),
        );
        registry.register(
            "cache_stores_skipped",
            "Responses of cacheable requests not stored, by reason",
            cache.stores_skipped.clone(),
        );
        registry.register(
            "http_requests",
            "Proxied /v1 requests by method, route and status class",
            requests.clone(),
        );
        registry.register(
            "proxy_errors",
            "Locally generated /v1 errors by code",
            errors.clone(),
        );
        registry.register(
            "token_rejections",
            "Client tokens rejected, by reason",
            token_rejections.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to the end of the response body",
            request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time from sending upstream to its response headers",
            upstream_duration.clone(),
        );
        registry.register(
            "usage_updates_dropped",
            "Usage updates of unlimited tokens dropped because the queue was full",
            usage_dropped.clone(),
        );
        registry.register(
            "circuit_breaker_open",
            "Circuit breakers open now (one per project, route and model; read at scrape time)",
            circuit_open.clone(),
        );
        registry.register(
            "circuit_breaker_opens",
            "Circuit breakers opened, by route",
            circuit_opens.clone(),
        );
        registry.register(
            "in_flight_requests",
            "/v1 requests whose response has not finished",
            in_flight.clone(),
        );
        registry.register(
            "uptime_seconds",
            "Seconds since the process started",
            uptime.clone(),
        );
        registry.register("requests", "All /v1 responses", request_count.clone());
        registry.register(
            "errors",
            "/v1 responses with status >= 400",
            error_count.clone(),
        );
        Self {
            started: Instant::now(),
            registry: root,
            requests,
            request_counters: RwLock::default(),
            errors,
            token_rejections,
            request_duration,
            upstream_duration,
            usage_dropped,
            circuit_open,
            circuit_opens,
            in_flight,
            uptime,
            request_count,
            error_count,
            cache,
            connections,
        }
    }

    /// A client connection is being served.
    pub fn connection_opened(&self) {
        self.connections.open.inc();
    }

    /// A served client connection ended.
    pub fn connection_closed(&self) {
        self.connections.open.dec();
    }

    /// A client connection was refused beyond the cap.
    pub fn record_connection_refused(&self) {
        self.connections.refused.inc();
    }

    /// Adds the event bus counters (`llm_proxy_event_bus_*`).
    pub fn register_event_bus(&mut self, bus: &llm_proxy_events::PublisherMetrics) {
        bus.register(&mut self.registry);
    }

    /// The `llm_proxy_` registry, for a module that registers metrics of its own (the revocation
    /// channel's, the rate limiter's), so this module need not know it.
    pub fn registry(&mut self) -> &mut prometheus_client::registry::Registry {
        self.registry.sub_registry_with_prefix("llm_proxy")
    }

    /// Records a finished `/v1` response.
    pub fn record_response(&self, method: &str, route: &Arc<str>, status: u16, duration: Duration) {
        let status_class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let labels = RequestLabels {
            method: method_label(method),
            route: route.clone(),
            status_class,
        };
        let counted = self
            .request_counters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&labels)
            .map(Counter::inc)
            .is_some();
        if !counted {
            let counter = self.requests.get_or_create_owned(&labels);
            counter.inc();
            self.request_counters
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(labels, counter);
        }
        self.request_count.inc();
        if status >= 400 {
            self.error_count.inc();
        }
        self.request_duration.observe(duration.as_secs_f64());
    }

    pub fn record_error(&self, code: &'static str) {
        self.errors.get_or_create(&CodeLabels { code }).inc();
    }

    pub fn record_token_rejection(&self, reason: &'static str) {
        self.token_rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn record_upstream_latency(&self, duration: Duration) {
        self.upstream_duration.observe(duration.as_secs_f64());
    }

    pub fn record_usage_dropped(&self) {
        self.usage_dropped.inc();
    }

    pub fn set_circuits_open(&self, open: usize) {
        self.circuit_open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    pub fn record_circuit_opened(&self, route: Arc<str>) {
        self.circuit_opens
            .get_or_create(&RouteLabels { route })
            .inc();
    }

    pub fn in_flight(&self) -> &Gauge<i64, AtomicI64> {
        &self.in_flight
    }

    pub fn record_cache_hit(&self) {
        self.cache.hits.inc();
    }

    pub fn record_cache_miss(&self) {
        self.cache.misses.inc();
    }

    pub fn record_cache_bypass(&self, reason: &'static str) {
        self.cache
            .bypasses
            .get_or_create(&ReasonLabels { reason })
            .inc();
        self.cache.bypass_total.inc();
    }

    pub fn record_cache_store(&self) {
        self.cache.stores.inc();
    }

    pub fn record_cache_store_skipped(&self, reason: &'static str) {
        self.cache
            .stores_skipped
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Usage updates dropped so far.
    pub fn usage_dropped(&self) -> u64 {
        self.usage_dropped.get()
    }

    pub fn summary(&self) -> Summary {
        Summary {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            request_count: self.request_count.get(),
            error_count: self.error_count.get(),
            cache_hits: self.cache.hits.get(),
            cache_misses: self.cache.misses.get(),
            cache_bypass: self.cache.bypass_total.get(),
            cache_stores: self.cache.stores.get(),
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Standard methods keep their name; any other (clients may send arbitrary tokens) is `other`.
fn method_label(method: &str) -> &'static str {
    const STANDARD: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    STANDARD
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_chosen_methods_do_not_create_label_values() {
        let metrics = Metrics::new();
        for method in ["GET", "FOO", "BAR", "X-ANYTHING"] {
            metrics.record_response(method, &Arc::from("other"), 405, Duration::from_millis(1));
        }
        let text = metrics.encode().unwrap();
        assert!(text.contains("method=\"GET\""));
        assert!(text.contains("llm_proxy_http_requests_total{method=\"other\",route=\"other\",status_class=\"4xx\"} 3"), "{text}");
        assert!(!text.contains("FOO"));
    }
}
