//! CEL rules of the chart's `fail` checks, evaluated on `spec` (absent fields take the chart defaults).
//! "Autoscaling without targets" is checked by the reconciler only: the CPU target defaults to 80,
//! so only an explicit `null` removes it, and comparing an integer field with `null` does not
//! type-check reliably across CEL implementations.

// Reusable sub-expressions (string concatenation keeps each rule readable).
macro_rules! driver {
    () => {
        "(has(self.env) && 'DB_DRIVER' in self.env ? self.env['DB_DRIVER'] : 'sqlite')"
    };
}
macro_rules! bus {
        () => {
            "(has(self.env) && 'LLM_PROXY_EVENT_BUS' in self.env ? self.env['LLM_PROXY_EVENT_BUS'] : 'in-memory')"
        };
    }
macro_rules! durable_bus {
    () => {
        concat!(
            "(",
            bus!(),
            " == 'redis' || ",
            bus!(),
            " == 'redis-streams')"
        )
    };
}
macro_rules! redis_addr {
        () => {
            "(has(self.redis) && has(self.redis.external) && has(self.redis.external.addr) ? self.redis.external.addr : '')"
        };
    }
macro_rules! pg_enabled {
    () => {
        "(has(self.postgresql) && has(self.postgresql.enabled) && self.postgresql.enabled)"
    };
}
macro_rules! pg_external {
        () => {
            "(has(self.secrets) && ((has(self.secrets.create) && self.secrets.create && has(self.secrets.data) && has(self.secrets.data.databaseUrl) && self.secrets.data.databaseUrl != '') || (has(self.secrets.databaseUrl) && has(self.secrets.databaseUrl.existingSecret) && has(self.secrets.databaseUrl.existingSecret.name) && self.secrets.databaseUrl.existingSecret.name != '')))"
        };
    }
macro_rules! pg_password {
        () => {
            "(has(self.postgresql.auth) && ((has(self.postgresql.auth.password) && self.postgresql.auth.password != '') || (has(self.postgresql.auth.existingSecret) && self.postgresql.auth.existingSecret != '')))"
        };
    }
macro_rules! dispatcher_enabled {
    () => {
        "(has(self.dispatcher) && has(self.dispatcher.enabled) && self.dispatcher.enabled)"
    };
}
macro_rules! dispatcher_service {
    () => {
        "(has(self.dispatcher.service) ? self.dispatcher.service : 'file')"
    };
}
macro_rules! autoscaling_enabled {
    () => {
        "(has(self.autoscaling) && has(self.autoscaling.enabled) && self.autoscaling.enabled)"
    };
}
macro_rules! max_replicas {
        () => {
            concat!(
                "(",
                autoscaling_enabled!(),
                " ? (has(self.autoscaling.maxReplicas) ? self.autoscaling.maxReplicas : 10) : (has(self.replicaCount) ? self.replicaCount : 1))"
            )
        };
    }

