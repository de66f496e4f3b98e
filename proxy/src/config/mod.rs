//! Configuration of `llm-proxy server`, read once from the environment into typed structs.
//!
//! Every variable name, default and value syntax comes from `llm-proxy-env`, and every value is read
//! through its [`Reader`]: a value that does not parse is a start-up error naming the variable and
//! the value (the value is withheld for secrets), the same [`ValueError`] the dispatcher and the
//! operator give; nothing falls back silently. Empty variables count as unset. This module adds the
//! rules between variables (a required token, `DATABASE_URL` with `DB_DRIVER=postgres`, the
//! encryption key) and the providers file.

mod providers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use llm_proxy_env::{self as env, DbDriver, Reader, ValueError};
use llm_proxy_events::{RedisSettings, SpoolSettings};
use llm_proxy_store::{Driver, EncryptionKey, StoreConfig};

pub use llm_proxy_env::{EventBusKind, HttpCacheBackend, LogFormat, LogLevel};
pub use providers::{ParamRule, Provider, ProviderError, fallback_provider, glob_match};

use crate::client_ip::TrustedProxies;
use crate::secret::Secret;

/// A configuration value that prevents start-up.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{name} is required but not set")]
    Missing { name: &'static str },
    /// A variable holds a value its syntax refuses.
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error("{0}")]
    Provider(#[from] ProviderError),
}

/// Limits of client connections, served by the `connections` module (`LLM_PROXY_MAX_CONNECTIONS`,
/// `LLM_PROXY_HEADER_READ_TIMEOUT`,
/// `LLM_PROXY_BODY_READ_TIMEOUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

/// Everything `llm-proxy server` needs, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen_addr: SocketAddr,
    /// Bound on the wait for upstream response headers (streams are not cut by it).
    pub request_timeout: Duration,
    pub max_request_size: u64,
    /// `None` = unlimited.
    pub max_concurrent_requests: Option<usize>,
    /// Client connection cap and the deadlines of slow clients.
    pub connections: ConnectionSettings,
    /// Whose forwarding headers name the client (`LLM_PROXY_TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    /// Bound on the circuit-breaker keys stored ([`crate::breaker`]).
    pub circuit_breaker_max_keys: u64,
    pub shutdown_timeout: Duration,
    pub management_token: Secret,
    pub provider: Provider,
    /// Database and `ENCRYPTION_KEY`, in the store's own terms.
    pub store: StoreConfig,
    pub logging: LoggingConfig,
    pub audit: AuditConfig,
    pub metrics: MetricsConfig,
    pub caches: HotPathCaches,
    pub observability: ObservabilityConfig,
    pub event_bus: EventBusKind,
    pub redis: RedisConfig,
    pub http_cache: HttpCacheConfig,
    pub rate_limit: RateLimitConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    /// Append to this file instead of stdout.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    pub enabled: bool,
    pub log_file: Option<PathBuf>,
    pub create_dir: bool,
    pub store_in_db: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// JSON summary path; Prometheus text is served at `{path}/prometheus`.
    pub path: String,
}

/// TTLs and sizes of the caches on the request path.
#[derive(Debug, Clone, PartialEq)]
pub struct HotPathCaches {
    pub enforce_project_active: bool,
    pub project_active_ttl: Duration,
    pub project_active_max: u64,
    pub api_key_ttl: Duration,
    pub api_key_max: u64,
    pub token_ttl: Duration,
    pub token_max: u64,
    /// Bounded queue of usage updates of unlimited tokens.
    pub usage_buffer: usize,
    pub cache_stats_buffer: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservabilityConfig {
    pub enabled: bool,
    pub buffer_size: usize,
    pub max_request_body_bytes: usize,
    pub max_response_body_bytes: usize,
}

/// Redis as every feature of the process reaches it (`REDIS_URL`, else `REDIS_ADDR` + `REDIS_DB` +
/// `REDIS_PASSWORD`), parsed by the event-bus crate so the server and the dispatcher agree.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub settings: RedisSettings,
    pub stream_key: String,
    pub stream_max_len: u64,
    /// The Redis Streams publisher's spool (`None` = `LLM_PROXY_EVENT_SPOOL_MAX_BYTES=0`).
    pub event_spool: Option<SpoolSettings>,
}

