//! In-process counters, used when `DISTRIBUTED_RATE_LIMIT_ENABLED=false`: correct for one replica
//! only (each process counts on its own). Same semantics as the Redis script: a window starts at
//! the first request of a key; a check is refused without counting when any of its counters is
//! exhausted, otherwise every counter is incremented.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Check, Verdict};

/// Most windows kept at once; past it expired windows are dropped, and if none has expired the
/// check fails like an unreachable backend (the limiter's fail-open/fail-closed policy applies).
pub const MAX_WINDOWS: usize = 100_000;

struct Window {
    count: u64,
    resets_at: Instant,
}

/// The map is full of live windows.
#[derive(Debug, thiserror::Error)]
#[error("in-memory rate-limit table is full ({MAX_WINDOWS} live windows)")]
pub struct TableFull;

pub struct MemoryCounters {
    windows: Mutex<HashMap<String, Window>>,
    capacity: usize,
}

impl MemoryCounters {
    pub fn new(capacity: usize) -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Checks and counts `checks` atomically at `now`.
    pub fn check(&self, checks: &[Check], now: Instant) -> Result<Verdict, TableFull> {
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (index, check) in checks.iter().enumerate() {
            if let Some(window) = windows.get(&check.key)
                && window.resets_at > now
                && window.count >= check.limit.requests
            {
                return Ok(Verdict::Denied {
                    index,
                    reset: window.resets_at - now,
                });
            }
        }
        let missing = checks
            .iter()
            .filter(|c| !windows.contains_key(&c.key))
            .count();
        if windows.len() + missing > self.capacity {
            windows.retain(|_, window| window.resets_at > now);
            if windows.len() + missing > self.capacity {
                return Err(TableFull);
            }
        }
        for check in checks {
            let window = windows.entry(check.key.clone()).or_insert(Window {
                count: 0,
                resets_at: now,
            });
            if window.resets_at <= now {
                window.count = 0;
                window.resets_at = now + Duration::from_secs(check.limit.window_seconds);
            }
            window.count += 1;
        }
        Ok(Verdict::Admitted)
    }
}

#[cfg(test)]
mod tests {
    use llm_proxy_store::RateLimit;

    use super::super::Scope;
    use super::*;

    fn check(key: &str, requests: u64, window_seconds: u64) -> Check {
        Check {
            scope: Scope::Token,
            key: key.to_owned(),
            limit: RateLimit {
                requests,
                window_seconds,
            },
        }
    }

    #[test]
    fn windows_start_at_the_first_request_and_refusals_do_not_count() {
        let counters = MemoryCounters::new(10);
        let start = Instant::now();
        let checks = [check("t", 2, 10), check("p", 3, 10)];
        assert_eq!(counters.check(&checks, start).unwrap(), Verdict::Admitted);
        let later = start + Duration::from_secs(4);
        assert_eq!(counters.check(&checks, later).unwrap(), Verdict::Admitted);
        assert_eq!(
            counters.check(&checks, later).unwrap(),
            Verdict::Denied {
                index: 0,
                reset: Duration::from_secs(6)
            }
        );
        // The refused request did not count against the project: one more token may use it.
        let other = [check("t2", 2, 10), check("p", 3, 10)];
        assert_eq!(counters.check(&other, later).unwrap(), Verdict::Admitted);
        assert!(matches!(
            counters.check(&other, later).unwrap(),
            Verdict::Denied { index: 1, .. }
        ));
        // After the window of the first request, counting starts again.
        let next = start + Duration::from_secs(10);
        assert_eq!(counters.check(&checks, next).unwrap(), Verdict::Admitted);
    }

    #[test]
    fn a_full_table_drops_expired_windows_then_refuses() {
        let counters = MemoryCounters::new(2);
        let start = Instant::now();
        counters.check(&[check("a", 5, 1)], start).unwrap();
        counters.check(&[check("b", 5, 60)], start).unwrap();
        assert!(counters.check(&[check("c", 5, 60)], start).is_err());
        let later = start + Duration::from_secs(2);
        assert_eq!(
            counters.check(&[check("c", 5, 60)], later).unwrap(),
            Verdict::Admitted
        );
    }
}
