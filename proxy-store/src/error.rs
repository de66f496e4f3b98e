//! The store's error type. Its messages never contain a database URL, password or stored secret.

use crate::crypto::CryptoError;

/// Failure of a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `DATABASE_URL` cannot be parsed (the URL itself is not repeated: it may hold a password).
    #[error("DATABASE_URL is not a valid PostgreSQL URL")]
    InvalidDatabaseUrl,
    /// The SQLite file's directory cannot be created.
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database cannot be reached.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// Applying or reading migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique constraint was violated.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A provider key cannot be encrypted or decrypted.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The admission of a token kept racing with concurrent changes of the same token.
    #[error("the token changed concurrently during admission")]
    Contention,
    /// The connection listening for invalidations was lost (notifications may have been missed).
    #[error("the invalidation listener's connection was lost")]
    ListenerLost,
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Conflict`], anything else to
    /// [`StoreError::Database`].
    pub(crate) fn conflict_or_database(error: sqlx::Error, what: &'static str) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(what),
            _ => Self::Database(error),
        }
    }
}
