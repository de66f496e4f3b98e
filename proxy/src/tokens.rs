//! Client-token admission: `Authorization` parsing, format check before any lookup, a bounded TTL
//! cache of token records by hash, atomic quota for limited tokens and batched usage for the others.
//!
//! Limited tokens (`max_requests > 0`) go through [`Store::admit`] on every request, so `k` concurrent
//! requests on a token with `max_requests = k` admit exactly `k`, and a revocation applies to them at
//! once. Unlimited tokens are checked from the cache (active flag, expiry) and their usage goes through
//! a bounded channel to a background batcher; when the channel is full the update is dropped and
//! counted. Revocation of any token reaches the cache through [`TokenAuthority::invalidate`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use llm_proxy_store::{Admission, Store, TokenHash, TokenRecord, UsageDelta};
use moka::sync::Cache;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::ProxyError;
use crate::metrics::Metrics;

/// Usage updates are written at least this often.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// ... or as soon as this many accumulated.
const FLUSH_BATCH: usize = 100;

/// Admits client tokens.
pub struct TokenAuthority {
    store: Arc<dyn Store>,
    cache: Cache<TokenHash, TokenRecord>,
    usage: mpsc::Sender<UsageDelta>,
    metrics: Arc<Metrics>,
}

/// A well-formed token that exists, before admission.
pub struct Identified {
    hash: TokenHash,
    /// The token's record as cached (counters may be slightly stale).
    pub record: TokenRecord,
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
        let batcher = tokio::spawn(run_usage_batcher(store.clone(), receiver));
        let cache = Cache::builder()
            .max_capacity(settings.cache_max)
            .time_to_live(settings.cache_ttl)
            .build();
        (
            Self {
                store,
                cache,
                usage,
                metrics,
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
    pub async fn admit(&self, identified: Identified) -> Result<TokenRecord, ProxyError> {
        let result = self.admit_inner(identified).await;
        if let Err(err) = &result {
            self.metrics.record_token_rejection(err.code());
        }
        result
    }

    async fn identify_inner(&self, authorization: Option<&str>) -> Result<Identified, ProxyError> {
        let token = bearer_token(authorization).ok_or(ProxyError::MissingToken)?;
        llm_proxy_store::validate_token_format(token)?;
        let hash = llm_proxy_store::hash_token(token);
        let record = match self.cache.get(&hash) {
            Some(record) => record,
            None => {
                let record = self
                    .store
                    .token_by_hash(&hash)
                    .await?
                    .ok_or(ProxyError::TokenNotFound)?;
                self.cache.insert(hash.clone(), record.clone());
                record
            }
        };
        Ok(Identified { hash, record })
    }

    async fn admit_inner(&self, identified: Identified) -> Result<TokenRecord, ProxyError> {
        let Identified { hash, record } = identified;
        let now = Utc::now();
        if record.is_limited() {
            return match self.store.admit(&hash, now).await? {
                Admission::Admitted(updated) => {
                    self.cache.insert(hash, updated.clone());
                    Ok(updated)
                }
                Admission::NotFound => {
                    self.cache.invalidate(&hash);
                    Err(ProxyError::TokenNotFound)
                }
                Admission::Inactive => Err(ProxyError::TokenInactive),
                Admission::Expired => Err(ProxyError::TokenExpired),
                Admission::ProjectInactive => Err(ProxyError::ProjectInactive),
                Admission::QuotaExceeded => Err(ProxyError::QuotaExceeded),
            };
        }
        check_unlimited(&record, now)?;
        let delta = UsageDelta {
            hash,
            requests: 1,
            cache_hits: 0,
            last_used_at: now,
        };
        if self.usage.try_send(delta).is_err() {
            self.metrics.record_usage_dropped();
        }
        Ok(record)
    }

    /// Drops a token from the cache (after a revocation or an update through the management API).
    pub fn invalidate(&self, hash: &TokenHash) {
        self.cache.invalidate(hash);
    }
}

fn check_unlimited(record: &TokenRecord, now: DateTime<Utc>) -> Result<(), ProxyError> {
    if !record.is_active {
        return Err(ProxyError::TokenInactive);
    }
    if record.expires_at.is_some_and(|expiry| expiry <= now) {
        return Err(ProxyError::TokenExpired);
    }
    Ok(())
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, value trimmed).
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    let (scheme, value) = header?.trim().split_once(' ')?;
    let value = value.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !value.is_empty()).then_some(value)
}

async fn run_usage_batcher(store: Arc<dyn Store>, mut receiver: mpsc::Receiver<UsageDelta>) {
    enum Wake {
        Received(UsageDelta),
        Tick,
        Closed,
    }
    let mut pending: HashMap<TokenHash, UsageDelta> = HashMap::new();
    let mut received_since_flush = 0usize;
    let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake = tokio::select! {
            received = receiver.recv() => received.map_or(Wake::Closed, Wake::Received),
            _ = ticker.tick() => Wake::Tick,
        };
        let (flush, closed) = match wake {
            Wake::Received(delta) => {
                received_since_flush += 1;
                merge(&mut pending, delta);
                (received_since_flush >= FLUSH_BATCH, false)
            }
            Wake::Tick => (true, false),
            Wake::Closed => (true, true),
        };
        if flush && !pending.is_empty() {
            let batch: Vec<UsageDelta> = pending.drain().map(|(_, delta)| delta).collect();
            received_since_flush = 0;
            if let Err(err) = store.record_usage(&batch).await {
                tracing::warn!(error = %err, tokens = batch.len(), "usage batch not recorded");
            }
        }
        if closed {
            return;
        }
    }
}

fn merge(pending: &mut HashMap<TokenHash, UsageDelta>, delta: UsageDelta) {
    match pending.get_mut(&delta.hash) {
        Some(existing) => {
            existing.requests += delta.requests;
            existing.cache_hits += delta.cache_hits;
            existing.last_used_at = existing.last_used_at.max(delta.last_used_at);
        }
        None => {
            pending.insert(delta.hash.clone(), delta);
        }
    }
}
