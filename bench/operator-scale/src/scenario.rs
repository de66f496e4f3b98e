//! One run: the fake API server in this process, the operator binary as a child (so its VmRSS is
//! the controller's alone), a burst of `LlmProxy` objects, the wait for every one to be Ready while
//! the harness plays the deployment controller and the volume binder, then a steady-state window.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_kube_apiserver::FakeApiServer;
use kube::CustomResourceExt;
use llm_proxy_bench::error::BenchError;
use llm_proxy_bench::machine;
use llm_proxy_bench::process::{BenchProcess, free_loopback_addr};
use llm_proxy_bench::results::MachineFacts;
use llm_proxy_operator::crd::LlmProxy;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::results::{
    Convergence, OperatorScaleResults, Phase, RequestCounts, Settings, SteadyState,
};
use crate::samples::{self, Sample};

/// Watches the operator opens when it runs: LlmProxy, seven owned kinds and Secrets.
const OPERATOR_WATCHES: usize = 9;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Convergence ends this long after the last write once every object is Ready: the reconcile
/// that writes an object's Ready status publishes its Events right after, so the last objects'
/// Events can land just after the Ready count is complete. Far shorter than any resync, so a
/// periodic write still shows in the steady window.
const SETTLE_QUIET: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub objects: usize,
    pub namespaces: usize,
    pub resync_seconds: u64,
    pub steady_seconds: u64,
    pub poll_interval: Duration,
    /// Give up when convergence takes longer.
    pub convergence_timeout: Duration,
}

/// Where things are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The `llm-proxy-operator` binary.
    pub operator: PathBuf,
    pub samples_dir: PathBuf,
    /// Repository root (for the commit).
    pub repo: PathBuf,
    /// Directory for the kubeconfig and the operator's log.
    pub work_dir: PathBuf,
    /// Cargo profile of the operator binary.
    pub profile: String,
}

fn setup_error(call: &'static str) -> impl FnOnce(fake_kube_apiserver::ApiError) -> BenchError {
    move |error| BenchError::Setup {
        call,
        detail: error.to_string(),
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux platform
/// this runs on).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds a process has used so far (`/proc/<pid>/stat` fields 14 and 15);
/// `None` once it is gone.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / USER_HZ)
}

/// Ready=True for the object's current generation.
fn is_ready(proxy: &Value) -> bool {
    let generation = proxy.pointer("/metadata/generation");
    proxy
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|condition| {
                condition.get("type").and_then(Value::as_str) == Some("Ready")
                    && condition.get("status").and_then(Value::as_str) == Some("True")
                    && condition.get("observedGeneration") == generation
            })
        })
}

/// The harness's stand-ins for kube-controller-manager: Deployments become available, claims bound.
fn play_controllers(server: &FakeApiServer) -> Result<(), BenchError> {
    server
        .mark_deployments_available()
        .map_err(setup_error("mark deployments available"))?;
    server
        .bind_persistent_volume_claims()
        .map_err(setup_error("bind persistent volume claims"))?;
    Ok(())
}

fn ready_count(server: &FakeApiServer) -> usize {
    server.count_where("llm-proxy.io", "llmproxies", is_ready)
}

/// Namespaces, the CRD and the Secrets the samples reference, created test-side (not counted).
fn prepare_cluster(
    server: &FakeApiServer,
    samples: &[Sample],
    namespaces: &[String],
) -> Result<(), BenchError> {
    let crd = serde_json::to_value(LlmProxy::crd()).map_err(|error| BenchError::Setup {
        call: "serialize the CRD",
        detail: error.to_string(),
    })?;
    server
        .create_dynamic(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            None,
            crd,
        )
        .map_err(setup_error("create the CRD"))?;
    let secrets = samples::referenced_secrets(samples);
    for namespace in namespaces {
        server
            .create_dynamic(
                "",
                "v1",
                "namespaces",
                None,
                json!({"metadata": {"name": namespace}}),
            )
            .map_err(setup_error("create a namespace"))?;
        for name in &secrets {
            server
                .create_dynamic(
                    "",
                    "v1",
                    "secrets",
                    Some(namespace),
                    samples::secret(namespace, name),
                )
                .map_err(setup_error("create a Secret"))?;
        }
    }
    Ok(())
}

