//! Client-token admission: `Authorization` parsing, format check before any store lookup, a bounded
//! TTL cache of token records by hash, a short negative cache of unknown hashes, quota reservations for
//! limited tokens and batched usage for the others.
//!
//! Limited tokens (`max_requests > 0`) are admitted from *quota leases*: the process reserves a chunk
//! of `k` requests with one atomic statement ([`Store::reserve`]: `request_count += k` only while it
//! stays within `max_requests`, so no replica ever over-admits) and serves them from memory. `k`
//! starts at 1, doubles while the token is hot (its lease ran out before it expired) up to
//! [`MAX_CHUNK`] and at most an eighth ([`QUOTA_SHARE`]) of the quota not yet counted (a token whose
//! lease expired less than [`SLOT_MEMORY`] ago starts again at half its last chunk), and falls
//! back to 1 ([`Store::admit`], which also classifies refusals) when a chunk no
//! longer fits. Once half of a chunk is used, the next one is reserved ahead in a background task, so
//! a busy token's requests do not wait for the database. A lease serves for at most its TTL after
//! its last reservation: [`LEASE_TTL`] (1 s) on a shared database (PostgreSQL), where it bounds how
//! late another replica's change applies, and [`SINGLE_WRITER_LEASE_TTL`] (60 s) on SQLite, whose
//! only writer is this process (every change goes through its own `/manage` and ends the lease at
//! once). Once half of the TTL (at most [`RENEW_INTERVAL`], 5 s) has passed since the last
//! reservation, a request the lease serves renews it in the background (a reservation of 0
//! requests: the token is re-checked, `last_used_at` set and the TTL restarts; a renewal the store
//! refuses ends the lease at once), so a token in steady use, even a slow one (one request a minute
//! on SQLite), never waits for the database either.
//! When a lease expires, its unused part is returned
//! (`request_count -= unused`, batched with usage), so `k` concurrent requests on a token with
//! `max_requests = k` still admit exactly `k`, and a crash can only under-admit. Consequences:
//! - a revocation, expiry or quota change made through `/manage` of *this* process applies at once
//!   ([`TokenAuthority::invalidate`] drops the lease); one made by another replica applies when its
//!   notification arrives (the `revocation` module: the same `invalidate`), and within [`LEASE_TTL`]
//!   (1 s) at the latest;
//! - the database's `request_count` includes reservations not used yet (at most two chunks per
//!   replica and token, so at most a quarter of the quota left) until they are returned (about a
//!   second after the lease ends); `/manage` of this process subtracts its own
//!   ([`TokenAuthority::unserved_reservation`]), so on SQLite it shows exactly the requests
//!   admitted; another replica may refuse a request with 429 while such a reservation is
//!   outstanding near the end of the quota;
//! - `last_used_at` is set when a chunk is reserved or a lease renewed, not by each request served
//!   from it.
//!
//! Unlimited tokens are checked from the cache (active flag, expiry) and their usage goes through
//! a bounded channel to a background batcher; when the channel is full the update is dropped and
//! counted. Revocation of any token reaches the cache through [`TokenAuthority::invalidate`]: from
//! this process's `/manage`, or, on PostgreSQL, from the invalidation listener
//! (the `revocation` module) for a change made by another replica; while that listener is
//! disconnected, another replica's change applies within the cache TTL (`LLM_PROXY_TOKEN_CACHE_TTL`)
//! and every cache is dropped when it reconnects.
//!
//! A token's hash is remembered per token string for the tokens found ([`TokenAuthority`]'s
//! `hashes`, bounded like the record cache): SHA-256 in software is about a tenth of the proxy's
//! own work per request. The memo holds the token strings of recently used tokens in memory (as
//! the request buffers do), never anywhere else; it is a cache of a pure function, so nothing
//! invalidates it. Concurrent cache misses of one token share one lookup ([`SingleFlight`]).
//! Well-formed tokens that do not exist are remembered for [`NEGATIVE_TTL`] in a bounded cache, so
//! a flood of one unknown token costs no database lookup per request. Tokens are random, so a new
//! token is never in it; creating a token through `/manage` clears its hash anyway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use foldhash::fast::RandomState;
use llm_proxy_store::{Admission, Store, TokenHash, TokenRecord, UsageDelta};
use moka::sync::Cache;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::single_flight::SingleFlight;
use crate::ttl_map::TtlMap;

