//! Client-token admission: `Authorization` parsing, format check before any store lookup, a bounded
//! TTL cache of token records by hash, a short negative cache of unknown hashes, quota reservations for
//! limited tokens and batched usage for the others.
//!
//! [`TokenAuthority`] is what the data path uses: [`TokenAuthority::identify`] finds a request's
//! token ([`lookup`]), [`TokenAuthority::check`] checks it without counting anything, and
//! [`TokenAuthority::admit`] counts the request ([`admission`]): a limited token from its quota
//! lease ([`lease`]), the others through the usage batcher ([`usage`]).
//!
//! Revocation of any token reaches the cache through [`TokenAuthority::invalidate`]: from
//! this process's `/manage`, or, on PostgreSQL, from the invalidation listener
//! (the `revocation` module) for a change made by another replica; while that listener is
//! disconnected, another replica's change applies within the cache TTL (`LLM_PROXY_TOKEN_CACHE_TTL`)
//! and every cache is dropped when it reconnects.

mod admission;
mod lease;
mod lookup;
mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use foldhash::fast::RandomState;
use llm_proxy_store::{Store, TokenHash, TokenRecord, UsageDelta};
use moka::sync::Cache;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::single_flight::SingleFlight;
use crate::ttl_map::TtlMap;

pub use lease::{LEASE_TTL, MAX_CHUNK, QUOTA_SHARE, RENEW_INTERVAL, SINGLE_WRITER_LEASE_TTL};
pub use lookup::{NEGATIVE_TTL, bearer_token};

use admission::check_unlimited;
use lease::QuotaLeases;
use usage::run_usage_batcher;

/// Admits client tokens.
pub struct TokenAuthority {
    store: Arc<dyn Store>,
    cache: TtlMap<TokenHash, Arc<TokenRecord>>,
    /// Keyed by whatever hashes clients send: moka's admission policy keeps a flood of random
    /// tokens from evicting the useful entries.
    unknown: Cache<TokenHash, (), RandomState>,
    /// Token string → its hash (see the `lookup` module). Only tokens that exist are inserted, so
    /// clients cannot choose its keys.
    hashes: TtlMap<Arc<str>, TokenHash>,
    /// Concurrent misses of one token share one lookup.
    loads: SingleFlight<TokenHash>,
    leases: Arc<QuotaLeases>,
    usage: mpsc::Sender<UsageDelta>,
    metrics: Arc<Metrics>,
    /// Bumped by every invalidation, so a lookup that read the store before a change does not
    /// leave what it read in the cache (the change's invalidation may have come meanwhile).
    invalidations: AtomicU64,
}

/// A well-formed token that exists, before admission.
pub struct Identified {
    hash: TokenHash,
    /// The token's record as cached (counters may be slightly stale); shared, not copied, per request.
    pub record: Arc<TokenRecord>,
}

/// Settings of the token cache and usage queue.
#[derive(Debug, Clone, Copy)]
pub struct TokenSettings {
    pub cache_ttl: Duration,
    pub cache_max: u64,
    pub usage_buffer: usize,
}

impl TokenAuthority {
    /// Creates the authority and its usage batcher; the batcher flushes what is left and ends when
    /// the authority is dropped.
    pub fn new(
        store: Arc<dyn Store>,
        settings: TokenSettings,
        metrics: Arc<Metrics>,
    ) -> (Self, JoinHandle<()>) {
        let (usage, receiver) = mpsc::channel(settings.usage_buffer.max(1));
        let lease_ttl = if store.single_writer() {
            SINGLE_WRITER_LEASE_TTL
        } else {
            LEASE_TTL
        };
        let leases = Arc::new(QuotaLeases::new(settings.cache_max, lease_ttl));
        let batcher = tokio::spawn(run_usage_batcher(store.clone(), receiver, leases.clone()));
        let cache = TtlMap::new(settings.cache_max, settings.cache_ttl);
        let unknown = Cache::builder()
            .max_capacity(settings.cache_max)
            .time_to_live(NEGATIVE_TTL.min(settings.cache_ttl))
            .build_with_hasher(RandomState::default());
        let hashes = TtlMap::new(settings.cache_max, settings.cache_ttl);
        (
            Self {
                store,
                cache,
                unknown,
                hashes,
                loads: SingleFlight::default(),
                leases,
                usage,
                metrics,
                invalidations: AtomicU64::new(0),
            },
            batcher,
        )
    }

