//! The Kubernetes kinds the operator creates as children: one table, used to apply, watch, cache
//! and sweep them.

use kube::core::{ApiResource, GroupVersionKind};

/// A child kind the operator manages: (group, version, kind, plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const fn kind(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
) -> ChildKind {
    ChildKind {
        group,
        version,
        kind,
        plural,
    }
}

/// Secret.
pub const SECRET: ChildKind = kind("", "v1", "Secret", "secrets");
/// PersistentVolumeClaim.
pub const PERSISTENT_VOLUME_CLAIM: ChildKind =
    kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims");
/// Service.
pub const SERVICE: ChildKind = kind("", "v1", "Service", "services");
/// ConfigMap.
pub const CONFIG_MAP: ChildKind = kind("", "v1", "ConfigMap", "configmaps");
/// StatefulSet.
pub const STATEFUL_SET: ChildKind = kind("apps", "v1", "StatefulSet", "statefulsets");
/// Deployment.
pub const DEPLOYMENT: ChildKind = kind("apps", "v1", "Deployment", "deployments");
/// HorizontalPodAutoscaler.
pub const HORIZONTAL_POD_AUTOSCALER: ChildKind = kind(
    "autoscaling",
    "v2",
    "HorizontalPodAutoscaler",
    "horizontalpodautoscalers",
);
/// Ingress.
pub const INGRESS: ChildKind = kind("networking.k8s.io", "v1", "Ingress", "ingresses");
/// The prometheus-operator ServiceMonitor (only handled when its CRD is served).
pub const SERVICE_MONITOR: ChildKind = kind(
    "monitoring.coreos.com",
    "v1",
    "ServiceMonitor",
    "servicemonitors",
);

/// Every built-in kind the operator may create, in apply order.
pub const CHILD_KINDS: &[ChildKind] = &[
    SECRET,
    PERSISTENT_VOLUME_CLAIM,
    SERVICE,
    CONFIG_MAP,
    STATEFUL_SET,
    DEPLOYMENT,
    HORIZONTAL_POD_AUTOSCALER,
    INGRESS,
];

/// The kind of a serialized object, if it is one the operator manages.
pub fn of(object: &serde_json::Value) -> Option<&'static ChildKind> {
    let api_version = object.get("apiVersion")?.as_str()?;
    let kind = object.get("kind")?.as_str()?;
    CHILD_KINDS
        .iter()
        .chain(std::iter::once(&SERVICE_MONITOR))
        .find(|k| k.kind == kind && api_version == k.api_version())
}

/// `Kind/name` of a serialized object, for Events and logs.
pub fn display_name(object: &serde_json::Value) -> String {
    let kind = object
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("Object");
    let name = object
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    format!("{kind}/{name}")
}
