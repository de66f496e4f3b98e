//! The in-memory object store: create/replace/patch/apply/delete semantics (uid, resourceVersion,
//! generation, status separation, managedFields, owner-reference cascade, CRD registration) and the
//! change history that watches replay.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::fields::{self, FieldSet, ManagedEntry, Owner};
use crate::registry::{Registry, ResourceInfo};
use crate::selector::{FieldSelector, LabelSelector};

/// Changes kept for watches that resume from an older resourceVersion; older ones get 410 Expired.
const HISTORY_LIMIT: usize = 10_000;
/// Live change fan-out; a watcher lagging further than this is disconnected (it resumes from history).
const LIVE_CHANNEL_CAPACITY: usize = 1024;
const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_PLURAL: &str = "customresourcedefinitions";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub group: String,
    pub plural: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One committed change, as watches see it.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    pub resource_version: u64,
    pub group: String,
    pub plural: String,
    pub kind: ChangeKind,
    pub object: Value,
    /// The object before a modification (to turn selector transitions into ADDED/DELETED).
    pub previous: Option<Value>,
}

/// Who is writing, for managedFields.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub manager: &'a str,
    /// `Some("status")` for writes through the status subresource.
    pub subresource: Option<&'a str>,
}

/// A PATCH body, by content type.
#[derive(Debug)]
pub enum PatchBody {
    /// `application/merge-patch+json`, and `strategic-merge-patch+json` treated the same way.
    Merge(Value),
    /// `application/json-patch+json`.
    Json(json_patch::Patch),
    /// `application/apply-patch+yaml`: server-side apply.
    Apply { object: Value, force: bool },
}

pub struct Store {
    pub registry: Registry,
    objects: BTreeMap<ObjectKey, Value>,
    /// The uid of every stored object, so an owner lookup is not a scan of every object.
    uids: BTreeSet<String>,
    resource_version: u64,
    history: VecDeque<Arc<ChangeEvent>>,
    history_limit: usize,
    live: broadcast::Sender<Arc<ChangeEvent>>,
}

pub fn now_timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn text_at<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

fn metadata_mut(object: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let metadata = object
        .as_object_mut()?
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !metadata.is_object() {
        *metadata = json!({});
    }
    metadata.as_object_mut()
}

