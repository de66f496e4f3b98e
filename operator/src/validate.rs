//! Pure validation of an `LlmProxy` spec: every `fail` of the seed chart (proxy-spec §7.4 and the
//! HEAD SQLite and encryption-key guards), with the chart's message verbatim, checked in the order Helm renders the
//! chart's templates (hpa, dispatcher, deployment). The same rules exist as CEL in the CRD.

use crate::crd::LlmProxySpec;

/// `validateAutoscalingConfig`.
pub const AUTOSCALING_NO_TARGETS: &str = "Configuration error: autoscaling.enabled is true but no target metrics are configured. Please set at least one of autoscaling.targetCPUUtilizationPercentage or autoscaling.targetMemoryUtilizationPercentage.";
/// `validatePostgresConfig`: in-cluster and external at once.
/// `redis.external.addr` is rendered as a plain environment value: credentials must not be in it.
pub const REDIS_ADDR_WITH_CREDENTIALS: &str = "Configuration error: redis.external.addr must be host:port. It is rendered as a plain environment value, so a password must not be in it: put it in a Secret named by redis.external.password.existingSecret.";

pub const POSTGRES_BOTH: &str = "Configuration error: Cannot use both in-cluster PostgreSQL (postgresql.enabled=true) and external PostgreSQL (secrets.databaseUrl) at the same time. Please choose one approach.";
/// `validatePostgresConfig`: postgres driver without a database.
pub const POSTGRES_NEITHER: &str = "Configuration error: DB_DRIVER is set to 'postgres' but no database configuration found. Please either:\n  1. Enable in-cluster PostgreSQL with postgresql.enabled=true (development/testing only)\n  2. Configure external PostgreSQL with secrets.databaseUrl.existingSecret.name (recommended for production)\n  3. Change DB_DRIVER to 'sqlite' for single-instance deployments";
/// `validatePostgresConfig`: in-cluster without a password.
pub const POSTGRES_NO_PASSWORD: &str = "Configuration error: postgresql.enabled=true but no password configured. Please set postgresql.auth.password or postgresql.auth.existingSecret";

/// `validateEncryptionKeyConfig`: `secrets.encryptionKey.required` without a key.
pub const ENCRYPTION_KEY_REQUIRED: &str = "Configuration error: ENCRYPTION_KEY is required but not configured. Provide secrets.encryptionKey.existingSecret.name (recommended) or set secrets.create=true and secrets.data.encryptionKey (development only).";

/// The dispatcher backends the chart accepts.
pub const DISPATCHER_SERVICES: &[&str] = &["file", "lunary", "helicone"];

/// A spec the chart would refuse; the message is the chart's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

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
pub fn validate(spec: &LlmProxySpec) -> Result<(), InvalidSpec> {
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
