//! The runtime contract of the `llm-proxy` data plane.
//!
//! Every environment variable the proxy and its dispatcher read, with its default and its value
//! [`Syntax`], lives here once ([`ALL`]). The processes read them through one [`Reader`] and one set
//! of value parsers ([`values`], [`keywords`]); the operator renders them into pod specs and refuses
//! a bad value with [`check`], the same check the processes run; tests compare the charts against
//! [`ALL`]. Renaming a variable here renames it everywhere at compile time.

mod error;
pub mod keywords;
mod reader;
mod syntax;
pub mod values;

pub use error::ValueError;
pub use keywords::{
    DbDriver, DispatcherService, EventBusKind, HttpCacheBackend, Keyword, LogFormat, LogLevel,
};
pub use reader::{ProcessEnv, Reader};
pub use syntax::Syntax;
pub use values::{IpNetwork, ListenAddr};

/// One environment variable of the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable's name, exactly as read from the environment.
    pub name: &'static str,
    /// The default used when the variable is unset or empty (`""` = no default).
    pub default: &'static str,
    /// What a value looks like; [`check`] and every [`Reader`] refuse anything else.
    pub syntax: Syntax,
    /// Which process reads it.
    pub scope: Scope,
    /// Whether the value is a secret: never logged or shown in errors, rendered from a Secret by the
    /// operator and charts.
    pub secret: bool,
    /// One line for the configuration reference.
    pub help: &'static str,
}

/// Which process of the data plane reads a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `llm-proxy server`.
    Server,
    /// `llm-proxy dispatcher`.
    Dispatcher,
    /// Both.
    Both,
}

