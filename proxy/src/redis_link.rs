//! The process's Redis connections and the health of each feature that uses Redis.
//!
//! One reconnecting [`ConnectionManager`] is shared by every Redis feature of the process (the Redis
//! Streams event bus, the `redis` cache backend, distributed rate limits); `REDIS_CACHE_URL` gives the
//! cache a second one. Managers are created lazily: nothing connects at start-up, so a Redis outage
//! never stops the proxy from starting or serving. Each feature bounds its own commands with its own
//! timeout and reports its outcomes to a [`FeatureHealth`], which `/ready` and the logs show.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use llm_proxy_events::{PUBLISHER_REDIS_TIMEOUT, RedisSettings};
pub use redis::aio::ConnectionManager;

use crate::config::ServerConfig;

/// Creates the shared connection manager when a configured feature needs it.
pub fn shared_connection(
    config: &ServerConfig,
) -> Result<Option<ConnectionManager>, redis::RedisError> {
    if !config.needs_shared_redis() {
        return Ok(None);
    }
    connect_lazy(&config.redis.settings).map(Some)
}

/// A lazily connecting manager for `settings`. The response timeout is the longest any feature
/// waits (the event publisher's); features with tighter budgets wrap their commands in their own.
pub fn connect_lazy(settings: &RedisSettings) -> Result<ConnectionManager, redis::RedisError> {
    tracing::info!(
        address = settings.display_address(),
        "redis configured (connects on first use)"
    );
    settings.connection_manager(PUBLISHER_REDIS_TIMEOUT)
}

/// Whether one Redis-backed feature currently reaches Redis, from the outcome of its last command.
#[derive(Debug)]
pub struct FeatureHealth {
    name: &'static str,
    degraded: AtomicBool,
}

impl FeatureHealth {
    /// A healthy feature named `name` (as shown under `/ready`'s `checks`).
    pub fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            degraded: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Records the outcome of a command; a change of state is logged once.
    pub fn record(&self, ok: bool) {
        let was_degraded = self.degraded.swap(!ok, Ordering::Relaxed);
        match (was_degraded, ok) {
            (false, false) => tracing::warn!(feature = self.name, "redis unreachable; degraded"),
            (true, true) => tracing::info!(feature = self.name, "redis reachable again"),
            _ => {}
        }
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_last_outcome() {
        let health = FeatureHealth::new("cache");
        assert!(!health.is_degraded());
        health.record(false);
        assert!(health.is_degraded());
        health.record(true);
        assert!(!health.is_degraded());
        assert_eq!(health.name(), "cache");
    }
}
