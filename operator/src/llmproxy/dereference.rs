//! Step 1 of an `LlmProxy` reconcile: everything read from the API — from the controller's
//! [`Cache`], so a reconcile that finds its Secrets makes no request — and nothing judged. The sha256 of every Secret key the spec
//! references (a missing Secret or key is recorded for [`validate`](super::validate) to report),
//! whether the ServiceMonitor CRD is served, and the children whose state the status reports (the
//! proxy Deployment, the data PVC). Secret values themselves are never read: the digests are all
//! the pod templates' config hash needs. The one value held is a management token drawn here for
//! a generated Secret that does not exist yet.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::{Api, Client};

use super::resources::secrets::new_management_token;
use super::resources::storage::data_pvc_name;
use super::sources::{Origin, SecretSources};
use crate::cache::{Cache, digest_secret, secret_digest};
use crate::crd::LlmProxySpec;
use crate::error::Error;

/// The sha256 of each referenced key of one Secret that exists (key → digest).
pub type SecretDigests = BTreeMap<String, Vec<u8>>;

/// A management token drawn for a Secret that is about to be created; its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct DrawnToken(pub Vec<u8>);

impl fmt::Debug for DrawnToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DrawnToken(<redacted>)")
    }
}

/// What the spec's Secret references point at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferencedData {
    /// Secret name → the digests of its referenced keys that exist, or `None` when the Secret
    /// does not exist. A Secret absent from the map was not looked up (the offline render).
    pub secrets: BTreeMap<String, Option<SecretDigests>>,
    /// Whether `servicemonitors.monitoring.coreos.com` is served by the cluster.
    pub service_monitor_crd_served: bool,
    /// The generated management-token Secret does not exist yet: the token it will be created
    /// with, drawn here (its digest is in `secrets`, so the pod template's hash is right at once).
    pub drawn_management_token: Option<DrawnToken>,
}

impl ReferencedData {
    /// What `render -f` assumes without a cluster: no Secret looked up, ServiceMonitor CRD present.
    pub fn offline() -> Self {
        Self {
            service_monitor_crd_served: true,
            ..Self::default()
        }
    }

    /// The sha256 of `key` in the Secret `name`, if it was looked up and holds the key.
    pub fn digest(&self, name: &str, key: &str) -> Option<&[u8]> {
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
    /// The live proxy Deployment (metadata, replicas and status), if it exists.
    pub deployment: Option<Deployment>,
    /// The SQLite data PVC (metadata and status), when the spec asks for one and it exists.
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
/// rendered then) and the children its status reports on, from a filled `cache`. A Secret the
/// cache does not show is asked for once more: it may be one just created (by the user, or by the
/// previous reconcile, whose token must not be drawn again) that the watch has not delivered yet.
pub async fn dereference(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    name: &str,
    spec: &LlmProxySpec,
    sources: &SecretSources,
) -> Result<Dereferenced, Error> {
    let referenced = if spec.suspend {
        ReferencedData::default()
    } else {
        referenced_data(client, cache, namespace, spec, sources).await?
    };
    let deployment = cache
        .deployment(namespace, name)
        .map(|deployment| (*deployment).clone());
    let data_pvc = spec
        .persistence
        .enabled
        .then(|| cache.claim(namespace, &data_pvc_name(name)))
        .flatten()
        .map(|claim| (*claim).clone());
    Ok(Dereferenced {
        referenced,
        observed: ObservedChildren {
            deployment,
            data_pvc,
        },
    })
}

/// The Secret `namespace/name` with each value replaced by its digest: from the cache, else from
/// the API.
async fn secret_digests(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    name: &str,
) -> Result<Option<Arc<Secret>>, Error> {
    if let Some(secret) = cache.secret(namespace, name) {
        return Ok(Some(secret));
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secret = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("read Secret {namespace}/{name}"), e))?;
    if let Some(secret) = secret.as_mut() {
        digest_secret(secret);
    }
    Ok(secret.map(Arc::new))
}

async fn referenced_data(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    spec: &LlmProxySpec,
    sources: &SecretSources,
) -> Result<ReferencedData, Error> {
    let mut data = ReferencedData::default();
    for source in sources.referenced() {
        let secret = match data.secrets.get(&source.name) {
            // Looked up already for another key: the Secret is missing.
            Some(None) => None,
            _ => secret_digests(client, cache, namespace, &source.name).await?,
        };
        let entry = data
            .secrets
            .entry(source.name.clone())
            .or_insert_with(|| secret.as_ref().map(|_| SecretDigests::new()));
        let Some(secret) = secret else {
            if source.origin == Origin::Generated {
                let token = new_management_token();
                *entry = Some(SecretDigests::from([(
                    source.key.clone(),
                    secret_digest(&token),
                )]));
                data.drawn_management_token = Some(DrawnToken(token));
            }
            continue;
        };
        // The cache holds digests in place of the values.
        let digest = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&source.key))
            .map(|v| v.0.clone());
        if let (Some(digest), Some(keys)) = (digest, entry.as_mut()) {
            keys.insert(source.key.clone(), digest);
        }
    }
    let monitor = &spec.metrics;
    data.service_monitor_crd_served =
        monitor.enabled && monitor.service_monitor.enabled && cache.service_monitor_served();
    Ok(data)
}
