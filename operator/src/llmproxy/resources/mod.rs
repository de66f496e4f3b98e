//! Step 3 of an `LlmProxy` reconcile: pure builders, one function per child, each from the
//! [`ValidatedProxy`] to a typed object. [`all`] decides which children exist for a spec and
//! serializes them for server-side apply; [`config_hash`] is the pod templates' roll trigger.

pub mod autoscaling;
pub mod dispatcher;
pub mod monitoring;
pub mod network;
pub mod pod;
pub mod postgres;
pub mod providers;
pub mod proxy;
pub mod secrets;
pub mod storage;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::kinds::display_name;
use crate::llmproxy::validate::ValidatedProxy;
use crate::vocabulary::hex;

/// Component label of the proxy Deployment, Service, HPA, Ingress, ServiceMonitor and data PVC.
pub const COMPONENT_PROXY: &str = "proxy";
/// Component label of the dispatcher Deployment and its PVC.
pub const COMPONENT_DISPATCHER: &str = "dispatcher";
/// Component label of the dev PostgreSQL StatefulSet and Service.
pub const COMPONENT_POSTGRESQL: &str = "postgresql";
/// Component label of the `<name>-config` Secret.
pub const COMPONENT_CONFIG: &str = "config";
/// Component label of the generated management-token Secret.
pub const COMPONENT_MANAGEMENT_TOKEN: &str = "management-token";
/// Component label of the Grafana dashboard ConfigMap.
pub const COMPONENT_DASHBOARD: &str = "dashboard";

fn push(children: &mut Vec<serde_json::Value>, object: impl Serialize) -> Result<(), Error> {
    let value = serde_json::to_value(object).map_err(|e| Error::serialization("a child", e))?;
    children.push(value);
    Ok(())
}

/// sha256 over the rendered configuration and the sha256 of every referenced Secret key.
pub fn config_hash(ctx: &ValidatedProxy<'_>) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    for (key, value) in ctx.spec.effective_env() {
        field(key.as_bytes());
        field(value.as_bytes());
    }
    if let Some(providers) = providers::configured(ctx.spec) {
        field(providers.to_string().as_bytes());
    }
    for (key, value) in secrets::config_secret_data(ctx) {
        field(key.as_bytes());
        field(&value);
    }
    for source in ctx.sources.referenced() {
        field(source.name.as_bytes());
        field(source.key.as_bytes());
        field(
            ctx.referenced
                .digest(&source.name, &source.key)
                .unwrap_or_default(),
        );
    }
    hex(&hasher.finalize())
}

/// `Kind/name` of every child in `children`.
pub fn names(children: &[serde_json::Value]) -> impl Iterator<Item = String> + '_ {
    children.iter().map(display_name)
}

/// Every child wanted for the spec, Secrets, ConfigMaps and PVCs before the workloads that use them.
pub fn all(ctx: &ValidatedProxy<'_>) -> Result<Vec<serde_json::Value>, Error> {
    let spec = &ctx.spec;
    let config_hash = config_hash(ctx);
    let mut children = Vec::new();
    if let Some(secret) = secrets::config_secret(ctx) {
        push(&mut children, secret)?;
    }
    if let Some(config_map) = providers::config_map(ctx)? {
        push(&mut children, config_map)?;
    }
    if spec.persistence.enabled {
        push(&mut children, storage::data_pvc(ctx))?;
    }
    if spec.postgresql.enabled {
        push(&mut children, postgres::service(ctx))?;
        push(&mut children, postgres::stateful_set(ctx, &config_hash))?;
    }
    push(&mut children, proxy::deployment(ctx, &config_hash))?;
    push(&mut children, network::service(ctx))?;
    if spec.dispatcher.enabled {
        if dispatcher::uses_pvc(spec) {
            push(&mut children, storage::dispatcher_pvc(ctx))?;
        }
        push(&mut children, dispatcher::deployment(ctx, &config_hash))?;
    }
    if spec.autoscaling.enabled {
        push(&mut children, autoscaling::hpa(ctx))?;
    }
    if spec.ingress.enabled {
        push(&mut children, network::ingress(ctx))?;
    }
    if spec.metrics.enabled
        && spec.metrics.service_monitor.enabled
        && ctx.referenced.service_monitor_crd_served
    {
        children.push(monitoring::service_monitor(ctx));
    }
    if spec.metrics.enabled && spec.metrics.grafana_dashboard.enabled {
        push(&mut children, monitoring::dashboard(ctx))?;
    }
    Ok(children)
}
