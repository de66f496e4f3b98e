//! The `LlmProxy` custom resource, split by concern: [`spec`] (the chart's values), [`status`],
//! [`cel`] (the rules that mirror the chart's `fail` checks), [`messages`] (the chart's wording,
//! shared by CEL and the reconciler), [`defaults`] and [`schema`]; here, the generated CRD.
//!
//! Defaults live in serde (`#[serde(default)]`) and equal the chart's; [`crd`] strips them from the
//! schema so the API server stores only what the user wrote (no perpetual ArgoCD diffs).

pub mod cel;
mod defaults;
pub mod messages;
mod schema;
pub mod spec;
pub mod status;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use spec::*;
pub use status::LlmProxyStatus;

/// The CRD as committed in `crds/`: kube's derived CRD with every schema `default:` removed.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = LlmProxy::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema::strip_defaults(schema);
        }
    }
    crd
}

/// The CRD rendered as YAML (the `crd` command's output).
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(&crd())
}
