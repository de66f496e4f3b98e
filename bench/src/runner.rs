//! One benchmark run: starts the mock (plus a delayed one for the cache comparison), the bare
//! pass-through and the real `llm-proxy` (default configuration: SQLite in a temporary directory,
//! in-memory event bus and cache, a token created through `/manage`), then measures every scenario
//! with the targets interleaved. When a Redis server is available (`BENCH_REDIS_URL`, else a
//! private `redis-server` from `PATH`) a second proxy with the Redis cache, Redis rate limits and
//! the Redis Streams bus is measured against the same mock and pass-through. Each scenario is one
//! function.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use llm_proxy_env as env;

use crate::error::BenchError;
use crate::loadgen::{self, LoadResult, RequestSpec, Stop};
use crate::machine;
use crate::net::{self, DriverClient};
use crate::process::{self, BenchProcess};
use crate::results::*;
use crate::stats::{self, Added, ratio};

/// Core of the proxy and the pass-through; the mock and the driver use [`DRIVER_CORE`].
pub const PROXY_CORE: usize = 1;
pub const DRIVER_CORE: usize = 0;
/// Concurrencies of the throughput scenario.
pub const THROUGHPUT_CONCURRENCIES: [usize; 2] = [16, 64];
/// Concurrency of the Redis configuration's throughput point (the issue's target level).
pub const THROUGHPUT_CONCURRENCY: usize = 64;
/// Concurrency of the invalid-token flood (compared with the pass-through at the same level).
pub const REJECTION_CONCURRENCY: usize = 16;
/// Interleaved rounds of a throughput point; each target runs `throughput_seconds / rounds` per
/// round.
pub const THROUGHPUT_ROUNDS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the first cacheable request may take to become a hit (Redis stores in the background).
const CACHE_WARM_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait of the delayed mock the cache hits are compared with: a stand-in for a real upstream (real
/// LLM APIs take hundreds of milliseconds; a hit never reaches the upstream, so only the direct
/// comparison depends on it).
pub const CACHE_UPSTREAM_DELAY_MS: u64 = 1;
/// The client's opt-in that makes the proxy cache a POST (docs/configuration.md, HTTP cache).
pub const CACHE_OPT_IN: &str = "public, max-age=600";
/// A rate limit the Redis configuration never reaches: every check runs, none refuses.
const NEVER_REACHED_RATE_LIMIT: &str = "1000000000";
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
const CHAT_BODY: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the benchmark."}]}"#;
const STREAM_BODY: &[u8] = br#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello to the benchmark."}]}"#;

/// What a run does; [`Plan::full`] fits ~10 minutes on 2 cores, [`Plan::quick`] ~1 minute.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    pub settings: Settings,
    pub memory_settle: Duration,
    pub memory_load_duration: Duration,
}

impl Plan {
    pub fn full() -> Self {
        Self {
            quick: false,
            settings: Settings {
                rounds: 7,
                requests_per_round: 2_000,
                warmup_requests: 500,
                throughput_seconds: 15.0,
                stream_chunks: 64,
                stream_interval_ms: 20,
                stream_concurrency: 16,
                stream_rounds: 4,
                streams_per_round: 64,
                memory_load_concurrency: 256,
            },
            memory_settle: Duration::from_secs(5),
            memory_load_duration: Duration::from_secs(15),
        }
    }

    pub fn quick() -> Self {
        Self {
            quick: true,
            settings: Settings {
                rounds: 3,
                requests_per_round: 300,
                warmup_requests: 100,
                throughput_seconds: 2.0,
                stream_chunks: 16,
                stream_interval_ms: 5,
                stream_concurrency: 8,
                stream_rounds: 2,
                streams_per_round: 16,
                memory_load_concurrency: 256,
            },
            memory_settle: Duration::from_secs(1),
            memory_load_duration: Duration::from_secs(3),
        }
    }
}

/// Where the binaries are and where to keep scratch files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Directory with `bench-mock`, `bare-proxy` and `llm-proxy`.
    pub bin_dir: PathBuf,
    /// Repository root (for the commit).
    pub repo: PathBuf,
    /// Cargo profile the binaries were built with.
    pub profile: String,
    /// `BENCH_REDIS_URL`: the Redis server of the Redis configuration; without it a private
    /// `redis-server` is started when one is on `PATH`.
    pub redis_url: Option<String>,
}

/// The three targets, by base URL.
#[derive(Debug, Clone, Copy)]
struct Targets {
    direct: SocketAddr,
    bare: SocketAddr,
    proxy: SocketAddr,
}

