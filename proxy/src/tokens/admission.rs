//! Counting a request against its token. Unlimited tokens are checked from the cache (active flag,
//! expiry) and their usage goes through a bounded channel to the background batcher
//! ([`super::usage`]); when the channel is full the update is dropped and counted. Limited tokens
//! are served from their quota lease ([`super::lease`]), refilled by one atomic reservation, or
//! admitted one request at a time ([`Store::admit`]) when no chunk fits or no lease slot is free.
//!
//! [`Store::admit`]: llm_proxy_store::Store::admit

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::{DateTime, Utc};
use llm_proxy_store::{Admission, TokenHash, TokenRecord, UsageDelta};

use super::lease::{LeaseSlot, Served, Waiting};
use super::usage::give_back;
use super::{Identified, TokenAuthority};
use crate::error::ProxyError;

impl TokenAuthority {
    pub(super) async fn admit_inner(
        &self,
        identified: Identified,
    ) -> Result<Arc<TokenRecord>, ProxyError> {
        let Identified { hash, record } = identified;
        let now = Utc::now();
        if record.is_limited() {
            return self.admit_limited(hash, now).await;
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

    /// Serves a limited token from its lease, reserving a new chunk when the lease is spent.
    async fn admit_limited(
        &self,
        hash: TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Arc<TokenRecord>, ProxyError> {
        let Some(slot) = self.leases.slot(&hash) else {
            // Too many leased tokens at once: count this request alone.
            return self.admit_one(hash, now).await;
        };
        if let Some(served) = slot.take(Instant::now(), now)? {
            return Ok(self.served(hash, slot, served));
        }
        let waiting = Waiting::enter(&slot.waiting);
        let refilling = slot.refill.lock().await;
        drop(waiting);
        if let Some(served) = slot.take(Instant::now(), now)? {
            drop(refilling);
            return Ok(self.served(hash, slot, served));
        }
        let demand = slot.waiting.load(Ordering::Relaxed).saturating_add(1);
        let (chunk, expired_unused) = slot.next_chunk(Instant::now(), demand);
        self.release(&hash, expired_unused);
        if chunk > 1
            && let Some(record) = self.store.reserve(&hash, now, chunk).await?
        {
            let record = Arc::new(record);
            self.cache.insert(hash.clone(), record.clone());
            let orphaned = slot.install(&record, chunk - 1, chunk);
            self.release(&hash, orphaned);
            return Ok(record);
        }
        let record = self.admit_one(hash.clone(), now).await?;
        let orphaned = slot.install(&record, 0, 1);
        self.release(&hash, orphaned);
        Ok(record)
    }

    /// Starts the reservation ahead a served request asked for: a hot token's requests then never
    /// wait for the database (the write happens while the rest of the lease is being used).
    fn served(&self, hash: TokenHash, slot: Arc<LeaseSlot>, served: Served) -> Arc<TokenRecord> {
        if let Some(chunk) = served.prefetch {
            let store = self.store.clone();
            let usage = self.usage.clone();
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                let _refilling = slot.refill.lock().await;
                let orphaned = match store.reserve(&hash, Utc::now(), chunk).await {
                    // A renewal the store refused: the token was revoked, expired or its project
                    // deactivated behind this process's back (another replica, or an edit of the
                    // SQLite file).
                    Ok(None) if chunk == 0 => slot.stop_serving(),
                    Ok(reserved) => slot.extend(reserved, chunk),
                    Err(err) => {
                        tracing::warn!(error = %err, "quota reservation ahead failed");
                        slot.extend(None, chunk)
                    }
                };
                if orphaned > 0 && usage.try_send(give_back(hash, orphaned)).is_err() {
                    metrics.record_usage_dropped();
                }
            });
        }
        served.record
    }

    /// One atomic admission of one request ([`Store::admit`]), classifying refusals.
    ///
    /// [`Store::admit`]: llm_proxy_store::Store::admit
    async fn admit_one(
        &self,
        hash: TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Arc<TokenRecord>, ProxyError> {
        match self.store.admit(&hash, now).await? {
            Admission::Admitted(updated) => {
                let updated = Arc::new(updated);
                self.cache.insert(hash, updated.clone());
                Ok(updated)
            }
            Admission::NotFound => {
                self.cache.invalidate(&hash);
                self.unknown.insert(hash, ());
                Err(ProxyError::TokenNotFound)
            }
            Admission::Inactive => Err(ProxyError::TokenInactive),
            Admission::Expired => Err(ProxyError::TokenExpired),
            Admission::ProjectInactive => Err(ProxyError::ProjectInactive),
            Admission::QuotaExceeded => Err(ProxyError::QuotaExceeded),
        }
    }

    /// Returns unused reserved requests through the usage batcher (never awaited).
    pub(super) fn release(&self, hash: &TokenHash, unused: i64) {
        if unused <= 0 {
            return;
        }
        if self
            .usage
            .try_send(give_back(hash.clone(), unused))
            .is_err()
        {
            // The reservation stays counted: the token under-admits, never over-admits.
            self.metrics.record_usage_dropped();
        }
    }
}

/// Refuses a token that is inactive or expired (all an unlimited token needs).
pub(super) fn check_unlimited(record: &TokenRecord, now: DateTime<Utc>) -> Result<(), ProxyError> {
    if !record.is_active {
        return Err(ProxyError::TokenInactive);
    }
    if record.expires_at.is_some_and(|expiry| expiry <= now) {
        return Err(ProxyError::TokenExpired);
    }
    Ok(())
}
