//! The `LlmProxy` status: written by the operator only, through the status subresource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// Observed state, written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LlmProxyStatus {
    /// Generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Available, Progressing and Degraded.
    #[serde(default)]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    /// Desired proxy replicas (as reported by the Deployment).
    #[serde(default)]
    pub replicas: i32,
    /// Ready proxy replicas.
    #[serde(default)]
    pub ready_replicas: i32,
    /// In-cluster URL of the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Name of the Secret holding the management token (never its value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_token_secret: Option<String>,
}
