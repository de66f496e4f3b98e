use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use llm_proxy_operator::crd::{LlmProxy, LlmProxyStatus};
use llm_proxy_operator::llmproxy::status::{self, Observed, Outcome};

use crate::support::proxy;

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).expect("timestamp"))
}

fn deployment(desired: i32, available: i32, updated: i32, current: bool) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            generation: Some(2),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(desired),
            ..DeploymentSpec::default()
        }),
        status: Some(DeploymentStatus {
            observed_generation: Some(if current { 2 } else { 1 }),
            replicas: Some(desired),
            ready_replicas: Some(available),
            available_replicas: Some(available),
            updated_replicas: Some(updated),
            ..DeploymentStatus::default()
        }),
    }
}

fn observed(d: Option<Deployment>) -> Observed {
    Observed {
        deployment: d,
        ..Observed::default()
    }
}

fn cond<'a>(status: &'a LlmProxyStatus, type_: &str) -> (&'a str, &'a str) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition");
    (c.status.as_str(), c.reason.as_str())
}

fn with_status(mut p: LlmProxy, status: LlmProxyStatus) -> LlmProxy {
    p.status = Some(status);
    p
}

#[test]
fn missing_deployment_is_not_available_and_progressing() {
    let status = status::compute(
        &proxy("{}"),
        None,
        Some("demo-management".into()),
        &observed(None),
        &Outcome::Applied,
        at(100),
    );
    assert_eq!(cond(&status, "Ready"), ("False", "DeploymentMissing"));
    assert_eq!(cond(&status, "Available"), ("False", "DeploymentMissing"));
    assert_eq!(cond(&status, "Progressing").0, "True");
    assert_eq!(cond(&status, "Degraded"), ("False", "ReconcileSucceeded"));
    assert_eq!(status.endpoint.as_deref(), Some("http://demo.ns.svc:8080"));
    assert_eq!(
        status.management_token_secret.as_deref(),
        Some("demo-management")
    );
}

#[test]
fn rolled_out_deployment_is_ready_with_observed_generation_everywhere() {
    let status = status::compute(
        &proxy("{}"),
        None,
        None,
        &observed(Some(deployment(2, 2, 2, true))),
        &Outcome::Applied,
        at(100),
    );
    assert_eq!(cond(&status, "Ready"), ("True", "Ready"));
    assert_eq!(cond(&status, "Available").0, "True");
    assert_eq!(cond(&status, "Progressing"), ("False", "RolloutComplete"));
    assert_eq!(status.observed_generation, Some(3));
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(3))
    );
    assert_eq!((status.replicas, status.ready_replicas), (2, 2));
}

#[test]
fn partial_rollout_is_available_but_not_ready() {
    let status = status::compute(
        &proxy("{}"),
        None,
        None,
        &observed(Some(deployment(3, 1, 1, true))),
        &Outcome::Applied,
        at(100),
    );
    assert_eq!(cond(&status, "Available").0, "True");
    assert_eq!(cond(&status, "Progressing"), ("True", "RollingOut"));
    assert_eq!(cond(&status, "Ready"), ("False", "RollingOut"));
    let stale = status::compute(
        &proxy("{}"),
        None,
        None,
        &observed(Some(deployment(1, 1, 1, false))),
        &Outcome::Applied,
        at(100),
    );
    assert_eq!(
        cond(&stale, "Progressing").0,
        "True",
        "Deployment controller has not seen the new generation"
    );
}

#[test]
fn last_transition_time_moves_only_when_a_status_changes() {
    let d = || observed(Some(deployment(1, 1, 1, true)));
    let first = status::compute(&proxy("{}"), None, None, &d(), &Outcome::Applied, at(100));
    let p = with_status(proxy("{}"), first.clone());
    let again = status::compute(
        &p,
        p.status.as_ref(),
        None,
        &d(),
        &Outcome::Applied,
        at(200),
    );
    assert_eq!(
        again, first,
        "an idle reconcile computes the identical status"
    );
    let failed = Outcome::Failed {
        reason: "KubeApiError".into(),
        message: "boom".into(),
    };
    let after_failure = status::compute(&p, p.status.as_ref(), None, &d(), &failed, at(300));
    let time = |s: &LlmProxyStatus, t: &str| {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.last_transition_time.clone())
    };
    assert_eq!(time(&after_failure, "Degraded"), Some(at(300)));
    assert_eq!(time(&after_failure, "Ready"), Some(at(300)));
    assert_eq!(time(&after_failure, "Available"), Some(at(100)));
    assert_eq!(cond(&after_failure, "Degraded"), ("True", "KubeApiError"));
}

#[test]
fn suspend_is_reported_as_a_reason() {
    let status = status::compute(
        &proxy("suspend: true"),
        None,
        None,
        &observed(Some(deployment(1, 1, 1, true))),
        &Outcome::Suspended,
        at(1),
    );
    assert_eq!(cond(&status, "Ready"), ("False", "Suspended"));
    assert_eq!(cond(&status, "Progressing"), ("False", "Suspended"));
}

#[test]
fn unbound_data_volume_keeps_it_progressing() {
    let o = Observed {
        deployment: Some(deployment(1, 1, 1, true)),
        data_pvc_phase: Some(Some("Pending".into())),
        service_monitor_crd_served: None,
    };
    let status = status::compute(
        &proxy("persistence: {enabled: true}"),
        None,
        None,
        &o,
        &Outcome::Applied,
        at(1),
    );
    assert_eq!(cond(&status, "Progressing"), ("True", "WaitingForVolume"));
    assert_eq!(cond(&status, "Ready").0, "False");
}

#[test]
fn missing_service_monitor_crd_is_a_condition() {
    let o = Observed {
        deployment: Some(deployment(1, 1, 1, true)),
        data_pvc_phase: None,
        service_monitor_crd_served: Some(false),
    };
    let status = status::compute(&proxy("{}"), None, None, &o, &Outcome::Applied, at(1));
    assert_eq!(cond(&status, "ServiceMonitor"), ("False", "CrdMissing"));
    assert_eq!(
        cond(&status, "Ready").0,
        "True",
        "a missing optional CRD does not make the proxy unready"
    );
}