#[derive(Debug, Clone)]
pub struct HttpCacheConfig {
    pub enabled: bool,
    pub backend: HttpCacheBackend,
    pub stream_responses: bool,
    pub max_object_bytes: u64,
    pub max_bytes: u64,
    pub default_ttl: Duration,
    /// `REDIS_CACHE_URL`: a separate Redis for the cache; `None` = the shared connection.
    pub redis: Option<RedisSettings>,
    pub key_prefix: String,
    pub redis_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub prefix: String,
    pub key_secret: Option<Secret>,
    pub window: Duration,
    pub max: u64,
    pub fail_open: bool,
}

impl ServerConfig {
    /// Whether a feature uses the shared Redis connection: the Redis Streams bus, the `redis` cache
    /// backend without its own `REDIS_CACHE_URL`, or distributed rate limits.
    pub fn needs_shared_redis(&self) -> bool {
        self.event_bus == EventBusKind::RedisStreams
            || (self.http_cache.enabled
                && self.http_cache.backend == HttpCacheBackend::Redis
                && self.http_cache.redis.is_none())
            || self.rate_limit.enabled
    }
}

impl LoggingConfig {
    /// Reads `LOG_LEVEL`, `LOG_FORMAT` and `LOG_FILE` alone (the dispatcher needs no server settings).
    pub fn from_env() -> Result<Self, ConfigError> {
        logging_config(&Reader::from_process_env())
    }
}

fn logging_config<F: Fn(&str) -> Option<String>>(
    e: &Reader<F>,
) -> Result<LoggingConfig, ConfigError> {
    Ok(LoggingConfig {
        level: e.keyword(env::LOG_LEVEL)?,
        format: e.keyword(env::LOG_FORMAT)?,
        file: e.optional(env::LOG_FILE)?.map(PathBuf::from),
    })
}