pub const DISPATCHER_BUS: &str = concat!("!", dispatcher_enabled!(), " || ", durable_bus!());
pub const DISPATCHER_BUS_MSG: &str = concat!(
    "\"Configuration error: Dispatcher requires LLM_PROXY_EVENT_BUS to be 'redis' or 'redis-streams', but it is set to '\" + ",
    bus!(),
    " + \"'. Set LLM_PROXY_EVENT_BUS to a supported durable event bus type and configure redis.external.addr.\""
);
pub const DISPATCHER_ADDR: &str = concat!(
    "!",
    dispatcher_enabled!(),
    " || !",
    durable_bus!(),
    " || ",
    redis_addr!(),
    " != ''"
);
pub const DISPATCHER_ADDR_MSG: &str = concat!(
    "\"Configuration error: Dispatcher is enabled with LLM_PROXY_EVENT_BUS='\" + ",
    bus!(),
    " + \"' but redis.external.addr is empty. Please set redis.external.addr to your Redis server address.\""
);
pub const DISPATCHER_SERVICE: &str = concat!(
    "!",
    dispatcher_enabled!(),
    " || ",
    dispatcher_service!(),
    " in ['file', 'lunary', 'helicone']"
);
pub const DISPATCHER_SERVICE_MSG: &str = concat!(
    "\"Configuration error: dispatcher.service is set to '\" + ",
    dispatcher_service!(),
    " + \"'. Please set it to 'file', 'lunary' or 'helicone'.\""
);
pub const DISPATCHER_API_KEY: &str = concat!(
    "!",
    dispatcher_enabled!(),
    " || ",
    dispatcher_service!(),
    " == 'file' || (has(self.dispatcher.apiKey) && ((has(self.dispatcher.apiKey.existingSecret) && has(self.dispatcher.apiKey.existingSecret.name) && self.dispatcher.apiKey.existingSecret.name != '') || (has(self.dispatcher.apiKey.value) && self.dispatcher.apiKey.value != '')))"
);
pub const DISPATCHER_API_KEY_MSG: &str = concat!(
    "\"Configuration error: Dispatcher service '\" + ",
    dispatcher_service!(),
    " + \"' requires an API key via existingSecret. Please set dispatcher.apiKey.existingSecret.name\""
);
pub const REDIS_ADDR: &str = concat!("!", durable_bus!(), " || ", redis_addr!(), " != ''");
pub const REDIS_ADDR_MSG: &str = concat!(
    "\"Configuration error: LLM_PROXY_EVENT_BUS is set to '\" + ",
    bus!(),
    " + \"' but redis.external.addr is empty. Please set redis.external.addr to your Redis server address (e.g., 'redis.example.com:6379') or change LLM_PROXY_EVENT_BUS to 'in-memory' for single-instance deployments.\""
);
pub const POSTGRES_BOTH: &str = concat!(
    "!(",
    driver!(),
    " == 'postgres' && ",
    pg_enabled!(),
    " && ",
    pg_external!(),
    ")"
);
pub const POSTGRES_NEITHER: &str = concat!(
    "!(",
    driver!(),
    " == 'postgres' && !",
    pg_enabled!(),
    " && !",
    pg_external!(),
    ")"
);
/// The chart's message has line breaks, which CRD messages may not contain.
pub const POSTGRES_NEITHER_MSG: &str = "Configuration error: DB_DRIVER is set to 'postgres' but no database configuration found. Please either: 1. Enable in-cluster PostgreSQL with postgresql.enabled=true (development/testing only) 2. Configure external PostgreSQL with secrets.databaseUrl.existingSecret.name (recommended for production) 3. Change DB_DRIVER to 'sqlite' for single-instance deployments";
pub const POSTGRES_NO_PASSWORD: &str = concat!(
    "!(",
    driver!(),
    " == 'postgres' && ",
    pg_enabled!(),
    " && !",
    pg_external!(),
    " && !",
    pg_password!(),
    ")"
);
pub const POSTGRES_DRIVER: &str = concat!("!", pg_enabled!(), " || ", driver!(), " == 'postgres'");
pub const POSTGRES_DRIVER_MSG: &str = concat!(
    "\"Configuration error: postgresql.enabled=true but DB_DRIVER is set to '\" + ",
    driver!(),
    " + \"'. When using in-cluster PostgreSQL, DB_DRIVER must be set to 'postgres'.\""
);
pub const ENCRYPTION_KEY_REQUIRED: &str = "!(has(self.secrets) && has(self.secrets.encryptionKey) && has(self.secrets.encryptionKey.required) && self.secrets.encryptionKey.required) || (has(self.secrets.create) && self.secrets.create && has(self.secrets.data) && has(self.secrets.data.encryptionKey) && self.secrets.data.encryptionKey != '') || (has(self.secrets.encryptionKey.existingSecret) && has(self.secrets.encryptionKey.existingSecret.name) && self.secrets.encryptionKey.existingSecret.name != '')";
pub const SQLITE_REPLICAS: &str = concat!(
    "!(",
    driver!(),
    " == 'sqlite' && ",
    max_replicas!(),
    " > 1)"
);
pub const SQLITE_REPLICAS_MSG: &str = concat!(
    "\"Configuration error: DB_DRIVER is 'sqlite' but the deployment can scale to \" + string(",
    max_replicas!(),
    ") + \" replicas. SQLite is not supported for multi-pod deployments. Set env.DB_DRIVER to 'mysql' or 'postgres' and configure secrets.databaseUrl / mysql.enabled / postgresql.enabled.\""
);
