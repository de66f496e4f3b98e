//! Writing children: server-side apply (one field manager, force) skipped when the live object
//! already holds what we would apply, create-once for generated Secrets, and label-scoped deletion
//! of children no longer wanted.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::build::monitoring;
use crate::error::Error;
use crate::render::{
    APPLIED_HASH_ANNOTATION, FIELD_MANAGER, GENERATED_ANNOTATION, LABEL_INSTANCE, LABEL_MANAGED_BY,
    hex,
};

/// A child kind the operator manages: (group, version, kind, plural).
pub struct ChildKind {
    /// API group ("" = core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
}

impl ChildKind {
    /// The kube `ApiResource` of this kind.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }
}

/// Every built-in kind the operator may create, in apply order.
pub const CHILD_KINDS: &[ChildKind] = &[
    ChildKind {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
    },
    ChildKind {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
    },
    ChildKind {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
    },
    ChildKind {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
    },
    ChildKind {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
    },
    ChildKind {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
    },
    ChildKind {
        group: "autoscaling",
        version: "v2",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
    },
    ChildKind {
        group: "networking.k8s.io",
        version: "v1",
        kind: "Ingress",
        plural: "ingresses",
    },
];

/// The ServiceMonitor kind (only handled when its CRD is served).
pub const SERVICE_MONITOR_KIND: ChildKind = ChildKind {
    group: monitoring::SERVICE_MONITOR_GROUP,
    version: monitoring::SERVICE_MONITOR_VERSION,
    kind: monitoring::SERVICE_MONITOR_KIND,
    plural: monitoring::SERVICE_MONITOR_PLURAL,
};

fn kind_of(object: &Value) -> Option<&'static ChildKind> {
    let api_version = object.get("apiVersion")?.as_str()?;
    let kind = object.get("kind")?.as_str()?;
    CHILD_KINDS
        .iter()
        .chain(std::iter::once(&SERVICE_MONITOR_KIND))
        .find(|k| {
            k.kind == kind
                && if k.group.is_empty() {
                    api_version == k.version
                } else {
                    api_version == format!("{}/{}", k.group, k.version)
                }
        })
}

/// `Kind/name` of an object, for Events and logs.
pub fn display_name(object: &Value) -> String {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Object");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("{kind}/{name}")
}

/// What one apply pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Children that did not exist before (`Kind/name`).
    pub created: Vec<String>,
    /// Existing children that were re-applied (changed spec or drift).
    pub updated: Vec<String>,
    /// Children deleted because they are no longer wanted.
    pub deleted: Vec<String>,
}

/// sha256 of the object as we would apply it (before the hash annotation is added).
pub fn applied_hash(object: &Value) -> Result<String, Error> {
    Ok(hex(&Sha256::digest(serde_json::to_vec(object)?)))
}

/// Whether every field of `desired` is present with the same value in `live` (lists element-wise).
/// Fields the API server adds (defaults, status, managedFields) are ignored, and quantities the
/// server canonicalizes (`1000m` is stored as `1`) compare by value.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| is_subset(v, lv))),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (Value::String(d), Value::String(l)) if d != l => matches!(
            (quantity_value(d), quantity_value(l)),
            (Some(a), Some(b)) if (a - b).abs() <= f64::EPSILON * a.abs().max(1.0)
        ),
        _ => desired == live,
    }
}

/// The numeric value of a Kubernetes quantity (`100m`, `1.5Gi`, `2k`), if `text` is one.
/// Only used to recognise server-side canonicalization; the applied-hash catches real changes.
fn quantity_value(text: &str) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((text, 1.0));
    let starts_with_digit = number.chars().next().is_some_and(|c| c.is_ascii_digit());
    if !starts_with_digit || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    number.parse::<f64>().ok().map(|n| n * factor)
}

/// Applies children in one namespace on behalf of one LlmProxy.
pub struct Applier {
    client: Client,
    namespace: String,
    proxy_name: String,
    proxy_uid: String,
}

impl Applier {
    /// An applier for the LlmProxy `proxy_name` (uid `proxy_uid`) in `namespace`.
    pub fn new(client: Client, namespace: String, proxy_name: String, proxy_uid: String) -> Self {
        Self {
            client,
            namespace,
            proxy_name,
            proxy_uid,
        }
    }

    fn api(&self, kind: &ChildKind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &kind.api_resource())
    }

    /// Applies every child; skips those whose live state already matches (zero writes when nothing
    /// changed). Returns what was created or updated.
    pub async fn apply_all(
        &self,
        children: &[Value],
        report: &mut ApplyReport,
    ) -> Result<(), Error> {
        for child in children {
            let Some(kind) = kind_of(child) else {
                return Err(Error::InvalidObject(format!(
                    "no API mapping for {}",
                    display_name(child)
                )));
            };
            let name = child
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .ok_or(Error::MissingMetadata("name of a child"))?;
            let hash = applied_hash(child)?;
            let mut desired = child.clone();
            if let Some(meta) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
                let annotations = meta
                    .entry("annotations")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(map) = annotations.as_object_mut() {
                    map.insert(
                        APPLIED_HASH_ANNOTATION.to_owned(),
                        Value::String(hash.clone()),
                    );
                }
            }
            let api = self.api(kind);
            let live = api.get_opt(name).await?;
            if let Some(live) = &live {
                let live_hash = live
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(APPLIED_HASH_ANNOTATION));
                if live_hash == Some(&hash) && is_subset(&desired, &serde_json::to_value(live)?) {
                    continue;
                }
            }
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await?;
            let entry = display_name(child);
            if live.is_some() {
                report.updated.push(entry)
            } else {
                report.created.push(entry)
            }
        }
        Ok(())
    }

    /// Creates `secret` if no Secret of that name exists; never touches an existing one.
    /// Returns whether it was created.
    pub async fn create_if_absent(&self, secret: &Secret) -> Result<bool, Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = secret
            .metadata
            .name
            .as_deref()
            .ok_or(Error::MissingMetadata("name of a child"))?;
        if api.get_opt(name).await?.is_some() {
            return Ok(false);
        }
        match api
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..Default::default()
                },
                secret,
            )
            .await
        {
            Ok(_) => Ok(true),
            // Created concurrently by another pass: it exists, which is all we need.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes children of this LlmProxy (by labels and controller owner uid) that are not in
    /// `wanted`. Generated Secrets are kept: they go away with the LlmProxy through its ownerRef.
    pub async fn delete_unwanted(
        &self,
        wanted: &[Value],
        service_monitor_crd_served: bool,
        report: &mut ApplyReport,
    ) -> Result<(), Error> {
        let wanted: BTreeSet<String> = wanted.iter().map(display_name).collect();
        let selector = format!(
            "{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={FIELD_MANAGER}",
            self.proxy_name
        );
        let kinds = CHILD_KINDS
            .iter()
            .chain(service_monitor_crd_served.then_some(&SERVICE_MONITOR_KIND));
        for kind in kinds {
            let api = self.api(kind);
            for object in api
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
            {
                let Some(name) = object.metadata.name.as_deref() else {
                    continue;
                };
                let owned = object
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == self.proxy_uid && o.controller == Some(true));
                let generated = object
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(GENERATED_ANNOTATION));
                let entry = format!("{}/{name}", kind.kind);
                if owned && !generated && !wanted.contains(&entry) {
                    match api.delete(name, &DeleteParams::background()).await {
                        Ok(_) => report.deleted.push(entry),
                        Err(kube::Error::Api(status)) if status.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }
}
