//! `render`: the pure function from (LlmProxy, referenced Secret data, operator config) to every child
//! object the operator applies. The reconciler applies its output; `llm-proxy-operator render`
//! prints it; golden tests pin it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::build;
use crate::controller::OperatorConfig;
use crate::crd::LlmProxy;
use crate::error::Error;
use crate::sources::SecretSources;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "llm-proxy-operator";
/// `app.kubernetes.io/name` label key (value [`APP_NAME`]).
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance` label key (value: the LlmProxy's name).
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component` label key.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by` label key (value [`FIELD_MANAGER`]).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_NAME`].
pub const APP_NAME: &str = "llm-proxy";
/// Pod-template annotation: sha256 of the rendered config and of every referenced Secret's data.
pub const CONFIG_HASH_ANNOTATION: &str = "llm-proxy.io/config-hash";
/// Child annotation: sha256 of the object as last applied (lets a no-op reconcile skip the write).
pub const APPLIED_HASH_ANNOTATION: &str = "llm-proxy.io/applied-hash";
/// Annotation marking a generated Secret (created once, never patched, never orphan-deleted).
pub const GENERATED_ANNOTATION: &str = "llm-proxy.io/generated";

/// Data of the Secrets the spec references, read by the dereference step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferencedData {
    /// Secret name → key → value.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Whether `servicemonitors.monitoring.coreos.com` is served by the cluster.
    pub service_monitor_crd_served: bool,
}

impl ReferencedData {
    /// What `render -f` assumes without a cluster: no Secret data, ServiceMonitor CRD present.
    pub fn offline() -> Self {
        Self {
            secrets: BTreeMap::new(),
            service_monitor_crd_served: true,
        }
    }
}

/// Everything a builder needs about the LlmProxy being rendered.
pub struct RenderContext<'a> {
    /// The resource.
    pub proxy: &'a LlmProxy,
    /// Its name.
    pub name: String,
    /// Its namespace (`default` offline when the YAML has none).
    pub namespace: String,
    /// Where each secret value comes from.
    pub sources: SecretSources,
    /// Operator configuration.
    pub config: &'a OperatorConfig,
    /// Referenced Secret data.
    pub referenced: &'a ReferencedData,
    owner: Option<OwnerReference>,
}

impl RenderContext<'_> {
    /// Selector labels of one component (disjoint across components).
    pub fn selector_labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), APP_NAME.to_owned()),
            (LABEL_INSTANCE.to_owned(), self.name.clone()),
            (LABEL_COMPONENT.to_owned(), component.to_owned()),
        ])
    }

    /// Labels of every child: the selector labels plus managed-by. The CR's own labels are never
    /// copied (GitOps tools would claim the children).
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels(component);
        labels.insert(LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned());
        labels
    }

    /// Metadata of a child named `name` with the component's labels and the owner reference.
    pub fn metadata(&self, name: String, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(component)),
            owner_references: self.owner.clone().map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }

    /// Name of a child with a suffix (`<name>-<suffix>`).
    pub fn child_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// sha256 over the rendered configuration and every referenced Secret's data.
    pub fn config_hash(&self) -> String {
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        for (key, value) in self.proxy.spec.effective_env() {
            field(key.as_bytes());
            field(value.as_bytes());
        }
        if let Some(providers) = build::providers::configured(&self.proxy.spec) {
            field(providers.to_string().as_bytes());
        }
        for (key, value) in build::secrets::config_secret_data(self) {
            field(key.as_bytes());
            field(&value);
        }
        for source in self.sources.referenced() {
            field(source.name.as_bytes());
            field(source.key.as_bytes());
            let value = self
                .referenced
                .secrets
                .get(&source.name)
                .and_then(|data| data.get(&source.key));
            field(value.map(Vec::as_slice).unwrap_or_default());
        }
        hex(&hasher.finalize())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the rendering context: validates the spec and resolves the secret sources.
pub fn context<'a>(
    proxy: &'a LlmProxy,
    referenced: &'a ReferencedData,
    config: &'a OperatorConfig,
) -> Result<RenderContext<'a>, Error> {
    crate::validate::validate(&proxy.spec)?;
    let name = proxy
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let namespace = proxy.namespace().unwrap_or_else(|| "default".to_owned());
    Ok(RenderContext {
        sources: SecretSources::resolve(&name, &proxy.spec),
        owner: proxy.controller_owner_ref(&()),
        proxy,
        name,
        namespace,
        config,
        referenced,
    })
}

/// Every child object the operator applies for `proxy`, in apply order. The generated
/// management-token Secret is not included: it is created once by the reconciler, never applied.
pub fn render(
    proxy: &LlmProxy,
    referenced: &ReferencedData,
    config: &OperatorConfig,
) -> Result<Vec<serde_json::Value>, Error> {
    let ctx = context(proxy, referenced, config)?;
    build::all(&ctx)
}

/// Serializes objects as a multi-document YAML stream (`---` separated).
pub fn to_multi_doc_yaml(
    objects: &[serde_json::Value],
) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(object)?);
    }
    Ok(out)
}
