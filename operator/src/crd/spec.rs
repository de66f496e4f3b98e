//! The `LlmProxy` spec: the chart's `values.yaml`, key for key, in camelCase, with the chart's
//! defaults (in serde) and the derived views the chart's helpers compute (`effective_env`, …).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LocalObjectReference, PodSecurityContext, ResourceRequirements, SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::LlmProxyStatus;
use super::{cel, defaults, messages, schema};

/// Desired state of one llm-proxy installation. Paste the chart's values under `spec:`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "llm-proxy.io",
    version = "v1alpha1",
    kind = "LlmProxy",
    plural = "llmproxies",
    shortname = "llmp",
    category = "llm-proxy",
    namespaced,
    status = "LlmProxyStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new(cel::DISPATCHER_BUS).message(Message::Expression(cel::DISPATCHER_BUS_MSG.into())),
    validation = Rule::new(cel::DISPATCHER_ADDR).message(Message::Expression(cel::DISPATCHER_ADDR_MSG.into())),
    validation = Rule::new(cel::DISPATCHER_SERVICE).message(Message::Expression(cel::DISPATCHER_SERVICE_MSG.into())),
    validation = Rule::new(cel::DISPATCHER_API_KEY).message(Message::Expression(cel::DISPATCHER_API_KEY_MSG.into())),
    validation = Rule::new(cel::REDIS_ADDR).message(Message::Expression(cel::REDIS_ADDR_MSG.into())),
    validation = Rule::new(cel::POSTGRES_BOTH).message(messages::POSTGRES_BOTH),
    validation = Rule::new(cel::POSTGRES_NEITHER).message(cel::POSTGRES_NEITHER_MSG),
    validation = Rule::new(cel::POSTGRES_NO_PASSWORD).message(messages::POSTGRES_NO_PASSWORD),
    validation = Rule::new(cel::POSTGRES_DRIVER).message(Message::Expression(cel::POSTGRES_DRIVER_MSG.into())),
    validation = Rule::new(cel::SQLITE_REPLICAS).message(Message::Expression(cel::SQLITE_REPLICAS_MSG.into())),
    validation = Rule::new(cel::ENCRYPTION_KEY_REQUIRED).message(messages::ENCRYPTION_KEY_REQUIRED),
)]
#[serde(rename_all = "camelCase")]
pub struct LlmProxySpec {
    /// Proxy replicas (ignored when autoscaling is enabled).
    #[serde(default = "defaults::one")]
    pub replica_count: i32,
    /// Container image of the proxy and the dispatcher.
    #[serde(default)]
    pub image: Image,
    /// Pull secrets of both pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Extra annotations of the proxy pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Extra labels of the proxy pods (never used in selectors).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Pod security context (replaces the chart default as a whole when set).
    #[serde(default = "defaults::pod_security_context")]
    pub pod_security_context: PodSecurityContext,
    /// Container security context (replaces the chart default as a whole when set).
    #[serde(default = "defaults::security_context")]
    pub security_context: SecurityContext,
    /// The proxy Service.
    #[serde(default)]
    pub service: ServiceSpec,
    /// Optional Ingress in front of the Service.
    #[serde(default)]
    pub ingress: IngressSpec,
    /// Optional HorizontalPodAutoscaler; the Deployment's `replicas` is then left to it.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
    /// Proxy container resources.
    #[serde(default = "defaults::proxy_resources")]
    pub resources: ResourceRequirements,
    /// Liveness probe override (a core/v1 Probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object")]
    pub liveness_probe: Option<serde_json::Value>,
    /// Readiness probe override (a core/v1 Probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object")]
    pub readiness_probe: Option<serde_json::Value>,
    /// Node selector of the proxy pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the proxy pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the proxy pods (a core/v1 Affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object")]
    pub affinity: Option<serde_json::Value>,
    /// Providers file (the content of `api_providers.yaml`), mounted at `/app/config` when set; unset
    /// or empty means no config volume and the proxy's built-in OpenAI fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object")]
    pub providers: Option<serde_json::Value>,
    /// Environment of the proxy, merged over the chart's defaults (see `effective_env`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Management token, database URL and encryption key sources.
    #[serde(default)]
    pub secrets: SecretsSpec,
    /// Development PostgreSQL run by the operator.
    #[serde(default)]
    pub postgresql: PostgresqlSpec,
    /// External Redis (event bus, cache, rate limits).
    #[serde(default)]
    pub redis: RedisSpec,
    /// The event dispatcher Deployment.
    #[serde(default)]
    pub dispatcher: DispatcherSpec,
    /// Prometheus scraping, ServiceMonitor and Grafana dashboard.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// A PVC for the SQLite data directory (the chart loses the database with the pod).
    #[serde(default)]
    pub persistence: PersistenceSpec,
    /// When true the operator writes no children and only reports status.
    #[serde(default)]
    pub suspend: bool,
}

