//! Step 2 of an `LlmProxy` reconcile: judging what was read. Every `fail` of the seed chart
//! (proxy-spec §7.4 and the HEAD SQLite and encryption-key guards), with the chart's message
//! verbatim, checked in the order Helm renders the chart's templates (hpa, dispatcher,
//! deployment); the same rules exist as CEL in the CRD. Then the referenced Secrets and the
//! free-form Kubernetes fields. The result, [`ValidatedProxy`], holds everything the builders
//! need, computed once: names, owner reference, secret sources, referenced data, parsed overrides.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::dereference::ReferencedData;
use super::sources::{Origin, SecretSources};
use crate::config::OperatorConfig;
use crate::crd::messages::*;
use crate::crd::{LlmProxy, LlmProxySpec};
use crate::error::{Error, InvalidSpec};
use crate::vocabulary::{
    APP_NAME, FIELD_MANAGER, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME,
};

/// Kind name used in errors and metrics.
const KIND: &str = "LlmProxy";

/// An `LlmProxy` that passed validation, with everything derived from it computed once.
pub struct ValidatedProxy<'a> {
    /// The resource.
    pub proxy: &'a LlmProxy,
    /// Its spec.
    pub spec: &'a LlmProxySpec,
    /// Its name.
    pub name: String,
    /// Its namespace (`default` offline when the YAML has none).
    pub namespace: String,
    /// Where each secret value comes from.
    pub sources: SecretSources,
    /// Referenced Secret data.
    pub referenced: ReferencedData,
    /// Operator configuration.
    pub config: &'a OperatorConfig,
    /// `spec.livenessProbe`, parsed.
    pub liveness_probe: Option<Probe>,
    /// `spec.readinessProbe`, parsed.
    pub readiness_probe: Option<Probe>,
    /// `spec.affinity`, parsed.
    pub affinity: Option<Affinity>,
    /// `spec.dispatcher.affinity`, parsed.
    pub dispatcher_affinity: Option<Affinity>,
    owner: Option<OwnerReference>,
}

impl ValidatedProxy<'_> {
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
}

/// Validates `proxy` with what [`dereference`](super::dereference) read for it.
pub fn validate<'a>(
    proxy: &'a LlmProxy,
    referenced: ReferencedData,
    config: &'a OperatorConfig,
) -> Result<ValidatedProxy<'a>, Error> {
    let name = proxy.metadata.name.as_deref().unwrap_or_default();
    let sources = SecretSources::resolve(name, &proxy.spec);
    validate_with_sources(proxy, sources, referenced, config)
}

/// [`validate`] with the secret sources the reconcile already resolved to dereference them.
pub fn validate_with_sources<'a>(
    proxy: &'a LlmProxy,
    sources: SecretSources,
    referenced: ReferencedData,
    config: &'a OperatorConfig,
) -> Result<ValidatedProxy<'a>, Error> {
    let spec = &proxy.spec;
    chart_rules(spec)?;
    env_values(spec)?;
    let name = proxy.metadata.name.clone().ok_or(Error::MissingMetadata {
        kind: KIND,
        field: "name",
    })?;
    let namespace = proxy.namespace().unwrap_or_else(|| "default".to_owned());
    check_referenced(&namespace, &sources, &referenced)?;
    Ok(ValidatedProxy {
        liveness_probe: parse_override(spec.liveness_probe.as_ref(), "livenessProbe", "Probe")?,
        readiness_probe: parse_override(spec.readiness_probe.as_ref(), "readinessProbe", "Probe")?,
        affinity: parse_override(spec.affinity.as_ref(), "affinity", "Affinity")?,
        dispatcher_affinity: parse_override(
            spec.dispatcher.affinity.as_ref(),
            "dispatcher.affinity",
            "Affinity",
        )?,
        owner: proxy.controller_owner_ref(&()),
        proxy,
        spec,
        name,
        namespace,
        sources,
        referenced,
        config,
    })
}

/// Every value the spec hands the proxy as an environment variable (`env`, and the external
/// Redis's address and database) passes the check the proxy runs on it at start-up, so a value
/// the pods would refuse is refused here, with the proxy's message (a secret value is not shown).
pub fn env_values(spec: &LlmProxySpec) -> Result<(), InvalidSpec> {
    let invalid = |field: String, error: llm_proxy_env::ValueError| {
        InvalidSpec(format!("spec.{field}: {error}"))
    };
    for (name, value) in &spec.env {
        llm_proxy_env::check(name, value).map_err(|e| invalid(format!("env.{name}"), e))?;
    }
    let redis = &spec.redis.external;
    if !redis.addr.is_empty() {
        llm_proxy_env::check(llm_proxy_env::REDIS_ADDR, &redis.addr)
            .map_err(|e| invalid("redis.external.addr".to_owned(), e))?;
        llm_proxy_env::check(llm_proxy_env::REDIS_DB, &redis.db.to_string())
            .map_err(|e| invalid("redis.external.db".to_owned(), e))?;
    }
    Ok(())
}

/// Every user Secret and key the spec names exists (a Secret that was not looked up, offline, is
/// not judged; the generated one is created when missing).
fn check_referenced(
    namespace: &str,
    sources: &SecretSources,
    referenced: &ReferencedData,
) -> Result<(), Error> {
    for source in sources
        .referenced()
        .filter(|s| s.origin != Origin::Generated)
    {
        match referenced.secrets.get(&source.name) {
            None => {}
            Some(None) => {
                return Err(Error::MissingSecret {
                    namespace: namespace.to_owned(),
                    name: source.name.clone(),
                    field: source.field,
                });
            }
            Some(Some(data)) if !data.contains_key(&source.key) => {
                return Err(Error::MissingSecretKey {
                    namespace: namespace.to_owned(),
                    name: source.name.clone(),
                    key: source.key.clone(),
                    field: source.field,
                });
            }
            Some(Some(_)) => {}
        }
    }
    Ok(())
}