/// Usage updates are written at least this often.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// ... or as soon as this many accumulated.
const FLUSH_BATCH: usize = 100;
/// Longest a quota lease serves requests after its last reservation on a shared database; bounds
/// how late another replica's revocation applies.
pub const LEASE_TTL: Duration = Duration::from_secs(1);
/// The same on a database this process alone writes ([`Store::single_writer`]): no other replica
/// can change a token behind its back, so the lease only bounds how long unused reservations stay
/// counted in the database after the token cools down (`/manage` leaves them out; a crash loses
/// them, which can only under-admit), and a token used in bursts up to a minute apart keeps its
/// lease instead of waiting for a reservation at the start of each burst.
pub const SINGLE_WRITER_LEASE_TTL: Duration = Duration::from_secs(60);
/// A lease in use is renewed at most this long after its last reservation, so `last_used_at` of a
/// limited token lags by about this much at most, whatever the lease's TTL.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);
/// Largest quota chunk one reservation takes. A chunk only grows this large for a token that uses
/// half of it within [`LEASE_TTL`], so about one reservation per 0.1 s at 10,000 requests/s: each one
/// is a database write and a wake-up of its worker (about 5 % of the proxy's CPU at a limit of 32).
pub const MAX_CHUNK: i64 = 1024;
/// A chunk is at most this fraction (1/n) of the quota not yet counted, so reservations shrink as the
/// quota runs out and another replica is rarely refused while this one holds unused requests.
pub const QUOTA_SHARE: i64 = 8;
/// Expired leases are looked for (and their unused part returned) this often.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// How long an expired lease's slot (emptied: its unused part is returned at expiry) is kept, so a
/// token used in bursts further apart than its lease's TTL starts its next lease at half the last
/// chunk instead of at 1.
const SLOT_MEMORY: Duration = Duration::from_secs(10);
/// How long an unknown token hash is answered without a lookup.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Admits client tokens.
pub struct TokenAuthority {
    store: Arc<dyn Store>,
    cache: TtlMap<TokenHash, Arc<TokenRecord>>,
    /// Keyed by whatever hashes clients send: moka's admission policy keeps a flood of random
    /// tokens from evicting the useful entries.
    unknown: Cache<TokenHash, (), RandomState>,
    /// Token string → its hash (see the module doc). Only tokens that exist are inserted, so
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

