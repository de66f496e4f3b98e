//! The operator's one error type. [`Error::category`] names the Event reason and the metric label;
//! [`Error::is_spec_problem`] decides between "wait for a change" and "retry with backoff".

use crate::validate::InvalidSpec;

/// Everything that can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec violates a chart rule; the message is the chart's.
    #[error(transparent)]
    InvalidSpec(#[from] InvalidSpec),
    /// A field that must hold a Kubernetes object (probe, affinity) does not parse as one.
    #[error("spec.{field} is not a valid {kind}: {reason}")]
    InvalidOverride {
        /// Spec field.
        field: &'static str,
        /// Expected Kubernetes type.
        kind: &'static str,
        /// Parser message (never contains secret data: these fields hold no secrets).
        reason: String,
    },
    /// A Secret named in the spec does not exist.
    #[error("referenced Secret {namespace}/{name} (spec.{field}) does not exist")]
    MissingSecret {
        /// Namespace of the LlmProxy.
        namespace: String,
        /// Secret name.
        name: String,
        /// Spec field naming it.
        field: &'static str,
    },
    /// A Secret named in the spec lacks the key.
    #[error("referenced Secret {namespace}/{name} has no key {key:?} (spec.{field})")]
    MissingSecretKey {
        /// Namespace of the LlmProxy.
        namespace: String,
        /// Secret name.
        name: String,
        /// Missing key.
        key: String,
        /// Spec field naming it.
        field: &'static str,
    },
    /// The object lacks metadata the operator needs (namespace, uid, name).
    #[error("LlmProxy has no metadata.{0}")]
    MissingMetadata(&'static str),
    /// The LlmProxy could not be deserialized (schema drift or a hand-edited object).
    #[error("LlmProxy could not be deserialized: {0}")]
    InvalidObject(String),
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be converted to or from JSON.
    #[error("serialization failed: {0}")]
    Serialization(#[from] serde_json::Error),
    /// A spec value could not be rendered as YAML (the providers file).
    #[error("YAML serialization failed: {0}")]
    YamlSerialization(#[from] serde_saphyr::SerializeError),
    /// The metrics/health server could not be started.
    #[error("metrics server failed: {0}")]
    MetricsServer(#[from] std::io::Error),
}

impl Error {
    /// A stable PascalCase category: Event reason and `category` metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) | Self::InvalidOverride { .. } => "InvalidSpec",
            Self::MissingSecret { .. } | Self::MissingSecretKey { .. } => "MissingSecret",
            Self::MissingMetadata(_) | Self::InvalidObject(_) => "InvalidObject",
            Self::Kube(_) => "KubeApiError",
            Self::Serialization(_) | Self::YamlSerialization(_) => "SerializationError",
            Self::MetricsServer(_) => "MetricsServerError",
        }
    }

    /// True when retrying cannot help until the user changes something (the LlmProxy or a Secret,
    /// both of which trigger a reconcile).
    pub fn is_spec_problem(&self) -> bool {
        matches!(
            self,
            Self::InvalidSpec(_)
                | Self::InvalidOverride { .. }
                | Self::MissingSecret { .. }
                | Self::MissingSecretKey { .. }
                | Self::MissingMetadata(_)
                | Self::InvalidObject(_)
        )
    }
}
