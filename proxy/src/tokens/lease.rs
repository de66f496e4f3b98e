//! The quota lease engine: how a limited token's requests are served from memory.
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
//! [`Store::reserve`]: llm_proxy_store::Store::reserve
//! [`Store::admit`]: llm_proxy_store::Store::admit
//! [`TokenAuthority::invalidate`]: super::TokenAuthority::invalidate
//! [`TokenAuthority::unserved_reservation`]: super::TokenAuthority::unserved_reservation

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use foldhash::fast::RandomState;
use llm_proxy_store::{TokenHash, TokenRecord};

use crate::error::ProxyError;

/// Longest a quota lease serves requests after its last reservation on a shared database; bounds
/// how late another replica's revocation applies.
pub const LEASE_TTL: Duration = Duration::from_secs(1);
/// The same on a database this process alone writes ([`Store::single_writer`]): no other replica
/// can change a token behind its back, so the lease only bounds how long unused reservations stay
/// counted in the database after the token cools down (`/manage` leaves them out; a crash loses
/// them, which can only under-admit), and a token used in bursts up to a minute apart keeps its
/// lease instead of waiting for a reservation at the start of each burst.
///
/// [`Store::single_writer`]: llm_proxy_store::Store::single_writer
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
/// How long an expired lease's slot (emptied: its unused part is returned at expiry) is kept, so a
/// token used in bursts further apart than its lease's TTL starts its next lease at half the last
/// chunk instead of at 1.
const SLOT_MEMORY: Duration = Duration::from_secs(10);

/// The quota leases of this process, one slot per limited token in use; bounded (a token without a
/// slot is admitted request by request).
pub(super) struct QuotaLeases {
    slots: Mutex<HashMap<TokenHash, Arc<LeaseSlot>, RandomState>>,
    max_slots: usize,
    ttl: Duration,
}

/// One token's lease. `state` is held only briefly (never across an await); `refill` serialises
/// the reservations of one token, so concurrent requests wait for one chunk instead of each writing.
pub(super) struct LeaseSlot {
    /// How long a reservation serves ([`LEASE_TTL`] or [`SINGLE_WRITER_LEASE_TTL`]).
    ttl: Duration,
    /// How long after a reservation a request served asks for a renewal.
    renew_after: Duration,
    state: Mutex<LeaseState>,
    pub(super) refill: tokio::sync::Mutex<()>,
    /// Requests waiting for `refill`: a burst on a cool token is served by one reservation sized
    /// to it instead of a doubling series of writes each request waits behind.
    pub(super) waiting: AtomicI64,
}

/// Counts a request among a slot's refill waiters until dropped (also when its future is dropped).
pub(super) struct Waiting<'a>(&'a AtomicI64);

impl<'a> Waiting<'a> {
    pub(super) fn enter(counter: &'a AtomicI64) -> Self {
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
pub(super) struct Served {
    pub(super) record: Arc<TokenRecord>,
    pub(super) prefetch: Option<i64>,
}

impl QuotaLeases {
    pub(super) fn new(max_slots: u64, ttl: Duration) -> Self {
        Self {
            slots: Mutex::new(HashMap::default()),
            max_slots: usize::try_from(max_slots).unwrap_or(usize::MAX).max(1),
            ttl,
        }
    }

    pub(super) fn slot(&self, hash: &TokenHash) -> Option<Arc<LeaseSlot>> {
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
    pub(super) fn end(&self, hash: &TokenHash) -> Option<i64> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(hash)?;
        Some(slot.retire())
    }

    /// Removes every lease; the unused requests to return, by token.
    pub(super) fn end_all(&self) -> Vec<(TokenHash, i64)> {
        let slots = std::mem::take(&mut *self.slots.lock().unwrap_or_else(PoisonError::into_inner));
        slots
            .into_iter()
            .map(|(hash, slot)| (hash, slot.retire()))
            .filter(|(_, unused)| *unused > 0)
            .collect()
    }

    /// Empties the leases that stopped serving and removes those idle for [`SLOT_MEMORY`] (all of
    /// them at shutdown); the unused requests to return, by token.
    pub(super) fn sweep(&self, now: Instant, all: bool) -> Vec<(TokenHash, i64)> {
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

    /// Requests of the token reserved and not served yet (see
    /// [`TokenAuthority::unserved_reservation`](super::TokenAuthority::unserved_reservation)).
    pub(super) fn unserved(&self, hash: &TokenHash) -> i64 {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .map_or(0, |slot| slot.lock().remaining.max(0))
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
    pub(super) fn take(
        &self,
        now: Instant,
        wall_now: DateTime<Utc>,
    ) -> Result<Option<Served>, ProxyError> {
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
    pub(super) fn extend(&self, reserved: Option<TokenRecord>, chunk: i64) -> i64 {
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
    pub(super) fn next_chunk(&self, now: Instant, demand: i64) -> (i64, i64) {
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
    pub(super) fn install(&self, record: &Arc<TokenRecord>, remaining: i64, chunk: i64) -> i64 {
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
    pub(super) fn stop_serving(&self) -> i64 {
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

#[cfg(test)]
mod tests {
    use super::super::test_record as record;
    use super::*;

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
