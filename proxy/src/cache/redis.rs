//! The Redis backend: `GET` and `SET … PX`, each bounded by `REDIS_CACHE_TIMEOUT`; purges `SCAN` the
//! matching keys and `UNLINK` them. Every outcome is reported to the cache's [`FeatureHealth`], so a
//! Redis outage shows on `/ready` while requests bypass the cache.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::entry::CachedResponse;
use crate::redis_link::FeatureHealth;

/// Keys fetched per `SCAN` step of a purge.
const SCAN_COUNT: u64 = 1000;

pub struct RedisBackend {
    connection: ConnectionManager,
    timeout: Duration,
    pub(super) health: Arc<FeatureHealth>,
}

/// Redis did not answer in time or failed.
#[derive(Debug, thiserror::Error)]
#[error("cache redis unavailable: {0}")]
pub struct Unavailable(String);

impl RedisBackend {
    pub fn new(
        connection: ConnectionManager,
        timeout: Duration,
        health: Arc<FeatureHealth>,
    ) -> Self {
        Self {
            connection,
            timeout,
            health,
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, Unavailable> {
        let mut connection = self.connection.clone();
        let result =
            match tokio::time::timeout(self.timeout, command.query_async::<T>(&mut connection))
                .await
            {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(err)) => Err(Unavailable(err.to_string())),
                Err(_) => Err(Unavailable("timed out".to_owned())),
            };
        self.health.record(result.is_ok());
        result
    }

    /// The entry under `key`; an undecodable value is a miss.
    pub async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Unavailable> {
        let value: Option<Vec<u8>> = self.run(redis::cmd("GET").arg(key)).await?;
        Ok(value.and_then(|data| CachedResponse::decode(&data)))
    }

    pub async fn set(&self, key: &str, entry: &CachedResponse) -> Result<(), Unavailable> {
        let ttl_ms = u64::try_from(entry.remaining().as_millis()).unwrap_or(u64::MAX);
        if ttl_ms == 0 {
            return Ok(());
        }
        let value = entry
            .encode()
            .map_err(|err| Unavailable(format!("encoding: {err}")))?;
        self.run::<()>(redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ttl_ms))
            .await
    }

    /// Deletes every key matching the glob `pattern`; returns how many were deleted.
    pub async fn purge(&self, pattern: &str) -> Result<u64, Unavailable> {
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT),
                )
                .await?;
            if !keys.is_empty() {
                let removed: u64 = self.run(redis::cmd("UNLINK").arg(&keys)).await?;
                deleted += removed;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

/// Escapes the glob characters of Redis `MATCH` patterns.
pub fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(super::escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
