//! Event-bus and Redis configuration, read from the environment once and validated.
//!
//! Every value comes from a variable of the `llm-proxy-env` contract; an empty variable means its
//! default. Errors name the variable; values of secret variables (`REDIS_URL`, `REDIS_PASSWORD`)
//! never appear in errors, `Debug` output or logs.

use std::fmt;
use std::time::Duration;

use llm_proxy_env as env;
use redis::IntoConnectionInfo as _;

/// A configuration value that cannot be used. Secret values are never included.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A non-secret variable holds an unusable value.
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What it held.
        value: String,
        /// What is expected.
        reason: &'static str,
    },
    /// A secret variable holds an unusable value (the value is not repeated).
    #[error("{name} is invalid: {reason}")]
    InvalidSecret {
        /// The variable.
        name: &'static str,
        /// What is expected.
        reason: &'static str,
    },
}

/// Reads one variable through `lookup`; unset or blank means the contract's default.
pub(crate) fn read_var(lookup: &impl Fn(&str) -> Option<String>, name: &'static str) -> String {
    match lookup(name) {
        Some(value) if !value.trim().is_empty() => value.trim().to_string(),
        _ => env::find(name)
            .map(|var| var.default)
            .unwrap_or_default()
            .to_string(),
    }
}

/// Reads a variable that must hold a number of at least `min`.
pub fn read_number<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    min: T,
    reason: &'static str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd,
{
    let value = read_var(lookup, name);
    match value.parse::<T>() {
        Ok(number) if number >= min => Ok(number),
        _ => Err(ConfigError::Invalid {
            name,
            value,
            reason,
        }),
    }
}

/// Reads a variable holding a Go-style duration (`500ms`, `5s`, `1m30s`, `1h`).
pub fn read_duration(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    allow_zero: bool,
) -> Result<Duration, ConfigError> {
    let value = read_var(lookup, name);
    match parse_duration(&value) {
        Some(duration) if allow_zero || !duration.is_zero() => Ok(duration),
        _ => Err(ConfigError::Invalid {
            name,
            value,
            reason: if allow_zero {
                "expected a duration such as 500ms, 5s, 1m30s"
            } else {
                "expected a positive duration such as 500ms, 5s, 1m30s"
            },
        }),
    }
}

/// Parses the integer subset of Go's `time.ParseDuration`: `0`, or number+unit groups (ns, us, ms, s, m, h).
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return None;
        }
        let (digits, after) = rest.split_at(digits_end);
        let amount: u64 = digits.parse().ok()?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let part = match unit {
            "ns" => Duration::from_nanos(amount),
            "us" | "µs" => Duration::from_micros(amount),
            "ms" => Duration::from_millis(amount),
            "s" => Duration::from_secs(amount),
            "m" => Duration::from_secs(amount.checked_mul(60)?),
            "h" => Duration::from_secs(amount.checked_mul(3600)?),
            _ => return None,
        };
        total = total.checked_add(part)?;
        rest = next;
    }
    Some(total)
}

/// Which event bus carries instrumentation events (`LLM_PROXY_EVENT_BUS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventBusKind {
    /// In-process fan-out; nothing crosses process boundaries.
    InMemory,
    /// A Redis stream shared by the proxies and the dispatchers.
    RedisStreams,
}

impl EventBusKind {
    /// Reads `LLM_PROXY_EVENT_BUS` from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads `LLM_PROXY_EVENT_BUS` (`in-memory` default, `redis-streams`, or its alias `redis`).
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = read_var(lookup, env::LLM_PROXY_EVENT_BUS);
        match value.as_str() {
            "in-memory" => Ok(Self::InMemory),
            "redis-streams" | "redis" => Ok(Self::RedisStreams),
            _ => Err(ConfigError::Invalid {
                name: env::LLM_PROXY_EVENT_BUS,
                value,
                reason: "expected in-memory, redis-streams or redis",
            }),
        }
    }

    /// The canonical name, as accepted by `LLM_PROXY_EVENT_BUS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InMemory => "in-memory",
            Self::RedisStreams => "redis-streams",
        }
    }
}

/// Timeouts of the process's Redis connection manager.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REDIS_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
const REDIS_RECONNECT_RETRIES: usize = 2;