/// Container image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// Image repository.
    #[serde(default = "defaults::image_repository")]
    pub repository: String,
    /// Pull policy.
    #[serde(default = "defaults::pull_policy")]
    pub pull_policy: String,
    /// Tag; empty means the chart's appVersion (`latest`).
    #[serde(default)]
    pub tag: String,
}

impl Default for Image {
    fn default() -> Self {
        Self {
            repository: defaults::image_repository(),
            pull_policy: defaults::pull_policy(),
            tag: String::new(),
        }
    }
}

/// The proxy Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type.
    #[serde(default = "defaults::service_type", rename = "type")]
    pub type_: String,
    /// Service port.
    #[serde(default = "defaults::port")]
    pub port: i32,
    /// Container port the Service targets (the container port `http`).
    #[serde(default = "defaults::port")]
    pub target_port: i32,
    /// Service annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            type_: defaults::service_type(),
            port: defaults::port(),
            target_port: defaults::port(),
            annotations: BTreeMap::new(),
        }
    }
}

/// Ingress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Render the Ingress.
    #[serde(default)]
    pub enabled: bool,
    /// Ingress class; empty = cluster default.
    #[serde(default)]
    pub class_name: String,
    /// Ingress annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Host rules.
    #[serde(default = "defaults::ingress_hosts")]
    pub hosts: Vec<IngressHost>,
    /// TLS entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<IngressTls>,
}

impl Default for IngressSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            class_name: String::new(),
            annotations: BTreeMap::new(),
            hosts: defaults::ingress_hosts(),
            tls: Vec::new(),
        }
    }
}

/// One Ingress host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressHost {
    /// Host name.
    pub host: String,
    /// Paths routed to the proxy.
    #[serde(default)]
    pub paths: Vec<IngressPath>,
}

/// One Ingress path.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressPath {
    /// Path.
    pub path: String,
    /// Path type; empty = `Prefix`.
    #[serde(default)]
    pub path_type: String,
}

/// One Ingress TLS entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressTls {
    /// Hosts covered by the certificate.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Secret holding the certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret_name: String,
}

/// HorizontalPodAutoscaler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Render the HPA.
    #[serde(default)]
    pub enabled: bool,
    /// Minimum replicas.
    #[serde(default = "defaults::one")]
    pub min_replicas: i32,
    /// Maximum replicas.
    #[serde(default = "defaults::max_replicas")]
    pub max_replicas: i32,
    /// CPU target in percent; `null` removes the metric.
    #[serde(
        default = "defaults::cpu_target",
        rename = "targetCPUUtilizationPercentage"
    )]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Memory target in percent.
    #[serde(
        default,
        rename = "targetMemoryUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    pub target_memory_utilization_percentage: Option<i32>,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            min_replicas: 1,
            max_replicas: defaults::max_replicas(),
            target_cpu_utilization_percentage: defaults::cpu_target(),
            target_memory_utilization_percentage: None,
        }
    }
}

/// A key of an existing Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct SecretKeyRef {
    /// Secret name; empty = not used.
    #[serde(default)]
    pub name: String,
    /// Key inside the Secret; empty = the chart's default key for this use.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

impl SecretKeyRef {
    /// The key, or the chart's default key when none is given.
    pub fn key_or<'a>(&'a self, default: &'a str) -> &'a str {
        if self.key.is_empty() {
            default
        } else {
            &self.key
        }
    }
}

