//! Command-line flags of `llm-proxy dispatcher` and the validated configuration built from them
//! and the environment (bus, Redis, stream and shutdown settings).
//!
//! A flag is read exactly as its variable (`--buffer` as `DISPATCHER_BUFFER`, winning over it):
//! both go through `llm-proxy-env`'s reader, so a bad value is the same [`ValueError`], naming
//! the variable, that the server and the operator's `check` give.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use llm_proxy_env::{self as env, EventBusKind, Reader, ValueError};
use llm_proxy_events::{RedisSettings, StreamSettings};

/// The backends (`DISPATCHER_SERVICE`).
pub use llm_proxy_env::DispatcherService as Service;

/// Flags of the dispatcher; usable as a clap subcommand of the proxy binary. Each holds the text of
/// its variable and is parsed by [`DispatcherConfig::from_lookup`].
#[derive(Clone, Default, clap::Args)]
pub struct DispatcherArgs {
    /// Backend that receives the events: file (default), lunary or helicone.
    #[arg(long, env = env::DISPATCHER_SERVICE)]
    pub service: Option<String>,
    /// File path (file) or URL (lunary, helicone); defaults per service.
    #[arg(long, env = env::DISPATCHER_ENDPOINT)]
    pub endpoint: Option<String>,
    /// API key of the Lunary or Helicone backend (never logged).
    #[arg(long = "api-key", env = env::LLM_PROXY_API_KEY, hide_env_values = true)]
    pub api_key: Option<String>,
    /// Most entries held in memory at once (caps one stream read; default 1000).
    #[arg(long, env = env::DISPATCHER_BUFFER)]
    pub buffer: Option<String>,
    /// Events per backend request (default 100).
    #[arg(long = "batch-size", env = env::DISPATCHER_BATCH_SIZE)]
    pub batch_size: Option<String>,
    /// Address of `/health`, `/ready` and `/metrics` (default `:8081` = all interfaces).
    #[arg(long = "health-addr", env = env::DISPATCHER_HEALTH_ADDR)]
    pub health_addr: Option<String>,
}

impl DispatcherArgs {
    /// The flag that stands for the variable `name`, when given and not blank.
    fn flag(&self, name: &str) -> Option<&str> {
        let flag = match name {
            env::DISPATCHER_SERVICE => &self.service,
            env::DISPATCHER_ENDPOINT => &self.endpoint,
            env::LLM_PROXY_API_KEY => &self.api_key,
            env::DISPATCHER_BUFFER => &self.buffer,
            env::DISPATCHER_BATCH_SIZE => &self.batch_size,
            env::DISPATCHER_HEALTH_ADDR => &self.health_addr,
            _ => return None,
        };
        flag.as_deref().filter(|value| !value.trim().is_empty())
    }
}

impl fmt::Debug for DispatcherArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherArgs")
            .field("service", &self.service)
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("buffer", &self.buffer)
            .field("batch_size", &self.batch_size)
            .field("health_addr", &self.health_addr)
            .finish()
    }
}

/// Where events go.
#[derive(Clone, PartialEq, Eq)]
pub enum Destination {
    /// A JSONL file.
    File(PathBuf),
    /// Lunary at this URL with this key.
    Lunary {
        endpoint: http::Uri,
        api_key: String,
    },
    /// Helicone at this URL with this key.
    Helicone {
        endpoint: http::Uri,
        api_key: String,
    },
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Lunary { endpoint, .. } => f
                .debug_struct("Lunary")
                .field("endpoint", endpoint)
                .finish_non_exhaustive(),
            Self::Helicone { endpoint, .. } => f
                .debug_struct("Helicone")
                .field("endpoint", endpoint)
                .finish_non_exhaustive(),
        }
    }
}

/// How failed sends are retried: `initial × 2^attempt`, capped at `max`, until success or shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Pause after the first failure.
    pub initial: Duration,
    /// Longest pause.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// Upstream's `2^attempt × 1s`, capped at 30s.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// A configuration error of the dispatcher, naming the flag or variable.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherConfigError {
    /// A flag or variable holds a value its syntax refuses.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// Lunary and Helicone need a key.
    #[error(
        "--api-key ({}) is required for --service {service}",
        env::LLM_PROXY_API_KEY
    )]
    MissingApiKey {
        /// The selected service.
        service: &'static str,
    },
    /// The in-memory bus cannot feed a network backend.
    #[error(
        "{}=in-memory only works with --service file; use redis-streams",
        env::LLM_PROXY_EVENT_BUS
    )]
    InMemoryNeedsFileService,
}

