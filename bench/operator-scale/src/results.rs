//! The results file (`bench/results/operator-scale.json`): every number the report prints, with
//! the machine facts and settings of the run. The report is generated from this only.

use std::collections::BTreeMap;

use fake_kube_apiserver::{RequestRecord, WriteRecord};
use llm_proxy_bench::results::MachineFacts;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorScaleResults {
    pub machine: MachineFacts,
    pub settings: Settings,
    /// From the operator's start until its watches were open (before any LlmProxy existed).
    pub startup: Phase,
    /// From the burst of objects until every one reported Ready.
    pub convergence: Convergence,
    /// The window after convergence in which nothing changed.
    pub steady_state: SteadyState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub objects: usize,
    pub namespaces: usize,
    /// Sample files cycled through (`config/samples/`).
    pub samples: Vec<String>,
    /// The operator's `--resync-seconds` (periodic re-reconcile of a healthy object).
    pub resync_seconds: u64,
    pub steady_seconds: u64,
    /// How often the harness played the deployment controller and volume binder and counted Ready.
    pub poll_interval_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub seconds: f64,
    pub requests: RequestCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Convergence {
    /// Seconds from the burst until every object had `Ready=True` for its generation.
    pub seconds: f64,
    /// Seconds from the burst until its last write once every object was Ready (the convergence
    /// phase, and its request counts, end when no write has come for a second).
    #[serde(default)]
    pub last_write_seconds: f64,
    /// Seconds until the first, half, 90 % of the objects were Ready.
    pub first_ready_seconds: f64,
    pub half_ready_seconds: f64,
    pub ninety_percent_ready_seconds: f64,
    pub requests: RequestCounts,
    /// VmRSS of the operator when the last object became Ready.
    pub rss_kib: u64,
    /// Highest VmRSS sampled during convergence.
    pub peak_rss_kib: u64,
    /// CPU (user + system) the operator used from the burst to convergence.
    pub operator_cpu_seconds: f64,
    /// CPU this process used meanwhile: the fake API server (serving every request and watch) and
    /// the harness's polling.
    pub harness_cpu_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteadyState {
    pub seconds: f64,
    pub requests: RequestCounts,
    /// When the last write of the window was seen, in seconds after its start (to the poll
    /// interval); `None` when there was none.
    pub last_write_seconds: Option<f64>,
    /// Objects not Ready at the end of the window (expected 0).
    pub not_ready_at_end: usize,
    pub rss_kib_at_end: u64,
}

/// API requests of the operator in one phase (the harness's own set-up goes through test-side
/// accessors and is not counted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// By verb: get, list, watch, create, update, patch, delete.
    pub by_verb: BTreeMap<String, usize>,
    /// get + list + watch.
    pub reads: usize,
    /// create + update + patch + delete (including writes that changed nothing).
    pub writes: usize,
    /// Writes the server answered with an error (conflicts, ...).
    pub failed: usize,
    /// Successful writes that changed nothing (an apply of what is already stored).
    pub no_op_writes: usize,
    /// Successful writes by `Kind` (`Kind/status` for the status subresource).
    pub writes_by_kind: BTreeMap<String, usize>,
    /// Reads per object (`reads / objects`).
    pub reads_per_object: f64,
    pub writes_per_object: f64,
}

impl RequestCounts {
    pub fn tally(requests: &[RequestRecord], writes: &[WriteRecord], objects: usize) -> Self {
        let mut counts = Self::default();
        for request in requests {
            *counts.by_verb.entry(request.verb.to_string()).or_default() += 1;
            if request.verb.is_write() {
                counts.writes += 1;
                if request.status >= 400 {
                    counts.failed += 1;
                }
            } else {
                counts.reads += 1;
            }
        }
        for write in writes {
            let kind = match &write.subresource {
                Some(subresource) => format!("{}/{subresource}", write.kind),
                None => write.kind.clone(),
            };
            *counts.writes_by_kind.entry(kind).or_default() += 1;
            if !write.changed {
                counts.no_op_writes += 1;
            }
        }
        let per_object = |count: usize| count as f64 / objects.max(1) as f64;
        counts.reads_per_object = per_object(counts.reads);
        counts.writes_per_object = per_object(counts.writes);
        counts
    }
}