/// The targets of one proxy configuration with the token it admits, and the driver's client.
struct Endpoints {
    targets: Targets,
    token: HeaderValue,
    client: DriverClient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Direct,
    Bare,
    Proxy,
}

const TARGETS: [Target; 3] = [Target::Direct, Target::Bare, Target::Proxy];

/// Scratch directory removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self, BenchError> {
        let path = std::env::temp_dir().join(format!("llm-proxy-bench-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path)
            .map_err(BenchError::io(format!("creating {}", path.display())))?;
        Ok(Self(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Rig {
    endpoints: Endpoints,
    /// The mock with [`CACHE_UPSTREAM_DELAY_MS`].
    delayed_mock: SocketAddr,
    proxy_pid: u32,
    idle_rss_kib: Option<u64>,
    scratch_dir: PathBuf,
    // Dropped last: the processes are killed before their scratch directory goes.
    _processes: Vec<BenchProcess>,
    _scratch: ScratchDir,
}

/// Runs every scenario of `plan` and returns the results.
pub async fn run(plan: &Plan, paths: &Paths) -> Result<BenchResults, BenchError> {
    let pinned = machine::can_pin();
    let load_average_start = machine::load_average();
    let started_at = utc_now();
    let rig = start_rig(plan, paths, pinned).await?;
    let settings = &plan.settings;

    warm_up(&rig.endpoints, settings).await;
    let latency = latency_scenario(&rig.endpoints, settings).await;
    let mut throughput = Vec::new();
    for concurrency in THROUGHPUT_CONCURRENCIES {
        throughput.push(throughput_point(&rig.endpoints, settings, concurrency).await);
    }
    let stream = stream_scenario(&rig, settings).await;
    let rejection = rejection_scenario(&rig, settings, &throughput).await?;
    let memory = memory_scenario(&rig, plan).await;
    let cache_hit =
        cache_hit_scenario(&rig.endpoints, rig.delayed_mock, settings, "in-memory").await?;
    let mut not_measured = not_measured();
    let redis = match redis_scenario(&rig, paths, pinned, settings).await {
        Ok(redis) => Some(redis),
        Err(reason) => {
            not_measured.push(NotMeasured {
                scenario: REDIS_SCENARIO.into(),
                reason,
            });
            None
        }
    };

    Ok(BenchResults {
        machine: MachineFacts {
            nproc: machine::nproc(),
            cpu_model: machine::cpu_model(),
            kernel: machine::kernel(),
            commit: machine::commit(&paths.repo),
            profile: paths.profile.clone(),
            load_average_start,
            load_average_end: machine::load_average(),
            pinned,
            quick: plan.quick,
            started_at,
        },
        settings: settings.clone(),
        latency,
        throughput,
        stream: Some(stream),
        rejection: Some(rejection),
        memory,
        cache_hit: Some(cache_hit),
        redis,
        not_measured,
    })
}

/// Name of the Redis configuration in the "not measured" table.
pub const REDIS_SCENARIO: &str = "Redis configuration: cache, rate limits, Redis Streams bus (R4)";

/// Scenarios this harness does not run.
fn not_measured() -> Vec<NotMeasured> {
    vec![NotMeasured {
        scenario: "operator scale (1,000 LlmProxy objects)".into(),
        reason: "measured by `make bench-operator` (docs/operator-benchmarks.md)".into(),
    }]
}

async fn start_rig(plan: &Plan, paths: &Paths, pinned: bool) -> Result<Rig, BenchError> {
    let scratch = ScratchDir::new()?;
    let core = |core: usize| pinned.then_some(core);
    let single_worker = vec![("TOKIO_WORKER_THREADS".to_owned(), "1".to_owned())];
    let mut processes = Vec::new();

    let mock_on_driver_core = |name: &'static str, args: [String; 2]| {
        start_mock(paths, &scratch.0, core(DRIVER_CORE), name, args)
    };
    let (mock_addr, mock) = mock_on_driver_core(
        "bench-mock",
        [
            format!("--stream-chunks={}", plan.settings.stream_chunks),
            format!("--chunk-interval-ms={}", plan.settings.stream_interval_ms),
        ],
    )
    .await?;
    processes.push(mock);
    let (delayed_mock, mock) = mock_on_driver_core(
        "bench-mock-delayed",
        [
            format!("--delay-ms={CACHE_UPSTREAM_DELAY_MS}"),
            format!("--stream-chunks={}", plan.settings.stream_chunks),
        ],
    )
    .await?;
    processes.push(mock);

    let bare_addr = process::free_loopback_addr()?;
    processes.push(BenchProcess::start(
        "bare-proxy",
        &paths.bin_dir.join("bare-proxy"),
        &[
            "--listen".into(),
            bare_addr.to_string(),
            "--upstream".into(),
            mock_addr.to_string(),
        ],
        &single_worker,
        core(PROXY_CORE),
        &scratch.0.join("bare.log"),
    )?);
    process::wait_for_listener("bare-proxy", bare_addr, READY_TIMEOUT).await?;

    let client: DriverClient = net::pooled_client();
    let proxy = start_proxy(
        &client,
        ProxyLaunch {
            name: "llm-proxy",
            paths,
            scratch: &scratch.0,
            upstream: mock_addr,
            core: core(PROXY_CORE),
            extra_env: Vec::new(),
        },
    )
    .await?;
    let proxy_pid = proxy.process.pid();
    processes.push(proxy.process);

    Ok(Rig {
        endpoints: Endpoints {
            targets: Targets {
                direct: mock_addr,
                bare: bare_addr,
                proxy: proxy.addr,
            },
            token: proxy.token,
            client,
        },
        delayed_mock,
        proxy_pid,
        idle_rss_kib: proxy.idle_rss_kib,
        scratch_dir: scratch.0.clone(),
        _processes: processes,
        _scratch: scratch,
    })
}

/// Starts `bench-mock` with `args` on a free port and waits until it listens.
async fn start_mock(
    paths: &Paths,
    scratch: &Path,
    core: Option<usize>,
    name: &'static str,
    args: [String; 2],
) -> Result<(SocketAddr, BenchProcess), BenchError> {
    let addr = process::free_loopback_addr()?;
    let mut all_args = vec!["--listen".to_owned(), addr.to_string()];
    all_args.extend(args);
    let mock = BenchProcess::start(
        name,
        &paths.bin_dir.join("bench-mock"),
        &all_args,
        &[],
        core,
        &scratch.join(format!("{name}.log")),
    )?;
    process::wait_for_listener(name, addr, READY_TIMEOUT).await?;
    Ok((addr, mock))
}

/// How to start one `llm-proxy`: its own database, audit log and log file in `scratch`.
struct ProxyLaunch<'a> {
    name: &'static str,
    paths: &'a Paths,
    scratch: &'a Path,
    upstream: SocketAddr,
    core: Option<usize>,
    /// Variables on top of the default configuration.
    extra_env: Vec<(String, String)>,
}

/// A started, healthy proxy with a token of its own.
struct StartedProxy {
    addr: SocketAddr,
    token: HeaderValue,
    idle_rss_kib: Option<u64>,
    process: BenchProcess,
}

async fn start_proxy(
    client: &DriverClient,
    launch: ProxyLaunch<'_>,
) -> Result<StartedProxy, BenchError> {
    let addr = process::free_loopback_addr()?;
    let management_token = format!("bench-management-{}", uuid::Uuid::new_v4().simple());
    let file = |suffix: &str| path_string(&launch.scratch.join(format!("{}{suffix}", launch.name)));
    let mut proxy_env = vec![
        ("TOKIO_WORKER_THREADS".to_owned(), "1".to_owned()),
        (env::LISTEN_ADDR.to_owned(), addr.to_string()),
        (env::MANAGEMENT_TOKEN.to_owned(), management_token.clone()),
        (
            env::OPENAI_API_URL.to_owned(),
            format!("http://{}", launch.upstream),
        ),
        (env::DATABASE_PATH.to_owned(), file(".db")),
        (env::AUDIT_LOG_FILE.to_owned(), file("-audit.log")),
        (
            env::API_CONFIG_PATH.to_owned(),
            path_string(&launch.scratch.join("absent-providers.yaml")),
        ),
    ];
    proxy_env.extend(launch.extra_env);
    let process = BenchProcess::start(
        launch.name,
        &launch.paths.bin_dir.join("llm-proxy"),
        &[],
        &proxy_env,
        launch.core,
        Path::new(&file(".log")),
    )?;
    wait_for_health(client, addr).await?;
    let idle_rss_kib = machine::rss_kib(process.pid());
    let token = create_token(client, addr, &management_token).await?;
    Ok(StartedProxy {
        addr,
        token,
        idle_rss_kib,
        process,
    })
}

fn path_string(path: &Path) -> String {
    path.display().to_string()
}

async fn wait_for_health(client: &DriverClient, addr: SocketAddr) -> Result<(), BenchError> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok((status, _)) = call(client, Method::GET, addr, env::HEALTH_PATH, None, None).await
            && status == StatusCode::OK
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(BenchError::NotReady("llm-proxy".into(), READY_TIMEOUT));
        }
        // Polling a child's health endpoint: nothing to await across processes.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a project and a long-lived token with a large quota through the management API.
pub async fn create_token(
    client: &DriverClient,
    proxy: SocketAddr,
    management_token: &str,
) -> Result<HeaderValue, BenchError> {
    let project =
        serde_json::json!({"name": "bench", "api_key": "sk-bench-provider-key-not-secret"});
    let (status, body) = call(
        client,
        Method::POST,
        proxy,
        "/manage/projects",
        Some(management_token),
        Some(project.to_string()),
    )
    .await?;
    let project_id = setup_field(status, &body, "id", "POST /manage/projects")?;
    let token = serde_json::json!({
        "project_id": project_id,
        "duration_minutes": 24 * 60,
        "max_requests": 1_000_000_000_i64,
    });
    let (status, body) = call(
        client,
        Method::POST,
        proxy,
        "/manage/tokens",
        Some(management_token),
        Some(token.to_string()),
    )
    .await?;
    let token = setup_field(status, &body, "token", "POST /manage/tokens")?;
    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| BenchError::Setup {
        call: "POST /manage/tokens",
        detail: "the token is not a valid header value".into(),
    })
}

