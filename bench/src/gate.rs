//! The deterministic regression gate: `bench-gate-driver` (the real router in-process, single
//! thread, against an in-process mock over loopback) runs under `valgrind --tool=callgrind` twice
//! per scenario with different request counts; the difference of the instruction totals divided
//! by the difference of the counts is the cost of one request, free of start-up cost. Compared
//! with `bench/baseline.json`; more than [`TOLERANCE`] above the baseline fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// Allowed growth of instructions per request over the baseline.
pub const TOLERANCE: f64 = 0.10;
/// Request counts of the two runs of a scenario.
pub const SHORT_RUN: u64 = 100;
pub const LONG_RUN: u64 = 500;

/// A scenario of the gate (the driver's `--scenario` value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Valid token, non-streamed completion: the default path.
    Valid,
    /// Well-formed token the store does not know: rejected with 401.
    Rejected,
    /// Valid token, the same completion with the client's cache opt-in, answered from the
    /// in-memory cache (warmed once before the counted requests).
    CacheHit,
    /// The bare pass-through ([`crate::passthrough`]) forwarding the valid scenario's request: the
    /// reference the proxy scenarios are read against (their cost minus this one is the proxy's
    /// own work; client, mock and loopback are in both).
    PassThrough,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::Valid,
        Scenario::Rejected,
        Scenario::CacheHit,
        Scenario::PassThrough,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Valid => "valid",
            Scenario::Rejected => "rejected",
            Scenario::CacheHit => "cache-hit",
            Scenario::PassThrough => "pass-through",
        }
    }
}

/// The committed baseline: instructions per request by scenario name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub instructions_per_request: BTreeMap<String, u64>,
    /// How the numbers were obtained (valgrind version, profile), for the reader.
    pub recorded_with: String,
}

