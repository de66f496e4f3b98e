//! The PostgreSQL backend. Migrations run at connect under sqlx's advisory lock
//! (`pg_advisory_lock` keyed by the database name), so replicas can start together.
//!
//! Cache invalidation across replicas: triggers (migration `0003`) announce every change of a
//! token or project the data path caches on [`INVALIDATION_CHANNEL`] when its transaction commits,
//! whoever made it (another replica's `/manage`, or an edit with `psql`). [`InvalidationListener`]
//! receives them.

use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::config::StoreConfig;
use crate::crypto::EncryptionKey;
use crate::error::StoreError;
use crate::token::TokenHash;

/// The `NOTIFY` channel of the invalidation triggers.
pub const INVALIDATION_CHANNEL: &str = "llm_proxy_invalidation";

/// `application_name` of the listener's connection (visible in `pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "llm-proxy-invalidation";

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

/// What an invalidation notification asks a replica to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// The token with this hash changed (revoked, reactivated, new expiry or quota, deleted).
    Token(TokenHash),
    /// The project changed (active flag, provider key, rate limits, name) or was deleted.
    Project(String),
    /// Everything cached may be stale.
    All,
}

impl Invalidation {
    /// Parses a payload of the triggers: `token:<hash>`, `project:<id>` or `flush`; `None` for
    /// anything else (a later version's kind, or a hash that is not one).
    pub fn parse(payload: &str) -> Option<Self> {
        if payload == "flush" {
            return Some(Self::All);
        }
        if let Some(hash) = payload.strip_prefix("token:") {
            return TokenHash::try_from(hash.to_owned()).ok().map(Self::Token);
        }
        payload
            .strip_prefix("project:")
            .map(|id| Self::Project(id.to_owned()))
    }
}

/// A dedicated connection `LISTEN`ing on [`INVALIDATION_CHANNEL`]. It does not reconnect by
/// itself: once [`Self::next`] fails, notifications may have been missed; the caller drops it and
/// connects a new one (and drops its caches).
pub struct InvalidationListener {
    listener: PgListener,
}

impl InvalidationListener {
    /// Connects to `url` (one connection, named [`LISTENER_APPLICATION_NAME`]) and starts
    /// listening; notifications committed from then on are received.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::InvalidDatabaseUrl)?
            .application_name(LISTENER_APPLICATION_NAME);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(crate::config::ACQUIRE_TIMEOUT)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(StoreError::Connect)?;
        listener.listen(INVALIDATION_CHANNEL).await?;
        Ok(Self { listener })
    }

    /// Checks that the connection still answers (`SELECT 1`): a connection cut without a reset
    /// (a network partition) otherwise looks like a quiet channel.
    pub async fn probe(&mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&mut self.listener).await?;
        Ok(())
    }

    /// The next notification's payload; an error once the connection is lost. Cancelling the
    /// future leaves the connection usable (the read buffer keeps a partly received message).
    pub async fn next(&mut self) -> Result<String, StoreError> {
        match self.listener.try_recv().await? {
            Some(notification) => Ok(notification.payload().to_owned()),
            None => Err(StoreError::ListenerLost),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_of_the_triggers_are_parsed() {
        let hash = crate::hash_token("sk-test");
        assert_eq!(
            Invalidation::parse(&format!("token:{hash}")),
            Some(Invalidation::Token(hash))
        );
        assert_eq!(
            Invalidation::parse("project:p-1"),
            Some(Invalidation::Project("p-1".into()))
        );
        assert_eq!(Invalidation::parse("flush"), Some(Invalidation::All));
        assert_eq!(Invalidation::parse("token:not-a-hash"), None);
        assert_eq!(Invalidation::parse("other:x"), None);
    }
}
