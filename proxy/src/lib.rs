//! The `llm-proxy` data plane: an OpenAI-compatible proxy with withering client tokens.
//!
//! Modules: [`config`] (environment and provider file, parsed once), [`app`] (router and state),
//! [`proxy_state`] (what the `/v1` handler shares: read by it, the metrics endpoints and `/manage`),
//! [`forward`] (the `/v1` path), [`headers`] (the proxy's own header names, hop-by-hop rule), [`tokens`] and [`projects`] (admission; their caches are [`ttl_map`]s), [`upstream`] (the pooled
//! client), [`breaker`], [`client_ip`] (who a request came from), [`clock`] (request-path timestamps), [`error`] (the `/v1` error mapping), [`events`] (instrumentation capture), [`health`], [`metrics`], [`logging`],
//! [`redis_link`] (the shared
//! Redis connection and per-feature health), [`revocation`] (the PostgreSQL invalidation listener),
//! [`connections`] (client connections: cap, slow-client deadlines; [`body_deadline`]), [`server`] (start-up and
//! shutdown) and [`secret`].

pub mod app;
pub mod audit;
pub mod body_deadline;
pub mod breaker;
pub mod cache;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod connections;
pub mod error;
pub mod events;
pub mod forward;
pub mod headers;
pub mod health;
pub mod logging;
pub mod manage;
pub mod metrics;
pub mod projects;
pub mod proxy_state;
pub mod ratelimit;
pub mod redis_link;
pub mod revocation;
pub mod secret;
pub mod server;
pub mod single_flight;
pub mod tokens;
pub mod ttl_map;
pub mod upstream;
