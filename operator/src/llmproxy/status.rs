//! Step 5 of an `LlmProxy` reconcile (pure): the status from the previous status, the observed
//! children and the outcome of the pass. Conditions Ready, Available, Progressing and Degraded
//! derived from the children's real state and the reconcile outcome, and the Events their
//! transitions announce. `lastTransitionTime` moves only when a
//! condition's status changes, so an idle reconcile computes an identical status (and writes nothing).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{LlmProxy, LlmProxyStatus};

/// Condition: the proxy serves traffic with its spec fully rolled out and no error.
pub const READY: &str = "Ready";
/// Condition: at least one proxy replica is available.
pub const AVAILABLE: &str = "Available";
/// Condition: a rollout (or volume binding) is under way.
pub const PROGRESSING: &str = "Progressing";
/// Condition: the last reconcile failed (reason = error category, message = error).
pub const DEGRADED: &str = "Degraded";
/// Condition (only when `metrics.serviceMonitor.enabled`): the ServiceMonitor could be applied.
pub const SERVICE_MONITOR: &str = "ServiceMonitor";
/// Reason used on Ready and Progressing while `spec.suspend` is true.
pub const REASON_SUSPENDED: &str = "Suspended";

/// What the reconcile pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every child is applied.
    Applied,
    /// `spec.suspend`: no child was written.
    Suspended,
    /// The pass failed.
    Failed {
        /// Error category (`Error::category`).
        reason: String,
        /// Error message (never contains secret values).
        message: String,
    },
}

/// The children's observed state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The live proxy Deployment, if it exists.
    pub deployment: Option<Deployment>,
    /// Phase of the SQLite data PVC, when the spec asks for one.
    pub data_pvc_phase: Option<Option<String>>,
    /// `Some(served)` when a ServiceMonitor is requested.
    pub service_monitor_crd_served: Option<bool>,
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

