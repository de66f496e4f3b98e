//! The resource registry: which kinds the fake serves (built-ins plus kinds registered by CRDs), their
//! scope and subresources, and the discovery documents derived from it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One served resource at one group/version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub has_status: bool,
    pub short_names: Vec<String>,
    /// Name of the CRD that registered this resource; `None` for built-ins.
    pub crd_name: Option<String>,
}

impl ResourceInfo {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// All resources the fake serves, keyed by (group, version, plural).
#[derive(Debug, Clone)]
pub struct Registry {
    resources: BTreeMap<(String, String, String), ResourceInfo>,
}

const BUILTINS: &[(&str, &str, &str, &str, bool, bool)] = &[
    // (group, version, plural, kind, namespaced, has_status)
    ("", "v1", "namespaces", "Namespace", false, true),
    ("", "v1", "secrets", "Secret", true, false),
    ("", "v1", "services", "Service", true, true),
    ("", "v1", "configmaps", "ConfigMap", true, false),
    (
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        true,
    ),
    ("", "v1", "pods", "Pod", true, true),
    ("", "v1", "events", "Event", true, false),
    ("apps", "v1", "deployments", "Deployment", true, true),
    ("apps", "v1", "statefulsets", "StatefulSet", true, true),
    (
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        true,
    ),
    (
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        true,
        true,
    ),
    ("events.k8s.io", "v1", "events", "Event", true, false),
    ("coordination.k8s.io", "v1", "leases", "Lease", true, false),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        true,
    ),
];

impl Registry {
    /// The built-in kinds the operator uses.
    pub fn with_builtins() -> Self {
        let resources = BUILTINS
            .iter()
            .map(|&(group, version, plural, kind, namespaced, has_status)| {
                let info = ResourceInfo {
                    group: group.to_owned(),
                    version: version.to_owned(),
                    plural: plural.to_owned(),
                    singular: kind.to_lowercase(),
                    kind: kind.to_owned(),
                    namespaced,
                    has_status,
                    short_names: Vec::new(),
                    crd_name: None,
                };
                (
                    (group.to_owned(), version.to_owned(), plural.to_owned()),
                    info,
                )
            })
            .collect();
        Self { resources }
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
    }

    /// Registers every served version of a CRD object; replaces what the same CRD registered before.
    pub fn register_crd(&mut self, crd: &Value) -> Result<(), String> {
        let crd_name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or("metadata.name: Required value")?;
        let spec = crd.get("spec").ok_or("spec: Required value")?;
        let text = |pointer: &str| spec.pointer(pointer).and_then(Value::as_str);
        let group = text("/group").ok_or("spec.group: Required value")?;
        let plural = text("/names/plural").ok_or("spec.names.plural: Required value")?;
        let kind = text("/names/kind").ok_or("spec.names.kind: Required value")?;
        if crd_name != format!("{plural}.{group}") {
            return Err(format!(
                "metadata.name: Invalid value: \"{crd_name}\": must be spec.names.plural+\".\"+spec.group"
            ));
        }
        let singular = text("/names/singular")
            .map(str::to_owned)
            .unwrap_or_else(|| kind.to_lowercase());
        let short_names: Vec<String> = spec
            .pointer("/names/shortNames")
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let namespaced = match text("/scope") {
            Some("Namespaced") => true,
            Some("Cluster") => false,
            other => return Err(format!("spec.scope: Unsupported value: {other:?}")),
        };
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .filter(|versions| !versions.is_empty())
            .ok_or("spec.versions: Required value")?;
        self.unregister_crd(crd_name);
        for version in versions {
            if version.get("served").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let name = version
                .get("name")
                .and_then(Value::as_str)
                .ok_or("spec.versions.name: Required value")?;
            let info = ResourceInfo {
                group: group.to_owned(),
                version: name.to_owned(),
                plural: plural.to_owned(),
                singular: singular.clone(),
                kind: kind.to_owned(),
                namespaced,
                has_status: version.pointer("/subresources/status").is_some(),
                short_names: short_names.clone(),
                crd_name: Some(crd_name.to_owned()),
            };
            self.resources
                .insert((group.to_owned(), name.to_owned(), plural.to_owned()), info);
        }
        Ok(())
    }

    /// Removes every resource a CRD registered; returns the (group, plural) it served, if any.
    pub fn unregister_crd(&mut self, crd_name: &str) -> Option<(String, String)> {
        let removed: Vec<_> = self
            .resources
            .iter()
            .filter(|(_, info)| info.crd_name.as_deref() == Some(crd_name))
            .map(|(key, info)| (key.clone(), (info.group.clone(), info.plural.clone())))
            .collect();
        let served = removed.first().map(|(_, served)| served.clone());
        for (key, _) in removed {
            self.resources.remove(&key);
        }
        served
    }

    /// `/api`: the core group's versions.
    pub fn core_versions(&self) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        })
    }

    /// `/apis`: every non-core group with its served versions.
    pub fn group_list(&self) -> Value {
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for info in self
            .resources
            .values()
            .filter(|info| !info.group.is_empty())
        {
            let versions = groups.entry(&info.group).or_default();
            if !versions.contains(&info.version.as_str()) {
                versions.push(&info.version);
            }
        }
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|(group, versions)| {
                let entries: Vec<Value> = versions
                    .iter()
                    .map(|version| json!({"groupVersion": format!("{group}/{version}"), "version": version}))
                    .collect();
                let preferred = entries.first().cloned().unwrap_or(Value::Null);
                json!({"name": group, "versions": entries, "preferredVersion": preferred})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `/api/v1` or `/apis/{group}/{version}`; `None` when nothing is served there.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for info in self
            .resources
            .values()
            .filter(|info| info.group == group && info.version == version)
        {
            resources.push(json!({
                "name": info.plural,
                "singularName": info.singular,
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": info.short_names,
            }));
            if info.has_status {
                resources.push(json!({
                    "name": format!("{}/status", info.plural),
                    "singularName": "",
                    "namespaced": info.namespaced,
                    "kind": info.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }))
    }
}
