//! `ProxyState`: what the `/v1` handler shares across requests (the token, project, breaker,
//! rate-limit and cache state, the upstream client, metrics), built by the `app` module and also
//! read by the metrics endpoints (the `health` module) and the management API's cache handle.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::audit::Audit;
use crate::breaker::Breakers;
use crate::cache::HttpCache;
use crate::config::Provider;
use crate::events::EventTap;
use crate::metrics::Metrics;
use crate::projects::ProjectGate;
use crate::ratelimit::RateLimiter;
use crate::tokens::TokenAuthority;
use crate::upstream::UpstreamClient;

/// Shared state of the `/v1` handler.
pub struct ProxyState {
    pub provider: Provider,
    pub client: UpstreamClient,
    pub tokens: TokenAuthority,
    pub projects: ProjectGate,
    /// Circuit breakers by project, route and model.
    pub breakers: Breakers,
    /// `None` = unlimited.
    pub limiter: Option<Arc<Semaphore>>,
    pub metrics: Arc<Metrics>,
    /// Bound on the wait for upstream response headers.
    pub request_timeout: Duration,
    pub max_request_size: u64,
    /// `None` when `OBSERVABILITY_ENABLED=false`.
    pub events: Option<EventTap>,
    pub audit: Audit,
    /// Per-token and per-project request rates ([`crate::ratelimit`]).
    pub rate_limits: RateLimiter,
    /// The HTTP response cache; `None` when `HTTP_CACHE_ENABLED=false`.
    pub cache: Option<HttpCache>,
}