/// Where and how to reach Redis: `REDIS_URL`, or `REDIS_ADDR` + `REDIS_DB` + `REDIS_PASSWORD`.
#[derive(Clone)]
pub struct RedisSettings {
    connection: redis::ConnectionInfo,
    /// `redis[s]://host:port/db` without credentials, for logs.
    display: String,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("address", &self.display)
            .finish_non_exhaustive()
    }
}

impl RedisSettings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup`. `REDIS_URL` wins when set.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let url = read_var(lookup, env::REDIS_URL);
        if !url.is_empty() {
            return Self::from_url(env::REDIS_URL, &url);
        }
        let addr = read_var(lookup, env::REDIS_ADDR);
        let db: i64 = read_number(lookup, env::REDIS_DB, 0, "expected a database number >= 0")?;
        let password = read_var(lookup, env::REDIS_PASSWORD);
        Self::from_parts(&addr, db, &password)
    }

    /// Reads a full `redis://` or `rediss://` URL held by the variable `name` (which errors name).
    pub fn from_url(name: &'static str, url: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::InvalidSecret {
            name,
            reason: "expected a redis:// or rediss:// URL",
        };
        let parsed = redis::parse_redis_url(url).ok_or_else(invalid)?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(invalid());
        }
        let host = parsed.host_str().unwrap_or_default().to_string();
        if host.is_empty() {
            return Err(ConfigError::InvalidSecret {
                name,
                reason: "the URL has no host",
            });
        }
        let connection = url.into_connection_info().map_err(|_| invalid())?;
        let display = format!(
            "{}://{}:{}/{}",
            parsed.scheme(),
            host,
            parsed.port().unwrap_or(6379),
            connection.redis_settings().db()
        );
        Ok(Self {
            connection,
            display,
        })
    }

    fn from_parts(addr: &str, db: i64, password: &str) -> Result<Self, ConfigError> {
        // A URL or `user:password@host` pasted here would be echoed by the error below.
        if addr.contains('@') || addr.contains("://") {
            return Err(ConfigError::InvalidSecret {
                name: env::REDIS_ADDR,
                reason: "expected host:port; a password goes in REDIS_PASSWORD and a URL in REDIS_URL",
            });
        }
        let invalid_addr = || ConfigError::Invalid {
            name: env::REDIS_ADDR,
            value: addr.to_string(),
            reason: "expected host:port",
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(invalid_addr)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(invalid_addr());
        }
        let connection = format!("redis://{host}:{port}/")
            .into_connection_info()
            .map_err(|_| invalid_addr())?;
        let mut redis_settings = connection.redis_settings().clone().set_db(db);
        if !password.is_empty() {
            redis_settings = redis_settings.set_password(password);
        }
        let connection = connection.set_redis_settings(redis_settings);
        Ok(Self {
            connection,
            display: format!("redis://{host}:{port}/{db}"),
        })
    }

    /// The address without credentials, safe to log.
    pub fn display_address(&self) -> &str {
        &self.display
    }

    /// Whether a password is configured (never the password itself).
    pub fn has_password(&self) -> bool {
        self.connection.redis_settings().password().is_some()
    }

    /// Creates the process's reconnecting connection manager without connecting: the first command
    /// connects, and a lost connection is re-established on a later command.
    ///
    /// `response_timeout` bounds every command, so it must exceed any `BLOCK` time used on it.
    pub fn connection_manager(
        &self,
        response_timeout: Duration,
    ) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
        let client = redis::Client::open(self.connection.clone())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(REDIS_RECONNECT_RETRIES)
            .set_max_delay(REDIS_RECONNECT_MAX_DELAY);
        redis::aio::ConnectionManager::new_lazy_with_config(client, config)
    }
}

