//! The chart's `fail` messages, verbatim: shared by the CRD's CEL rules and the reconciler's
//! validation so both refuse a spec with the same words.

/// `validateAutoscalingConfig`.
pub const AUTOSCALING_NO_TARGETS: &str = "Configuration error: autoscaling.enabled is true but no target metrics are configured. Please set at least one of autoscaling.targetCPUUtilizationPercentage or autoscaling.targetMemoryUtilizationPercentage.";
/// `redis.external.addr` is rendered as a plain environment value: credentials must not be in it.
pub const REDIS_ADDR_WITH_CREDENTIALS: &str = "Configuration error: redis.external.addr must be host:port. It is rendered as a plain environment value, so a password must not be in it: put it in a Secret named by redis.external.password.existingSecret.";
/// `validatePostgresConfig`: in-cluster and external at once.
pub const POSTGRES_BOTH: &str = "Configuration error: Cannot use both in-cluster PostgreSQL (postgresql.enabled=true) and external PostgreSQL (secrets.databaseUrl) at the same time. Please choose one approach.";
/// `validatePostgresConfig`: postgres driver without a database.
pub const POSTGRES_NEITHER: &str = "Configuration error: DB_DRIVER is set to 'postgres' but no database configuration found. Please either:\n  1. Enable in-cluster PostgreSQL with postgresql.enabled=true (development/testing only)\n  2. Configure external PostgreSQL with secrets.databaseUrl.existingSecret.name (recommended for production)\n  3. Change DB_DRIVER to 'sqlite' for single-instance deployments";
/// `validatePostgresConfig`: in-cluster without a password.
pub const POSTGRES_NO_PASSWORD: &str = "Configuration error: postgresql.enabled=true but no password configured. Please set postgresql.auth.password or postgresql.auth.existingSecret";

/// `validateEncryptionKeyConfig`: `secrets.encryptionKey.required` without a key.
pub const ENCRYPTION_KEY_REQUIRED: &str = "Configuration error: ENCRYPTION_KEY is required but not configured. Provide secrets.encryptionKey.existingSecret.name (recommended) or set secrets.create=true and secrets.data.encryptionKey (development only).";

/// The dispatcher backends the chart accepts.
pub const DISPATCHER_SERVICES: &[&str] = &["file", "lunary", "helicone"];
