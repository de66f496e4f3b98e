//! Harness for the operator's end-to-end tests: a fake API server with the LlmProxy CRD, the real
//! operator (`controller::run`) running in-process, and condition waits with a timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // test support: failing loudly is the point

use std::sync::Arc;
use std::time::Duration;

use fake_kube_apiserver::FakeApiServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use llm_proxy_operator::config::OperatorConfig;
use llm_proxy_operator::controller;
use llm_proxy_operator::crd::LlmProxy;
use llm_proxy_operator::metrics::Metrics;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const NAMESPACE: &str = "default";
/// Generous: two cores shared with other test binaries.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Harness {
    pub server: FakeApiServer,
    pub client: Client,
    /// The metrics of every operator this harness starts.
    pub metrics: Arc<Metrics>,
}

/// The operator running in-process; stopped through its shutdown future.
pub struct RunningOperator {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), llm_proxy_operator::error::StartError>>,
}

impl RunningOperator {
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Triggers graceful shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), llm_proxy_operator::error::StartError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("the operator stops within the timeout")
            .expect("the operator task did not panic")
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn test_config() -> OperatorConfig {
    OperatorConfig {
        resync_interval: Duration::from_secs(300),
        ..OperatorConfig::default()
    }
}

impl Harness {
    /// A fake API server with the LlmProxy CRD installed.
    pub async fn start() -> Self {
        let harness = Self::without_crd().await;
        harness.install_crd().await;
        harness
    }

    pub async fn without_crd() -> Self {
        // RUST_LOG=llm_proxy_operator=debug shows the operator's logs in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let server = FakeApiServer::start().await;
        let client = server.client();
        Self {
            server,
            client,
            metrics: Arc::default(),
        }
    }

    pub async fn install_crd(&self) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        crds.create(&PostParams::default(), &LlmProxy::crd())
            .await
            .unwrap();
    }

    pub fn start_operator(&self, config: OperatorConfig) -> RunningOperator {
        let (stop, stopped) = oneshot::channel::<()>();
        let client = self.client.clone();
        let task = tokio::spawn(controller::run(
            client,
            config,
            self.metrics.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        RunningOperator {
            stop: Some(stop),
            task,
        }
    }

    pub fn proxies(&self) -> Api<LlmProxy> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    pub async fn create_proxy(&self, name: &str, spec: Value) -> LlmProxy {
        let proxy: LlmProxy = serde_json::from_value(json!({
            "apiVersion": "llm-proxy.io/v1alpha1", "kind": "LlmProxy",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": spec,
        }))
        .unwrap();
        self.proxies()
            .create(&PostParams::default(), &proxy)
            .await
            .unwrap()
    }

    /// Creates an LlmProxy asking for a ServiceMonitor and awaits the condition saying its CRD is
    /// missing.
    pub async fn create_monitored_proxy_without_its_crd(&self, name: &str) {
        self.create_proxy(
            name,
            json!({"metrics": {"enabled": true, "serviceMonitor": {"enabled": true}}}),
        )
        .await;
        self.wait_for(
            "a condition saying the ServiceMonitor CRD is missing",
            |_| {
                self.condition(name, "ServiceMonitor")
                    .is_some_and(|c| c.status == "False")
            },
        )
        .await;
    }

    pub async fn install_service_monitor_crd(&self) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        crds.create(&PostParams::default(), &service_monitor_crd())
            .await
            .unwrap();
    }

    /// Merge-patches the LlmProxy spec, as a user editing it would.
    pub async fn patch_spec(&self, name: &str, spec: Value) {
        self.proxies()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .unwrap();
    }

    pub fn proxy(&self, name: &str) -> Option<LlmProxy> {
        self.server.get::<LlmProxy>(Some(NAMESPACE), name)
    }

    pub fn condition(&self, name: &str, type_: &str) -> Option<Condition> {
        self.proxy(name)?
            .status?
            .conditions
            .into_iter()
            .find(|condition| condition.type_ == type_)
    }

    pub fn deployment(&self, name: &str) -> Option<Deployment> {
        self.server.get::<Deployment>(Some(NAMESPACE), name)
    }

    pub fn exists(&self, group: &str, plural: &str, name: &str) -> bool {
        self.server
            .get_dynamic(group, plural, Some(NAMESPACE), name)
            .is_some()
    }

    /// Awaits `condition` (re-checked on every API request) or fails the test naming `what`.
    pub async fn wait_for(&self, what: &str, condition: impl FnMut(&FakeApiServer) -> bool) {
        assert!(
            self.server.wait_until(WAIT, condition).await,
            "timed out waiting for {what}"
        );
    }

    /// Waits until the operator has reconciled `name` again after now. Each touch of the object
    /// queues one reconcile; reconciles of one object never overlap, so after three touches each
    /// followed by a finished reconcile, every reconcile queued by the first touch has finished.
    /// (Finished reconciles are counted by the operator's metrics: one that finds nothing changed
    /// makes no request to watch for.)
    pub async fn await_full_reconcile(&self, name: &str) {
        let mut finished = self.metrics.finished_reconciles();
        for round in 0..3 {
            let before = *finished.borrow_and_update();
            self.proxies()
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {"e2e/touch": format!("{round}-{before}")}}})),
                )
                .await
                .unwrap();
            let reconciled = tokio::time::timeout(WAIT, finished.wait_for(|count| *count > before));
            assert!(
                matches!(reconciled.await, Ok(Ok(_))),
                "timed out waiting for a reconcile of {name}"
            );
        }
    }
}

pub fn is_true(condition: Option<Condition>) -> bool {
    condition.is_some_and(|condition| condition.status == "True")
}

pub fn config_hash(deployment: &Deployment) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(llm_proxy_operator::CONFIG_HASH_ANNOTATION)
        .cloned()
}

pub fn controller_owner_uid(object: &impl ResourceExt) -> Option<String> {
    object
        .owner_references()
        .iter()
        .find(|owner| owner.controller == Some(true))
        .map(|owner| owner.uid.clone())
}

/// A minimal prometheus-operator ServiceMonitor CRD.
pub fn service_monitor_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com", "scope": "Namespaced",
            "names": {"plural": "servicemonitors", "singular": "servicemonitor", "kind": "ServiceMonitor", "listKind": "ServiceMonitorList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))
    .unwrap()
}
