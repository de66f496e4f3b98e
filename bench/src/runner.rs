//! One benchmark run: starts the mock, the bare pass-through and the real `llm-proxy` (default
//! configuration: SQLite in a temporary directory, in-memory event bus, a token created through
//! `/manage`), then measures every scenario with the targets interleaved, and returns the results.
//! Each scenario is one function, so the missing ones (cache hit, Redis) slot in later.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use llm_proxy_env as env;

use crate::error::BenchError;
use crate::loadgen::{self, LoadResult, RequestSpec, Stop};
use crate::machine;
use crate::net::{self, DriverClient};
use crate::process::{self, BenchProcess};
use crate::results::*;
use crate::stats::{Added, ratio};

/// Core of the proxy and the pass-through; the mock and the driver use [`DRIVER_CORE`].
pub const PROXY_CORE: usize = 1;
pub const DRIVER_CORE: usize = 0;
/// Concurrencies of the throughput scenario.
pub const THROUGHPUT_CONCURRENCIES: [usize; 2] = [16, 64];
/// Concurrency of the invalid-token flood (compared with the pass-through at the same level).
pub const REJECTION_CONCURRENCY: usize = 16;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
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
}

/// The three targets, by base URL.
struct Targets {
    direct: SocketAddr,
    bare: SocketAddr,
    proxy: SocketAddr,
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
    targets: Targets,
    token: HeaderValue,
    proxy_pid: u32,
    idle_rss_kib: Option<u64>,
    client: DriverClient,
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

    warm_up(&rig, settings).await;
    let latency = latency_scenario(&rig, settings).await;
    let mut throughput = Vec::new();
    for concurrency in THROUGHPUT_CONCURRENCIES {
        throughput.push(throughput_point(&rig, settings, concurrency).await);
    }
    let stream = stream_scenario(&rig, settings).await;
    let rejection = rejection_scenario(&rig, settings, &throughput).await;
    let memory = memory_scenario(&rig, plan).await;

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
        not_measured: not_measured(),
    })
}

/// Scenarios the proxy cannot run yet; each becomes a scenario function when it can.
fn not_measured() -> Vec<NotMeasured> {
    vec![
        NotMeasured {
            scenario: "cache-hit latency (S5)".into(),
            reason:
                "the proxy has no HTTP response cache yet (HTTP_CACHE_* is parsed but not served)"
                    .into(),
        },
        NotMeasured {
            scenario: "Redis variant: cache, rate limits, Redis Streams bus (S6, R4)".into(),
            reason: "the proxy has no Redis cache or rate limiter yet".into(),
        },
        NotMeasured {
            scenario: "operator scale (1,000 LlmProxy objects)".into(),
            reason: "not implemented in the harness yet".into(),
        },
    ]
}