/// `totals:` (or `summary:`) instruction count of a callgrind output file.
pub fn parse_callgrind_total(output: &str) -> Option<u64> {
    let field = |prefix: &str| {
        output.lines().find_map(|line| {
            line.strip_prefix(prefix)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
    };
    field("totals:").or_else(|| field("summary:"))
}

/// Instructions of one request from two runs of `short` and `long` requests.
pub fn per_request(short_total: u64, long_total: u64, short: u64, long: u64) -> Option<u64> {
    let requests = long.checked_sub(short).filter(|n| *n > 0)?;
    Some(long_total.saturating_sub(short_total) / requests)
}

/// One scenario's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub scenario: String,
    pub measured: u64,
    pub baseline: Option<u64>,
    pub passed: bool,
}

impl Verdict {
    pub fn describe(&self) -> String {
        match self.baseline {
            Some(baseline) => format!(
                "{}: {} instructions/request, baseline {} ({:+.1}%): {}",
                self.scenario,
                self.measured,
                baseline,
                (self.measured as f64 / baseline.max(1) as f64 - 1.0) * 100.0,
                if self.passed { "ok" } else { "REGRESSION" }
            ),
            None => format!(
                "{}: {} instructions/request, no baseline: FAIL (run with BENCH_GATE_UPDATE=1)",
                self.scenario, self.measured
            ),
        }
    }
}

/// Each proxy scenario's instructions per request minus the pass-through's, as `(scenario,
/// difference)`: the proxy's own work for the valid scenario; negative for a rejection, which
/// never reaches the upstream. Empty without a pass-through measurement.
pub fn versus_pass_through(measured: &BTreeMap<String, u64>) -> Vec<(String, i64)> {
    let Some(&reference) = measured.get(Scenario::PassThrough.name()) else {
        return Vec::new();
    };
    let signed = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
    measured
        .iter()
        .filter(|(scenario, _)| scenario.as_str() != Scenario::PassThrough.name())
        .map(|(scenario, &cost)| (scenario.clone(), signed(cost) - signed(reference)))
        .collect()
}

/// Compares measurements with the baseline; a scenario without baseline fails.
pub fn compare(baseline: &Baseline, measured: &BTreeMap<String, u64>) -> Vec<Verdict> {
    measured
        .iter()
        .map(|(scenario, &measured)| {
            let baseline = baseline.instructions_per_request.get(scenario).copied();
            let passed = baseline
                .is_some_and(|baseline| measured as f64 <= baseline as f64 * (1.0 + TOLERANCE));
            Verdict {
                scenario: scenario.clone(),
                measured,
                baseline,
                passed,
            }
        })
        .collect()
}

/// Runs `driver` under callgrind for `requests` of `scenario`; returns the instruction total.
pub fn callgrind_total(
    driver: &Path,
    scenario: Scenario,
    requests: u64,
    scratch: &Path,
) -> Result<u64, BenchError> {
    let out_file = scratch.join(format!("callgrind.{}.{requests}.out", scenario.name()));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(driver)
        .arg("--scenario")
        .arg(scenario.name())
        .arg("--requests")
        .arg(requests.to_string())
        .output()
        .map_err(BenchError::io(
            "running valgrind (install it: apt-get install valgrind)",
        ))?;
    if !output.status.success() {
        return Err(BenchError::Gate(format!(
            "the driver failed under callgrind ({} {}): {}",
            scenario.name(),
            requests,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        )));
    }
    let text = std::fs::read_to_string(&out_file)
        .map_err(BenchError::io(format!("reading {}", out_file.display())))?;
    parse_callgrind_total(&text)
        .ok_or_else(|| BenchError::Gate(format!("no totals in {}", out_file.display())))
}

/// Measures every scenario: instructions per request by scenario name.
pub fn measure(driver: &Path, scratch: &Path) -> Result<BTreeMap<String, u64>, BenchError> {
    let mut measured = BTreeMap::new();
    for scenario in Scenario::ALL {
        let short = callgrind_total(driver, scenario, SHORT_RUN, scratch)?;
        let long = callgrind_total(driver, scenario, LONG_RUN, scratch)?;
        let cost = per_request(short, long, SHORT_RUN, LONG_RUN).ok_or_else(|| {
            BenchError::Gate(format!("{}: inconsistent request counts", scenario.name()))
        })?;
        measured.insert(scenario.name().to_owned(), cost);
    }
    Ok(measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_totals_line() {
        let output = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 123456\n\nfn=(1) main\n3 10\ntotals: 123456\n";
        assert_eq!(parse_callgrind_total(output), Some(123_456));
        assert_eq!(parse_callgrind_total("events: Ir\nsummary: 42\n"), Some(42));
        assert_eq!(parse_callgrind_total("events: Ir\n"), None);
    }

    #[test]
    fn scenario_names_are_the_driver_arguments() {
        use clap::ValueEnum;
        for scenario in Scenario::ALL {
            assert_eq!(
                Scenario::from_str(scenario.name(), false),
                Ok(scenario),
                "{}",
                scenario.name()
            );
        }
    }

    #[test]
    fn proxy_scenarios_are_read_against_the_pass_through() {
        let measured = BTreeMap::from([
            ("valid".to_owned(), 1_500),
            ("rejected".to_owned(), 900),
            ("pass-through".to_owned(), 1_000),
        ]);
        assert_eq!(
            versus_pass_through(&measured),
            vec![("rejected".to_owned(), -100), ("valid".to_owned(), 500)]
        );
        let without_reference = BTreeMap::from([("valid".to_owned(), 1_500)]);
        assert!(versus_pass_through(&without_reference).is_empty());
    }

    #[test]
    fn per_request_cost_excludes_start_up() {
        // start-up 1,000,000 + 2,000 per request
        assert_eq!(per_request(1_200_000, 2_000_000, 100, 500), Some(2_000));
        assert_eq!(per_request(1, 2, 5, 5), None);
        assert_eq!(per_request(1, 2, 6, 5), None);
    }

    #[test]
    fn growth_beyond_ten_percent_fails_and_missing_baselines_fail() {
        let baseline = Baseline {
            instructions_per_request: BTreeMap::from([
                ("valid".to_owned(), 1_000),
                ("rejected".to_owned(), 1_000),
            ]),
            recorded_with: String::new(),
        };
        let measured = BTreeMap::from([
            ("valid".to_owned(), 1_100),
            ("rejected".to_owned(), 1_101),
            ("cache-hit".to_owned(), 10),
        ]);
        let verdicts = compare(&baseline, &measured);
        let passed = |name: &str| verdicts.iter().find(|v| v.scenario == name).unwrap().passed;
        assert!(passed("valid"));
        assert!(!passed("rejected"));
        assert!(!passed("cache-hit"));
        assert!(verdicts.iter().any(|v| v.describe().contains("REGRESSION")));
        assert!(
            verdicts
                .iter()
                .any(|v| v.describe().contains("no baseline"))
        );
    }
}
