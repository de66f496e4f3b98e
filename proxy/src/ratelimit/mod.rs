//! Request rate limits of the `/v1` path: per token and per project, in fixed windows that start at
//! a key's first request.
//!
//! Limits come from the project (`rate_limits`, set through `/manage/projects`, carried by the
//! project cache of the `projects` module); with `DISTRIBUTED_RATE_LIMIT_ENABLED=true` a token of a
//! project without its own per-token limit gets `DISTRIBUTED_RATE_LIMIT_MAX` per
//! `DISTRIBUTED_RATE_LIMIT_WINDOW`. Counters live in Redis when `DISTRIBUTED_RATE_LIMIT_ENABLED=true`
//! ([`redis`], shared by every replica) and in process memory otherwise ([`memory`], one replica).
//! A refused request counts against nothing (it is checked before the token's quota is counted)
//! and ends in [`RateLimitRefusal::Denied`] (a 429, OpenAI-shaped, once the `error` module maps it).
//! When the Redis check fails the request is served (`DISTRIBUTED_RATE_LIMIT_FALLBACK=true`) or
//! refused with [`RateLimitRefusal::Unavailable`] (503); either way it is counted and `/ready` shows the
//! `rate_limits` feature degraded.
//!
//! Submodules: [`keys`] (counter keys, HMAC of token ids), [`memory`], [`redis`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use llm_proxy_store::{ProjectRateLimits, RateLimit};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use uuid::Uuid;

use crate::config::RateLimitConfig;
use crate::metrics::Metrics;
use crate::redis_link::{ConnectionManager, FeatureHealth};

pub mod keys;
pub mod memory;
pub mod redis;

use keys::KeyDeriver;
use memory::MemoryCounters;
use redis::RedisCounters;

/// What a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Each token of the project.
    Token,
    /// The project as a whole.
    Project,
}

impl Scope {
    pub fn label(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Project => "project",
        }
    }
}

/// One counter a request is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub scope: Scope,
    pub key: String,
    pub limit: RateLimit,
}

/// Outcome of checking all counters of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every counter was under its limit and has been incremented.
    Admitted,
    /// `checks[index]` is exhausted until `reset`; nothing was incremented.
    Denied { index: usize, reset: Duration },
}

/// Where counters live.
enum Counters {
    Memory(MemoryCounters),
    Redis(RedisCounters),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    scope: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: &'static str,
}

/// Counters of rate-limit decisions, registered into the proxy's registry.
#[derive(Default)]
pub struct RateLimitMetrics {
    decisions: Family<DecisionLabels, Counter>,
    backend_errors: Family<PolicyLabels, Counter>,
}

impl RateLimitMetrics {
    /// Adds `llm_proxy_rate_limit_decisions_total` and `llm_proxy_rate_limit_backend_errors_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rate_limit_decisions",
            "Rate-limit checks by scope and outcome (allowed, denied)",
            self.decisions.clone(),
        );
        registry.register(
            "rate_limit_backend_errors",
            "Rate-limit checks without a verdict (counters unreachable), by the policy applied \
             (fail_open: served, fail_closed: refused)",
            self.backend_errors.clone(),
        );
    }

    fn decision(&self, scope: Scope, outcome: &'static str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                scope: scope.label(),
                outcome,
            })
            .inc();
    }

    fn backend_error(&self, fail_open: bool) {
        let policy = if fail_open {
            "fail_open"
        } else {
            "fail_closed"
        };
        self.backend_errors
            .get_or_create(&PolicyLabels { policy })
            .inc();
    }
}

impl Metrics {
    /// Adds the rate-limit counters (`llm_proxy_rate_limit_*`). Defined with the counters, so the
    /// `metrics` module knows no feature.
    pub fn register_rate_limits(&mut self, rate_limits: &RateLimitMetrics) {
        rate_limits.register(self.registry());
    }
}

/// Checks requests against their project's limits.
pub struct RateLimiter {
    counters: Counters,
    keys: KeyDeriver,
    /// Per-token limit of projects without their own (`DISTRIBUTED_RATE_LIMIT_ENABLED=true` only).
    default_per_token: Option<RateLimit>,
    fail_open: bool,
    metrics: Arc<RateLimitMetrics>,
    /// Health of the Redis counters (`None` in memory).
    health: Option<Arc<FeatureHealth>>,
}