    async fn identify_inner(&self, authorization: Option<&str>) -> Result<Identified, ProxyError> {
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

    async fn admit_inner(&self, identified: Identified) -> Result<Arc<TokenRecord>, ProxyError> {
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
    fn release(&self, hash: &TokenHash, unused: i64) {
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
        self.leases
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .map_or(0, |slot| slot.lock().remaining.max(0))
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

/// The quota leases of this process, one slot per limited token in use; bounded (a token without a
/// slot is admitted request by request).
struct QuotaLeases {
    slots: Mutex<HashMap<TokenHash, Arc<LeaseSlot>, RandomState>>,
    max_slots: usize,
    ttl: Duration,
}

/// One token's lease. `state` is held only briefly (never across an await); `refill` serialises
/// the reservations of one token, so concurrent requests wait for one chunk instead of each writing.
struct LeaseSlot {
    /// How long a reservation serves ([`LEASE_TTL`] or [`SINGLE_WRITER_LEASE_TTL`]).
    ttl: Duration,
    /// How long after a reservation a request served asks for a renewal.
    renew_after: Duration,
    state: Mutex<LeaseState>,
    refill: tokio::sync::Mutex<()>,
    /// Requests waiting for `refill`: a burst on a cool token is served by one reservation sized
    /// to it instead of a doubling series of writes each request waits behind.
    waiting: AtomicI64,
}

/// Counts a request among a slot's refill waiters until dropped (also when its future is dropped).
struct Waiting<'a>(&'a AtomicI64);

impl<'a> Waiting<'a> {
    fn enter(counter: &'a AtomicI64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct LeaseState {
    /// The token as of the last reservation.
    record: Option<Arc<TokenRecord>>,
    /// Reserved requests not served yet.
    remaining: i64,
    /// When the lease stops serving; `None` before the first reservation.
    expires: Option<Instant>,
    /// Size of the last reservation.
    chunk: i64,
    /// Removed from [`QuotaLeases`]: whatever is installed now must be returned at once.
    retired: bool,
    /// A reservation ahead (or a renewal) is in flight.
    prefetching: bool,
    /// A renewal failed (a database error): the lease serves out its TTL unrenewed.
    renewal_refused: bool,
}

/// A request served from a lease, and the size of the chunk to reserve ahead, if it is time to.
struct Served {
    record: Arc<TokenRecord>,
    prefetch: Option<i64>,
}

impl QuotaLeases {
    fn new(max_slots: u64, ttl: Duration) -> Self {
        Self {
            slots: Mutex::new(HashMap::default()),
            max_slots: usize::try_from(max_slots).unwrap_or(usize::MAX).max(1),
            ttl,
        }
    }

    fn slot(&self, hash: &TokenHash) -> Option<Arc<LeaseSlot>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(hash) {
            return Some(slot.clone());
        }
        if slots.len() >= self.max_slots {
            return None;
        }
        let slot = Arc::new(LeaseSlot::new(self.ttl));
        slots.insert(hash.clone(), slot.clone());
        Some(slot)
    }

    /// Removes a token's lease; the unused requests to return.
    fn end(&self, hash: &TokenHash) -> Option<i64> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(hash)?;
        Some(slot.retire())
    }

    /// Removes every lease; the unused requests to return, by token.
    fn end_all(&self) -> Vec<(TokenHash, i64)> {
        let slots = std::mem::take(&mut *self.slots.lock().unwrap_or_else(PoisonError::into_inner));
        slots
            .into_iter()
            .map(|(hash, slot)| (hash, slot.retire()))
            .filter(|(_, unused)| *unused > 0)
            .collect()
    }

    /// Empties the leases that stopped serving and removes those idle for [`SLOT_MEMORY`] (all of
    /// them at shutdown); the unused requests to return, by token.
    fn sweep(&self, now: Instant, all: bool) -> Vec<(TokenHash, i64)> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut returned = Vec::new();
        slots.retain(|hash, slot| {
            let expires = slot.lock().expires;
            let forgotten = all || expires.is_none_or(|e| e + SLOT_MEMORY <= now);
            let unused = if forgotten {
                slot.retire()
            } else if expires.is_some_and(|e| e <= now) {
                slot.empty()
            } else {
                0
            };
            if unused > 0 {
                returned.push((hash.clone(), unused));
            }
            !forgotten
        });
        returned
    }
}

impl LeaseSlot {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            renew_after: (ttl / 2).min(RENEW_INTERVAL),
            state: Mutex::default(),
            refill: tokio::sync::Mutex::default(),
            waiting: AtomicI64::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves one request from the lease if it still can; a token that expired meanwhile is refused.
    /// Once half of a chunk is used, asks for the next one to be reserved ahead; once `renew_after`
    /// has passed since the last reservation, for a renewal (a reservation of 0). One at a time.
    fn take(&self, now: Instant, wall_now: DateTime<Utc>) -> Result<Option<Served>, ProxyError> {
        let mut state = self.lock();
        let Some(expires) = state.expires.filter(|e| *e > now) else {
            return Ok(None);
        };
        if state.retired || state.remaining <= 0 {
            return Ok(None);
        }
        let Some(record) = state.record.as_ref() else {
            return Ok(None);
        };
        if record.expires_at.is_some_and(|expiry| expiry <= wall_now) {
            return Err(ProxyError::TokenExpired);
        }
        let record = record.clone();
        state.remaining -= 1;
        let cap = chunk_cap(Some(&record));
        let grow = (state.chunk >= 2 && state.remaining <= state.chunk / 2)
            .then(|| (state.chunk * 2).min(cap))
            .filter(|chunk| *chunk >= 2);
        let renew = (!state.renewal_refused
            && expires.duration_since(now) <= self.ttl.saturating_sub(self.renew_after))
        .then_some(0);
        let prefetch = if state.prefetching {
            None
        } else {
            grow.or(renew)
        };
        state.prefetching |= prefetch.is_some();
        Ok(Some(Served { record, prefetch }))
    }

    /// Adds a chunk reserved ahead to the lease (which then serves for its TTL from now; a
    /// `chunk` of 0 is a renewal), or, when none could be had, stops reserving ahead (or renewing)
    /// until the next blocking refill. Returns what must be handed back at once because the lease
    /// was retired meanwhile.
    fn extend(&self, reserved: Option<TokenRecord>, chunk: i64) -> i64 {
        let mut state = self.lock();
        state.prefetching = false;
        let Some(record) = reserved else {
            if chunk == 0 {
                state.renewal_refused = true;
            } else {
                state.chunk = 1;
            }
            return 0;
        };
        if state.retired {
            return chunk;
        }
        state.record = Some(Arc::new(record));
        state.remaining += chunk;
        if chunk > 0 {
            state.chunk = chunk;
        }
        state.expires = Some(Instant::now() + self.ttl);
        0
    }

    /// The size of the next reservation (doubled while the token is hot, else half the last one,
    /// and at least the `demand` of requests waiting for it) and the unused part of an expired
    /// lease, handed back.
    fn next_chunk(&self, now: Instant, demand: i64) -> (i64, i64) {
        let mut state = self.lock();
        let hot = state.expires.is_some_and(|e| e > now) && state.remaining <= 0;
        let chunk = if hot {
            state.chunk * 2
        } else {
            state.chunk / 2
        }
        .max(demand)
        .clamp(1, chunk_cap(state.record.as_deref()));
        let unused = std::mem::take(&mut state.remaining);
        (chunk, unused)
    }