/// Parses a free-form spec field (kept schemaless in the CRD to keep it small) as a Kubernetes type.
fn parse_override<T: DeserializeOwned>(
    value: Option<&serde_json::Value>,
    field: &'static str,
    kind: &'static str,
) -> Result<Option<T>, Error> {
    value
        .filter(|v| !v.is_null())
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| Error::InvalidOverride {
            field,
            kind,
            reason: e.to_string(),
        })
}

fn is_durable_bus(bus: &str) -> bool {
    bus == "redis" || bus == "redis-streams"
}

/// Whether an external PostgreSQL is configured (the chart's definition).
pub fn has_external_postgres(spec: &LlmProxySpec) -> bool {
    (spec.secrets.create && !spec.secrets.data.database_url.is_empty())
        || spec.secrets.database_url.named().is_some()
}

/// Whether an `ENCRYPTION_KEY` is configured (the chart's `encryptionKeySecret`).
pub fn has_encryption_key(spec: &LlmProxySpec) -> bool {
    (spec.secrets.create && !spec.secrets.data.encryption_key.is_empty())
        || spec.secrets.encryption_key.named().is_some()
}

/// The most replicas the proxy can run (`replicaCount`, or `maxReplicas` under the HPA).
pub fn max_replicas(spec: &LlmProxySpec) -> i32 {
    if spec.autoscaling.enabled {
        spec.autoscaling.max_replicas
    } else {
        spec.replica_count
    }
}

/// Checks `spec` the way the chart does; returns the first violation.
pub fn chart_rules(spec: &LlmProxySpec) -> Result<(), InvalidSpec> {
    let fail = |message: String| Err(InvalidSpec(message));
    let bus = spec.event_bus();
    let driver = spec.db_driver();
    let redis_addr_empty = spec.redis.external.addr.is_empty();
    if spec.redis.external.addr.contains('@') || spec.redis.external.addr.contains("://") {
        return fail(REDIS_ADDR_WITH_CREDENTIALS.to_owned());
    }

    let autoscaling = &spec.autoscaling;
    if autoscaling.enabled
        && autoscaling.target_cpu_utilization_percentage.is_none()
        && autoscaling.target_memory_utilization_percentage.is_none()
    {
        return fail(AUTOSCALING_NO_TARGETS.to_owned());
    }

    let dispatcher = &spec.dispatcher;
    if dispatcher.enabled {
        if !is_durable_bus(&bus) {
            return fail(format!(
                "Configuration error: Dispatcher requires LLM_PROXY_EVENT_BUS to be 'redis' or 'redis-streams', but it is set to '{bus}'. Set LLM_PROXY_EVENT_BUS to a supported durable event bus type and configure redis.external.addr."
            ));
        }
        if redis_addr_empty {
            return fail(format!(
                "Configuration error: Dispatcher is enabled with LLM_PROXY_EVENT_BUS='{bus}' but redis.external.addr is empty. Please set redis.external.addr to your Redis server address."
            ));
        }
        if !DISPATCHER_SERVICES.contains(&dispatcher.service.as_str()) {
            return fail(format!(
                "Configuration error: dispatcher.service is set to '{}'. Please set it to 'file', 'lunary' or 'helicone'.",
                dispatcher.service
            ));
        }
        if dispatcher.service != "file"
            && dispatcher.api_key.named().is_none()
            && dispatcher.api_key.value.is_empty()
        {
            return fail(format!(
                "Configuration error: Dispatcher service '{}' requires an API key via existingSecret. Please set dispatcher.apiKey.existingSecret.name",
                dispatcher.service
            ));
        }
    }

    if is_durable_bus(&bus) && redis_addr_empty {
        return fail(format!(
            "Configuration error: LLM_PROXY_EVENT_BUS is set to '{bus}' but redis.external.addr is empty. Please set redis.external.addr to your Redis server address (e.g., 'redis.example.com:6379') or change LLM_PROXY_EVENT_BUS to 'in-memory' for single-instance deployments."
        ));
    }

    let in_cluster = spec.postgresql.enabled;
    let external = has_external_postgres(spec);
    if driver == "postgres" {
        if in_cluster && external {
            return fail(POSTGRES_BOTH.to_owned());
        }
        if !in_cluster && !external {
            return fail(POSTGRES_NEITHER.to_owned());
        }
        let auth = &spec.postgresql.auth;
        if in_cluster && auth.password.is_empty() && auth.existing_secret.is_empty() {
            return fail(POSTGRES_NO_PASSWORD.to_owned());
        }
    }
    if in_cluster && driver != "postgres" {
        return fail(format!(
            "Configuration error: postgresql.enabled=true but DB_DRIVER is set to '{driver}'. When using in-cluster PostgreSQL, DB_DRIVER must be set to 'postgres'."
        ));
    }

    let replicas = max_replicas(spec);
    if driver == "sqlite" && replicas > 1 {
        return fail(format!(
            "Configuration error: DB_DRIVER is 'sqlite' but the deployment can scale to {replicas} replicas. SQLite is not supported for multi-pod deployments. Set env.DB_DRIVER to 'mysql' or 'postgres' and configure secrets.databaseUrl / mysql.enabled / postgresql.enabled."
        ));
    }
    if spec.secrets.encryption_key.required && !has_encryption_key(spec) {
        return fail(ENCRYPTION_KEY_REQUIRED.to_owned());
    }
    Ok(())
}
