//! Builds the HTTP application: state, caches, background tasks and the router.
//!
//! Routes: `/v1/*` (the proxy, dispatched before the route table: [`AppService`]), `/manage/*`
//! (the management API, [`crate::manage`]), `/health`, `/live`, `/ready`, `METRICS_PATH` and
//! `METRICS_PATH/prometheus` (when metrics are enabled); anything else is a 404 JSON error. Paths
//! are matched as received, without normalisation, so `/v1/../manage` is a `/v1` path (and refused
//! there), never a management route.
//!
//! Order of a `/v1` request (design.md §2; each step is in [`crate::forward`] unless named):
//! 1. request id (fresh UUID, sent upstream and returned);
//! 2. CORS preflight (`OPTIONS`: 204, no authentication, no upstream);
//! 3. concurrency limit;
//! 4. path safety, method and endpoint allow-lists, body size, param whitelist, origin rules;
//! 5. client token: format, hash lookup through a bounded cache (and a short negative cache),
//!    expiry and revocation, checked without counting anything yet ([`crate::tokens`]);
//! 6. project active ([`crate::projects`]), then the circuit breaker of the project, route and
//!    model, then rate limits ([`crate::ratelimit`]);
//! 7. HTTP cache lookup ([`crate::cache`]): a hit is served here, without counting the quota; on a
//!    miss the token's quota is counted atomically (from a reservation), then the provider key is
//!    loaded;
//! 8. upstream through the one pooled client ([`crate::upstream`]);
//! 9. response tap: the body streams through unchanged while metrics, the request log and the
//!    instrumentation event ([`crate::events`]) are recorded; usage of unlimited tokens is written
//!    by a background batcher, never awaited.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use futures::future::BoxFuture;
use llm_proxy_env as env;
use llm_proxy_events::EventPublisher;
use llm_proxy_store::{Store, TokenHash};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};

use crate::audit::Audit;
use crate::breaker::{BreakerPolicy, Breakers};
use crate::cache::HttpCache;
use crate::config::ServerConfig;
use crate::error::ProxyError;
use crate::events::EventTap;
use crate::forward;
use crate::health::{self, Readiness};
use crate::manage::{self, CacheInvalidator, ManageState};
use crate::metrics::Metrics;
use crate::projects::{ProjectGate, ProjectSettings};
use crate::proxy_state::ProxyState;
use crate::ratelimit::RateLimiter;
use crate::redis_link::{ConnectionManager, FeatureHealth};
use crate::revocation::{self, RevocationChannel};
use crate::tokens::{TokenAuthority, TokenSettings};
use crate::upstream;

/// The assembled application.
pub struct App {
    /// The whole HTTP surface; serve it with `axum::ServiceExt::into_make_service_with_connect_info`
    /// (the client address reaches the audit trail as `ConnectInfo`).
    pub service: AppService,
    /// Clears the data path's caches after management changes.
    pub caches: Arc<ProxyCaches>,
    pub metrics: Arc<Metrics>,
    /// Flushes batched token usage; ends (after a last flush) once the router is dropped.
    pub usage_flusher: JoinHandle<()>,
    /// The invalidation channel on PostgreSQL ([`crate::revocation`]); `None` on SQLite.
    pub revocation: Option<Arc<RevocationChannel>>,
}

/// Handle on the data path's caches for the management API.
pub struct ProxyCaches {
    state: Arc<ProxyState>,
}

impl CacheInvalidator for ProxyCaches {
    fn token_changed(&self, hash: &TokenHash) {
        self.state.tokens.invalidate(hash);
    }

    fn project_changed(&self, project_id: &str) {
        self.state.projects.invalidate(project_id);
    }

    fn everything_changed(&self) {
        self.state.tokens.invalidate_all();
        self.state.projects.invalidate_all();
    }

    fn http_cache(&self) -> Option<HttpCache> {
        self.state.cache.clone()
    }

    fn unserved_reservation(&self, hash: &TokenHash) -> i64 {
        self.state.tokens.unserved_reservation(hash)
    }
}

/// What the application is built on, created by the caller (the server, tests, benchmarks).
pub struct Dependencies {
    pub store: Arc<dyn Store>,
    pub audit: Audit,
    /// `None` when observability is off.
    pub events: Option<EventPublisher>,
    /// The breakers' threshold and cool-down, a parameter so tests can use a short cool-down.
    pub breaker: BreakerPolicy,
    /// The shared Redis connection ([`crate::redis_link::shared_connection`]); `None` when no
    /// configured feature uses Redis.
    pub redis: Option<ConnectionManager>,
}

impl Dependencies {
    /// The usual dependencies without Redis.
    pub fn new(store: Arc<dyn Store>, audit: Audit, events: Option<EventPublisher>) -> Self {
        Self {
            store,
            audit,
            events,
            breaker: BreakerPolicy::default(),
            redis: None,
        }
    }
}

