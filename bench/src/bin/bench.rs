//! `bench`: the benchmark runner (`run`), the report generator (`report`) and the callgrind gate
//! (`gate`). `make bench` and `make bench-gate` call it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use llm_proxy_bench::error::BenchError;
use llm_proxy_bench::report;
use llm_proxy_bench::results::BenchResults;
use llm_proxy_bench::runner::{self, Paths, Plan};

/// Set in the environment of the re-executed, pinned runner.
const PINNED_MARKER: &str = "LLM_PROXY_BENCH_PINNED";

#[derive(Debug, Parser)]
#[command(about = "llm-proxy benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure direct, pass-through and llm-proxy (BENCH_QUICK=1 for a ~1 minute smoke run);
    /// writes OUT_DIR/latest.json and prints the Markdown report.
    Run {
        /// Directory of results.
        #[arg(long, default_value = "bench/results")]
        out_dir: PathBuf,
        /// Short smoke run.
        #[arg(long, env = "BENCH_QUICK", value_parser = clap::builder::FalseyValueParser::new())]
        quick: bool,
    },
    /// Print the Markdown report of a results file (the source of docs/benchmarks.md).
    Report {
        /// A results JSON file.
        results: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run { out_dir, quick } => run(&out_dir, quick),
        Command::Report { results } => read_results(&results).map(|results| {
            print!("{}", report::markdown(&results));
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn read_results(path: &Path) -> Result<BenchResults, BenchError> {
    let text = std::fs::read_to_string(path)
        .map_err(BenchError::io(format!("reading {}", path.display())))?;
    serde_json::from_str(&text).map_err(|source| BenchError::Json {
        path: path.to_owned(),
        source,
    })
}

fn run(out_dir: &Path, quick: bool) -> Result<(), BenchError> {
    if llm_proxy_bench::machine::can_pin() && std::env::var_os(PINNED_MARKER).is_none() {
        return reexec_pinned();
    }
    let exe = std::env::current_exe().map_err(BenchError::io("locating the bench binary"))?;
    let bin_dir = exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let profile = bin_dir.file_name().map_or_else(
        || "unknown".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let repo = std::env::current_dir().map_err(BenchError::io("reading the current directory"))?;
    let paths = Paths {
        bin_dir,
        repo,
        profile,
    };
    let plan = if quick { Plan::quick() } else { Plan::full() };
    // The driver shares its core with the mock: one thread is all it may use.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the runtime"))?;
    let results = runtime.block_on(runner::run(&plan, &paths))?;
    std::fs::create_dir_all(out_dir)
        .map_err(BenchError::io(format!("creating {}", out_dir.display())))?;
    let json_path = out_dir.join("latest.json");
    let json = serde_json::to_string_pretty(&results).map_err(|source| BenchError::Json {
        path: json_path.clone(),
        source,
    })?;
    std::fs::write(&json_path, json + "\n")
        .map_err(BenchError::io(format!("writing {}", json_path.display())))?;
    let markdown = report::markdown(&results);
    let markdown_path = out_dir.join("latest.md");
    std::fs::write(&markdown_path, &markdown).map_err(BenchError::io(format!(
        "writing {}",
        markdown_path.display()
    )))?;
    print!("{markdown}");
    eprintln!(
        "bench: wrote {} and {}",
        json_path.display(),
        markdown_path.display()
    );
    Ok(())
}

/// Runs this same command again under `taskset -c 0`, so the driver (and the mock it starts)
/// stay off the proxy's core.
fn reexec_pinned() -> Result<(), BenchError> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(BenchError::io("locating the bench binary"))?;
    let error = std::process::Command::new("taskset")
        .arg("-c")
        .arg(runner::DRIVER_CORE.to_string())
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(PINNED_MARKER, "1")
        .exec();
    Err(BenchError::io("re-executing under taskset")(error))
}