impl crate::spool::SpoolSettings {
    /// Reads `LLM_PROXY_EVENT_SPOOL_PATH` and `LLM_PROXY_EVENT_SPOOL_MAX_BYTES`; `None` when the
    /// bound is 0 (no spool: events beyond the queue are dropped and counted).
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let max_bytes: u64 = read_number(
            lookup,
            env::LLM_PROXY_EVENT_SPOOL_MAX_BYTES,
            0,
            "expected a number of bytes >= 0",
        )?;
        let path = read_var(lookup, env::LLM_PROXY_EVENT_SPOOL_PATH);
        if max_bytes == 0 {
            return Ok(None);
        }
        if path.is_empty() {
            return Err(ConfigError::Invalid {
                name: env::LLM_PROXY_EVENT_SPOOL_PATH,
                value: path,
                reason: "expected a file path",
            });
        }
        Ok(Some(Self {
            path: path.into(),
            max_bytes,
        }))
    }
}

/// Redis Streams settings shared by the publisher (key, MAXLEN) and the consumer (group, reads, claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// `REDIS_STREAM_KEY`.
    pub stream_key: String,
    /// `REDIS_STREAM_MAX_LEN`: approximate MAXLEN of XADD; 0 = unbounded.
    pub max_len: u64,
    /// `REDIS_CONSUMER_GROUP`.
    pub group: String,
    /// `REDIS_CONSUMER_NAME`, when set.
    pub consumer_name: Option<String>,
    /// `REDIS_STREAM_BLOCK_TIME`: how long one XREADGROUP waits for new entries.
    pub block: Duration,
    /// `REDIS_STREAM_CLAIM_TIME`: pending entries idle this long are taken over.
    pub claim_idle: Duration,
    /// `REDIS_STREAM_BATCH_SIZE`: XREADGROUP COUNT.
    pub read_count: usize,
    /// `OBSERVABILITY_BUFFER_SIZE`: the publisher's bounded queue.
    pub buffer_size: usize,
}

