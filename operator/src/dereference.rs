//! Reading what the spec points at: the data of every referenced Secret (only the referenced keys)
//! and whether the ServiceMonitor CRD is served. A missing Secret or key is a clear error, never a
//! crash; values are held only to hash them into the pod templates.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::apply::SERVICE_MONITOR_KIND;
use crate::crd::LlmProxySpec;
use crate::error::Error;
use crate::render::ReferencedData;
use crate::sources::SecretSources;

/// Reads every Secret `sources` references in `namespace`.
pub async fn dereference(
    client: &Client,
    namespace: &str,
    spec: &LlmProxySpec,
    sources: &SecretSources,
) -> Result<ReferencedData, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for source in sources.referenced() {
        let Some(secret) = api.get_opt(&source.name).await? else {
            return Err(Error::MissingSecret {
                namespace: namespace.to_owned(),
                name: source.name.clone(),
                field: source.field,
            });
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&source.key))
            .map(|v| v.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(&source.key))
                    .map(|v| v.as_bytes().to_vec())
            });
        let Some(value) = value else {
            return Err(Error::MissingSecretKey {
                namespace: namespace.to_owned(),
                name: source.name.clone(),
                key: source.key.clone(),
                field: source.field,
            });
        };
        secrets
            .entry(source.name.clone())
            .or_default()
            .insert(source.key.clone(), value);
    }
    let monitor = &spec.metrics;
    let service_monitor_crd_served = monitor.enabled
        && monitor.service_monitor.enabled
        && service_monitor_served(client).await?;
    Ok(ReferencedData {
        secrets,
        service_monitor_crd_served,
    })
}

/// Whether `servicemonitors.monitoring.coreos.com/v1` is served (API discovery, no CRD read access needed).
pub async fn service_monitor_served(client: &Client) -> Result<bool, Error> {
    let group_version = format!(
        "{}/{}",
        SERVICE_MONITOR_KIND.group, SERVICE_MONITOR_KIND.version
    );
    match client.list_api_group_resources(&group_version).await {
        Ok(list) => Ok(list
            .resources
            .iter()
            .any(|r| r.name == SERVICE_MONITOR_KIND.plural)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
