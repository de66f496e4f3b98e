//! Step 1 of an `LlmProxy` reconcile: everything read from the API, and nothing judged. The data
//! of every Secret the spec references (only the referenced keys; a missing Secret or key is
//! recorded for [`validate`](super::validate) to report), whether the ServiceMonitor CRD is
//! served, and the children whose state the status reports (the proxy Deployment, the data PVC).
//! Secret values are held only to hash them into the pod templates.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::{Api, Client};

use super::resources::secrets::new_management_token;
use super::resources::storage::data_pvc_name;
use super::sources::{Origin, SecretSources};
use crate::crd::LlmProxySpec;
use crate::error::Error;
use crate::kinds::SERVICE_MONITOR;

/// The referenced keys of one Secret that exist (key → value).
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// Data of the Secrets the spec references.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferencedData {
    /// Secret name → its referenced keys that exist, or `None` when the Secret does not exist. A
    /// Secret absent from the map was not looked up (the offline render).
    pub secrets: BTreeMap<String, Option<SecretData>>,
    /// Whether `servicemonitors.monitoring.coreos.com` is served by the cluster.
    pub service_monitor_crd_served: bool,
    /// The generated management-token Secret does not exist yet: the token it will be created
    /// with was drawn here (and is in `secrets`), so the pod template's hash is right at once.
    pub management_secret_to_create: bool,
}

impl ReferencedData {
    /// What `render -f` assumes without a cluster: no Secret looked up, ServiceMonitor CRD present.
    pub fn offline() -> Self {
        Self {
            service_monitor_crd_served: true,
            ..Self::default()
        }
    }

    /// The value of `key` in the Secret `name`, if it was read and holds it.
    pub fn value(&self, name: &str, key: &str) -> Option<&[u8]> {
        self.secrets
            .get(name)
            .and_then(Option::as_ref)
            .and_then(|data| data.get(key))
            .map(Vec::as_slice)
    }
}

/// The children whose live state the status reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedChildren {
    /// The live proxy Deployment, if it exists.
    pub deployment: Option<Deployment>,
    /// The SQLite data PVC, when the spec asks for one and it exists.
    pub data_pvc: Option<PersistentVolumeClaim>,
}

/// Everything one reconcile reads from the API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dereferenced {
    /// What the spec points at.
    pub referenced: ReferencedData,
    /// The children the status reports on.
    pub observed: ObservedChildren,
}

/// Reads what the LlmProxy `name` in `namespace` points at (skipped when `suspended`: nothing is
/// rendered then) and the children its status reports on.
pub async fn dereference(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: &LlmProxySpec,
    sources: &SecretSources,
) -> Result<Dereferenced, Error> {
    let referenced = if spec.suspend {
        ReferencedData::default()
    } else {
        referenced_data(client, namespace, spec, sources).await?
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment = deployments
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("read Deployment {namespace}/{name}"), e))?;
    let data_pvc = if spec.persistence.enabled {
        let pvc_name = data_pvc_name(name);
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
        pvcs.get_opt(&pvc_name).await.map_err(|e| {
            Error::kube(
                format!("read PersistentVolumeClaim {namespace}/{pvc_name}"),
                e,
            )
        })?
    } else {
        None
    };
    Ok(Dereferenced {
        referenced,
        observed: ObservedChildren {
            deployment,
            data_pvc,
        },
    })
}

async fn referenced_data(
    client: &Client,
    namespace: &str,
    spec: &LlmProxySpec,
    sources: &SecretSources,
) -> Result<ReferencedData, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut data = ReferencedData::default();
    for source in sources.referenced() {
        let secret = api
            .get_opt(&source.name)
            .await
            .map_err(|e| Error::kube(format!("read Secret {namespace}/{}", source.name), e))?;
        let entry = data
            .secrets
            .entry(source.name.clone())
            .or_insert_with(|| secret.as_ref().map(|_| SecretData::new()));
        let Some(secret) = secret else {
            if source.origin == Origin::Generated {
                *entry = Some(SecretData::from([(
                    source.key.clone(),
                    new_management_token(),
                )]));
                data.management_secret_to_create = true;
            }
            continue;
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
        if let (Some(value), Some(keys)) = (value, entry.as_mut()) {
            keys.insert(source.key.clone(), value);
        }
    }
    let monitor = &spec.metrics;
    data.service_monitor_crd_served = monitor.enabled
        && monitor.service_monitor.enabled
        && service_monitor_served(client).await?;
    Ok(data)
}

/// Whether `servicemonitors.monitoring.coreos.com/v1` is served (API discovery, no CRD read access needed).
pub async fn service_monitor_served(client: &Client) -> Result<bool, Error> {
    let group_version = SERVICE_MONITOR.api_version();
    match client.list_api_group_resources(&group_version).await {
        Ok(list) => Ok(list
            .resources
            .iter()
            .any(|r| r.name == SERVICE_MONITOR.plural)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(Error::kube(format!("discover {group_version}"), e)),
    }
}
