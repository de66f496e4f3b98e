//! Simplified server-side-apply bookkeeping: field sets, `metadata.managedFields` entries, conflict
//! detection and the apply merge.
//!
//! A field set is the set of leaf paths of an object (maps are recursed into; lists, scalars and empty
//! maps are leaves, so a list is owned atomically). Real servers merge associative lists by key
//! (containers by name, ports by port); this fake replaces them whole.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// A path of map keys from the object root to a leaf.
pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// Top-level and metadata fields that are identity or server-owned, never part of a field set.
const IGNORED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "managedFields",
    "selfLink",
];

/// The leaf paths of `object`, skipping `apiVersion`, `kind` and server-owned metadata.
pub fn field_set(object: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    let Some(map) = object.as_object() else {
        return set;
    };
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                if let Some(metadata) = value.as_object() {
                    for (meta_key, meta_value) in metadata {
                        if !IGNORED_METADATA.contains(&meta_key.as_str()) {
                            collect_leaves(
                                meta_value,
                                vec!["metadata".to_owned(), meta_key.clone()],
                                &mut set,
                            );
                        }
                    }
                }
            }
            _ => collect_leaves(value, vec![key.clone()], &mut set),
        }
    }
    set
}

fn collect_leaves(value: &Value, path: FieldPath, set: &mut FieldSet) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, child) in map {
                let mut child_path = path.clone();
                child_path.push(key.clone());
                collect_leaves(child, child_path, set);
            }
        }
        _ => {
            set.insert(path);
        }
    }
}

/// The leaf paths whose value differs between `before` and `after` (added or changed, not removed).
pub fn changed_fields(before: &Value, after: &Value) -> FieldSet {
    field_set(after)
        .into_iter()
        .filter(|path| value_at(before, path) != value_at(after, path))
        .collect()
}

pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(object, |current, key| current.as_object()?.get(key))
}

/// Removes the leaf at `path`, if present.
pub fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = object;
    for key in parents {
        match current.as_object_mut().and_then(|map| map.get_mut(key)) {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Some(map) = current.as_object_mut() {
        map.remove(last);
    }
}

/// Two paths overlap when one is a prefix of the other (a parent map and a leaf inside it).
pub fn overlaps(left: &[String], right: &[String]) -> bool {
    left.starts_with(right) || right.starts_with(left)
}

/// Recursive merge: maps merge key by key, anything else (lists included) replaces; `null` deletes.
pub fn merge_into(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target_map), Some(patch_map)) => {
            for (key, patch_value) in patch_map {
                if patch_value.is_null() {
                    target_map.remove(key);
                } else if let Some(existing) = target_map.get_mut(key) {
                    merge_into(existing, patch_value);
                } else {
                    target_map.insert(key.clone(), patch_value.clone());
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// One `metadata.managedFields` entry. Equality ignores `time`, so an unchanged entry is a no-op.
#[derive(Debug, Clone)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub subresource: Option<String>,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

impl PartialEq for ManagedEntry {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.manager,
            &self.operation,
            &self.subresource,
            &self.fields,
        ) == (
            &other.manager,
            &other.operation,
            &other.subresource,
            &other.fields,
        )
    }
}

impl ManagedEntry {
    fn is_same_writer(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

/// Reads `metadata.managedFields` back into entries.
pub fn read_managed(object: &Value) -> Vec<ManagedEntry> {
    let Some(entries) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let text = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_owned);
            let mut fields = FieldSet::new();
            if let Some(encoded) = entry.get("fieldsV1") {
                decode_fields(encoded, Vec::new(), &mut fields);
            }
            Some(ManagedEntry {
                manager: text("manager")?,
                operation: text("operation")?,
                subresource: text("subresource"),
                api_version: text("apiVersion").unwrap_or_default(),
                time: text("time").unwrap_or_default(),
                fields,
            })
        })
        .collect()
}