/// Computes the status for `proxy`, keeping `lastTransitionTime` of unchanged conditions from
/// `previous` and stamping `now` on the others.
pub fn compute(
    proxy: &LlmProxy,
    previous: Option<&LlmProxyStatus>,
    management_token_secret: Option<String>,
    observed: &Observed,
    outcome: &Outcome,
    now: Time,
) -> LlmProxyStatus {
    let generation = proxy.metadata.generation;
    let name = proxy.metadata.name.clone().unwrap_or_default();
    let namespace = proxy
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());

    let deployment = observed.deployment.as_ref();
    let desired = deployment
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let dstatus = deployment.and_then(|d| d.status.as_ref());
    let replicas = dstatus.and_then(|s| s.replicas).unwrap_or(0);
    let ready = dstatus.and_then(|s| s.ready_replicas).unwrap_or(0);
    let available = dstatus.and_then(|s| s.available_replicas).unwrap_or(0);
    let updated = dstatus.and_then(|s| s.updated_replicas).unwrap_or(0);
    let deployment_current = deployment.is_some_and(|d| {
        let observed_generation = d.status.as_ref().and_then(|s| s.observed_generation);
        observed_generation.is_some() && observed_generation >= d.metadata.generation
    });

    let is_available = deployment.is_some() && (available > 0 || desired == 0);
    let available_condition = match deployment {
        None => condition(
            AVAILABLE,
            false,
            "DeploymentMissing",
            format!("Deployment {name} does not exist"),
            generation,
        ),
        Some(_) if is_available => condition(
            AVAILABLE,
            true,
            "MinimumReplicasAvailable",
            format!("{available}/{desired} replicas available"),
            generation,
        ),
        Some(_) => condition(
            AVAILABLE,
            false,
            "NoReplicasAvailable",
            format!("0/{desired} replicas available"),
            generation,
        ),
    };

    let rollout_pending =
        !deployment_current || updated < desired || available < desired || ready < desired;
    let volume_pending =
        matches!(&observed.data_pvc_phase, Some(phase) if phase.as_deref() != Some("Bound"));
    let progressing_condition = if *outcome == Outcome::Suspended {
        condition(
            PROGRESSING,
            false,
            REASON_SUSPENDED,
            "spec.suspend is true: children are not updated".into(),
            generation,
        )
    } else if volume_pending {
        condition(
            PROGRESSING,
            true,
            "WaitingForVolume",
            format!("PersistentVolumeClaim {name}-data is not Bound"),
            generation,
        )
    } else if rollout_pending {
        condition(
            PROGRESSING,
            true,
            "RollingOut",
            format!("{updated}/{desired} replicas updated, {available} available"),
            generation,
        )
    } else {
        condition(
            PROGRESSING,
            false,
            "RolloutComplete",
            format!("{desired} replicas up to date"),
            generation,
        )
    };

    let degraded_condition = match outcome {
        Outcome::Failed { reason, message } => {
            condition(DEGRADED, true, reason, message.clone(), generation)
        }
        _ => condition(
            DEGRADED,
            false,
            "ReconcileSucceeded",
            String::new(),
            generation,
        ),
    };

    let ready_condition = match outcome {
        Outcome::Suspended => condition(
            READY,
            false,
            REASON_SUSPENDED,
            "spec.suspend is true: reconciling status only".into(),
            generation,
        ),
        Outcome::Failed { reason, .. } => condition(
            READY,
            false,
            reason,
            "the last reconcile failed, see the Degraded condition".into(),
            generation,
        ),
        Outcome::Applied if !is_available => condition(
            READY,
            false,
            &available_condition.reason,
            available_condition.message.clone(),
            generation,
        ),
        Outcome::Applied if progressing_condition.status == "True" => condition(
            READY,
            false,
            &progressing_condition.reason,
            progressing_condition.message.clone(),
            generation,
        ),
        Outcome::Applied => condition(
            READY,
            true,
            "Ready",
            format!("{ready}/{desired} replicas ready"),
            generation,
        ),
    };

    let mut conditions = vec![
        ready_condition,
        available_condition,
        progressing_condition,
        degraded_condition,
    ];
    if let Some(served) = observed.service_monitor_crd_served {
        conditions.push(if served {
            condition(SERVICE_MONITOR, true, "Applied", String::new(), generation)
        } else {
            condition(
                SERVICE_MONITOR,
                false,
                "CrdMissing",
                "metrics.serviceMonitor is requested but the monitoring.coreos.com/v1 ServiceMonitor CRD is not served".into(),
                generation,
            )
        });
    }

    let previous = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    for c in &mut conditions {
        c.last_transition_time = previous
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status)
            .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
    }

    LlmProxyStatus {
        observed_generation: generation,
        conditions,
        replicas,
        ready_replicas: ready,
        endpoint: Some(format!(
            "http://{name}.{namespace}.svc:{}",
            proxy.spec.service.port
        )),
        management_token_secret,
    }
}

/// One Event a status change announces: (Warning?, reason, note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Warning (else Normal).
    pub warning: bool,
    /// Event reason.
    pub reason: String,
    /// Event note.
    pub note: String,
}

fn find<'a>(status: Option<&'a LlmProxyStatus>, type_: &str) -> Option<&'a Condition> {
    status.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

/// Events for condition changes from `old` to `new`: a Warning for each new error (or a changed
/// error message), Normal when the proxy becomes ready, a Warning when the ServiceMonitor cannot
/// be applied.
pub fn transitions(old: Option<&LlmProxyStatus>, new: &LlmProxyStatus) -> Vec<Announcement> {
    let mut events = Vec::new();
    if let Some(degraded) = find(Some(new), DEGRADED).filter(|c| c.status == "True") {
        let previous = find(old, DEGRADED);
        if previous.is_none_or(|p| p.status != "True" || p.message != degraded.message) {
            events.push(Announcement {
                warning: true,
                reason: degraded.reason.clone(),
                note: degraded.message.clone(),
            });
        }
    }
    if let Some(ready) = find(Some(new), READY).filter(|c| c.status == "True")
        && find(old, READY).is_none_or(|p| p.status != "True")
    {
        events.push(Announcement {
            warning: false,
            reason: "RolledOut".to_owned(),
            note: ready.message.clone(),
        });
    }
    if let Some(monitor) = find(Some(new), SERVICE_MONITOR).filter(|c| c.status == "False")
        && find(old, SERVICE_MONITOR).is_none_or(|p| p.status != "False")
    {
        events.push(Announcement {
            warning: true,
            reason: monitor.reason.clone(),
            note: monitor.message.clone(),
        });
    }
    events
}
