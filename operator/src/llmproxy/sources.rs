//! Where each secret value of an `LlmProxy` comes from: a Secret the user named, the operator's
//! `<name>-config` Secret (plaintext values from the spec), or the generated `<name>-management`
//! Secret. Builders and the dereference step share this one resolution, as the chart's helpers do.

use crate::crd::LlmProxySpec;

/// Key of the PostgreSQL password inside `<name>-config`.
pub const CONFIG_POSTGRES_PASSWORD_KEY: &str = "postgresql-password";
/// Default key of the dispatcher API key in its existing Secret (the chart's).
pub const DISPATCHER_API_KEY_DEFAULT_KEY: &str = "DISPATCHER_API_KEY";

/// Name of the operator-owned Secret holding the spec's plaintext values.
pub fn config_secret_name(proxy_name: &str) -> String {
    format!("{proxy_name}-config")
}

/// Name of the generated management-token Secret.
pub fn management_secret_name(proxy_name: &str) -> String {
    format!("{proxy_name}-management")
}

/// Who owns the Secret a value is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A Secret the user named in the spec: read, hashed, never written.
    User,
    /// The operator's `<name>-config` Secret rendered from the spec's plaintext values.
    Config,
    /// The operator's generated `<name>-management` Secret.
    Generated,
}

/// One secret value: Secret name and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    /// Secret name.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
    /// The spec field that selects it (for error messages).
    pub field: &'static str,
    /// Who owns the Secret.
    pub origin: Origin,
}

/// Every secret value an `LlmProxy` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSources {
    /// `MANAGEMENT_TOKEN` of the proxy.
    pub management_token: SecretSource,
    /// `DATABASE_URL` of an external PostgreSQL.
    pub database_url: Option<SecretSource>,
    /// `ENCRYPTION_KEY`.
    pub encryption_key: Option<SecretSource>,
    /// `REDIS_PASSWORD` (proxy and dispatcher).
    pub redis_password: Option<SecretSource>,
    /// `LLM_PROXY_API_KEY` of the dispatcher.
    pub dispatcher_api_key: Option<SecretSource>,
    /// Password of the in-cluster PostgreSQL user.
    pub postgres_password: Option<SecretSource>,
}

impl SecretSources {
    /// Resolves the sources of `spec` for the LlmProxy named `proxy_name`.
    pub fn resolve(proxy_name: &str, spec: &LlmProxySpec) -> Self {
        let config = |key: &str, field| SecretSource {
            name: config_secret_name(proxy_name),
            key: key.to_owned(),
            field,
            origin: Origin::Config,
        };
        let user = |r: &crate::crd::SecretKeyRef, default_key: &str, field| SecretSource {
            name: r.name.clone(),
            key: r.key_or(default_key).to_owned(),
            field,
            origin: Origin::User,
        };
        let secrets = &spec.secrets;

        let management_token = if secrets.create && !secrets.data.management_token.is_empty() {
            config(
                llm_proxy_env::MANAGEMENT_TOKEN,
                "secrets.data.managementToken",
            )
        } else if let Some(r) = secrets.management_token.named() {
            user(
                r,
                llm_proxy_env::MANAGEMENT_TOKEN,
                "secrets.managementToken.existingSecret",
            )
        } else {
            SecretSource {
                name: management_secret_name(proxy_name),
                key: llm_proxy_env::MANAGEMENT_TOKEN.to_owned(),
                field: "secrets.managementToken",
                origin: Origin::Generated,
            }
        };

        let database_url = if spec.postgresql.enabled {
            None
        } else if secrets.create && !secrets.data.database_url.is_empty() {
            Some(config(
                llm_proxy_env::DATABASE_URL,
                "secrets.data.databaseUrl",
            ))
        } else {
            secrets.database_url.named().map(|r| {
                user(
                    r,
                    llm_proxy_env::DATABASE_URL,
                    "secrets.databaseUrl.existingSecret",
                )
            })
        };

        let encryption_key = if secrets.create && !secrets.data.encryption_key.is_empty() {
            Some(config(
                llm_proxy_env::ENCRYPTION_KEY,
                "secrets.data.encryptionKey",
            ))
        } else {
            secrets.encryption_key.named().map(|r| {
                user(
                    r,
                    llm_proxy_env::ENCRYPTION_KEY,
                    "secrets.encryptionKey.existingSecret",
                )
            })
        };

        let redis = &spec.redis.external;
        let redis_password = if redis.addr.is_empty() {
            None
        } else {
            redis.password.named().map(|r| {
                user(
                    r,
                    llm_proxy_env::REDIS_PASSWORD,
                    "redis.external.password.existingSecret",
                )
            })
        };

        let api_key = &spec.dispatcher.api_key;
        let dispatcher_api_key = if !spec.dispatcher.enabled {
            None
        } else if let Some(r) = api_key.named() {
            Some(user(
                r,
                DISPATCHER_API_KEY_DEFAULT_KEY,
                "dispatcher.apiKey.existingSecret",
            ))
        } else if !api_key.value.is_empty() {
            Some(config(
                DISPATCHER_API_KEY_DEFAULT_KEY,
                "dispatcher.apiKey.value",
            ))
        } else {
            None
        };

        let auth = &spec.postgresql.auth;
        let postgres_password = if !spec.postgresql.enabled {
            None
        } else if !auth.existing_secret.is_empty() {
            Some(SecretSource {
                name: auth.existing_secret.clone(),
                key: auth.secret_keys.user_password_key.clone(),
                field: "postgresql.auth.existingSecret",
                origin: Origin::User,
            })
        } else {
            Some(config(
                CONFIG_POSTGRES_PASSWORD_KEY,
                "postgresql.auth.password",
            ))
        };

        Self {
            management_token,
            database_url,
            encryption_key,
            redis_password,
            dispatcher_api_key,
            postgres_password,
        }
    }

    /// Every source, in a fixed order.
    pub fn all(&self) -> impl Iterator<Item = &SecretSource> {
        std::iter::once(&self.management_token)
            .chain(self.database_url.as_ref())
            .chain(self.encryption_key.as_ref())
            .chain(self.redis_password.as_ref())
            .chain(self.dispatcher_api_key.as_ref())
            .chain(self.postgres_password.as_ref())
    }

    /// Sources the operator reads from the cluster (user Secrets and the generated one).
    pub fn referenced(&self) -> impl Iterator<Item = &SecretSource> {
        self.all().filter(|s| s.origin != Origin::Config)
    }
}
