//! `llm-proxy-operator`: `run` (the controller, default), `crd` (print the CRD), `render -f FILE`
//! (print offline what the operator would apply).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use llm_proxy_operator::config::{self, LeaderElection, OperatorConfig};
use llm_proxy_operator::controller;
use llm_proxy_operator::crd::{self, LlmProxy};
use llm_proxy_operator::llmproxy::dereference::ReferencedData;
use llm_proxy_operator::llmproxy::{render, to_multi_doc_yaml};

#[derive(Parser)]
#[command(
    name = "llm-proxy-operator",
    version,
    about = "Kubernetes operator for llm-proxy (LlmProxy resources)"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Flags of `run` when no subcommand is given.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (default).
    Run(RunArgs),
    /// Print the LlmProxy CRD as YAML.
    Crd,
    /// Print, offline, the objects the operator would apply for an LlmProxy YAML file.
    Render {
        /// LlmProxy YAML file (`-` = stdin).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Namespaces to watch (comma-separated); empty = all.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Hold a Lease so that only one replica reconciles.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false)]
    leader_election: bool,
    /// Namespace of the Lease (default: `POD_NAMESPACE`, else `default`).
    #[arg(long, env = "LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "llm-proxy-operator")]
    lease_name: String,
    /// Identity of this replica in the Lease.
    #[arg(long, env = "POD_NAME")]
    lease_identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Seconds between renewals (and standby attempts).
    #[arg(long, env = "LEASE_RENEW_SECONDS", default_value_t = 5)]
    lease_renew_seconds: u64,
    /// Image of the development PostgreSQL.
    #[arg(long, env = "POSTGRES_IMAGE", default_value = config::DEFAULT_POSTGRES_IMAGE)]
    postgres_image: String,
    /// Seconds between re-reconciles of a healthy LlmProxy (periodic drift check).
    #[arg(long, env = "RESYNC_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    resync_seconds: u64,
    /// LlmProxies reconciled at once (more wait in the queue).
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = config::DEFAULT_RECONCILE_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_reconciles: u16,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => match crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot serialize the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Render { file }) => render_file(&file),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

fn render_file(file: &PathBuf) -> ExitCode {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    let text = match text {
        Ok(text) => text,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let proxy: LlmProxy = match serde_saphyr::from_str(&text) {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("{} is not an LlmProxy: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match render(
        &proxy,
        &ReferencedData::offline(),
        &OperatorConfig::default(),
    )
    .map_err(|e| e.to_string())
    .and_then(|objects| to_multi_doc_yaml(&objects).map_err(|e| e.to_string()))
    {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    init_logging(args.log_format);
    let leader_election = args.leader_election.then(|| LeaderElection {
        namespace: args
            .lease_namespace
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|ns| !ns.is_empty())
            })
            .unwrap_or_else(|| "default".to_owned()),
        lease_name: args.lease_name,
        identity: args.lease_identity.unwrap_or_else(config::default_identity),
        lease_duration: Duration::from_secs(args.lease_duration_seconds),
        renew_interval: Duration::from_secs(args.lease_renew_seconds),
    });
    let config = OperatorConfig {
        watch_namespaces: args
            .watch_namespaces
            .into_iter()
            .filter(|ns| !ns.is_empty())
            .collect(),
        leader_election,
        metrics_addr: Some(args.metrics_addr),
        postgres_image: args.postgres_image,
        resync_interval: Duration::from_secs(args.resync_seconds),
        discovery_interval: config::DEFAULT_DISCOVERY_INTERVAL,
        reconcile_concurrency: args.max_concurrent_reconciles,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let client = match runtime.block_on(kube::Client::try_default()) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(
                error = %e,
                "cannot configure the Kubernetes client from KUBECONFIG, ~/.kube/config or the in-cluster service account"
            );
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(controller::run(
        client,
        config,
        Default::default(),
        shutdown_signal(),
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
