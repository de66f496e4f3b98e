//! Persistence of the llm-proxy data plane: projects, withering tokens and audit events in
//! SQLite or PostgreSQL, behind one [`Store`] trait.
//!
//! Tokens are stored only as SHA-256 hashes ([`hash_token`]); provider keys are encrypted at rest
//! when an [`EncryptionKey`] is configured. Migrations are embedded and applied by [`connect`].

pub mod config;
pub mod crypto;
pub mod error;
pub mod model;
pub mod postgres;
mod sql;
pub mod sqlite;
pub mod store;
pub mod token;

use std::sync::Arc;

use chrono::{DateTime, SubsecRound as _, Utc};
use sqlx::migrate::{Migrate, Migrator};

pub use config::{Driver, StoreConfig};
pub use crypto::{CryptoError, EncryptionKey, EncryptionKeyError};
pub use error::StoreError;
pub use model::{
    Admission, AuditEvent, AuditOutcome, AuditPage, AuditQuery, NewProject, NewToken, Project,
    ProjectAccess, ProjectRateLimits, ProjectUpdate, ProjectUpdated, ProviderKey, RateLimit,
    RevokeSummary, TokenRecord, TokenUpdate, UsageDelta,
};
pub use postgres::{INVALIDATION_CHANNEL, Invalidation, InvalidationListener, PostgresStore};
pub use sqlite::SqliteStore;
pub use store::Store;
pub use token::{
    RandomSourceError, TokenFormatError, TokenHash, TokenShape, derivable_token_of, generate_token,
    hash_token, obfuscate_api_key, obfuscate_token, validate_token_format,
};

/// Table in which sqlx records applied migrations.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// The current time at the precision both databases store (microseconds), so values read back
/// equal values written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Opens the configured database and applies pending migrations.
pub async fn connect(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &config.driver {
        Driver::Sqlite { path } => Arc::new(SqliteStore::connect(path, config).await?),
        Driver::Postgres { url } => Arc::new(PostgresStore::connect(url, config).await?),
    })
}

/// Revokes every active token issued by a build of this project before the token-format change
/// (see [`token`]): its string was `sk-` + base64url of its management id, so anyone who saw the id
/// could compute it. Recognised by its stored hash being the hash of that derivation, which no
/// other token (issued now, or imported from the upstream proxy, whose ids are independent random
/// UUIDs) can match. Returns the tokens revoked; running it again finds none.
pub async fn revoke_derivable_tokens(store: &dyn Store) -> Result<Vec<TokenRecord>, StoreError> {
    let mut revoked = Vec::new();
    for token in store.list_tokens(None).await? {
        let derivable = token.is_active
            && token.id.get_version_num() == 7
            && hash_token(&derivable_token_of(token.id)) == token.token_hash;
        if derivable && let Some(record) = store.revoke_token(token.id).await? {
            revoked.push(record);
        }
    }
    Ok(revoked)
}

/// One embedded migration and whether the database has applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// Version (the file's numeric prefix).
    pub version: i64,
    /// Description (the file name after the version).
    pub description: String,
    /// Whether it is applied.
    pub applied: bool,
}

/// Applies pending migrations (`llm-proxy migrate up`).
pub async fn migrate_up(config: &StoreConfig) -> Result<(), StoreError> {
    match &config.driver {
        Driver::Sqlite { path } => {
            let pool = sqlite::open_pool(path, config).await?;
            sqlite::MIGRATOR.run(&pool).await?;
            pool.close().await;
        }
        Driver::Postgres { url } => {
            let pool = postgres::open_pool(url, config).await?;
            postgres::MIGRATOR.run(&pool).await?;
            pool.close().await;
        }
    }
    Ok(())
}

/// Lists every embedded migration with its state (`llm-proxy migrate status`).
pub async fn migration_status(config: &StoreConfig) -> Result<Vec<MigrationState>, StoreError> {
    match &config.driver {
        Driver::Sqlite { path } => {
            let pool = sqlite::open_pool(path, config).await?;
            let mut conn = pool.acquire().await?;
            let states = states(&sqlite::MIGRATOR, &mut *conn).await;
            drop(conn);
            pool.close().await;
            states
        }
        Driver::Postgres { url } => {
            let pool = postgres::open_pool(url, config).await?;
            let mut conn = pool.acquire().await?;
            let states = states(&postgres::MIGRATOR, &mut *conn).await;
            drop(conn);
            pool.close().await;
            states
        }
    }
}

async fn states(
    migrator: &Migrator,
    conn: &mut impl Migrate,
) -> Result<Vec<MigrationState>, StoreError> {
    conn.ensure_migrations_table(MIGRATIONS_TABLE).await?;
    let applied = conn.list_applied_migrations(MIGRATIONS_TABLE).await?;
    Ok(migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| MigrationState {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.iter().any(|a| a.version == m.version),
        })
        .collect())
}