/// Everything the dispatcher needs, validated.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// The selected service.
    pub service: Service,
    /// Its destination.
    pub destination: Destination,
    /// The event bus.
    pub bus: EventBusKind,
    /// Redis (used with the Redis Streams bus).
    pub redis: RedisSettings,
    /// Stream, group and read settings.
    pub stream: StreamSettings,
    /// The consumer name.
    pub consumer_name: String,
    /// Events per backend request.
    pub batch_size: usize,
    /// Most entries read at once.
    pub buffer: usize,
    /// Health server address.
    pub health_addr: SocketAddr,
    /// `LLM_PROXY_DISPATCHER_VERBOSE`.
    pub verbose: bool,
    /// `SHUTDOWN_TIMEOUT`: how long a shutdown may take to finish the current batch.
    pub shutdown_timeout: Duration,
    /// Retry pacing of failed sends.
    pub retry: RetryPolicy,
}

impl DispatcherConfig {
    /// Validates `args` together with the process environment.
    pub fn from_env(args: DispatcherArgs) -> Result<Self, DispatcherConfigError> {
        Self::from_lookup(args, &|name| std::env::var(name).ok())
    }

    /// Validates `args` together with the variables seen through `lookup`; a flag wins over its
    /// variable.
    pub fn from_lookup(
        args: DispatcherArgs,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, DispatcherConfigError> {
        let reader = Reader::new(|name: &str| match args.flag(name) {
            Some(flag) => Some(flag.to_owned()),
            None => lookup(name),
        });
        let service: Service = reader.keyword(env::DISPATCHER_SERVICE)?;
        let bus: EventBusKind = reader.keyword(env::LLM_PROXY_EVENT_BUS)?;
        if bus == EventBusKind::InMemory && service != Service::File {
            return Err(DispatcherConfigError::InMemoryNeedsFileService);
        }
        let endpoint = reader.optional(env::DISPATCHER_ENDPOINT)?;
        let api_key = reader.optional(env::LLM_PROXY_API_KEY)?;
        let destination = match service {
            Service::File => Destination::File(PathBuf::from(
                endpoint
                    .as_deref()
                    .unwrap_or(env::DISPATCHER_DEFAULT_FILE_ENDPOINT),
            )),
            Service::Lunary => {
                let (endpoint, api_key) = http_target(
                    endpoint,
                    env::DISPATCHER_DEFAULT_LUNARY_ENDPOINT,
                    api_key,
                    service,
                )?;
                Destination::Lunary { endpoint, api_key }
            }
            Service::Helicone => {
                let (endpoint, api_key) = http_target(
                    endpoint,
                    env::DISPATCHER_DEFAULT_HELICONE_ENDPOINT,
                    api_key,
                    service,
                )?;
                Destination::Helicone { endpoint, api_key }
            }
        };
        let stream = StreamSettings::from_reader(&reader)?;
        let consumer_name = stream.consumer_name_for(service.as_str());
        Ok(Self {
            service,
            destination,
            bus,
            redis: RedisSettings::from_reader(&reader)?,
            consumer_name,
            batch_size: reader.integer(env::DISPATCHER_BATCH_SIZE)?,
            buffer: reader.integer(env::DISPATCHER_BUFFER)?,
            health_addr: reader.listen_addr(env::DISPATCHER_HEALTH_ADDR)?,
            verbose: reader.bool(env::LLM_PROXY_DISPATCHER_VERBOSE)?,
            shutdown_timeout: reader.duration(env::SHUTDOWN_TIMEOUT)?,
            retry: RetryPolicy::default(),
            stream,
        })
    }
}

fn http_target(
    endpoint: Option<String>,
    default: &str,
    api_key: Option<String>,
    service: Service,
) -> Result<(http::Uri, String), DispatcherConfigError> {
    let endpoint = endpoint.unwrap_or_else(|| default.to_string());
    let invalid = || {
        ValueError::new(
            env::DISPATCHER_ENDPOINT,
            &endpoint,
            "expected an http:// or https:// URL",
        )
    };
    let uri: http::Uri = endpoint.parse().map_err(|_| invalid())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(invalid().into());
    }
    let api_key = api_key.ok_or(DispatcherConfigError::MissingApiKey {
        service: service.as_str(),
    })?;
    Ok((uri, api_key))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: DispatcherArgs,
    }

    fn args(flags: &[&str]) -> DispatcherArgs {
        let mut argv = vec!["dispatcher"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).unwrap().args
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const REDIS_BUS: (&str, &str) = (env::LLM_PROXY_EVENT_BUS, "redis-streams");

    #[test]
    fn defaults_are_the_file_service_on_port_8081() {
        let config = DispatcherConfig::from_lookup(args(&[]), &lookup(&[REDIS_BUS])).unwrap();
        assert_eq!(
            config.destination,
            Destination::File(PathBuf::from("/app/data/events.jsonl"))
        );
        assert_eq!(config.health_addr, "0.0.0.0:8081".parse().unwrap());
        assert_eq!(config.batch_size, 100);
        assert_eq!(config.buffer, 1000);
        assert!(!config.verbose);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
        assert!(config.consumer_name.starts_with("dispatcher-file-"));
    }

    #[test]
    fn network_services_default_their_endpoint_and_require_a_key() {
        let config = DispatcherConfig::from_lookup(
            args(&["--service", "lunary", "--api-key", "lk-secret"]),
            &lookup(&[REDIS_BUS, (env::LLM_PROXY_DISPATCHER_VERBOSE, "yes")]),
        )
        .unwrap();
        assert_eq!(
            config.destination,
            Destination::Lunary {
                endpoint: env::DISPATCHER_DEFAULT_LUNARY_ENDPOINT.parse().unwrap(),
                api_key: "lk-secret".into()
            }
        );
        assert!(config.verbose);
        assert!(!format!("{config:?}").contains("lk-secret"));

        let helicone = DispatcherConfig::from_lookup(
            args(&["--service", "helicone", "--api-key", "k"]),
            &lookup(&[REDIS_BUS]),
        )
        .unwrap();
        assert!(
            matches!(helicone.destination, Destination::Helicone { ref endpoint, .. }
            if *endpoint == env::DISPATCHER_DEFAULT_HELICONE_ENDPOINT)
        );

        let missing =
            DispatcherConfig::from_lookup(args(&["--service", "helicone"]), &lookup(&[REDIS_BUS]))
                .unwrap_err();
        assert!(
            missing.to_string().contains("LLM_PROXY_API_KEY"),
            "{missing}"
        );
    }

    #[test]
    fn invalid_values_name_their_flag_or_variable() {
        let bad_endpoint = DispatcherConfig::from_lookup(
            args(&[
                "--service",
                "lunary",
                "--api-key",
                "k",
                "--endpoint",
                "ftp://x",
            ]),
            &lookup(&[REDIS_BUS]),
        )
        .unwrap_err();
        assert!(
            bad_endpoint.to_string().contains("DISPATCHER_ENDPOINT"),
            "{bad_endpoint}"
        );
        let bad_addr = DispatcherConfig::from_lookup(
            args(&["--health-addr", "nowhere"]),
            &lookup(&[REDIS_BUS]),
        )
        .unwrap_err();
        assert!(
            bad_addr.to_string().contains("DISPATCHER_HEALTH_ADDR"),
            "{bad_addr}"
        );
        let in_memory = DispatcherConfig::from_lookup(
            args(&["--service", "lunary", "--api-key", "k"]),
            &lookup(&[]),
        )
        .unwrap_err();
        assert!(matches!(
            in_memory,
            DispatcherConfigError::InMemoryNeedsFileService
        ));
        let bad_bus = DispatcherConfig::from_lookup(
            args(&[]),
            &lookup(&[(env::LLM_PROXY_EVENT_BUS, "kafka")]),
        )
        .unwrap_err();
        assert!(
            bad_bus.to_string().contains("LLM_PROXY_EVENT_BUS"),
            "{bad_bus}"
        );
        for (flags, name) in [
            (["--service", "splunk"], env::DISPATCHER_SERVICE),
            (["--batch-size", "0"], env::DISPATCHER_BATCH_SIZE),
            (["--buffer", "lots"], env::DISPATCHER_BUFFER),
        ] {
            let err =
                DispatcherConfig::from_lookup(args(&flags), &lookup(&[REDIS_BUS])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn shutdown_timeout_takes_the_same_go_durations_as_the_server() {
        for (value, expected) in [
            ("1.5s", Duration::from_millis(1500)),
            ("500ms", Duration::from_millis(500)),
            ("1h30m", Duration::from_secs(5400)),
            ("0", Duration::ZERO),
        ] {
            let config = DispatcherConfig::from_lookup(
                args(&[]),
                &lookup(&[REDIS_BUS, (env::SHUTDOWN_TIMEOUT, value)]),
            )
            .unwrap();
            assert_eq!(config.shutdown_timeout, expected, "{value}");
        }
        let bare = DispatcherConfig::from_lookup(
            args(&[]),
            &lookup(&[REDIS_BUS, (env::SHUTDOWN_TIMEOUT, "30")]),
        )
        .unwrap_err();
        assert!(bare.to_string().contains("SHUTDOWN_TIMEOUT"), "{bare}");
    }

    #[test]
    fn verbose_takes_the_one_boolean_syntax_and_refuses_anything_else() {
        let verbose = |value: &str| {
            DispatcherConfig::from_lookup(
                args(&[]),
                &lookup(&[REDIS_BUS, (env::LLM_PROXY_DISPATCHER_VERBOSE, value)]),
            )
            .map(|config| config.verbose)
        };
        for on in ["1", "true", "YES", "on"] {
            assert!(verbose(on).unwrap(), "{on}");
        }
        for off in ["0", "false", "No", "off", ""] {
            assert!(!verbose(off).unwrap(), "{off:?}");
        }
        for unknown in ["sometimes", "2", "enabled"] {
            let err = verbose(unknown).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid LLM_PROXY_DISPATCHER_VERBOSE={unknown:?}: \
                     expected true, false, 1, 0, yes, no, on or off"
                )
            );
        }
    }

    #[test]
    fn the_event_bus_takes_every_spelling_of_the_contract_in_any_case() {
        for (value, expected) in [
            ("in-memory", EventBusKind::InMemory),
            ("IN-MEMORY", EventBusKind::InMemory),
            ("redis-streams", EventBusKind::RedisStreams),
            ("Redis-Streams", EventBusKind::RedisStreams),
            ("redis", EventBusKind::RedisStreams),
        ] {
            let config = DispatcherConfig::from_lookup(
                args(&[]),
                &lookup(&[(env::LLM_PROXY_EVENT_BUS, value)]),
            )
            .unwrap();
            assert_eq!(config.bus, expected, "{value}");
        }
    }

    #[test]
    fn a_flag_is_read_like_its_variable_and_wins_over_it() {
        let config = DispatcherConfig::from_lookup(
            args(&["--buffer", "7", "--health-addr", "localhost:0"]),
            &lookup(&[
                REDIS_BUS,
                (env::DISPATCHER_BUFFER, "9"),
                (env::DISPATCHER_BATCH_SIZE, "3"),
                (env::DISPATCHER_SERVICE, "File"),
            ]),
        )
        .unwrap();
        assert_eq!(config.buffer, 7);
        assert_eq!(config.batch_size, 3);
        assert_eq!(config.service, Service::File);
        assert_eq!(config.health_addr.port(), 0);
        let blank_flag =
            DispatcherConfig::from_lookup(args(&["--buffer", " "]), &lookup(&[REDIS_BUS])).unwrap();
        assert_eq!(blank_flag.buffer, 1000, "a blank flag means the default");
    }

    #[test]
    fn every_variable_the_dispatcher_reads_refuses_what_check_refuses_with_its_message() {
        // LOG_* are read by the binary's logging set-up (llm_proxy::config::LoggingConfig).
        let read_by_the_binary = [env::LOG_LEVEL, env::LOG_FORMAT, env::LOG_FILE];
        let dispatcher_vars = env::ALL.iter().filter(|var| {
            matches!(var.scope, env::Scope::Dispatcher | env::Scope::Both)
                && !read_by_the_binary.contains(&var.name)
        });
        for var in dispatcher_vars {
            let at_default =
                DispatcherConfig::from_lookup(args(&[]), &lookup(&[(var.name, var.default)]));
            assert!(
                at_default.is_ok(),
                "{}={:?}: {at_default:?}",
                var.name,
                var.default
            );
            let Some(bad) = var.syntax.refused_example() else {
                continue;
            };
            let expected = env::check(var.name, bad).unwrap_err().to_string();
            let err =
                DispatcherConfig::from_lookup(args(&[]), &lookup(&[REDIS_BUS, (var.name, bad)]))
                    .unwrap_err();
            assert_eq!(err.to_string(), expected, "{}={bad:?}", var.name);
        }
    }

    #[test]
    fn a_secret_value_is_never_shown_in_an_error() {
        let err = DispatcherConfig::from_lookup(
            args(&[]),
            &lookup(&[REDIS_BUS, (env::REDIS_URL, "http://:hunter2@cache:6379")]),
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("REDIS_URL") && !message.contains("hunter2"),
            "{message}"
        );
    }
}
