//! Command-line flags of `llm-proxy dispatcher` and the validated configuration built from them
//! and the environment (bus, Redis, stream and shutdown settings).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use llm_proxy_env as env;
use llm_proxy_events::{ConfigError, EventBusKind, RedisSettings, StreamSettings, read_duration};

/// Flags of the dispatcher; usable as a clap subcommand of the proxy binary.
#[derive(Clone, clap::Args)]
pub struct DispatcherArgs {
    /// Backend that receives the events.
    #[arg(long, env = env::DISPATCHER_SERVICE, value_enum, default_value_t = Service::File)]
    pub service: Service,
    /// File path (file) or URL (lunary, helicone); defaults per service.
    #[arg(long, env = env::DISPATCHER_ENDPOINT)]
    pub endpoint: Option<String>,
    /// API key of the Lunary or Helicone backend (never logged).
    #[arg(long = "api-key", env = env::LLM_PROXY_API_KEY, hide_env_values = true)]
    pub api_key: Option<String>,
    /// Most entries held in memory at once (caps one stream read).
    #[arg(long, env = env::DISPATCHER_BUFFER, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub buffer: u64,
    /// Events per backend request.
    #[arg(long = "batch-size", env = env::DISPATCHER_BATCH_SIZE, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Address of `/health`, `/ready` and `/metrics` (`:8081` = all interfaces).
    #[arg(long = "health-addr", env = env::DISPATCHER_HEALTH_ADDR, default_value = ":8081")]
    pub health_addr: String,
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

/// The backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// Append JSONL to a file.
    File,
    /// POST batches to Lunary.
    Lunary,
    /// POST single events to Helicone.
    Helicone,
}

impl Service {
    /// The flag value, also used in the default consumer name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Lunary => "lunary",
            Self::Helicone => "helicone",
        }
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
    /// Bus, Redis or stream variable.
    #[error(transparent)]
    Environment(#[from] ConfigError),
    /// A flag holds an unusable value.
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        /// Flag and variable.
        name: &'static str,
        /// What it held.
        value: String,
        /// What is expected.
        reason: &'static str,
    },
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

    /// Validates `args` together with the variables seen through `lookup`.
    pub fn from_lookup(
        args: DispatcherArgs,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, DispatcherConfigError> {
        let bus = EventBusKind::from_lookup(lookup)?;
        if bus == EventBusKind::InMemory && args.service != Service::File {
            return Err(DispatcherConfigError::InMemoryNeedsFileService);
        }
        let endpoint = args.endpoint.filter(|value| !value.trim().is_empty());
        let destination = match args.service {
            Service::File => Destination::File(PathBuf::from(
                endpoint
                    .as_deref()
                    .unwrap_or(env::DISPATCHER_DEFAULT_FILE_ENDPOINT),
            )),
            Service::Lunary => {
                let (endpoint, api_key) = http_target(
                    endpoint,
                    env::DISPATCHER_DEFAULT_LUNARY_ENDPOINT,
                    args.api_key,
                    args.service,
                )?;
                Destination::Lunary { endpoint, api_key }
            }
            Service::Helicone => {
                let (endpoint, api_key) = http_target(
                    endpoint,
                    env::DISPATCHER_DEFAULT_HELICONE_ENDPOINT,
                    args.api_key,
                    args.service,
                )?;
                Destination::Helicone { endpoint, api_key }
            }
        };
        let stream = StreamSettings::from_lookup(lookup)?;
        let consumer_name = stream.consumer_name_for(args.service.as_str());
        let verbose_value = lookup(env::LLM_PROXY_DISPATCHER_VERBOSE).unwrap_or_default();
        Ok(Self {
            service: args.service,
            destination,
            bus,
            redis: RedisSettings::from_lookup(lookup)?,
            consumer_name,
            batch_size: usize::try_from(args.batch_size).unwrap_or(usize::MAX),
            buffer: usize::try_from(args.buffer).unwrap_or(usize::MAX),
            health_addr: parse_listen_addr(&args.health_addr)?,
            verbose: matches!(
                verbose_value.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes"
            ),
            shutdown_timeout: read_duration(lookup, env::SHUTDOWN_TIMEOUT, false)?,
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
    let invalid = || DispatcherConfigError::Invalid {
        name: env::DISPATCHER_ENDPOINT,
        value: endpoint.clone(),
        reason: "expected an http:// or https:// URL",
    };
    let uri: http::Uri = endpoint.parse().map_err(|_| invalid())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(invalid());
    }
    let api_key = api_key.filter(|key| !key.trim().is_empty()).ok_or(
        DispatcherConfigError::MissingApiKey {
            service: service.as_str(),
        },
    )?;
    Ok((uri, api_key))
}

/// `:8081` (all interfaces), `127.0.0.1:8081` or `[::1]:8081`.
fn parse_listen_addr(value: &str) -> Result<SocketAddr, DispatcherConfigError> {
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_string()
    };
    full.parse().map_err(|_| DispatcherConfigError::Invalid {
        name: env::DISPATCHER_HEALTH_ADDR,
        value: value.to_string(),
        reason: "expected :PORT or HOST:PORT",
    })
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
        assert!(Cli::try_parse_from(["dispatcher", "--service", "splunk"]).is_err());
        assert!(Cli::try_parse_from(["dispatcher", "--batch-size", "0"]).is_err());
    }
}
