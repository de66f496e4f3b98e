//! `llm-proxy`: the data plane binary.
//!
//! Subcommands: `server` (default), `dispatcher` (ships instrumentation events to a file, Lunary or
//! Helicone; see `docs/dispatcher.md`), `migrate up|status`, `version`. Configuration comes from
//! the environment (see `docs/configuration.md`); an invalid value stops the process with exit
//! code 2 and a message naming the variable.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use llm_proxy::config::{LoggingConfig, ServerConfig};
use llm_proxy::{logging, server};

/// mimalloc instead of glibc malloc: a `/v1` request makes a few dozen short-lived allocations
/// (headers, bodies, futures) and glibc's spend about a tenth of the request's CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "llm-proxy",
    version,
    about = "OpenAI-compatible LLM API proxy with withering tokens"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve /v1, /manage, health and metrics (the default).
    Server,
    /// Consume instrumentation events from the Redis stream and ship them to a backend.
    Dispatcher(llm_proxy_dispatcher::DispatcherArgs),
    /// Database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply pending migrations.
    Up,
    /// List migrations and whether each is applied.
    Status,
}

/// Exit code of configuration errors (like a usage error).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Server);
    match command {
        Command::Version => {
            println!("llm-proxy {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Dispatcher(args) => return dispatcher(args),
        Command::Server | Command::Migrate { .. } => {}
    }
    let config = match ServerConfig::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("llm-proxy: configuration error: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _log_guard = match logging::init(&config.logging) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("llm-proxy: configuration error: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("llm-proxy: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Server => server::run(config).await.map_err(|e| e.to_string()),
            Command::Migrate { action } => migrate(&config, action).await,
            Command::Version | Command::Dispatcher(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = %message, "llm-proxy stopped");
            eprintln!("llm-proxy: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the dispatcher until SIGTERM or SIGINT.
fn dispatcher(args: llm_proxy_dispatcher::DispatcherArgs) -> ExitCode {
    let logging = match LoggingConfig::from_env() {
        Ok(logging) => logging,
        Err(err) => {
            eprintln!("llm-proxy: configuration error: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _log_guard = match logging::init(&logging) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("llm-proxy: configuration error: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("llm-proxy: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            server::shutdown_signal().await;
            on_signal.cancel();
        });
        llm_proxy_dispatcher::run(args, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(llm_proxy_dispatcher::DispatcherError::Config(err)) => {
            eprintln!("llm-proxy: configuration error: {err}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(err) => {
            tracing::error!(error = %err, "dispatcher stopped");
            eprintln!("llm-proxy: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &ServerConfig, action: MigrateAction) -> Result<(), String> {
    let store_config = &config.store;
    match action {
        MigrateAction::Up => {
            llm_proxy_store::migrate_up(store_config)
                .await
                .map_err(|e| e.to_string())?;
            println!("migrations applied");
        }
        MigrateAction::Status => {
            let states = llm_proxy_store::migration_status(store_config)
                .await
                .map_err(|e| e.to_string())?;
            for state in states {
                let mark = if state.applied { "applied" } else { "pending" };
                println!("{:>6}  {:<8} {}", state.version, mark, state.description);
            }
        }
    }
    Ok(())
}
