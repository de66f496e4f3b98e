//! Writing children, for any kind of owner: server-side apply (one field manager, force) skipped
//! when the live object already holds what we would apply, create-once for generated Secrets, and
//! deletion of the owner's children no longer wanted.
//!
//! Reads go to the [`Cache`] first: a child the cache shows at the version last verified, with the
//! wanted applied-hash, is skipped without a read; only a child that changed since (or whose kind
//! is not cached yet) is read and compared field by field.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::core::ObjectMeta;
use kube::{Api, Client};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cache::{Cache, Lookup};
use crate::error::Error;
use crate::kinds::{self, CHILD_KINDS, ChildKind, SERVICE_MONITOR, display_name};
use crate::memory::VerifiedChildren;
use crate::vocabulary::{
    APPLIED_HASH_ANNOTATION, FIELD_MANAGER, GENERATED_ANNOTATION, LABEL_INSTANCE, LABEL_MANAGED_BY,
    hex,
};

/// What one apply pass did.
#[derive(Debug, Default, Clone)]
pub struct ApplyReport {
    /// Children that did not exist before (`Kind/name`).
    pub created: Vec<String>,
    /// Existing children that were re-applied (changed spec or drift).
    pub updated: Vec<String>,
    /// Children deleted because they are no longer wanted.
    pub deleted: Vec<String>,
    /// The objects as the API server stored them after each write (`Kind/name` → object).
    pub written: Vec<(String, DynamicObject)>,
}

impl ApplyReport {
    /// The stored object after this pass wrote `Kind/name`, if it did.
    pub fn written(&self, display_name: &str) -> Option<&DynamicObject> {
        self.written
            .iter()
            .find(|(name, _)| name == display_name)
            .map(|(_, object)| object)
    }
}

/// sha256 of the object as we would apply it (before the hash annotation is added).
pub fn applied_hash(object: &Value) -> Result<String, Error> {
    let bytes =
        serde_json::to_vec(object).map_err(|e| Error::serialization(display_name(object), e))?;
    Ok(hex(&Sha256::digest(bytes)))
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

/// Applies children in one namespace on behalf of one owning resource (of any kind).
pub struct Applier<'a> {
    client: Client,
    cache: &'a Cache,
    verified: &'a VerifiedChildren,
    namespace: String,
    owner_name: String,
    owner_uid: String,
}

impl<'a> Applier<'a> {
    /// An applier for the resource `owner_name` (uid `owner_uid`) in `namespace`; its children
    /// carry `app.kubernetes.io/instance=<owner_name>` and a controller reference to `owner_uid`.
    /// `cache` answers reads where it can; `verified` is the controller's memory of children
    /// found matching.
    pub fn new(
        client: Client,
        cache: &'a Cache,
        verified: &'a VerifiedChildren,
        namespace: String,
        owner_name: String,
        owner_uid: String,
    ) -> Self {
        Self {
            client,
            cache,
            verified,
            namespace,
            owner_name,
            owner_uid,
        }
    }

    fn verified_key(&self, kind: &ChildKind, name: &str) -> String {
        format!("{}/{}/{name}", self.namespace, kind.kind)
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
            let entry = display_name(child);
            let Some(kind) = kinds::of(child) else {
                return Err(Error::UnknownChildKind(entry));
            };
            let Some(name) = child.pointer("/metadata/name").and_then(Value::as_str) else {
                return Err(Error::UnknownChildKind(entry));
            };
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
            let verified_key = self.verified_key(kind, name);
            let exists = match self.cache.child(kind, &self.namespace, name) {
                Lookup::Present {
                    resource_version,
                    applied_hash,
                } if applied_hash.as_deref() == Some(hash.as_str())
                    && self
                        .verified
                        .is_current(&verified_key, resource_version.as_deref()) =>
                {
                    continue;
                }
                // Not in the cache and not written by this term: it does not exist. (One this
                // term wrote or verified may only not have reached the cache yet: ask.)
                Lookup::Absent if !self.verified.remembers(&verified_key) => false,
                Lookup::Absent | Lookup::Present { .. } | Lookup::Unknown => {
                    let live = api
                        .get_opt(name)
                        .await
                        .map_err(|e| Error::kube(format!("read {entry}"), e))?;
                    if let Some(live) = &live {
                        let live_hash = live
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(APPLIED_HASH_ANNOTATION));
                        let live_value = serde_json::to_value(live)
                            .map_err(|e| Error::serialization(&entry, e))?;
                        if live_hash == Some(&hash) && is_subset(&desired, &live_value) {
                            self.verified
                                .record(&verified_key, live.metadata.resource_version.as_deref());
                            continue;
                        }
                    }
                    live.is_some()
                }
            };
            let stored = api
                .patch(
                    name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&desired),
                )
                .await
                .map_err(|e| Error::kube(format!("apply {entry}"), e))?;
            self.verified
                .record(&verified_key, stored.metadata.resource_version.as_deref());
            if exists {
                report.updated.push(entry.clone())
            } else {
                report.created.push(entry.clone())
            }
            report.written.push((entry, stored));
        }
        Ok(())
    }

    /// Creates `secret`, which the cache did not show; never touches an existing one (created
    /// meanwhile, or not cached yet). Returns whether it was created.
    pub async fn create_if_absent(&self, secret: &Secret) -> Result<bool, Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = secret.metadata.name.as_deref().unwrap_or_default();
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
            // It exists, which is all we need.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(Error::kube(format!("create Secret/{name}"), e)),
        }
    }

    /// Deletes children of the owner (by labels and controller owner uid) that are not in
    /// `wanted`. Generated Secrets are kept: they go away with the owner through its ownerRef.
    pub async fn delete_unwanted(
        &self,
        wanted: &[Value],
        service_monitor_crd_served: bool,
        report: &mut ApplyReport,
    ) -> Result<(), Error> {
        let wanted: BTreeSet<String> = wanted.iter().map(display_name).collect();
        let selector = format!(
            "{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={FIELD_MANAGER}",
            self.owner_name
        );
        let kinds = CHILD_KINDS
            .iter()
            .chain(service_monitor_crd_served.then_some(&SERVICE_MONITOR));
        let is_ours = |meta: &ObjectMeta| {
            let labels = meta.labels.as_ref();
            let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
            label(LABEL_INSTANCE) == Some(self.owner_name.as_str())
                && label(LABEL_MANAGED_BY) == Some(FIELD_MANAGER)
                && meta
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == self.owner_uid && o.controller == Some(true))
                && !meta
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(GENERATED_ANNOTATION))
        };
        for kind in kinds {
            let api = self.api(kind);
            let children = match self.cache.children(kind, &self.namespace, is_ours) {
                Some(children) => children,
                None => api
                    .list_metadata(&ListParams::default().labels(&selector))
                    .await
                    .map_err(|e| Error::kube(format!("list {}", kind.plural), e))?
                    .items
                    .into_iter()
                    .map(|object| object.metadata)
                    .filter(|meta| is_ours(meta))
                    .collect(),
            };
            for meta in children {
                let Some(name) = meta.name.as_deref() else {
                    continue;
                };
                let entry = format!("{}/{name}", kind.kind);
                if wanted.contains(&entry) {
                    continue;
                }
                match api.delete(name, &DeleteParams::background()).await {
                    Ok(_) => report.deleted.push(entry),
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(e) => return Err(Error::kube(format!("delete {entry}"), e)),
                }
                self.verified.record(&self.verified_key(kind, name), None);
            }
        }
        Ok(())
    }
}
