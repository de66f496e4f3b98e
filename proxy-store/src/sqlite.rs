//! The SQLite backend: one database file, WAL journal, foreign keys on. Reads use a pool of
//! `DATABASE_POOL_SIZE` connections; every write goes through one more connection of its own, so
//! this process's writes queue in memory behind each other instead of meeting in SQLite's lock,
//! where the loser sleeps in the busy handler (1, 2, 5, 10 ms… before retrying): a quota
//! reservation on the request path never waits that long behind a usage flush. Each admission is
//! a single `UPDATE`, hence atomic.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use crate::config::StoreConfig;
use crate::crypto::EncryptionKey;
use crate::error::StoreError;

/// How long a connection waits for another process's writer (`llm-proxy migrate`, an operator's
/// `sqlite3` shell) before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Embedded SQLite migrations.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// [`crate::Store`] over a SQLite file.
pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Every write: a pool of one connection.
    writer: SqlitePool,
    encryption_key: Option<EncryptionKey>,
}

impl SqliteStore {
    /// Opens (creating file and directory if needed) and migrates the database at `path`.
    pub async fn connect(path: &Path, config: &StoreConfig) -> Result<Self, StoreError> {
        let writer = open_pool(path, config).await?;
        MIGRATOR.run(&writer).await?;
        let pool = readers(path, config).await?;
        Ok(Self {
            pool,
            writer,
            encryption_key: config.encryption_key.clone(),
        })
    }
}

/// Opens the writer, a pool of one connection, on the database file (creating file and
/// directory) without migrating it.
pub(crate) async fn open_pool(path: &Path, config: &StoreConfig) -> Result<SqlitePool, StoreError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
    }
    pool_options(1, 1, config)
        .connect_with(connect_options(path)?.create_if_missing(true))
        .await
        .map_err(StoreError::Connect)
}

/// Opens the readers' pool on a database the writer has opened.
async fn readers(path: &Path, config: &StoreConfig) -> Result<SqlitePool, StoreError> {
    pool_options(config.pool_size, config.max_idle, config)
        .connect_with(connect_options(path)?)
        .await
        .map_err(StoreError::Connect)
}

fn connect_options(path: &Path) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str("sqlite:")
        .map_err(StoreError::Connect)?
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT))
}

fn pool_options(size: u32, idle: u32, config: &StoreConfig) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        // A ping before each use would cost one more round trip to the connection's worker thread
        // on every statement (quota reservations are on the request path), and a local file has no
        // peer that could have gone away.
        .test_before_acquire(false)
        .acquire_timeout(crate::config::ACQUIRE_TIMEOUT)
        .max_connections(size.max(1))
        .min_connections(idle.min(size))
        .max_lifetime(config.conn_max_lifetime)
}

crate::sql::impl_store!(SqliteStore, Sqlite, like = "LIKE", single_writer = true);
