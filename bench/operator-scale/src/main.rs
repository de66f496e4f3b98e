//! `operator-scale`: the operator-scale benchmark (`run`) and its report (`report`). `make
//! bench-operator` calls both.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use llm_proxy_bench::error::BenchError;
use llm_proxy_operator_bench::report;
use llm_proxy_operator_bench::results::OperatorScaleResults;
use llm_proxy_operator_bench::scenario::{self, Paths, Plan};

#[derive(Debug, Parser)]
#[command(about = "llm-proxy-operator scale benchmark against the fake API server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator binary against the fake API server with many LlmProxy objects; writes the
    /// results JSON and prints the Markdown report.
    Run {
        /// LlmProxy objects to create.
        #[arg(long, default_value_t = 1000)]
        objects: usize,
        /// Namespaces to spread them over.
        #[arg(long, default_value_t = 10)]
        namespaces: usize,
        /// The operator's resync interval; shorter than the steady window so that every object is
        /// re-reconciled inside it.
        #[arg(long, default_value_t = 30)]
        resync_seconds: u64,
        /// Length of the steady-state window after convergence.
        #[arg(long, default_value_t = 45)]
        steady_seconds: u64,
        /// Give up when convergence takes longer.
        #[arg(long, default_value_t = 900)]
        timeout_seconds: u64,
        /// The operator binary (default: `llm-proxy-operator` next to this binary).
        #[arg(long)]
        operator: Option<PathBuf>,
        /// Directory of the LlmProxy samples.
        #[arg(long, default_value = "config/samples")]
        samples: PathBuf,
        /// The results file.
        #[arg(long, default_value = "bench/results/operator-scale.json")]
        out: PathBuf,
    },
    /// Print the Markdown report of a results file (the source of docs/operator-benchmarks.md).
    Report {
        /// A results JSON file.
        results: PathBuf,
        /// Results of an earlier commit on the same host, compared in a before/after table.
        #[arg(long)]
        baseline: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Run {
            objects,
            namespaces,
            resync_seconds,
            steady_seconds,
            timeout_seconds,
            operator,
            samples,
            out,
        } => {
            let plan = Plan {
                objects,
                namespaces,
                resync_seconds: resync_seconds.max(1),
                steady_seconds,
                poll_interval: Duration::from_millis(100),
                convergence_timeout: Duration::from_secs(timeout_seconds),
            };
            run(&plan, operator, samples, &out)
        }
        Command::Report { results, baseline } => read_results(&results).and_then(|results| {
            let baseline = baseline.as_deref().map(read_results).transpose()?;
            print!("{}", report::markdown(&results, baseline.as_ref()));
            Ok(())
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("operator-scale: {err}");
            ExitCode::FAILURE
        }
    }
}

fn read_results(path: &Path) -> Result<OperatorScaleResults, BenchError> {
    let text = std::fs::read_to_string(path)
        .map_err(BenchError::io(format!("reading {}", path.display())))?;
    serde_json::from_str(&text).map_err(|source| BenchError::Json {
        path: path.to_owned(),
        source,
    })
}

fn run(
    plan: &Plan,
    operator: Option<PathBuf>,
    samples_dir: PathBuf,
    out: &Path,
) -> Result<(), BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::io("locating this binary"))?;
    let bin_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let operator = operator.unwrap_or_else(|| bin_dir.join("llm-proxy-operator"));
    let profile = operator.parent().and_then(Path::file_name).map_or_else(
        || "unknown".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let repo = std::env::current_dir().map_err(BenchError::io("reading the current directory"))?;
    let paths = Paths {
        operator,
        samples_dir,
        repo,
        work_dir: std::env::temp_dir().join(format!("operator-scale-{}", std::process::id())),
        profile,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the runtime"))?;
    let outcome = runtime.block_on(scenario::run(plan, &paths));
    let results = match outcome {
        Ok(results) => {
            // The log is only kept when the run failed (the error names it).
            let _ = std::fs::remove_dir_all(&paths.work_dir);
            results
        }
        Err(error) => return Err(error),
    };
    if let Some(dir) = out.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(BenchError::io(format!("creating {}", dir.display())))?;
    }
    let json = serde_json::to_string_pretty(&results).map_err(|source| BenchError::Json {
        path: out.to_owned(),
        source,
    })?;
    std::fs::write(out, json + "\n")
        .map_err(BenchError::io(format!("writing {}", out.display())))?;
    print!("{}", report::markdown(&results, None));
    eprintln!("operator-scale: wrote {}", out.display());
    Ok(())
}
