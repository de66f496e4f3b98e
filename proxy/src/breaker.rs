//! Circuit breakers in front of the upstream, one per (project, route, model).
//!
//! After `threshold` consecutive upstream failures (502, 503 or 504, whether sent by the upstream or
//! raised locally for a transport error or timeout) a breaker opens for `cool_down`: requests with
//! its key then get 503 without reaching the upstream. Any other status closes it and resets the
//! count.
//!
//! The key is the project of the client token, the allowed endpoint the path falls under (the
//! metrics' `route`) and the `model` of a JSON request body when it names one. One project's
//! failures (its own timeouts, a provider key the upstream rejects with 503, a model that hangs)
//! thus open only that project's breaker for that route and model, and other projects and models
//! keep reaching the upstream. The price: an upstream that is down for everyone is discovered by
//! each key on its own, `threshold` failed requests per key, instead of once for the process.
//!
//! Keys are bounded ([`Breakers::new`]'s `max_keys`, `LLM_PROXY_CIRCUIT_BREAKER_MAX_KEYS`): the
//! model is client input. Only keys that have seen a failure are stored, so healthy traffic costs
//! one lookup in an (almost always empty) map and inserts nothing; an entry leaves after being idle
//! for `max(cool_down, 60 s)`, or, when the map is full, by moka's size-based eviction (an evicted
//! open breaker closes early; a client inventing models can only evict its own entries sooner).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::StatusCode;
use moka::sync::Cache;

/// Upstream spec: 5 consecutive failures.
pub const DEFAULT_THRESHOLD: u32 = 5;
/// Upstream spec: open for 30 s.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(30);
/// Default bound on the stored keys.
pub const DEFAULT_MAX_KEYS: u64 = 10_000;
/// Longest model name kept in a key; longer names are cut (on a character boundary).
pub const MAX_MODEL_BYTES: usize = 128;
/// Shortest idle time before a key's entry is dropped.
const MIN_IDLE: Duration = Duration::from_secs(60);

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub threshold: u32,
    pub cool_down: Duration,
}

impl BreakerPolicy {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
        }
    }
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self::new(DEFAULT_THRESHOLD, DEFAULT_COOL_DOWN)
    }
}

/// What a breaker is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BreakerKey {
    pub project_id: Arc<str>,
    /// The allowed endpoint (the metrics' `route` label).
    pub route: Arc<str>,
    /// The request's `model`, cut to [`MAX_MODEL_BYTES`].
    pub model: Option<Box<str>>,
}

impl BreakerKey {
    pub fn new(project_id: &str, route: Arc<str>, model: Option<&str>) -> Self {
        Self {
            project_id: Arc::from(project_id),
            route,
            model: model.map(|m| Box::from(truncate(m, MAX_MODEL_BYTES))),
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Consecutive-failure circuit breaker of one key.
#[derive(Debug)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    consecutive_failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl CircuitBreaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            consecutive_failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
        }
    }

    /// Whether requests are currently refused.
    pub fn is_open(&self) -> bool {
        let open_until = self
            .open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open_until.is_some_and(|until| Instant::now() < until)
    }

    /// Records the status the client received for a proxied request; `true` when this opened the
    /// breaker.
    pub fn record(&self, status: StatusCode) -> bool {
        if !is_failure(status) {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            return false;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < self.policy.threshold {
            return false;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let mut open_until = self
            .open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *open_until = Some(Instant::now() + self.policy.cool_down);
        true
    }
}

fn is_failure(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// The bounded set of breakers, by key.
pub struct Breakers {
    policy: BreakerPolicy,
    map: Cache<BreakerKey, Arc<CircuitBreaker>>,
}

impl Breakers {
    pub fn new(policy: BreakerPolicy, max_keys: u64) -> Self {
        let map = Cache::builder()
            .max_capacity(max_keys)
            .time_to_idle(policy.cool_down.max(MIN_IDLE))
            .build();
        Self { policy, map }
    }

    /// Whether the breaker of `key` is open (a key never stored is closed).
    pub fn is_open(&self, key: &BreakerKey) -> bool {
        self.map.get(key).is_some_and(|breaker| breaker.is_open())
    }

    /// Records the status the client received for a request with `key`; `true` when this opened
    /// the key's breaker. A success on a key never stored stores nothing.
    pub fn record(&self, key: &BreakerKey, status: StatusCode) -> bool {
        if is_failure(status) {
            let policy = self.policy;
            self.map
                .get_with_by_ref(key, || Arc::new(CircuitBreaker::new(policy)))
                .record(status)
        } else {
            self.map
                .get(key)
                .is_some_and(|breaker| breaker.record(status))
        }
    }

    /// The number of open breakers (a scan of the bounded map, for the metrics scrape).
    pub fn open_count(&self) -> usize {
        self.map
            .iter()
            .filter(|(_, breaker)| breaker.is_open())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(project: &str, model: Option<&str>) -> BreakerKey {
        BreakerKey::new(project, Arc::from("/v1/chat/completions"), model)
    }

    #[test]
    fn opens_after_threshold_consecutive_failures_and_resets_on_success() {
        let breaker = CircuitBreaker::new(BreakerPolicy::new(3, Duration::from_secs(60)));
        breaker.record(StatusCode::BAD_GATEWAY);
        breaker.record(StatusCode::GATEWAY_TIMEOUT);
        breaker.record(StatusCode::OK);
        breaker.record(StatusCode::SERVICE_UNAVAILABLE);
        breaker.record(StatusCode::BAD_GATEWAY);
        assert!(!breaker.is_open(), "a success in between resets the count");
        assert!(breaker.record(StatusCode::BAD_GATEWAY));
        assert!(breaker.is_open());
    }

    #[test]
    fn closes_after_the_cool_down() {
        let breaker = CircuitBreaker::new(BreakerPolicy::new(1, Duration::ZERO));
        breaker.record(StatusCode::BAD_GATEWAY);
        assert!(!breaker.is_open());
        breaker.record(StatusCode::NOT_FOUND);
        assert!(
            !breaker.is_open(),
            "client errors are not upstream failures"
        );
    }

    #[test]
    fn keys_open_independently_and_successes_store_nothing() {
        let breakers = Breakers::new(BreakerPolicy::new(2, Duration::from_secs(60)), 100);
        let a = key("a", Some("gpt-4o"));
        let a_other_model = key("a", Some("gpt-4o-mini"));
        let b = key("b", Some("gpt-4o"));
        breakers.record(&b, StatusCode::OK);
        breakers.map.run_pending_tasks();
        assert_eq!(breakers.map.entry_count(), 0);
        assert!(!breakers.record(&a, StatusCode::GATEWAY_TIMEOUT));
        assert!(breakers.record(&a, StatusCode::GATEWAY_TIMEOUT));
        assert!(breakers.is_open(&a));
        assert!(!breakers.is_open(&a_other_model));
        assert!(!breakers.is_open(&b));
        assert_eq!(breakers.open_count(), 1);
    }

    #[test]
    fn long_models_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_MODEL_BYTES);
        let key = key("a", Some(&long));
        let model = key.model.unwrap_or_default();
        assert!(model.len() <= MAX_MODEL_BYTES && model.len() >= MAX_MODEL_BYTES - 1);
    }
}
