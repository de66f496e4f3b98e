//! Test helpers: YAML fixtures and the CRD schema for client-side CEL.

use std::path::PathBuf;

use llm_proxy_operator::crd::{self, LlmProxy};

/// `config/samples/` of the repository.
pub fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/samples")
}

/// Every sample: (file stem, raw JSON value, typed object).
pub fn samples() -> Vec<(String, serde_json::Value, LlmProxy)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(samples_dir())
        .expect("samples dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read sample");
            let raw: serde_json::Value = serde_saphyr::from_str(&text).expect("sample is YAML");
            let proxy: LlmProxy =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let stem = path
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            (stem, raw, proxy)
        })
        .collect()
}

/// An LlmProxy from a spec given as YAML, with name `demo`, namespace `ns`, uid and generation.
pub fn proxy(spec_yaml: &str) -> LlmProxy {
    let spec: serde_json::Value = serde_saphyr::from_str(spec_yaml).expect("spec YAML");
    let spec = if spec.is_null() {
        serde_json::json!({})
    } else {
        spec
    };
    serde_json::from_value(serde_json::json!({
        "apiVersion": "llm-proxy.io/v1alpha1",
        "kind": "LlmProxy",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "1111-2222", "generation": 3},
        "spec": spec,
    }))
    .expect("valid LlmProxy")
}

/// Runs the CRD's CEL rules on a raw object (as the API server would, without defaults).
pub fn cel_errors(object: &serde_json::Value) -> Vec<String> {
    let crd = crd::crd();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema"),
    )
    .expect("schema JSON");
    match kube::core::cel::Validator::new().validate(&schema, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

/// A raw LlmProxy object around a spec given as YAML.
pub fn raw(spec_yaml: &str) -> serde_json::Value {
    let spec: serde_json::Value = serde_saphyr::from_str(spec_yaml).expect("spec YAML");
    serde_json::json!({
        "apiVersion": "llm-proxy.io/v1alpha1",
        "kind": "LlmProxy",
        "metadata": {"name": "demo", "namespace": "ns"},
        "spec": spec,
    })
}
