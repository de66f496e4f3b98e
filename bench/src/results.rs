//! The results file (`bench/results/latest.json`): every number the report prints, with the
//! machine facts and settings it was measured under. The report is generated from this only.

use serde::{Deserialize, Serialize};

use crate::loadgen::LoadSummary;
use crate::stats::{Added, Percentiles};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResults {
    pub machine: MachineFacts,
    pub settings: Settings,
    pub latency: LatencyScenario,
    pub throughput: Vec<ThroughputPoint>,
    pub stream: Option<StreamScenario>,
    pub rejection: Option<RejectionScenario>,
    pub memory: Option<MemoryScenario>,
    /// S5: cache hits of the default proxy (in-memory cache).
    #[serde(default)]
    pub cache_hit: Option<CacheHitScenario>,
    /// R4: the proxy with Redis (cache, rate limits, Redis Streams bus); `None` without Redis,
    /// and then `not_measured` says so.
    #[serde(default)]
    pub redis: Option<RedisScenario>,
    /// Scenarios that were not run, with the reason.
    pub not_measured: Vec<NotMeasured>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineFacts {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub commit: String,
    /// Cargo profile of the measured binaries.
    pub profile: String,
    /// `/proc/loadavg` 1-minute values at the start and the end of the run.
    pub load_average_start: f64,
    pub load_average_end: f64,
    /// Whether processes were pinned with `taskset` (proxy/bare on core 1, mock and driver on 0).
    pub pinned: bool,
    /// `BENCH_QUICK=1` smoke run.
    pub quick: bool,
    /// UTC time the run started (RFC 3339).
    pub started_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub rounds: usize,
    pub requests_per_round: u64,
    pub warmup_requests: u64,
    pub throughput_seconds: f64,
    pub stream_chunks: usize,
    pub stream_interval_ms: u64,
    pub stream_concurrency: usize,
    /// Interleaved rounds of the stream scenario (1 in results recorded before it had rounds).
    #[serde(default = "one_round")]
    pub stream_rounds: usize,
    pub streams_per_round: u64,
    pub memory_load_concurrency: usize,
}

fn one_round() -> usize {
    1
}

/// S1: closed loop at c=1 against an instant mock, interleaved rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyScenario {
    /// All rounds merged, per target.
    pub direct: Percentiles,
    pub bare: Percentiles,
    pub proxy: Percentiles,
    /// Median over rounds of (target − direct) per percentile.
    pub bare_added_p50: Added,
    pub bare_added_p99: Added,
    pub proxy_added_p50: Added,
    pub proxy_added_p99: Added,
    /// proxy added p99 / bare added p99.
    pub overhead_ratio_p99: Option<f64>,
    pub overhead_ratio_p50: Option<f64>,
    pub proxy_errors: u64,
}

/// S2: closed-loop throughput at one concurrency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputPoint {
    pub concurrency: usize,
    pub direct: LoadSummary,
    pub bare: LoadSummary,
    pub proxy: LoadSummary,
    /// proxy RPS / bare RPS.
    pub ratio_to_bare: Option<f64>,
}

/// S4: SSE streams through each target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamScenario {
    /// All streams of all rounds.
    pub direct: LoadSummary,
    pub bare: LoadSummary,
    pub proxy: LoadSummary,
    /// The first wave of each round: its streams start together after the target sat idle while
    /// the other targets ran, so they pay whatever went cold (absent from older results).
    #[serde(default)]
    pub first_wave: StreamWave,
    /// The later waves of each round: the target was busy streaming just before they started.
    #[serde(default)]
    pub later_waves: StreamWave,
    /// proxy TTFT p99 − direct TTFT p99.
    pub proxy_ttft_added_p99_us: f64,
    pub bare_ttft_added_p99_us: f64,
}

/// One wave position's streams, per target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamWave {
    pub direct: LoadSummary,
    pub bare: LoadSummary,
    pub proxy: LoadSummary,
}

/// S9: a flood of requests with a well-formed but unknown token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectionScenario {
    pub concurrency: usize,
    pub rejected: LoadSummary,
    /// Pass-through RPS at the same concurrency.
    pub bare_rps: f64,
    /// rejected RPS / bare RPS.
    pub ratio_to_bare: Option<f64>,
}

/// S7: VmRSS of the proxy process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryScenario {
    /// After start-up, before the first request.
    pub idle_kib: u64,
    /// Highest sample during the load run.
    pub load_peak_kib: u64,
    /// After the load stopped and the settle time passed.
    pub after_kib: u64,
    pub load_concurrency: usize,
    pub load: LoadSummary,
    pub settle_seconds: f64,
}

/// S5: c=1 cache hits (`X-PROXY-CACHE: hit` required, a miss is an error) interleaved with the
/// instant mock and with a mock that waits `upstream_delay_ms` (a stand-in for a real upstream,
/// which a hit never reaches).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheHitScenario {
    /// `in-memory` or `redis`.
    pub backend: String,
    pub upstream_delay_ms: u64,
    /// All rounds merged: the instant mock, the delayed mock, the proxy's hits.
    pub direct: Percentiles,
    pub direct_delayed: Percentiles,
    pub hit: Percentiles,
    /// Median over rounds of (hit − instant mock) per percentile.
    pub hit_added_p50: Added,
    pub hit_added_p99: Added,
    /// Misses, other statuses and transport errors of the hit runs.
    pub hit_errors: u64,
}

/// R4: the proxy with `LLM_PROXY_EVENT_BUS=redis-streams`, `HTTP_CACHE_BACKEND=redis` and
/// `DISTRIBUTED_RATE_LIMIT_ENABLED=true` (a limit it never reaches), against the same mock and
/// pass-through as the default proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisScenario {
    /// Where the Redis server came from (`BENCH_REDIS_URL` or a private redis-server).
    pub server: String,
    pub latency: LatencyScenario,
    pub throughput: ThroughputPoint,
    pub cache_hit: CacheHitScenario,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotMeasured {
    pub scenario: String,
    pub reason: String,
}