/// Writes entries into `metadata.managedFields` (removed when empty).
pub fn write_managed(object: &mut Value, entries: &[ManagedEntry]) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        metadata.remove("managedFields");
        return;
    }
    let encoded: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut map = Map::new();
            map.insert("manager".to_owned(), Value::from(entry.manager.clone()));
            map.insert("operation".to_owned(), Value::from(entry.operation.clone()));
            map.insert(
                "apiVersion".to_owned(),
                Value::from(entry.api_version.clone()),
            );
            map.insert("time".to_owned(), Value::from(entry.time.clone()));
            map.insert("fieldsType".to_owned(), Value::from("FieldsV1"));
            map.insert("fieldsV1".to_owned(), encode_fields(&entry.fields));
            if let Some(subresource) = &entry.subresource {
                map.insert("subresource".to_owned(), Value::from(subresource.clone()));
            }
            Value::Object(map)
        })
        .collect();
    metadata.insert("managedFields".to_owned(), Value::Array(encoded));
}

fn encode_fields(fields: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in fields {
        let mut node = &mut root;
        for key in path {
            let Some(map) = node.as_object_mut() else {
                break;
            };
            node = map
                .entry(format!("f:{key}"))
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

fn decode_fields(node: &Value, path: FieldPath, fields: &mut FieldSet) {
    let children: Vec<(&String, &Value)> = node
        .as_object()
        .map(|map| {
            map.iter()
                .filter(|(key, _)| key.starts_with("f:"))
                .collect()
        })
        .unwrap_or_default();
    if children.is_empty() {
        if !path.is_empty() {
            fields.insert(path);
        }
        return;
    }
    for (key, child) in children {
        let mut child_path = path.clone();
        child_path.push(key.trim_start_matches("f:").to_owned());
        decode_fields(child, child_path, fields);
    }
}

/// Who writes, through which subresource, at which version and time.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub manager: &'a str,
    pub subresource: Option<&'a str>,
    pub api_version: &'a str,
    pub time: &'a str,
}

/// Records that `manager` (a non-apply writer) changed `changed`: it takes those fields over.
pub fn record_update(entries: &mut Vec<ManagedEntry>, owner: Owner<'_>, changed: &FieldSet) {
    let Owner {
        manager,
        subresource,
        api_version,
        time: now,
    } = owner;
    if changed.is_empty() {
        return;
    }
    for entry in entries.iter_mut() {
        entry
            .fields
            .retain(|owned| !changed.iter().any(|path| overlaps(owned, path)));
    }
    match entries
        .iter_mut()
        .find(|entry| entry.is_same_writer(manager, "Update", subresource))
    {
        Some(entry) => {
            entry.fields.extend(changed.iter().cloned());
            entry.time = now.to_owned();
        }
        None => entries.push(ManagedEntry {
            manager: manager.to_owned(),
            operation: "Update".to_owned(),
            subresource: subresource.map(str::to_owned),
            api_version: api_version.to_owned(),
            time: now.to_owned(),
            fields: changed.clone(),
        }),
    }
    entries.retain(|entry| !entry.fields.is_empty());
}

/// A field another manager owns with a different value than the one being applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub path: FieldPath,
}

/// Applied fields that can take ownership from others: an empty map claims nothing below it.
fn claiming_fields<'a>(
    applied: &'a Value,
    applied_fields: &'a FieldSet,
) -> impl Iterator<Item = &'a FieldPath> {
    applied_fields.iter().filter(|path| {
        !value_at(applied, path)
            .is_some_and(|value| value.as_object().is_some_and(serde_json::Map::is_empty))
    })
}

/// The conflicts `applied` (owned by `manager`) has with other managers' fields in `current`.
pub fn apply_conflicts(
    entries: &[ManagedEntry],
    manager: &str,
    current: &Value,
    applied: &Value,
    applied_fields: &FieldSet,
) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    for entry in entries.iter().filter(|entry| entry.manager != manager) {
        for path in claiming_fields(applied, applied_fields) {
            let contested = entry.fields.iter().any(|owned| overlaps(owned, path));
            if contested && value_at(current, path) != value_at(applied, path) {
                conflicts.push(Conflict {
                    manager: entry.manager.clone(),
                    path: path.clone(),
                });
            }
        }
    }
    conflicts
}

