//! A bounded map whose entries expire: the read-mostly caches of the request path (token records,
//! token-hash memo, project active flags and provider keys).
//!
//! A hit is one read lock, one foldhash and one clock reading. moka, used before, also recorded
//! every read for its eviction policy (frequency sketch, access-order queue, periodic housekeeping):
//! its four lookups per request cost about 7 % of the proxy's own instructions. That policy
//! earns its cost where clients choose the keys; these maps hold only what the store returned for
//! tokens and projects that exist, so a client cannot fill them. Caches keyed by client input (the
//! unknown-token cache, the HTTP cache) stay on moka.
//!
//! Expiry: [`TtlMap::get`] never returns an expired entry, and removes it; [`TtlMap::get_or_stale`]
//! returns it and names one caller to refresh it. Inserting into a full map first
//! drops the expired entries; if it is still full, an eighth of the entries (arbitrary ones) go, so
//! a working set larger than the bound costs one scan per `max / 8` inserts, not one per insert.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

struct Entry<V> {
    value: V,
    expires: Instant,
}

/// At most `max` entries, each returned for `ttl` after its insertion.
pub struct TtlMap<K, V> {
    entries: RwLock<HashMap<K, Entry<V>, RandomState>>,
    ttl: Duration,
    max: usize,
}

impl<K: Hash + Eq, V: Clone> TtlMap<K, V> {
    pub fn new(max: u64, ttl: Duration) -> Self {
        Self {
            entries: RwLock::new(HashMap::default()),
            ttl,
            max: usize::try_from(max).unwrap_or(usize::MAX),
        }
    }

    /// The value of `key` unless it expired (an expired entry is removed).
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        {
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            match entries.get(key) {
                None => return None,
                Some(entry) if entry.expires > now => return Some(entry.value.clone()),
                Some(_) => {}
            }
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.get(key).is_some_and(|entry| entry.expires <= now) {
            entries.remove(key);
        }
        None
    }

    /// The value of `key`, also once it expired (stale-while-revalidate). `Some((value, true))`
    /// means the entry had expired and this caller is the one to refresh it: its expiry moved a TTL
    /// on, so concurrent callers keep getting the value (with `false`) while the refresh runs, and
    /// a failed refresh is retried one TTL later. Expired entries still give way when the map is
    /// full.
    pub fn get_or_stale<Q>(&self, key: &Q) -> Option<(V, bool)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        {
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            let entry = entries.get(key)?;
            if entry.expires > now {
                return Some((entry.value.clone(), false));
            }
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get_mut(key)?;
        let refresh = entry.expires <= now;
        if refresh {
            entry.expires = now + self.ttl;
        }
        Some((entry.value.clone(), refresh))
    }

    /// Inserts or replaces `key`, valid for the map's TTL from now.
    pub fn insert(&self, key: K, value: V) {
        if self.max == 0 {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.max && !entries.contains_key(&key) {
            entries.retain(|_, entry| entry.expires > now);
            if entries.len() >= self.max {
                let mut excess = entries.len() - self.max * 7 / 8 + 1;
                entries.retain(|_, _| {
                    let keep = excess == 0;
                    excess = excess.saturating_sub(1);
                    keep
                });
            }
        }
        let expires = now + self.ttl;
        entries.insert(key, Entry { value, expires });
    }

    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_returned_until_they_expire_and_then_removed() {
        let map = TtlMap::new(10, Duration::from_millis(50));
        map.insert("a".to_owned(), 1);
        assert_eq!(map.get("a"), Some(1));
        map.invalidate("a");
        assert_eq!(map.get("a"), None);

        let expired = TtlMap::new(10, Duration::ZERO);
        expired.insert("b".to_owned(), 2);
        assert_eq!(expired.get("b"), None, "a zero TTL never serves");
        assert!(
            expired.is_empty(),
            "the expired entry was removed by the lookup"
        );
    }

    #[test]
    fn a_stale_entry_is_served_and_exactly_one_caller_is_asked_to_refresh_it() {
        let map = TtlMap::new(10, Duration::from_secs(60));
        assert_eq!(map.get_or_stale("absent"), None);
        map.insert("a".to_owned(), 1);
        assert_eq!(map.get_or_stale("a"), Some((1, false)), "fresh");
        // Age the entry past its TTL without sleeping.
        if let Some(entry) = map.entries.write().unwrap().get_mut("a") {
            entry.expires = Instant::now() - Duration::from_secs(1);
        }
        assert_eq!(map.get_or_stale("a"), Some((1, true)), "stale: refresh it");
        assert_eq!(
            map.get_or_stale("a"),
            Some((1, false)),
            "the refresh is claimed: the others keep the value"
        );
        map.insert("a".to_owned(), 2);
        assert_eq!(map.get_or_stale("a"), Some((2, false)), "refreshed");
        assert_eq!(map.get("a"), Some(2));
    }

    #[test]
    fn a_full_map_drops_expired_entries_before_live_ones() {
        let map = TtlMap::new(4, Duration::from_secs(60));
        for key in 0..4 {
            map.insert(key, key);
        }
        // Age two entries past their TTL without sleeping.
        {
            let mut entries = map.entries.write().unwrap();
            let past = Instant::now() - Duration::from_secs(1);
            for key in [0, 1] {
                if let Some(entry) = entries.get_mut(&key) {
                    entry.expires = past;
                }
            }
        }
        map.insert(4, 4);
        assert_eq!(map.len(), 3);
        for key in [2, 3, 4] {
            assert_eq!(map.get(&key), Some(key), "live entry {key} kept");
        }
    }

    #[test]
    fn a_full_map_of_live_entries_stays_within_its_bound() {
        let map = TtlMap::new(16, Duration::from_secs(60));
        for key in 0..100 {
            map.insert(key, key);
            assert!(
                map.len() <= 16,
                "{} entries after inserting {key}",
                map.len()
            );
            assert_eq!(map.get(&key), Some(key), "the new entry is always kept");
        }
        map.insert(99, 100);
        assert_eq!(map.get(&99), Some(100), "replacing a key evicts nothing");
        let zero = TtlMap::new(0, Duration::from_secs(60));
        zero.insert(1, 1);
        assert_eq!(zero.get(&1), None, "a zero bound caches nothing");
    }
}
