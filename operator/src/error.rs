//! The operator's errors, one enum per boundary: [`Error`] for a reconcile (every step names what
//! it was doing), [`StartError`] for the process. [`Error::category`] is the one mapping to the
//! Event reason, the `category` metric label and the `Degraded` condition's reason;
//! [`Error::is_spec_problem`] decides between "wait for a change" and "retry with backoff".

/// A spec the chart would refuse; the message is the chart's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

/// What went wrong in one reconcile.
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
        /// Namespace of the resource.
        namespace: String,
        /// Secret name.
        name: String,
        /// Spec field naming it.
        field: &'static str,
    },
    /// A Secret named in the spec lacks the key.
    #[error("referenced Secret {namespace}/{name} has no key {key:?} (spec.{field})")]
    MissingSecretKey {
        /// Namespace of the resource.
        namespace: String,
        /// Secret name.
        name: String,
        /// Missing key.
        key: String,
        /// Spec field naming it.
        field: &'static str,
    },
    /// The object lacks metadata the operator needs (namespace, uid, name).
    #[error("{kind} has no metadata.{field}")]
    MissingMetadata {
        /// The resource's kind.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// The object could not be deserialized (schema drift or a hand-edited object).
    #[error("{kind} could not be deserialized: {reason}")]
    InvalidObject {
        /// The resource's kind.
        kind: &'static str,
        /// Deserializer message.
        reason: String,
    },
    /// A rendered child the operator has no API mapping for (a bug of a builder).
    #[error("no API mapping for {0}")]
    UnknownChildKind(String),
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API call failed ({action}): {source}")]
    Kube {
        /// What the call did, e.g. `apply Deployment/demo` or `read Secret ns/db`.
        action: String,
        /// The client's error.
        source: kube::Error,
    },
    /// An object could not be converted to or from JSON.
    #[error("serialization of {what} failed: {source}")]
    Serialization {
        /// What was being converted.
        what: String,
        /// The serializer's error.
        source: serde_json::Error,
    },
    /// A spec value could not be rendered as YAML (the providers file).
    #[error("YAML serialization failed: {0}")]
    YamlSerialization(#[from] serde_saphyr::SerializeError),
}

impl Error {
    /// A failed API call described by `action`.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }

    /// A failed JSON conversion of `what`.
    pub fn serialization(what: impl Into<String>, source: serde_json::Error) -> Self {
        Self::Serialization {
            what: what.into(),
            source,
        }
    }

    /// A stable PascalCase category: Event reason, `category` metric label, Degraded reason.
    pub fn category(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) | Self::InvalidOverride { .. } => "InvalidSpec",
            Self::MissingSecret { .. } | Self::MissingSecretKey { .. } => "MissingSecret",
            Self::MissingMetadata { .. } | Self::InvalidObject { .. } => "InvalidObject",
            Self::Kube { .. } => "KubeApiError",
            Self::UnknownChildKind(_) | Self::Serialization { .. } | Self::YamlSerialization(_) => {
                "SerializationError"
            }
        }
    }

    /// True when retrying cannot help until the user changes something (the resource or a Secret,
    /// both of which trigger a reconcile).
    pub fn is_spec_problem(&self) -> bool {
        matches!(
            self,
            Self::InvalidSpec(_)
                | Self::InvalidOverride { .. }
                | Self::MissingSecret { .. }
                | Self::MissingSecretKey { .. }
                | Self::MissingMetadata { .. }
                | Self::InvalidObject { .. }
        )
    }
}

/// Why the operator process could not run.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The metrics/health server could not be started.
    #[error("metrics server failed: {0}")]
    MetricsServer(#[from] std::io::Error),
}
