//! Connection settings of the store, parsed by the proxy's configuration once.

use std::path::PathBuf;
use std::time::Duration;

use crate::crypto::EncryptionKey;

/// How long an operation waits for a pooled connection (or a first connection) before failing.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database, and where.
#[derive(Clone)]
pub enum Driver {
    /// SQLite file at `path` (its directory is created).
    Sqlite {
        /// `DATABASE_PATH`.
        path: PathBuf,
    },
    /// PostgreSQL at `url`.
    Postgres {
        /// `DATABASE_URL`; may contain a password, so it is never printed.
        url: String,
    },
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            Self::Postgres { .. } => f
                .debug_struct("Postgres")
                .field("url", &"[redacted]")
                .finish(),
        }
    }
}

/// Everything needed to open the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The database.
    pub driver: Driver,
    /// Maximum open connections (`DATABASE_POOL_SIZE`).
    pub pool_size: u32,
    /// Connections kept open when idle (`DATABASE_MAX_IDLE_CONNS`).
    pub max_idle: u32,
    /// Maximum lifetime of a connection (`DATABASE_CONN_MAX_LIFETIME`).
    pub conn_max_lifetime: Duration,
    /// Encrypts provider keys at rest when set (`ENCRYPTION_KEY`).
    pub encryption_key: Option<EncryptionKey>,
}

impl StoreConfig {
    /// A configuration with the contract's pool defaults (10 connections, 5 idle, 1 hour).
    pub fn new(driver: Driver) -> Self {
        Self {
            driver,
            pool_size: 10,
            max_idle: 5,
            conn_max_lifetime: Duration::from_secs(3600),
            encryption_key: None,
        }
    }
}
