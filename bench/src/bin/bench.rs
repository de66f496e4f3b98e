//! `bench`: the benchmark runner (`run`), the report generator (`report`) and the callgrind gate
//! (`gate`). `make bench` and `make bench-gate` call it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use llm_proxy_bench::error::BenchError;
use llm_proxy_bench::gate::{self, Baseline};
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
        /// Redis server of the Redis configuration (default: a private redis-server from PATH,
        /// if installed; otherwise the report says "not measured: no Redis").
        #[arg(long, env = "BENCH_REDIS_URL", hide_env_values = true)]
        redis_url: Option<String>,
    },
    /// Instructions per request under callgrind, compared with the baseline (fails on > 10 %
    /// growth); BENCH_GATE_UPDATE=1 rewrites the baseline instead.
    Gate {
        /// The committed baseline.
        #[arg(long, default_value = "bench/baseline.json")]
        baseline: PathBuf,
        /// Rewrite the baseline with this run's numbers.
        #[arg(long, env = "BENCH_GATE_UPDATE", value_parser = clap::builder::FalseyValueParser::new())]
        update: bool,
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
        Command::Run {
            out_dir,
            quick,
            redis_url,
        } => run(&out_dir, quick, redis_url),
        Command::Gate { baseline, update } => gate(&baseline, update),
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

fn run(out_dir: &Path, quick: bool, redis_url: Option<String>) -> Result<(), BenchError> {
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
        redis_url,
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

fn gate(baseline_path: &Path, update: bool) -> Result<(), BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::io("locating the bench binary"))?;
    let driver = exe.with_file_name("bench-gate-driver");
    let scratch = std::env::temp_dir().join(format!("llm-proxy-bench-gate-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .map_err(BenchError::io(format!("creating {}", scratch.display())))?;
    let measured = gate::measure(&driver, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let measured = measured?;
    if update {
        let baseline = Baseline {
            instructions_per_request: measured,
            recorded_with: format!(
                "{}, profile {}, {} and {} requests per scenario",
                valgrind_version(),
                exe.parent()
                    .and_then(Path::file_name)
                    .map_or_else(|| "unknown".into(), |name| name.to_string_lossy()),
                gate::SHORT_RUN,
                gate::LONG_RUN
            ),
        };
        let json = serde_json::to_string_pretty(&baseline).map_err(|source| BenchError::Json {
            path: baseline_path.to_owned(),
            source,
        })?;
        std::fs::write(baseline_path, json + "\n").map_err(BenchError::io(format!(
            "writing {}",
            baseline_path.display()
        )))?;
        for (scenario, cost) in &baseline.instructions_per_request {
            println!("{scenario}: {cost} instructions/request (baseline updated)");
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(baseline_path).map_err(BenchError::io(format!(
        "reading {}",
        baseline_path.display()
    )))?;
    let baseline: Baseline = serde_json::from_str(&text).map_err(|source| BenchError::Json {
        path: baseline_path.to_owned(),
        source,
    })?;
    let verdicts = gate::compare(&baseline, &measured);
    for verdict in &verdicts {
        println!("{}", verdict.describe());
    }
    for (scenario, difference) in gate::versus_pass_through(&measured) {
        println!("{scenario}: {difference:+} instructions/request against the pass-through");
    }
    if verdicts.iter().all(|verdict| verdict.passed) {
        Ok(())
    } else {
        Err(BenchError::Gate(format!(
            "instructions per request grew more than {:.0}% (see above)",
            gate::TOLERANCE * 100.0
        )))
    }
}

fn valgrind_version() -> String {
    std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "valgrind".to_owned())
}
