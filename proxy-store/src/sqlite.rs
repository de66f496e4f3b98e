//! The SQLite backend: one database file, WAL journal, foreign keys on, writers serialised by
//! SQLite itself (each admission is a single `UPDATE`, hence atomic).

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use crate::config::StoreConfig;
use crate::crypto::EncryptionKey;
use crate::error::StoreError;

/// How long a connection waits for another writer before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Embedded SQLite migrations.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// [`crate::Store`] over a SQLite file.
pub struct SqliteStore {
    pool: SqlitePool,
    encryption_key: Option<EncryptionKey>,
}

impl SqliteStore {
    /// Opens (creating file and directory if needed) and migrates the database at `path`.
    pub async fn connect(path: &Path, config: &StoreConfig) -> Result<Self, StoreError> {
        let pool = open_pool(path, config).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            encryption_key: config.encryption_key.clone(),
        })
    }
}

/// Opens a pool on the database file without migrating it.
pub(crate) async fn open_pool(path: &Path, config: &StoreConfig) -> Result<SqlitePool, StoreError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
    }
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(StoreError::Connect)?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        // A ping before each use would cost one more round trip to the connection's worker thread
        // on every statement (quota reservations are on the request path), and a local file has no
        // peer that could have gone away.
        .test_before_acquire(false)
        .acquire_timeout(crate::config::ACQUIRE_TIMEOUT)
        .max_connections(config.pool_size.max(1))
        .min_connections(config.max_idle.min(config.pool_size))
        .max_lifetime(config.conn_max_lifetime)
        .connect_with(options)
        .await
        .map_err(StoreError::Connect)
}

crate::sql::impl_store!(SqliteStore, Sqlite, like = "LIKE", single_writer = true);