fn utc_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    llm_proxy_bench::runner::format_rfc3339(seconds)
}

/// Runs the benchmark once.
pub async fn run(plan: &Plan, paths: &Paths) -> Result<OperatorScaleResults, BenchError> {
    let started_at = utc_now();
    let load_average_start = machine::load_average();
    let samples = samples::load(&paths.samples_dir)?;
    let namespaces: Vec<String> = (0..plan.namespaces.max(1))
        .map(|index| format!("bench-{index:02}"))
        .collect();

    let server = FakeApiServer::try_start()
        .await
        .map_err(BenchError::io("starting the fake API server"))?;
    prepare_cluster(&server, &samples, &namespaces)?;
    std::fs::create_dir_all(&paths.work_dir).map_err(BenchError::io(format!(
        "creating {}",
        paths.work_dir.display()
    )))?;
    let kubeconfig = paths.work_dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml())
        .map_err(BenchError::io(format!("writing {}", kubeconfig.display())))?;
    let log = paths.work_dir.join("operator.log");
    let metrics_addr = free_loopback_addr()?;
    let env = [
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("METRICS_ADDR", metrics_addr.to_string()),
        ("RESYNC_SECONDS", plan.resync_seconds.to_string()),
        ("LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .map(|(key, value)| (key.to_owned(), value));
    let started = Instant::now();
    let operator = BenchProcess::start(
        "llm-proxy-operator",
        &paths.operator,
        &["run".to_owned()],
        &env,
        None,
        &log,
    )?;
    let pid = operator.pid();
    if !server
        .wait_until(STARTUP_TIMEOUT, |server| {
            server.open_watches() >= OPERATOR_WATCHES
        })
        .await
    {
        return Err(not_ready("the operator's watches", STARTUP_TIMEOUT, &log));
    }
    let startup = Phase {
        seconds: started.elapsed().as_secs_f64(),
        requests: RequestCounts::tally(&server.requests(), &server.writes(), plan.objects),
    };

    let request_mark = server.request_mark();
    let write_mark = server.write_mark();
    let operator_pid = pid.to_string();
    let operator_cpu_start = cpu_seconds(&operator_pid).unwrap_or(0.0);
    let harness_cpu_start = cpu_seconds("self").unwrap_or(0.0);
    let burst = Instant::now();
    for index in 0..plan.objects {
        let (namespace, object) = samples::object(&samples, &namespaces, index);
        server
            .create_dynamic(
                "llm-proxy.io",
                "v1alpha1",
                "llmproxies",
                Some(&namespace),
                object,
            )
            .map_err(setup_error("create an LlmProxy"))?;
    }
    let mut milestones = [None::<f64>; 3];
    let thresholds = [1, plan.objects.div_ceil(2), (plan.objects * 9).div_ceil(10)];
    let mut peak_rss_kib = 0;
    let deadline = burst + plan.convergence_timeout;
    let mut ticker = tokio::time::interval(plan.poll_interval);
    let converged_after = loop {
        ticker.tick().await;
        play_controllers(&server)?;
        let ready = ready_count(&server);
        let elapsed = burst.elapsed().as_secs_f64();
        for (milestone, threshold) in milestones.iter_mut().zip(thresholds) {
            if milestone.is_none() && ready >= threshold {
                *milestone = Some(elapsed);
            }
        }
        peak_rss_kib = peak_rss_kib.max(machine::rss_kib(pid).unwrap_or(0));
        if ready >= plan.objects {
            break elapsed;
        }
        if Instant::now() >= deadline {
            return Err(not_ready(
                &format!("{ready}/{} LlmProxy objects", plan.objects),
                plan.convergence_timeout,
                &log,
            ));
        }
    };
    let mut writes_seen = server.write_mark();
    let mut last_write = Instant::now();
    while last_write.elapsed() < SETTLE_QUIET && Instant::now() < deadline {
        ticker.tick().await;
        play_controllers(&server)?;
        let writes_now = server.write_mark();
        if writes_now > writes_seen {
            writes_seen = writes_now;
            last_write = Instant::now();
        }
    }
    let settled_after = (last_write - burst).as_secs_f64().max(converged_after);
    let operator_cpu_seconds = cpu_seconds(&operator_pid).unwrap_or(0.0) - operator_cpu_start;
    let harness_cpu_seconds = cpu_seconds("self").unwrap_or(0.0) - harness_cpu_start;
    let rss_kib = machine::rss_kib(pid).ok_or_else(|| BenchError::Setup {
        call: "read the operator's VmRSS",
        detail: format!("the operator exited; see {}", log.display()),
    })?;
    let convergence = Convergence {
        seconds: converged_after,
        last_write_seconds: settled_after,
        first_ready_seconds: milestones[0].unwrap_or(converged_after),
        half_ready_seconds: milestones[1].unwrap_or(converged_after),
        ninety_percent_ready_seconds: milestones[2].unwrap_or(converged_after),
        requests: RequestCounts::tally(
            &server.requests_since(request_mark),
            &server.writes_since(write_mark),
            plan.objects,
        ),
        rss_kib,
        peak_rss_kib: peak_rss_kib.max(rss_kib),
        operator_cpu_seconds,
        harness_cpu_seconds,
    };

    // The steady-state window is the measurement itself: nothing changes, and every request the
    // operator makes in it is counted (with a resync shorter than the window, each object is
    // re-reconciled at least once).
    let request_mark = server.request_mark();
    let write_mark = server.write_mark();
    let window = Instant::now();
    let window_end = window + Duration::from_secs(plan.steady_seconds);
    let mut writes_seen = write_mark;
    let mut last_write_seconds = None;
    while Instant::now() < window_end {
        ticker.tick().await;
        play_controllers(&server)?;
        let writes_now = server.write_mark();
        if writes_now > writes_seen {
            writes_seen = writes_now;
            last_write_seconds = Some(window.elapsed().as_secs_f64());
        }
    }
    let steady_state = SteadyState {
        seconds: window.elapsed().as_secs_f64(),
        requests: RequestCounts::tally(
            &server.requests_since(request_mark),
            &server.writes_since(write_mark),
            plan.objects,
        ),
        last_write_seconds,
        not_ready_at_end: plan.objects.saturating_sub(ready_count(&server)),
        rss_kib_at_end: machine::rss_kib(pid).unwrap_or(0),
    };
    drop(operator);

    Ok(OperatorScaleResults {
        machine: MachineFacts {
            nproc: machine::nproc(),
            cpu_model: machine::cpu_model(),
            kernel: machine::kernel(),
            commit: machine::commit(&paths.repo),
            profile: paths.profile.clone(),
            load_average_start,
            load_average_end: machine::load_average(),
            pinned: false,
            quick: false,
            started_at,
        },
        settings: Settings {
            objects: plan.objects,
            namespaces: namespaces.len(),
            samples: samples.iter().map(|sample| sample.stem.clone()).collect(),
            resync_seconds: plan.resync_seconds,
            steady_seconds: plan.steady_seconds,
            poll_interval_ms: u64::try_from(plan.poll_interval.as_millis()).unwrap_or(u64::MAX),
        },
        startup,
        convergence,
        steady_state,
    })
}

/// A timeout error that points at the operator's log (its last lines say why, when it exited).
fn not_ready(what: &str, timeout: Duration, log: &Path) -> BenchError {
    let tail: Vec<String> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .rev()
        .take(5)
        .map(str::to_owned)
        .collect();
    BenchError::NotReady(
        format!(
            "{what} (operator log {}; last lines: {})",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ),
        timeout,
    )
}