/// A string field of a successful JSON set-up response. The body is quoted only on failure, and
/// set-up failures carry no secret (the management token is never echoed by the API).
fn setup_field(
    status: StatusCode,
    body: &Bytes,
    field: &str,
    call: &'static str,
) -> Result<String, BenchError> {
    let failure = |detail: String| BenchError::Setup { call, detail };
    if !status.is_success() {
        return Err(failure(format!(
            "status {status}: {}",
            String::from_utf8_lossy(body)
        )));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| failure(format!("invalid JSON: {e}")))?;
    value
        .get(field)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| failure(format!("no string field `{field}`")))
}

async fn call(
    client: &DriverClient,
    method: Method,
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    body: Option<String>,
) -> Result<(StatusCode, Bytes), BenchError> {
    let setup_error = |detail: String| BenchError::Setup {
        call: "HTTP",
        detail,
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(bearer) = bearer {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {bearer}"));
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| setup_error(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| setup_error(e.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| setup_error(e.to_string()))?
        .to_bytes();
    Ok((status, body))
}

fn completions_uri(addr: SocketAddr) -> Uri {
    match format!("http://{addr}/v1/chat/completions").parse() {
        Ok(uri) => uri,
        // A formatted socket address always makes a valid URI.
        Err(_) => Uri::from_static("http://127.0.0.1/v1/chat/completions"),
    }
}

impl Endpoints {
    fn spec(&self, target: Target, body: &'static [u8]) -> RequestSpec {
        let addr = match target {
            Target::Direct => self.targets.direct,
            Target::Bare => self.targets.bare,
            Target::Proxy => self.targets.proxy,
        };
        RequestSpec {
            uri: completions_uri(addr),
            body: Bytes::from_static(body),
            authorization: (target == Target::Proxy).then(|| self.token.clone()),
            expected_status: StatusCode::OK,
            ..RequestSpec::default()
        }
    }

    async fn closed(
        &self,
        target: Target,
        body: &'static [u8],
        concurrency: usize,
        stop: Stop,
    ) -> LoadResult {
        loadgen::closed_loop(&self.client, &self.spec(target, body), concurrency, stop).await
    }
}

async fn warm_up(endpoints: &Endpoints, settings: &Settings) {
    for target in TARGETS {
        endpoints
            .closed(
                target,
                CHAT_BODY,
                4,
                Stop::Requests(settings.warmup_requests),
            )
            .await;
    }
}

/// Indices `0..N` in a different order every round, so no series always runs first.
fn round_order<const N: usize>(round: usize) -> [usize; N] {
    let mut order: [usize; N] = std::array::from_fn(|index| index);
    order.rotate_left(round % N.max(1));
    order
}

/// One series of [`interleaved`]: every round merged, and each round's p50 and p99.
#[derive(Default)]
struct Series {
    merged: LoadResult,
    p50: Vec<f64>,
    p99: Vec<f64>,
}

impl Series {
    fn errors(&self) -> u64 {
        self.merged.unexpected_status + self.merged.transport_errors
    }
}

/// Runs each spec at c=1 for `settings.requests_per_round` per round, the specs in a rotating
/// order, for `settings.rounds` rounds.
async fn interleaved<const N: usize>(
    client: &DriverClient,
    specs: &[RequestSpec; N],
    settings: &Settings,
) -> [Series; N] {
    let mut series: [Series; N] = std::array::from_fn(|_| Series::default());
    for round in 0..settings.rounds {
        for index in round_order::<N>(round) {
            let (Some(spec), Some(series)) = (specs.get(index), series.get_mut(index)) else {
                continue;
            };
            let result =
                loadgen::closed_loop(client, spec, 1, Stop::Requests(settings.requests_per_round))
                    .await;
            series.p50.push(result.latency.quantile_us(0.50));
            series.p99.push(result.latency.quantile_us(0.99));
            series.merged.latency.merge(&result.latency);
            series.merged.unexpected_status += result.unexpected_status;
            series.merged.transport_errors += result.transport_errors;
        }
    }
    series
}

fn added(target: &[f64], direct: &[f64]) -> Added {
    Added::from_rounds(target, direct).unwrap_or_default()
}

/// S1: added latency at c=1, interleaved rounds, median of per-round differences.
async fn latency_scenario(endpoints: &Endpoints, settings: &Settings) -> LatencyScenario {
    let specs = TARGETS.map(|target| endpoints.spec(target, CHAT_BODY));
    let [direct, bare, proxy] = interleaved(&endpoints.client, &specs, settings).await;
    let proxy_errors = proxy.errors();
    let (direct_p50, bare_p50, proxy_p50) = (direct.p50, bare.p50, proxy.p50);
    let (direct_p99, bare_p99, proxy_p99) = (direct.p99, bare.p99, proxy.p99);
    let (direct, bare, proxy) = (direct.merged, bare.merged, proxy.merged);
    let bare_added_p50 = added(&bare_p50, &direct_p50);
    let bare_added_p99 = added(&bare_p99, &direct_p99);
    let proxy_added_p50 = added(&proxy_p50, &direct_p50);
    let proxy_added_p99 = added(&proxy_p99, &direct_p99);
    LatencyScenario {
        direct: direct.latency.summary(),
        bare: bare.latency.summary(),
        proxy: proxy.latency.summary(),
        overhead_ratio_p99: ratio(proxy_added_p99.median_us, bare_added_p99.median_us),
        overhead_ratio_p50: ratio(proxy_added_p50.median_us, bare_added_p50.median_us),
        bare_added_p50,
        bare_added_p99,
        proxy_added_p50,
        proxy_added_p99,
        proxy_errors,
    }
}

/// S2: closed-loop throughput of each target at `concurrency`.
async fn throughput_point(
    rig: &Endpoints,
    settings: &Settings,
    concurrency: usize,
) -> ThroughputPoint {
    // Interleaved short windows instead of one long window per target: noise from other tenants
    // of the machine then hits every target alike, and the median of the rounds' ratios ignores a
    // round it spoiled.
    let window = Duration::from_secs_f64(settings.throughput_seconds / THROUGHPUT_ROUNDS as f64);
    let mut totals: [LoadResult; 3] = Default::default();
    let mut round_ratios = Vec::with_capacity(THROUGHPUT_ROUNDS);
    for round in 0..THROUGHPUT_ROUNDS {
        let mut rps = [0.0; 3];
        for index in round_order::<3>(round) {
            let result = rig
                .closed(
                    TARGETS[index],
                    CHAT_BODY,
                    concurrency,
                    Stop::Duration(window),
                )
                .await;
            rps[index] = result.rps();
            totals[index].append(&result);
        }
        if let Some(ratio) = ratio(rps[2], rps[1]) {
            round_ratios.push(ratio);
        }
    }
    let [direct, bare, proxy] = totals;
    ThroughputPoint {
        concurrency,
        ratio_to_bare: stats::median(&round_ratios),
        direct: direct.summary(),
        bare: bare.summary(),
        proxy: proxy.summary(),
    }
}

/// S4: paced SSE streams; TTFT and inter-frame gaps, in interleaved rounds (rotating order) so
/// each target's tail holds more than one burst of stream starts and the machine's noise hits all
/// three alike. Each round runs its first wave (`stream_concurrency` streams starting together
/// after the target sat idle) apart from the rest, so the report can tell what idling costs
/// (expired caches and quota leases) from what a burst of starts costs.
async fn stream_scenario(rig: &Rig, settings: &Settings) -> StreamScenario {
    let concurrency = settings.stream_concurrency;
    let first_wave_streams = settings.streams_per_round.min(concurrency as u64);
    let later_streams = settings.streams_per_round - first_wave_streams;
    let rig = &rig.endpoints;
    let mut first: [LoadResult; 3] = Default::default();
    let mut later: [LoadResult; 3] = Default::default();
    for round in 0..settings.stream_rounds.max(1) {
        for index in round_order::<3>(round) {
            for (streams, waves) in [
                (first_wave_streams, &mut first),
                (later_streams, &mut later),
            ] {
                if streams == 0 {
                    continue;
                }
                let stop = Stop::Requests(streams);
                let result = rig
                    .closed(TARGETS[index], STREAM_BODY, concurrency, stop)
                    .await;
                waves[index].append(&result);
            }
        }
    }
    let [direct, bare, proxy] = std::array::from_fn(|index| {
        let mut all = first[index].clone();
        all.append(&later[index]);
        all.summary()
    });
    let [first_wave, later_waves] = [&first, &later].map(|waves| StreamWave {
        direct: waves[0].summary(),
        bare: waves[1].summary(),
        proxy: waves[2].summary(),
    });
    StreamScenario {
        proxy_ttft_added_p99_us: proxy.first_byte.p99_us - direct.first_byte.p99_us,
        bare_ttft_added_p99_us: bare.first_byte.p99_us - direct.first_byte.p99_us,
        direct,
        bare,
        proxy,
        first_wave,
        later_waves,
    }
}

/// S9: a flood with a well-formed token the store does not know; every answer must be 401.
async fn rejection_scenario(
    rig: &Rig,
    settings: &Settings,
    throughput: &[ThroughputPoint],
) -> Result<RejectionScenario, BenchError> {
    let unknown_token = llm_proxy_store::token::generate_token()
        .map_err(|err| BenchError::Gate(err.to_string()))?;
    let rig = &rig.endpoints;
    let mut spec = rig.spec(Target::Proxy, CHAT_BODY);
    spec.authorization = HeaderValue::from_str(&format!("Bearer {unknown_token}")).ok();
    spec.expected_status = StatusCode::UNAUTHORIZED;
    let duration = Duration::from_secs_f64(settings.throughput_seconds);
    let rejected = loadgen::closed_loop(
        &rig.client,
        &spec,
        REJECTION_CONCURRENCY,
        Stop::Duration(duration),
    )
    .await
    .summary();
    let bare_rps = throughput
        .iter()
        .find(|point| point.concurrency == REJECTION_CONCURRENCY)
        .map_or(0.0, |point| point.bare.rps);
    Ok(RejectionScenario {
        concurrency: REJECTION_CONCURRENCY,
        ratio_to_bare: ratio(rejected.rps, bare_rps),
        rejected,
        bare_rps,
    })
}

/// S7 (short form): VmRSS idle, peak under a closed loop at high concurrency, and after it.
async fn memory_scenario(rig: &Rig, plan: &Plan) -> Option<MemoryScenario> {
    let idle_kib = rig.idle_rss_kib?;
    let concurrency = plan.settings.memory_load_concurrency;
    let pid = rig.proxy_pid;
    let (stop_sampling, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut peak = 0u64;
        let mut ticks = tokio::time::interval(RSS_SAMPLE_INTERVAL);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Some(kib) = machine::rss_kib(pid) {
                        peak = peak.max(kib);
                    }
                }
                _ = &mut stopped => break,
            }
        }
        peak
    });
    let load = rig
        .endpoints
        .closed(
            Target::Proxy,
            CHAT_BODY,
            concurrency,
            Stop::Duration(plan.memory_load_duration),
        )
        .await
        .summary();
    let _ = stop_sampling.send(());
    let load_peak_kib = sampler.await.ok()?;
    tokio::time::sleep(plan.memory_settle).await;
    let after_kib = machine::rss_kib(pid)?;
    Some(MemoryScenario {
        idle_kib,
        load_peak_kib,
        after_kib,
        load_concurrency: concurrency,
        load,
        settle_seconds: plan.memory_settle.as_secs_f64(),
    })
}

