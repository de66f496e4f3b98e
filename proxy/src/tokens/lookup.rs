//! Finding a request's token: `Authorization` parsing, the format check before any store lookup,
//! the record cache by hash, the hash memo and the negative cache of unknown hashes.
//!
//! A token's hash is remembered per token string for the tokens found ([`TokenAuthority`]'s
//! `hashes`, bounded like the record cache): SHA-256 in software is about a tenth of the proxy's
//! own work per request. The memo holds the token strings of recently used tokens in memory (as
//! the request buffers do), never anywhere else; it is a cache of a pure function, so nothing
//! invalidates it. Concurrent cache misses of one token share one lookup ([`SingleFlight`]).
//! Well-formed tokens that do not exist are remembered for [`NEGATIVE_TTL`] in a bounded cache, so
//! a flood of one unknown token costs no database lookup per request. Tokens are random, so a new
//! token is never in it; creating a token through `/manage` clears its hash anyway.
//!
//! [`SingleFlight`]: crate::single_flight::SingleFlight

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use llm_proxy_store::{TokenHash, TokenRecord};

use super::{Identified, TokenAuthority};
use crate::error::ProxyError;

/// How long an unknown token hash is answered without a lookup.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);

impl TokenAuthority {
    pub(super) async fn identify_inner(
        &self,
        authorization: Option<&str>,
    ) -> Result<Identified, ProxyError> {
        let token = bearer_token(authorization).ok_or(ProxyError::MissingToken)?;
        // The memo holds only tokens that passed the format check and are not derivable from their
        // id; others are checked here, on every request.
        if let Some(hash) = self.hashes.get(token) {
            let record = self.record_of(&hash).await?;
            return Ok(Identified { hash, record });
        }
        let shape = llm_proxy_store::validate_token_format(token)?;
        let hash = llm_proxy_store::hash_token(token);
        let record = self.record_of(&hash).await?;
        if shape.derivable_from(record.id) {
            return Err(ProxyError::TokenSuperseded);
        }
        self.hashes.insert(Arc::from(token), hash.clone());
        Ok(Identified { hash, record })
    }

    /// The token's record: from the cache, or from the store through one lookup shared by
    /// concurrent misses.
    async fn record_of(&self, hash: &TokenHash) -> Result<Arc<TokenRecord>, ProxyError> {
        if let Some(record) = self.cached(hash)? {
            return Ok(record);
        }
        if let Some(loaded) = self.loads.lead_or_wait(hash, self.load(hash)).await {
            return loaded;
        }
        // Another request looked the token up meanwhile.
        match self.cached(hash)? {
            Some(record) => Ok(record),
            None => self.load(hash).await,
        }
    }

    /// The cached record, or `TokenNotFound` for a hash remembered as unknown.
    fn cached(&self, hash: &TokenHash) -> Result<Option<Arc<TokenRecord>>, ProxyError> {
        if let Some(record) = self.cache.get(hash) {
            return Ok(Some(record));
        }
        if self.unknown.contains_key(hash) {
            return Err(ProxyError::TokenNotFound);
        }
        Ok(None)
    }

    /// Looks the token up in the store and caches the answer (a miss in the negative cache).
    /// A record read before an invalidation that came while the lookup was in flight is returned
    /// (the request was already under way) but not left in the cache.
    async fn load(&self, hash: &TokenHash) -> Result<Arc<TokenRecord>, ProxyError> {
        let generation = self.invalidations.load(Ordering::SeqCst);
        let found = self.store.token_by_hash(hash).await?;
        self.cache_loaded(hash, found, generation)
    }

    /// Caches what a lookup that started at invalidation count `generation` found.
    fn cache_loaded(
        &self,
        hash: &TokenHash,
        found: Option<TokenRecord>,
        generation: u64,
    ) -> Result<Arc<TokenRecord>, ProxyError> {
        let Some(record) = found else {
            self.unknown.insert(hash.clone(), ());
            return Err(ProxyError::TokenNotFound);
        };
        let record = Arc::new(record);
        self.cache.insert(hash.clone(), record.clone());
        // Checked after inserting: an invalidation that comes later removes the entry itself.
        if self.invalidations.load(Ordering::SeqCst) != generation {
            self.cache.invalidate(hash);
        }
        Ok(record)
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, value trimmed).
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    let (scheme, value) = header?.trim().split_once(' ')?;
    let value = value.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::super::{TokenSettings, test_record as record};
    use super::*;
    use crate::metrics::Metrics;

    async fn authority() -> (TokenAuthority, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("llm-proxy-tokens-{}", uuid::Uuid::new_v4()));
        let path = dir.join("proxy.db");
        let config = llm_proxy_store::StoreConfig::new(llm_proxy_store::Driver::Sqlite {
            path: path.clone(),
        });
        let store = llm_proxy_store::connect(&config)
            .await
            .expect("a SQLite store");
        let settings = TokenSettings {
            cache_ttl: Duration::from_secs(60),
            cache_max: 16,
            usage_buffer: 16,
        };
        let (authority, _batcher) = TokenAuthority::new(store, settings, Arc::new(Metrics::new()));
        (authority, dir)
    }

    #[tokio::test]
    async fn a_lookup_that_read_the_store_before_an_invalidation_caches_nothing() {
        let (authority, dir) = authority().await;
        let hash = record().token_hash;
        let generation = authority.invalidations.load(Ordering::SeqCst);
        // The token is revoked (here or on another replica, whose notification arrives) while the
        // lookup's store call is in flight; the store answered with the record from before.
        authority.invalidate(&hash);
        let returned = authority.cache_loaded(&hash, Some(record()), generation);
        assert!(returned.is_ok(), "the request under way gets what was read");
        assert!(authority.cache.get(&hash).is_none(), "the old record");

        let generation = authority.invalidations.load(Ordering::SeqCst);
        authority
            .cache_loaded(&hash, Some(record()), generation)
            .expect("a record");
        assert!(
            authority.cache.get(&hash).is_some(),
            "a later lookup caches"
        );
        authority.invalidate_all();
        assert!(authority.cache.get(&hash).is_none(), "dropped wholesale");
        drop(authority);
        let _ = std::fs::remove_dir_all(dir);
    }
}