impl RateLimiter {
    /// A limiter on Redis when `config.enabled` and a connection is given, in memory otherwise.
    pub fn new(config: &RateLimitConfig, redis: Option<ConnectionManager>) -> Self {
        let keys = KeyDeriver::new(&config.prefix, config.key_secret.as_ref());
        let metrics = Arc::new(RateLimitMetrics::default());
        let default_per_token = config
            .enabled
            .then(|| RateLimit {
                requests: config.max,
                window_seconds: u64::try_from(config.window.as_millis().div_ceil(1000))
                    .unwrap_or(u64::MAX)
                    .max(1),
            })
            .filter(|limit| limit.requests > 0);
        let (counters, health) = match (config.enabled, redis) {
            (true, Some(connection)) => (
                Counters::Redis(RedisCounters::new(connection)),
                Some(FeatureHealth::new("rate_limits")),
            ),
            (enabled, _) => {
                if enabled {
                    tracing::warn!(
                        "distributed rate limits enabled without a Redis connection; counting in memory"
                    );
                }
                (
                    Counters::Memory(MemoryCounters::new(memory::MAX_WINDOWS)),
                    None,
                )
            }
        };
        Self {
            counters,
            keys,
            default_per_token,
            fail_open: config.fail_open,
            metrics,
            health,
        }
    }

    pub fn metrics(&self) -> &RateLimitMetrics {
        &self.metrics
    }

    /// The `/ready` entry of the Redis counters (`None` in memory).
    pub fn health(&self) -> Option<Arc<FeatureHealth>> {
        self.health.clone()
    }

    /// The counters a request of `token_id` in `project_id` is checked against.
    fn checks(&self, token_id: Uuid, project_id: &str, limits: &ProjectRateLimits) -> Vec<Check> {
        let mut checks = Vec::with_capacity(2);
        if let Some(limit) = limits.per_token.or(self.default_per_token) {
            checks.push(Check {
                scope: Scope::Token,
                key: self.keys.token(&token_id.to_string()),
                limit,
            });
        }
        if let Some(limit) = limits.per_project {
            checks.push(Check {
                scope: Scope::Project,
                key: self.keys.project(project_id),
                limit,
            });
        }
        checks
    }

    /// Counts the request, or refuses it when a limit is reached (nothing counted then).
    pub async fn check(
        &self,
        token_id: Uuid,
        project_id: &str,
        limits: &ProjectRateLimits,
    ) -> Result<(), RateLimitRefusal> {
        let checks = self.checks(token_id, project_id, limits);
        if checks.is_empty() {
            return Ok(());
        }
        let verdict = match &self.counters {
            Counters::Memory(counters) => counters
                .check(&checks, Instant::now())
                .map_err(|err| err.to_string()),
            Counters::Redis(counters) => {
                let verdict = counters.check(&checks).await;
                if let Some(health) = &self.health {
                    health.record(verdict.is_ok());
                }
                verdict.map_err(|err| err.to_string())
            }
        };
        match verdict {
            Ok(Verdict::Admitted) => {
                for check in &checks {
                    self.metrics.decision(check.scope, "allowed");
                }
                Ok(())
            }
            Ok(Verdict::Denied { index, reset }) => {
                let Some(check) = checks.get(index) else {
                    return Ok(());
                };
                self.metrics.decision(check.scope, "denied");
                Err(RateLimitRefusal::Denied(RateLimitDenial {
                    scope: check.scope,
                    limit: check.limit,
                    reset,
                }))
            }
            Err(error) => {
                self.metrics.backend_error(self.fail_open);
                tracing::debug!(%error, fail_open = self.fail_open, "rate-limit check failed");
                if self.fail_open {
                    Ok(())
                } else {
                    Err(RateLimitRefusal::Unavailable)
                }
            }
        }
    }
}

