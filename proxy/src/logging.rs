//! Process logging: `LOG_LEVEL`, `LOG_FORMAT` (`json` or human `text`) and `LOG_FILE` (append).
//!
//! Request logs carry `request_id`, `method`, `path` (without the query string), `status` and
//! `duration_ms`. Secrets cannot reach a log line by accident: tokens, keys and passwords are held in
//! types whose `Debug` is redacted and that have no `Display`.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel, LoggingConfig};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot open LOG_FILE {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// Installs the global subscriber.
pub fn init(config: &LoggingConfig) -> Result<(), LoggingError> {
    let level = match config.level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    // Dependencies log at warn and above only, so debug output stays about the proxy.
    let filter = EnvFilter::new(format!("warn,llm_proxy={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = match (&config.file, config.format) {
        (None, LogFormat::Json) => builder.json().flatten_event(true).try_init(),
        (None, LogFormat::Text) => builder.with_ansi(false).try_init(),
        (Some(path), format) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LoggingError::File {
                    path: path.display().to_string(),
                    source,
                })?;
            let builder = builder.with_writer(Mutex::new(file)).with_ansi(false);
            match format {
                LogFormat::Json => builder.json().flatten_event(true).try_init(),
                LogFormat::Text => builder.try_init(),
            }
        }
    };
    result.map_err(|_| LoggingError::AlreadyInstalled)
}