impl StreamSettings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup`.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let consumer_name = read_var(lookup, env::REDIS_CONSUMER_NAME);
        Ok(Self {
            stream_key: read_var(lookup, env::REDIS_STREAM_KEY),
            max_len: read_number(
                lookup,
                env::REDIS_STREAM_MAX_LEN,
                0,
                "expected an integer >= 0",
            )?,
            group: read_var(lookup, env::REDIS_CONSUMER_GROUP),
            consumer_name: (!consumer_name.is_empty()).then_some(consumer_name),
            block: read_duration(lookup, env::REDIS_STREAM_BLOCK_TIME, false)?,
            claim_idle: read_duration(lookup, env::REDIS_STREAM_CLAIM_TIME, false)?,
            read_count: read_number(
                lookup,
                env::REDIS_STREAM_BATCH_SIZE,
                1,
                "expected an integer >= 1",
            )?,
            buffer_size: read_number(
                lookup,
                env::OBSERVABILITY_BUFFER_SIZE,
                1,
                "expected an integer >= 1",
            )?,
        })
    }

    /// The configured consumer name, or `dispatcher-<service>-<hostname>-<pid>` (as upstream).
    pub fn consumer_name_for(&self, service: &str) -> String {
        self.consumer_name.clone().unwrap_or_else(|| {
            format!("dispatcher-{service}-{}-{}", hostname(), std::process::id())
        })
    }
}

/// The host name from `HOSTNAME` (set in containers) or the kernel, else `unknown`.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn durations_follow_go_syntax() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("5 s"), None);
    }

    #[test]
    fn event_bus_kind_accepts_redis_alias_and_rejects_unknown_values() {
        assert_eq!(
            EventBusKind::from_lookup(&lookup(&[])).unwrap(),
            EventBusKind::InMemory
        );
        let redis = lookup(&[(env::LLM_PROXY_EVENT_BUS, "redis")]);
        assert_eq!(
            EventBusKind::from_lookup(&redis).unwrap(),
            EventBusKind::RedisStreams
        );
        let err =
            EventBusKind::from_lookup(&lookup(&[(env::LLM_PROXY_EVENT_BUS, "kafka")])).unwrap_err();
        assert!(err.to_string().contains("LLM_PROXY_EVENT_BUS"), "{err}");
        assert!(err.to_string().contains("kafka"), "{err}");
    }

    #[test]
    fn redis_url_wins_over_addr_and_is_never_printed() {
        let settings = RedisSettings::from_lookup(&lookup(&[
            (env::REDIS_URL, "rediss://:s3cret-pw@cache.example:6380/2"),
            (env::REDIS_ADDR, "other:1"),
        ]))
        .unwrap();
        assert_eq!(settings.display_address(), "rediss://cache.example:6380/2");
        assert!(settings.has_password());
        assert!(!format!("{settings:?}").contains("s3cret-pw"));

        let err = RedisSettings::from_lookup(&lookup(&[(env::REDIS_URL, "http://:s3cret-pw@h/")]))
            .unwrap_err();
        assert!(err.to_string().contains("REDIS_URL"), "{err}");
        assert!(!err.to_string().contains("s3cret-pw"), "{err}");
    }

    #[test]
    fn redis_addr_db_and_password_are_combined() {
        let settings = RedisSettings::from_lookup(&lookup(&[
            (env::REDIS_ADDR, "redis-master:6379"),
            (env::REDIS_DB, "3"),
            (env::REDIS_PASSWORD, "pw-value"),
        ]))
        .unwrap();
        assert_eq!(settings.display_address(), "redis://redis-master:6379/3");
        assert!(settings.has_password());
        assert!(!format!("{settings:?}").contains("pw-value"));

        let defaults = RedisSettings::from_lookup(&lookup(&[])).unwrap();
        assert_eq!(defaults.display_address(), "redis://localhost:6379/0");
        assert!(!defaults.has_password());

        for (name, value) in [
            (env::REDIS_ADDR, "no-port"),
            (env::REDIS_ADDR, "h:99999"),
            (env::REDIS_DB, "-1"),
        ] {
            let err = RedisSettings::from_lookup(&lookup(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        for pasted in ["redis://:hunter2@redis:6379", "default:hunter2@redis:6379"] {
            let err =
                RedisSettings::from_lookup(&lookup(&[(env::REDIS_ADDR, pasted)])).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains("REDIS_ADDR") && message.contains("REDIS_PASSWORD"),
                "{message}"
            );
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn the_spool_is_on_by_default_off_with_a_zero_bound_and_validated() {
        use crate::spool::SpoolSettings;
        let default = SpoolSettings::from_lookup(&lookup(&[])).unwrap().unwrap();
        assert_eq!(
            default.path,
            std::path::Path::new("./data/event-spool.jsonl")
        );
        assert_eq!(default.max_bytes, 256 << 20);
        let off = lookup(&[(env::LLM_PROXY_EVENT_SPOOL_MAX_BYTES, "0")]);
        assert_eq!(SpoolSettings::from_lookup(&off).unwrap(), None);
        let bad = lookup(&[(env::LLM_PROXY_EVENT_SPOOL_MAX_BYTES, "lots")]);
        let err = SpoolSettings::from_lookup(&bad).unwrap_err();
        assert!(
            err.to_string()
                .contains(env::LLM_PROXY_EVENT_SPOOL_MAX_BYTES),
            "{err}"
        );
    }

    #[test]
    fn stream_settings_have_upstream_defaults_and_validate() {
        let settings = StreamSettings::from_lookup(&lookup(&[])).unwrap();
        assert_eq!(settings.stream_key, "llm-proxy-events");
        assert_eq!(settings.max_len, 10_000);
        assert_eq!(settings.group, "llm-proxy-dispatchers");
        assert_eq!(settings.block, Duration::from_secs(5));
        assert_eq!(settings.claim_idle, Duration::from_secs(30));
        assert_eq!(settings.read_count, 100);
        assert_eq!(settings.buffer_size, 1000);
        assert!(
            settings
                .consumer_name_for("file")
                .starts_with("dispatcher-file-")
        );

        for (name, value) in [
            (env::REDIS_STREAM_BLOCK_TIME, "0"),
            (env::REDIS_STREAM_CLAIM_TIME, "soon"),
            (env::REDIS_STREAM_BATCH_SIZE, "0"),
            (env::REDIS_STREAM_MAX_LEN, "-1"),
            (env::OBSERVABILITY_BUFFER_SIZE, "many"),
        ] {
            let err = StreamSettings::from_lookup(&lookup(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        let named =
            StreamSettings::from_lookup(&lookup(&[(env::REDIS_CONSUMER_NAME, "c1")])).unwrap();
        assert_eq!(named.consumer_name_for("file"), "c1");
    }
}
