//! The benchmark's objects: the `LlmProxy` samples of `config/samples/`, cycled, renamed and spread
//! over namespaces, and the Secrets they reference.

use std::path::Path;

use base64::Engine;
use llm_proxy_bench::error::BenchError;
use serde_json::{Value, json};

/// One sample file: its stem (used in object names) and its `spec`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub stem: String,
    pub spec: Value,
}

/// Keys every referenced Secret carries, so that any sample finds the key it names (the samples
/// reference a handful of Secrets by name; their default keys differ).
const SECRET_KEYS: [(&str, &str); 7] = [
    ("MANAGEMENT_TOKEN", "bench-management-token"),
    (
        "DATABASE_URL",
        "postgres://bench:bench@db.example:5432/llmproxy",
    ),
    ("REDIS_PASSWORD", "bench-redis-password"),
    (
        "ENCRYPTION_KEY",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ),
    ("DISPATCHER_API_KEY", "bench-dispatcher-key"),
    ("LUNARY_API_KEY", "bench-lunary-key"),
    ("password", "bench-postgres-password"),
];

/// Reads every `*.yaml` LlmProxy sample in `dir`, sorted by file name.
pub fn load(dir: &Path) -> Result<Vec<Sample>, BenchError> {
    let entries =
        std::fs::read_dir(dir).map_err(BenchError::io(format!("listing {}", dir.display())))?;
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    let mut samples = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .map_err(BenchError::io(format!("reading {}", path.display())))?;
        let object: Value = serde_saphyr::from_str(&text).map_err(|error| BenchError::Setup {
            call: "parse sample",
            detail: format!("{}: {error}", path.display()),
        })?;
        if object.get("kind").and_then(Value::as_str) != Some("LlmProxy") {
            continue;
        }
        let stem = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        samples.push(Sample {
            stem,
            spec: object.get("spec").cloned().unwrap_or_else(|| json!({})),
        });
    }
    if samples.is_empty() {
        return Err(BenchError::Setup {
            call: "load samples",
            detail: format!("no LlmProxy sample in {}", dir.display()),
        });
    }
    Ok(samples)
}

/// The names of the Secrets the samples reference (`existingSecret.name` anywhere in a spec).
pub fn referenced_secrets(samples: &[Sample]) -> Vec<String> {
    fn collect(value: &Value, names: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(name) = map
                    .get("existingSecret")
                    .and_then(|secret| secret.get("name"))
                    .and_then(Value::as_str)
                {
                    names.push(name.to_owned());
                }
                map.values().for_each(|child| collect(child, names));
            }
            Value::Array(items) => items.iter().for_each(|child| collect(child, names)),
            _ => {}
        }
    }
    let mut names = Vec::new();
    for sample in samples {
        collect(&sample.spec, &mut names);
    }
    names.sort();
    names.dedup();
    names
}

/// A Secret named `name` in `namespace` with every key of [`SECRET_KEYS`] (`data`: the fake API
/// server does not fold `stringData`).
pub fn secret(namespace: &str, name: &str) -> Value {
    let data: serde_json::Map<String, Value> = SECRET_KEYS
        .iter()
        .map(|(key, value)| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(value);
            ((*key).to_owned(), Value::from(encoded))
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    })
}

/// The `index`-th object of a run: sample `index % samples.len()`, named `<stem>-<index>`, in
/// namespace `index % namespaces.len()`.
pub fn object(samples: &[Sample], namespaces: &[String], index: usize) -> (String, Value) {
    let sample = &samples[index % samples.len()];
    let namespace = &namespaces[index % namespaces.len()];
    let name = format!("{}-{index:04}", sample.stem);
    let object = json!({
        "apiVersion": "llm-proxy.io/v1alpha1", "kind": "LlmProxy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": sample.spec,
    });
    (namespace.clone(), object)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_sample_loads_and_its_secrets_are_found() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/samples");
        let samples = load(&dir).unwrap();
        assert!(samples.len() >= 10, "{samples:?}");
        let secrets = referenced_secrets(&samples);
        assert!(
            secrets.contains(&"llm-proxy-secrets".to_owned()),
            "{secrets:?}"
        );
        let namespaces = vec!["a".to_owned(), "b".to_owned()];
        let (namespace, object) = object(&samples, &namespaces, 3);
        assert_eq!(namespace, "b");
        assert_eq!(
            object.pointer("/metadata/name").and_then(Value::as_str),
            Some(format!("{}-0003", samples[3].stem).as_str())
        );
    }
}