macro_rules! env_vars {
    ($(
        $(#[$doc:meta])*
        $konst:ident = $name:literal,
        default $default:literal,
        $syntax:ident $({ $($field:ident: $value:expr),* })?,
        $scope:ident,
        secret $secret:literal,
        $help:literal;
    )*) => {
        $( $(#[$doc])* #[doc = $help] pub const $konst: &str = $name; )*
        /// Every variable of the contract, in documentation order.
        pub const ALL: &[EnvVar] = &[
            $( EnvVar {
                name: $name,
                default: $default,
                syntax: Syntax::$syntax $({ $($field: $value),* })?,
                scope: Scope::$scope,
                secret: $secret,
                help: $help,
            }, )*
        ];
    };
}

env_vars! {
    // Server and limits
    LISTEN_ADDR = "LISTEN_ADDR", default ":8080", ListenAddr, Server, secret false, "Address the proxy listens on (`:8080` = all interfaces).";
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT", default "30s", Duration { positive: true }, Server, secret false, "Upper bound for a non-streaming upstream exchange; streams are bounded by idle time instead.";
    MAX_REQUEST_SIZE = "MAX_REQUEST_SIZE", default "10485760", Size { min: 1, max: u64::MAX }, Server, secret false, "Largest accepted request body in bytes (413 beyond).";
    MAX_CONCURRENT_REQUESTS = "MAX_CONCURRENT_REQUESTS", default "100", Integer { min: 0, max: u64::MAX }, Server, secret false, "Concurrent /v1 requests admitted before 503 (0 = unlimited).";
    LLM_PROXY_MAX_CONNECTIONS = "LLM_PROXY_MAX_CONNECTIONS", default "4096", Integer { min: 1, max: u64::MAX }, Server, secret false, "Client connections served at once; a connection beyond gets 503 `too_many_connections` and is closed.";
    LLM_PROXY_HEADER_READ_TIMEOUT = "LLM_PROXY_HEADER_READ_TIMEOUT", default "10s", Duration { positive: true }, Server, secret false, "Time a client has to send a request's headers (and, on an idle keep-alive connection, its next request's); then the connection is closed.";
    LLM_PROXY_BODY_READ_TIMEOUT = "LLM_PROXY_BODY_READ_TIMEOUT", default "60s", Duration { positive: true }, Server, secret false, "Time a request body has to arrive once the proxy waits for it; then 408 `request_body_timeout` (/v1 reads it only after the client token is known).";
    LLM_PROXY_TRUSTED_PROXIES = "LLM_PROXY_TRUSTED_PROXIES", default "", IpNetworks, Server, secret false, "Reverse proxies (IP addresses or CIDR ranges, comma-separated) whose `X-Forwarded-For`/`X-Real-IP` name the client in the audit trail; empty = the TCP peer is the client.";
    LLM_PROXY_CIRCUIT_BREAKER_MAX_KEYS = "LLM_PROXY_CIRCUIT_BREAKER_MAX_KEYS", default "10000", Integer { min: 1, max: u64::MAX }, Server, secret false, "Circuit breakers kept (one per project, route and model that saw an upstream failure); beyond it entries are evicted (an evicted open breaker closes early).";
    SHUTDOWN_TIMEOUT = "SHUTDOWN_TIMEOUT", default "30s", Duration { positive: false }, Both, secret false, "How long SIGTERM waits for in-flight requests and streams.";
    MANAGEMENT_TOKEN = "MANAGEMENT_TOKEN", default "", Text, Server, secret true, "Bearer token of the /manage API (required).";
    // Provider
    API_CONFIG_PATH = "API_CONFIG_PATH", default "./config/api_providers.yaml", Text, Server, secret false, "Providers YAML; the built-in OpenAI fallback is used only when the file is absent.";
    DEFAULT_API_PROVIDER = "DEFAULT_API_PROVIDER", default "openai", Text, Server, secret false, "Provider from the YAML that serves /v1.";
    OPENAI_API_URL = "OPENAI_API_URL", default "https://api.openai.com", HttpUrl, Server, secret false, "Upstream base URL of the built-in fallback provider.";
    // Database
    DB_DRIVER = "DB_DRIVER", default "sqlite", DbDriver, Server, secret false, "`sqlite` or `postgres`.";
    DATABASE_PATH = "DATABASE_PATH", default "./data/llm-proxy.db", Text, Server, secret false, "SQLite database file.";
    DATABASE_URL = "DATABASE_URL", default "", PostgresUrl, Server, secret true, "PostgreSQL URL when DB_DRIVER=postgres.";
    DATABASE_POOL_SIZE = "DATABASE_POOL_SIZE", default "10", Integer { min: 1, max: u32::MAX as u64 }, Server, secret false, "Maximum open database connections (on SQLite, for reads; every write goes through one more connection of its own).";
    DATABASE_MAX_IDLE_CONNS = "DATABASE_MAX_IDLE_CONNS", default "5", Integer { min: 0, max: u32::MAX as u64 }, Server, secret false, "Connections kept open when idle.";
    DATABASE_CONN_MAX_LIFETIME = "DATABASE_CONN_MAX_LIFETIME", default "1h", Duration { positive: false }, Server, secret false, "Maximum lifetime of a database connection.";
    // Security
    ENCRYPTION_KEY = "ENCRYPTION_KEY", default "", Text, Server, secret true, "Base64 of 32 bytes; encrypts provider keys at rest (AES-256-GCM).";
    REQUIRE_ENCRYPTION_KEY = "REQUIRE_ENCRYPTION_KEY", default "false", Bool, Server, secret false, "Refuse to start without ENCRYPTION_KEY.";
    // Logging
    LOG_LEVEL = "LOG_LEVEL", default "info", LogLevel, Both, secret false, "debug, info, warn or error.";
    LOG_FORMAT = "LOG_FORMAT", default "json", LogFormat, Both, secret false, "`json` or `text`.";
    LOG_FILE = "LOG_FILE", default "", Text, Both, secret false, "Append logs to this file instead of stdout.";
    // Audit
    AUDIT_ENABLED = "AUDIT_ENABLED", default "true", Bool, Server, secret false, "Record management and proxy audit events.";
    AUDIT_LOG_FILE = "AUDIT_LOG_FILE", default "./data/audit.log", Text, Server, secret false, "JSONL audit file (empty = none).";
    AUDIT_CREATE_DIR = "AUDIT_CREATE_DIR", default "true", Bool, Server, secret false, "Create the audit file's directory.";
    AUDIT_STORE_IN_DB = "AUDIT_STORE_IN_DB", default "true", Bool, Server, secret false, "Store audit events in the database.";
    // Metrics and health
    ENABLE_METRICS = "ENABLE_METRICS", default "true", Bool, Server, secret false, "Serve METRICS_PATH (JSON) and METRICS_PATH/prometheus.";
    METRICS_PATH = "METRICS_PATH", default "/metrics", MetricsPath, Server, secret false, "Path of the JSON metrics summary.";
    // Hot-path caches
    LLM_PROXY_ENFORCE_PROJECT_ACTIVE = "LLM_PROXY_ENFORCE_PROJECT_ACTIVE", default "true", Bool, Server, secret false, "Reject requests of inactive projects with 403.";
    LLM_PROXY_ACTIVE_CACHE_TTL = "LLM_PROXY_ACTIVE_CACHE_TTL", default "5s", Duration { positive: false }, Server, secret false, "TTL of the project-active cache (on SQLite an expired entry keeps serving while it reloads in the background; 0 = a store lookup per request).";
    LLM_PROXY_ACTIVE_CACHE_MAX = "LLM_PROXY_ACTIVE_CACHE_MAX", default "10000", Integer { min: 0, max: u64::MAX }, Server, secret false, "Entries of the project-active cache.";
    LLM_PROXY_API_KEY_CACHE_TTL = "LLM_PROXY_API_KEY_CACHE_TTL", default "30s", Duration { positive: false }, Server, secret false, "TTL of the decrypted provider-key cache (on SQLite an expired entry keeps serving while it reloads in the background; 0 = a store lookup per request).";
    LLM_PROXY_API_KEY_CACHE_MAX = "LLM_PROXY_API_KEY_CACHE_MAX", default "10000", Integer { min: 0, max: u64::MAX }, Server, secret false, "Entries of the provider-key cache.";
    LLM_PROXY_TOKEN_CACHE_TTL = "LLM_PROXY_TOKEN_CACHE_TTL", default "5m", Duration { positive: false }, Server, secret false, "TTL of the token lookup cache (revocation invalidates it at once).";
    LLM_PROXY_TOKEN_CACHE_MAX = "LLM_PROXY_TOKEN_CACHE_MAX", default "10000", Integer { min: 0, max: u64::MAX }, Server, secret false, "Entries of the token lookup cache (and of the token-hash memo).";
    USAGE_STATS_BUFFER_SIZE = "USAGE_STATS_BUFFER_SIZE", default "1000", Integer { min: 1, max: u64::MAX }, Server, secret false, "Bounded queue of asynchronous usage updates for unlimited tokens.";
    CACHE_STATS_BUFFER_SIZE = "CACHE_STATS_BUFFER_SIZE", default "1000", Integer { min: 1, max: u64::MAX }, Server, secret false, "Bounded queue of per-token cache-hit counters.";
    // Observability capture and event bus
    OBSERVABILITY_ENABLED = "OBSERVABILITY_ENABLED", default "true", Bool, Server, secret false, "Publish one instrumentation event per /v1 request.";
    OBSERVABILITY_BUFFER_SIZE = "OBSERVABILITY_BUFFER_SIZE", default "1000", Integer { min: 1, max: u64::MAX }, Both, secret false, "Bounded event queue; events beyond it are dropped and counted.";
    OBSERVABILITY_MAX_REQUEST_BODY_BYTES = "OBSERVABILITY_MAX_REQUEST_BODY_BYTES", default "65536", Size { min: 0, max: u64::MAX }, Server, secret false, "Request body bytes captured per event.";
    OBSERVABILITY_MAX_RESPONSE_BODY_BYTES = "OBSERVABILITY_MAX_RESPONSE_BODY_BYTES", default "262144", Size { min: 0, max: u64::MAX }, Server, secret false, "Response body bytes captured per event.";
    LLM_PROXY_EVENT_BUS = "LLM_PROXY_EVENT_BUS", default "in-memory", EventBus, Both, secret false, "`in-memory`, `redis-streams` (or its alias `redis`).";
    LLM_PROXY_EVENT_SPOOL_PATH = "LLM_PROXY_EVENT_SPOOL_PATH", default "./data/event-spool.jsonl", Text, Server, secret false, "File the Redis Streams publisher spools events to while Redis is unreachable or slow, replayed in order on reconnect and at start-up.";
    LLM_PROXY_EVENT_SPOOL_MAX_BYTES = "LLM_PROXY_EVENT_SPOOL_MAX_BYTES", default "268435456", Size { min: 0, max: u64::MAX }, Server, secret false, "Size bound of the event spool; beyond it events are dropped, counted and logged once per 10 s (0 = no spool: drop beyond OBSERVABILITY_BUFFER_SIZE).";
    // Redis
    REDIS_URL = "REDIS_URL", default "", RedisUrl, Both, secret true, "Full Redis URL (`redis://` or `rediss://`); wins over REDIS_ADDR/REDIS_DB/REDIS_PASSWORD.";
    REDIS_ADDR = "REDIS_ADDR", default "localhost:6379", HostPort, Both, secret false, "Redis host:port.";
    REDIS_DB = "REDIS_DB", default "0", Integer { min: 0, max: i32::MAX as u64 }, Both, secret false, "Redis database number.";
    REDIS_PASSWORD = "REDIS_PASSWORD", default "", Text, Both, secret true, "Redis password.";
    REDIS_STREAM_KEY = "REDIS_STREAM_KEY", default "llm-proxy-events", Text, Both, secret false, "Stream of instrumentation events.";
    REDIS_CONSUMER_GROUP = "REDIS_CONSUMER_GROUP", default "llm-proxy-dispatchers", Text, Dispatcher, secret false, "Consumer group of the dispatchers.";
    REDIS_CONSUMER_NAME = "REDIS_CONSUMER_NAME", default "", Text, Dispatcher, secret false, "Consumer name (default derived from host and pid).";
    REDIS_STREAM_MAX_LEN = "REDIS_STREAM_MAX_LEN", default "10000", Integer { min: 0, max: u64::MAX }, Server, secret false, "Approximate MAXLEN of XADD (0 = unbounded).";
    REDIS_STREAM_BLOCK_TIME = "REDIS_STREAM_BLOCK_TIME", default "5s", Duration { positive: true }, Dispatcher, secret false, "XREADGROUP BLOCK time.";
    REDIS_STREAM_CLAIM_TIME = "REDIS_STREAM_CLAIM_TIME", default "30s", Duration { positive: true }, Dispatcher, secret false, "Idle time after which pending entries are reclaimed.";
    REDIS_STREAM_BATCH_SIZE = "REDIS_STREAM_BATCH_SIZE", default "100", Integer { min: 1, max: u64::MAX }, Dispatcher, secret false, "XREADGROUP COUNT.";
    // HTTP cache
    HTTP_CACHE_ENABLED = "HTTP_CACHE_ENABLED", default "true", Bool, Server, secret false, "Enable the HTTP response cache.";
    HTTP_CACHE_BACKEND = "HTTP_CACHE_BACKEND", default "in-memory", HttpCacheBackend, Server, secret false, "`in-memory` or `redis`.";
    HTTP_CACHE_STREAM_RESPONSES = "HTTP_CACHE_STREAM_RESPONSES", default "false", Bool, Server, secret false, "Also cache SSE responses.";
    HTTP_CACHE_MAX_OBJECT_BYTES = "HTTP_CACHE_MAX_OBJECT_BYTES", default "1048576", Size { min: 0, max: u64::MAX }, Server, secret false, "Largest cached response body.";
    HTTP_CACHE_MAX_BYTES = "HTTP_CACHE_MAX_BYTES", default "67108864", Size { min: 0, max: u64::MAX }, Server, secret false, "Size bound of the in-memory cache.";
    HTTP_CACHE_DEFAULT_TTL = "HTTP_CACHE_DEFAULT_TTL", default "300s", Duration { positive: false }, Server, secret false, "TTL for public responses without max-age.";
    REDIS_CACHE_URL = "REDIS_CACHE_URL", default "", RedisUrl, Server, secret true, "Redis URL of the cache (default: the shared Redis connection).";
    REDIS_CACHE_KEY_PREFIX = "REDIS_CACHE_KEY_PREFIX", default "llmproxy:cache:", Text, Server, secret false, "Key prefix of cached responses.";
    REDIS_CACHE_TIMEOUT = "REDIS_CACHE_TIMEOUT", default "1s", Duration { positive: false }, Server, secret false, "Timeout of one cache operation before bypass.";
    // Rate limits
    DISTRIBUTED_RATE_LIMIT_ENABLED = "DISTRIBUTED_RATE_LIMIT_ENABLED", default "false", Bool, Server, secret false, "Enforce per-token and per-project request rates.";
    DISTRIBUTED_RATE_LIMIT_PREFIX = "DISTRIBUTED_RATE_LIMIT_PREFIX", default "ratelimit:", Text, Server, secret false, "Redis key prefix of rate-limit counters.";
    DISTRIBUTED_RATE_LIMIT_KEY_SECRET = "DISTRIBUTED_RATE_LIMIT_KEY_SECRET", default "", Text, Server, secret true, "HMAC secret hiding token ids in Redis keys.";
    DISTRIBUTED_RATE_LIMIT_WINDOW = "DISTRIBUTED_RATE_LIMIT_WINDOW", default "1m", Duration { positive: true }, Server, secret false, "Window of the default limits.";
    DISTRIBUTED_RATE_LIMIT_MAX = "DISTRIBUTED_RATE_LIMIT_MAX", default "60", Integer { min: 0, max: u64::MAX }, Server, secret false, "Default requests per window and token.";
    DISTRIBUTED_RATE_LIMIT_FALLBACK = "DISTRIBUTED_RATE_LIMIT_FALLBACK", default "true", Bool, Server, secret false, "Fail open (true) or closed (false) when Redis is down.";
    // Dispatcher
    DISPATCHER_SERVICE = "DISPATCHER_SERVICE", default "file", DispatcherService, Dispatcher, secret false, "`file`, `lunary` or `helicone`.";
    DISPATCHER_ENDPOINT = "DISPATCHER_ENDPOINT", default "", Text, Dispatcher, secret false, "File path or backend URL (default per service).";
    LLM_PROXY_API_KEY = "LLM_PROXY_API_KEY", default "", Text, Dispatcher, secret true, "API key of the Lunary or Helicone backend.";
    DISPATCHER_BUFFER = "DISPATCHER_BUFFER", default "1000", Integer { min: 1, max: u64::MAX }, Dispatcher, secret false, "In-process event buffer.";
    DISPATCHER_BATCH_SIZE = "DISPATCHER_BATCH_SIZE", default "100", Integer { min: 1, max: u64::MAX }, Dispatcher, secret false, "Events per backend batch.";
    DISPATCHER_HEALTH_ADDR = "DISPATCHER_HEALTH_ADDR", default ":8081", ListenAddr, Dispatcher, secret false, "Address of the dispatcher's /health, /ready and /metrics.";
    LLM_PROXY_DISPATCHER_VERBOSE = "LLM_PROXY_DISPATCHER_VERBOSE", default "false", Bool, Dispatcher, secret false, "Add response headers to dispatched events.";
}

/// Container port of the proxy (`LISTEN_ADDR` default).
pub const PROXY_PORT: u16 = 8080;
/// Container port of the dispatcher's health and metrics server (`DISPATCHER_HEALTH_ADDR` default).
pub const DISPATCHER_HEALTH_PORT: u16 = 8081;
/// Liveness path: the process is up.
pub const LIVE_PATH: &str = "/live";
/// Readiness path: the database is reachable and migrated.
pub const READY_PATH: &str = "/ready";
/// Health summary path.
pub const HEALTH_PATH: &str = "/health";
/// Default Prometheus text path (`METRICS_PATH` + `/prometheus`).
pub const PROMETHEUS_PATH: &str = "/metrics/prometheus";
/// Directory of the SQLite database and audit log in the container images.
pub const CONTAINER_DATA_DIR: &str = "/app/data";
/// Default dispatcher endpoints by service, as the seed chart renders them.
pub const DISPATCHER_DEFAULT_FILE_ENDPOINT: &str = "/app/data/events.jsonl";
/// Lunary ingestion endpoint.
pub const DISPATCHER_DEFAULT_LUNARY_ENDPOINT: &str = "https://api.lunary.ai/v1/runs/ingest";
/// Helicone custom-log endpoint.
pub const DISPATCHER_DEFAULT_HELICONE_ENDPOINT: &str =
    "https://api.worker.helicone.ai/custom/v1/log";
/// Event-bus values accepted by `LLM_PROXY_EVENT_BUS` (in any case).
pub const EVENT_BUS_VALUES: &[&str] = <EventBusKind as Keyword>::NAMES;

/// Looks up a variable of the contract by name.
pub fn find(name: &str) -> Option<&'static EnvVar> {
    ALL.iter().find(|v| v.name == name)
}

/// Checks `value` for the variable `name` exactly as the process that reads it does (every
/// [`Reader`] runs this check first), so the operator can refuse a bad `spec.env` value with the
/// message the process would print.
///
/// - An empty (or blank) value is accepted: it means unset, and the process uses the default.
/// - A name outside the contract is accepted: the operator passes extra variables through.
/// - Rules between variables (`MANAGEMENT_TOKEN` required, `DATABASE_URL` required with
///   `DB_DRIVER=postgres`, `ENCRYPTION_KEY` being 32 bytes of base64) are the process's start-up
///   checks, not part of a value's syntax; so are a URL's finer points, which the process's client
///   library decides after this check.
pub fn check(name: &str, value: &str) -> Result<(), ValueError> {
    let Some(var) = find(name) else {
        return Ok(());
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(());
    }
    var.syntax
        .check(value)
        .map_err(|reason| ValueError::new(var.name, value, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_match_their_constant() {
        let mut names: Vec<_> = ALL.iter().map(|v| v.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate variable in the contract");
        assert_eq!(find(MANAGEMENT_TOKEN).map(|v| v.secret), Some(true));
        assert_eq!(find(LISTEN_ADDR).map(|v| v.default), Some(":8080"));
    }

    #[test]
    fn secrets_have_no_default() {
        for v in ALL.iter().filter(|v| v.secret) {
            assert!(
                v.default.is_empty(),
                "{} is secret but has a default",
                v.name
            );
        }
    }

    #[test]
    fn every_default_passes_check() {
        for var in ALL {
            assert_eq!(check(var.name, var.default), Ok(()), "{}", var.name);
        }
    }

    #[test]
    fn check_refuses_a_bad_value_for_each_syntax_kind_naming_the_variable() {
        let mut kinds_refused = Vec::new();
        for var in ALL {
            let Some(bad) = var.syntax.refused_example() else {
                continue;
            };
            let err = check(var.name, bad).err();
            assert_eq!(
                err.as_ref().map(ValueError::name),
                Some(var.name),
                "{bad:?}"
            );
            let message = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(var.name), "{message}");
            assert_eq!(message.contains(bad), !var.secret, "{message}");
            if !kinds_refused.contains(&var.syntax) {
                kinds_refused.push(var.syntax);
            }
        }
        // Every kind but free text occurs in the contract, so each was refused above.
        for kind in [
            Syntax::Bool,
            Syntax::Duration { positive: false },
            Syntax::Duration { positive: true },
            Syntax::ListenAddr,
            Syntax::HostPort,
            Syntax::RedisUrl,
            Syntax::PostgresUrl,
            Syntax::HttpUrl,
            Syntax::IpNetworks,
            Syntax::MetricsPath,
            Syntax::EventBus,
            Syntax::LogLevel,
            Syntax::LogFormat,
            Syntax::DbDriver,
            Syntax::HttpCacheBackend,
            Syntax::DispatcherService,
        ] {
            assert!(kinds_refused.contains(&kind), "{kind:?} is not exercised");
        }
        assert!(
            kinds_refused
                .iter()
                .any(|kind| matches!(kind, Syntax::Integer { .. }))
                && kinds_refused
                    .iter()
                    .any(|kind| matches!(kind, Syntax::Size { .. }))
        );
    }

    #[test]
    fn check_applies_the_variable_range() {
        assert_eq!(check(DATABASE_POOL_SIZE, "1"), Ok(()));
        assert_eq!(
            check(DATABASE_POOL_SIZE, "0").map_err(|e| e.to_string()),
            Err("invalid DATABASE_POOL_SIZE=\"0\": must be at least 1".to_owned())
        );
        assert!(check(DATABASE_POOL_SIZE, "4294967296").is_err());
        assert_eq!(check(MAX_CONCURRENT_REQUESTS, "0"), Ok(()));
        assert!(check(MAX_REQUEST_SIZE, "0").is_err());
        assert_eq!(check(SHUTDOWN_TIMEOUT, "0"), Ok(()));
        assert!(check(REQUEST_TIMEOUT, "0").is_err());
    }

    #[test]
    fn check_accepts_empty_values_and_names_outside_the_contract() {
        assert_eq!(check(SHUTDOWN_TIMEOUT, ""), Ok(()));
        assert_eq!(check(SHUTDOWN_TIMEOUT, "   "), Ok(()));
        assert_eq!(check("SOME_SIDECAR_SETTING", "anything at all"), Ok(()));
        assert_eq!(
            check("shutdown_timeout", "forever"),
            Ok(()),
            "names are exact"
        );
    }

    #[test]
    fn check_never_shows_a_secret_value_nor_credentials() {
        for (name, value) in [
            (REDIS_URL, "http://:hunter2@cache:6379"),
            (DATABASE_URL, "mysql://hunter2"),
            (REDIS_CACHE_URL, "hunter2"),
            (REDIS_ADDR, "default:hunter2@redis:6379"),
        ] {
            let message = check(name, value)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                message.starts_with(&format!("invalid {name} ")),
                "{message}"
            );
            assert!(!message.contains("hunter2"), "{message}");
        }
        let shown = check(REDIS_ADDR, "redis-without-port")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            shown.as_deref(),
            Some("invalid REDIS_ADDR=\"redis-without-port\": expected host:port")
        );
    }

    #[test]
    fn one_boolean_and_one_duration_syntax_for_every_variable() {
        let bools: Vec<_> = ALL.iter().filter(|v| v.syntax == Syntax::Bool).collect();
        assert!(bools.len() > 10);
        for var in bools {
            for accepted in ["true", "FALSE", "1", "0", "yes", "No", "on", "off"] {
                assert_eq!(check(var.name, accepted), Ok(()), "{}={accepted}", var.name);
            }
            assert!(check(var.name, "enabled").is_err(), "{}", var.name);
        }
        for var in ALL
            .iter()
            .filter(|v| matches!(v.syntax, Syntax::Duration { .. }))
        {
            for accepted in ["500ms", "1.5s", "1h30m"] {
                assert_eq!(check(var.name, accepted), Ok(()), "{}={accepted}", var.name);
            }
            assert!(check(var.name, "30").is_err(), "{}", var.name);
        }
    }

    #[test]
    fn the_event_bus_values_are_the_parser_spellings() {
        assert_eq!(EVENT_BUS_VALUES, &["in-memory", "redis-streams", "redis"]);
        for value in EVENT_BUS_VALUES {
            assert_eq!(check(LLM_PROXY_EVENT_BUS, value), Ok(()));
        }
    }
}