/// Wrapper matching the chart's `<thing>.existingSecret` nesting.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExistingSecret {
    /// The referenced Secret and key.
    #[serde(default)]
    pub existing_secret: SecretKeyRef,
}

impl ExistingSecret {
    /// The named Secret, if any.
    pub fn named(&self) -> Option<&SecretKeyRef> {
        (!self.existing_secret.name.is_empty()).then_some(&self.existing_secret)
    }
}

/// Secret sources of the proxy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretsSpec {
    /// Use the plaintext values of `data` (rendered into the operator-owned `<name>-config` Secret).
    #[serde(default)]
    pub create: bool,
    /// Plaintext values (development only).
    #[serde(default)]
    pub data: SecretsData,
    /// Existing Secret with the management token.
    #[serde(default)]
    pub management_token: ExistingSecret,
    /// Existing Secret with the PostgreSQL URL.
    #[serde(default)]
    pub database_url: ExistingSecret,
    /// Encryption key source and requirement.
    #[serde(default)]
    pub encryption_key: EncryptionKeySpec,
}

/// `secrets.encryptionKey`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKeySpec {
    /// Refuse the spec when no `ENCRYPTION_KEY` is configured (plaintext or existing Secret).
    #[serde(default)]
    pub required: bool,
    /// The referenced Secret and key.
    #[serde(default)]
    pub existing_secret: SecretKeyRef,
}

impl EncryptionKeySpec {
    /// The named Secret, if any.
    pub fn named(&self) -> Option<&SecretKeyRef> {
        (!self.existing_secret.name.is_empty()).then_some(&self.existing_secret)
    }
}

/// Plaintext secret values.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretsData {
    /// Management token.
    #[serde(default)]
    pub management_token: String,
    /// PostgreSQL URL.
    #[serde(default)]
    pub database_url: String,
    /// Encryption key (`ENCRYPTION_KEY`).
    #[serde(default)]
    pub encryption_key: String,
}

/// Development PostgreSQL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresqlSpec {
    /// Run PostgreSQL as a StatefulSet next to the proxy.
    #[serde(default)]
    pub enabled: bool,
    /// Credentials.
    #[serde(default)]
    pub auth: PostgresqlAuth,
    /// StatefulSet settings.
    #[serde(default)]
    pub primary: PostgresqlPrimary,
    /// `sslmode` of the rendered DATABASE_URL.
    #[serde(default = "defaults::ssl_mode")]
    pub ssl_mode: String,
}

impl Default for PostgresqlSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            auth: PostgresqlAuth::default(),
            primary: PostgresqlPrimary::default(),
            ssl_mode: defaults::ssl_mode(),
        }
    }
}

/// PostgreSQL credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresqlAuth {
    /// Database user.
    #[serde(default = "defaults::llmproxy")]
    pub username: String,
    /// Database name.
    #[serde(default = "defaults::llmproxy")]
    pub database: String,
    /// Plaintext password (rendered into `<name>-config`).
    #[serde(default)]
    pub password: String,
    /// Existing Secret holding the passwords.
    #[serde(default)]
    pub existing_secret: String,
    /// Keys inside `existingSecret`.
    #[serde(default)]
    pub secret_keys: PostgresqlSecretKeys,
}

impl Default for PostgresqlAuth {
    fn default() -> Self {
        Self {
            username: defaults::llmproxy(),
            database: defaults::llmproxy(),
            password: String::new(),
            existing_secret: String::new(),
            secret_keys: PostgresqlSecretKeys::default(),
        }
    }
}

/// Keys of the PostgreSQL existing Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresqlSecretKeys {
    /// Key of the admin password (kept for chart parity; the dev StatefulSet has one user).
    #[serde(default = "defaults::admin_password_key")]
    pub admin_password_key: String,
    /// Key of the user password.
    #[serde(default = "defaults::user_password_key")]
    pub user_password_key: String,
}

impl Default for PostgresqlSecretKeys {
    fn default() -> Self {
        Self {
            admin_password_key: defaults::admin_password_key(),
            user_password_key: defaults::user_password_key(),
        }
    }
}

