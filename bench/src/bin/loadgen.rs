//! `loadgen`: the load driver on its own, for ad-hoc runs; prints a JSON summary.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderValue, StatusCode, Uri};
use llm_proxy_bench::loadgen::{self, RequestSpec, Stop};
use llm_proxy_bench::net;

#[derive(Debug, Parser)]
#[command(
    about = "Closed-loop (--concurrency) or open-loop (--rate) POST load with latency percentiles"
)]
struct Args {
    /// Target URI, e.g. http://127.0.0.1:8080/v1/chat/completions.
    uri: Uri,
    /// Closed loop: this many concurrent workers.
    #[arg(long, default_value_t = 1, conflicts_with = "rate")]
    concurrency: usize,
    /// Open loop: this many requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Run for this many seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Request body (JSON); add "stream": true for SSE.
    #[arg(
        long,
        default_value = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#
    )]
    body: String,
    /// Bearer token sent in `Authorization`, read from this environment variable (never a flag,
    /// so it stays out of shell history and process listings).
    #[arg(long, default_value = "LOADGEN_TOKEN")]
    token_env: String,
    /// Status counted as success.
    #[arg(long, default_value_t = 200)]
    expect_status: u16,
    /// Open loop: requests in flight beyond this are counted as errors.
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Ok(expected_status) = StatusCode::from_u16(args.expect_status) else {
        eprintln!(
            "loadgen: --expect-status {} is not an HTTP status",
            args.expect_status
        );
        return ExitCode::from(2);
    };
    let authorization = match std::env::var(&args.token_env) {
        Ok(token) => match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(value) => Some(value),
            Err(_) => {
                eprintln!("loadgen: ${} is not a valid header value", args.token_env);
                return ExitCode::from(2);
            }
        },
        Err(_) => None,
    };
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        eprintln!("loadgen: --seconds must be a positive number");
        return ExitCode::from(2);
    }
    if args
        .rate
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        eprintln!("loadgen: --rate must be a positive number");
        return ExitCode::from(2);
    }
    let spec = RequestSpec {
        uri: args.uri,
        body: Bytes::from(args.body),
        authorization,
        expected_status,
        ..RequestSpec::default()
    };
    let duration = Duration::from_secs_f64(args.seconds);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("loadgen: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = net::pooled_client();
        match args.rate {
            Some(rate) => {
                loadgen::open_loop(&client, &spec, rate, duration, args.max_in_flight).await
            }
            None => {
                loadgen::closed_loop(&client, &spec, args.concurrency, Stop::Duration(duration))
                    .await
            }
        }
    });
    match serde_json::to_string_pretty(&result.summary()) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("loadgen: {err}");
            ExitCode::FAILURE
        }
    }
}
