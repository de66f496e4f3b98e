//! `bench-mock`: the mock OpenAI upstream of the benchmark, on a single-threaded runtime.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use llm_proxy_bench::mock::{self, MockSettings};

#[derive(Debug, Parser)]
#[command(
    about = "Mock OpenAI upstream: instant 1.4 KB completion, or paced SSE for \"stream\": true"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: std::net::SocketAddr,
    /// Wait before the response headers, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Content chunks of a streamed response.
    #[arg(long, default_value_t = 64)]
    stream_chunks: usize,
    /// Pause between two chunks, in milliseconds.
    #[arg(long, default_value_t = 20)]
    chunk_interval_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = MockSettings {
        delay: Duration::from_millis(args.delay_ms),
        stream_chunks: args.stream_chunks,
        chunk_interval: Duration::from_millis(args.chunk_interval_ms),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench-mock: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        mock::serve(listener, settings).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-mock: {err}");
            ExitCode::FAILURE
        }
    }
}