async fn start_rig(plan: &Plan, paths: &Paths, pinned: bool) -> Result<Rig, BenchError> {
    let scratch = ScratchDir::new()?;
    let core = |core: usize| pinned.then_some(core);
    let single_worker = vec![("TOKIO_WORKER_THREADS".to_owned(), "1".to_owned())];
    let mut processes = Vec::new();

    let mock_addr = process::free_loopback_addr()?;
    processes.push(BenchProcess::start(
        "bench-mock",
        &paths.bin_dir.join("bench-mock"),
        &[
            "--listen".into(),
            mock_addr.to_string(),
            "--stream-chunks".into(),
            plan.settings.stream_chunks.to_string(),
            "--chunk-interval-ms".into(),
            plan.settings.stream_interval_ms.to_string(),
        ],
        &[],
        core(DRIVER_CORE),
        &scratch.0.join("mock.log"),
    )?);
    process::wait_for_listener("bench-mock", mock_addr, READY_TIMEOUT).await?;

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

    let proxy_addr = process::free_loopback_addr()?;
    let management_token = format!("bench-management-{}", uuid::Uuid::new_v4().simple());
    let mut proxy_env = single_worker.clone();
    proxy_env.extend([
        (env::LISTEN_ADDR.to_owned(), proxy_addr.to_string()),
        (env::MANAGEMENT_TOKEN.to_owned(), management_token.clone()),
        (
            env::OPENAI_API_URL.to_owned(),
            format!("http://{mock_addr}"),
        ),
        (
            env::DATABASE_PATH.to_owned(),
            path_string(&scratch.0.join("proxy.db")),
        ),
        (
            env::AUDIT_LOG_FILE.to_owned(),
            path_string(&scratch.0.join("audit.log")),
        ),
        (
            env::API_CONFIG_PATH.to_owned(),
            path_string(&scratch.0.join("absent-providers.yaml")),
        ),
    ]);
    let proxy = BenchProcess::start(
        "llm-proxy",
        &paths.bin_dir.join("llm-proxy"),
        &[],
        &proxy_env,
        core(PROXY_CORE),
        &scratch.0.join("proxy.log"),
    )?;
    let proxy_pid = proxy.pid();
    processes.push(proxy);
    let client: DriverClient = net::pooled_client();
    wait_for_health(&client, proxy_addr).await?;
    let idle_rss_kib = machine::rss_kib(proxy_pid);
    let token = create_token(&client, proxy_addr, &management_token).await?;

    Ok(Rig {
        targets: Targets {
            direct: mock_addr,
            bare: bare_addr,
            proxy: proxy_addr,
        },
        token,
        proxy_pid,
        idle_rss_kib,
        client,
        _processes: processes,
        _scratch: scratch,
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

impl Rig {
    fn spec(&self, target: Target, body: &'static [u8]) -> RequestSpec {
        let addr = match target {
            Target::Direct => self.targets.direct,
            Target::Bare => self.targets.bare,
            Target::Proxy => self.targets.proxy,
        };
        let uri: Uri = match format!("http://{addr}/v1/chat/completions").parse() {
            Ok(uri) => uri,
            // A formatted socket address always makes a valid URI.
            Err(_) => Uri::from_static("http://127.0.0.1/v1/chat/completions"),
        };
        RequestSpec {
            uri,
            body: Bytes::from_static(body),
            authorization: (target == Target::Proxy).then(|| self.token.clone()),
            expected_status: StatusCode::OK,
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

async fn warm_up(rig: &Rig, settings: &Settings) {
    for target in TARGETS {
        rig.closed(
            target,
            CHAT_BODY,
            4,
            Stop::Requests(settings.warmup_requests),
        )
        .await;
    }
}

/// Targets in a different order every round, so no target always runs first.
fn round_order(round: usize) -> [Target; 3] {
    let mut order = TARGETS;
    order.rotate_left(round % TARGETS.len());
    order
}

/// S1: added latency at c=1, interleaved rounds, median of per-round differences.
async fn latency_scenario(rig: &Rig, settings: &Settings) -> LatencyScenario {
    let mut merged: [LoadResult; 3] = Default::default();
    let mut p50: [Vec<f64>; 3] = Default::default();
    let mut p99: [Vec<f64>; 3] = Default::default();
    for round in 0..settings.rounds {
        for target in round_order(round) {
            let result = rig
                .closed(
                    target,
                    CHAT_BODY,
                    1,
                    Stop::Requests(settings.requests_per_round),
                )
                .await;
            let index = target as usize;
            if let (Some(p50), Some(p99), Some(merged)) = (
                p50.get_mut(index),
                p99.get_mut(index),
                merged.get_mut(index),
            ) {
                p50.push(result.latency.quantile_us(0.50));
                p99.push(result.latency.quantile_us(0.99));
                merged.latency.merge(&result.latency);
                merged.unexpected_status += result.unexpected_status;
                merged.transport_errors += result.transport_errors;
            }
        }
    }
    let [direct, bare, proxy] = merged;
    let [direct_p50, bare_p50, proxy_p50] = p50;
    let [direct_p99, bare_p99, proxy_p99] = p99;
    let added =
        |target: &[f64], direct: &[f64]| Added::from_rounds(target, direct).unwrap_or_default();
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
        proxy_errors: proxy.unexpected_status + proxy.transport_errors,
    }
}

/// S2: closed-loop throughput of each target at `concurrency`.
async fn throughput_point(rig: &Rig, settings: &Settings, concurrency: usize) -> ThroughputPoint {
    let duration = Duration::from_secs_f64(settings.throughput_seconds);
    let direct = rig
        .closed(
            Target::Direct,
            CHAT_BODY,
            concurrency,
            Stop::Duration(duration),
        )
        .await;
    let bare = rig
        .closed(
            Target::Bare,
            CHAT_BODY,
            concurrency,
            Stop::Duration(duration),
        )
        .await;
    let proxy = rig
        .closed(
            Target::Proxy,
            CHAT_BODY,
            concurrency,
            Stop::Duration(duration),
        )
        .await;
    ThroughputPoint {
        concurrency,
        ratio_to_bare: ratio(proxy.rps(), bare.rps()),
        direct: direct.summary(),
        bare: bare.summary(),
        proxy: proxy.summary(),
    }
}

/// S4: paced SSE streams; TTFT and inter-frame gaps.
async fn stream_scenario(rig: &Rig, settings: &Settings) -> StreamScenario {
    let stop = Stop::Requests(settings.streams_per_round);
    let concurrency = settings.stream_concurrency;
    let direct = rig
        .closed(Target::Direct, STREAM_BODY, concurrency, stop)
        .await
        .summary();
    let bare = rig
        .closed(Target::Bare, STREAM_BODY, concurrency, stop)
        .await
        .summary();
    let proxy = rig
        .closed(Target::Proxy, STREAM_BODY, concurrency, stop)
        .await
        .summary();
    StreamScenario {
        proxy_ttft_added_p99_us: proxy.first_byte.p99_us - direct.first_byte.p99_us,
        bare_ttft_added_p99_us: bare.first_byte.p99_us - direct.first_byte.p99_us,
        direct,
        bare,
        proxy,
    }
}

/// S9: a flood with a well-formed token the store does not know; every answer must be 401.
async fn rejection_scenario(
    rig: &Rig,
    settings: &Settings,
    throughput: &[ThroughputPoint],
) -> RejectionScenario {
    let (unknown_token, _) = llm_proxy_store::token::generate_token();
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
    RejectionScenario {
        concurrency: REJECTION_CONCURRENCY,
        ratio_to_bare: ratio(rejected.rps, bare_rps),
        rejected,
        bare_rps,
    }
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

/// Current UTC time as RFC 3339, from the system clock (no date crate needed for one stamp).
fn utc_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    format_rfc3339(seconds)
}

/// Formats Unix `seconds` as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
pub fn format_rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
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
        let firsts: Vec<Target> = (0..3).map(|round| round_order(round)[0]).collect();
        assert_eq!(firsts, vec![Target::Direct, Target::Bare, Target::Proxy]);
        for round in 0..5 {
            let order = round_order(round);
            for target in TARGETS {
                assert!(order.contains(&target));
            }
        }
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
