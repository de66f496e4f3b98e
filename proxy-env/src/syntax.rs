//! [`Syntax`]: what the value of each variable of the contract looks like, and the check that
//! decides whether a value is acceptable. Every process runs this check on every value it reads
//! (through `Reader`), and the operator runs it through `check`, so the two cannot disagree.

use std::time::Duration;

use crate::keywords::{
    DbDriver, DispatcherService, EventBusKind, HttpCacheBackend, Keyword, LogFormat, LogLevel,
};
use crate::values::{self, UrlRules};

/// The value syntax of one variable, with its range where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Any text: paths, names, prefixes, tokens and keys (a key's own format is checked by the
    /// component that uses it, e.g. `ENCRYPTION_KEY` by the store).
    Text,
    /// [`values::parse_bool`].
    Bool,
    /// [`values::parse_duration`]; `positive` refuses `0`.
    Duration { positive: bool },
    /// [`values::parse_integer`] in `min..=max`.
    Integer { min: u64, max: u64 },
    /// [`values::parse_size`] in `min..=max` bytes.
    Size { min: u64, max: u64 },
    /// [`values::parse_listen_addr`].
    ListenAddr,
    /// [`values::parse_host_port`].
    HostPort,
    /// A `redis://` or `rediss://` URL with a host.
    RedisUrl,
    /// A `postgres://` or `postgresql://` URL.
    PostgresUrl,
    /// An `http://` or `https://` base URL with a host and without a query.
    HttpUrl,
    /// [`values::parse_ip_networks`].
    IpNetworks,
    /// [`values::parse_metrics_path`].
    MetricsPath,
    /// [`EventBusKind`].
    EventBus,
    /// [`LogLevel`].
    LogLevel,
    /// [`LogFormat`].
    LogFormat,
    /// [`DbDriver`].
    DbDriver,
    /// [`HttpCacheBackend`].
    HttpCacheBackend,
    /// [`DispatcherService`].
    DispatcherService,
}

const REDIS_URL: UrlRules = UrlRules {
    schemes: &["redis", "rediss"],
    host_required: true,
    query_allowed: true,
};
const POSTGRES_URL: UrlRules = UrlRules {
    schemes: &["postgres", "postgresql"],
    host_required: false,
    query_allowed: true,
};
const HTTP_URL: UrlRules = UrlRules {
    schemes: &["http", "https"],
    host_required: true,
    query_allowed: false,
};

impl Syntax {
    /// Checks a non-empty value (the caller treats empty as unset); the reason never repeats it.
    pub fn check(&self, value: &str) -> Result<(), String> {
        match *self {
            Self::Text => Ok(()),
            Self::Bool => values::parse_bool(value).map(drop),
            Self::Duration { positive } => match values::parse_duration(value)? {
                Duration::ZERO if positive => Err("must be greater than zero".to_owned()),
                _ => Ok(()),
            },
            Self::Integer { min, max } => {
                values::check_range(values::parse_integer(value)?, min, max).map(drop)
            }
            Self::Size { min, max } => {
                values::check_range(values::parse_size(value)?, min, max).map(drop)
            }
            Self::ListenAddr => values::parse_listen_addr(value).map(drop),
            Self::HostPort => values::parse_host_port(value).map(drop),
            Self::RedisUrl => values::parse_url(value, REDIS_URL),
            Self::PostgresUrl => values::parse_url(value, POSTGRES_URL),
            Self::HttpUrl => values::parse_url(value, HTTP_URL),
            Self::IpNetworks => values::parse_ip_networks(value).map(drop),
            Self::MetricsPath => values::parse_metrics_path(value).map(drop),
            Self::EventBus => EventBusKind::parse(value).map(drop),
            Self::LogLevel => LogLevel::parse(value).map(drop),
            Self::LogFormat => LogFormat::parse(value).map(drop),
            Self::DbDriver => DbDriver::parse(value).map(drop),
            Self::HttpCacheBackend => HttpCacheBackend::parse(value).map(drop),
            Self::DispatcherService => DispatcherService::parse(value).map(drop),
        }
    }

    /// A short description for the configuration reference: `duration > 0`, `integer ≥ 1`, ...
    pub fn describe(&self) -> String {
        fn range(kind: &str, min: u64, max: u64) -> String {
            match (min, max) {
                (0, u64::MAX) => kind.to_owned(),
                (min, u64::MAX) => format!("{kind} ≥ {min}"),
                (min, max) => format!("{kind} {min}–{max}"),
            }
        }
        fn words(names: &[&str]) -> String {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            quoted.join(", ")
        }
        match *self {
            Self::Text => "text".to_owned(),
            Self::Bool => "boolean".to_owned(),
            Self::Duration { positive: false } => "duration".to_owned(),
            Self::Duration { positive: true } => "duration > 0".to_owned(),
            Self::Integer { min, max } => range("integer", min, max),
            Self::Size { min, max } => range("size", min, max),
            Self::ListenAddr => "address".to_owned(),
            Self::HostPort => "host:port".to_owned(),
            Self::RedisUrl => "`redis://` or `rediss://` URL".to_owned(),
            Self::PostgresUrl => "`postgres://` URL".to_owned(),
            Self::HttpUrl => "`http(s)://` URL".to_owned(),
            Self::IpNetworks => "IP/CIDR list".to_owned(),
            Self::MetricsPath => "path".to_owned(),
            Self::EventBus => words(EventBusKind::NAMES),
            Self::LogLevel => words(LogLevel::NAMES),
            Self::LogFormat => words(LogFormat::NAMES),
            Self::DbDriver => words(DbDriver::NAMES),
            Self::HttpCacheBackend => words(HttpCacheBackend::NAMES),
            Self::DispatcherService => words(DispatcherService::NAMES),
        }
    }

    /// A value this syntax refuses (`None` for [`Syntax::Text`], which refuses nothing): for tests
    /// that prove a process refuses what `check` refuses.
    pub fn refused_example(&self) -> Option<&'static str> {
        match *self {
            Self::Text => None,
            Self::Bool => Some("maybe"),
            Self::Duration { positive: false } => Some("30"),
            Self::Duration { positive: true } => Some("0"),
            Self::Integer { .. } => Some("many"),
            Self::Size { .. } => Some("1.5MiB"),
            Self::ListenAddr => Some("8080"),
            Self::HostPort => Some("no-port"),
            Self::RedisUrl | Self::PostgresUrl | Self::HttpUrl => Some("ftp://example.com"),
            Self::IpNetworks => Some("example.com"),
            Self::MetricsPath => Some("/health"),
            Self::EventBus
            | Self::LogLevel
            | Self::LogFormat
            | Self::DbDriver
            | Self::HttpCacheBackend
            | Self::DispatcherService => Some("bogus"),
        }
    }
}