/// PostgreSQL StatefulSet settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresqlPrimary {
    /// Data volume.
    #[serde(default = "defaults::postgres_persistence")]
    pub persistence: VolumeSpec,
    /// Container resources.
    #[serde(default = "defaults::postgres_resources")]
    pub resources: ResourceRequirements,
}

impl Default for PostgresqlPrimary {
    fn default() -> Self {
        Self {
            persistence: defaults::postgres_persistence(),
            resources: defaults::postgres_resources(),
        }
    }
}

/// A persistent volume toggle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// Use a PVC (else an emptyDir).
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Requested size.
    pub size: Quantity,
    /// Storage class; empty = cluster default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub storage_class: String,
}

/// External Redis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Reserved for future use (the chart's value): accepted, has no effect, deploys no Redis.
    #[serde(default)]
    pub enabled: bool,
    /// Connection settings.
    #[serde(default)]
    pub external: RedisExternal,
}

/// External Redis connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisExternal {
    /// `host:port`; empty = no Redis.
    #[serde(default)]
    pub addr: String,
    /// Database number.
    #[serde(default)]
    pub db: i32,
    /// Existing Secret with the password.
    #[serde(default)]
    pub password: ExistingSecret,
}

/// The dispatcher Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DispatcherSpec {
    /// Run the dispatcher.
    #[serde(default)]
    pub enabled: bool,
    /// Dispatcher replicas.
    #[serde(default = "defaults::one")]
    pub replica_count: i32,
    /// Backend: `file`, `lunary` or `helicone`.
    #[serde(default = "defaults::dispatcher_service")]
    pub service: String,
    /// File path or URL; empty = the backend's default.
    #[serde(default)]
    pub endpoint: String,
    /// Backend API key: an existing Secret, or a plaintext value (development only).
    #[serde(default)]
    pub api_key: DispatcherApiKey,
    /// Buffer and batch sizes.
    #[serde(default)]
    pub config: DispatcherConfig,
    /// PVC of the file backend.
    #[serde(default = "defaults::dispatcher_persistence")]
    pub persistence: VolumeSpec,
    /// Pod security context; unset = the top-level one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,
    /// Container security context; unset = the top-level one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Container resources.
    #[serde(default = "defaults::dispatcher_resources")]
    pub resources: ResourceRequirements,
    /// Node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity (a core/v1 Affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object")]
    pub affinity: Option<serde_json::Value>,
}

impl Default for DispatcherSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            replica_count: 1,
            service: defaults::dispatcher_service(),
            endpoint: String::new(),
            api_key: DispatcherApiKey::default(),
            config: DispatcherConfig::default(),
            persistence: defaults::dispatcher_persistence(),
            pod_security_context: None,
            security_context: None,
            resources: defaults::dispatcher_resources(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
        }
    }
}

/// `dispatcher.apiKey`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DispatcherApiKey {
    /// Plaintext key, rendered into `<name>-config` (ignored when `existingSecret.name` is set).
    #[serde(default)]
    pub value: String,
    /// The referenced Secret and key.
    #[serde(default)]
    pub existing_secret: SecretKeyRef,
}

impl DispatcherApiKey {
    /// The named Secret, if any.
    pub fn named(&self) -> Option<&SecretKeyRef> {
        (!self.existing_secret.name.is_empty()).then_some(&self.existing_secret)
    }
}

/// Dispatcher tuning.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DispatcherConfig {
    /// In-process buffer.
    #[serde(default = "defaults::buffer_size")]
    pub buffer_size: i32,
    /// Events per batch.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: i32,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            buffer_size: defaults::buffer_size(),
            batch_size: defaults::batch_size(),
        }
    }
}