impl ServerConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (a name → value function).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let e = Reader::new(lookup);
        let management_token =
            e.optional(env::MANAGEMENT_TOKEN)?
                .map(Secret::new)
                .ok_or(ConfigError::Missing {
                    name: env::MANAGEMENT_TOKEN,
                })?;
        let encryption_key = e
            .optional(env::ENCRYPTION_KEY)?
            .map(|key| {
                EncryptionKey::from_base64(&key)
                    .map_err(|err| ValueError::new(env::ENCRYPTION_KEY, &key, err.to_string()))
            })
            .transpose()?;
        if e.bool(env::REQUIRE_ENCRYPTION_KEY)? && encryption_key.is_none() {
            return Err(ConfigError::Missing {
                name: env::ENCRYPTION_KEY,
            });
        }
        let max_concurrent_requests: usize = e.integer(env::MAX_CONCURRENT_REQUESTS)?;
        Ok(Self {
            listen_addr: e.listen_addr(env::LISTEN_ADDR)?,
            request_timeout: e.duration(env::REQUEST_TIMEOUT)?,
            max_request_size: e.size(env::MAX_REQUEST_SIZE)?,
            max_concurrent_requests: Some(max_concurrent_requests).filter(|n| *n > 0),
            connections: ConnectionSettings {
                max_connections: e.integer(env::LLM_PROXY_MAX_CONNECTIONS)?,
                header_read_timeout: e.duration(env::LLM_PROXY_HEADER_READ_TIMEOUT)?,
                body_read_timeout: e.duration(env::LLM_PROXY_BODY_READ_TIMEOUT)?,
            },
            trusted_proxies: TrustedProxies::new(e.ip_networks(env::LLM_PROXY_TRUSTED_PROXIES)?),
            circuit_breaker_max_keys: e.integer(env::LLM_PROXY_CIRCUIT_BREAKER_MAX_KEYS)?,
            shutdown_timeout: e.duration(env::SHUTDOWN_TIMEOUT)?,
            management_token,
            provider: providers::load_provider(
                std::path::Path::new(&e.text(env::API_CONFIG_PATH)?),
                &e.text(env::DEFAULT_API_PROVIDER)?,
                &e.text(env::OPENAI_API_URL)?,
            )?,
            store: store_config(&e, encryption_key)?,
            logging: logging_config(&e)?,
            audit: AuditConfig {
                enabled: e.bool(env::AUDIT_ENABLED)?,
                log_file: e.optional(env::AUDIT_LOG_FILE)?.map(PathBuf::from),
                create_dir: e.bool(env::AUDIT_CREATE_DIR)?,
                store_in_db: e.bool(env::AUDIT_STORE_IN_DB)?,
            },
            metrics: MetricsConfig {
                enabled: e.bool(env::ENABLE_METRICS)?,
                path: e.metrics_path(env::METRICS_PATH)?,
            },
            caches: HotPathCaches {
                enforce_project_active: e.bool(env::LLM_PROXY_ENFORCE_PROJECT_ACTIVE)?,
                project_active_ttl: e.duration(env::LLM_PROXY_ACTIVE_CACHE_TTL)?,
                project_active_max: e.integer(env::LLM_PROXY_ACTIVE_CACHE_MAX)?,
                api_key_ttl: e.duration(env::LLM_PROXY_API_KEY_CACHE_TTL)?,
                api_key_max: e.integer(env::LLM_PROXY_API_KEY_CACHE_MAX)?,
                token_ttl: e.duration(env::LLM_PROXY_TOKEN_CACHE_TTL)?,
                token_max: e.integer(env::LLM_PROXY_TOKEN_CACHE_MAX)?,
                usage_buffer: e.integer(env::USAGE_STATS_BUFFER_SIZE)?,
                cache_stats_buffer: e.integer(env::CACHE_STATS_BUFFER_SIZE)?,
            },
            observability: ObservabilityConfig {
                enabled: e.bool(env::OBSERVABILITY_ENABLED)?,
                buffer_size: e.integer(env::OBSERVABILITY_BUFFER_SIZE)?,
                max_request_body_bytes: e.size(env::OBSERVABILITY_MAX_REQUEST_BODY_BYTES)?,
                max_response_body_bytes: e.size(env::OBSERVABILITY_MAX_RESPONSE_BODY_BYTES)?,
            },
            event_bus: e.keyword(env::LLM_PROXY_EVENT_BUS)?,
            redis: RedisConfig {
                settings: RedisSettings::from_reader(&e)?,
                stream_key: e.text(env::REDIS_STREAM_KEY)?,
                stream_max_len: e.integer(env::REDIS_STREAM_MAX_LEN)?,
                event_spool: SpoolSettings::from_reader(&e)?,
            },
            http_cache: HttpCacheConfig {
                enabled: e.bool(env::HTTP_CACHE_ENABLED)?,
                backend: e.keyword(env::HTTP_CACHE_BACKEND)?,
                stream_responses: e.bool(env::HTTP_CACHE_STREAM_RESPONSES)?,
                max_object_bytes: e.size(env::HTTP_CACHE_MAX_OBJECT_BYTES)?,
                max_bytes: e.size(env::HTTP_CACHE_MAX_BYTES)?,
                default_ttl: e.duration(env::HTTP_CACHE_DEFAULT_TTL)?,
                redis: e
                    .optional(env::REDIS_CACHE_URL)?
                    .map(|url| RedisSettings::from_url(env::REDIS_CACHE_URL, &url))
                    .transpose()?,
                key_prefix: e.text(env::REDIS_CACHE_KEY_PREFIX)?,
                redis_timeout: e.duration(env::REDIS_CACHE_TIMEOUT)?,
            },
            rate_limit: RateLimitConfig {
                enabled: e.bool(env::DISTRIBUTED_RATE_LIMIT_ENABLED)?,
                prefix: e.text(env::DISTRIBUTED_RATE_LIMIT_PREFIX)?,
                key_secret: e
                    .optional(env::DISTRIBUTED_RATE_LIMIT_KEY_SECRET)?
                    .map(Secret::new),
                window: e.duration(env::DISTRIBUTED_RATE_LIMIT_WINDOW)?,
                max: e.integer(env::DISTRIBUTED_RATE_LIMIT_MAX)?,
                fail_open: e.bool(env::DISTRIBUTED_RATE_LIMIT_FALLBACK)?,
            },
        })
    }
}