/// Why [`RateLimiter::check`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitRefusal {
    /// A limit is reached.
    Denied(RateLimitDenial),
    /// The Redis counters could not be reached and the failure policy is fail-closed.
    Unavailable,
}

/// Why a request was refused: the exhausted limit and the time until its window resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitDenial {
    pub scope: Scope,
    pub limit: RateLimit,
    pub reset: Duration,
}

impl RateLimitDenial {
    /// Whole seconds until the reset, rounded up, at least 1 (`Retry-After`).
    pub fn retry_after_seconds(&self) -> u64 {
        let millis = self.reset.as_millis();
        u64::try_from(millis.div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The error message of the 429 body.
    pub fn message(&self) -> String {
        let who = match self.scope {
            Scope::Token => "this token",
            Scope::Project => "this project",
        };
        format!(
            "Rate limit reached for requests of {who}: limit {} per {}. Please try again in {}.",
            self.limit.requests,
            duration_text(self.limit.window_seconds),
            duration_text(self.retry_after_seconds()),
        )
    }
}

/// A duration in OpenAI's `x-ratelimit-reset-*` format: `1s`, `6m0s`, `1h0m5s`.
pub fn duration_text(seconds: u64) -> String {
    let (hours, minutes, secs) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{secs}s"),
        (0, _) => format!("{minutes}m{secs}s"),
        _ => format!("{hours}h{minutes}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_openai_format() {
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(1), "1s");
        assert_eq!(duration_text(59), "59s");
        assert_eq!(duration_text(60), "1m0s");
        assert_eq!(duration_text(360), "6m0s");
        assert_eq!(duration_text(3605), "1h0m5s");
        assert_eq!(duration_text(86_400), "24h0m0s");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let denial = |reset| RateLimitDenial {
            scope: Scope::Token,
            limit: RateLimit {
                requests: 5,
                window_seconds: 60,
            },
            reset,
        };
        assert_eq!(denial(Duration::from_millis(1)).retry_after_seconds(), 1);
        assert_eq!(denial(Duration::ZERO).retry_after_seconds(), 1);
        assert_eq!(denial(Duration::from_millis(1000)).retry_after_seconds(), 1);
        assert_eq!(denial(Duration::from_millis(1001)).retry_after_seconds(), 2);
        assert_eq!(
            denial(Duration::from_millis(11_500)).message(),
            "Rate limit reached for requests of this token: limit 5 per 1m0s. Please try again in 12s."
        );
    }

    fn config(enabled: bool, max: u64) -> RateLimitConfig {
        RateLimitConfig {
            enabled,
            prefix: "rl:".into(),
            key_secret: None,
            window: Duration::from_secs(60),
            max,
            fail_open: true,
        }
    }

    #[test]
    fn env_defaults_apply_only_when_enabled_and_project_limits_win() {
        let limit = |requests, window_seconds| RateLimit {
            requests,
            window_seconds,
        };
        let token = Uuid::nil();
        let token_key = format!("rl:t:{token}");
        let memory = RateLimiter::new(&config(false, 60), None);
        assert!(
            memory
                .checks(token, "p", &ProjectRateLimits::default())
                .is_empty()
        );
        let own = ProjectRateLimits {
            per_token: Some(limit(5, 10)),
            per_project: Some(limit(50, 10)),
        };
        let checks = memory.checks(token, "p", &own);
        assert_eq!(
            checks
                .iter()
                .map(|c| (c.scope, c.key.as_str(), c.limit))
                .collect::<Vec<_>>(),
            [
                (Scope::Token, token_key.as_str(), limit(5, 10)),
                (Scope::Project, "rl:p:p", limit(50, 10))
            ]
        );
        // Enabled without a connection (never built that way by the app): memory, with defaults.
        let enabled = RateLimiter::new(&config(true, 60), None);
        let checks = enabled.checks(token, "p", &ProjectRateLimits::default());
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].limit, limit(60, 60));
        assert_eq!(enabled.checks(token, "p", &own)[0].limit, limit(5, 10));
        let unlimited_default = RateLimiter::new(&config(true, 0), None);
        assert!(
            unlimited_default
                .checks(token, "p", &ProjectRateLimits::default())
                .is_empty()
        );
    }
}
