//! The operator *binary* against the fake API server: it reads a kubeconfig, brings an LlmProxy
//! to Ready, exits 0 promptly on SIGTERM, and says clearly what is wrong when the kubeconfig is
//! bad or the CRD is missing.
//!
//! The binary is `llm-proxy-operator-under-test`: the operator's own `operator/src/main.rs` built
//! as a binary of this package (see Cargo.toml), because Cargo only exposes `CARGO_BIN_EXE_*` for
//! the package under test and builds no other package's binaries for these tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use support::{Harness, NAMESPACE, is_true};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-proxy-operator-under-test");
/// SIGTERM to exit: the controller drains and the metrics server stops gracefully.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// A temporary directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "operator-binary-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The running binary with its output (stdout and stderr merged, line by line).
struct Operator {
    child: Child,
    output: Arc<Mutex<String>>,
    /// The readers of stdout and stderr; they end when the process has exited.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

fn collect(
    stream: impl AsyncRead + Unpin + Send + 'static,
    output: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = output.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    })
}

impl Operator {
    fn start(kubeconfig: &std::path::Path) -> Self {
        let mut child = Command::new(BINARY)
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), output.clone()),
            collect(child.stderr.take().unwrap(), output.clone()),
        ];
        Self {
            child,
            output,
            readers,
        }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Polls the collected output until it contains `needle` (there is no other signal from a
    /// child process), failing with the output when `deadline` passes.
    async fn wait_for_output(&self, needle: &str, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        while !self.output().contains(needle) {
            assert!(
                tokio::time::Instant::now() < until,
                "no {needle:?} in the operator's output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn terminate(&self) {
        let pid = self.child.id().expect("the operator is still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Exit code within `EXIT_DEADLINE`, once all of the output has been read.
    async fn exit_code(&mut self) -> Option<i32> {
        let code = tokio::time::timeout(EXIT_DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the operator did not exit within {EXIT_DEADLINE:?}:\n{}",
                    self.output()
                )
            })
            .unwrap()
            .code();
        for reader in self.readers.drain(..) {
            tokio::time::timeout(EXIT_DEADLINE, reader)
                .await
                .expect("the output pipes close when the process exits")
                .unwrap();
        }
        code
    }
}

fn write_kubeconfig(dir: &TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.0.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_brings_a_proxy_to_ready_and_exits_0_on_sigterm() {
    let h = Harness::start().await;
    let dir = TempDir::new("ready");
    let mut operator = Operator::start(&write_kubeconfig(&dir, &h.server.kubeconfig_yaml()));
    h.create_proxy("binary", json!({})).await;
    h.wait_for("the Deployment created by the binary", |_| {
        h.exists("apps", "deployments", "binary")
    })
    .await;
    h.server
        .mark_deployment_available(NAMESPACE, "binary")
        .unwrap();
    h.wait_for("Ready=True", |_| is_true(h.condition("binary", "Ready")))
        .await;

    operator.terminate();
    assert_eq!(operator.exit_code().await, Some(0), "{}", operator.output());
    let output = operator.output();
    assert!(!output.contains("panicked"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_crd_is_named_with_the_fix_and_sigterm_still_exits_0() {
    let h = Harness::without_crd().await;
    let dir = TempDir::new("no-crd");
    let mut operator = Operator::start(&write_kubeconfig(&dir, &h.server.kubeconfig_yaml()));
    operator
        .wait_for_output(
            "the LlmProxy CRD (llmproxies.llm-proxy.io) is not installed; apply crds/",
            support::WAIT,
        )
        .await;
    operator.terminate();
    assert_eq!(operator.exit_code().await, Some(0), "{}", operator.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_kubeconfig_fails_with_a_clear_message_not_a_panic() {
    let dir = TempDir::new("bad-config");
    for (case, kubeconfig) in [
        ("missing file", dir.0.join("absent")),
        (
            "not a kubeconfig",
            write_kubeconfig(&dir, "clusters: [this is: not: a kubeconfig"),
        ),
    ] {
        let mut operator = Operator::start(&kubeconfig);
        let code = operator.exit_code().await;
        let output = operator.output();
        assert_eq!(code, Some(1), "{case}: {output}");
        assert!(
            output.contains("cannot configure the Kubernetes client from KUBECONFIG"),
            "{case}: {output}"
        );
        assert!(!output.contains("panicked"), "{case}: {output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_resync_interval_is_refused_by_name() {
    let output = Command::new(BINARY)
        .args(["run", "--resync-seconds", "0"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--resync-seconds"), "{stderr}");
}
