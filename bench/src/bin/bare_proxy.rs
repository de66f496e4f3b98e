//! `bare-proxy`: the physical-limit reference. Same runtime as `llm-proxy` (multi-threaded, sized by
//! `TOKIO_WORKER_THREADS`) and the same allocator (mimalloc), `TCP_NODELAY` on both sides, one
//! pooled client, no logic.

use std::process::ExitCode;

use clap::Parser;
use http::uri::Authority;
use llm_proxy_bench::passthrough;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Forwards every request to the upstream and streams the answer back")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9091")]
    listen: std::net::SocketAddr,
    /// Upstream `host:port`.
    #[arg(long)]
    upstream: Authority,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bare-proxy: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        passthrough::serve(listener, args.upstream).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bare-proxy: {err}");
            ExitCode::FAILURE
        }
    }
}