/// Applies `applied` as `manager`: drops fields this manager stopped applying (unless someone else
/// owns them), merges the rest in, and records `manager` as owner of the applied fields (shared with
/// other managers where the value did not change, taken over where it did).
pub fn apply_ownership(
    object: &mut Value,
    entries: &mut Vec<ManagedEntry>,
    owner: Owner<'_>,
    applied: &Value,
    applied_fields: &FieldSet,
) {
    let Owner {
        manager,
        subresource,
        api_version,
        time: now,
    } = owner;
    let previously_applied = entries
        .iter()
        .find(|entry| entry.is_same_writer(manager, "Apply", subresource))
        .map(|entry| entry.fields.clone())
        .unwrap_or_default();
    for dropped in previously_applied.difference(applied_fields) {
        let owned_elsewhere = entries.iter().any(|entry| {
            !entry.is_same_writer(manager, "Apply", subresource) && entry.fields.contains(dropped)
        });
        if !owned_elsewhere {
            remove_at(object, dropped);
        }
    }
    // Fields applied with the value they already have become shared; changed ones are taken over.
    let taken: Vec<FieldPath> = claiming_fields(applied, applied_fields)
        .filter(|path| value_at(object, path) != value_at(applied, path))
        .cloned()
        .collect();
    merge_into(object, applied);
    for entry in entries.iter_mut() {
        if !entry.is_same_writer(manager, "Apply", subresource) {
            entry
                .fields
                .retain(|owned| !taken.iter().any(|path| overlaps(owned, path)));
        }
    }
    entries.retain(|entry| {
        !entry.fields.is_empty() || entry.is_same_writer(manager, "Apply", subresource)
    });
    match entries
        .iter_mut()
        .find(|entry| entry.is_same_writer(manager, "Apply", subresource))
    {
        Some(entry) => {
            if entry.fields != *applied_fields {
                entry.time = now.to_owned();
            }
            entry.fields = applied_fields.clone();
        }
        None => entries.push(ManagedEntry {
            manager: manager.to_owned(),
            operation: "Apply".to_owned(),
            subresource: subresource.map(str::to_owned),
            api_version: api_version.to_owned(),
            time: now.to_owned(),
            fields: applied_fields.clone(),
        }),
    }
    entries.retain(|entry| !entry.fields.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(text: &str) -> FieldPath {
        text.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn field_sets_round_trip_through_managed_fields() {
        let object = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"replicas": 2, "ports": [1], "empty": {}}});
        let fields = field_set(&object);
        assert_eq!(
            fields,
            [
                path("metadata.labels.a"),
                path("spec.replicas"),
                path("spec.ports"),
                path("spec.empty")
            ]
            .into_iter()
            .collect()
        );
        let mut holder = json!({"metadata": {}});
        let entry = ManagedEntry {
            manager: "m".into(),
            operation: "Apply".into(),
            subresource: None,
            api_version: "v1".into(),
            time: "t".into(),
            fields: fields.clone(),
        };
        write_managed(&mut holder, std::slice::from_ref(&entry));
        assert_eq!(read_managed(&holder), vec![entry]);
    }

    #[test]
    fn fields_dropped_from_an_apply_are_removed() {
        let mut object = json!({"spec": {"replicas": 2, "image": "a"}});
        let mut entries = Vec::new();
        let owner = Owner {
            manager: "op",
            subresource: None,
            api_version: "v1",
            time: "t",
        };
        let first = json!({"spec": {"replicas": 2, "image": "a"}});
        apply_ownership(&mut object, &mut entries, owner, &first, &field_set(&first));
        let second = json!({"spec": {"image": "b"}});
        apply_ownership(
            &mut object,
            &mut entries,
            owner,
            &second,
            &field_set(&second),
        );
        assert_eq!(object, json!({"spec": {"image": "b"}}));
    }
}