    /// Finds the token of a request's `Authorization` header: format first, then the cache, then
    /// the store. Nothing is counted yet.
    pub async fn identify(&self, authorization: Option<&str>) -> Result<Identified, ProxyError> {
        let result = self.identify_inner(authorization).await;
        if let Err(err) = &result {
            self.metrics.record_token_rejection(err.code());
        }
        result
    }

    /// Admits an identified token, counting the request against its quota.
    pub async fn admit(&self, identified: Identified) -> Result<Arc<TokenRecord>, ProxyError> {
        let result = self.admit_inner(identified).await;
        if let Err(err) = &result {
            self.metrics.record_token_rejection(err.code());
        }
        result
    }

    /// Drops a token from the cache (after a revocation or an update through the management API).
    /// Also ends the token's quota lease (its unused part is returned) and forgets that the hash was
    /// unknown (a created token).
    pub fn invalidate(&self, hash: &TokenHash) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate(hash);
        self.unknown.invalidate(hash);
        if let Some(unused) = self.leases.end(hash) {
            self.release(hash, unused);
        }
    }

    /// Drops every cached token record and unknown hash and ends every quota lease (their unused
    /// parts are returned): after a gap in the invalidation channel (the `revocation` module), any
    /// of them may be stale.
    pub fn invalidate_all(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
        self.unknown.invalidate_all();
        for (hash, unused) in self.leases.end_all() {
            self.release(&hash, unused);
        }
    }

    /// Checks an identified token without counting a request: active, not expired, quota not used
    /// up (requests reserved by this process's lease but not served yet are still available).
    /// Used before the HTTP cache lookup; [`Self::admit`] re-checks atomically on a miss.
    pub fn check(&self, identified: &Identified) -> Result<(), ProxyError> {
        let record = &identified.record;
        let mut result = check_unlimited(record, Utc::now());
        if result.is_ok()
            && let Some(max) = record.max_requests.filter(|max| *max > 0)
            && record.request_count - self.unserved_reservation(&identified.hash) >= max
        {
            result = Err(ProxyError::QuotaExceeded);
        }
        if let Err(err) = &result {
            self.metrics.record_token_rejection(err.code());
        }
        result
    }

    /// Requests of the token this process reserved and has not served yet: counted in the
    /// database's `request_count`, still available to clients.
    pub fn unserved_reservation(&self, hash: &TokenHash) -> i64 {
        self.leases.unserved(hash)
    }

    /// Counts a response served from the HTTP cache (`cache_hit_count`, `last_used_at`) through the
    /// usage batcher, never against the quota.
    pub fn record_cache_hit(&self, identified: &Identified) {
        let delta = UsageDelta {
            hash: identified.hash.clone(),
            requests: 0,
            cache_hits: 1,
            last_used_at: Utc::now(),
        };
        if self.usage.try_send(delta).is_err() {
            self.metrics.record_usage_dropped();
        }
    }
}

/// A limited token's record, for the submodules' unit tests.
#[cfg(test)]
fn test_record() -> TokenRecord {
    TokenRecord {
        id: uuid::Uuid::nil(),
        token_hash: llm_proxy_store::hash_token("sk-test"),
        project_id: "p".into(),
        expires_at: None,
        is_active: true,
        deactivated_at: None,
        request_count: 0,
        max_requests: Some(1_000_000),
        created_at: Utc::now(),
        last_used_at: None,
        cache_hit_count: 0,
    }
}