    /// Installs a fresh reservation of which `remaining` requests are left; returns what must be
    /// handed back at once because the lease was retired meanwhile.
    fn install(&self, record: &Arc<TokenRecord>, remaining: i64, chunk: i64) -> i64 {
        let mut state = self.lock();
        if state.retired {
            return remaining;
        }
        state.record = Some(record.clone());
        state.remaining = remaining;
        state.chunk = chunk;
        state.expires = Some(Instant::now() + self.ttl);
        state.renewal_refused = false;
        0
    }

    /// Ends the lease now (its token is no longer admissible): the next request goes to the store,
    /// which classifies the refusal. Returns the unused requests to hand back.
    fn stop_serving(&self) -> i64 {
        let mut state = self.lock();
        state.prefetching = false;
        state.expires = Some(Instant::now());
        std::mem::take(&mut state.remaining)
    }

    /// Takes back what an expired lease did not serve; the slot remembers its chunk size.
    fn empty(&self) -> i64 {
        std::mem::take(&mut self.lock().remaining)
    }

    /// Stops the lease; the unused requests to return.
    fn retire(&self) -> i64 {
        let mut state = self.lock();
        state.retired = true;
        state.expires = None;
        std::mem::take(&mut state.remaining)
    }
}

/// The largest chunk worth reserving for a token: [`MAX_CHUNK`], and at most [`QUOTA_SHARE`]th of
/// the quota not yet counted as of `record` (the last reservation's view).
fn chunk_cap(record: Option<&TokenRecord>) -> i64 {
    let left = record
        .and_then(|record| Some(record.max_requests? - record.request_count))
        .unwrap_or(MAX_CHUNK * QUOTA_SHARE);
    (left / QUOTA_SHARE).clamp(1, MAX_CHUNK)
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

async fn run_usage_batcher(
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<UsageDelta>,
    leases: Arc<QuotaLeases>,
) {
    enum Wake {
        Received(UsageDelta),
        Tick,
        Sweep,
        Closed,
    }
    let mut pending: HashMap<TokenHash, UsageDelta> = HashMap::new();
    let mut received_since_flush = 0usize;
    let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweeper = tokio::time::interval(SWEEP_INTERVAL);
    sweeper.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake = tokio::select! {
            received = receiver.recv() => received.map_or(Wake::Closed, Wake::Received),
            _ = ticker.tick() => Wake::Tick,
            _ = sweeper.tick() => Wake::Sweep,
        };
        let (flush, closed) = match wake {
            Wake::Received(delta) => {
                received_since_flush += 1;
                merge(&mut pending, delta);
                (received_since_flush >= FLUSH_BATCH, false)
            }
            Wake::Tick => (true, false),
            Wake::Sweep => {
                return_unused(&mut pending, leases.sweep(Instant::now(), false));
                (false, false)
            }
            Wake::Closed => {
                return_unused(&mut pending, leases.sweep(Instant::now(), true));
                (true, true)
            }
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

fn return_unused(pending: &mut HashMap<TokenHash, UsageDelta>, unused: Vec<(TokenHash, i64)>) {
    for (hash, count) in unused {
        merge(pending, give_back(hash, count));
    }
}

/// The usage delta that returns `unused` reserved requests of a token.
fn give_back(hash: TokenHash, unused: i64) -> UsageDelta {
    UsageDelta {
        hash,
        requests: -unused,
        cache_hits: 0,
        last_used_at: Utc::now(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TokenRecord {
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

    fn serves_at(slot: &LeaseSlot, now: Instant) -> bool {
        slot.take(now, Utc::now())
            .expect("an admissible token")
            .is_some()
    }

    fn prefetch_at(slot: &LeaseSlot, now: Instant) -> Option<i64> {
        slot.take(now, Utc::now())
            .expect("an admissible token")
            .expect("the lease serves")
            .prefetch
    }

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

    #[test]
    fn a_lease_past_half_its_ttl_asks_for_one_renewal_at_a_time() {
        let slot = LeaseSlot::new(LEASE_TTL);
        let start = Instant::now();
        assert_eq!(slot.install(&Arc::new(record()), 100, 100), 0);
        assert_eq!(prefetch_at(&slot, start), None, "fresh and well stocked");
        let late = start + LEASE_TTL * 3 / 4;
        assert_eq!(prefetch_at(&slot, late), Some(0), "a renewal, not a chunk");
        assert_eq!(prefetch_at(&slot, late), None, "one in flight at a time");

        assert_eq!(slot.extend(Some(record()), 0), 0);
        let state = slot.lock();
        assert_eq!(
            (state.remaining, state.chunk),
            (97, 100),
            "three served, nothing reserved"
        );
        assert!(state.expires.is_some_and(|e| e >= start + LEASE_TTL));
    }

    #[test]
    fn an_expired_lease_is_emptied_at_once_and_its_chunk_remembered_for_a_while() {
        let leases = QuotaLeases::new(8, LEASE_TTL);
        let hash = llm_proxy_store::hash_token("sk-test");
        let slot = leases.slot(&hash).expect("room for a slot");
        let start = Instant::now();
        slot.install(&Arc::new(record()), 60, 64);
        assert!(
            leases.sweep(start, false).is_empty(),
            "a live lease is left alone"
        );

        let expired = start + LEASE_TTL * 2;
        assert_eq!(leases.sweep(expired, false), vec![(hash.clone(), 60)]);
        assert!(leases.sweep(expired, false).is_empty(), "returned once");
        let kept = leases.slot(&hash).expect("still there");
        assert!(Arc::ptr_eq(&kept, &slot), "the same slot, kept");
        assert_eq!(slot.next_chunk(expired, 1), (32, 0), "half the last chunk");
        assert_eq!(slot.next_chunk(expired, 40), (40, 0), "or the demand");

        let forgotten = start + LEASE_TTL * 2 + SLOT_MEMORY;
        assert!(leases.sweep(forgotten, false).is_empty());
        let fresh = leases.slot(&hash).expect("room for a slot");
        assert!(!Arc::ptr_eq(&fresh, &slot), "forgotten after SLOT_MEMORY");
        assert_eq!(
            fresh.next_chunk(forgotten, 1),
            (1, 0),
            "a new slot starts at 1"
        );
    }

    #[test]
    fn a_single_writer_lease_serves_across_pauses_of_half_a_minute() {
        let slot = LeaseSlot::new(SINGLE_WRITER_LEASE_TTL);
        let start = Instant::now();
        slot.install(&Arc::new(record()), 32, 32);
        let after_a_pause = start + Duration::from_secs(3);
        assert_eq!(prefetch_at(&slot, after_a_pause), None, "still fresh");
        let later = start + Duration::from_secs(6);
        assert_eq!(
            prefetch_at(&slot, later),
            Some(0),
            "renewed once RENEW_INTERVAL has passed, long before half its TTL"
        );
        assert!(
            serves_at(&slot, start + Duration::from_secs(30)),
            "a burst half a minute later is served from the lease"
        );
        assert!(
            !serves_at(&slot, start + SINGLE_WRITER_LEASE_TTL * 2),
            "it still ends at its TTL"
        );

        let shared = LeaseSlot::new(LEASE_TTL);
        shared.install(&Arc::new(record()), 32, 32);
        assert!(
            !serves_at(&shared, after_a_pause),
            "a shared database's lease ends after 1 s"
        );
    }

    #[test]
    fn a_renewal_refused_by_the_store_ends_the_lease_at_once() {
        let slot = LeaseSlot::new(SINGLE_WRITER_LEASE_TTL);
        let start = Instant::now();
        slot.install(&Arc::new(record()), 100, 100);
        let later = start + RENEW_INTERVAL * 2;
        assert_eq!(prefetch_at(&slot, later), Some(0), "a renewal is asked for");
        assert_eq!(slot.stop_serving(), 99, "the unused part is handed back");
        assert!(
            !serves_at(&slot, Instant::now()),
            "no request is served from the lease of a token the store refused"
        );
    }

    #[test]
    fn a_failed_renewal_is_not_retried_and_the_lease_ends_on_time() {
        let slot = LeaseSlot::new(LEASE_TTL);
        let start = Instant::now();
        slot.install(&Arc::new(record()), 100, 100);
        let late = start + LEASE_TTL * 3 / 4;
        assert_eq!(prefetch_at(&slot, late), Some(0));
        assert_eq!(slot.extend(None, 0), 0);
        assert_eq!(prefetch_at(&slot, late), None, "no second attempt");
        assert_eq!(slot.lock().chunk, 100, "chunk sizing is untouched");
        assert!(
            !serves_at(&slot, start + LEASE_TTL * 2),
            "the lease still ends at its TTL"
        );
        slot.install(&Arc::new(record()), 10, 10);
        assert!(
            !slot.lock().renewal_refused,
            "a fresh reservation may be renewed"
        );
    }
}
