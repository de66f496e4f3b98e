//! The process-wide circuit breaker in front of the upstream.
//!
//! After `threshold` consecutive upstream failures (502, 503 or 504, whether sent by the upstream or
//! raised locally for a transport error or timeout) it opens for `cool_down`: requests then get 503
//! without reaching the upstream. Any other status closes it and resets the count.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;

/// Upstream spec: 5 consecutive failures.
pub const DEFAULT_THRESHOLD: u32 = 5;
/// Upstream spec: open for 30 s.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(30);

/// Consecutive-failure circuit breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    consecutive_failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            consecutive_failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
        }
    }

    /// Whether requests are currently refused.
    pub fn is_open(&self) -> bool {
        let open_until = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        open_until.is_some_and(|until| Instant::now() < until)
    }

    /// Records the status the client received for a proxied request.
    pub fn record(&self, status: StatusCode) {
        let failure = matches!(
            status,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        );
        if !failure {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.threshold {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            let mut open_until = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
            *open_until = Some(Instant::now() + self.cool_down);
        }
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::new(DEFAULT_THRESHOLD, DEFAULT_COOL_DOWN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_consecutive_failures_and_resets_on_success() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(60));
        breaker.record(StatusCode::BAD_GATEWAY);
        breaker.record(StatusCode::GATEWAY_TIMEOUT);
        breaker.record(StatusCode::OK);
        breaker.record(StatusCode::SERVICE_UNAVAILABLE);
        breaker.record(StatusCode::BAD_GATEWAY);
        assert!(!breaker.is_open(), "a success in between resets the count");
        breaker.record(StatusCode::BAD_GATEWAY);
        assert!(breaker.is_open());
    }

    #[test]
    fn closes_after_the_cool_down() {
        let breaker = CircuitBreaker::new(1, Duration::ZERO);
        breaker.record(StatusCode::BAD_GATEWAY);
        assert!(!breaker.is_open());
        breaker.record(StatusCode::NOT_FOUND);
        assert!(
            !breaker.is_open(),
            "client errors are not upstream failures"
        );
    }
}
