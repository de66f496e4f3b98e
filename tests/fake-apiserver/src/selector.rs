//! Label selectors (equality- and set-based, as kube serialises them) and the field selectors a real
//! server supports for every kind (`metadata.name`, `metadata.namespace`).

use serde_json::Value;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed `labelSelector` query parameter; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

/// Splits on commas that are not inside a `( … )` value set.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect()
}

fn parse_value_set(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
            .collect(),
    )
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let invalid =
            |part: &str| ApiError::BadRequest(format!("unable to parse requirement: {part}"));
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let requirement = if let Some(key) = part.strip_prefix('!') {
                LabelRequirement::DoesNotExist(key.trim().to_owned())
            } else if let Some((key, values)) = part.split_once(" notin ") {
                LabelRequirement::NotIn(
                    key.trim().to_owned(),
                    parse_value_set(values).ok_or_else(|| invalid(part))?,
                )
            } else if let Some((key, values)) = part.split_once(" in ") {
                LabelRequirement::In(
                    key.trim().to_owned(),
                    parse_value_set(values).ok_or_else(|| invalid(part))?,
                )
            } else if let Some((key, value)) = part.split_once("!=") {
                LabelRequirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("==") {
                LabelRequirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once('=') {
                LabelRequirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if part.contains(['<', '>', '(', ')', ' ']) {
                return Err(invalid(part));
            } else {
                LabelRequirement::Exists(part.to_owned())
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        let label = |key: &str| {
            labels
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str)
        };
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                LabelRequirement::Equals(key, value) => label(key) == Some(value.as_str()),
                LabelRequirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
                LabelRequirement::In(key, values) => {
                    label(key).is_some_and(|actual| values.iter().any(|value| value == actual))
                }
                LabelRequirement::NotIn(key, values) => {
                    label(key).is_none_or(|actual| values.iter().all(|value| value != actual))
                }
                LabelRequirement::Exists(key) => label(key).is_some(),
                LabelRequirement::DoesNotExist(key) => label(key).is_none(),
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SelectableField {
    Name,
    Namespace,
}

/// A parsed `fieldSelector`: only `metadata.name` and `metadata.namespace` with `=`, `==` or `!=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<(SelectableField, bool, String)>,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let (field, equal, value) = if let Some((field, value)) = part.split_once("!=") {
                (field, false, value)
            } else if let Some((field, value)) = part.split_once("==") {
                (field, true, value)
            } else if let Some((field, value)) = part.split_once('=') {
                (field, true, value)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid field selector: {part}"
                )));
            };
            let field = match field.trim() {
                "metadata.name" => SelectableField::Name,
                "metadata.namespace" => SelectableField::Namespace,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "field label not supported: {other}"
                    )));
                }
            };
            requirements.push((field, equal, value.trim().to_owned()));
        }
        Ok(Self { requirements })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|(field, equal, value)| {
            let pointer = match field {
                SelectableField::Name => "/metadata/name",
                SelectableField::Namespace => "/metadata/namespace",
            };
            let actual = object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn set_based_and_equality_requirements_combine() {
        let selector =
            LabelSelector::parse("app=web,tier in (front, back),env notin (dev),owner,!legacy")
                .unwrap();
        assert!(selector.matches(&labelled(
            json!({"app": "web", "tier": "front", "owner": "x"})
        )));
        assert!(!selector.matches(&labelled(json!({"app": "web", "tier": "db", "owner": "x"}))));
        assert!(!selector.matches(&labelled(
            json!({"app": "web", "tier": "front", "env": "dev", "owner": "x"})
        )));
        assert!(!selector.matches(&labelled(
            json!({"app": "web", "tier": "front", "owner": "x", "legacy": "1"})
        )));
        assert!(!selector.matches(&labelled(json!({"app": "web", "tier": "front"}))));
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        assert!(LabelSelector::parse("a in x").is_err());
        assert!(FieldSelector::parse("spec.nodeName=x").is_err());
    }

    #[test]
    fn field_selector_matches_name_and_namespace() {
        let selector = FieldSelector::parse("metadata.name=a,metadata.namespace!=other").unwrap();
        assert!(selector.matches(&labelled(json!({}))));
        assert!(
            !FieldSelector::parse("metadata.name==b")
                .unwrap()
                .matches(&labelled(json!({})))
        );
    }
}