/// `spec` with the client's cache opt-in, succeeding only when answered from the cache
/// (`X-PROXY-CACHE: hit`; a miss counts as an error).
pub fn cache_hits_of(spec: RequestSpec) -> RequestSpec {
    RequestSpec {
        headers: vec![(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_OPT_IN),
        )],
        required_header: Some((
            HeaderName::from_static("x-proxy-cache"),
            HeaderValue::from_static("hit"),
        )),
        ..spec
    }
}

/// Sends the cacheable request until it is answered from the cache: the first one is stored
/// (in the background on Redis), so this polls with a deadline.
pub async fn warm_cache(client: &DriverClient, spec: &RequestSpec) -> Result<(), BenchError> {
    let deadline = tokio::time::Instant::now() + CACHE_WARM_TIMEOUT;
    let mut last = LoadResult::default();
    while tokio::time::Instant::now() < deadline {
        last = loadgen::closed_loop(client, spec, 1, Stop::Requests(1)).await;
        if last.expected == 1 {
            return Ok(());
        }
        // Polling another process's cache: there is no store notification to await.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(BenchError::Setup {
        call: "cache warm-up",
        detail: format!(
            "no `X-PROXY-CACHE: hit` within {CACHE_WARM_TIMEOUT:?} (last attempt: {} other answers, {} transport errors)",
            last.unexpected_status, last.transport_errors
        ),
    })
}

