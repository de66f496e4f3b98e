//! The dispatcher's Prometheus metrics (`llm_proxy_dispatcher_*`) and its readiness flag.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Request ids remembered to detect duplicate deliveries.
const RECENT_DELIVERIES: usize = 10_000;

/// Counters shared by the delivery loop and the health server.
#[derive(Debug, Default)]
pub struct DispatcherMetrics {
    /// Stream entries read.
    pub received: Counter,
    /// Entries read again (own pending list or claimed from another consumer).
    pub redelivered: Counter,
    /// Events accepted by the backend.
    pub delivered: Counter,
    /// Events delivered again although this process had already delivered them.
    pub duplicates: Counter,
    /// Failed sends that will be retried.
    pub retries: Counter,
    /// Events refused for good by the backend (acknowledged and dropped).
    pub permanent_failures: Counter,
    /// Entries that are not events (acknowledged and dropped).
    pub malformed: Counter,
    /// Events not shipped by design (non-POST; without output for Helicone).
    pub skipped: Counter,
    /// Failed Redis operations.
    pub redis_errors: Counter,
    /// Entries of the group not yet acknowledged (XPENDING), sampled.
    pub pending: Gauge,
    /// 1 when Redis answered the last operation and the group exists.
    pub ready: Gauge,
    ready_flag: AtomicBool,
}

impl DispatcherMetrics {
    /// A registry holding every metric.
    pub fn registry(self: &std::sync::Arc<Self>) -> Registry {
        let mut registry = Registry::with_prefix("llm_proxy_dispatcher");
        registry.register("received", "Stream entries read", self.received.clone());
        registry.register(
            "redelivered",
            "Stream entries read again after an earlier delivery",
            self.redelivered.clone(),
        );
        registry.register(
            "delivered",
            "Events accepted by the backend",
            self.delivered.clone(),
        );
        registry.register(
            "duplicates",
            "Events this process delivered more than once",
            self.duplicates.clone(),
        );
        registry.register(
            "retries",
            "Failed backend sends that were retried",
            self.retries.clone(),
        );
        registry.register(
            "permanent_failures",
            "Events refused for good by the backend",
            self.permanent_failures.clone(),
        );
        registry.register(
            "malformed",
            "Stream entries that are not events",
            self.malformed.clone(),
        );
        registry.register(
            "skipped",
            "Events not shipped by design",
            self.skipped.clone(),
        );
        registry.register(
            "redis_errors",
            "Failed Redis operations",
            self.redis_errors.clone(),
        );
        registry.register(
            "pending",
            "Unacknowledged entries of the consumer group",
            self.pending.clone(),
        );
        registry.register(
            "ready",
            "1 when Redis is reachable and the group exists",
            self.ready.clone(),
        );
        registry
    }

    /// Records whether Redis answered and the group exists.
    pub fn set_ready(&self, ready: bool) {
        self.ready_flag.store(ready, Ordering::Relaxed);
        self.ready.set(i64::from(ready));
    }

    /// What `/ready` reports.
    pub fn is_ready(&self) -> bool {
        self.ready_flag.load(Ordering::Relaxed)
    }
}

/// A bounded set of recently delivered request ids (oldest forgotten first).
#[derive(Debug, Default)]
pub struct RecentDeliveries {
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl RecentDeliveries {
    /// Remembers `request_id`; returns true when it was already delivered recently.
    pub fn record(&mut self, request_id: &str) -> bool {
        if request_id.is_empty() {
            return false;
        }
        if self.seen.contains(request_id) {
            return true;
        }
        if self.order.len() >= RECENT_DELIVERIES
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.order.push_back(request_id.to_string());
        self.seen.insert(request_id.to_string());
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_deliveries_detect_repeats_and_stay_bounded() {
        let mut recent = RecentDeliveries::default();
        assert!(!recent.record("a"));
        assert!(recent.record("a"));
        assert!(!recent.record(""));
        for i in 0..RECENT_DELIVERIES {
            recent.record(&format!("id-{i}"));
        }
        assert_eq!(recent.order.len(), RECENT_DELIVERIES);
        assert_eq!(recent.seen.len(), RECENT_DELIVERIES);
        assert!(!recent.record("a"), "the oldest id was forgotten");
    }
}
