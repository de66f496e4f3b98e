//! Redis, stream and spool configuration of the event bus, read from the environment once and
//! validated.
//!
//! Every value comes from a variable of the `llm-proxy-env` contract and is read through its
//! [`Reader`], so the server and the dispatcher parse them alike and a bad value is the same
//! [`ValueError`] in both. Values of secret variables (`REDIS_URL`, `REDIS_PASSWORD`) never appear
//! in errors, `Debug` output or logs. The bus itself is [`llm_proxy_env::EventBusKind`].

use std::fmt;
use std::time::Duration;

use llm_proxy_env::{self as env, Reader, ValueError};
use redis::IntoConnectionInfo as _;

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
    /// Reads the variables through `lookup`. `REDIS_URL` wins when set.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ValueError> {
        Self::from_reader(&Reader::new(lookup))
    }

    /// Reads the variables through `reader`. `REDIS_URL` wins when set.
    pub fn from_reader<F: Fn(&str) -> Option<String>>(
        reader: &Reader<F>,
    ) -> Result<Self, ValueError> {
        // Every variable is checked, even those REDIS_URL overrides, so a typo shows at start-up.
        let url = reader.optional(env::REDIS_URL)?;
        let (host, port) = reader.parse(env::REDIS_ADDR, |addr| {
            env::values::parse_host_port(addr).map(|(host, port)| (host.to_owned(), port))
        })?;
        let db: i64 = reader.integer(env::REDIS_DB)?;
        let password = reader.optional(env::REDIS_PASSWORD)?;
        match url {
            Some(url) => Self::from_url(env::REDIS_URL, &url),
            None => Self::from_parts(&host, port, db, password.as_deref()),
        }
    }

    /// Reads a full `redis://` or `rediss://` URL held by the variable `name` (which errors name).
    pub fn from_url(name: &'static str, url: &str) -> Result<Self, ValueError> {
        env::check(name, url)?;
        let invalid = || ValueError::new(name, url, "expected a redis:// or rediss:// URL");
        let parsed = redis::parse_redis_url(url).ok_or_else(invalid)?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(invalid());
        }
        let host = parsed.host_str().unwrap_or_default().to_string();
        if host.is_empty() {
            return Err(ValueError::new(name, url, "the URL has no host"));
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

    fn from_parts(
        host: &str,
        port: u16,
        db: i64,
        password: Option<&str>,
    ) -> Result<Self, ValueError> {
        let connection = format!("redis://{host}:{port}/")
            .into_connection_info()
            .map_err(|_| {
                ValueError::new(
                    env::REDIS_ADDR,
                    &format!("{host}:{port}"),
                    "expected host:port",
                )
            })?;
        let mut redis_settings = connection.redis_settings().clone().set_db(db);
        if let Some(password) = password {
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
    ) -> Result<Option<Self>, ValueError> {
        Self::from_reader(&Reader::new(lookup))
    }

    /// Reads the spool variables through `reader`; see [`Self::from_lookup`].
    pub fn from_reader<F: Fn(&str) -> Option<String>>(
        reader: &Reader<F>,
    ) -> Result<Option<Self>, ValueError> {
        let max_bytes: u64 = reader.size(env::LLM_PROXY_EVENT_SPOOL_MAX_BYTES)?;
        let path = reader.text(env::LLM_PROXY_EVENT_SPOOL_PATH)?;
        if max_bytes == 0 {
            return Ok(None);
        }
        if path.is_empty() {
            return Err(ValueError::new(
                env::LLM_PROXY_EVENT_SPOOL_PATH,
                &path,
                "expected a file path",
            ));
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
    /// Reads the variables through `lookup`.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ValueError> {
        Self::from_reader(&Reader::new(lookup))
    }

    /// Reads the variables through `reader`.
    pub fn from_reader<F: Fn(&str) -> Option<String>>(
        reader: &Reader<F>,
    ) -> Result<Self, ValueError> {
        Ok(Self {
            stream_key: reader.text(env::REDIS_STREAM_KEY)?,
            max_len: reader.integer(env::REDIS_STREAM_MAX_LEN)?,
            group: reader.text(env::REDIS_CONSUMER_GROUP)?,
            consumer_name: reader.optional(env::REDIS_CONSUMER_NAME)?,
            block: reader.duration(env::REDIS_STREAM_BLOCK_TIME)?,
            claim_idle: reader.duration(env::REDIS_STREAM_CLAIM_TIME)?,
            read_count: reader.integer(env::REDIS_STREAM_BATCH_SIZE)?,
            buffer_size: reader.integer(env::OBSERVABILITY_BUFFER_SIZE)?,
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
    fn every_redis_variable_is_checked_even_when_redis_url_wins() {
        for (name, value) in [(env::REDIS_ADDR, "no-port"), (env::REDIS_DB, "one")] {
            let err = RedisSettings::from_lookup(&lookup(&[
                (env::REDIS_URL, "redis://cache:6379/0"),
                (name, value),
            ]))
            .unwrap_err();
            assert_eq!(err.name(), name, "{err}");
        }
    }

    #[test]
    fn stream_durations_take_fractions_as_the_server_does() {
        let settings = StreamSettings::from_lookup(&lookup(&[
            (env::REDIS_STREAM_BLOCK_TIME, "1.5s"),
            (env::REDIS_STREAM_CLAIM_TIME, "1m30s"),
        ]))
        .unwrap();
        assert_eq!(settings.block, Duration::from_millis(1500));
        assert_eq!(settings.claim_idle, Duration::from_secs(90));
    }

    #[test]
    fn the_spool_bound_is_a_size() {
        use crate::spool::SpoolSettings;
        let spool =
            SpoolSettings::from_lookup(&lookup(&[(env::LLM_PROXY_EVENT_SPOOL_MAX_BYTES, "64MiB")]))
                .unwrap()
                .unwrap();
        assert_eq!(spool.max_bytes, 64 << 20);
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