/// S5: c=1 cache hits interleaved with the instant mock and the delayed mock.
async fn cache_hit_scenario(
    endpoints: &Endpoints,
    delayed_mock: SocketAddr,
    settings: &Settings,
    backend: &str,
) -> Result<CacheHitScenario, BenchError> {
    let hit_spec = cache_hits_of(endpoints.spec(Target::Proxy, CHAT_BODY));
    warm_cache(&endpoints.client, &hit_spec).await?;
    let direct_spec = endpoints.spec(Target::Direct, CHAT_BODY);
    let delayed_spec = RequestSpec {
        uri: completions_uri(delayed_mock),
        ..direct_spec.clone()
    };
    let [direct, delayed, hit] = interleaved(
        &endpoints.client,
        &[direct_spec, delayed_spec, hit_spec],
        settings,
    )
    .await;
    Ok(CacheHitScenario {
        backend: backend.to_owned(),
        upstream_delay_ms: CACHE_UPSTREAM_DELAY_MS,
        direct: direct.merged.latency.summary(),
        direct_delayed: delayed.merged.latency.summary(),
        hit: hit.merged.latency.summary(),
        hit_added_p50: added(&hit.p50, &direct.p50),
        hit_added_p99: added(&hit.p99, &direct.p99),
        hit_errors: hit.errors(),
    })
}

