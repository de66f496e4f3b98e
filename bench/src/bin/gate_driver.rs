//! `bench-gate-driver`: the workload `bench gate` runs under callgrind. One thread: the real
//! `llm-proxy` router (default configuration, SQLite in a temporary directory, in-memory event
//! bus) served on loopback, the bench mock upstream on loopback, and the driver sending
//! `--requests` sequential requests of one scenario (`cache-hit`: after one warming request that
//! stores the answer; `pass-through`: the bare pass-through instead of the proxy). Exits non-zero if any answer is unexpected.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderValue, StatusCode, Uri};
use llm_proxy::app;
use llm_proxy::audit::Audit;
use llm_proxy::config::ServerConfig;
use llm_proxy_bench::error::BenchError;
use llm_proxy_bench::gate::Scenario;
use llm_proxy_bench::loadgen::{self, RequestSpec, Stop};
use llm_proxy_bench::mock::{self, MockSettings};
use llm_proxy_bench::{net, passthrough, runner};
use llm_proxy_env as env;
use llm_proxy_events::EventPublisher;

/// The allocator `llm-proxy` ships with, so the count is the shipped binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MANAGEMENT_TOKEN: &str = "bench-gate-management-token-0123456789";
const CHAT_BODY: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the benchmark."}]}"#;

#[derive(Debug, Parser)]
#[command(about = "Single-threaded in-process workload for the callgrind gate")]
struct Args {
    #[arg(long, value_enum)]
    scenario: Scenario,
    #[arg(long, default_value_t = 100)]
    requests: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench-gate-driver: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(drive(args.scenario, args.requests)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-gate-driver: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn drive(scenario: Scenario, requests: u64) -> Result<(), BenchError> {
    let scratch = std::env::temp_dir().join(format!("llm-proxy-gate-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&scratch).map_err(BenchError::io("creating the scratch directory"))?;
    let result = drive_in(scenario, requests, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn drive_in(
    scenario: Scenario,
    requests: u64,
    scratch: &std::path::Path,
) -> Result<(), BenchError> {
    let (mock_listener, mock_addr) = bind_loopback("the mock").await?;
    tokio::spawn(mock::serve(
        mock_listener,
        MockSettings {
            delay: Duration::ZERO,
            stream_chunks: 0,
            chunk_interval: Duration::ZERO,
        },
    ));

    let client = net::pooled_client();
    let (proxy_addr, authorization) = match scenario {
        Scenario::PassThrough => {
            let (listener, addr) = bind_loopback("the pass-through").await?;
            let upstream = mock_addr
                .to_string()
                .parse()
                .map_err(|_| BenchError::Gate("mock authority".into()))?;
            tokio::spawn(passthrough::serve(listener, upstream));
            // The pass-through forwards the header like any other; the mock ignores it.
            let authorization = HeaderValue::from_static("Bearer pass-through");
            (addr, authorization)
        }
        Scenario::Valid | Scenario::CacheHit | Scenario::Rejected => {
            let addr = serve_proxy(mock_addr, scratch).await?;
            let authorization = match scenario {
                Scenario::Rejected => {
                    let unknown = llm_proxy_store::token::generate_token()
                        .map_err(|err| BenchError::Gate(err.to_string()))?;
                    HeaderValue::from_str(&format!("Bearer {unknown}")).map_err(|_| {
                        BenchError::Gate("generated token is not a header value".into())
                    })?
                }
                _ => runner::create_token(&client, addr, MANAGEMENT_TOKEN).await?,
            };
            (addr, authorization)
        }
    };
    let uri: Uri = format!("http://{proxy_addr}/v1/chat/completions")
        .parse()
        .map_err(|_| BenchError::Gate("proxy URI".into()))?;
    let spec = RequestSpec {
        uri,
        body: Bytes::from_static(CHAT_BODY),
        authorization: Some(authorization),
        expected_status: match scenario {
            Scenario::Valid | Scenario::CacheHit | Scenario::PassThrough => StatusCode::OK,
            Scenario::Rejected => StatusCode::UNAUTHORIZED,
        },
        ..RequestSpec::default()
    };
    let spec = if scenario == Scenario::CacheHit {
        let spec = runner::cache_hits_of(spec);
        runner::warm_cache(&client, &spec).await?;
        spec
    } else {
        spec
    };
    let result = loadgen::closed_loop(&client, &spec, 1, Stop::Requests(requests)).await;
    if result.expected != requests {
        return Err(BenchError::Gate(format!(
            "{} of {requests} answers were as expected ({} other statuses, {} errors)",
            result.expected, result.unexpected_status, result.transport_errors
        )));
    }
    Ok(())
}

/// Serves the real `llm-proxy` router (default configuration) in this thread's runtime.
async fn serve_proxy(
    mock_addr: SocketAddr,
    scratch: &std::path::Path,
) -> Result<SocketAddr, BenchError> {
    let vars: Vec<(&str, String)> = vec![
        (env::MANAGEMENT_TOKEN, MANAGEMENT_TOKEN.to_owned()),
        (env::OPENAI_API_URL, format!("http://{mock_addr}")),
        (
            env::DATABASE_PATH,
            scratch.join("proxy.db").display().to_string(),
        ),
        (
            env::AUDIT_LOG_FILE,
            scratch.join("audit.log").display().to_string(),
        ),
        (
            env::API_CONFIG_PATH,
            scratch.join("absent.yaml").display().to_string(),
        ),
        (env::LOG_LEVEL, "error".to_owned()),
    ];
    let config = ServerConfig::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    })
    .map_err(|e| BenchError::Gate(format!("proxy configuration: {e}")))?;
    let store = llm_proxy_store::connect(&config.store)
        .await
        .map_err(|e| BenchError::Gate(format!("store: {e}")))?;
    let audit = Audit::start(&config.audit, store.clone())
        .await
        .map_err(|e| BenchError::Gate(format!("audit: {e}")))?;
    let events = EventPublisher::in_memory(config.observability.buffer_size);
    let app::App {
        service,
        caches,
        metrics,
        ..
    } = app::build(&config, app::Dependencies::new(store, audit, Some(events)));
    // As in the server: only the service keeps the data path's state alive.
    drop(caches);

    let (proxy_listener, proxy_addr) = bind_loopback("the proxy").await?;
    // The server's own connection loop (TCP_NODELAY, caps, deadlines), as in `llm-proxy server`.
    tokio::spawn(llm_proxy::connections::serve(
        proxy_listener,
        service,
        config.connections,
        metrics,
        tokio_util::sync::CancellationToken::new(),
    ));

    Ok(proxy_addr)
}

/// A listener on a free loopback port, and its address.
async fn bind_loopback(what: &str) -> Result<(tokio::net::TcpListener, SocketAddr), BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(BenchError::io(format!("binding {what}")))?;
    let addr = listener
        .local_addr()
        .map_err(BenchError::io(format!("address of {what}")))?;
    Ok((listener, addr))
}