/// Metrics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Enable scraping annotations, ServiceMonitor and dashboard toggles.
    #[serde(default)]
    pub enabled: bool,
    /// Prometheus text path.
    #[serde(default = "defaults::metrics_path")]
    pub path: String,
    /// Service port name scraped.
    #[serde(default = "defaults::port_name")]
    pub port_name: String,
    /// Service annotations added when enabled.
    #[serde(default = "defaults::metrics_annotations")]
    pub annotations: BTreeMap<String, String>,
    /// prometheus-operator ServiceMonitor.
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
    /// Grafana dashboard ConfigMap.
    #[serde(default)]
    pub grafana_dashboard: GrafanaDashboardSpec,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            path: defaults::metrics_path(),
            port_name: defaults::port_name(),
            annotations: defaults::metrics_annotations(),
            service_monitor: ServiceMonitorSpec::default(),
            grafana_dashboard: GrafanaDashboardSpec::default(),
        }
    }
}

/// ServiceMonitor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Render it (when the CRD is served).
    #[serde(default)]
    pub enabled: bool,
    /// Extra labels (e.g. the Prometheus selector).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Scrape interval.
    #[serde(default = "defaults::interval")]
    pub interval: String,
    /// Scrape timeout.
    #[serde(default = "defaults::scrape_timeout")]
    pub scrape_timeout: String,
    /// Keep the target's labels on conflicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honor_labels: Option<bool>,
    /// Relabelings of the scrape endpoint (prometheus-operator `RelabelConfig`s, passed through).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::preserve_unknown_array")]
    pub relabelings: Vec<serde_json::Value>,
    /// Metric relabelings of the scrape endpoint (passed through).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::preserve_unknown_array")]
    pub metric_relabelings: Vec<serde_json::Value>,
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            labels: BTreeMap::new(),
            interval: defaults::interval(),
            scrape_timeout: defaults::scrape_timeout(),
            honor_labels: None,
            relabelings: Vec::new(),
            metric_relabelings: Vec::new(),
        }
    }
}

/// Grafana dashboard ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaDashboardSpec {
    /// Render it.
    #[serde(default)]
    pub enabled: bool,
    /// Labels the Grafana sidecar selects on.
    #[serde(default = "defaults::dashboard_labels")]
    pub labels: BTreeMap<String, String>,
    /// Annotations (e.g. the target folder).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for GrafanaDashboardSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            labels: defaults::dashboard_labels(),
            annotations: BTreeMap::new(),
        }
    }
}

/// PVC of the SQLite data directory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistenceSpec {
    /// Use a PVC for `/app/data` (else an emptyDir, as the chart).
    #[serde(default)]
    pub enabled: bool,
    /// Requested size.
    #[serde(default = "defaults::data_size")]
    pub size: Quantity,
    /// Storage class; empty = cluster default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub storage_class: String,
    /// Access mode.
    #[serde(default = "defaults::access_mode")]
    pub access_mode: String,
}

impl Default for PersistenceSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            size: defaults::data_size(),
            storage_class: String::new(),
            access_mode: defaults::access_mode(),
        }
    }
}

impl LlmProxySpec {
    /// The chart's `env` defaults with the user's `env` merged over them (Helm merges maps).
    pub fn effective_env(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = [
            (llm_proxy_env::LISTEN_ADDR, ":8080"),
            (llm_proxy_env::LOG_LEVEL, "info"),
            (llm_proxy_env::LOG_FORMAT, "json"),
            (llm_proxy_env::LOG_FILE, ""),
            (llm_proxy_env::ENABLE_METRICS, "true"),
            (llm_proxy_env::METRICS_PATH, "/metrics"),
            (llm_proxy_env::DB_DRIVER, "sqlite"),
            (llm_proxy_env::DATABASE_PATH, "/app/data/llm-proxy.db"),
            (llm_proxy_env::LLM_PROXY_EVENT_BUS, "in-memory"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }

    /// `DB_DRIVER` as the chart sees it.
    pub fn db_driver(&self) -> String {
        self.env
            .get(llm_proxy_env::DB_DRIVER)
            .cloned()
            .unwrap_or_else(|| "sqlite".into())
    }

    /// `LLM_PROXY_EVENT_BUS` as the chart sees it.
    pub fn event_bus(&self) -> String {
        self.env
            .get(llm_proxy_env::LLM_PROXY_EVENT_BUS)
            .cloned()
            .unwrap_or_else(|| "in-memory".into())
    }
}