/// Where the Redis configuration's server comes from; a private server is killed on drop.
struct RedisServer {
    url: String,
    description: String,
    _process: Option<BenchProcess>,
}

/// `BENCH_REDIS_URL`, else a private `redis-server` from `PATH` pinned with the driver (the
/// proxy's core stays its own), else the reason there is none.
async fn redis_server(
    paths: &Paths,
    scratch: &Path,
    core: Option<usize>,
) -> Result<RedisServer, String> {
    if let Some(url) = paths.redis_url.as_ref().filter(|url| !url.is_empty()) {
        return Ok(RedisServer {
            url: url.clone(),
            // The URL may carry a password: never in the results.
            description: "BENCH_REDIS_URL".into(),
            _process: None,
        });
    }
    let Some(program) = find_on_path("redis-server") else {
        return Err("no Redis (BENCH_REDIS_URL is not set and no redis-server is on PATH)".into());
    };
    let addr = process::free_loopback_addr().map_err(|e| format!("no Redis: {e}"))?;
    let process = BenchProcess::start(
        "redis-server",
        &program,
        &[
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            addr.port().to_string(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            path_string(scratch),
        ],
        &[],
        core,
        &scratch.join("redis.log"),
    )
    .map_err(|e| format!("no Redis: {e}"))?;
    process::wait_for_listener("redis-server", addr, READY_TIMEOUT)
        .await
        .map_err(|e| format!("no Redis: {e}"))?;
    Ok(RedisServer {
        url: format!("redis://{addr}/"),
        description: format!("private redis-server on {addr}"),
        _process: Some(process),
    })
}

/// The first executable `name` in a directory of `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The proxy's variables of the Redis configuration. Keys get a per-run prefix, so a shared
/// `BENCH_REDIS_URL` server keeps other data apart.
fn redis_env(url: &str, run_id: &str) -> Vec<(String, String)> {
    [
        (env::REDIS_URL, url.to_owned()),
        (env::LLM_PROXY_EVENT_BUS, "redis-streams".to_owned()),
        (
            env::REDIS_STREAM_KEY,
            format!("llm-proxy-bench:{run_id}:events"),
        ),
        (env::HTTP_CACHE_BACKEND, "redis".to_owned()),
        (
            env::REDIS_CACHE_KEY_PREFIX,
            format!("llm-proxy-bench:{run_id}:cache:"),
        ),
        (env::DISTRIBUTED_RATE_LIMIT_ENABLED, "true".to_owned()),
        (
            env::DISTRIBUTED_RATE_LIMIT_MAX,
            NEVER_REACHED_RATE_LIMIT.to_owned(),
        ),
        (
            env::DISTRIBUTED_RATE_LIMIT_PREFIX,
            format!("llm-proxy-bench:{run_id}:ratelimit:"),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// R4: a second proxy with the Redis features, measured against the same mock and pass-through:
/// c=1 latency, c=64 throughput and cache hits. `Err` is the "not measured" reason.
async fn redis_scenario(
    rig: &Rig,
    paths: &Paths,
    pinned: bool,
    settings: &Settings,
) -> Result<RedisScenario, String> {
    let core = |core: usize| pinned.then_some(core);
    let server = redis_server(paths, &rig.scratch_dir, core(DRIVER_CORE)).await?;
    let failed = |error: BenchError| format!("failed: {error}");
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let proxy = start_proxy(
        &rig.endpoints.client,
        ProxyLaunch {
            name: "llm-proxy-redis",
            paths,
            scratch: &rig.scratch_dir,
            upstream: rig.endpoints.targets.direct,
            core: core(PROXY_CORE),
            extra_env: redis_env(&server.url, &run_id),
        },
    )
    .await
    .map_err(failed)?;
    let endpoints = Endpoints {
        targets: Targets {
            proxy: proxy.addr,
            ..rig.endpoints.targets
        },
        token: proxy.token.clone(),
        client: rig.endpoints.client.clone(),
    };
    warm_up(&endpoints, settings).await;
    let latency = latency_scenario(&endpoints, settings).await;
    let throughput = throughput_point(&endpoints, settings, THROUGHPUT_CONCURRENCY).await;
    let cache_hit = cache_hit_scenario(&endpoints, rig.delayed_mock, settings, "redis")
        .await
        .map_err(failed)?;
    Ok(RedisScenario {
        server: server.description,
        latency,
        throughput,
        cache_hit,
    })
}

/// Current UTC time as RFC 3339, from the system clock (no date crate needed for one stamp).
fn utc_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    format_rfc3339(seconds)
}

/// Formats Unix `seconds` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(seconds: u64) -> String {
    llm_proxy::clock::Rfc3339::at(seconds, 0, llm_proxy::clock::Precision::Seconds).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_795_740_600), "2026-11-27T00:50:00Z");
    }

    #[test]
    fn every_round_order_is_a_permutation_and_the_first_target_rotates() {
        let firsts: Vec<usize> = (0..3).map(|round| round_order::<3>(round)[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2]);
        for round in 0..5 {
            let mut order = round_order::<3>(round);
            order.sort_unstable();
            assert_eq!(order, [0, 1, 2]);
        }
        assert_eq!(round_order::<1>(4), [0]);
    }

    #[test]
    fn redis_configuration_enables_every_redis_feature_with_run_scoped_keys() {
        let vars = redis_env("redis://127.0.0.1:6390/", "run1");
        let get = |name: &str| {
            vars.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap()
        };
        assert_eq!(get(env::LLM_PROXY_EVENT_BUS), "redis-streams");
        assert_eq!(get(env::HTTP_CACHE_BACKEND), "redis");
        assert_eq!(get(env::DISTRIBUTED_RATE_LIMIT_ENABLED), "true");
        assert_eq!(get(env::REDIS_URL), "redis://127.0.0.1:6390/");
        assert!(get(env::DISTRIBUTED_RATE_LIMIT_MAX).parse::<u64>().unwrap() >= 1_000_000_000);
        for name in [
            env::REDIS_STREAM_KEY,
            env::REDIS_CACHE_KEY_PREFIX,
            env::DISTRIBUTED_RATE_LIMIT_PREFIX,
        ] {
            assert!(get(name).contains("run1"), "{name}");
        }
    }

    #[test]
    fn a_program_is_found_on_path_and_an_absent_one_is_not() {
        assert!(find_on_path("sh").is_some());
        assert!(find_on_path("surely-no-such-program-on-path").is_none());
    }

    #[test]
    fn set_up_failures_name_the_call_and_status() {
        let error = setup_field(
            StatusCode::UNAUTHORIZED,
            &Bytes::from_static(br#"{"error":"unauthorized"}"#),
            "id",
            "POST /manage/projects",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("POST /manage/projects"), "{error}");
        assert!(error.contains("401"), "{error}");
        assert_eq!(
            setup_field(
                StatusCode::CREATED,
                &Bytes::from_static(br#"{"id":"p1"}"#),
                "id",
                "x"
            )
            .unwrap(),
            "p1"
        );
        assert!(setup_field(StatusCode::OK, &Bytes::from_static(b"{}"), "id", "x").is_err());
    }
}