fn set_metadata(object: &mut Value, key: &str, value: Value) {
    if let Some(metadata) = metadata_mut(object) {
        metadata.insert(key.to_owned(), value);
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The parts of an object that count for `metadata.generation`.
fn generation_relevant(info: &ResourceInfo, object: &Value) -> Value {
    let mut stripped = object.clone();
    if let Some(map) = stripped.as_object_mut() {
        map.remove("metadata");
        map.remove("apiVersion");
        map.remove("kind");
        if info.has_status {
            map.remove("status");
        }
    }
    stripped
}

/// The object without the bookkeeping that does not make a write effective.
fn content(object: &Value) -> Value {
    let mut stripped = object.clone();
    if let Some(metadata) = stripped.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
        metadata.remove("resourceVersion");
    }
    if let Some(map) = stripped.as_object_mut() {
        map.remove("apiVersion");
    }
    stripped
}

impl Store {
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(LIVE_CHANNEL_CAPACITY);
        let mut store = Self {
            registry: Registry::with_builtins(),
            objects: BTreeMap::new(),
            uids: BTreeSet::new(),
            resource_version: 0,
            history: VecDeque::new(),
            history_limit: HISTORY_LIMIT,
            live,
        };
        if let Some(namespaces) = store.registry.lookup("", "v1", "namespaces").cloned() {
            for namespace in ["default", "kube-system"] {
                let object = json!({"metadata": {"name": namespace}});
                // Infallible for these fixed, valid names in an empty store.
                let _ = store.create(
                    &namespaces,
                    None,
                    object,
                    Writer {
                        manager: "fake-apiserver",
                        subresource: None,
                    },
                );
            }
        }
        store
    }

    pub fn current_resource_version(&self) -> u64 {
        self.resource_version
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        self.live.subscribe()
    }

    /// Changes after `resource_version`, or `None` when history no longer reaches back that far.
    pub fn history_since(&self, resource_version: u64) -> Option<Vec<Arc<ChangeEvent>>> {
        let oldest = self
            .history
            .front()
            .map_or(self.resource_version + 1, |event| event.resource_version);
        if resource_version + 1 < oldest && resource_version < self.resource_version {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|event| event.resource_version > resource_version)
                .cloned()
                .collect(),
        )
    }

    fn key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            group: info.group.clone(),
            plural: info.plural.clone(),
            namespace: if info.namespaced {
                namespace.unwrap_or_default().to_owned()
            } else {
                String::new()
            },
            name: name.to_owned(),
        }
    }

    fn not_found(info: &ResourceInfo, name: &str) -> ApiError {
        ApiError::NotFound {
            group: info.group.clone(),
            plural: info.plural.clone(),
            name: name.to_owned(),
        }
    }

    fn next_resource_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn record(
        &mut self,
        key: &ObjectKey,
        kind: ChangeKind,
        object: Value,
        previous: Option<Value>,
    ) {
        let event = Arc::new(ChangeEvent {
            resource_version: self.resource_version,
            group: key.group.clone(),
            plural: key.plural.clone(),
            kind,
            object,
            previous,
        });
        self.history.push_back(Arc::clone(&event));
        while self.history.len() > self.history_limit {
            self.history.pop_front();
        }
        // No receivers is fine: nobody is watching.
        let _ = self.live.send(event);
    }

    pub fn get(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::key(info, namespace, name))
            .cloned()
            .ok_or_else(|| Self::not_found(info, name))
    }

    /// The stored objects of `group`/`plural` (in `namespace` when given), by a range of the ordered
    /// keys (group, plural, namespace, name) instead of a scan of every object.
    fn objects_in<'a>(
        &'a self,
        group: &'a str,
        plural: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Value)> + 'a {
        let start = ObjectKey {
            group: group.to_owned(),
            plural: plural.to_owned(),
            namespace: namespace.unwrap_or_default().to_owned(),
            name: String::new(),
        };
        self.objects.range(start..).take_while(move |(key, _)| {
            key.group == group
                && key.plural == plural
                && namespace.is_none_or(|namespace| key.namespace == namespace)
        })
    }

    /// Objects of one resource, in `namespace` or (with `None`) across all namespaces.
    pub fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        // A cluster-scoped resource has no namespace in its keys, whatever the request said.
        let namespace = namespace.filter(|_| info.namespaced);
        self.objects_in(&info.group, &info.plural, namespace)
            .map(|(_, object)| object)
            .filter(|object| labels.matches(object) && fields.matches(object))
            .cloned()
            .collect()
    }

    /// All stored objects of `group`/`plural` (test accessor).
    pub fn objects_of(&self, group: &str, plural: &str) -> Vec<Value> {
        self.objects_in(group, plural, None)
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// How many objects of `group`/`plural` satisfy `predicate` (test accessor, no copies).
    pub fn count_where(
        &self,
        group: &str,
        plural: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> usize {
        self.objects_in(group, plural, None)
            .filter(|(_, object)| predicate(object))
            .count()
    }

    /// Namespace and name of the objects of `group`/`plural` that satisfy `predicate`.
    pub fn keys_where(
        &self,
        group: &str,
        plural: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> Vec<(String, String)> {
        self.objects_in(group, plural, None)
            .filter(|(_, object)| predicate(object))
            .map(|(key, _)| (key.namespace.clone(), key.name.clone()))
            .collect()
    }

    /// POST: creates an object; the writer owns every field it set (operation `Update`).
    pub fn create(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        object: Value,
        writer: Writer<'_>,
    ) -> Result<Value, ApiError> {
        self.insert_new(info, namespace, object, writer.manager, "Update")
    }

    fn insert_new(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        mut object: Value,
        manager: &str,
        operation: &str,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::BadRequest(
                "the request body must be a JSON object".to_owned(),
            ));
        }
        let name = match text_at(&object, "/metadata/name") {
            Some(name) => name.to_owned(),
            None => match text_at(&object, "/metadata/generateName") {
                Some(prefix) => {
                    let suffix: String = uuid::Uuid::new_v4()
                        .simple()
                        .to_string()
                        .chars()
                        .take(5)
                        .collect();
                    format!("{prefix}{suffix}")
                }
                None => {
                    return Err(ApiError::Invalid {
                        kind: info.kind.clone(),
                        name: String::new(),
                        message: "metadata.name: Required value: name or generateName is required"
                            .to_owned(),
                    });
                }
            },
        };
        if !is_dns_subdomain(&name) {
            return Err(ApiError::Invalid {
                kind: info.kind.clone(),
                name: name.clone(),
                message: format!(
                    "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            });
        }
        let body_namespace = text_at(&object, "/metadata/namespace").map(str::to_owned);
        let namespace = if info.namespaced {
            let namespace = namespace
                .map(str::to_owned)
                .or(body_namespace.clone())
                .unwrap_or_else(|| "default".to_owned());
            if body_namespace
                .as_ref()
                .is_some_and(|body| *body != namespace)
            {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".to_owned(),
                ));
            }
            let namespace_key = ObjectKey {
                group: String::new(),
                plural: "namespaces".to_owned(),
                namespace: String::new(),
                name: namespace.clone(),
            };
            if !self.objects.contains_key(&namespace_key) {
                return Err(ApiError::NotFound {
                    group: String::new(),
                    plural: "namespaces".to_owned(),
                    name: namespace,
                });
            }
            Some(namespace)
        } else {
            None
        };
        let key = Self::key(info, namespace.as_deref(), &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::AlreadyExists {
                group: info.group.clone(),
                plural: info.plural.clone(),
                name,
            });
        }
        let is_crd = info.group == CRD_GROUP && info.plural == CRD_PLURAL;
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".to_owned(), Value::from(info.api_version()));
            map.insert("kind".to_owned(), Value::from(info.kind.clone()));
            if info.has_status {
                map.remove("status");
            }
        }
        let created_fields = fields::field_set(&object);
        let Some(metadata) = metadata_mut(&mut object) else {
            return Err(ApiError::BadRequest(
                "the request body must be a JSON object".to_owned(),
            ));
        };
        metadata.insert("name".to_owned(), Value::from(name.clone()));
        match &namespace {
            Some(namespace) => {
                metadata.insert("namespace".to_owned(), Value::from(namespace.clone()))
            }
            None => metadata.remove("namespace"),
        };
        for server_owned in ["deletionTimestamp", "managedFields", "selfLink"] {
            metadata.remove(server_owned);
        }
        metadata.insert(
            "uid".to_owned(),
            Value::from(uuid::Uuid::new_v4().to_string()),
        );
        metadata.insert("creationTimestamp".to_owned(), Value::from(now_timestamp()));
        metadata.insert("generation".to_owned(), Value::from(1));
        if is_crd {
            self.registry
                .register_crd(&object)
                .map_err(|message| ApiError::Invalid {
                    kind: info.kind.clone(),
                    name: name.clone(),
                    message,
                })?;
            object["status"] = crd_established_status(&object);
        }
        if info.group.is_empty() && info.plural == "namespaces" {
            object["status"] = json!({"phase": "Active"});
        }
        let entry = ManagedEntry {
            manager: manager.to_owned(),
            operation: operation.to_owned(),
            subresource: None,
            api_version: info.api_version(),
            time: now_timestamp(),
            fields: created_fields,
        };
        let entries: Vec<ManagedEntry> = Some(entry)
            .into_iter()
            .filter(|entry| !entry.fields.is_empty())
            .collect();
        fields::write_managed(&mut object, &entries);
        let resource_version = self.next_resource_version();
        set_metadata(
            &mut object,
            "resourceVersion",
            Value::from(resource_version.to_string()),
        );
        self.objects.insert(key.clone(), object.clone());
        if let Some(uid) = text_at(&object, "/metadata/uid") {
            self.uids.insert(uid.to_owned());
        }
        self.record(&key, ChangeKind::Added, object.clone(), None);
        if self.owners_all_gone(&object) {
            // The garbage collector deletes a dependent whose owners no longer exist.
            self.remove(&key);
        }
        Ok(object)
    }

    /// Whether `object` has owner references and none of the owners exists.
    fn owners_all_gone(&self, object: &Value) -> bool {
        let owner_uids: Vec<&str> = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|owners| {
                owners
                    .iter()
                    .filter_map(|owner| text_at(owner, "/uid"))
                    .collect()
            })
            .unwrap_or_default();
        !owner_uids.is_empty() && owner_uids.iter().all(|uid| !self.uids.contains(*uid))
    }

    /// PUT: replaces the object (or only its status through the status subresource).
    pub fn replace(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        writer: Writer<'_>,
    ) -> Result<(Value, bool), ApiError> {
        let old = self.get(info, namespace, name)?;
        if text_at(&body, "/metadata/name").is_some_and(|body_name| body_name != name) {
            return Err(ApiError::BadRequest(
                "the name of the object does not match the name on the URL".to_owned(),
            ));
        }
        self.update_with(info, namespace, name, old, body, writer)
    }

    /// PATCH with any of the supported patch types.
    pub fn patch(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        patch: PatchBody,
        writer: Writer<'_>,
    ) -> Result<(Value, bool), ApiError> {
        match patch {
            PatchBody::Merge(patch) => {
                let old = self.get(info, namespace, name)?;
                let mut candidate = old.clone();
                json_patch::merge(&mut candidate, &patch);
                self.update_with(info, namespace, name, old, candidate, writer)
            }
            PatchBody::Json(patch) => {
                let old = self.get(info, namespace, name)?;
                let mut candidate = old.clone();
                json_patch::patch(&mut candidate, &patch).map_err(|error| ApiError::Invalid {
                    kind: info.kind.clone(),
                    name: name.to_owned(),
                    message: format!("the JSON patch could not be applied: {error}"),
                })?;
                self.update_with(info, namespace, name, old, candidate, writer)
            }
            PatchBody::Apply { object, force } => {
                self.apply(info, namespace, name, object, force, writer)
            }
        }
    }

    fn apply(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        mut applied: Value,
        force: bool,
        writer: Writer<'_>,
    ) -> Result<(Value, bool), ApiError> {
        let invalid = |message: String| ApiError::Invalid {
            kind: info.kind.clone(),
            name: name.to_owned(),
            message,
        };
        if text_at(&applied, "/kind") != Some(info.kind.as_str()) {
            return Err(invalid(format!(
                "kind: Invalid value: must be {}",
                info.kind
            )));
        }
        if text_at(&applied, "/apiVersion") != Some(info.api_version().as_str()) {
            return Err(invalid(format!(
                "apiVersion: Invalid value: must be {}",
                info.api_version()
            )));
        }
        if text_at(&applied, "/metadata/name").is_some_and(|body_name| body_name != name) {
            return Err(ApiError::BadRequest(
                "the name of the object does not match the name on the URL".to_owned(),
            ));
        }
        let precondition = text_at(&applied, "/metadata/resourceVersion").map(str::to_owned);
        if let Some(map) = applied.as_object_mut() {
            if writer.subresource == Some("status") {
                map.retain(|key, _| {
                    matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "status")
                });
                if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                    metadata.retain(|key, _| key == "name" || key == "namespace");
                }
            } else if info.has_status {
                map.remove("status");
            }
        }
        let Ok(old) = self.get(info, namespace, name) else {
            if writer.subresource.is_some() {
                return Err(Self::not_found(info, name));
            }
            set_metadata(&mut applied, "name", Value::from(name));
            return self
                .insert_new(info, namespace, applied, writer.manager, "Apply")
                .map(|object| (object, true));
        };
        if precondition.is_some_and(|expected| {
            Some(expected.as_str()) != text_at(&old, "/metadata/resourceVersion")
        }) {
            return Err(self.stale(info, name));
        }
        let applied_fields = fields::field_set(&applied);
        let mut entries = fields::read_managed(&old);
        let conflicts =
            fields::apply_conflicts(&entries, writer.manager, &old, &applied, &applied_fields);
        if !conflicts.is_empty() && !force {
            let details = conflicts
                .iter()
                .map(|conflict| {
                    format!(
                        "conflict with \"{}\": .{}",
                        conflict.manager,
                        conflict.path.join(".")
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ApiError::ApplyConflict {
                count: conflicts.len(),
                details,
            });
        }
        let mut next = old.clone();
        if let Some(metadata) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
        }
        let owner = Owner {
            manager: writer.manager,
            subresource: writer.subresource,
            api_version: &info.api_version(),
            time: &now_timestamp(),
        };
        fields::apply_ownership(&mut next, &mut entries, owner, &applied, &applied_fields);
        self.commit(info, namespace, name, old, next, entries)
    }

    fn stale(&self, info: &ResourceInfo, name: &str) -> ApiError {
        ApiError::StaleResourceVersion {
            group: info.group.clone(),
            plural: info.plural.clone(),
            name: name.to_owned(),
        }
    }

    /// A non-apply update: resourceVersion precondition, status separation, field ownership.
    fn update_with(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        old: Value,
        candidate: Value,
        writer: Writer<'_>,
    ) -> Result<(Value, bool), ApiError> {
        if !candidate.is_object() {
            return Err(ApiError::BadRequest(
                "the request body must be a JSON object".to_owned(),
            ));
        }
        let expected = text_at(&candidate, "/metadata/resourceVersion");
        if expected
            .is_some_and(|expected| Some(expected) != text_at(&old, "/metadata/resourceVersion"))
        {
            return Err(self.stale(info, name));
        }
        let next = match writer.subresource {
            Some(_) => {
                let mut next = old.clone();
                match candidate.get("status") {
                    Some(status) => next["status"] = status.clone(),
                    None => {
                        if let Some(map) = next.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
                next
            }
            None => {
                let mut next = candidate;
                if info.has_status {
                    match old.get("status") {
                        Some(status) => next["status"] = status.clone(),
                        None => {
                            if let Some(map) = next.as_object_mut() {
                                map.remove("status");
                            }
                        }
                    }
                }
                let Some(metadata) = metadata_mut(&mut next) else {
                    return Err(ApiError::BadRequest(
                        "the request body must be a JSON object".to_owned(),
                    ));
                };
                for preserved in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "managedFields",
                ] {
                    match old.pointer(&format!("/metadata/{preserved}")) {
                        Some(value) => metadata.insert(preserved.to_owned(), value.clone()),
                        None => metadata.remove(preserved),
                    };
                }
                next
            }
        };
        let mut entries = fields::read_managed(&old);
        let changed: FieldSet = fields::changed_fields(&old, &next);
        let owner = Owner {
            manager: writer.manager,
            subresource: writer.subresource,
            api_version: &info.api_version(),
            time: &now_timestamp(),
        };
        fields::record_update(&mut entries, owner, &changed);
        self.commit(info, namespace, name, old, next, entries)
    }

    /// Stores `next` unless it equals `old` (a no-op keeps the resourceVersion and emits nothing).
    fn commit(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        old: Value,
        mut next: Value,
        entries: Vec<ManagedEntry>,
    ) -> Result<(Value, bool), ApiError> {
        if let Some(map) = next.as_object_mut() {
            map.insert("apiVersion".to_owned(), Value::from(info.api_version()));
            map.insert("kind".to_owned(), Value::from(info.kind.clone()));
        }
        let old_generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = if generation_relevant(info, &old) == generation_relevant(info, &next) {
            old_generation
        } else {
            old_generation + 1
        };
        set_metadata(&mut next, "generation", Value::from(generation));
        if content(&old) == content(&next) && fields::read_managed(&old) == entries {
            return Ok((old, false));
        }
        fields::write_managed(&mut next, &entries);
        let is_crd = info.group == CRD_GROUP && info.plural == CRD_PLURAL;
        if is_crd {
            self.registry
                .register_crd(&next)
                .map_err(|message| ApiError::Invalid {
                    kind: info.kind.clone(),
                    name: name.to_owned(),
                    message,
                })?;
        }
        let resource_version = self.next_resource_version();
        set_metadata(
            &mut next,
            "resourceVersion",
            Value::from(resource_version.to_string()),
        );
        let key = Self::key(info, namespace, name);
        self.objects.insert(key.clone(), next.clone());
        self.record(&key, ChangeKind::Modified, next.clone(), Some(old));
        Ok((next, true))
    }

    /// Deletes an object; unless `orphan`, deletes dependents whose owners are all gone, as the
    /// garbage collector would (synchronously). Deleting a Namespace deletes its contents; deleting
    /// a CRD unregisters its kinds and deletes their objects.
    pub fn delete(
        &mut self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        orphan: bool,
    ) -> Result<Value, ApiError> {
        let key = Self::key(info, namespace, name);
        let deleted = self
            .remove(&key)
            .ok_or_else(|| Self::not_found(info, name))?;
        let mut deleted_uids = BTreeSet::new();
        if let Some(uid) = text_at(&deleted, "/metadata/uid") {
            deleted_uids.insert(uid.to_owned());
        }
        let is_namespace = info.group.is_empty() && info.plural == "namespaces";
        if is_namespace {
            let contained: Vec<ObjectKey> = self
                .objects
                .keys()
                .filter(|key| key.namespace == name)
                .cloned()
                .collect();
            for key in contained {
                self.remove(&key);
            }
        }
        if info.group == CRD_GROUP
            && info.plural == CRD_PLURAL
            && let Some((group, plural)) = self.registry.unregister_crd(name)
        {
            let instances: Vec<ObjectKey> = self
                .objects
                .keys()
                .filter(|key| key.group == group && key.plural == plural)
                .cloned()
                .collect();
            for key in instances {
                self.remove(&key);
            }
        }
        if !orphan {
            self.collect_garbage(deleted_uids);
        }
        Ok(deleted)
    }

    fn collect_garbage(&mut self, mut deleted_uids: BTreeSet<String>) {
        loop {
            let live_uids: BTreeSet<&str> = self
                .objects
                .values()
                .filter_map(|object| text_at(object, "/metadata/uid"))
                .collect();
            let orphans: Vec<ObjectKey> = self
                .objects
                .iter()
                .filter(|(_, object)| {
                    let owners: Vec<&str> = object
                        .pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .map(|owners| {
                            owners
                                .iter()
                                .filter_map(|owner| text_at(owner, "/uid"))
                                .collect()
                        })
                        .unwrap_or_default();
                    owners.iter().any(|uid| deleted_uids.contains(*uid))
                        && owners.iter().all(|uid| !live_uids.contains(uid))
                })
                .map(|(key, _)| key.clone())
                .collect();
            if orphans.is_empty() {
                return;
            }
            for key in orphans {
                if let Some(removed) = self.remove(&key)
                    && let Some(uid) = text_at(&removed, "/metadata/uid")
                {
                    deleted_uids.insert(uid.to_owned());
                }
            }
        }
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Value> {
        let mut removed = self.objects.remove(key)?;
        if let Some(uid) = text_at(&removed, "/metadata/uid") {
            self.uids.remove(uid);
        }
        let resource_version = self.next_resource_version();
        set_metadata(
            &mut removed,
            "resourceVersion",
            Value::from(resource_version.to_string()),
        );
        self.record(key, ChangeKind::Deleted, removed.clone(), None);
        Some(removed)
    }
}

fn crd_established_status(crd: &Value) -> Value {
    let now = now_timestamp();
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({})),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|versions| versions.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).filter_map(|v| v.get("name").cloned()).collect::<Vec<_>>())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_maps(store: &Store) -> ResourceInfo {
        store
            .registry
            .lookup("", "v1", "configmaps")
            .cloned()
            .unwrap()
    }

    const TEST: Writer<'static> = Writer {
        manager: "test",
        subresource: None,
    };

    #[test]
    fn watches_resuming_before_the_retained_history_are_expired() {
        let mut store = Store::new();
        store.history_limit = 2;
        let info = config_maps(&store);
        let start = store.current_resource_version();
        for name in ["a", "b", "c"] {
            store
                .create(
                    &info,
                    Some("default"),
                    json!({"metadata": {"name": name}}),
                    TEST,
                )
                .unwrap();
        }
        assert!(
            store.history_since(start).is_none(),
            "the change after `start` was dropped"
        );
        let recent = store.history_since(start + 1).unwrap();
        assert_eq!(recent.len(), 2);
        assert!(
            store
                .history_since(store.current_resource_version())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_dependent_created_after_its_owner_was_deleted_is_collected() {
        let mut store = Store::new();
        let info = config_maps(&store);
        let orphan = json!({"metadata": {"name": "late", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "no-such-uid"}
        ]}});
        store.create(&info, Some("default"), orphan, TEST).unwrap();
        assert!(store.get(&info, Some("default"), "late").is_err());
    }

    #[test]
    fn a_no_op_write_keeps_the_resource_version() {
        let mut store = Store::new();
        let info = config_maps(&store);
        let created = store
            .create(
                &info,
                Some("default"),
                json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
                TEST,
            )
            .unwrap();
        let (same, changed) = store
            .patch(
                &info,
                Some("default"),
                "a",
                PatchBody::Merge(json!({"data": {"k": "v"}})),
                TEST,
            )
            .unwrap();
        assert!(!changed);
        assert_eq!(
            same.pointer("/metadata/resourceVersion"),
            created.pointer("/metadata/resourceVersion")
        );
    }
}