fn store_config<F: Fn(&str) -> Option<String>>(
    e: &Reader<F>,
    encryption_key: Option<EncryptionKey>,
) -> Result<StoreConfig, ConfigError> {
    // Read whatever the driver, so a malformed URL shows before it is needed.
    let database_url = e.optional(env::DATABASE_URL)?;
    let driver = match e.keyword(env::DB_DRIVER)? {
        DbDriver::Sqlite => Driver::Sqlite {
            path: PathBuf::from(e.text(env::DATABASE_PATH)?),
        },
        DbDriver::Postgres => Driver::Postgres {
            url: database_url.ok_or(ConfigError::Missing {
                name: env::DATABASE_URL,
            })?,
        },
    };
    let pool_size: u32 = e.integer(env::DATABASE_POOL_SIZE)?;
    Ok(StoreConfig {
        driver,
        pool_size,
        max_idle: e
            .integer::<u32>(env::DATABASE_MAX_IDLE_CONNS)?
            .min(pool_size),
        conn_max_lifetime: e.duration(env::DATABASE_CONN_MAX_LIFETIME)?,
        encryption_key,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const KEY_32: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn config(vars: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
        let mut map: HashMap<String, String> = HashMap::new();
        map.insert(
            env::MANAGEMENT_TOKEN.into(),
            "management-secret-value".into(),
        );
        map.insert(
            env::API_CONFIG_PATH.into(),
            "/nonexistent/llm-proxy/providers.yaml".into(),
        );
        for (k, v) in vars {
            map.insert((*k).into(), (*v).into());
        }
        ServerConfig::from_lookup(|name| map.get(name).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> String {
        match config(vars) {
            Err(err) => err.to_string(),
            Ok(_) => panic!("expected {vars:?} to be rejected"),
        }
    }

    #[test]
    fn defaults_of_the_contract_are_applied() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.max_request_size, 10_485_760);
        assert_eq!(c.max_concurrent_requests, Some(100));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.provider.name, "openai");
        assert_eq!(c.provider.base_url.to_string(), "https://api.openai.com/");
        assert!(
            matches!(&c.store.driver, Driver::Sqlite { path } if path == std::path::Path::new("./data/llm-proxy.db"))
        );
        assert_eq!(c.store.pool_size, 10);
        assert_eq!(c.store.max_idle, 5);
        assert_eq!(c.store.conn_max_lifetime, Duration::from_secs(3600));
        assert_eq!(
            c.logging,
            LoggingConfig {
                level: LogLevel::Info,
                format: LogFormat::Json,
                file: None
            }
        );
        assert_eq!(
            c.metrics,
            MetricsConfig {
                enabled: true,
                path: "/metrics".into()
            }
        );
        assert!(c.caches.enforce_project_active);
        assert_eq!(c.caches.token_ttl, Duration::from_secs(300));
        assert_eq!(c.caches.usage_buffer, 1000);
        assert_eq!(c.observability.max_response_body_bytes, 262_144);
        assert_eq!(c.event_bus, EventBusKind::InMemory);
        assert!(c.store.encryption_key.is_none());
        assert!(c.audit.enabled);
        assert_eq!(c.http_cache.default_ttl, Duration::from_secs(300));
    }

    #[test]
    fn management_token_is_required() {
        let err = ServerConfig::from_lookup(|_| None).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing {
                name: env::MANAGEMENT_TOKEN
            }
        );
        let blank = ServerConfig::from_lookup(|name| {
            (name == env::MANAGEMENT_TOKEN).then(|| "  ".to_owned())
        });
        assert!(matches!(blank, Err(ConfigError::Missing { .. })));
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let cases = [
            (env::LISTEN_ADDR, "8080"),
            (env::REQUEST_TIMEOUT, "30"),
            (env::REQUEST_TIMEOUT, "0"),
            (env::MAX_REQUEST_SIZE, "big"),
            (env::MAX_REQUEST_SIZE, "0"),
            (env::MAX_CONCURRENT_REQUESTS, "-1"),
            (env::LLM_PROXY_CIRCUIT_BREAKER_MAX_KEYS, "0"),
            (env::LLM_PROXY_CIRCUIT_BREAKER_MAX_KEYS, "many"),
            (env::SHUTDOWN_TIMEOUT, "forever"),
            (env::DB_DRIVER, "mysql"),
            (env::DATABASE_POOL_SIZE, "0"),
            (env::DATABASE_CONN_MAX_LIFETIME, "1 hour"),
            (env::REQUIRE_ENCRYPTION_KEY, "maybe"),
            (env::LOG_LEVEL, "verbose"),
            (env::LOG_FORMAT, "console"),
            (env::AUDIT_ENABLED, "2"),
            (env::ENABLE_METRICS, "sure"),
            (env::METRICS_PATH, "metrics"),
            (env::METRICS_PATH, "/v1/metrics"),
            (env::METRICS_PATH, "/health"),
            (env::LLM_PROXY_TOKEN_CACHE_TTL, "5"),
            (env::LLM_PROXY_TOKEN_CACHE_MAX, "many"),
            (env::USAGE_STATS_BUFFER_SIZE, "0"),
            (env::OBSERVABILITY_BUFFER_SIZE, "0"),
            (env::OBSERVABILITY_MAX_REQUEST_BODY_BYTES, "1.5MiB"),
            (env::LLM_PROXY_EVENT_BUS, "kafka"),
            (env::REDIS_DB, "x"),
            (env::HTTP_CACHE_BACKEND, "memcached"),
            (env::HTTP_CACHE_DEFAULT_TTL, "300"),
            (env::DISTRIBUTED_RATE_LIMIT_WINDOW, "0"),
            (env::OPENAI_API_URL, "ftp://example.com"),
        ];
        for (name, value) in cases {
            let message = error(&[(name, value)]);
            assert!(message.contains(name), "{name}={value}: {message}");
            if name != env::OPENAI_API_URL {
                assert!(
                    message.contains(&format!("{value:?}")),
                    "{name}={value}: {message}"
                );
            }
        }
    }

    #[test]
    fn database_driver_is_never_a_silent_fallback() {
        assert!(error(&[(env::DB_DRIVER, "postgres")]).contains("DATABASE_URL is required"));
        let c = config(&[
            (env::DB_DRIVER, "Postgres"),
            (env::DATABASE_URL, "postgres://u:pw@db/x"),
        ])
        .unwrap();
        assert!(matches!(c.store.driver, Driver::Postgres { .. }));
        let bad_url = error(&[
            (env::DB_DRIVER, "postgres"),
            (env::DATABASE_URL, "mysql://u:hunter2@db"),
        ]);
        assert!(
            bad_url.contains("DATABASE_URL") && !bad_url.contains("hunter2"),
            "{bad_url}"
        );
        let sqlite = config(&[(env::DATABASE_PATH, "/tmp/x.db")]).unwrap();
        assert!(
            matches!(&sqlite.store.driver, Driver::Sqlite { path } if path == std::path::Path::new("/tmp/x.db"))
        );
    }

    #[test]
    fn encryption_key_is_validated_without_echoing_it() {
        assert!(
            config(&[(env::ENCRYPTION_KEY, KEY_32)])
                .unwrap()
                .store
                .encryption_key
                .is_some()
        );
        let short = error(&[(env::ENCRYPTION_KEY, "c2hvcnQta2V5")]);
        assert!(
            short.contains("ENCRYPTION_KEY") && !short.contains("c2hvcnQta2V5"),
            "{short}"
        );
        assert!(error(&[(env::ENCRYPTION_KEY, "not base64!")]).contains("base64"));
        assert!(
            error(&[(env::REQUIRE_ENCRYPTION_KEY, "true")]).contains("ENCRYPTION_KEY is required")
        );
        assert!(
            config(&[
                (env::REQUIRE_ENCRYPTION_KEY, "yes"),
                (env::ENCRYPTION_KEY, KEY_32)
            ])
            .is_ok()
        );
    }

    #[test]
    fn check_agrees_with_the_server_on_every_variable_it_reads() {
        let server_vars = env::ALL
            .iter()
            .filter(|var| matches!(var.scope, env::Scope::Server | env::Scope::Both));
        for var in server_vars {
            assert_eq!(env::check(var.name, var.default), Ok(()), "{}", var.name);
            // The token is required and has no default; the providers file is kept out of reach.
            if var.name != env::MANAGEMENT_TOKEN && var.name != env::API_CONFIG_PATH {
                let at_default = config(&[(var.name, var.default)]);
                assert!(
                    at_default.is_ok(),
                    "{}={:?}: {:?}",
                    var.name,
                    var.default,
                    at_default.err()
                );
            }
            let Some(bad) = var.syntax.refused_example() else {
                continue;
            };
            let expected = env::check(var.name, bad).map_err(|e| e.to_string());
            assert!(expected.is_err(), "check accepts {}={bad:?}", var.name);
            assert_eq!(
                Err(error(&[(var.name, bad)])),
                expected,
                "{}={bad:?}",
                var.name
            );
        }
    }

    #[test]
    fn the_server_and_the_dispatcher_read_the_event_bus_alike() {
        use llm_proxy_dispatcher::{DispatcherArgs, DispatcherConfig};
        for value in [
            "in-memory",
            "redis-streams",
            "redis",
            "Redis-Streams",
            "IN-MEMORY",
            "kafka",
        ] {
            let server = config(&[(env::LLM_PROXY_EVENT_BUS, value)])
                .map(|c| c.event_bus)
                .map_err(|e| e.to_string());
            let dispatcher = DispatcherConfig::from_lookup(DispatcherArgs::default(), &|name| {
                (name == env::LLM_PROXY_EVENT_BUS).then(|| value.to_owned())
            })
            .map(|c| c.bus)
            .map_err(|e| e.to_string());
            assert_eq!(server, dispatcher, "{value}");
        }
    }

    #[test]
    fn a_malformed_database_url_is_refused_whatever_the_driver_and_never_shown() {
        for driver in ["sqlite", "postgres"] {
            let message = error(&[
                (env::DB_DRIVER, driver),
                (env::DATABASE_URL, "mysql://u:hunter2@db"),
            ]);
            assert!(message.contains("DATABASE_URL"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn typed_values_are_parsed() {
        let c = config(&[
            (env::LISTEN_ADDR, "127.0.0.1:0"),
            (env::MAX_CONCURRENT_REQUESTS, "0"),
            (env::MAX_REQUEST_SIZE, "1MiB"),
            (env::LOG_FORMAT, "TEXT"),
            (env::LOG_LEVEL, "debug"),
            (env::LOG_FILE, "/tmp/proxy.log"),
            (env::METRICS_PATH, "/stats/"),
            (env::LLM_PROXY_ENFORCE_PROJECT_ACTIVE, "no"),
            (env::LLM_PROXY_EVENT_BUS, "redis"),
            (env::DATABASE_MAX_IDLE_CONNS, "50"),
        ])
        .unwrap();
        assert_eq!(c.listen_addr.port(), 0);
        assert_eq!(c.max_concurrent_requests, None);
        assert_eq!(c.max_request_size, 1 << 20);
        assert_eq!(c.logging.format, LogFormat::Text);
        assert_eq!(c.logging.level, LogLevel::Debug);
        assert_eq!(c.logging.file, Some("/tmp/proxy.log".into()));
        assert_eq!(c.metrics.path, "/stats");
        assert!(!c.caches.enforce_project_active);
        assert_eq!(c.event_bus, EventBusKind::RedisStreams);
        assert_eq!(
            c.store.max_idle, 10,
            "idle connections are capped by the pool size"
        );
    }

    #[test]
    fn redis_urls_must_be_redis_urls_and_stay_secret() {
        let message = error(&[(env::REDIS_URL, "http://:pw@host")]);
        assert!(
            message.contains("REDIS_URL") && !message.contains("pw@"),
            "{message}"
        );
        assert!(config(&[(env::REDIS_URL, "rediss://:pw@host:6380/0")]).is_ok());
        let message = error(&[(env::REDIS_CACHE_URL, "memcached://:pw@host")]);
        assert!(
            message.contains("REDIS_CACHE_URL") && !message.contains("pw@"),
            "{message}"
        );
        let message = error(&[(env::REDIS_ADDR, "redis-without-port")]);
        assert!(
            message.contains("REDIS_ADDR") && message.contains("host:port"),
            "{message}"
        );
    }

    #[test]
    fn the_shared_redis_connection_exists_only_for_features_that_use_it() {
        assert!(!config(&[]).unwrap().needs_shared_redis());
        let bus = config(&[(env::LLM_PROXY_EVENT_BUS, "redis")]).unwrap();
        assert!(bus.needs_shared_redis());
        let cache = config(&[(env::HTTP_CACHE_BACKEND, "redis")]).unwrap();
        assert!(cache.needs_shared_redis());
        let own_cache = config(&[
            (env::HTTP_CACHE_BACKEND, "redis"),
            (env::REDIS_CACHE_URL, "redis://cache:6379/1"),
        ])
        .unwrap();
        assert!(!own_cache.needs_shared_redis());
        let limits = config(&[(env::DISTRIBUTED_RATE_LIMIT_ENABLED, "true")]).unwrap();
        assert!(limits.needs_shared_redis());
    }

    #[test]
    fn a_present_but_invalid_provider_file_is_an_error() {
        let path =
            std::env::temp_dir().join(format!("llm-proxy-bad-{}.yaml", uuid::Uuid::new_v4()));
        std::fs::write(&path, "apis:\n  openai:\n    base_url: https://x\n    allowed_endpoints: []\n    allowed_methods: [GET]\n").unwrap();
        let message = error(&[(env::API_CONFIG_PATH, path.to_str().unwrap())]);
        assert!(
            message.contains("allowed_endpoints must not be empty"),
            "{message}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn debug_output_never_contains_secrets() {
        let c = config(&[
            (env::ENCRYPTION_KEY, KEY_32),
            (env::DB_DRIVER, "postgres"),
            (env::DATABASE_URL, "postgres://u:db-password@db/x"),
            (env::REDIS_PASSWORD, "redis-password"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        for secret in [
            "management-secret-value",
            KEY_32,
            "db-password",
            "redis-password",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked into Debug");
        }
    }
}