/// Builds the application.
pub fn build(config: &ServerConfig, deps: Dependencies) -> App {
    let Dependencies {
        store,
        audit,
        events,
        breaker,
        redis,
    } = deps;
    let mut redis_features: Vec<Arc<FeatureHealth>> = Vec::new();
    let ready_events = events.clone();
    let rate_limits = RateLimiter::new(&config.rate_limit, redis.clone());
    redis_features.extend(rate_limits.health());
    let mut metrics = Metrics::new();
    if let Some(publisher) = &events {
        metrics.register_event_bus(publisher.metrics());
    }
    metrics.register_rate_limits(rate_limits.metrics());
    // Only a shared database needs the channel: on SQLite every change goes through this process.
    let revocation_url = match &config.store.driver {
        llm_proxy_store::Driver::Postgres { url } => Some(url.clone()),
        llm_proxy_store::Driver::Sqlite { .. } => None,
    };
    let revocation_channel = revocation_url.as_ref().map(|_| RevocationChannel::new());
    if let Some(channel) = &revocation_channel {
        channel.register(metrics.registry());
    }
    let metrics = Arc::new(metrics);
    let (tokens, usage_flusher) = TokenAuthority::new(
        store.clone(),
        TokenSettings {
            cache_ttl: config.caches.token_ttl,
            cache_max: config.caches.token_max,
            usage_buffer: config.caches.usage_buffer,
        },
        metrics.clone(),
    );
    let projects = ProjectGate::new(
        store.clone(),
        ProjectSettings {
            enforce_active: config.caches.enforce_project_active,
            active_ttl: config.caches.project_active_ttl,
            active_max: config.caches.project_active_max,
            key_ttl: config.caches.api_key_ttl,
            key_max: config.caches.api_key_max,
        },
    );
    let (http_cache, cache_health) =
        HttpCache::from_config(&config.http_cache, redis.as_ref(), metrics.clone());
    redis_features.extend(cache_health);
    let state = Arc::new(ProxyState {
        client: upstream::build_client(&config.provider),
        provider: config.provider.clone(),
        tokens,
        projects,
        breakers: Breakers::new(breaker, config.circuit_breaker_max_keys),
        limiter: config
            .max_concurrent_requests
            .map(|n| Arc::new(Semaphore::new(n))),
        metrics: metrics.clone(),
        request_timeout: config.request_timeout,
        max_request_size: config.max_request_size,
        events: events.map(|publisher| EventTap::new(publisher, &config.observability)),
        audit: audit.clone(),
        rate_limits,
        cache: http_cache,
    });

    let caches = Arc::new(ProxyCaches {
        state: state.clone(),
    });
    if let (Some(url), Some(channel)) = (revocation_url, &revocation_channel) {
        // A weak handle: the listener must not keep the data path (and its usage queue) alive.
        let weak: std::sync::Weak<ProxyCaches> = Arc::downgrade(&caches);
        revocation::spawn(url, weak, channel.clone(), revocation::PROBE);
    }
    let manage = manage::router(ManageState::new(
        store.clone(),
        config.management_token.clone(),
        audit,
        caches.clone(),
        config.trusted_proxies.clone(),
    ));
    let mut router = Router::new()
        .route(env::HEALTH_PATH, get(health::health))
        .route(env::LIVE_PATH, get(health::live))
        .merge(
            Router::new()
                .route(env::READY_PATH, get(health::ready))
                .with_state(Readiness {
                    store,
                    events: ready_events,
                    redis_features,
                    revocation: revocation_channel.clone(),
                }),
        )
        .merge(manage);
    if config.metrics.enabled {
        router = router.merge(
            Router::new()
                .route(&config.metrics.path, get(health::metrics_summary))
                .route(
                    &format!("{}/prometheus", config.metrics.path),
                    get(health::metrics_prometheus),
                )
                .with_state(state.clone()),
        );
    }
    // axum's own 405 has an empty body; the `Allow` header is added by axum either way.
    let routes = router
        .method_not_allowed_fallback(|| async { ProxyError::MethodNotAllowed })
        .fallback(|| async { ProxyError::RouteNotFound });
    let service = AppService {
        proxy: state.clone(),
        routes,
    };
    App {
        service,
        caches,
        metrics,
        usage_flusher,
        revocation: revocation_channel,
    }
}

/// The whole HTTP surface: `/v1/<something>` goes straight to the proxy handler and every other
/// path through the routes. The data path skips the route table, whose wildcard capture (an
/// allocated, percent-decoded copy of the path per request) it never reads, and is served without
/// an outer `Router` (whose fallback dispatch cloned a boxed service per request). `/v1/` alone is
/// not a `/v1` route (404 like any unknown path), as with a `/v1/{*path}` route.
#[derive(Clone)]
pub struct AppService {
    proxy: Arc<ProxyState>,
    routes: Router,
}

impl Service<Request> for AppService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let is_proxied = request
            .uri()
            .path()
            .strip_prefix("/v1/")
            .is_some_and(|rest| !rest.is_empty());
        if is_proxied {
            let proxy = self.proxy.clone();
            Box::pin(async move { Ok(forward::handle(State(proxy), request).await) })
        } else {
            Box::pin(self.routes.clone().oneshot(request))
        }
    }
}
