//! The PostgreSQL backend. Migrations run at connect under sqlx's advisory lock
//! (`pg_advisory_lock` keyed by the database name), so replicas can start together.

use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::config::StoreConfig;
use crate::crypto::EncryptionKey;
use crate::error::StoreError;

/// Embedded PostgreSQL migrations.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// [`crate::Store`] over a PostgreSQL pool.
pub struct PostgresStore {
    pool: PgPool,
    /// The same pool: PostgreSQL serialises writers per row, without waiting in a busy handler.
    writer: PgPool,
    encryption_key: Option<EncryptionKey>,
}

impl PostgresStore {
    /// Connects to `url` and applies pending migrations under the advisory lock.
    pub async fn connect(url: &str, config: &StoreConfig) -> Result<Self, StoreError> {
        let pool = open_pool(url, config).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            writer: pool.clone(),
            pool,
            encryption_key: config.encryption_key.clone(),
        })
    }
}

/// Opens a pool without migrating. Parse errors do not repeat the URL (it may hold a password).
pub(crate) async fn open_pool(url: &str, config: &StoreConfig) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(|_| StoreError::InvalidDatabaseUrl)?;
    PgPoolOptions::new()
        .acquire_timeout(crate::config::ACQUIRE_TIMEOUT)
        .max_connections(config.pool_size.max(1))
        .min_connections(config.max_idle.min(config.pool_size))
        .max_lifetime(config.conn_max_lifetime)
        .connect_with(options)
        .await
        .map_err(StoreError::Connect)
}

crate::sql::impl_store!(
    PostgresStore,
    Postgres,
    like = "ILIKE",
    single_writer = false
);
